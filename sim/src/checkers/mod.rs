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
//! - **One voter at a time** ([`ONE_VOTER_AT_A_TIME`]): every committed configuration differs
//!   from the one before it (in the log of the node that commits it) by at most one voter, so
//!   no two successive configurations have disjoint majorities.
//! - **Only voters vote** ([`ONLY_VOTERS_VOTE`]): a node grants a vote or a pre-vote only while
//!   it is a voter of its own configuration, of its own incarnation: a wiped node (a new
//!   incarnation), a learner or a removed member never does.
//! - **Elected by voters** ([`ELECTED_BY_VOTERS`]): a new leader was granted votes by a
//!   majority of the voters of its configuration (a learner's or a stranger's vote counts for
//!   nothing).
//! - **Committed on a majority of voters** ([`COMMITTED_ON_VOTERS`]): when a leader advances its
//!   commit index, a majority of the voters of its configuration in force (the log's last, as
//!   Raft uses it) hold that entry: in their log or snapshot, on their disk if they are down,
//!   and for a wiped incarnation on the disk it lost. A learner's copy counts for nothing.
//!   (The engine finds the holders: it alone sees every node.)
//!
//! The checkers by concern: `leadership` (election safety, terms, leases), `log` (log
//! matching, the committed log) and `membership` (configurations, votes and quorums across
//! changes); this module composes them into [`SafetyCheckers`], which the
//! engine calls, and checks state machine safety and fresh reads itself. The checkers only
//! observe: they never change a node, the network or the course of a run.

mod leadership;
mod log;
mod membership;
#[cfg(test)]
mod tests;

use keel_core::{
    Command, Incarnation, LogIndex, Message, MessageBody, Node, NodeId, Output, Persist,
    StateMachine, Term, Write,
};

use leadership::{ElectionSafety, LeaderLeases, TermMonotonic};
use log::{CommittedLog, LogMatching};
use membership::Grants;

pub const ELECTION_SAFETY: &str = "ElectionSafety";
pub const TERM_MONOTONIC: &str = "TermMonotonic";
pub const LOG_MATCHING: &str = "LogMatching";
pub const COMMITTED_NEVER_LOST: &str = "CommittedNeverLost";
pub const STATE_MACHINE_SAFETY: &str = "StateMachineSafety";
pub const ACKED_WRITES: &str = "AckedWritesDurable";
pub const AT_MOST_ONE_COPY: &str = "AtMostOneRunningCopy";
pub const FRESH_READS: &str = "ReadsSeeCommitted";
pub const LEASES_DISJOINT: &str = "LeaderLeasesDisjoint";
pub const ONE_VOTER_AT_A_TIME: &str = "OneVoterAtATime";
pub const ONLY_VOTERS_VOTE: &str = "OnlyVotersVote";
pub const ELECTED_BY_VOTERS: &str = "ElectedByVoters";
pub const COMMITTED_ON_VOTERS: &str = "CommittedOnVoterMajority";
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

/// Every checker of a run.
pub struct SafetyCheckers {
    election: ElectionSafety,
    terms: TermMonotonic,
    matching: LogMatching,
    committed: CommittedLog,
    leases: LeaderLeases,
    grants: Grants,
    /// The configuration the cluster was bootstrapped with: the one before the first
    /// configuration entry, for a node whose log starts empty (one that joined).
    bootstrap: keel_core::Membership,
    /// A leader's commit index moved in the step just checked: (index, its term), for the
    /// engine to find who holds it (see [`SafetyCheckers::take_commit_to_check`]).
    commit_to_check: Option<(LogIndex, Term)>,
    /// The members, in the order of the per-node vectors below.
    members: Vec<NodeId>,
    /// Per node slot: the highest commit index already observed (reset on restart).
    observed_commit: Vec<LogIndex>,
    /// Per node slot: the term in which it was last seen leading.
    led_in: Vec<Option<Term>>,
    acked: u64,
    violations: Vec<Violation>,
    checks: u64,
    /// How often each membership checker ran, in the order of [`MEMBERSHIP_CHECKERS`].
    membership_checks: [u64; 4],
}

/// The membership checkers, in the order [`SafetyCheckers::membership_checks`] counts them.
pub const MEMBERSHIP_CHECKERS: [&str; 4] = [
    ONE_VOTER_AT_A_TIME,
    ONLY_VOTERS_VOTE,
    ELECTED_BY_VOTERS,
    COMMITTED_ON_VOTERS,
];

impl SafetyCheckers {
    /// The checkers of a cluster of `members`, every one of them a bootstrap voter.
    pub fn new(members: &[NodeId]) -> SafetyCheckers {
        SafetyCheckers::with_bootstrap(members, members)
    }

    /// The checkers of a cluster of `members` bootstrapped with `voters` (the others are
    /// spare nodes, added later).
    pub fn with_bootstrap(members: &[NodeId], voters: &[NodeId]) -> SafetyCheckers {
        SafetyCheckers {
            bootstrap: keel_core::Membership::bootstrap(voters),
            election: ElectionSafety::default(),
            terms: TermMonotonic::default(),
            matching: LogMatching::default(),
            committed: CommittedLog::default(),
            leases: LeaderLeases::default(),
            grants: Grants::default(),
            commit_to_check: None,
            members: members.to_vec(),
            observed_commit: vec![LogIndex(0); members.len()],
            led_in: vec![None; members.len()],
            acked: 0,
            violations: Vec::new(),
            checks: 0,
            membership_checks: [0; 4],
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

    /// Counts a run of membership checker `k` (see [`MEMBERSHIP_CHECKERS`]) and records its
    /// verdict.
    fn record_membership(
        &mut self,
        k: usize,
        at_us: u64,
        node: Option<NodeId>,
        r: Result<(), String>,
    ) {
        self.membership_checks[k] += 1;
        self.record(MEMBERSHIP_CHECKERS[k], at_us, node, r);
    }

    /// How often each membership checker ran, in the order of [`MEMBERSHIP_CHECKERS`].
    pub fn membership_checks(&self) -> [u64; 4] {
        self.membership_checks
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
            match o {
                Output::Persist(Persist::Entries(entries)) => {
                    for e in entries {
                        let r = self.matching.observe_persisted(e.index, e.term, &e.command);
                        self.record(LOG_MATCHING, now_us, Some(id), r);
                    }
                }
                Output::Send(m) => self.observe_send(now_us, node, m),
                _ => {}
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
                    if let Command::Membership(after) = &*e.command {
                        let mut before = node.log().membership_at(e.index.prev());
                        if before.members().is_empty() {
                            // A node that joined with an empty log: before the log's first
                            // configuration, the bootstrap one is in force.
                            before = &self.bootstrap;
                        }
                        let r = membership::one_voter_at_a_time(e.index, before, after);
                        self.record_membership(0, now_us, Some(id), r);
                    }
                }
            }
            if node.is_leader() {
                let term = node.log().term_at(commit).unwrap_or_default();
                self.commit_to_check = Some((commit, term));
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
                let r = self
                    .grants
                    .elected(term, id, node.membership(), node.is_voter());
                self.record_membership(2, now_us, Some(id), r);
            }
        }
        if leading.is_some() || self.leases.holds(slot) {
            let lease = node.read_lease_until().map(|t| t.0);
            let r = self.leases.observe(slot, id, leading, lease);
            self.record(LEASES_DISJOINT, now_us, Some(id), r);
        }
    }

    /// A message `node` sent: a granted vote or pre-vote is checked (only voters vote) and
    /// recorded (who elected whom).
    #[inline]
    fn observe_send(&mut self, now_us: u64, node: &Node, m: &Message) {
        let pre = match m.body {
            MessageBody::RequestVoteResponse { granted: true } => false,
            MessageBody::PreVoteResponse { granted: true } => true,
            _ => return,
        };
        let r = membership::only_voters_vote(m.from, node.is_voter(), pre);
        self.record_membership(1, now_us, Some(m.from), r);
        if !pre {
            self.grants.granted(m.term, m.to, m.from, m.incarnation);
        }
    }

    /// The commit index a leader moved to in the step just checked, with its term, if it
    /// moved: the engine then finds who holds that entry and calls
    /// [`SafetyCheckers::committed_held_by`].
    pub fn take_commit_to_check(&mut self) -> Option<(LogIndex, Term)> {
        self.commit_to_check.take()
    }

    /// `leader` committed `index` of `term`, held (in its log or snapshot, or on its disk) by
    /// `holders`: each node as the incarnation it is, and a wiped node's earlier incarnation as
    /// what its lost disk held. A majority of the voters of the leader's configuration in force
    /// must be among them.
    pub fn committed_held_by(
        &mut self,
        now_us: u64,
        leader: &Node,
        (index, term): (LogIndex, Term),
        holders: &[(NodeId, Incarnation)],
    ) {
        let config = leader.membership();
        let r = membership::committed_on_a_majority(leader.id(), index, term, config, holders);
        self.record_membership(3, now_us, Some(leader.id()), r);
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
        self.terms.forget(slot);
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
