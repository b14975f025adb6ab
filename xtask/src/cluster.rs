//! `cargo xtask cluster up|down` and `cargo xtask chaos ...`: a local cluster of real `keel`
//! processes, driven as processes (the binary's CLI and signals), never as a library.
//! (`cluster add|remove` live in [`crate::cluster_members`].)
//!
//! State lives in `target/cluster/`: one data directory and log per node, and `nodes.json` with
//! each node's addresses, command line and process id.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_node::api::ClusterInfo;
use keel_node::client::find_leader;
use serde_json::{json, Value};

use crate::{ChaosAction, ClusterAction};

pub(crate) const BASE_PEER_PORT: u32 = 7001;
pub(crate) const BASE_HTTP_PORT: u32 = 8001;

pub(crate) fn dir() -> PathBuf {
    PathBuf::from("target/cluster")
}

pub(crate) fn keel() -> PathBuf {
    PathBuf::from("target/release/keel")
}

fn state_path() -> PathBuf {
    dir().join("nodes.json")
}

pub(crate) fn load() -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(state_path())
        .context("no local cluster (run `cargo xtask cluster up` first)")?;
    let v: Value = serde_json::from_str(&text).context("target/cluster/nodes.json is damaged")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

pub(crate) fn save(nodes: &[Value]) -> Result<()> {
    std::fs::write(state_path(), serde_json::to_string_pretty(nodes)?)
        .context("writing target/cluster/nodes.json")
}

pub(crate) fn spawn(args: &[String], log: &Path) -> Result<u32> {
    start(args, log).map(|child| child.id())
}

/// Starts `keel ARGS` with its output going to `log`; the caller may watch the process.
pub(crate) fn start(args: &[String], log: &Path) -> Result<std::process::Child> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Process::new(keel())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting target/release/keel")?;
    Ok(child)
}

/// `keel status --json` against one node; `None` if it does not answer.
pub(crate) fn status(http: &str) -> Option<ClusterInfo> {
    let out = Process::new(keel())
        .args(["status", "--json", "--addr", http])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The node that says it leads, asked through the CLI.
fn leader(nodes: &[Value]) -> Option<String> {
    find_leader(nodes, |n| status(n["http"].as_str()?)).map(|(_, c)| c.node)
}

pub(crate) fn signal(pid: u64, sig: &str) -> Result<()> {
    let ok = Process::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .context("running kill")?
        .success();
    if !ok {
        bail!("kill {sig} {pid} failed (is the node running?)");
    }
    Ok(())
}

pub fn cluster(action: ClusterAction) -> Result<ExitCode> {
    match action {
        ClusterAction::Up { nodes: n } => {
            if !(1..=9).contains(&n) {
                bail!("--nodes must be 1 to 9");
            }
            if state_path().exists() {
                bail!("a local cluster is already up (cargo xtask cluster down first)");
            }
            let built = Process::new(env!("CARGO"))
                .args(["build", "--release", "-p", "keel-node"])
                .status()
                .context("building keel")?;
            if !built.success() {
                bail!("building keel failed");
            }
            std::fs::create_dir_all(dir())?;
            let mut nodes = Vec::new();
            for i in 1..=n {
                let peers: Vec<String> = (1..=n)
                    .filter(|j| *j != i)
                    .map(|j| format!("n{j}=127.0.0.1:{}", BASE_PEER_PORT + j - 1))
                    .collect();
                let http = format!("127.0.0.1:{}", BASE_HTTP_PORT + i - 1);
                let mut args: Vec<String> = vec![
                    "node".into(),
                    "--id".into(),
                    format!("n{i}"),
                    "--listen".into(),
                    format!("127.0.0.1:{}", BASE_PEER_PORT + i - 1),
                    "--http".into(),
                    http.clone(),
                    "--data-dir".into(),
                    dir().join(format!("n{i}")).display().to_string(),
                ];
                if !peers.is_empty() {
                    args.push("--peers".into());
                    args.push(peers.join(","));
                }
                let log = dir().join(format!("n{i}.log"));
                let pid = spawn(&args, &log)?;
                nodes.push(json!({"id": format!("n{i}"), "http": http, "pid": pid,
                                  "args": args, "log": log.display().to_string()}));
            }
            save(&nodes)?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Some(l) = leader(&nodes) {
                    for node in &nodes {
                        println!(
                            "{}  http {}  pid {}  log {}",
                            node["id"].as_str().unwrap_or("?"),
                            node["http"].as_str().unwrap_or("?"),
                            node["pid"],
                            node["log"].as_str().unwrap_or("?")
                        );
                    }
                    println!(
                        "leader: {l} (after {:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bail!("no leader within 15 s; see the logs in target/cluster/")
        }
        ClusterAction::Add { learner } => crate::cluster_members::add(learner),
        ClusterAction::Remove { id } => crate::cluster_members::remove(&id),
        ClusterAction::Down => {
            for n in load()? {
                if let Some(pid) = n["pid"].as_u64() {
                    let _ = signal(pid, "-CONT");
                    let _ = signal(pid, "-TERM");
                }
            }
            std::fs::remove_file(state_path())?;
            println!("stopped; data kept in target/cluster/");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn resolve(nodes: &[Value], target: &str) -> Result<usize> {
    let id = if target == "leader" {
        leader(nodes).context("no node answers as leader right now")?
    } else {
        target.to_string()
    };
    nodes
        .iter()
        .position(|n| n["id"].as_str() == Some(id.as_str()))
        .with_context(|| {
            format!(
                "no node {id:?} in the local cluster (try n1..n{})",
                nodes.len()
            )
        })
}

pub fn chaos(action: ChaosAction) -> Result<ExitCode> {
    let mut nodes = load()?;
    let pid = |n: &Value| n["pid"].as_u64().unwrap_or(0);
    match action {
        ChaosAction::Kill { target } => {
            let i = resolve(&nodes, &target)?;
            signal(pid(&nodes[i]), "-KILL")?;
            println!("killed {}", nodes[i]["id"]);
        }
        ChaosAction::Pause { target } => {
            let i = resolve(&nodes, &target)?;
            signal(pid(&nodes[i]), "-STOP")?;
            println!("paused {}", nodes[i]["id"]);
        }
        ChaosAction::Resume { target } => {
            let i = resolve(&nodes, &target)?;
            signal(pid(&nodes[i]), "-CONT")?;
            println!("resumed {}", nodes[i]["id"]);
        }
        ChaosAction::Restart { target } => {
            let i = resolve(&nodes, &target)?;
            let _ = signal(pid(&nodes[i]), "-KILL");
            std::thread::sleep(Duration::from_millis(200));
            let args: Vec<String> = nodes[i]["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let log = PathBuf::from(
                nodes[i]["log"]
                    .as_str()
                    .unwrap_or("target/cluster/node.log"),
            );
            let new_pid = spawn(&args, &log)?;
            nodes[i]["pid"] = json!(new_pid);
            save(&nodes)?;
            println!("restarted {} (pid {new_pid})", nodes[i]["id"]);
        }
        ChaosAction::Watch { once } => loop {
            println!(
                "{:<5} {:<11} {:>5} {:>8}  http",
                "node", "leader", "term", "commit"
            );
            for n in &nodes {
                let http = n["http"].as_str().unwrap_or("?");
                match status(http) {
                    Some(s) => println!(
                        "{:<5} {:<11} {:>5} {:>8}  {http}",
                        n["id"].as_str().unwrap_or("?"),
                        s.leader.as_deref().unwrap_or("none"),
                        s.term.to_string(),
                        s.commit_index.to_string()
                    ),
                    None => println!(
                        "{:<5} {:<11} {:>5} {:>8}  {http}",
                        n["id"].as_str().unwrap_or("?"),
                        "(no answer)",
                        "-",
                        "-"
                    ),
                }
            }
            if once {
                break;
            }
            println!();
            std::thread::sleep(Duration::from_secs(1));
        },
    }
    Ok(ExitCode::SUCCESS)
}
