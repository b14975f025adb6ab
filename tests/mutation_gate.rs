//! The test cargo-mutants runs for every mutant of the core (`cargo xtask mutants`): every
//! scenario file over a few seeds and a short swarm soak, with every checker and every scenario
//! expectation, but *no* trace snapshots. A mutant is caught only if a checker or an expectation
//! fails (a lost acknowledged write, two leaders in a term, two running copies, a workload not
//! recovered in time, a hung run...), never merely because its trace differs: a changed trace
//! proves the mutant changed behaviour, not that our checks would notice a bug.
//!
//! The gate stops at the first failing run (the runs already under way finish): a caught mutant
//! needs one failure, and its remaining runs, often slowed by the mutant, would only add time.
//!
//! Ignored in normal runs (`cargo test` covers the same ground with snapshots). Seeds:
//! `KEEL_GATE_SEEDS` per scenario file (default 3) and `KEEL_GATE_SWARM` swarm seeds (default
//! 30).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use keel_sim::scenario::Scenario;
use keel_sim::RunOptions;
use keel_tests::scenarios_dir;

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "run by cargo-mutants through `cargo xtask mutants`"]
fn every_checker_and_expectation_holds() {
    let seeds = env_count("KEEL_GATE_SEEDS", 3);
    let swarm = env_count("KEEL_GATE_SWARM", 30);
    let mut files: Vec<_> = std::fs::read_dir(scenarios_dir())
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    let mut runs: Vec<(String, Scenario, u64)> = Vec::new();
    for f in &files {
        let s = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
        for seed in 1..=seeds {
            runs.push((f.display().to_string(), s.clone(), seed));
        }
    }
    for seed in 1..=swarm {
        runs.push((
            format!("--swarm (seed {seed})"),
            keel_sim::swarm::generate(seed),
            seed,
        ));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((what, scenario, seed)) = runs.get(i) else {
                    break;
                };
                let r = keel_sim::run(scenario, *seed, &RunOptions::default());
                if !r.passed() {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut f) = failures.lock() {
                        f.push(format!("{what} at seed {seed}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    assert!(failures.is_empty(), "failed: {failures:#?}");
}
