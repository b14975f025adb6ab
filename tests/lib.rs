//! Shared helpers of the workspace tests: load a scenario from `scenarios/`, run it, and fail
//! with the command that replays the failure.

use std::path::PathBuf;

use keel_sim::scenario::Scenario;
use keel_sim::{RunOptions, RunReport};

/// The repository's `scenarios/` directory.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Loads `scenarios/{name}.ron`, panicking with the loader's error (file, line, field).
pub fn load(name: &str) -> Scenario {
    let path = scenarios_dir().join(format!("{name}.ron"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `scenario` at `seed` and panics, naming the replay command, unless every check held.
pub fn run_and_check(scenario: &Scenario, seed: u64, file_hint: &str) -> RunReport {
    let report = keel_sim::run(scenario, seed, &RunOptions::default());
    assert!(
        report.passed(),
        "scenario {} failed at seed {seed}; replay: cargo xtask sim --seed {seed} {file_hint}\n{report:#?}",
        scenario.name,
    );
    report
}
