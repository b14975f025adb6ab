//! The raw form of a scenario file: a serde mirror of the model with durations still as text, as
//! `ron` reads it. Only shapes and defaults live here; checking values and turning them into the
//! model is [`super::convert`]'s job. The raw form of a fault is in [`super::fault`].
//! It must never check a value.

use serde::Deserialize;

pub(super) use super::fault::RawFault;

fn default_count() -> usize {
    4
}
fn default_rate() -> f64 {
    100.0
}
fn default_keys() -> usize {
    16
}
fn default_timeout() -> String {
    "1s".to_string()
}
fn default_latency() -> (String, String) {
    ("1ms".to_string(), "5ms".to_string())
}
fn default_one() -> usize {
    1
}
fn default_attempts() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(rename = "Scenario", deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    pub(super) nodes: usize,
    /// Written as a plain number (`members: 3`); absent means every node.
    #[serde(default, deserialize_with = "written")]
    pub(super) members: Option<usize>,
    pub(super) duration: String,
    #[serde(default)]
    pub(super) network: RawNetwork,
    #[serde(default)]
    pub(super) clients: RawClients,
    #[serde(default)]
    pub(super) workloads: Vec<RawWorkload>,
    #[serde(default)]
    pub(super) faults: Vec<RawTimedFault>,
    #[serde(default)]
    pub(super) expect: Vec<RawExpectation>,
    #[serde(default = "yes")]
    pub(super) lease_reads: bool,
}

fn yes() -> bool {
    true
}

/// An optional field written as its plain value.
fn written<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    usize::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default = "default_latency")]
    pub(super) latency: (String, String),
    #[serde(default)]
    pub(super) drop_rate: f64,
    #[serde(default)]
    pub(super) duplicate_rate: f64,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork {
            latency: default_latency(),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClients {
    #[serde(default = "default_count")]
    pub(super) count: usize,
    #[serde(default = "default_rate")]
    pub(super) rate_per_sec: f64,
    #[serde(default = "default_keys")]
    pub(super) keys: usize,
    #[serde(default = "default_timeout")]
    pub(super) timeout: String,
}

impl Default for RawClients {
    fn default() -> Self {
        RawClients {
            count: default_count(),
            rate_per_sec: default_rate(),
            keys: default_keys(),
            timeout: default_timeout(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub(super) name: String,
    #[serde(default = "default_one")]
    pub(super) count: usize,
    #[serde(default = "default_attempts")]
    pub(super) max_attempts: u32,
    #[serde(default = "default_watchdog")]
    pub(super) watchdog: String,
    #[serde(default = "default_backoff")]
    pub(super) backoff: (String, String),
}

fn default_watchdog() -> String {
    "1s".to_string()
}
fn default_backoff() -> (String, String) {
    ("100ms".to_string(), "2s".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimedFault {
    pub(super) at: String,
    pub(super) fault: RawFault,
}

#[derive(Deserialize)]
pub(super) enum RawSelector {
    Node(String),
    Leader,
    Follower,
    LastCrashed,
    Random,
    LastWiped,
}

#[derive(Deserialize)]
pub(super) enum RawExpectation {
    NewLeaderWithin(String),
    WorkloadsRecoveredWithin(String),
    NoLostWrites,
    Linearizable,
    AtMostOneRunningCopy,
    NoFalseReschedules,
    MaxReplacements(u64),
    MaxLeaderChanges(u64),
    MinLeaderChanges(u64),
    MedianWriteLatencyWithin(String),
    MedianReadLatencyWithin(String),
    WorkloadEnds(String, String),
    TransfersReachTarget(String),
    MembershipSettledWithin(String),
}
