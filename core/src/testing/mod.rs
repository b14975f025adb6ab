//! Test-only machinery of the core, in one place: the planted bugs the simulator must catch.
//!
//! Owns: the list of planted bugs and the one predicate the protocol code asks
//! ([`Planted::is`]), which is a constant `false` unless the crate is built with the
//! `planted-bugs` feature. Never: a switch a node's configuration file can reach (a bug is set
//! on a running [`crate::Node`] by a test driver), or a way to turn off a safety check.

mod planted;

pub(crate) use planted::Planted;
pub use planted::PlantedBug;
