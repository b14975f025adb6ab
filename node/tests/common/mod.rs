//! Helpers shared by the node's integration tests.
#![allow(dead_code)]

#[cfg(not(madsim))]
pub mod procs;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback address with a port nobody listens on, below the kernel's ephemeral range
/// (32768 and up on Linux), so that no outgoing connection can take it between this check and
/// the node's bind. Each test process walks its own stretch of ports.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20_000 + (std::process::id() * 97) % 10_000;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = 20_000 + (port - 20_000) % 12_000;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}
