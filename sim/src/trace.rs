//! The trace hash: a 64-bit multiply-rotate digest over an explicit encoding of everything a run
//! did (every input each node stepped on, every output it produced, every fault, every client
//! completion), so two runs agree bit for bit exactly when their hashes agree.
//!
//! The encoding is spelled out field by field below rather than derived from `Debug` or serde, so
//! it cannot change with a compiler or library version: the same seed gives the same hash in any
//! process on any machine.
//!
//! The hasher only digests what the engine shows it; it never decides anything. An existing
//! encoding never changes (every recorded trace hash would change with it): a new kind of thing
//! gets a new tag.

use keel_core::{
    AppendResult, ClientError, ClientOp, ClientResponse, ClientResult, Entry, Event, ExitOutcome,
    Input, LogIndex, Message, MessageBody, Output, Persist, WorkloadAction, WorkloadDecision,
    WorkloadEventKind, WorkloadOp, Write,
};
use keel_core::{BatchOp, Key};

/// A multiply-rotate hash over 64-bit words: each word is xored into the rotated state, which is
/// then multiplied by an odd constant (three instructions a word: a run hashes millions of
/// them); [`TraceHasher::finish`] runs the state through SplitMix64's finaliser, so that every bit
/// of every word reaches every bit of the digest.
#[derive(Clone, Debug)]
pub struct TraceHasher(u64);

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHasher {
    pub fn byte(&mut self, b: u8) {
        self.u64(u64::from(b));
    }

    #[inline(always)]
    pub fn u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        // Eight bytes at a time, little-endian; the last word zero-padded (built byte by byte:
        // a short variable-length copy into a buffer costs a `memcpy` call).
        let mut words = s.as_bytes().chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.u64(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.u64(tail_word(rest));
        }
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn key(&mut self, k: &Key) {
        self.str(k.partition.as_str());
        self.str(&k.name);
    }

    pub fn write(&mut self, w: &Write) {
        match w {
            Write::Put { key, value } => {
                self.byte(1);
                self.key(key);
                self.str(value);
            }
            Write::Delete { key } => {
                self.byte(2);
                self.key(key);
            }
            Write::Cas { key, from, to } => {
                self.byte(3);
                self.key(key);
                self.opt_str(from.as_deref());
                self.str(to);
            }
            Write::Batch { ops } => {
                self.byte(4);
                self.u64(ops.len() as u64);
                for op in ops {
                    match op {
                        BatchOp::Put { key, value } => {
                            self.byte(1);
                            self.key(key);
                            self.str(value);
                        }
                        BatchOp::Delete { key } => {
                            self.byte(2);
                            self.key(key);
                        }
                    }
                }
            }
        }
    }

    pub fn client_op(&mut self, op: &ClientOp) {
        match op {
            ClientOp::Get { key } => {
                self.byte(1);
                self.key(key);
            }
            ClientOp::Write(w) => {
                self.byte(2);
                self.write(w);
            }
            ClientOp::Workload(op) => {
                self.byte(3);
                match op {
                    WorkloadOp::Submit(spec) => {
                        self.byte(1);
                        self.str(&spec.name);
                    }
                    WorkloadOp::Stop { name } => {
                        self.byte(2);
                        self.str(name);
                    }
                    WorkloadOp::Get { name } => {
                        self.byte(3);
                        self.str(name);
                    }
                    WorkloadOp::List => self.byte(4),
                    WorkloadOp::Registry => self.byte(5),
                    WorkloadOp::Drain { node, draining } => {
                        self.byte(6);
                        self.u64(u64::from(node.0));
                        self.byte(u8::from(*draining));
                    }
                }
            }
            ClientOp::Members(op) => {
                self.byte(4);
                match op {
                    keel_core::MemberOp::List => self.byte(1),
                    keel_core::MemberOp::Change(change) => self.member_change(change),
                }
            }
        }
    }

    fn member_change(&mut self, change: &keel_core::MemberChange) {
        match *change {
            keel_core::MemberChange::AddLearner {
                id, incarnation, ..
            } => {
                self.tagged(2, u64::from(id.0));
                self.u64(incarnation.0);
            }
            keel_core::MemberChange::Promote { id } => self.tagged(3, u64::from(id.0)),
            keel_core::MemberChange::Remove { id } => self.tagged(4, u64::from(id.0)),
            keel_core::MemberChange::SetAddress { id, ref address } => {
                self.tagged(5, u64::from(id.0));
                self.str(address);
            }
        }
    }

    pub fn exit(&mut self, o: &ExitOutcome) {
        match o {
            ExitOutcome::Succeeded => self.byte(1),
            ExitOutcome::Failed { code } => {
                self.byte(2);
                self.u64(*code as u64);
            }
            ExitOutcome::Hung => self.byte(3),
            ExitOutcome::StartFailed => self.byte(4),
        }
    }

    pub fn client_result(&mut self, r: &ClientResult) {
        match r {
            Ok(ClientResponse::Value { value, revision }) => {
                self.byte(1);
                self.opt_str(value.as_deref());
                self.u64(revision.0);
            }
            Ok(ClientResponse::Written { revision }) => {
                self.byte(2);
                self.u64(revision.0);
            }
            Err(ClientError::NotLeader { leader_hint }) => {
                self.byte(3);
                self.u64(leader_hint.map_or(0, |n| u64::from(n.0)));
            }
            Err(ClientError::Overloaded { retry_after }) => {
                self.byte(4);
                self.u64(retry_after.as_micros() as u64);
            }
            Err(ClientError::CasMismatch { current }) => {
                self.byte(5);
                self.opt_str(current.as_deref());
            }
            Err(ClientError::NotCommitted) => self.byte(6),
            Err(ClientError::Indeterminate) => self.byte(7),
            Ok(ClientResponse::Workloads {
                workloads,
                revision,
            }) => {
                self.byte(8);
                self.u64(revision.0);
                for w in workloads {
                    self.str(&w.spec.name);
                    self.str(w.status.name());
                    self.u64(w.epoch.0);
                }
            }
            Err(ClientError::Refused { reason }) => {
                self.byte(9);
                self.str(reason);
            }
            Ok(ClientResponse::Registry { registry, revision }) => {
                self.byte(10);
                self.u64(revision.0);
                self.u64(registry.workloads.len() as u64);
                self.u64(registry.nodes.len() as u64);
            }
            Ok(ClientResponse::Members {
                membership,
                index,
                committed,
                revision,
                strangers,
            }) => {
                self.byte(11);
                self.u64(revision.0);
                self.u64(index.0);
                self.byte(u8::from(*committed));
                for m in membership.members() {
                    self.u64(u64::from(m.id.0) << 1 | u64::from(m.voter));
                    self.u64(m.incarnation.0);
                }
                for (id, inc) in strangers {
                    self.u64(u64::from(id.0));
                    self.u64(inc.0);
                }
            }
        }
    }

    #[inline]
    pub fn message(&mut self, m: &Message) {
        // Sender and receiver in one word.
        self.u64(u64::from(m.from.0) << 32 | u64::from(m.to.0));
        self.u64(m.term.0);
        // Only a later incarnation is hashed, so runs without one hash as they always did.
        if m.incarnation != keel_core::Incarnation::ORIGINAL {
            self.tagged(0xfe, m.incarnation.0);
        }
        match &m.body {
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                self.tagged(1, last_log_index.0);
                self.u64(last_log_term.0);
            }
            MessageBody::PreVoteResponse { granted } => self.tagged(2, u64::from(*granted)),
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                transfer,
            } => {
                // A transfer vote is its own kind, so that ordinary votes hash as they always did.
                self.tagged(if *transfer { 20 } else { 3 }, last_log_index.0);
                self.u64(last_log_term.0);
            }
            MessageBody::TimeoutNow => self.byte(19),
            MessageBody::RequestVoteResponse { granted } => self.tagged(4, u64::from(*granted)),
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                self.tagged(5, prev_log_index.0);
                self.u64(prev_log_term.0);
                self.u64(leader_commit.0);
                self.u64(*round);
                // Entries are hashed where they are persisted; here their identity suffices.
                self.entry_ids(entries);
            }
            MessageBody::AppendEntriesResponse { result, round } => {
                self.tagged(6, *round);
                self.append_result(result);
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.tagged(7, chunk.last_index.0);
                self.u64(chunk.last_term.0);
                self.u64(chunk.round);
                // A snapshot in one chunk hashes as a whole snapshot always did.
                if chunk.offset != 0 || chunk.data.len() as u64 != chunk.total {
                    self.tagged(0xfd, chunk.offset);
                    self.u64(chunk.total);
                }
            }
            MessageBody::InstallSnapshotResponse {
                last_index,
                received,
                round,
            } => {
                self.tagged(8, last_index.0);
                self.u64(*round);
                if let Some(n) = received {
                    self.tagged(0xfd, *n);
                }
            }
            MessageBody::Forward { id, op } => {
                self.tagged(9, id.0);
                self.client_op(op);
            }
            MessageBody::ForwardReply { id, result } => {
                self.tagged(10, id.0);
                self.client_result(result);
            }
            MessageBody::LeaseRequest {
                sent_at,
                running,
                exits,
            } => {
                self.tagged(11, sent_at.0);
                self.lease_request(running, exits);
            }
            MessageBody::LeaseGrant {
                sent_at,
                commit,
                silence,
            } => {
                self.tagged(12, sent_at.0);
                self.u64(commit.0);
                self.silences(silence);
            }
        }
    }

    /// Entries by identity: their count, then each one's (index, term). Their commands are
    /// hashed elsewhere (see the callers).
    #[inline]
    fn entry_ids(&mut self, entries: &[Entry]) {
        self.u64(entries.len() as u64);
        for e in entries {
            self.u64(e.index.0);
            self.u64(e.term.0);
        }
    }

    #[inline]
    fn append_result(&mut self, result: &AppendResult) {
        match result {
            AppendResult::Success { match_index } => {
                self.byte(1);
                self.u64(match_index.0);
            }
            AppendResult::Reject {
                rejected_prev_index,
                conflict_term,
                conflict_index,
            } => {
                self.byte(2);
                self.u64(rejected_prev_index.0);
                self.u64(conflict_term.map_or(u64::MAX, |t| t.0));
                self.u64(conflict_index.0);
            }
        }
    }

    /// How long a leader had not heard from each member, in microseconds.
    fn silences(&mut self, silence: &[(keel_core::NodeId, std::time::Duration)]) {
        for (node, quiet) in silence {
            self.u64(u64::from(node.0));
            self.u64(quiet.as_micros() as u64);
        }
    }

    /// A lease request's copies: those running, a separator, those that exited.
    fn lease_request(
        &mut self,
        running: &[(String, LogIndex)],
        exits: &[(String, LogIndex, ExitOutcome)],
    ) {
        for (name, epoch) in running {
            self.str(name);
            self.u64(epoch.0);
        }
        self.byte(0);
        for (name, epoch, outcome) in exits {
            self.str(name);
            self.u64(epoch.0);
            self.exit(outcome);
        }
    }

    #[inline]
    pub fn input(&mut self, input: &Input) {
        match input {
            Input::Tick => self.byte(1),
            Input::Message(m) => {
                // Its content was hashed when it was sent; its identity suffices here: the input
                // kind (2), the message kind and the sender in one word, then the term.
                self.u64(2 | u64::from(body_tag(&m.body)) << 8 | u64::from(m.from.0) << 32);
                self.u64(m.term.0);
            }
            Input::Client(req) => {
                self.byte(3);
                self.u64(req.id.0);
                self.client_op(&req.op);
            }
            Input::Workload(ev) => {
                self.byte(4);
                self.str(&ev.name);
                self.u64(ev.epoch.0);
                match &ev.kind {
                    WorkloadEventKind::Progress => self.byte(1),
                    WorkloadEventKind::Exited(o) => {
                        self.byte(2);
                        self.exit(o);
                    }
                }
            }
            Input::TransferLeadership { to } => {
                self.byte(5);
                self.u64(to.map_or(0, |n| u64::from(n.0)));
            }
        }
    }

    #[inline]
    pub fn output(&mut self, output: &Output) {
        match output {
            Output::Persist(Persist::HardState(hs)) => {
                self.byte(1);
                self.u64(hs.term.0);
                self.u64(hs.voted_for.map_or(0, |n| u64::from(n.0)));
            }
            Output::Persist(Persist::Entries(entries)) => {
                // An entry's command was hashed when the client request carrying it arrived;
                // (index, term) identifies it here.
                self.byte(2);
                self.entry_ids(entries);
            }
            Output::Persist(Persist::Snapshot(s)) => {
                self.byte(3);
                self.u64(s.last_index.0);
                self.u64(s.last_term.0);
            }
            Output::Send(m) => {
                self.byte(4);
                self.message(m);
            }
            Output::Reply(r) => {
                self.byte(5);
                self.u64(r.id.0);
                self.client_result(&r.result);
            }
            Output::Trace(e) => {
                self.byte(6);
                self.event(e);
            }
            Output::Workload(a) => {
                self.byte(7);
                match a {
                    WorkloadAction::Start { name, epoch, .. } => {
                        self.byte(1);
                        self.str(name);
                        self.u64(epoch.0);
                    }
                    WorkloadAction::Stop {
                        name,
                        epoch,
                        reason,
                    } => {
                        self.byte(2);
                        self.str(name);
                        self.u64(epoch.0);
                        self.byte(*reason as u8);
                    }
                    WorkloadAction::LeaseUntil { until } => {
                        self.byte(3);
                        self.u64(until.0);
                    }
                }
            }
        }
    }

    pub fn event(&mut self, e: &Event) {
        match e {
            Event::PreVoteStarted { term } => self.tagged(1, term.0),
            Event::PreVoteRejected { term } => self.tagged(2, term.0),
            Event::ElectionStarted { term } => self.tagged(3, term.0),
            Event::BecameLeader { term } => self.tagged(4, term.0),
            Event::BecameFollower { term, leader } => {
                self.tagged(5, term.0);
                self.u64(leader.map_or(0, |n| u64::from(n.0)));
            }
            Event::SteppedDown { term, reason } => {
                self.tagged(6, term.0);
                self.byte(*reason as u8);
            }
            Event::Committed { index } => self.tagged(7, index.0),
            Event::LogTruncated { from } => self.tagged(8, from.0),
            Event::SnapshotTaken { last_index } => self.tagged(9, last_index.0),
            Event::SnapshotSent { to, last_index } => {
                self.tagged(10, u64::from(to.0));
                self.u64(last_index.0);
            }
            Event::SnapshotInstalled { last_index } => self.tagged(11, last_index.0),
            Event::RequestShed { id, reason } => {
                self.tagged(12, id.0);
                self.byte(*reason as u8);
            }
            Event::NodeHealth {
                node,
                health,
                silent_for,
            } => {
                self.tagged(13, u64::from(node.0));
                self.byte(*health as u8);
                self.u64(silent_for.as_micros() as u64);
            }
            Event::Workload { name, decision } => {
                self.byte(14);
                self.str(name);
                self.decision(decision);
            }
            Event::LeaseLost { stopped } => self.tagged(15, *stopped as u64),
            Event::Breaker { node, state } => {
                self.tagged(16, u64::from(node.0));
                self.byte(*state as u8);
            }
            Event::ReplacementFrozen { dead } => {
                self.byte(17);
                for n in dead {
                    self.u64(u64::from(n.0));
                }
            }
            Event::ReplacementResumed => self.byte(18),
            Event::TransferStarted { term, to } => {
                self.tagged(19, term.0);
                self.u64(u64::from(to.0));
            }
            Event::TransferAborted { term, to } => {
                self.tagged(20, term.0);
                self.u64(u64::from(to.0));
            }
            Event::Refused { refusal } => {
                self.byte(21);
                self.refusal(refusal);
            }
            Event::MembershipChanged {
                index,
                voters,
                learners,
            } => {
                self.tagged(22, index.0);
                self.u64(u64::from(*voters) << 32 | u64::from(*learners));
            }
            Event::FollowerLostEntries { follower, holds } => {
                self.tagged(23, u64::from(follower.0));
                self.u64(holds.0);
            }
            Event::DeadVoterRemoved { node, silent_for } => {
                self.tagged(24, u64::from(node.0));
                self.u64(silent_for.as_micros() as u64);
            }
        }
    }

    /// An unsafe change the core refused (never in a correct run).
    #[cold]
    fn refusal(&mut self, r: &keel_core::Refusal) {
        match r {
            keel_core::Refusal::CommitRegression { commit, to } => {
                self.byte(1);
                self.u64(commit.0);
                self.u64(to.0);
            }
            keel_core::Refusal::CommittedOverwrite {
                leader,
                index,
                commit,
            } => {
                self.byte(2);
                self.u64(u64::from(leader.0));
                self.u64(index.0);
                self.u64(commit.0);
            }
            keel_core::Refusal::SnapshotEncoding { last_index, error } => {
                self.byte(3);
                self.u64(last_index.0);
                self.str(error);
            }
        }
    }

    /// A kind byte and the one word that follows it.
    #[inline(always)]
    fn tagged(&mut self, tag: u8, word: u64) {
        self.byte(tag);
        self.u64(word);
    }

    fn decision(&mut self, d: &WorkloadDecision) {
        match d {
            WorkloadDecision::Placed {
                node,
                reason,
                free_capacity,
            } => {
                self.byte(1);
                self.u64(u64::from(node.0));
                self.byte(*reason as u8);
                self.u64(u64::from(*free_capacity));
            }
            WorkloadDecision::ReplacementScheduled { from, epoch, delay } => {
                self.byte(2);
                self.u64(u64::from(from.0));
                self.u64(epoch.0);
                self.u64(delay.as_micros() as u64);
            }
            WorkloadDecision::Orphaned { from, epoch, why } => {
                self.byte(3);
                self.u64(u64::from(from.0));
                self.u64(epoch.0);
                self.str(why);
            }
            WorkloadDecision::BackoffChosen { attempt, delay } => {
                self.byte(4);
                self.u64(u64::from(*attempt));
                self.u64(delay.as_micros() as u64);
            }
            WorkloadDecision::RetryDue => self.byte(5),
            WorkloadDecision::GaveUp { reason } => {
                self.byte(6);
                self.str(reason);
            }
            WorkloadDecision::CopyStarted { epoch } => {
                self.byte(7);
                self.u64(epoch.0);
            }
            WorkloadDecision::CopyStopped { epoch, reason } => {
                self.byte(8);
                self.u64(epoch.0);
                self.byte(*reason as u8);
            }
            WorkloadDecision::CopyExited { epoch, outcome } => {
                self.byte(9);
                self.u64(epoch.0);
                self.exit(outcome);
            }
        }
    }
}

/// The 1 to 7 bytes `rest` as a little-endian word, zero-padded: from two overlapping loads
/// (the bytes they share land on the same bits), not byte by byte.
#[inline]
pub(crate) fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    match rest {
        [a, b, c, d, ..] if n >= 4 => {
            let lo = u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
            let hi = match &rest[n - 4..] {
                [e, f, g, h] => u64::from(u32::from_le_bytes([*e, *f, *g, *h])),
                _ => 0,
            };
            lo | hi << (8 * (n - 4))
        }
        [a, b, ..] => {
            let lo = u64::from(u16::from_le_bytes([*a, *b]));
            let hi = match &rest[n - 2..] {
                [e, f] => u64::from(u16::from_le_bytes([*e, *f])),
                _ => 0,
            };
            lo | hi << (8 * (n - 2))
        }
        [a] => u64::from(*a),
        [] => 0,
    }
}

/// The message kind as one byte (the same numbering as [`TraceHasher::message`]).
fn body_tag(b: &MessageBody) -> u8 {
    match b {
        MessageBody::PreVote { .. } => 1,
        MessageBody::PreVoteResponse { .. } => 2,
        MessageBody::RequestVote {
            transfer: false, ..
        } => 3,
        MessageBody::RequestVote { transfer: true, .. } => 20,
        MessageBody::TimeoutNow => 19,
        MessageBody::RequestVoteResponse { .. } => 4,
        MessageBody::AppendEntries { .. } => 5,
        MessageBody::AppendEntriesResponse { .. } => 6,
        MessageBody::InstallSnapshot { .. } => 7,
        MessageBody::InstallSnapshotResponse { .. } => 8,
        MessageBody::Forward { .. } => 9,
        MessageBody::ForwardReply { .. } => 10,
        MessageBody::LeaseRequest { .. } => 11,
        MessageBody::LeaseGrant { .. } => 12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::{LogIndex, NodeId, Term};

    #[test]
    fn the_encoding_is_pinned() {
        // A fixed input gives a fixed digest: if this changes, every stored trace hash changes.
        let mut h = TraceHasher::default();
        h.output(&Output::Trace(Event::Committed { index: LogIndex(3) }));
        h.message(&Message {
            incarnation: keel_core::Incarnation::ORIGINAL,
            from: NodeId(1),
            to: NodeId(2),
            term: Term(4),
            body: MessageBody::PreVoteResponse { granted: true },
        });
        assert_eq!(h.finish(), {
            let mut g = TraceHasher::default();
            for b in [6u8, 7] {
                g.byte(b);
                if b == 7 {
                    g.u64(3);
                }
            }
            g.u64(1 << 32 | 2);
            g.u64(4);
            g.byte(2);
            g.byte(1);
            g.finish()
        });
        assert_ne!(TraceHasher::default().finish(), h.finish());
    }

    #[test]
    fn strings_hash_as_zero_padded_little_endian_words() {
        let text = "abcdefghijklmnopqrstu\u{e9}";
        for end in 0..=text.len() {
            let Some(s) = text.get(..end) else { continue };
            let mut h = TraceHasher::default();
            h.str(s);
            let mut g = TraceHasher::default();
            g.u64(s.len() as u64);
            for chunk in s.as_bytes().chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                g.u64(u64::from_le_bytes(word));
            }
            assert_eq!(h.finish(), g.finish(), "{s:?}");
        }
    }
}
