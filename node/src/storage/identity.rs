//! The data directory's identity: which cluster and node it belongs to, and its incarnation,
//! written once when the directory is first used (`DATA_DIR/IDENTITY`).
//!
//! The incarnation is what tells a node that lost its disk from the node it was: a directory
//! created when the cluster was bootstrapped holds [`Incarnation::ORIGINAL`]; one created for a
//! node that joined later, or for a member that came back on an empty disk, holds a fresh
//! random one, which no configuration names until an operator adds it back. A directory that
//! holds a log but no identity (written by a version before identities) is of the original
//! incarnation: it was bootstrapped.
//!
//! Owns: the file's format, reading it (every fault named with the file and line), and writing
//! it atomically. Never: deciding which incarnation a new directory gets (`crate::bootstrap`
//! does).

use std::fs;
use std::path::{Path, PathBuf};

use keel_core::{Incarnation, NodeId};

const FILE: &str = "IDENTITY";
const HEADER: &str = "keel-identity 1";

/// What a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: String,
    pub node: NodeId,
    pub incarnation: Incarnation,
    pub origin: Origin,
}

/// How the directory came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The node bootstrapped the cluster with these voters (itself among them). Kept here so
    /// the bootstrap configuration never changes with a later edit of `--peers`.
    Bootstrap(Vec<NodeId>),
    /// The node joined a running cluster (`--join`).
    Join,
    /// The node came back on an empty disk while its cluster ran: a new incarnation of a member
    /// id the cluster has, to be added back with `keel member replace`.
    Replacement,
}

/// Why the identity cannot be read or does not fit the node started on it.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {what}")]
    Malformed {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error(
        "{path} belongs to node {found} of cluster {found_cluster:?}, but this node is {node} of \
         cluster {cluster:?}: start it with the matching --id/--cluster, or on another --data-dir"
    )]
    Mismatch {
        path: PathBuf,
        found: NodeId,
        found_cluster: String,
        node: NodeId,
        cluster: String,
    },
}

impl Identity {
    /// The identity in `dir`, if it has one. It must be of `node` in `cluster`.
    pub fn read(
        dir: &Path,
        cluster: &str,
        node: NodeId,
    ) -> Result<Option<Identity>, IdentityError> {
        let path = dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        let id = parse(&path, &text)?;
        if id.node != node || id.cluster != cluster {
            return Err(IdentityError::Mismatch {
                path,
                found: id.node,
                found_cluster: id.cluster,
                node,
                cluster: cluster.to_string(),
            });
        }
        Ok(Some(id))
    }

    /// Writes the identity into `dir`, durably (a temporary file, fsynced, renamed over, the
    /// directory fsynced).
    pub fn write(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = dir.join(FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let origin = match &self.origin {
            Origin::Bootstrap(voters) => {
                let ids: Vec<String> = voters.iter().map(|n| n.to_string()).collect();
                format!("bootstrap {}", ids.join(","))
            }
            Origin::Join => "join".to_string(),
            Origin::Replacement => "replacement".to_string(),
        };
        let text = format!(
            "{HEADER}\ncluster {}\nnode {}\nincarnation {}\norigin {origin}\n",
            self.cluster, self.node, self.incarnation
        );
        let tmp = dir.join(format!("{FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

fn parse(path: &Path, text: &str) -> Result<Identity, IdentityError> {
    let bad = |line: usize, what: String| IdentityError::Malformed {
        path: path.to_path_buf(),
        line,
        what,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((n, other)) => {
            return Err(bad(n, format!("expected {HEADER:?}, found {other:?}")));
        }
        None => return Err(bad(1, "the file is empty".into())),
    }
    let mut field = |name: &str| -> Result<(usize, String), IdentityError> {
        let (n, line) = lines
            .next()
            .ok_or_else(|| bad(0, format!("missing the {name:?} line")))?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| bad(n, format!("expected `{name} ...`, found {line:?}")))?;
        Ok((n, value.to_string()))
    };
    let (_, cluster) = field("cluster")?;
    let (n, node) = field("node")?;
    let node = node.parse::<NodeId>().map_err(|e| bad(n, e.to_string()))?;
    let (n, inc) = field("incarnation")?;
    let incarnation = u64::from_str_radix(&inc, 16)
        .ok()
        .filter(|_| inc.len() == 16)
        .map(Incarnation)
        .ok_or_else(|| bad(n, format!("{inc:?} is not 16 hex digits")))?;
    let (n, origin) = field("origin")?;
    let origin = match origin.split_once(' ') {
        Some(("bootstrap", list)) => Origin::Bootstrap(
            list.split(',')
                .map(|id| id.parse::<NodeId>().map_err(|e| bad(n, e.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None if origin == "join" => Origin::Join,
        None if origin == "replacement" => Origin::Replacement,
        _ => {
            let what =
                format!("expected `bootstrap n1,n2,..`, `join` or `replacement`, found {origin:?}");
            return Err(bad(n, what));
        }
    };
    Ok(Identity {
        cluster,
        node,
        incarnation,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_node_or_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Identity::read(dir.path(), "keel", NodeId(3))
            .expect("read")
            .is_none());
        let id = Identity {
            cluster: "keel".into(),
            node: NodeId(3),
            incarnation: Incarnation(0xdead_beef),
            origin: Origin::Bootstrap(vec![NodeId(1), NodeId(2), NodeId(3)]),
        };
        id.write(dir.path()).expect("write");
        assert_eq!(
            Identity::read(dir.path(), "keel", NodeId(3)).expect("read"),
            Some(id)
        );
        let e = Identity::read(dir.path(), "keel", NodeId(2)).expect_err("other node");
        assert!(e.to_string().contains("belongs to node n3"), "{e}");
        let e = Identity::read(dir.path(), "prod", NodeId(3)).expect_err("other cluster");
        assert!(e.to_string().contains("\"prod\""), "{e}");
        fs::write(
            dir.path().join(FILE),
            "keel-identity 1\ncluster keel\nnode n3\nincarnation xyz\norigin join\n",
        )
        .expect("write");
        let e = Identity::read(dir.path(), "keel", NodeId(3)).expect_err("garbage");
        assert!(e.to_string().contains("line 4"), "{e}");
        let joined = Identity {
            cluster: "keel".into(),
            node: NodeId(3),
            incarnation: Incarnation(7),
            origin: Origin::Replacement,
        };
        joined.write(dir.path()).expect("write");
        assert_eq!(
            Identity::read(dir.path(), "keel", NodeId(3)).expect("read"),
            Some(joined)
        );
        fs::write(dir.path().join(FILE), "").expect("write");
        assert!(Identity::read(dir.path(), "keel", NodeId(3)).is_err());
    }
}
