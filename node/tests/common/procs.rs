//! Real `keel` processes for the end-to-end tests: start, kill (SIGKILL), restart with the same
//! command line, and find the leader among them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_node::client::{cluster, find_leader, request, Answer};

/// A `keel node` process, killed when dropped.
pub struct Proc {
    pub id: String,
    pub http: SocketAddr,
    pub args: Vec<String>,
    pub child: Option<Child>,
}

impl Proc {
    /// `keel node --id ID --listen PEER --http HTTP --data-dir DIR/ID` and `extra`.
    pub fn node(
        id: &str,
        peer: SocketAddr,
        http: SocketAddr,
        dir: &Path,
        extra: &[String],
    ) -> Proc {
        let mut args: Vec<String> = ["node", "--id", id, "--listen", &peer.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--http".into(), http.to_string()]);
        args.extend(["--data-dir".into(), dir.join(id).display().to_string()]);
        args.extend(extra.iter().cloned());
        Proc {
            id: id.to_string(),
            http,
            args,
            child: None,
        }
    }

    /// Its data directory (the value of `--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        let at = self
            .args
            .iter()
            .position(|a| a == "--data-dir")
            .expect("--data-dir");
        PathBuf::from(&self.args[at + 1])
    }

    /// Starts it, its stderr going to `DIR/ID.log` (appended: a restart keeps the earlier lines).
    pub fn start(&mut self, dir: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", self.id)))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keel");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes bootstrapping a cluster (`--peers` naming each other), started, their data
/// directories and logs under `dir`.
pub fn three_nodes(dir: &Path) -> Vec<Proc> {
    let ids = ["n1", "n2", "n3"];
    let peer: Vec<SocketAddr> = ids.iter().map(|_| super::free_addr()).collect();
    let mut procs: Vec<Proc> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let peers: Vec<String> = (0..ids.len())
                .filter(|j| *j != i)
                .map(|j| format!("{}={}", ids[j], peer[j]))
                .collect();
            let extra = vec!["--peers".to_string(), peers.join(",")];
            Proc::node(id, peer[i], super::free_addr(), dir, &extra)
        })
        .collect();
    for p in &mut procs {
        p.start(dir);
    }
    procs
}

pub fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    request(addr, "GET", path, None, Duration::from_secs(2)).ok()
}

/// `PUT /v1/kv/user/{key}` with the JSON `value` through `addr`: true if acknowledged.
pub fn put(addr: SocketAddr, key: &str, value: &str) -> bool {
    let path = format!("/v1/kv/user/{key}");
    request(addr, "PUT", &path, Some(value), Duration::from_secs(5)).is_ok_and(|a| a.status == 200)
}

/// The live node that says it leads.
pub fn leader(procs: &[Proc]) -> Option<usize> {
    let live = procs.iter().enumerate().filter(|(_, p)| p.child.is_some());
    find_leader(live, |(_, p)| cluster(p.http, Duration::from_secs(2))).map(|((i, _), _)| i)
}

/// The leader, waiting up to 20 s for one other than `not`.
pub fn wait_for_leader(procs: &[Proc], not: Option<usize>) -> usize {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Some(l) = leader(procs).filter(|l| Some(*l) != not) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no leader within 20 s");
}
