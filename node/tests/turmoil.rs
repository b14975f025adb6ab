//! The real node (event loop, peer transport and codec, HTTP API, durable log, timers) on
//! turmoil's simulated network: three node hosts and a client host in one process, simulated
//! TCP with latency, partitions and host crashes, on simulated time.
//!
//! - Each node's data directory is created outside its host closure: turmoil re-runs that
//!   closure on `bounce`, and the restarted node must find what it synced.
//! - The event loop selects with `biased`, the node's seed is fixed (`NodeSpec::seed`), and all
//!   of its time is tokio's (simulated) clock, so a run repeats exactly without building with
//!   `--cfg tokio_unstable`; the determinism test checks that.
//! - The client script drives the faults: partitions through turmoil's in-simulation functions,
//!   crashes and restarts by asking the test loop (only `Sim` can `crash` and `bounce`).
#![cfg(not(madsim))]

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use keel_core::NodeId;
use keel_node::api::{ClusterInfo, KvValue, Written};
use keel_node::client::find_leader_async;
use keel_node::net::Net;
use keel_node::server::{self, NodeSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// turmoil's network behind the node's seam.
struct TurmoilNet;

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}

const PEER_PORT: u16 = 7000;
const HTTP_PORT: u16 = 8000;
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// What the client script asks of the test loop, which owns the `Sim`.
enum Fault {
    Crash(String),
    Bounce(String),
}

type Faults = Rc<RefCell<VecDeque<Fault>>>;

/// A simulation of three nodes with data under `dir`, seeded with `seed`.
fn simulation<'a>(seed: u64, dir: &std::path::Path) -> turmoil::Sim<'a> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(120))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build();
    for (i, name) in NODES.iter().enumerate() {
        // Outside the closure: it survives the closure's re-run on `bounce`.
        let data_dir: PathBuf = dir.join(name);
        let id = NodeId(i as u32 + 1);
        let node_seed = seed.wrapping_mul(31).wrapping_add(i as u64);
        sim.host(*name, move || {
            let data_dir = data_dir.clone();
            async move {
                // Addresses are looked up once the simulation runs (every host is known by then).
                let peers: BTreeMap<NodeId, SocketAddr> = NODES
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, n)| {
                        (
                            NodeId(j as u32 + 1),
                            SocketAddr::new(turmoil::lookup(*n), PEER_PORT),
                        )
                    })
                    .collect();
                // turmoil binds only the unspecified address (or loopback).
                let any = IpAddr::from([0, 0, 0, 0]);
                let spec = NodeSpec {
                    // The watchdog is a real thread on the real clock: not in a simulation.
                    watchdog: None,
                    seed: Some(node_seed),
                    ..NodeSpec::new(
                        id,
                        SocketAddr::new(any, PEER_PORT),
                        SocketAddr::new(any, HTTP_PORT),
                        peers,
                        data_dir,
                    )
                };
                server::run_on::<TurmoilNet>(spec, std::future::pending()).await?;
                Ok(())
            }
        });
    }
    sim
}

/// Runs `sim` until its client finishes, carrying out the faults the client asks for.
fn run(mut sim: turmoil::Sim<'_>, faults: &Faults) {
    loop {
        let done = sim.step().expect("the simulation failed");
        while let Some(f) = faults.borrow_mut().pop_front() {
            match f {
                Fault::Crash(h) => sim.crash(h),
                Fault::Bounce(h) => sim.bounce(h),
            }
        }
        if done {
            return;
        }
    }
}

/// A minimal HTTP/1.1 request over turmoil TCP; `None` if there is no answer within 2 s.
async fn http(host: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = turmoil::net::TcpStream::connect((host, HTTP_PORT))
            .await
            .ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// A 200 answer's body as one of the API's types.
fn parse<T: serde::de::DeserializeOwned>(body: &str) -> T {
    serde_json::from_str(body).expect("an answer of the API")
}

/// `GET /v1/cluster` of `host`, if it answers.
async fn cluster(host: &str) -> Option<ClusterInfo> {
    match http(host, "GET", "/v1/cluster", "").await {
        Some((200, body)) => Some(parse(&body)),
        _ => None,
    }
}

/// The node among `among` that says it leads (and its term), polled for at most 10 s.
async fn leader(among: &[&str]) -> (String, u64) {
    for _ in 0..100 {
        if let Some((h, c)) = find_leader_async(among.iter().copied(), |&h| cluster(h)).await {
            return (h.to_string(), c.term);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader among {among:?} within 10 s");
}

/// PUTs `value` at `user/key` through `host` until it is acknowledged (at most 10 s); returns
/// the revision.
async fn put(host: &str, key: &str, value: &str) -> u64 {
    for _ in 0..100 {
        if let Some((200, body)) = http(host, "PUT", &format!("/v1/kv/user/{key}"), value).await {
            return parse::<Written>(&body).revision;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} not acknowledged through {host} within 10 s");
}

/// `user/key` read through `host` (linearizable), retried for at most 10 s.
async fn get(host: &str, key: &str) -> String {
    for _ in 0..100 {
        match http(host, "GET", &format!("/v1/kv/user/{key}"), "").await {
            Some((200, body)) => return parse::<KvValue>(&body).value.to_string(),
            Some((404, _)) => return "missing".to_string(),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{key} not readable through {host} within 10 s");
}

/// Every node's `/metrics` (terms, commit indexes, leader changes, dropped messages, the commit
/// latency histogram in simulated time): a fine-grained fingerprint of the run for the
/// determinism test.
async fn metrics() -> Vec<String> {
    let mut lines = Vec::new();
    for n in NODES {
        let (status, body) = http(n, "GET", "/metrics", "").await.expect("metrics");
        assert_eq!(status, 200, "{body}");
        lines.extend(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    lines
}

fn ms() -> u128 {
    turmoil::elapsed().as_millis()
}

/// A follower that is not `leader`.
fn other(leader: &str, not: &[&str]) -> &'static str {
    NODES
        .iter()
        .find(|n| **n != leader && !not.contains(n))
        .expect("another node")
}

/// Scenario (a): a leader is cut off from both followers; the majority elects a new leader that
/// serves every acknowledged write; the old leader acknowledges nothing meanwhile, and after the
/// heal follows the new leader. Returns what the client saw, with simulated times.
fn partition_scenario(seed: u64) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = simulation(seed, dir.path());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    sim.client("client", async move {
        let note = |s: String| {
            let line = format!("{:>6} ms {s}", ms());
            eprintln!("{line}");
            log.borrow_mut().push(line);
        };
        let (old, term) = leader(&NODES).await;
        note(format!("leader {old} term {term}"));
        let f = other(&old, &[]);
        let r1 = put(f, "k1", r#""one""#).await;
        note(format!("k1 acknowledged through {f} at revision {r1}"));

        let majority: Vec<&str> = NODES.iter().copied().filter(|n| *n != old).collect();
        for m in &majority {
            turmoil::partition(old.as_str(), *m);
        }
        note(format!("{old} cut off from {majority:?}"));
        let (new, new_term) = leader(&majority).await;
        assert!(new_term > term, "new term {new_term} after {term}");
        note(format!("leader {new} term {new_term}"));
        let r2 = put(&new, "k2", r#""two""#).await;
        note(format!("k2 acknowledged through {new} at revision {r2}"));
        assert_eq!(get(&new, "k1").await, r#""one""#);
        assert_eq!(get(&new, "k2").await, r#""two""#);
        // The cut-off node acknowledges no write.
        let cut = http(&old, "PUT", "/v1/kv/user/k3", r#""three""#).await;
        assert!(
            !matches!(cut, Some((200, _))),
            "a write acknowledged by the cut-off {old}: {cut:?}"
        );
        note(format!(
            "write through cut-off {old}: {}",
            cut.map_or("no answer".to_string(), |(s, _)| s.to_string())
        ));

        for m in &majority {
            turmoil::repair(old.as_str(), *m);
        }
        let healed = ms();
        note("healed".to_string());
        // The old leader follows the new one and serves what was acknowledged.
        let mut followed = false;
        for _ in 0..100 {
            if let Some(c) = cluster(&old).await {
                if c.leader.as_deref() == Some(new.as_str()) {
                    followed = true;
                    note(format!("{old} follows {new} in term {}", c.term));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            followed,
            "{old} did not follow {new} within 10 s of the heal"
        );
        assert_eq!(get(&old, "k1").await, r#""one""#);
        assert_eq!(get(&old, "k2").await, r#""two""#);
        assert_eq!(get(&old, "k3").await, "missing");
        let mut commits = Vec::new();
        for n in NODES {
            for _ in 0..100 {
                let c = cluster(n).await.expect("every node answers");
                if c.commit_index >= r2 {
                    commits.push(format!("{n}={}", c.commit_index));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(commits.len(), 3, "every node commits revision {r2}");
        note(format!("commit indexes {commits:?}"));
        // turmoil drops what a partitioned stream carried, so both directions' connections
        // between the old leader and the others are dead. The first side to notice gives its
        // stuck write up after io_timeout (2 s), reconnects, and its handshake makes the other
        // side replace its own dead connection at once instead of after another io_timeout.
        let took = ms() - healed;
        assert!(
            took < 4_000,
            "every node committed revision {r2} {took} ms after the heal"
        );
        let fingerprint = metrics().await;
        log.borrow_mut().extend(fingerprint);
        Ok(())
    });
    run(sim, &Rc::new(RefCell::new(VecDeque::new())));
    let out = seen.borrow().clone();
    out
}

/// Scenario (b): the leader's host crashes (its tasks and sockets gone, its data directory
/// kept); the others elect a leader and take more writes; the host restarts from its data
/// directory, catches up, and every acknowledged write is readable through it.
fn crash_scenario(seed: u64) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = simulation(seed, dir.path());
    let faults: Faults = Rc::new(RefCell::new(VecDeque::new()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (log, ask) = (seen.clone(), faults.clone());
    sim.client("client", async move {
        let note = |s: String| {
            let line = format!("{:>6} ms {s}", ms());
            eprintln!("{line}");
            log.borrow_mut().push(line);
        };
        let (old, term) = leader(&NODES).await;
        note(format!("leader {old} term {term}"));
        let mut acked = Vec::new();
        for i in 0..5 {
            let via = NODES[i % 3];
            let (k, v) = (format!("a{i}"), format!("{i}"));
            let r = put(via, &k, &v).await;
            note(format!("{k} acknowledged through {via} at revision {r}"));
            acked.push((k, v));
        }
        ask.borrow_mut().push_back(Fault::Crash(old.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        note(format!("{old} crashed"));
        let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != old).collect();
        let (new, new_term) = leader(&rest).await;
        assert!(new_term > term);
        note(format!("leader {new} term {new_term}"));
        let mut last = 0;
        for i in 5..10 {
            let via = rest[i % 2];
            let (k, v) = (format!("a{i}"), format!("{i}"));
            last = put(via, &k, &v).await;
            note(format!("{k} acknowledged through {via} at revision {last}"));
            acked.push((k, v));
        }
        // Down long enough for the others' reconnect backoff to reach its cap (1 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        ask.borrow_mut().push_back(Fault::Bounce(old.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let restarted = ms();
        note(format!("{old} restarted"));
        let mut caught_up = None;
        for _ in 0..1000 {
            if let Some(c) = cluster(&old).await {
                if c.commit_index >= last {
                    caught_up = Some(c);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let c = caught_up.expect("the restarted node catches up within 10 s");
        note(format!(
            "{old} caught up: leader {} term {} commit {}",
            c.leader.as_deref().unwrap_or("none"),
            c.term,
            c.commit_index
        ));
        // The leader reconnects as soon as the restarted node connects to it, not when its
        // backoff (up to 1 s by now) runs out.
        let took = ms() - restarted;
        assert!(
            took < 100,
            "{old} took {took} ms after its restart to catch up"
        );
        for (k, v) in &acked {
            assert_eq!(&get(&old, k).await, v, "{k} through the restarted {old}");
        }
        note(format!(
            "all {} acknowledged writes read through {old}",
            acked.len()
        ));
        let fingerprint = metrics().await;
        log.borrow_mut().extend(fingerprint);
        Ok(())
    });
    run(sim, &faults);
    let out = seen.borrow().clone();
    out
}

#[test]
fn a_partitioned_leader_is_replaced_and_follows_after_the_heal() {
    partition_scenario(7);
}

#[test]
fn a_crashed_host_restarts_from_its_data_directory_and_catches_up() {
    crash_scenario(11);
}

/// The same seed gives the same run: the same leaders and terms, revisions, and simulated times
/// at which the client saw them, for both scenarios (each run twice, in turn).
#[test]
fn the_same_seed_repeats_the_same_run() {
    for scenario in [partition_scenario, crash_scenario] {
        let a = scenario(23);
        let b = scenario(23);
        assert_eq!(a, b, "two runs of seed 23 differ");
    }
}
