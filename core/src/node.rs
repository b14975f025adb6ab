//! The [`Node`]: one cluster member's whole state, and the dispatch of inputs to the concerns
//! that handle them (election, replication, snapshots, reads, client requests).
//!
//! Owns: the role, the persistent fields (term, vote, log), commit and apply progress, and the
//! timers. Never: I/O, clocks, threads, or unseeded randomness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Forwarded, Proposal};
use crate::config::{Config, ConfigError};
use crate::io::{DurableState, HardState, Input, Output, Persist};
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::replication::Leadership;
use crate::rng::NodeRng;
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, RequestId, Term};

/// What a node currently is in the election protocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Role {
    Follower,
    /// Asking for pre-votes; its term is not yet incremented.
    PreCandidate,
    Candidate,
    Leader,
}

/// One cluster member. See the crate docs for the driving contract.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) rng: NodeRng,
    /// Every member but this one, ascending.
    pub(crate) peers: Vec<NodeId>,

    // Persistent (mirrored by Persist outputs).
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) log: RaftLog,
    /// The newest snapshot this node holds (taken or installed).
    pub(crate) snapshot: Option<Snapshot>,

    // Volatile.
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) commit: LogIndex,
    pub(crate) applied: LogIndex,
    pub(crate) sm: StateMachine,
    /// When a follower's election timer fires.
    pub(crate) election_deadline: Instant,
    /// The election timeout drawn last (us).
    pub(crate) election_timeout_us: u64,
    /// When this node last heard from the leader of its term (for leader stickiness).
    pub(crate) leader_contact: Option<Instant>,
    /// AppendEntries that arrived ahead of a gap in the log, oldest first (see
    /// `Config::max_held_appends`). Only those of the current leader and term are ever appended.
    pub(crate) held: Vec<crate::replication::HeldAppend>,
    /// The leader and term this follower last answered AppendEntries with a success (None after a
    /// rejection): while that is its current leader and term, the leader streams entries to it,
    /// so a message ahead of a gap was most likely overtaken by a later one and is worth holding.
    /// Otherwise the leader is probing, and a message ahead of the log is answered at once, so
    /// the probe moves on.
    pub(crate) streaming: Option<(Term, NodeId)>,
    /// When this incarnation started (see `leader_is_recent`).
    pub(crate) started_at: Instant,
    /// How long a read lease runs from its start, in microseconds: `election_timeout_min -
    /// lease_read_margin`; None with lease reads (or check-quorum) off.
    pub(crate) lease_window_us: Option<u64>,
    /// Answers to this node's current pre-vote or vote round: voter -> granted.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Present while leader.
    pub(crate) lead: Option<Leadership>,
    /// Writes this node appended as leader and still owes an answer for, by log index. Kept across
    /// a step-down: the entry may still commit (success) or be replaced (`NotCommitted`).
    pub(crate) proposals: BTreeMap<LogIndex, Proposal>,
    /// Requests this node forwarded to a leader and waits on.
    pub(crate) forwarded: BTreeMap<RequestId, Forwarded>,
    /// Forwarded requests this node received lately, so a duplicated Forward is executed once.
    pub(crate) seen_forwards: crate::client::SeenForwards,
    /// When the earliest request deadline falls (NEVER when none is pending).
    pub(crate) sweep_at: Instant,
    /// The workload agent: lease, copies, reports (every node runs one).
    pub(crate) agent: crate::agent::Agent,
    /// Present while leader: failure detection and placement.
    pub(crate) orch: Option<Box<crate::orchestrator::Orchestrator>>,
    /// A separate stream for orchestration draws (backoff and re-placement jitter), so they
    /// never shift the election timer's draws.
    pub(crate) orch_rng: NodeRng,
}

impl Node {
    /// A node starting (or restarting) at `now` from its durable state.
    pub fn new(cfg: Config, durable: DurableState, now: Instant) -> Result<Node, ConfigError> {
        cfg.validate()?;
        let mut peers: Vec<NodeId> = cfg
            .members
            .iter()
            .copied()
            .filter(|m| *m != cfg.id)
            .collect();
        peers.sort();
        let (offset, offset_term, sm) = match &durable.snapshot {
            Some(s) => (s.last_index, s.last_term, StateMachine::clone(&s.state)),
            None => (LogIndex(0), Term(0), StateMachine::default()),
        };
        let DurableState {
            hard_state,
            snapshot,
            entries,
        } = durable;
        let lease_window_us = (cfg.lease_reads && cfg.check_quorum).then(|| {
            let window = cfg
                .election_timeout_min
                .saturating_sub(cfg.lease_read_margin);
            u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
        });
        let mut node = Node {
            rng: NodeRng::new(cfg.seed),
            orch_rng: NodeRng::new(cfg.seed ^ 0x6F72_6368_6573_7472),
            agent: crate::agent::Agent::new(now),
            orch: None,
            cfg,
            peers,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            log: RaftLog::restore(offset, offset_term, entries),
            snapshot,
            role: Role::Follower,
            leader: None,
            commit: offset,
            applied: offset,
            sm,
            election_deadline: Instant::NEVER,
            election_timeout_us: 0,
            leader_contact: None,
            held: Vec::new(),
            streaming: None,
            started_at: now,
            lease_window_us,
            votes: BTreeMap::new(),
            lead: None,
            proposals: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            seen_forwards: Default::default(),
            sweep_at: Instant::NEVER,
        };
        node.redraw_election_timer(now);
        Ok(node)
    }

    /// Reacts to one input, pushing outputs (in the order they must be executed) into `out`.
    pub fn step(&mut self, now: Instant, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Tick => self.tick(now, out),
            Input::Message(m) => self.receive(now, m, out),
            Input::Client(req) => {
                self.client_request(now, crate::client::Origin::Local(req.id), req.op, out)
            }
            Input::Workload(ev) => self.workload_event(now, ev, out),
            Input::TransferLeadership { to } => self.transfer_leadership(now, to, out),
        }
        if self.orch.as_ref().is_some_and(|o| now >= o.next_run()) {
            self.orchestrate(now, out);
        }
        self.agent_step(now, out);
        if now >= self.sweep_at {
            self.sweep_requests(now, out);
        }
    }

    /// When this follower's or candidate's election timer fires (`NEVER` while leader). One of
    /// the deadlines behind [`Node::next_deadline`].
    pub fn election_deadline(&self) -> Instant {
        if self.lead.is_some() {
            Instant::NEVER
        } else {
            self.election_deadline
        }
    }

    /// When the driver must deliver the next [`Input::Tick`] (it may deliver one earlier).
    #[inline]
    pub fn next_deadline(&self) -> Instant {
        let timer = match &self.lead {
            Some(lead) => lead.next_deadline(self.cfg.check_quorum),
            None => self.election_deadline,
        };
        let orch = self.orch.as_ref().map_or(Instant::NEVER, |o| o.next_run());
        timer
            .min(self.sweep_at)
            .min(orch)
            .min(self.agent.deadline())
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.role == Role::Leader {
            self.leader_tick(now, out);
        } else if now >= self.election_deadline {
            self.election_timeout(now, out);
        }
    }

    fn receive(&mut self, now: Instant, m: Message, out: &mut Vec<Output>) {
        if m.to != self.cfg.id || !self.peers.contains(&m.from) {
            return;
        }
        if let Some(orch) = self.orch.as_mut() {
            orch.heard(m.from, now);
        }
        match m.body {
            // Forwarding is between a node and the leader it believes in; terms do not apply.
            MessageBody::Forward { id, op } => {
                // A network may deliver a message twice; a write must still execute once.
                let ttl = self.cfg.request_timeout;
                if !self.seen_forwards.first_time(now, ttl, m.from, id) {
                    return;
                }
                return self.client_request(
                    now,
                    crate::client::Origin::Remote(m.from, id),
                    *op,
                    out,
                );
            }
            MessageBody::ForwardReply { id, result } => {
                return self.forward_reply(id, *result, out)
            }
            // Pre-votes carry a prospective term and change nobody's term.
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                return self.handle_pre_vote(
                    now,
                    m.from,
                    m.term,
                    last_log_index,
                    last_log_term,
                    out,
                )
            }
            MessageBody::PreVoteResponse { granted } => {
                return self.handle_pre_vote_response(now, m.from, m.term, granted, out)
            }
            _ => {}
        }
        if m.term > self.term {
            // Leader stickiness: while a leader is known to be alive, a vote request from a node
            // that merely timed out is ignored, so it cannot depose a healthy leader.
            // A transfer vote was asked for by that leader itself.
            if matches!(
                m.body,
                MessageBody::RequestVote {
                    transfer: false,
                    ..
                }
            ) && self.leader_is_recent(now)
            {
                return;
            }
            let leader = match m.body {
                MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
                    Some(m.from)
                }
                _ => None,
            };
            self.become_follower(now, m.term, leader, out);
        } else if m.term < self.term {
            self.reject_stale(m, out);
            return;
        }
        match m.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(now, m.from, last_log_index, last_log_term, out),
            MessageBody::TimeoutNow => self.handle_timeout_now(now, m.from, out),
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(now, m.from, granted, out)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => self.handle_append_entries(
                now,
                m.from,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
                out,
            ),
            MessageBody::AppendEntriesResponse { result, round } => {
                self.handle_append_response(now, m.from, result, round, out)
            }
            MessageBody::InstallSnapshot { snapshot, round } => {
                self.handle_install_snapshot(now, m.from, snapshot, round, out)
            }
            MessageBody::InstallSnapshotResponse { last_index, round } => {
                self.handle_snapshot_response(now, m.from, last_index, round, out)
            }
            MessageBody::LeaseRequest {
                sent_at,
                running,
                exits,
            } => self.handle_lease_request(now, m.from, sent_at, running, exits, out),
            MessageBody::LeaseGrant {
                sent_at,
                commit,
                silence,
            } => self.handle_lease_grant(now, m.from, sent_at, commit, silence, out),
            MessageBody::Forward { .. }
            | MessageBody::ForwardReply { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::PreVoteResponse { .. } => {}
        }
    }

    /// A message from an older term: tell a stale leader or candidate about the newer term so it
    /// steps down; drop stale responses.
    fn reject_stale(&mut self, m: Message, out: &mut Vec<Output>) {
        let body = match m.body {
            MessageBody::AppendEntries {
                prev_log_index,
                round,
                ..
            } => MessageBody::AppendEntriesResponse {
                result: crate::message::AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: None,
                    conflict_index: self.log.last_index().next(),
                },
                round,
            },
            MessageBody::InstallSnapshot { round, .. } => MessageBody::InstallSnapshotResponse {
                last_index: LogIndex(0),
                round,
            },
            MessageBody::RequestVote { .. } => MessageBody::RequestVoteResponse { granted: false },
            _ => return,
        };
        self.send(m.from, body, out);
    }

    // ----- shared helpers -----

    pub(crate) fn send(&self, to: NodeId, body: MessageBody, out: &mut Vec<Output>) {
        out.push(Output::Send(Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        }));
    }

    pub(crate) fn trace(&self, event: Event, out: &mut Vec<Output>) {
        out.push(Output::Trace(event));
    }

    pub(crate) fn persist_hard_state(&self, out: &mut Vec<Output>) {
        out.push(Output::Persist(Persist::HardState(HardState {
            term: self.term,
            voted_for: self.voted_for,
        })));
    }

    /// Restarts the election timer with the timeout drawn last (on hearing the leader, on
    /// granting a vote).
    pub(crate) fn reset_election_timer(&mut self, now: Instant) {
        self.election_deadline = Instant(now.0.saturating_add(self.election_timeout_us));
    }

    /// Draws a new randomised election timeout (§5.2) and restarts the timer with it: at start,
    /// and whenever the node changes role or term, as etcd does, rather than at every message
    /// from the leader.
    pub(crate) fn redraw_election_timer(&mut self, now: Instant) {
        let lo = self.cfg.election_timeout_min.as_micros() as u64;
        let hi = self.cfg.election_timeout_max.as_micros() as u64;
        self.election_timeout_us = self.rng.range(lo, hi);
        self.reset_election_timer(now);
    }

    pub(crate) fn quorum(&self) -> usize {
        self.cfg.quorum()
    }

    // ----- read-only views for drivers, checkers and tests -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// The leader this node believes in for its current term (itself when leader).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// Until when this leader may answer reads from its lease (`Config::lease_reads`), if it
    /// holds one (it may have run out already). No other leader may be elected before then.
    #[inline]
    pub fn read_lease_until(&self) -> Option<Instant> {
        let window = self.lease_window_us?;
        let lead = self.lead.as_ref()?;
        if lead.lease_void {
            return None;
        }
        lead.lease_from
            .map(|from| Instant(from.0.saturating_add(window).min(Instant::NEVER.0)))
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// True when running with the planted bug `bug` (feature `planted-bugs`; never otherwise).
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn planted(&self, bug: crate::config::PlantedBug) -> bool {
        self.cfg.planted_bug == Some(bug)
    }

    /// True when running with any planted bug (never without the `planted-bugs` feature): the
    /// protocol's own assertions then give way to the simulator's checkers.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn bug_planted(&self) -> bool {
        self.cfg.planted_bug.is_some()
    }

    /// Without the `planted-bugs` feature no bug is ever planted.
    #[cfg(not(feature = "planted-bugs"))]
    pub(crate) fn bug_planted(&self) -> bool {
        false
    }

    /// Client writes admitted and not yet answered.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.len()
    }
}
