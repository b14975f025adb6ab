//! Snapshots (§7): the applied state up to an index, so the log before it can be discarded.
//!
//! Owns: the snapshot format, when to take one and how far to compact, sending one to a
//! follower the log no longer reaches, and installing one from the leader. Never: what the
//! state inside means (the application provides and restores it through [`App`]).

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

use crate::io::{Output, Persist};
use crate::message::MessageBody;
use crate::testing::PlantedBug;
use crate::trace::Event;
use crate::types::{Instant, NodeId};

use super::progress::Mode;
use super::{App, Raft, Role};

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

    /// §7: the follower needs entries the log no longer holds; send the whole snapshot.
    pub(super) fn send_snapshot(&mut self, now: Instant, peer: NodeId, out: &mut Vec<Output>) {
        let Some(snapshot) = self.snapshot.clone() else {
            debug_assert!(false, "log compacted without a snapshot");
            return;
        };
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let round = lead.round;
        let last_index = snapshot.last_index;
        self.send(peer, MessageBody::InstallSnapshot { snapshot, round }, out);
        self.trace(
            Event::SnapshotSent {
                to: peer,
                last_index,
            },
            out,
        );
        if let Some(pr) = self.progress_mut(peer) {
            pr.mode = Mode::Snapshot {
                last_index,
                sent_at: now,
            };
            pr.inflight.clear();
        }
    }

    /// Follower side of §7.
    pub(super) fn handle_install_snapshot(
        &mut self,
        now: Instant,
        from: NodeId,
        snapshot: Snapshot,
        round: u64,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from), app, out);
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        let last_index = snapshot.last_index;
        if last_index > self.commit.get() {
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
        // Everything up to our commit index is durable here and identical on the leader.
        let reply = MessageBody::InstallSnapshotResponse {
            last_index: self.commit.get(),
            round,
        };
        self.send(from, reply, out);
    }

    pub(super) fn handle_snapshot_response(
        &mut self,
        now: Instant,
        from: NodeId,
        last_index: LogIndex,
        round: u64,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        self.round_acked(from, round);
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
