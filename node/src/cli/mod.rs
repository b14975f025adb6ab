//! The `keel` CLI's subcommands, one module each: [`status`] (cluster, health, recovery,
//! leadership transfer), [`kv`], [`workload`], [`member`] (membership changes), and [`node`]
//! (run a node).
//!
//! Every query talks to a node over the HTTP API and reads its answers as [`keel_node::api`]
//! types; none of them holds cluster state of its own.

mod join;
pub mod kv;
pub mod member;
pub mod node;
pub mod status;
pub mod workload;

use std::time::Duration;

use anyhow::bail;
use keel_node::client::Answer;

/// How long a query waits to connect and for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Prints an answer as the node sent it; a non-2xx status becomes an error naming it.
pub fn finish(answer: Answer) -> anyhow::Result<()> {
    println!("{}", answer.body);
    if !(200..300).contains(&answer.status) {
        bail!("the node answered {}", answer.status);
    }
    Ok(())
}

/// The body of a 200 answer as `T`, or an error saying what the node sent instead.
pub fn parse<T: serde::de::DeserializeOwned>(answer: &Answer) -> anyhow::Result<T> {
    answer.parse().map_err(|e| {
        anyhow::anyhow!(
            "the node's answer is not what this keel expects ({e}): {}",
            answer.body
        )
    })
}
