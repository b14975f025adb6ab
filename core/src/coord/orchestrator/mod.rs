//! The leader's orchestrator: failure detection, placement, re-placement, retries with backoff,
//! circuit breakers and the correlated-failure guard. Every decision is proposed to the log as
//! an [`OrchCommand`] and traced as an [`Event`], so `explain` can replay the chain.
//!
//! Failure detection. Every node renews its lease with the leader every `lease_renew_interval`;
//! any message from a node counts as hearing it. Silent past `suspect_after`: suspect (no new
//! work goes there); past `dead_after`: dead (its copies are re-placed). Hearing a suspect node
//! makes it alive again with nothing moved. A new leader starts from the silences the previous
//! leader last sent with its grants, so it neither grants everyone a fresh grace nor declares the
//! cluster dead; a node the registry records dead stays dead until this leader hears it, and
//! any other node gets two renewal intervals after the election to check in with it.
//!
//! Why a copy is stopped before it is placed elsewhere:
//! - this leader grants a lease only while a majority acknowledged a heartbeat round it started
//!   less than `election_timeout_min` ago (Raft's `quorum_fresh`). Those followers heard it
//!   after the round started and refuse to vote for anyone else for `election_timeout_min` after
//!   hearing it (leader stickiness), so every lease this leader grants is granted before any
//!   later leader is elected;
//! - a node is declared dead `dead_after >= lease_duration + lease_margin` after this leader last
//!   heard it, and a lease counts from when the node *sent* its renewal;
//! - a new leader re-places nothing during its first `lease_duration + lease_margin`, which covers
//!   leases granted by its predecessors.
//!
//! Owns: the leader-only orchestration state (rebuilt at every election), lease grants, reports
//! from agents, circuit breakers and the orchestration round; failure detection is in
//! `health.rs`, placement in `placement.rs`. Never: applying a decision (the registry does that
//! when the entry commits) or touching the log other than by proposing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::io::Output;
use crate::message::{Command, MessageBody};
use crate::peer_map::PeerMap;
use crate::raft::Raft;
use crate::trace::{BreakerState, Event, WorkloadDecision};
use crate::types::{Instant, LogIndex, NodeId};
use crate::workload::{ExitOutcome, OrchCommand, Status};

use super::Coordination;

mod autopilot;
mod health;
mod placement;

/// A node's circuit breaker: placement failures on it keep new work away for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Breaker {
    /// `failures` in a row, the last at `last`; a gap of `breaker_open_for` starts a new row.
    Closed {
        failures: u32,
        last: Instant,
    },
    Open {
        until: Instant,
    },
    /// One trial placement allowed (`trial`: it was made).
    HalfOpen {
        trial: bool,
    },
}

/// Leader-only orchestration state, rebuilt at every election.
#[derive(Debug)]
pub(crate) struct Orchestrator {
    term_started: Instant,
    next_run: Instant,
    /// When each member was last heard (directly this term, or from the previous leader's grants).
    heard: PeerMap<Instant>,
    heard_this_term: PeerMap<()>,
    /// Orchestration entries appended and not yet applied, by workload.
    inflight: BTreeMap<String, LogIndex>,
    /// Placements appended and not yet applied: workload -> (node, resources), counted as used.
    assigning: BTreeMap<String, (NodeId, u32)>,
    health_inflight: BTreeMap<NodeId, LogIndex>,
    /// Lost copies waiting for their jittered re-placement: due, epoch, node.
    replace_at: BTreeMap<String, (Instant, LogIndex, NodeId)>,
    backoff_due: BTreeMap<String, Instant>,
    tokens: f64,
    tokens_at: Instant,
    breakers: BTreeMap<NodeId, Breaker>,
    restarts: BTreeMap<String, VecDeque<Instant>>,
    /// Nodes that went silent (alive to suspect), and when: the correlated-failure guard
    /// counts them before any is declared dead, so it can freeze before the first re-placement.
    silenced: VecDeque<(Instant, NodeId)>,
    /// While frozen: until when, and the nodes whose disappearance froze it.
    frozen: Option<(Instant, Vec<NodeId>)>,
    /// Nodes no longer in the configuration that may still hold copies: they get no lease and
    /// hearing them no longer counts, so they go dead `dead_after` after their removal (or this
    /// leader's start) and their copies are placed elsewhere only once their leases ran out.
    removed: PeerMap<()>,
}

impl Orchestrator {
    pub(crate) fn next_run(&self) -> Instant {
        self.next_run
    }

    pub(crate) fn heard(&mut self, from: NodeId, now: Instant) {
        if self.removed.contains_key(&from) {
            return;
        }
        self.heard.insert(from, now);
        self.heard_this_term.insert(from, ());
    }

    /// The configuration now has `members` (this leader is `me`): a new member counts as heard
    /// now; one that left stops being heard from now on.
    pub(crate) fn members_changed(&mut self, members: &[NodeId], me: NodeId, now: Instant) {
        let known: Vec<NodeId> = self.heard.iter().map(|(n, _)| *n).collect();
        for n in known {
            if n != me && !members.contains(&n) && !self.removed.contains_key(&n) {
                self.heard.insert(n, now);
                self.removed.insert(n, ());
            }
        }
        self.removed.retain(|n| !members.contains(n));
        for &m in members {
            if !self.heard.contains_key(&m) {
                self.heard.insert(m, now);
                self.heard_this_term.insert(m, ());
            }
        }
    }

    /// Every node this leader watches (members and removed nodes), ascending.
    pub(crate) fn watched(&self) -> Vec<NodeId> {
        self.heard.iter().map(|(n, _)| *n).collect()
    }

    /// Run again at `at` at the latest.
    pub(crate) fn wake(&mut self, at: Instant) {
        self.next_run = self.next_run.min(at);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

impl Coordination {
    /// Builds the orchestrator of a new leader.
    pub(super) fn start_orchestrator(&mut self, now: Instant) {
        let mut heard = PeerMap::default();
        for &m in &self.members {
            let at = match self.agent.heard.get(&m) {
                Some(t) => *t,
                None => now,
            };
            heard.insert(m, at.min(now));
        }
        heard.insert(self.id, now);
        // Nodes removed from the configuration that still hold copies: watched from now on.
        let mut removed = PeerMap::default();
        for w in self.sm.registry.workloads.values() {
            if let Some(node) = w.status.node() {
                if !heard.contains_key(&node) {
                    heard.insert(node, now);
                    removed.insert(node, ());
                }
            }
        }
        self.orch = Some(Box::new(Orchestrator {
            term_started: now,
            next_run: now,
            heard,
            heard_this_term: PeerMap::default(),
            inflight: BTreeMap::new(),
            assigning: BTreeMap::new(),
            health_inflight: BTreeMap::new(),
            replace_at: BTreeMap::new(),
            backoff_due: BTreeMap::new(),
            tokens: f64::from(self.cfg.replace_rate_per_sec),
            tokens_at: now,
            breakers: BTreeMap::new(),
            restarts: BTreeMap::new(),
            silenced: VecDeque::new(),
            frozen: None,
            removed,
        }));
    }

    /// Leader side of a lease renewal.
    // The fields of the message, each used on its own, plus Raft for the answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_lease_request(
        &mut self,
        now: Instant,
        from: NodeId,
        sent_at: Instant,
        running: Vec<(String, LogIndex)>,
        exits: Vec<(String, LogIndex, ExitOutcome)>,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        let Some(orch) = self.orch.as_ref() else {
            return;
        };
        // A node removed from the configuration gets no lease: its copies stop when the last
        // one runs out, before they are placed elsewhere.
        if raft.quorum_fresh(now) && self.members.contains(&from) {
            let silence = orch
                .heard
                .iter()
                .map(|(n, t)| (*n, now.saturating_since(*t)))
                .collect();
            // The node starts nothing before it applied everything this leader appended so far,
            // decisions not yet committed included: a copy given up a moment ago must not start.
            let body = MessageBody::LeaseGrant {
                sent_at,
                commit: raft.last_index(),
                silence,
            };
            raft.stamp().send(from, body, out);
        }
        self.lease_report(now, from, running, exits, raft, out);
    }

    /// What a node reported: copies it runs and copies that exited.
    pub(super) fn lease_report(
        &mut self,
        now: Instant,
        from: NodeId,
        running: Vec<(String, LogIndex)>,
        exits: Vec<(String, LogIndex, ExitOutcome)>,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        if self.orch.is_none() {
            return;
        }
        for (name, epoch) in running {
            let assigned = self.sm.registry.get(&name).map(|w| w.status.clone())
                == Some(Status::Assigned { node: from, epoch });
            if assigned && !self.orch_busy(&name) {
                self.breaker_result(now, from, true, out);
                let cmd = OrchCommand::Started {
                    name: name.clone(),
                    node: from,
                    epoch,
                };
                self.propose_orch(now, Some(name), cmd, raft, out);
            }
        }
        for (name, epoch, outcome) in exits {
            let Some(w) = self.sm.registry.get(&name) else {
                continue;
            };
            if w.status.assignment() != Some((from, epoch)) || self.orch_busy(&name) {
                continue;
            }
            let attempt = w.attempts.max(1);
            let max_attempts = w.spec.max_attempts;
            let (base, cap) = (micros(w.spec.backoff_base), micros(w.spec.backoff_cap));
            let ceiling = base.saturating_mul(1u64 << (attempt - 1).min(32)).min(cap);
            let retry_after = Duration::from_micros(self.orch_rng.range(0, ceiling + 1));
            if outcome.is_failure() {
                self.breaker_result(now, from, false, out);
                let decision = if attempt < max_attempts {
                    WorkloadDecision::BackoffChosen {
                        attempt,
                        delay: retry_after,
                    }
                } else {
                    WorkloadDecision::GaveUp {
                        reason: format!("{attempt} of {max_attempts} attempts failed"),
                    }
                };
                self.trace(
                    Event::Workload {
                        name: name.clone(),
                        decision,
                    },
                    out,
                );
            }
            let cmd = OrchCommand::Exited {
                name: name.clone(),
                epoch,
                outcome,
                retry_after,
            };
            self.propose_orch(now, Some(name), cmd, raft, out);
        }
    }

    fn orch_busy(&self, name: &str) -> bool {
        self.orch
            .as_ref()
            .is_some_and(|o| o.inflight.contains_key(name))
    }

    /// Appends a leader decision to the log (no client waits for it).
    fn propose_orch(
        &mut self,
        now: Instant,
        name: Option<String>,
        cmd: OrchCommand,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) -> LogIndex {
        let index = raft.append_command(Command::Orch(cmd), out);
        if let (Some(name), Some(orch)) = (name, self.orch.as_mut()) {
            orch.inflight.insert(name, index);
        }
        raft.replicate_appended(now, self, out);
        index
    }

    fn breaker_result(&mut self, now: Instant, node: NodeId, ok: bool, out: &mut Vec<Output>) {
        let threshold = self.cfg.breaker_threshold;
        let open_for = self.cfg.breaker_open_for;
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        let fresh = Breaker::Closed {
            failures: 0,
            last: now,
        };
        let before = *orch.breakers.get(&node).unwrap_or(&fresh);
        let after = match (before, ok) {
            // A copy that started shows a half-open node works again. A closed breaker keeps
            // counting: a copy that starts and then fails is still a failed placement.
            (Breaker::HalfOpen { .. }, true) => fresh,
            (_, true) => before,
            (Breaker::Closed { failures, last }, false) => {
                let row = if now.saturating_since(last) > open_for {
                    1
                } else {
                    failures + 1
                };
                if row < threshold {
                    Breaker::Closed {
                        failures: row,
                        last: now,
                    }
                } else {
                    Breaker::Open {
                        until: now + open_for,
                    }
                }
            }
            (Breaker::Open { until }, false) => Breaker::Open { until },
            (_, false) => Breaker::Open {
                until: now + open_for,
            },
        };
        orch.breakers.insert(node, after);
        let state = match after {
            Breaker::Closed { .. } => BreakerState::Closed,
            Breaker::Open { .. } => BreakerState::Open,
            Breaker::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        let changed = std::mem::discriminant(&before) != std::mem::discriminant(&after);
        if changed {
            self.trace(Event::Breaker { node, state }, out);
        }
    }

    /// May new work go to `node` now? Moves an open breaker whose time is up to half-open.
    fn breaker_allows(&mut self, now: Instant, node: NodeId, out: &mut Vec<Output>) -> bool {
        let Some(orch) = self.orch.as_mut() else {
            return false;
        };
        match orch.breakers.get(&node).copied() {
            None | Some(Breaker::Closed { .. }) | Some(Breaker::HalfOpen { trial: false }) => true,
            Some(Breaker::HalfOpen { trial: true }) => false,
            Some(Breaker::Open { until }) if now >= until => {
                orch.breakers
                    .insert(node, Breaker::HalfOpen { trial: false });
                let state = BreakerState::HalfOpen;
                self.trace(Event::Breaker { node, state }, out);
                true
            }
            Some(Breaker::Open { .. }) => false,
        }
    }

    /// One round of orchestration, if due.
    pub(super) fn orchestrate(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        if now < orch.next_run {
            return;
        }
        orch.next_run = now + self.cfg.orchestrate_interval;
        let applied = raft.applied_index();
        orch.inflight.retain(|_, i| *i > applied);
        let inflight = &orch.inflight;
        orch.assigning.retain(|name, _| inflight.contains_key(name));
        orch.health_inflight.retain(|_, i| *i > applied);
        self.detect_failures(now, raft, out);
        self.clean_up_dead_voters(now, raft, out);
        self.guard_correlated_failures(now, out);
        self.replace_lost_copies(now, raft, out);
        self.retry_backed_off(now, raft, out);
        self.place_pending(now, raft, out);
    }
}
