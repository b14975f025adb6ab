//! Scenario files: a cluster, its network, its client load and a fault schedule, in RON.
//!
//! The shape is fixed by `ARCHITECTURE.md`:
//!
//! ```ron
//! Scenario(
//!     name: "leader_kill",
//!     description: "Kill the leader under load.",       // optional, default ""
//!     nodes: 3,                                          // 1..=9, named n1..nN
//!     duration: "30s",                                   // "250ms", "1.5s", "2m", "100us", "7ns"
//!     network: (latency: ("1ms", "5ms"), drop_rate: 0.0, duplicate_rate: 0.0),   // optional
//!     clients: (count: 4, rate_per_sec: 200, keys: 16, timeout: "1s"),         // optional
//!     workloads: [(name: "web", count: 6, max_attempts: 3, watchdog: "1s", backoff: ("100ms", "2s"))],
//!     faults: [(at: "5s", fault: Crash(Leader)), (at: "12s", fault: Restart(LastCrashed))],
//!     expect: [NewLeaderWithin("1s"), NoLostWrites, Linearizable],
//!     lease_reads: false,                                // optional, default true
//! )
//! ```
//!
//! Defaults: network latency 1–5 ms, no drops or duplicates; 4 clients at 100 operations per second
//! in total over 16 keys with a 1 s timeout; no workloads, faults or expectations. A workload's
//! `count` instances are named `web-1`..`web-6` (`web` alone when the count is 1); `watchdog`
//! defaults to 1 s (`"0s"`: none), `backoff` to ("100ms", "2s"). Workload faults name a workload
//! (any running instance) or one instance: `CrashWorkload("web")`, `HangWorkload("web-3")`.
//! Armed faults wait for a moment rather than a time: `CrashAfterVote(Leader, "2ms")` (that node
//! crashes right after its next granted vote has left it, and restarts 2 ms later) and
//! `IsolateLeaderOnAppend("800ms")` (the next leader to append is cut off right after that step,
//! for 800 ms) and `IsolateLeaderOnCommit("2s")` (the next leader to advance its commit index is
//! cut off right after that step, for 2 s); each is disarmed if its moment does not come within
//! 3 s.
//! `TransferLeadership` lets the leader choose whom to hand over to;
//! `TransferLeadershipTo(Node("n3"))` names the node.
//! `Delay(from: Node("n1"), to: Leader, extra: "150ms", lasting: "2s")` holds back the messages
//! one node sends another: each arrives 150 ms late, none is lost for it.
//! Workload expectations: `WorkloadsRecoveredWithin("2s")`, `AtMostOneRunningCopy`,
//! `NoFalseReschedules`, `MaxReplacements(0)`, `WorkloadEnds("web", "failed-permanently")`.
//! `MaxLeaderChanges(1)` bounds how often any node becomes leader (the first election counts),
//! `MinLeaderChanges(5)` from below;
//! `MedianWriteLatencyWithin("15ms")` bounds the clients' median write latency,
//! `MedianReadLatencyWithin("15ms")` their median read latency (either fails when no such
//! operation succeeded at all);
//! `TransfersReachTarget("1s")`: every handover reaches its target within 1 s.
//!
//! Every error names the file, the line and column, and the field by its path (`clients.keys`,
//! `faults[2].at`): syntax errors, unknown, missing or mistyped fields, malformed durations, and
//! the checks after parsing (cluster size, rates, unknown node or workload names, faults out of
//! order or not before the end of the run, zero-length fault windows).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// One simulated run's setup and what must hold at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Required; names the scenario in reports.
    pub name: String,
    /// One sentence on what the scenario shows. Default empty.
    pub description: String,
    /// Cluster size, 1..=9; the nodes are `n1`..`nN`.
    pub nodes: usize,
    /// Simulated time the run lasts.
    pub duration: Duration,
    /// Default [`NetworkSpec::default`].
    pub network: NetworkSpec,
    /// Default [`ClientSpec::default`].
    pub clients: ClientSpec,
    /// Default none; names are unique and non-empty.
    pub workloads: Vec<WorkloadSpec>,
    /// In non-decreasing `at` order, each before `duration`.
    pub faults: Vec<TimedFault>,
    /// Liveness and history expectations; the safety checkers always run.
    pub expect: Vec<Expectation>,
    /// Whether leaders answer reads from a lease (`keel_core::Config::lease_reads`) or by a
    /// heartbeat round per read (read-index). Default true, as in the node.
    pub lease_reads: bool,
}

/// The network between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    /// One-way latency range, drawn uniformly per message (so messages reorder). Default 1–5 ms.
    pub latency: (Duration, Duration),
    /// Probability that a message is lost. Default 0.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice. Default 0.
    pub duplicate_rate: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
        }
    }
}

/// The client load: `count` closed-loop clients sharing `rate_per_sec` operations per second.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSpec {
    /// Default 4.
    pub count: usize,
    /// Operations per second, all clients together. Default 100.
    pub rate_per_sec: f64,
    /// Distinct user keys the operations touch. Default 16.
    pub keys: usize,
    /// How long a client waits for an answer before recording the outcome as unknown. Default 1 s.
    pub timeout: Duration,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            count: 4,
            rate_per_sec: 100.0,
            keys: 16,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Desired workloads: `count` instances, named `name-1`..`name-N` (just `name` when 1).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// Required, unique, non-empty.
    pub name: String,
    /// Instances wanted, 1..=1000. Default 1.
    pub count: usize,
    /// Failed starts before an instance is marked failed for good. Default 3.
    pub max_attempts: u32,
    /// An instance must show progress this often or its node stops it as hung; `"0s"`: no
    /// watchdog. Default 1 s.
    pub watchdog: Option<Duration>,
    /// Retry backoff: (base, cap), full jitter. Default ("100ms", "2s").
    pub backoff: (Duration, Duration),
}

/// A fault injected at a point of simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedFault {
    /// When it fires: before the scenario's end, not before the previous fault's `at`.
    pub at: Duration,
    pub fault: Fault,
}

/// Which node a fault hits, resolved when the fault fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// A node by name, `n1`..`nN`.
    Node(String),
    /// The current leader (the live leader with the highest term).
    Leader,
    /// A live follower, chosen by the seeded fault stream.
    Follower,
    /// The most recently crashed node that is still down.
    LastCrashed,
    /// Any live node.
    Random,
}

/// What happens to the cluster; durations are how long the effect lasts (above zero).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The node stops at once; what it had not synced is lost.
    Crash(Selector),
    /// A crashed node starts again from its durable state.
    Restart(Selector),
    /// Two nodes can talk iff some group holds both (groups may overlap: a bridge).
    Partition(Vec<Vec<String>>),
    /// The node can reach no one and no one can reach it.
    Isolate(Selector),
    /// Messages from the first node no longer reach the second.
    OneWay(Selector, Selector),
    /// Undo every partition, isolation and one-way cut.
    Heal,
    /// The node processes nothing for the duration, then resumes with stale beliefs.
    Hang(Selector, Duration),
    /// The node's CPU, disk and outgoing links are slower by the factor (at least 1.0) for the
    /// duration.
    Slow(Selector, f64, Duration),
    /// Open-loop client requests at this rate, for this long.
    /// RON: `Overload(rate_per_sec: 20000, lasting: "5s")`.
    Overload {
        /// Requests per second, above zero.
        rate_per_sec: f64,
        /// How long the burst lasts.
        lasting: Duration,
    },
    /// Crash a running copy of the named workload (listed in `workloads`; `name-K` names one
    /// instance, `name` any of them).
    CrashWorkload(String),
    /// Hang a running copy of the named workload (as for `CrashWorkload`).
    HangWorkload(String),
    /// The operator asks the leader to hand leadership to its most caught-up follower (what a
    /// node does when it shuts down gracefully). Nothing happens if no node leads.
    TransferLeadership,
    /// The operator asks the leader to hand leadership to the selected node (resolved when the
    /// fault fires). A leader refuses a target that is not one of its followers (itself, when
    /// the selector is `Leader`): nothing happens then. Nothing happens if no node leads.
    /// RON: `TransferLeadershipTo(Node("n3"))`.
    TransferLeadershipTo(Selector),
    /// Messages from the first node to the second are held back: every message sent on that
    /// link while the delay lasts arrives `extra` later than the network would deliver it (it is
    /// not lost for it; a cut link still loses it). Another delay of the same link replaces this
    /// one. `Heal` leaves delays alone: they end on their own.
    /// RON: `Delay(from: Leader, to: Follower, extra: "150ms", lasting: "2s")`.
    Delay {
        /// The sending end, resolved when the fault fires.
        from: Selector,
        /// The receiving end, resolved when the fault fires (after `from`).
        to: Selector,
        /// Latency added to each message, above zero.
        extra: Duration,
        /// For how long messages sent on the link are held back, above zero.
        lasting: Duration,
    },
    /// Arm the selected node (resolved when the fault fires; `LastCrashed` arms a node that is
    /// down, for when it is back): the next time it grants a vote, it crashes right after the
    /// answer has left it, and restarts from its durable state the given time later. A node that
    /// grants no vote within [`ARMED_FAULT_PATIENCE`] is disarmed.
    /// RON: `CrashAfterVote(Leader, "2ms")`.
    CrashAfterVote(Selector, Duration),
    /// Arm the cluster: the next leader to append entries while it is not cut off is cut off
    /// from every node right after that step (its entries of that step reach no one), for the
    /// given time; then its links come back. Several armed at once hit successive leaders, which
    /// is how the Raft paper's figure 8 happens. Disarmed after [`ARMED_FAULT_PATIENCE`].
    /// RON: `IsolateLeaderOnAppend("800ms")`.
    IsolateLeaderOnAppend(Duration),
    /// Arm the cluster: the next leader to advance its commit index while it is not cut off is
    /// cut off from every node right after that step (the messages of that step, which would
    /// tell the followers what it committed, reach no one), for the given time. A leader that
    /// commits only what a majority holds loses nothing to this; one that commits an
    /// earlier-term entry by counting replicas (the Raft paper's figure 8) may. Disarmed after
    /// [`ARMED_FAULT_PATIENCE`]; several armed at once hit successive commits.
    /// RON: `IsolateLeaderOnCommit("2s")`.
    IsolateLeaderOnCommit(Duration),
}

/// How long an armed fault (`CrashAfterVote`, `IsolateLeaderOnAppend`, `IsolateLeaderOnCommit`)
/// waits for its moment.
pub const ARMED_FAULT_PATIENCE: Duration = Duration::from_secs(3);

/// What must hold at the end of a run (safety checkers run whether listed or not).
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// After each fault that removes the leader, a new one within this bound (above zero).
    NewLeaderWithin(Duration),
    /// Every workload hit by a fault runs again within this bound (above zero).
    WorkloadsRecoveredWithin(Duration),
    /// Every acknowledged write is in the final state.
    NoLostWrites,
    /// The client history is linearizable.
    Linearizable,
    /// Never two running copies of one workload instance.
    AtMostOneRunningCopy,
    /// No workload is moved off a node that was up, reachable and undisturbed.
    NoFalseReschedules,
    /// At most this many copies are re-placed off dead nodes in the whole run.
    MaxReplacements(u64),
    /// At most this many times a node becomes leader in the whole run (the first election
    /// counts). A leader heard by a majority must not be deposed: a node that rejoins after a
    /// partition, or a follower with a quick timer, stays quiet (pre-vote, leader stickiness).
    MaxLeaderChanges(u64),
    /// At least this many times a node becomes leader in the whole run (the first election
    /// counts): leadership moves when it is handed over.
    MinLeaderChanges(u64),
    /// The median time from a client issuing a write to its acknowledgement is within this
    /// bound (over every write a client had acknowledged). A write must not wait for a timer:
    /// the leader replicates new entries at once.
    MedianWriteLatencyWithin(Duration),
    /// The median time from a client issuing a read to its answer is within this bound (over
    /// every read answered with a value). Reads must be answered at all, and without waiting
    /// for a timer.
    MedianReadLatencyWithin(Duration),
    /// Every instance of the workload ends the run in this status (`running`, `failed-permanently`,
    /// `backing-off`, `pending`, `assigned`, `completed`, `stopped`).
    WorkloadEnds(String, String),
    /// Every leadership handover reaches its target within this bound (above zero): each
    /// handover a leader starts ends with its target elected, and each `TransferLeadershipTo`
    /// that names a node other than the leader ends with that node elected (so a scenario using
    /// it names nodes that are up). A request a leader must refuse (a handover to itself) must
    /// start nothing.
    TransfersReachTarget(Duration),
}

/// The statuses `WorkloadEnds` accepts.
pub const WORKLOAD_STATUSES: [&str; 7] = [
    "pending",
    "assigned",
    "running",
    "backing-off",
    "failed-permanently",
    "completed",
    "stopped",
];

/// A scenario file that cannot be run, with where and why. Displays as
/// ``{file}:{line}:{column}: field `{field}`: {message}``, or without the field part when the
/// error is not in one field. Line and column are 1-based (column in characters); both are 0
/// when the file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file as given to [`Scenario::load`] or [`Scenario::parse`].
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field's path: `nodes`, `network.latency`, `faults[2].fault`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

// ------------------------------------------------------------------ raw, as written in the file

fn default_count() -> usize {
    4
}
fn default_rate() -> f64 {
    100.0
}
fn default_keys() -> usize {
    16
}
fn default_timeout() -> String {
    "1s".to_string()
}
fn default_latency() -> (String, String) {
    ("1ms".to_string(), "5ms".to_string())
}
fn default_one() -> usize {
    1
}
fn default_attempts() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(rename = "Scenario", deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    nodes: usize,
    duration: String,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    clients: RawClients,
    #[serde(default)]
    workloads: Vec<RawWorkload>,
    #[serde(default)]
    faults: Vec<RawTimedFault>,
    #[serde(default)]
    expect: Vec<RawExpectation>,
    #[serde(default = "yes")]
    lease_reads: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default = "default_latency")]
    latency: (String, String),
    #[serde(default)]
    drop_rate: f64,
    #[serde(default)]
    duplicate_rate: f64,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork {
            latency: default_latency(),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClients {
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default = "default_rate")]
    rate_per_sec: f64,
    #[serde(default = "default_keys")]
    keys: usize,
    #[serde(default = "default_timeout")]
    timeout: String,
}

impl Default for RawClients {
    fn default() -> Self {
        RawClients {
            count: default_count(),
            rate_per_sec: default_rate(),
            keys: default_keys(),
            timeout: default_timeout(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    #[serde(default = "default_one")]
    count: usize,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_watchdog")]
    watchdog: String,
    #[serde(default = "default_backoff")]
    backoff: (String, String),
}

fn default_watchdog() -> String {
    "1s".to_string()
}
fn default_backoff() -> (String, String) {
    ("100ms".to_string(), "2s".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimedFault {
    at: String,
    fault: RawFault,
}

#[derive(Deserialize)]
enum RawSelector {
    Node(String),
    Leader,
    Follower,
    LastCrashed,
    Random,
}

#[derive(Deserialize)]
enum RawFault {
    Crash(RawSelector),
    Restart(RawSelector),
    Partition(Vec<Vec<String>>),
    Isolate(RawSelector),
    OneWay(RawSelector, RawSelector),
    Heal,
    Hang(RawSelector, String),
    Slow(RawSelector, f64, String),
    Overload {
        rate_per_sec: f64,
        lasting: String,
    },
    CrashWorkload(String),
    HangWorkload(String),
    TransferLeadership,
    TransferLeadershipTo(RawSelector),
    Delay {
        from: RawSelector,
        to: RawSelector,
        extra: String,
        lasting: String,
    },
    CrashAfterVote(RawSelector, String),
    IsolateLeaderOnAppend(String),
    IsolateLeaderOnCommit(String),
}

#[derive(Deserialize)]
enum RawExpectation {
    NewLeaderWithin(String),
    WorkloadsRecoveredWithin(String),
    NoLostWrites,
    Linearizable,
    AtMostOneRunningCopy,
    NoFalseReschedules,
    MaxReplacements(u64),
    MaxLeaderChanges(u64),
    MinLeaderChanges(u64),
    MedianWriteLatencyWithin(String),
    MedianReadLatencyWithin(String),
    WorkloadEnds(String, String),
    TransfersReachTarget(String),
}

use keel_core::duration::format as format_duration;
pub use keel_core::duration::parse as parse_duration;

// ------------------------------------------------------------------ locating fields in the text

/// Where one field or list element is written: `path` as error messages name it
/// (`clients.keys`, `faults[2].at`), from the start of its name (or of the element) to just past
/// its value, as byte offsets.
#[derive(Debug)]
struct Span {
    path: String,
    start: usize,
    end: usize,
}

/// Field positions in a scenario's text, found by a light scan that knows RON's strings,
/// comments and brackets but not its types; it never fails, so it also works on text that
/// `ron` refuses.
struct Locator<'t> {
    file: &'t str,
    text: &'t str,
    spans: Vec<Span>,
}

impl<'t> Locator<'t> {
    fn new(file: &'t str, text: &'t str) -> Locator<'t> {
        let mut scan = Scanner {
            b: text.as_bytes(),
            i: 0,
            spans: Vec::new(),
        };
        scan.document();
        Locator {
            file,
            text,
            spans: scan.spans,
        }
    }

    /// The first span written for `path`, or else for its nearest written ancestor.
    fn span(&self, path: &str) -> Option<&Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.iter().find(|s| s.path == p) {
                return Some(s);
            }
            p = parent(p)?;
        }
    }

    /// Where `path` (or its nearest written ancestor) starts; the top of the file if nowhere.
    fn at(&self, path: &str) -> usize {
        self.span(path).map_or(0, |s| s.start)
    }

    /// The smallest span holding the byte offset `off`. Ends are exclusive: ron reports a
    /// struct's missing field at its closing `)`, which is where its last value ends.
    fn innermost(&self, off: usize) -> Option<&Span> {
        self.spans
            .iter()
            .filter(|s| s.start <= off && off < s.end)
            .min_by_key(|s| s.end - s.start)
    }

    /// The byte offset of ron's 1-based (line, column in characters).
    fn offset(&self, line: usize, col: usize) -> usize {
        let line_start: usize = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let rest = self.text.get(line_start..).unwrap_or("");
        line_start
            + rest
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i)
    }

    /// The 1-based (line, column in characters) of a byte offset.
    fn line_col(&self, off: usize) -> (usize, usize) {
        let before = self.text.get(..off).unwrap_or(self.text);
        let line = 1 + before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, 1 + before[line_start..].chars().count())
    }

    fn error_at(&self, off: usize, field: Option<String>, message: String) -> ScenarioError {
        let (line, column) = self.line_col(off);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            field,
            message,
        }
    }

    /// An error in the field at `path`, placed where that field is written.
    fn error(&self, path: &str, message: String) -> ScenarioError {
        self.error_at(self.at(path), Some(path.to_string()), message)
    }
}

/// `faults[1].at` → `faults[1]` → `faults` → `` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Nesting deeper than this is scanned flat (no recursion), so hostile input cannot overflow the
/// stack; real scenarios nest four levels.
const MAX_DEPTH: usize = 32;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    spans: Vec<Span>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn peek2(&self) -> Option<u8> {
        self.b.get(self.i + 1).copied()
    }

    /// Skips whitespace, `// line` and (nested) `/* block */` comments.
    fn trivia(&mut self) {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_ascii_whitespace() => self.i += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    self.i += 2;
                    let mut depth = 1;
                    while depth > 0 && self.i < self.b.len() {
                        match (self.peek(), self.peek2()) {
                            (Some(b'/'), Some(b'*')) => (depth, self.i) = (depth + 1, self.i + 2),
                            (Some(b'*'), Some(b'/')) => (depth, self.i) = (depth - 1, self.i + 2),
                            _ => self.i += 1,
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn document(&mut self) {
        self.trivia();
        // `#![enable(...)]` extension attributes.
        while self.peek() == Some(b'#') {
            while let Some(c) = self.peek() {
                self.i += 1;
                if c == b']' {
                    break;
                }
            }
            self.trivia();
        }
        self.value("", 0);
    }

    /// Scans one value; consumes at least one byte unless at the end of the text.
    fn value(&mut self, path: &str, depth: usize) {
        self.trivia();
        let Some(c) = self.peek() else { return };
        if depth > MAX_DEPTH {
            self.i += 1;
            return;
        }
        match c {
            b'"' => self.string(),
            b'r' if matches!(self.peek2(), Some(b'"' | b'#')) => self.raw_string(),
            b'(' => self.group(path, depth),
            b'[' => self.list(path, depth),
            b'{' => self.map(path, depth),
            c if is_atom(c) => {
                while self.peek().is_some_and(is_atom) {
                    self.i += 1;
                }
                // `Name(...)`: a named struct, tuple struct or enum variant.
                let save = self.i;
                self.trivia();
                if self.peek() == Some(b'(') {
                    self.group(path, depth);
                } else {
                    self.i = save;
                }
            }
            _ => self.i += 1,
        }
    }

    fn string(&mut self) {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return,
                _ => {}
            }
        }
    }

    fn raw_string(&mut self) {
        self.i += 1;
        let mut hashes = 0;
        while self.peek() == Some(b'#') {
            (hashes, self.i) = (hashes + 1, self.i + 1);
        }
        self.i += 1; // the opening quote
        while self.i < self.b.len() {
            let c = self.b[self.i];
            self.i += 1;
            if c == b'"'
                && self.b.len() >= self.i + hashes
                && self.b[self.i..self.i + hashes].iter().all(|&h| h == b'#')
            {
                self.i += hashes;
                return;
            }
        }
    }

    /// `ident :` (not `::`) at the cursor: consumes it and returns the name.
    fn field_name(&mut self) -> Option<String> {
        let start = self.i;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            return None;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        let name = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        self.trivia();
        if self.peek() == Some(b':') && self.peek2() != Some(b':') {
            self.i += 1;
            Some(name)
        } else {
            self.i = start;
            None
        }
    }

    /// The items of a `( ... )` or `[ ... ]` opened at the current byte, up to `close`: `item`
    /// scans one, at its first byte, with its position in the sequence.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self, usize)) {
        self.i += 1;
        let mut index = 0;
        loop {
            self.trivia();
            match self.peek() {
                None => return,
                Some(b) if b == close => {
                    self.i += 1;
                    return;
                }
                Some(b',') => {
                    self.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            item(self, index);
            index += 1;
        }
    }

    /// Scans a value at `path` and records where it stood.
    fn spanned_value(&mut self, path: String, depth: usize, start: usize) {
        self.value(&path, depth);
        self.spans.push(Span {
            path,
            start,
            end: self.i,
        });
    }

    /// `( ... )`: named fields get their own path; unnamed elements (a tuple variant's
    /// contents) belong to the enclosing one.
    fn group(&mut self, path: &str, depth: usize) {
        self.items(b')', |s, _| {
            let start = s.i;
            match s.field_name() {
                Some(name) => s.spanned_value(join(path, &name), depth + 1, start),
                None => s.value(path, depth + 1),
            }
        });
    }

    /// `[ ... ]`: element `i` is `path[i]`.
    fn list(&mut self, path: &str, depth: usize) {
        self.items(b']', |s, index| {
            let start = s.i;
            s.spanned_value(format!("{path}[{index}]"), depth + 1, start);
        });
    }

    /// `{ key: value, ... }`: scanned for brackets only (scenarios have no maps).
    fn map(&mut self, path: &str, depth: usize) {
        self.i += 1;
        loop {
            self.trivia();
            match self.peek() {
                None => return,
                Some(b'}') => {
                    self.i += 1;
                    return;
                }
                Some(b',' | b':') => self.i += 1,
                Some(_) => self.value(path, depth + 1),
            }
        }
    }
}

/// Bytes of identifiers, numbers and other bare words.
fn is_atom(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-' | b'\'') || c >= 0x80
}

// ------------------------------------------------------------------ parsing and validation

impl Scenario {
    /// Reads and parses a scenario file; a read error is a [`ScenarioError`] too.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: None,
            message: format!("cannot read the scenario file: {e}"),
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and checks scenario text; `file` names it in error messages only.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let loc = Locator::new(file, text);
        let raw: RawScenario = ron::from_str(text).map_err(|e| ron_error(&loc, e))?;
        convert(&loc, raw)
    }

    /// The node names, `n1`..`nN`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// The scenario as RON text in the shape [`Scenario::parse`] reads (round trip exact).
    pub fn to_ron(&self) -> String {
        let mut s = String::new();
        s.push_str("Scenario(\n");
        s.push_str(&format!("    name: {:?},\n", self.name));
        s.push_str(&format!("    description: {:?},\n", self.description));
        s.push_str(&format!("    nodes: {},\n", self.nodes));
        s.push_str(&format!(
            "    duration: {:?},\n",
            format_duration(self.duration)
        ));
        let n = &self.network;
        s.push_str(&format!(
            "    network: (latency: ({:?}, {:?}), drop_rate: {:?}, duplicate_rate: {:?}),\n",
            format_duration(n.latency.0),
            format_duration(n.latency.1),
            n.drop_rate,
            n.duplicate_rate
        ));
        let c = &self.clients;
        s.push_str(&format!(
            "    clients: (count: {}, rate_per_sec: {:?}, keys: {}, timeout: {:?}),\n",
            c.count,
            c.rate_per_sec,
            c.keys,
            format_duration(c.timeout)
        ));
        s.push_str("    workloads: [\n");
        for w in &self.workloads {
            s.push_str(&format!(
                "        (name: {:?}, count: {}, max_attempts: {}, watchdog: {:?}, backoff: ({:?}, {:?})),\n",
                w.name,
                w.count,
                w.max_attempts,
                format_duration(w.watchdog.unwrap_or_default()),
                format_duration(w.backoff.0),
                format_duration(w.backoff.1)
            ));
        }
        s.push_str("    ],\n    faults: [\n");
        for f in &self.faults {
            s.push_str(&format!(
                "        (at: {:?}, fault: {}),\n",
                format_duration(f.at),
                fault_ron(&f.fault)
            ));
        }
        s.push_str("    ],\n    expect: [");
        let expect: Vec<String> = self.expect.iter().map(expectation_ron).collect();
        s.push_str(&expect.join(", "));
        s.push_str("],\n");
        if !self.lease_reads {
            s.push_str("    lease_reads: false,\n");
        }
        s.push_str(")\n");
        s
    }
}

fn selector_ron(s: &Selector) -> String {
    match s {
        Selector::Node(n) => format!("Node({n:?})"),
        Selector::Leader => "Leader".into(),
        Selector::Follower => "Follower".into(),
        Selector::LastCrashed => "LastCrashed".into(),
        Selector::Random => "Random".into(),
    }
}

/// A fault as the scenario file writes it.
pub(crate) fn fault_ron(f: &Fault) -> String {
    let d = |d: &Duration| format!("{:?}", format_duration(*d));
    match f {
        Fault::Crash(s) => format!("Crash({})", selector_ron(s)),
        Fault::Restart(s) => format!("Restart({})", selector_ron(s)),
        Fault::Partition(groups) => format!("Partition({groups:?})"),
        Fault::Isolate(s) => format!("Isolate({})", selector_ron(s)),
        Fault::OneWay(a, b) => format!("OneWay({}, {})", selector_ron(a), selector_ron(b)),
        Fault::Heal => "Heal".into(),
        Fault::Hang(s, t) => format!("Hang({}, {})", selector_ron(s), d(t)),
        Fault::Slow(s, factor, t) => format!("Slow({}, {factor:?}, {})", selector_ron(s), d(t)),
        Fault::Overload {
            rate_per_sec,
            lasting,
        } => format!(
            "Overload(rate_per_sec: {rate_per_sec:?}, lasting: {})",
            d(lasting)
        ),
        Fault::CrashWorkload(w) => format!("CrashWorkload({w:?})"),
        Fault::HangWorkload(w) => format!("HangWorkload({w:?})"),
        Fault::TransferLeadership => "TransferLeadership".into(),
        Fault::TransferLeadershipTo(s) => format!("TransferLeadershipTo({})", selector_ron(s)),
        Fault::Delay {
            from,
            to,
            extra,
            lasting,
        } => format!(
            "Delay(from: {}, to: {}, extra: {}, lasting: {})",
            selector_ron(from),
            selector_ron(to),
            d(extra),
            d(lasting)
        ),
        Fault::CrashAfterVote(s, down) => {
            format!("CrashAfterVote({}, {})", selector_ron(s), d(down))
        }
        Fault::IsolateLeaderOnAppend(t) => format!("IsolateLeaderOnAppend({})", d(t)),
        Fault::IsolateLeaderOnCommit(t) => format!("IsolateLeaderOnCommit({})", d(t)),
    }
}

fn expectation_ron(e: &Expectation) -> String {
    match e {
        Expectation::NewLeaderWithin(d) => format!("NewLeaderWithin({:?})", format_duration(*d)),
        Expectation::WorkloadsRecoveredWithin(d) => {
            format!("WorkloadsRecoveredWithin({:?})", format_duration(*d))
        }
        Expectation::NoLostWrites => "NoLostWrites".into(),
        Expectation::Linearizable => "Linearizable".into(),
        Expectation::AtMostOneRunningCopy => "AtMostOneRunningCopy".into(),
        Expectation::NoFalseReschedules => "NoFalseReschedules".into(),
        Expectation::MaxReplacements(n) => format!("MaxReplacements({n})"),
        Expectation::MaxLeaderChanges(n) => format!("MaxLeaderChanges({n})"),
        Expectation::MinLeaderChanges(n) => format!("MinLeaderChanges({n})"),
        Expectation::MedianWriteLatencyWithin(d) => {
            format!("MedianWriteLatencyWithin({:?})", format_duration(*d))
        }
        Expectation::MedianReadLatencyWithin(d) => {
            format!("MedianReadLatencyWithin({:?})", format_duration(*d))
        }
        Expectation::WorkloadEnds(w, st) => format!("WorkloadEnds({w:?}, {st:?})"),
        Expectation::TransfersReachTarget(d) => {
            format!("TransfersReachTarget({:?})", format_duration(*d))
        }
    }
}

/// Turns ron's error into ours. The position is ron's; the field is the path of the innermost
/// field or list element the position falls in (joined with the field ron names, if any).
fn ron_error(loc: &Locator<'_>, e: ron::error::SpannedError) -> ScenarioError {
    let (line, column) = (e.span.start.line.max(1), e.span.start.col.max(1));
    let off = loc.offset(line, column);
    let here = loc.innermost(off).map(|s| s.path.as_str());
    let field = match &e.code {
        ron::Error::NoSuchStructField { found, .. } => Some(named_field(here, found)),
        ron::Error::DuplicateStructField { field, .. } => Some(named_field(here, field)),
        // ron points at the end of the struct that lacks the field.
        ron::Error::MissingStructField { field, .. } => Some(join(here.unwrap_or(""), field)),
        _ => here.map(str::to_string),
    };
    let message = match &e.code {
        ron::Error::NoSuchStructField {
            expected, found, ..
        } => format!(
            "unknown field `{found}`; expected one of: {}",
            expected.join(", ")
        ),
        ron::Error::MissingStructField { field, .. } => format!("missing field `{field}`"),
        other => other.to_string(),
    };
    ScenarioError {
        file: loc.file.to_string(),
        line,
        column,
        field,
        message,
    }
}

/// The path of field `name`, which ron reported at a position inside `here`: ron points at the
/// name itself (which the scan recorded) or into the struct that holds it.
fn named_field(here: Option<&str>, name: &str) -> String {
    match here {
        Some(p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        p => join(p.unwrap_or(""), name),
    }
}

fn convert(loc: &Locator<'_>, raw: RawScenario) -> Result<Scenario, ScenarioError> {
    let dur = |path: &str, s: &str| parse_duration(s).map_err(|m| loc.error(path, m));
    let positive = |path: &str, s: &str| {
        let d = dur(path, s)?;
        if d.is_zero() {
            return Err(loc.error(path, "the duration must be above zero".into()));
        }
        Ok(d)
    };

    if !(1..=9).contains(&raw.nodes) {
        return Err(loc.error(
            "nodes",
            format!("a cluster has 1 to 9 nodes, not {}", raw.nodes),
        ));
    }
    let duration = positive("duration", &raw.duration)?;

    let latency = (
        dur("network.latency", &raw.network.latency.0)?,
        dur("network.latency", &raw.network.latency.1)?,
    );
    if latency.0 > latency.1 {
        return Err(loc.error(
            "network.latency",
            format!(
                "the minimum ({}) is above the maximum ({})",
                format_duration(latency.0),
                format_duration(latency.1)
            ),
        ));
    }
    for (name, v) in [
        ("network.drop_rate", raw.network.drop_rate),
        ("network.duplicate_rate", raw.network.duplicate_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(loc.error(
                name,
                format!("a probability is between 0.0 and 1.0, not {v}"),
            ));
        }
    }

    let c = &raw.clients;
    if !c.rate_per_sec.is_finite() || c.rate_per_sec < 0.0 {
        return Err(loc.error(
            "clients.rate_per_sec",
            format!("must be a non-negative number, not {}", c.rate_per_sec),
        ));
    }
    if c.count > 0 && c.keys == 0 {
        return Err(loc.error("clients.keys", "clients need at least one key".into()));
    }
    let timeout = positive("clients.timeout", &c.timeout)?;

    let mut workloads: Vec<WorkloadSpec> = Vec::new();
    for (i, w) in raw.workloads.into_iter().enumerate() {
        let path = format!("workloads[{i}].name");
        if w.name.trim().is_empty() {
            return Err(loc.error(&path, "a workload needs a name".into()));
        }
        if workloads.iter().any(|x| x.name == w.name) {
            return Err(loc.error(&path, format!("workload {:?} is listed twice", w.name)));
        }
        if !(1..=1000).contains(&w.count) {
            return Err(loc.error(
                &format!("workloads[{i}].count"),
                format!("a workload has 1 to 1000 instances, not {}", w.count),
            ));
        }
        if w.max_attempts == 0 {
            return Err(loc.error(
                &format!("workloads[{i}].max_attempts"),
                "at least one attempt is needed".into(),
            ));
        }
        let watchdog = dur(&format!("workloads[{i}].watchdog"), &w.watchdog)?;
        let backoff_path = format!("workloads[{i}].backoff");
        let backoff = (
            dur(&backoff_path, &w.backoff.0)?,
            dur(&backoff_path, &w.backoff.1)?,
        );
        if backoff.0 > backoff.1 {
            return Err(loc.error(&backoff_path, "the base is above the cap".to_string()));
        }
        workloads.push(WorkloadSpec {
            name: w.name,
            count: w.count,
            max_attempts: w.max_attempts,
            watchdog: (!watchdog.is_zero()).then_some(watchdog),
            backoff,
        });
    }

    let names: Vec<String> = (1..=raw.nodes).map(|i| format!("n{i}")).collect();
    let mut faults = Vec::new();
    let mut last_at = Duration::ZERO;
    for (i, f) in raw.faults.into_iter().enumerate() {
        let at_path = format!("faults[{i}].at");
        let at = dur(&at_path, &f.at)?;
        if at >= duration {
            return Err(loc.error(
                &at_path,
                format!(
                    "fault at {} is after the end of the scenario ({})",
                    format_duration(at),
                    format_duration(duration)
                ),
            ));
        }
        if at < last_at {
            return Err(loc.error(
                &at_path,
                format!(
                    "faults must be in time order: {} comes after {}",
                    format_duration(at),
                    format_duration(last_at)
                ),
            ));
        }
        last_at = at;
        let path = format!("faults[{i}].fault");
        let node = |n: String| -> Result<String, ScenarioError> {
            if names.contains(&n) {
                return Ok(n);
            }
            // Point at the name itself inside this fault, if it is written plainly.
            let quoted = format!("{n:?}");
            let off = loc.span(&path).map_or(0, |s| {
                loc.text
                    .get(s.start..s.end)
                    .and_then(|t| t.find(&quoted))
                    .map_or(s.start, |k| s.start + k)
            });
            Err(loc.error_at(
                off,
                Some(path.clone()),
                format!(
                    "unknown node {quoted} (this scenario has n1..n{})",
                    raw.nodes
                ),
            ))
        };
        let sel = |s: RawSelector| -> Result<Selector, ScenarioError> {
            Ok(match s {
                RawSelector::Node(n) => Selector::Node(node(n)?),
                RawSelector::Leader => Selector::Leader,
                RawSelector::Follower => Selector::Follower,
                RawSelector::LastCrashed => Selector::LastCrashed,
                RawSelector::Random => Selector::Random,
            })
        };
        let workload = |w: String| -> Result<String, ScenarioError> {
            // A workload by its name (any of its instances) or one instance, `name-K`.
            let instance = |x: &WorkloadSpec| {
                w.strip_prefix(x.name.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|k| k.parse::<usize>().ok())
                    .is_some_and(|k| (1..=x.count).contains(&k) && x.count > 1)
            };
            if workloads.iter().any(|x| x.name == w || instance(x)) {
                Ok(w)
            } else {
                Err(loc.error(
                    &path,
                    format!("unknown workload {w:?} (not listed in `workloads`)"),
                ))
            }
        };
        let fault = match f.fault {
            RawFault::Crash(s) => Fault::Crash(sel(s)?),
            RawFault::Restart(s) => Fault::Restart(sel(s)?),
            RawFault::Partition(groups) => Fault::Partition(
                groups
                    .into_iter()
                    .map(|g| g.into_iter().map(node).collect::<Result<Vec<_>, _>>())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            RawFault::Isolate(s) => Fault::Isolate(sel(s)?),
            RawFault::OneWay(a, b) => Fault::OneWay(sel(a)?, sel(b)?),
            RawFault::Heal => Fault::Heal,
            RawFault::TransferLeadership => Fault::TransferLeadership,
            RawFault::TransferLeadershipTo(s) => Fault::TransferLeadershipTo(sel(s)?),
            RawFault::Delay {
                from,
                to,
                extra,
                lasting,
            } => Fault::Delay {
                from: sel(from)?,
                to: sel(to)?,
                extra: positive(&format!("{path}.extra"), &extra)?,
                lasting: positive(&format!("{path}.lasting"), &lasting)?,
            },
            RawFault::Hang(s, d) => Fault::Hang(sel(s)?, positive(&path, &d)?),
            RawFault::Slow(s, factor, d) => {
                if !factor.is_finite() || factor < 1.0 {
                    return Err(loc.error(
                        &path,
                        format!("a slow-down factor is at least 1.0, not {factor}"),
                    ));
                }
                Fault::Slow(sel(s)?, factor, positive(&path, &d)?)
            }
            RawFault::Overload {
                rate_per_sec,
                lasting,
            } => {
                if !rate_per_sec.is_finite() || rate_per_sec <= 0.0 {
                    return Err(loc.error(
                        &path,
                        format!("the overload rate must be above zero, not {rate_per_sec}"),
                    ));
                }
                Fault::Overload {
                    rate_per_sec,
                    lasting: positive(&path, &lasting)?,
                }
            }
            RawFault::CrashWorkload(w) => Fault::CrashWorkload(workload(w)?),
            RawFault::HangWorkload(w) => Fault::HangWorkload(workload(w)?),
            RawFault::CrashAfterVote(s, down) => {
                Fault::CrashAfterVote(sel(s)?, positive(&path, &down)?)
            }
            RawFault::IsolateLeaderOnAppend(t) => {
                Fault::IsolateLeaderOnAppend(positive(&path, &t)?)
            }
            RawFault::IsolateLeaderOnCommit(t) => {
                Fault::IsolateLeaderOnCommit(positive(&path, &t)?)
            }
        };
        faults.push(TimedFault { at, fault });
    }

    let mut expect = Vec::new();
    for (i, e) in raw.expect.into_iter().enumerate() {
        let path = format!("expect[{i}]");
        expect.push(match e {
            RawExpectation::NewLeaderWithin(d) => {
                Expectation::NewLeaderWithin(positive(&path, &d)?)
            }
            RawExpectation::WorkloadsRecoveredWithin(d) => {
                Expectation::WorkloadsRecoveredWithin(positive(&path, &d)?)
            }
            RawExpectation::NoLostWrites => Expectation::NoLostWrites,
            RawExpectation::Linearizable => Expectation::Linearizable,
            RawExpectation::AtMostOneRunningCopy => Expectation::AtMostOneRunningCopy,
            RawExpectation::NoFalseReschedules => Expectation::NoFalseReschedules,
            RawExpectation::MaxReplacements(n) => Expectation::MaxReplacements(n),
            RawExpectation::MaxLeaderChanges(n) => Expectation::MaxLeaderChanges(n),
            RawExpectation::MinLeaderChanges(n) => Expectation::MinLeaderChanges(n),
            RawExpectation::MedianWriteLatencyWithin(d) => {
                Expectation::MedianWriteLatencyWithin(positive(&path, &d)?)
            }
            RawExpectation::MedianReadLatencyWithin(d) => {
                Expectation::MedianReadLatencyWithin(positive(&path, &d)?)
            }
            RawExpectation::TransfersReachTarget(d) => {
                Expectation::TransfersReachTarget(positive(&path, &d)?)
            }
            RawExpectation::WorkloadEnds(w, st) => {
                if !workloads.iter().any(|x| x.name == w) {
                    return Err(loc.error(
                        &path,
                        format!("unknown workload {w:?} (not listed in `workloads`)"),
                    ));
                }
                if !WORKLOAD_STATUSES.contains(&st.as_str()) {
                    return Err(loc.error(
                        &path,
                        format!(
                            "unknown status {st:?}: expected one of {}",
                            WORKLOAD_STATUSES.join(", ")
                        ),
                    ));
                }
                Expectation::WorkloadEnds(w, st)
            }
        });
    }

    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        nodes: raw.nodes,
        duration,
        network: NetworkSpec {
            latency,
            drop_rate: raw.network.drop_rate,
            duplicate_rate: raw.network.duplicate_rate,
        },
        clients: ClientSpec {
            count: c.count,
            rate_per_sec: c.rate_per_sec,
            keys: c.keys,
            timeout,
        },
        workloads,
        faults,
        expect,
        lease_reads: raw.lease_reads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
    }

    fn err(text: &str) -> ScenarioError {
        Scenario::parse(text, "t.ron").expect_err("the scenario should be refused")
    }

    const BASE: &str = "Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"30s\",\n";

    /// `e` names line `line` and field `field`.
    #[track_caller]
    fn assert_at(e: &ScenarioError, line: usize, field: &str) {
        assert_eq!((e.line, e.field.as_deref()), (line, Some(field)), "{e}");
    }

    /// The base scenario with one fault, `fault` at `at`.
    fn one_fault(at: &str, fault: &str) -> String {
        format!("{BASE}    faults: [\n        (at: \"{at}\", fault: {fault}),\n    ],\n)\n")
    }

    #[test]
    fn every_scenario_file_loads_and_round_trips() {
        let mut n = 0;
        for entry in std::fs::read_dir(dir()).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "ron") {
                continue;
            }
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let again = Scenario::parse(&s.to_ron(), "round-trip")
                .unwrap_or_else(|e| panic!("{e}\n{}", s.to_ron()));
            assert_eq!(s, again, "{}", path.display());
            n += 1;
        }
        assert!(n >= 11, "only {n} scenario files");
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let s = Scenario::parse(&format!("{BASE})\n"), "t.ron").expect("parses");
        assert_eq!(s.network, NetworkSpec::default());
        assert_eq!(s.clients, ClientSpec::default());
        assert!(s.faults.is_empty() && s.expect.is_empty() && s.workloads.is_empty());
        assert_eq!(s.node_names(), ["n1", "n2", "n3"]);
    }

    #[test]
    fn an_unknown_field_names_its_line_and_field() {
        let e = err(&format!("{BASE}    frobnicate: true,\n)\n"));
        assert_at(&e, 5, "frobnicate");
        let text = e.to_string();
        assert!(text.starts_with("t.ron:5:"), "{text}");
        assert!(
            text.contains("frobnicate") && text.contains("duration"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_duration_names_its_line_and_field() {
        let e =
            err("Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"30 parsecs\",\n)\n");
        assert_at(&e, 4, "duration");
        assert!(e.message.contains("250ms"), "{e}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 3,\n)\n");
        assert_eq!(e.field.as_deref(), Some("duration"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_field_it_is_in() {
        let e =
            err("Scenario(\n    name: \"t\",\n    nodes: \"three\",\n    duration: \"1s\",\n)\n");
        assert_at(&e, 3, "nodes");
    }

    #[test]
    fn an_unknown_node_names_the_fault() {
        let e = err(&one_fault(
            "1s",
            "Crash(Leader)),\n        (at: \"2s\", fault: Crash(Node(\"n9\"))",
        ));
        assert_at(&e, 7, "faults[1].fault");
        assert!(
            e.message.contains("\"n9\"") && e.message.contains("n1..n3"),
            "{e}"
        );
        let e = err(&one_fault("2s", "Partition([[\"n1\"], [\"n2\", \"n7\"]])"));
        assert_at(&e, 6, "faults[0].fault");
    }

    #[test]
    fn a_fault_after_the_end_or_out_of_order_is_refused() {
        let e = err(&one_fault("40s", "Heal"));
        assert_at(&e, 6, "faults[0].at");
        assert!(e.message.contains("after the end"), "{e}");
        let e = err(&one_fault("5s", "Heal),\n        (at: \"4s\", fault: Heal"));
        assert_at(&e, 7, "faults[1].at");
    }

    #[test]
    fn semantic_limits_are_enforced() {
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 0,\n    duration: \"1s\",\n)\n");
        assert_at(&e, 3, "nodes");
        let e = err(&format!(
            "{BASE}    network: (latency: (\"5ms\", \"1ms\")),\n)\n"
        ));
        assert_at(&e, 5, "network.latency");
        let e = err(&format!("{BASE}    network: (drop_rate: 1.5),\n)\n"));
        assert_eq!(e.field.as_deref(), Some("network.drop_rate"), "{e}");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Slow(Leader, 0.5, \"1s\"))],\n)\n"
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: CrashWorkload(\"web\"))],\n)\n"
        ));
        assert!(e.message.contains("unknown workload"), "{e}");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Hang(Leader, \"0s\"))],\n)\n"
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
    }

    #[test]
    fn a_syntax_error_has_a_position() {
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 3\n    duration: \"1s\",\n)\n");
        assert!(e.line >= 3, "{e}");
    }

    #[test]
    fn the_display_form_is_exact() {
        let mut e = ScenarioError {
            file: "f.ron".into(),
            line: 5,
            column: 9,
            field: Some("nodes".into()),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "f.ron:5:9: field `nodes`: bad");
        e.field = None;
        assert_eq!(e.to_string(), "f.ron:5:9: bad");
    }

    #[test]
    fn nested_errors_name_the_full_path() {
        let e = err(&format!("{BASE}    clients: (count: 2, bogus: 1),\n)\n"));
        assert_eq!((e.line, e.column), (5, 25), "{e}");
        assert_eq!(e.field.as_deref(), Some("clients.bogus"), "{e}");
        assert!(e.message.contains("rate_per_sec"), "{e}");
        let e = err(&format!("{BASE}    clients: (count: \"x\"),\n)\n"));
        assert_at(&e, 5, "clients.count");
        let e = err(&format!(
            "{BASE}    workloads: [(name: \"a\"), (count: 2)],\n)\n"
        ));
        assert_at(&e, 5, "workloads[1].name");
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 3)\n");
        assert_at(&e, 3, "duration");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Overload(rate_per_sec: 5))],\n)\n"
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault.lasting"), "{e}");
        let e = err(&format!(
            "{BASE}    expect: [NoLostWrites, Linearisable],\n)\n"
        ));
        assert_at(&e, 5, "expect[1]");
    }

    #[test]
    fn entries_on_one_line_are_told_apart() {
        let line =
            "    faults: [(at: \"1s\", fault: Heal), (at: \"2s\", fault: Crash(Node(\"n4\")))],\n";
        let e = err(&format!("{BASE}{line})\n"));
        assert_eq!(e.field.as_deref(), Some("faults[1].fault"), "{e}");
        assert_eq!(
            (e.line, e.column),
            (5, 1 + line.find("\"n4\"").unwrap()),
            "{e}"
        );
        let line = "    faults: [(at: \"1s\", fault: Heal), (at: \"2s\", fault: Crash(Leeder))],\n";
        let e = err(&format!("{BASE}{line})\n"));
        assert_at(&e, 5, "faults[1].fault");
        let line = "    faults: [(at: \"5s\", fault: Heal), (at: \"1s\", fault: Heal)],\n";
        let e = err(&format!("{BASE}{line})\n"));
        assert_eq!(e.field.as_deref(), Some("faults[1].at"), "{e}");
        assert_eq!(e.column, 1 + line.rfind("at:").unwrap(), "{e}");
    }

    #[test]
    fn fields_are_found_in_their_own_struct_despite_strings_and_comments() {
        // `rate_per_sec:` of the overload comes first, `at:` hides in a string and a comment.
        let text = format!(
            "{BASE}    description: \"faults: [(at: \\\"1s\\\")]\", /* at: \"0s\" */\n    faults: [\n        // (at: \"3s\", fault: Heal),\n        (at: \"1s\", fault: Overload(rate_per_sec: 10, lasting: \"1s\")),\n        (at: \"99s\", fault: Heal),\n    ],\n    clients: (rate_per_sec: -1),\n)\n"
        );
        let e = err(&text.replace("-1", "1"));
        assert_at(&e, 9, "faults[1].at");
        let e = err(&text.replace("\"99s\"", "\"2s\""));
        assert_at(&e, 11, "clients.rate_per_sec");
    }

    #[test]
    fn more_semantic_limits() {
        let w = "    workloads: [(name: \"web\"), (name: \"web\")],\n";
        let e = err(&format!("{BASE}{w})\n"));
        assert_eq!(e.field.as_deref(), Some("workloads[1].name"), "{e}");
        let e = err(&format!("{BASE}    workloads: [(name: \"\")],\n)\n"));
        assert_eq!(e.field.as_deref(), Some("workloads[0].name"), "{e}");
        let e = err(&format!("{BASE}    clients: (count: 1, keys: 0),\n)\n"));
        assert_at(&e, 5, "clients.keys");
        let e = err(&format!("{BASE}    clients: (rate_per_sec: -5),\n)\n"));
        assert_eq!(e.field.as_deref(), Some("clients.rate_per_sec"), "{e}");
        let e = err(&format!("{BASE}    network: (duplicate_rate: -0.1),\n)\n"));
        assert_eq!(e.field.as_deref(), Some("network.duplicate_rate"), "{e}");
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 10,\n    duration: \"1s\",\n)\n");
        assert_at(&e, 3, "nodes");
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"0s\",\n)\n");
        assert_at(&e, 4, "duration");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Overload(rate_per_sec: 10, lasting: \"0s\"))],\n)\n"
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
        let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Slow(Leader, 2, \"0ms\"))],\n)\n"
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
        let e = err(&format!(
            "{BASE}    workloads: [(name: \"web\")],\n    faults: [(at: \"1s\", fault: HangWorkload(\"db\"))],\n)\n"
        ));
        assert_at(&e, 6, "faults[0].fault");
        let e = err(&format!(
            "{BASE}    expect: [NewLeaderWithin(\"soon\")],\n)\n"
        ));
        assert_at(&e, 5, "expect[0]");
        // Integer literals are fine where a float is expected, and workload faults resolve.
        let s = Scenario::parse(
            &format!("{BASE}    network: (drop_rate: 1),\n    workloads: [(name: \"web\")],\n    faults: [(at: \"1s\", fault: CrashWorkload(\"web\")), (at: \"1s\", fault: Slow(Random, 3, \"2s\"))],\n)\n"),
            "t.ron",
        )
        .unwrap();
        assert_eq!(s.network.drop_rate, 1.0);
        assert_eq!(s.workloads[0].count, 1);
        assert_eq!(s.workloads[0].max_attempts, 3);
        assert_eq!(
            s.faults[1].fault,
            Fault::Slow(Selector::Random, 3.0, Duration::from_secs(2))
        );
    }

    #[test]
    fn armed_faults_parse_and_bad_ones_are_located() {
        let s = Scenario::parse(
            &one_fault("1s", "CrashAfterVote(LastCrashed, \"2ms\")),\n        (at: \"2s\", fault: IsolateLeaderOnAppend(\"800ms\")"),
            "t.ron",
        )
        .expect("parses");
        assert_eq!(
            s.faults[0].fault,
            Fault::CrashAfterVote(Selector::LastCrashed, Duration::from_millis(2))
        );
        assert_eq!(
            s.faults[1].fault,
            Fault::IsolateLeaderOnAppend(Duration::from_millis(800))
        );
        assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
        let e = err(&one_fault(
            "1s",
            "Heal),\n        (at: \"2s\", fault: CrashAfterVote(Node(\"n4\"), \"1ms\")",
        ));
        assert_at(&e, 7, "faults[1].fault");
        let e = err(&one_fault("1s", "IsolateLeaderOnAppend(\"0s\")"));
        assert_at(&e, 6, "faults[0].fault");
        assert!(e.message.contains("above zero"), "{e}");
        let e = err(&one_fault("1s", "CrashAfterVote(Leader, \"soon\")"));
        assert_at(&e, 6, "faults[0].fault");
        let e = err(&one_fault("1s", "CrashAfterVote(\"1ms\")"));
        assert_at(&e, 6, "faults[0].fault");
    }

    #[test]
    fn delays_parse_and_bad_ones_are_located() {
        let s = Scenario::parse(
            &one_fault(
                "1s",
                "Delay(from: Node(\"n1\"), to: Leader, extra: \"150ms\", lasting: \"2s\")",
            ),
            "t.ron",
        )
        .expect("parses");
        assert_eq!(
            s.faults[0].fault,
            Fault::Delay {
                from: Selector::Node("n1".into()),
                to: Selector::Leader,
                extra: Duration::from_millis(150),
                lasting: Duration::from_secs(2),
            }
        );
        assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
        // A malformed extra latency names its line and the field inside the fault.
        let line = "        (at: \"2s\", fault: Delay(from: Leader, to: Follower, extra: \"soon\", lasting: \"1s\")),\n";
        let e = err(&format!(
            "{BASE}    faults: [\n        (at: \"1s\", fault: Heal),\n{line}    ],\n)\n"
        ));
        assert_at(&e, 7, "faults[1].fault.extra");
        assert_eq!(e.column, 1 + line.find("extra:").unwrap(), "{e}");
        assert!(e.message.contains("250ms"), "{e}");
        let e = err(&one_fault(
            "1s",
            "Delay(from: Leader, to: Follower, extra: \"5ms\", lasting: \"0s\")",
        ));
        assert_at(&e, 6, "faults[0].fault.lasting");
        assert!(e.message.contains("above zero"), "{e}");
        let e = err(&one_fault(
            "1s",
            "Delay(from: Leader, to: Follower, lasting: \"1s\")",
        ));
        assert_eq!(e.field.as_deref(), Some("faults[0].fault.extra"), "{e}");
        assert!(e.message.contains("missing field `extra`"), "{e}");
        let e = err(&one_fault(
            "1s",
            "Delay(from: Node(\"n7\"), to: Leader, extra: \"5ms\", lasting: \"1s\")",
        ));
        assert_at(&e, 6, "faults[0].fault");
        assert!(e.message.contains("\"n7\""), "{e}");
    }

    #[test]
    fn commit_cut_offs_parse_and_bad_ones_are_located() {
        let s = Scenario::parse(&one_fault("3s", "IsolateLeaderOnCommit(\"2s\")"), "t.ron")
            .expect("parses");
        assert_eq!(
            s.faults[0].fault,
            Fault::IsolateLeaderOnCommit(Duration::from_secs(2))
        );
        assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
        let e = err(&one_fault("1s", "IsolateLeaderOnCommit(\"0ms\")"));
        assert_at(&e, 6, "faults[0].fault");
        assert!(e.message.contains("above zero"), "{e}");
    }

    #[test]
    fn named_handovers_and_their_expectation_parse() {
        let s = Scenario::parse(
            &format!("{BASE}    faults: [\n        (at: \"1s\", fault: TransferLeadership),\n        (at: \"2s\", fault: TransferLeadershipTo(Node(\"n3\"))),\n    ],\n    expect: [TransfersReachTarget(\"1s\")],\n)\n"),
            "t.ron",
        )
        .expect("parses");
        assert_eq!(s.faults[0].fault, Fault::TransferLeadership);
        assert_eq!(
            s.faults[1].fault,
            Fault::TransferLeadershipTo(Selector::Node("n3".into()))
        );
        assert_eq!(
            s.expect,
            [Expectation::TransfersReachTarget(Duration::from_secs(1))]
        );
        assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
        let e = err(&one_fault("1s", "TransferLeadershipTo(Node(\"n4\"))"));
        assert_at(&e, 6, "faults[0].fault");
        let e = err(&format!(
            "{BASE}    expect: [NoLostWrites, TransfersReachTarget(\"0s\")],\n)\n"
        ));
        assert_at(&e, 5, "expect[1]");
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let e = Scenario::load(std::path::Path::new("/nonexistent/x.ron")).unwrap_err();
        assert_eq!(e.file, "/nonexistent/x.ron");
        assert!(e.to_string().starts_with("/nonexistent/x.ron:"), "{e}");
    }

    #[test]
    fn odd_values_round_trip() {
        let s = Scenario {
            name: "quote \" back\\slash \u{e9} \u{1F980} tab\t".into(),
            description: "line\nbreak // not a comment".into(),
            nodes: 9,
            duration: Duration::from_nanos(90_000_000_123),
            network: NetworkSpec {
                latency: (
                    Duration::from_micros(1_500),
                    Duration::from_nanos(2_000_001),
                ),
                drop_rate: 0.1,
                duplicate_rate: 1.0,
            },
            clients: ClientSpec {
                count: 0,
                rate_per_sec: 0.3,
                keys: 0,
                timeout: Duration::from_millis(1_250),
            },
            workloads: vec![WorkloadSpec {
                name: "w\"1".into(),
                count: 1000,
                max_attempts: 7,
                watchdog: Some(Duration::from_micros(7)),
                backoff: (Duration::from_nanos(1), Duration::from_secs(90)),
            }],
            faults: vec![
                TimedFault {
                    at: Duration::ZERO,
                    fault: Fault::Partition(vec![vec!["n1".into(), "n9".into()], vec![]]),
                },
                TimedFault {
                    at: Duration::from_millis(1),
                    fault: Fault::OneWay(Selector::Node("n2".into()), Selector::LastCrashed),
                },
                TimedFault {
                    at: Duration::from_secs(2),
                    fault: Fault::Overload {
                        rate_per_sec: 12.5,
                        lasting: Duration::from_secs(120),
                    },
                },
                TimedFault {
                    at: Duration::from_secs(3),
                    fault: Fault::HangWorkload("w\"1".into()),
                },
            ],
            expect: vec![
                Expectation::WorkloadsRecoveredWithin(Duration::from_micros(3)),
                Expectation::AtMostOneRunningCopy,
                Expectation::NoFalseReschedules,
            ],
            lease_reads: false,
        };
        let text = s.to_ron();
        assert_eq!(Scenario::parse(&text, "t.ron"), Ok(s), "{text}");
    }
}
