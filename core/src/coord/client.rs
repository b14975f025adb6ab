//! Client requests: admission control, forwarding to the leader, answers and request timeouts.
//!
//! A request may arrive at any node. The leader admits it if it has room (else `Overloaded` at
//! once: a bounded queue, never an unbounded one) and answers when its entry applies or its read
//! is confirmed. A follower that knows the leader forwards the request and passes the answer back;
//! one that does not answers `NotLeader` at once. Every admitted request is answered exactly once,
//! at the latest `request_timeout` after it arrived.
//!
//! Owns: client sessions (writes waiting on their entry, requests forwarded to the leader,
//! duplicate forwards), admission bounds, and answering reads from the applied state. Never:
//! touching the log or a follower's progress (writes go through [`Raft::append_command`],
//! reads through [`Raft::read`]).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::io::{
    ClientError, ClientOp, ClientReply, ClientResponse, ClientResult, MemberOp, Output, WorkloadOp,
};
use crate::kv::Key;
use crate::message::{Command, MessageBody};
use crate::raft::membership::MemberChange;
use crate::raft::{Raft, ReadAdmission, Role, Stamp};
use crate::testing::PlantedBug;
use crate::trace::{Event, ShedReason};
use crate::types::{Instant, LogIndex, NodeId, RequestId, Term};
use crate::workload::OrchCommand;

use super::Coordination;

/// Who is waiting for an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client of this node.
    Local(RequestId),
    /// A request forwarded by a follower, under the follower's id.
    Remote(NodeId, RequestId),
}

impl Origin {
    pub(crate) fn request_id(self) -> RequestId {
        match self {
            Origin::Local(id) | Origin::Remote(_, id) => id,
        }
    }
}

/// What a linearizable read asks for.
#[derive(Clone, Debug)]
pub(crate) enum Query {
    Key(Key),
    Workload(String),
    Workloads,
    Registry,
    /// The configuration, with the strangers the leader had heard of when the read arrived.
    Members(Vec<(NodeId, crate::types::Incarnation)>),
}

/// A read waiting at the leader: who asked, and what. Raft keeps it in its read queue without
/// looking inside, and hands it back when the read may be answered.
#[derive(Clone, Debug)]
pub(crate) struct ReadCtx {
    pub origin: Origin,
    pub query: Query,
}

/// A write appended by this node as leader and not yet answered.
#[derive(Clone, Debug)]
pub(crate) struct Proposal {
    pub term: Term,
    pub origin: Origin,
    pub deadline: Instant,
}

/// Forwarded requests received within the last `request_timeout`, by sender and id.
///
/// A duplicated Forward must not append the same write twice (or be refused as `NotLeader` by a
/// node that already appended it). Entries expire after `request_timeout`, when the forwarding
/// node has given up on the request anyway, so memory is bounded by rate times timeout. The
/// window is volatile: a duplicate delivered after this node restarted is not recognised; TCP
/// (the production transport) never duplicates, the simulator's duplicates arrive within one
/// latency bound.
///
/// Membership only (never iterated), so a hash set serves, with a fixed hasher: no per-process
/// random keys, and nothing about its layout can reach an output.
#[derive(Clone, Debug, Default)]
pub(crate) struct SeenForwards {
    seen: HashSet<(NodeId, RequestId), BuildHasherDefault<PairHasher>>,
    expiry: std::collections::VecDeque<(Instant, NodeId, RequestId)>,
}

/// A fixed multiply-xor hasher for small integer keys (FxHash's step).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PairHasher(u64);

impl PairHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl SeenForwards {
    /// True the first time (`from`, `id`) is seen within `ttl`.
    pub(crate) fn first_time(
        &mut self,
        now: Instant,
        ttl: std::time::Duration,
        from: NodeId,
        id: RequestId,
    ) -> bool {
        while let Some(&(at, n, i)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            self.seen.remove(&(n, i));
        }
        if !self.seen.insert((from, id)) {
            return false;
        }
        self.expiry.push_back((now + ttl, from, id));
        true
    }
}

/// A request this node forwarded to the leader.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    pub deadline: Instant,
}

impl Coordination {
    /// A client request at this node: served here if it leads, forwarded to the leader if one is
    /// known, refused otherwise.
    pub(crate) fn client_request(
        &mut self,
        now: Instant,
        origin: Origin,
        op: ClientOp,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let stamp = raft.stamp();
        if raft.role() == Role::Leader {
            if let Some(to) = raft.transferring_to().filter(|_| op.proposes()) {
                // Handing over: new entries would only delay the target catching up.
                let hint = Some(to);
                return self.answer(
                    stamp,
                    origin,
                    Err(ClientError::NotLeader { leader_hint: hint }),
                    out,
                );
            }
            return self.leader_request(now, origin, op, raft, out);
        }
        let leader = raft.leader().filter(|l| *l != self.id);
        match (origin, leader) {
            (Origin::Local(id), Some(leader)) => {
                if self.forwarded.len() >= self.cfg.max_forwarded_requests {
                    return self.shed(stamp, origin, ShedReason::TooManyForwardedRequests, out);
                }
                let deadline = now + self.cfg.request_timeout;
                self.forwarded.insert(id, Forwarded { deadline });
                self.sweep_at = self.sweep_at.min(deadline);
                let body = MessageBody::Forward {
                    id,
                    op: Box::new(op),
                };
                stamp.send(leader, body, out);
            }
            // Not the leader and either no leader known or the request was already forwarded
            // once: refuse (definitely not executed) with whatever hint we have.
            _ => self.answer(
                stamp,
                origin,
                Err(ClientError::NotLeader {
                    leader_hint: leader,
                }),
                out,
            ),
        }
    }

    /// A request this node serves as leader: a write is proposed, a read queued.
    fn leader_request(
        &mut self,
        now: Instant,
        origin: Origin,
        op: ClientOp,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        match op {
            ClientOp::Get { key } => self.leader_read(now, origin, Query::Key(key), raft, out),
            ClientOp::Write(w) => self.propose(now, origin, Command::Write(w), raft, out),
            ClientOp::Workload(WorkloadOp::Submit(spec)) => {
                let command = Command::Orch(OrchCommand::Submit(*spec));
                self.propose(now, origin, command, raft, out)
            }
            ClientOp::Workload(WorkloadOp::Stop { name }) => {
                let command = Command::Orch(OrchCommand::Stop { name });
                self.propose(now, origin, command, raft, out)
            }
            ClientOp::Workload(WorkloadOp::Drain { node, .. }) if !self.members.contains(&node) => {
                let reason = format!("{node} is not a member of this cluster");
                self.answer(
                    raft.stamp(),
                    origin,
                    Err(ClientError::Refused { reason }),
                    out,
                )
            }
            ClientOp::Workload(WorkloadOp::Drain { node, draining }) => {
                let cmd = OrchCommand::Drain { node, draining };
                self.propose(now, origin, Command::Orch(cmd), raft, out)
            }
            ClientOp::Workload(WorkloadOp::Get { name }) => {
                self.leader_read(now, origin, Query::Workload(name), raft, out)
            }
            ClientOp::Workload(WorkloadOp::List) => {
                self.leader_read(now, origin, Query::Workloads, raft, out)
            }
            ClientOp::Workload(WorkloadOp::Registry) => {
                self.leader_read(now, origin, Query::Registry, raft, out)
            }
            ClientOp::Members(MemberOp::List) => {
                let strangers = raft.strangers().iter().map(|(i, n)| (*i, *n)).collect();
                self.leader_read(now, origin, Query::Members(strangers), raft, out)
            }
            ClientOp::Members(MemberOp::Change(change)) => {
                self.propose_membership(now, origin, change, raft, out)
            }
        }
    }

    /// A membership change at the leader: appended if Raft's rules allow it now (and answered
    /// when committed, like a write), refused at once with the reason otherwise.
    fn propose_membership(
        &mut self,
        now: Instant,
        origin: Origin,
        change: MemberChange,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        if self.proposals.len() >= self.cfg.max_pending_proposals {
            let reason = ShedReason::TooManyPendingProposals;
            return self.shed(raft.stamp(), origin, reason, out);
        }
        match raft.propose_membership(&change, out) {
            Ok(index) => {
                self.track_proposal(now, origin, index, raft.term());
                raft.replicate_appended(now, self, out);
            }
            Err(e) => {
                let reason = format!("{change}: {e}");
                self.answer(
                    raft.stamp(),
                    origin,
                    Err(ClientError::Refused { reason }),
                    out,
                )
            }
        }
    }

    fn track_proposal(&mut self, now: Instant, origin: Origin, index: LogIndex, term: Term) {
        let deadline = now + self.cfg.request_timeout;
        self.proposals.insert(
            index,
            Proposal {
                term,
                origin,
                deadline,
            },
        );
        self.sweep_at = self.sweep_at.min(deadline);
    }

    /// A Forward from a follower: executed once, even if the network delivered it twice.
    pub(crate) fn forwarded_request(
        &mut self,
        now: Instant,
        from: NodeId,
        id: RequestId,
        op: ClientOp,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let ttl = self.cfg.request_timeout;
        if !self.seen_forwards.first_time(now, ttl, from, id) {
            return;
        }
        self.client_request(now, Origin::Remote(from, id), op, raft, out);
    }

    /// Appends a client write to the leader's log (persisted before it is sent anywhere).
    fn propose(
        &mut self,
        now: Instant,
        origin: Origin,
        command: Command,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        if self.proposals.len() >= self.cfg.max_pending_proposals {
            return self.shed(
                raft.stamp(),
                origin,
                ShedReason::TooManyPendingProposals,
                out,
            );
        }
        let index = raft.append_command(command, out);
        self.track_proposal(now, origin, index, raft.term());
        if self.planted.is(PlantedBug::AckBeforeCommit) {
            if let Some(p) = self.proposals.remove(&index) {
                let result = Ok(ClientResponse::Written { revision: index });
                self.answer(raft.stamp(), p.origin, result, out);
            }
        }
        raft.replicate_appended(now, self, out);
    }

    /// A linearizable read at the leader: answered at once under a lease with everything
    /// applied, else queued in Raft's read-index queue.
    fn leader_read(
        &mut self,
        now: Instant,
        origin: Origin,
        query: Query,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let stamp = raft.stamp();
        if self.planted.is(PlantedBug::StaleLeaderServesReads) {
            let response = self.read_now(&query, raft.applied_index());
            return self.answer(stamp, origin, Ok(response), out);
        }
        let deadline = now + self.cfg.request_timeout;
        match raft.read(now, ReadCtx { origin, query }, deadline) {
            ReadAdmission::ServeNow(read) => {
                let response = self.read_now(&read.query, raft.applied_index());
                self.answer(stamp, read.origin, Ok(response), out)
            }
            ReadAdmission::Full(read) => {
                self.shed(stamp, read.origin, ShedReason::TooManyPendingReads, out)
            }
            ReadAdmission::Queued => {
                self.sweep_at = self.sweep_at.min(deadline);
                raft.serve_reads(now, self, out);
            }
            ReadAdmission::NotLeading => {}
        }
    }

    /// Answers `query` from the state applied up to `applied`.
    pub(super) fn read_now(&self, query: &Query, applied: LogIndex) -> ClientResponse {
        match query {
            Query::Key(key) => {
                let (value, revision) = match self.sm.kv.get(key) {
                    Some(v) => (Some(v.value.clone()), v.mod_revision),
                    None => (None, LogIndex(0)),
                };
                ClientResponse::Value { value, revision }
            }
            Query::Workload(name) => ClientResponse::Workloads {
                workloads: self.sm.registry.get(name).cloned().into_iter().collect(),
                revision: applied,
            },
            Query::Workloads => ClientResponse::Workloads {
                workloads: self.sm.registry.workloads.values().cloned().collect(),
                revision: applied,
            },
            Query::Registry => ClientResponse::Registry {
                registry: self.sm.registry.clone(),
                revision: applied,
            },
            Query::Members(strangers) => ClientResponse::Members {
                membership: self.membership.clone(),
                index: self.membership_index,
                committed: self.membership_index <= applied,
                revision: applied,
                strangers: strangers.clone(),
            },
        }
    }

    /// Refuses a request at once for lack of room.
    fn shed(&mut self, stamp: Stamp, origin: Origin, reason: ShedReason, out: &mut Vec<Output>) {
        let id = origin.request_id();
        out.push(Output::Trace(Event::RequestShed { id, reason }));
        let retry_after = self.cfg.overload_retry_after;
        self.answer(
            stamp,
            origin,
            Err(ClientError::Overloaded { retry_after }),
            out,
        );
    }

    /// The leader answered a request this node forwarded.
    pub(crate) fn forward_reply(
        &mut self,
        id: RequestId,
        result: ClientResult,
        out: &mut Vec<Output>,
    ) {
        if self.forwarded.remove(&id).is_some() {
            out.push(Output::Reply(ClientReply { id, result }));
        }
    }

    /// Delivers an answer to whoever waits for it.
    pub(super) fn answer(
        &self,
        stamp: Stamp,
        origin: Origin,
        result: ClientResult,
        out: &mut Vec<Output>,
    ) {
        match origin {
            Origin::Local(id) => out.push(Output::Reply(ClientReply { id, result })),
            Origin::Remote(node, id) => stamp.send(
                node,
                MessageBody::ForwardReply {
                    id,
                    result: Box::new(result),
                },
                out,
            ),
        }
    }

    /// Removes the proposal waiting on `index`, if any. Entries apply in index order, so a
    /// follower has none and the leader's oldest is usually the one: a look at the first key
    /// spares the tree search in both cases.
    pub(super) fn take_proposal(&mut self, index: LogIndex) -> Option<Proposal> {
        let first = self.proposals.first_entry()?;
        match first.key().cmp(&index) {
            std::cmp::Ordering::Equal => Some(first.remove()),
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Less => self.proposals.remove(&index),
        }
    }

    /// Answers every request past its deadline `Indeterminate` and forgets it.
    pub(super) fn sweep_requests(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        let stamp = raft.stamp();
        let expired: Vec<_> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            if let Some(p) = self.proposals.remove(&index) {
                self.answer(stamp, p.origin, Err(ClientError::Indeterminate), out);
            }
        }
        let expired: Vec<_> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.forwarded.remove(&id);
            out.push(Output::Reply(ClientReply {
                id,
                result: Err(ClientError::Indeterminate),
            }));
        }
        for read in raft.take_expired_reads(now) {
            self.answer(stamp, read.origin, Err(ClientError::Indeterminate), out);
        }
        self.sweep_at = self
            .proposals
            .values()
            .map(|p| p.deadline)
            .chain(self.forwarded.values().map(|f| f.deadline))
            .chain(raft.read_deadlines())
            .min()
            .unwrap_or(Instant::NEVER);
    }
}
