//! Leadership transfer (Raft thesis §3.10): a leader that is about to leave (graceful shutdown,
//! an operator's request) hands leadership to a caught-up follower, so the cluster does not sit
//! out an election timeout without a leader.
//!
//! The leader stops admitting writes (they are answered `NotLeader` with the target as hint, so
//! clients retry there), keeps replicating until the target's log matches its own, then sends it
//! `TimeoutNow`. The target stands for election at once, skipping pre-vote, and marks its vote
//! requests as a transfer so that voters who heard from the old leader recently still answer.
//! If the target has not taken over within `transfer_timeout`, the leader takes writes again.
//!
//! Owns: choosing the target, `TimeoutNow`, and giving up at the deadline. Never: refusing the
//! writes itself (coordination asks `transferring_to` and refuses them).

use crate::io::Output;
use crate::message::MessageBody;
use crate::trace::Event;
use crate::types::{Instant, NodeId};

use super::{App, Raft, Role};

/// A transfer in progress at the leader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub to: NodeId,
    pub deadline: Instant,
    /// `TimeoutNow` went out.
    pub sent: bool,
}

impl Raft {
    /// Starts handing leadership to `to`, or to the most caught-up follower (ties: lowest id).
    pub(crate) fn transfer_leadership(
        &mut self,
        now: Instant,
        to: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let deadline = now + self.cfg.transfer_timeout;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let target = match to {
            Some(t) if lead.progress.get(&t).is_some_and(|p| p.voter) => t,
            Some(_) => return,
            None => {
                let best = lead
                    .progress
                    .iter()
                    .filter(|(_, p)| p.voter)
                    .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id);
                match best {
                    Some(t) => t,
                    None => return, // a cluster of one: nobody to hand over to
                }
            }
        };
        lead.transfer = Some(Transfer {
            to: target,
            deadline,
            sent: false,
        });
        let term = self.term;
        self.trace(Event::TransferStarted { term, to: target }, out);
        self.send_append(now, target, out);
        self.maybe_send_timeout_now(out);
    }

    /// Sends `TimeoutNow` once the transfer target holds every entry of the leader's log.
    pub(super) fn maybe_send_timeout_now(&mut self, out: &mut Vec<Output>) {
        let last = self.log.last_index();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(t) = lead.transfer.as_mut() else {
            return;
        };
        if t.sent || lead.progress.get(&t.to).is_none_or(|p| p.matched < last) {
            return;
        }
        t.sent = true;
        let to = t.to;
        // The target's transfer vote requests override the stickiness leases rest on.
        lead.lease_void = true;
        self.send(to, MessageBody::TimeoutNow, out);
    }

    /// Gives up a transfer that ran past its deadline.
    pub(super) fn transfer_tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(t) = lead.transfer.filter(|t| now >= t.deadline) else {
            return;
        };
        lead.transfer = None;
        let term = self.term;
        self.trace(Event::TransferAborted { term, to: t.to }, out);
    }

    /// `TimeoutNow` from the leader of our term: stand for election now.
    pub(super) fn handle_timeout_now(
        &mut self,
        now: Instant,
        from: NodeId,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) {
        if self.role == Role::Leader || self.leader != Some(from) || !self.members.voter {
            return;
        }
        self.start_election(now, true, app, out);
    }
}
