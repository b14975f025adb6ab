//! The in-memory Raft log: entries after a compaction point, with the term at that point, and
//! the configurations the log holds (a configuration takes effect when appended, thesis §4.1, so
//! the configuration in force is the log's last one, committed or not, and a truncation that
//! removes it brings back the one before).
//!
//! Owns: index arithmetic, the consistency check's term lookups, truncation of conflicting
//! suffixes, compaction, and which configuration is in force at any index. Never: deciding
//! what is committed (that is replication's job).

use crate::message::{Command, Entry};
use crate::types::{LogIndex, Term};

use super::membership::Membership;

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// Index of the last entry discarded by compaction (0: none); its term is `offset_term`.
    offset: LogIndex,
    offset_term: Term,
    /// `entries[i].index == offset + 1 + i`.
    entries: Vec<Entry>,
    /// The configuration in force at `offset` (from the snapshot, or the bootstrap one).
    base: Membership,
    /// Every configuration entry after `offset`, ascending: (index, configuration).
    changes: Vec<(LogIndex, Membership)>,
}

impl RaftLog {
    /// A log whose prefix up to (`offset`, `offset_term`) is compacted away, with `base` the
    /// configuration in force there, followed by `entries`.
    ///
    /// # Panics
    /// If `entries` are not contiguous from `offset + 1` (a corrupt durable state).
    pub fn restore(
        offset: LogIndex,
        offset_term: Term,
        base: Membership,
        entries: Vec<Entry>,
    ) -> RaftLog {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                offset.0 + 1 + i as u64,
                "log entries are not contiguous"
            );
        }
        let changes = entries.iter().filter_map(change_of).collect();
        RaftLog {
            offset,
            offset_term,
            entries,
            base,
            changes,
        }
    }

    /// The configuration in force: the log's last one, committed or not.
    pub fn membership(&self) -> &Membership {
        self.changes.last().map_or(&self.base, |(_, m)| m)
    }

    /// The index of the entry holding the configuration in force (the compaction point if it
    /// came from a snapshot or the bootstrap).
    pub fn membership_index(&self) -> LogIndex {
        self.changes.last().map_or(self.offset, |(i, _)| *i)
    }

    /// The index of the entry holding the configuration in force at `index` (the compaction
    /// point if that one came from a snapshot or the bootstrap).
    pub fn membership_index_at(&self, index: LogIndex) -> LogIndex {
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(self.offset, |(i, _)| *i)
    }

    /// The configuration in force at `index` (the last one at or before it).
    pub fn membership_at(&self, index: LogIndex) -> &Membership {
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, m)| m)
    }

    /// The first index still held as an entry (may exceed `last_index` when empty).
    pub fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    /// The compaction point: entries up to it are gone.
    pub fn offset(&self) -> LogIndex {
        self.offset
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The term of the entry at `index`, if known: the compaction point and held entries.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let i = index.0.checked_sub(self.offset.0 + 1)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Up to `max` entries starting at `from` (which must be held, or be `last_index + 1`).
    pub fn slice(&self, from: LogIndex, max: usize) -> &[Entry] {
        let Some(start) = from.0.checked_sub(self.offset.0 + 1) else {
            return &[];
        };
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        let end = start.saturating_add(max).min(self.entries.len());
        &self.entries[start..end]
    }

    /// Every held entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first index held with term `term`, searching back from `index` (for conflict hints).
    pub fn first_index_of_term(&self, term: Term, index: LogIndex) -> LogIndex {
        let mut i = index;
        while i > self.first_index() && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index whose entry has `term`, if any entry of that term is held.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == term)
            .map(|e| e.index)
    }

    /// Appends one entry at `last_index + 1`.
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index().next());
        if let Some(change) = change_of(&entry) {
            self.changes.push(change);
        }
        self.entries.push(entry);
    }

    /// Discards every entry at or after `from` (and the configurations they held).
    pub fn truncate_from(&mut self, from: LogIndex) {
        let keep = from.0.saturating_sub(self.offset.0 + 1);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.changes.retain(|(i, _)| *i < from);
    }

    /// Discards entries up to and including `upto` (which must be held or be the offset).
    pub fn compact(&mut self, upto: LogIndex) {
        if upto <= self.offset {
            return;
        }
        let Some(term) = self.term_at(upto) else {
            return;
        };
        let n = usize::try_from(upto.0 - self.offset.0)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        self.base = self.membership_at(upto).clone();
        self.changes.retain(|(i, _)| *i > upto);
        self.entries.drain(..n);
        self.offset = upto;
        self.offset_term = term;
    }

    /// Replaces the whole log by a compaction point with configuration `base` (after installing
    /// a snapshot that the log does not match).
    pub fn reset(&mut self, offset: LogIndex, offset_term: Term, base: Membership) {
        self.entries.clear();
        self.changes.clear();
        self.base = base;
        self.offset = offset;
        self.offset_term = offset_term;
    }
}

/// The configuration an entry holds, if it is a configuration entry.
fn change_of(entry: &Entry) -> Option<(LogIndex, Membership)> {
    match &*entry.command {
        Command::Membership(m) => Some((entry.index, m.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::Command;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            command: Arc::new(Command::Noop),
        }
    }

    fn log(terms: &[u64]) -> RaftLog {
        let mut l = RaftLog::default();
        for (i, t) in terms.iter().enumerate() {
            l.push(e(*t, i as u64 + 1));
        }
        l
    }

    #[test]
    fn term_lookups_cover_offset_entries_and_nothing_else() {
        let mut l = log(&[1, 1, 2, 3]);
        assert_eq!(l.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(l.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(l.term_at(LogIndex(5)), None);
        l.compact(LogIndex(2));
        assert_eq!(l.first_index(), LogIndex(3));
        assert_eq!(l.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(l.term_at(LogIndex(1)), None);
        assert_eq!(l.last_index(), LogIndex(4));
        assert_eq!(l.slice(LogIndex(3), 10).len(), 2);
        assert_eq!(l.slice(LogIndex(5), 10).len(), 0);
    }

    #[test]
    fn conflict_hints_find_term_boundaries() {
        let l = log(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(l.first_index_of_term(Term(2), LogIndex(5)), LogIndex(3));
        assert_eq!(l.last_index_of_term(Term(2)), Some(LogIndex(5)));
        assert_eq!(l.last_index_of_term(Term(3)), None);
    }

    #[test]
    fn the_last_configuration_is_in_force_until_truncated_and_survives_compaction() {
        use crate::types::NodeId;
        let boot = Membership::bootstrap(&[NodeId(1)]);
        let two = Membership::bootstrap(&[NodeId(1), NodeId(2)]);
        let three = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]);
        let conf = |index: u64, m: &Membership| Entry {
            term: Term(1),
            index: LogIndex(index),
            command: Arc::new(Command::Membership(m.clone())),
        };
        let mut l = RaftLog::restore(LogIndex(0), Term(0), boot.clone(), vec![e(1, 1)]);
        assert_eq!(l.membership(), &boot);
        assert_eq!(l.membership_index(), LogIndex(0));
        l.push(conf(2, &two));
        l.push(e(1, 3));
        l.push(conf(4, &three));
        assert_eq!(l.membership(), &three);
        assert_eq!(l.membership_index(), LogIndex(4));
        assert_eq!(l.membership_at(LogIndex(3)), &two);
        assert_eq!(l.membership_index_at(LogIndex(3)), LogIndex(2));
        assert_eq!(l.membership_index_at(LogIndex(1)), LogIndex(0));
        assert_eq!(l.membership_at(LogIndex(1)), &boot);
        l.truncate_from(LogIndex(4));
        assert_eq!(
            l.membership(),
            &two,
            "an uncommitted change is undone by truncation"
        );
        l.compact(LogIndex(3));
        assert_eq!(l.membership(), &two);
        assert_eq!(l.membership_index(), LogIndex(3));
        let restored = RaftLog::restore(LogIndex(3), Term(1), two.clone(), vec![conf(4, &three)]);
        assert_eq!(restored.membership(), &three);
        l.reset(LogIndex(9), Term(2), boot.clone());
        assert_eq!(l.membership(), &boot);
    }

    #[test]
    fn truncation_keeps_the_prefix() {
        let mut l = log(&[1, 1, 2]);
        l.truncate_from(LogIndex(2));
        assert_eq!(l.last_index(), LogIndex(1));
        l.push(e(3, 2));
        assert_eq!(l.last_term(), Term(3));
    }
}
