//! `keel node`: runs a cluster node from flags and an optional `--config` file (flags win),
//! until Ctrl-C or SIGTERM.
//!
//! It only turns flags and the file into a [`NodeSpec`] and runs it; it never changes a
//! setting the node itself would choose.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use keel_core::NodeId;
use keel_node::config::FileConfig;
use keel_node::server::NodeSpec;

use crate::LogFormat;

// The flags of `keel node` (its help text comes from the subcommand's own doc comment).
#[derive(clap::Args)]
pub struct NodeArgs {
    /// A TOML file with the node's settings, core timings and limits (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id, e.g. n1.
    #[arg(long)]
    id: Option<NodeId>,
    /// Address peers connect to, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the HTTP API, e.g. 127.0.0.1:8001.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The other members: n2=127.0.0.1:7002,n3=127.0.0.1:7003.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Where the log, snapshots and workload output live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The cluster's name; peers of another cluster are refused. Default "keel".
    #[arg(long)]
    cluster: Option<String>,
    /// Log lines as text or JSON (filter with RUST_LOG, default info). Default text.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Join a running cluster through the member whose HTTP API is at this address (e.g.
    /// 127.0.0.1:8001), instead of listing every member in --peers: the node is added as a
    /// learner; promote it with `keel member promote`.
    #[arg(long)]
    join: Option<SocketAddr>,
}

fn parse_peers(me: NodeId, peers: &[String]) -> anyhow::Result<BTreeMap<NodeId, SocketAddr>> {
    let mut out = BTreeMap::new();
    for p in peers {
        let Some((id, addr)) = p.split_once('=') else {
            bail!("--peers: {p:?} is not of the form n2=127.0.0.1:7002");
        };
        let id: NodeId = id
            .parse()
            .with_context(|| format!("--peers: {id:?} in {p:?} is not a node id like n2"))?;
        let addr: SocketAddr = addr.parse().with_context(|| {
            format!("--peers: {addr:?} in {p:?} is not an address like 127.0.0.1:7002")
        })?;
        if id == me {
            bail!("--peers: {id} is this node (--id); list only the other members");
        }
        if out.insert(id, addr).is_some() {
            bail!("--peers: {id} is listed twice");
        }
    }
    Ok(out)
}

/// Runs the node the flags and the config file describe.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut spec = spec(&args, &file)?;
    init_logging(args.log_format, &file)?;
    if let Some(via) = args.join {
        let learned = super::join::prepare(&spec, via)?;
        for (id, addr) in learned {
            spec.peers.entry(id).or_insert(addr);
        }
    }
    serve(spec)
}

/// The node's spec: each setting from its flag, else from the file.
fn spec(args: &NodeArgs, file: &FileConfig) -> anyhow::Result<NodeSpec> {
    let from_file = |what: &str| {
        format!(
            "--{what} is required (or `{}` in the --config file)",
            what.replace('-', "_")
        )
    };
    let id = match (args.id, &file.id) {
        (Some(id), _) => id,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("the config file's id {text:?} is not a node id like n1"))?,
        (None, None) => bail!(from_file("id")),
    };
    let listen = args
        .listen
        .or(file.listen)
        .with_context(|| from_file("listen"))?;
    let http = args.http.or(file.http).with_context(|| from_file("http"))?;
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .with_context(|| from_file("data-dir"))?;
    let peers = if args.peers.is_empty() {
        let listed: Vec<String> = file.peers.iter().map(|(n, a)| format!("{n}={a}")).collect();
        parse_peers(id, &listed).context("in the config file's [peers]")?
    } else {
        parse_peers(id, &args.peers)?
    };
    let mut transport = file.transport.clone().unwrap_or_default();
    if let Some(c) = args.cluster.clone().or(file.cluster.clone()) {
        transport.cluster = c;
    }
    Ok(NodeSpec {
        transport,
        core: file.core.clone(),
        supervisor: file.supervisor.clone(),
        watchdog: Some(file.watchdog.clone()),
        shutdown: file.shutdown.clone(),
        storage: file.storage,
        ..NodeSpec::new(id, listen, http, peers, data_dir)
    })
}

/// Log lines as text or JSON, filtered by RUST_LOG (default info).
fn init_logging(flag: Option<LogFormat>, file: &FileConfig) -> anyhow::Result<()> {
    let log_format = match (flag, file.log_format.as_deref()) {
        (Some(f), _) => f,
        (None, None | Some("text")) => LogFormat::Text,
        (None, Some("json")) => LogFormat::Json,
        (None, Some(other)) => {
            bail!("the config file's log_format {other:?} is neither \"text\" nor \"json\"")
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    Ok(())
}

/// Runs the node until Ctrl-C or SIGTERM.
#[cfg(not(madsim))]
fn serve(spec: NodeSpec) -> anyhow::Result<()> {
    // One thread: the node's work is one sequential loop around the core, and the HTTP and
    // peer connections only feed it. Handing work between worker threads cost a thread
    // wake-up at every hop (about 20 context switches per write on a 3-node loopback cluster,
    // 6-7 on one thread) and took the single-client p50 from about 0.34 to 0.42 ms here.
    // Workload processes and the watchdog have threads of their own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Ctrl-C or SIGTERM: stop taking requests, hand leadership over if leading,
        // stop the workloads, leave. The signals are awaited in a task of their own: the
        // node's loop polls its shutdown future at every turn, and a oneshot is cheaper to
        // poll than two signal streams.
        let (signalled, shutdown) = tokio::sync::oneshot::channel::<()>();
        let _signals = tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            let _ = signalled.send(());
        });
        // The node's loop runs as a task, not as the runtime's `block_on` future: a task woken
        // by another (an HTTP request, a peer's message) just joins the run queue, where waking
        // the `block_on` future makes the runtime poll its I/O driver once more (a syscall)
        // before polling it.
        let node = tokio::spawn(keel_node::server::run(spec, async move {
            let _ = shutdown.await;
        }));
        match node.await {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(anyhow::anyhow!("the node's task ended: {e}")),
        }
    })?;
    Ok(())
}

/// Under `--cfg madsim` the binary builds (cargo builds it for the package's tests) but serves
/// nothing: a node runs only inside a madsim simulation (`node/tests/madsim.rs`).
#[cfg(madsim)]
fn serve(_spec: NodeSpec) -> anyhow::Result<()> {
    anyhow::bail!(
        "this keel was built with --cfg madsim: `keel node` runs only inside madsim's simulator"
    )
}
