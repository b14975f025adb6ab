//! The simulator's model parameters ([`SimConfig`]), the durations the engine uses on every
//! step (in microseconds, converted once per run), and the one place that builds a core node's
//! configuration, planted bug included. It holds no run state and never steps a node.

use std::time::Duration;

use keel_core::{Config, Incarnation};

use super::World;
use crate::rng::{self, tag};
use crate::scenario::Scenario;

/// The simulator's own model parameters (not part of a scenario). Defaults model a LAN cluster of
/// small servers with SSDs.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// CPU time of one step, whatever the input. Default 20 µs.
    pub step_cost: Duration,
    /// Extra CPU time per output of a step. Default 5 µs.
    pub output_cost: Duration,
    /// Range of one fsync's latency. Default 100–500 µs.
    pub fsync_latency: (Duration, Duration),
    /// Most peer messages waiting for a busy or hung node; past it they are dropped. Default
    /// 20,000.
    pub peer_queue_limit: usize,
    /// Most client requests waiting for a busy or hung node (its accept backlog); past it new
    /// requests are refused. Peer messages are always taken first, so client load can delay
    /// but never starve replication. Default 1,024.
    pub client_queue_limit: usize,
    /// Probability that a `Crash` fault strikes in the middle of the node's next step rather than
    /// between two steps. Default 0.5.
    pub mid_step_crash_probability: f64,
    /// How long the operator waits before asking the leader again for a membership change that
    /// was refused for now (a change in progress, a learner not caught up), whose answer was
    /// lost, or when no node leads. Default 100 ms.
    pub member_retry: Duration,
    /// Run every node with this deliberate bug (feature `planted-bugs`). Default none.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<keel_core::PlantedBug>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            step_cost: Duration::from_micros(20),
            output_cost: Duration::from_micros(5),
            fsync_latency: (Duration::from_micros(100), Duration::from_micros(500)),
            peer_queue_limit: 20_000,
            client_queue_limit: 1_024,
            mid_step_crash_probability: 0.5,
            member_retry: Duration::from_millis(100),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

pub(super) fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

/// `x` scaled by a slow node's `factor`: `(x as f64 * factor) as u64`, skipping the float
/// round trip for the usual factor 1 (exact below 2^53, so the result is the same).
#[inline]
pub(super) fn scaled(x: u64, factor: f64) -> u64 {
    if factor == 1.0 && x < (1 << 53) {
        x
    } else {
        scaled_slow(x, factor)
    }
}

/// The float path of [`scaled`], out of line: left inline, the compiler computes it on every
/// call (branch-free) even though a node is almost never slow.
#[cold]
#[inline(never)]
fn scaled_slow(x: u64, factor: f64) -> u64 {
    (x as f64 * factor) as u64
}

/// The durations the engine uses on every step, in microseconds (converted once per run).
pub(super) struct Micros {
    pub(super) step_cost: u64,
    pub(super) output_cost: u64,
    pub(super) fsync_latency: (u64, u64),
    pub(super) latency: (u64, u64),
    pub(super) client_timeout: u64,
    pub(super) member_retry: u64,
}

impl Micros {
    pub(super) fn new(cfg: &SimConfig, scenario: &Scenario) -> Micros {
        Micros {
            step_cost: us(cfg.step_cost),
            output_cost: us(cfg.output_cost),
            fsync_latency: (us(cfg.fsync_latency.0), us(cfg.fsync_latency.1)),
            latency: (
                us(scenario.network.latency.0),
                us(scenario.network.latency.1),
            ),
            client_timeout: us(scenario.clients.timeout),
            member_retry: us(cfg.member_retry),
        }
    }
}

impl World<'_> {
    /// The configuration node `i` starts with in its current life: its own seed, the
    /// scenario's read mode, and its identity: a node the cluster was bootstrapped with, on the
    /// disk it started with, names the bootstrap voters (`n1`..`nM`) and is of the original
    /// incarnation; a spare node or a wiped one names none and is of its disk's incarnation (a
    /// planted bug is set on the node itself, see `start_node`).
    pub(super) fn node_config(&self, i: usize) -> Config {
        let inc = self.nodes[i].incarnation;
        let seed = rng::derive(self.seed, tag::NODE_CORE + i as u64).wrapping_add(inc);
        let disk = self.nodes[i].disk_life;
        let bootstrap = if disk == 0 {
            self.members[..self.scenario.members].to_vec()
        } else {
            Vec::new()
        };
        let mut cfg = Config::new(self.members[i], bootstrap, seed);
        cfg.incarnation = Incarnation(disk);
        cfg.raft.lease_reads = self.scenario.lease_reads;
        cfg
    }

    /// How long node `i` waits before it declares a silent node dead.
    pub(super) fn dead_after(&self, i: usize) -> Duration {
        self.node_config(i).coordination.dead_after
    }
}
