//! Log replication (§5.3), commitment (§5.4.2) and apply.
//!
//! Owns: the leader's per-follower progress (probe / pipelined replicate / snapshot), heartbeats,
//! the AppendEntries consistency check with fast conflict back-off, the bound on in-flight
//! messages, advancing the commit index by counting only current-term entries, and applying
//! committed entries in order. Never: deciding elections.

use std::collections::VecDeque;

use crate::config::Config;
use crate::io::{ClientError, ClientResponse, Output, Persist};
use crate::kv::WriteOutcome;
use crate::message::{AppendResult, Entry, MessageBody};
use crate::node::{Node, Role};
use crate::read::PendingRead;
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, Term};

/// An AppendEntries a follower holds because it arrived ahead of a gap in its log (see
/// `Config::max_held_appends`).
#[derive(Debug)]
pub(crate) struct HeldAppend {
    /// The leader that sent it, and its term.
    leader: NodeId,
    term: Term,
    prev_log_index: LogIndex,
    prev_log_term: Term,
    entries: Vec<Entry>,
    leader_commit: LogIndex,
    round: u64,
}

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Finding the match point: one message at a time (`sent`: one is outstanding).
    Probe { sent: bool },
    /// Match known: stream entries, at most `max_inflight_messages` unacknowledged.
    Replicate,
    /// A snapshot up to `last_index` was sent at `sent_at`; waiting for its acknowledgement.
    Snapshot {
        last_index: LogIndex,
        sent_at: Instant,
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
    /// `Config::lease_reads`). None before a majority answered.
    pub lease_from: Option<Instant>,
    /// `TimeoutNow` went out in this term: its target's vote requests override the stickiness
    /// that leases rest on, so no lease holds any more.
    pub lease_void: bool,
    pub heartbeat_at: Instant,
    pub quorum_check_at: Instant,
    /// Index of this leader's no-op: reads must wait until it is committed.
    pub term_start: LogIndex,
    pub reads: VecDeque<PendingRead>,
    /// A leadership transfer in progress.
    pub transfer: Option<crate::transfer::Transfer>,
    /// Room for quorum arithmetic in clusters too large for the stack buffer of
    /// [`Leadership::quorum_value`] (more than 8 members).
    scratch: Vec<u64>,
}

impl Leadership {
    pub(crate) fn new(peers: &[NodeId], term_start: LogIndex, now: Instant, cfg: &Config) -> Self {
        let progress = peers
            .iter()
            .map(|&p| {
                let pr = Progress {
                    next: term_start,
                    matched: LogIndex(0),
                    mode: Mode::Probe { sent: false },
                    inflight: VecDeque::new(),
                    active: false,
                    acked_round: 0,
                    acked_at: None,
                    last_sent: Instant::ZERO,
                };
                (p, pr)
            })
            .collect();
        Leadership {
            progress,
            round: 0,
            round_started: VecDeque::from([(0, now)]),
            lease_from: None,
            lease_void: false,
            heartbeat_at: now + cfg.heartbeat_interval,
            quorum_check_at: now + cfg.election_timeout_min,
            term_start,
            reads: VecDeque::new(),
            transfer: None,
            scratch: Vec::new(),
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
        let reached =
            usize::from(own >= x) + self.progress.values().filter(|p| field(p) >= x).count();
        reached >= k
    }

    /// The `k`-th highest (1-based) of every follower's `field` and `own`: the value a quorum of
    /// `k` members (this one included) has reached.
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
        v[0] = own;
        for (len, p) in (1..).zip(self.progress.values()) {
            insert(v, len, field(p));
        }
        v.get(k).copied().unwrap_or_default()
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

    pub(crate) fn next_deadline(&self, check_quorum: bool) -> Instant {
        let transfer = self.transfer.map_or(Instant::NEVER, |t| t.deadline);
        if check_quorum {
            self.heartbeat_at.min(self.quorum_check_at).min(transfer)
        } else {
            self.heartbeat_at.min(transfer)
        }
    }

    /// Followers heard from since the last call; clears the marks.
    pub(crate) fn take_active_count(&mut self) -> usize {
        self.progress
            .values_mut()
            .map(|p| std::mem::take(&mut p.active))
            .filter(|a| *a)
            .count()
    }
}

impl Node {
    pub(crate) fn leader_tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if now >= lead.heartbeat_at {
            lead.heartbeat_at = now + self.cfg.heartbeat_interval;
            lead.start_round(now, self.cfg.election_timeout_min);
            for i in 0..self.peers.len() {
                let peer = self.peers[i];
                self.heartbeat(now, peer, out);
            }
        }
        self.transfer_tick(now, out);
        let quorum_due = self.lead.as_ref().is_some_and(|l| now >= l.quorum_check_at);
        if self.cfg.check_quorum && quorum_due {
            self.check_quorum(now, out);
        }
    }

    /// The periodic message to one follower: re-probe, resend what seems lost, or a heartbeat.
    fn heartbeat(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        let resend_after = self.cfg.heartbeat_interval;
        let snapshot_resend_after = self.cfg.election_timeout_min;
        let Some(pr) = self.progress_mut(peer) else {
            return;
        };
        match pr.mode {
            Mode::Probe { .. } => {
                pr.mode = Mode::Probe { sent: false };
                self.send_append(now, peer, out);
            }
            Mode::Snapshot { sent_at, .. } => {
                if now.saturating_since(sent_at) >= snapshot_resend_after {
                    self.send_snapshot(now, peer, out);
                }
            }
            Mode::Replicate => {
                let lost = pr
                    .inflight
                    .front()
                    .is_some_and(|(_, at)| now.saturating_since(*at) >= resend_after);
                if lost {
                    // The oldest message went unanswered for a whole interval: assume it (and
                    // those behind it) lost and resume from the match point.
                    pr.inflight.clear();
                    pr.next = pr.matched.next();
                    pr.mode = Mode::Probe { sent: false };
                    self.send_append(now, peer, out);
                } else {
                    // A follower sent entries within the last half interval has heard from us
                    // recently enough; the next tick looks again.
                    if now.saturating_since(pr.last_sent) >= resend_after / 2 {
                        self.send_heartbeat(now, peer, out);
                    }
                    self.replicate(now, peer, out);
                }
            }
        }
    }

    /// An empty AppendEntries anchored at the follower's match point: it never fails the
    /// consistency check, carries the commit index and the current read round.
    pub(crate) fn send_heartbeat(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let round = lead.round;
        let Some(pr) = lead.progress.get_mut(&peer) else {
            return;
        };
        pr.last_sent = now;
        let Some(prev_log_term) = self.log.term_at(pr.matched) else {
            return;
        };
        let body = MessageBody::AppendEntries {
            prev_log_index: pr.matched,
            prev_log_term,
            entries: Vec::new(),
            leader_commit: self.commit.min(pr.matched),
            round,
        };
        self.send(peer, body, out);
    }

    pub(crate) fn broadcast_append(&mut self, now: Instant, out: &mut Vec<Output>) {
        for i in 0..self.peers.len() {
            let peer = self.peers[i];
            self.replicate(now, peer, out);
        }
    }

    /// Sends whatever the follower's progress mode allows.
    pub(crate) fn replicate(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        while self.send_append(now, peer, out) {}
    }

    /// Sends one AppendEntries (or a snapshot) if allowed; true if another could follow at once.
    pub(crate) fn send_append(
        &mut self,
        now: Instant,
        peer: NodeId,
        out: &mut Vec<Output>,
    ) -> bool {
        let max_inflight = self.cfg.max_inflight_messages;
        let max_entries = self.cfg.max_entries_per_message;
        let last = self.log.last_index();
        // One look-up of the follower's progress, updated before the message is queued (nothing
        // reads it in between): this runs for every proposal and every acknowledgement.
        let Some(lead) = self.lead.as_mut() else {
            return false;
        };
        let round = lead.round;
        let Some(pr) = lead.progress.get_mut(&peer) else {
            return false;
        };
        match pr.mode {
            Mode::Snapshot { .. } | Mode::Probe { sent: true } => return false,
            Mode::Replicate if pr.inflight.len() >= max_inflight || pr.next > last => return false,
            _ => {}
        }
        let prev = pr.next.prev();
        let Some(prev_log_term) = self.log.term_at(prev) else {
            self.send_snapshot(now, peer, out);
            return false;
        };
        let entries: Vec<Entry> = self.log.slice(pr.next, max_entries).to_vec();
        pr.last_sent = now;
        let more = match (pr.mode, entries.last()) {
            (Mode::Replicate, Some(sent)) => {
                pr.next = sent.index.next();
                pr.inflight.push_back((sent.index, now));
                // Exactly the checks the next call would start with: a caught-up follower (the
                // usual case after a proposal) costs no second call.
                pr.inflight.len() < max_inflight && pr.next <= last
            }
            _ => {
                pr.mode = Mode::Probe { sent: true };
                false
            }
        };
        // Tell the follower about commits only up to what it will hold after this message.
        let leader_commit = self.commit.min(LogIndex(prev.0 + entries.len() as u64));
        let body = MessageBody::AppendEntries {
            prev_log_index: prev,
            prev_log_term,
            entries,
            leader_commit,
            round,
        };
        self.send(peer, body, out);
        more
    }

    /// A follower answered `round`, so it heard this leader no earlier than the round's start;
    /// when that is news, the read lease moves forward.
    pub(crate) fn round_acked(&mut self, from: NodeId, round: u64) {
        let quorum = self.quorum();
        let leases = self.lease_window_us.is_some();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(pr) = lead.progress.get_mut(&from) else {
            return;
        };
        pr.active = true;
        // Most answers echo a round already answered: nothing moves.
        if round < pr.acked_round || round == pr.acked_round && pr.acked_at.is_some() {
            return;
        }
        pr.acked_round = round;
        let started = lead.round_start(round);
        let Some(pr) = lead.progress.get_mut(&from) else {
            return;
        };
        // Rounds start in order, so a later start is a later round.
        if started <= pr.acked_at {
            return;
        }
        let before = pr.acked_at;
        pr.acked_at = started;
        if !leases || lead.lease_void {
            return;
        }
        // A follower that had answered a round later than the lease's start was not one of
        // those holding it back.
        if before.is_some() && before > lead.lease_from {
            return;
        }
        // Shifted by one so that "never answered" (0) sorts below every real start.
        let heard = lead.quorum_value(quorum, u64::MAX, |p| p.acked_at.map_or(0, |t| t.0 + 1));
        lead.lease_from = heard
            .checked_sub(1)
            .map(|start| Instant(start.min(Instant::NEVER.0)));
    }

    /// Whether this leader may answer a read from its own state at `now` (see
    /// `Config::lease_reads`).
    pub(crate) fn lease_holds(&self, now: Instant) -> bool {
        self.read_lease_until().is_some_and(|u| now < u)
    }

    pub(crate) fn progress_mut(&mut self, peer: NodeId) -> Option<&mut Progress> {
        self.lead.as_mut().and_then(|l| l.progress.get_mut(&peer))
    }

    /// Follower side of §5.3.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_append_entries(
        &mut self,
        now: Instant,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        round: u64,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from), out);
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);

        let msg = HeldAppend {
            leader: from,
            term: self.term,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            round,
        };
        let mut round = round;
        let Some(mut result) = self.append_from_leader(now, msg, out) else {
            return;
        };
        // An append may fill the gap in front of held messages: they are appended now, and one
        // answer (the highest match, the latest round) acknowledges them all.
        while let AppendResult::Success { match_index } = result {
            let Some(held) = self.take_held(match_index) else {
                break;
            };
            round = round.max(held.round);
            match self.append_from_leader(now, held, out) {
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
        mut msg: HeldAppend,
        out: &mut Vec<Output>,
    ) -> Option<AppendResult> {
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
                return Some(AppendResult::Success {
                    match_index: end.min(self.log.offset()),
                });
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
                    return None;
                }
                return Some(AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: None,
                    conflict_index: self.log.last_index().next(),
                });
            }
            Some(t) if t != msg.prev_log_term && prev > self.log.offset() => {
                return Some(AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: Some(t),
                    conflict_index: self.log.first_index_of_term(t, prev),
                });
            }
            Some(_) => {}
        }

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
            if from_index <= self.commit {
                // A leader asked us to overwrite a committed entry: impossible unless the protocol
                // is broken (a planted bug breaks it on purpose: the simulator's checkers are to
                // report that). Refuse rather than corrupt the state machine.
                debug_assert!(
                    self.bug_planted(),
                    "leader {leader} conflicts with committed index {from_index}"
                );
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
        }
        let commit_to = leader_commit.min(match_index);
        if commit_to > self.commit {
            self.commit = commit_to;
            self.trace(Event::Committed { index: commit_to }, out);
            self.apply_committed(now, out);
        }
        Some(AppendResult::Success { match_index })
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

    /// Leader side: a follower answered.
    pub(crate) fn handle_append_response(
        &mut self,
        now: Instant,
        from: NodeId,
        result: AppendResult,
        round: u64,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let leader_last_of = |t: Term| self.log.last_index_of_term(t);
        let hint_next = match result {
            AppendResult::Reject {
                conflict_term: Some(t),
                conflict_index,
                ..
            } => leader_last_of(t)
                .map(LogIndex::next)
                .unwrap_or(conflict_index),
            AppendResult::Reject { conflict_index, .. } => conflict_index,
            AppendResult::Success { .. } => LogIndex(0),
        };
        self.round_acked(from, round);
        let commit = self.commit;
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        match result {
            AppendResult::Success { match_index } => {
                let advanced = match_index > pr.matched;
                if advanced {
                    pr.matched = match_index;
                }
                // Every change to a match index or to the log runs `maybe_commit`, so after the
                // last run nothing was left to commit; only this follower moving past the commit
                // index can change that (the usual case of the later acknowledgements of an
                // already committed entry skips the quorum arithmetic).
                let commit_may_move = advanced && pr.matched > commit;
                pr.next = pr.next.max(pr.matched.next());
                while pr.inflight.front().is_some_and(|(i, _)| *i <= pr.matched) {
                    pr.inflight.pop_front();
                }
                match pr.mode {
                    Mode::Probe { .. } => {
                        pr.mode = Mode::Replicate;
                        pr.inflight.clear();
                        pr.next = pr.matched.next();
                    }
                    Mode::Snapshot { last_index, .. } if pr.matched >= last_index => {
                        pr.mode = Mode::Replicate;
                        pr.next = pr.matched.next();
                    }
                    _ => {}
                }
                if commit_may_move {
                    self.maybe_commit(now, out);
                }
                self.maybe_send_timeout_now(out);
            }
            AppendResult::Reject {
                rejected_prev_index,
                ..
            } => {
                let stale = rejected_prev_index < pr.matched
                    || matches!(pr.mode, Mode::Snapshot { .. })
                    || (matches!(pr.mode, Mode::Probe { .. })
                        && rejected_prev_index != pr.next.prev());
                if stale {
                    self.serve_reads(now, out);
                    return;
                }
                // Fast back-off: skip the follower's whole conflicting term at once, but always
                // move strictly below the rejected point and never below the match point.
                pr.next = hint_next.min(rejected_prev_index).max(pr.matched.next());
                pr.inflight.clear();
                pr.mode = Mode::Probe { sent: false };
            }
        }
        self.replicate(now, from, out);
        self.serve_reads(now, out);
    }

    /// §5.3, §5.4.2: the highest index stored on a majority becomes committed, but only if its
    /// entry is of the current term (earlier-term entries commit indirectly).
    pub(crate) fn maybe_commit(&mut self, now: Instant, out: &mut Vec<Output>) {
        let quorum = self.quorum();
        let last = self.log.last_index();
        let commit = self.commit;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        // Nothing to do unless a quorum holds something beyond the commit index (the usual case
        // of an acknowledgement): a count, cheaper than finding the quorum's match index.
        if !lead.quorum_reached(quorum, last.0, commit.0 + 1, |p| p.matched.0) {
            return;
        }
        let candidate = LogIndex(lead.quorum_value(quorum, last.0, |p| p.matched.0));
        let current_term = self.log.term_at(candidate) == Some(self.term);
        #[cfg(feature = "planted-bugs")]
        let current_term =
            current_term || self.planted(crate::config::PlantedBug::CommitEarlierTermByCounting);
        if candidate > self.commit && current_term {
            self.commit = candidate;
            self.trace(Event::Committed { index: candidate }, out);
            self.apply_committed(now, out);
            self.serve_reads(now, out);
        }
    }

    /// Removes the proposal waiting on `index`, if any. Entries apply in index order, so a
    /// follower has none and the leader's oldest is usually the one: a look at the first key
    /// spares the tree search in both cases.
    fn take_proposal(&mut self, index: LogIndex) -> Option<crate::client::Proposal> {
        let first = self.proposals.first_entry()?;
        match first.key().cmp(&index) {
            std::cmp::Ordering::Equal => Some(first.remove()),
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Less => self.proposals.remove(&index),
        }
    }

    /// Applies committed entries in order and answers the writes waiting on them.
    pub(crate) fn apply_committed(&mut self, now: Instant, out: &mut Vec<Output>) {
        while self.applied < self.commit {
            let index = self.applied.next();
            let Some(entry) = self.log.entry(index) else {
                debug_assert!(false, "committed entry {index} missing from the log");
                return;
            };
            // The log and the state machine are separate fields: the entry is applied where it
            // lies, without taking a reference count on its command.
            let term = entry.term;
            let orch = matches!(*entry.command, crate::message::Command::Orch(_));
            let outcome = self.sm.apply(index, &entry.command);
            self.applied = index;
            if orch {
                self.registry_changed();
                if let Some(orch) = self.orch.as_mut() {
                    orch.wake(now);
                }
            }
            if let Some(p) = self.take_proposal(index) {
                let result = match (p.term == term, outcome) {
                    (false, _) => Err(ClientError::NotCommitted),
                    (true, Some(WriteOutcome::Applied { revision })) => {
                        Ok(ClientResponse::Written { revision })
                    }
                    (true, Some(WriteOutcome::CasMismatch { current })) => {
                        Err(ClientError::CasMismatch { current })
                    }
                    (true, Some(WriteOutcome::Refused { reason })) => {
                        Err(ClientError::Refused { reason })
                    }
                    (true, None) => Err(ClientError::NotCommitted),
                };
                self.answer(p.origin, result, out);
            }
        }
        self.applied_advanced();
        self.maybe_snapshot(now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let cfg = Config::new(NodeId(1), members.clone(), 1);
            let mut lead = Leadership::new(&members[1..], LogIndex(1), Instant(0), &cfg);
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
