//! keel's developer commands: `cargo xtask sim` runs one scenario at one seed; `cargo xtask soak`
//! runs many seeds of many scenarios on every core. (`bench`, `cluster` and `chaos` come with the
//! production node.)

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
        /// Scenario files or directories.
        #[arg(required = true)]
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
            paths,
        } => soak(seeds, from, jobs, &paths),
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

fn soak(seeds: u64, from: u64, jobs: Option<usize>, paths: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario_files(paths)?;
    let scenarios: Vec<(PathBuf, Scenario)> = files
        .into_iter()
        .map(|f| Scenario::load(&f).map(|s| (f, s)))
        .collect::<Result<_, _>>()?;
    let work: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|i| (from..from + seeds).map(move |s| (i, s)))
        .collect();
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures: Mutex<Vec<(usize, u64, String)>> = Mutex::new(Vec::new());
    let sim_us = std::sync::atomic::AtomicU64::new(0);
    let options = RunOptions::default();
    let started = Instant::now();
    println!(
        "soak: {} scenarios x {seeds} seeds (from {from}) on {jobs} threads",
        scenarios.len()
    );
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, seed)) = work.get(k) else {
                    break;
                };
                let report = keel_sim::run(&scenarios[i].1, seed, &options);
                sim_us.fetch_add(report.stats.sim_time_us, Ordering::Relaxed);
                if !report.passed() {
                    let why = first_failure(&report);
                    if let Ok(mut f) = failures.lock() {
                        f.push((i, seed, why));
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
    failures.sort_by_key(|f| (f.0, f.1));
    for (i, seed, why) in &failures {
        println!(
            "FAILED {} seed {seed}: {why}\n  replay: cargo xtask sim --seed {seed} {}",
            scenarios[*i].1.name,
            scenarios[*i].0.display()
        );
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "soak: {} runs in {wall:.1} s ({:.0} simulated s / wall s over {jobs} threads)",
        work.len(),
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
