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
//!   less than `election_timeout_min` ago ([`Node::quorum_fresh`]). Those followers heard it
//!   after the round started and refuse to vote for anyone else for `election_timeout_min` after
//!   hearing it (leader stickiness), so every lease this leader grants is granted before any
//!   later leader is elected;
//! - a node is declared dead `dead_after >= lease_duration + lease_margin` after this leader last
//!   heard it, and a lease counts from when the node *sent* its renewal;
//! - a new leader re-places nothing during its first `lease_duration + lease_margin`, which covers
//!   leases granted by its predecessors.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::io::{Output, Persist};
use crate::message::{Command, Entry, MessageBody};
use crate::node::Node;
use crate::peer_map::PeerMap;
use crate::trace::{BreakerState, Event, WorkloadDecision};
use crate::types::{Instant, LogIndex, NodeId};
use crate::workload::{Desired, ExitOutcome, Health, OrchCommand, Status};

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
}

impl Orchestrator {
    pub(crate) fn next_run(&self) -> Instant {
        self.next_run
    }

    pub(crate) fn heard(&mut self, from: NodeId, now: Instant) {
        self.heard.insert(from, now);
        self.heard_this_term.insert(from, ());
    }

    /// Run again at `at` at the latest.
    pub(crate) fn wake(&mut self, at: Instant) {
        self.next_run = self.next_run.min(at);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

impl Node {
    /// Builds the orchestrator of a new leader.
    pub(crate) fn start_orchestrator(&mut self, now: Instant) {
        let mut heard = PeerMap::default();
        for &m in &self.cfg.members {
            let at = match self.agent.heard.get(&m) {
                Some(t) => *t,
                None => now,
            };
            heard.insert(m, at.min(now));
        }
        heard.insert(self.cfg.id, now);
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
        }));
    }

    /// True while a majority (this leader included) acknowledged AppendEntries within
    /// `election_timeout_min`: no other leader can have been elected meanwhile.
    pub(crate) fn quorum_fresh(&self, now: Instant) -> bool {
        let Some(lead) = self.lead.as_ref() else {
            return false;
        };
        // A follower that answered round r heard this leader after r started, and refuses votes
        // for `election_timeout_min` after hearing it. The start of the round, not when its
        // answer was processed: a loop that stalled may process an old answer late.
        let window = self.cfg.election_timeout_min;
        let fresh = lead
            .progress
            .values()
            .filter(|p| {
                lead.round_start(p.acked_round)
                    .is_some_and(|t| now.saturating_since(t) < window)
            })
            .count();
        fresh + 1 >= self.quorum()
    }

    /// Leader side of a lease renewal.
    pub(crate) fn handle_lease_request(
        &mut self,
        now: Instant,
        from: NodeId,
        sent_at: Instant,
        running: Vec<(String, LogIndex)>,
        exits: Vec<(String, LogIndex, ExitOutcome)>,
        out: &mut Vec<Output>,
    ) {
        let Some(orch) = self.orch.as_ref() else {
            return;
        };
        if self.quorum_fresh(now) {
            let silence = orch
                .heard
                .iter()
                .map(|(n, t)| (*n, now.saturating_since(*t)))
                .collect();
            // The node starts nothing before it applied everything this leader appended so far,
            // decisions not yet committed included: a copy given up a moment ago must not start.
            let body = MessageBody::LeaseGrant {
                sent_at,
                commit: self.log.last_index(),
                silence,
            };
            self.send(from, body, out);
        }
        self.lease_report(now, from, running, exits, out);
    }

    /// What a node reported: copies it runs and copies that exited.
    pub(crate) fn lease_report(
        &mut self,
        now: Instant,
        from: NodeId,
        running: Vec<(String, LogIndex)>,
        exits: Vec<(String, LogIndex, ExitOutcome)>,
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
                self.propose_orch(now, Some(name), cmd, out);
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
            self.propose_orch(now, Some(name), cmd, out);
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
        out: &mut Vec<Output>,
    ) -> LogIndex {
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.term,
            index,
            command: Arc::new(Command::Orch(cmd)),
        };
        self.log.push(entry.clone());
        out.push(Output::Persist(Persist::Entries(vec![entry])));
        if let (Some(name), Some(orch)) = (name, self.orch.as_mut()) {
            orch.inflight.insert(name, index);
        }
        self.broadcast_append(now, out);
        self.maybe_commit(now, out);
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
    pub(crate) fn orchestrate(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        if now < orch.next_run {
            return;
        }
        orch.next_run = now + self.cfg.orchestrate_interval;
        let applied = self.applied;
        orch.inflight.retain(|_, i| *i > applied);
        let inflight = &orch.inflight;
        orch.assigning.retain(|name, _| inflight.contains_key(name));
        orch.health_inflight.retain(|_, i| *i > applied);
        self.detect_failures(now, out);
        self.guard_correlated_failures(now, out);
        self.replace_lost_copies(now, out);
        self.retry_backed_off(now, out);
        self.place_pending(now, out);
    }

    /// The detector's verdict on `node` now.
    fn verdict(&self, now: Instant, node: NodeId) -> Health {
        let Some(orch) = self.orch.as_ref() else {
            return Health::Alive;
        };
        if node == self.cfg.id {
            return Health::Alive;
        }
        let recorded = self.sm.registry.health(node);
        if !orch.heard_this_term.contains_key(&node) {
            // A node the registry records dead stays dead until this leader hears it. Any other
            // node gets two renewal intervals after the election to find the new leader before
            // the silences passed on by the previous leader count against it.
            let check_in = orch.term_started + self.cfg.lease_renew_interval * 2;
            if recorded == Health::Dead || now < check_in {
                return recorded;
            }
        }
        let silent = orch
            .heard
            .get(&node)
            .map_or(Duration::MAX, |t| now.saturating_since(*t));
        if silent >= self.cfg.dead_after {
            Health::Dead
        } else if silent >= self.cfg.suspect_after {
            Health::Suspect
        } else {
            Health::Alive
        }
    }

    fn detect_failures(&mut self, now: Instant, out: &mut Vec<Output>) {
        for i in 0..self.cfg.members.len() {
            let node = self.cfg.members[i];
            let verdict = self.verdict(now, node);
            let recorded = self.sm.registry.health(node);
            let Some(orch) = self.orch.as_ref() else {
                return;
            };
            if verdict == recorded || orch.health_inflight.contains_key(&node) {
                continue;
            }
            let silent_for = orch
                .heard
                .get(&node)
                .map_or(Duration::ZERO, |t| now.saturating_since(*t));
            self.trace(
                Event::NodeHealth {
                    node,
                    health: verdict,
                    silent_for,
                },
                out,
            );
            let cmd = OrchCommand::SetHealth {
                node,
                health: verdict,
            };
            let index = self.propose_orch(now, None, cmd, out);
            if let Some(orch) = self.orch.as_mut() {
                orch.health_inflight.insert(node, index);
                if recorded == Health::Alive {
                    orch.silenced.push_back((now, node));
                }
            }
        }
    }

    fn guard_correlated_failures(&mut self, now: Instant, out: &mut Vec<Output>) {
        let window = self.cfg.correlated_failure_window;
        let limit = self.cfg.correlated_failure_fraction * self.cfg.members.len() as f64;
        let hold = self.cfg.correlated_failure_hold;
        let returned: Vec<bool> = match self.orch.as_ref().and_then(|o| o.frozen.as_ref()) {
            Some((_, nodes)) => nodes
                .iter()
                .map(|n| self.verdict(now, *n) == Health::Alive)
                .collect(),
            None => Vec::new(),
        };
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        while orch
            .silenced
            .front()
            .is_some_and(|(t, _)| now.saturating_since(*t) > window)
        {
            orch.silenced.pop_front();
        }
        match &orch.frozen {
            Some((until, _)) if now >= *until || returned.iter().all(|r| *r) => {
                orch.frozen = None;
                orch.silenced.clear();
                self.trace(Event::ReplacementResumed, out);
            }
            None if orch.silenced.len() as f64 > limit => {
                let dead: Vec<NodeId> = orch.silenced.iter().map(|(_, n)| *n).collect();
                orch.frozen = Some((now + hold, dead.clone()));
                self.trace(Event::ReplacementFrozen { dead }, out);
            }
            _ => {}
        }
    }

    /// Copies on dead nodes are re-placed, each after a jittered delay and within the rate limit.
    fn replace_lost_copies(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(orch) = self.orch.as_ref() else {
            return;
        };
        let settled = now >= orch.term_started + self.cfg.lease_duration + self.cfg.lease_margin;
        if !settled || orch.frozen.is_some() {
            return;
        }
        let lost: Vec<(String, NodeId, LogIndex)> = self
            .sm
            .registry
            .workloads
            .iter()
            .filter_map(|(name, w)| {
                let (node, epoch) = w.status.assignment()?;
                let dead = self.sm.registry.health(node) == Health::Dead
                    && self.verdict(now, node) == Health::Dead;
                let scheduled = orch.replace_at.contains_key(name);
                (dead && !scheduled).then(|| (name.clone(), node, epoch))
            })
            .collect();
        let jitter = micros(self.cfg.replace_jitter);
        for (name, from, epoch) in lost {
            let delay = Duration::from_micros(self.orch_rng.range(0, jitter + 1));
            if let Some(orch) = self.orch.as_mut() {
                orch.replace_at
                    .insert(name.clone(), (now + delay, epoch, from));
                orch.wake(now + delay);
            }
            self.trace(
                Event::Workload {
                    name,
                    decision: WorkloadDecision::ReplacementScheduled { from, epoch, delay },
                },
                out,
            );
        }
        // Refill the token bucket.
        let rate = f64::from(self.cfg.replace_rate_per_sec);
        let Some(orch) = self.orch.as_mut() else {
            return;
        };
        let elapsed = now.saturating_since(orch.tokens_at).as_secs_f64();
        orch.tokens = (orch.tokens + elapsed * rate).min(rate);
        orch.tokens_at = now;
        let due: Vec<(String, LogIndex, NodeId)> = orch
            .replace_at
            .iter()
            .filter(|(_, (at, _, _))| *at <= now)
            .map(|(n, (_, e, f))| (n.clone(), *e, *f))
            .collect();
        for (name, epoch, from) in due {
            // The node may have come back while the jitter ran: then nothing is given up.
            let still = self
                .sm
                .registry
                .get(&name)
                .is_some_and(|w| w.status.assignment() == Some((from, epoch)))
                && self.verdict(now, from) == Health::Dead;
            let Some(orch) = self.orch.as_mut() else {
                return;
            };
            if !still {
                orch.replace_at.remove(&name);
                continue;
            }
            if orch.tokens < 1.0 || orch.inflight.contains_key(&name) {
                continue;
            }
            orch.tokens -= 1.0;
            orch.replace_at.remove(&name);
            let silent = orch
                .heard
                .get(&from)
                .map_or(Duration::ZERO, |t| now.saturating_since(*t));
            let why = format!("{from} declared dead (silent for {}ms)", silent.as_millis());
            self.trace(
                Event::Workload {
                    name: name.clone(),
                    decision: WorkloadDecision::Orphaned {
                        from,
                        epoch,
                        why: why.clone(),
                    },
                },
                out,
            );
            let cmd = OrchCommand::Orphaned {
                name: name.clone(),
                epoch,
                why,
            };
            self.propose_orch(now, Some(name), cmd, out);
        }
    }

    /// Backoffs that ended become pending again, unless the restart-intensity limit says the
    /// workload is crash-looping.
    fn retry_backed_off(&mut self, now: Instant, out: &mut Vec<Output>) {
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
            self.propose_orch(now, Some(name), cmd, out);
        }
    }

    /// Pending workloads go to the eligible node with the most free capacity (ties: lowest id).
    fn place_pending(&mut self, now: Instant, out: &mut Vec<Output>) {
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
        let mut eligible = Vec::new();
        for i in 0..self.cfg.members.len() {
            let node = self.cfg.members[i];
            let alive = self.verdict(now, node) == Health::Alive
                && self.sm.registry.health(node) == Health::Alive
                && !self.sm.registry.draining(node);
            let heard = node == self.cfg.id
                || self
                    .orch
                    .as_ref()
                    .is_some_and(|o| o.heard_this_term.contains_key(&node));
            if alive && heard && self.breaker_allows(now, node, out) {
                eligible.push(node);
            }
        }
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
            self.propose_orch(now, Some(name), cmd, out);
        }
    }
}
