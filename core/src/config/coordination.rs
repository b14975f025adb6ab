//! Coordination's settings: client admission and timeouts, workload leases, failure detection
//! and the orchestrator's placement, retry and breaker policies.
//!
//! Owns: the defaults of every coordination bound and the relations between them that the
//! lease argument depends on. Never: consensus settings (those are [`super::RaftConfig`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The coordination part of a node's [`super::Config`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinationConfig {
    /// Most client writes admitted but not yet answered by a leader; past it new writes are
    /// answered `Overloaded` at once. Default 1024.
    pub max_pending_proposals: usize,
    /// Most client requests a follower forwards to the leader and waits on at once. Default 1024.
    pub max_forwarded_requests: usize,
    /// The `retry_after` hint given with an `Overloaded` answer. Default 50 ms.
    pub overload_retry_after: Duration,
    /// A request still unanswered this long after it arrived is answered `Indeterminate` (a write)
    /// or `Timeout` (a read) and forgotten. Default 2 s.
    pub request_timeout: Duration,
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
    /// Autopilot: the leader removes a voter its failure detector has found silent for
    /// `dead_server_cleanup_after`, one at a time, never leaving fewer than `min_voters` voters
    /// (a dead voter still counts in every quorum: removing it lets the cluster survive one
    /// more failure). Off by default: removing a member is an operator's decision unless asked.
    pub dead_server_cleanup: bool,
    /// See `dead_server_cleanup`. Must be at least `dead_after`. Default 10 min.
    pub dead_server_cleanup_after: Duration,
    /// See `dead_server_cleanup`. Default 3.
    pub min_voters: usize,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            max_pending_proposals: 1024,
            max_forwarded_requests: 1024,
            overload_retry_after: Duration::from_millis(50),
            request_timeout: Duration::from_secs(2),
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
            dead_server_cleanup: false,
            dead_server_cleanup_after: Duration::from_secs(600),
            min_voters: 3,
        }
    }
}

impl CoordinationConfig {
    /// Checks the coordination settings: bounds above zero and the lease relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_nonzero()?;
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
        if self.dead_server_cleanup_after < self.dead_after {
            return Err(ConfigError::CleanupBeforeDeath {
                cleanup: self.dead_server_cleanup_after,
                dead: self.dead_after,
            });
        }
        if self.min_voters == 0 {
            return Err(ConfigError::Zero("min_voters"));
        }
        Ok(())
    }

    fn validate_nonzero(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("max_pending_proposals", self.max_pending_proposals),
            ("max_forwarded_requests", self.max_forwarded_requests),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
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
        Ok(())
    }
}
