//! keel-core: the sans-IO heart of keel.
//!
//! One [`Node`] is one cluster member. It reacts to one [`Input`] at a time, at a time the driver
//! passes in, by pushing [`Output`]s into a buffer the driver owns; [`Node::next_deadline`] says
//! when the driver must deliver the next [`Input::Tick`]. The core never does I/O, never reads a
//! clock, never spawns, and draws randomness only from a per-node seeded ChaCha8 stream, so the
//! same inputs give the same outputs, bit for bit. Two drivers run it: `keel-sim` (a deterministic
//! simulator) and `keel-node` (tokio, TCP, disk).
//!
//! Modules by concern: [`election`] (timeouts, pre-vote, votes, check-quorum), [`replication`]
//! (AppendEntries, commit, apply), [`snapshot`] (compaction, install), [`read`] (lease and
//! read-index reads), [`client`] (requests, forwarding, admission control), [`log`], [`kv`] and
//! [`state_machine`].

mod agent;
pub mod client;
pub mod config;
pub mod duration;
pub mod election;
pub mod io;
pub mod kv;
pub mod log;
pub mod message;
pub mod node;
mod orchestrator;
mod peer_map;
pub mod read;
pub mod replication;
mod rng;
pub mod snapshot;
pub mod state_machine;
pub mod trace;
mod transfer;
pub mod types;
pub mod workload;

#[cfg(feature = "planted-bugs")]
pub use config::PlantedBug;
pub use config::{Config, ConfigError};
pub use io::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResponse, ClientResult, DurableState,
    HardState, Input, Output, Persist, StopReason, WorkloadAction, WorkloadEvent,
    WorkloadEventKind, WorkloadOp,
};
pub use kv::{BatchOp, Key, KvState, Partition, Value, Write, WriteOutcome};
pub use log::RaftLog;
pub use message::{AppendResult, Command, Entry, Message, MessageBody};
pub use node::{Node, Role};
pub use snapshot::Snapshot;
pub use state_machine::StateMachine;
pub use trace::{BreakerState, Event, ShedReason, StepDownReason, WorkloadDecision};
pub use types::{Instant, LogIndex, NodeId, RequestId, Term};
pub use workload::{
    Desired, ExitOutcome, Health, OrchCommand, PlaceReason, Registry, Status, Workload,
    WorkloadSpec,
};
