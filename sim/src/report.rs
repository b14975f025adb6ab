//! What a run found: counters, failovers, checker violations, the linearizability verdict, one
//! verdict per scenario expectation, and the summary table `cargo xtask sim` prints.

use std::fmt::Write as _;
use std::time::Duration;

use crate::checkers::Violation;
use crate::history::HistoryCounts;
use crate::linearizability::{CheckStats, Verdict};
use crate::scenario::Expectation;

/// A span without a healthy leader (one that is up, not hung, and reaches a majority) after the
/// cluster first had one, measured from its start or from the last fault during it, whichever is
/// later. `end_us` is `None` if the run ended during it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    pub start_us: u64,
    pub end_us: Option<u64>,
}

impl Failover {
    pub fn duration(&self) -> Option<Duration> {
        self.end_us
            .map(|e| Duration::from_micros(e.saturating_sub(self.start_us)))
    }
}

/// Counters the engine fills in as it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunStats {
    pub sim_time_us: u64,
    pub events: u64,
    pub steps: u64,
    pub persists: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    pub leader_changes: u64,
    pub first_leader_at: Option<u64>,
    pub failovers: Vec<Failover>,
    pub faults_injected: u64,
    pub unsynced_writes_lost: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub log_truncations: u64,
    pub requests_shed: u64,
    pub client_rejected: u64,
    pub final_commit_index: u64,
    /// Faults the simulator cannot inject yet (workload faults, until workloads exist).
    pub unsupported: Vec<String>,
    /// Internal errors of the simulator itself (never expected).
    pub engine_errors: Vec<String>,
    /// The condensed trace: faults, leadership changes, snapshots, and five-second summaries.
    pub condensed: Vec<String>,
    /// How often each interesting thing happened ("sometimes" assertions): fault kinds, crash
    /// points, pre-votes rejected, snapshots installed, requests shed, and so on.
    pub coverage: std::collections::BTreeMap<&'static str, u64>,
}

/// Everything a soak expects to see happen at least once over many seeds; one that never happens
/// is a gap in what the runs exercised.
pub const COVERAGE_KINDS: &[&str] = &[
    "fault Crash",
    "fault Restart",
    "fault Partition",
    "fault Isolate",
    "fault OneWay",
    "fault Heal",
    "fault Hang",
    "fault Slow",
    "fault Overload",
    "crash between steps",
    "crash in the middle of a step",
    "un-synced write lost in a crash",
    "message dropped",
    "message duplicated",
    "election started",
    "pre-vote rejected",
    "leader stepped down (higher term)",
    "leader stepped down (lost quorum)",
    "log suffix truncated",
    "snapshot sent",
    "snapshot installed",
    "request shed",
    "write answered not-committed",
    "client outcome unknown",
];

/// One expectation of the scenario and whether it held.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectationResult {
    pub expectation: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything a run found. [`RunReport::passed`] is the verdict.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    /// The FNV-1a digest of everything the run did, as 16 hex digits.
    pub trace_hash: String,
    pub stats: RunStats,
    pub ops: HistoryCounts,
    pub checks_run: u64,
    pub violations: Vec<Violation>,
    pub linearizability: Verdict,
    pub linearizability_stats: CheckStats,
    pub expectations: Vec<ExpectationResult>,
    /// The condensed trace, for snapshot tests (no wall-clock figures in it).
    pub condensed_trace: Vec<String>,
}

impl RunReport {
    /// True when every safety check, the linearizability check and every expectation held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.stats.engine_errors.is_empty()
            && self.linearizability == Verdict::Linearizable
            && self.expectations.iter().all(|e| e.passed)
    }

    /// Simulated seconds per wall-clock second, given the wall time the caller measured (the
    /// simulator itself never reads a clock).
    pub fn speed(&self, wall_time: Duration) -> f64 {
        let wall = wall_time.as_secs_f64();
        if wall <= 0.0 {
            return f64::INFINITY;
        }
        self.stats.sim_time_us as f64 / 1e6 / wall
    }

    /// The summary table printed by `cargo xtask sim`; `wall_time` is what the caller measured.
    pub fn summary(&self, wall_time: Duration) -> String {
        let s = &self.stats;
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<28} {v}");
        };
        row("scenario", self.scenario.clone());
        row("seed", self.seed.to_string());
        row(
            "simulated time",
            format!("{:.3} s", s.sim_time_us as f64 / 1e6),
        );
        row("wall time", format!("{:.3} s", wall_time.as_secs_f64()));
        row(
            "speed",
            format!("{:.0} simulated s / wall s", self.speed(wall_time)),
        );
        row("events", s.events.to_string());
        row("node steps", s.steps.to_string());
        row(
            "messages",
            format!(
                "{} sent, {} delivered, {} dropped, {} duplicated",
                s.messages_sent, s.messages_delivered, s.messages_dropped, s.messages_duplicated
            ),
        );
        row("faults injected", s.faults_injected.to_string());
        row(
            "first leader after",
            s.first_leader_at
                .map_or("never".to_string(), |t| format!("{:.1} ms", t as f64 / 1e3)),
        );
        row("leader changes", s.leader_changes.to_string());
        if s.failovers.is_empty() {
            row("failovers", "none".to_string());
        }
        for (i, f) in s.failovers.iter().enumerate() {
            let d = match f.duration() {
                Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
                None => "no leader at the end of the run".to_string(),
            };
            row(
                &format!("failover {}", i + 1),
                format!("at {:.3} s: {d}", f.start_us as f64 / 1e6),
            );
        }
        row("commit index", s.final_commit_index.to_string());
        row(
            "snapshots",
            format!(
                "{} taken, {} installed",
                s.snapshots_taken, s.snapshots_installed
            ),
        );
        row("unsynced writes lost", s.unsynced_writes_lost.to_string());
        row(
            "client ops",
            format!(
                "{} invoked ({:.0}/s): {} ok, {} failed, {} unknown",
                self.ops.invoked,
                self.ops.invoked as f64 / (s.sim_time_us as f64 / 1e6).max(1e-9),
                self.ops.ok,
                self.ops.fail,
                self.ops.info
            ),
        );
        row(
            "shed under load",
            format!(
                "{} requests shed by nodes, {} overloaded answers seen by clients",
                s.requests_shed, s.client_rejected
            ),
        );
        row("safety checks run", self.checks_run.to_string());
        row(
            "safety violations",
            if self.violations.is_empty() {
                "none".to_string()
            } else {
                self.violations.len().to_string()
            },
        );
        let lin = match &self.linearizability {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable(v) => format!("NOT linearizable (key {})", v.key),
            Verdict::Inconclusive { reason } => format!("inconclusive: {reason}"),
        };
        row(
            "history",
            format!(
                "{lin} ({} keys, {} ops, {} states searched)",
                self.linearizability_stats.keys,
                self.linearizability_stats.ops,
                self.linearizability_stats.states_explored
            ),
        );
        for e in &self.expectations {
            let verdict = if e.passed { "ok" } else { "FAILED" };
            row(
                &format!("expect {}", e.expectation),
                format!("{verdict}: {}", e.detail),
            );
        }
        for u in &s.unsupported {
            row("not simulated", u.clone());
        }
        for e in &s.engine_errors {
            row("SIMULATOR ERROR", e.clone());
        }
        for v in self.violations.iter().take(10) {
            row(
                &format!("VIOLATION {}", v.checker),
                format!(
                    "at {:.3} s{}: {}",
                    v.at_us as f64 / 1e6,
                    v.node.map(|n| format!(" on {n}")).unwrap_or_default(),
                    v.message
                ),
            );
        }
        if let Verdict::NotLinearizable(v) = &self.linearizability {
            row("non-linearizable", v.explanation.clone());
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        row("verdict", verdict.to_string());
        t
    }
}

/// Judges each expectation of the scenario against what the run found.
pub(crate) fn judge(
    expect: &[Expectation],
    stats: &RunStats,
    violations: &[Violation],
    lin: &Verdict,
) -> Vec<ExpectationResult> {
    expect
        .iter()
        .map(|e| {
            let (passed, detail) = match e {
                Expectation::NewLeaderWithin(limit) => {
                    let worst = stats
                        .failovers
                        .iter()
                        .map(|f| f.duration().unwrap_or(Duration::MAX))
                        .max();
                    match (stats.first_leader_at, worst) {
                        (None, _) => (false, "no leader was ever elected".to_string()),
                        (Some(_), None) => (true, "no failover was needed".to_string()),
                        (Some(_), Some(w)) if w == Duration::MAX => (
                            false,
                            "the run ended without a leader after a failover began".to_string(),
                        ),
                        (Some(_), Some(w)) => (
                            w <= *limit,
                            format!(
                                "{} failovers, slowest {:.1} ms (limit {:?})",
                                stats.failovers.len(),
                                w.as_secs_f64() * 1e3,
                                limit
                            ),
                        ),
                    }
                }
                Expectation::NoLostWrites => {
                    let lost: Vec<_> = violations
                        .iter()
                        .filter(|v| v.checker == crate::checkers::ACKED_WRITES)
                        .collect();
                    if lost.is_empty() {
                        (
                            true,
                            "every acknowledged write is in the final state".to_string(),
                        )
                    } else {
                        (
                            false,
                            format!(
                                "{} acknowledged writes lost: {}",
                                lost.len(),
                                lost[0].message
                            ),
                        )
                    }
                }
                Expectation::Linearizable => match lin {
                    Verdict::Linearizable => (true, "the client history is linearizable".into()),
                    Verdict::NotLinearizable(v) => {
                        (false, format!("key {}: {}", v.key, v.explanation))
                    }
                    Verdict::Inconclusive { reason } => (false, format!("inconclusive: {reason}")),
                },
                Expectation::WorkloadsRecoveredWithin(_)
                | Expectation::AtMostOneRunningCopy
                | Expectation::NoFalseReschedules => (
                    false,
                    "workloads are not simulated yet (workload recovery is open work)".to_string(),
                ),
            };
            ExpectationResult {
                expectation: describe_expectation(e),
                passed,
                detail,
            }
        })
        .collect()
}

fn describe_expectation(e: &Expectation) -> String {
    match e {
        Expectation::NewLeaderWithin(d) => format!("NewLeaderWithin({d:?})"),
        Expectation::WorkloadsRecoveredWithin(d) => format!("WorkloadsRecoveredWithin({d:?})"),
        other => format!("{other:?}"),
    }
}
