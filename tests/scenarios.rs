//! Every scenario of `scenarios/` at a fixed seed: it must pass, and its condensed trace (faults,
//! elections, step-downs, snapshots, commits per second) is snapshot-tested, so any change in
//! behaviour shows up in review as a readable diff.

use keel_tests::{load, run_and_check};

const SEED: u64 = 7;

fn snapshot(name: &str) {
    let scenario = load(name);
    let report = run_and_check(&scenario, SEED, &format!("scenarios/{name}.ron"));
    if name == "steady_state" {
        assert_eq!(
            report.stats.leader_changes, 1,
            "a leader change without a fault is a spurious election"
        );
    }
    let mut text = format!(
        "scenario: {name}\nseed: {SEED}\ntrace-hash: {}\n",
        report.trace_hash
    );
    for line in &report.condensed_trace {
        text.push_str(line);
        text.push('\n');
    }
    insta::assert_snapshot!(name, text);
}

/// `--explain` shows the causal chain of a recovery: the detector's verdict on the crashed node,
/// the leader giving up the lost copy, the re-placement and the new copy starting.
#[test]
fn worker_kill_explains_every_recovery() {
    let scenario = load("worker_kill");
    let report = run_and_check(&scenario, SEED, "scenarios/worker_kill.ron");
    let w = &report.stats.workloads;
    assert!(w.replacements > 0, "the crashed node ran no workload");
    let chain = w.explain("web").expect("web is in the registry");
    for step in [
        "crashes: its",
        "suspect after",
        "dead after",
        "gives up its copy",
        "places it on",
        "(Replaced;",
        "starts its copy",
        "re-placed, attempt",
    ] {
        assert!(chain.contains(step), "no {step:?} in:\n{chain}");
    }
    assert!(w.explain("nope").is_err_and(|e| e.contains("web-1")));
}

/// One snapshot test per scenario file, and the list of them for the completeness check.
macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                snapshot(stringify!($name));
            }
        )*
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenario_tests!(
    leader_kill,
    follower_kill,
    leader_restart,
    partition_minority,
    partition_leader,
    bridge_partition,
    hung_leader,
    flaky_network,
    overload,
    full_cluster_restart,
    crash_loses_unsynced,
    steady_state,
    one_way_link,
    worker_kill,
    master_kill,
    multiple_failures,
    hung_worker,
    workload_crash_loop,
    partition_with_workloads,
    correlated_failure,
    high_load_then_fail,
    scheduler_restart,
    flapping_node,
    quiet_workloads,
    leader_transfer,
    figure_8,
    vote_crash,
    stale_leader_reads,
    write_latency,
    disruptive_follower,
    figure_8_lagging,
    leader_transfer_named,
    late_vote_request,
    stale_leader_reads_read_index,
    restart_vote_hold,
    new_leader_probes_laggards,
    grow_3_to_5,
    shrink_5_to_3,
    remove_leader,
    replace_wiped_node,
    wipe_without_replacement,
    change_during_partition,
    learner_catches_up_from_snapshot,
);

#[test]
fn every_scenario_file_has_a_snapshot_test() {
    let tested = TESTED;
    let mut files: Vec<String> = std::fs::read_dir(keel_tests::scenarios_dir())
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".ron"))
                .map(String::from)
        })
        .collect();
    files.sort();
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !tested.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "scenario files without a snapshot test: {missing:?}"
    );
}
