//! Linearizable reads (Raft thesis §6.4): the leader's read-index queue and read lease.
//!
//! A read arriving at the leader records the commit index (at least this leader's no-op, so
//! every entry committed by an earlier leader is included). It is answered once the state machine
//! has applied up to that index and the leader knows no newer leader existed when the read
//! arrived, in one of two ways:
//! - **lease** (§6.4.1, `RaftConfig::lease_reads`, the default): a majority answered rounds this
//!   leader started less than `election_timeout_min - lease_read_margin` ago, and each of them
//!   refuses votes for `election_timeout_min` after hearing it (check-quorum's stickiness). No
//!   message is sent for the read. This rests on clocks advancing at about the same rate;
//! - **read-index**: otherwise (lease off or lapsed, or voided by a transfer), the read waits for
//!   a majority to acknowledge a heartbeat round started after it arrived. Safety then does not
//!   depend on clocks.
//!
//! Owns: when a read may be answered. Never: what it reads (the application answers it from
//! its applied state, through [`App::read_ready`]).

use crate::coord::ReadCtx;
use crate::io::Output;
use crate::types::{Instant, LogIndex};

use super::{App, Raft};

/// A read waiting at the leader for its index to apply and its round to be confirmed.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    /// The application's record of the read (Raft never looks inside).
    pub ctx: ReadCtx,
    pub round: u64,
    pub read_index: LogIndex,
    pub deadline: Instant,
}

/// What became of a read handed to [`Raft::read`].
#[derive(Debug)]
pub(crate) enum ReadAdmission {
    /// The lease holds and the state is applied far enough: answer it now.
    ServeNow(ReadCtx),
    /// Too many reads wait already: refuse it.
    Full(ReadCtx),
    /// Queued; the caller notes its deadline, then calls [`Raft::serve_reads`].
    Queued,
    /// This node does not lead: the read is dropped.
    NotLeading,
}

impl Raft {
    /// Admits a linearizable read at the leader, to be answered by `deadline` at the latest.
    pub(crate) fn read(&mut self, now: Instant, ctx: ReadCtx, deadline: Instant) -> ReadAdmission {
        let max_reads = self.cfg.max_pending_reads;
        let commit = self.commit.get();
        let lease = self.lease_holds(now);
        let applied = self.applied;
        let Some(lead) = self.lead.as_mut() else {
            return ReadAdmission::NotLeading;
        };
        let read_index = commit.max(lead.term_start);
        if lease && read_index <= applied && lead.reads.is_empty() {
            return ReadAdmission::ServeNow(ctx);
        }
        if lead.reads.len() >= max_reads {
            return ReadAdmission::Full(ctx);
        }
        // A read is confirmed by a round sent after it arrived: never by one already in flight,
        // whose acknowledgements may predate it. Reads arriving meanwhile share the next round.
        // Under a lease it waits only for the apply, and the current round will do should the
        // lease lapse meanwhile: the lease already proved no newer leader existed.
        let read = PendingRead {
            ctx,
            round: if lease { lead.round } else { lead.round + 1 },
            read_index,
            deadline,
        };
        lead.reads.push_back(read);
        ReadAdmission::Queued
    }

    /// Answers every read whose round a majority confirmed and whose index is applied, and starts
    /// the next round when reads wait for one and none is in flight.
    ///
    /// Runs after every acknowledgement and commit, and most find no read waiting: that check is
    /// inlined at the call sites, the work is not.
    #[inline]
    pub(crate) fn serve_reads(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        if self.lead.as_ref().is_some_and(|l| !l.reads.is_empty()) {
            self.serve_waiting_reads(now, app, out);
        }
    }

    fn serve_waiting_reads(&mut self, now: Instant, app: &mut impl App, out: &mut Vec<Output>) {
        let quorum = self.members.quorum;
        let keep = self.cfg.election_timeout_min;
        let applied = self.applied;
        let lease = self.lease_holds(now);
        let stamp = self.stamp();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        // A round is confirmed when a quorum (this leader included) acknowledged it or a later
        // one.
        let own = lead.round;
        let confirmed = |lead: &super::Leadership, round: u64| {
            lead.quorum_reached(quorum, own, round, |p| p.acked_round)
        };
        let mut ready = Vec::new();
        while lead
            .reads
            .front()
            .is_some_and(|r| r.read_index <= applied && (lease || confirmed(lead, r.round)))
        {
            if let Some(r) = lead.reads.pop_front() {
                ready.push(r);
            }
        }
        let start_round =
            lead.reads.back().is_some_and(|r| r.round > lead.round) && confirmed(lead, lead.round);
        if start_round {
            lead.start_round(now, keep);
        }
        for r in ready {
            app.read_ready(stamp, r.ctx, applied, out);
        }
        if start_round {
            for i in 0..self.members.peers.len() {
                let peer = self.members.peers[i];
                self.send_heartbeat(now, peer, out);
            }
            if quorum == 1 && self.members.voter {
                self.serve_reads(now, app, out);
            }
        }
    }

    /// Takes every waiting read whose deadline passed, in queue order.
    pub(crate) fn take_expired_reads(&mut self, now: Instant) -> Vec<ReadCtx> {
        let Some(lead) = self.lead.as_mut() else {
            return Vec::new();
        };
        let (late, kept): (Vec<_>, Vec<_>) = lead.reads.drain(..).partition(|r| r.deadline <= now);
        lead.reads = kept.into();
        late.into_iter().map(|r| r.ctx).collect()
    }

    /// The deadlines of the reads waiting at this leader.
    pub(crate) fn read_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.lead
            .iter()
            .flat_map(|l| l.reads.iter().map(|r| r.deadline))
    }
}
