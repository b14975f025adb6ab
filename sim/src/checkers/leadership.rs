//! The leadership checkers: at most one leader per term, a node's term never goes back, and no
//! leader is elected while an earlier leader's read lease still runs.
//!
//! Each keeps only what it needs to judge the next observation (per term, per member slot); it
//! reads what the engine hands it and never changes a node or the run.

use std::collections::BTreeMap;

use keel_core::{NodeId, Term};

/// At most one leader per term.
#[derive(Default)]
pub(super) struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
    /// The pair recorded last: a leader observed again in the same term (every step it takes)
    /// needs no lookup.
    last: Option<(Term, NodeId)>,
}

impl ElectionSafety {
    pub(super) fn observe_leader(&mut self, term: Term, node: NodeId) -> Result<(), String> {
        if self.last == Some((term, node)) {
            return Ok(());
        }
        match self.leaders.get(&term) {
            Some(other) if *other != node => Err(format!(
                "{node} and {other} are both leaders of term {}",
                term.0
            )),
            Some(_) => {
                self.last = Some((term, node));
                Ok(())
            }
            None => {
                self.leaders.insert(term, node);
                self.last = Some((term, node));
                Ok(())
            }
        }
    }
}

/// No leader is elected while an earlier term's leader may still answer reads from its lease.
#[derive(Default)]
pub(super) struct LeaderLeases {
    /// Per member slot: the term it leads and the end of its read lease, as last seen.
    held: Vec<Option<(Term, u64)>>,
    /// Leases of leaders that crashed while holding them: they run to their end.
    orphaned: Vec<(NodeId, Term, u64)>,
    /// When each term's leader was first seen leading.
    elected: BTreeMap<Term, u64>,
}

impl LeaderLeases {
    /// Node `node` (in `slot`) at `now`: leading in `leading`, with its lease running to
    /// `lease` (if it holds one).
    pub(super) fn observe(
        &mut self,
        slot: usize,
        node: NodeId,
        leading: Option<Term>,
        lease: Option<u64>,
    ) -> Result<(), String> {
        if self.held.len() <= slot {
            self.held.resize(slot + 1, None);
        }
        let now_held = leading.zip(lease);
        if self.held[slot] == now_held {
            return Ok(());
        }
        // Stepped down, or voided its lease: it answers no more reads from it.
        self.held[slot] = now_held;
        let Some((term, until)) = now_held else {
            return Ok(());
        };
        if let Some((newer, at)) = self
            .elected
            .range(term.next()..)
            .find(|(_, at)| **at < until)
        {
            return Err(format!(
                "{node}'s read lease as leader of term {} runs to {}, but term {}'s leader was \
                 elected at {}",
                term.0,
                show_us(until),
                newer.0,
                show_us(*at)
            ));
        }
        Ok(())
    }

    /// Whether the node in `slot` was last seen holding a lease.
    pub(super) fn holds(&self, slot: usize) -> bool {
        self.held.get(slot).is_some_and(Option::is_some)
    }

    /// A node was first seen leading `term` at `now`.
    pub(super) fn elected(
        &mut self,
        term: Term,
        node: NodeId,
        now: u64,
        members: &[NodeId],
    ) -> Result<(), String> {
        self.elected.entry(term).or_insert(now);
        self.orphaned.retain(|(_, _, until)| *until > now);
        let held = self
            .held
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| h.map(|(t, u)| (members.get(slot).copied(), t, u)));
        let orphaned = self.orphaned.iter().map(|(n, t, u)| (Some(*n), *t, *u));
        for (holder, t, until) in held.chain(orphaned) {
            if t < term && until > now {
                let holder = holder.map_or_else(|| "a node".to_string(), |n| n.to_string());
                return Err(format!(
                    "{node} became leader of term {} at {}, but {holder}'s read lease as leader \
                     of term {} runs to {}",
                    term.0,
                    show_us(now),
                    t.0,
                    show_us(until)
                ));
            }
        }
        Ok(())
    }

    /// The node in `slot` crashed (and restarts now): a lease it held runs on.
    pub(super) fn crashed(&mut self, slot: usize, node: NodeId) {
        if let Some(Some((term, until))) = self.held.get_mut(slot).map(Option::take) {
            self.orphaned.push((node, term, until));
        }
    }
}

fn show_us(us: u64) -> String {
    format!("{}.{:06} s", us / 1_000_000, us % 1_000_000)
}

/// A node's term never goes back.
#[derive(Default)]
pub(super) struct TermMonotonic {
    /// By member slot (see [`SafetyCheckers::slot`]); `None` until first seen (or restarted).
    terms: Vec<Option<Term>>,
}

impl TermMonotonic {
    #[inline]
    pub(super) fn observe_term(
        &mut self,
        slot: usize,
        node: NodeId,
        term: Term,
    ) -> Result<(), String> {
        // As a rule the node is in the term it was in at its last step.
        if let Some(Some(last)) = self.terms.get(slot) {
            if *last == term {
                return Ok(());
            }
        }
        self.observe_new_term(slot, node, term)
    }

    /// The node in `slot` restarted: its term may fall back to its durable one.
    pub(super) fn forget(&mut self, slot: usize) {
        if let Some(t) = self.terms.get_mut(slot) {
            *t = None;
        }
    }

    #[inline(never)]
    fn observe_new_term(&mut self, slot: usize, node: NodeId, term: Term) -> Result<(), String> {
        if self.terms.len() <= slot {
            self.terms.resize(slot + 1, None);
        }
        let last = self.terms[slot].get_or_insert(term);
        if term < *last {
            let was = *last;
            *last = term;
            return Err(format!(
                "{node}'s term went back from {} to {}",
                was.0, term.0
            ));
        }
        *last = term;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_fire() {
        let mut c = ElectionSafety::default();
        assert!(c.observe_leader(Term(1), NodeId(1)).is_ok());
        assert!(c.observe_leader(Term(1), NodeId(1)).is_ok());
        assert!(c.observe_leader(Term(2), NodeId(2)).is_ok());
        let e = c.observe_leader(Term(1), NodeId(3)).expect_err("fires");
        assert!(e.contains("n3") && e.contains("n1"), "{e}");
    }

    #[test]
    fn a_leader_elected_inside_an_earlier_lease_fires() {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let (n1, n2) = (NodeId(1), NodeId(2));
        // n1 leads term 1 and holds a lease to 500 ms; n2 is elected for term 2 at 400 ms.
        let mut c = LeaderLeases::default();
        assert!(c.elected(Term(1), n1, 100_000, &members).is_ok());
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        let e = c
            .elected(Term(2), n2, 400_000, &members)
            .expect_err("fires");
        assert!(
            e.contains("n2") && e.contains("n1") && e.contains("0.500000 s"),
            "{e}"
        );

        // The other order: term 2 is elected first, then n1 learns of a lease reaching past it.
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(300_000)).is_ok());
        assert!(c.elected(Term(2), n2, 400_000, &members).is_ok());
        let e = c
            .observe(0, n1, Some(Term(1)), Some(450_000))
            .expect_err("fires");
        assert!(e.contains("term 2"), "{e}");

        // A leader that crashed keeps its lease until it runs out.
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        c.crashed(0, n1);
        assert!(c.observe(0, n1, None, None).is_ok());
        assert!(c.elected(Term(2), n2, 450_000, &members).is_err());
    }

    #[test]
    fn leases_that_ended_or_were_given_up_pass() {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let (n1, n2) = (NodeId(1), NodeId(2));
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        // Ran out before the election.
        assert!(c.elected(Term(2), n2, 500_000, &members).is_ok());
        // A leader that stepped down (or voided its lease for a transfer) answers no more
        // reads from it.
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        assert!(c.observe(0, n1, Some(Term(1)), None).is_ok());
        assert!(c.elected(Term(2), n2, 300_000, &members).is_ok());
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        assert!(c.observe(0, n1, None, None).is_ok());
        assert!(c.elected(Term(2), n2, 300_000, &members).is_ok());
        // A crashed leader's lease that ran out is forgotten.
        let mut c = LeaderLeases::default();
        assert!(c.observe(0, n1, Some(Term(1)), Some(500_000)).is_ok());
        c.crashed(0, n1);
        assert!(c.elected(Term(2), n2, 600_000, &members).is_ok());
        assert!(c.orphaned.is_empty());
    }

    #[test]
    fn a_term_going_back_fires() {
        let mut c = TermMonotonic::default();
        assert!(c.observe_term(0, NodeId(1), Term(3)).is_ok());
        assert!(c.observe_term(0, NodeId(1), Term(3)).is_ok());
        assert!(c.observe_term(1, NodeId(2), Term(1)).is_ok());
        assert!(c.observe_term(0, NodeId(1), Term(2)).is_err());
    }
}
