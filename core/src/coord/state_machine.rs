//! The replicated state machine: what applying a committed entry does, deterministically.
//!
//! Owns: dispatching a committed command to the key-value state or the workload registry.
//! Never: deciding what gets committed, or anything a replica could do differently.

use serde::{Deserialize, Serialize};

use crate::kv::{KvState, WriteOutcome};
use crate::message::Command;
use crate::types::LogIndex;
use crate::workload::{OrchOutcome, Registry};

/// Everything replicated: the partitioned key-value state and the workload registry.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct StateMachine {
    pub kv: KvState,
    pub registry: Registry,
}

impl StateMachine {
    /// Applies the command committed at `index`. `None` for commands that answer nobody (no-ops).
    pub fn apply(&mut self, index: LogIndex, command: &Command) -> Option<WriteOutcome> {
        match command {
            Command::Noop => None,
            // Raft put it in force when it was appended; committing it answers who asked.
            Command::Membership(_) => Some(WriteOutcome::Applied { revision: index }),
            Command::Write(w) => Some(self.kv.apply(index, w)),
            Command::Orch(c) => Some(match self.registry.apply(index, c) {
                OrchOutcome::Applied => WriteOutcome::Applied { revision: index },
                OrchOutcome::Refused(reason) => WriteOutcome::Refused { reason },
            }),
        }
    }
}
