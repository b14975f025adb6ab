//! `cargo xtask hashes`: the trace hash of every scenario at seeds `1..=N` and of swarm seeds
//! `1..=M`, one line each, in a fixed order. A restructuring that claims to change no behaviour
//! proves it by printing the same list before and after (`diff` the two files).
//!
//! Owns: nothing but the listing. Never: judges a run (a failing run is listed like any other,
//! marked `FAIL`, so a list is comparable even when something fails).

use std::path::PathBuf;

use anyhow::Result;
use keel_sim::Scenario;

/// Prints `<name> <seed> <trace-hash> <ok|FAIL>` for every scenario file at seeds `1..=seeds`,
/// then `swarm <seed> ...` for swarm seeds `1..=swarm`.
pub fn run(seeds: u64, swarm: u64, paths: &[PathBuf]) -> Result<()> {
    let options = crate::run_options()?;
    for file in crate::scenario_files(paths)? {
        let scenario = Scenario::load(&file)?;
        for seed in 1..=seeds {
            let report = keel_sim::run(&scenario, seed, &options);
            line(&file.display().to_string(), seed, &report);
        }
    }
    for seed in 1..=swarm {
        let report = keel_sim::run(&keel_sim::swarm::generate(seed), seed, &options);
        line("swarm", seed, &report);
    }
    Ok(())
}

fn line(name: &str, seed: u64, report: &keel_sim::RunReport) {
    let verdict = if report.passed() { "ok" } else { "FAIL" };
    println!("{name} {seed} {} {verdict}", report.trace_hash);
}
