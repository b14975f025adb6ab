//! Raft's settings: election timing, replication bounds, reads, transfer and snapshots.
//!
//! Owns: the defaults of every consensus timeout and bound, and the relations between them that
//! the protocol depends on. Never: coordination settings (clients, leases, orchestration).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The consensus part of a node's [`super::Config`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// How often a leader sends heartbeats (empty AppendEntries) to each follower; a follower
    /// sent anything within the last half interval is skipped (it heard from the leader
    /// recently enough), so under write load heartbeats mostly ride on the entries themselves.
    /// Default 25 ms.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout (§5.2). Default 100 ms.
    pub election_timeout_min: Duration,
    /// Upper bound (exclusive) of the randomised election timeout. Default 200 ms.
    pub election_timeout_max: Duration,
    /// Run a pre-vote round before starting an election, so a node that was cut off does not
    /// disrupt a healthy leader with an inflated term when it returns. Default on.
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within `election_timeout_min` steps down, and a
    /// follower that heard from a leader within `election_timeout_min` (or started less than
    /// that long ago) refuses (pre-)votes. Default on. Read-index reads rely on it only for
    /// liveness; lease reads (`lease_reads`) rely on it for safety.
    pub check_quorum: bool,
    /// Most entries carried by one AppendEntries message. Default 64.
    pub max_entries_per_message: usize,
    /// Most AppendEntries messages carrying entries in flight to one follower at a time; beyond it
    /// new entries wait and go out batched with the next acknowledgement. Default 8.
    pub max_inflight_messages: usize,
    /// Most AppendEntries a follower holds that arrived ahead of a gap in its log (the network
    /// delivered a later message before an earlier one), to append them once the gap fills
    /// instead of rejecting them. A rejection sends the leader back to probing one message at a
    /// time and makes it send the held entries again. Holding a message is the same as the
    /// network delivering it later, so it cannot affect safety; a held message is never appended
    /// once the term or the leader has changed, and past the bound a follower rejects as usual.
    /// Only a follower the leader streams to holds (one being probed answers at once). 0 holds
    /// none. Default 8 (one leader's `max_inflight_messages`).
    pub max_held_appends: usize,
    /// Most linearizable reads waiting for a read index at a leader. Default 1024.
    pub max_pending_reads: usize,
    /// Answer linearizable reads from a leader lease instead of a heartbeat round per read
    /// (Raft thesis §6.4.1). A follower that answered a round the leader started at `s` refuses
    /// votes until `s + election_timeout_min` (check-quorum's stickiness), so while a majority
    /// answered rounds started within `election_timeout_min - lease_read_margin`, no other
    /// leader can exist. Needs `check_quorum`; off, or when the lease has lapsed, or after this
    /// leader sent `TimeoutNow` (a transfer vote ignores stickiness), reads take a round as with
    /// read-index. Safety rests on the nodes' clocks advancing at nearly the same rate: a host
    /// whose monotonic clock stops while the process lives (a suspended VM or laptop) could serve
    /// a stale read after it wakes; turn this off where that can happen. Default on.
    pub lease_reads: bool,
    /// How much of `election_timeout_min` a read lease gives up to clock-rate differences
    /// between nodes. Must be below `election_timeout_min`. Default 10 ms.
    pub lease_read_margin: Duration,
    /// A leadership transfer whose target has not taken over within this time is given up and
    /// the leader takes writes again. Default 500 ms.
    pub transfer_timeout: Duration,
    /// Take a snapshot once this many entries were applied since the last one. Default 1024.
    pub snapshot_threshold_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a briefly lagging follower is caught up
    /// from the log rather than by a whole snapshot. Default 1024.
    pub snapshot_retain_entries: u64,
    /// A learner is promoted to voter only while it is at most this many entries behind the
    /// leader's log: a voter far behind would leave the cluster one failure closer to stopping
    /// until it caught up. Default 256 (half of what one leader keeps in flight to a follower
    /// at the default bounds, so a learner that keeps up with a write load qualifies).
    pub promote_max_lag: u64,
    /// Most bytes of a snapshot's encoded state in one InstallSnapshot message: a state of any
    /// size travels in chunks this large, one in flight at a time, and a transfer cut short
    /// resumes from the last chunk acknowledged. Well below the production transport's frame
    /// limit (64 MiB). Default 1 MiB.
    pub snapshot_chunk_bytes: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval: Duration::from_millis(25),
            election_timeout_min: Duration::from_millis(100),
            election_timeout_max: Duration::from_millis(200),
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 64,
            max_inflight_messages: 8,
            max_held_appends: 8,
            max_pending_reads: 1024,
            lease_reads: true,
            lease_read_margin: Duration::from_millis(10),
            transfer_timeout: Duration::from_millis(500),
            snapshot_threshold_entries: 1024,
            snapshot_retain_entries: 1024,
            promote_max_lag: 256,
            snapshot_chunk_bytes: 1 << 20,
        }
    }
}

impl RaftConfig {
    /// Checks the relations between the consensus settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.election_timeout_min >= self.election_timeout_max {
            return Err(ConfigError::ElectionRange {
                min: self.election_timeout_min,
                max: self.election_timeout_max,
            });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::Zero("heartbeat_interval"));
        }
        if self.heartbeat_interval * 2 > self.election_timeout_min {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat: self.heartbeat_interval,
                min: self.election_timeout_min,
            });
        }
        if self.lease_read_margin >= self.election_timeout_min {
            return Err(ConfigError::LeaseReadMargin {
                margin: self.lease_read_margin,
                min: self.election_timeout_min,
            });
        }
        for (name, value) in [
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_pending_reads", self.max_pending_reads),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.snapshot_threshold_entries == 0 {
            return Err(ConfigError::Zero("snapshot_threshold_entries"));
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::Zero("snapshot_chunk_bytes"));
        }
        if self.transfer_timeout.is_zero() {
            return Err(ConfigError::Zero("transfer_timeout"));
        }
        Ok(())
    }

    /// How long a read lease runs from its start, in microseconds (`election_timeout_min -
    /// lease_read_margin`); None with lease reads or check-quorum off.
    pub(crate) fn lease_window_us(&self) -> Option<u64> {
        (self.lease_reads && self.check_quorum).then(|| {
            let window = self
                .election_timeout_min
                .saturating_sub(self.lease_read_margin);
            u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
        })
    }
}
