//! The in-memory Raft log: entries after a compaction point, with the term at that point.
//!
//! Owns: index arithmetic, the consistency check's term lookups, truncation of conflicting
//! suffixes and compaction. Never: deciding what is committed (that is replication's job).

use crate::message::Entry;
use crate::types::{LogIndex, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// Index of the last entry discarded by compaction (0: none); its term is `offset_term`.
    offset: LogIndex,
    offset_term: Term,
    /// `entries[i].index == offset + 1 + i`.
    entries: Vec<Entry>,
}

impl RaftLog {
    /// A log whose prefix up to (`offset`, `offset_term`) is compacted away, followed by `entries`.
    ///
    /// # Panics
    /// If `entries` are not contiguous from `offset + 1` (a corrupt durable state).
    pub fn restore(offset: LogIndex, offset_term: Term, entries: Vec<Entry>) -> RaftLog {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                offset.0 + 1 + i as u64,
                "log entries are not contiguous"
            );
        }
        RaftLog {
            offset,
            offset_term,
            entries,
        }
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
        self.entries.push(entry);
    }

    /// Discards every entry at or after `from`.
    pub fn truncate_from(&mut self, from: LogIndex) {
        let keep = from.0.saturating_sub(self.offset.0 + 1);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
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
        self.entries.drain(..n);
        self.offset = upto;
        self.offset_term = term;
    }

    /// Replaces the whole log by a compaction point (after installing a snapshot that the log
    /// does not match).
    pub fn reset(&mut self, offset: LogIndex, offset_term: Term) {
        self.entries.clear();
        self.offset = offset;
        self.offset_term = offset_term;
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
    fn truncation_keeps_the_prefix() {
        let mut l = log(&[1, 1, 2]);
        l.truncate_from(LogIndex(2));
        assert_eq!(l.last_index(), LogIndex(1));
        l.push(e(3, 2));
        assert_eq!(l.last_term(), Term(3));
    }
}
