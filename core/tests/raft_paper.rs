//! The Raft paper's rules, one test each, named after the section they check (as etcd's
//! raft_paper_test.go does). §5.1 terms, §5.2 election, §5.3 replication, §5.4 safety, §6.4
//! reads, §7 compaction, §9.6 pre-vote and check-quorum (from the Raft thesis), plus keel's
//! forwarding and admission control. Each drives real `Node`s through the in-memory harness.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use keel_core::*;

fn no_pre_vote(c: &mut Config) {
    c.raft.pre_vote = false;
}

fn read_index(c: &mut Config) {
    c.raft.lease_reads = false;
}

fn sent(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn entry(term: u64, index: u64, key: &str) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        command: Arc::new(Command::Write(Write::Put {
            key: Key::user(key),
            value: key.into(),
        })),
    }
}

fn append(
    from: u32,
    to: u32,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Input {
    Input::Message(Message {
        from: NodeId(from),
        incarnation: keel_core::Incarnation::ORIGINAL,
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            entries,
            leader_commit: LogIndex(commit),
            round: 0,
        },
    })
}

fn append_result(out: &[Output]) -> AppendResult {
    sent(out)
        .iter()
        .find_map(|m| match &m.body {
            MessageBody::AppendEntriesResponse { result, .. } => Some(*result),
            _ => None,
        })
        .expect("an AppendEntries response")
}

// ----- §5.1 terms -----

#[test]
fn s5_1_a_node_seeing_a_higher_term_adopts_it_and_becomes_follower() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let old = c.nodes[&l].term();
    let other = if l == NodeId(1) { 2 } else { 1 };
    c.step(l, append(other, l.0, old.0 + 5, (0, 0), vec![], 0));
    let n = &c.nodes[&l];
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), Term(old.0 + 5));
    assert_eq!(n.leader(), Some(NodeId(other)));
    assert_eq!(
        c.durable[&l].hard_state.term,
        Term(old.0 + 5),
        "new term persisted"
    );
    assert!(c.events_of(l).iter().any(|e| matches!(
        e,
        Event::SteppedDown {
            reason: StepDownReason::HigherTerm,
            ..
        }
    )));
}

#[test]
fn s5_1_a_message_from_a_stale_term_is_rejected_with_the_current_term() {
    let mut c = Cluster::new(3);
    c.elect();
    let follower = c
        .nodes
        .values()
        .find(|n| !n.is_leader())
        .map(|n| n.id())
        .unwrap();
    let term = c.nodes[&follower].term();
    c.step(
        follower,
        Input::Message(Message {
            from: NodeId(if follower == NodeId(3) { 2 } else { 3 }),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: follower,
            term: Term(0),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![entry(0, 1, "stale")],
                leader_commit: LogIndex(1),
                round: 0,
            },
        }),
    );
    let out = c.last_outputs.clone();
    let replies = sent(&out);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].term, term,
        "the reply carries the newer term so the stale leader steps down"
    );
    assert!(matches!(append_result(&out), AppendResult::Reject { .. }));
    assert!(c.nodes[&follower].log().entry(LogIndex(1)).map(|e| e.term) != Some(Term(0)));
}

// ----- §5.2 leader election -----

#[test]
fn s5_2_a_follower_that_hears_nothing_starts_an_election_within_the_randomised_timeout() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    let cfg = c.configs[&NodeId(1)].clone();
    let d = c.node(1).election_deadline();
    assert!(
        d >= Instant::ZERO + cfg.raft.election_timeout_min
            && d < Instant::ZERO + cfg.raft.election_timeout_max
    );
    c.now = d;
    c.step(NodeId(1), Input::Tick);
    let out = c.last_outputs.clone();
    assert_eq!(c.node(1).role(), Role::Candidate);
    assert_eq!(c.node(1).term(), Term(1));
    assert_eq!(c.node(1).voted_for(), Some(NodeId(1)));
    // The vote for itself is persisted before any RequestVote leaves.
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::Persist(Persist::HardState(_))))
        .unwrap();
    let first_send = out
        .iter()
        .position(|o| matches!(o, Output::Send(_)))
        .unwrap();
    assert!(persist_at < first_send);
    assert_eq!(sent(&out).len(), 2);
    assert!(sent(&out)
        .iter()
        .all(|m| matches!(m.body, MessageBody::RequestVote { .. })));
}

#[test]
fn s5_2_election_timeouts_are_randomised_per_node() {
    let c = Cluster::new(5);
    let deadlines: std::collections::BTreeSet<_> =
        c.nodes.values().map(|n| n.election_deadline()).collect();
    assert!(
        deadlines.len() >= 4,
        "timeouts should differ between nodes: {deadlines:?}"
    );
}

#[test]
fn s5_2_a_candidate_with_a_majority_of_votes_becomes_leader_and_asserts_itself() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    let l = c.elect_node(2);
    assert_eq!(c.nodes[&l].term(), Term(1));
    for id in [1, 3] {
        assert_eq!(
            c.node(id).leader(),
            Some(l),
            "n{id} follows the new leader after its first AppendEntries"
        );
        assert_eq!(c.node(id).voted_for(), Some(l));
    }
}

#[test]
fn s5_2_a_node_grants_at_most_one_vote_per_term_and_persists_it_before_answering() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    // Past the first election timeout, in which a node just started grants no vote (§6.4.1).
    c.now = c.now + c.configs[&NodeId(1)].raft.election_timeout_min;
    let vote = |from: u32| {
        Input::Message(Message {
            from: NodeId(from),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: NodeId(1),
            term: Term(1),
            body: MessageBody::RequestVote {
                last_log_index: LogIndex(0),
                last_log_term: Term(0),
                transfer: false,
            },
        })
    };
    let granted = |out: &[Output]| {
        sent(out)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { granted: true }))
    };
    c.step(NodeId(1), vote(2));
    let out = c.last_outputs.clone();
    assert!(granted(&out));
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::Persist(Persist::HardState(_))))
        .unwrap();
    let send_at = out
        .iter()
        .position(|o| matches!(o, Output::Send(_)))
        .unwrap();
    assert!(persist_at < send_at, "vote persisted before it is sent");
    assert_eq!(c.durable[&NodeId(1)].hard_state.voted_for, Some(NodeId(2)));
    c.step(NodeId(1), vote(3));
    assert!(
        !granted(&c.last_outputs.clone()),
        "second candidate in the same term refused"
    );
    c.step(NodeId(1), vote(2));
    assert!(
        granted(&c.last_outputs.clone()),
        "the same candidate asking again gets the same answer"
    );
}

#[test]
fn s5_2_a_candidate_that_hears_from_a_leader_of_its_term_steps_down() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    c.now = c.node(1).election_deadline();
    c.step(NodeId(1), Input::Tick);
    c.drop_inflight();
    assert_eq!(c.node(1).role(), Role::Candidate);
    c.step(NodeId(1), append(2, 1, 1, (0, 0), vec![], 0));
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), Some(NodeId(2)));
    assert_eq!(c.node(1).term(), Term(1));
}

#[test]
fn s5_2_a_split_vote_is_resolved_by_a_new_election_in_a_later_term() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    // n1 and n2 both stand in term 1 and their requests are lost: nobody wins.
    for id in [1, 2] {
        let d = c.nodes[&NodeId(id)].election_deadline();
        c.now = c.now.max(d);
        c.step(NodeId(id), Input::Tick);
    }
    c.drop_inflight();
    assert!(c.leader().is_none());
    let l = c.elect();
    assert!(c.nodes[&l].term() >= Term(2));
}

// ----- §5.3 log replication -----

#[test]
fn s5_3_the_leader_replicates_a_write_commits_it_on_a_majority_and_answers() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let id = c.put(l, "a", "1");
    let out = c.last_outputs.clone();
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::Persist(Persist::Entries(_))))
        .unwrap();
    let send_at = out
        .iter()
        .position(|o| matches!(o, Output::Send(_)))
        .unwrap();
    assert!(
        persist_at < send_at,
        "leader persists its entry before replicating it"
    );
    c.deliver_all();
    let Some(Ok(ClientResponse::Written { revision })) = c.reply(id) else {
        panic!("{:?}", c.reply(id))
    };
    assert_eq!(c.nodes[&l].commit_index(), *revision);
    c.advance(Duration::from_millis(30)); // a heartbeat carries the commit index
    for n in c.nodes.values() {
        assert_eq!(
            n.state_machine()
                .kv
                .get(&Key::user("a"))
                .map(|v| v.value.as_str()),
            Some("1")
        );
    }
}

#[test]
fn s5_3_a_follower_rejects_entries_whose_predecessor_does_not_match() {
    let mut c = Cluster::new(3);
    c.step(
        NodeId(1),
        append(2, 1, 1, (0, 0), vec![entry(1, 1, "a")], 0),
    );
    // Claims index 1 had term 2: the check fails; the hint names our term 1 from index 1.
    c.step(
        NodeId(1),
        append(2, 1, 2, (1, 2), vec![entry(2, 2, "b")], 0),
    );
    assert_eq!(
        append_result(&c.last_outputs.clone()),
        AppendResult::Reject {
            rejected_prev_index: LogIndex(1),
            conflict_term: Some(Term(1)),
            conflict_index: LogIndex(1)
        }
    );
    // A predecessor beyond our log: the hint is our last index + 1.
    c.step(NodeId(1), append(2, 1, 2, (5, 2), vec![], 0));
    assert_eq!(
        append_result(&c.last_outputs.clone()),
        AppendResult::Reject {
            rejected_prev_index: LogIndex(5),
            conflict_term: None,
            conflict_index: LogIndex(2)
        }
    );
    assert_eq!(c.node(1).log().last_index(), LogIndex(1));
}

/// `append`, with the heartbeat round the leader stamps on it.
fn append_in_round(prev: (u64, u64), entries: Vec<Entry>, commit: u64, round: u64) -> Input {
    let mut input = append(2, 1, 2, prev, entries, commit);
    if let Input::Message(Message {
        body: MessageBody::AppendEntries { round: r, .. },
        ..
    }) = &mut input
    {
        *r = round;
    }
    input
}

fn answers(out: &[Output]) -> Vec<(AppendResult, u64)> {
    sent(out)
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntriesResponse { result, round } => Some((*result, *round)),
            _ => None,
        })
        .collect()
}

/// The step answered exactly once: a success up to `match_index`, in `round`.
fn assert_one_success(c: &Cluster, match_index: u64, round: u64) {
    let success = AppendResult::Success {
        match_index: LogIndex(match_index),
    };
    assert_eq!(answers(&c.last_outputs), vec![(success, round)]);
}

/// The step answered exactly once: a rejection of `rejected_prev` as beyond the follower's log,
/// whose next index is `next`, in round 0.
fn assert_one_rejection_beyond_the_log(c: &Cluster, rejected_prev: u64, next: u64) {
    let reject = AppendResult::Reject {
        rejected_prev_index: LogIndex(rejected_prev),
        conflict_term: None,
        conflict_index: LogIndex(next),
    };
    assert_eq!(answers(&c.last_outputs), vec![(reject, 0)]);
}

/// A follower of n2 in term 2 that appended entry 1 (term 2): the leader streams to it.
fn streaming_follower(tweak: impl Fn(&mut Config)) -> Cluster {
    let mut c = Cluster::with_config(3, tweak);
    c.step(
        NodeId(1),
        append(2, 1, 2, (0, 0), vec![entry(2, 1, "a")], 0),
    );
    assert_one_success(&c, 1, 0);
    c
}

#[test]
fn s5_3_entries_that_overtake_earlier_ones_are_held_and_appended_once_the_gap_fills() {
    let mut c = streaming_follower(|_| {});
    // Entry 3 arrives before entry 2 (the network reordered them): no answer, nothing appended.
    c.step(
        NodeId(1),
        append_in_round((2, 2), vec![entry(2, 3, "c")], 0, 7),
    );
    assert!(answers(&c.last_outputs).is_empty(), "{:?}", c.last_outputs);
    assert!(!c
        .last_outputs
        .iter()
        .any(|o| matches!(o, Output::Persist(Persist::Entries(_)))));
    assert_eq!(c.node(1).log().last_index(), LogIndex(1));
    // Entry 2 fills the gap: both are appended (and persisted before the answer), and one
    // answer acknowledges both, in the later round.
    c.step(
        NodeId(1),
        append_in_round((1, 2), vec![entry(2, 2, "b")], 0, 6),
    );
    assert_eq!(c.node(1).log().last_index(), LogIndex(3));
    assert_one_success(&c, 3, 7);
    let answer_at = c
        .last_outputs
        .iter()
        .position(|o| matches!(o, Output::Send(_)));
    let last_persist = c
        .last_outputs
        .iter()
        .rposition(|o| matches!(o, Output::Persist(Persist::Entries(_))));
    assert!(
        last_persist < answer_at,
        "persist before send: {:?}",
        c.last_outputs
    );
}

#[test]
fn s5_3_a_follower_the_leader_is_probing_rejects_entries_ahead_of_its_log_at_once() {
    // Never answered this leader: it is probing for the match point, and waits on the answer.
    let mut c = Cluster::new(3);
    c.step(
        NodeId(1),
        append(2, 1, 2, (1, 2), vec![entry(2, 2, "b")], 0),
    );
    assert_one_rejection_beyond_the_log(&c, 1, 1);
    // Last answered with a rejection: the same.
    let mut c = streaming_follower(|_| {});
    c.step(NodeId(1), append(2, 1, 2, (9, 2), vec![], 0));
    c.step(
        NodeId(1),
        append(2, 1, 2, (2, 2), vec![entry(2, 3, "c")], 0),
    );
    assert_one_rejection_beyond_the_log(&c, 2, 2);
    // Streamed to by the leader of term 2; a new leader's first message is a probe.
    let mut c = streaming_follower(|_| {});
    c.step(
        NodeId(1),
        append(3, 1, 3, (2, 2), vec![entry(3, 3, "c")], 0),
    );
    assert_one_rejection_beyond_the_log(&c, 2, 2);
}

#[test]
fn s5_3_held_entries_are_dropped_when_the_term_changes() {
    let mut c = streaming_follower(|_| {});
    c.step(
        NodeId(1),
        append(2, 1, 2, (2, 2), vec![entry(2, 3, "c")], 0),
    );
    assert!(answers(&c.last_outputs).is_empty());
    // A leader of term 3 fills index 2 with the entry the held message builds on. The message
    // of term 2 would pass the consistency check, but it must not follow it in: the answer
    // goes to the leader of term 3, which may hold another entry at index 3.
    c.step(
        NodeId(1),
        append(3, 1, 3, (1, 2), vec![entry(2, 2, "b")], 0),
    );
    assert_eq!(c.node(1).log().last_index(), LogIndex(2));
    assert_one_success(&c, 2, 0);
}

#[test]
fn s5_3_a_held_message_whose_predecessor_does_not_match_is_dropped_not_appended() {
    let mut c = streaming_follower(|_| {});
    // Held: it claims index 2 has term 2.
    c.step(
        NodeId(1),
        append(2, 1, 2, (2, 2), vec![entry(2, 3, "c")], 0),
    );
    // The gap fills with an entry of term 1 at index 2 (a leader never sends both; the check
    // is the follower's own): the held message fails the check and is dropped.
    c.step(
        NodeId(1),
        append(2, 1, 2, (1, 2), vec![entry(1, 2, "b")], 0),
    );
    assert_eq!(c.node(1).log().last_index(), LogIndex(2));
    assert_one_success(&c, 2, 0);
}

#[test]
fn s5_3_past_max_held_appends_a_follower_rejects_entries_ahead_of_a_gap() {
    for bound in [0u64, 1] {
        let mut c = streaming_follower(|cfg| cfg.raft.max_held_appends = bound as usize);
        for k in 0..bound {
            c.step(
                NodeId(1),
                append(2, 1, 2, (2 + k, 2), vec![entry(2, 3 + k, "c")], 0),
            );
            assert!(answers(&c.last_outputs).is_empty());
        }
        c.step(
            NodeId(1),
            append(2, 1, 2, (5, 2), vec![entry(2, 6, "f")], 0),
        );
        assert_one_rejection_beyond_the_log(&c, 5, 2);
    }
}

#[test]
fn s5_3_a_follower_truncates_a_conflicting_suffix_and_takes_the_leaders_entries() {
    let mut c = Cluster::new(3);
    c.step(
        NodeId(1),
        append(
            2,
            1,
            1,
            (0, 0),
            vec![entry(1, 1, "a"), entry(1, 2, "b"), entry(1, 3, "c")],
            1,
        ),
    );
    c.step(
        NodeId(1),
        append(3, 1, 2, (1, 1), vec![entry(2, 2, "x")], 1),
    );
    assert_eq!(
        append_result(&c.last_outputs.clone()),
        AppendResult::Success {
            match_index: LogIndex(2)
        }
    );
    let log = c.node(1).log();
    assert_eq!(log.last_index(), LogIndex(2));
    assert_eq!(log.term_at(LogIndex(2)), Some(Term(2)));
    assert_eq!(
        c.durable[&NodeId(1)].entries.len(),
        2,
        "durable log truncated the same way"
    );
    assert!(c
        .events_of(NodeId(1))
        .iter()
        .any(|e| matches!(e, Event::LogTruncated { from: LogIndex(2) })));
}

#[test]
fn s5_3_a_leader_backs_off_a_whole_conflicting_term_at_once_and_repairs_the_follower() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    // n3 holds many entries of a term nobody else has (written by a leader that then failed).
    let stale: Vec<Entry> = (1..=20).map(|i| entry(1, i, "stale")).collect();
    c.step(NodeId(3), append(2, 3, 1, (0, 0), stale, 0));
    // n1 learns term 1 too, so that its own election is in term 2.
    c.step(NodeId(1), append(2, 1, 1, (0, 0), vec![], 0));
    c.drop_inflight();
    c.isolate(NodeId(3));
    // n1 becomes leader of term 2+ with n2 and writes its own entries.
    let l = c.elect_node(1);
    for i in 0..3 {
        c.put(l, &format!("k{i}"), "v");
        c.deliver_all();
    }
    c.heal();
    let mut rounds = 0;
    while c.node(3).log().term_at(LogIndex(1)) == Some(Term(1)) {
        c.advance(Duration::from_millis(25));
        rounds += 1;
        assert!(rounds < 10, "follower not repaired");
    }
    assert_eq!(c.node(1).term(), Term(2));
    assert_eq!(c.node(3).log().last_index(), c.node(1).log().last_index());
    for i in 1..=c.node(1).log().last_index().0 {
        assert_eq!(
            c.node(3).log().term_at(LogIndex(i)),
            c.node(1).log().term_at(LogIndex(i))
        );
    }
    assert!(
        rounds <= 3,
        "one conflict hint should skip the whole stale term; took {rounds} heartbeats"
    );
}

/// Ticks leader `l` every millisecond for `ms` milliseconds; returns when (after the start) it
/// sent an empty AppendEntries, a heartbeat.
fn heartbeats_over(c: &mut Cluster, l: NodeId, ms: u64) -> Vec<Duration> {
    let start = c.now;
    let mut at = Vec::new();
    for i in 1..=ms {
        c.now = start + Duration::from_millis(i);
        c.step(l, Input::Tick);
        let empty = sent(&c.last_outputs).iter().any(
            |m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.is_empty()),
        );
        if empty {
            at.push(Duration::from_millis(i));
        }
        c.deliver_all();
    }
    at
}

#[test]
fn s5_2_a_follower_sent_entries_within_half_a_heartbeat_interval_gets_no_heartbeat() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let interval = c.configs[&l].raft.heartbeat_interval;
    // Find a beat (the ticks stop at the first heartbeat), then write 5 ms before the next one.
    let mut waited = Duration::ZERO;
    while heartbeats_over(&mut c, l, 1).is_empty() {
        waited += Duration::from_millis(1);
        assert!(waited <= interval, "no heartbeat within {interval:?}");
    }
    c.now = c.now + (interval - Duration::from_millis(5));
    c.put(l, "a", "1");
    c.deliver_all();
    let after = heartbeats_over(&mut c, l, 60);
    assert_eq!(
        after.first().copied(),
        Some(interval + Duration::from_millis(5)),
        "the beat 5 ms after the write skips the followers; the next one does not: {after:?}"
    );
}

#[test]
fn s5_3_entries_in_flight_to_one_follower_are_bounded() {
    let mut c = Cluster::with_config(3, |cfg| {
        cfg.raft.max_inflight_messages = 2;
        cfg.raft.max_entries_per_message = 1;
    });
    let l = c.elect();
    c.deliver_all();
    let follower = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let mut sends_to_follower = 0;
    for i in 0..10 {
        c.put(l, &format!("k{i}"), "v");
        sends_to_follower += sent(&c.last_outputs.clone())
            .iter()
            .filter(|m| m.to == follower && matches!(&m.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty()))
            .count();
    }
    assert_eq!(
        sends_to_follower, 2,
        "only max_inflight_messages carry entries before an acknowledgement"
    );
    c.deliver_all();
    // Acknowledgements release the window and the rest flows, batched.
    assert_eq!(
        c.nodes[&follower].log().last_index(),
        c.nodes[&l].log().last_index()
    );
}

// ----- §5.4 safety -----

#[test]
fn s5_4_1_a_vote_is_refused_to_a_candidate_whose_log_is_behind() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    c.step(
        NodeId(1),
        append(2, 1, 2, (0, 0), vec![entry(2, 1, "a")], 0),
    );
    // Past the minimum election timeout, so leader stickiness does not ignore the requests.
    c.now = c.now + c.configs[&NodeId(1)].raft.election_timeout_min;
    let ask = |last_term: u64, last_index: u64| {
        Input::Message(Message {
            from: NodeId(3),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: NodeId(1),
            term: Term(3),
            body: MessageBody::RequestVote {
                last_log_index: LogIndex(last_index),
                last_log_term: Term(last_term),
                transfer: false,
            },
        })
    };
    for (t, i) in [(1, 5), (0, 0)] {
        c.step(NodeId(1), ask(t, i));
        assert!(
            sent(&c.last_outputs.clone())
                .iter()
                .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { granted: false })),
            "candidate with last entry (term {t}, index {i}) must be refused"
        );
    }
    c.step(NodeId(1), ask(2, 1));
    assert!(sent(&c.last_outputs.clone())
        .iter()
        .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { granted: true })));
}

#[test]
fn s5_4_2_a_leader_never_commits_an_earlier_term_entry_by_counting_replicas() {
    // Figure 8's lesson: n1 becomes leader of term 2 holding an entry of term 1 that n1 and n2
    // (a majority) store. Counting replicas of that old entry must not commit it; only once the
    // leader's own term-2 entry is on a majority do both commit.
    let mut c = Cluster::with_config(3, no_pre_vote);
    for id in [1, 2] {
        c.step(
            NodeId(id),
            append(3, id, 1, (0, 0), vec![entry(1, 1, "old")], 0),
        );
    }
    c.drop_inflight();
    c.now = c.node(1).election_deadline();
    c.step(NodeId(1), Input::Tick);
    let vote_request = c
        .inflight
        .iter()
        .find(|m| m.to == NodeId(2))
        .cloned()
        .unwrap();
    c.drop_inflight();
    c.step(NodeId(2), Input::Message(vote_request));
    let vote = c.inflight.pop_front().unwrap();
    c.drop_inflight();
    c.step(NodeId(1), Input::Message(vote));
    assert!(c.node(1).is_leader());
    c.drop_inflight(); // its no-op (term 2, index 2) reaches nobody yet
    let term = c.node(1).term();
    let ack = |m: u64| {
        Input::Message(Message {
            from: NodeId(2),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: NodeId(1),
            term,
            body: MessageBody::AppendEntriesResponse {
                result: AppendResult::Success {
                    match_index: LogIndex(m),
                },
                round: 0,
            },
        })
    };
    c.step(NodeId(1), ack(1));
    assert_eq!(
        c.node(1).commit_index(),
        LogIndex(0),
        "term-1 entry on a majority is not committed by counting"
    );
    c.step(NodeId(1), ack(2));
    assert_eq!(
        c.node(1).commit_index(),
        LogIndex(2),
        "the current-term no-op commits, and the old entry with it"
    );
}

#[test]
fn s5_4_committed_entries_survive_the_crash_of_the_leader_that_committed_them() {
    let mut c = Cluster::new(5);
    let l = c.elect();
    c.deliver_all();
    let mut acked = Vec::new();
    for i in 0..5 {
        let id = c.put(l, &format!("k{i}"), &format!("v{i}"));
        c.deliver_all();
        if let Some(Ok(ClientResponse::Written { revision })) = c.reply(id) {
            acked.push((*revision, format!("k{i}")));
        }
    }
    assert_eq!(acked.len(), 5);
    c.crash(l);
    let l2 = c.elect();
    assert_ne!(l2, l);
    let id = c.get(l2, "k4");
    c.deliver_all();
    assert_eq!(
        c.reply(id),
        Some(&Ok(ClientResponse::Value {
            value: Some("v4".into()),
            revision: acked[4].0
        }))
    );
    for (rev, key) in acked {
        assert_eq!(
            c.nodes[&l2]
                .log()
                .entry(rev)
                .map(|e| e.command.as_ref().clone()),
            Some(Command::Write(Write::Put {
                key: Key::user(key.clone()),
                value: format!("v{}", &key[1..])
            }))
        );
    }
}

#[test]
fn s5_4_a_restarted_node_keeps_its_term_and_vote() {
    let mut c = Cluster::with_config(3, no_pre_vote);
    c.elect_node(1);
    let term = c.node(2).term();
    c.crash(NodeId(2));
    c.restart(NodeId(2));
    assert_eq!(c.node(2).term(), term);
    assert_eq!(c.node(2).voted_for(), Some(NodeId(1)));
    assert_eq!(c.node(2).log().last_index(), c.node(1).log().last_index());
}

// ----- §6.4 linearizable reads -----

#[test]
fn s6_4_a_read_is_answered_only_after_a_majority_confirms_the_leader() {
    let mut c = Cluster::with_config(3, read_index);
    let l = c.elect();
    c.deliver_all();
    c.put(l, "a", "1");
    c.deliver_all();
    c.isolate(l);
    let id = c.get(l, "a");
    c.deliver_all();
    assert_eq!(
        c.reply(id),
        None,
        "a cut-off leader must not answer from its possibly stale state"
    );
    c.heal();
    c.advance(Duration::from_millis(30));
    assert!(
        matches!(c.reply(id), Some(Ok(ClientResponse::Value { value: Some(v), .. })) if v == "1")
    );
}

#[test]
fn s6_4_a_read_is_never_confirmed_by_a_round_sent_before_it_arrived() {
    let mut c = Cluster::with_config(3, read_index);
    let l = c.elect();
    c.deliver_all();
    let first = c.get(l, "a"); // starts round 1
    c.deliver_current(); // round 1 reaches the followers; their answers are in flight
    let second = c.get(l, "a"); // arrives while round 1 is unconfirmed
    c.deliver_current(); // round 1 answers arrive: they confirm only the first read
    assert!(matches!(c.reply(first), Some(Ok(_))));
    assert_eq!(
        c.reply(second),
        None,
        "answers to a round sent before the read cannot confirm it"
    );
    c.deliver_all(); // round 2, started when round 1 was confirmed
    assert!(matches!(c.reply(second), Some(Ok(_))));
}

#[test]
fn s6_4_a_deposed_leader_refuses_its_pending_reads() {
    let mut c = Cluster::with_config(3, read_index);
    let l = c.elect();
    c.deliver_all();
    c.isolate(l);
    let id = c.get(l, "a");
    // The others elect a new leader; the old one learns the higher term on heal.
    let before = c.nodes[&l].term();
    c.advance(Duration::from_millis(600));
    c.heal();
    c.advance(Duration::from_millis(100));
    assert!(c.nodes[&l].term() > before);
    assert!(
        matches!(c.reply(id), Some(Err(ClientError::NotLeader { .. }))),
        "got {:?}",
        c.reply(id)
    );
}

// ----- §6.4.1 reads from a leader lease -----

fn value_of(reply: Option<&ClientResult>) -> Option<String> {
    match reply {
        Some(Ok(ClientResponse::Value { value, .. })) => value.clone(),
        _ => None,
    }
}

/// Elects a leader and has it commit `a = 1`, every message delivered.
fn elect_and_write_a(c: &mut Cluster) -> NodeId {
    let l = c.elect();
    c.deliver_all();
    c.put(l, "a", "1");
    c.deliver_all();
    l
}

#[test]
fn s6_4_1_a_leader_holding_a_lease_answers_a_read_at_once_without_a_round() {
    let mut c = Cluster::new(3);
    let l = elect_and_write_a(&mut c);
    assert!(c.nodes[&l].read_lease_until().is_some_and(|u| u > c.now));
    let id = c.get(l, "a");
    assert_eq!(value_of(c.reply(id)), Some("1".to_string()));
    assert!(
        sent(&c.last_outputs).is_empty(),
        "a lease read sends nothing: {:?}",
        c.last_outputs
    );
}

#[test]
fn s6_4_1_a_lease_lapses_once_no_majority_answered_within_the_window() {
    let mut c = Cluster::new(3);
    let l = elect_and_write_a(&mut c);
    let lease = c.nodes[&l].read_lease_until().expect("a lease");
    let cfg = c.configs[&l].clone();
    // The lease runs from the start of a round the followers answered, short of the window.
    assert!(lease <= c.now + (cfg.raft.election_timeout_min - cfg.raft.lease_read_margin));
    c.isolate(l);
    c.advance_to(lease);
    assert!(c.nodes[&l].is_leader(), "check-quorum has not fired yet");
    let id = c.get(l, "a");
    c.deliver_all();
    assert_eq!(
        c.reply(id),
        None,
        "past its lease, a cut-off leader waits for a round"
    );
    c.heal();
    c.advance(Duration::from_millis(30));
    assert_eq!(value_of(c.reply(id)), Some("1".to_string()));
}

#[test]
fn s6_4_1_no_follower_votes_while_the_leaders_lease_runs() {
    // Whatever a follower hears, it grants no vote within election_timeout_min of the leader's
    // round it answered: the lease's whole argument.
    let mut c = Cluster::with_config(3, no_pre_vote);
    let l = c.elect();
    c.deliver_all();
    let lease = c.nodes[&l].read_lease_until().expect("a lease");
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let term = c.nodes[&l].term();
    let last = c.nodes[&f].log().last_index();
    let last_term = c.nodes[&f].log().last_term();
    let vote = |cand: u32| {
        Input::Message(Message {
            from: NodeId(cand),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: f,
            term: Term(term.0 + 1),
            body: MessageBody::RequestVote {
                last_log_index: last,
                last_log_term: last_term,
                transfer: false,
            },
        })
    };
    let cand = 6 - l.0 - f.0;
    c.now = Instant(lease.0 - 1);
    c.step(f, vote(cand));
    assert!(
        !sent(&c.last_outputs)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { .. }))
            && c.nodes[&f].term() == term,
        "a vote inside the lease is ignored: {:?}",
        c.last_outputs
    );
}

#[test]
fn s6_4_1_a_restarted_node_grants_no_vote_for_an_election_timeout() {
    // It may have answered the leader just before it crashed; that leader's lease counts on it.
    let mut c = Cluster::with_config(3, no_pre_vote);
    let l = c.elect();
    c.deliver_all();
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let cand = NodeId(6 - l.0 - f.0);
    c.crash(f);
    c.restart(f);
    let term = c.nodes[&f].term();
    let vote = Input::Message(Message {
        from: cand,
        incarnation: keel_core::Incarnation::ORIGINAL,
        to: f,
        term: Term(term.0 + 1),
        body: MessageBody::RequestVote {
            last_log_index: c.nodes[&cand].log().last_index(),
            last_log_term: c.nodes[&cand].log().last_term(),
            transfer: false,
        },
    });
    c.step(f, vote.clone());
    assert!(
        !sent(&c.last_outputs)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { .. })),
        "ignored just after restart"
    );
    c.now = c.now + c.configs[&f].raft.election_timeout_min;
    c.step(f, vote);
    assert!(
        sent(&c.last_outputs)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { granted: true })),
        "granted an election timeout later: {:?}",
        c.last_outputs
    );
}

#[test]
fn s6_4_1_after_timeout_now_the_leader_reads_by_round_for_the_rest_of_its_term() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    assert!(c.nodes[&l].read_lease_until().is_some());
    let target = NodeId(if l == NodeId(1) { 2 } else { 1 });
    c.step(l, Input::TransferLeadership { to: Some(target) });
    // TimeoutNow is out (the target is caught up); hold it back and see the lease gone.
    assert!(sent(&c.last_outputs)
        .iter()
        .any(|m| matches!(m.body, MessageBody::TimeoutNow)));
    c.drop_inflight();
    assert_eq!(c.nodes[&l].read_lease_until(), None);
    let id = c.get(l, "a");
    assert_eq!(c.reply(id), None, "no answer before a round confirms it");
    assert!(!sent(&c.last_outputs).is_empty(), "the read starts a round");
}

// ----- §7 log compaction -----

#[test]
fn s7_the_log_is_compacted_behind_a_snapshot_and_a_lagging_follower_gets_the_snapshot() {
    let mut c = Cluster::with_config(3, |cfg| {
        cfg.raft.snapshot_threshold_entries = 10;
        cfg.raft.snapshot_retain_entries = 2;
    });
    let l = c.elect();
    c.deliver_all();
    let lagging = NodeId(if l == NodeId(3) { 2 } else { 3 });
    c.crash(lagging);
    for i in 0..30 {
        c.put(l, &format!("k{i}"), "v");
        c.deliver_all();
    }
    let leader = &c.nodes[&l];
    assert!(leader.snapshot().is_some());
    assert!(
        leader.log().first_index() > LogIndex(5),
        "log compacted: first index {}",
        leader.log().first_index()
    );
    assert!(c.durable[&l].snapshot.is_some(), "snapshot persisted");
    c.restart(lagging);
    c.advance(Duration::from_millis(100));
    assert!(c
        .events_of(lagging)
        .iter()
        .any(|e| matches!(e, Event::SnapshotInstalled { .. })));
    assert_eq!(
        c.nodes[&lagging].log().last_index(),
        c.nodes[&l].log().last_index()
    );
    assert_eq!(
        c.nodes[&lagging].state_machine(),
        c.nodes[&l].state_machine()
    );
}

#[test]
fn s7_a_node_restarts_from_its_snapshot_and_log() {
    let mut c = Cluster::with_config(3, |cfg| cfg.raft.snapshot_threshold_entries = 5);
    let l = c.elect();
    c.deliver_all();
    for i in 0..12 {
        c.put(l, &format!("k{i}"), "v");
        c.deliver_all();
    }
    let state = c.nodes[&l].state_machine().clone();
    c.crash(l);
    c.restart(l);
    let n = &c.nodes[&l];
    assert!(n.log().offset() > LogIndex(0));
    assert_eq!(n.log().last_index(), c.durable[&l].last_index());
    // The snapshot restores state up to its index; the rest re-applies once commit is learned.
    c.elect();
    c.advance(Duration::from_millis(100));
    assert_eq!(c.nodes[&l].state_machine(), &state);
}

// ----- §9.6 pre-vote and check-quorum (Raft thesis) -----

#[test]
fn s9_6_pre_vote_does_not_increment_the_term_of_a_cut_off_node() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let term = c.nodes[&f].term();
    c.isolate(f);
    c.advance(Duration::from_secs(2));
    assert_eq!(
        c.nodes[&f].term(),
        term,
        "repeated pre-votes without a majority never raise the term"
    );
    c.heal();
    c.advance(Duration::from_millis(100));
    assert_eq!(
        c.leader(),
        Some(l),
        "the healthy leader is not disrupted when the node returns"
    );
}

#[test]
fn s9_6_pre_votes_are_refused_while_a_leader_is_heard_from() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let f = if l == NodeId(1) { 2 } else { 1 };
    let term = c.nodes[&l].term();
    c.step(
        NodeId(f),
        Input::Message(Message {
            from: NodeId(if f == 3 { 2 } else { 3 }),
            incarnation: keel_core::Incarnation::ORIGINAL,
            to: NodeId(f),
            term: term.next(),
            body: MessageBody::PreVote {
                last_log_index: LogIndex(100),
                last_log_term: term,
            },
        }),
    );
    assert!(sent(&c.last_outputs.clone())
        .iter()
        .any(|m| matches!(m.body, MessageBody::PreVoteResponse { granted: false })));
    assert_eq!(c.node(f).term(), term);
}

#[test]
fn s9_6_a_leader_that_cannot_hear_a_majority_steps_down_within_an_election_timeout() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    c.isolate(l);
    let cfg = c.configs[&l].clone();
    c.advance(cfg.raft.election_timeout_min * 2 + Duration::from_millis(1));
    assert_ne!(c.nodes[&l].role(), Role::Leader);
    assert!(c.events_of(l).iter().any(|e| matches!(
        e,
        Event::SteppedDown {
            reason: StepDownReason::LostQuorum,
            ..
        }
    )));
}

// ----- keel: forwarding and admission control -----

#[test]
fn keel_a_follower_forwards_requests_to_the_leader_and_passes_the_answer_back() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let w = c.put(f, "a", "1");
    c.deliver_all();
    assert!(matches!(
        c.reply(w),
        Some(Ok(ClientResponse::Written { .. }))
    ));
    assert_eq!(
        c.replies.iter().find(|(_, r)| r.id == w).map(|(n, _)| *n),
        Some(f),
        "answered by the node asked"
    );
    let r = c.get(f, "a");
    c.deliver_all();
    assert!(
        matches!(c.reply(r), Some(Ok(ClientResponse::Value { value: Some(v), .. })) if v == "1")
    );
}

#[test]
fn s9_6_a_pre_vote_refused_by_a_majority_ends_the_round_without_an_election() {
    // Five nodes: with the leader's messages to one follower cut, three others still refuse it.
    let mut c = Cluster::new(5);
    let l = c.elect();
    c.deliver_all();
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    // The follower stops hearing the leader; everyone else still does.
    c.cut.insert((l, f));
    let term = c.node(l.0).term();
    c.advance(Duration::from_millis(250));
    let events = c.events_of(f);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::PreVoteRejected { .. })),
        "{events:?}"
    );
    assert_eq!(c.node(f.0).role(), Role::Follower);
    assert_eq!(
        c.node(l.0).term(),
        term,
        "the healthy leader was not disturbed"
    );
    assert!(c.node(l.0).is_leader());
}

#[test]
fn keel_a_duplicated_forward_executes_the_write_once() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let f = NodeId(if l == NodeId(1) { 2 } else { 1 });
    let cas = ClientOp::Write(Write::Cas {
        key: Key::user("a"),
        from: None,
        to: "1".into(),
    });
    let w = c.request(f, cas);
    // The network delivers the Forward twice.
    let forward = c
        .inflight
        .iter()
        .find(|m| matches!(m.body, MessageBody::Forward { .. }))
        .cloned()
        .expect("the follower forwards the write");
    c.inflight.push_back(forward);
    c.deliver_all();
    assert!(
        matches!(c.reply(w), Some(Ok(ClientResponse::Written { .. }))),
        "{:?}",
        c.reply(w)
    );
    let writes = c
        .node(l.0)
        .log()
        .entries()
        .iter()
        .filter(|e| matches!(&*e.command, Command::Write(_)))
        .count();
    assert_eq!(writes, 1, "the duplicate was appended again");
}

#[test]
fn keel_a_node_without_a_leader_answers_not_leader_at_once() {
    let mut c = Cluster::new(3);
    let id = c.put(NodeId(1), "a", "1");
    assert_eq!(
        c.reply(id),
        Some(&Err(ClientError::NotLeader { leader_hint: None }))
    );
}

#[test]
fn keel_past_max_pending_proposals_the_leader_sheds_writes_at_once() {
    let mut c = Cluster::with_config(3, |cfg| cfg.coordination.max_pending_proposals = 4);
    let l = c.elect();
    c.deliver_all();
    c.isolate(l); // nothing commits, so proposals pile up
    let ids: Vec<_> = (0..6).map(|i| c.put(l, &format!("k{i}"), "v")).collect();
    for id in &ids[..4] {
        assert_eq!(c.reply(*id), None);
    }
    for id in &ids[4..] {
        assert!(matches!(
            c.reply(*id),
            Some(Err(ClientError::Overloaded { .. }))
        ));
    }
    assert!(c.events_of(l).iter().any(|e| matches!(
        e,
        Event::RequestShed {
            reason: ShedReason::TooManyPendingProposals,
            ..
        }
    )));
}

#[test]
fn keel_an_unanswerable_write_is_answered_indeterminate_after_the_request_timeout() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    c.isolate(l);
    let id = c.put(l, "a", "1");
    let timeout = c.configs[&l].coordination.request_timeout;
    c.advance(timeout + Duration::from_millis(30));
    assert_eq!(c.reply(id), Some(&Err(ClientError::Indeterminate)));
}

#[test]
fn keel_a_write_replaced_by_another_leader_is_answered_not_committed() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    c.isolate(l);
    let id = c.put(l, "lost", "1");
    // The majority elects a new leader and commits over index of the lost write.
    c.advance(Duration::from_millis(400));
    let l2 = c
        .leader()
        .filter(|x| *x != l)
        .or_else(|| {
            c.nodes
                .values()
                .filter(|n| n.is_leader() && n.id() != l)
                .map(|n| n.id())
                .next()
        })
        .expect("new leader");
    c.put(l2, "won", "2");
    c.deliver_all();
    c.heal();
    c.advance(Duration::from_millis(100));
    assert_eq!(c.reply(id), Some(&Err(ClientError::NotCommitted)));
}

#[test]
fn s3_10_a_leader_hands_leadership_to_a_caught_up_follower_without_an_election_timeout() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let put = c.put(l, "a", "1");
    c.deliver_all();
    assert!(matches!(c.reply(put), Some(Ok(_))));
    let target = if l == NodeId(1) { NodeId(2) } else { NodeId(1) };
    let term = c.nodes[&l].term();
    c.step(l, Input::TransferLeadership { to: Some(target) });
    // While handing over, the leader refuses writes and points at the target.
    let refused = c.put(l, "b", "2");
    assert_eq!(
        c.reply(refused),
        Some(&Err(ClientError::NotLeader {
            leader_hint: Some(target)
        }))
    );
    // No time passes: the target takes over on TimeoutNow, not on its election timer, and the
    // voters grant although they heard from the old leader a moment ago.
    c.deliver_all();
    assert_eq!(c.leader(), Some(target));
    assert_eq!(c.nodes[&target].term(), term.next());
    assert!(!c.nodes[&l].is_leader());
    assert!(c
        .events_of(l)
        .iter()
        .any(|e| matches!(e, Event::TransferStarted { to, .. } if *to == target)));
    // Everything the old leader committed is there under the new one.
    let get = c.get(target, "a");
    c.deliver_all();
    assert!(
        matches!(c.reply(get), Some(Ok(ClientResponse::Value { value: Some(v), .. })) if v == "1"),
        "{:?}",
        c.reply(get)
    );
}

#[test]
fn s3_10_a_transfer_to_an_unreachable_follower_is_given_up_and_writes_resume() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.deliver_all();
    let target = if l == NodeId(1) { NodeId(2) } else { NodeId(1) };
    c.crash(target);
    c.step(l, Input::TransferLeadership { to: Some(target) });
    let cfg_timeout = c.nodes[&l].config().raft.transfer_timeout;
    c.advance(cfg_timeout + Duration::from_millis(1));
    assert!(c.nodes[&l].is_leader(), "the leader keeps leading");
    assert!(c
        .events_of(l)
        .iter()
        .any(|e| matches!(e, Event::TransferAborted { to, .. } if *to == target)));
    let put = c.put(l, "b", "2");
    c.deliver_all();
    assert!(matches!(c.reply(put), Some(Ok(_))), "{:?}", c.reply(put));
}
