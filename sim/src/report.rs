//! What a run found: counters, failovers, checker violations, the linearizability verdict, one
//! verdict per scenario expectation, and the summary table `cargo xtask sim` prints.
//!
//! A report only describes a finished run: it never runs or changes anything, and never reads a
//! clock (the wall time in the summary is what the caller measured).

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
    /// For every write a client had acknowledged, the time from issuing it to the answer (us).
    pub write_latency_us: Vec<u64>,
    /// For every read a client had answered with a value, the time from issuing it to the
    /// answer (us).
    pub read_latency_us: Vec<u64>,
    pub final_commit_index: u64,
    /// Faults the simulator cannot inject yet (workload faults, until workloads exist).
    pub unsupported: Vec<String>,
    /// Internal errors of the simulator itself (never expected).
    pub engine_errors: Vec<String>,
    /// Changes a node's core refused as unsafe (a commit index moving back, a committed entry
    /// overwritten): each means the protocol reached a state it must never reach, so it fails
    /// the run even when no checker saw the cause.
    pub refusals: Vec<String>,
    /// The condensed trace: faults, leadership changes, snapshots, and five-second summaries.
    pub condensed: Vec<String>,
    /// How often each interesting thing happened ("sometimes" assertions): fault kinds, crash
    /// points, pre-votes rejected, snapshots installed, requests shed, and so on.
    pub coverage: std::collections::BTreeMap<&'static str, u64>,
    /// Workload placements, recoveries and the records behind `--explain`.
    pub workloads: crate::workloads::WorkloadStats,
    /// Leadership handovers and elections, for `TransfersReachTarget`.
    pub transfers: TransferStats,
    /// Membership changes, the final configuration and nodes needing replacement, for
    /// `MembershipSettledWithin` and the summary.
    pub membership: crate::membership::MembershipStats,
}

/// What became of leadership handovers: who was asked, what was started, who was elected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TransferStats {
    /// `TransferLeadershipTo` faults that found a leader: (when, leader, named target).
    pub requested: Vec<(u64, keel_core::NodeId, keel_core::NodeId)>,
    /// Handovers leaders started (`TransferStarted`): (when, leader, target).
    pub started: Vec<(u64, keel_core::NodeId, keel_core::NodeId)>,
    /// Every election won: (when, new leader).
    pub elected: Vec<(u64, keel_core::NodeId)>,
}

impl TransferStats {
    /// Whether `node` won an election within `bound_us` after `at`.
    fn elected_within(&self, node: keel_core::NodeId, at: u64, bound_us: u64) -> bool {
        self.elected
            .iter()
            .any(|&(t, n)| n == node && t >= at && t - at <= bound_us)
    }

    /// The verdict of `TransfersReachTarget(bound)`.
    fn judge(&self, bound: Duration) -> (bool, String) {
        let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        let ms = crate::workloads::ms;
        for &(at, from, to) in &self.started {
            if from == to {
                return (
                    false,
                    format!("{from} started a handover to itself at {}", ms(at)),
                );
            }
            if !self.elected_within(to, at, bound_us) {
                return (
                    false,
                    format!(
                        "the handover {from} -> {to} started at {} did not get {to} elected within {bound:?}",
                        ms(at)
                    ),
                );
            }
        }
        for &(at, leader, target) in &self.requested {
            if leader != target && !self.elected_within(target, at, bound_us) {
                return (
                    false,
                    format!(
                        "{leader} was asked at {} to hand over to {target}, which was not elected within {bound:?}",
                        ms(at)
                    ),
                );
            }
        }
        (
            true,
            format!(
                "{} handovers started, {} asked for by name: each reached its target",
                self.started.len(),
                self.requested.len()
            ),
        )
    }
}

impl RunStats {
    /// The median and 99th percentile of [`RunStats::write_latency_us`], if any write was
    /// acknowledged.
    pub fn write_latency(&self) -> Option<(u64, u64)> {
        p50_p99(&self.write_latency_us)
    }

    /// The median and 99th percentile of [`RunStats::read_latency_us`], if any read was
    /// answered.
    pub fn read_latency(&self) -> Option<(u64, u64)> {
        p50_p99(&self.read_latency_us)
    }
}

fn p50_p99(samples: &[u64]) -> Option<(u64, u64)> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    let at = |q: f64| ((v.len() - 1) as f64 * q).round() as usize;
    let (i50, i99) = (at(0.5), at(0.99));
    // Two selections, not a sort: the 99th percentile's rank first, then the median's among
    // the samples below it (the same order statistics a sort would give).
    let (below, &mut p99, _) = v.select_nth_unstable(i99);
    let p50 = if i50 < i99 {
        *below.select_nth_unstable(i50).1
    } else {
        p99
    };
    Some((p50, p99))
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
    "fault CrashAfterVote",
    "fault IsolateLeaderOnAppend",
    "fault TransferLeadership",
    "fault TransferLeadershipTo",
    "fault Delay",
    "fault IsolateLeaderOnCommit",
    "leadership transfer started",
    "leadership transfer aborted",
    "crash right after a vote",
    "leader cut off right after an append",
    "leader cut off right after a commit",
    "message held back on a delayed link",
    "two candidates in one term",
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
    "fault CrashWorkload",
    "fault HangWorkload",
    "node suspected",
    "node declared dead",
    "workload re-placed",
    "lease lost",
    "copies killed at lease expiry by the supervisor",
    "watchdog stopped a hung workload",
    "breaker opened",
    "workload failed permanently",
    "re-placement frozen (correlated failure)",
    "fault WipeDisk",
    "fault AddLearner",
    "fault AddMember",
    "fault Promote",
    "fault RemoveMember",
    "fault ReplaceNode",
    "disk wiped",
    "member change requested: add learner",
    "member change requested: promote",
    "member change requested: remove",
    "member change committed: add learner",
    "member change committed: promote",
    "member change committed: remove",
    "member change refused for now (asked again)",
    "membership change settled",
    "membership changed",
    "leader stepped down (removed)",
    "snapshot installed by a non-voter (a learner catching up)",
    "checker OneVoterAtATime ran",
    "checker OnlyVotersVote ran",
    "checker ElectedByVoters ran",
    "checker CommittedOnVoterMajority ran",
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
    /// The trace hash (see `crate::trace`) of everything the run did, as 16 hex digits.
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
            && self.stats.refusals.is_empty()
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
        let mut t = Table::default();
        self.run_rows(&mut t, wall_time);
        self.cluster_rows(&mut t);
        self.client_rows(&mut t);
        workload_rows(&mut t, &self.stats.workloads);
        membership_rows(&mut t, &self.stats.membership);
        self.verdict_rows(&mut t);
        t.0
    }

    /// The run itself: which, how long, how fast, how many events and messages.
    fn run_rows(&self, t: &mut Table, wall_time: Duration) {
        let s = &self.stats;
        t.row("scenario", self.scenario.clone());
        t.row("seed", self.seed.to_string());
        t.row(
            "simulated time",
            format!("{:.3} s", s.sim_time_us as f64 / 1e6),
        );
        t.row("wall time", format!("{:.3} s", wall_time.as_secs_f64()));
        t.row(
            "speed",
            format!("{:.0} simulated s / wall s", self.speed(wall_time)),
        );
        t.row("events", s.events.to_string());
        t.row("node steps", s.steps.to_string());
        t.row(
            "messages",
            format!(
                "{} sent, {} delivered, {} dropped, {} duplicated",
                s.messages_sent, s.messages_delivered, s.messages_dropped, s.messages_duplicated
            ),
        );
        t.row("faults injected", s.faults_injected.to_string());
    }

    /// The cluster: leadership, failovers, the log and what crashes cost.
    fn cluster_rows(&self, t: &mut Table) {
        let s = &self.stats;
        t.row(
            "first leader after",
            s.first_leader_at
                .map_or("never".to_string(), |t| format!("{:.1} ms", t as f64 / 1e3)),
        );
        t.row("leader changes", s.leader_changes.to_string());
        if s.failovers.is_empty() {
            t.row("failovers", "none".to_string());
        }
        for (i, f) in s.failovers.iter().enumerate() {
            let d = match f.duration() {
                Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
                None => "no leader at the end of the run".to_string(),
            };
            t.row(
                &format!("failover {}", i + 1),
                format!("at {:.3} s: {d}", f.start_us as f64 / 1e6),
            );
        }
        t.row("commit index", s.final_commit_index.to_string());
        t.row(
            "snapshots",
            format!(
                "{} taken, {} installed",
                s.snapshots_taken, s.snapshots_installed
            ),
        );
        t.row("unsynced writes lost", s.unsynced_writes_lost.to_string());
    }

    /// The clients: operations, latencies, load shedding.
    fn client_rows(&self, t: &mut Table) {
        let s = &self.stats;
        t.row(
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
        if let Some((p50, p99)) = s.write_latency() {
            t.row(
                "write latency",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms (issued to acknowledged, {} writes)",
                    p50 as f64 / 1e3,
                    p99 as f64 / 1e3,
                    s.write_latency_us.len()
                ),
            );
        }
        if let Some((p50, p99)) = s.read_latency() {
            t.row(
                "read latency",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms (issued to answered, {} reads)",
                    p50 as f64 / 1e3,
                    p99 as f64 / 1e3,
                    s.read_latency_us.len()
                ),
            );
        }
        t.row(
            "shed under load",
            format!(
                "{} requests shed by nodes, {} overloaded answers seen by clients",
                s.requests_shed, s.client_rejected
            ),
        );
    }

    /// What the checks found, each expectation's verdict, and the run's verdict.
    fn verdict_rows(&self, t: &mut Table) {
        let s = &self.stats;
        t.row("safety checks run", self.checks_run.to_string());
        t.row(
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
        t.row(
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
            t.row(
                &format!("expect {}", e.expectation),
                format!("{verdict}: {}", e.detail),
            );
        }
        for u in &s.unsupported {
            t.row("not simulated", u.clone());
        }
        for e in &s.engine_errors {
            t.row("SIMULATOR ERROR", e.clone());
        }
        for r in &s.refusals {
            t.row("CORE REFUSED", r.clone());
        }
        for v in self.violations.iter().take(10) {
            t.row(
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
            t.row("non-linearizable", v.explanation.clone());
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        t.row("verdict", verdict.to_string());
    }
}

/// The summary table: one indented row per line, the names in a column.
#[derive(Default)]
struct Table(String);

impl Table {
    fn row(&mut self, k: &str, v: String) {
        let _ = writeln!(self.0, "  {k:<28} {v}");
    }
}

/// The membership rows of the summary (none if no change was asked for and no node needs
/// replacing).
fn membership_rows(t: &mut Table, m: &crate::membership::MembershipStats) {
    if !m.any() {
        return;
    }
    t.row("membership changes", m.changes_line());
    t.row("final configuration", m.final_configuration.clone());
    if m.needs_replacement.is_empty() {
        t.row("needs replacement", "none".to_string());
    }
    for n in &m.needs_replacement {
        t.row("NEEDS REPLACEMENT", n.clone());
    }
}

/// The workloads' rows of the summary (none if the scenario runs no workloads).
fn workload_rows(t: &mut Table, w: &crate::workloads::WorkloadStats) {
    use crate::workloads::{ms, percentile};
    if w.instances == 0 {
        return;
    }
    let pct = |v: &[u64]| match (percentile(v, 50), percentile(v, 99), v.iter().max()) {
        (Some(a), Some(b), Some(c)) => {
            format!("p50 {}, p99 {}, max {}", ms(a), ms(b), ms(*c))
        }
        _ => "none".to_string(),
    };
    let closed: Vec<u64> = w
        .outages
        .iter()
        .filter_map(|o| o.end_us.map(|e| e - o.start_us))
        .collect();
    let open = w.outages.len() - closed.len();
    let count = |status: &str| w.final_state.iter().filter(|f| f.status == status).count();
    let (running, failed) = (count("running"), count("failed-permanently"));
    t.row(
        "workloads",
        format!(
            "{} instances; at the end {running} running, {failed} failed permanently",
            w.instances
        ),
    );
    t.row(
        "placements",
        format!(
            "{} placements, {} copies started, {} re-placements ({} false)",
            w.placements,
            w.copies_started,
            w.replacements,
            w.false_reschedules.len()
        ),
    );
    t.row(
        "workload outages",
        format!(
            "{} ended: {}; {open} open at the end",
            closed.len(),
            pct(&closed)
        ),
    );
    t.row("detection to running", pct(&w.detection_to_running_us));
    t.row(
        "fencing",
        format!(
            "{} leases lost, {} copies killed at lease expiry",
            w.leases_lost, w.copies_killed_at_lease_expiry
        ),
    );
    t.row(
        "retries",
        format!(
            "{} backoffs, {} watchdog stops, {} breakers opened, {} re-placement freezes",
            w.backoffs, w.watchdog_stops, w.breakers_opened, w.freezes
        ),
    );
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
            let (passed, detail) = judge_one(e, stats, violations, lin);
            ExpectationResult {
                expectation: describe_expectation(e),
                passed,
                detail,
            }
        })
        .collect()
}

/// Whether expectation `e` held, and why.
fn judge_one(
    e: &Expectation,
    stats: &RunStats,
    violations: &[Violation],
    lin: &Verdict,
) -> (bool, String) {
    let w = &stats.workloads;
    match e {
        Expectation::NewLeaderWithin(limit) => new_leader_within(stats, *limit),
        Expectation::NoLostWrites => no_lost_writes(violations),
        Expectation::Linearizable => linearizable(lin),
        Expectation::WorkloadsRecoveredWithin(limit) => recovered_within(stats, *limit),
        Expectation::AtMostOneRunningCopy => at_most_one_copy(violations, w.copies_started),
        Expectation::NoFalseReschedules => match w.false_reschedules.first() {
            None => (
                true,
                format!(
                    "{} re-placements, none away from a healthy node",
                    w.replacements
                ),
            ),
            Some(f) => (
                false,
                format!("{} false reschedules: {f}", w.false_reschedules.len()),
            ),
        },
        Expectation::MaxReplacements(max) => {
            let n = w.replacements;
            (n <= *max, format!("{n} re-placements (at most {max})"))
        }
        Expectation::MedianWriteLatencyWithin(d) => {
            median_within("write", stats.write_latency(), *d, "acknowledged")
        }
        Expectation::MedianReadLatencyWithin(d) => {
            median_within("read", stats.read_latency(), *d, "answered")
        }
        Expectation::MaxLeaderChanges(max) => {
            let n = stats.leader_changes;
            (n <= *max, format!("{n} leader changes (at most {max})"))
        }
        Expectation::MinLeaderChanges(min) => {
            let n = stats.leader_changes;
            (n >= *min, format!("{n} leader changes (at least {min})"))
        }
        Expectation::TransfersReachTarget(bound) => stats.transfers.judge(*bound),
        Expectation::MembershipSettledWithin(bound) => {
            stats.membership.judge(*bound, stats.sim_time_us)
        }
        Expectation::WorkloadEnds(family, status) => workload_ends(w, family, status),
    }
}

/// The verdict of `NewLeaderWithin(limit)`: the slowest failover ended within `limit`.
fn new_leader_within(stats: &RunStats, limit: Duration) -> (bool, String) {
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
            w <= limit,
            format!(
                "{} failovers, slowest {:.1} ms (limit {:?})",
                stats.failovers.len(),
                w.as_secs_f64() * 1e3,
                limit
            ),
        ),
    }
}

/// The verdict of `NoLostWrites`: the acknowledged-writes checker never fired.
fn no_lost_writes(violations: &[Violation]) -> (bool, String) {
    let lost: Vec<_> = violations
        .iter()
        .filter(|v| v.checker == crate::checkers::ACKED_WRITES)
        .collect();
    match lost.first() {
        None => (
            true,
            "every acknowledged write is in the final state".to_string(),
        ),
        Some(first) => (
            false,
            format!("{} acknowledged writes lost: {}", lost.len(), first.message),
        ),
    }
}

/// The verdict of `Linearizable`: the history check's.
fn linearizable(lin: &Verdict) -> (bool, String) {
    match lin {
        Verdict::Linearizable => (true, "the client history is linearizable".into()),
        Verdict::NotLinearizable(v) => (false, format!("key {}: {}", v.key, v.explanation)),
        Verdict::Inconclusive { reason } => (false, format!("inconclusive: {reason}")),
    }
}

/// The verdict of `AtMostOneRunningCopy`: that checker never fired.
fn at_most_one_copy(violations: &[Violation], copies_started: u64) -> (bool, String) {
    let twin = violations
        .iter()
        .find(|v| v.checker == crate::checkers::AT_MOST_ONE_COPY);
    match twin {
        None => (
            true,
            format!("{copies_started} copies started, never two of one workload at once"),
        ),
        Some(v) => (false, v.message.clone()),
    }
}

/// The verdict of `WorkloadEnds(family, status)`: every instance of the family ends in `status`.
fn workload_ends(
    w: &crate::workloads::WorkloadStats,
    family: &str,
    status: &str,
) -> (bool, String) {
    let all: Vec<_> = w
        .final_state
        .iter()
        .filter(|f| crate::workloads::in_family(&f.name, family))
        .collect();
    let wrong: Vec<String> = all
        .iter()
        .filter(|f| f.status != *status)
        .map(|f| format!("{} is {}", f.name, f.status))
        .collect();
    if all.is_empty() {
        (false, format!("no instance of {family} in the registry"))
    } else if wrong.is_empty() {
        (true, format!("{} instances {status}", all.len()))
    } else {
        (false, wrong.join(", "))
    }
}

/// Every outage of a workload ended within `limit`; one still open at the end fails unless the
/// workload ended for good (failed permanently, completed, stopped) or it began less than `limit`
/// before the end; every instance ran at some point.
fn recovered_within(stats: &RunStats, limit: Duration) -> (bool, String) {
    let w = &stats.workloads;
    let limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
    let terminal = |name: &str| w.final_state.iter().any(|f| f.name == name && f.terminal);
    let mut worst = 0;
    for o in &w.outages {
        match o.end_us {
            Some(end) => {
                let d = end - o.start_us;
                worst = worst.max(d);
                if d > limit_us {
                    return (
                        false,
                        format!(
                            "{} was down {} from {:.3} s (limit {limit:?})",
                            o.workload,
                            crate::workloads::ms(d),
                            o.start_us as f64 / 1e6
                        ),
                    );
                }
            }
            None if terminal(&o.workload) => {}
            None if stats.sim_time_us.saturating_sub(o.start_us) <= limit_us => {}
            None => {
                return (
                    false,
                    format!(
                        "{} went down at {:.3} s and never ran again",
                        o.workload,
                        o.start_us as f64 / 1e6
                    ),
                )
            }
        }
    }
    let never: Vec<&str> = w
        .final_state
        .iter()
        .filter(|f| !f.terminal && f.attempts == 0 && f.status != "running")
        .map(|f| f.name.as_str())
        .collect();
    if w.final_state.len() < w.instances {
        return (
            false,
            format!(
                "only {} of {} workloads reached the registry",
                w.final_state.len(),
                w.instances
            ),
        );
    }
    if let Some(n) = never.first() {
        return (false, format!("{n} was never placed"));
    }
    (
        true,
        format!(
            "{} outages, longest {} (limit {limit:?})",
            w.outages.len(),
            crate::workloads::ms(worst)
        ),
    )
}

/// The verdict of a median-latency expectation.
fn median_within(
    what: &str,
    latency: Option<(u64, u64)>,
    bound: std::time::Duration,
    done: &str,
) -> (bool, String) {
    let bound = bound.as_micros() as u64;
    match latency {
        Some((p50, _)) => (
            p50 <= bound,
            format!(
                "median {what} latency {:.1} ms (at most {:.1} ms)",
                p50 as f64 / 1e3,
                bound as f64 / 1e3
            ),
        ),
        None => (false, format!("no {what} was {done}")),
    }
}

fn describe_expectation(e: &Expectation) -> String {
    match e {
        Expectation::NewLeaderWithin(d) => format!("NewLeaderWithin({d:?})"),
        Expectation::WorkloadsRecoveredWithin(d) => format!("WorkloadsRecoveredWithin({d:?})"),
        Expectation::TransfersReachTarget(d) => format!("TransfersReachTarget({d:?})"),
        Expectation::MembershipSettledWithin(d) => format!("MembershipSettledWithin({d:?})"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::TransferStats;
    use keel_core::NodeId;
    use std::time::Duration;

    proptest::proptest! {
        #[test]
        fn percentiles_by_selection_are_those_of_the_sorted_samples(
            samples in proptest::collection::vec(0u64..50, 0..300)
        ) {
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            let expected = (!sorted.is_empty()).then(|| (at(0.5), at(0.99)));
            proptest::prop_assert_eq!(super::p50_p99(&samples), expected);
        }
    }

    /// A change the core refused as unsafe fails the run and is shown in its summary, even when
    /// no checker fired.
    #[test]
    fn a_core_refusal_fails_the_run() {
        let text = r#"Scenario(name: "quiet", nodes: 3, duration: "2s")"#;
        let scenario = crate::Scenario::parse(text, "quiet.ron").expect("a valid scenario");
        let mut report = crate::run(&scenario, 1, &crate::RunOptions::default());
        let wall = Duration::from_secs(1);
        assert!(report.passed(), "{}", report.summary(wall));
        report
            .stats
            .refusals
            .push("n1 refuses an unsafe change: a commit index moving back".into());
        assert!(!report.passed());
        assert!(report.summary(wall).contains("CORE REFUSED"));
    }

    #[test]
    fn transfers_reach_their_target_or_the_expectation_says_which_did_not() {
        let (n1, n2, n3) = (NodeId(1), NodeId(2), NodeId(3));
        let second = Duration::from_secs(1);
        let mut t = TransferStats {
            requested: vec![(3_000_000, n1, n3), (6_000_000, n3, n3)],
            started: vec![(3_000_000, n1, n3)],
            elected: vec![(100_000, n1), (3_010_000, n3)],
        };
        assert!(t.judge(second).0, "{}", t.judge(second).1);
        // Elected, but too late.
        t.elected[1].0 = 4_500_000;
        let (ok, why) = t.judge(second);
        assert!(!ok && why.contains("n1 -> n3"), "{why}");
        // A named handover that never started.
        t.elected[1].0 = 3_010_000;
        t.requested.push((9_000_000, n3, n2));
        let (ok, why) = t.judge(second);
        assert!(!ok && why.contains("to hand over to n2"), "{why}");
        // A leader that starts a handover to itself.
        t.requested.pop();
        t.started.push((6_000_000, n3, n3));
        let (ok, why) = t.judge(second);
        assert!(!ok && why.contains("to itself"), "{why}");
    }
}
