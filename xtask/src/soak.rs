//! `cargo xtask soak`: many seeds of many scenarios (or generated swarm scenarios) on every core.
//!
//! Owns: handing out runs to worker threads, printing each failing run the moment it fails (its
//! checker, message and the command that replays it), saving failing swarm scenarios, stopping at
//! the first failure with `--fail-fast` or at Ctrl-C, and the closing summary (coverage counters,
//! failover and workload-recovery percentiles, every failure again). Never: judges a run itself
//! (that is the simulator's report) or hides a failure because the soak was cut short.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_sim::{RunReport, Scenario};

/// What `cargo xtask soak` was asked to do.
pub struct SoakArgs<'a> {
    pub seeds: Option<u64>,
    pub duration: Option<&'a str>,
    pub from: u64,
    pub jobs: Option<usize>,
    pub swarm: bool,
    pub save_failing: Option<&'a Path>,
    pub fail_fast: bool,
    pub paths: &'a [PathBuf],
}

/// One failing run, as printed.
struct Failure {
    scenario: String,
    seed: u64,
    why: String,
    replay: String,
}

/// What every run adds to the closing summary.
#[derive(Default)]
struct Tally {
    failures: Vec<Failure>,
    coverage: BTreeMap<&'static str, u64>,
    failovers_us: Vec<u64>,
    outages_us: Vec<u64>,
    detection_us: Vec<u64>,
    replacements: u64,
    false_replacements: u64,
    sim_us: u64,
}

impl Tally {
    fn add(&mut self, report: &RunReport) {
        let stats = &report.stats;
        self.sim_us += stats.sim_time_us;
        for (kind, n) in &stats.coverage {
            *self.coverage.entry(kind).or_insert(0) += n;
        }
        let ended = |start: u64, end: Option<u64>| end.map(|e| e - start);
        self.failovers_us.extend(
            stats
                .failovers
                .iter()
                .filter_map(|f| ended(f.start_us, f.end_us)),
        );
        let w = &stats.workloads;
        self.outages_us
            .extend(w.outages.iter().filter_map(|o| ended(o.start_us, o.end_us)));
        self.detection_us
            .extend(w.detection_to_running_us.iter().copied());
        self.replacements += w.replacements;
        self.false_replacements += w.false_reschedules.len() as u64;
    }
}

/// The runs to make: seed-major over the files (run `k` is seed `from + k / files` of file
/// `k % files`), so a soak cut short by time has covered every file equally.
struct Plan {
    scenarios: Vec<(PathBuf, Scenario)>,
    swarm: bool,
    from: u64,
    total: u64,
    limit: Option<Duration>,
}

impl Plan {
    fn new(args: &SoakArgs) -> Result<Plan> {
        let scenarios = if args.swarm {
            Vec::new()
        } else {
            crate::scenario_files(args.paths)?
                .into_iter()
                .map(|f| Scenario::load(&f).map(|s| (f, s)))
                .collect::<Result<_, _>>()?
        };
        let limit = match args.duration {
            Some(d) => Some(
                keel_sim::scenario::parse_duration(d)
                    .map_err(|e| anyhow::anyhow!("--duration {d:?}: {e}"))?,
            ),
            None => None,
        };
        let seeds = args
            .seeds
            .unwrap_or(if limit.is_some() { u64::MAX / 4 } else { 100 });
        let files = if args.swarm {
            1
        } else {
            scenarios.len().max(1)
        };
        Ok(Plan {
            total: seeds.saturating_mul(files as u64),
            scenarios,
            swarm: args.swarm,
            from: args.from,
            limit,
        })
    }

    fn files(&self) -> u64 {
        if self.swarm {
            1
        } else {
            self.scenarios.len().max(1) as u64
        }
    }

    /// Run `k`: the scenario file's index (None for a swarm seed) and the seed.
    fn item(&self, k: u64) -> (Option<usize>, u64) {
        let file = (!self.swarm).then_some((k % self.files()) as usize);
        (file, self.from + k / self.files())
    }

    fn headline(&self, args: &SoakArgs, jobs: usize) -> String {
        let seeds = self.total / self.files();
        let how_many = match (self.limit, args.duration) {
            (Some(_), Some(d)) if seeds >= u64::MAX / 4 => format!("seeds for {d}"),
            (Some(_), Some(d)) => format!("up to {seeds} seeds for at most {d}"),
            _ => format!("{seeds} seeds"),
        };
        if self.swarm {
            format!(
                "soak: swarm, {how_many} of generated scenarios (from {}) on {jobs} threads",
                self.from
            )
        } else {
            format!(
                "soak: {} scenarios x {how_many} (from {}) on {jobs} threads",
                self.scenarios.len(),
                self.from
            )
        }
    }
}

/// Why the soak stopped handing out runs early, if it did.
#[derive(Default)]
struct Stop {
    /// Ctrl-C (SIGINT) or SIGTERM arrived.
    interrupted: AtomicBool,
    /// `--fail-fast` and a run failed.
    failed: AtomicBool,
}

impl Stop {
    fn now(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }
}

/// Runs the soak; exits 1 when a run failed, 130 when interrupted with no failure.
pub fn run(args: SoakArgs) -> Result<ExitCode> {
    let plan = Plan::new(&args)?;
    if let Some(dir) = args.save_failing {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let jobs = args
        .jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let stop: &'static Stop = Box::leak(Box::default());
    on_interrupt(stop)?;
    let options = crate::run_options()?;
    println!("{}", plan.headline(&args, jobs));
    let bar = progress_bar(&plan)?;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let out_of_time = plan.limit.is_some_and(|l| started.elapsed() >= l);
                if k >= plan.total || out_of_time || stop.now() {
                    break;
                }
                let (file, seed) = plan.item(k);
                let generated;
                let scenario = match file {
                    Some(i) => &plan.scenarios[i].1,
                    None => {
                        generated = keel_sim::swarm::generate(seed);
                        &generated
                    }
                };
                let report = keel_sim::run(scenario, seed, &options);
                let failure = (!report.passed())
                    .then(|| failure(&plan, &args, file, scenario, seed, &report));
                if let Some(f) = &failure {
                    bar.suspend(|| print_failure(f));
                    if args.fail_fast {
                        stop.failed.store(true, Ordering::Relaxed);
                    }
                }
                let failed = {
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    t.add(&report);
                    t.failures.extend(failure);
                    t.failures.len()
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(&bar, n, failed, started);
            });
        }
    });
    bar.finish_and_clear();
    let tally = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    summary(
        &tally,
        done.load(Ordering::Relaxed),
        started.elapsed(),
        jobs,
        stop,
    );
    Ok(if !tally.failures.is_empty() {
        ExitCode::from(1)
    } else if stop.interrupted.load(Ordering::Relaxed) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The first Ctrl-C (or SIGTERM) stops handing out runs; the runs in flight finish and the summary,
/// every failure included, is printed. A second one ends the process at once.
fn on_interrupt(stop: &'static Stop) -> Result<()> {
    ctrlc::set_handler(move || {
        if stop.interrupted.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("soak: interrupted; finishing the runs in flight (Ctrl-C again to quit at once)");
    })
    .context("installing the Ctrl-C handler")
}

fn progress_bar(plan: &Plan) -> Result<indicatif::ProgressBar> {
    let bar = if plan.limit.is_some() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::new(plan.total)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  [{elapsed_precise}] {bar:30} {pos}/{len} runs, {msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?,
    );
    Ok(bar)
}

/// A progress bar on a terminal; otherwise a line every 500 runs.
fn progress(bar: &indicatif::ProgressBar, n: usize, failed: usize, started: Instant) {
    let rate = n as f64 / started.elapsed().as_secs_f64();
    bar.set_position(n as u64);
    bar.set_message(format!("{failed} failed, {rate:.0} runs/s"));
    if bar.is_hidden() && n.is_multiple_of(500) {
        eprintln!("  {n} runs, {failed} failed, {rate:.0} runs/s");
    }
}

/// A failing run: why, and the command that replays it (a swarm scenario saved to
/// `--save-failing` first, so the replay does not depend on the generator staying the same).
fn failure(
    plan: &Plan,
    args: &SoakArgs,
    file: Option<usize>,
    scenario: &Scenario,
    seed: u64,
    report: &RunReport,
) -> Failure {
    let replay = match file {
        Some(i) => format!(
            "cargo xtask sim --seed {seed} {}",
            plan.scenarios[i].0.display()
        ),
        None => {
            let saved = args.save_failing.map(|dir| {
                let path = dir.join(format!("swarm-{seed}.ron"));
                match std::fs::write(&path, scenario.to_ron()) {
                    Ok(()) => format!("cargo xtask sim --seed {seed} {}", path.display()),
                    Err(e) => format!("(could not save {}: {e})", path.display()),
                }
            });
            saved.unwrap_or(format!(
                "cargo xtask soak --swarm --from {seed} --seeds 1 --save-failing failing/"
            ))
        }
    };
    Failure {
        scenario: scenario.name.clone(),
        seed,
        why: crate::first_failure(report),
        replay,
    }
}

fn print_failure(f: &Failure) {
    println!(
        "FAILED {} seed {}: {}\n  replay: {}",
        f.scenario, f.seed, f.why, f.replay
    );
}

fn summary(tally: &Tally, runs: usize, wall: Duration, jobs: usize, stop: &Stop) {
    println!("coverage (how often each thing happened over all runs):");
    for kind in keel_sim::report::COVERAGE_KINDS {
        let n = tally.coverage.get(kind).copied().unwrap_or(0);
        let gap = if n == 0 {
            "   <- never happened: a gap"
        } else {
            ""
        };
        println!("  {kind:<36} {n:>10}{gap}");
    }
    for (what, samples) in [
        (
            "failovers (no healthy leader until a new one)",
            &tally.failovers_us,
        ),
        ("workload outages (no healthy copy)", &tally.outages_us),
        ("detection to running elsewhere", &tally.detection_us),
    ] {
        let (p50, p99, max) = (
            keel_sim::workloads::percentile(samples, 50),
            keel_sim::workloads::percentile(samples, 99),
            samples.iter().max(),
        );
        if let (Some(a), Some(b), Some(c)) = (p50, p99, max) {
            println!(
                "{what}: {} measured, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                samples.len(),
                a as f64 / 1e3,
                b as f64 / 1e3,
                *c as f64 / 1e3
            );
        }
    }
    if tally.replacements > 0 {
        println!(
            "re-placements: {}, of which false (off a healthy node): {}",
            tally.replacements, tally.false_replacements
        );
    }
    let mut failures: Vec<&Failure> = tally.failures.iter().collect();
    failures.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
    for f in failures {
        print_failure(f);
    }
    if stop.interrupted.load(Ordering::Relaxed) {
        println!("soak: interrupted: the summary covers the runs that finished");
    } else if stop.failed.load(Ordering::Relaxed) {
        println!("soak: stopped at the first failure (--fail-fast)");
    }
    let wall = wall.as_secs_f64().max(1e-9);
    println!(
        "soak: {runs} runs in {wall:.1} s ({:.1} runs/s, {:.0} simulated s / wall s over {jobs} threads)",
        runs as f64 / wall,
        tally.sim_us as f64 / 1e6 / wall
    );
    println!(
        "{} passed, {} failed",
        runs - tally.failures.len(),
        tally.failures.len()
    );
}
