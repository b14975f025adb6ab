//! keel-sim: a deterministic discrete-event simulator for keel-core.
//!
//! One master seed drives everything; the same seed and scenario give the same trace, bit for bit,
//! and the same trace hash, in any process on any machine. [`run`] executes one scenario at one
//! seed: the engine (`world`) steps real `keel_core::Node`s through an event queue keyed by
//! (time, sequence), injects the scenario's faults, drives clients that record a Jepsen-style
//! [`history`], runs the [`checkers`] after every step, checks the history for
//! [`linearizability`] at the end, and judges the scenario's expectations ([`report`]).
//!
//! Nothing in a run reads a clock or the environment, or lets a hash map's order into an outcome:
//! a run is a function of its scenario, seed and options.

pub mod checkers;
pub mod history;
pub mod linearizability;
pub mod membership;
pub mod report;
mod rng;
pub mod scenario;
pub mod swarm;
pub mod trace;
pub mod workloads;
mod world;

pub use history::History;
pub use report::{ExpectationResult, Failover, RunReport, RunStats};
pub use scenario::{Scenario, ScenarioError};
pub use world::SimConfig;

/// How to run a scenario. The defaults are what `cargo xtask sim` and the tests use.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// The simulator's model parameters (CPU, fsync, queues).
    pub sim: SimConfig,
    /// Most search states the linearizability checker may explore per key before it gives up
    /// with an inconclusive verdict (which fails the run). Default 5,000,000.
    pub linearizability_budget: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            sim: SimConfig::default(),
            linearizability_budget: 5_000_000,
        }
    }
}

/// A finished run: its report and the client history it recorded.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    pub history: History,
}

/// Runs `scenario` at `seed` and reports what happened.
pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> RunReport {
    match run_traced(scenario, seed, options, None) {
        Ok(outcome) => outcome.report,
        // Without a trace writer there is no I/O, hence no I/O error.
        Err(e) => unreachable_io(e),
    }
}

#[cold]
fn unreachable_io(e: std::io::Error) -> RunReport {
    panic!("a run without a trace writer reported an I/O error: {e}")
}

/// Runs `scenario` at `seed`, writing every simulated event as a JSON line to `trace` if given.
/// Writing a trace never changes the run: the trace hash is the same with or without it.
pub fn run_traced<'a>(
    scenario: &'a Scenario,
    seed: u64,
    options: &RunOptions,
    trace: Option<&'a mut dyn std::io::Write>,
) -> std::io::Result<RunOutcome> {
    let mut world = world::World::new(scenario, seed, options.sim.clone(), trace);
    let hash = world.run()?;
    let (linearizability, linearizability_stats) =
        linearizability::check(&world.history, options.linearizability_budget);
    let stats = std::mem::take(&mut world.stats);
    let violations = world.checkers.violations().to_vec();
    let expectations = report::judge(&scenario.expect, &stats, &violations, &linearizability);
    let history = std::mem::take(&mut world.history);
    let checks_run = world.checkers.checks_run();
    let condensed_trace = stats.condensed.clone();
    Ok(RunOutcome {
        report: RunReport {
            scenario: scenario.name.clone(),
            seed,
            trace_hash: format!("{hash:016x}"),
            ops: history.counts(),
            stats,
            checks_run,
            violations,
            linearizability,
            linearizability_stats,
            expectations,
            condensed_trace,
        },
        history,
    })
}
