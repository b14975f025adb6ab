//! keel-core: the sans-IO heart of keel.
//!
//! One [`Node`] is one cluster member. It reacts to one [`Input`] at a time, at a time the driver
//! passes in, by pushing [`Output`]s into a buffer the driver owns; [`Node::next_deadline`] says
//! when the driver must deliver the next [`Input::Tick`]. The core never does I/O, never reads a
//! clock, never spawns, and draws randomness only from per-node seeded ChaCha8 streams, so the
//! same inputs give the same outputs, bit for bit. Two drivers run it: `keel-sim` (a deterministic
//! simulator) and `keel-node` (tokio, TCP, disk).
//!
//! A node is two parts. `raft` is consensus: election (pre-vote, check-quorum), replication,
//! commitment and apply order, snapshots, reads (lease and read-index) and leadership transfer.
//! `coord` is coordination: client requests (forwarding, admission), the replicated state
//! machine ([`kv`] and the workload registry, [`workload`]), the leader's orchestrator and the
//! workload agent. Coordination sees Raft only through a narrow interface; Raft hands it
//! committed entries and leadership changes through one trait. [`config`] holds the settings of
//! both; `testing` holds what only test builds use (planted bugs).

mod coord;
mod raft;
mod testing;

pub mod config;
pub mod duration;
pub mod io;
pub mod message;
pub mod node;
mod peer_map;
mod rng;
pub mod trace;
pub mod types;

pub use coord::{kv, state_machine, workload};
pub use raft::{log, membership, snapshot};

pub use config::{Config, ConfigError, CoordinationConfig, RaftConfig};
pub use io::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResponse, ClientResult, DurableState,
    HardState, Input, MemberOp, Output, Persist, StopReason, WorkloadAction, WorkloadEvent,
    WorkloadEventKind, WorkloadOp,
};
pub use kv::{BatchOp, Key, KvState, Partition, Value, Write, WriteOutcome};
pub use log::RaftLog;
pub use membership::{Member, MemberChange, Membership, MembershipError};
pub use message::{AppendResult, Command, Entry, Message, MessageBody};
pub use node::{Node, Role};
pub use snapshot::Snapshot;
pub use state_machine::StateMachine;
pub use testing::PlantedBug;
pub use trace::{BreakerState, Event, Refusal, ShedReason, StepDownReason, WorkloadDecision};
pub use types::{Incarnation, Instant, LogIndex, NodeId, RequestId, Term};
pub use workload::{
    Desired, ExitOutcome, Health, OrchCommand, PlaceReason, Registry, Status, Workload,
    WorkloadSpec,
};
