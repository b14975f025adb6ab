//! The network seam: everything the node does with sockets goes through [`Net`], so the same
//! event loop, peer transport and HTTP API run on real TCP ([`TokioNet`], what the `keel` binary
//! uses) and on a simulated network in tests (turmoil's `net`, implemented in `tests/turmoil.rs`;
//! turmoil is only a dev-dependency).
//!
//! The seam is deliberately small: bind a listener, accept from it, connect. What flows over the
//! streams (the framed codec, HTTP/1.1) is the production code either way.
//!
//! It never decides what is sent or when: that is the transport's and the HTTP server's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A TCP-like network: listeners and byte streams.
///
/// Implementations are marker types (no value is ever made); the node is generic over one.
pub trait Net: Send + Sync + 'static {
    /// A connected stream, either side.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A bound listener.
    type Listener: Send + Sync + 'static;

    /// Binds a listener to `addr`.
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The next inbound connection and its peer's address.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Connects to `addr`.
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Sends small writes at once (Nagle off) where the network has such a thing.
    fn set_nodelay(_stream: &Self::Stream) -> io::Result<()> {
        Ok(())
    }

    /// Has the network give a connection up once data it sent stays unacknowledged for
    /// `timeout` (TCP_USER_TIMEOUT), where it has such a thing.
    fn set_unacked_timeout(
        _stream: &Self::Stream,
        _timeout: std::time::Duration,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// The real network: `tokio::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        tokio::net::TcpStream::connect(addr).await
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn set_nodelay(stream: &Self::Stream) -> io::Result<()> {
        stream.set_nodelay(true)
    }

    /// Linux: without it, a connection whose peer vanished (a host down, a cable pulled, a
    /// partition) keeps taking writes into the kernel's buffer and retransmitting them with
    /// exponential backoff for up to ~15 minutes; after the fault heals it may stay silent for
    /// one more retransmission interval, seconds by then.
    #[cfg(all(not(madsim), any(target_os = "linux", target_os = "android")))]
    fn set_unacked_timeout(stream: &Self::Stream, timeout: std::time::Duration) -> io::Result<()> {
        socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout))
    }
}

/// A [`Net`] listener as axum's [`axum::serve::Listener`], so the HTTP API serves on any network.
pub(crate) struct HttpListener<N: Net>(pub(crate) N::Listener);

impl<N: Net> axum::serve::Listener for HttpListener<N> {
    type Io = N::Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match N::accept(&self.0).await {
                Ok(x) => return x,
                // As axum does for tokio's listener: a failed accept (out of descriptors, a
                // connection reset before it was taken) is logged and retried after a pause.
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        N::local_addr(&self.0)
    }
}

/// splitmix64's finaliser: a bijection on `u64` under which nearby inputs give unrelated outputs.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic random stream (splitmix64) for the transport's reconnect jitter: seeded
/// from the node's seed, so a simulated run with a fixed seed repeats exactly.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A delay in `0..max` (whole milliseconds; 0 if `max` is under 1 ms).
    pub(crate) fn up_to(&mut self, max: std::time::Duration) -> std::time::Duration {
        let max_ms = max.as_millis().min(u128::from(u64::MAX)) as u64;
        if max_ms == 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_millis(self.next_u64() % max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(not(madsim), any(target_os = "linux", target_os = "android")))]
    #[tokio::test]
    async fn peer_connections_give_up_on_unacknowledged_data_after_the_set_time() {
        let listener = TokioNet::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let addr = TokioNet::local_addr(&listener).expect("address");
        let stream = TokioNet::connect(addr).await.expect("connect");
        let timeout = std::time::Duration::from_millis(1500);
        TokioNet::set_unacked_timeout(&stream, timeout).expect("set");
        let set = socket2::SockRef::from(&stream)
            .tcp_user_timeout()
            .expect("get");
        assert_eq!(set, Some(timeout));
    }

    #[test]
    fn jitter_stays_below_its_bound_and_repeats_per_seed() {
        let (mut a, mut b) = (Jitter::new(9), Jitter::new(9));
        let max = std::time::Duration::from_millis(50);
        for _ in 0..1000 {
            let x = a.up_to(max);
            assert!(x < max);
            assert_eq!(x, b.up_to(max));
        }
        assert_eq!(
            a.up_to(std::time::Duration::ZERO),
            std::time::Duration::ZERO
        );
    }
}
