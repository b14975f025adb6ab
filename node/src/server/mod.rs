//! A running node, assembled: [`run`] opens the durable log under the core, binds the peer
//! and HTTP listeners, starts the peer transport, the HTTP server, the workload supervisor and
//! the watchdog, and hands them all to the [`event_loop`], the one task that owns the core.
//!
//! This module only builds and wires; what happens at each turn lives in [`event_loop`], the
//! HTTP routes in [`crate::http`], the in-process API in [`handle`]. It never steps the core.

mod event_loop;
mod handle;
mod peers;
mod start;

pub use start::fresh_incarnation;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use keel_core::{Config, Message, NodeId};
use tokio::sync::mpsc;

use self::event_loop::{EventLoop, Sources};
pub(crate) use self::handle::ApiRequest;
pub use self::handle::{api_channel, ApiHandle, ApiInbox};
pub use crate::api::ClusterInfo;
use crate::config::ShutdownConfig;
use crate::metrics::Metrics;
use crate::net::{Net, TokioNet};
use crate::runtime::{Runtime, RuntimeError};
use crate::storage::identity::{Identity, Origin};
use crate::storage::{Storage, StorageOptions};
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::transport::{self, Outbound, TransportConfig};
use crate::watchdog::{self, WatchdogConfig};

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Where peers connect.
    pub listen: SocketAddr,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Every other member and its peer address.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub data_dir: PathBuf,
    pub transport: TransportConfig,
    /// Overrides of the core's defaults (the `[core]` table of `--config`).
    pub core: BTreeMap<String, toml::Value>,
    pub supervisor: SupervisorConfig,
    /// The apoptosis watchdog; `None` runs without one (nodes inside a test process, where
    /// ending the process would end every test).
    pub watchdog: Option<WatchdogConfig>,
    pub shutdown: ShutdownConfig,
    pub storage: StorageOptions,
    /// The seed of the node's random choices (election and reconnect jitter); `None` takes one
    /// from the wall clock. A simulation fixes it so that a run repeats.
    pub seed: Option<u64>,
}

impl NodeSpec {
    /// A node with every setting at its default.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        http: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        data_dir: PathBuf,
    ) -> NodeSpec {
        NodeSpec {
            id,
            listen,
            http,
            peers,
            data_dir,
            transport: TransportConfig::default(),
            core: BTreeMap::new(),
            supervisor: SupervisorConfig::default(),
            watchdog: Some(WatchdogConfig::default()),
            shutdown: ShutdownConfig::default(),
            storage: StorageOptions::default(),
            seed: None,
        }
    }
}

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigFileError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] crate::storage::identity::IdentityError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot bootstrap: {0}")]
    Bootstrap(#[from] crate::bootstrap::Mismatch),
    #[error("cannot prepare the workload directory under {dir}: {source}")]
    Workloads {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the node until `shutdown` resolves; then, if it leads, it hands leadership to a
/// caught-up follower (waiting at most `shutdown.transfer_wait`), stops its workloads and
/// returns. Every step's log writes were synced before its effects left, so there is nothing
/// left to flush.
pub async fn run(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    run_on::<TokioNet>(spec, shutdown).await
}

/// [`run`] on the network `N`: the same loop, transport and HTTP API over any [`Net`] (a
/// simulated one in tests). All of the loop's time comes from tokio's clock, so a runtime with
/// a paused or simulated clock drives it.
pub async fn run_on<N: Net>(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_api::<N>(spec, shutdown, api_channel().1).await
}

/// [`run_on`], also taking requests from the [`ApiHandle`] of `api`. Under `--cfg madsim` this
/// is the node's only API: axum's server spawns its connections onto the real tokio runtime,
/// which a madsim simulation does not have, so there the node serves no HTTP.
pub async fn run_with_api<N: Net>(
    spec: NodeSpec,
    shutdown: impl std::future::Future<Output = ()>,
    api: ApiInbox,
) -> Result<(), ServerError> {
    let seed = node_seed(spec.seed.unwrap_or_else(clock_seed), spec.id);
    let peer_listener = N::bind(spec.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: spec.listen,
            source,
        })?;
    let (storage, durable, recovery) = Storage::open_with(&spec.data_dir, spec.storage)?;
    let identity = start::identity::<N>(&spec, &durable, &peer_listener).await?;
    let cfg = core_config(&spec, &identity, seed)?;
    let clock = tokio::time::Instant::now();
    let rt = Runtime::assemble(cfg, storage, durable, since(clock))?;
    if let Some((at, len)) = recovery.truncated_tail {
        tracing::warn!(offset = at, bytes = len, "cut a torn tail off the log");
    }
    tracing::info!(node = %spec.id, incarnation = %identity.incarnation, records = recovery.records, "recovered");
    let (supervisor, workload_events) = Supervisor::new(spec.supervisor.clone(), &spec.data_dir)
        .map_err(|source| ServerError::Workloads {
            dir: spec.data_dir.clone(),
            source,
        })?;
    let http_listener = crate::http::bind::<N>(spec.http).await?;
    let (inbound_tx, inbound) = mpsc::channel::<Message>(4096);
    let (learned_tx, learned) = mpsc::unbounded_channel();
    let incarnation = rt.node().incarnation();
    let book = peers::AddressBook::new(spec.id, spec.listen, spec.peers.clone());
    let peers = book.peers(rt.node().membership());
    let me = (spec.id, spec.listen);
    let outbound = Outbound::start::<N>(me, incarnation, &peers, &spec.transport, seed);
    let _listener = AbortOnDrop(tokio::spawn(transport::listen::<N>(
        peer_listener,
        spec.id,
        incarnation,
        spec.transport.clone(),
        (inbound_tx, learned_tx),
        outbound.handshakes(),
    )));
    let ApiInbox {
        tx: api_tx,
        rx: api,
    } = api;
    let http = http_listener.map(|l| AbortOnDrop(tokio::spawn(crate::http::serve::<N>(l, api_tx))));
    let pulse = start_watchdog(&spec);
    let node = EventLoop {
        id: spec.id,
        book,
        new_incarnation: identity.origin == Origin::Replacement,
        clock,
        rt,
        supervisor,
        outbound,
        http,
        pulse,
        shutdown: spec.shutdown.clone(),
        metrics: Metrics::default(),
        waiting: BTreeMap::new(),
        arrived: BTreeMap::new(),
        next_id: 1,
        leaving: None,
        fill_after: tokio::time::Instant::now(),
    };
    let sources = Sources {
        shutdown,
        workload_events,
        inbound,
        learned,
        api,
    };
    node.run(sources).await
}

/// The core's configuration: its defaults, with the `[core]` overrides of the spec, this
/// node's incarnation, and the voters it bootstrapped the cluster with (none if it joined).
fn core_config(spec: &NodeSpec, identity: &Identity, seed: u64) -> Result<Config, ServerError> {
    let members = match &identity.origin {
        Origin::Bootstrap(voters) => voters.clone(),
        Origin::Join | Origin::Replacement => Vec::new(),
    };
    let mut cfg = Config::new(spec.id, members, seed);
    cfg.incarnation = identity.incarnation;
    crate::config::apply_core(&mut cfg, &spec.core)?;
    Ok(cfg)
}

/// The core's clock at this moment: microseconds since `clock`.
fn since(clock: tokio::time::Instant) -> keel_core::Instant {
    keel_core::Instant(clock.elapsed().as_micros() as u64)
}

/// The apoptosis watchdog, if the spec has one: it ends the process when the loop stalls.
fn start_watchdog(spec: &NodeSpec) -> Option<watchdog::Pulse> {
    let id = spec.id;
    spec.watchdog.clone().map(|w| {
        watchdog::start(w, move |stalled| {
            tracing::error!(node = %id, ?stalled,
                "the event loop made no progress; exiting so that the cluster sees a crash, not a zombie");
            std::process::exit(watchdog::EXIT_STALLED);
        })
    })
}

/// Stops a helper task when the node stops, however it stops (returns, fails, or is aborted):
/// its sockets close with it, so the node can be started again on the same addresses.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The seed of node `id`'s random choices, from the base seed `base`: mixed, so nodes whose base
/// seeds are close (or the same) still draw unrelated election timeouts. (A plain `base ^ id`
/// gave all three nodes of a test with bases `31 * s + i` one seed whenever `31 * s` ended in
/// binary 00: their elections split in lockstep, term after term.)
fn node_seed(base: u64, id: NodeId) -> u64 {
    crate::net::mix64(base.wrapping_add(u64::from(id.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_close_base_seeds_get_unrelated_seeds() {
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..64u64 {
            for i in 0..5u32 {
                // The shape the turmoil test uses: base 31 * s + i for node i + 1.
                assert!(seen.insert(node_seed(31 * s + u64::from(i), NodeId(i + 1))));
            }
        }
        assert_ne!(node_seed(7, NodeId(1)), node_seed(7, NodeId(2)));
    }
}
