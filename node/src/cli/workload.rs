//! `keel workload submit|stop|list|explain`: workloads through any node.
//!
//! It never retries and keeps no state: one request per command.

use std::net::SocketAddr;

use anyhow::Context;
use keel_core::Desired;
use keel_node::api::{SubmitRequest, WorkloadInfo, WorkloadList};
use keel_node::client::request;

use super::{finish, parse, TIMEOUT};
use crate::WorkloadCommand;

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

/// Runs one `keel workload` command against `addr`.
pub fn run(addr: SocketAddr, command: WorkloadCommand) -> anyhow::Result<()> {
    match command {
        WorkloadCommand::Submit {
            name,
            max_attempts,
            command,
        } => submit(addr, name, max_attempts, command),
        WorkloadCommand::Stop { name } => {
            let path = format!("/v1/workloads/{}", segment(&name));
            finish(request(addr, "DELETE", &path, None, TIMEOUT)?)
        }
        WorkloadCommand::List { json } => list(addr, json),
        WorkloadCommand::Explain { name } => explain(addr, &name),
    }
}

fn submit(
    addr: SocketAddr,
    name: String,
    max_attempts: u32,
    command: Vec<String>,
) -> anyhow::Result<()> {
    let (program, args) = command
        .split_first()
        .context("name the program to run after `--`")?;
    let body = SubmitRequest {
        name,
        command: program.clone(),
        args: args.to_vec(),
        max_attempts: Some(max_attempts),
        ..SubmitRequest::default()
    };
    let body = serde_json::to_string(&body)?;
    finish(request(
        addr,
        "POST",
        "/v1/workloads",
        Some(&body),
        TIMEOUT,
    )?)
}

/// The word the API uses for a desired state.
fn desired_word(d: Desired) -> &'static str {
    match d {
        Desired::Running => "running",
        Desired::Stopped => "stopped",
    }
}

/// Every workload, as a table (or the answer as JSON).
fn list(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let a = request(addr, "GET", "/v1/workloads", None, TIMEOUT)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let answer: WorkloadList = parse(&a)?;
    let mut t = comfy_table::Table::new();
    t.set_header(["name", "status", "node", "epoch", "attempts", "desired"]);
    for w in &answer.workloads {
        t.add_row([
            w.name.clone(),
            w.status.clone(),
            w.node.clone().unwrap_or_else(|| "-".to_string()),
            w.epoch.to_string(),
            format!("{} of {}", w.attempts, w.max_attempts),
            desired_word(w.desired).to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// One workload and the decisions that made it what it is.
fn explain(addr: SocketAddr, name: &str) -> anyhow::Result<()> {
    let path = format!("/v1/workloads/{}", segment(name));
    let a = request(addr, "GET", &path, None, TIMEOUT)?;
    if a.status != 200 {
        return finish(a);
    }
    let w: WorkloadInfo = parse(&a)?;
    println!(
        "{}: {} on {} (epoch {}, attempt {} of {})",
        w.name,
        w.status,
        w.node.as_deref().unwrap_or("no node"),
        w.epoch,
        w.attempts,
        w.max_attempts
    );
    for d in &w.explain {
        println!("  #{} {}", d.index, d.what);
    }
    Ok(())
}
