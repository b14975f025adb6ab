//! How Raft follows the configuration in force (see [`super::membership`]): who it talks to, who
//! it asks for votes, how many make a quorum and whether this node votes; the leader's rules for
//! proposing a change; and a removed leader handing over and stepping down.
//!
//! Owns: [`InForce`] (what this node made of the log's configuration, recomputed whenever it
//! changes), adding and dropping followers' progress on a change, and the record of members
//! heard from as another incarnation than the configuration names. Never: deciding what a
//! configuration may be (that is `membership.rs`) or what is committed.

use std::collections::BTreeMap;

use crate::io::Output;
use crate::message::{Command, MessageBody};
use crate::testing::PlantedBug;
use crate::trace::{Event, StepDownReason};
use crate::types::{Incarnation, Instant, LogIndex, NodeId};

use super::log::RaftLog;
use super::membership::{MemberChange, Membership, MembershipError};
use super::{App, Raft, Role};

/// The configuration in force as this node uses it.
#[derive(Clone, Debug)]
pub(crate) struct InForce {
    /// The index of the entry it came from (see [`RaftLog::membership_index`]).
    pub index: LogIndex,
    pub membership: Membership,
    /// Every member but this node (voters and learners), ascending: who a leader replicates to.
    pub peers: Vec<NodeId>,
    /// Every voter but this node, ascending: who a candidate asks.
    pub voters: Vec<NodeId>,
    /// Votes needed to win an election or commit an entry.
    pub quorum: usize,
    /// This node, of its incarnation, is a voter.
    pub voter: bool,
}

impl InForce {
    pub(crate) fn of(id: NodeId, incarnation: Incarnation, log: &RaftLog) -> InForce {
        InForce::at(id, incarnation, log.membership_index(), log.membership())
    }

    /// This node's view of `membership`, held by the entry at `index`.
    fn at(id: NodeId, incarnation: Incarnation, index: LogIndex, m: &Membership) -> InForce {
        let membership = m.clone();
        let others = membership.members().iter().filter(|m| m.id != id);
        InForce {
            index,
            peers: others.clone().map(|m| m.id).collect(),
            voters: others.filter(|m| m.voter).map(|m| m.id).collect(),
            quorum: membership.quorum(),
            voter: membership.is_voter(id, incarnation),
            membership,
        }
    }
}

/// Members heard from as an incarnation the configuration does not name (a node that lost its
/// disk and came back), by id: reported as needing replacement until the configuration names
/// the new incarnation.
pub(crate) type Strangers = BTreeMap<NodeId, Incarnation>;

impl Raft {
    /// After any change to the log: if the configuration in force changed, adopts it (a
    /// configuration takes effect when appended) and tells the application.
    pub(super) fn sync_membership(
        &mut self,
        now: Instant,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        let (index, membership) = self.config_to_follow();
        if self.members.index == index && &self.members.membership == membership {
            return;
        }
        if &self.members.membership == membership {
            // The same configuration, now held elsewhere (a compaction or a snapshot moved it).
            self.members.index = index;
            let m = &self.members;
            return app.membership_changed(now, m.index, &m.membership);
        }
        self.members = InForce::at(self.id, self.incarnation, index, membership);
        let m = &self.members;
        let voters = m.voters.len() + usize::from(m.voter);
        let learners = m.membership.members().len() - m.membership.voter_count();
        self.trace(
            Event::MembershipChanged {
                index: m.index,
                voters: voters as u32,
                learners: learners as u32,
            },
            out,
        );
        self.strangers
            .retain(|id, inc| !self.members.membership.knows(*id, *inc));
        let next = self.log.last_index().next();
        if let Some(lead) = self.lead.as_mut() {
            lead.sync_members(&self.members, next);
        }
        if !self.members.voter && matches!(self.role, Role::PreCandidate | Role::Candidate) {
            self.role = Role::Follower;
            self.votes.clear();
        }
        app.membership_changed(now, self.members.index, &self.members.membership);
    }

    /// The configuration to follow and the index of its entry: the log's last (a configuration
    /// takes effect when appended), or with the planted bug `ConfigOnCommit` the last committed.
    fn config_to_follow(&self) -> (LogIndex, &Membership) {
        if self.planted(PlantedBug::ConfigOnCommit) {
            let commit = self.commit.get();
            let index = self.log.membership_index_at(commit);
            return (index, self.log.membership_at(commit));
        }
        (self.log.membership_index(), self.log.membership())
    }

    /// With the planted bug `QuorumOnOldConfig`: the leader counts on the configuration before
    /// the last change (its voters, its majority). Returns the quorum to count to.
    pub(super) fn quorum_on_old_config(&mut self) -> usize {
        let old = self.log.membership_at(self.log.membership_index().prev());
        let quorum = old.quorum();
        if let Some(lead) = self.lead.as_mut() {
            let ids: Vec<NodeId> = lead.progress.iter().map(|(id, _)| *id).collect();
            for id in ids {
                if let Some(p) = lead.progress.get_mut(&id) {
                    p.voter = old.is_voter(id, p.incarnation);
                }
            }
            lead.self_voter = old.is_voter(self.id, self.incarnation);
        }
        quorum
    }

    /// Notes a message from `from` of `incarnation`: a member heard as another incarnation than
    /// the configuration names is recorded as a stranger.
    pub(super) fn note_incarnation(&mut self, from: NodeId, incarnation: Incarnation) {
        if let Some(m) = self.members.membership.get(from) {
            if m.incarnation != incarnation {
                self.strangers.insert(from, incarnation);
            }
        }
    }

    /// Members heard from as another incarnation than the configuration names.
    pub(crate) fn strangers(&self) -> &Strangers {
        &self.strangers
    }

    /// Appends the configuration `change` leads to, if this leader may propose it now: an entry
    /// of its term is committed (the thesis errata's rule), the last change is committed, and a
    /// learner to promote is within `promote_max_lag` entries of this log. The caller then calls
    /// [`Raft::replicate_appended`], which puts the new configuration in force here.
    pub(crate) fn propose_membership(
        &mut self,
        change: &MemberChange,
        out: &mut Vec<Output>,
    ) -> Result<LogIndex, MembershipError> {
        let commit = self.commit.get();
        let Some(lead) = self.lead.as_ref() else {
            return Err(MembershipError::LeaderNotReady);
        };
        if commit < lead.term_start {
            return Err(MembershipError::LeaderNotReady);
        }
        let pending = self.log.membership_index();
        if pending > commit {
            return Err(MembershipError::ChangeInProgress(pending.0));
        }
        if let MemberChange::Promote { id } = *change {
            let matched = lead.progress.get(&id).map_or(LogIndex(0), |p| p.matched);
            let behind = self.log.last_index().0.saturating_sub(matched.0);
            let bound = self.cfg.promote_max_lag;
            if behind > bound && self.log.membership().get(id).is_some_and(|m| !m.voter) {
                return Err(MembershipError::NotCaughtUp { id, behind, bound });
            }
        }
        let next = self.log.membership().apply(change)?;
        Ok(self.append_command(Command::Membership(next), out))
    }

    /// A leader whose removal (or demotion) is committed hands leadership to its most
    /// caught-up voter, if one holds its whole log, and steps down.
    pub(super) fn step_down_if_removed(&mut self, app: &mut impl App, out: &mut Vec<Output>) {
        let committed = self.log.membership_index() <= self.commit.get();
        if self.role != Role::Leader || self.members.voter || !committed {
            return;
        }
        let last = self.log.last_index();
        let heir = self.lead.as_ref().and_then(|lead| {
            lead.progress
                .iter()
                .filter(|(_, p)| p.voter && p.matched >= last)
                .map(|(id, _)| *id)
                .next()
        });
        if let Some(to) = heir {
            self.send(to, MessageBody::TimeoutNow, out);
        }
        self.step_down(StepDownReason::Removed, app, out);
        self.trace(
            Event::BecameFollower {
                term: self.term,
                leader: None,
            },
            out,
        );
    }
}
