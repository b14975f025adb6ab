//! Classic consensus bugs, planted on purpose so the simulator shows it catches each one.
//!
//! Owns: [`PlantedBug`] (names, the full list) and [`Planted`], the per-node record of which bug
//! runs. Without the `planted-bugs` feature `Planted` holds nothing and answers `false` to
//! every question, so the compiler removes every planted branch; with it, a test driver sets
//! the bug with [`crate::Node::plant_bug`]. Never: a serde field of the configuration, and never
//! a condition on any assertion or safety refusal of the core.

use serde::{Deserialize, Serialize};

/// Classic consensus bugs the simulator must catch (planted only with the `planted-bugs`
/// feature; without it the list exists but nothing can plant one).
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
    /// A configuration takes effect when it is committed instead of when it is appended: a
    /// leader counts the votes and acknowledgements for a change, and for everything after it
    /// until it commits, on the configuration before it (and a follower elects on it).
    ConfigOnCommit,
    /// The leader counts commit quorums on the configuration before the last change (its voters
    /// and its majority) rather than the one in force.
    QuorumOnOldConfig,
    /// A learner's acknowledgement counts toward the commit quorum (and, once counted, toward
    /// the leader's check-quorum) as a voter's would.
    LearnerCountsAsVoter,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 9] = [
        PlantedBug::CommitEarlierTermByCounting,
        PlantedBug::VoteNotPersisted,
        PlantedBug::StaleLeaderServesReads,
        PlantedBug::AckBeforeCommit,
        PlantedBug::KeepsWorkloadsAfterLeaseLoss,
        PlantedBug::SnapshotInstallDropsEntries,
        PlantedBug::ConfigOnCommit,
        PlantedBug::QuorumOnOldConfig,
        PlantedBug::LearnerCountsAsVoter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::CommitEarlierTermByCounting => "commit-earlier-term",
            PlantedBug::VoteNotPersisted => "vote-not-persisted",
            PlantedBug::StaleLeaderServesReads => "stale-leader-reads",
            PlantedBug::AckBeforeCommit => "ack-before-commit",
            PlantedBug::KeepsWorkloadsAfterLeaseLoss => "keeps-workloads-after-lease-loss",
            PlantedBug::SnapshotInstallDropsEntries => "snapshot-install-drops-entries",
            PlantedBug::ConfigOnCommit => "config-on-commit",
            PlantedBug::QuorumOnOldConfig => "quorum-on-old-config",
            PlantedBug::LearnerCountsAsVoter => "learner-counts-as-voter",
        }
    }
}

/// Which planted bug a node runs with: none, always, without the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Planted {
    #[cfg(feature = "planted-bugs")]
    bug: Option<PlantedBug>,
}

impl Planted {
    /// True when running with `bug` planted; a constant `false` without the feature.
    #[inline(always)]
    pub(crate) fn is(self, bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.bug == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}

#[cfg(feature = "planted-bugs")]
impl crate::Node {
    /// Runs this node with `bug` planted (None: no bug). Test builds only: the simulator plants
    /// a bug right after it builds a node, before the node's first step.
    pub fn plant_bug(&mut self, bug: Option<PlantedBug>) {
        let planted = Planted { bug };
        self.raft.planted = planted;
        self.coord.planted = planted;
    }
}
