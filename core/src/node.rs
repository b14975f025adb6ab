//! The [`Node`]: one cluster member, the one sans-IO object a driver talks to.
//!
//! Owns: the composition of the consensus part ([`crate::raft`]) and the coordination part
//! ([`crate::coord`]), the routing of each input to the part that handles it, and the read-only
//! views drivers, checkers and tests use. Never: I/O, clocks, threads, or unseeded randomness;
//! never protocol logic of its own.

use crate::config::{Config, ConfigError};
use crate::coord::{Coordination, Origin};
use crate::io::{DurableState, Input, Output};
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::raft::membership::Membership;
use crate::raft::Raft;
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use crate::types::{Incarnation, Instant, LogIndex, NodeId, Term};

pub use crate::raft::Role;

/// One cluster member. See the crate docs for the driving contract.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    pub(crate) raft: Raft,
    pub(crate) coord: Coordination,
}

impl Node {
    /// A node starting (or restarting) at `now` from its durable state.
    pub fn new(cfg: Config, durable: DurableState, now: Instant) -> Result<Node, ConfigError> {
        cfg.validate()?;
        let DurableState {
            hard_state,
            snapshot,
            entries,
        } = durable;
        let (offset, offset_term, base, sm) = match &snapshot {
            Some(s) => (
                s.last_index,
                s.last_term,
                s.membership.clone(),
                StateMachine::clone(&s.state),
            ),
            None => (
                LogIndex(0),
                Term(0),
                cfg.bootstrap_membership(),
                StateMachine::default(),
            ),
        };
        let log = RaftLog::restore(offset, offset_term, base, entries);
        let raft = Raft::new(&cfg, hard_state, log, snapshot, now);
        let in_force = (raft.membership_index(), raft.membership());
        let coord = Coordination::new(&cfg, in_force, sm, now);
        Ok(Node { cfg, raft, coord })
    }

    /// Reacts to one input, pushing outputs (in the order they must be executed) into `out`.
    pub fn step(&mut self, now: Instant, input: Input, out: &mut Vec<Output>) {
        let (raft, coord) = (&mut self.raft, &mut self.coord);
        match input {
            Input::Tick => raft.tick(now, coord, out),
            Input::Message(m) => self.receive(now, m, out),
            Input::Client(req) => {
                coord.client_request(now, Origin::Local(req.id), req.op, raft, out)
            }
            Input::Workload(ev) => coord.workload_event(now, ev, out),
            Input::TransferLeadership { to } => raft.transfer_leadership(now, to, out),
        }
        self.coord.after_input(now, &mut self.raft, out);
    }

    /// A message from a peer: forwarding goes to coordination directly (it is between a node
    /// and the leader it believes in; terms do not apply), everything else passes Raft's term
    /// rules first.
    fn receive(&mut self, now: Instant, m: Message, out: &mut Vec<Output>) {
        if !self.raft.accepts(&m) {
            return;
        }
        self.coord.heard(m.from, now);
        match m.body {
            MessageBody::Forward { id, op } => {
                return self
                    .coord
                    .forwarded_request(now, m.from, id, *op, &mut self.raft, out)
            }
            MessageBody::ForwardReply { id, result } => {
                return self.coord.forward_reply(id, *result, out)
            }
            _ => {}
        }
        if let Some(m) = self.raft.receive(now, m, &mut self.coord, out) {
            self.coord.receive(now, m, &mut self.raft, out);
        }
    }

    /// When this follower's or candidate's election timer fires (`NEVER` while leader). One of
    /// the deadlines behind [`Node::next_deadline`].
    pub fn election_deadline(&self) -> Instant {
        self.raft.election_deadline()
    }

    /// When the driver must deliver the next [`Input::Tick`] (it may deliver one earlier).
    #[inline]
    pub fn next_deadline(&self) -> Instant {
        self.raft.next_deadline().min(self.coord.next_deadline())
    }

    // ----- read-only views for drivers, checkers and tests -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn incarnation(&self) -> Incarnation {
        self.cfg.incarnation
    }
    /// The configuration in force (the log's last, committed or not).
    pub fn membership(&self) -> &Membership {
        self.raft.membership()
    }
    /// The index of the entry holding the configuration in force.
    pub fn membership_index(&self) -> LogIndex {
        self.raft.membership_index()
    }
    /// True if this node votes in the configuration in force.
    pub fn is_voter(&self) -> bool {
        self.raft
            .membership()
            .is_voter(self.cfg.id, self.cfg.incarnation)
    }
    /// True if the configuration names this id as another incarnation (this node lost its data
    /// directory and was not added back yet), or does not name this node at all while naming
    /// others: it never votes and must be added back (`member replace`).
    pub fn needs_replacement(&self) -> bool {
        let m = self.raft.membership();
        !m.members().is_empty() && !m.knows(self.cfg.id, self.cfg.incarnation)
    }
    /// Members heard from as another incarnation than the configuration names, with the
    /// incarnation heard (nodes that lost their disk and need replacing).
    pub fn strangers(&self) -> impl Iterator<Item = (NodeId, Incarnation)> + '_ {
        self.raft.strangers().iter().map(|(id, inc)| (*id, *inc))
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn role(&self) -> Role {
        self.raft.role()
    }
    pub fn term(&self) -> Term {
        self.raft.term()
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.raft.voted_for()
    }
    /// The leader this node believes in for its current term (itself when leader).
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader()
    }
    pub fn is_leader(&self) -> bool {
        self.raft.role() == Role::Leader
    }
    /// Until when this leader may answer reads from its lease (`RaftConfig::lease_reads`), if it
    /// holds one (it may have run out already). No other leader may be elected before then.
    #[inline]
    pub fn read_lease_until(&self) -> Option<Instant> {
        self.raft.read_lease_until()
    }
    pub fn commit_index(&self) -> LogIndex {
        self.raft.commit_index()
    }
    pub fn applied_index(&self) -> LogIndex {
        self.raft.applied_index()
    }
    pub fn log(&self) -> &RaftLog {
        self.raft.log()
    }
    pub fn state_machine(&self) -> &StateMachine {
        self.coord.state_machine()
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.raft.snapshot()
    }
    /// Client writes admitted and not yet answered.
    pub fn pending_proposals(&self) -> usize {
        self.coord.pending_proposals()
    }
    /// The copies this node runs, by name, with their epochs (for drivers and checkers).
    pub fn running_copies(&self) -> impl Iterator<Item = (&str, LogIndex)> {
        self.coord.running_copies()
    }
    /// Until when this node holds its workload lease (ZERO: never held).
    pub fn lease_until(&self) -> Instant {
        self.coord.lease_until()
    }
}
