//! The checkers together, on a real three-node cluster stepped by a tiny harness: a correct
//! cluster keeps every checker quiet, and each forged observation fires the checker it should.

use std::sync::Arc;

use keel_core::{
    ClientOp, ClientRequest, ClientResponse, Command, Config, DurableState, Entry, HardState,
    Incarnation, Input, Instant, Key, LogIndex, Membership, Message, MessageBody, Node, NodeId,
    Output, RequestId, Term, Write,
};

use super::{
    SafetyCheckers, ACKED_WRITES, COMMITTED_ON_VOTERS, ELECTED_BY_VOTERS, FRESH_READS,
    ONE_VOTER_AT_A_TIME, ONLY_VOTERS_VOTE, STATE_MACHINE_SAFETY,
};

fn put(k: &str, v: &str) -> Arc<Command> {
    Arc::new(Command::Write(Write::Put {
        key: Key::user(k),
        value: v.into(),
    }))
}

/// The write the harness's client makes.
fn the_write() -> Write {
    Write::Put {
        key: Key::user("a"),
        value: "1".into(),
    }
}

/// Three nodes, their checkers and the messages in flight, stepped one input at a time.
struct Cluster {
    members: Vec<NodeId>,
    nodes: Vec<Node>,
    checkers: SafetyCheckers,
    inbox: Vec<(usize, Input)>,
    now: u64,
    out: Vec<Output>,
    written: Option<LogIndex>,
}

impl Cluster {
    fn new() -> Cluster {
        let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes: Vec<Node> = members
            .iter()
            .map(|id| {
                Node::new(
                    Config::new(*id, members.clone(), u64::from(id.0)),
                    DurableState::default(),
                    Instant(0),
                )
                .expect("valid config")
            })
            .collect();
        Cluster {
            checkers: SafetyCheckers::new(&members),
            members,
            nodes,
            inbox: Vec::new(),
            now: 0,
            out: Vec::new(),
            written: None,
        }
    }

    /// Nothing in flight: jumps to the next deadline, ticks every node due, and hands the write
    /// to the leader if it has not been acknowledged yet.
    fn wake(&mut self) {
        let now = self.now;
        self.now = self
            .nodes
            .iter()
            .map(|n| n.next_deadline().0)
            .min()
            .unwrap_or(now)
            .max(now);
        for (i, n) in self.nodes.iter().enumerate() {
            if n.next_deadline().0 <= self.now {
                self.inbox.push((i, Input::Tick));
            }
        }
        if self.written.is_none() {
            if let Some(l) = self.nodes.iter().position(|n| n.is_leader()) {
                self.inbox.push((
                    l,
                    Input::Client(ClientRequest {
                        id: RequestId(1),
                        op: ClientOp::Write(the_write()),
                    }),
                ));
            }
        }
    }

    /// Steps the oldest input, lets the checkers see the step, and routes what it produced.
    fn step(&mut self) {
        let (i, input) = self.inbox.remove(0);
        let now = self.now;
        self.out.clear();
        self.nodes[i].step(Instant(now), input, &mut self.out);
        self.checkers.after_step(now, &self.nodes[i], &self.out);
        for o in self.out.drain(..) {
            match o {
                Output::Send(m) => {
                    let Message { to, .. } = m;
                    self.inbox.push((to.0 as usize - 1, Input::Message(m)));
                }
                Output::Reply(r) => {
                    if let Ok(ClientResponse::Written { revision }) = r.result {
                        self.checkers
                            .write_acknowledged(now, revision, &the_write());
                        self.written = Some(revision);
                    }
                }
                _ => {}
            }
        }
        self.now += 100;
    }

    /// Runs until the write is acknowledged and nothing is in flight (or 2,000 steps), then
    /// runs the end-of-run checks; returns the revision the write was acknowledged at.
    fn run_until_written() -> (Cluster, LogIndex) {
        let mut c = Cluster::new();
        for _ in 0..2_000 {
            if c.inbox.is_empty() {
                c.wake();
            }
            c.step();
            if c.written.is_some() && c.inbox.is_empty() {
                break;
            }
        }
        let revision = c.written.expect("the write was acknowledged");
        let refs: Vec<&Node> = c.nodes.iter().collect();
        c.checkers.at_end(c.now, &refs);
        (c, revision)
    }

    /// Asserts that no checker fired.
    fn assert_quiet(&self) {
        assert!(
            self.checkers.violations().is_empty(),
            "{:?}",
            self.checkers.violations()
        );
    }
}

#[test]
fn a_real_cluster_keeps_every_checker_quiet() {
    let (c, _) = Cluster::run_until_written();
    c.assert_quiet();
    assert!(c.checkers.checks_run() > 10);
}

/// A committed log that disagrees with what the nodes applied: state machine safety fires.
#[test]
fn a_committed_log_unlike_the_applied_state_fires() {
    let (c, revision) = Cluster::run_until_written();
    c.assert_quiet();
    let mut other = SafetyCheckers::new(&c.members);
    for i in 1..=revision.0 {
        other
            .committed
            .observe_commit(LogIndex(i), Term(1), &put("a", "not what was applied"))
            .expect("fresh");
    }
    let refs: Vec<&Node> = c.nodes.iter().collect();
    other.at_end(c.now, &refs);
    assert!(
        other
            .violations()
            .iter()
            .any(|v| v.checker == STATE_MACHINE_SAFETY),
        "{:?}",
        other.violations()
    );
}

#[test]
fn a_forged_acknowledgement_fires() {
    let (mut c, revision) = Cluster::run_until_written();
    c.assert_quiet();
    let forged = Write::Put {
        key: Key::user("a"),
        value: "forged".into(),
    };
    c.checkers.write_acknowledged(c.now, revision, &forged);
    assert_eq!(c.checkers.violations().len(), 1);
    assert_eq!(c.checkers.violations()[0].checker, ACKED_WRITES);
}

/// Reads: a leader that applied everything committed before the read was issued passes; one
/// answering from a state behind that (a deposed leader unaware of it) fires.
#[test]
fn a_read_from_behind_the_committed_log_fires() {
    let (mut c, _) = Cluster::run_until_written();
    c.assert_quiet();
    let now = c.now;
    let leader = c.nodes.iter().find(|n| n.is_leader()).expect("a leader");
    let applied = leader.applied_index();
    assert_eq!(c.checkers.committed_max(), applied);
    c.checkers.read_answered(now, leader, applied);
    assert_eq!(c.checkers.violations().len(), 0);
    c.checkers
        .read_answered(now, leader, LogIndex(applied.0 + 1));
    assert_eq!(c.checkers.violations().len(), 1);
    assert_eq!(c.checkers.violations()[0].checker, FRESH_READS);
}

/// The checkers that fired, in order.
fn fired(c: &SafetyCheckers) -> Vec<&'static str> {
    c.violations().iter().map(|v| v.checker).collect()
}

/// n2 of a cluster bootstrapped with n1..n3, whose log holds `config` at index 1 (of term 1),
/// then told by n1 (leading term 1) that index 1 is committed: the checkers see it commit.
fn commits_config(config: Membership) -> SafetyCheckers {
    let members = [NodeId(1), NodeId(2), NodeId(3)];
    let durable = DurableState {
        hard_state: HardState {
            term: Term(1),
            voted_for: Some(NodeId(1)),
        },
        snapshot: None,
        entries: vec![Entry {
            term: Term(1),
            index: LogIndex(1),
            command: Arc::new(Command::Membership(config)),
        }],
    };
    let cfg = Config::new(NodeId(2), members.to_vec(), 2);
    let mut node = Node::new(cfg, durable, Instant(0)).expect("valid config");
    let mut checkers = SafetyCheckers::new(&members);
    let append = Message {
        from: NodeId(1),
        incarnation: Incarnation::ORIGINAL,
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(1),
            prev_log_term: Term(1),
            entries: Vec::new(),
            leader_commit: LogIndex(1),
            round: 1,
        },
    };
    let mut out = Vec::new();
    node.step(Instant(1), Input::Message(append), &mut out);
    assert_eq!(node.commit_index(), LogIndex(1));
    checkers.after_step(1, &node, &out);
    checkers
}

/// A committed configuration one voter away from the one before it passes; one that swaps two
/// voters at once (disjoint majorities possible) fires.
#[test]
fn a_committed_change_of_two_voters_fires() {
    let one = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
    assert!(fired(&commits_config(one)).is_empty());
    let two = Membership::bootstrap(&[NodeId(1), NodeId(4), NodeId(5)]);
    assert_eq!(fired(&commits_config(two)), [ONE_VOTER_AT_A_TIME]);
}

/// A granted vote or pre-vote sent by a node that is no voter of its own configuration (here a
/// new incarnation with no configuration at all, as after a wiped disk) fires; the same answer
/// from a voter, or a refusal, passes.
#[test]
fn a_vote_granted_by_a_non_voter_fires() {
    let (c, _) = Cluster::run_until_written();
    let voter = c.nodes.iter().find(|n| !n.is_leader()).expect("a follower");
    let mut cfg = Config::new(voter.id(), Vec::new(), 2);
    cfg.incarnation = Incarnation(9);
    let wiped = Node::new(cfg, DurableState::default(), Instant(0)).expect("valid config");
    let answer = |node: &Node, body: MessageBody| {
        [Output::Send(Message {
            from: node.id(),
            incarnation: node.incarnation(),
            to: NodeId(1),
            term: Term(5),
            body,
        })]
    };
    let mut checkers = SafetyCheckers::new(&c.members);
    for pre in [false, true] {
        let body = |granted| match pre {
            true => MessageBody::PreVoteResponse { granted },
            false => MessageBody::RequestVoteResponse { granted },
        };
        checkers.after_step(c.now, voter, &answer(voter, body(true)));
        // The same id, restarted on an empty disk.
        checkers.node_restarted(wiped.id());
        checkers.after_step(c.now, &wiped, &answer(&wiped, body(false)));
        assert_eq!(
            fired(&checkers).len(),
            usize::from(pre),
            "{:?}",
            checkers.violations()
        );
        checkers.after_step(c.now, &wiped, &answer(&wiped, body(true)));
    }
    assert_eq!(fired(&checkers), [ONLY_VOTERS_VOTE, ONLY_VOTERS_VOTE]);
}

/// A leader seen without the votes of a majority of its configuration's voters fires: fresh
/// checkers saw none of the votes it was granted, only one from an incarnation its
/// configuration does not name (which counts for nothing). The checkers of the real run saw
/// the real votes and stayed quiet.
#[test]
fn a_leader_without_a_majority_of_voters_fires() {
    let (c, _) = Cluster::run_until_written();
    c.assert_quiet();
    let leader = c.nodes.iter().find(|n| n.is_leader()).expect("a leader");
    let follower = c.nodes.iter().find(|n| !n.is_leader()).expect("a follower");
    let mut cfg = Config::new(follower.id(), c.members.clone(), 3);
    cfg.incarnation = Incarnation(9);
    let stranger = Node::new(cfg, DurableState::default(), Instant(0)).expect("valid config");
    let vote = Output::Send(Message {
        from: stranger.id(),
        incarnation: stranger.incarnation(),
        to: leader.id(),
        term: leader.term(),
        body: MessageBody::RequestVoteResponse { granted: true },
    });
    let mut fresh = SafetyCheckers::new(&c.members);
    fresh.after_step(c.now, &stranger, &[vote]);
    fresh.after_step(c.now, leader, &[]);
    // The stranger is no voter of its own configuration either.
    assert_eq!(fired(&fresh), [ONLY_VOTERS_VOTE, ELECTED_BY_VOTERS]);
}

/// A commit held by only the leader, or by the leader and a learner, fires; held by a majority
/// of the voters it passes.
#[test]
fn a_commit_held_by_fewer_than_a_majority_of_voters_fires() {
    let (mut c, revision) = Cluster::run_until_written();
    c.assert_quiet();
    let leader = c.nodes.iter().find(|n| n.is_leader()).expect("a leader");
    let term = leader.log().term_at(revision).expect("held");
    let (l, o) = (leader.id(), Incarnation::ORIGINAL);
    let other = c
        .members
        .iter()
        .copied()
        .find(|m| *m != l)
        .expect("a follower");
    let now = c.now;
    c.checkers
        .committed_held_by(now, leader, (revision, term), &[(l, o), (other, o)]);
    c.assert_quiet();
    c.checkers
        .committed_held_by(now, leader, (revision, term), &[(l, o), (NodeId(4), o)]);
    c.checkers.committed_held_by(
        now,
        leader,
        (revision, term),
        &[(l, o), (other, Incarnation(9))],
    );
    assert_eq!(
        fired(&c.checkers),
        [COMMITTED_ON_VOTERS, COMMITTED_ON_VOTERS]
    );
}
