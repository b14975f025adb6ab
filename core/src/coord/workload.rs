//! The workload registry: the replicated desired state of every workload, the status the leader
//! recorded for it, the health the leader recorded for every node, and the bounded history of
//! decisions that `explain` returns.
//!
//! Owns: what applying an orchestration command does. Every command is checked against the
//! current state when it applies (a stale one, e.g. a report for an older epoch, changes
//! nothing), so the leader may propose freely and replicas stay identical. Never: deciding
//! anything; the leader's orchestrator (`coord::orchestrator`) decides, this module only records.
//!
//! Fencing: a workload's `epoch` is the log index of the command that assigned it. Epochs only
//! grow, a node runs a copy only for the epoch its applied state shows assigned to it, and every
//! report names the epoch it is about, so a report or a copy from an older assignment can never
//! be mistaken for the current one.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{LogIndex, NodeId};

/// What to run and how to treat its failures. Submitted by clients.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Unique, non-empty.
    pub name: String,
    /// The program a production node starts (the simulator ignores it).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Capacity units the workload takes on a node. Default 1.
    #[serde(default = "one")]
    pub resources: u32,
    /// Failed starts before the workload is marked failed for good. Default 3.
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, capped, with full jitter. Default 100 ms.
    #[serde(default = "backoff_base")]
    pub backoff_base: Duration,
    /// Largest retry delay. Default 5 s.
    #[serde(default = "backoff_cap")]
    pub backoff_cap: Duration,
    /// A running copy must report progress at least this often or it is treated as hung:
    /// stopped and restarted under the retry policy. Default none (no watchdog).
    #[serde(default)]
    pub watchdog: Option<Duration>,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn backoff_base() -> Duration {
    Duration::from_millis(100)
}
fn backoff_cap() -> Duration {
    Duration::from_secs(5)
}

impl WorkloadSpec {
    /// A spec with every default, running `command`.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> WorkloadSpec {
        WorkloadSpec {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            resources: one(),
            max_attempts: three(),
            backoff_base: backoff_base(),
            backoff_cap: backoff_cap(),
            watchdog: None,
        }
    }

    /// Why this spec cannot be accepted, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Some("a workload name must be 1 to 200 characters".into());
        }
        if self.max_attempts == 0 {
            return Some("max_attempts must be at least 1".into());
        }
        if self.backoff_base > self.backoff_cap {
            return Some("backoff_base must not exceed backoff_cap".into());
        }
        if self.watchdog.is_some_and(|w| w.is_zero()) {
            return Some("a watchdog interval must be above zero".into());
        }
        None
    }
}

/// Whether the workload should run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Running,
    Stopped,
}

/// Where the workload stands.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be placed.
    Pending,
    /// Placed on `node` at `epoch`; the node has not yet reported it running.
    Assigned { node: NodeId, epoch: LogIndex },
    /// `node` reported its copy of `epoch` running.
    Running { node: NodeId, epoch: LogIndex },
    /// The last copy failed; the leader retries after `delay` (counted from when it applied this).
    BackingOff { delay: Duration },
    /// No more retries: `max_attempts` reached or a crash loop.
    FailedPermanently { reason: String },
    /// The copy exited successfully.
    Completed,
    /// Stopped on request.
    Stopped,
}

impl Status {
    /// The node holding the current assignment, if any.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Status::Assigned { node, .. } | Status::Running { node, .. } => Some(*node),
            _ => None,
        }
    }

    /// The current assignment, if any.
    pub fn assignment(&self) -> Option<(NodeId, LogIndex)> {
        match self {
            Status::Assigned { node, epoch } | Status::Running { node, epoch } => {
                Some((*node, *epoch))
            }
            _ => None,
        }
    }

    /// A short name for tables and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Assigned { .. } => "assigned",
            Status::Running { .. } => "running",
            Status::BackingOff { .. } => "backing-off",
            Status::FailedPermanently { .. } => "failed-permanently",
            Status::Completed => "completed",
            Status::Stopped => "stopped",
        }
    }
}

/// How a copy ended, as its node reported it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitOutcome {
    /// Exited with success: the workload is done.
    Succeeded,
    /// Exited with a failure (non-zero code or signal).
    Failed { code: i32 },
    /// Stopped by its node's watchdog: no progress within its watchdog interval.
    Hung,
    /// Its node could not start it.
    StartFailed,
}

impl ExitOutcome {
    pub fn is_failure(self) -> bool {
        !matches!(self, ExitOutcome::Succeeded)
    }
}

/// Why the leader placed a copy.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceReason {
    /// First placement after a submit.
    Initial,
    /// Its previous node was declared dead or never started it.
    Replaced,
    /// A retry after a failure and its backoff.
    Retry,
}

/// A node's health as the leader recorded it (the failure detector's committed view).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Alive,
    /// Silent past `suspect_after`: no new work goes there, nothing is moved yet.
    Suspect,
    /// Silent past `dead_after`: its workloads are re-placed.
    Dead,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Alive => "alive",
            Health::Suspect => "suspect",
            Health::Dead => "dead",
        })
    }
}

/// What the registry knows of one node.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub health: Health,
    /// Log index of the command that set `health`.
    pub since: LogIndex,
    /// No new placements on a draining node.
    pub draining: bool,
}

/// One decision in a workload's life, at the log index that recorded it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Decision {
    pub index: LogIndex,
    pub what: String,
}

/// One workload in the registry.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Workload {
    pub spec: WorkloadSpec,
    pub desired: Desired,
    pub status: Status,
    /// Copies started since the last submit (counted at placement).
    pub attempts: u32,
    /// The latest assignment's epoch (0: never placed).
    pub epoch: LogIndex,
    /// Why it is pending, for the next placement's record.
    pub pending_reason: PlaceReason,
    /// The newest decisions, oldest first, at most [`HISTORY_LEN`].
    pub history: VecDeque<Decision>,
}

/// Decisions kept per workload for `explain`.
pub const HISTORY_LEN: usize = 32;

/// An orchestration command: what a leader decided or a client asked, replicated through the log.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum OrchCommand {
    /// Create or update a workload and want it running.
    Submit(WorkloadSpec),
    /// Want it stopped.
    Stop { name: String },
    /// Place a pending workload on `node`; the entry's index becomes the epoch.
    Assign { name: String, node: NodeId },
    /// `node` reported its copy of `epoch` running.
    Started {
        name: String,
        node: NodeId,
        epoch: LogIndex,
    },
    /// The copy of `epoch` ended; `retry_after` is the backoff the leader drew for a retry.
    Exited {
        name: String,
        epoch: LogIndex,
        outcome: ExitOutcome,
        retry_after: Duration,
    },
    /// The copy of `epoch` is lost with its node (dead, or it never started it): place it again.
    Orphaned {
        name: String,
        epoch: LogIndex,
        why: String,
    },
    /// A backoff ended: the workload may be placed again.
    RetryDue { name: String },
    /// Stop retrying for good.
    GiveUp { name: String, reason: String },
    /// The failure detector's verdict on a node changed.
    SetHealth { node: NodeId, health: Health },
    /// Start or stop draining a node.
    Drain { node: NodeId, draining: bool },
}

/// Every workload and node record, in name order.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    pub workloads: BTreeMap<String, Workload>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
}

/// What applying a command did, for the client that asked (only `Submit` and `Stop` answer one).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OrchOutcome {
    Applied,
    Refused(String),
}

fn fmt_duration(d: Duration) -> String {
    if d.as_micros().is_multiple_of(1000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Workload> {
        self.workloads.get(name)
    }

    pub fn health(&self, node: NodeId) -> Health {
        self.nodes.get(&node).map_or(Health::Alive, |r| r.health)
    }

    pub fn draining(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|r| r.draining)
    }

    /// Workloads currently assigned to `node`, with their epochs.
    pub fn assigned_to(&self, node: NodeId) -> impl Iterator<Item = (&str, LogIndex)> {
        self.workloads
            .iter()
            .filter_map(move |(name, w)| match w.status.assignment() {
                Some((n, epoch)) if n == node && w.desired == Desired::Running => {
                    Some((name.as_str(), epoch))
                }
                _ => None,
            })
    }

    /// The record of `node`, created alive and not draining on first use.
    fn node_mut(&mut self, node: NodeId) -> &mut NodeRecord {
        self.nodes.entry(node).or_insert(NodeRecord {
            health: Health::Alive,
            since: LogIndex(0),
            draining: false,
        })
    }

    /// Applies `cmd`, committed at `index`. Deterministic: same registry + same command = same
    /// result on every replica.
    pub fn apply(&mut self, index: LogIndex, cmd: &OrchCommand) -> OrchOutcome {
        match cmd {
            OrchCommand::Submit(spec) => self.submit(index, spec),
            OrchCommand::Stop { name } => self.stop(index, name),
            OrchCommand::Assign { name, node } => self.assign(index, name, *node),
            OrchCommand::Started { name, node, epoch } => self.started(index, name, *node, *epoch),
            OrchCommand::Exited {
                name,
                epoch,
                outcome,
                retry_after,
            } => self.exited(index, name, *epoch, *outcome, *retry_after),
            OrchCommand::Orphaned { name, epoch, why } => self.orphaned(index, name, *epoch, why),
            OrchCommand::RetryDue { name } => {
                if let Some(w) = self.workloads.get_mut(name) {
                    if matches!(w.status, Status::BackingOff { .. }) {
                        w.status = Status::Pending;
                        w.pending_reason = PlaceReason::Retry;
                        record(w, index, "backoff over: pending".into());
                    }
                }
                OrchOutcome::Applied
            }
            OrchCommand::GiveUp { name, reason } => {
                if let Some(w) = self.workloads.get_mut(name) {
                    if matches!(w.status, Status::BackingOff { .. } | Status::Pending) {
                        w.status = Status::FailedPermanently {
                            reason: reason.clone(),
                        };
                        record(w, index, format!("failed permanently: {reason}"));
                    }
                }
                OrchOutcome::Applied
            }
            OrchCommand::SetHealth { node, health } => {
                let rec = self.node_mut(*node);
                if rec.health != *health {
                    rec.health = *health;
                    rec.since = index;
                }
                OrchOutcome::Applied
            }
            OrchCommand::Drain { node, draining } => {
                self.node_mut(*node).draining = *draining;
                OrchOutcome::Applied
            }
        }
    }

    fn submit(&mut self, index: LogIndex, spec: &WorkloadSpec) -> OrchOutcome {
        if let Some(problem) = spec.problem() {
            return OrchOutcome::Refused(problem);
        }
        let w = self
            .workloads
            .entry(spec.name.clone())
            .or_insert_with(|| Workload {
                spec: spec.clone(),
                desired: Desired::Running,
                status: Status::Pending,
                attempts: 0,
                epoch: LogIndex(0),
                pending_reason: PlaceReason::Initial,
                history: VecDeque::new(),
            });
        w.spec = spec.clone();
        w.desired = Desired::Running;
        let restart = matches!(
            w.status,
            Status::FailedPermanently { .. } | Status::Completed | Status::Stopped
        );
        if restart {
            w.status = Status::Pending;
            w.attempts = 0;
            w.pending_reason = PlaceReason::Initial;
        }
        record(w, index, "submitted: desired running".into());
        OrchOutcome::Applied
    }

    fn stop(&mut self, index: LogIndex, name: &str) -> OrchOutcome {
        let Some(w) = self.workloads.get_mut(name) else {
            return OrchOutcome::Refused(format!("no workload named {name:?}"));
        };
        w.desired = Desired::Stopped;
        if !matches!(
            w.status,
            Status::FailedPermanently { .. } | Status::Completed
        ) {
            w.status = Status::Stopped;
        }
        record(w, index, "stop requested: desired stopped".into());
        OrchOutcome::Applied
    }

    fn assign(&mut self, index: LogIndex, name: &str, node: NodeId) -> OrchOutcome {
        let eligible = self.health(node) == Health::Alive && !self.draining(node);
        let Some(w) = self.workloads.get_mut(name) else {
            return OrchOutcome::Applied;
        };
        if w.status != Status::Pending || w.desired != Desired::Running || !eligible {
            return OrchOutcome::Applied;
        }
        w.status = Status::Assigned { node, epoch: index };
        w.epoch = index;
        w.attempts += 1;
        let why = match w.pending_reason {
            PlaceReason::Initial => "first placement",
            PlaceReason::Replaced => "re-placed",
            PlaceReason::Retry => "retry",
        };
        let what = format!(
            "assigned to {node} at epoch {index} ({why}, attempt {} of {})",
            w.attempts, w.spec.max_attempts
        );
        record(w, index, what);
        OrchOutcome::Applied
    }

    fn started(
        &mut self,
        index: LogIndex,
        name: &str,
        node: NodeId,
        epoch: LogIndex,
    ) -> OrchOutcome {
        let Some(w) = self.workloads.get_mut(name) else {
            return OrchOutcome::Applied;
        };
        if w.status == (Status::Assigned { node, epoch }) {
            w.status = Status::Running { node, epoch };
            record(w, index, format!("running on {node} (epoch {epoch})"));
        }
        OrchOutcome::Applied
    }

    fn exited(
        &mut self,
        index: LogIndex,
        name: &str,
        epoch: LogIndex,
        outcome: ExitOutcome,
        retry_after: Duration,
    ) -> OrchOutcome {
        let Some(w) = self.workloads.get_mut(name) else {
            return OrchOutcome::Applied;
        };
        let Some((node, current)) = w.status.assignment() else {
            return OrchOutcome::Applied;
        };
        if current != epoch {
            return OrchOutcome::Applied;
        }
        let ended = match outcome {
            ExitOutcome::Succeeded => "exited successfully".to_string(),
            ExitOutcome::Failed { code } => format!("exited with code {code}"),
            ExitOutcome::Hung => "made no progress within its watchdog: stopped".into(),
            ExitOutcome::StartFailed => "could not be started".into(),
        };
        let what = if !outcome.is_failure() {
            w.status = Status::Completed;
            format!("{ended} on {node}: completed")
        } else if w.attempts >= w.spec.max_attempts {
            let reason = format!("{} attempts failed", w.attempts);
            let what = format!("{ended} on {node}: failed permanently ({reason})");
            w.status = Status::FailedPermanently { reason };
            what
        } else {
            w.status = Status::BackingOff { delay: retry_after };
            format!(
                "{ended} on {node}: retry in {} (backoff after attempt {})",
                fmt_duration(retry_after),
                w.attempts
            )
        };
        record(w, index, what);
        OrchOutcome::Applied
    }

    fn orphaned(&mut self, index: LogIndex, name: &str, epoch: LogIndex, why: &str) -> OrchOutcome {
        let Some(w) = self.workloads.get_mut(name) else {
            return OrchOutcome::Applied;
        };
        if w.epoch != epoch || w.status.assignment().is_none() {
            return OrchOutcome::Applied;
        }
        // A copy lost with its node is not the workload's failure: no attempt is spent.
        w.attempts = w.attempts.saturating_sub(1);
        w.status = Status::Pending;
        w.pending_reason = PlaceReason::Replaced;
        record(w, index, format!("lost copy of epoch {epoch}: {why}"));
        OrchOutcome::Applied
    }
}

fn record(w: &mut Workload, index: LogIndex, what: String) {
    if w.history.len() >= HISTORY_LEN {
        w.history.pop_front();
    }
    w.history.push_back(Decision { index, what });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(r: &mut Registry, i: u64, name: &str) {
        let mut spec = WorkloadSpec::new(name, "sleep");
        spec.max_attempts = 2;
        assert_eq!(
            r.apply(LogIndex(i), &OrchCommand::Submit(spec)),
            OrchOutcome::Applied
        );
    }

    fn assign(r: &mut Registry, i: u64, name: &str, node: u32) {
        r.apply(
            LogIndex(i),
            &OrchCommand::Assign {
                name: name.into(),
                node: NodeId(node),
            },
        );
    }

    #[test]
    fn an_assignment_is_fenced_by_its_epoch() {
        let mut r = Registry::default();
        submit(&mut r, 1, "web");
        assign(&mut r, 2, "web", 1);
        assert_eq!(
            r.get("web").map(|w| w.status.clone()),
            Some(Status::Assigned {
                node: NodeId(1),
                epoch: LogIndex(2)
            })
        );
        // A second assignment while one holds changes nothing.
        assign(&mut r, 3, "web", 2);
        assert_eq!(r.get("web").map(|w| w.epoch), Some(LogIndex(2)));
        r.apply(
            LogIndex(4),
            &OrchCommand::Orphaned {
                name: "web".into(),
                epoch: LogIndex(2),
                why: "n1 dead".into(),
            },
        );
        assign(&mut r, 5, "web", 2);
        // A report about the old epoch is ignored.
        r.apply(
            LogIndex(6),
            &OrchCommand::Started {
                name: "web".into(),
                node: NodeId(1),
                epoch: LogIndex(2),
            },
        );
        assert_eq!(
            r.get("web").map(|w| w.status.clone()),
            Some(Status::Assigned {
                node: NodeId(2),
                epoch: LogIndex(5)
            })
        );
        // The lost copy did not spend an attempt.
        assert_eq!(r.get("web").map(|w| w.attempts), Some(1));
        assert_eq!(r.assigned_to(NodeId(2)).count(), 1);
        assert_eq!(r.assigned_to(NodeId(1)).count(), 0);
    }

    #[test]
    fn failures_back_off_then_fail_permanently_after_max_attempts() {
        let mut r = Registry::default();
        submit(&mut r, 1, "job");
        let exit = |epoch: u64| OrchCommand::Exited {
            name: "job".into(),
            epoch: LogIndex(epoch),
            outcome: ExitOutcome::Failed { code: 1 },
            retry_after: Duration::from_millis(150),
        };
        assign(&mut r, 2, "job", 1);
        r.apply(LogIndex(3), &exit(2));
        assert_eq!(
            r.get("job").map(|w| w.status.clone()),
            Some(Status::BackingOff {
                delay: Duration::from_millis(150)
            })
        );
        // Not placeable while backing off.
        assign(&mut r, 4, "job", 1);
        assert_eq!(r.get("job").map(|w| w.epoch), Some(LogIndex(2)));
        r.apply(LogIndex(5), &OrchCommand::RetryDue { name: "job".into() });
        assign(&mut r, 6, "job", 2);
        r.apply(LogIndex(7), &exit(6));
        assert!(matches!(
            r.get("job").map(|w| &w.status),
            Some(Status::FailedPermanently { .. })
        ));
        let history: Vec<_> = r.get("job").map_or(Vec::new(), |w| {
            w.history.iter().map(|d| d.what.clone()).collect()
        });
        assert!(history
            .last()
            .is_some_and(|h| h.contains("2 attempts failed")));
        // A new submit starts over.
        submit(&mut r, 8, "job");
        assert_eq!(
            r.get("job").map(|w| w.status.clone()),
            Some(Status::Pending)
        );
    }

    #[test]
    fn no_placement_on_a_node_that_is_not_alive_or_drains() {
        let mut r = Registry::default();
        submit(&mut r, 1, "a");
        r.apply(
            LogIndex(2),
            &OrchCommand::SetHealth {
                node: NodeId(1),
                health: Health::Suspect,
            },
        );
        assign(&mut r, 3, "a", 1);
        assert_eq!(r.get("a").map(|w| w.status.clone()), Some(Status::Pending));
        r.apply(
            LogIndex(4),
            &OrchCommand::Drain {
                node: NodeId(2),
                draining: true,
            },
        );
        assign(&mut r, 5, "a", 2);
        assert_eq!(r.get("a").map(|w| w.status.clone()), Some(Status::Pending));
        assign(&mut r, 6, "a", 3);
        assert_eq!(r.get("a").and_then(|w| w.status.node()), Some(NodeId(3)));
    }

    #[test]
    fn history_is_bounded() {
        let mut r = Registry::default();
        for i in 1..=100 {
            submit(&mut r, i, "x");
        }
        let w = r.get("x").map(|w| w.history.len());
        assert_eq!(w, Some(HISTORY_LEN));
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let mut r = Registry::default();
        let mut spec = WorkloadSpec::new("", "x");
        assert!(matches!(
            r.apply(LogIndex(1), &OrchCommand::Submit(spec.clone())),
            OrchOutcome::Refused(_)
        ));
        spec.name = "ok".into();
        spec.max_attempts = 0;
        assert!(matches!(
            r.apply(LogIndex(2), &OrchCommand::Submit(spec)),
            OrchOutcome::Refused(_)
        ));
        assert!(r.workloads.is_empty());
    }
}
