//! Cluster membership (Raft thesis ch. 4): which nodes are voters, which are learners, and the
//! one-voter-at-a-time changes between them.
//!
//! keel changes membership one server at a time (thesis §4.1) rather than by joint consensus:
//! any two configurations that differ by at most one voter have overlapping majorities, so a
//! change needs no intermediate joint configuration, and every operator action (add a learner,
//! promote it, remove a member, replace a dead incarnation) is a sequence of such steps. A
//! configuration is an ordinary log entry and takes effect on every node as soon as it is
//! appended, committed or not; a leader proposes a change only when the previous one is
//! committed and an entry of its own term is committed (the thesis errata's fix: otherwise a
//! change made by a deposed leader and one made by its successor could both take effect).
//!
//! A member is an id *and* an incarnation (see [`Incarnation`]): a node that lost its data
//! directory comes back as a new incarnation that no configuration names, so it never votes and
//! never counts toward a quorum until an operator adds it back.
//!
//! Owns: the membership value, its invariants (ids unique, sorted) and the rules of a single
//! change. Never: when a change may be proposed (the leader's rules, in `raft/mod.rs`) or
//! anything else about the log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{Incarnation, NodeId};

/// One member of a configuration.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub incarnation: Incarnation,
    /// A voter counts toward quorums and may stand for election; a learner only receives the log.
    pub voter: bool,
    /// Where other nodes reach it (the production node's peer address), as given when it was
    /// added: replicated with the configuration so every node can connect to a new member.
    /// Opaque to the core; empty for the members a cluster was bootstrapped with (their
    /// addresses come from each node's own peer list) and in the simulator.
    pub address: String,
}

/// A configuration: every member, sorted by id, each id once.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Membership {
    members: Vec<Member>,
}

/// One step from one configuration to the next. Each adds or removes at most one voter.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum MemberChange {
    /// Adds `id` (of `incarnation`, reached at `address`) as a learner. If `id` is a voter of
    /// another incarnation (the node lost its disk), that voter is removed by the same step: one
    /// voter fewer.
    AddLearner {
        id: NodeId,
        incarnation: Incarnation,
        address: String,
    },
    /// Makes the learner `id` a voter (the leader checks it is caught up first).
    Promote { id: NodeId },
    /// Removes `id`, voter or learner.
    Remove { id: NodeId },
    /// Records where `id` is reached (no voter changes).
    SetAddress { id: NodeId, address: String },
}

impl MemberChange {
    /// The member the change is about.
    pub fn id(&self) -> NodeId {
        match *self {
            MemberChange::AddLearner { id, .. }
            | MemberChange::Promote { id }
            | MemberChange::Remove { id }
            | MemberChange::SetAddress { id, .. } => id,
        }
    }
}

impl fmt::Display for MemberChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberChange::AddLearner {
                id, incarnation, ..
            } => {
                write!(f, "add {id} (incarnation {incarnation}) as a learner")
            }
            MemberChange::Promote { id } => write!(f, "promote {id} to voter"),
            MemberChange::Remove { id } => write!(f, "remove {id}"),
            MemberChange::SetAddress { id, address } => {
                write!(f, "set {id}'s address to {address}")
            }
        }
    }
}

/// Why a change cannot be made to a configuration.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("{0} is already a member of that incarnation")]
    AlreadyMember(NodeId),
    #[error("{0} is not a member")]
    NotAMember(NodeId),
    #[error("{0} is already a voter")]
    AlreadyVoter(NodeId),
    #[error("removing {0} would leave the cluster without a voter")]
    LastVoter(NodeId),
    #[error("{id} cannot be promoted: it is {behind} entries behind the leader (bound: promote_max_lag = {bound})")]
    NotCaughtUp { id: NodeId, behind: u64, bound: u64 },
    #[error(
        "a membership change is in progress (the configuration at index {0} is not committed yet)"
    )]
    ChangeInProgress(u64),
    #[error("this leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
}

impl Membership {
    /// The configuration a cluster is bootstrapped with: every id a voter, of the original
    /// incarnation. Duplicates are dropped.
    pub fn bootstrap(voters: &[NodeId]) -> Membership {
        let mut members: Vec<Member> = voters
            .iter()
            .map(|&id| Member {
                id,
                incarnation: Incarnation::ORIGINAL,
                voter: true,
                address: String::new(),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        Membership { members }
    }

    /// Every member, by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// True if `id` of `incarnation` is a member (voter or learner).
    pub fn knows(&self, id: NodeId, incarnation: Incarnation) -> bool {
        self.get(id).is_some_and(|m| m.incarnation == incarnation)
    }

    /// True if `id` of `incarnation` is a voter.
    pub fn is_voter(&self, id: NodeId, incarnation: Incarnation) -> bool {
        self.get(id)
            .is_some_and(|m| m.voter && m.incarnation == incarnation)
    }

    /// The voters' ids, ascending.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.voter).map(|m| m.id)
    }

    pub fn voter_count(&self) -> usize {
        self.members.iter().filter(|m| m.voter).count()
    }

    /// Votes needed to win an election or commit an entry: a majority of the voters. A
    /// configuration without voters can decide nothing.
    pub fn quorum(&self) -> usize {
        match self.voter_count() {
            0 => usize::MAX,
            n => n / 2 + 1,
        }
    }

    /// The configuration after `change`, or why it cannot be made.
    pub fn apply(&self, change: &MemberChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match *change {
            MemberChange::AddLearner {
                id,
                incarnation,
                ref address,
            } => {
                if self.knows(id, incarnation) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                let learner = Member {
                    id,
                    incarnation,
                    voter: false,
                    address: address.clone(),
                };
                match next.members.binary_search_by_key(&id, |m| m.id) {
                    Ok(i) => next.members[i] = learner,
                    Err(i) => next.members.insert(i, learner),
                }
            }
            MemberChange::Promote { id } => {
                let m = next
                    .members
                    .iter_mut()
                    .find(|m| m.id == id)
                    .ok_or(MembershipError::NotAMember(id))?;
                if m.voter {
                    return Err(MembershipError::AlreadyVoter(id));
                }
                m.voter = true;
            }
            MemberChange::Remove { id } => {
                if self.get(id).is_none() {
                    return Err(MembershipError::NotAMember(id));
                }
                next.members.retain(|m| m.id != id);
            }
            MemberChange::SetAddress { id, ref address } => {
                let m = next
                    .members
                    .iter_mut()
                    .find(|m| m.id == id)
                    .ok_or(MembershipError::NotAMember(id))?;
                m.address = address.clone();
            }
        }
        if next.voter_count() == 0 {
            return Err(MembershipError::LastVoter(change.id()));
        }
        debug_assert!(voters_differ_by_at_most_one(self, &next));
        Ok(next)
    }
}

/// The single-server rule: the voter sets (id and incarnation) of `a` and `b` differ by at most
/// one member, so every majority of one overlaps every majority of the other.
pub fn voters_differ_by_at_most_one(a: &Membership, b: &Membership) -> bool {
    let only_in = |x: &Membership, y: &Membership| {
        x.members
            .iter()
            .filter(|m| m.voter && !y.is_voter(m.id, m.incarnation))
            .count()
    };
    only_in(a, b) + only_in(b, a) <= 1
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in &self.members {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}", m.id)?;
            if !m.voter {
                f.write_str("(learner)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::bootstrap(&[NodeId(3), NodeId(1), NodeId(2), NodeId(1)])
    }

    #[test]
    fn bootstrap_sorts_dedups_and_counts_a_majority() {
        let m = three();
        assert_eq!(
            m.voters().collect::<Vec<_>>(),
            [NodeId(1), NodeId(2), NodeId(3)]
        );
        assert_eq!(m.quorum(), 2);
        assert_eq!(Membership::default().quorum(), usize::MAX);
        assert!(m.is_voter(NodeId(2), Incarnation::ORIGINAL));
        assert!(!m.is_voter(NodeId(2), Incarnation(7)));
    }

    #[test]
    fn a_learner_is_added_promoted_and_removed_one_voter_at_a_time() {
        let m = three();
        let add = MemberChange::AddLearner {
            id: NodeId(4),
            incarnation: Incarnation(9),
            address: "10.0.0.4:7000".into(),
        };
        let m4 = m.apply(&add).expect("add");
        assert_eq!(
            m4.get(NodeId(4)).map(|m| m.address.as_str()),
            Some("10.0.0.4:7000")
        );
        assert_eq!(m4.quorum(), 2, "a learner does not count");
        assert!(m4.knows(NodeId(4), Incarnation(9)));
        assert_eq!(
            m4.apply(&add),
            Err(MembershipError::AlreadyMember(NodeId(4)))
        );
        let p = m4
            .apply(&MemberChange::Promote { id: NodeId(4) })
            .expect("promote");
        assert_eq!(p.quorum(), 3);
        assert_eq!(
            p.apply(&MemberChange::Promote { id: NodeId(4) }),
            Err(MembershipError::AlreadyVoter(NodeId(4)))
        );
        let r = p
            .apply(&MemberChange::Remove { id: NodeId(1) })
            .expect("remove");
        assert_eq!(
            r.voters().collect::<Vec<_>>(),
            [NodeId(2), NodeId(3), NodeId(4)]
        );
        assert_eq!(
            r.apply(&MemberChange::Remove { id: NodeId(1) }),
            Err(MembershipError::NotAMember(NodeId(1)))
        );
    }

    #[test]
    fn a_new_incarnation_replaces_the_dead_voter_as_a_learner() {
        let m = three();
        let replaced = m
            .apply(&MemberChange::AddLearner {
                id: NodeId(3),
                incarnation: Incarnation(5),
                address: String::new(),
            })
            .expect("replace");
        assert_eq!(replaced.voter_count(), 2);
        assert!(replaced.knows(NodeId(3), Incarnation(5)));
        assert!(!replaced.knows(NodeId(3), Incarnation::ORIGINAL));
        assert!(voters_differ_by_at_most_one(&m, &replaced));
    }

    #[test]
    fn the_last_voter_stays() {
        let one = Membership::bootstrap(&[NodeId(1)]);
        assert_eq!(
            one.apply(&MemberChange::Remove { id: NodeId(1) }),
            Err(MembershipError::LastVoter(NodeId(1)))
        );
    }

    #[test]
    fn two_voter_changes_are_not_one_step() {
        let a = three();
        let b = Membership::bootstrap(&[NodeId(1), NodeId(4), NodeId(5)]);
        assert!(!voters_differ_by_at_most_one(&a, &b));
    }
}
