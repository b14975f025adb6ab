//! The consensus part of a node: Raft with pre-vote, check-quorum, leases, read-index,
//! snapshots and leadership transfer.
//!
//! Owns: the term, the vote, the log, the role and the leader, the commit and applied indexes
//! (the commit index moves only through the guarded [`Raft::commit_to`]), the newest snapshot,
//! the leader's per-follower progress, held appends, the read-index queue, a transfer in
//! progress, and one timer table (election, heartbeat, check-quorum). Never: I/O, clocks,
//! unseeded randomness, or what an entry means: committed entries go to the application above
//! it through [`App`], and the application reaches Raft only through the narrow interface at
//! the end of this file (role, leader, term, propose, reads, quorum freshness).

mod commit;
mod election;
mod follower;
pub mod log;
mod members;
pub mod membership;
mod progress;
mod read;
mod receive;
mod replication;
pub mod snapshot;
mod snapshot_transfer;
mod timers;
mod transfer;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Config, RaftConfig};
use crate::coord::ReadCtx;
use crate::io::{ClientError, HardState, Output, Persist};
use crate::message::{Command, Entry, Message, MessageBody};
use crate::rng::NodeRng;
use crate::state_machine::StateMachine;
use crate::testing::{Planted, PlantedBug};
use crate::trace::Event;
use crate::types::{Incarnation, Instant, LogIndex, NodeId, Term};

pub(crate) use commit::Commit;
use log::RaftLog;
pub(crate) use progress::Leadership;
pub(crate) use read::ReadAdmission;
use snapshot::Snapshot;

/// What a node currently is in the election protocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Role {
    Follower,
    /// Asking for pre-votes; its term is not yet incremented.
    PreCandidate,
    Candidate,
    Leader,
}

/// Who sends, in which term: what an answer or a coordination message is stamped with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    pub id: NodeId,
    pub incarnation: Incarnation,
    pub term: Term,
}

impl Stamp {
    pub(crate) fn send(self, to: NodeId, body: MessageBody, out: &mut Vec<Output>) {
        self.send_in(self.term, to, body, out);
    }

    /// Sends in `term` rather than the current term (pre-votes carry a prospective term).
    pub(crate) fn send_in(self, term: Term, to: NodeId, body: MessageBody, out: &mut Vec<Output>) {
        out.push(Output::Send(Message {
            from: self.id,
            incarnation: self.incarnation,
            to,
            term,
            body,
        }));
    }
}

/// What Raft asks of the application above it (the coordination part), at the exact points of
/// the protocol where the application must act. Each call may push outputs; Raft never looks at
/// what the application keeps.
pub(crate) trait App {
    /// This node won an election at `now` (before any entry of its term can commit).
    fn became_leader(&mut self, now: Instant);
    /// This node stops leading (or never led: called on every step-down).
    fn stepped_down(&mut self);
    /// Applies the committed `entry` at `index`, in index order, exactly once.
    fn apply(
        &mut self,
        now: Instant,
        stamp: Stamp,
        index: LogIndex,
        entry: &Entry,
        out: &mut Vec<Output>,
    );
    /// Entries up to `applied` are applied (after every apply round, even an empty one).
    fn applied_to(&mut self, applied: LogIndex);
    /// The configuration in force changed (an entry appended or truncated, a snapshot installed).
    fn membership_changed(
        &mut self,
        now: Instant,
        index: LogIndex,
        membership: &membership::Membership,
    );
    /// The state to put in a snapshot taken now.
    fn snapshot_state(&self) -> Arc<StateMachine>;
    /// A snapshot from the leader replaces the applied state.
    fn restore(&mut self, state: &StateMachine);
    /// A snapshot up to `last_index` was installed (the applied state restored, unless a planted
    /// bug keeps it) and persisted.
    fn snapshot_installed(&mut self, stamp: Stamp, last_index: LogIndex, out: &mut Vec<Output>);
    /// A read may be answered from the applied state (applied up to `applied`).
    fn read_ready(&mut self, stamp: Stamp, read: ReadCtx, applied: LogIndex, out: &mut Vec<Output>);
    /// A read cannot be answered: tell its client `error`.
    fn read_failed(
        &mut self,
        stamp: Stamp,
        read: ReadCtx,
        error: ClientError,
        out: &mut Vec<Output>,
    );
}

/// One node's Raft state. See the module docs.
#[derive(Debug)]
pub(crate) struct Raft {
    cfg: RaftConfig,
    id: NodeId,
    incarnation: Incarnation,
    /// What this node last made of the configuration in force (see `members.rs`): every member
    /// but this one, the voters among them, the quorum, and whether this node votes.
    members: members::InForce,
    rng: NodeRng,
    pub(crate) planted: Planted,

    // Persistent (mirrored by Persist outputs).
    term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,
    /// The newest snapshot this node holds (taken or installed).
    snapshot: Option<Snapshot>,

    // Volatile.
    role: Role,
    leader: Option<NodeId>,
    commit: Commit,
    applied: LogIndex,
    /// Every timer of Raft's (election, heartbeat, check-quorum).
    timers: timers::Timers,
    /// When this node last heard from the leader of its term (for leader stickiness).
    leader_contact: Option<Instant>,
    /// AppendEntries that arrived ahead of a gap in the log, oldest first (see
    /// `RaftConfig::max_held_appends`). Only those of the current leader and term are appended.
    held: Vec<follower::HeldAppend>,
    /// The leader and term this follower last answered AppendEntries with a success (None after a
    /// rejection): while that is its current leader and term, the leader streams entries to it,
    /// so a message ahead of a gap was most likely overtaken by a later one and is worth holding.
    /// Otherwise the leader is probing, and a message ahead of the log is answered at once, so
    /// the probe moves on.
    streaming: Option<(Term, NodeId)>,
    /// When this incarnation started (see `leader_is_recent`).
    started_at: Instant,
    /// How long a read lease runs from its start, in microseconds: `election_timeout_min -
    /// lease_read_margin`; None with lease reads (or check-quorum) off.
    lease_window_us: Option<u64>,
    /// Answers to this node's current pre-vote or vote round: voter -> granted.
    votes: BTreeMap<NodeId, bool>,
    /// Present while leader.
    lead: Option<Leadership>,
    /// Members heard from as another incarnation than the configuration names.
    strangers: members::Strangers,
    /// The leader's encoding of its newest snapshot (made when it is first sent).
    encoded: Option<snapshot_transfer::Encoded>,
    /// A snapshot arriving from the leader, chunk by chunk.
    incoming: Option<snapshot_transfer::Incoming>,
}

impl Raft {
    /// Raft restarting at `now` from its durable state (`offset`: the snapshot's point).
    pub(crate) fn new(
        cfg: &Config,
        hard_state: HardState,
        log: RaftLog,
        snapshot: Option<Snapshot>,
        now: Instant,
    ) -> Raft {
        let offset = log.offset();
        let members = members::InForce::of(cfg.id, cfg.incarnation, &log);
        let mut raft = Raft {
            cfg: cfg.raft.clone(),
            id: cfg.id,
            incarnation: cfg.incarnation,
            members,
            rng: NodeRng::new(cfg.seed),
            planted: Planted::default(),
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            log,
            snapshot,
            role: Role::Follower,
            leader: None,
            commit: Commit::new(offset),
            applied: offset,
            timers: timers::Timers::new(),
            leader_contact: None,
            held: Vec::new(),
            streaming: None,
            started_at: now,
            lease_window_us: cfg.raft.lease_window_us(),
            votes: BTreeMap::new(),
            lead: None,
            strangers: members::Strangers::new(),
            encoded: None,
            incoming: None,
        };
        raft.redraw_election_timer(now);
        raft
    }

    /// True when running with the planted bug `bug` (never without the `planted-bugs` feature).
    fn planted(&self, bug: PlantedBug) -> bool {
        self.planted.is(bug)
    }

    /// Time passed: the leader's heartbeats and checks, or a follower's election timer.
    pub(crate) fn tick(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        if self.role == Role::Leader {
            self.leader_tick(now, app, out);
        } else if now >= self.timers.election {
            self.election_timeout(now, app, out);
        }
    }

    /// When this follower's or candidate's election timer fires (`NEVER` while leader).
    pub(crate) fn election_deadline(&self) -> Instant {
        if self.lead.is_some() {
            Instant::NEVER
        } else {
            self.timers.election
        }
    }

    /// The earliest of Raft's timers: the leader's heartbeat, quorum check and transfer, or
    /// the election timer.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Instant {
        match &self.lead {
            Some(lead) => {
                let transfer = lead.transfer.map_or(Instant::NEVER, |t| t.deadline);
                self.timers.leader_next(self.cfg.check_quorum, transfer)
            }
            None => self.timers.election,
        }
    }

    // ----- shared helpers -----

    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            id: self.id,
            incarnation: self.incarnation,
            term: self.term,
        }
    }

    fn send(&self, to: NodeId, body: MessageBody, out: &mut Vec<Output>) {
        self.stamp().send(to, body, out);
    }

    fn trace(&self, event: Event, out: &mut Vec<Output>) {
        out.push(Output::Trace(event));
    }

    fn persist_hard_state(&self, out: &mut Vec<Output>) {
        out.push(Output::Persist(Persist::HardState(HardState {
            term: self.term,
            voted_for: self.voted_for,
        })));
    }

    /// Restarts the election timer with the timeout drawn last (on hearing the leader, on
    /// granting a vote).
    fn reset_election_timer(&mut self, now: Instant) {
        self.timers.reset_election(now);
    }

    /// Draws a new randomised election timeout (§5.2) and restarts the timer with it: at start,
    /// and whenever the node changes role or term, as etcd does, rather than at every message
    /// from the leader.
    fn redraw_election_timer(&mut self, now: Instant) {
        let lo = self.cfg.election_timeout_min.as_micros() as u64;
        let hi = self.cfg.election_timeout_max.as_micros() as u64;
        self.timers.election_timeout_us = self.rng.range(lo, hi);
        self.reset_election_timer(now);
    }

    // ----- read-only views -----

    pub(crate) fn role(&self) -> Role {
        self.role
    }
    pub(crate) fn term(&self) -> Term {
        self.term
    }
    pub(crate) fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// The leader this node believes in for its current term (itself when leader).
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub(crate) fn commit_index(&self) -> LogIndex {
        self.commit.get()
    }
    pub(crate) fn applied_index(&self) -> LogIndex {
        self.applied
    }
    pub(crate) fn log(&self) -> &RaftLog {
        &self.log
    }
    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// The index of the last entry in the log (committed or not).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// Until when this leader may answer reads from its lease, if it holds one (it may have run
    /// out already). No other leader may be elected before then.
    #[inline]
    pub(crate) fn read_lease_until(&self) -> Option<Instant> {
        let window = self.lease_window_us?;
        let lead = self.lead.as_ref()?;
        if lead.lease_void {
            return None;
        }
        lead.lease_from
            .map(|from| Instant(from.0.saturating_add(window).min(Instant::NEVER.0)))
    }

    /// True while a majority (this leader included) acknowledged AppendEntries within
    /// `election_timeout_min`: no other leader can have been elected meanwhile.
    pub(crate) fn quorum_fresh(&self, now: Instant) -> bool {
        let Some(lead) = self.lead.as_ref() else {
            return false;
        };
        // A follower that answered round r heard this leader after r started, and refuses votes
        // for `election_timeout_min` after hearing it. The start of the round, not when its
        // answer was processed: a loop that stalled may process an old answer late.
        let window = self.cfg.election_timeout_min;
        let fresh = lead
            .progress
            .values()
            .filter(|p| {
                p.voter
                    && lead
                        .round_start(p.acked_round)
                        .is_some_and(|t| now.saturating_since(t) < window)
            })
            .count();
        fresh + usize::from(self.members.voter) >= self.members.quorum
    }

    // ----- the narrow interface for the application -----

    /// Appends `command` to the leader's log in its term (persisted before it is sent
    /// anywhere) and returns its index. The caller then calls [`Raft::replicate_appended`].
    pub(crate) fn append_command(&mut self, command: Command, out: &mut Vec<Output>) -> LogIndex {
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.term,
            index,
            command: Arc::new(command),
        };
        self.log.push(entry.clone());
        out.push(Output::Persist(Persist::Entries(vec![entry])));
        index
    }

    /// The configuration in force (the log's last, committed or not).
    pub(crate) fn membership(&self) -> &membership::Membership {
        self.log.membership()
    }

    /// The index of the entry holding the configuration in force.
    pub(crate) fn membership_index(&self) -> LogIndex {
        self.log.membership_index()
    }

    /// Sends what was appended to every follower, and commits it if this node alone is a
    /// quorum.
    pub(crate) fn replicate_appended(
        &mut self,
        now: Instant,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        self.sync_membership(now, app, out);
        self.broadcast_append(now, out);
        self.maybe_commit(now, app, out);
    }

    /// The writes-refusing target of a leadership transfer in progress, if any.
    pub(crate) fn transferring_to(&self) -> Option<NodeId> {
        self.lead.as_ref().and_then(|l| l.transfer).map(|t| t.to)
    }
}
