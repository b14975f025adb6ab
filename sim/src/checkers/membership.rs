//! The membership checkers: configurations change one voter at a time, only voters of their
//! own configuration vote, a leader is elected by a majority of its configuration's voters, and
//! a leader commits only what a majority of its configuration's voters hold.
//!
//! Each judges what the engine hands it (a node's step, the holders of an entry the engine
//! found on every node's log or disk); none changes a node or the run.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::membership::voters_differ_by_at_most_one;
use keel_core::{Incarnation, LogIndex, Membership, NodeId, Term};

/// A committed configuration differs from the one before it by at most one voter (id and
/// incarnation): two successive configurations then always share a majority.
pub(super) fn one_voter_at_a_time(
    index: LogIndex,
    before: &Membership,
    after: &Membership,
) -> Result<(), String> {
    if voters_differ_by_at_most_one(before, after) {
        return Ok(());
    }
    Err(format!(
        "the configuration committed at {} ({after}) differs from the one before it ({before}) \
         by more than one voter: two disjoint majorities are possible",
        index.0
    ))
}

/// A node grants a (pre-)vote only while it is a voter of its own configuration, of its own
/// incarnation (a wiped node, a learner, a removed member never votes).
pub(super) fn only_voters_vote(node: NodeId, voter: bool, pre: bool) -> Result<(), String> {
    if voter {
        return Ok(());
    }
    let what = if pre { "a pre-vote" } else { "a vote" };
    Err(format!(
        "{node} granted {what} though it is no voter of its own configuration (a learner, a \
         removed member or a new incarnation)"
    ))
}

/// The votes granted in each term to each candidate, by voter (id and incarnation), to check
/// that a leader was elected by a majority of its configuration's voters.
#[derive(Default)]
pub(super) struct Grants {
    by_election: BTreeMap<(Term, NodeId), BTreeSet<(NodeId, Incarnation)>>,
}

/// Elections this many terms older than the newest one checked are forgotten.
const GRANTS_KEPT_TERMS: u64 = 1_000;

impl Grants {
    /// `voter` (of `incarnation`) granted `candidate` its vote for `term`.
    pub(super) fn granted(
        &mut self,
        term: Term,
        candidate: NodeId,
        voter: NodeId,
        incarnation: Incarnation,
    ) {
        self.by_election
            .entry((term, candidate))
            .or_default()
            .insert((voter, incarnation));
    }

    /// `leader` was first seen leading `term` with configuration `config`, voting for itself
    /// if it is one of its voters (`self_voter`): the votes granted to it by that
    /// configuration's voters must make a majority of them.
    pub(super) fn elected(
        &mut self,
        term: Term,
        leader: NodeId,
        config: &Membership,
        self_voter: bool,
    ) -> Result<(), String> {
        let granted = self.by_election.get(&(term, leader));
        let votes = usize::from(self_voter)
            + granted.map_or(0, |g| {
                g.iter()
                    .filter(|(id, inc)| *id != leader && config.is_voter(*id, *inc))
                    .count()
            });
        let floor = Term(term.0.saturating_sub(GRANTS_KEPT_TERMS));
        self.by_election.retain(|(t, _), _| *t >= floor);
        if votes >= config.quorum() {
            return Ok(());
        }
        Err(format!(
            "{leader} leads term {} with {votes} votes of its configuration's voters ({config}), \
             fewer than a majority ({})",
            term.0,
            config.quorum()
        ))
    }
}

/// A leader committed `index` (of `term`) with configuration `config` in force: the voters of
/// that configuration holding it (`holders`: every node, of the incarnation it is or, for a
/// wiped node's earlier incarnation, was when its disk was lost) must be a majority.
pub(super) fn committed_on_a_majority(
    leader: NodeId,
    index: LogIndex,
    term: Term,
    config: &Membership,
    holders: &[(NodeId, Incarnation)],
) -> Result<(), String> {
    let mut voters: Vec<NodeId> = holders
        .iter()
        .filter(|(id, inc)| config.is_voter(*id, *inc))
        .map(|(id, _)| *id)
        .collect();
    voters.dedup();
    if voters.len() >= config.quorum() {
        return Ok(());
    }
    Err(format!(
        "{leader} committed {} (term {}) held by only {} of its configuration's voters \
         ({voters:?} of {config}), fewer than a majority ({})",
        index.0,
        term.0,
        voters.len(),
        config.quorum()
    ))
}
