//! Safety checkers, run after every simulated step and at the end of a run.
//!
//! Each is incremental: a step costs work in proportion to what it changed, never a rescan of
//! every log. The invariants (Raft paper, figure 3, plus the client's view):
//!
//! - **Election Safety** ([`ELECTION_SAFETY`]): at most one leader per term.
//! - **Term monotonicity** ([`TERM_MONOTONIC`]): a running node's term never decreases (after a
//!   crash it restarts from its durable term).
//! - **Log Matching** ([`LOG_MATCHING`]): two persisted entries with the same index and term carry
//!   the same command, on any nodes.
//! - **Committed entries never change or vanish** ([`COMMITTED_NEVER_LOST`]): an index committed
//!   anywhere keeps its term and command on every node that commits it, and every new leader holds
//!   every committed entry (Leader Completeness).
//! - **State Machine Safety** ([`STATE_MACHINE_SAFETY`]): at the end, every live node's state
//!   equals the committed log replayed up to the index it applied.
//! - **Acknowledged writes are durable** ([`ACKED_WRITES`]): a write acknowledged at revision `r` is
//!   the committed entry at `r` (so it is in the final state, unless a later committed write
//!   replaced it).
//! - **Reads see what was committed** ([`FRESH_READS`]): a leader answers a read only with its
//!   state applied at least up to every entry committed anywhere before the read was issued. A
//!   read-index leader always can (Leader Completeness puts those entries at or below its no-op,
//!   and a newer leader's commits keep it from confirming its round); a deposed leader that
//!   still believes it leads cannot. This catches a stale read at once, where the
//!   linearizability check needs a conflicting write on the same key to notice it. A leader
//!   answering from its read lease must pass the same test.
//! - **Leader leases never overlap** ([`LEASES_DISJOINT`]): no leader is elected while an earlier
//!   leader's read lease (`Node::read_lease_until`) still runs. A leader that steps down or
//!   voids its lease (a transfer) answers no more reads from it, so its lease ends there; one
//!   that crashes does not take its lease with it (its followers still refuse votes, and so
//!   does the node itself for a while after it restarts).

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_core::{Command, LogIndex, Node, NodeId, Output, Persist, StateMachine, Term, Write};

pub const ELECTION_SAFETY: &str = "ElectionSafety";
pub const TERM_MONOTONIC: &str = "TermMonotonic";
pub const LOG_MATCHING: &str = "LogMatching";
pub const COMMITTED_NEVER_LOST: &str = "CommittedNeverLost";
pub const STATE_MACHINE_SAFETY: &str = "StateMachineSafety";
pub const ACKED_WRITES: &str = "AckedWritesDurable";
pub const AT_MOST_ONE_COPY: &str = "AtMostOneRunningCopy";
pub const FRESH_READS: &str = "ReadsSeeCommitted";
pub const LEASES_DISJOINT: &str = "LeaderLeasesDisjoint";
/// Simulated time keeps moving at a sane event rate: a node that asks to be woken at the
/// instant it is woken (or spins on microsecond timers) is a bug, and would hang the run.
pub const PROGRESS: &str = "Progress";

/// Violations kept per run; a broken run usually breaks many times over.
const MAX_VIOLATIONS: usize = 100;
/// Persisted-entry identities kept below the highest committed index, for log matching.
const MATCH_WINDOW: u64 = 20_000;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub checker: &'static str,
    pub at_us: u64,
    pub node: Option<NodeId>,
    pub message: String,
}

fn same(a: &Arc<Command>, b: &Arc<Command>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// At most one leader per term.
#[derive(Default)]
struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
    /// The pair recorded last: a leader observed again in the same term (every step it takes)
    /// needs no lookup.
    last: Option<(Term, NodeId)>,
}

impl ElectionSafety {
    fn observe_leader(&mut self, term: Term, node: NodeId) -> Result<(), String> {
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
struct LeaderLeases {
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
    fn observe(
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
    fn holds(&self, slot: usize) -> bool {
        self.held.get(slot).is_some_and(Option::is_some)
    }

    /// A node was first seen leading `term` at `now`.
    fn elected(
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
    fn crashed(&mut self, slot: usize, node: NodeId) {
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
struct TermMonotonic {
    /// By member slot (see [`SafetyCheckers::slot`]); `None` until first seen (or restarted).
    terms: Vec<Option<Term>>,
}

impl TermMonotonic {
    #[inline]
    fn observe_term(&mut self, slot: usize, node: NodeId, term: Term) -> Result<(), String> {
        // As a rule the node is in the term it was in at its last step.
        if let Some(Some(last)) = self.terms.get(slot) {
            if *last == term {
                return Ok(());
            }
        }
        self.observe_new_term(slot, node, term)
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

/// Same index and term, same command, wherever persisted. Dense by index: `by_index[i - base]`
/// holds the (term, command) pairs persisted at index `i` (rarely more than one).
#[derive(Default)]
struct LogMatching {
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
    fn observe_persisted(
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

    fn prune_below(&mut self, index: LogIndex) {
        while self.base < index.0 && !self.by_index.is_empty() {
            self.by_index.pop_front();
            self.base += 1;
        }
    }
}

/// The committed log as the cluster has revealed it: `entries[i - 1]` for index `i`.
#[derive(Default)]
struct CommittedLog {
    entries: Vec<Option<(Term, Arc<Command>)>>,
}

impl CommittedLog {
    fn max(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    fn get(&self, index: LogIndex) -> Option<&(Term, Arc<Command>)> {
        let i = usize::try_from(index.0).ok()?.checked_sub(1)?;
        self.entries.get(i)?.as_ref()
    }

    fn observe_commit(
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
    fn check_leader(&self, node: &Node) -> Result<(), String> {
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
    fn check_acked(&self, revision: LogIndex, write: &Write) -> Result<(), String> {
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

/// Every checker of a run.
pub struct SafetyCheckers {
    election: ElectionSafety,
    terms: TermMonotonic,
    matching: LogMatching,
    committed: CommittedLog,
    leases: LeaderLeases,
    /// The members, in the order of the per-node vectors below.
    members: Vec<NodeId>,
    /// Per node slot: the highest commit index already observed (reset on restart).
    observed_commit: Vec<LogIndex>,
    /// Per node slot: the term in which it was last seen leading.
    led_in: Vec<Option<Term>>,
    acked: u64,
    violations: Vec<Violation>,
    checks: u64,
}

impl SafetyCheckers {
    pub fn new(members: &[NodeId]) -> SafetyCheckers {
        SafetyCheckers {
            election: ElectionSafety::default(),
            terms: TermMonotonic::default(),
            matching: LogMatching::default(),
            committed: CommittedLog::default(),
            leases: LeaderLeases::default(),
            members: members.to_vec(),
            observed_commit: vec![LogIndex(0); members.len()],
            led_in: vec![None; members.len()],
            acked: 0,
            violations: Vec::new(),
            checks: 0,
        }
    }

    /// The slot of `node` in the per-node vectors: members are `n1..` in order in the
    /// simulator, so the first guess is almost always right; a node outside the member list gets
    /// a slot of its own past the members.
    #[inline]
    fn slot(&mut self, node: NodeId) -> usize {
        let guess = (node.0 as usize).wrapping_sub(1);
        if self.members.get(guess) == Some(&node) {
            return guess;
        }
        match self.members.iter().position(|m| *m == node) {
            Some(i) => i,
            None => {
                self.members.push(node);
                self.observed_commit.push(LogIndex(0));
                self.led_in.push(None);
                self.members.len() - 1
            }
        }
    }

    #[inline]
    fn record(
        &mut self,
        checker: &'static str,
        at_us: u64,
        node: Option<NodeId>,
        r: Result<(), String>,
    ) {
        self.checks += 1;
        if let Err(message) = r {
            self.violation(checker, at_us, node, message);
        }
    }

    /// Keeps a violation (the rare path of [`Self::record`], out of line).
    #[cold]
    #[inline(never)]
    fn violation(
        &mut self,
        checker: &'static str,
        at_us: u64,
        node: Option<NodeId>,
        message: String,
    ) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                checker,
                at_us,
                node,
                message,
            });
        }
    }

    /// After node `node` took one step at `now_us`, producing `outputs`.
    pub fn after_step(&mut self, now_us: u64, node: &Node, outputs: &[Output]) {
        let id = node.id();
        let slot = self.slot(id);
        let r = self.terms.observe_term(slot, id, node.term());
        self.record(TERM_MONOTONIC, now_us, Some(id), r);

        for o in outputs {
            if let Output::Persist(Persist::Entries(entries)) = o {
                for e in entries {
                    let r = self.matching.observe_persisted(e.index, e.term, &e.command);
                    self.record(LOG_MATCHING, now_us, Some(id), r);
                }
            }
        }

        let commit = node.commit_index();
        let seen = self.observed_commit[slot];
        if commit > seen {
            let from = seen.0.max(node.log().offset().0) + 1;
            for i in from..=commit.0 {
                if let Some(e) = node.log().entry(LogIndex(i)) {
                    let r = self.committed.observe_commit(e.index, e.term, &e.command);
                    self.record(COMMITTED_NEVER_LOST, now_us, Some(id), r);
                }
            }
            self.observed_commit[slot] = commit;
            let max = self.committed.max();
            if max.0 > MATCH_WINDOW {
                self.matching.prune_below(LogIndex(max.0 - MATCH_WINDOW));
            }
        }

        let leading = node.is_leader().then(|| node.term());
        if let Some(term) = leading {
            let r = self.election.observe_leader(term, id);
            self.record(ELECTION_SAFETY, now_us, Some(id), r);
            if self.led_in[slot] != Some(term) {
                self.led_in[slot] = Some(term);
                let r = self.committed.check_leader(node);
                self.record(COMMITTED_NEVER_LOST, now_us, Some(id), r);
                let r = self.leases.elected(term, id, now_us, &self.members);
                self.record(LEASES_DISJOINT, now_us, Some(id), r);
            }
        }
        if leading.is_some() || self.leases.holds(slot) {
            let lease = node.read_lease_until().map(|t| t.0);
            let r = self.leases.observe(slot, id, leading, lease);
            self.record(LEASES_DISJOINT, now_us, Some(id), r);
        }
    }

    /// A workload copy started on `node`: `r` is the at-most-one-copy verdict the engine
    /// computed from every copy running anywhere at that instant.
    pub fn copy_started(&mut self, now_us: u64, node: NodeId, r: Result<(), String>) {
        self.record(AT_MOST_ONE_COPY, now_us, Some(node), r);
    }

    /// `node` restarted from its durable state: its commit index starts over, and its term may
    /// fall back to the durable one (a term it adopted but had not yet synced was never revealed:
    /// every send waits for the sync, so a forgotten term or vote shows up as two leaders in one
    /// term, which election safety catches).
    pub fn node_restarted(&mut self, node: NodeId) {
        let slot = self.slot(node);
        self.leases.crashed(slot, node);
        self.observed_commit[slot] = LogIndex(0);
        self.led_in[slot] = None;
        if let Some(t) = self.terms.terms.get_mut(slot) {
            *t = None;
        }
    }

    /// The highest index seen committed anywhere so far: the floor of a read issued now.
    pub fn committed_max(&self) -> LogIndex {
        self.committed.max()
    }

    /// `node`, leading, answered a read issued when `floor` was the highest committed index.
    pub fn read_answered(&mut self, now_us: u64, node: &Node, floor: LogIndex) {
        let applied = node.applied_index();
        let r = if applied >= floor {
            Ok(())
        } else {
            Err(format!(
                "{} (leader of term {}) answered a read from its state applied to {}, but {} was \
                 committed before the read was issued: a stale read",
                node.id(),
                node.term().0,
                applied.0,
                floor.0
            ))
        };
        self.record(FRESH_READS, now_us, Some(node.id()), r);
    }

    /// A client received a successful answer for `write`, applied at `revision`.
    pub fn write_acknowledged(&mut self, now_us: u64, revision: LogIndex, write: &Write) {
        self.acked += 1;
        let r = self.committed.check_acked(revision, write);
        self.record(ACKED_WRITES, now_us, None, r);
    }

    /// End of run: every live node's state must be the committed log replayed to its applied
    /// index. One replay serves every node (nodes in order of applied index).
    pub fn at_end(&mut self, now_us: u64, nodes: &[&Node]) {
        let mut order: Vec<&Node> = nodes.to_vec();
        order.sort_by_key(|n| (n.applied_index(), n.id()));
        let mut sm = StateMachine::default();
        let mut replayed = 0u64;
        let mut complete = true;
        for node in order {
            let applied = node.applied_index();
            while complete && replayed < applied.0 {
                match self.committed.get(LogIndex(replayed + 1)) {
                    Some((_, command)) => {
                        sm.apply(LogIndex(replayed + 1), command);
                        replayed += 1;
                    }
                    // An index nobody was seen committing (only possible if every node learned
                    // it from a snapshot): nothing to compare against from here on.
                    None => complete = false,
                }
            }
            if !complete {
                continue;
            }
            let r = if sm == *node.state_machine() {
                Ok(())
            } else {
                Err(format!(
                    "the state applied up to {} differs from the committed log replayed to there",
                    applied.0
                ))
            };
            self.record(STATE_MACHINE_SAFETY, now_us, Some(node.id()), r);
        }
    }

    /// The run was stopped because it stopped making progress (see [`PROGRESS`]).
    pub fn no_progress(&mut self, now_us: u64, why: String) {
        self.record(PROGRESS, now_us, None, Err(why));
    }

    /// The violations found, in order (at most 100).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many individual checks ran.
    pub fn checks_run(&self) -> u64 {
        self.checks
    }

    /// How many acknowledged writes were checked.
    pub fn writes_acknowledged(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::{
        ClientOp, ClientRequest, Config, DurableState, Input, Instant, Key, Message, RequestId,
    };

    fn put(k: &str, v: &str) -> Arc<Command> {
        Arc::new(Command::Write(Write::Put {
            key: Key::user(k),
            value: v.into(),
        }))
    }

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

    /// A real three-node cluster, stepped by a tiny harness, keeps every checker quiet; then a
    /// forged acknowledgement fires.
    #[test]
    fn a_real_cluster_passes_and_a_forged_ack_fires() {
        let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let mut nodes: Vec<Node> = members
            .iter()
            .map(|id| {
                Node::new(
                    Config::new(*id, members.clone(), u64::from(id.0)),
                    DurableState::default(),
                    Instant(0),
                )
                .expect("valid config")
            })
            .collect();
        let mut checkers = SafetyCheckers::new(&members);
        let mut inbox: Vec<(usize, Input)> = Vec::new();
        let mut now = 0u64;
        let mut out = Vec::new();
        let mut written = None;
        let write = Write::Put {
            key: Key::user("a"),
            value: "1".into(),
        };
        for _ in 0..2_000 {
            if inbox.is_empty() {
                now = nodes
                    .iter()
                    .map(|n| n.next_deadline().0)
                    .min()
                    .unwrap_or(now)
                    .max(now);
                for (i, n) in nodes.iter().enumerate() {
                    if n.next_deadline().0 <= now {
                        inbox.push((i, Input::Tick));
                    }
                }
                if written.is_none() {
                    if let Some(l) = nodes.iter().position(|n| n.is_leader()) {
                        inbox.push((
                            l,
                            Input::Client(ClientRequest {
                                id: RequestId(1),
                                op: ClientOp::Write(write.clone()),
                            }),
                        ));
                    }
                }
            }
            let (i, input) = inbox.remove(0);
            out.clear();
            nodes[i].step(Instant(now), input, &mut out);
            checkers.after_step(now, &nodes[i], &out);
            for o in out.drain(..) {
                match o {
                    Output::Send(m) => {
                        let Message { to, .. } = m;
                        inbox.push((to.0 as usize - 1, Input::Message(m)));
                    }
                    Output::Reply(r) => {
                        if let Ok(keel_core::ClientResponse::Written { revision }) = r.result {
                            checkers.write_acknowledged(now, revision, &write);
                            written = Some(revision);
                        }
                    }
                    _ => {}
                }
            }
            now += 100;
            if written.is_some() && inbox.is_empty() {
                break;
            }
        }
        let revision = written.expect("the write was acknowledged");
        let refs: Vec<&Node> = nodes.iter().collect();
        checkers.at_end(now, &refs);
        assert!(
            checkers.violations().is_empty(),
            "{:?}",
            checkers.violations()
        );
        assert!(checkers.checks_run() > 10);

        // A committed log that disagrees with what the nodes applied: state machine safety fires.
        let mut other = SafetyCheckers::new(&members);
        for i in 1..=revision.0 {
            other
                .committed
                .observe_commit(LogIndex(i), Term(1), &put("a", "not what was applied"))
                .expect("fresh");
        }
        other.at_end(now, &refs);
        assert!(
            other
                .violations()
                .iter()
                .any(|v| v.checker == STATE_MACHINE_SAFETY),
            "{:?}",
            other.violations()
        );

        let forged = Write::Put {
            key: Key::user("a"),
            value: "forged".into(),
        };
        checkers.write_acknowledged(now, revision, &forged);
        assert_eq!(checkers.violations().len(), 1);
        assert_eq!(checkers.violations()[0].checker, ACKED_WRITES);

        // Reads: a leader that applied everything committed before the read was issued passes;
        // one answering from a state behind that (a deposed leader unaware of it) fires.
        let leader = nodes.iter().find(|n| n.is_leader()).expect("a leader");
        let applied = leader.applied_index();
        assert_eq!(checkers.committed_max(), applied);
        checkers.read_answered(now, leader, applied);
        assert_eq!(checkers.violations().len(), 1);
        checkers.read_answered(now, leader, LogIndex(applied.0 + 1));
        assert_eq!(checkers.violations().len(), 2);
        assert_eq!(checkers.violations()[1].checker, FRESH_READS);
    }
}
