//! The engine's side of workloads: the operator submitting the scenario's workloads, executing
//! nodes' workload actions on the simulated processes, the supervisor's lease deadline, progress
//! events, and the records behind the workload expectations and `--explain`.
//!
//! [`WorkState`] owns the simulated processes and the operator's requests. Workload faults are
//! their family's ([`super::faults`]); this file never draws from the fault stream.

use std::collections::BTreeMap;

use keel_core::{
    ClientOp, Input, NodeId, WorkloadAction, WorkloadDecision, WorkloadEvent, WorkloadEventKind,
    WorkloadOp, WorkloadSpec,
};

use super::clients::Answer;
use super::events::Ev;
use super::World;
use crate::scenario::Scenario;
use crate::workloads::{self as wl, FinalWorkload, Processes};

/// How often a healthy workload copy shows progress.
const PROGRESS_US: u64 = 100_000;
/// When the operator submits the scenario's workloads, and how long it waits before resubmitting
/// one that got no answer.
const ADMIN_START_US: u64 = 300_000;
const ADMIN_RETRY_US: u64 = 200_000;

pub(super) struct WorkState {
    /// The scenario's workload instances, submitted by an operator at the start.
    specs: Vec<WorkloadSpec>,
    /// Operator submit requests in flight: request -> spec.
    pub(super) admin: BTreeMap<keel_core::RequestId, usize>,
    pub(super) procs: Processes,
    /// Per node: the last time a fault touched it (crash, restart, hang, slow, cut links).
    pub(super) disturbed_at: Vec<u64>,
    /// Per node: when the leader last declared it dead.
    pub(super) dead_declared: BTreeMap<NodeId, u64>,
    /// Workloads re-placed after a node was declared dead, waiting to run: name -> declared at.
    awaiting_replacement: BTreeMap<String, u64>,
}

impl WorkState {
    pub(super) fn new(scenario: &Scenario) -> WorkState {
        let n = scenario.nodes;
        WorkState {
            specs: wl::instances(scenario),
            admin: BTreeMap::new(),
            procs: Processes::new(n),
            disturbed_at: vec![0; n],
            dead_declared: BTreeMap::new(),
            awaiting_replacement: BTreeMap::new(),
        }
    }
}

impl World<'_> {
    /// The operator will submit every scenario workload shortly after the start.
    pub(super) fn start_workloads(&mut self) {
        self.stats.workloads.instances = self.work.specs.len();
        for spec in 0..self.work.specs.len() {
            self.schedule(ADMIN_START_US, Ev::AdminSubmit { spec });
        }
    }

    pub(super) fn admin_submit(&mut self, spec: usize) {
        if self.now >= self.end {
            return;
        }
        let Some(s) = self.work.specs.get(spec).cloned() else {
            return;
        };
        let id = self.clients.new_request();
        self.work.admin.insert(id, spec);
        let target = self.clients.rng.below(self.nodes.len());
        self.send_request(
            target,
            id,
            ClientOp::Workload(WorkloadOp::Submit(Box::new(s))),
        );
    }

    /// The operator's submit got an answer: done, or try again a little later.
    pub(super) fn admin_answer(&mut self, spec: usize, answer: Answer) {
        if let Answer::Reply(Ok(_)) = answer {
            return;
        }
        let at = self.now + ADMIN_RETRY_US;
        self.schedule(at, Ev::AdminSubmit { spec });
    }

    /// Executes one workload action of node `i`, issued at the end of a step at `t`.
    pub(super) fn workload_action(&mut self, i: usize, t: u64, a: WorkloadAction) {
        match a {
            WorkloadAction::Start { name, epoch, spec } => {
                if self.work.procs.lease_until[i] <= t {
                    // The supervisor refuses: the lease is already gone. The node finds out at
                    // its own lease deadline.
                    return;
                }
                let (token, verdict) =
                    self.work
                        .procs
                        .start(t, i, &name, epoch, &mut self.stats.workloads);
                self.checkers.copy_started(t, self.members[i], verdict);
                if let Some(declared) = self.work.awaiting_replacement.remove(&name) {
                    let after = t.saturating_sub(declared);
                    self.stats.workloads.detection_to_running_us.push(after);
                }
                if spec.watchdog.is_some() {
                    self.schedule(t + PROGRESS_US, Ev::WorkloadProgress { token });
                }
            }
            WorkloadAction::Stop { name, epoch, .. } => {
                self.work
                    .procs
                    .remove_where(t, |c| c.node == i && c.name == name && c.epoch == epoch);
            }
            WorkloadAction::LeaseUntil { until } => {
                self.work.procs.lease_until[i] = until.0;
                self.schedule(until.0, Ev::LeaseExpiry { node: i });
            }
        }
    }

    pub(super) fn lease_expiry(&mut self, node: usize) {
        let until = self.work.procs.lease_until[node];
        if until == 0 || until > self.now {
            return;
        }
        let killed = self.work.procs.remove_where(self.now, |c| c.node == node);
        if killed > 0 {
            let id = self.members[node];
            let text = format!("{id}'s supervisor kills its {killed} copies: its lease expired");
            self.stats.workloads.health_log.push((self.now, id, text));
            self.stats.workloads.copies_killed_at_lease_expiry += killed as u64;
            self.cover("copies killed at lease expiry by the supervisor");
        }
    }

    pub(super) fn workload_progress(&mut self, token: u64) {
        let Some(c) = self.work.procs.copies.iter().find(|c| c.token == token) else {
            return;
        };
        if c.hung {
            return;
        }
        let (node, name, epoch) = (c.node, c.name.clone(), c.epoch);
        let ev = WorkloadEvent {
            name,
            epoch,
            kind: WorkloadEventKind::Progress,
        };
        self.input(node, Input::Workload(ev));
        let at = self.now + PROGRESS_US;
        self.schedule(at, Ev::WorkloadProgress { token });
    }

    /// A workload decision traced by node `i`.
    pub(super) fn workload_decision(&mut self, i: usize, name: &str, d: &WorkloadDecision) {
        let id = self.members[i];
        let text = match d {
            WorkloadDecision::Placed {
                node,
                reason,
                free_capacity,
            } => {
                self.stats.workloads.placements += 1;
                format!("{id} (leader) places it on {node} ({reason:?}; {free_capacity} capacity units free there)")
            }
            WorkloadDecision::ReplacementScheduled { from, epoch, delay } => format!(
                "{id} (leader) will re-place its copy of epoch {} from {from} in {} ms (jitter)",
                epoch.0,
                delay.as_millis()
            ),
            WorkloadDecision::Orphaned { from, epoch, why } => {
                self.orphaned(i, name, *from);
                format!(
                    "{id} (leader) gives up its copy of epoch {} on {from}: {why}",
                    epoch.0
                )
            }
            WorkloadDecision::BackoffChosen { attempt, delay } => {
                self.stats.workloads.backoffs += 1;
                format!(
                    "{id} (leader) retries it after {} ms (attempt {attempt} failed; full jitter)",
                    delay.as_millis()
                )
            }
            WorkloadDecision::RetryDue => format!("{id} (leader): backoff over, placing it again"),
            WorkloadDecision::GaveUp { reason } => {
                self.cover("workload failed permanently");
                format!("{id} (leader) gives up: {reason}")
            }
            WorkloadDecision::CopyStarted { epoch } => {
                format!("{id} starts its copy (epoch {})", epoch.0)
            }
            WorkloadDecision::CopyStopped { epoch, reason } => {
                if *reason == keel_core::StopReason::Hung {
                    self.stats.workloads.watchdog_stops += 1;
                    self.cover("watchdog stopped a hung workload");
                }
                format!("{id} stops its copy (epoch {}): {reason:?}", epoch.0)
            }
            WorkloadDecision::CopyExited { epoch, outcome } => {
                format!("{id}: its copy (epoch {}) exited: {outcome:?}", epoch.0)
            }
        };
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "workload", "node": id.to_string(),
                "workload": name, "decision": text,
            }));
        }
        self.stats
            .workloads
            .log
            .push((self.now, name.to_string(), text));
    }

    /// Leader `i` re-places workload `name` off node `from`: counted, timed from when `from` was
    /// declared dead, and a false reschedule if `from` was up, reachable, undisturbed and still
    /// a member (a node removed from the configuration must give its copies up).
    fn orphaned(&mut self, i: usize, name: &str, from: NodeId) {
        self.stats.workloads.replacements += 1;
        self.cover("workload re-placed");
        let declared = self
            .work
            .dead_declared
            .get(&from)
            .copied()
            .unwrap_or(self.now);
        self.work
            .awaiting_replacement
            .insert(name.to_string(), declared);
        let f = from.0 as usize - 1;
        let window = wl::disturbance_window(self.dead_after(i));
        let member = self.nodes[i]
            .node
            .as_ref()
            .is_some_and(|n| n.membership().get(from).is_some());
        let undisturbed = member
            && self.nodes[f].up()
            && self.now.saturating_sub(self.work.disturbed_at[f]) > window
            && self.nodes[f].hung_until <= self.now
            && self.nodes[f].slow_factor <= 1.0
            && !self.net.blocked(f, i)
            && !self.net.blocked(i, f);
        if undisturbed {
            self.stats.workloads.false_reschedules.push(format!(
                "{name} moved off {from} at {:.3} s though {from} was up and reachable",
                self.now as f64 / 1e6
            ));
        }
    }

    /// The registry as the most advanced live node applied it.
    pub(super) fn record_final_registry(&mut self) {
        let best = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .max_by_key(|n| (n.applied_index(), n.id()));
        let Some(node) = best else {
            return;
        };
        let mut out = Vec::new();
        for (name, w) in &node.state_machine().registry.workloads {
            out.push(FinalWorkload {
                name: name.clone(),
                status: w.status.name().to_string(),
                node: w.status.node(),
                attempts: w.attempts,
                terminal: matches!(
                    w.status,
                    keel_core::Status::FailedPermanently { .. }
                        | keel_core::Status::Completed
                        | keel_core::Status::Stopped
                ),
                history: w
                    .history
                    .iter()
                    .map(|d| (d.index.0, d.what.clone()))
                    .collect(),
            });
        }
        self.stats.workloads.final_state = out;
    }
}
