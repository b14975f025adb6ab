//! What a leader keeps while it leads: each follower's progress (probe / pipelined replicate /
//! snapshot), the heartbeat rounds and the read lease they carry, pending reads, a transfer in
//! progress, and the quorum arithmetic over them.
//!
//! Owns: the leader-only state, dropped on step-down, and pure computations on it. Never:
//! sending messages or changing the log.

use std::collections::VecDeque;

#[cfg(test)]
use crate::types::NodeId;
use crate::types::{Incarnation, Instant, LogIndex};

use super::members::InForce;
use super::read::PendingRead;

/// What the leader knows about one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Next index to send.
    pub next: LogIndex,
    /// Highest index known to be durably replicated on the follower.
    pub matched: LogIndex,
    pub mode: Mode,
    /// Messages with entries sent and not yet acknowledged: (last index carried, sent at).
    pub inflight: VecDeque<(LogIndex, Instant)>,
    /// Heard from since the last check-quorum round.
    pub active: bool,
    /// Highest heartbeat round the follower answered in this term.
    pub acked_round: u64,
    /// Start of the most recent round the follower answered (while it was recent): it heard
    /// this leader no earlier, so it refuses votes until `election_timeout_min` later.
    pub acked_at: Option<Instant>,
    /// When an AppendEntries last went to this follower, heartbeats included.
    pub last_sent: Instant,
    /// The heartbeat round echoed by the answer that last raised `matched`: a later answer
    /// showing less log than that is news (the follower lost entries), an earlier one is stale.
    pub matched_round: u64,
    /// A voter of the configuration in force (a learner's answers count toward no quorum).
    pub voter: bool,
    /// The incarnation this progress is about: a new incarnation of the same id starts over.
    pub incarnation: Incarnation,
}

impl Progress {
    fn new(next: LogIndex, voter: bool, incarnation: Incarnation) -> Progress {
        Progress {
            next,
            matched: LogIndex(0),
            mode: Mode::Probe { sent: false },
            inflight: VecDeque::new(),
            active: false,
            acked_round: 0,
            acked_at: None,
            last_sent: Instant::ZERO,
            matched_round: 0,
            voter,
            incarnation,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Finding the match point: one message at a time (`sent`: one is outstanding).
    Probe { sent: bool },
    /// Match known: stream entries, at most `max_inflight_messages` unacknowledged.
    Replicate,
    /// Sending the snapshot up to `last_index`: the chunk from byte `offset` went out at
    /// `sent_at`; waiting for its acknowledgement.
    Snapshot {
        last_index: LogIndex,
        sent_at: Instant,
        offset: u64,
    },
}

/// Leader-only state, dropped on step-down.
#[derive(Debug)]
pub(crate) struct Leadership {
    pub progress: crate::peer_map::PeerMap<Progress>,
    /// Heartbeat round: every message to followers carries it and their answers echo it. Bumped
    /// at every heartbeat and to confirm waiting reads.
    pub round: u64,
    /// When each recent round started (rounds older than `election_timeout_min` are dropped):
    /// a follower that answered round `r` heard this leader no earlier than its start.
    pub round_started: VecDeque<(u64, Instant)>,
    /// The start of the latest round a majority answered (this leader included): the read
    /// lease runs `election_timeout_min - lease_read_margin` from there (see
    /// `RaftConfig::lease_reads`). None before a majority answered.
    pub lease_from: Option<Instant>,
    /// `TimeoutNow` went out in this term: its target's vote requests override the stickiness
    /// that leases rest on, so no lease holds any more.
    pub lease_void: bool,
    /// Index of this leader's no-op: reads must wait until it is committed.
    pub term_start: LogIndex,
    pub reads: VecDeque<PendingRead>,
    /// A leadership transfer in progress.
    pub transfer: Option<super::transfer::Transfer>,
    /// Room for quorum arithmetic in clusters too large for the stack buffer of
    /// [`Leadership::quorum_value`] (more than 8 members).
    scratch: Vec<u64>,
    /// This leader is a voter of the configuration in force (a leader whose removal is not yet
    /// committed keeps leading but does not count itself).
    pub self_voter: bool,
}

impl Leadership {
    pub(crate) fn new(members: &InForce, term_start: LogIndex, now: Instant) -> Self {
        let progress = members
            .membership
            .members()
            .iter()
            .filter(|m| members.peers.contains(&m.id))
            .map(|m| (m.id, Progress::new(term_start, m.voter, m.incarnation)))
            .collect();
        Leadership {
            progress,
            round: 0,
            round_started: VecDeque::from([(0, now)]),
            lease_from: None,
            lease_void: false,
            term_start,
            reads: VecDeque::new(),
            transfer: None,
            scratch: Vec::new(),
            self_voter: members.voter,
        }
    }

    /// Follows a new configuration: progress for every member that joined (probing from
    /// `next`) or came back as a new incarnation, none for those that left, and who votes.
    pub(crate) fn sync_members(&mut self, members: &InForce, next: LogIndex) {
        self.progress.retain(|id| members.peers.contains(id));
        for m in members.membership.members() {
            if !members.peers.contains(&m.id) {
                continue;
            }
            match self.progress.get_mut(&m.id) {
                Some(pr) if pr.incarnation == m.incarnation => pr.voter = m.voter,
                _ => self
                    .progress
                    .insert(m.id, Progress::new(next, m.voter, m.incarnation)),
            }
        }
        self.self_voter = members.voter;
        if self
            .transfer
            .is_some_and(|t| !members.voters.contains(&t.to))
        {
            self.transfer = None;
        }
    }

    /// Whether `k` members (this one with `own`, the followers with their `field`) have reached
    /// `x`: the same as `quorum_value(k, own, field) >= x`, without sorting.
    pub(crate) fn quorum_reached(
        &self,
        k: usize,
        own: u64,
        x: u64,
        field: impl Fn(&Progress) -> u64,
    ) -> bool {
        let own = usize::from(self.self_voter && own >= x);
        let reached = own
            + self
                .progress
                .values()
                .filter(|p| p.voter && field(p) >= x)
                .count();
        reached >= k
    }

    /// The `k`-th highest (1-based) of every voting follower's `field` and `own` (if this
    /// leader votes): the value a quorum of `k` voters has reached.
    pub(crate) fn quorum_value(
        &mut self,
        k: usize,
        own: u64,
        field: impl Fn(&Progress) -> u64,
    ) -> u64 {
        // Insertion sort, descending: clusters are a handful of nodes, which fit on the stack.
        fn insert(v: &mut [u64], len: usize, x: u64) {
            let mut i = len;
            while i > 0 && v[i - 1] < x {
                v[i] = v[i - 1];
                i -= 1;
            }
            v[i] = x;
        }
        let k = k.saturating_sub(1);
        let mut small = [0u64; 8];
        let n = self.progress.len() + 1;
        let v: &mut [u64] = if n <= small.len() {
            &mut small[..n]
        } else {
            self.scratch.clear();
            self.scratch.resize(n, 0);
            &mut self.scratch
        };
        let mut len = 0;
        if self.self_voter {
            v[0] = own;
            len = 1;
        }
        for p in self.progress.values().filter(|p| p.voter) {
            insert(v, len, field(p));
            len += 1;
        }
        v[..len].get(k).copied().unwrap_or_default()
    }

    /// Starts the next round at `now`, forgetting rounds older than `keep`.
    pub(crate) fn start_round(&mut self, now: Instant, keep: std::time::Duration) {
        self.round += 1;
        self.round_started.push_back((self.round, now));
        while self
            .round_started
            .front()
            .is_some_and(|(_, t)| now.saturating_since(*t) > keep)
        {
            self.round_started.pop_front();
        }
    }

    /// When round `round` started, if it is recent. Rounds are numbered consecutively and
    /// only the oldest are dropped, so round `r` sits `r - first` places from the front: no
    /// search (this runs for every acknowledgement).
    pub(crate) fn round_start(&self, round: u64) -> Option<Instant> {
        let &(first, _) = self.round_started.front()?;
        let i = usize::try_from(round.checked_sub(first)?).ok()?;
        let &(r, t) = self.round_started.get(i)?;
        debug_assert_eq!(r, round, "rounds are consecutive");
        (r == round).then_some(t)
    }

    /// Voting followers heard from since the last call; clears every mark.
    pub(crate) fn take_active_count(&mut self) -> usize {
        self.progress
            .values_mut()
            .map(|p| std::mem::take(&mut p.active) && p.voter)
            .filter(|a| *a)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member added back as a new incarnation (its disk was lost) starts from nothing: the
    /// leader must not credit it with what the old incarnation held (it would pass the
    /// caught-up check for promotion at once, and count toward quorums with entries it lacks).
    #[test]
    fn a_new_incarnation_of_a_member_starts_with_fresh_progress() {
        use super::super::membership::{MemberChange, Membership};
        use crate::message::{Command, Entry};
        use crate::types::Term;
        let three = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]);
        let mut log =
            super::super::log::RaftLog::restore(LogIndex(0), Term(0), three.clone(), Vec::new());
        let in_force = InForce::of(NodeId(1), Incarnation::ORIGINAL, &log);
        let mut lead = Leadership::new(&in_force, LogIndex(1), Instant(0));
        for p in lead.progress.values_mut() {
            p.matched = LogIndex(40);
        }
        let replaced = three
            .apply(&MemberChange::AddLearner {
                id: NodeId(3),
                incarnation: Incarnation(7),
                address: String::new(),
            })
            .expect("replace n3");
        log.push(Entry {
            term: Term(1),
            index: LogIndex(1),
            command: std::sync::Arc::new(Command::Membership(replaced)),
        });
        let in_force = InForce::of(NodeId(1), Incarnation::ORIGINAL, &log);
        lead.sync_members(&in_force, LogIndex(2));
        let n2 = lead.progress.get(&NodeId(2)).expect("n2 stays");
        assert_eq!(n2.matched, LogIndex(40), "n2 is the same incarnation");
        let n3 = lead.progress.get(&NodeId(3)).expect("n3 is a learner now");
        assert_eq!(n3.matched, LogIndex(0), "the new n3 holds nothing yet");
        assert_eq!(n3.incarnation, Incarnation(7));
        assert!(!n3.voter);
    }

    /// `quorum_value` is the k-th highest of every member's value (sorting them all is the
    /// reference), and `quorum_reached` agrees with it, for clusters of 1 to 11 (past the stack
    /// buffer), any order of values and any k, the leader's own value included, whether or not
    /// it is the highest.
    #[test]
    fn quorum_arithmetic_matches_sorting() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut draw = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % 20
        };
        for n in 1..=11u32 {
            let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
            let membership = super::super::membership::Membership::bootstrap(&members);
            let log = super::super::log::RaftLog::restore(
                LogIndex(0),
                crate::types::Term(0),
                membership,
                Vec::new(),
            );
            let in_force = InForce::of(NodeId(1), crate::types::Incarnation::ORIGINAL, &log);
            let mut lead = Leadership::new(&in_force, LogIndex(1), Instant(0));
            for _ in 0..200 {
                let own = draw();
                for p in lead.progress.values_mut() {
                    p.matched = LogIndex(draw());
                }
                let mut all: Vec<u64> = lead.progress.values().map(|p| p.matched.0).collect();
                all.push(own);
                all.sort_unstable_by(|a, b| b.cmp(a));
                for k in 1..=n as usize {
                    let value = lead.quorum_value(k, own, |p| p.matched.0);
                    assert_eq!(value, all[k - 1], "n {n}, k {k}, values {all:?}");
                    for x in 0..21 {
                        assert_eq!(
                            lead.quorum_reached(k, own, x, |p| p.matched.0),
                            value >= x,
                            "n {n}, k {k}, x {x}, values {all:?}"
                        );
                    }
                }
            }
        }
    }
}
