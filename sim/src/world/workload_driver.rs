//! The engine's side of workloads: the operator submitting the scenario's workloads, executing
//! nodes' workload actions on the simulated processes, the supervisor's lease deadline, progress
//! events, workload faults, and the records behind the workload expectations and `--explain`.

use super::*;

impl World<'_> {
    pub(super) fn admin_submit(&mut self, spec: usize) {
        if self.now >= self.end {
            return;
        }
        let Some(s) = self.specs.get(spec).cloned() else {
            return;
        };
        let id = self.new_request();
        self.admin.insert(id, spec);
        let target = self.client_rng.below(self.nodes.len());
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
                if self.procs.lease_until[i] <= t {
                    // The supervisor refuses: the lease is already gone. The node finds out at
                    // its own lease deadline.
                    return;
                }
                let (token, verdict) =
                    self.procs
                        .start(t, i, &name, epoch, &mut self.stats.workloads);
                self.checkers.copy_started(t, self.members[i], verdict);
                if let Some(declared) = self.awaiting_replacement.remove(&name) {
                    let after = t.saturating_sub(declared);
                    self.stats.workloads.detection_to_running_us.push(after);
                }
                if spec.watchdog.is_some() {
                    self.schedule(t + PROGRESS_US, Ev::WorkloadProgress { token });
                }
            }
            WorkloadAction::Stop { name, epoch, .. } => {
                self.procs
                    .remove_where(t, |c| c.node == i && c.name == name && c.epoch == epoch);
            }
            WorkloadAction::LeaseUntil { until } => {
                self.procs.lease_until[i] = until.0;
                self.schedule(until.0, Ev::LeaseExpiry { node: i });
            }
        }
    }

    pub(super) fn lease_expiry(&mut self, node: usize) {
        let until = self.procs.lease_until[node];
        if until == 0 || until > self.now {
            return;
        }
        let killed = self.procs.remove_where(self.now, |c| c.node == node);
        if killed > 0 {
            let id = self.members[node];
            let text = format!("{id}'s supervisor kills its {killed} copies: its lease expired");
            self.stats.workloads.health_log.push((self.now, id, text));
            self.stats.workloads.copies_killed_at_lease_expiry += killed as u64;
            self.cover("copies killed at lease expiry by the supervisor");
        }
    }

    pub(super) fn workload_progress(&mut self, token: u64) {
        let Some(c) = self.procs.copies.iter().find(|c| c.token == token) else {
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

    /// A healthy copy of an instance of `family`, chosen by the fault stream.
    fn pick_copy(&mut self, family: &str) -> Option<(u64, usize, String, LogIndex)> {
        let pool: Vec<(u64, usize, String, LogIndex)> = self
            .procs
            .copies
            .iter()
            .filter(|c| !c.hung && wl::in_family(&c.name, family))
            .map(|c| (c.token, c.node, c.name.clone(), c.epoch))
            .collect();
        if pool.is_empty() {
            return None;
        }
        let k = self.fault_rng.below(pool.len());
        pool.into_iter().nth(k)
    }

    pub(super) fn crash_workload(&mut self, family: &str) -> String {
        let Some((token, node, name, epoch)) = self.pick_copy(family) else {
            return format!("nothing (no running copy of {family})");
        };
        self.procs.remove_where(self.now, |c| c.token == token);
        let ev = WorkloadEvent {
            name: name.clone(),
            epoch,
            kind: WorkloadEventKind::Exited(ExitOutcome::Failed { code: 1 }),
        };
        self.input(node, Input::Workload(ev));
        format!("{name} on {}", self.members[node])
    }

    pub(super) fn hang_workload(&mut self, family: &str) -> String {
        let Some((token, node, name, _)) = self.pick_copy(family) else {
            return format!("nothing (no running copy of {family})");
        };
        self.procs.hang(self.now, token);
        format!("{name} on {}", self.members[node])
    }

    /// Remembers which nodes a fault touched, to tell a false reschedule from a real one.
    pub(super) fn note_disturbance(&mut self, fault: &Fault) {
        let now = self.now;
        match fault {
            Fault::Partition(_) | Fault::Heal => self.disturbed_at.fill(now),
            Fault::Crash(_) | Fault::Restart(_) | Fault::Overload { .. } => {}
            Fault::CrashWorkload(_)
            | Fault::HangWorkload(_)
            | Fault::TransferLeadership
            | Fault::TransferLeadershipTo(_) => {}
            // Armed faults mark the nodes they hit when they strike; a delay marks both ends of
            // its link when it fires (and when it ends).
            Fault::CrashAfterVote(..)
            | Fault::IsolateLeaderOnAppend(_)
            | Fault::IsolateLeaderOnCommit(_)
            | Fault::Delay { .. } => {}
            Fault::Isolate(_) | Fault::OneWay(..) | Fault::Hang(..) | Fault::Slow(..) => {
                // The selector was resolved when the fault fired; every node it may have hit is
                // marked (cut links and hangs affect how both sides hear each other).
                for i in 0..self.nodes.len() {
                    let cut = (0..self.nodes.len()).any(|j| self.blocked[i * self.nodes.len() + j]);
                    if cut || self.nodes[i].hung_until > now || self.nodes[i].slow_factor > 1.0 {
                        self.disturbed_at[i] = now;
                    }
                }
            }
        }
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
                self.stats.workloads.replacements += 1;
                self.cover("workload re-placed");
                let declared = self.dead_declared.get(from).copied().unwrap_or(self.now);
                self.awaiting_replacement.insert(name.to_string(), declared);
                let f = from.0 as usize - 1;
                let window = wl::disturbance_window(self.node_config(i).coordination.dead_after);
                let undisturbed = self.nodes[f].up()
                    && self.now.saturating_sub(self.disturbed_at[f]) > window
                    && self.nodes[f].hung_until <= self.now
                    && self.nodes[f].slow_factor <= 1.0
                    && !self.blocked[f * self.nodes.len() + i]
                    && !self.blocked[i * self.nodes.len() + f];
                if undisturbed {
                    self.stats.workloads.false_reschedules.push(format!(
                        "{name} moved off {from} at {:.3} s though {from} was up and reachable",
                        self.now as f64 / 1e6
                    ));
                }
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
        if self.trace.is_some() {
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
