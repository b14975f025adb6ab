//! Snapshots (§7): the applied state up to an index, so the log before it can be discarded.
//!
//! Owns: the snapshot format and the encoding its state travels in, when to take one and how
//! far to compact, and installing one from the leader once it arrived whole (the chunked
//! transfer is `snapshot_transfer.rs`). Never: what the state inside means (the application
//! provides and restores it through [`App`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state_machine::StateMachine;
use crate::types::{LogIndex, Term};

use super::membership::Membership;

/// The state machine as of `last_index` (whose entry had `last_term`).
///
/// The state sits behind an `Arc`: taking, persisting and sending a snapshot shares one copy.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The configuration in force at `last_index`.
    pub membership: Membership,
    pub state: Arc<StateMachine>,
}

/// The encoding of a snapshot's state that travels in chunks (postcard, as the node stores it).
pub fn encode_state(state: &StateMachine) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(state)
}

/// The state `bytes` encode.
pub fn decode_state(bytes: &[u8]) -> Result<StateMachine, postcard::Error> {
    postcard::from_bytes(bytes)
}

use crate::io::{Output, Persist};
use crate::testing::PlantedBug;
use crate::trace::Event;
use crate::types::{Instant, NodeId};

use super::progress::Mode;
use super::{App, Raft};

impl Raft {
    /// Takes a snapshot once enough entries were applied since the last one, and compacts the
    /// log, keeping `snapshot_retain_entries` behind it for followers that lag a little.
    pub(super) fn maybe_snapshot(&mut self, app: &impl App, out: &mut Vec<Output>) {
        let last = self.snapshot.as_ref().map_or(LogIndex(0), |s| s.last_index);
        if self.applied.0 - last.0.min(self.applied.0) < self.cfg.snapshot_threshold_entries {
            return;
        }
        let Some(last_term) = self.log.term_at(self.applied) else {
            return;
        };
        let snapshot = Snapshot {
            last_index: self.applied,
            last_term,
            membership: self.log.membership_at(self.applied).clone(),
            state: app.snapshot_state(),
        };
        out.push(Output::Persist(Persist::Snapshot(snapshot.clone())));
        self.snapshot = Some(snapshot);
        self.trace(
            Event::SnapshotTaken {
                last_index: self.applied,
            },
            out,
        );
        let upto = LogIndex(
            self.applied
                .0
                .saturating_sub(self.cfg.snapshot_retain_entries),
        );
        self.log.compact(upto);
    }

    /// Follower side of §7, once every chunk of the snapshot up to `last_index` arrived and
    /// decoded: installs it unless the log already holds that much committed.
    pub(super) fn install_snapshot(
        &mut self,
        now: Instant,
        snapshot: Snapshot,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        let last_index = snapshot.last_index;
        if last_index <= self.commit.get() {
            return;
        }
        if self.log.term_at(last_index) == Some(snapshot.last_term) {
            self.log.compact(last_index);
        } else {
            self.log
                .reset(last_index, snapshot.last_term, snapshot.membership.clone());
        }
        self.sync_membership(now, app, out);
        if !self.planted(PlantedBug::SnapshotInstallDropsEntries) {
            app.restore(&snapshot.state);
        }
        self.commit_to(last_index, out);
        self.applied = last_index;
        out.push(Output::Persist(Persist::Snapshot(snapshot.clone())));
        self.snapshot = Some(snapshot);
        self.trace(Event::SnapshotInstalled { last_index }, out);
        app.snapshot_installed(self.stamp(), last_index, out);
    }

    pub(super) fn handle_snapshot_response(
        &mut self,
        now: Instant,
        from: NodeId,
        (last_index, received): (LogIndex, Option<u64>),
        round: u64,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        self.round_acked(from, round);
        if let Some(received) = received {
            return self.snapshot_chunk_acked(now, from, received, out);
        }
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        if last_index > pr.matched {
            pr.matched = last_index;
            pr.matched_round = pr.matched_round.max(round);
        }
        if let Mode::Snapshot {
            last_index: sent, ..
        } = pr.mode
        {
            if pr.matched >= sent {
                pr.mode = Mode::Replicate;
                pr.inflight.clear();
                pr.next = pr.matched.next();
            }
        }
        self.maybe_commit(now, app, out);
        self.replicate(now, from, out);
        self.serve_reads(now, app, out);
    }
}
