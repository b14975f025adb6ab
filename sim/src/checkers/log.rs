//! The log checkers: entries with one index and term carry one command wherever they are
//! persisted (Log Matching), and the committed log the cluster reveals never changes (committed
//! entries, Leader Completeness, acknowledged writes).
//!
//! Both are dense by index and grow with what they see; they compare commands and never change
//! a node or the run.

use std::sync::Arc;

#[cfg(test)]
use keel_core::StateMachine;
use keel_core::{Command, LogIndex, Node, Term, Write};

fn same(a: &Arc<Command>, b: &Arc<Command>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}
/// Same index and term, same command, wherever persisted. Dense by index: `by_index[i - base]`
/// holds the (term, command) pairs persisted at index `i` (rarely more than one).
#[derive(Default)]
pub(super) struct LogMatching {
    base: u64,
    by_index: std::collections::VecDeque<Persisted>,
}

/// The (term, command) pairs persisted at one index, one per term: almost always a single one,
/// kept inline (no allocation per index).
#[derive(Default)]
struct Persisted {
    first: Option<(Term, Arc<Command>)>,
    more: Vec<(Term, Arc<Command>)>,
}

impl Persisted {
    fn find(&self, term: Term) -> Option<&Arc<Command>> {
        match &self.first {
            Some((t, c)) if *t == term => Some(c),
            _ => self.more.iter().find(|(t, _)| *t == term).map(|(_, c)| c),
        }
    }

    fn add(&mut self, term: Term, command: Arc<Command>) {
        match self.first {
            None => self.first = Some((term, command)),
            Some(_) => self.more.push((term, command)),
        }
    }
}

impl LogMatching {
    pub(super) fn observe_persisted(
        &mut self,
        index: LogIndex,
        term: Term,
        command: &Arc<Command>,
    ) -> Result<(), String> {
        if self.by_index.is_empty() {
            self.base = index.0;
        }
        if index.0 < self.base {
            return Ok(()); // pruned: far below everything committed
        }
        let slot = (index.0 - self.base) as usize;
        while self.by_index.len() <= slot {
            self.by_index.push_back(Persisted::default());
        }
        let seen = &mut self.by_index[slot];
        match seen.find(term) {
            Some(c) if !same(c, command) => Err(format!(
                "two entries at index {} of term {} differ: {c:?} vs {command:?}",
                index.0, term.0
            )),
            Some(_) => Ok(()),
            None => {
                seen.add(term, command.clone());
                Ok(())
            }
        }
    }

    pub(super) fn prune_below(&mut self, index: LogIndex) {
        while self.base < index.0 && !self.by_index.is_empty() {
            self.by_index.pop_front();
            self.base += 1;
        }
    }
}

/// The committed log as the cluster has revealed it: `entries[i - 1]` for index `i`.
#[derive(Default)]
pub(super) struct CommittedLog {
    entries: Vec<Option<(Term, Arc<Command>)>>,
}

impl CommittedLog {
    pub(super) fn max(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    pub(super) fn get(&self, index: LogIndex) -> Option<&(Term, Arc<Command>)> {
        let i = usize::try_from(index.0).ok()?.checked_sub(1)?;
        self.entries.get(i)?.as_ref()
    }

    pub(super) fn observe_commit(
        &mut self,
        index: LogIndex,
        term: Term,
        command: &Arc<Command>,
    ) -> Result<(), String> {
        let Some(i) = usize::try_from(index.0).ok().and_then(|i| i.checked_sub(1)) else {
            return Err("index 0 cannot be committed".to_string());
        };
        if self.entries.len() <= i {
            self.entries.resize(i + 1, None);
        }
        match &self.entries[i] {
            Some((t, c)) if *t != term || !same(c, command) => Err(format!(
                "committed entry {} changed: term {} {c:?} became term {} {command:?}",
                index.0, t.0, term.0
            )),
            Some(_) => Ok(()),
            None => {
                self.entries[i] = Some((term, command.clone()));
                Ok(())
            }
        }
    }

    /// Leader Completeness: a new leader's log holds every committed entry it still keeps, and
    /// reaches the highest committed index.
    pub(super) fn check_leader(&self, node: &Node) -> Result<(), String> {
        let log = node.log();
        let max = self.max();
        if log.last_index() < max {
            return Err(format!(
                "new leader of term {} has log up to {} but {} is committed",
                node.term().0,
                log.last_index().0,
                max.0
            ));
        }
        for i in log.first_index().0..=max.0 {
            let Some((term, _)) = self.get(LogIndex(i)) else {
                continue;
            };
            if log.term_at(LogIndex(i)) != Some(*term) {
                return Err(format!(
                    "new leader of term {} lacks committed entry {i} of term {}",
                    node.term().0,
                    term.0
                ));
            }
        }
        Ok(())
    }

    /// The acknowledged write at `revision` must be the committed entry there.
    pub(super) fn check_acked(&self, revision: LogIndex, write: &Write) -> Result<(), String> {
        match self.get(revision) {
            Some((_, c)) if matches!(&**c, Command::Write(w) if w == write) => Ok(()),
            Some((_, c)) => Err(format!(
                "a write acknowledged at revision {} is not the entry committed there ({c:?}): {write:?}",
                revision.0
            )),
            None => Err(format!(
                "a write acknowledged at revision {} is not committed: {write:?}",
                revision.0
            )),
        }
    }

    /// The state machine the committed log builds up to `upto`, if no index is missing.
    #[cfg(test)]
    fn replay(&self, upto: LogIndex) -> Option<StateMachine> {
        let mut sm = StateMachine::default();
        for i in 1..=upto.0 {
            let (_, command) = self.get(LogIndex(i))?;
            sm.apply(LogIndex(i), command);
        }
        Some(sm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::Key;

    fn put(k: &str, v: &str) -> Arc<Command> {
        Arc::new(Command::Write(Write::Put {
            key: Key::user(k),
            value: v.into(),
        }))
    }

    #[test]
    fn different_commands_at_one_index_and_term_fire() {
        let mut c = LogMatching::default();
        assert!(c
            .observe_persisted(LogIndex(1), Term(1), &put("a", "1"))
            .is_ok());
        assert!(c
            .observe_persisted(LogIndex(1), Term(1), &put("a", "1"))
            .is_ok());
        assert!(c
            .observe_persisted(LogIndex(1), Term(2), &put("a", "2"))
            .is_ok());
        assert!(c
            .observe_persisted(LogIndex(1), Term(1), &put("a", "9"))
            .is_err());
        c.prune_below(LogIndex(2));
        assert!(c
            .observe_persisted(LogIndex(1), Term(1), &put("a", "9"))
            .is_ok());
    }

    #[test]
    fn a_changed_committed_entry_fires() {
        let mut c = CommittedLog::default();
        assert!(c
            .observe_commit(LogIndex(1), Term(1), &put("a", "1"))
            .is_ok());
        assert!(c
            .observe_commit(LogIndex(1), Term(1), &put("a", "1"))
            .is_ok());
        assert!(c
            .observe_commit(LogIndex(1), Term(2), &put("a", "1"))
            .is_err());
        assert!(c
            .observe_commit(LogIndex(1), Term(1), &put("a", "2"))
            .is_err());
    }

    #[test]
    fn an_acknowledged_write_must_be_the_committed_entry() {
        let mut c = CommittedLog::default();
        let w = Write::Put {
            key: Key::user("a"),
            value: "1".into(),
        };
        assert!(
            c.check_acked(LogIndex(1), &w).is_err(),
            "not committed at all"
        );
        c.observe_commit(LogIndex(1), Term(1), &put("a", "2"))
            .expect("first");
        assert!(
            c.check_acked(LogIndex(1), &w).is_err(),
            "another entry there"
        );
        c.observe_commit(LogIndex(2), Term(1), &put("a", "1"))
            .expect("second");
        assert!(c.check_acked(LogIndex(2), &w).is_ok());
    }

    #[test]
    fn replay_needs_every_index() {
        let mut c = CommittedLog::default();
        c.observe_commit(LogIndex(1), Term(1), &put("a", "1"))
            .expect("1");
        c.observe_commit(LogIndex(3), Term(1), &put("a", "3"))
            .expect("3");
        assert!(c.replay(LogIndex(1)).is_some());
        assert!(c.replay(LogIndex(3)).is_none());
        c.observe_commit(LogIndex(2), Term(1), &put("b", "2"))
            .expect("2");
        let sm = c.replay(LogIndex(3)).expect("complete");
        assert_eq!(
            sm.kv.get(&Key::user("a")).map(|v| v.value.as_str()),
            Some("3")
        );
    }
}
