//! `keel node --join <a member's HTTP address>`: a new node joins a running cluster instead of
//! being listed in every member's `--peers`.
//!
//! Before the node starts, its data directory gets an identity of its own (a fresh
//! incarnation, written once), and the cluster is asked, through the member given, to add it as
//! a learner (`POST /v1/members`) unless the configuration already names it. The members'
//! peer addresses come back with the configuration, so the node can answer whoever leads. It is
//! promoted to voter by the operator (`keel member promote`), once caught up.
//!
//! Owns: that preparation. Never: running the node, or any decision the cluster makes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_core::NodeId;
use keel_node::api::{AddMemberRequest, MembersInfo};
use keel_node::client;
use keel_node::server::{fresh_incarnation, NodeSpec};
use keel_node::storage::identity::{Identity, Origin};

/// How long the node keeps asking the cluster to add it.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Prepares `spec`'s node to join the cluster of the member whose HTTP API is at `via`; the
/// peer addresses learned, to connect to.
pub fn prepare(spec: &NodeSpec, via: SocketAddr) -> anyhow::Result<BTreeMap<NodeId, SocketAddr>> {
    let identity = identity(spec)?;
    if let Origin::Bootstrap(_) = identity.origin {
        bail!(
            "--join: {} bootstrapped its cluster (see {}/IDENTITY); start it without --join",
            spec.id,
            spec.data_dir.display()
        );
    }
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        match register(spec, &identity, via) {
            Ok(peers) => return Ok(peers),
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %format!("{e:#}"), "--join: the cluster has not added this node yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(e.context(format!("--join {via}: gave up after {JOIN_TIMEOUT:?}")))
            }
        }
    }
}

/// The directory's identity, written now (a fresh incarnation) if it has none.
fn identity(spec: &NodeSpec) -> anyhow::Result<Identity> {
    let cluster = &spec.transport.cluster;
    if let Some(id) = Identity::read(&spec.data_dir, cluster, spec.id)? {
        return Ok(id);
    }
    let holds_data = std::fs::read_dir(&spec.data_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if holds_data {
        bail!(
            "--join: {} already holds data but no identity: join with an empty --data-dir",
            spec.data_dir.display()
        );
    }
    std::fs::create_dir_all(&spec.data_dir)
        .with_context(|| format!("creating {}", spec.data_dir.display()))?;
    let id = Identity {
        cluster: cluster.clone(),
        node: spec.id,
        incarnation: fresh_incarnation(spec.id),
        origin: Origin::Join,
    };
    id.write(&spec.data_dir)?;
    Ok(id)
}

/// One attempt: read the configuration through `via`; ask for this node to be added unless it
/// is named already. The peer addresses the configuration holds.
fn register(
    spec: &NodeSpec,
    identity: &Identity,
    via: SocketAddr,
) -> anyhow::Result<BTreeMap<NodeId, SocketAddr>> {
    let timeout = Duration::from_secs(5);
    let answer = client::request(via, "GET", "/v1/members", None, timeout)?;
    if answer.status != 200 {
        bail!(
            "GET /v1/members answered {}: {}",
            answer.status,
            answer.body
        );
    }
    let members: MembersInfo = answer.parse().context("GET /v1/members")?;
    let mut peers = BTreeMap::new();
    for m in &members.members {
        let (Ok(id), Ok(addr)) = (m.id.parse::<NodeId>(), m.address.parse::<SocketAddr>()) else {
            continue;
        };
        if id != spec.id {
            peers.insert(id, addr);
        }
    }
    let me = identity.incarnation.to_string();
    let named = members
        .members
        .iter()
        .any(|m| m.id == spec.id.to_string() && m.incarnation == me);
    if !named {
        let body = serde_json::to_string(&AddMemberRequest {
            id: spec.id.to_string(),
            incarnation: me,
            address: spec.listen.to_string(),
        })?;
        let added = client::request(via, "POST", "/v1/members", Some(&body), timeout)?;
        if added.status != 200 {
            bail!("POST /v1/members answered {}: {}", added.status, added.body);
        }
        tracing::info!(node = %spec.id, "--join: added to the cluster as a learner");
    }
    Ok(peers)
}
