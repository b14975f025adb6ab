//! Commitment (§5.3, §5.4.2) and apply.
//!
//! Owns: the commit index, which moves only forward and only through [`Raft::commit_to`]; the
//! leader's rule that an index commits once a majority stores it and its entry is of the
//! current term; the refusal to let a leader overwrite a committed entry; and handing committed
//! entries to the application in index order. Both refusals hold in release builds: in the
//! impossible case the change is not made and a [`Refusal`] is traced, so a checker sees it.
//! Never: deciding elections, or what an entry means.

use crate::io::Output;
use crate::testing::PlantedBug;
use crate::trace::{Event, Refusal};
use crate::types::{Instant, LogIndex, NodeId};

use super::{App, Raft};

/// The commit index. Its field is private to this module, so every change goes through
/// [`Commit::advance`], which refuses to move it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Commit {
    index: LogIndex,
}

impl Commit {
    pub(crate) fn new(index: LogIndex) -> Commit {
        Commit { index }
    }

    pub(crate) fn get(self) -> LogIndex {
        self.index
    }

    /// Moves the index to `to`; `Err` (and no change) if that is behind it.
    fn advance(&mut self, to: LogIndex) -> Result<(), Refusal> {
        if to < self.index {
            return Err(Refusal::CommitRegression {
                commit: self.index,
                to,
            });
        }
        self.index = to;
        Ok(())
    }
}

impl Raft {
    /// The one way the commit index moves: to `to`, never backwards. A regression is refused
    /// (the index stays, a [`Refusal`] is traced) and false returned.
    pub(super) fn commit_to(&mut self, to: LogIndex, out: &mut Vec<Output>) -> bool {
        match self.commit.advance(to) {
            Ok(()) => true,
            Err(refusal) => {
                self.trace(Event::Refused { refusal }, out);
                false
            }
        }
    }

    /// Whether a leader's AppendEntries may replace the log from `from` on: never at or below
    /// the commit index. A refusal is traced; the caller then appends nothing and answers
    /// nothing.
    pub(super) fn may_overwrite(
        &self,
        leader: NodeId,
        from: LogIndex,
        out: &mut Vec<Output>,
    ) -> bool {
        let commit = self.commit.get();
        if from > commit {
            return true;
        }
        let refusal = Refusal::CommittedOverwrite {
            leader,
            index: from,
            commit,
        };
        self.trace(Event::Refused { refusal }, out);
        false
    }

    /// §5.3, §5.4.2: the highest index stored on a majority becomes committed, but only if its
    /// entry is of the current term (earlier-term entries commit indirectly).
    pub(super) fn maybe_commit(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        let mut quorum = self.members.quorum;
        if self.planted(PlantedBug::QuorumOnOldConfig) {
            quorum = self.quorum_on_old_config();
        }
        let last = self.log.last_index();
        let commit = self.commit.get();
        let learners_count = self.planted(PlantedBug::LearnerCountsAsVoter);
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if learners_count {
            lead.progress.values_mut().for_each(|p| p.voter = true);
        }
        // Nothing to do unless a quorum holds something beyond the commit index (the usual case
        // of an acknowledgement): a count, cheaper than finding the quorum's match index.
        if !lead.quorum_reached(quorum, last.0, commit.0 + 1, |p| p.matched.0) {
            return;
        }
        let candidate = LogIndex(lead.quorum_value(quorum, last.0, |p| p.matched.0));
        let current_term = self.log.term_at(candidate) == Some(self.term)
            || self.planted(PlantedBug::CommitEarlierTermByCounting);
        if candidate > commit && current_term && self.commit_to(candidate, out) {
            self.trace(Event::Committed { index: candidate }, out);
            if self.planted(PlantedBug::ConfigOnCommit) {
                self.sync_membership(now, app, out);
            }
            self.apply_committed(now, app, out);
            self.serve_reads(now, app, out);
            self.step_down_if_removed(app, out);
        }
    }

    /// Hands committed entries to the application in order, then takes a snapshot if due.
    pub(super) fn apply_committed(
        &mut self,
        now: Instant,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        let stamp = self.stamp();
        while self.applied < self.commit.get() {
            let index = self.applied.next();
            let Some(entry) = self.log.entry(index) else {
                debug_assert!(false, "committed entry {index} missing from the log");
                return;
            };
            // The entry is applied where it lies in the log, without taking a reference count
            // on its command.
            app.apply(now, stamp, index, entry, out);
            self.applied = index;
        }
        app.applied_to(self.applied);
        self.maybe_snapshot(app, out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::Config;
    use crate::io::{DurableState, HardState, Input, Output};
    use crate::message::{AppendResult, Command, Entry, Message, MessageBody};
    use crate::node::Node;
    use crate::trace::{Event, Refusal};
    use crate::types::{Instant, LogIndex, NodeId, Term};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            command: Arc::new(Command::Noop),
        }
    }

    /// Node 2 of three, holding entries 1..=3 of term 1, following node 1 in term 1, with
    /// everything committed.
    fn committed_follower() -> Node {
        let members = vec![NodeId(1), NodeId(2), NodeId(3)];
        let durable = DurableState {
            hard_state: HardState {
                term: Term(1),
                voted_for: Some(NodeId(1)),
            },
            snapshot: None,
            entries: (1..=3).map(|i| entry(1, i)).collect(),
        };
        let cfg = Config::new(NodeId(2), members, 2);
        let mut node = Node::new(cfg, durable, Instant(0)).expect("valid config");
        let mut out = Vec::new();
        let append = MessageBody::AppendEntries {
            prev_log_index: LogIndex(3),
            prev_log_term: Term(1),
            entries: Vec::new(),
            leader_commit: LogIndex(3),
            round: 1,
        };
        node.step(
            Instant(1),
            Input::Message(from_leader(Term(1), append)),
            &mut out,
        );
        assert_eq!(node.commit_index(), LogIndex(3));
        node
    }

    fn from_leader(term: Term, body: MessageBody) -> Message {
        Message {
            from: NodeId(1),
            incarnation: crate::types::Incarnation::ORIGINAL,
            to: NodeId(2),
            term,
            body,
        }
    }

    fn refusals(out: &[Output]) -> Vec<Refusal> {
        out.iter()
            .filter_map(|o| match o {
                Output::Trace(Event::Refused { refusal }) => Some(refusal.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_commit_index_never_moves_back() {
        let mut node = committed_follower();
        let mut out = Vec::new();
        assert!(!node.raft.commit_to(LogIndex(1), &mut out));
        assert_eq!(node.commit_index(), LogIndex(3));
        assert_eq!(
            refusals(&out),
            vec![Refusal::CommitRegression {
                commit: LogIndex(3),
                to: LogIndex(1)
            }]
        );
        out.clear();
        assert!(node.raft.commit_to(LogIndex(3), &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_leader_may_not_overwrite_a_committed_entry() {
        let mut node = committed_follower();
        let mut out = Vec::new();
        // A leader of term 2 claims index 2 holds an entry of term 2: it would replace the
        // committed entries 2 and 3.
        let append = MessageBody::AppendEntries {
            prev_log_index: LogIndex(1),
            prev_log_term: Term(1),
            entries: vec![entry(2, 2)],
            leader_commit: LogIndex(1),
            round: 1,
        };
        node.step(
            Instant(2),
            Input::Message(from_leader(Term(2), append)),
            &mut out,
        );
        assert_eq!(
            refusals(&out),
            vec![Refusal::CommittedOverwrite {
                leader: NodeId(1),
                index: LogIndex(2),
                commit: LogIndex(3)
            }]
        );
        assert_eq!(node.log().term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(node.log().last_index(), LogIndex(3));
        // Nothing is persisted and no answer acknowledges the entry.
        assert!(!out
            .iter()
            .any(|o| matches!(o, Output::Persist(crate::io::Persist::Entries(_)))));
        assert!(!out.iter().any(|o| matches!(
            o,
            Output::Send(Message {
                body: MessageBody::AppendEntriesResponse {
                    result: AppendResult::Success { .. },
                    ..
                },
                ..
            })
        )));
    }
}
