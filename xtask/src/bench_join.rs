//! `cargo xtask bench join`: how long a new node takes to join a cluster holding a large state.
//!
//! Three release `keel` processes on loopback are filled with `--mb` MiB of values (64 KiB
//! each, through the leader); then a fourth starts with `keel node --join`, is added as a
//! learner, receives the state as a snapshot in chunks (`snapshot_chunk_bytes`, 1 MiB by
//! default), and is promoted to voter once caught up. Reported: the time from the fourth
//! process's start to its promotion committed, and the fill rate for context.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_node::client::{request, Conn};

use crate::bench_node::{build, free_addr, keel_bin, settled, three_nodes, Node};

/// One value's size.
const VALUE_BYTES: usize = 64 << 10;

pub fn run(mb: u64) -> Result<Vec<String>> {
    if std::env::var_os("KEEL_BIN").is_none() {
        build()?;
    }
    let dir = Path::new("target/bench-join");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).context("creating target/bench-join")?;
    let mut nodes = three_nodes(dir)?;
    let (count, fill, elections) = fill(&nodes, mb)?;
    println!(
        "  filled {count} values of 64 KiB in {:.1} s ({elections} leader changes)",
        fill.as_secs_f64()
    );
    let l = settled(&nodes)?;
    let joined = join(&mut nodes, dir, l)?;
    Ok(vec![
        format!(
            "setup: 3 release `keel` processes on loopback (target/bench-join, {} binary), filled with {mb} MiB of state ({count} values of 64 KiB through the leader, {:.0} MiB/s, {elections} leader changes during the fill)",
            keel_bin().display(),
            mb as f64 / fill.as_secs_f64()
        ),
        format!(
            "a fourth node joins (`keel node --join`), receives the {mb} MiB state as a chunked snapshot and is promoted to voter: {:.1} s from its start to its promotion committed",
            joined.as_secs_f64()
        ),
    ])
}

/// Writes `mb` MiB of values through the leader (found again whenever a write is refused: a
/// leader that stalls writing a large snapshot may lose its leadership); how many, how long
/// it took, and how many times the leader changed.
fn fill(nodes: &[Node], mb: u64) -> Result<(u64, Duration, u32)> {
    let count = (mb << 20) / VALUE_BYTES as u64;
    let value = format!("\"{}\"", "x".repeat(VALUE_BYTES - 2));
    let mut leader = settled(nodes)?;
    let mut conn = Conn::open(nodes[leader].http, Duration::from_secs(30))?;
    let (start, mut changes) = (Instant::now(), 0);
    let mut i = 0;
    while i < count {
        let path = format!("/v1/kv/user/big{i}");
        match conn.request("PUT", &path, Some(&value)) {
            Ok(a) if a.status == 200 => i += 1,
            answer => {
                if start.elapsed() > Duration::from_secs(600) {
                    bail!("PUT {path} still failing after 600 s: {answer:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
                let now = settled(nodes)?;
                changes += u32::from(now != leader);
                leader = now;
                conn = Conn::open(nodes[leader].http, Duration::from_secs(30))?;
            }
        }
    }
    Ok((count, start.elapsed(), changes))
}

/// Starts n4 with `--join` through the leader and promotes it; the time from its start.
fn join(nodes: &mut Vec<Node>, dir: &Path, leader: usize) -> Result<Duration> {
    let via = nodes[leader].http;
    let http = free_addr()?;
    let mut n4 = Node {
        id: "n4".into(),
        http,
        args: vec![
            "node".into(),
            "--id".into(),
            "n4".into(),
            "--listen".into(),
            free_addr()?.to_string(),
            "--http".into(),
            http.to_string(),
            "--data-dir".into(),
            dir.join("n4").display().to_string(),
            "--join".into(),
            via.to_string(),
        ],
        log: dir.join("n4.log"),
        child: None,
    };
    let start = Instant::now();
    n4.start()?;
    nodes.push(n4);
    let until = start + Duration::from_secs(600);
    let mut last = String::new();
    while Instant::now() < until {
        if let Ok(a) = request(
            via,
            "POST",
            "/v1/members/n4/promote",
            None,
            Duration::from_secs(30),
        ) {
            if a.status == 200 {
                return Ok(start.elapsed());
            }
            last = format!("{} {}", a.status, a.body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("n4 was not promoted within 600 s; last answer {last} (logs under target/bench-join/)")
}
