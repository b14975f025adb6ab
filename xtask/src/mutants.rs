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

use anyhow::{bail, Context, Result};

/// The files whose mutants the default run examines: elections and votes, replication and
/// commitment, leadership transfer, and every node's workload lease and fencing (280 mutants;
/// a mutant costs 5-20 s here once the first build is done).
pub const SCOPE: &[&str] = &[
    "core/src/election.rs",
    "core/src/replication.rs",
    "core/src/transfer.rs",
    "core/src/agent.rs",
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
    // A mutant that makes a run hang is caught as a timeout (the gate takes well under a
    // minute), not waited on for ever.
    .args(["--timeout", "120", "--build-timeout", "900"]);
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
