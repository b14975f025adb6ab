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
                    // Ctrl-C or SIGTERM: stop taking input and leave with the log synced (every
                    // step syncs before it answers, so there is nothing left to flush).
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = async {
                            match term.as_mut() {
                                Some(t) => { t.recv().await; }
                                None => std::future::pending::<()>().await,
                            }
                        } => {}
                    }
                    tracing::info!("shutting down");
                };
                server::run(spec, shutdown).await
            })?;
            Ok(())
        }
    }
}
