//! Raft's message intake: which messages a node accepts, the term rules every message passes
//! (§5.1, with pre-vote's prospective terms and leader stickiness), and the dispatch of each
//! Raft message to the concern that handles it.
//!
//! Owns: the order in which a message's term is looked at and its handler runs. Never: what a
//! coordination message means (those that pass the term rules go back to the application).

use crate::io::Output;
use crate::message::{AppendResult, Message, MessageBody};
use crate::types::Instant;
use crate::types::LogIndex;

use super::follower::HeldAppend;
use super::{App, Raft};

impl Raft {
    /// True for a message addressed to this node by another node. A node that is not (yet) in
    /// this node's configuration may still be the leader (this node may be a learner catching
    /// up from an empty log); whose answers and votes count is checked where they are counted.
    pub(crate) fn accepts(&self, m: &Message) -> bool {
        m.to == self.id && m.from != self.id
    }

    /// Handles a message this node accepts (see [`Raft::accepts`]). A coordination message
    /// that passed the term rules is handed back, for the application.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        m: Message,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) -> Option<Message> {
        match m.body {
            // Pre-votes carry a prospective term and change nobody's term.
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                let from = m.from;
                self.handle_pre_vote(now, from, m.term, last_log_index, last_log_term, out);
                return None;
            }
            MessageBody::PreVoteResponse { granted } => {
                let (from, inc) = (m.from, m.incarnation);
                self.handle_pre_vote_response(now, from, inc, m.term, granted, app, out);
                return None;
            }
            _ => {}
        }
        if !self.term_rules(now, &m, app, out) {
            return None;
        }
        self.note_incarnation(m.from, m.incarnation);
        let answer = matches!(
            m.body,
            MessageBody::AppendEntriesResponse { .. } | MessageBody::InstallSnapshotResponse { .. }
        );
        if answer && !self.members.membership.knows(m.from, m.incarnation) {
            // Only a member of the named incarnation's answers move its progress.
            return None;
        }
        self.dispatch(now, m, app, out)
    }

    /// §5.1: a newer term makes this node a follower of it (unless leader stickiness ignores a
    /// vote request); an older one is answered so its sender learns the newer term. False if
    /// the message goes no further.
    fn term_rules(
        &mut self,
        now: Instant,
        m: &Message,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) -> bool {
        if m.term > self.term {
            // Leader stickiness: while a leader is known to be alive, a vote request from a node
            // that merely timed out is ignored, so it cannot depose a healthy leader.
            // A transfer vote was asked for by that leader itself.
            if matches!(
                m.body,
                MessageBody::RequestVote {
                    transfer: false,
                    ..
                }
            ) && self.leader_is_recent(now)
            {
                return false;
            }
            let leader = match m.body {
                MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
                    Some(m.from)
                }
                _ => None,
            };
            self.become_follower(now, m.term, leader, app, out);
        } else if m.term < self.term {
            self.reject_stale(m, out);
            return false;
        }
        true
    }

    /// Runs the handler of a message of this node's term.
    fn dispatch(
        &mut self,
        now: Instant,
        m: Message,
        app: &mut impl App,
        out: &mut Vec<Output>,
    ) -> Option<Message> {
        let from = m.from;
        match m.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(now, from, last_log_index, last_log_term, out),
            MessageBody::TimeoutNow => self.handle_timeout_now(now, from, app, out),
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(now, from, m.incarnation, granted, app, out)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                let msg = HeldAppend {
                    leader: from,
                    term: self.term,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                    round,
                };
                self.handle_append_entries(now, msg, app, out)
            }
            MessageBody::AppendEntriesResponse { result, round } => {
                self.handle_append_response(now, from, result, round, app, out)
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.handle_snapshot_chunk(now, from, *chunk, app, out)
            }
            MessageBody::InstallSnapshotResponse {
                last_index,
                received,
                round,
            } => {
                let answer = (last_index, received);
                self.handle_snapshot_response(now, from, answer, round, app, out)
            }
            MessageBody::LeaseRequest { .. } | MessageBody::LeaseGrant { .. } => return Some(m),
            MessageBody::Forward { .. }
            | MessageBody::ForwardReply { .. }
            | MessageBody::PreVote { .. }
            | MessageBody::PreVoteResponse { .. } => {}
        }
        None
    }

    /// A message from an older term: tell a stale leader or candidate about the newer term so it
    /// steps down; drop stale responses.
    fn reject_stale(&mut self, m: &Message, out: &mut Vec<Output>) {
        let body = match m.body {
            MessageBody::AppendEntries {
                prev_log_index,
                round,
                ..
            } => MessageBody::AppendEntriesResponse {
                result: AppendResult::Reject {
                    rejected_prev_index: prev_log_index,
                    conflict_term: None,
                    conflict_index: self.log.last_index().next(),
                },
                round,
            },
            MessageBody::InstallSnapshot(ref chunk) => MessageBody::InstallSnapshotResponse {
                last_index: LogIndex(0),
                received: None,
                round: chunk.round,
            },
            MessageBody::RequestVote { .. } => MessageBody::RequestVoteResponse { granted: false },
            _ => return,
        };
        self.send(m.from, body, out);
    }
}
