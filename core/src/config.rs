//! Every timeout, bound and threshold of the core, each a named field with a documented default.
//!
//! The defaults aim at LAN clusters: failover (crash of the leader to a new leader able to commit)
//! well under 300 ms, and no spurious election with up to 10 ms of network jitter: a follower
//! waits at least four heartbeat intervals before it even asks whether an election is wanted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Configuration of one node. Build it with [`Config::new`] and adjust fields as needed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// This node's id; must be one of `members`.
    pub id: NodeId,
    /// Every voting member of the cluster, this node included.
    pub members: Vec<NodeId>,
    /// Seed of this node's random stream (election jitter). Distinct nodes should get distinct seeds.
    pub seed: u64,

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

    /// Most client writes admitted but not yet answered by a leader; past it new writes are
    /// answered `Overloaded` at once. Default 1024.
    pub max_pending_proposals: usize,
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
    /// Most client requests a follower forwards to the leader and waits on at once. Default 1024.
    pub max_forwarded_requests: usize,
    /// The `retry_after` hint given with an `Overloaded` answer. Default 50 ms.
    pub overload_retry_after: Duration,
    /// A request still unanswered this long after it arrived is answered `Indeterminate` (a write)
    /// or `Timeout` (a read) and forgotten. Default 2 s.
    pub request_timeout: Duration,

    /// A leadership transfer whose target has not taken over within this time is given up and
    /// the leader takes writes again. Default 500 ms.
    pub transfer_timeout: Duration,

    /// Take a snapshot once this many entries were applied since the last one. Default 1024.
    pub snapshot_threshold_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a briefly lagging follower is caught up
    /// from the log rather than by a whole snapshot. Default 1024.
    pub snapshot_retain_entries: u64,

    /// How often every node renews its workload lease with the leader (this is also its
    /// heartbeat to the failure detector). Default 100 ms.
    pub lease_renew_interval: Duration,
    /// How long a lease lasts, counted from when the node *sent* the renewal the leader granted.
    /// A node whose lease runs out stops every workload it runs (and its driver kills them even
    /// if the node's own loop hangs). Default 800 ms, so a network blip of a few hundred
    /// milliseconds stops nothing.
    pub lease_duration: Duration,
    /// Slack for message latency and clock drift in every lease argument: a node is declared
    /// dead only `lease_duration + lease_margin` after it was last heard at the earliest, and a
    /// new leader re-places nothing before that long after its election. Default 200 ms.
    pub lease_margin: Duration,
    /// A node silent this long is suspect: no new work goes to it, nothing is moved yet.
    /// Default 400 ms.
    pub suspect_after: Duration,
    /// A node silent this long is dead: its workloads are re-placed. Must be at least
    /// `lease_duration + lease_margin`. Default 1 s.
    pub dead_after: Duration,
    /// How often the leader's orchestrator looks at node health, placements and retries.
    /// Default 50 ms.
    pub orchestrate_interval: Duration,
    /// Capacity units each node offers to workloads. Default 64.
    pub node_capacity: u32,
    /// Each re-placement of a lost copy waits a uniformly drawn delay below this, so that many
    /// copies lost at once do not land at one instant (no thundering herd). Default 50 ms.
    pub replace_jitter: Duration,
    /// Most re-placements per second (a token bucket holding as many tokens). Default 20.
    pub replace_rate_per_sec: u32,
    /// Failed copies on a node (start failures, crashes, hangs), each within
    /// `breaker_open_for` of the previous, that open its circuit breaker. Default 3.
    pub breaker_threshold: u32,
    /// How long an open breaker keeps new work off a node before one trial placement
    /// (half-open). Default 5 s.
    pub breaker_open_for: Duration,
    /// If more than this fraction of the cluster's nodes is declared dead within
    /// `correlated_failure_window`, the leader freezes re-placement (it is more likely cut off
    /// itself than that so many nodes died) until they return or `correlated_failure_hold`
    /// passes. Default 0.34 (two of five nodes, one of three).
    pub correlated_failure_fraction: f64,
    /// See `correlated_failure_fraction`. Default 1 s.
    pub correlated_failure_window: Duration,
    /// See `correlated_failure_fraction`. Default 10 s.
    pub correlated_failure_hold: Duration,
    /// Restart-intensity limit: a workload restarted this many times within
    /// `restart_window` is failed for good as a crash loop. Default 5.
    pub max_restarts_in_window: u32,
    /// See `max_restarts_in_window`. Default 60 s.
    pub restart_window: Duration,

    /// A deliberate bug to run with (test builds with the `planted-bugs` feature only). Default
    /// none.
    #[cfg(feature = "planted-bugs")]
    #[serde(default)]
    pub planted_bug: Option<PlantedBug>,
}

/// Classic consensus bugs the simulator must catch (feature `planted-bugs`).
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlantedBug {
    /// Commit an entry of an earlier term by counting replicas (Raft paper, figure 8). The new
    /// leader also appends no no-op of its term at election: with the no-op, the old entries
    /// reach every follower in the same AppendEntries as an entry of the leader's term, so the
    /// rule broken here would only matter for a follower lagging more than
    /// `max_entries_per_message` behind (the figure-8 leader appends only client commands).
    CommitEarlierTermByCounting,
    /// Grant a vote without persisting it: after a crash the node may vote again in that term.
    VoteNotPersisted,
    /// A leader answers reads from its own state without confirming it still leads.
    StaleLeaderServesReads,
    /// A leader acknowledges a write as soon as it is appended, before it commits.
    AckBeforeCommit,
    /// A node keeps running its workloads after its lease runs out (and tells its supervisor
    /// the lease never ends).
    KeepsWorkloadsAfterLeaseLoss,
    /// A follower installing a snapshot moves its log, commit and applied index to the snapshot
    /// but keeps its own state machine: the entries between what it had applied and the
    /// snapshot's index are dropped, never applied.
    SnapshotInstallDropsEntries,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::CommitEarlierTermByCounting,
        PlantedBug::VoteNotPersisted,
        PlantedBug::StaleLeaderServesReads,
        PlantedBug::AckBeforeCommit,
        PlantedBug::KeepsWorkloadsAfterLeaseLoss,
        PlantedBug::SnapshotInstallDropsEntries,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::CommitEarlierTermByCounting => "commit-earlier-term",
            PlantedBug::VoteNotPersisted => "vote-not-persisted",
            PlantedBug::StaleLeaderServesReads => "stale-leader-reads",
            PlantedBug::AckBeforeCommit => "ack-before-commit",
            PlantedBug::KeepsWorkloadsAfterLeaseLoss => "keeps-workloads-after-lease-loss",
            PlantedBug::SnapshotInstallDropsEntries => "snapshot-install-drops-entries",
        }
    }
}

/// A configuration the core refuses to run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("node {id} is not in members {members:?}")]
    NotAMember { id: NodeId, members: Vec<NodeId> },
    #[error("members list {0:?} contains a duplicate")]
    DuplicateMember(Vec<NodeId>),
    #[error("election_timeout_min ({min:?}) must be below election_timeout_max ({max:?})")]
    ElectionRange { min: Duration, max: Duration },
    #[error(
        "heartbeat_interval ({heartbeat:?}) must be at most half of election_timeout_min ({min:?})"
    )]
    HeartbeatTooSlow { heartbeat: Duration, min: Duration },
    #[error("lease_read_margin ({margin:?}) must be below election_timeout_min ({min:?})")]
    LeaseReadMargin { margin: Duration, min: Duration },
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    #[error("dead_after ({dead:?}) must be at least lease_duration + lease_margin ({lease:?} + {margin:?}): a node must lose its lease before its workloads move")]
    LeaseOutlivesDetection {
        dead: Duration,
        lease: Duration,
        margin: Duration,
    },
    #[error("suspect_after ({suspect:?}) must be below dead_after ({dead:?}) and above lease_renew_interval ({renew:?})")]
    SuspectThreshold {
        suspect: Duration,
        dead: Duration,
        renew: Duration,
    },
    #[error("lease_renew_interval ({renew:?}) must be below lease_duration ({lease:?})")]
    RenewTooSlow { renew: Duration, lease: Duration },
    #[error("correlated_failure_fraction must be in (0, 1], not {0}")]
    Fraction(f64),
}

impl Config {
    /// A configuration with every default, for node `id` of `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            members,
            seed,
            heartbeat_interval: Duration::from_millis(25),
            election_timeout_min: Duration::from_millis(100),
            election_timeout_max: Duration::from_millis(200),
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 64,
            max_inflight_messages: 8,
            max_held_appends: 8,
            max_pending_proposals: 1024,
            max_pending_reads: 1024,
            lease_reads: true,
            lease_read_margin: Duration::from_millis(10),
            max_forwarded_requests: 1024,
            overload_retry_after: Duration::from_millis(50),
            request_timeout: Duration::from_secs(2),
            transfer_timeout: Duration::from_millis(500),
            snapshot_threshold_entries: 1024,
            snapshot_retain_entries: 1024,
            lease_renew_interval: Duration::from_millis(100),
            lease_duration: Duration::from_millis(800),
            lease_margin: Duration::from_millis(200),
            suspect_after: Duration::from_millis(400),
            dead_after: Duration::from_secs(1),
            orchestrate_interval: Duration::from_millis(50),
            node_capacity: 64,
            replace_jitter: Duration::from_millis(50),
            replace_rate_per_sec: 20,
            breaker_threshold: 3,
            breaker_open_for: Duration::from_secs(5),
            correlated_failure_fraction: 0.34,
            correlated_failure_window: Duration::from_secs(1),
            correlated_failure_hold: Duration::from_secs(10),
            max_restarts_in_window: 5,
            restart_window: Duration::from_secs(60),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Checks the relations between fields that the protocol depends on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.contains(&self.id) {
            return Err(ConfigError::NotAMember {
                id: self.id,
                members: self.members.clone(),
            });
        }
        let mut sorted = self.members.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.members.len() {
            return Err(ConfigError::DuplicateMember(self.members.clone()));
        }
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
            ("max_pending_proposals", self.max_pending_proposals),
            ("max_pending_reads", self.max_pending_reads),
            ("max_forwarded_requests", self.max_forwarded_requests),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.snapshot_threshold_entries == 0 {
            return Err(ConfigError::Zero("snapshot_threshold_entries"));
        }
        if self.transfer_timeout.is_zero() {
            return Err(ConfigError::Zero("transfer_timeout"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Zero("request_timeout"));
        }
        for (name, value) in [
            ("lease_renew_interval", self.lease_renew_interval),
            ("orchestrate_interval", self.orchestrate_interval),
            ("breaker_open_for", self.breaker_open_for),
            ("restart_window", self.restart_window),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("node_capacity", self.node_capacity),
            ("replace_rate_per_sec", self.replace_rate_per_sec),
            ("breaker_threshold", self.breaker_threshold),
            ("max_restarts_in_window", self.max_restarts_in_window),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.lease_renew_interval >= self.lease_duration {
            return Err(ConfigError::RenewTooSlow {
                renew: self.lease_renew_interval,
                lease: self.lease_duration,
            });
        }
        if self.dead_after < self.lease_duration + self.lease_margin {
            return Err(ConfigError::LeaseOutlivesDetection {
                dead: self.dead_after,
                lease: self.lease_duration,
                margin: self.lease_margin,
            });
        }
        if self.suspect_after >= self.dead_after || self.suspect_after <= self.lease_renew_interval
        {
            return Err(ConfigError::SuspectThreshold {
                suspect: self.suspect_after,
                dead: self.dead_after,
                renew: self.lease_renew_interval,
            });
        }
        let f = self.correlated_failure_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(ConfigError::Fraction(f));
        }
        Ok(())
    }

    /// Votes needed to win an election or commit an entry.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Config {
        Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)], 7)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(three().validate(), Ok(()));
        assert_eq!(three().quorum(), 2);
    }

    #[test]
    fn bad_relations_are_named() {
        let mut c = three();
        c.election_timeout_max = c.election_timeout_min;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionRange { .. })
        ));
        let mut c = three();
        c.heartbeat_interval = Duration::from_millis(60);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeartbeatTooSlow { .. })
        ));
        let mut c = three();
        c.lease_read_margin = c.election_timeout_min;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseReadMargin { .. })
        ));
        c.lease_read_margin = c.election_timeout_min - Duration::from_micros(1);
        assert_eq!(c.validate(), Ok(()));
        let mut c = three();
        c.id = NodeId(9);
        assert!(matches!(c.validate(), Err(ConfigError::NotAMember { .. })));
        let mut c = three();
        c.max_pending_proposals = 0;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero("max_pending_proposals"))
        );
    }

    #[test]
    fn a_lease_may_never_outlive_failure_detection() {
        let mut c = three();
        c.lease_duration = c.dead_after;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseOutlivesDetection { .. })
        ));
        let mut c = three();
        c.suspect_after = c.dead_after;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SuspectThreshold { .. })
        ));
        let mut c = three();
        c.correlated_failure_fraction = 0.0;
        assert!(matches!(c.validate(), Err(ConfigError::Fraction(_))));
    }
}
