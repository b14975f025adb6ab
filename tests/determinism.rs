//! Determinism is a test, not a hope: the same scenario and seed give the same trace hash, run
//! after run (and writing a trace or history must not change it); another seed gives another.
//! Across processes the same holds: `cargo xtask hashes` prints the same list every time it runs.

use keel_sim::RunOptions;
use keel_tests::load;

#[test]
fn same_seed_same_trace_hash_other_seed_other_hash() {
    let scenario = load("leader_kill");
    let a = keel_sim::run(&scenario, 42, &RunOptions::default());
    let b = keel_sim::run(&scenario, 42, &RunOptions::default());
    let c = keel_sim::run(&scenario, 43, &RunOptions::default());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.condensed_trace, b.condensed_trace);
    assert_ne!(a.trace_hash, c.trace_hash);
}
