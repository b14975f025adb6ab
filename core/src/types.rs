//! Small value types shared by every part of the core: node ids, terms, log indexes and virtual time.
//!
//! The core never reads a clock: an [`Instant`] is a plain count of microseconds since an epoch the
//! driver chooses (process start for the production node, zero for the simulator).
//!
//! Owns: those types and their arithmetic. Never: protocol logic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A cluster member. Written `n1`, `n2`, ... everywhere a person reads or types it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected `n` followed by a number, like `n1`")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('n')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .map(NodeId)
            .ok_or_else(|| ParseNodeIdError(s.to_string()))
    }
}

/// One life of a member's data directory: chosen when the directory is created, so a node that
/// lost its disk comes back as a new incarnation of the same id. The members of a cluster
/// bootstrapped together are [`Incarnation::ORIGINAL`]; a node that joins later draws a fresh one.
/// A configuration names each member with its incarnation, and only that incarnation's votes and
/// acknowledgements count: a new incarnation has no memory of the votes its id cast before.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// The incarnation of every member a cluster was bootstrapped with.
    pub const ORIGINAL: Incarnation = Incarnation(0);
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A Raft term (§5.1): a logical clock that only grows.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// A position in the replicated log. Index 0 is the empty prefix; the first entry has index 1.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// A point in the driver's time, in microseconds since the driver's epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Far enough in the future to mean "never" without overflowing additions.
    pub const NEVER: Instant = Instant(u64::MAX / 2);

    pub fn from_micros(us: u64) -> Instant {
        Instant(us)
    }
    pub fn from_millis(ms: u64) -> Instant {
        Instant(ms * 1_000)
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(us).min(Instant::NEVER.0))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}ms", self.0 / 1_000, self.0 % 1_000)
    }
}

/// Identifies one client request at the node that received it; chosen by the driver.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RequestId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_and_reject_garbage() {
        assert_eq!("n7".parse::<NodeId>(), Ok(NodeId(7)));
        assert_eq!(NodeId(12).to_string(), "n12");
        for bad in ["", "n", "7", "x1", "n-1", "n1a", "n99999999999"] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_millis(2), Instant::from_millis(7));
        assert_eq!(t.saturating_since(Instant::from_millis(9)), Duration::ZERO);
        assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
    }
}
