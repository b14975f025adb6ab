//! The checkers together, on a real three-node cluster stepped by a tiny harness: a correct
//! cluster keeps every checker quiet, and each forged observation fires the checker it should.

use std::sync::Arc;

use keel_core::{
    ClientOp, ClientRequest, ClientResponse, Command, Config, DurableState, Input, Instant, Key,
    LogIndex, Message, Node, NodeId, Output, RequestId, Term, Write,
};

use super::{SafetyCheckers, ACKED_WRITES, FRESH_READS, STATE_MACHINE_SAFETY};

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
