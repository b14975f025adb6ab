//! Scenario files: a cluster, its network, its client load and a fault schedule, in RON.
//!
//! The shape is fixed by `ARCHITECTURE.md`:
//!
//! ```ron
//! Scenario(
//!     name: "leader_kill",
//!     description: "Kill the leader under load.",       // optional, default ""
//!     nodes: 3,                                          // 1..=9, named n1..nN
//!     duration: "30s",                                   // "250ms", "1.5s", "2m", "100us"
//!     network: (latency: ("1ms", "5ms"), drop_rate: 0.0, duplicate_rate: 0.0),   // optional
//!     clients: (count: 4, rate_per_sec: 200, keys: 16, timeout: "1s"),         // optional
//!     workloads: [(name: "web", count: 6, max_attempts: 3)],                     // optional
//!     faults: [(at: "5s", fault: Crash(Leader)), (at: "12s", fault: Restart(LastCrashed))],
//!     expect: [NewLeaderWithin("1s"), NoLostWrites, Linearizable],
//! )
//! ```
//!
//! Defaults: network latency 1–5 ms, no drops or duplicates; 4 clients at 100 operations per second
//! in total over 16 keys with a 1 s timeout; no workloads, faults or expectations.
//!
//! Every error names the file, the line and column, and the field: unknown fields, missing fields,
//! malformed durations, unknown node names, faults out of order or after the end of the run.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// One simulated run's setup and what must hold at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// One sentence on what the scenario shows. Default empty.
    pub description: String,
    /// Cluster size, 1..=9; the nodes are `n1`..`nN`.
    pub nodes: usize,
    /// Simulated time the run lasts.
    pub duration: Duration,
    pub network: NetworkSpec,
    pub clients: ClientSpec,
    pub workloads: Vec<WorkloadSpec>,
    /// In non-decreasing `at` order, each before `duration`.
    pub faults: Vec<TimedFault>,
    /// Liveness and history expectations; the safety checkers always run.
    pub expect: Vec<Expectation>,
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

/// Desired workloads (simulated once workload recovery exists).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    pub name: String,
    /// Copies wanted. Default 1.
    pub count: usize,
    /// Starts before the workload is marked failed for good. Default 3.
    pub max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimedFault {
    pub at: Duration,
    pub fault: Fault,
}

/// Which node a fault hits, resolved when the fault fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
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

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Crash(Selector),
    Restart(Selector),
    /// Two nodes can talk iff some group holds both (groups may overlap: a bridge).
    Partition(Vec<Vec<String>>),
    Isolate(Selector),
    /// Messages from the first node no longer reach the second.
    OneWay(Selector, Selector),
    /// Undo every partition, isolation and one-way cut.
    Heal,
    /// The node processes nothing for the duration, then resumes with stale beliefs.
    Hang(Selector, Duration),
    /// The node's CPU, disk and outgoing links are slower by the factor for the duration.
    Slow(Selector, f64, Duration),
    /// Open-loop client requests at this rate, for this long.
    Overload {
        rate_per_sec: f64,
        lasting: Duration,
    },
    CrashWorkload(String),
    HangWorkload(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    NewLeaderWithin(Duration),
    WorkloadsRecoveredWithin(Duration),
    NoLostWrites,
    Linearizable,
    AtMostOneRunningCopy,
    NoFalseReschedules,
}

/// A scenario file that cannot be run, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
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
    Overload { rate_per_sec: f64, lasting: String },
    CrashWorkload(String),
    HangWorkload(String),
}

#[derive(Deserialize)]
enum RawExpectation {
    NewLeaderWithin(String),
    WorkloadsRecoveredWithin(String),
    NoLostWrites,
    Linearizable,
    AtMostOneRunningCopy,
    NoFalseReschedules,
}

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"100us"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration: write a non-negative number and a unit, e.g. \"250ms\", \"5s\", \"1.5s\", \"2m\""
        )
    };
    let t = s.trim();
    let (number, scale_us) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60e6)
    } else {
        return Err(bad());
    };
    let number = number.trim_end();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let v: f64 = number.parse().map_err(|_| bad())?;
    let us = v * scale_us;
    if !us.is_finite() || us > 1e15 {
        return Err(bad());
    }
    Ok(Duration::from_micros(us.round() as u64))
}

/// Writes a duration the way [`parse_duration`] reads it back exactly.
fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1_000 == 0 {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

// ------------------------------------------------------------------ locating fields in the text

/// Where things are in the source, found by a light scan (comments and strings skipped).
struct Locator<'t> {
    file: &'t str,
    /// Each line with comments blanked out.
    lines: Vec<String>,
}

impl<'t> Locator<'t> {
    fn new(file: &'t str, text: &str) -> Locator<'t> {
        let lines = text
            .lines()
            .map(|l| match l.find("//") {
                // Good enough: `//` inside a string on the same line is rare in scenarios.
                Some(i) if !l[..i].contains('"') || l[..i].matches('"').count() % 2 == 0 => {
                    l[..i].to_string()
                }
                _ => l.to_string(),
            })
            .collect();
        Locator { file, lines }
    }

    /// The first line at or after `from` (0-based) where `name:` starts a field.
    fn field_line(&self, name: &str, from: usize) -> Option<(usize, usize)> {
        for (i, l) in self.lines.iter().enumerate().skip(from) {
            let mut search = 0;
            while let Some(pos) = l[search..].find(name) {
                let at = search + pos;
                let before = l[..at].chars().next_back();
                let after = l[at + name.len()..].trim_start();
                let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                if word_start && after.starts_with(':') {
                    return Some((i, at));
                }
                search = at + name.len();
            }
        }
        None
    }

    /// The line of the `index`-th entry (each starting with `key:`) of the list in field `list`.
    fn entry_line(&self, list: &str, key: &str, index: usize) -> Option<(usize, usize)> {
        let (start, _) = self.field_line(list, 0)?;
        let mut from = start;
        let mut found = None;
        for _ in 0..=index {
            let (line, col) = self.field_line(key, from)?;
            found = Some((line, col));
            from = line + 1;
        }
        found
    }

    /// The first line at or after `from` containing `needle`.
    fn find(&self, needle: &str, from: usize) -> Option<(usize, usize)> {
        self.lines
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(i, l)| l.find(needle).map(|c| (i, c)))
    }

    fn error(&self, at: Option<(usize, usize)>, field: &str, message: String) -> ScenarioError {
        let (line, col) = at.unwrap_or((0, 0));
        ScenarioError {
            file: self.file.to_string(),
            line: line + 1,
            column: col + 1,
            field: Some(field.to_string()),
            message,
        }
    }
}

// ------------------------------------------------------------------ parsing and validation

impl Scenario {
    /// Reads and parses a scenario file.
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

    /// Parses scenario text; `file` names it in error messages.
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
                "        (name: {:?}, count: {}, max_attempts: {}),\n",
                w.name, w.count, w.max_attempts
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
        s.push_str("],\n)\n");
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
    }
}

/// Turns ron's error into ours, naming the field: the one ron names, or else the field whose
/// value the error points into.
fn ron_error(loc: &Locator<'_>, e: ron::error::SpannedError) -> ScenarioError {
    let pos = e.span.start;
    let (line, column) = (pos.line.max(1), pos.col.max(1));
    let field = match &e.code {
        ron::Error::NoSuchStructField { found, .. } => Some(found.clone()),
        ron::Error::MissingStructField { field, .. } => Some((*field).to_string()),
        ron::Error::DuplicateStructField { field, .. } => Some((*field).to_string()),
        _ => enclosing_field(loc, line - 1, column - 1),
    };
    let message = match &e.code {
        ron::Error::NoSuchStructField {
            expected, found, ..
        } => format!(
            "unknown field `{found}`; the fields here are: {}",
            expected.join(", ")
        ),
        ron::Error::MissingStructField { field, outer } => format!(
            "missing field `{field}`{}",
            outer
                .as_ref()
                .map(|o| format!(" in `{o}`"))
                .unwrap_or_default()
        ),
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

/// The name of the nearest `name:` at or before (line, col).
fn enclosing_field(loc: &Locator<'_>, line: usize, col: usize) -> Option<String> {
    for l in (0..=line.min(loc.lines.len().saturating_sub(1))).rev() {
        let text = loc.lines.get(l)?;
        let upto = if l == line {
            &text[..col.min(text.len())]
        } else {
            text.as_str()
        };
        if let Some(colon) = upto.rfind(':') {
            let name: String = upto[..colon]
                .trim_end()
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

fn convert(loc: &Locator<'_>, raw: RawScenario) -> Result<Scenario, ScenarioError> {
    let top = |name: &str| loc.field_line(name, 0);
    let dur = |field: &str, at: Option<(usize, usize)>, s: &str| {
        parse_duration(s).map_err(|m| loc.error(at, field, m))
    };

    if raw.nodes == 0 || raw.nodes > 9 {
        return Err(loc.error(
            top("nodes"),
            "nodes",
            format!("a cluster has 1 to 9 nodes, not {}", raw.nodes),
        ));
    }
    let duration = dur("duration", top("duration"), &raw.duration)?;
    if duration.is_zero() {
        return Err(loc.error(top("duration"), "duration", "must be above zero".into()));
    }

    let lat_at = loc.field_line("latency", 0);
    let latency = (
        dur("network.latency", lat_at, &raw.network.latency.0)?,
        dur("network.latency", lat_at, &raw.network.latency.1)?,
    );
    if latency.0 > latency.1 {
        return Err(loc.error(
            lat_at,
            "network.latency",
            format!(
                "the minimum ({}) is above the maximum ({})",
                format_duration(latency.0),
                format_duration(latency.1)
            ),
        ));
    }
    for (name, v) in [
        ("drop_rate", raw.network.drop_rate),
        ("duplicate_rate", raw.network.duplicate_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(loc.error(
                loc.field_line(name, 0),
                &format!("network.{name}"),
                format!("a probability is between 0.0 and 1.0, not {v}"),
            ));
        }
    }

    let c = &raw.clients;
    if !c.rate_per_sec.is_finite() || c.rate_per_sec < 0.0 {
        return Err(loc.error(
            loc.field_line("rate_per_sec", 0),
            "clients.rate_per_sec",
            format!("must be a non-negative number, not {}", c.rate_per_sec),
        ));
    }
    if c.count > 0 && c.keys == 0 {
        return Err(loc.error(
            loc.field_line("keys", 0),
            "clients.keys",
            "clients need at least one key".into(),
        ));
    }
    let timeout = dur("clients.timeout", loc.field_line("timeout", 0), &c.timeout)?;
    if timeout.is_zero() {
        return Err(loc.error(
            loc.field_line("timeout", 0),
            "clients.timeout",
            "must be above zero".into(),
        ));
    }

    let mut workloads = Vec::new();
    for (i, w) in raw.workloads.into_iter().enumerate() {
        let at = loc.entry_line("workloads", "name", i);
        let field = format!("workloads[{i}].name");
        if w.name.trim().is_empty() {
            return Err(loc.error(at, &field, "a workload needs a name".into()));
        }
        if workloads.iter().any(|x: &WorkloadSpec| x.name == w.name) {
            return Err(loc.error(at, &field, format!("workload {:?} is listed twice", w.name)));
        }
        workloads.push(WorkloadSpec {
            name: w.name,
            count: w.count,
            max_attempts: w.max_attempts,
        });
    }

    let names: Vec<String> = (1..=raw.nodes).map(|i| format!("n{i}")).collect();
    let mut faults = Vec::new();
    let mut last_at = Duration::ZERO;
    for (i, f) in raw.faults.into_iter().enumerate() {
        let at_pos = loc.entry_line("faults", "at", i);
        let at = dur(&format!("faults[{i}].at"), at_pos, &f.at)?;
        if at >= duration {
            return Err(loc.error(
                at_pos,
                &format!("faults[{i}].at"),
                format!(
                    "fault at {} is after the end of the scenario ({})",
                    format_duration(at),
                    format_duration(duration)
                ),
            ));
        }
        if at < last_at {
            return Err(loc.error(
                at_pos,
                &format!("faults[{i}].at"),
                format!(
                    "faults must be in time order: {} comes after {}",
                    format_duration(at),
                    format_duration(last_at)
                ),
            ));
        }
        last_at = at;
        let field = format!("faults[{i}].fault");
        let fault_pos = at_pos.map(|(l, _)| l).unwrap_or(0);
        let node = |n: &str| -> Result<String, ScenarioError> {
            if names.iter().any(|x| x == n) {
                Ok(n.to_string())
            } else {
                let quoted = format!("{n:?}");
                Err(loc.error(
                    loc.find(&quoted, fault_pos).or(at_pos),
                    &field,
                    format!(
                        "unknown node {quoted} (this scenario has n1..n{})",
                        raw.nodes
                    ),
                ))
            }
        };
        let sel = |s: RawSelector| -> Result<Selector, ScenarioError> {
            Ok(match s {
                RawSelector::Node(n) => Selector::Node(node(&n)?),
                RawSelector::Leader => Selector::Leader,
                RawSelector::Follower => Selector::Follower,
                RawSelector::LastCrashed => Selector::LastCrashed,
                RawSelector::Random => Selector::Random,
            })
        };
        let positive = |s: &str| -> Result<Duration, ScenarioError> {
            let d = dur(&field, at_pos, s)?;
            if d.is_zero() {
                return Err(loc.error(at_pos, &field, "the duration must be above zero".into()));
            }
            Ok(d)
        };
        let workload = |w: String| -> Result<String, ScenarioError> {
            if workloads.iter().any(|x| x.name == w) {
                Ok(w)
            } else {
                Err(loc.error(
                    at_pos,
                    &field,
                    format!("unknown workload {w:?} (not listed in `workloads`)"),
                ))
            }
        };
        let fault = match f.fault {
            RawFault::Crash(s) => Fault::Crash(sel(s)?),
            RawFault::Restart(s) => Fault::Restart(sel(s)?),
            RawFault::Partition(groups) => {
                let mut out = Vec::new();
                for g in groups {
                    out.push(g.iter().map(|n| node(n)).collect::<Result<Vec<_>, _>>()?);
                }
                Fault::Partition(out)
            }
            RawFault::Isolate(s) => Fault::Isolate(sel(s)?),
            RawFault::OneWay(a, b) => Fault::OneWay(sel(a)?, sel(b)?),
            RawFault::Heal => Fault::Heal,
            RawFault::Hang(s, d) => Fault::Hang(sel(s)?, positive(&d)?),
            RawFault::Slow(s, factor, d) => {
                if !factor.is_finite() || factor < 1.0 {
                    return Err(loc.error(
                        at_pos,
                        &field,
                        format!("a slow-down factor is at least 1.0, not {factor}"),
                    ));
                }
                Fault::Slow(sel(s)?, factor, positive(&d)?)
            }
            RawFault::Overload {
                rate_per_sec,
                lasting,
            } => {
                if !rate_per_sec.is_finite() || rate_per_sec <= 0.0 {
                    return Err(loc.error(
                        at_pos,
                        &field,
                        format!("the overload rate must be above zero, not {rate_per_sec}"),
                    ));
                }
                Fault::Overload {
                    rate_per_sec,
                    lasting: positive(&lasting)?,
                }
            }
            RawFault::CrashWorkload(w) => Fault::CrashWorkload(workload(w)?),
            RawFault::HangWorkload(w) => Fault::HangWorkload(workload(w)?),
        };
        faults.push(TimedFault { at, fault });
    }

    let mut expect = Vec::new();
    let expect_at = top("expect");
    for (i, e) in raw.expect.into_iter().enumerate() {
        let field = format!("expect[{i}]");
        expect.push(match e {
            RawExpectation::NewLeaderWithin(d) => {
                Expectation::NewLeaderWithin(dur(&field, expect_at, &d)?)
            }
            RawExpectation::WorkloadsRecoveredWithin(d) => {
                Expectation::WorkloadsRecoveredWithin(dur(&field, expect_at, &d)?)
            }
            RawExpectation::NoLostWrites => Expectation::NoLostWrites,
            RawExpectation::Linearizable => Expectation::Linearizable,
            RawExpectation::AtMostOneRunningCopy => Expectation::AtMostOneRunningCopy,
            RawExpectation::NoFalseReschedules => Expectation::NoFalseReschedules,
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
        assert_eq!((e.line, e.field.as_deref()), (5, Some("frobnicate")), "{e}");
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
        assert_eq!((e.line, e.field.as_deref()), (4, Some("duration")), "{e}");
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
        assert_eq!((e.line, e.field.as_deref()), (3, Some("nodes")), "{e}");
    }

    #[test]
    fn an_unknown_node_names_the_fault() {
        let e = err(&format!(
            "{BASE}    faults: [\n        (at: \"1s\", fault: Crash(Leader)),\n        (at: \"2s\", fault: Crash(Node(\"n9\"))),\n    ],\n)\n"
        ));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (7, Some("faults[1].fault")),
            "{e}"
        );
        assert!(
            e.message.contains("\"n9\"") && e.message.contains("n1..n3"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}    faults: [\n        (at: \"2s\", fault: Partition([[\"n1\"], [\"n2\", \"n7\"]])),\n    ],\n)\n"
        ));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (6, Some("faults[0].fault")),
            "{e}"
        );
    }

    #[test]
    fn a_fault_after_the_end_or_out_of_order_is_refused() {
        let e = err(&format!(
            "{BASE}    faults: [\n        (at: \"40s\", fault: Heal),\n    ],\n)\n"
        ));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (6, Some("faults[0].at")),
            "{e}"
        );
        assert!(e.message.contains("after the end"), "{e}");
        let e = err(&format!(
            "{BASE}    faults: [\n        (at: \"5s\", fault: Heal),\n        (at: \"4s\", fault: Heal),\n    ],\n)\n"
        ));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (7, Some("faults[1].at")),
            "{e}"
        );
    }

    #[test]
    fn semantic_limits_are_enforced() {
        let e = err("Scenario(\n    name: \"t\",\n    nodes: 0,\n    duration: \"1s\",\n)\n");
        assert_eq!((e.line, e.field.as_deref()), (3, Some("nodes")), "{e}");
        let e = err(&format!(
            "{BASE}    network: (latency: (\"5ms\", \"1ms\")),\n)\n"
        ));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (5, Some("network.latency")),
            "{e}"
        );
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
    fn durations_parse_and_format_exactly() {
        let ok = [
            ("250ms", 250_000),
            ("5s", 5_000_000),
            ("1.5s", 1_500_000),
            ("2m", 120_000_000),
            ("0s", 0),
            ("100us", 100),
        ];
        for (s, us) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_micros(us)), "{s}");
            let d = Duration::from_micros(us);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for bad in ["", "5", "5h", "-1s", "abc", "s", "1e3s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
