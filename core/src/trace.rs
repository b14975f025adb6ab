//! Decisions the core reports as [`crate::Output::Trace`]: elections, leadership, commits,
//! snapshots and shed requests. They are data, not log lines: the simulator hashes them and
//! builds its summary from them, the production node logs them.

use serde::{Deserialize, Serialize};

use crate::types::{LogIndex, NodeId, RequestId, Term};

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
    /// A client request was refused at once for lack of room.
    RequestShed {
        id: RequestId,
        reason: ShedReason,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StepDownReason {
    /// A message with a higher term arrived.
    HigherTerm,
    /// A majority was not heard from within an election timeout (check-quorum).
    LostQuorum,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ShedReason {
    TooManyPendingProposals,
    TooManyPendingReads,
    TooManyForwardedRequests,
}
