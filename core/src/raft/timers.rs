//! Raft's one timer table: the election timer of a follower or candidate, and the heartbeat
//! and check-quorum timers of a leader (a transfer's deadline lives with the transfer).
//!
//! Owns: the deadlines and which of them is due next. Never: what happens when one fires
//! (that is election's and replication's job), or drawing the randomised timeout (the node's
//! stream is drawn in `Raft::redraw_election_timer`, so draws keep their order).

use crate::config::RaftConfig;
use crate::types::Instant;

#[derive(Debug)]
pub(super) struct Timers {
    /// When a follower's or candidate's election timer fires.
    pub election: Instant,
    /// The election timeout drawn last (us).
    pub election_timeout_us: u64,
    /// Leader only: when the next heartbeat round starts.
    pub heartbeat: Instant,
    /// Leader only: when check-quorum next counts the followers heard from.
    pub quorum_check: Instant,
}

impl Timers {
    pub(super) fn new() -> Timers {
        Timers {
            election: Instant::NEVER,
            election_timeout_us: 0,
            heartbeat: Instant::NEVER,
            quorum_check: Instant::NEVER,
        }
    }

    /// Restarts the election timer with the timeout drawn last.
    pub(super) fn reset_election(&mut self, now: Instant) {
        self.election = Instant(now.0.saturating_add(self.election_timeout_us));
    }

    /// A new leader's first heartbeat and quorum check.
    pub(super) fn start_leading(&mut self, now: Instant, cfg: &RaftConfig) {
        self.heartbeat = now + cfg.heartbeat_interval;
        self.quorum_check = now + cfg.election_timeout_min;
    }

    /// The leader's next deadline: heartbeat, quorum check (with check-quorum on) and
    /// `transfer` (a transfer's deadline, NEVER without one).
    pub(super) fn leader_next(&self, check_quorum: bool, transfer: Instant) -> Instant {
        if check_quorum {
            self.heartbeat.min(self.quorum_check).min(transfer)
        } else {
            self.heartbeat.min(transfer)
        }
    }
}
