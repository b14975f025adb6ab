//! Leader election (§5.2) with pre-vote and check-quorum (Raft thesis §9.6).
//!
//! Owns: election timeouts, pre-vote and vote rounds, granting votes (persisted before the answer
//! leaves), becoming leader or follower, and leader stickiness. Never: touching the log beyond
//! reading its last entry, except the no-op a new leader appends.

use std::sync::Arc;

use crate::io::{Output, Persist};
use crate::message::{Command, Entry, MessageBody};
use crate::testing::PlantedBug;
use crate::trace::{Event, StepDownReason};
use crate::types::{Incarnation, Instant, LogIndex, NodeId, Term};

use super::{App, Leadership, Raft, Role};

impl Raft {
    /// The election timer fired on a follower or (pre-)candidate.
    pub(super) fn election_timeout(
        &mut self,
        now: Instant,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        if !self.members.voter {
            // A learner, a removed member or a new incarnation never stands.
            self.redraw_election_timer(now);
            return;
        }
        if self.cfg.pre_vote {
            self.start_pre_vote(now, app, out);
        } else {
            self.start_election(now, false, app, out);
        }
    }

    /// Ask whether an election in `term + 1` could be won, without changing any term.
    fn start_pre_vote(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.redraw_election_timer(now);
        let term = self.term.next();
        self.trace(Event::PreVoteStarted { term }, out);
        if self.granted() >= self.members.quorum {
            return self.start_election(now, false, app, out);
        }
        let body = MessageBody::PreVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let stamp = self.stamp();
        for &peer in &self.members.voters {
            stamp.send_in(term, peer, body.clone(), out);
        }
    }

    /// §5.2: increment the term, vote for ourselves (durably, before asking anyone), ask for votes.
    /// `transfer`: the leader handed leadership to us (see `transfer.rs`).
    pub(super) fn start_election(
        &mut self,
        now: Instant,
        transfer: bool,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        self.term = self.term.next();
        self.voted_for = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.redraw_election_timer(now);
        self.persist_hard_state(out);
        self.trace(Event::ElectionStarted { term: self.term }, out);
        if self.granted() >= self.members.quorum {
            return self.become_leader(now, app, out);
        }
        let body = MessageBody::RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        for &peer in &self.members.voters {
            self.send(peer, body.clone(), out);
        }
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours.
    fn log_up_to_date(&self, last_log_index: LogIndex, last_log_term: Term) -> bool {
        (last_log_term, last_log_index) >= (self.log.last_term(), self.log.last_index())
    }

    /// True while this node has reason to believe a leader is alive: it is the leader, or it heard
    /// from the leader within the minimum election timeout. Only with check-quorum on, which is
    /// what makes a leader that lost its majority step down within that time.
    ///
    /// A node that started less than that long ago counts as having heard a leader too: it may
    /// have answered one just before it crashed, and that leader's read lease counts on it.
    pub(super) fn leader_is_recent(&self, now: Instant) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        let window = self.cfg.election_timeout_min;
        match self.role {
            Role::Leader => true,
            _ => {
                now.saturating_since(self.started_at) < window
                    || self.leader.is_some()
                        && self
                            .leader_contact
                            .is_some_and(|t| now.saturating_since(t) < window)
            }
        }
    }

    pub(super) fn handle_pre_vote(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
        out: &mut Vec<Output>,
    ) {
        let granted = term > self.term
            && self.members.voter
            && self.log_up_to_date(last_log_index, last_log_term)
            && !self.leader_is_recent(now);
        // A grant echoes the prospective term; a refusal carries ours, so a pre-candidate that
        // is behind learns the current term.
        let reply_term = if granted { term } else { self.term };
        let body = MessageBody::PreVoteResponse { granted };
        self.stamp().send_in(reply_term, from, body, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_pre_vote_response(
        &mut self,
        now: Instant,
        from: NodeId,
        incarnation: Incarnation,
        term: Term,
        granted: bool,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        if !granted && term > self.term {
            return self.become_follower(now, term, None, app, out);
        }
        // A grant echoes the prospective term; a refusal carries the voter's own term (at most
        // ours here), so only grants can be matched to this round by term.
        if self.role != Role::PreCandidate || (granted && term != self.term.next()) {
            return;
        }
        if !self.members.membership.is_voter(from, incarnation) {
            return;
        }
        self.votes.insert(from, granted);
        if self.granted() >= self.members.quorum {
            self.start_election(now, false, app, out);
        } else if self.refused() >= self.members.quorum {
            self.trace(Event::PreVoteRejected { term }, out);
            self.role = Role::Follower;
            self.votes.clear();
        }
    }

    /// §5.2, §5.4.1: grant at most one vote per term, only to an up-to-date candidate; the vote is
    /// persisted before the answer is sent.
    pub(super) fn handle_request_vote(
        &mut self,
        now: Instant,
        from: NodeId,
        last_log_index: LogIndex,
        last_log_term: Term,
        out: &mut Vec<Output>,
    ) {
        let free = self.voted_for.is_none() || self.voted_for == Some(from);
        let granted = free
            && self.members.voter
            && self.role != Role::Leader
            && self.log_up_to_date(last_log_index, last_log_term);
        if granted {
            if self.voted_for != Some(from) {
                self.voted_for = Some(from);
                if !self.planted(PlantedBug::VoteNotPersisted) {
                    self.persist_hard_state(out);
                }
            }
            self.reset_election_timer(now);
        }
        self.send(from, MessageBody::RequestVoteResponse { granted }, out);
    }

    pub(super) fn handle_vote_response(
        &mut self,
        now: Instant,
        from: NodeId,
        incarnation: Incarnation,
        granted: bool,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        // Only a voter of the incarnation the configuration names counts: a node that lost its
        // disk has forgotten the votes it cast.
        if self.role != Role::Candidate || !self.members.membership.is_voter(from, incarnation) {
            return;
        }
        self.votes.insert(from, granted);
        if self.granted() >= self.members.quorum {
            self.become_leader(now, app, out);
        }
    }

    fn granted(&self) -> usize {
        self.votes.values().filter(|g| **g).count()
    }

    fn refused(&self) -> usize {
        self.votes.values().filter(|g| !**g).count()
    }

    /// Won the election: append a no-op of this term (so that earlier entries can be committed,
    /// §5.4.2) and start replicating.
    fn become_leader(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let noop = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            command: Arc::new(Command::Noop),
        };
        let term_start = noop.index;
        if !self.planted(PlantedBug::CommitEarlierTermByCounting) {
            self.log.push(noop.clone());
            out.push(Output::Persist(Persist::Entries(vec![noop])));
        }
        self.lead = Some(Leadership::new(&self.members, term_start, now));
        self.timers.start_leading(now, &self.cfg);
        app.became_leader(now);
        self.trace(Event::BecameLeader { term: self.term }, out);
        self.broadcast_append(now, out);
        self.maybe_commit(now, app, out);
    }

    /// Follow `leader` (if known) in `term`, which is at least the current term. A new term
    /// clears the vote and is persisted before anything else is sent.
    pub(super) fn become_follower(
        &mut self,
        now: Instant,
        term: Term,
        leader: Option<NodeId>,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        debug_assert!(term >= self.term);
        let changed = term != self.term || self.role != Role::Follower || self.leader != leader;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state(out);
        }
        if self.role == Role::Leader {
            self.step_down(StepDownReason::HigherTerm, app, out);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        if leader.is_some() {
            self.leader_contact = Some(now);
        }
        self.redraw_election_timer(now);
        if changed {
            self.trace(
                Event::BecameFollower {
                    term: self.term,
                    leader,
                },
                out,
            );
        }
    }

    /// Leaves leadership: pending reads are refused (reads have no effect, so that is definite).
    /// Pending writes stay: their entries may still commit under the next leader.
    pub(super) fn step_down(
        &mut self,
        reason: StepDownReason,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        app.stepped_down();
        if let Some(lead) = self.lead.take() {
            self.trace(
                Event::SteppedDown {
                    term: self.term,
                    reason,
                },
                out,
            );
            let stamp = self.stamp();
            for read in lead.reads {
                let error = crate::io::ClientError::NotLeader { leader_hint: None };
                app.read_failed(stamp, read.ctx, error, out);
            }
        }
        self.role = Role::Follower;
        self.leader = None;
    }

    /// Check-quorum: a leader that did not hear from a majority since the last check steps down,
    /// so a leader cut off from the cluster stops claiming leadership within an election timeout.
    pub(super) fn check_quorum(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let active = usize::from(lead.self_voter) + lead.take_active_count();
        self.timers.quorum_check = now + self.cfg.election_timeout_min;
        if active < self.members.quorum {
            self.step_down(StepDownReason::LostQuorum, app, out);
            self.redraw_election_timer(now);
            self.trace(
                Event::BecameFollower {
                    term: self.term,
                    leader: None,
                },
                out,
            );
        }
    }
}
