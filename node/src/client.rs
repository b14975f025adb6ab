//! A small blocking HTTP/1.1 client for the `keel` CLI, xtask and tests: one request per
//! connection (or a kept-alive [`Conn`]), JSON bodies read into the [`crate::api`] types; and
//! [`find_leader`], the one way to ask a set of nodes which of them leads.
//!
//! It never runs a node and never interprets an answer beyond its status and body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::api::ClusterInfo;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} sent a malformed HTTP answer")]
    Malformed { addr: SocketAddr },
}

/// An answer: its status code and JSON body (`null` if the body is not JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    /// The body as one of the API's answer types (see [`crate::api`]).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.body)
    }
}

/// `GET /v1/cluster` of `addr`: the cluster as that node sees it; `None` if it does not answer
/// 200 with a cluster view.
pub fn cluster(addr: SocketAddr, timeout: Duration) -> Option<ClusterInfo> {
    let a = request(addr, "GET", "/v1/cluster", None, timeout).ok()?;
    if a.status != 200 {
        return None;
    }
    a.parse().ok()
}

/// The first of `nodes` that says it leads, with what it said: `ask` gives a node's view of the
/// cluster (`None`: no answer), and a node leads when its own view names it as leader. Nodes
/// are asked in order, and no further once one leads.
pub fn find_leader<T>(
    nodes: impl IntoIterator<Item = T>,
    mut ask: impl FnMut(&T) -> Option<ClusterInfo>,
) -> Option<(T, ClusterInfo)> {
    nodes.into_iter().find_map(|n| {
        let info = ask(&n)?;
        info.leads().then_some((n, info))
    })
}

/// [`find_leader`] for callers that ask asynchronously (nodes inside the test process, or on
/// a simulated network): the same rule, the same order.
pub async fn find_leader_async<T, F>(
    nodes: impl IntoIterator<Item = T>,
    mut ask: impl FnMut(&T) -> F,
) -> Option<(T, ClusterInfo)>
where
    F: std::future::Future<Output = Option<ClusterInfo>>,
{
    for n in nodes {
        if let Some(info) = ask(&n).await {
            if info.leads() {
                return Some((n, info));
            }
        }
    }
    None
}

/// Sends `method path` with an optional JSON body to `addr`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let connect = |source| ClientError::Connect { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    s.set_read_timeout(Some(timeout)).map_err(connect)?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(connect)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(connect)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(ClientError::Malformed { addr })?;
    let text = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, body })
}

/// One kept-alive HTTP/1.1 connection for many requests in a row (load generators, benchmarks):
/// no connection setup per request.
pub struct Conn {
    addr: SocketAddr,
    stream: std::io::BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, ClientError> {
        let connect = |source| ClientError::Connect { addr, source };
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
        s.set_read_timeout(Some(timeout)).map_err(connect)?;
        s.set_nodelay(true).map_err(connect)?;
        Ok(Conn {
            addr,
            stream: std::io::BufReader::new(s),
        })
    }

    /// Sends `method path` with an optional JSON body and reads the answer (which must carry
    /// a Content-Length, as the node's answers do).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, ClientError> {
        use std::io::BufRead;
        let addr = self.addr;
        let io = |source| ClientError::Connect { addr, source };
        let malformed = || ClientError::Malformed { addr };
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(io)?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).map_err(io)? == 0 {
            return Err(malformed());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(malformed)?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).map_err(io)? == 0 {
                return Err(malformed());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut raw = vec![0; length.ok_or_else(malformed)?];
        self.stream.read_exact(&mut raw).map_err(io)?;
        let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        Ok(Answer { status, body })
    }
}
