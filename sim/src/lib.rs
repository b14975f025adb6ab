//! keel-sim: a deterministic discrete-event simulator for keel-core.
//!
//! One master seed drives everything; the same seed and scenario give the same trace, bit for bit.

pub mod history;
pub mod linearizability;
pub mod scenario;
