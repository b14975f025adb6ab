//! The membership family: `AddLearner`, `AddMember`, `Promote`, `RemoveMember` and
//! `ReplaceNode`. Each fault becomes one operator task with a goal (the node a learner of its
//! incarnation, a voter, removed) that [`super::operator`] pursues by asking the leader for one
//! single-server change at a time until the goal holds in a committed configuration.
//!
//! [`MemberOps`] owns the tasks and the operator's requests in flight; this file owns what a
//! task wants ([`Goal`]) and which change brings it closer. Nothing here sends a request or
//! draws randomness (selectors draw from the fault stream, as for every family).

use std::collections::BTreeMap;

use keel_core::{Incarnation, MemberChange, Membership, NodeId, RequestId};

use crate::scenario::Fault;
use crate::world::World;

/// What an operator task wants of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::world) enum Goal {
    /// `id` of `incarnation` is a member (learner or voter): `AddLearner`.
    Member(NodeId, Incarnation),
    /// `id` of `incarnation` is a voter: `AddMember`, `ReplaceNode`.
    Voter(NodeId, Incarnation),
    /// `id`, of whatever incarnation the configuration names, is a voter: `Promote`.
    Promoted(NodeId),
    /// `id` is no member: `RemoveMember`.
    Removed(NodeId),
}

/// What the operator does next for a goal, given the leader's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::world) enum Next {
    /// The goal holds there: wait until that configuration is committed.
    Holds,
    /// Ask for this change.
    Ask(MemberChange),
    /// Nothing to ask for yet (the node to promote is not a member yet: an `AddLearner` may
    /// still be on its way): ask again later.
    NotYet,
    /// No change can reach the goal from there (removing the last voter): the operator gives
    /// up.
    Impossible(String),
}

impl Goal {
    /// Whether the goal holds in `m`.
    pub(in crate::world) fn holds(self, m: &Membership) -> bool {
        match self {
            Goal::Member(id, inc) => m.knows(id, inc),
            Goal::Voter(id, inc) => m.is_voter(id, inc),
            Goal::Promoted(id) => m.get(id).is_some_and(|x| x.voter),
            Goal::Removed(id) => m.get(id).is_none(),
        }
    }

    /// The next single-server change towards the goal from `m`.
    pub(in crate::world) fn next(self, m: &Membership) -> Next {
        if self.holds(m) {
            return Next::Holds;
        }
        if let Goal::Promoted(id) = self {
            if m.get(id).is_none() {
                return Next::NotYet;
            }
        }
        let change = match self {
            Goal::Member(id, incarnation) => add_learner(id, incarnation),
            Goal::Voter(id, incarnation) if !m.knows(id, incarnation) => {
                add_learner(id, incarnation)
            }
            Goal::Voter(id, _) | Goal::Promoted(id) => MemberChange::Promote { id },
            Goal::Removed(id) => MemberChange::Remove { id },
        };
        match m.apply(&change) {
            Ok(_) => Next::Ask(change),
            Err(e) => Next::Impossible(format!("{change}: {e}")),
        }
    }
}

fn add_learner(id: NodeId, incarnation: Incarnation) -> MemberChange {
    MemberChange::AddLearner {
        id,
        incarnation,
        address: String::new(),
    }
}

/// One membership fault as the operator pursues it.
pub(in crate::world) struct Task {
    /// The fault as written (`AddMember(Node("n4"))`), for reports.
    pub(in crate::world) fault: String,
    pub(in crate::world) goal: Goal,
    pub(in crate::world) requested_at: u64,
    /// When it settled and how: `Ok(())` committed, `Err(why)` given up.
    pub(in crate::world) settled: Option<(u64, Result<(), String>)>,
    /// The operator's request in flight, if any.
    pub(in crate::world) asking: Option<RequestId>,
}

/// The operator's membership tasks and its requests in flight.
#[derive(Default)]
pub(in crate::world) struct MemberOps {
    pub(in crate::world) tasks: Vec<Task>,
    /// Requests in flight: request -> (task, the change asked for).
    pub(in crate::world) requests: BTreeMap<RequestId, (usize, MemberChange)>,
}

impl World<'_> {
    /// Fires a fault of this family: the operator takes it on as a task.
    pub(super) fn fire_membership_family(&mut self, fault: &Fault) -> String {
        let (kind, sel) = match fault {
            Fault::AddLearner(sel) => ("fault AddLearner", sel),
            Fault::AddMember(sel) => ("fault AddMember", sel),
            Fault::Promote(sel) => ("fault Promote", sel),
            Fault::RemoveMember(sel) => ("fault RemoveMember", sel),
            Fault::ReplaceNode(sel) => ("fault ReplaceNode", sel),
            other => return super::misrouted(other),
        };
        self.cover(kind);
        let Some(i) = self.select(sel) else {
            return "nobody (no such node)".to_string();
        };
        let (id, inc) = (self.members[i], Incarnation(self.nodes[i].disk_life));
        let goal = match fault {
            Fault::AddLearner(_) => Goal::Member(id, inc),
            Fault::Promote(_) => Goal::Promoted(id),
            Fault::RemoveMember(_) => Goal::Removed(id),
            _ => Goal::Voter(id, inc),
        };
        let task = self.faults.members.tasks.len();
        self.faults.members.tasks.push(Task {
            fault: super::describe_fault(fault),
            goal,
            requested_at: self.now,
            settled: None,
            asking: None,
        });
        self.stats.membership.requested += 1;
        self.operator_step(task);
        match goal {
            Goal::Member(..) | Goal::Voter(..) => format!("{id} (incarnation {})", inc.0),
            _ => id.to_string(),
        }
    }
}

impl World<'_> {
    /// At the end of the run: every task as it ended, the configuration the leader committed,
    /// and the nodes that need replacing (a node whose configuration names its id as another
    /// incarnation, or that the leader hears as an incarnation it does not name). A removed
    /// node, which no configuration names any more, needs nothing.
    pub(in crate::world) fn record_membership(&mut self) {
        let tasks = self
            .faults
            .members
            .tasks
            .iter()
            .map(|t| crate::membership::MemberTask {
                fault: t.fault.clone(),
                requested_us: t.requested_at,
                settled: t.settled.clone(),
            })
            .collect();
        let leader = self
            .leader_index()
            .and_then(|l| self.nodes[l].node.as_ref());
        let mut needs: BTreeMap<NodeId, String> = BTreeMap::new();
        let mut configuration = String::new();
        if let Some(leader) = leader {
            let committed = leader.log().membership_at(leader.commit_index());
            configuration = format!("{committed} (committed by {})", leader.id());
            for (id, inc) in leader.strangers() {
                let why = format!(
                    "{id} (incarnation {}) needs replacement: leader {} hears it as an \
                     incarnation its configuration does not name",
                    inc.0,
                    leader.id()
                );
                needs.insert(id, why);
            }
        }
        for node in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
            let named = node.membership().get(node.id()).map(|m| m.incarnation);
            if let Some(old) = named.filter(|inc| *inc != node.incarnation()) {
                let why = format!(
                    "{} (incarnation {}) needs replacement: its configuration names incarnation \
                     {} of it",
                    node.id(),
                    node.incarnation().0,
                    old.0
                );
                needs.entry(node.id()).or_insert(why);
            }
        }
        let m = &mut self.stats.membership;
        m.tasks = tasks;
        m.final_configuration = configuration;
        m.needs_replacement = needs.into_values().collect();
    }
}
