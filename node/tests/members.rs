//! Membership through the HTTP API and the `keel member` CLI, on three real nodes in one process
//! over loopback TCP: the configuration read through a follower, bad requests refused with what
//! is wrong, a node added and promoted, refusals as 409s, a learner that cannot catch up, a
//! removal, and `replace` with nothing to replace.
//!
//! The nodes being added are stand-ins (a socket answering `GET /v1/cluster` as the new node
//! would, no node behind its peer address): a joining node needs `keel node --join`.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{free_addr, try_http};
use keel_core::NodeId;
use keel_node::api::{ClusterInfo, MembersInfo};
use keel_node::client::find_leader_async;
use keel_node::server::{self, NodeSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// [`try_http`] to a node that must answer.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(addr, method, path, body)
        .await
        .unwrap_or_else(|| panic!("no answer to {method} {path} from {addr}"))
}

async fn members_at(addr: SocketAddr) -> MembersInfo {
    let (status, body) = http(addr, "GET", "/v1/members", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a MembersInfo")
}

/// `keel member ARGS --addr addr`: success, stdout, stderr.
async fn keel_member(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("member")
        .args(args)
        .args(["--addr", &addr.to_string()])
        .output()
        .await
        .expect("run keel");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Answers every `GET /v1/cluster` as node `id` of `incarnation` with peer address `peer`
/// would: the identity `keel member add` reads from a new node.
async fn stand_in(id: &str, incarnation: &str, peer: SocketAddr) -> SocketAddr {
    let info = ClusterInfo {
        node: id.into(),
        leader: None,
        term: 0,
        commit_index: 0,
        members: vec![],
        incarnation: incarnation.into(),
        peer_address: peer.to_string(),
        voter: false,
        needs_replacement: false,
        membership: vec![],
        strangers: vec![],
    };
    let body = serde_json::to_string(&info).expect("json");
    let addr = free_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    addr
}

/// Three nodes under `dir`, a learner promotable within 40 entries of the leader's log.
fn start(dir: &std::path::Path) -> Vec<NodeSpec> {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let peers: BTreeMap<NodeId, SocketAddr> = ids.iter().map(|i| (*i, free_addr())).collect();
    let specs: Vec<NodeSpec> = ids
        .iter()
        .map(|id| NodeSpec {
            watchdog: None,
            core: BTreeMap::from([("promote_max_lag".to_string(), toml::Value::Integer(40))]),
            ..NodeSpec::new(
                *id,
                peers[id],
                free_addr(),
                peers
                    .iter()
                    .filter(|(p, _)| *p != id)
                    .map(|(p, a)| (*p, *a))
                    .collect(),
                dir.join(id.to_string()),
            )
        })
        .collect();
    for spec in &specs {
        let spec = spec.clone();
        tokio::spawn(async move {
            if let Err(e) = server::run(spec, std::future::pending()).await {
                panic!("node failed: {e}");
            }
        });
    }
    specs
}

/// The leader's spec, once one leads.
async fn leader(specs: &[NodeSpec]) -> &NodeSpec {
    for _ in 0..200 {
        let ask = |s: &&NodeSpec| {
            let addr = s.http;
            async move {
                match try_http(addr, "GET", "/v1/cluster", "").await {
                    Some((200, body)) => serde_json::from_str(&body).ok(),
                    _ => None,
                }
            }
        };
        if let Some((s, _)) = find_leader_async(specs.iter(), ask).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_added_promoted_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = start(dir.path());
    let leader = leader(&specs).await.clone();
    let follower = specs
        .iter()
        .find(|s| s.id != leader.id)
        .expect("a follower");
    let at = follower.http;

    // The configuration, read through a follower: the bootstrap members with the addresses
    // the follower knows them at.
    let m = members_at(at).await;
    assert!(m.committed && m.strangers.is_empty(), "{m:?}");
    let listed: Vec<(String, bool, String)> = m
        .members
        .iter()
        .map(|x| (x.id.clone(), x.voter, x.address.clone()))
        .collect();
    let want: Vec<(String, bool, String)> = specs
        .iter()
        .map(|s| (s.id.to_string(), true, s.listen.to_string()))
        .collect();
    assert_eq!(listed, want);

    bad_requests_are_refused(at).await;
    a_node_is_added_promoted_and_removed(at).await;
    a_learner_behind_is_not_promoted(at).await;

    let me = follower.id.to_string();
    let (ok, _, err) = keel_member(at, &["remove", &me]).await;
    assert!(!ok && err.contains("is the node asked (--addr)"), "{err}");
    let (ok, _, err) = keel_member(at, &["replace", "n2"]).await;
    assert!(
        !ok && err.contains("no other incarnation of n2 has been heard by"),
        "{err}"
    );
    let (status, body) = http(at, "GET", "/health/summary", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("needs_replacement"), "{body}");
}

async fn bad_requests_are_refused(at: SocketAddr) {
    let add = |id: &str, inc: &str, address: &str, extra: &str| {
        format!(r#"{{"id":"{id}","incarnation":"{inc}","address":"{address}"{extra}}}"#)
    };
    let inc = "00000000000000ab";
    for (body, error) in [
        (add("x4", inc, "127.0.0.1:7004", ""), "bad_node"),
        (add("n4", "ab", "127.0.0.1:7004", ""), "bad_incarnation"),
        (add("n4", inc, "somewhere", ""), "bad_address"),
        (
            add("n4", inc, "127.0.0.1:7004", r#","voter":true"#),
            "bad_request",
        ),
    ] {
        let (status, answer) = http(at, "POST", "/v1/members", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(answer["error"], error, "{body}: {answer}");
    }
    let (status, answer) = http(at, "POST", "/v1/members", &add("n4", "xyz", "a", "")).await;
    assert!(
        status == 400 && answer.contains(r#""incarnation":"xyz""#),
        "{answer}"
    );
    let (status, answer) = http(at, "POST", "/v1/members/4/promote", "").await;
    assert!(status == 400 && answer.contains("bad_node"), "{answer}");
    let (status, answer) = http(at, "DELETE", "/v1/members/node4", "").await;
    assert!(status == 400 && answer.contains("bad_node"), "{answer}");
}

/// `keel member add` (learner, then promoted once caught up), a refused promotion, `keel member
/// remove`, twice.
async fn a_node_is_added_promoted_and_removed(at: SocketAddr) {
    let peer = free_addr();
    let n4 = stand_in("n4", "00000000000000a4", peer).await;
    let url = format!("http://{n4}");
    let (ok, out, err) = keel_member(at, &["add", &url, "--timeout", "20s"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("step 1 of 2: add n4 (incarnation 00000000000000a4"),
        "{out}"
    );
    assert!(
        out.contains("step 2 of 2: promote n4 to voter\n  done"),
        "{out}"
    );
    let m = members_at(at).await;
    let n4 = m.members.iter().find(|x| x.id == "n4").expect("n4 listed");
    assert!(n4.voter && n4.address == peer.to_string(), "{m:?}");

    let (status, body) = http(at, "POST", "/v1/members/n4/promote", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains(r#""error":"refused""#) && body.contains("already a voter"),
        "{body}"
    );

    let (ok, out, err) = keel_member(at, &["remove", "n4"]).await;
    assert!(
        ok && out.contains("step 1 of 1: remove n4\n  done: committed"),
        "{out}{err}"
    );
    let (ok, out, err) = keel_member(at, &["remove", "n4"]).await;
    assert!(
        ok && out.contains("nothing to do: n4 is not a member"),
        "{out}{err}"
    );
    let (status, body) = http(at, "DELETE", "/v1/members/n4", "").await;
    assert!(
        status == 409 && body.contains("n4 is not a member"),
        "{body}"
    );
    assert_eq!(members_at(at).await.members.len(), 3);
}

/// A learner more than `promote_max_lag` entries behind (nothing runs behind its address) is
/// refused promotion; `keel member promote` waits for it, then gives up naming the reason.
async fn a_learner_behind_is_not_promoted(at: SocketAddr) {
    let body = format!(
        r#"{{"id":"n5","incarnation":"00000000000000a5","address":"{}"}}"#,
        free_addr()
    );
    let (status, answer) = http(at, "POST", "/v1/members", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.starts_with(r#"{"revision":"#), "{answer}");
    for k in 0..45 {
        let (status, answer) = http(at, "PUT", &format!("/v1/kv/user/k{k}"), "1").await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, body) = http(at, "POST", "/v1/members/n5/promote", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("n5 cannot be promoted: it is"), "{body}");

    let (ok, out, err) = keel_member(at, &["promote", "n5", "--timeout", "1s"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("not yet (0s of 1s): promote n5 to voter: n5 cannot be promoted"),
        "{out}"
    );
    assert!(
        err.contains("step 1 of 1 (promote n5 to voter) failed: gave up after 1s"),
        "{err}"
    );
    assert!(
        err.contains("n5 learner (incarnation 00000000000000a5)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "to continue, run again: keel member promote n5 --addr {at}"
        )),
        "{err}"
    );

    let (ok, out, _) = keel_member(at, &["list"]).await;
    assert!(
        ok && out.contains("(committed)") && out.contains("learner"),
        "{out}"
    );
    let (status, body) = http(at, "DELETE", "/v1/members/n5", "").await;
    assert_eq!(status, 200, "{body}");
}
