//! `keel kv get|put|del`: one key through any node.
//!
//! It never retries: one request, its answer printed as the node sent it.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use keel_node::client::request;

use super::{finish, TIMEOUT};
use crate::KvCommand;

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

/// Runs one `keel kv` command against `addr` and prints the answer.
pub fn run(addr: SocketAddr, command: KvCommand) -> anyhow::Result<()> {
    let a = match command {
        KvCommand::Get { key } => request(addr, "GET", &kv_path(&key)?, None, TIMEOUT)?,
        KvCommand::Put { key, value } => {
            serde_json::from_str::<serde_json::Value>(&value).with_context(|| {
                format!("the value {value:?} is not JSON (quote strings: '\"text\"')")
            })?;
            request(addr, "PUT", &kv_path(&key)?, Some(&value), TIMEOUT)?
        }
        KvCommand::Del { key } => request(addr, "DELETE", &kv_path(&key)?, None, TIMEOUT)?,
    };
    finish(a)
}
