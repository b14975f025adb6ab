//! The orchestrator's placement: backoffs that ended (or a crash loop that gives up), and
//! pending workloads placed on the eligible node with the most free capacity.
//!
//! Owns: where a pending copy goes. Never: deciding a node is dead (the failure detector's job).

use std::collections::BTreeMap;

use crate::io::Output;
use crate::raft::Raft;
use crate::trace::{Event, WorkloadDecision};
use crate::types::{Instant, NodeId};
use crate::workload::{Desired, Health, OrchCommand, Status};

use super::Breaker;
use crate::coord::Coordination;

impl Coordination {
    /// Backoffs that ended become pending again, unless the restart-intensity limit says the
    /// workload is crash-looping.
    pub(super) fn retry_backed_off(
        &mut self,
        now: Instant,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        let registry = &self.sm.registry;
        orch.backoff_due.retain(|name, _| {
            registry
                .get(name)
                .is_some_and(|w| matches!(w.status, Status::BackingOff { .. }))
        });
        let mut due = Vec::new();
        for (name, w) in &registry.workloads {
            let Status::BackingOff { delay } = w.status else {
                continue;
            };
            let at = *orch.backoff_due.entry(name.clone()).or_insert(now + delay);
            if at <= now && !orch.inflight.contains_key(name) {
                due.push(name.clone());
            } else if at > now {
                orch.next_run = orch.next_run.min(at);
            }
            // Due but its previous decision is still in flight: it is looked at again when that
            // decision applies (which wakes the orchestrator), not on a timer in the past.
        }
        let window = self.cfg.restart_window;
        let max = self.cfg.max_restarts_in_window as usize;
        for name in due {
            let Some(orch) = self.orch.as_mut() else {
                return;
            };
            let recent = orch.restarts.entry(name.clone()).or_default();
            while recent
                .front()
                .is_some_and(|t| now.saturating_since(*t) >= window)
            {
                recent.pop_front();
            }
            let (decision, cmd) = if recent.len() >= max {
                let reason = format!(
                    "crash loop: {} restarts within {}s",
                    recent.len(),
                    window.as_secs()
                );
                (
                    WorkloadDecision::GaveUp {
                        reason: reason.clone(),
                    },
                    OrchCommand::GiveUp {
                        name: name.clone(),
                        reason,
                    },
                )
            } else {
                recent.push_back(now);
                (
                    WorkloadDecision::RetryDue,
                    OrchCommand::RetryDue { name: name.clone() },
                )
            };
            self.trace(
                Event::Workload {
                    name: name.clone(),
                    decision,
                },
                out,
            );
            self.propose_orch(now, Some(name), cmd, raft, out);
        }
    }

    /// Pending workloads go to the eligible node with the most free capacity (ties: lowest id).
    pub(super) fn place_pending(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        let pending: Vec<(String, u32)> = self
            .sm
            .registry
            .workloads
            .iter()
            .filter(|(name, w)| {
                w.status == Status::Pending
                    && w.desired == Desired::Running
                    && !self.orch_busy(name)
            })
            .map(|(n, w)| (n.clone(), w.spec.resources))
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut used = self.capacity_used();
        let mut eligible = self.eligible_nodes(now, out);
        let capacity = self.cfg.node_capacity;
        for (name, need) in pending {
            let best = eligible
                .iter()
                .map(|n| (capacity.saturating_sub(*used.get(n).unwrap_or(&0)), *n))
                .filter(|(free, _)| *free >= need)
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let Some((free, node)) = best else {
                continue;
            };
            *used.entry(node).or_default() += need;
            if let Some(orch) = self.orch.as_mut() {
                if let Some(b @ Breaker::HalfOpen { trial: false }) = orch.breakers.get_mut(&node) {
                    *b = Breaker::HalfOpen { trial: true };
                    eligible.retain(|n| *n != node);
                }
            }
            self.assign(now, name, node, need, free, raft, out);
        }
    }

    /// Capacity taken on each node: by assigned or running copies, and by placements in flight.
    fn capacity_used(&self) -> BTreeMap<NodeId, u32> {
        let mut used: BTreeMap<NodeId, u32> = BTreeMap::new();
        for w in self.sm.registry.workloads.values() {
            if let Some(node) = w.status.node() {
                *used.entry(node).or_default() += w.spec.resources;
            }
        }
        if let Some(orch) = self.orch.as_ref() {
            for (node, need) in orch.assigning.values() {
                *used.entry(*node).or_default() += need;
            }
        }
        used
    }

    /// Members that may take new work now: alive (by verdict and in the registry), not
    /// draining, heard this term, and allowed by their breaker.
    fn eligible_nodes(&mut self, now: Instant, out: &mut Vec<Output>) -> Vec<NodeId> {
        let mut eligible = Vec::new();
        for i in 0..self.members.len() {
            let node = self.members[i];
            let alive = self.verdict(now, node) == Health::Alive
                && self.sm.registry.health(node) == Health::Alive
                && !self.sm.registry.draining(node);
            let heard = node == self.id
                || self
                    .orch
                    .as_ref()
                    .is_some_and(|o| o.heard_this_term.contains_key(&node));
            if alive && heard && self.breaker_allows(now, node, out) {
                eligible.push(node);
            }
        }
        eligible
    }

    /// Proposes placing `name` on `node`.
    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        now: Instant,
        name: String,
        node: NodeId,
        need: u32,
        free: u32,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let reason = self
            .sm
            .registry
            .get(&name)
            .map_or(crate::workload::PlaceReason::Initial, |w| w.pending_reason);
        self.trace(
            Event::Workload {
                name: name.clone(),
                decision: WorkloadDecision::Placed {
                    node,
                    reason,
                    free_capacity: free,
                },
            },
            out,
        );
        let cmd = OrchCommand::Assign {
            name: name.clone(),
            node,
        };
        if let Some(orch) = self.orch.as_mut() {
            orch.assigning.insert(name.clone(), (node, need));
        }
        self.propose_orch(now, Some(name), cmd, raft, out);
    }
}
