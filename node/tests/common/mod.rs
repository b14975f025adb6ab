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

/// A minimal HTTP/1.1 request over tokio (for nodes inside the test process): the status code
/// and the body, `None` without an answer within 10 s.
#[cfg(not(madsim))]
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut out),
    )
    .await
    .ok()?
    .ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}
