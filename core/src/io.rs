//! The core's whole interface to the world: what goes in ([`Input`]), what comes out ([`Output`]),
//! and what must survive a crash ([`Persist`], [`DurableState`]).
//!
//! The driver's contract: execute outputs in order, and make every `Persist` durable before it
//! sends any later `Send` or `Reply`. A crash may happen between any two outputs; the core is
//! correct as long as nothing after an un-synced `Persist` left the process.
//!
//! Owns: the types that cross the boundary between a node and its driver. Never: doing any of
//! the I/O they describe.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kv::{Key, Value, Write};
use crate::message::{Entry, Message};
use crate::raft::membership::{MemberChange, Membership};
use crate::snapshot::Snapshot;
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, RequestId, Term};
use crate::workload::{ExitOutcome, Workload, WorkloadSpec};

/// One thing that happened to a node.
#[derive(Clone, PartialEq, Debug)]
pub enum Input {
    /// Time passed; the driver delivers this at (or after) [`crate::Node::next_deadline`].
    Tick,
    /// A message from a peer.
    Message(Message),
    /// A client request arrived at this node.
    Client(ClientRequest),
    /// A workload this node runs made progress or ended.
    Workload(WorkloadEvent),
    /// The operator (or a node shutting down) asks this node, if it leads, to hand leadership
    /// to `to` (default: the most caught-up follower). Ignored by a node that does not lead.
    TransferLeadership { to: Option<NodeId> },
}

/// What a workload process did, as the driver saw it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WorkloadEvent {
    pub name: String,
    /// The epoch the copy was started for (from [`WorkloadAction::Start`]).
    pub epoch: LogIndex,
    pub kind: WorkloadEventKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WorkloadEventKind {
    /// The copy showed it is alive and working (feeds the watchdog).
    Progress,
    /// The process ended on its own.
    Exited(ExitOutcome),
}

/// What a node asks its workload supervisor to do.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum WorkloadAction {
    /// Start a copy of `spec` for assignment `epoch`.
    Start {
        name: String,
        epoch: LogIndex,
        /// Boxed: see [`WorkloadOp::Submit`].
        spec: Box<WorkloadSpec>,
    },
    /// Stop the copy of `epoch` (kill it if it does not stop).
    Stop {
        name: String,
        epoch: LogIndex,
        reason: StopReason,
    },
    /// The node's lease now runs until `until`. The supervisor must kill every copy the node runs
    /// when the lease runs out, by its own clock, even if the node's loop is stuck: this is what
    /// makes a cut-off or hung node stop its copies before the leader places them elsewhere.
    LeaseUntil { until: Instant },
}

/// Why a node stops a copy.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StopReason {
    /// The node's lease ran out (it cannot reach the leader).
    LeaseExpired,
    /// The registry no longer assigns this copy here (stopped or re-placed).
    Unassigned,
    /// No progress within the workload's watchdog interval.
    Hung,
}

/// One thing a node wants done, in order.
#[derive(Clone, PartialEq, Debug)]
pub enum Output {
    /// Make this durable before any later `Send` or `Reply` leaves.
    Persist(Persist),
    Send(Message),
    Reply(ClientReply),
    /// A decision worth recording; drivers log it, the simulator hashes it.
    Trace(Event),
    /// Something for the workload supervisor. Not gated by persists: starting or stopping a
    /// copy reveals nothing that a crash could make the cluster forget.
    Workload(WorkloadAction),
}

/// A request from a client, identified by the receiving driver.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ClientRequest {
    pub id: RequestId,
    pub op: ClientOp,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ClientOp {
    /// A linearizable read (a leader lease or read-index, §6.4 of the Raft thesis).
    Get {
        key: Key,
    },
    Write(Write),
    /// Submit, stop, get or list workloads.
    Workload(WorkloadOp),
    /// Read or change the cluster's membership.
    Members(MemberOp),
}

/// Client operations on the cluster's membership.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum MemberOp {
    /// The configuration in force at the leader (a linearizable read).
    List,
    /// One single-server change (a write): answered once the new configuration is committed,
    /// or refused at once with the reason (a change in progress, a learner not caught up...).
    Change(MemberChange),
}

/// Client operations on the workload registry.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WorkloadOp {
    /// Create or update a workload and want it running (a write). Boxed: a spec is large and
    /// rare, and every message and output is as large as its largest variant.
    Submit(Box<WorkloadSpec>),
    /// Want it stopped (a write).
    Stop { name: String },
    /// Start or stop draining a node: no new placements go to a draining node (a write).
    Drain { node: NodeId, draining: bool },
    /// One workload with its decision history (a linearizable read).
    Get { name: String },
    /// Every workload (a linearizable read).
    List,
    /// The whole registry: workloads and the health recorded for every node (a linearizable
    /// read), for health and recovery summaries.
    Registry,
}

impl ClientOp {
    /// True if a leader serves it by appending an entry (a write to the key-value store or the
    /// registry).
    pub fn proposes(&self) -> bool {
        matches!(
            self,
            ClientOp::Write(_)
                | ClientOp::Members(MemberOp::Change(_))
                | ClientOp::Workload(
                    WorkloadOp::Submit(_) | WorkloadOp::Stop { .. } | WorkloadOp::Drain { .. }
                )
        )
    }
}

/// The answer to a client request.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ClientReply {
    pub id: RequestId,
    pub result: ClientResult,
}

pub type ClientResult = Result<ClientResponse, ClientError>;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ClientResponse {
    /// A read: the value (if any) and the revision that last set it (0 if absent).
    Value {
        value: Option<Value>,
        revision: LogIndex,
    },
    /// A write took effect at `revision`, the log index of its entry, and is committed.
    Written { revision: LogIndex },
    /// Workloads read from the registry (none if a `Get` found nothing), with the commit index
    /// the read reflects.
    Workloads {
        workloads: Vec<Workload>,
        revision: LogIndex,
    },
    /// The registry as of `revision`.
    Registry {
        registry: crate::workload::Registry,
        revision: LogIndex,
    },
    /// The configuration in force at the leader: held by the entry at `index`, committed or not
    /// (a change in progress), as of `revision`.
    /// `strangers`: members the leader heard from as another incarnation than the configuration
    /// names (nodes back on an empty disk, to be replaced).
    Members {
        membership: Membership,
        index: LogIndex,
        committed: bool,
        revision: LogIndex,
        strangers: Vec<(NodeId, crate::types::Incarnation)>,
    },
}

/// Why a request did not succeed. Every variant but `Indeterminate` is definite: the request
/// certainly had no effect.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    #[error("this node cannot serve the request; the leader may be {leader_hint:?}")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("overloaded; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    #[error("compare-and-set failed: the current value is {current:?}")]
    CasMismatch { current: Option<Value> },
    /// The request was well formed but the state refuses it (e.g. stopping an unknown workload).
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The entry carrying the write was replaced by another leader's entry: it never applied.
    #[error("the write was not committed (leadership changed) and will never apply")]
    NotCommitted,
    /// The outcome is unknown: the write may or may not have applied (timeout, lost leadership).
    #[error("outcome unknown (timed out or leadership changed)")]
    Indeterminate,
}

impl ClientError {
    /// True when the request certainly had no effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ClientError::Indeterminate)
    }
}

/// The vote and term, persisted before any vote or term-bearing message is sent (§5.1, §5.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// A change to durable state.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Persist {
    HardState(HardState),
    /// Discard every log entry at or after `entries[0].index`, then append `entries`.
    /// Never empty.
    Entries(Vec<Entry>),
    /// Store this snapshot; log entries up to its `last_index` may be discarded. If the log does
    /// not hold the snapshot's last entry with the same term, the whole log is discarded.
    Snapshot(Snapshot),
}

/// Everything a node keeps across a crash. [`DurableState::apply`] is the reference meaning of
/// each [`Persist`]; the simulator uses it directly and the production log must agree with it.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct DurableState {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, contiguous and ascending.
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// Makes `persist` durable, taking its entries over rather than copying them.
    pub fn apply_owned(&mut self, persist: Persist) {
        match persist {
            Persist::Entries(mut entries) => {
                if let Some(first) = entries.first() {
                    self.truncate_from(first.index);
                    // A whole-vector move (one copy of the elements), not an element-wise extend.
                    self.entries.append(&mut entries);
                }
            }
            other => self.apply(&other),
        }
    }

    pub fn apply(&mut self, persist: &Persist) {
        match persist {
            Persist::HardState(hs) => self.hard_state = *hs,
            Persist::Entries(entries) => {
                if let Some(first) = entries.first() {
                    self.truncate_from(first.index);
                    self.entries.extend_from_slice(entries);
                }
            }
            Persist::Snapshot(snap) => {
                let matches = self
                    .entries
                    .iter()
                    .any(|e| e.index == snap.last_index && e.term == snap.last_term);
                if matches {
                    self.entries.retain(|e| e.index > snap.last_index);
                } else {
                    self.entries.clear();
                }
                self.snapshot = Some(snap.clone());
            }
        }
    }

    /// Discards every durable entry at or after `first`: a batch starting there replaces them.
    fn truncate_from(&mut self, first: LogIndex) {
        // Most batches extend the log: then nothing goes, and no search is needed.
        if self.entries.last().is_none_or(|e| e.index < first) {
            return;
        }
        let keep = self.entries.partition_point(|e| e.index < first);
        self.entries.truncate(keep);
    }

    /// The index of the last durable entry (or of the snapshot, if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map(|e| e.index)
            .or(self.snapshot.as_ref().map(|s| s.last_index))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::Command;
    use crate::state_machine::StateMachine;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            command: Arc::new(Command::Noop),
        }
    }

    #[test]
    fn entries_truncate_the_conflicting_suffix_then_append() {
        let mut d = DurableState::default();
        d.apply(&Persist::Entries(vec![e(1, 1), e(1, 2), e(1, 3)]));
        d.apply(&Persist::Entries(vec![e(2, 2)]));
        assert_eq!(d.entries, vec![e(1, 1), e(2, 2)]);
        assert_eq!(d.last_index(), LogIndex(2));
    }

    #[test]
    fn snapshot_keeps_a_matching_suffix_and_drops_a_conflicting_log() {
        let snap = |term, index| Snapshot {
            last_index: LogIndex(index),
            last_term: Term(term),
            membership: Default::default(),
            state: Arc::new(StateMachine::default()),
        };
        let mut d = DurableState::default();
        d.apply(&Persist::Entries(vec![e(1, 1), e(1, 2), e(1, 3)]));
        d.apply(&Persist::Snapshot(snap(1, 2)));
        assert_eq!(d.entries, vec![e(1, 3)]);
        d.apply(&Persist::Snapshot(snap(5, 9)));
        assert!(d.entries.is_empty());
        assert_eq!(d.last_index(), LogIndex(9));
    }
}
