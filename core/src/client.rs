//! Client requests: admission control, forwarding to the leader, answers and request timeouts.
//!
//! A request may arrive at any node. The leader admits it if it has room (else `Overloaded` at
//! once: a bounded queue, never an unbounded one) and answers when its entry applies or its read
//! is confirmed. A follower that knows the leader forwards the request and passes the answer back;
//! one that does not answers `NotLeader` at once. Every admitted request is answered exactly once,
//! at the latest `request_timeout` after it arrived.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::io::{ClientError, ClientOp, ClientReply, ClientResult, Output, Persist, WorkloadOp};
use crate::message::{Command, Entry, MessageBody};
use crate::node::{Node, Role};
use crate::read::Query;
use crate::trace::ShedReason;
use crate::types::{Instant, NodeId, RequestId, Term};
use crate::workload::OrchCommand;

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

impl Node {
    pub(crate) fn client_request(
        &mut self,
        now: Instant,
        origin: Origin,
        op: ClientOp,
        out: &mut Vec<Output>,
    ) {
        if self.role == Role::Leader {
            if let Some(to) = self.transferring_to().filter(|_| op.proposes()) {
                // Handing over: new entries would only delay the target catching up.
                let hint = Some(to);
                return self.answer(
                    origin,
                    Err(ClientError::NotLeader { leader_hint: hint }),
                    out,
                );
            }
            return match op {
                ClientOp::Get { key } => self.leader_read(now, origin, Query::Key(key), out),
                ClientOp::Write(w) => self.propose(now, origin, Command::Write(w), out),
                ClientOp::Workload(WorkloadOp::Submit(spec)) => {
                    self.propose(now, origin, Command::Orch(OrchCommand::Submit(*spec)), out)
                }
                ClientOp::Workload(WorkloadOp::Stop { name }) => {
                    self.propose(now, origin, Command::Orch(OrchCommand::Stop { name }), out)
                }
                ClientOp::Workload(WorkloadOp::Drain { node, .. })
                    if !self.cfg.members.contains(&node) =>
                {
                    let reason = format!("{node} is not a member of this cluster");
                    self.answer(origin, Err(ClientError::Refused { reason }), out)
                }
                ClientOp::Workload(WorkloadOp::Drain { node, draining }) => {
                    let cmd = OrchCommand::Drain { node, draining };
                    self.propose(now, origin, Command::Orch(cmd), out)
                }
                ClientOp::Workload(WorkloadOp::Get { name }) => {
                    self.leader_read(now, origin, Query::Workload(name), out)
                }
                ClientOp::Workload(WorkloadOp::List) => {
                    self.leader_read(now, origin, Query::Workloads, out)
                }
                ClientOp::Workload(WorkloadOp::Registry) => {
                    self.leader_read(now, origin, Query::Registry, out)
                }
            };
        }
        let leader = self.leader.filter(|l| *l != self.cfg.id);
        match (origin, leader) {
            (Origin::Local(id), Some(leader)) => {
                if self.forwarded.len() >= self.cfg.max_forwarded_requests {
                    return self.shed(origin, ShedReason::TooManyForwardedRequests, out);
                }
                let deadline = now + self.cfg.request_timeout;
                self.forwarded.insert(id, Forwarded { deadline });
                self.sweep_at = self.sweep_at.min(deadline);
                self.send(
                    leader,
                    MessageBody::Forward {
                        id,
                        op: Box::new(op),
                    },
                    out,
                );
            }
            // Not the leader and either no leader known or the request was already forwarded
            // once: refuse (definitely not executed) with whatever hint we have.
            _ => self.answer(
                origin,
                Err(ClientError::NotLeader {
                    leader_hint: leader,
                }),
                out,
            ),
        }
    }

    /// Appends a client write to the leader's log (persisted before it is sent anywhere).
    fn propose(&mut self, now: Instant, origin: Origin, command: Command, out: &mut Vec<Output>) {
        if self.proposals.len() >= self.cfg.max_pending_proposals {
            return self.shed(origin, ShedReason::TooManyPendingProposals, out);
        }
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.term,
            index,
            command: Arc::new(command),
        };
        self.log.push(entry.clone());
        out.push(Output::Persist(Persist::Entries(vec![entry])));
        let deadline = now + self.cfg.request_timeout;
        self.proposals.insert(
            index,
            Proposal {
                term: self.term,
                origin,
                deadline,
            },
        );
        self.sweep_at = self.sweep_at.min(deadline);
        #[cfg(feature = "planted-bugs")]
        if self.planted(crate::config::PlantedBug::AckBeforeCommit) {
            if let Some(p) = self.proposals.remove(&index) {
                let result = Ok(crate::io::ClientResponse::Written { revision: index });
                self.answer(p.origin, result, out);
            }
        }
        self.broadcast_append(now, out);
        self.maybe_commit(now, out);
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
    pub(crate) fn answer(&self, origin: Origin, result: ClientResult, out: &mut Vec<Output>) {
        match origin {
            Origin::Local(id) => out.push(Output::Reply(ClientReply { id, result })),
            Origin::Remote(node, id) => self.send(
                node,
                MessageBody::ForwardReply {
                    id,
                    result: Box::new(result),
                },
                out,
            ),
        }
    }

    /// Answers every request past its deadline `Indeterminate` and forgets it.
    pub(crate) fn sweep_requests(&mut self, now: Instant, out: &mut Vec<Output>) {
        let expired: Vec<_> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            if let Some(p) = self.proposals.remove(&index) {
                self.answer(p.origin, Err(ClientError::Indeterminate), out);
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
        if let Some(lead) = self.lead.as_mut() {
            let (late, kept): (Vec<_>, Vec<_>) =
                lead.reads.drain(..).partition(|r| r.deadline <= now);
            lead.reads = kept.into();
            for r in late {
                self.answer(r.origin, Err(ClientError::Indeterminate), out);
            }
        }
        let reads = self
            .lead
            .iter()
            .flat_map(|l| l.reads.iter().map(|r| r.deadline));
        self.sweep_at = self
            .proposals
            .values()
            .map(|p| p.deadline)
            .chain(self.forwarded.values().map(|f| f.deadline))
            .chain(reads)
            .min()
            .unwrap_or(Instant::NEVER);
    }
}
