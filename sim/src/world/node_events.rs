//! What the nodes report about themselves: every core [`Event`] a step outputs is recorded here,
//! in the statistics, the coverage counts, the condensed trace and the JSON trace.
//!
//! These methods only record; they never change what a node or the network does. The one thing
//! they return is whether the event may change who leads (the engine re-evaluates leadership
//! then).

use keel_core::Event;

use super::World;

impl World<'_> {
    /// Records a core event of node `i`; true if it may change who leads.
    pub(super) fn node_event(&mut self, i: usize, e: &Event) -> bool {
        if self.tr.on() {
            let id = self.members[i];
            let event = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "event", "node": id.to_string(), "event": event,
            }));
        }
        match e {
            Event::BecameLeader { .. }
            | Event::SteppedDown { .. }
            | Event::BecameFollower { .. }
            | Event::ElectionStarted { .. }
            | Event::PreVoteRejected { .. }
            | Event::PreVoteStarted { .. }
            | Event::TransferStarted { .. }
            | Event::TransferAborted { .. } => self.leadership_event(i, e),
            Event::SnapshotSent { .. }
            | Event::Committed { .. }
            | Event::SnapshotInstalled { .. }
            | Event::SnapshotTaken { .. }
            | Event::RequestShed { .. }
            | Event::LogTruncated { .. } => self.log_event(i, e),
            Event::MembershipChanged {
                index,
                voters,
                learners,
            } => {
                self.cover("membership changed");
                if self.nodes[i]
                    .node
                    .as_ref()
                    .is_some_and(keel_core::Node::is_leader)
                {
                    let id = self.members[i];
                    self.condensed(format!(
                        "{id} (leader) puts the configuration of entry {} in force: {voters} \
                         voters, {learners} learners",
                        index.0
                    ));
                }
                true
            }
            Event::DeadVoterRemoved { node, .. } => {
                self.cover("autopilot removed a dead voter");
                let id = self.members[i];
                self.condensed(format!("{id} removes dead voter {node}"));
                false
            }
            Event::FollowerLostEntries { follower, holds } => {
                self.cover("leader probes back a follower that lost entries");
                let id = self.members[i];
                self.condensed(format!(
                    "{id} finds {follower} holds only up to {}",
                    holds.0
                ));
                false
            }
            Event::NodeHealth { .. }
            | Event::Workload { .. }
            | Event::LeaseLost { .. }
            | Event::Breaker { .. }
            | Event::ReplacementFrozen { .. }
            | Event::ReplacementResumed => self.coordination_event(i, e),
            Event::Refused { refusal } => {
                let what = format!("{} refuses an unsafe change: {refusal:?}", self.members[i]);
                self.condensed(what.clone());
                self.stats
                    .refusals
                    .push(format!("at {} us: {what}", self.now));
                false
            }
        }
    }

    /// Elections, step-downs and handovers; true if the event may change who leads.
    fn leadership_event(&mut self, i: usize, e: &Event) -> bool {
        let id = self.members[i];
        match e {
            Event::BecameLeader { term } => {
                self.stats.leader_changes += 1;
                self.stats.transfers.elected.push((self.now, id));
                self.condensed(format!("{id} leads term {}", term.0));
                true
            }
            Event::SteppedDown { term, reason } => {
                self.cover(match reason {
                    keel_core::StepDownReason::HigherTerm => "leader stepped down (higher term)",
                    keel_core::StepDownReason::LostQuorum => "leader stepped down (lost quorum)",
                    keel_core::StepDownReason::Removed => "leader stepped down (removed)",
                });
                self.condensed(format!("{id} steps down in term {} ({reason:?})", term.0));
                true
            }
            Event::BecameFollower { .. } => true,
            Event::ElectionStarted { term } => {
                self.cover("election started");
                if self.lead.last_election.0 == term.0 && self.lead.last_election.1 != i {
                    self.cover("two candidates in one term");
                }
                self.lead.last_election = (term.0, i);
                false
            }
            Event::PreVoteRejected { .. } => {
                self.cover("pre-vote rejected");
                false
            }
            Event::PreVoteStarted { .. } => false,
            Event::TransferStarted { term, to } => {
                self.cover("leadership transfer started");
                self.stats.transfers.started.push((self.now, id, *to));
                self.condensed(format!("{id} hands leadership of term {} to {to}", term.0));
                true
            }
            Event::TransferAborted { term, to } => {
                self.cover("leadership transfer aborted");
                self.condensed(format!(
                    "{id} gives up handing term {} to {to}; takes writes again",
                    term.0
                ));
                true
            }
            _ => false,
        }
    }

    /// The log's housekeeping: commits, snapshots, truncations, shed requests (never a change of
    /// leader).
    fn log_event(&mut self, i: usize, e: &Event) -> bool {
        let id = self.members[i];
        match e {
            Event::SnapshotSent { .. } => {
                self.cover("snapshot sent");
                false
            }
            Event::Committed { index } => {
                if index.0 > self.window.max_commit {
                    self.window.commits += index.0 - self.window.max_commit;
                    self.window.max_commit = index.0;
                }
                false
            }
            Event::SnapshotInstalled { last_index } => {
                self.stats.snapshots_installed += 1;
                self.cover("snapshot installed");
                if self.nodes[i].node.as_ref().is_some_and(|n| !n.is_voter()) {
                    self.cover("snapshot installed by a non-voter (a learner catching up)");
                }
                self.condensed(format!("{id} installs a snapshot at {}", last_index.0));
                false
            }
            Event::SnapshotTaken { .. } => {
                self.stats.snapshots_taken += 1;
                false
            }
            Event::RequestShed { .. } => {
                self.stats.requests_shed += 1;
                self.cover("request shed");
                false
            }
            Event::LogTruncated { .. } => {
                self.stats.log_truncations += 1;
                self.cover("log suffix truncated");
                false
            }
            _ => false,
        }
    }

    /// The coordination layer's reports: node health, workload decisions, leases, breakers (never
    /// a change of leader).
    fn coordination_event(&mut self, i: usize, e: &Event) -> bool {
        let id = self.members[i];
        match e {
            Event::NodeHealth {
                node,
                health,
                silent_for,
            } => {
                let text = format!(
                    "{id} (leader) marks {node} {health} after {} ms of silence",
                    silent_for.as_millis()
                );
                self.stats
                    .workloads
                    .health_log
                    .push((self.now, *node, text));
                match health {
                    keel_core::Health::Dead => {
                        self.work.dead_declared.insert(*node, self.now);
                        self.cover("node declared dead");
                    }
                    keel_core::Health::Suspect => self.cover("node suspected"),
                    keel_core::Health::Alive => {}
                }
                self.condensed(format!("{id} marks {node} {health}"));
                false
            }
            Event::Workload { name, decision } => {
                self.workload_decision(i, name, decision);
                false
            }
            Event::LeaseLost { stopped } => {
                self.stats.workloads.leases_lost += 1;
                self.cover("lease lost");
                if *stopped > 0 {
                    self.condensed(format!("{id} lost its lease, stops {stopped} copies"));
                }
                false
            }
            Event::Breaker { node, state } => {
                if *state == keel_core::BreakerState::Open {
                    self.stats.workloads.breakers_opened += 1;
                    self.cover("breaker opened");
                }
                self.condensed(format!("{id}: breaker of {node} {state:?}"));
                false
            }
            Event::ReplacementFrozen { dead } => {
                self.stats.workloads.freezes += 1;
                self.cover("re-placement frozen (correlated failure)");
                self.condensed(format!(
                    "{id} freezes re-placement: {} nodes died at once",
                    dead.len()
                ));
                false
            }
            Event::ReplacementResumed => {
                self.condensed(format!("{id} resumes re-placement"));
                false
            }
            _ => false,
        }
    }
}
