//! The `keel` command-line tool: its commands and flags, and the dispatch to the module that
//! carries out each ([`cli`]). Nothing here talks to a node itself.
//!
//! It never holds cluster state and never reads answers by field name.

mod cli;

use std::net::SocketAddr;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use keel_core::NodeId;

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
    /// List the cluster's members; add, promote, remove them; replace one whose disk died.
    Member(cli::member::MemberArgs),
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
    Node(cli::node::NodeArgs),
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { addr, json } => cli::status::status(addr, json),
        Command::Kv { addr, command } => cli::kv::run(addr, command),
        Command::Workload { addr, command } => cli::workload::run(addr, command),
        Command::Member(args) => cli::member::run(args),
        Command::Health { addr, json } => cli::status::health(addr, "GET", json),
        Command::Check { addr, json } => cli::status::health(addr, "POST", json),
        Command::Recovery { addr, json } => cli::status::recovery(addr, json),
        Command::TransferLeader { addr, to } => cli::status::transfer_leader(addr, to),
        Command::Shim { lease_us, command } => shim(lease_us, &command),
        Command::Node(args) => cli::node::run(args),
    }
}

/// `keel shim`: runs one workload copy under the lease and exits with its code.
fn shim(lease_us: u64, command: &[String]) -> anyhow::Result<()> {
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
