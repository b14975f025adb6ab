//! Every timeout, bound and threshold of the core, each a named field with a documented default,
//! in two parts: [`RaftConfig`] (consensus) and [`CoordinationConfig`] (clients, leases,
//! orchestration), each validated on its own; [`Config`] adds the node's identity.
//!
//! The defaults aim at LAN clusters: failover (crash of the leader to a new leader able to commit)
//! well under 300 ms, and no spurious election with up to 10 ms of network jitter: a follower
//! waits at least four heartbeat intervals before it even asks whether an election is wanted.
//!
//! Owns: the node's identity settings and the composition of the two parts. Never: test-only
//! switches (planted bugs are set on a node, see `crate::testing`).

mod coordination;
mod raft;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{Incarnation, NodeId};

pub use coordination::CoordinationConfig;
pub use raft::RaftConfig;

/// Configuration of one node. Build it with [`Config::new`] and adjust fields as needed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// This node's id.
    pub id: NodeId,
    /// This node's incarnation: [`Incarnation::ORIGINAL`] for a member the cluster was
    /// bootstrapped with, a fresh one for a node that joins later or lost its data directory.
    pub incarnation: Incarnation,
    /// The voters the cluster was bootstrapped with, this node included; empty for a node that
    /// joins an existing cluster (it learns the configuration from the leader). Used only until
    /// the log or a snapshot holds a configuration.
    pub members: Vec<NodeId>,
    /// Seed of this node's random stream (election jitter). Distinct nodes should get distinct seeds.
    pub seed: u64,
    /// Consensus settings.
    pub raft: RaftConfig,
    /// Coordination settings.
    pub coordination: CoordinationConfig,
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
    #[error("dead_server_cleanup_after ({cleanup:?}) must be at least dead_after ({dead:?}): a member is removed only once it is dead")]
    CleanupBeforeDeath { cleanup: Duration, dead: Duration },
}

impl Config {
    /// A configuration with every default, for node `id` of a cluster bootstrapped with
    /// `members` (of the original incarnation).
    pub fn new(id: NodeId, members: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            incarnation: Incarnation::ORIGINAL,
            members,
            seed,
            raft: RaftConfig::default(),
            coordination: CoordinationConfig::default(),
        }
    }

    /// Checks the node's identity, then each part's own rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.is_empty() && !self.members.contains(&self.id) {
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
        self.raft.validate()?;
        self.coordination.validate()
    }

    /// The configuration the cluster was bootstrapped with (empty for a joining node).
    pub fn bootstrap_membership(&self) -> crate::raft::membership::Membership {
        crate::raft::membership::Membership::bootstrap(&self.members)
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
        assert_eq!(three().bootstrap_membership().quorum(), 2);
    }

    #[test]
    fn bad_relations_are_named() {
        let mut c = three();
        c.raft.election_timeout_max = c.raft.election_timeout_min;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionRange { .. })
        ));
        let mut c = three();
        c.raft.heartbeat_interval = Duration::from_millis(60);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeartbeatTooSlow { .. })
        ));
        let mut c = three();
        c.raft.lease_read_margin = c.raft.election_timeout_min;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseReadMargin { .. })
        ));
        c.raft.lease_read_margin = c.raft.election_timeout_min - Duration::from_micros(1);
        assert_eq!(c.validate(), Ok(()));
        let mut c = three();
        c.id = NodeId(9);
        assert!(matches!(c.validate(), Err(ConfigError::NotAMember { .. })));
        let mut c = three();
        c.coordination.max_pending_proposals = 0;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero("max_pending_proposals"))
        );
    }

    #[test]
    fn a_lease_may_never_outlive_failure_detection() {
        let mut c = three();
        c.coordination.lease_duration = c.coordination.dead_after;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseOutlivesDetection { .. })
        ));
        let mut c = three();
        c.coordination.suspect_after = c.coordination.dead_after;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SuspectThreshold { .. })
        ));
        let mut c = three();
        c.coordination.correlated_failure_fraction = 0.0;
        assert!(matches!(c.validate(), Err(ConfigError::Fraction(_))));
        let mut c = three();
        c.coordination.dead_server_cleanup_after = c.coordination.dead_after / 2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::CleanupBeforeDeath { .. })
        ));
        let mut c = three();
        c.coordination.min_voters = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("min_voters")));
    }
}
