//! The workload agent every node runs: its lease, the copies it runs, their watchdogs, and its
//! reports to the leader.
//!
//! Owns: renewing the lease (which doubles as the node's heartbeat to the failure detector),
//! starting exactly the copies the applied registry assigns to this node at their current epoch,
//! stopping copies that are no longer assigned, that hang, or whose lease ran out, and telling
//! the leader what runs and what exited until the registry shows it. Never: deciding placement.
//!
//! The lease rule. A renewal sent at `t` (this node's clock) and granted by a leader makes the
//! lease run to `t + lease_duration`. The leader records hearing the renewal at a time no
//! earlier than `t`, and declares a node dead only `dead_after >= lease_duration + lease_margin`
//! after it last heard it; a leader grants only while a majority acknowledged its AppendEntries
//! within `election_timeout_min` (so no other leader can exist by then, see
//! [`super::orchestrator`]), and a new leader re-places nothing during its first
//! `lease_duration + lease_margin`. So a copy is always stopped before another copy of the same
//! workload can be placed. Starting a copy also waits until this node applied the leader's last
//! log index at its latest grant (uncommitted decisions included), so it never acts on a
//! registry older than the leader's: a copy the leader gave up a moment ago is not started.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::io::{Output, StopReason, WorkloadAction, WorkloadEvent, WorkloadEventKind};
use crate::message::MessageBody;
use crate::raft::{Raft, Role};
use crate::testing::PlantedBug;
use crate::trace::{Event, WorkloadDecision};
use crate::types::{Instant, LogIndex, NodeId};
use crate::workload::ExitOutcome;

use super::Coordination;

/// A copy this node runs.
#[derive(Clone, Debug)]
pub(crate) struct Copy {
    pub epoch: LogIndex,
    pub last_progress: Instant,
    pub watchdog: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct Agent {
    /// The lease runs until then (ZERO: no lease).
    pub lease_until: Instant,
    /// The leader's last log index at the latest grant: no start before this node applied it.
    pub lease_commit: LogIndex,
    pub renew_at: Instant,
    pub copies: BTreeMap<String, Copy>,
    /// Exits the registry does not show yet: name -> (epoch, outcome).
    pub exits: BTreeMap<String, (LogIndex, ExitOutcome)>,
    /// When the last leader last heard from each member, on this node's clock (from grants).
    pub heard: BTreeMap<NodeId, Instant>,
    /// The registry or the lease changed: reconcile at the next step.
    pub dirty: bool,
    /// Send a renewal (with reports) at the next step rather than at `renew_at`.
    pub report_now: bool,
    /// The leader the last renewal went to.
    pub renewed_with: Option<NodeId>,
    /// Reconciliation waits for this node to apply `lease_commit`.
    pub waiting_for_apply: bool,
}

impl Agent {
    pub(crate) fn new(now: Instant) -> Agent {
        Agent {
            lease_until: Instant::ZERO,
            lease_commit: LogIndex(0),
            renew_at: now,
            copies: BTreeMap::new(),
            exits: BTreeMap::new(),
            heard: BTreeMap::new(),
            dirty: true,
            report_now: false,
            renewed_with: None,
            waiting_for_apply: false,
        }
    }

    /// The earliest time the agent needs a step.
    #[inline]
    pub(crate) fn deadline(&self) -> Instant {
        // Asked after every step: a node without copies (the usual case) has only its renewal.
        if self.copies.is_empty() {
            return self.renew_at;
        }
        let mut at = self.renew_at.min(self.lease_until);
        for c in self.copies.values() {
            if let Some(w) = c.watchdog {
                at = at.min(c.last_progress + w);
            }
        }
        at
    }

    pub(crate) fn needs_step(&self, now: Instant) -> bool {
        self.dirty || self.report_now || now >= self.deadline()
    }
}

impl Coordination {
    /// Runs the agent if anything is due: lease expiry, watchdogs, renewal, reconciliation.
    pub(super) fn agent_step(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        if !self.agent.needs_step(now) {
            return;
        }
        let fenced = !self.planted.is(PlantedBug::KeepsWorkloadsAfterLeaseLoss);
        if fenced && now >= self.agent.lease_until && !self.agent.copies.is_empty() {
            let copies = std::mem::take(&mut self.agent.copies);
            let stopped = copies.len();
            for (name, c) in copies {
                self.stop_copy(name, c.epoch, StopReason::LeaseExpired, out);
            }
            self.trace(Event::LeaseLost { stopped }, out);
        }
        self.check_watchdogs(now, out);
        let leader_changed = raft.leader() != self.agent.renewed_with;
        if now >= self.agent.renew_at || self.agent.report_now || leader_changed {
            self.renew_lease(now, raft, out);
        }
        if self.agent.dirty {
            self.agent.dirty = false;
            self.reconcile(now, raft.applied_index(), out);
        }
    }

    fn check_watchdogs(&mut self, now: Instant, out: &mut Vec<Output>) {
        let hung: Vec<(String, LogIndex)> = self
            .agent
            .copies
            .iter()
            .filter(|(_, c)| c.watchdog.is_some_and(|w| now >= c.last_progress + w))
            .map(|(n, c)| (n.clone(), c.epoch))
            .collect();
        for (name, epoch) in hung {
            self.agent.copies.remove(&name);
            self.agent
                .exits
                .insert(name.clone(), (epoch, ExitOutcome::Hung));
            self.agent.report_now = true;
            self.stop_copy(name, epoch, StopReason::Hung, out);
        }
    }

    fn stop_copy(
        &mut self,
        name: String,
        epoch: LogIndex,
        reason: StopReason,
        out: &mut Vec<Output>,
    ) {
        self.trace(
            Event::Workload {
                name: name.clone(),
                decision: WorkloadDecision::CopyStopped { epoch, reason },
            },
            out,
        );
        out.push(Output::Workload(WorkloadAction::Stop {
            name,
            epoch,
            reason,
        }));
    }

    /// Asks the leader to renew the lease, reporting what runs and what exited. A leader
    /// renews its own lease while a majority acknowledges it.
    fn renew_lease(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        self.agent.renew_at = now + self.cfg.lease_renew_interval;
        self.agent.report_now = false;
        self.agent.renewed_with = raft.leader();
        let running: Vec<(String, LogIndex)> = self
            .agent
            .copies
            .iter()
            .map(|(n, c)| (n.clone(), c.epoch))
            .collect();
        let exits: Vec<(String, LogIndex, ExitOutcome)> = self
            .agent
            .exits
            .iter()
            .map(|(n, (e, o))| (n.clone(), *e, *o))
            .collect();
        if raft.role() == Role::Leader {
            if raft.quorum_fresh(now) {
                let upto = raft.last_index();
                self.lease_granted(now, now, upto, out);
            }
            let me = self.id;
            self.lease_report(now, me, running, exits, raft, out);
            return;
        }
        let Some(leader) = raft.leader() else {
            return;
        };
        let body = MessageBody::LeaseRequest {
            sent_at: now,
            running,
            exits,
        };
        raft.stamp().send(leader, body, out);
    }

    /// A grant for the renewal sent at `sent_at`.
    pub(super) fn lease_granted(
        &mut self,
        now: Instant,
        sent_at: Instant,
        commit: LogIndex,
        out: &mut Vec<Output>,
    ) {
        // Never trust a time from the future: the lease counts from when we asked.
        let until = sent_at.min(now) + self.cfg.lease_duration;
        if until <= self.agent.lease_until {
            return;
        }
        let had = now < self.agent.lease_until;
        // The planted bug believes its first lease never ends (so it also never wakes for it).
        let until = if self.planted.is(PlantedBug::KeepsWorkloadsAfterLeaseLoss) {
            Instant::NEVER
        } else {
            until
        };
        self.agent.lease_until = until;
        self.agent.lease_commit = self.agent.lease_commit.max(commit);
        out.push(Output::Workload(WorkloadAction::LeaseUntil { until }));
        if !had {
            self.agent.dirty = true;
        }
    }

    /// Follower side of a grant message.
    // The fields of the message, each used on its own, plus Raft for the answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_lease_grant(
        &mut self,
        now: Instant,
        from: NodeId,
        sent_at: Instant,
        commit: LogIndex,
        silence: Vec<(NodeId, Duration)>,
        raft: &Raft,
        out: &mut Vec<Output>,
    ) {
        if raft.role() == Role::Leader {
            return;
        }
        for (node, quiet) in silence {
            let at = Instant(now.0.saturating_sub(quiet.as_micros() as u64));
            self.agent.heard.insert(node, at);
        }
        self.agent.heard.insert(from, now);
        self.lease_granted(now, sent_at, commit, out);
        if raft.applied_index() >= self.agent.lease_commit {
            self.agent.dirty = true;
        }
    }

    /// The driver reports progress or an exit of a copy.
    pub(crate) fn workload_event(
        &mut self,
        now: Instant,
        ev: WorkloadEvent,
        out: &mut Vec<Output>,
    ) {
        let Some(copy) = self.agent.copies.get_mut(&ev.name) else {
            return;
        };
        if copy.epoch != ev.epoch {
            return;
        }
        match ev.kind {
            WorkloadEventKind::Progress => copy.last_progress = now,
            WorkloadEventKind::Exited(outcome) => {
                self.agent.copies.remove(&ev.name);
                self.agent
                    .exits
                    .insert(ev.name.clone(), (ev.epoch, outcome));
                self.agent.report_now = true;
                self.trace(
                    Event::Workload {
                        name: ev.name,
                        decision: WorkloadDecision::CopyExited {
                            epoch: ev.epoch,
                            outcome,
                        },
                    },
                    out,
                );
            }
        }
    }

    /// Makes the copies this node runs match what the applied registry assigns to it.
    fn reconcile(&mut self, now: Instant, applied: LogIndex, out: &mut Vec<Output>) {
        let me = self.id;
        let registry = &self.sm.registry;
        // Exits the registry has moved past need no more reporting.
        self.agent.exits.retain(|name, (epoch, _)| {
            registry
                .get(name)
                .and_then(|w| w.status.assignment())
                .is_some_and(|(n, e)| n == me && e == *epoch)
        });
        let unassigned: Vec<(String, LogIndex)> = self
            .agent
            .copies
            .iter()
            .filter(|(name, c)| {
                !registry
                    .assigned_to(me)
                    .any(|(n, e)| n == name.as_str() && e == c.epoch)
            })
            .map(|(n, c)| (n.clone(), c.epoch))
            .collect();
        let caught_up = applied >= self.agent.lease_commit;
        self.agent.waiting_for_apply = !caught_up;
        let can_start = now < self.agent.lease_until && caught_up;
        let mut to_start = Vec::new();
        if can_start {
            for (name, epoch) in registry.assigned_to(me) {
                let running = self
                    .agent
                    .copies
                    .get(name)
                    .is_some_and(|c| c.epoch == epoch);
                let exited = self.agent.exits.get(name).is_some_and(|(e, _)| *e == epoch);
                if !running && !exited {
                    if let Some(w) = registry.get(name) {
                        to_start.push((name.to_string(), epoch, w.spec.clone()));
                    }
                }
            }
        }
        for (name, epoch) in unassigned {
            self.agent.copies.remove(&name);
            self.stop_copy(name, epoch, StopReason::Unassigned, out);
        }
        for (name, epoch, spec) in to_start {
            self.agent.copies.insert(
                name.clone(),
                Copy {
                    epoch,
                    last_progress: now,
                    watchdog: spec.watchdog,
                },
            );
            self.trace(
                Event::Workload {
                    name: name.clone(),
                    decision: WorkloadDecision::CopyStarted { epoch },
                },
                out,
            );
            out.push(Output::Workload(WorkloadAction::Start {
                name,
                epoch,
                spec: Box::new(spec),
            }));
            self.agent.report_now = true;
        }
    }

    /// Called after the state machine applied an orchestration command.
    pub(super) fn registry_changed(&mut self) {
        self.agent.dirty = true;
    }

    /// Called after entries were applied: reconcile once the grant's commit index is reached.
    pub(super) fn applied_advanced(&mut self, applied: LogIndex) {
        if self.agent.waiting_for_apply && applied >= self.agent.lease_commit {
            self.agent.waiting_for_apply = false;
            self.agent.dirty = true;
        }
    }

    /// The copies this node runs, by name, with their epochs (for drivers and checkers).
    pub(crate) fn running_copies(&self) -> impl Iterator<Item = (&str, LogIndex)> {
        self.agent.copies.iter().map(|(n, c)| (n.as_str(), c.epoch))
    }

    /// Until when this node holds its workload lease (ZERO: never held).
    pub(crate) fn lease_until(&self) -> Instant {
        self.agent.lease_until
    }
}
