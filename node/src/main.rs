//! The `keel` command-line tool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use keel_core::NodeId;
use keel_node::server::{self, NodeSpec};
use keel_node::transport::TransportConfig;

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
enum Command {
    /// Run a cluster node.
    Node {
        /// This node's id, e.g. n1.
        #[arg(long)]
        id: NodeId,
        /// Address peers connect to, e.g. 127.0.0.1:7001.
        #[arg(long)]
        listen: SocketAddr,
        /// Address of the HTTP API, e.g. 127.0.0.1:8001.
        #[arg(long)]
        http: SocketAddr,
        /// The other members: n2=127.0.0.1:7002,n3=127.0.0.1:7003.
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        /// Where the log and snapshots live.
        #[arg(long)]
        data_dir: PathBuf,
        /// The cluster's name; peers of another cluster are refused.
        #[arg(long, default_value = "keel")]
        cluster: String,
        /// Log lines as text or JSON (filter with RUST_LOG, default info).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Node {
            id,
            listen,
            http,
            peers,
            data_dir,
            cluster,
            log_format,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            match log_format {
                LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
                LogFormat::Json => tracing_subscriber::fmt()
                    .json()
                    .with_env_filter(filter)
                    .init(),
            }
            let spec = NodeSpec {
                id,
                listen,
                http,
                peers: parse_peers(id, &peers)?,
                data_dir,
                transport: TransportConfig {
                    cluster,
                    ..TransportConfig::default()
                },
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                    tracing::info!("shutting down");
                };
                server::run(spec, shutdown).await
            })?;
            Ok(())
        }
    }
}
