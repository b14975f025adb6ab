//! The orchestrator's failure detector: each member's verdict from its silence, proposing
//! verdict changes, the correlated-failure guard, and re-placing copies lost with a dead node
//! (jittered, rate-limited).
//!
//! Owns: when a node counts as suspect or dead and when its copies are given up. Never:
//! choosing where a copy goes next (that is placement's job).

use std::time::Duration;

use crate::io::Output;
use crate::raft::Raft;
use crate::trace::{Event, WorkloadDecision};
use crate::types::{Instant, LogIndex, NodeId};
use crate::workload::{Health, OrchCommand};

use super::micros;
use crate::coord::Coordination;

impl Coordination {
    /// The detector's verdict on `node` now.
    pub(super) fn verdict(&self, now: Instant, node: NodeId) -> Health {
        let Some(orch) = self.orch.as_ref() else {
            return Health::Alive;
        };
        if node == self.id {
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

    pub(super) fn detect_failures(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
        let Some(watched) = self.orch.as_ref().map(|o| o.watched()) else {
            return;
        };
        for node in watched {
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
            let index = self.propose_orch(now, None, cmd, raft, out);
            if let Some(orch) = self.orch.as_mut() {
                orch.health_inflight.insert(node, index);
                if recorded == Health::Alive {
                    orch.silenced.push_back((now, node));
                }
            }
        }
    }

    pub(super) fn guard_correlated_failures(&mut self, now: Instant, out: &mut Vec<Output>) {
        let window = self.cfg.correlated_failure_window;
        let limit = self.cfg.correlated_failure_fraction * self.members.len() as f64;
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
    pub(super) fn replace_lost_copies(
        &mut self,
        now: Instant,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        if self.schedule_replacements(now, out) {
            self.replace_due(now, raft, out);
        }
    }

    /// Schedules the re-placement of every copy on a node declared dead, after a jittered
    /// delay. False while a new leader settles or re-placement is frozen.
    fn schedule_replacements(&mut self, now: Instant, out: &mut Vec<Output>) -> bool {
        let Some(orch) = self.orch.as_ref() else {
            return false;
        };
        let settled = now >= orch.term_started + self.cfg.lease_duration + self.cfg.lease_margin;
        if !settled || orch.frozen.is_some() {
            return false;
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
        true
    }

    /// Gives up the copies whose re-placement is due, as far as the token bucket allows.
    fn replace_due(&mut self, now: Instant, raft: &mut Raft, out: &mut Vec<Output>) {
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
            self.orphan(now, name, epoch, from, silent, raft, out);
        }
    }

    /// Proposes that the copy of `name` at `epoch` on the dead `from` is lost.
    #[allow(clippy::too_many_arguments)]
    fn orphan(
        &mut self,
        now: Instant,
        name: String,
        epoch: LogIndex,
        from: NodeId,
        silent: Duration,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
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
        self.propose_orch(now, Some(name), cmd, raft, out);
    }
}
