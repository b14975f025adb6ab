//! The leader side of log replication (§5.3): heartbeats, per-follower sending under the
//! progress mode and the bound on in-flight messages, loss detection, and acknowledgements with
//! fast conflict back-off; acknowledged heartbeat rounds move the read lease.
//!
//! Owns: what a leader sends to followers and what it makes of their answers. Never: deciding
//! elections, or what an entry means.

use crate::io::Output;
use crate::message::{AppendResult, Entry, MessageBody};
use crate::trace::Event;
use crate::types::{Instant, LogIndex, NodeId, Term};

use super::progress::{Mode, Progress};
use super::{App, Raft, Role};

impl Raft {
    pub(super) fn leader_tick(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if now >= self.timers.heartbeat {
            self.timers.heartbeat = now + self.cfg.heartbeat_interval;
            lead.start_round(now, self.cfg.election_timeout_min);
            for i in 0..self.members.peers.len() {
                let peer = self.members.peers[i];
                self.heartbeat(now, peer, out);
            }
        }
        self.transfer_tick(now, out);
        let quorum_due = self.lead.is_some() && now >= self.timers.quorum_check;
        if self.cfg.check_quorum && quorum_due {
            self.check_quorum(now, app, out);
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
            Mode::Snapshot {
                sent_at, offset, ..
            } => {
                // Unanswered: send the same chunk again (the follower answers with what it
                // holds, so a transfer resumes where it stopped).
                if now.saturating_since(sent_at) >= snapshot_resend_after {
                    self.send_snapshot_from(now, peer, offset, out);
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
    pub(super) fn send_heartbeat(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
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
            leader_commit: self.commit.get().min(pr.matched),
            round,
        };
        self.send(peer, body, out);
    }

    pub(super) fn broadcast_append(&mut self, now: Instant, out: &mut Vec<Output>) {
        for i in 0..self.members.peers.len() {
            let peer = self.members.peers[i];
            self.replicate(now, peer, out);
        }
    }

    /// Sends whatever the follower's progress mode allows.
    pub(super) fn replicate(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        while self.send_append(now, peer, out) {}
    }

    /// Sends one AppendEntries (or a snapshot) if allowed; true if another could follow at once.
    pub(super) fn send_append(
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
        let leader_commit = self
            .commit
            .get()
            .min(LogIndex(prev.0 + entries.len() as u64));
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
    pub(super) fn round_acked(&mut self, from: NodeId, round: u64) {
        let quorum = self.members.quorum;
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
    /// `RaftConfig::lease_reads`).
    pub(super) fn lease_holds(&self, now: Instant) -> bool {
        self.read_lease_until().is_some_and(|u| now < u)
    }

    pub(super) fn progress_mut(&mut self, peer: NodeId) -> Option<&mut Progress> {
        self.lead.as_mut().and_then(|l| l.progress.get_mut(&peer))
    }
    /// Leader side: a follower answered.
    pub(super) fn handle_append_response(
        &mut self,
        now: Instant,
        from: NodeId,
        result: AppendResult,
        round: u64,
        app: &mut impl App,
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
        let commit = self.commit.get();
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        match result {
            AppendResult::Success { match_index } => {
                if acknowledged(pr, match_index, commit, round) {
                    self.maybe_commit(now, app, out);
                }
                self.maybe_send_timeout_now(out);
            }
            AppendResult::Reject {
                rejected_prev_index,
                conflict_index,
                ..
            } if rejected_prev_index <= pr.matched && round > pr.matched_round => {
                // Asked after it acknowledged `matched`, the follower no longer holds it: it lost
                // entries (a truncated or restored disk). Probe back from what it still holds,
                // down to a snapshot if the log no longer reaches.
                let holds = conflict_index.min(rejected_prev_index).prev();
                pr.matched = holds;
                pr.next = hint_next.min(rejected_prev_index).max(holds.next());
                pr.inflight.clear();
                pr.mode = Mode::Probe { sent: false };
                let follower = from;
                self.trace(Event::FollowerLostEntries { follower, holds }, out);
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
                    self.serve_reads(now, app, out);
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
        self.serve_reads(now, app, out);
    }
}

/// A follower acknowledged `match_index`: moves its progress on (a probe turns into streaming,
/// a snapshot sent is done once matched). True if the commit index may move.
fn acknowledged(pr: &mut Progress, match_index: LogIndex, commit: LogIndex, round: u64) -> bool {
    let advanced = match_index > pr.matched;
    if advanced {
        pr.matched = match_index;
        pr.matched_round = pr.matched_round.max(round);
    }
    // Every change to a match index or to the log runs `maybe_commit`, so after the last run
    // nothing was left to commit; only this follower moving past the commit index can change
    // that (the usual case of the later acknowledgements of an already committed entry skips
    // the quorum arithmetic).
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
    commit_may_move
}
