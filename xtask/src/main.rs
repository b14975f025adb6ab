//! keel's developer commands: `cargo xtask sim` runs one scenario at one seed; `cargo xtask soak`
//! runs many seeds of many scenarios on every core. (`bench`, `cluster` and `chaos` come with the
//! production node.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use keel_sim::{RunOptions, Scenario};

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
        /// The scenario file (RON).
        file: PathBuf,
    },
    /// Run many seeds of every given scenario file (or every `*.ron` in a given directory) on
    /// all cores; list every failing seed with the command that replays it.
    Soak {
        /// How many seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
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
        /// Scenario files or directories (not with --swarm).
        #[arg(required_unless_present = "swarm", conflicts_with = "swarm")]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim {
            seed,
            trace,
            history,
            condensed,
            file,
        } => sim(seed, trace.as_deref(), history.as_deref(), condensed, &file),
        Command::Soak {
            seeds,
            from,
            jobs,
            swarm,
            save_failing,
            paths,
        } => soak(seeds, from, jobs, swarm, save_failing.as_deref(), &paths),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn sim(
    seed: u64,
    trace: Option<&Path>,
    history: Option<&Path>,
    condensed: bool,
    file: &Path,
) -> Result<ExitCode> {
    let scenario = Scenario::load(file)?;
    let options = RunOptions::default();
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
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("replay: cargo xtask sim --seed {seed} {}", file.display());
        Ok(ExitCode::from(1))
    }
}

/// Every scenario file named, directories expanded to their `*.ron` files (sorted).
fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
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

fn soak(
    seeds: u64,
    from: u64,
    jobs: Option<usize>,
    swarm: bool,
    save_failing: Option<&Path>,
    paths: &[PathBuf],
) -> Result<ExitCode> {
    // With --swarm each seed brings its own scenario; otherwise every file runs every seed.
    let scenarios: Vec<(PathBuf, Scenario)> = if swarm {
        Vec::new()
    } else {
        scenario_files(paths)?
            .into_iter()
            .map(|f| Scenario::load(&f).map(|s| (f, s)))
            .collect::<Result<_, _>>()?
    };
    let work: Vec<(Option<usize>, u64)> = if swarm {
        (from..from + seeds).map(|s| (None, s)).collect()
    } else {
        (0..scenarios.len())
            .flat_map(|i| (from..from + seeds).map(move |s| (Some(i), s)))
            .collect()
    };
    if let Some(dir) = save_failing {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures: Mutex<Vec<(String, u64, String, String)>> = Mutex::new(Vec::new());
    let coverage: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());
    let sim_us = std::sync::atomic::AtomicU64::new(0);
    let options = RunOptions::default();
    let started = Instant::now();
    if swarm {
        println!("soak: swarm, {seeds} generated scenarios (seeds from {from}) on {jobs} threads");
    } else {
        println!(
            "soak: {} scenarios x {seeds} seeds (from {from}) on {jobs} threads",
            scenarios.len()
        );
    }
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(file, seed)) = work.get(k) else {
                    break;
                };
                let generated;
                let scenario = match file {
                    Some(i) => &scenarios[i].1,
                    None => {
                        generated = keel_sim::swarm::generate(seed);
                        &generated
                    }
                };
                let report = keel_sim::run(scenario, seed, &options);
                sim_us.fetch_add(report.stats.sim_time_us, Ordering::Relaxed);
                if let Ok(mut c) = coverage.lock() {
                    for (kind, n) in &report.stats.coverage {
                        *c.entry(kind).or_insert(0) += n;
                    }
                }
                if !report.passed() {
                    let why = first_failure(&report);
                    let replay = match file {
                        Some(i) => format!(
                            "cargo xtask sim --seed {seed} {}",
                            scenarios[i].0.display()
                        ),
                        None => {
                            let saved = save_failing.map(|dir| {
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
                    if let Ok(mut f) = failures.lock() {
                        f.push((scenario.name.clone(), seed, why, replay));
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 100 == 0 || n == work.len() {
                    let failed = failures.lock().map(|f| f.len()).unwrap_or(0);
                    eprintln!(
                        "  {n}/{} runs, {failed} failed, {:.0} runs/s",
                        work.len(),
                        n as f64 / started.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let coverage = coverage.into_inner().unwrap_or_else(|e| e.into_inner());
    println!("coverage (how often each thing happened over all runs):");
    for kind in keel_sim::report::COVERAGE_KINDS {
        let n = coverage.get(kind).copied().unwrap_or(0);
        let gap = if n == 0 {
            "   <- never happened: a gap"
        } else {
            ""
        };
        println!("  {kind:<36} {n:>10}{gap}");
    }
    for (name, seed, why, replay) in &failures {
        println!("FAILED {name} seed {seed}: {why}\n  replay: {replay}");
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "soak: {} runs in {wall:.1} s ({:.1} runs/s, {:.0} simulated s / wall s over {jobs} threads)",
        work.len(),
        work.len() as f64 / wall.max(1e-9),
        sim_us.load(Ordering::Relaxed) as f64 / 1e6 / wall.max(1e-9)
    );
    println!(
        "{} passed, {} failed",
        work.len() - failures.len(),
        failures.len()
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The first reason a run failed, in one line.
fn first_failure(r: &keel_sim::RunReport) -> String {
    if let Some(v) = r.violations.first() {
        return format!("{}: {}", v.checker, v.message);
    }
    if let Some(e) = r.stats.engine_errors.first() {
        return format!("simulator error: {e}");
    }
    if r.linearizability != keel_sim::linearizability::Verdict::Linearizable {
        return format!("history: {:?}", r.linearizability);
    }
    if let Some(e) = r.expectations.iter().find(|e| !e.passed) {
        return format!("expectation {} failed: {}", e.expectation, e.detail);
    }
    "failed".to_string()
}
