//! Scenario files: a cluster, its network, its client load and a fault schedule, in RON.
//!
//! The shape:
//!
//! ```ron
//! Scenario(
//!     name: "leader_kill",
//!     description: "Kill the leader under load.",       // optional, default ""
//!     nodes: 3,                                          // 1..=9, named n1..nN
//!     members: 3,                                        // optional: n1..nM bootstrap, default all
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
//! Membership: with `members: 3` and `nodes: 5`, `n4` and `n5` are spare nodes (no
//! configuration, a fresh incarnation) until the operator adds them: `AddLearner(Node("n4"))`,
//! `AddMember(Node("n4"))` (learner, then promoted once caught up), `Promote(Node("n4"))`,
//! `RemoveMember(Leader)`; `WipeDisk(Follower)` restarts a node on an empty disk as a new
//! incarnation, and `ReplaceNode(LastWiped)` is the operator's replace. The operator asks the
//! leader, and asks again until the change is committed;
//! `MembershipSettledWithin("3s")`: each change is committed within 3 s once the other faults
//! are over.
//!
//! Every error names the file, the line and column, and the field by its path (`clients.keys`,
//! `faults[2].at`): syntax errors, unknown, missing or mistyped fields, malformed durations, and
//! the checks after parsing (cluster size, rates, unknown node or workload names, faults out of
//! order or not before the end of the run, zero-length fault windows).
//!
//! The parts: `model` (the types), `fault` (faults: model, raw form, conversion, RON form),
//! `raw` (the serde mirror `ron` reads), `locate` (where each field is written),
//! `convert` (checks and conversion), `error` ([`ScenarioError`]), `printer` (RON text).
//!
//! This file only wires the parts together (`Scenario::load`, `Scenario::parse` and the public
//! paths other crates use); it must never grow parsing or checking logic of its own.

mod convert;
mod error;
mod fault;
mod locate;
mod model;
mod printer;
mod raw;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::ScenarioError;
pub(crate) use fault::fault_ron;
pub use fault::{Family, Fault, ARMED_FAULT_PATIENCE};
pub use keel_core::duration::parse as parse_duration;
pub use model::{
    ClientSpec, Expectation, NetworkSpec, Scenario, Selector, TimedFault, WorkloadSpec,
    WORKLOAD_STATUSES,
};

use locate::Locator;
use raw::RawScenario;

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
        let raw: RawScenario = ron::from_str(text).map_err(|e| error::ron_error(&loc, e))?;
        convert::convert(&loc, raw)
    }
}
