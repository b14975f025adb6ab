//! Decisions the core reports as [`crate::Output::Trace`]: elections, leadership, commits,
//! snapshots and shed requests. They are data, not log lines: the simulator hashes them and
//! builds its summary from them, the production node logs them.
//!
//! Owns: the event vocabulary, including [`Refusal`]s of unsafe changes. Never: formatting or
//! writing a log.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::io::StopReason;
use crate::types::{LogIndex, NodeId, RequestId, Term};
use crate::workload::{ExitOutcome, Health, PlaceReason};

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Event {
    /// The election timer fired; a pre-vote round for `term` starts.
    PreVoteStarted {
        term: Term,
    },
    /// A pre-vote round lost: a majority refused (a healthy leader exists or our log is behind).
    PreVoteRejected {
        term: Term,
    },
    /// This node stood for election in `term` (term incremented, own vote persisted).
    ElectionStarted {
        term: Term,
    },
    BecameLeader {
        term: Term,
    },
    /// This node follows `leader` (if known) in `term`.
    BecameFollower {
        term: Term,
        leader: Option<NodeId>,
    },
    /// A leader gave up leadership.
    SteppedDown {
        term: Term,
        reason: StepDownReason,
    },
    /// The leader stopped taking writes and hands leadership to `to` once it is caught up.
    TransferStarted {
        term: Term,
        to: NodeId,
    },
    /// A leadership transfer did not complete within `transfer_timeout`; writes resume.
    TransferAborted {
        term: Term,
        to: NodeId,
    },
    /// The commit index advanced to `index`.
    Committed {
        index: LogIndex,
    },
    /// A conflicting suffix of the log, from `from` on, was discarded (§5.3).
    LogTruncated {
        from: LogIndex,
    },
    SnapshotTaken {
        last_index: LogIndex,
    },
    SnapshotSent {
        to: NodeId,
        last_index: LogIndex,
    },
    SnapshotInstalled {
        last_index: LogIndex,
    },
    /// The configuration in force changed: the entry at `index` holds it (or, for a snapshot,
    /// the snapshot's point), with that many voters and learners.
    MembershipChanged {
        index: LogIndex,
        voters: u32,
        learners: u32,
    },
    /// Autopilot removed a voter silent for `silent_for` (see
    /// `CoordinationConfig::dead_server_cleanup`).
    DeadVoterRemoved {
        node: NodeId,
        silent_for: Duration,
    },
    /// A follower answered with less log than it had acknowledged (a truncated, wiped or
    /// restored disk): the leader probes it back from `holds`.
    FollowerLostEntries {
        follower: NodeId,
        holds: LogIndex,
    },
    /// A client request was refused at once for lack of room.
    RequestShed {
        id: RequestId,
        reason: ShedReason,
    },
    /// The leader's failure detector changed its verdict on `node` (and proposed it).
    NodeHealth {
        node: NodeId,
        health: Health,
        silent_for: Duration,
    },
    /// A decision about one workload, by the leader or by the node running it.
    Workload {
        name: String,
        decision: WorkloadDecision,
    },
    /// This node's workload lease ran out; it stopped every copy it ran.
    LeaseLost {
        stopped: usize,
    },
    /// The leader's circuit breaker for `node` changed state.
    Breaker {
        node: NodeId,
        state: BreakerState,
    },
    /// More than the allowed fraction of nodes died at once: re-placement is frozen until
    /// they return or the hold time passes.
    ReplacementFrozen {
        dead: Vec<NodeId>,
    },
    /// The freeze ended (`reason`: nodes returned or the hold passed).
    ReplacementResumed,
    /// The core refused a change that would break a safety invariant (only a broken protocol or
    /// a corrupted peer can ask for one): the change was not made.
    Refused {
        refusal: Refusal,
    },
}

/// A change to the Raft state the core refuses in every build (see [`Event::Refused`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Refusal {
    /// Moving the commit index back from `commit` to `to`.
    CommitRegression { commit: LogIndex, to: LogIndex },
    /// `leader` asked to replace the log from `index` on, at or below the commit index `commit`.
    CommittedOverwrite {
        leader: NodeId,
        index: LogIndex,
        commit: LogIndex,
    },
    /// The snapshot up to `last_index` could not be encoded (leader) or what arrived could not
    /// be decoded (follower): nothing is installed and the transfer starts over.
    SnapshotEncoding { last_index: LogIndex, error: String },
}

/// One decision in a workload's life.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WorkloadDecision {
    /// The leader placed it on `node`, the healthy node with the most free capacity.
    Placed {
        node: NodeId,
        reason: PlaceReason,
        free_capacity: u32,
    },
    /// Its copy on `from` is lost; the leader re-places it after a jittered delay.
    ReplacementScheduled {
        from: NodeId,
        epoch: LogIndex,
        delay: Duration,
    },
    /// The leader gave up the copy of `epoch` on `from` (dead node, start timeout).
    Orphaned {
        from: NodeId,
        epoch: LogIndex,
        why: String,
    },
    /// The copy failed; the leader retries after `delay` (full jitter, capped exponential).
    BackoffChosen { attempt: u32, delay: Duration },
    /// Its backoff ended.
    RetryDue,
    /// No more retries.
    GaveUp { reason: String },
    /// This node started its copy of `epoch`.
    CopyStarted { epoch: LogIndex },
    /// This node stopped its copy of `epoch`.
    CopyStopped { epoch: LogIndex, reason: StopReason },
    /// The copy of `epoch` on this node ended on its own.
    CopyExited {
        epoch: LogIndex,
        outcome: ExitOutcome,
    },
}

/// A node's circuit breaker at the leader.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum BreakerState {
    /// Placements allowed.
    Closed,
    /// Too many placement failures: no new work until the open period ends.
    Open,
    /// One trial placement allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StepDownReason {
    /// A message with a higher term arrived.
    HigherTerm,
    /// A majority was not heard from within an election timeout (check-quorum).
    LostQuorum,
    /// A configuration without this leader as a voter was committed.
    Removed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ShedReason {
    TooManyPendingProposals,
    TooManyPendingReads,
    TooManyForwardedRequests,
}
