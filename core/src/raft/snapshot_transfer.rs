//! A snapshot's way to a follower, in chunks of at most `RaftConfig::snapshot_chunk_bytes`
//! (the chunked InstallSnapshot of the Raft paper's figure 13), so that a state of any size
//! reaches a new node under any frame limit, and a transfer cut short resumes where it stopped.
//!
//! The leader encodes its newest snapshot's state once, on its first send, and sends one chunk
//! at a time: the follower's answer says how many bytes it holds, and the next chunk starts
//! there. A chunk unanswered for `election_timeout_min` is sent again from the same offset. The
//! follower keeps the bytes of one snapshot of its current leader and term; a chunk that does
//! not continue them is answered with what it holds (a resend after a loss), a first chunk
//! starts over. The last chunk completes the state, which is decoded and installed.
//!
//! Owns: the leader's encoding cache, the chunk a follower is sent next, and the follower's
//! partial snapshot. Never: deciding when a follower needs a snapshot (replication's job), or
//! installing one (`snapshot.rs`).

use std::sync::Arc;

use crate::io::Output;
use crate::message::{MessageBody, SnapshotChunk};
use crate::trace::{Event, Refusal};
use crate::types::{Instant, LogIndex, NodeId, Term};

use super::progress::Mode;
use super::snapshot::{decode_state, encode_state, Snapshot};
use super::{App, Raft, Role};

/// The leader's encoding of its newest snapshot's state.
#[derive(Debug)]
pub(crate) struct Encoded {
    last_index: LogIndex,
    bytes: Arc<Vec<u8>>,
}

/// A snapshot arriving at a follower.
#[derive(Debug)]
pub(crate) struct Incoming {
    leader: NodeId,
    term: Term,
    last_index: LogIndex,
    last_term: Term,
    total: u64,
    bytes: Vec<u8>,
}

impl Incoming {
    fn continues(&self, leader: NodeId, term: Term, c: &SnapshotChunk) -> bool {
        (
            self.leader,
            self.term,
            self.last_index,
            self.last_term,
            self.total,
        ) == (leader, term, c.last_index, c.last_term, c.total)
    }
}

impl Raft {
    /// §7: the follower needs entries the log no longer holds: send the snapshot from its start.
    pub(super) fn send_snapshot(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        self.send_snapshot_from(now, peer, 0, out);
    }

    /// Sends the chunk of the snapshot that starts at `offset` (the whole snapshot anew if the
    /// follower was receiving an older one).
    pub(super) fn send_snapshot_from(
        &mut self,
        now: Instant,
        peer: NodeId,
        offset: u64,
        out: &mut Vec<Output>,
    ) {
        let Some((snap, bytes)) = self.encoded_snapshot(out) else {
            return;
        };
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let round = lead.round;
        let Some(pr) = lead.progress.get_mut(&peer) else {
            return;
        };
        let same =
            matches!(pr.mode, Mode::Snapshot { last_index, .. } if last_index == snap.last_index);
        let total = bytes.len() as u64;
        let offset = if same { offset.min(total) } else { 0 };
        let chunk = self.cfg.snapshot_chunk_bytes.max(1);
        let end = offset.saturating_add(chunk).min(total);
        let data = bytes[offset as usize..end as usize].to_vec();
        pr.mode = Mode::Snapshot {
            last_index: snap.last_index,
            sent_at: now,
            offset,
        };
        pr.inflight.clear();
        let body = MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            last_index: snap.last_index,
            last_term: snap.last_term,
            membership: snap.membership.clone(),
            offset,
            total,
            data,
            round,
        }));
        self.send(peer, body, out);
        if offset == 0 {
            let last_index = snap.last_index;
            self.trace(
                Event::SnapshotSent {
                    to: peer,
                    last_index,
                },
                out,
            );
        }
    }

    /// The newest snapshot and its encoded state (encoded on first use).
    fn encoded_snapshot(&mut self, out: &mut Vec<Output>) -> Option<(Snapshot, Arc<Vec<u8>>)> {
        let Some(snap) = self.snapshot.clone() else {
            debug_assert!(false, "log compacted without a snapshot");
            return None;
        };
        if let Some(e) = self
            .encoded
            .as_ref()
            .filter(|e| e.last_index == snap.last_index)
        {
            return Some((snap, e.bytes.clone()));
        }
        match encode_state(&snap.state) {
            Ok(bytes) => {
                let bytes = Arc::new(bytes);
                self.encoded = Some(Encoded {
                    last_index: snap.last_index,
                    bytes: bytes.clone(),
                });
                Some((snap, bytes))
            }
            Err(e) => {
                let refusal = Refusal::SnapshotEncoding {
                    last_index: snap.last_index,
                    error: e.to_string(),
                };
                self.trace(Event::Refused { refusal }, out);
                None
            }
        }
    }

    /// The follower holds the first `received` bytes of the snapshot sent: the next chunk, if
    /// the answer moved the transfer on (it holds the chunk in flight) or back (it lost what it
    /// held). An answer that holds exactly where the chunk in flight starts is the answer to a
    /// duplicate or to a chunk lost on the way: sending again on it would put a second stream
    /// of chunks in flight for every such answer, so the resend after `election_timeout_min`
    /// alone covers a loss.
    pub(super) fn snapshot_chunk_acked(
        &mut self,
        now: Instant,
        from: NodeId,
        received: u64,
        out: &mut Vec<Output>,
    ) {
        let in_flight = match self.progress_mut(from).map(|pr| pr.mode) {
            Some(Mode::Snapshot { offset, .. }) => offset,
            _ => return,
        };
        if received != in_flight {
            self.send_snapshot_from(now, from, received, out);
        }
    }

    /// Follower side: a chunk from the leader of this term. Answers with what it holds.
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        now: Instant,
        from: NodeId,
        chunk: SnapshotChunk,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from), app, out);
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        let round = chunk.round;
        let received = if chunk.last_index <= self.commit.get() {
            None
        } else {
            match self.take_chunk(from, chunk, out) {
                Ok(snapshot) => {
                    self.install_snapshot(now, snapshot, app, out);
                    None
                }
                Err(held) => Some(held),
            }
        };
        // Everything up to our commit index is durable here and identical on the leader.
        let reply = MessageBody::InstallSnapshotResponse {
            last_index: self.commit.get(),
            received,
            round,
        };
        self.send(from, reply, out);
    }

    /// Adds `chunk` to the snapshot arriving: the whole snapshot once complete, else how many
    /// of its bytes this follower holds.
    fn take_chunk(
        &mut self,
        from: NodeId,
        c: SnapshotChunk,
        out: &mut Vec<Output>,
    ) -> Result<Snapshot, u64> {
        let term = self.term;
        let incoming = self.incoming.take().filter(|i| i.continues(from, term, &c));
        let mut incoming = match incoming {
            Some(i) if i.bytes.len() as u64 == c.offset => i,
            Some(i) => {
                let held = i.bytes.len() as u64;
                self.incoming = Some(i);
                return Err(held);
            }
            None if c.offset == 0 => Incoming {
                leader: from,
                term,
                last_index: c.last_index,
                last_term: c.last_term,
                total: c.total,
                bytes: Vec::new(),
            },
            None => return Err(0),
        };
        incoming.bytes.extend_from_slice(&c.data);
        let held = incoming.bytes.len() as u64;
        if held < incoming.total {
            self.incoming = Some(incoming);
            return Err(held);
        }
        match decode_state(&incoming.bytes) {
            Ok(state) if held == incoming.total => Ok(Snapshot {
                last_index: c.last_index,
                last_term: c.last_term,
                membership: c.membership,
                state: Arc::new(state),
            }),
            result => {
                let error = match result {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("{held} bytes arrived for a snapshot of {}", incoming.total),
                };
                let last_index = c.last_index;
                let refusal = Refusal::SnapshotEncoding { last_index, error };
                self.trace(Event::Refused { refusal }, out);
                Err(0)
            }
        }
    }
}
