//! Membership changes through the core alone: learners, single-server changes, a removed
//! leader, new incarnations, and a follower that lost its log.

mod common;

use std::time::Duration;

use common::Cluster;
use keel_core::*;

fn learner(id: u32, incarnation: u64) -> MemberChange {
    MemberChange::AddLearner {
        id: NodeId(id),
        incarnation: Incarnation(incarnation),
        address: String::new(),
    }
}

fn written(c: &Cluster, id: RequestId) -> bool {
    matches!(c.reply(id), Some(Ok(ClientResponse::Written { .. })))
}

fn refused(c: &Cluster, id: RequestId) -> String {
    match c.reply(id) {
        Some(Err(ClientError::Refused { reason })) => reason.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A three-node cluster with a leader that committed its no-op.
fn settled() -> (Cluster, NodeId) {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(100));
    (c, leader)
}

#[test]
fn a_learner_gets_the_log_but_no_say() {
    let (mut c, leader) = settled();
    let four = c.start_spare(4, 44);
    let add = c.change(leader, learner(4, 44));
    c.advance(Duration::from_millis(100));
    assert!(written(&c, add), "{:?}", c.reply(add));
    let put = c.put(leader, "k", "v");
    c.advance(Duration::from_millis(100));
    assert!(written(&c, put));
    assert_eq!(
        c.nodes[&four].commit_index(),
        c.nodes[&leader].commit_index()
    );
    assert!(!c.nodes[&four].is_voter());
    // With both other voters cut off, the learner's acknowledgement commits nothing.
    for other in [1, 2, 3].map(NodeId).into_iter().filter(|n| *n != leader) {
        c.isolate(other);
    }
    let commit = c.nodes[&leader].commit_index();
    c.put(leader, "k", "w");
    c.advance(Duration::from_millis(50));
    assert_eq!(
        c.nodes[&leader].commit_index(),
        commit,
        "a learner counted toward a quorum"
    );
    assert_eq!(
        c.nodes[&four].log().last_index(),
        c.nodes[&leader].log().last_index()
    );
}

#[test]
fn a_learner_is_promoted_only_when_caught_up_and_then_counts() {
    let (mut c, leader) = settled();
    let four = c.start_spare(4, 44);
    c.cut.insert((leader, four));
    let add = c.change(leader, learner(4, 44));
    c.advance(Duration::from_millis(100));
    assert!(written(&c, add));
    for i in 0..300 {
        c.put(leader, &format!("k{i}"), "v");
    }
    c.advance(Duration::from_millis(100));
    let early = c.change(leader, MemberChange::Promote { id: four });
    assert!(
        refused(&c, early).contains("behind"),
        "{}",
        refused(&c, early)
    );
    c.heal();
    c.advance(Duration::from_millis(300));
    let promote = c.change(leader, MemberChange::Promote { id: four });
    c.advance(Duration::from_millis(100));
    assert!(written(&c, promote), "{:?}", c.reply(promote));
    assert!(c.nodes[&four].is_voter());
    assert_eq!(c.nodes[&leader].membership().quorum(), 3);
}

#[test]
fn one_change_at_a_time_and_none_before_the_leader_committed_in_its_term() {
    let mut c = Cluster::new(3);
    // Node 1 wins an election whose AppendEntries never arrive: elected, its no-op not yet
    // acknowledged. A change now could collide with one of a deposed leader (thesis errata).
    let leader = NodeId(1);
    c.now = c.nodes[&leader].election_deadline();
    c.step(leader, Input::Tick);
    while let Some(m) = c.inflight.pop_front() {
        if !matches!(m.body, MessageBody::AppendEntries { .. }) {
            c.step(m.to, Input::Message(m));
        }
    }
    assert!(c.nodes[&leader].is_leader());
    let early = c.change(leader, MemberChange::Remove { id: NodeId(3) });
    assert!(refused(&c, early).contains("not committed an entry of its term"));
    c.advance(Duration::from_millis(100));
    c.isolate(NodeId(2));
    c.isolate(NodeId(3));
    let first = c.change(leader, MemberChange::Remove { id: NodeId(3) });
    let second = c.change(leader, MemberChange::Remove { id: NodeId(2) });
    assert!(refused(&c, second).contains("in progress"));
    assert!(c.reply(first).is_none(), "the first waits for its commit");
}

#[test]
fn a_removed_leader_hands_over_and_steps_down_once_its_removal_commits() {
    let (mut c, leader) = settled();
    let remove = c.change(leader, MemberChange::Remove { id: leader });
    c.advance(Duration::from_millis(400));
    assert!(written(&c, remove), "{:?}", c.reply(remove));
    assert!(!c.nodes[&leader].is_leader());
    assert!(c.events_of(leader).iter().any(|e| matches!(
        e,
        Event::SteppedDown {
            reason: StepDownReason::Removed,
            ..
        }
    )));
    let next = c.leader().expect("a new leader");
    assert_ne!(next, leader);
    assert_eq!(c.nodes[&next].membership().voter_count(), 2);
    // The removed node never stands again.
    let term = c.nodes[&next].term();
    c.advance(Duration::from_secs(2));
    assert_eq!(
        c.nodes[&next].term(),
        term,
        "the removed node disrupted the cluster"
    );
}

#[test]
fn a_node_back_on_an_empty_disk_never_votes_until_replaced() {
    let (mut c, leader) = settled();
    let put = c.put(leader, "k", "v");
    c.advance(Duration::from_millis(50));
    assert!(written(&c, put));
    let victim = [1, 2, 3]
        .map(NodeId)
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    c.start_spare(victim.0, 77);
    // The new incarnation grants nothing and counts for nothing, even asked directly.
    let ask = Message {
        from: leader,
        incarnation: Incarnation::ORIGINAL,
        to: victim,
        term: Term(c.nodes[&leader].term().0 + 5),
        body: MessageBody::RequestVote {
            last_log_index: LogIndex(100),
            last_log_term: Term(100),
            transfer: true,
        },
    };
    c.step(victim, Input::Message(ask));
    assert!(!c.last_outputs.iter().any(|o| matches!(
        o,
        Output::Send(Message {
            body: MessageBody::RequestVoteResponse { granted: true },
            ..
        })
    )));
    c.inflight.clear();
    c.advance(Duration::from_millis(200));
    assert!(c.nodes[&leader]
        .strangers()
        .any(|(id, inc)| id == victim && inc == Incarnation(77)));
    // Replace: the new incarnation as a learner (the dead voter leaves), caught up, promoted.
    let add = c.change(leader, learner(victim.0, 77));
    c.advance(Duration::from_millis(200));
    assert!(written(&c, add), "{:?}", c.reply(add));
    let promote = c.change(leader, MemberChange::Promote { id: victim });
    c.advance(Duration::from_millis(200));
    assert!(written(&c, promote), "{:?}", c.reply(promote));
    assert!(c.nodes[&victim].is_voter());
    assert_eq!(
        c.nodes[&victim]
            .state_machine()
            .kv
            .get(&Key::user("k"))
            .map(|v| v.value.as_str()),
        Some("v")
    );
}

#[test]
fn a_follower_that_lost_its_log_is_probed_back_at_once() {
    let (mut c, leader) = settled();
    for i in 0..20 {
        c.put(leader, &format!("k{i}"), "v");
    }
    c.advance(Duration::from_millis(100));
    let follower = [1, 2, 3]
        .map(NodeId)
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    let last = c.nodes[&leader].log().last_index();
    assert_eq!(c.nodes[&follower].log().last_index(), last);
    // Its disk comes back truncated (same incarnation): keep only the first 5 entries.
    c.crash(follower);
    let d = c.durable.get_mut(&follower).expect("durable");
    d.entries.truncate(5);
    c.restart(follower);
    c.advance(Duration::from_millis(300));
    assert!(c
        .events_of(leader)
        .iter()
        .any(|e| matches!(e, Event::FollowerLostEntries { follower: f, .. } if *f == follower)));
    assert_eq!(
        c.nodes[&follower].log().last_index(),
        c.nodes[&leader].log().last_index()
    );
}

/// Three nodes whose leader compacted its log behind a snapshot of 40 values, sending
/// snapshots in 64-byte chunks.
fn compacted_with_small_chunks() -> (Cluster, NodeId) {
    let mut c = Cluster::with_config(3, |cfg| {
        cfg.raft.snapshot_threshold_entries = 10;
        cfg.raft.snapshot_retain_entries = 0;
        cfg.raft.snapshot_chunk_bytes = 64;
    });
    let leader = c.elect();
    for i in 0..40 {
        c.put(
            leader,
            &format!("key-{i}"),
            "a value long enough to need several chunks",
        );
    }
    c.advance(Duration::from_millis(200));
    (c, leader)
}

#[test]
fn a_learner_catches_up_from_a_snapshot_sent_in_chunks_and_resumed_after_a_loss() {
    let (mut c, leader) = compacted_with_small_chunks();
    assert!(
        c.nodes[&leader].log().offset() > LogIndex(0),
        "the leader compacted"
    );
    let four = c.start_spare(4, 44);
    if let Some(cfg) = c.configs.get_mut(&four) {
        cfg.raft.snapshot_chunk_bytes = 64;
    }
    // Count the chunks, and lose one in the middle of the transfer.
    let seen = std::rc::Rc::new(std::cell::Cell::new((0u64, false, 0u64)));
    let count = seen.clone();
    c.lose = Some(Box::new(move |m: &Message| {
        let MessageBody::InstallSnapshot(chunk) = &m.body else {
            return false;
        };
        assert!(chunk.data.len() <= 64);
        let (n, lost, _) = count.get();
        let lose = chunk.offset > 0 && !lost;
        count.set((n + 1, lost || lose, chunk.total));
        lose
    }));
    let add = c.change(leader, learner(4, 44));
    c.advance(Duration::from_millis(500));
    assert!(written(&c, add), "{:?}", c.reply(add));
    let (chunks, lost, total) = seen.get();
    assert!(lost && chunks > 5, "{chunks} chunks");
    // Each chunk once, the lost one twice: no second stream of chunks after the loss.
    assert_eq!(
        chunks,
        total.div_ceil(64) + 1,
        "{chunks} chunks for {total} bytes"
    );
    assert_eq!(
        c.nodes[&four].applied_index(),
        c.nodes[&leader].applied_index()
    );
    assert_eq!(
        c.nodes[&four]
            .state_machine()
            .kv
            .get(&Key::user("key-39"))
            .map(|v| v.value.as_str()),
        Some("a value long enough to need several chunks")
    );
    let restarts = c
        .events_of(leader)
        .iter()
        .filter(|e| matches!(e, Event::SnapshotSent { to, .. } if *to == four))
        .count();
    assert_eq!(
        restarts, 1,
        "the lost chunk was sent again, not the whole snapshot"
    );
}

#[test]
fn autopilot_removes_dead_voters_but_never_below_min_voters() {
    let mut c = Cluster::with_config(5, |cfg| {
        cfg.coordination.dead_server_cleanup = true;
        cfg.coordination.dead_server_cleanup_after = Duration::from_secs(2);
        cfg.coordination.min_voters = 3;
    });
    let leader = c.elect();
    let mut others = [1, 2, 3, 4, 5]
        .map(NodeId)
        .into_iter()
        .filter(|n| *n != leader);
    let (a, b, d) = (
        others.next().unwrap(),
        others.next().unwrap(),
        others.next().unwrap(),
    );
    c.crash(a);
    c.advance(Duration::from_millis(1500));
    assert_eq!(
        c.nodes[&leader].membership().voter_count(),
        5,
        "removed before the bound"
    );
    c.advance(Duration::from_secs(2));
    assert_eq!(c.nodes[&leader].membership().voter_count(), 4);
    assert!(c.nodes[&leader].membership().get(a).is_none());
    c.crash(b);
    c.advance(Duration::from_secs(3));
    assert_eq!(c.nodes[&leader].membership().voter_count(), 3);
    c.crash(d);
    c.advance(Duration::from_secs(5));
    assert_eq!(
        c.nodes[&leader].membership().voter_count(),
        3,
        "went below min_voters"
    );
    assert!(c
        .events_of(leader)
        .iter()
        .any(|e| matches!(e, Event::DeadVoterRemoved { node, .. } if *node == a)));
}

#[test]
fn autopilot_is_off_by_default() {
    let mut c = Cluster::new(5);
    let leader = c.elect();
    let victim = [1, 2, 3, 4, 5]
        .map(NodeId)
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    c.crash(victim);
    c.advance(Duration::from_secs(700));
    assert_eq!(c.nodes[&leader].membership().voter_count(), 5);
}

#[test]
fn a_duplicated_chunk_answer_sends_nothing_more() {
    let (mut c, leader) = compacted_with_small_chunks();
    let four = c.start_spare(4, 44);
    // Hold back the learner's answers to the snapshot's chunks.
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let keep = held.clone();
    c.lose = Some(Box::new(move |m: &Message| {
        let answer = matches!(
            m.body,
            MessageBody::InstallSnapshotResponse {
                received: Some(_),
                ..
            }
        );
        if answer {
            keep.borrow_mut().push(m.clone());
        }
        answer
    }));
    c.change(leader, learner(4, 44));
    c.advance(Duration::from_millis(20));
    let answer = held
        .borrow()
        .first()
        .cloned()
        .expect("an answer to the first chunk");
    let chunks_sent = |c: &Cluster| {
        c.last_outputs
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Send(Message {
                        body: MessageBody::InstallSnapshot(_),
                        ..
                    })
                )
            })
            .count()
    };
    c.step(leader, Input::Message(answer.clone()));
    assert_eq!(chunks_sent(&c), 1, "the answer moves the transfer on");
    c.step(leader, Input::Message(answer));
    assert_eq!(
        chunks_sent(&c),
        0,
        "a duplicate answer must not start a second stream"
    );
    let _ = four;
}
