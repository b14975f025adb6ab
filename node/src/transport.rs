//! TCP between nodes: one outbound connection per peer, inbound connections from every peer.
//!
//! Outbound: messages for a peer wait in a bounded queue; when it is full new messages are
//! dropped (Raft retransmits), so a slow or dead peer never blocks the others. The writer task
//! connects, sends its [`Hello`], streams frames, and on any error, or when the peer closes its
//! end (a crashed process), reconnects after a capped, jittered backoff. Inbound: each accepted
//! connection must open with a valid [`Hello`]; after it, every frame must decode to a
//! [`Message`] from that peer to this node. Anything else closes that connection with a logged
//! reason; the node stays up.
//!
//! Wedged connections: a connection can stop moving without either side seeing an error (a peer
//! that crashed or was cut off without a reset, a partition that swallowed segments). The writer
//! gives a connection up when a connect, or a write without progress, takes longer than
//! [`TransportConfig::io_timeout`], and reconnects; an inbound connection is closed as soon as a
//! newer one from the same peer has shaken hands, since the peer only writes to its newest.
//!
//! A peer that shakes hands anew has just come back (restarted, or its side of a partition
//! healed). Its messages to us should not wait out our backoff to be answered, so the writer to
//! it then reconnects at once: from its backoff, from a connect under way, or from a connection
//! older than [`TransportConfig::reconnect_max`], which has likely died the same way. A younger
//! connection is kept, so that two nodes cannot make each other reconnect in turn.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use keel_core::{Incarnation, Message, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::codec::{self, FrameDecoder, FrameError, Hello};
use crate::net::{Jitter, Net};

/// Transport settings, each with its default (the `[transport]` table of `--config`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// The cluster's name, checked in every handshake. Default "keel".
    pub cluster: String,
    /// Messages queued per peer before new ones are dropped. Default 1024.
    pub peer_queue: usize,
    /// First reconnect delay; doubles per failure up to `reconnect_max`. Each wait is drawn
    /// between half and all of the current delay (jitter), and ends early when the peer
    /// connects to this node. Default 50 ms.
    #[serde(with = "crate::config::duration")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Also the age past which a connection to a peer is replaced when
    /// that peer connects here anew (see the module docs). Default 1 s.
    #[serde(with = "crate::config::duration")]
    pub reconnect_max: Duration,
    /// Largest frame accepted. Default 64 MiB.
    pub max_frame_bytes: u32,
    /// A connect that has not finished after this long, or a write during which the peer took
    /// nothing for this long (64 KiB at a time), gives the connection up (the peer stopped
    /// reading: crashed, cut off, or wedged) and reconnects. On Linux it is also the connection's
    /// TCP_USER_TIMEOUT: sent data unacknowledged for this long ends the connection, so a peer
    /// lost to the network is noticed before the send buffer fills. Default 2 s.
    #[serde(with = "crate::config::duration")]
    pub io_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            cluster: "keel".to_string(),
            peer_queue: 1024,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            max_frame_bytes: codec::DEFAULT_MAX_FRAME_BYTES,
            io_timeout: Duration::from_secs(2),
        }
    }
}

/// Handles to the per-peer outbound queues, one writer task per peer. Peers come and go with
/// the configuration ([`Outbound::connect`], [`Outbound::disconnect`]).
pub struct Outbound {
    me: NodeId,
    /// This node's peer address, advertised in every handshake.
    listen: SocketAddr,
    /// This node's incarnation, sent in every handshake.
    incarnation: Incarnation,
    cfg: TransportConfig,
    seed: u64,
    queues: BTreeMap<NodeId, (SocketAddr, mpsc::Sender<Message>)>,
    dropped: std::sync::atomic::AtomicU64,
    handshakes: Handshakes,
    /// The network's writer launcher: `connect` starts writers on the network `N` chosen at
    /// [`Outbound::start`].
    spawn: fn(Writer),
}

/// Per peer, how many of its inbound connections to this node have shaken hands. The listener
/// counts; a reader whose number is no longer the latest was superseded and closes, and the
/// writer to that peer may reconnect at once (see the module docs). A peer that connects here
/// for the first time (a member just added) gets its counter then.
pub type Handshakes = std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, watch::Sender<u64>>>>;

/// Everything one writer task needs.
pub struct Writer {
    me: NodeId,
    listen: SocketAddr,
    incarnation: Incarnation,
    peer: NodeId,
    addr: SocketAddr,
    rx: mpsc::Receiver<Message>,
    came_back: watch::Receiver<u64>,
    cfg: TransportConfig,
    jitter: Jitter,
}

/// The handshake counter of `peer`, created on first use.
fn counter(handshakes: &Handshakes, peer: NodeId) -> watch::Receiver<u64> {
    let mut map = handshakes.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(peer)
        .or_insert_with(|| watch::Sender::new(0))
        .subscribe()
}

impl Outbound {
    /// Starts a writer task per peer on the network `N`; `seed` drives their reconnect jitter.
    pub fn start<N: Net>(
        (me, listen): (NodeId, SocketAddr),
        incarnation: Incarnation,
        peers: &BTreeMap<NodeId, SocketAddr>,
        cfg: &TransportConfig,
        seed: u64,
    ) -> Outbound {
        let mut out = Outbound {
            me,
            listen,
            incarnation,
            cfg: cfg.clone(),
            seed,
            queues: BTreeMap::new(),
            dropped: std::sync::atomic::AtomicU64::new(0),
            handshakes: Handshakes::default(),
            spawn: |w| {
                tokio::spawn(writer::<N>(w));
            },
        };
        for (id, addr) in peers {
            out.connect(*id, *addr);
        }
        out
    }

    /// Starts (or restarts, at a new address) the writer to `peer`.
    pub fn connect(&mut self, peer: NodeId, addr: SocketAddr) {
        if self.queues.get(&peer).is_some_and(|(a, _)| *a == addr) || peer == self.me {
            return;
        }
        let (tx, rx) = mpsc::channel(self.cfg.peer_queue);
        self.queues.insert(peer, (addr, tx));
        let mix = u64::from(peer.0).wrapping_mul(0x2545_F491_4F6C_DD1D);
        (self.spawn)(Writer {
            me: self.me,
            listen: self.listen,
            incarnation: self.incarnation,
            peer,
            addr,
            rx,
            came_back: counter(&self.handshakes, peer),
            cfg: self.cfg.clone(),
            jitter: Jitter::new(self.seed ^ mix),
        });
        tracing::info!(%peer, %addr, "peer added");
    }

    /// Stops the writer to `peer` (it left the configuration).
    pub fn disconnect(&mut self, peer: NodeId) {
        if self.queues.remove(&peer).is_some() {
            tracing::info!(%peer, "peer removed");
        }
    }

    /// The peers written to, with their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.queues.iter().map(|(id, (a, _))| (*id, *a)).collect()
    }

    /// The handshake counters [`listen`] must update, so that the writer to a peer that has just
    /// connected here anew can reconnect at once.
    pub fn handshakes(&self) -> Handshakes {
        self.handshakes.clone()
    }

    /// Messages dropped so far because a peer's queue was full (a slow or unreachable peer).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `m` for its destination; drops it if that peer's queue is full.
    pub fn send(&self, m: Message) {
        if let Some((_, q)) = self.queues.get(&m.to) {
            if q.try_send(m).is_err() {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("send queue full or closed; message dropped");
            }
        }
    }
}

async fn writer<N: Net>(w: Writer) {
    let Writer {
        me,
        listen,
        incarnation,
        peer,
        addr,
        mut rx,
        mut came_back,
        cfg,
        mut jitter,
    } = w;
    let link = Link {
        me,
        listen,
        incarnation,
        peer,
        addr,
        cfg: &cfg,
    };
    let mut delay = cfg.reconnect_min;
    loop {
        match link.session::<N>(&mut rx, &mut came_back, &mut delay).await {
            Ended::Shutdown => return,
            Ended::PeerCameBack => {
                delay = cfg.reconnect_min;
                continue;
            }
            Ended::Failed => {}
        }
        if rx.is_closed() {
            return; // the node stopped
        }
        // Handshakes from the peer before this wait need not cut it short.
        came_back.mark_unchanged();
        let wait = delay / 2 + jitter.up_to(delay / 2);
        tokio::select! {
            biased;
            Some(()) = came_back_now(&mut came_back) => {
                tracing::debug!(%peer, "the peer connected here; reconnecting at once");
                delay = cfg.reconnect_min;
                continue;
            }
            () = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(cfg.reconnect_max);
    }
}

/// Why a writer's connection (or attempt at one) ended.
enum Ended {
    /// The node is shutting down.
    Shutdown,
    /// The connect or a write failed, or the peer closed the connection: back off, reconnect.
    Failed,
    /// The peer connected to this node anew while we were connecting, or while our connection
    /// was old: the peer is up, and an old connection is likely dead (a partition or a restart
    /// that both sides saw); reconnect at once.
    PeerCameBack,
}

/// Resolves when the peer shakes hands with this node again (never, once the listener is gone).
async fn came_back_now(came_back: &mut watch::Receiver<u64>) -> Option<()> {
    came_back.changed().await.ok()
}

/// Resolves when the peer shakes hands with this node again while our connection, made at
/// `since`, is older than `young`. A younger connection was just made and is kept: otherwise two
/// nodes could make each other reconnect in turn, each new connection answering the other's.
async fn replaced(
    came_back: &mut watch::Receiver<u64>,
    since: tokio::time::Instant,
    young: Duration,
) -> Option<()> {
    loop {
        came_back_now(came_back).await?;
        if since.elapsed() >= young {
            return Some(());
        }
    }
}

/// One writer's view of its peer.
struct Link<'a> {
    me: NodeId,
    listen: SocketAddr,
    incarnation: Incarnation,
    peer: NodeId,
    addr: SocketAddr,
    cfg: &'a TransportConfig,
}

impl Link<'_> {
    /// Connects, shakes hands and streams queued messages until something ends the connection.
    /// `delay` (the backoff) is reset once the handshake is written.
    async fn session<N: Net>(
        &self,
        rx: &mut mpsc::Receiver<Message>,
        came_back: &mut watch::Receiver<u64>,
        delay: &mut Duration,
    ) -> Ended {
        let (peer, addr) = (self.peer, self.addr);
        came_back.mark_unchanged();
        let mut stream = match self.connect::<N>(came_back).await {
            Ok(stream) => stream,
            Err(end) => return end,
        };
        let _ = N::set_nodelay(&stream);
        if let Err(e) = N::set_unacked_timeout(&stream, self.cfg.io_timeout) {
            tracing::debug!(%peer, error = %e, "could not set the unacknowledged-data timeout");
        }
        let mut buf = Vec::new();
        let hello = Hello::new(&self.cfg.cluster, self.me, self.incarnation).at(self.listen);
        if codec::encode(&hello, &mut buf).is_err() {
            return Ended::Failed;
        }
        let since = tokio::time::Instant::now();
        if let Err(end) = self.write(&mut stream, &buf, came_back, since).await {
            return end;
        }
        *delay = self.cfg.reconnect_min;
        tracing::info!(%peer, %addr, "connected");
        self.stream::<N>(&mut stream, buf, rx, came_back, since)
            .await
    }

    /// Connects to the peer, unless it connects here first (then it came back: start over at
    /// once) or the connect takes longer than `io_timeout`.
    async fn connect<N: Net>(
        &self,
        came_back: &mut watch::Receiver<u64>,
    ) -> Result<N::Stream, Ended> {
        let (peer, addr) = (self.peer, self.addr);
        tokio::select! {
            biased;
            Some(()) = came_back_now(came_back) => {
                tracing::debug!(%peer, "the peer connected here during our connect; retrying at once");
                Err(Ended::PeerCameBack)
            }
            r = tokio::time::timeout(self.cfg.io_timeout, N::connect(addr)) => match r {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, %addr, error = %e, "connect failed");
                    Err(Ended::Failed)
                }
                Err(_) => {
                    tracing::debug!(%peer, %addr, "connect timed out");
                    Err(Ended::Failed)
                }
            },
        }
    }

    /// Streams queued messages on the connection made at `since` (batched into one write
    /// while more are waiting) until something ends it. `buf` is reused for the frames.
    async fn stream<N: Net>(
        &self,
        stream: &mut N::Stream,
        mut buf: Vec<u8>,
        rx: &mut mpsc::Receiver<Message>,
        came_back: &mut watch::Receiver<u64>,
        since: tokio::time::Instant,
    ) -> Ended {
        let peer = self.peer;
        // The peer never writes on this connection: anything readable is its end closing (a
        // crash or restart shows here at once, not at the next write, which would be lost).
        let mut probe = [0u8; 1];
        loop {
            let m = tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return Ended::Shutdown,
                },
                Some(()) = replaced(came_back, since, self.cfg.reconnect_max) => {
                    tracing::debug!(%peer, "the peer connected here anew; replacing our old connection");
                    return Ended::PeerCameBack;
                }
                r = stream.read(&mut probe) => {
                    match r {
                        Ok(0) => tracing::info!(%peer, "the peer closed the connection"),
                        Ok(_) => tracing::warn!(%peer, "the peer wrote on a connection it only reads; reconnecting"),
                        Err(e) => tracing::warn!(%peer, error = %e, "connection lost"),
                    }
                    return Ended::Failed;
                }
            };
            buf.clear();
            if codec::encode(&m, &mut buf).is_err() {
                continue;
            }
            // Batch whatever else is already queued into the same write.
            while buf.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(m) => {
                        let _ = codec::encode(&m, &mut buf);
                    }
                    Err(_) => break,
                }
            }
            if let Err(end) = self.write(stream, &buf, came_back, since).await {
                return end;
            }
        }
    }

    /// Writes `buf` on the connection made at `since`. A write that makes no progress for
    /// `io_timeout` is given up, and so is one under way when the peer connects here anew while
    /// the connection is older than `reconnect_max`.
    async fn write(
        &self,
        stream: &mut (impl AsyncWrite + Unpin),
        buf: &[u8],
        came_back: &mut watch::Receiver<u64>,
        since: tokio::time::Instant,
    ) -> Result<(), Ended> {
        let peer = self.peer;
        let r = tokio::select! {
            biased;
            r = write_with_progress(stream, buf, self.cfg.io_timeout) => r,
            Some(()) = replaced(came_back, since, self.cfg.reconnect_max) => {
                tracing::debug!(%peer, "the peer connected here anew during our write; replacing our old connection");
                return Err(Ended::PeerCameBack);
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::warn!(%peer, timeout = ?self.cfg.io_timeout,
                    "the peer took nothing for too long; reconnecting");
                Err(Ended::Failed)
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "connection lost");
                Err(Ended::Failed)
            }
        }
    }
}

/// Writes `buf` in pieces, each of which must be taken within `timeout`: a large frame (a
/// snapshot) to a slow but live peer goes through, a peer that takes nothing does not hold the
/// writer up for longer than `timeout`. Each piece is flushed: a stream may hold written bytes
/// until then (madsim's simulated TCP sends nothing before a flush; tokio's flush is a no-op).
async fn write_with_progress(
    stream: &mut (impl AsyncWrite + Unpin),
    buf: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    for piece in buf.chunks(64 * 1024) {
        tokio::time::timeout(timeout, async {
            stream.write_all(piece).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    }
    Ok(())
}

/// Counts a handshake from `peer`; the receiver resolves when a newer one comes.
fn bump(latest: &Handshakes, peer: NodeId) -> watch::Receiver<u64> {
    let mut map = latest.lock().unwrap_or_else(|e| e.into_inner());
    let gen = map.entry(peer).or_insert_with(|| watch::Sender::new(0));
    gen.send_modify(|g| *g += 1);
    gen.subscribe()
}

/// Accepts peers' connections and forwards their messages to `inbound`.
/// Where [`listen`] reports each peer's advertised address, as its handshake arrives.
pub type Learned = mpsc::UnboundedSender<(NodeId, SocketAddr)>;

pub async fn listen<N: Net>(
    listener: N::Listener,
    me: NodeId,
    incarnation: Incarnation,
    cfg: TransportConfig,
    (inbound, learned): (mpsc::Sender<Message>, Learned),
    latest: Handshakes,
) {
    loop {
        let (stream, addr) = match N::accept(&listener).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (cfg, inbound, learned) = (cfg.clone(), inbound.clone(), learned.clone());
        let latest = latest.clone();
        tokio::spawn(async move {
            let me = (me, incarnation);
            let to = (inbound, learned);
            if let Err(e) = reader(stream, me, &cfg, &latest, to).await {
                tracing::warn!(%addr, reason = %e, "closed a peer connection");
            }
        });
    }
}

async fn reader(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    (me, incarnation): (NodeId, Incarnation),
    cfg: &TransportConfig,
    latest: &Handshakes,
    (inbound, learned): (mpsc::Sender<Message>, Learned),
) -> Result<(), FrameError> {
    let mut decoder = FrameDecoder::new(cfg.max_frame_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let mut peer: Option<(NodeId, Incarnation)> = None;
    // Resolves once a newer connection from the same peer has shaken hands.
    let mut superseded: Option<watch::Receiver<u64>> = None;
    loop {
        while let Some(frame) = decoder.next_frame()? {
            match peer {
                None => {
                    let hello: Hello = codec::decode(frame)?;
                    let from = hello.check(&cfg.cluster, me)?;
                    if hello.probe {
                        // A node on an empty data directory asks whether the cluster exists:
                        // this node's handshake says it is initialized. Nothing follows.
                        let mut answer = Vec::new();
                        codec::encode(&Hello::new(&cfg.cluster, me, incarnation), &mut answer)?;
                        let _ = write_with_progress(&mut stream, &answer, cfg.io_timeout).await;
                        return Ok(());
                    }
                    superseded = Some(bump(latest, from));
                    peer = Some((from, hello.incarnation));
                    if let Ok(addr) = hello.address.parse::<SocketAddr>() {
                        let _ = learned.send((from, addr));
                    }
                }
                Some((from, incarnation)) => {
                    let m = codec::decode_message(frame)?;
                    if m.from != from || m.to != me || m.incarnation != incarnation {
                        return Err(FrameError::Handshake(format!(
                            "a message from {} (incarnation {}) to {} on the connection of {from} \
                             (incarnation {incarnation}) to {me}",
                            m.from, m.incarnation, m.to
                        )));
                    }
                    if inbound.send(m).await.is_err() {
                        return Ok(()); // shutting down
                    }
                }
            }
        }
        let read = stream.read(&mut buf);
        let n = match superseded.as_mut() {
            Some(newer) => tokio::select! {
                biased;
                r = read => r,
                _ = newer.changed() => {
                    tracing::debug!(peer = ?peer, "a newer connection from this peer replaced this one");
                    return Ok(());
                }
            },
            None => read.await,
        }
        .map_err(|e| FrameError::Garbage(format!("read: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        decoder.push(&buf[..n]);
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// A new handshake from the peer replaces our connection to it only once that connection is
    /// at least `young` (`reconnect_max`) old; a younger one is kept.
    #[tokio::test]
    async fn a_peer_handshake_replaces_only_a_connection_older_than_reconnect_max() {
        let handshakes = watch::Sender::new(0u64);
        let mut came_back = handshakes.subscribe();
        let young = Duration::from_secs(10);
        let now = tokio::time::Instant::now();
        handshakes.send_modify(|g| *g += 1);
        let kept = tokio::time::timeout(
            Duration::from_millis(50),
            replaced(&mut came_back, now, young),
        )
        .await;
        assert!(kept.is_err(), "a connection made just now was replaced");
        let old = now.checked_sub(young).expect("an instant 10 s back");
        handshakes.send_modify(|g| *g += 1);
        let replaced_old =
            tokio::time::timeout(Duration::from_secs(5), replaced(&mut came_back, old, young));
        assert_eq!(
            replaced_old.await,
            Ok(Some(())),
            "an old connection was kept"
        );
        // Without a listener, nothing replaces it.
        drop(handshakes);
        assert_eq!(replaced(&mut came_back, old, young).await, None);
    }
}
