//! Three real nodes in one process, over loopback TCP and the HTTP API: they elect a leader, a
//! write sent to a follower is acknowledged, the leader is killed, and the new leader serves the
//! acknowledged write; the killed node restarts from its data directory and catches up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use keel_core::NodeId;
use keel_node::server::{self, NodeSpec};
use keel_node::transport::TransportConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A minimal HTTP/1.1 request; returns the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

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

/// GETs `path` (which must answer 200) every 50 ms until its body contains `want`, for at most
/// 5 s; returns the last body.
async fn get_until(addr: SocketAddr, path: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let (status, body) = http(addr, "GET", path, "").await.expect("answer");
        assert_eq!(status, 200, "{body}");
        last = body;
        if last.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

async fn leader_of(members: &[Member]) -> Option<String> {
    for m in members {
        if m.task.is_none() {
            continue;
        }
        if let Some((200, body)) = http(m.spec.http, "GET", "/v1/cluster", "").await {
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            if let Some(l) = v["leader"].as_str() {
                if l == v["node"].as_str()? {
                    return Some(l.to_string());
                }
            }
        }
    }
    None
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_loss_of_their_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let peer_addrs: BTreeMap<NodeId, SocketAddr> = ids.iter().map(|i| (*i, free_addr())).collect();
    let mut members: Vec<Member> = ids
        .iter()
        .map(|id| Member {
            spec: NodeSpec {
                id: *id,
                listen: peer_addrs[id],
                http: free_addr(),
                peers: peer_addrs
                    .iter()
                    .filter(|(p, _)| *p != id)
                    .map(|(p, a)| (*p, *a))
                    .collect(),
                data_dir: dir.path().join(id.to_string()),
                transport: TransportConfig::default(),
            },
            stop: None,
            task: None,
        })
        .collect();
    for m in &mut members {
        m.start();
    }
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
    assert!(body.contains(r#""current":{"v":18}"#), "{body}");
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

    // Workloads: submitted through a follower, placed by the leader. This node cannot run
    // processes yet, so every start is reported failed and the registry says so truthfully.
    let (status, body) = http(
        follower.spec.http,
        "POST",
        "/v1/workloads",
        r#"{"name":"web","command":"sleep","args":["60"],"max_attempts":2,"backoff_base_ms":10,"backoff_cap_ms":20}"#,
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
        "failed-permanently",
    )
    .await;
    assert!(
        last.contains("failed-permanently") && last.contains("could not be started"),
        "{last}"
    );
    let (status, body) = http(follower.spec.http, "GET", "/v1/workloads", "")
        .await
        .expect("answer");
    assert!(status == 200 && body.contains(r#""name":"web""#), "{body}");
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
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["value"], serde_json::json!({"v": 18}), "{body}");

    // The new leader's failure detector declares the killed node dead (after dead_after, 1 s).
    let summary = get_until(nl.spec.http, "/health/summary", r#""offline_nodes":1"#).await;
    assert!(
        summary.contains(r#""offline_nodes":1"#) && summary.contains(r#""total_nodes":3"#),
        "{summary}"
    );
    let (status, body) = http(nl.spec.http, "GET", "/recovery/metrics", "")
        .await
        .expect("answer");
    assert!(
        status == 200 && body.contains(r#""failed_workloads":["web"]"#),
        "{body}"
    );

    // The old leader restarts from disk and rejoins as a follower.
    members[li].start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = http(members[li].spec.http, "GET", "/v1/cluster", "")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["leader"].as_str(), Some(new_leader.as_str()), "{body}");
    for m in &mut members {
        m.kill().await;
    }
}
