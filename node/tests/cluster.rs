//! Three real nodes in one process, over loopback TCP and the HTTP API: they elect a leader, a
//! write sent to a follower is acknowledged, the leader is killed, and the new leader serves the
//! acknowledged write; the killed node restarts from its data directory and catches up.
//! (Real sockets and the HTTP API: not under `--cfg madsim`, see `madsim.rs`.)
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::free_addr;
use common::try_http as http;
use keel_core::NodeId;
use keel_node::api::{
    CasMismatch, ClusterInfo, HealthSummary, KvValue, RecoveryReport, WorkloadInfo, WorkloadList,
};
use keel_node::client::find_leader_async;
use keel_node::config::ShutdownConfig;
use keel_node::server::{self, NodeSpec};
use keel_node::supervisor::SupervisorConfig;
use tokio::sync::oneshot;

struct Member {
    spec: NodeSpec,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Member {
    fn start(&mut self) {
        let (tx, rx) = oneshot::channel();
        let spec = self.spec.clone();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = server::run(spec, shutdown).await {
                panic!("node failed: {e}");
            }
        }));
    }

    /// Stops the node abruptly (its task is aborted; only what it synced survives).
    async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        self.stop = None;
    }
}

/// GETs `path` (which must answer 200 once it answers: a node just started may not listen yet)
/// every 50 ms until its answer satisfies `done`, for at most 5 s; returns the last answer.
async fn get_until<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    done: impl Fn(&T) -> bool,
) -> Option<T> {
    let mut last = None;
    for _ in 0..100 {
        if let Some((status, body)) = http(addr, "GET", path, "").await {
            assert_eq!(status, 200, "{body}");
            last = Some(serde_json::from_str(&body).expect("an answer of the API"));
        }
        if last.as_ref().is_some_and(&done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

/// The body of a 200 answer of `GET path` at `addr`, as `T`.
async fn get_json<T: serde::de::DeserializeOwned>(addr: SocketAddr, path: &str) -> Option<T> {
    match http(addr, "GET", path, "").await {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The running member that says it leads.
async fn leader_of(members: &[Member]) -> Option<String> {
    let live = members.iter().filter(|m| m.task.is_some());
    find_leader_async(live, |m| {
        get_json::<ClusterInfo>(m.spec.http, "/v1/cluster")
    })
    .await
    .map(|(_, c)| c.node)
}

async fn wait_for_leader(members: &[Member], not: Option<&str>) -> String {
    for _ in 0..200 {
        if let Some(l) = leader_of(members).await {
            if Some(l.as_str()) != not {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader within 10 s");
}

/// Three nodes with data under `dir`, started.
fn start_cluster(dir: &std::path::Path) -> Vec<Member> {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let peer_addrs: BTreeMap<NodeId, SocketAddr> = ids.iter().map(|i| (*i, free_addr())).collect();
    let mut members: Vec<Member> = ids
        .iter()
        .map(|id| Member {
            spec: NodeSpec {
                // Workload copies run under the real `keel shim`; no watchdog inside a test
                // process (ending the process would end every test).
                supervisor: SupervisorConfig {
                    shim_program: Some(env!("CARGO_BIN_EXE_keel").into()),
                    ..SupervisorConfig::default()
                },
                watchdog: None,
                // A stopping leader waits for its successor, however slow the test machine.
                shutdown: ShutdownConfig {
                    transfer_wait: Duration::from_secs(30),
                },
                ..NodeSpec::new(
                    *id,
                    peer_addrs[id],
                    free_addr(),
                    peer_addrs
                        .iter()
                        .filter(|(p, _)| *p != id)
                        .map(|(p, a)| (*p, *a))
                        .collect(),
                    dir.join(id.to_string()),
                )
            },
            stop: None,
            task: None,
        })
        .collect();
    for m in &mut members {
        m.start();
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_loss_of_their_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(dir.path());
    let leader = wait_for_leader(&members, None).await;
    let follower = members
        .iter()
        .find(|m| m.spec.id.to_string() != leader)
        .expect("a follower");
    // A write through a follower is forwarded to the leader and acknowledged after commit.
    let (status, body) = http(follower.spec.http, "PUT", "/v1/kv/user/k1", r#"{"v": 17}"#)
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        follower.spec.http,
        "POST",
        "/v1/kv/cas",
        r#"{"partition":"user","key":"k1","from":{"v":17},"to":{"v":18}}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        follower.spec.http,
        "POST",
        "/v1/kv/cas",
        r#"{"partition":"user","key":"k1","from":{"v":17},"to":{"v":19}}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 409, "{body}");
    let found: CasMismatch = serde_json::from_str(&body).expect("json");
    assert_eq!(found.current, Some(serde_json::json!({"v": 18})), "{body}");
    let (status, body) = http(
        follower.spec.http,
        "POST",
        "/v1/kv/batch",
        r#"{"ops":[{"op":"put","partition":"user","key":"k2","value":2},{"op":"delete","partition":"user","key":"k3"}]}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    let bad = http(follower.spec.http, "PUT", "/v1/kv/nosuch/k1", "1")
        .await
        .expect("answer");
    assert_eq!(bad.0, 400, "{}", bad.1);

    // Workloads: submitted through a follower, placed by the leader. A program that does not
    // exist cannot be started: retried, then failed-permanently, and the registry says why.
    let (status, body) = http(
        follower.spec.http,
        "POST",
        "/v1/workloads",
        r#"{"name":"web","command":"/nonexistent/keel-test-program","max_attempts":2,"backoff_base_ms":10,"backoff_cap_ms":20}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    let bad = http(
        follower.spec.http,
        "POST",
        "/v1/workloads",
        r#"{"name":""}"#,
    )
    .await
    .expect("answer");
    assert_eq!(bad.0, 400, "{}", bad.1);
    let last = get_until(
        follower.spec.http,
        "/v1/workloads/web",
        |w: &WorkloadInfo| w.status == "failed-permanently",
    )
    .await
    .expect("an answer");
    assert!(
        last.status == "failed-permanently"
            && last
                .explain
                .iter()
                .any(|d| d.what.contains("could not be started")),
        "{last:?}"
    );
    let (status, body) = http(follower.spec.http, "GET", "/v1/workloads", "")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let list: WorkloadList = serde_json::from_str(&body).expect("json");
    assert!(list.workloads.iter().any(|w| w.name == "web"), "{body}");
    let missing = http(follower.spec.http, "GET", "/v1/workloads/nope", "")
        .await
        .expect("answer");
    assert_eq!(missing.0, 404, "{}", missing.1);

    // Kill the leader; the others elect a new one, which serves the acknowledged write.
    let li = members
        .iter()
        .position(|m| m.spec.id.to_string() == leader)
        .expect("leader index");
    members[li].kill().await;
    let new_leader = wait_for_leader(&members, Some(&leader)).await;
    assert_ne!(new_leader, leader);
    let nl = members
        .iter()
        .find(|m| m.spec.id.to_string() == new_leader)
        .expect("new leader");
    let (status, body) = http(nl.spec.http, "GET", "/v1/kv/user/k1", "")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let v: KvValue = serde_json::from_str(&body).expect("json");
    assert_eq!(v.value, serde_json::json!({"v": 18}), "{body}");

    // The new leader's failure detector declares the killed node dead (after dead_after, 1 s).
    let summary = get_until(nl.spec.http, "/health/summary", |h: &HealthSummary| {
        h.offline_nodes == 1
    })
    .await
    .expect("an answer");
    assert!(
        summary.offline_nodes == 1 && summary.total_nodes == 3,
        "{summary:?}"
    );
    let report: RecoveryReport = get_json(nl.spec.http, "/recovery/metrics")
        .await
        .expect("answer");
    assert_eq!(report.failed_workloads, ["web"], "{report:?}");

    // The old leader restarts from disk and rejoins as a follower. (How soon is checked on
    // simulated time in turmoil.rs; real time on a loaded machine only bounds it loosely.)
    members[li].start();
    let follows = |c: &ClusterInfo| c.leader.as_deref() == Some(new_leader.as_str());
    let info = get_until(members[li].spec.http, "/v1/cluster", follows).await;
    assert!(info.as_ref().is_some_and(follows), "{info:?}");
    for m in &mut members {
        m.kill().await;
    }
}

/// `GET /v1/workloads/{name}` at `addr`, if it answers 200 (while leadership moves, reads are
/// refused for a moment).
async fn workload(addr: SocketAddr, name: &str) -> Option<WorkloadInfo> {
    get_json(addr, &format!("/v1/workloads/{name}")).await
}

/// Polls until the workload runs on a node other than `not`; returns that node.
async fn running_on(addr: SocketAddr, name: &str, not: Option<&str>) -> String {
    let mut last = None;
    for _ in 0..200 {
        last = workload(addr, name).await.or(last);
        if let Some(w) = last.as_ref().filter(|w| w.status == "running") {
            if let Some(n) = w.node.as_deref().filter(|n| Some(*n) != not) {
                return n.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} not running elsewhere than {not:?} within 10 s: {last:?}");
}

fn output_len(dir: &std::path::Path, node: &str) -> u64 {
    std::fs::read_dir(dir.join(node).join("workloads"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".stdout"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A workload runs as a real process (under the `keel shim`), its output goes to a file under
/// the node's data directory and counts as progress for its watchdog; when its node dies, the
/// process stops with it and the workload runs again on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_runs_as_a_process_and_moves_when_its_node_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(dir.path());
    wait_for_leader(&members, None).await;
    let any = members[0].spec.http;
    let (status, body) = http(
        any,
        "POST",
        "/v1/workloads",
        r#"{"name":"ticker","command":"sh","args":["-c","while true; do echo tick; sleep 0.1; done"],"watchdog_ms":1500}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    let first = running_on(any, "ticker", None).await;
    // It keeps running past its watchdog interval: its output is its progress.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut w = None;
    for _ in 0..100 {
        w = workload(any, "ticker").await;
        if w.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = w.expect("the workload readable within 5 s");
    assert_eq!(w.status, "running", "{w:?}");
    assert_eq!(w.attempts, 1, "never restarted: {w:?}");
    assert!(
        output_len(dir.path(), &first) > 0,
        "no output under {first}"
    );

    // Its node dies (if it led, a new leader re-places the copy once the lease argument
    // allows): the copy stops with it, and the workload runs elsewhere.
    let fi = members
        .iter()
        .position(|m| m.spec.id.to_string() == first)
        .expect("member");
    let any = members[(fi + 1) % 3].spec.http;
    members[fi].kill().await;
    let second = running_on(any, "ticker", Some(&first)).await;
    assert_ne!(second, first);
    // The dead node's copy is gone: its output stopped growing.
    let before = output_len(dir.path(), &first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        output_len(dir.path(), &first),
        before,
        "the old copy still writes"
    );
    for m in &mut members {
        m.kill().await;
    }
}

/// A leader asked to stop hands leadership over before it leaves: by the time it has stopped,
/// another node already leads (no election timeout spent leaderless). `/metrics` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_hands_leadership_over_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(dir.path());
    let leader = wait_for_leader(&members, None).await;
    let li = members
        .iter()
        .position(|m| m.spec.id.to_string() == leader)
        .expect("leader");
    let (status, body) = http(members[li].spec.http, "PUT", "/v1/kv/user/a", "1")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let (status, text) = http(members[li].spec.http, "GET", "/metrics", "")
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE keel_commit_latency_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(&format!("keel_is_leader{{node=\"{leader}\"}} 1")),
        "{text}"
    );

    // Graceful stop, with a long transfer wait: it returns once leadership moved.
    let stop = members[li].stop.take().expect("running");
    let task = members[li].task.take().expect("running");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped well within its transfer wait")
        .expect("clean stop");
    // It stopped once it stepped down, which it does when the target's election (a newer
    // term) reaches it: the target may still be collecting votes at that moment, so wait for
    // it. (A stop that had to wait out `transfer_wait` would have failed the timeout above.)
    let now_leading = wait_for_leader(&members, Some(&leader)).await;
    let nl = members
        .iter()
        .find(|m| m.spec.id.to_string() == now_leading)
        .expect("new leader");
    let (status, body) = http(nl.spec.http, "GET", "/v1/kv/user/a", "")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let v: KvValue = serde_json::from_str(&body).expect("json");
    assert_eq!(v.value, serde_json::json!(1), "{body}");
    for m in &mut members {
        m.kill().await;
    }
}
