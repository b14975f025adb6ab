//! What nodes say to each other: Raft's RPCs (with pre-vote) and client request forwarding.
//!
//! Every message carries the sender's term; a message with a higher term than the receiver's
//! makes the receiver catch up (§5.1), except pre-votes, which carry the term the sender *would*
//! use and change nobody's term.
//!
//! Owns: the wire shapes of messages and log entries. Never: how they are handled.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::io::{ClientOp, ClientResult};
use crate::kv::Write;
use crate::types::{Incarnation, Instant, LogIndex, NodeId, RequestId, Term};
use crate::workload::ExitOutcome;
use std::time::Duration;

/// What a log entry asks the state machine to do.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Appended by every new leader so it can commit an entry of its own term (§5.4.2, §8).
    Noop,
    Write(Write),
    /// A change to the workload registry (a client's submit or stop, or a leader's decision).
    Orch(crate::workload::OrchCommand),
    /// The cluster's configuration from this entry on (it takes effect when appended).
    Membership(crate::raft::membership::Membership),
}

/// One entry of the replicated log.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub command: Arc<Command>,
}

/// A message from one node to another.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    /// The sender's incarnation: only the incarnation a configuration names counts as that
    /// member (see `raft::membership`).
    pub incarnation: Incarnation,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Sent before an election; changes no state (§9.6 of the thesis).
    PreVote {
        last_log_index: LogIndex,
        last_log_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// §5.2: a candidate asks for a vote in its term.
    RequestVote {
        last_log_index: LogIndex,
        last_log_term: Term,
        /// The candidate stands because the leader handed leadership to it (thesis §3.10):
        /// voters grant even while they heard from that leader recently (leader stickiness
        /// would otherwise ignore the request).
        transfer: bool,
    },
    RequestVoteResponse {
        granted: bool,
    },
    /// Leadership transfer (thesis §3.10): the leader tells a caught-up follower to stand for
    /// election now, without waiting for its election timeout or a pre-vote round.
    TimeoutNow,
    /// §5.3: replicate `entries` after (`prev_log_index`, `prev_log_term`). Empty: a heartbeat.
    /// `round` is the leader's heartbeat round, echoed back so reads can be confirmed (§6.4).
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        round: u64,
    },
    AppendEntriesResponse {
        result: AppendResult,
        round: u64,
    },
    /// §7: the leader sends its snapshot to a follower whose next entry it has compacted away,
    /// one chunk at a time. Boxed: rare, and larger than every other message.
    InstallSnapshot(Box<SnapshotChunk>),
    /// `received: None`: the follower holds everything up to `last_index` (its commit index).
    /// `Some(n)`: it holds the first `n` bytes of the snapshot being sent; the next chunk starts
    /// there (a resend after a loss resumes from it).
    InstallSnapshotResponse {
        last_index: LogIndex,
        received: Option<u64>,
        round: u64,
    },
    /// A follower hands a client request to the leader it believes in. Boxed (as is the
    /// reply's result): an operation is large and forwarding rare, and every message is as
    /// large as its largest variant. Serde treats a `Box` as what it holds: the wire is the same.
    Forward {
        id: RequestId,
        op: Box<ClientOp>,
    },
    /// The leader's answer to a forwarded request, for the follower to pass on.
    ForwardReply {
        id: RequestId,
        result: Box<ClientResult>,
    },
    /// A node's heartbeat to the leader and request to renew its workload lease, with the copies
    /// it runs and the exits the registry does not show yet. `sent_at` is the sender's clock.
    LeaseRequest {
        sent_at: Instant,
        running: Vec<(String, LogIndex)>,
        exits: Vec<(String, LogIndex, ExitOutcome)>,
    },
    /// The leader grants the lease asked at `sent_at`: it runs to `sent_at + lease_duration` on
    /// the node's clock. `commit` is the leader's last log index when it granted: the node starts
    /// nothing before it applied that far (so it sees every decision the leader had taken). `silence` is how long the leader had not heard from each member, so a
    /// later leader starts from it instead of from scratch.
    LeaseGrant {
        sent_at: Instant,
        commit: LogIndex,
        silence: Vec<(NodeId, Duration)>,
    },
}

/// One piece of a snapshot: `data` is bytes `offset..offset + data.len()` of the encoded state
/// (`total` bytes in all; see [`crate::snapshot::encode_state`]), with the snapshot's point and
/// configuration in every chunk.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub membership: crate::raft::membership::Membership,
    pub offset: u64,
    pub total: u64,
    pub data: Vec<u8>,
    pub round: u64,
}

/// A follower's answer to AppendEntries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log now matches the leader's up to `match_index`, durably.
    Success { match_index: LogIndex },
    /// The consistency check failed at `rejected_prev_index`. The hint lets the leader skip a
    /// whole conflicting term at once: `conflict_term` is the follower's term at that index
    /// (`None` if its log is shorter) and `conflict_index` the first index the follower holds
    /// of that term (or its last index + 1).
    Reject {
        rejected_prev_index: LogIndex,
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
    },
}

impl MessageBody {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResponse",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
            MessageBody::Forward { .. } => "Forward",
            MessageBody::ForwardReply { .. } => "ForwardReply",
            MessageBody::LeaseRequest { .. } => "LeaseRequest",
            MessageBody::LeaseGrant { .. } => "LeaseGrant",
        }
    }
}
