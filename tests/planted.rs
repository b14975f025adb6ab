//! Regression scenarios for the planted bugs (feature `planted-bugs`): each scenario file must
//! fail within a few seeds with its bug planted, caught by the checker named here. Without the
//! bug the same files pass (`scenarios.rs` at seed 7, `cargo xtask soak` over many seeds).
//!
//! `cargo test -p keel-tests --features planted-bugs --test planted`

use keel_core::PlantedBug;
use keel_sim::checkers::{
    COMMITTED_NEVER_LOST, COMMITTED_ON_VOTERS, ELECTION_SAFETY, STATE_MACHINE_SAFETY,
};
use keel_sim::RunOptions;
use keel_tests::load;

/// Seeds tried per scenario; each of these fails at about one seed in two (or every seed) with
/// its bug planted.
const SEEDS: u64 = 10;

/// The first seed of `1..=SEEDS` at which `scenarios/{name}.ron` fails with `bug` planted; the
/// failure must include a violation of `checker`.
fn caught(name: &str, bug: PlantedBug, checker: &str) -> u64 {
    let scenario = load(name);
    let mut options = RunOptions::default();
    options.sim.planted_bug = Some(bug);
    for seed in 1..=SEEDS {
        let report = keel_sim::run(&scenario, seed, &options);
        if report.passed() {
            continue;
        }
        assert!(
            report.violations.iter().any(|v| v.checker == checker),
            "{name} with {} failed at seed {seed}, but not by {checker}: {:#?}",
            bug.name(),
            report.violations
        );
        return seed;
    }
    panic!(
        "{name} with {} planted passed seeds 1..={SEEDS}",
        bug.name()
    )
}

#[test]
fn figure_8_catches_a_leader_committing_an_old_term_entry_by_counting() {
    caught(
        "figure_8",
        PlantedBug::CommitEarlierTermByCounting,
        COMMITTED_NEVER_LOST,
    );
}

#[test]
fn vote_crash_catches_a_vote_that_was_not_persisted() {
    caught("vote_crash", PlantedBug::VoteNotPersisted, ELECTION_SAFETY);
}

#[test]
fn overload_catches_a_snapshot_install_that_drops_entries() {
    caught(
        "overload",
        PlantedBug::SnapshotInstallDropsEntries,
        STATE_MACHINE_SAFETY,
    );
}

/// The membership bugs: in `change_during_partition` a leader is cut off with a learner alone
/// (a learner that counts lets it commit), a voter is cut off while a new voter's link is slow
/// just after its promotion (a quorum counted on the configuration before it, or one that only
/// takes effect once committed, lets the leader commit on two of four voters).
#[test]
fn change_during_partition_catches_a_learner_counted_as_a_voter() {
    caught(
        "change_during_partition",
        PlantedBug::LearnerCountsAsVoter,
        COMMITTED_ON_VOTERS,
    );
}

#[test]
fn change_during_partition_catches_a_quorum_counted_on_the_old_configuration() {
    caught(
        "change_during_partition",
        PlantedBug::QuorumOnOldConfig,
        COMMITTED_ON_VOTERS,
    );
}

#[test]
fn change_during_partition_catches_a_configuration_in_force_only_once_committed() {
    caught(
        "change_during_partition",
        PlantedBug::ConfigOnCommit,
        COMMITTED_ON_VOTERS,
    );
}
