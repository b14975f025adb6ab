//! `cargo xtask cluster add|remove`: grow the local cluster by one `keel` process joining it
//! (`keel node --join`, then `keel member add`), or shrink it (`keel member remove`, then stop
//! that process).
//!
//! Owns: choosing the new node's id, ports and data directory, and keeping
//! `target/cluster/nodes.json` in step. Never: a membership change of its own making (the
//! `keel member` commands make them), and never a data directory that already exists.

use std::net::TcpListener;
use std::process::{Command as Process, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cluster::{
    dir, keel, load, save, signal, start, status, BASE_HTTP_PORT, BASE_PEER_PORT,
};

/// The number of a node id (`n7` → 7).
fn number(id: &str) -> Option<u32> {
    id.strip_prefix('n')?.parse().ok()
}

/// One past the highest id the local cluster ever used: in `nodes.json` or as a data directory
/// (a removed node's directory stays, and a new node must not start on it).
fn next_id(nodes: &[Value]) -> Result<u32> {
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir()).context("reading target/cluster/")? {
        names.extend(entry?.file_name().to_str().map(String::from));
    }
    let ids = nodes.iter().filter_map(|n| n["id"].as_str());
    Ok(above(ids.chain(names.iter().map(String::as_str))))
}

/// One past the highest node number among `names` (1 if there is none).
fn above<'a>(names: impl Iterator<Item = &'a str>) -> u32 {
    names.filter_map(number).max().unwrap_or(0) + 1
}

/// The HTTP address of a running member other than `not`: the leader if one answers as such.
fn via(nodes: &[Value], not: Option<&str>) -> Result<String> {
    let others: Vec<&Value> = nodes.iter().filter(|n| n["id"].as_str() != not).collect();
    let answering: Vec<(String, bool)> = others
        .iter()
        .filter_map(|n| {
            let http = n["http"].as_str()?;
            status(http).map(|c| (http.to_string(), c.leads()))
        })
        .collect();
    answering
        .iter()
        .find(|(_, leads)| *leads)
        .or_else(|| answering.first())
        .map(|(http, _)| http.clone())
        .context("no other node of the local cluster answers (cargo xtask chaos watch)")
}

/// Runs `keel member ARGS`, its output shown as it comes.
fn keel_member(args: &[&str]) -> Result<bool> {
    let ok = Process::new(keel())
        .arg("member")
        .args(args)
        .status()
        .context("running target/release/keel member")?
        .success();
    Ok(ok)
}

/// `keel node` for the new node `id`, joining through the member whose HTTP address is `member`.
fn node_args(id: &str, peer: &str, http: &str, member: &str) -> Vec<String> {
    let data = dir().join(id).display().to_string();
    let join = format!("http://{member}");
    [
        "node",
        "--id",
        id,
        "--listen",
        peer,
        "--http",
        http,
        "--data-dir",
        &data,
        "--join",
        &join,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `cargo xtask cluster add`: start `nK` on the next free id and ports, joining through a
/// running member, and make it a member (a learner, promoted once caught up unless `learner`).
pub fn add(learner: bool) -> Result<ExitCode> {
    let mut nodes = load()?;
    if !keel().exists() {
        bail!("target/release/keel is missing (cargo xtask cluster up builds it)");
    }
    let k = next_id(&nodes)?;
    let id = format!("n{k}");
    let peer = format!("127.0.0.1:{}", BASE_PEER_PORT + k - 1);
    let http = format!("127.0.0.1:{}", BASE_HTTP_PORT + k - 1);
    for addr in [&peer, &http] {
        TcpListener::bind(addr.as_str())
            .with_context(|| format!("{addr}, the next free node's port, is taken"))?;
    }
    let member = via(&nodes, None)?;
    let args = node_args(&id, &peer, &http, &member);
    let log = dir().join(format!("{id}.log"));
    let mut child = start(&args, &log)?;
    let pid = child.id();
    println!(
        "{id}  http {http}  peer {peer}  pid {pid}  log {}",
        log.display()
    );
    nodes.push(json!({"id": id, "http": http, "pid": pid,
                      "args": args, "log": log.display().to_string()}));
    save(&nodes)?;
    if let Err(e) = wait_until_it_answers(&mut child, &id, &http, &log) {
        if child.try_wait()?.is_some() {
            nodes.pop();
            save(&nodes)?;
        }
        return Err(e);
    }
    let url = format!("http://{http}");
    let mut add = vec!["add", url.as_str(), "--addr", member.as_str()];
    if learner {
        add.push("--learner");
    }
    if !keel_member(&add)? {
        bail!(
            "{id} runs but is not a full member: continue with target/release/keel member {}",
            add.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until the new node answers on `http`. A node that exits first is reported with the
/// end of its log; one that never answers is left running (`cluster down` stops it).
fn wait_until_it_answers(
    child: &mut std::process::Child,
    id: &str,
    http: &str,
    log: &std::path::Path,
) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if status(http).is_some() {
            return Ok(());
        }
        if let Some(code) = child.try_wait().context("watching the new node")? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{id} exited ({code}) before it answered (this needs a keel whose `keel node` \
                 takes --join); the end of {}:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{id} does not answer on {http} after 15 s; it is left running (cargo xtask cluster \
         down stops it); see {}",
        log.display()
    )
}

/// `cargo xtask cluster remove nK`: `keel member remove` through another node, then stop nK's
/// process (its data stays in target/cluster/nK).
pub fn remove(id: &str) -> Result<ExitCode> {
    let mut nodes = load()?;
    let Some(i) = nodes.iter().position(|n| n["id"].as_str() == Some(id)) else {
        let ids: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
        bail!(
            "no node {id:?} in the local cluster (it has {})",
            ids.join(", ")
        );
    };
    let member = via(&nodes, Some(id))?;
    if !keel_member(&["remove", id, "--addr", &member])? {
        bail!("{id} is still a member (see above); its process keeps running");
    }
    if let Some(pid) = nodes[i]["pid"].as_u64() {
        let _ = signal(pid, "-CONT");
        signal(pid, "-TERM")?;
    }
    nodes.remove(i);
    save(&nodes)?;
    println!(
        "stopped {id}; its data stays in {}",
        dir().join(id).display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_id_is_above_every_id_in_use() {
        assert_eq!(number("n12"), Some(12));
        assert_eq!(number("N1"), None);
        assert_eq!(
            above(["n1", "n7", "n3.log", "nodes.json", "n5"].into_iter()),
            8
        );
        assert_eq!(above(std::iter::empty()), 1);
    }
}
