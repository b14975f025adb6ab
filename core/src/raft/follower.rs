//! The follower side of log replication (§5.3): the AppendEntries consistency check with fast
//! conflict hints, appending (never over a committed entry), holding messages that arrived
//! ahead of a gap, and following the leader's commit index.
//!
//! Owns: what a follower does with AppendEntries. Never: a leader's progress bookkeeping.

use crate::io::{Output, Persist};
use crate::message::{AppendResult, Entry, MessageBody};
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, Term};

use super::{App, Raft, Role};

/// An AppendEntries a follower holds because it arrived ahead of a gap in its log (see
/// `RaftConfig::max_held_appends`).
#[derive(Debug)]
pub(super) struct HeldAppend {
    /// The leader that sent it, and its term.
    pub leader: NodeId,
    pub term: Term,
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<Entry>,
    pub leader_commit: LogIndex,
    pub round: u64,
}

impl Raft {
    /// Follower side of §5.3, for an AppendEntries of this node's term (`msg.term` is filled in
    /// here).
    pub(super) fn handle_append_entries(
        &mut self,
        now: Instant,
        mut msg: HeldAppend,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        let from = msg.leader;
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from), app, out);
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);

        msg.term = self.term;
        let mut round = msg.round;
        let Some(mut result) = self.append_from_leader(now, msg, app, out) else {
            return;
        };
        // An append may fill the gap in front of held messages: they are appended now, and one
        // answer (the highest match, the latest round) acknowledges them all.
        while let AppendResult::Success { match_index } = result {
            let Some(held) = self.take_held(match_index) else {
                break;
            };
            round = round.max(held.round);
            match self.append_from_leader(now, held, app, out) {
                Some(AppendResult::Success { match_index: m }) => {
                    result = AppendResult::Success {
                        match_index: m.max(match_index),
                    };
                }
                // `take_held` checked the message against the log: it cannot be refused.
                _ => break,
            }
        }
        self.streaming =
            matches!(result, AppendResult::Success { .. }).then_some((self.term, from));
        self.send(
            from,
            MessageBody::AppendEntriesResponse { result, round },
            out,
        );
    }

    /// The consistency check and append of one AppendEntries from the leader of this term: the
    /// answer to send, or None if there is none (the message is held, or refused outright).
    fn append_from_leader(
        &mut self,
        now: Instant,
        msg: HeldAppend,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) -> Option<AppendResult> {
        let (prev, msg) = match self.check_consistency(msg) {
            Ok(checked) => checked,
            Err(answer) => return answer,
        };
        let HeldAppend {
            leader,
            mut entries,
            leader_commit,
            ..
        } = msg;
        let match_index = LogIndex(prev.0 + entries.len() as u64);
        let first_new = entries
            .iter()
            .position(|e| self.log.term_at(e.index) != Some(e.term));
        if let Some(k) = first_new {
            let from_index = entries[k].index;
            // A leader asking to overwrite a committed entry means the protocol is broken:
            // refuse rather than corrupt the state machine.
            if !self.may_overwrite(leader, from_index, out) {
                return None;
            }
            if from_index <= self.log.last_index() {
                self.log.truncate_from(from_index);
                self.trace(Event::LogTruncated { from: from_index }, out);
            }
            // The message's own vector becomes the persisted batch: no second allocation.
            entries.drain(..k);
            for e in &entries {
                self.log.push(e.clone());
            }
            out.push(Output::Persist(Persist::Entries(entries)));
            self.sync_membership(now, app, out);
        }
        let commit_to = leader_commit.min(match_index);
        if commit_to > self.commit.get() && self.commit_to(commit_to, out) {
            self.trace(Event::Committed { index: commit_to }, out);
            if self.planted(crate::testing::PlantedBug::ConfigOnCommit) {
                self.sync_membership(now, app, out);
            }
            self.apply_committed(now, app, out);
        }
        Some(AppendResult::Success { match_index })
    }

    /// Drops entries the log's compaction point already covers and checks the message's
    /// predecessor against the log: `Ok` with the (possibly moved) predecessor and the rest of
    /// the message, or `Err` with the answer to give at once (None: the message is held).
    #[inline]
    fn check_consistency(
        &mut self,
        mut msg: HeldAppend,
    ) -> Result<(LogIndex, HeldAppend), Option<AppendResult>> {
        let prev_log_index = msg.prev_log_index;
        let mut prev = prev_log_index;
        // Entries at or before our compaction point are committed and held in our snapshot.
        if prev < self.log.offset() {
            let skip = msg
                .entries
                .iter()
                .take_while(|e| e.index <= self.log.offset())
                .count();
            msg.entries.drain(..skip);
            let end = LogIndex(prev.0 + skip as u64);
            if msg.entries.is_empty() {
                return Err(Some(AppendResult::Success {
                    match_index: end.min(self.log.offset()),
                }));
            }
            prev = self.log.offset();
        }
        match self.log.term_at(prev) {
            None => {
                // Ahead of a gap while the leader streams to us: most likely a later message
                // overtook an earlier one. Hold it until the gap fills (the leader's loss
                // detection resends what really was lost). (`prev` is the message's own here: a
                // predecessor behind the compaction point was moved to it, whose term is known.)
                if self.streaming == Some((msg.term, msg.leader))
                    && !msg.entries.is_empty()
                    && self.held.len() < self.cfg.max_held_appends
                {
                    self.held.push(msg);
                    return Err(None);
                }
                Err(Some(AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: None,
                    conflict_index: self.log.last_index().next(),
                }))
            }
            Some(t) if t != msg.prev_log_term && prev > self.log.offset() => {
                Err(Some(AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: Some(t),
                    conflict_index: self.log.first_index_of_term(t, prev),
                }))
            }
            Some(_) => Ok((prev, msg)),
        }
    }

    /// Takes the oldest held message of the current leader and term that the log now reaches
    /// (its previous entry is at or before `last`). Drops those of another leader or term (the
    /// answer goes to the current leader, which may hold other entries there) and those the log
    /// reaches but does not match (a message that would be rejected: dropping it is the same as
    /// the network losing it).
    fn take_held(&mut self, last: LogIndex) -> Option<HeldAppend> {
        let (term, leader) = (self.term, self.leader);
        self.held
            .retain(|h| h.term == term && Some(h.leader) == leader);
        while let Some(k) = self.held.iter().position(|h| h.prev_log_index <= last) {
            let h = self.held.remove(k);
            let matches = h.prev_log_index <= self.log.offset()
                || self.log.term_at(h.prev_log_index) == Some(h.prev_log_term);
            if matches {
                return Some(h);
            }
        }
        None
    }
}
