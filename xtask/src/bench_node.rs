//! `cargo xtask bench node`: a 3-node cluster of release `keel` processes on loopback, with
//! data directories on the machine's disk (every write fsynced on a majority before it is
//! acknowledged).
//!
//! - Durable writes: 1 and 64 concurrent clients, each on its own kept-alive connection to the
//!   leader, PUT one small value after another for a fixed time; writes/s and latency p50/p99.
//! - Failover: the leader is killed with SIGKILL; a client writing through the survivors (a
//!   fresh connection per try, 20 ms timeout) measures the time from the kill to the first
//!   acknowledged write. The killed node is restarted and catches up before the next trial.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_node::client::{cluster, find_leader, request, Conn};

pub(crate) struct Node {
    pub id: String,
    pub http: SocketAddr,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let child = Command::new(keel_bin())
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("KEEL_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting target/release/keel")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), so that no outgoing
/// connection takes it before the node binds it.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..2000 {
        let port = 24_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 2000;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no free port in 24000..26000")
}

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the failover client waits for one try before it tries again (on the next
/// survivor): a try forwarded to the dead leader hangs, so this bounds the measurement's
/// resolution.
const TRY_TIMEOUT: Duration = Duration::from_millis(20);

/// How long a look at one node's view of the cluster may take.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// Whom node `n` takes for the leader, if it is running and answers.
fn leader_seen_by(n: &Node) -> Option<String> {
    n.child.as_ref()?;
    cluster(n.http, ASK_TIMEOUT)?.leader
}

/// The index of the node that leads (by its own account), among running ones.
fn leader(nodes: &[Node]) -> Option<usize> {
    let running = nodes.iter().enumerate().filter(|(_, n)| n.child.is_some());
    find_leader(running, |(_, n)| cluster(n.http, ASK_TIMEOUT)).map(|((i, _), _)| i)
}

/// Waits until every running node follows one leader; returns it.
pub(crate) fn settled(nodes: &[Node]) -> Result<usize> {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Some(l) = leader(nodes) {
            let all = nodes
                .iter()
                .filter(|n| n.child.is_some())
                .all(|n| leader_seen_by(n).as_deref() == Some(nodes[l].id.as_str()));
            if all {
                return Ok(l);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the cluster did not settle on a leader within 30 s (logs under target/bench-node/)")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Load {
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` writers against `leader` for `length`.
fn load(leader: SocketAddr, clients: usize, length: Duration) -> Result<Load> {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let results: Vec<Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let stop = &stop;
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut conn = Conn::open(leader, TIMEOUT)?;
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("/v1/kv/user/bench-{c}-{}", i % 64);
                        let t = Instant::now();
                        let a = conn.request("PUT", &path, Some(&i.to_string()))?;
                        if a.status != 200 {
                            bail!("a write was refused: {} {}", a.status, a.body);
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a client thread panicked"))
            })
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_by(f64::total_cmp);
    Ok(Load {
        writes_per_sec: all.len() as f64 / wall,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    })
}

/// Kills the leader; returns the time to the first write acknowledged by the survivors.
fn failover_trial(nodes: &mut [Node], trial: usize) -> Result<f64> {
    let l = settled(nodes)?;
    let survivors: Vec<SocketAddr> = (0..nodes.len())
        .filter(|i| *i != l)
        .map(|i| nodes[i].http)
        .collect();
    let killed = Instant::now();
    nodes[l].kill();
    let mut k = 0usize;
    let took = loop {
        let via = survivors[k % survivors.len()];
        k += 1;
        let path = format!("/v1/kv/user/failover-{trial}");
        if let Ok(a) = request(via, "PUT", &path, Some("1"), TRY_TIMEOUT) {
            if a.status == 200 {
                break killed.elapsed();
            }
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("trial {trial}: no write acknowledged within 30 s of killing the leader");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    nodes[l].start()?;
    settled(nodes)?;
    Ok(took.as_secs_f64() * 1e3)
}

/// Three nodes bootstrapping a cluster, their data directories and logs under `dir`, started.
pub(crate) fn three_nodes(dir: &Path) -> Result<Vec<Node>> {
    let ids = ["n1", "n2", "n3"];
    let peer: Vec<SocketAddr> = ids.iter().map(|_| free_addr()).collect::<Result<_>>()?;
    let mut nodes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let peers: Vec<String> = (0..ids.len())
            .filter(|j| *j != i)
            .map(|j| format!("{}={}", ids[j], peer[j]))
            .collect();
        let http = free_addr()?;
        nodes.push(Node {
            id: id.to_string(),
            http,
            args: vec![
                "node".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                peer[i].to_string(),
                "--http".into(),
                http.to_string(),
                "--peers".into(),
                peers.join(","),
                "--data-dir".into(),
                dir.join(id).display().to_string(),
            ],
            log: dir.join(format!("{id}.log")),
            child: None,
        });
    }
    for n in &mut nodes {
        n.start()?;
    }
    Ok(nodes)
}

/// The binary measured: `KEEL_BIN` if set (to compare two builds back to back), else the
/// release build of this tree.
pub(crate) fn keel_bin() -> PathBuf {
    std::env::var_os("KEEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/keel"))
}

pub fn run(runs: u64, trials: usize, seconds: u64) -> Result<Vec<String>> {
    if std::env::var_os("KEEL_BIN").is_none() {
        build()?;
    }
    measure(runs, trials, seconds)
}

pub(crate) fn build() -> Result<()> {
    let built = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "keel-node",
            "--bin",
            "keel",
        ])
        .status()
        .context("running cargo build")?;
    if !built.success() {
        bail!("building keel failed");
    }
    Ok(())
}

fn measure(runs: u64, trials: usize, seconds: u64) -> Result<Vec<String>> {
    let dir = Path::new("target/bench-node");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).context("creating target/bench-node")?;
    let mut nodes = three_nodes(dir)?;
    let runs = runs.max(1);
    let length = Duration::from_secs(seconds.max(1));
    let mut lines = Vec::new();
    lines.push(format!(
        "setup: 3 release `keel` processes on loopback, data directories on this machine's disk (target/bench-node), every write fsynced by a majority before its answer; default timings; {} s per run, median of {runs} runs",
        length.as_secs()
    ));
    for clients in [1usize, 64] {
        let (mut tput, mut p50, mut p99) = (vec![], vec![], vec![]);
        for run in 1..=runs {
            let l = settled(&nodes)?;
            let r = load(nodes[l].http, clients, length)?;
            println!(
                "  {clients} client(s), run {run}: {:.0} writes/s, p50 {:.3} ms, p99 {:.3} ms",
                r.writes_per_sec, r.p50_ms, r.p99_ms
            );
            tput.push(r.writes_per_sec);
            p50.push(r.p50_ms);
            p99.push(r.p99_ms);
        }
        lines.push(format!(
            "durable writes, {clients} client{}: {:.0} writes/s, latency p50 {:.3} ms, p99 {:.3} ms",
            if clients == 1 { "" } else { "s" },
            crate::median(tput),
            crate::median(p50),
            crate::median(p99)
        ));
    }
    if trials == 0 {
        return Ok(lines);
    }
    let mut took = Vec::new();
    for t in 1..=trials {
        let ms = failover_trial(&mut nodes, t)?;
        println!("  failover trial {t}: {ms:.0} ms");
        took.push(ms);
    }
    took.sort_by(f64::total_cmp);
    lines.push(format!(
        "failover (SIGKILL of the leader to the first acknowledged write through a survivor), {trials} trials: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN)
    ));
    Ok(lines)
}
