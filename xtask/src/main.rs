//! keel's developer commands: `cargo xtask sim` runs one scenario at one seed; `cargo xtask soak`
//! runs many seeds of many scenarios on every core; `bench sim|node` measures; `cluster` and
//! `chaos` drive a local cluster of real `keel` processes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use keel_sim::{RunOptions, Scenario};

/// Every xtask command (`sim`, `soak`, `bench` alike) allocates through mimalloc: a simulated
/// run allocates and frees a message's entries, a client's values and the like hundreds of
/// thousands of times a minute, and the system allocator spent about 8% of the simulator's
/// instructions on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench_join;
mod bench_node;
mod cluster;
mod cluster_members;
mod hashes;
mod madsim;
mod mutants;
mod soak;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "keel's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario at one seed: summary table, trace hash, exit 1 on any violation.
    Sim {
        /// The master seed of the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write every simulated event as one JSON line to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Write the client history (Jepsen-style JSON lines) to this file.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Print the condensed trace (faults, leadership, snapshots, 5 s summaries) too.
        #[arg(long)]
        condensed: bool,
        /// Print the causal chain of this workload (an instance like `web-3`, or every instance
        /// of `web`): detector verdicts, placements, retries, copies started and stopped.
        #[arg(long, value_name = "WORKLOAD")]
        explain: Option<String>,
        /// The scenario file (RON).
        file: PathBuf,
    },
    /// Measure: `sim` (simulated seconds per wall second, events per second, swarm seeds per
    /// minute). Prints medians and, with --write, records them in BENCHMARKS.md.
    Bench {
        /// What to measure: `sim` (the simulator), `node` (a 3-process loopback cluster:
        /// durable writes/s and latency at 1 and 64 clients, kill -9 failover over 20 trials)
        /// or `join` (a fourth node joins a cluster holding `--mb` MiB and is promoted).
        #[arg(default_value = "sim")]
        what: String,
        /// Runs per configuration; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: u64,
        /// Replace the section of BENCHMARKS.md with the figures measured.
        #[arg(long)]
        write: bool,
        /// `node` only: kill -9 failover trials (0 measures the writes alone; `--write`
        /// needs at least 20).
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// `join` only: the state the cluster holds when the new node joins, in MiB.
        #[arg(long, default_value_t = 200)]
        mb: u64,
    },
    /// Mutation testing of the core (cargo-mutants): each mutant must be caught by a checker
    /// or expectation over every scenario and a short swarm soak (tests/mutation_gate.rs).
    Mutants {
        /// Examine every function of the core, not just the safety-critical scope (hours).
        #[arg(long)]
        all: bool,
        /// Where cargo-mutants writes its results (mutants.out/).
        #[arg(long, default_value = "target/mutants")]
        output: PathBuf,
    },
    /// The real node code as a 3-node cluster in madsim's deterministic simulator (kills,
    /// pauses, clogged links; one seed, run twice): built with `--cfg madsim` in target/madsim.
    Madsim {
        /// Passed to the test binary (after `--`), e.g. `-- --nocapture`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// A real local cluster of `keel` processes under target/cluster/.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Break the local cluster: kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) or restart a
    /// node (`n2`) or the current `leader`; or `watch` it.
    Chaos {
        #[command(subcommand)]
        action: ChaosAction,
    },
    /// Plant each classic consensus bug in turn (build with `--features planted-bugs`) and count
    /// the swarm seeds until the simulator catches it.
    Planted {
        /// Most swarm seeds to try per bug.
        #[arg(long, default_value_t = 500)]
        seeds: u64,
    },
    /// Print the trace hash of every scenario at seeds 1..=N and of swarm seeds 1..=M, one
    /// line each: two such lists, before and after a restructuring, prove it changed nothing.
    Hashes {
        /// Seeds per scenario file.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Swarm seeds.
        #[arg(long, default_value_t = 200)]
        swarm: u64,
        /// Scenario files or directories.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Run many seeds of every given scenario file (or every `*.ron` in a given directory) on
    /// all cores; print every failing run the moment it fails, with the command that replays it,
    /// and all of them again at the end (Ctrl-C stops early and still prints them).
    Soak {
        /// How many seeds per scenario (default 100; with --duration: no limit but the time).
        #[arg(long)]
        seeds: Option<u64>,
        /// Keep starting seeds until this much wall time passed (`10m`, `90s`): seeds go up
        /// round-robin over the scenarios.
        #[arg(long, value_name = "TIME")]
        duration: Option<String>,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Generate a random scenario per seed instead of running files (swarm testing).
        #[arg(long)]
        swarm: bool,
        /// With --swarm: write each failing seed's generated scenario to DIR/swarm-SEED.ron.
        #[arg(long, value_name = "DIR")]
        save_failing: Option<PathBuf>,
        /// Stop at the first failing run (the runs in flight finish; every failure is printed).
        #[arg(long)]
        fail_fast: bool,
        /// Scenario files or directories (not with --swarm).
        #[arg(required_unless_present = "swarm", conflicts_with = "swarm")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Build `keel`, start the nodes, wait for a leader, print the addresses.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u32,
    },
    /// Stop every node of the local cluster (data stays under target/cluster/).
    Down,
    /// Start one more node on the next free id and ports, joining the running cluster
    /// (`keel node --join`), and make it a member (`keel member add`: a learner, promoted once
    /// caught up).
    Add {
        /// Leave it a learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member (`keel member remove`, through another node), then stop its process;
    /// its data stays under target/cluster/.
    Remove { id: String },
}

#[derive(Subcommand)]
enum ChaosAction {
    Kill {
        target: String,
    },
    Pause {
        target: String,
    },
    Resume {
        target: String,
    },
    Restart {
        target: String,
    },
    /// A table of every node, refreshed every second (Ctrl-C to stop; --once for one table).
    Watch {
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim {
            seed,
            trace,
            history,
            condensed,
            explain,
            file,
        } => sim(
            seed,
            trace.as_deref(),
            history.as_deref(),
            condensed,
            explain.as_deref(),
            &file,
        ),
        Command::Soak {
            seeds,
            duration,
            from,
            jobs,
            swarm,
            save_failing,
            fail_fast,
            paths,
        } => soak::run(soak::SoakArgs {
            seeds,
            duration: duration.as_deref(),
            from,
            jobs,
            swarm,
            save_failing: save_failing.as_deref(),
            fail_fast,
            paths: &paths,
        }),
        Command::Bench {
            what,
            runs,
            write,
            trials,
            mb,
        } => bench(&what, runs, write, trials, mb),
        Command::Planted { seeds } => planted(seeds),
        Command::Hashes {
            seeds,
            swarm,
            paths,
        } => hashes::run(seeds, swarm, &paths).map(|()| ExitCode::SUCCESS),
        Command::Mutants { all, output } => mutants::run(all, &output),
        Command::Madsim { test_args } => madsim::run(&test_args),
        Command::Cluster { action } => cluster::cluster(action),
        Command::Chaos { action } => cluster::chaos(action),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The run options, with `KEEL_PLANTED=<bug name>` planting that bug (planted-bugs builds only),
/// so a seed `cargo xtask planted` reports can be replayed by `sim` and `soak`.
pub(crate) fn run_options() -> Result<RunOptions> {
    #[allow(unused_mut)]
    let mut options = RunOptions::default();
    #[cfg(feature = "planted-bugs")]
    if let Ok(name) = std::env::var("KEEL_PLANTED") {
        options.sim.planted_bug = keel_core::PlantedBug::ALL
            .into_iter()
            .find(|b| b.name() == name);
        anyhow::ensure!(
            options.sim.planted_bug.is_some(),
            "KEEL_PLANTED: no planted bug named {name:?}"
        );
    }
    Ok(options)
}

fn sim(
    seed: u64,
    trace: Option<&Path>,
    history: Option<&Path>,
    condensed: bool,
    explain: Option<&str>,
    file: &Path,
) -> Result<ExitCode> {
    let scenario = Scenario::load(file)?;
    let options = run_options()?;
    let mut trace_file = match trace {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let started = Instant::now();
    let outcome = keel_sim::run_traced(
        &scenario,
        seed,
        &options,
        trace_file.as_mut().map(|w| w as &mut dyn std::io::Write),
    )
    .context("writing the trace")?;
    let wall = started.elapsed();
    if let Some(mut w) = trace_file {
        std::io::Write::flush(&mut w).context("writing the trace")?;
    }
    if let Some(p) = history {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        );
        outcome
            .history
            .write_jsonl(&mut w)
            .and_then(|()| std::io::Write::flush(&mut w))
            .with_context(|| format!("writing the history to {}", p.display()))?;
    }
    let report = &outcome.report;
    if condensed {
        println!("condensed trace:");
        for line in &report.condensed_trace {
            println!("  {line}");
        }
    }
    print!("{}", report.summary(wall));
    println!("trace-hash: {}", report.trace_hash);
    if let Some(name) = explain {
        match report.stats.workloads.explain(name) {
            Ok(text) => print!("{text}"),
            Err(e) => anyhow::bail!("--explain: {e}"),
        }
    }
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("replay: cargo xtask sim --seed {seed} {}", file.display());
        Ok(ExitCode::from(1))
    }
}

/// Every scenario file named, directories expanded to their `*.ron` files (sorted).
pub(crate) fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "ron"))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    if files.is_empty() {
        bail!("no scenario files found in {paths:?}");
    }
    Ok(files)
}

fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `cargo xtask sim ... | head`: once the reader has gone, stop quietly with the status a Unix
/// tool killed by SIGPIPE has (128 + 13), instead of a panic and a backtrace. Rust ignores SIGPIPE,
/// so `print!` panics on the broken pipe (EPIPE, "os error 32", checked by number: the text
/// follows the locale).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("(os error 32)") {
            std::process::exit(141);
        }
        default(info)
    }));
}

/// A line describing this machine, for benchmark records.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores available, {rustc}, release build")
}

fn bench(what: &str, runs: u64, write: bool, trials: usize, mb: u64) -> Result<ExitCode> {
    if what == "join" {
        let lines = bench_join::run(mb)?;
        lines.iter().for_each(|l| println!("{l}"));
        lines_to_benchmarks(
            write,
            "bench join",
            "A node joining a large state (`cargo xtask bench join`)",
            &lines,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if what == "node" {
        if write && trials < 20 {
            bail!("--write records failover over at least 20 trials (--trials {trials} given)");
        }
        let lines = bench_node::run(runs, trials, 5)?;
        lines.iter().for_each(|l| println!("{l}"));
        lines_to_benchmarks(
            write,
            "bench node",
            "Production node (`cargo xtask bench node`)",
            &lines,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if what != "sim" {
        bail!("unknown benchmark {what:?}: `sim`, `node` or `join`");
    }
    let runs = runs.max(1);
    let base = Scenario::load(Path::new("scenarios/steady_state.ron")).context(
        "the simulator benchmark runs scenarios/steady_state.ron (run from the repository root)",
    )?;
    let options = RunOptions::default();
    let mut lines = Vec::new();
    lines.push(format!("machine: {}", machine()));
    lines.push(format!(
        "load: scenarios/steady_state.ron ({} clients, {} ops/s offered, {} s simulated, every checker on), one core, median of {runs} seeds",
        base.clients.count,
        base.clients.rate_per_sec,
        base.duration.as_secs()
    ));
    for nodes in [3usize, 5] {
        let mut scenario = base.clone();
        scenario.nodes = nodes;
        let (mut speed, mut cpu_speed, mut events, mut steps, mut ops) =
            (vec![], vec![], vec![], vec![], vec![]);
        for seed in 1..=runs {
            let started = Instant::now();
            let cpu_started = thread_cpu_seconds();
            let r = keel_sim::run(&scenario, seed, &options);
            let wall = started.elapsed().as_secs_f64().max(1e-9);
            let cpu = (thread_cpu_seconds() - cpu_started).max(1e-9);
            speed.push(r.stats.sim_time_us as f64 / 1e6 / wall);
            cpu_speed.push(r.stats.sim_time_us as f64 / 1e6 / cpu);
            events.push(r.stats.events as f64 / wall);
            steps.push(r.stats.steps as f64 / wall);
            ops.push(r.ops.invoked as f64 / (r.stats.sim_time_us as f64 / 1e6));
            if !r.passed() {
                bail!(
                    "the benchmark run failed at seed {seed}: {}",
                    first_failure(&r)
                );
            }
        }
        lines.push(format!(
            "{nodes} nodes: {:.0} simulated s / wall s ({:.0} per CPU s of the thread), {:.2} M events/s, {:.2} M node steps/s (client load achieved {:.0} ops/s)",
            median(speed),
            median(cpu_speed),
            median(events) / 1e6,
            median(steps) / 1e6,
            median(ops)
        ));
    }
    // The swarm soak rate on every core, normalised to 60 simulated seconds per seed.
    let seeds = 40 * runs;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let sim_us = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                if k >= seeds {
                    break;
                }
                let s = keel_sim::swarm::generate(k + 1);
                let r = keel_sim::run(&s, k + 1, &options);
                sim_us.fetch_add(r.stats.sim_time_us, Ordering::Relaxed);
            });
        }
    });
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let sim_s = sim_us.load(Ordering::Relaxed) as f64 / 1e6;
    lines.push(format!(
        "swarm soak: {seeds} seeds on {jobs} threads: {:.0} seeds/min ({:.1} simulated s each on average), {:.0} seeds/min normalised to 60 simulated s",
        seeds as f64 / wall * 60.0,
        sim_s / seeds as f64,
        sim_s / 60.0 / wall * 60.0
    ));
    for l in &lines {
        println!("{l}");
    }
    lines_to_benchmarks(
        write,
        "bench sim",
        "Simulator (`cargo xtask bench sim`)",
        &lines,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// With `write`, replaces the section `name` of BENCHMARKS.md (between its begin and end
/// markers, appended if absent) with `lines` under `title`, after the machine's description.
fn lines_to_benchmarks(write: bool, name: &str, title: &str, lines: &[String]) -> Result<()> {
    if !write {
        return Ok(());
    }
    let path = Path::new("BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# keel benchmarks\n\nMeasured with `cargo xtask bench`; figures are medians on a shared, noisy machine.\n".to_string()
    });
    let (begin, end) = (
        format!("<!-- {name}: begin -->"),
        format!("<!-- {name}: end -->"),
    );
    let mut section = format!("{begin}\n## {title}\n\n");
    if !lines.iter().any(|l| l.starts_with("machine:")) {
        section.push_str(&format!("- machine: {}\n", machine()));
    }
    for l in lines {
        section.push_str(&format!("- {l}\n"));
    }
    section.push_str(&end);
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).context("writing BENCHMARKS.md")?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(not(feature = "planted-bugs"))]
fn planted(_seeds: u64) -> Result<ExitCode> {
    bail!(
        "planted bugs are compiled only into test builds: run \
         `cargo run --release -p xtask --features planted-bugs -- planted`"
    )
}

/// For each planted bug: swarm seeds from 1 until one fails; every bug must be caught.
#[cfg(feature = "planted-bugs")]
fn planted(seeds: u64) -> Result<ExitCode> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all_caught = true;
    for bug in keel_core::PlantedBug::ALL {
        let mut options = RunOptions::default();
        options.sim.planted_bug = Some(bug);
        let next = std::sync::atomic::AtomicU64::new(1);
        let first: std::sync::Mutex<Option<(u64, String)>> = std::sync::Mutex::new(None);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    let found = first
                        .lock()
                        .map(|f| f.as_ref().map(|(s, _)| *s))
                        .unwrap_or(None);
                    if seed > seeds || found.is_some_and(|s| s < seed) {
                        break;
                    }
                    let scenario = keel_sim::swarm::generate(seed);
                    let report = keel_sim::run(&scenario, seed, &options);
                    if !report.passed() {
                        if let Ok(mut f) = first.lock() {
                            if f.as_ref().is_none_or(|(s, _)| seed < *s) {
                                *f = Some((seed, first_failure(&report)));
                            }
                        }
                    }
                });
            }
        });
        match first.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some((seed, why)) => println!(
                "{:<22} caught at swarm seed {seed} ({:.1} s): {why}\n  replay: KEEL_PLANTED={} cargo run -p xtask --features planted-bugs -- soak --swarm --from {seed} --seeds 1 --save-failing failing/",
                bug.name(),
                started.elapsed().as_secs_f64(),
                bug.name()
            ),
            None => {
                all_caught = false;
                println!("{:<22} NOT caught in {seeds} swarm seeds", bug.name());
            }
        }
    }
    Ok(if all_caught {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The first reason a run failed, in one line.
pub(crate) fn first_failure(r: &keel_sim::RunReport) -> String {
    if let Some(v) = r.violations.first() {
        return format!("{}: {}", v.checker, v.message);
    }
    if let Some(e) = r.stats.engine_errors.first() {
        return format!("simulator error: {e}");
    }
    if let Some(e) = r.stats.refusals.first() {
        return format!("core refused an unsafe change: {e}");
    }
    if r.linearizability != keel_sim::linearizability::Verdict::Linearizable {
        return format!("history: {:?}", r.linearizability);
    }
    if let Some(e) = r.expectations.iter().find(|e| !e.passed) {
        return format!("expectation {} failed: {}", e.expectation, e.detail);
    }
    "failed".to_string()
}
