//! Membership changes on real `keel` processes under a steady write load: three nodes grow to
//! five (`keel node --join`, then promoted), two are removed (the leader among them), one
//! loses its disk and comes back with its old command line (a new incarnation that must not
//! vote), and `keel member replace` brings the cluster back to full strength. At the end every
//! acknowledged write reads back with its value, and a workload never ran two copies at once
//! (the process table sampled every 20 ms).
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::free_addr;
use common::procs::{get, leader, put, three_nodes, wait_for_leader, Proc};
use keel_node::api::{ClusterInfo, KvValue, MembersInfo};
use keel_node::client::{cluster, request};

const WAIT: Duration = Duration::from_secs(30);

fn members(via: SocketAddr) -> Option<MembersInfo> {
    let a = get(via, "/v1/members")?;
    (a.status == 200).then(|| a.parse().ok()).flatten()
}

/// Retries `step` (an HTTP request through `via`) until it answers 200.
fn until_ok(what: &str, mut step: impl FnMut() -> Option<(u16, String)>) {
    let until = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < until {
        match step() {
            Some((200, _)) => return,
            other => last = other,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: no success within {WAIT:?}; last answer {last:?}");
}

fn call(via: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let a = request(via, method, path, body, Duration::from_secs(10)).ok()?;
    Some((a.status, a.body.to_string()))
}

/// Removes a member through `via`; a retry finding it gone (an earlier attempt's answer was
/// lost when the leader stepped down) counts as done.
fn remove(via: SocketAddr, id: &str) -> Option<(u16, String)> {
    match call(via, "DELETE", &format!("/v1/members/{id}"), None)? {
        (409, body) if body.contains("is not a member") => Some((200, body)),
        other => Some(other),
    }
}

/// Waits until `check` holds for the configuration read through `via`.
fn wait_members(via: SocketAddr, what: &str, check: impl Fn(&MembersInfo) -> bool) -> MembersInfo {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let Some(m) = members(via).filter(|m| m.committed && check(m)) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {WAIT:?}; last {:?}", members(via));
}

fn voters(m: &MembersInfo) -> Vec<String> {
    m.members
        .iter()
        .filter(|x| x.voter)
        .map(|x| x.id.clone())
        .collect()
}

/// Writes `w<k> = k` through the nodes in `via`, in turn, until `stop`; the keys acknowledged.
fn writer(via: Arc<Mutex<Vec<SocketAddr>>>, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let nodes = via.lock().expect("lock").clone();
        let node = nodes[k as usize % nodes.len()];
        if put(node, &format!("w{k}"), &k.to_string()) {
            acked.push(k);
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    acked
}

/// How many processes run `sleep <marker>` now.
fn copies(marker: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"sleep"))
                && args.get(1).is_some_and(|a| *a == marker.as_bytes())
        })
        .count()
}

fn info(p: &Proc) -> Option<ClusterInfo> {
    cluster(p.http, Duration::from_secs(2))
}

#[test]
fn grow_shrink_wipe_and_replace_real_nodes_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs = three_nodes(dir.path());
    let l = wait_for_leader(&procs, None);

    // A workload, and a sampler of how many copies of it run.
    let marker = format!("{}", 900_000 + std::process::id() % 90_000);
    let spec = format!(r#"{{"name":"sleeper","command":"sleep","args":["{marker}"]}}"#);
    until_ok("submit the workload", || {
        call(procs[l].http, "POST", "/v1/workloads", Some(&spec))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most, marker) = (stop.clone(), most.clone(), marker.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(copies(&marker), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let via = Arc::new(Mutex::new(procs.iter().map(|p| p.http).collect::<Vec<_>>()));
    let load = {
        let (via, stop) = (via.clone(), stop.clone());
        std::thread::spawn(move || writer(via, stop))
    };

    // Grow to five: two nodes join through n1 and are promoted once caught up.
    let join = procs[0].http.to_string();
    for id in ["n4", "n5"] {
        let extra = vec!["--join".to_string(), join.clone()];
        let mut p = Proc::node(id, free_addr(), free_addr(), dir.path(), &extra);
        p.start(dir.path());
        wait_members(procs[0].http, &format!("{id} joins as a learner"), |m| {
            m.members.iter().any(|x| x.id == id && !x.voter)
        });
        let path = format!("/v1/members/{id}/promote");
        until_ok(&format!("promote {id}"), || {
            call(procs[0].http, "POST", &path, None)
        });
        via.lock().expect("lock").push(p.http);
        procs.push(p);
    }
    let m = wait_members(procs[0].http, "five voters", |m| voters(m).len() == 5);
    assert_eq!(voters(&m), ["n1", "n2", "n3", "n4", "n5"]);

    // Shrink to three: the leader first (asked through another node), then one more.
    let l = wait_for_leader(&procs, None);
    let other = (0..procs.len()).find(|i| *i != l).expect("another node");
    let id = procs[l].id.clone();
    until_ok("remove the leader", || remove(procs[other].http, &id));
    let nl = wait_for_leader(&procs, Some(l));
    let removed_leader = procs[l].id.clone();
    procs[l].kill();
    // A joined node when one is left, so that two bootstrap members stay: the one wiped below
    // finds the cluster through the other, the only live member in its --peers.
    let second = (0..procs.len())
        .rev()
        .find(|i| *i != l && *i != nl && procs[*i].child.is_some())
        .expect("a follower");
    let id = procs[second].id.clone();
    until_ok("remove a follower", || remove(procs[nl].http, &id));
    procs[second].kill();
    let gone = [removed_leader, procs[second].id.clone()];
    via.lock()
        .expect("lock")
        .retain(|a| *a != procs[l].http && *a != procs[second].http);
    let m = wait_members(procs[nl].http, "three voters", |m| voters(m).len() == 3);
    assert!(voters(&m).iter().all(|v| !gone.contains(v)), "{m:?}");

    // A bootstrap member that is still a voter loses its disk and restarts with its old
    // command line: a new incarnation that does not vote and says it needs replacing.
    let nl = wait_for_leader(&procs, None);
    let wiped = (0..3)
        .find(|i| *i != nl && procs[*i].child.is_some() && voters(&m).contains(&procs[*i].id))
        .expect("a bootstrap voter besides the leader");
    procs[wiped].kill();
    std::fs::remove_dir_all(procs[wiped].data_dir()).expect("wipe");
    procs[wiped].start(dir.path());
    let until = Instant::now() + WAIT;
    let seen = loop {
        let i = info(&procs[wiped]);
        if let Some(i) = i.filter(|i| i.needs_replacement) {
            break i;
        }
        assert!(
            Instant::now() < until,
            "the wiped node never said it needs replacing"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!seen.voter);
    let id = procs[wiped].id.clone();
    wait_members(
        procs[nl].http,
        "the leader hears the new incarnation",
        |m| {
            m.strangers
                .iter()
                .any(|s| s.id == id && s.incarnation == seen.incarnation)
        },
    );

    // `keel member replace` brings it back: learner, caught up, voter.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "member",
            "replace",
            &id,
            "--addr",
            &procs[nl].http.to_string(),
        ])
        .output()
        .expect("run keel member replace");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let m = wait_members(procs[nl].http, "the replaced node votes", |m| {
        m.members
            .iter()
            .any(|x| x.id == id && x.voter && x.incarnation == seen.incarnation)
    });
    assert_eq!(voters(&m).len(), 3, "{m:?}");

    // Every acknowledged write reads back with its value.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acked = load.join().expect("writer");
    sampler.join().expect("sampler");
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    let nl = wait_for_leader(&procs, None);
    let mut values = BTreeMap::new();
    for k in &acked {
        let a = get(procs[nl].http, &format!("/v1/kv/user/w{k}")).expect("an answer");
        assert_eq!(a.status, 200, "w{k}: {:?}", a.body);
        let v: KvValue = a.parse().expect("a value");
        values.insert(*k, v.value);
    }
    assert!(values.iter().all(|(k, v)| *v == serde_json::json!(k)));
    let copies_seen = most.load(Ordering::Relaxed);
    assert!(
        copies_seen <= 1,
        "{copies_seen} copies of the workload ran at once"
    );
    assert!(leader(&procs).is_some());
}
