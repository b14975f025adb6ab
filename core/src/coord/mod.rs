//! The coordination part of a node: everything above consensus.
//!
//! Owns: client sessions and admission ([`client`]), the replicated key-value and workload
//! state machine ([`state_machine`], [`kv`], [`workload`]), the leader's orchestrator and the
//! workload agent every node runs. It implements [`App`], through which Raft hands it committed
//! entries and tells it of leadership changes, snapshots and reads that may be answered.
//! Never: touching the log, a follower's progress or a timer of Raft's. It reaches Raft only
//! through Raft's narrow interface: `stamp`, `role`, `leader`, `term`, `applied_index`,
//! `last_index`, `quorum_fresh`, `transferring_to`, `append_command` + `replicate_appended`
//! (propose), and `read` / `serve_reads` / `take_expired_reads` / `read_deadlines`.

mod agent;
mod client;
pub mod kv;
mod orchestrator;
pub mod state_machine;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, CoordinationConfig};
use crate::io::{ClientError, ClientResponse, Output};
use crate::kv::WriteOutcome;
use crate::message::{Command, Entry, Message, MessageBody};
use crate::raft::membership::Membership;
use crate::raft::{App, Raft, Stamp};
use crate::rng::NodeRng;
use crate::state_machine::StateMachine;
use crate::testing::Planted;
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, RequestId};

pub(crate) use client::{Origin, ReadCtx};

/// One node's coordination state. See the module docs.
#[derive(Debug)]
pub(crate) struct Coordination {
    cfg: CoordinationConfig,
    id: NodeId,
    /// Every member of the configuration in force (voters and learners), this node included if
    /// it is one: the nodes workloads may run on.
    members: Vec<NodeId>,
    /// The configuration in force, and the index of the entry holding it (for `member list`).
    membership: Membership,
    membership_index: LogIndex,
    pub(crate) planted: Planted,
    /// The applied state: key-value pairs and the workload registry.
    sm: StateMachine,
    /// Writes this node appended as leader and still owes an answer for, by log index. Kept across
    /// a step-down: the entry may still commit (success) or be replaced (`NotCommitted`).
    proposals: BTreeMap<LogIndex, client::Proposal>,
    /// Requests this node forwarded to a leader and waits on.
    forwarded: BTreeMap<RequestId, client::Forwarded>,
    /// Forwarded requests this node received lately, so a duplicated Forward is executed once.
    seen_forwards: client::SeenForwards,
    /// When the earliest request deadline falls (NEVER when none is pending).
    sweep_at: Instant,
    /// The workload agent: lease, copies, reports (every node runs one).
    agent: agent::Agent,
    /// Present while leader: failure detection and placement.
    orch: Option<Box<orchestrator::Orchestrator>>,
    /// A separate stream for orchestration draws (backoff and re-placement jitter), so they
    /// never shift the election timer's draws.
    orch_rng: NodeRng,
}

impl Coordination {
    /// Coordination restarting at `now` with the applied state `sm` (from the snapshot).
    pub(crate) fn new(
        cfg: &Config,
        (membership_index, membership): (LogIndex, &Membership),
        sm: StateMachine,
        now: Instant,
    ) -> Coordination {
        Coordination {
            cfg: cfg.coordination.clone(),
            id: cfg.id,
            members: membership.members().iter().map(|m| m.id).collect(),
            membership: membership.clone(),
            membership_index,
            planted: Planted::default(),
            sm,
            proposals: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            seen_forwards: Default::default(),
            sweep_at: Instant::NEVER,
            agent: agent::Agent::new(now),
            orch: None,
            orch_rng: NodeRng::new(cfg.seed ^ 0x6F72_6368_6573_7472),
        }
    }

    /// Any message from `from` counts as hearing it (for the failure detector).
    pub(crate) fn heard(&mut self, from: NodeId, now: Instant) {
        if let Some(orch) = self.orch.as_mut() {
            orch.heard(from, now);
        }
    }

    /// A coordination message that passed Raft's term rules.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        m: Message,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        match m.body {
            MessageBody::LeaseRequest {
                sent_at,
                running,
                exits,
            } => self.handle_lease_request(now, m.from, sent_at, running, exits, raft, out),
            MessageBody::LeaseGrant {
                sent_at,
                commit,
                silence,
            } => self.handle_lease_grant(now, m.from, sent_at, commit, silence, raft, out),
            _ => {}
        }
    }

    /// What runs after every input: an orchestration round if due, the agent, and the sweep
    /// of requests past their deadline.
    // Runs after every input and usually finds nothing due: inlined into `Node::step`.
    #[inline(always)]
    pub(crate) fn after_input(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        if self.orch.as_ref().is_some_and(|o| now >= o.next_run()) {
            self.orchestrate(now, raft, out);
        }
        self.agent_step(now, raft, out);
        if now >= self.sweep_at {
            self.sweep_requests(now, raft, out);
        }
    }

    /// The earliest of coordination's deadlines: request sweep, orchestration, agent.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Instant {
        let orch = self.orch.as_ref().map_or(Instant::NEVER, |o| o.next_run());
        self.sweep_at.min(orch).min(self.agent.deadline())
    }

    fn trace(&self, event: Event, out: &mut Vec<Output>) {
        out.push(Output::Trace(event));
    }

    // ----- read-only views -----

    pub(crate) fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    pub(crate) fn pending_proposals(&self) -> usize {
        self.proposals.len()
    }
}

impl App for Coordination {
    fn became_leader(&mut self, now: Instant) {
        self.start_orchestrator(now);
    }

    fn stepped_down(&mut self) {
        self.orch = None;
    }

    fn apply(
        &mut self,
        now: Instant,
        stamp: Stamp,
        index: LogIndex,
        entry: &Entry,
        out: &mut Vec<Output>,
    ) {
        let term = entry.term;
        let orch = matches!(*entry.command, Command::Orch(_));
        let outcome = self.sm.apply(index, &entry.command);
        if orch {
            self.registry_changed();
            if let Some(orch) = self.orch.as_mut() {
                orch.wake(now);
            }
        }
        if let Some(p) = self.take_proposal(index) {
            let result = match (p.term == term, outcome) {
                (false, _) => Err(ClientError::NotCommitted),
                (true, Some(WriteOutcome::Applied { revision })) => {
                    Ok(ClientResponse::Written { revision })
                }
                (true, Some(WriteOutcome::CasMismatch { current })) => {
                    Err(ClientError::CasMismatch { current })
                }
                (true, Some(WriteOutcome::Refused { reason })) => {
                    Err(ClientError::Refused { reason })
                }
                (true, None) => Err(ClientError::NotCommitted),
            };
            self.answer(stamp, p.origin, result, out);
        }
    }

    fn applied_to(&mut self, applied: LogIndex) {
        self.applied_advanced(applied);
    }

    fn membership_changed(&mut self, now: Instant, index: LogIndex, membership: &Membership) {
        self.members = membership.members().iter().map(|m| m.id).collect();
        self.membership = membership.clone();
        self.membership_index = index;
        if let Some(orch) = self.orch.as_mut() {
            orch.members_changed(&self.members, self.id, now);
        }
    }

    fn snapshot_state(&self) -> Arc<StateMachine> {
        Arc::new(self.sm.clone())
    }

    fn restore(&mut self, state: &StateMachine) {
        self.sm = StateMachine::clone(state);
    }

    fn snapshot_installed(&mut self, stamp: Stamp, last_index: LogIndex, out: &mut Vec<Output>) {
        self.registry_changed();
        // Writes this node proposed at indexes the snapshot covers: whether they are in it
        // cannot be told from the snapshot.
        let covered: Vec<LogIndex> = self
            .proposals
            .range(..=last_index)
            .map(|(i, _)| *i)
            .collect();
        for index in covered {
            if let Some(p) = self.proposals.remove(&index) {
                self.answer(stamp, p.origin, Err(ClientError::Indeterminate), out);
            }
        }
    }

    fn read_ready(
        &mut self,
        stamp: Stamp,
        read: ReadCtx,
        applied: LogIndex,
        out: &mut Vec<Output>,
    ) {
        let response = self.read_now(&read.query, applied);
        self.answer(stamp, read.origin, Ok(response), out);
    }

    fn read_failed(
        &mut self,
        stamp: Stamp,
        read: ReadCtx,
        error: ClientError,
        out: &mut Vec<Output>,
    ) {
        self.answer(stamp, read.origin, Err(error), out);
    }
}
