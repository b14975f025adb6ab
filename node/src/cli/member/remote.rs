//! What `keel member` asks of a cluster, as a trait ([`Cluster`]) with its HTTP implementation
//! ([`Remote`], any node's `/v1/members` and `/v1/cluster`), and the read of a new node's
//! identity from its own `GET /v1/cluster` ([`NewNode`]).
//!
//! Owns: turning an answer into an [`Outcome`] or an error naming what the node said. Never:
//! deciding whether to retry or what to do next (see [`super::steps`]).

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};
use keel_core::NodeId;
use keel_node::api::{AddMemberRequest, ClusterInfo, MembersInfo, Written};
use keel_node::client::{request, Answer};

use crate::cli::{parse, TIMEOUT};

/// One single-server change, as `keel member` sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add(AddMemberRequest),
    Promote(NodeId),
    Remove(NodeId),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add(r) => write!(
                f,
                "add {} (incarnation {}, peer address {}) as a learner",
                r.id, r.incarnation, r.address
            ),
            Change::Promote(id) => write!(f, "promote {id} to voter"),
            Change::Remove(id) => write!(f, "remove {id}"),
        }
    }
}

impl Change {
    /// What holds when the change has nothing left to do.
    pub fn already(&self) -> String {
        match self {
            Change::Add(r) => format!("{} is already a member of that incarnation", r.id),
            Change::Promote(id) => format!("{id} is already a voter"),
            Change::Remove(id) => format!("{id} is not a member"),
        }
    }
}

/// What a change request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed at this revision.
    Committed { revision: u64 },
    /// The leader refused it (409), for this reason.
    Refused(String),
    /// No verdict: no leader, overloaded, the node stopping, or the outcome unknown (it may
    /// have applied). Worth asking again.
    Unsettled(String),
}

/// The membership operations the commands are made of.
pub trait Cluster {
    /// The configuration in force at the leader (`GET /v1/members`).
    fn members(&self) -> anyhow::Result<MembersInfo>;
    /// Proposes one change; `Err` when the request itself is wrong or the node cannot be asked.
    fn change(&self, change: &Change) -> anyhow::Result<Outcome>;
    /// The cluster as the node asked sees it (`GET /v1/cluster`).
    fn here(&self) -> anyhow::Result<ClusterInfo>;
}

/// A cluster reached through the HTTP API of one of its nodes.
pub struct Remote {
    pub addr: SocketAddr,
}

impl Remote {
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let a = request(self.addr, "GET", path, None, TIMEOUT)?;
        if a.status != 200 {
            bail!("{} answered GET {path} with {}", self.addr, said(&a));
        }
        parse(&a)
    }
}

impl Cluster for Remote {
    fn members(&self) -> anyhow::Result<MembersInfo> {
        self.get("/v1/members")
    }

    fn change(&self, change: &Change) -> anyhow::Result<Outcome> {
        let sent = match change {
            Change::Add(req) => {
                let body = serde_json::to_string(req)?;
                request(self.addr, "POST", "/v1/members", Some(&body), TIMEOUT)
            }
            Change::Promote(id) => {
                let path = format!("/v1/members/{id}/promote");
                request(self.addr, "POST", &path, None, TIMEOUT)
            }
            Change::Remove(id) => {
                let path = format!("/v1/members/{id}");
                request(self.addr, "DELETE", &path, None, TIMEOUT)
            }
        };
        // The request went out (the node was reachable a moment ago): a lost answer leaves the
        // outcome open, and the caller reads the configuration to settle it.
        let a = match sent {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::Unsettled(format!("no answer: {e}"))),
        };
        match a.status {
            200 => Ok(Outcome::Committed {
                revision: parse::<Written>(&a)?.revision,
            }),
            409 => Ok(Outcome::Refused(
                a.body["reason"]
                    .as_str()
                    .map_or_else(|| a.body.to_string(), String::from),
            )),
            503 | 504 => Ok(Outcome::Unsettled(said(&a))),
            _ => bail!("{} refused to {change}: {}", self.addr, said(&a)),
        }
    }

    fn here(&self) -> anyhow::Result<ClusterInfo> {
        self.get("/v1/cluster")
    }
}

/// An answer in words: its status and what the body says.
fn said(a: &Answer) -> String {
    match a.body["error"].as_str() {
        Some("no_leader") => format!("{} (the cluster has no leader right now)", a.status),
        Some("overloaded") => format!("{} (the leader is overloaded)", a.status),
        Some("outcome_unknown") => format!("{} (outcome unknown: it may have applied)", a.status),
        Some("shutting_down") => format!("{} (the node is shutting down)", a.status),
        _ => format!("{} {}", a.status, a.body),
    }
}

/// A node to add, as it describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Its HTTP address as the operator gave it.
    pub url: String,
    pub id: NodeId,
    /// 16 hex digits.
    pub incarnation: String,
    /// Its peer address (`--listen`).
    pub address: String,
}

impl NewNode {
    /// Reads the identity of the node whose HTTP API is at `url` (`http://host:port` or
    /// `host:port`) from its `GET /v1/cluster`.
    pub fn read(url: &str) -> anyhow::Result<NewNode> {
        let addr = http_addr(url)?;
        let a = request(addr, "GET", "/v1/cluster", None, TIMEOUT)
            .with_context(|| format!("reading the new node's identity from {url}"))?;
        if a.status != 200 {
            bail!("{url} answered GET /v1/cluster with {}", said(&a));
        }
        let info: ClusterInfo = parse(&a)?;
        let id = info
            .node
            .parse()
            .map_err(|_| anyhow::anyhow!("{url} calls itself {:?}, not a node id", info.node))?;
        if info.peer_address.is_empty() {
            bail!("{url} ({id}) reports no peer address (is it an older keel?)");
        }
        Ok(NewNode {
            url: url.to_string(),
            id,
            incarnation: info.incarnation,
            address: info.peer_address,
        })
    }

    /// The request that adds it as a learner.
    pub fn add(&self) -> Change {
        Change::Add(AddMemberRequest {
            id: self.id.to_string(),
            incarnation: self.incarnation.clone(),
            address: self.address.clone(),
        })
    }
}

/// The socket address of an HTTP address given as `http://host:port` or `host:port`.
pub fn http_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let hostport = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => bail!("{url:?}: keel's HTTP API speaks http, not {scheme}"),
        None => url,
    };
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    if hostport.contains('/') {
        bail!("{url:?}: give the node's HTTP address only, e.g. http://127.0.0.1:8004");
    }
    hostport
        .to_socket_addrs()
        .with_context(|| format!("{url:?} is not an HTTP address like http://127.0.0.1:8004"))?
        .next()
        .with_context(|| format!("{url:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_address_is_read_with_or_without_its_scheme() {
        let want: SocketAddr = "127.0.0.1:8004".parse().expect("addr");
        for url in [
            "http://127.0.0.1:8004",
            "127.0.0.1:8004",
            "http://127.0.0.1:8004/",
        ] {
            assert_eq!(http_addr(url).expect(url), want);
        }
        for bad in [
            "https://127.0.0.1:8004",
            "http://127.0.0.1:8004/v1",
            "nonsense",
        ] {
            assert!(http_addr(bad).is_err(), "{bad}");
        }
    }
}
