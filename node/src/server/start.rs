//! What a node is when it starts: the identity of its data directory (see
//! [`crate::storage::identity`]), read, or decided for a directory that holds nothing yet.
//!
//! - A directory with an identity keeps it.
//! - A directory with a log but no identity (written before identities existed) was
//!   bootstrapped: the original incarnation, with `--peers` as the bootstrap voters.
//! - An empty directory asks its peers ([`crate::bootstrap`]): every one empty too, it
//!   bootstraps the cluster (original incarnation); one running, it is a new incarnation of its
//!   id that needs replacing, and never votes until the configuration names it.
//! - A node told to `--join` had its identity written before it started (`keel node --join`).
//!
//! Owns: that decision, and the bootstrap voters it implies. Never: registering with a cluster
//! or touching the log.

use keel_core::{DurableState, Incarnation, NodeId};

use super::{NodeSpec, ServerError};
use crate::bootstrap::{self, Decision};
use crate::net::Net;
use crate::storage::identity::{Identity, Origin};

/// The identity of `spec`'s data directory, whose durable state is `durable`, deciding it if
/// the directory is new (asking the peers on `listener`).
pub(super) async fn identity<N: Net>(
    spec: &NodeSpec,
    durable: &DurableState,
    listener: &N::Listener,
) -> Result<Identity, ServerError> {
    let cluster = &spec.transport.cluster;
    if let Some(id) = Identity::read(&spec.data_dir, cluster, spec.id)? {
        return Ok(id);
    }
    let empty = durable.entries.is_empty()
        && durable.snapshot.is_none()
        && durable.hard_state == Default::default();
    let origin = if !empty {
        tracing::info!("a data directory from before identities: the original incarnation");
        Origin::Bootstrap(bootstrap_voters(spec))
    } else {
        let max = spec.transport.max_frame_bytes;
        match bootstrap::decide::<N>(listener, spec.id, cluster, &spec.peers, max).await? {
            Decision::Bootstrap => {
                tracing::info!("every peer is new: bootstrapping the cluster");
                Origin::Bootstrap(bootstrap_voters(spec))
            }
            Decision::NewIncarnation { by } => {
                tracing::warn!(running = %by,
                    "this node's data directory is empty but its cluster runs: starting as a new \
                     incarnation that does not vote; add it back with `keel member replace {}`",
                    spec.id);
                Origin::Replacement
            }
        }
    };
    let incarnation = match origin {
        Origin::Bootstrap(_) => Incarnation::ORIGINAL,
        _ => fresh_incarnation(spec.id),
    };
    let id = Identity {
        cluster: cluster.clone(),
        node: spec.id,
        incarnation,
        origin,
    };
    id.write(&spec.data_dir)?;
    Ok(id)
}

/// The voters the cluster is bootstrapped with: this node and its `--peers`, ascending.
fn bootstrap_voters(spec: &NodeSpec) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = spec.peers.keys().copied().chain([spec.id]).collect();
    v.sort();
    v
}

/// A new incarnation: random, never the original one.
pub fn fresh_incarnation(id: NodeId) -> Incarnation {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    let x = crate::net::mix64(now ^ pid.rotate_left(32) ^ u64::from(id.0).wrapping_mul(0x9E37));
    Incarnation(x.max(1))
}
