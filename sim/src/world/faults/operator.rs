//! The operator behind the membership faults: it asks the current leader for the next
//! single-server change of each task (as a client request, `ClientOp::Members`), and asks
//! again after [`crate::SimConfig::member_retry`] when the leader refuses for now, the answer is
//! lost, no node leads, or the node to promote is not a member yet, until the task's goal holds
//! in the leader's committed configuration (or no change can reach it any more, like removing
//! the last voter: the task is given up).
//!
//! It reads the leader's configuration as `keel member list` would show it. It never changes a
//! node except through the requests it sends, and draws no randomness.

use keel_core::{ClientError, ClientOp, ClientResponse, MemberChange, MemberOp, Node, RequestId};

use super::members::Next;
use crate::world::clients::Answer;
use crate::world::events::Ev;
use crate::world::World;

/// The change's kind, for coverage names.
fn kind(change: &MemberChange) -> usize {
    match change {
        MemberChange::AddLearner { .. } => 0,
        MemberChange::Promote { .. } => 1,
        MemberChange::Remove { .. } => 2,
        MemberChange::SetAddress { .. } => 3,
    }
}

const REQUESTED: [&str; 4] = [
    "member change requested: add learner",
    "member change requested: promote",
    "member change requested: remove",
    "member change requested: set address",
];
const COMMITTED: [&str; 4] = [
    "member change committed: add learner",
    "member change committed: promote",
    "member change committed: remove",
    "member change committed: set address",
];

impl World<'_> {
    /// Moves task `task` on: settled if its goal holds in the leader's committed configuration,
    /// otherwise the next change is asked for (or asked again later).
    pub(in crate::world) fn operator_step(&mut self, task: usize) {
        let t = &self.faults.members.tasks[task];
        if t.settled.is_some() || t.asking.is_some() || self.now >= self.end {
            return;
        }
        let goal = t.goal;
        let Some(l) = self.leader_index() else {
            return self.operator_retry(task);
        };
        let Some(leader) = self.nodes[l].node.as_ref() else {
            return self.operator_retry(task);
        };
        if goal.holds(committed_membership(leader)) {
            return self.settle(task, Ok(()));
        }
        match goal.next(leader.membership()) {
            Next::Holds | Next::NotYet => self.operator_retry(task),
            Next::Impossible(why) => self.settle(task, Err(why)),
            Next::Ask(change) => self.ask(task, l, change),
        }
    }

    /// Sends `change` for task `task` to node `l`, the leader.
    fn ask(&mut self, task: usize, l: usize, change: MemberChange) {
        self.cover(REQUESTED[kind(&change)]);
        let id = self.clients.new_request();
        self.faults.members.tasks[task].asking = Some(id);
        self.faults
            .members
            .requests
            .insert(id, (task, change.clone()));
        self.send_request(l, id, ClientOp::Members(MemberOp::Change(change)));
    }

    /// Asks again for task `task` a little later.
    fn operator_retry(&mut self, task: usize) {
        if self.now < self.end {
            let at = self.now + self.us.member_retry;
            self.schedule(at, Ev::MemberRetry { task });
        }
    }

    /// The operator's request `id` was answered (or refused, or timed out). False if it is not
    /// one of the operator's.
    pub(in crate::world) fn operator_answer(&mut self, id: RequestId, answer: &Answer) -> bool {
        let Some((task, change)) = self.faults.members.requests.remove(&id) else {
            return false;
        };
        self.faults.members.tasks[task].asking = None;
        self.tr.hasher.u64(0x3E3B);
        self.tr.hasher.u64(id.0);
        match answer {
            Answer::Reply(Ok(ClientResponse::Written { .. })) => {
                self.cover(COMMITTED[kind(&change)]);
                self.operator_step(task);
            }
            Answer::Reply(Err(ClientError::Refused { reason })) => {
                self.cover("member change refused for now (asked again)");
                let line = format!("the leader refuses {change} for now: {reason}");
                if self.tr.on() {
                    self.trace_json(serde_json::json!({
                        "t_us": self.now, "kind": "member-refused", "id": id.0, "why": line,
                    }));
                }
                self.operator_retry(task);
            }
            _ => self.operator_retry(task),
        }
        true
    }

    /// Task `task` is over: committed (`Ok`) or given up.
    fn settle(&mut self, task: usize, outcome: Result<(), String>) {
        let now = self.now;
        let t = &mut self.faults.members.tasks[task];
        let line = match &outcome {
            Ok(()) => format!("operator: {} is committed", t.fault),
            Err(why) => format!("operator gives up {}: {why}", t.fault),
        };
        t.settled = Some((now, outcome));
        self.cover(if line.contains("gives up") {
            "membership change given up"
        } else {
            "membership change settled"
        });
        self.condensed(line);
        self.tr.hasher.u64(0x5E77);
        self.tr.hasher.u64(task as u64);
    }
}

/// The configuration `leader` has committed: the last one at or before its commit index.
fn committed_membership(leader: &Node) -> &keel_core::Membership {
    leader.log().membership_at(leader.commit_index())
}
