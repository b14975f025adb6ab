//! `cargo xtask mutants`: mutation testing of the core with cargo-mutants.
//!
//! Each mutant of `keel-core` is judged by `tests/mutation_gate.rs`: every scenario file over a
//! few seeds and a short swarm soak, with every checker and expectation but no trace snapshots
//! (a mutant must break something we check, not merely change a trace). The default scope is the
//! code that safety rests on, sized to finish within an hour on 2 cores: elections, log
//! matching and commitment, leadership transfer, and the workload lease. `--all` examines the
//! whole core (several hours).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The files whose mutants the default run examines: elections and votes, replication and
/// commitment, leadership transfer, and every node's workload lease and fencing (about 340
/// mutants; a mutant costs 5-15 s here once the first build is done).
pub const SCOPE: &[&str] = &[
    "core/src/raft/election.rs",
    "core/src/raft/replication.rs",
    "core/src/raft/follower.rs",
    "core/src/raft/commit.rs",
    "core/src/raft/progress.rs",
    "core/src/raft/transfer.rs",
    "core/src/coord/agent.rs",
];

pub fn run(all: bool, output: &Path) -> Result<ExitCode> {
    let found = Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        bail!("cargo-mutants is not installed: `cargo install cargo-mutants --locked`");
    }
    // cargo-mutants' own baseline runs the mutated package's tests, not the gate's package, so
    // the unmutated gate is run here instead: it must pass before any mutant means anything.
    // The first run builds it; the second, already built, is timed for the mutants' timeout.
    let mut gate_secs = 0.0;
    for _ in 0..2 {
        let started = Instant::now();
        let gate = Command::new("cargo")
            .args([
                "test",
                "-p",
                "keel-tests",
                "--test",
                "mutation_gate",
                "--",
                "--ignored",
            ])
            .status()
            .context("running the mutation gate on the unmutated tree")?;
        if !gate.success() {
            bail!("the mutation gate fails on the unmutated tree: fix that first");
        }
        gate_secs = started.elapsed().as_secs_f64();
    }
    let timeout = test_timeout(gate_secs);
    println!(
        "the unmutated gate took {gate_secs:.1} s: a mutant's gate run times out after {timeout} s"
    );
    let mut cmd = Command::new("cargo");
    cmd.args([
        "mutants",
        "--package",
        "keel-core",
        "--test-package",
        "keel-tests",
    ])
    .arg("--output")
    .arg(output)
    .args(["--baseline", "skip"])
    // A mutant that makes a run hang is caught as a timeout, not waited on for ever.
    .args(["--timeout", &timeout.to_string(), "--build-timeout", "900"]);
    if !all {
        for file in SCOPE {
            cmd.args(["--file", file]);
        }
    }
    cmd.args(["--", "--test", "mutation_gate", "--", "--ignored"]);
    println!("running: {cmd:?}");
    let status = cmd.status().context("running cargo mutants")?;
    let dir = output.join("mutants.out");
    let count = |name: &str| -> usize {
        std::fs::read_to_string(dir.join(name))
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    };
    let (caught, missed, timeout, unviable) = (
        count("caught.txt"),
        count("missed.txt"),
        count("timeout.txt"),
        count("unviable.txt"),
    );
    let tested = caught + missed + timeout;
    println!(
        "mutants: {caught} caught, {missed} missed, {timeout} timed out, {unviable} unviable; score {:.1}% (caught or timed out over tested)",
        if tested == 0 {
            0.0
        } else {
            100.0 * (caught + timeout) as f64 / tested as f64
        }
    );
    if missed > 0 {
        println!("missed (each needs a scenario or checker that catches it, or a reason it is equivalent):");
        if let Ok(t) = std::fs::read_to_string(dir.join("missed.txt")) {
            print!("{t}");
        }
    }
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Seconds a mutant's gate run may take: [`TIMEOUT_GATE_RUNS`] times the unmutated gate's run,
/// and at least [`MIN_TEST_TIMEOUT_SECS`]. A mutant that slows the gate tenfold (a livelock, a
/// message storm) is reported as timed out, apart from caught and missed; waiting longer for it
/// would only lengthen the run (the unmutated gate takes
/// about 3 s on 2 cores; with a fixed two-minute timeout, five timed-out mutants took 10 of the
/// 54 minutes of a whole run in session 10).
fn test_timeout(gate_secs: f64) -> u64 {
    ((gate_secs * TIMEOUT_GATE_RUNS).ceil() as u64).max(MIN_TEST_TIMEOUT_SECS)
}

/// How many unmutated gate runs a mutant's gate run may last before it counts as a timeout.
const TIMEOUT_GATE_RUNS: f64 = 10.0;

/// The floor of [`test_timeout`].
const MIN_TEST_TIMEOUT_SECS: u64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_ten_gate_runs_and_at_least_the_floor() {
        assert_eq!(test_timeout(0.5), MIN_TEST_TIMEOUT_SECS);
        assert_eq!(test_timeout(2.6), MIN_TEST_TIMEOUT_SECS);
        assert_eq!(test_timeout(4.01), 41);
        assert_eq!(test_timeout(12.0), 120);
    }
}
