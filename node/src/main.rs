//! The `keel` command-line tool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use keel_core::NodeId;
use keel_node::config::FileConfig;
use keel_node::server::NodeSpec;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "keel: a fault-tolerant cluster coordinator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Read a key (linearizable): `keel kv get user/hello`.
    Get { key: String },
    /// Write a key; the value is JSON: `keel kv put user/hello '"world"'`.
    Put { key: String, value: String },
    /// Delete a key.
    Del { key: String },
}

#[derive(Subcommand)]
enum WorkloadCommand {
    /// Submit (or update) a workload: `keel workload submit web -- sleep 60`.
    Submit {
        name: String,
        /// Failed starts before it is marked failed for good.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Stop a workload (desired state: stopped).
    Stop { name: String },
    /// Every workload, as a table (or --json).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One workload and the chain of decisions that made it what it is.
    Explain { name: String },
}

#[derive(Subcommand)]
enum Command {
    /// The cluster as one node sees it: leader, term, commit index, members.
    Status {
        /// Any node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read and write keys through any node.
    Kv {
        /// Any node's HTTP address.
        #[arg(long, global = true, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Node health as the leader's failure detector recorded it: counts and per-node details.
    Health {
        /// Any node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        #[arg(long)]
        json: bool,
    },
    /// Run a health check now (a fresh read of the detector's verdicts) and print it.
    Check {
        /// Any node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        #[arg(long)]
        json: bool,
    },
    /// Recovery state: failed, pending and backing-off workloads, node verdicts.
    Recovery {
        /// Any node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        #[arg(long)]
        json: bool,
    },
    /// Submit, stop, list and explain workloads through any node.
    Workload {
        /// Any node's HTTP address.
        #[arg(long, global = true, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        #[command(subcommand)]
        command: WorkloadCommand,
    },
    /// Ask the leader to hand leadership to a caught-up follower (`--to` one in particular),
    /// and print the cluster once a new leader is known.
    TransferLeader {
        /// The leader's HTTP address (another node answers with the leader as hint).
        #[arg(long, default_value = "127.0.0.1:8001")]
        addr: SocketAddr,
        /// The member to hand over to (default: the most caught-up follower).
        #[arg(long)]
        to: Option<NodeId>,
    },
    /// Run a cluster node. Every flag may also come from `--config FILE` (TOML); flags win.
    Node {
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
    },
    /// Internal: runs one workload copy under a node's lease (started by the node itself).
    #[command(hide = true)]
    Shim {
        /// The lease left when the node started the copy, in microseconds.
        #[arg(long)]
        lease_us: u64,
        /// The workload's program and arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
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

/// Asks `addr` to hand leadership over, then polls until another node leads.
fn transfer_leader(
    addr: SocketAddr,
    to: Option<NodeId>,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let body = to.map(|t| serde_json::json!({ "to": t.to_string() }).to_string());
    let a = keel_node::client::request(
        addr,
        "POST",
        "/v1/cluster/transfer-leader",
        body.as_deref(),
        timeout,
    )?;
    if a.status != 202 {
        return finish(a);
    }
    let before = keel_node::client::request(addr, "GET", "/v1/cluster", None, timeout)?;
    let old = before.body["node"].as_str().unwrap_or("?").to_string();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < give_up {
        let c = keel_node::client::request(addr, "GET", "/v1/cluster", None, timeout)?;
        if let Some(l) = c.body["leader"].as_str().filter(|l| *l != old) {
            println!(
                "leadership moved from {old} to {l} (term {})",
                c.body["term"]
            );
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bail!("{old} started handing leadership over, but no other leader was seen within 5 s")
}

/// `partition/name`, checked before anything is sent.
fn kv_path(key: &str) -> anyhow::Result<String> {
    let Some((partition, name)) = key.split_once('/') else {
        bail!("{key:?} is not partition/name, e.g. user/hello");
    };
    if partition.parse::<keel_core::Partition>().is_err() || name.is_empty() {
        bail!(
            "{key:?}: the partition must be one of workers, tasks, task_history, system_health, \
             configuration, user, and the name must not be empty"
        );
    }
    Ok(format!("/v1/kv/{partition}/{name}"))
}

/// Prints an answer; a non-2xx status becomes an error naming it.
fn finish(answer: keel_node::client::Answer) -> anyhow::Result<()> {
    println!("{}", answer.body);
    if !(200..300).contains(&answer.status) {
        bail!("the node answered {}", answer.status);
    }
    Ok(())
}

/// `keel health` and `keel check`: the summary as two tables.
fn health(
    addr: SocketAddr,
    method: &str,
    json: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let path = if method == "POST" {
        "/health/check"
    } else {
        "/health/summary"
    };
    let a = keel_node::client::request(addr, method, path, None, timeout)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let b = &a.body;
    let mut t = comfy_table::Table::new();
    t.set_header([
        "nodes",
        "online",
        "degraded",
        "offline",
        "workloads desired",
        "running",
        "failed",
    ]);
    t.add_row([
        b["total_nodes"].to_string(),
        b["online_nodes"].to_string(),
        b["degraded_nodes"].to_string(),
        b["offline_nodes"].to_string(),
        b["desired_workloads"].to_string(),
        b["running_workloads"].to_string(),
        b["failed_workloads"].to_string(),
    ]);
    println!("{t}");
    let mut d = comfy_table::Table::new();
    d.set_header(["node", "status", "leader", "draining", "workloads"]);
    for n in b["node_details"].as_array().into_iter().flatten() {
        d.add_row([
            n["node_key"].as_str().unwrap_or("?").to_string(),
            n["status"].as_str().unwrap_or("?").to_string(),
            if n["leader"] == true { "yes" } else { "" }.to_string(),
            if n["draining"] == true { "yes" } else { "" }.to_string(),
            n["workloads"].to_string(),
        ]);
    }
    println!("{d}");
    Ok(())
}

/// A path segment: the workload name, percent-encoded where it must be.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn workload(
    addr: SocketAddr,
    command: WorkloadCommand,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use keel_node::client::request;
    match command {
        WorkloadCommand::Submit {
            name,
            max_attempts,
            command,
        } => {
            let (program, args) = command
                .split_first()
                .context("name the program to run after `--`")?;
            let body = serde_json::json!({
                "name": name, "command": program, "args": args, "max_attempts": max_attempts,
            })
            .to_string();
            finish(request(
                addr,
                "POST",
                "/v1/workloads",
                Some(&body),
                timeout,
            )?)
        }
        WorkloadCommand::Stop { name } => {
            let path = format!("/v1/workloads/{}", segment(&name));
            finish(request(addr, "DELETE", &path, None, timeout)?)
        }
        WorkloadCommand::List { json } => {
            let a = request(addr, "GET", "/v1/workloads", None, timeout)?;
            if json || a.status != 200 {
                return finish(a);
            }
            let mut t = comfy_table::Table::new();
            t.set_header(["name", "status", "node", "epoch", "attempts", "desired"]);
            for w in a.body["workloads"].as_array().into_iter().flatten() {
                let text = |k: &str| match &w[k] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".to_string(),
                    v => v.to_string(),
                };
                t.add_row([
                    text("name"),
                    text("status"),
                    text("node"),
                    text("epoch"),
                    format!("{} of {}", text("attempts"), text("max_attempts")),
                    text("desired"),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        WorkloadCommand::Explain { name } => {
            let path = format!("/v1/workloads/{}", segment(&name));
            let a = request(addr, "GET", &path, None, timeout)?;
            if a.status != 200 {
                return finish(a);
            }
            let w = &a.body;
            println!(
                "{}: {} on {} (epoch {}, attempt {} of {})",
                w["name"].as_str().unwrap_or("?"),
                w["status"].as_str().unwrap_or("?"),
                w["node"].as_str().unwrap_or("no node"),
                w["epoch"],
                w["attempts"],
                w["max_attempts"]
            );
            for d in w["explain"].as_array().into_iter().flatten() {
                println!("  #{:<6} {}", d["index"], d["what"].as_str().unwrap_or(""));
            }
            Ok(())
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let timeout = std::time::Duration::from_secs(5);
    match cli.command {
        Command::Status { addr, json } => {
            let a = keel_node::client::request(addr, "GET", "/v1/cluster", None, timeout)?;
            if json || a.status != 200 {
                return finish(a);
            }
            let b = &a.body;
            let mut t = comfy_table::Table::new();
            t.set_header(["asked", "leader", "term", "commit index", "members"]);
            let members: Vec<String> = b["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            t.add_row([
                b["node"].as_str().unwrap_or("?").to_string(),
                b["leader"].as_str().unwrap_or("none").to_string(),
                b["term"].to_string(),
                b["commit_index"].to_string(),
                members.join(", "),
            ]);
            println!("{t}");
            Ok(())
        }
        Command::Kv { addr, command } => {
            let a = match command {
                KvCommand::Get { key } => {
                    keel_node::client::request(addr, "GET", &kv_path(&key)?, None, timeout)?
                }
                KvCommand::Put { key, value } => {
                    serde_json::from_str::<serde_json::Value>(&value).with_context(|| {
                        format!("the value {value:?} is not JSON (quote strings: '\"text\"')")
                    })?;
                    keel_node::client::request(addr, "PUT", &kv_path(&key)?, Some(&value), timeout)?
                }
                KvCommand::Del { key } => {
                    keel_node::client::request(addr, "DELETE", &kv_path(&key)?, None, timeout)?
                }
            };
            finish(a)
        }
        Command::Workload { addr, command } => workload(addr, command, timeout),
        Command::Health { addr, json } => health(addr, "GET", json, timeout),
        Command::Check { addr, json } => health(addr, "POST", json, timeout),
        Command::Recovery { addr, json } => {
            let a = keel_node::client::request(addr, "GET", "/recovery/metrics", None, timeout)?;
            if json || a.status != 200 {
                return finish(a);
            }
            let b = &a.body;
            let list = |k: &str| -> String {
                let names: Vec<String> = b[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect();
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            };
            let mut t = comfy_table::Table::new();
            t.set_header([
                "desired",
                "failed permanently",
                "pending",
                "backing off",
                "attempts",
            ]);
            t.add_row([
                b["desired_state_count"].to_string(),
                list("failed_workloads"),
                list("pending_workloads"),
                list("backing_off_workloads"),
                b["attempts_total"].to_string(),
            ]);
            println!("{t}");
            Ok(())
        }
        Command::TransferLeader { addr, to } => transfer_leader(addr, to, timeout),
        Command::Shim { lease_us, command } => {
            let Some((program, args)) = command.split_first() else {
                bail!("shim: no command given");
            };
            let control = std::io::BufReader::new(std::io::stdin());
            let code = keel_node::shim::run(
                program,
                args,
                std::time::Duration::from_micros(lease_us),
                control,
            );
            std::process::exit(code);
        }
        Command::Node {
            config,
            id,
            listen,
            http,
            peers,
            data_dir,
            cluster,
            log_format,
        } => {
            let file = match &config {
                Some(path) => FileConfig::load(path)?,
                None => FileConfig::default(),
            };
            let from_file = |what: &str| {
                format!(
                    "--{what} is required (or `{}` in the --config file)",
                    what.replace('-', "_")
                )
            };
            let id = match (id, &file.id) {
                (Some(id), _) => id,
                (None, Some(text)) => text.parse().with_context(|| {
                    format!("the config file's id {text:?} is not a node id like n1")
                })?,
                (None, None) => bail!(from_file("id")),
            };
            let listen = listen
                .or(file.listen)
                .with_context(|| from_file("listen"))?;
            let http = http.or(file.http).with_context(|| from_file("http"))?;
            let data_dir = data_dir
                .or(file.data_dir.clone())
                .with_context(|| from_file("data-dir"))?;
            let peers = if peers.is_empty() {
                let listed: Vec<String> =
                    file.peers.iter().map(|(n, a)| format!("{n}={a}")).collect();
                parse_peers(id, &listed).context("in the config file's [peers]")?
            } else {
                parse_peers(id, &peers)?
            };
            let log_format = match (log_format, file.log_format.as_deref()) {
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
            let mut transport = file.transport.clone().unwrap_or_default();
            if let Some(c) = cluster.or(file.cluster.clone()) {
                transport.cluster = c;
            }
            let spec = NodeSpec {
                transport,
                core: file.core.clone(),
                supervisor: file.supervisor.clone(),
                watchdog: Some(file.watchdog.clone()),
                shutdown: file.shutdown.clone(),
                storage: file.storage,
                ..NodeSpec::new(id, listen, http, peers, data_dir)
            };
            serve(spec)
        }
    }
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
