//! The `keel` command-line tool.

use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Run a cluster node (not available yet: the production driver is still being built).
    Node,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Node => anyhow::bail!(
            "`keel node` is not available yet: the production driver (tokio transport, durable \
             log, HTTP API) has not been built. Use `cargo xtask sim` to run the cluster in the \
             simulator."
        ),
    }
}
