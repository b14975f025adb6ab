//! End to end: three real `keel node` processes on loopback ports. Writes go through the HTTP
//! API (to any node); the leader is killed with SIGKILL; a new leader must serve every write that
//! was acknowledged, with its value. Then the killed node restarts from its data directory.
//! (Real sockets and the HTTP API: not under `--cfg madsim`, see `madsim.rs`.)
#![cfg(not(madsim))]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_addr;
use common::procs::{get, put, three_nodes, wait_for_leader, Proc};
use keel_node::api::KvValue;
use keel_node::client::cluster;

#[test]
fn three_keel_processes_keep_every_acknowledged_write_when_the_leader_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs = three_nodes(dir.path());
    let l = wait_for_leader(&procs, None);

    // Writes through every node in turn; remember what was acknowledged.
    let mut acked = Vec::new();
    for k in 0..60 {
        let via = procs[k % 3].http;
        if put(via, &format!("key{k}"), &k.to_string()) {
            acked.push(k);
        }
    }
    assert!(
        acked.len() >= 50,
        "only {} of 60 writes acknowledged",
        acked.len()
    );

    procs[l].kill();
    let nl = wait_for_leader(&procs, Some(l));
    for k in &acked {
        let mut answer = None;
        for _ in 0..50 {
            answer = get(procs[nl].http, &format!("/v1/kv/user/key{k}"));
            if answer.as_ref().is_some_and(|a| a.status == 200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = answer.expect("an answer");
        assert_eq!(a.status, 200, "key{k}: {:?}", a.body);
        let found: KvValue = a.parse().expect("a value");
        assert_eq!(found.value, serde_json::json!(k), "key{k}: {:?}", a.body);
    }

    // The killed node restarts from its data directory and follows the new leader.
    procs[l].start(dir.path());
    let until = Instant::now() + Duration::from_secs(20);
    let new_id = procs[nl].id.clone();
    loop {
        let seen = cluster(procs[l].http, Duration::from_secs(2)).and_then(|c| c.leader);
        if seen.as_deref() == Some(new_id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the restarted node never followed {new_id}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A second process on the same data directory (other ports) is refused, naming the pid of
    // the node that holds it, and that node keeps serving.
    second_process_on_a_data_directory_is_refused(&procs[l], dir.path());
}

fn second_process_on_a_data_directory_is_refused(holder: &Proc, dir: &Path) {
    let pid = holder.child.as_ref().expect("the holder runs").id();
    let mut args = holder.args.clone();
    for flag in ["--listen", "--http"] {
        let at = args.iter().position(|a| a == flag).expect("flag") + 1;
        args[at] = free_addr().to_string();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run keel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second node started: {stderr}");
    assert!(
        stderr.contains("in use by another keel process") && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );
    let still = cluster(holder.http, Duration::from_secs(2));
    assert!(still.is_some(), "the holder stopped serving ({dir:?})");
}
