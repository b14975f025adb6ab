//! How a node started on an empty data directory learns whether its cluster already exists.
//!
//! Its peers (`--peers`) are asked over the peer port with a probe handshake, and answer with
//! theirs: a running node answers that it is initialized; a node that is itself deciding answers
//! that it is not, and counts the asker as not initialized either. The node bootstraps the
//! cluster (as the original incarnation of its id) only once every peer was found not
//! initialized; as soon as one peer is first found initialized, the cluster exists without this
//! node's data, so the node is a new incarnation of its id: it never votes until an operator
//! adds it back (`keel member replace`). Until every peer has answered it keeps asking, saying
//! whom it waits for.
//!
//! Why this cannot bootstrap a node that lost its disk: that node voted, so some peer was
//! running with a data directory then and still is (a peer that is also empty lost its vote
//! record too: with every disk gone there is no cluster left to protect). Asking also tells
//! the asked node, before the asker decides, so two nodes bootstrapping together have each
//! heard the other deciding before either runs: neither mistakes the other for an existing
//! cluster. The rule errs only one way: a node started long after its peers bootstrapped is
//! taken for a new incarnation and must be added with `keel member replace`, never the reverse.
//!
//! Owns: the probe exchange and the decision. Never: writing the data directory (the caller
//! writes the identity) or starting the node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use keel_core::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::codec::{self, FrameDecoder, FrameError, Hello};
use crate::net::Net;

/// How long one probe (connect, handshake, answer) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often unanswered peers are asked again.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How often the node says whom it still waits for.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Two nodes were started to bootstrap the cluster with different voters.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{peer} would bootstrap the cluster with {theirs:?}, this node with {ours:?}: start every \
     node with the same members (--peers lists every other member)"
)]
pub struct Mismatch {
    pub peer: NodeId,
    pub theirs: Vec<NodeId>,
    pub ours: Vec<NodeId>,
}

/// What a node on an empty data directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every peer is new too: bootstrap the cluster, as the original incarnation.
    Bootstrap,
    /// `by` runs with a data directory: the cluster exists, and this node is a new incarnation.
    NewIncarnation { by: NodeId },
}

/// Decides, asking `peers` through the network `N` and answering their questions on `listener`.
pub async fn decide<N: Net>(
    listener: &N::Listener,
    me: NodeId,
    cluster: &str,
    peers: &BTreeMap<NodeId, SocketAddr>,
    max_frame_bytes: u32,
) -> Result<Decision, Mismatch> {
    let mut ours: Vec<NodeId> = peers.keys().copied().chain([me]).collect();
    ours.sort();
    let probe = Hello::probe(cluster, me, &ours);
    let mut heard: BTreeMap<NodeId, bool> = BTreeMap::new();
    let (tx, mut answers) = mpsc::channel::<Hello>(64);
    let mut round = tokio::time::interval(PROBE_INTERVAL);
    let mut report = tokio::time::interval(REPORT_INTERVAL);
    report.tick().await;
    loop {
        if heard.len() >= peers.len() {
            return Ok(Decision::Bootstrap);
        }
        tokio::select! {
            biased;
            Some(hello) = answers.recv() => {
                let peer = hello.node;
                if !peers.contains_key(&peer) || heard.contains_key(&peer) {
                    continue;
                }
                if hello.initialized {
                    return Ok(Decision::NewIncarnation { by: peer });
                }
                if hello.bootstrap != ours {
                    return Err(Mismatch { peer, theirs: hello.bootstrap, ours });
                }
                heard.insert(peer, false);
            }
            accepted = N::accept(listener) => {
                if let Ok((stream, _)) = accepted {
                    let (tx, probe) = (tx.clone(), probe.clone());
                    tokio::spawn(async move {
                        if let Ok(hello) = answer(stream, &probe, max_frame_bytes).await {
                            let _ = tx.send(hello).await;
                        }
                    });
                }
            }
            _ = round.tick() => {
                for (_, &addr) in peers.iter().filter(|(p, _)| !heard.contains_key(p)) {
                    let (tx, probe) = (tx.clone(), probe.clone());
                    tokio::spawn(async move {
                        let asked = ask::<N>(addr, &probe, max_frame_bytes);
                        if let Ok(Ok(hello)) = tokio::time::timeout(PROBE_TIMEOUT, asked).await {
                            let _ = tx.send(hello).await;
                        }
                    });
                }
            }
            _ = report.tick() => {
                let waiting: Vec<String> = peers
                    .keys()
                    .filter(|p| !heard.contains_key(p))
                    .map(|p| p.to_string())
                    .collect();
                tracing::info!(?waiting, "empty data directory: waiting for every peer to say whether the cluster exists");
            }
        }
    }
}

/// Sends our `probe` to the node at `addr`; its answering handshake.
async fn ask<N: Net>(addr: SocketAddr, probe: &Hello, max: u32) -> Result<Hello, FrameError> {
    let mut stream = N::connect(addr)
        .await
        .map_err(|e| FrameError::Garbage(format!("connect: {e}")))?;
    send(&mut stream, probe).await?;
    let hello = receive(&mut stream, max).await?;
    hello.check(&probe.cluster, probe.node)?;
    Ok(hello)
}

/// Answers a peer that connected while this node decides with our `probe` (this node is not
/// initialized). The peer's own state comes with its handshake: a probe (it decides too) or a
/// running node's.
async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    probe: &Hello,
    max: u32,
) -> Result<Hello, FrameError> {
    let hello = tokio::time::timeout(PROBE_TIMEOUT, receive(&mut stream, max))
        .await
        .map_err(|_| FrameError::Garbage("no handshake in time".into()))??;
    hello.check(&probe.cluster, probe.node)?;
    if hello.probe {
        let _ = send(&mut stream, probe).await;
    }
    Ok(hello)
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), hello: &Hello) -> Result<(), FrameError> {
    let mut buf = Vec::new();
    codec::encode(hello, &mut buf)?;
    // A flush too: madsim's simulated TCP sends nothing before one.
    async {
        stream.write_all(&buf).await?;
        stream.flush().await
    }
    .await
    .map_err(|e| FrameError::Garbage(format!("write: {e}")))
}

/// Reads one handshake.
pub(crate) async fn receive(
    stream: &mut (impl AsyncRead + Unpin),
    max: u32,
) -> Result<Hello, FrameError> {
    let mut decoder = FrameDecoder::new(max);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return codec::decode(frame);
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| FrameError::Garbage(format!("read: {e}")))?;
        if n == 0 {
            return Err(FrameError::Garbage("closed before its handshake".into()));
        }
        decoder.push(&buf[..n]);
    }
}
