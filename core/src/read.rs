//! Linearizable reads (Raft thesis §6.4), answered by the leader.
//!
//! A read arriving at the leader records the commit index (at least this leader's no-op, so
//! every entry committed by an earlier leader is included). It is answered once the state machine
//! has applied up to that index and the leader knows no newer leader existed when the read
//! arrived, in one of two ways:
//! - **lease** (§6.4.1, `Config::lease_reads`, the default): a majority answered rounds this
//!   leader started less than `election_timeout_min - lease_read_margin` ago, and each of them
//!   refuses votes for `election_timeout_min` after hearing it (check-quorum's stickiness). No
//!   message is sent for the read. This rests on clocks advancing at about the same rate;
//! - **read-index**: otherwise (lease off or lapsed, or voided by a transfer), the read waits for
//!   a majority to acknowledge a heartbeat round started after it arrived. Safety then does not
//!   depend on clocks.

use crate::client::Origin;
use crate::io::{ClientError, ClientResponse, Output};
use crate::kv::Key;
use crate::node::Node;
use crate::trace::{Event, ShedReason};
use crate::types::{Instant, LogIndex};

/// What a linearizable read asks for.
#[derive(Clone, Debug)]
pub(crate) enum Query {
    Key(Key),
    Workload(String),
    Workloads,
    Registry,
}

#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub origin: Origin,
    pub query: Query,
    pub round: u64,
    pub read_index: LogIndex,
    pub deadline: Instant,
}

impl Node {
    pub(crate) fn leader_read(
        &mut self,
        now: Instant,
        origin: Origin,
        query: Query,
        out: &mut Vec<Output>,
    ) {
        #[cfg(feature = "planted-bugs")]
        if self.planted(crate::config::PlantedBug::StaleLeaderServesReads) {
            let response = self.read_now(&query);
            return self.answer(origin, Ok(response), out);
        }
        let max_reads = self.cfg.max_pending_reads;
        let deadline = now + self.cfg.request_timeout;
        let commit = self.commit;
        let lease = self.lease_holds(now);
        let applied = self.applied;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let read_index = commit.max(lead.term_start);
        if lease && read_index <= applied && lead.reads.is_empty() {
            let response = self.read_now(&query);
            return self.answer(origin, Ok(response), out);
        }
        if lead.reads.len() >= max_reads {
            return self.shed(origin, ShedReason::TooManyPendingReads, out);
        }
        // A read is confirmed by a round sent after it arrived: never by one already in flight,
        // whose acknowledgements may predate it. Reads arriving meanwhile share the next round.
        // Under a lease it waits only for the apply, and the current round will do should the
        // lease lapse meanwhile: the lease already proved no newer leader existed.
        let read = PendingRead {
            origin,
            query,
            round: if lease { lead.round } else { lead.round + 1 },
            read_index,
            deadline,
        };
        lead.reads.push_back(read);
        self.sweep_at = self.sweep_at.min(deadline);
        self.serve_reads(now, out);
    }

    /// Answers every read whose round a majority confirmed and whose index is applied, and starts
    /// the next round when reads wait for one and none is in flight.
    ///
    /// Runs after every acknowledgement and commit, and most find no read waiting: that check is
    /// inlined at the call sites, the work is not.
    #[inline]
    pub(crate) fn serve_reads(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.lead.as_ref().is_some_and(|l| !l.reads.is_empty()) {
            self.serve_waiting_reads(now, out);
        }
    }

    fn serve_waiting_reads(&mut self, now: Instant, out: &mut Vec<Output>) {
        let quorum = self.quorum();
        let keep = self.cfg.election_timeout_min;
        let applied = self.applied;
        let lease = self.lease_holds(now);
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        // A round is confirmed when a quorum (this leader included) acknowledged it or a later
        // one.
        let own = lead.round;
        let confirmed = |lead: &crate::replication::Leadership, round: u64| {
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
            let response = self.read_now(&r.query);
            self.answer(r.origin, Ok(response), out);
        }
        if start_round {
            for i in 0..self.peers.len() {
                let peer = self.peers[i];
                self.send_heartbeat(now, peer, out);
            }
            if quorum == 1 {
                self.serve_reads(now, out);
            }
        }
    }

    /// Answers `query` from the applied state.
    fn read_now(&self, query: &Query) -> ClientResponse {
        match query {
            Query::Key(key) => {
                let (value, revision) = match self.sm.kv.get(key) {
                    Some(v) => (Some(v.value.clone()), v.mod_revision),
                    None => (None, LogIndex(0)),
                };
                ClientResponse::Value { value, revision }
            }
            Query::Workload(name) => ClientResponse::Workloads {
                workloads: self.sm.registry.get(name).cloned().into_iter().collect(),
                revision: self.applied,
            },
            Query::Workloads => ClientResponse::Workloads {
                workloads: self.sm.registry.workloads.values().cloned().collect(),
                revision: self.applied,
            },
            Query::Registry => ClientResponse::Registry {
                registry: self.sm.registry.clone(),
                revision: self.applied,
            },
        }
    }

    /// Refuses a request at once for lack of room.
    pub(crate) fn shed(&mut self, origin: Origin, reason: ShedReason, out: &mut Vec<Output>) {
        let id = origin.request_id();
        self.trace(Event::RequestShed { id, reason }, out);
        let retry_after = self.cfg.overload_retry_after;
        self.answer(origin, Err(ClientError::Overloaded { retry_after }), out);
    }
}
