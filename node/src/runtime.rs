//! The production node's core loop, without the network: a [`keel_core::Node`] whose outputs are
//! executed against [`Storage`] under the driver contract.
//!
//! The contract: outputs run in order, and every `Persist` is durable before any later `Send` or
//! `Reply` leaves. [`Runtime::step`] meets it with group commit: a step's persists (and those of
//! every step handed in together through [`Runtime::step_batch`]) are appended, one `fsync` makes
//! them all durable, and only then are the step's messages and replies released, in order. A crash
//! before the `fsync` loses the persists and everything that would have followed them, which the
//! core tolerates; a crash after it loses nothing acknowledged.
//!
//! It never touches the network or the clock: the caller passes the time in and carries the
//! released sends and replies out.

use keel_core::{ClientReply, Config, ConfigError, Event, Input, Instant, Message, Node, Output};

use crate::storage::{Recovery, Storage, StorageError, StorageOptions};

/// What a step released to the outside world, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    pub sends: Vec<Message>,
    pub replies: Vec<ClientReply>,
    pub events: Vec<Event>,
    /// For the workload supervisor, in order.
    pub workload: Vec<keel_core::WorkloadAction>,
}

/// A step's effects, held back until its persists are durable.
#[must_use = "the effects must be released (after the sync) or the node stopped"]
pub struct Gated {
    effects: Effects,
    /// Sends that may leave before the sync: see [`Gated::take_early`].
    early: Vec<Message>,
    sync: Option<crate::storage::PendingSync>,
}

/// Whether a message may leave before the persists of its step are durable (see
/// [`Gated::take_early`]): a leader's AppendEntries.
fn early_ok(m: &Message) -> bool {
    matches!(m.body, keel_core::MessageBody::AppendEntries { .. })
}

impl Gated {
    /// The leader's AppendEntries of this step, which may be sent *while* the leader's own log
    /// write is being synced (Raft thesis §10.2.1: the leader writes to its disk in parallel
    /// with replicating). Safe because the leader counts itself toward committing an entry
    /// only when it processes a follower's acknowledgement, and the event loop processes no
    /// input until this step's sync is done: by the time any acknowledgement is counted, the
    /// leader's copy is durable. Should it crash first, the entry is uncommitted and nobody was
    /// answered; followers holding it keep or discard it as for any leader crash. Everything
    /// else (votes, acknowledgements, replies) still waits for the sync.
    pub fn take_early(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.early)
    }

    /// Makes the step's persists durable, then releases its effects (with the early sends not
    /// taken, first, in order).
    pub fn wait(mut self) -> Result<Effects, RuntimeError> {
        if let Some(s) = self.sync {
            s.wait()?;
        }
        if !self.early.is_empty() {
            self.early.append(&mut self.effects.sends);
            self.effects.sends = self.early;
        }
        Ok(self.effects)
    }
}

/// Why the runtime could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

/// A node and its storage.
pub struct Runtime {
    node: Node,
    storage: Storage,
    out: Vec<Output>,
}

impl Runtime {
    /// Recovers the durable state from `dir` and starts the node at `now`.
    pub fn open(
        cfg: Config,
        dir: &std::path::Path,
        now: Instant,
    ) -> Result<(Runtime, Recovery), RuntimeError> {
        Runtime::open_with(cfg, dir, StorageOptions::default(), now)
    }

    /// As [`Runtime::open`], with these storage settings.
    pub fn open_with(
        cfg: Config,
        dir: &std::path::Path,
        options: StorageOptions,
        now: Instant,
    ) -> Result<(Runtime, Recovery), RuntimeError> {
        let (storage, durable, recovery) = Storage::open_with(dir, options)?;
        Ok((Runtime::assemble(cfg, storage, durable, now)?, recovery))
    }

    /// The core started at `now` from `durable`, read from the opened `storage`.
    pub fn assemble(
        cfg: Config,
        storage: Storage,
        durable: keel_core::DurableState,
        now: Instant,
    ) -> Result<Runtime, RuntimeError> {
        let node = Node::new(cfg, durable, now)?;
        Ok(Runtime {
            node,
            storage,
            out: Vec::new(),
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// One input; its persists are durable before its effects are returned.
    pub fn step(&mut self, now: Instant, input: Input) -> Result<Effects, RuntimeError> {
        self.step_batch(now, std::iter::once(input))
    }

    /// Several inputs at once (e.g. every message read since the last turn of the loop): one
    /// `fsync` covers the persists of all of them.
    pub fn step_batch(
        &mut self,
        now: Instant,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Result<Effects, RuntimeError> {
        self.step_gated(now, inputs)?.wait()
    }

    /// As [`Runtime::step_batch`], but the fsync is left to the caller, who can send the
    /// early messages first (see [`Gated::take_early`]): the effects come out only through
    /// [`Gated::wait`], so they cannot leave before their persists are durable.
    pub fn step_gated(
        &mut self,
        now: Instant,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Result<Gated, RuntimeError> {
        let mut effects = Effects::default();
        let mut early = Vec::new();
        for input in inputs {
            self.out.clear();
            self.node.step(now, input, &mut self.out);
            for o in self.out.drain(..) {
                match o {
                    Output::Persist(p) => self.storage.append(&p)?,
                    Output::Send(m) if early_ok(&m) => early.push(m),
                    Output::Send(m) => effects.sends.push(m),
                    Output::Reply(r) => effects.replies.push(r),
                    Output::Trace(e) => effects.events.push(e),
                    Output::Workload(a) => effects.workload.push(a),
                }
            }
        }
        // Group commit: one fsync for everything appended above, before anything is released.
        Ok(Gated {
            effects,
            early,
            sync: self.storage.write_pending()?,
        })
    }

    /// When the loop must call [`Runtime::step`] with [`Input::Tick`] next.
    pub fn next_deadline(&self) -> Instant {
        self.node.next_deadline()
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{ClientOp, ClientRequest, ClientResponse, Key, NodeId, RequestId, Write};

    use super::*;

    /// A single-node cluster elects itself, commits a write, and after a restart from disk still
    /// has it; the acknowledgement was only released once the write was durable.
    #[test]
    fn a_single_node_commits_durably_and_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config::new(NodeId(1), vec![NodeId(1)], 7);
        let (mut rt, _) = Runtime::open(cfg.clone(), dir.path(), Instant(0)).expect("open");
        let mut now = Instant(0);
        while !rt.node().is_leader() {
            now = rt.next_deadline().max(now);
            rt.step(now, Input::Tick).expect("tick");
        }
        let put = ClientRequest {
            id: RequestId(1),
            op: ClientOp::Write(Write::Put {
                key: Key::user("a"),
                value: "1".into(),
            }),
        };
        let effects = rt.step(now, Input::Client(put)).expect("put");
        let revision = match effects.replies.as_slice() {
            [ClientReply {
                result: Ok(ClientResponse::Written { revision }),
                ..
            }] => *revision,
            other => panic!("expected the write acknowledged, got {other:?}"),
        };
        // What was acknowledged is on disk: a fresh open after a crash right now (the process
        // gone, its lock on the directory with it) recovers it.
        drop(rt);
        let (storage, durable, _) = Storage::open(dir.path()).expect("reopen");
        assert!(durable.last_index() >= revision);
        let mut rt = Runtime::assemble(cfg, storage, durable, now).expect("restart");
        while !rt.node().is_leader() {
            now = rt.next_deadline().max(now);
            rt.step(now, Input::Tick).expect("tick");
        }
        let get = ClientRequest {
            id: RequestId(2),
            op: ClientOp::Get {
                key: Key::user("a"),
            },
        };
        let effects = rt.step(now, Input::Client(get)).expect("get");
        assert!(
            matches!(
                effects.replies.as_slice(),
                [ClientReply { result: Ok(ClientResponse::Value { value: Some(v), .. }), .. }] if v == "1"
            ),
            "{:?}",
            effects.replies
        );
    }
}
