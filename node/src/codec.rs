//! The wire format between nodes: length-prefixed frames of postcard-encoded values, opened by a
//! versioned handshake.
//!
//! A frame is `[len: u32 LE][payload: len bytes]`. The first frame each side sends is a [`Hello`]
//! naming the protocol version, the cluster and the sender; after it every frame carries one
//! [`Message`]. A frame longer than the configured limit, a payload that does not decode, or a
//! handshake for another cluster, version or an unknown node is a [`FrameError`]: the caller logs
//! it and closes that connection; the node stays up.
//!
//! [`FrameDecoder`] is incremental: feed it whatever bytes a read returned, take whole frames out.
//! It never buffers more than one frame's worth beyond the limit.

use keel_core::{Incarnation, Message, NodeId};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of [`Hello`] or [`Message`].
pub const PROTOCOL_VERSION: u16 = 3;
/// Default largest frame accepted (a snapshot travels in one frame). 64 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 << 20;
const MAGIC: [u8; 4] = *b"keel";

/// The first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub cluster: String,
    pub node: NodeId,
    /// The sender's incarnation: every message on the connection must carry it.
    pub incarnation: Incarnation,
    /// The sender has a data directory of this cluster (it bootstrapped or joined). A node
    /// starting on an empty data directory learns from this whether the cluster exists.
    pub initialized: bool,
    /// The sender is only asking whether this node is initialized (the answer is a handshake on
    /// the same connection); no message follows.
    pub probe: bool,
    /// In a probe: the voters the sender would bootstrap the cluster with (itself included,
    /// ascending), so that two nodes started with different peer lists refuse to bootstrap.
    pub bootstrap: Vec<NodeId>,
    /// Where the sender listens for peers (empty if it listens on a wildcard address): a node
    /// that does not know a peer's address yet learns it from the peer's handshake.
    pub address: String,
}

impl Hello {
    /// The handshake of a running node.
    pub fn new(cluster: &str, node: NodeId, incarnation: Incarnation) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster: cluster.to_string(),
            node,
            incarnation,
            initialized: true,
            probe: false,
            bootstrap: Vec::new(),
            address: String::new(),
        }
    }

    /// The same handshake, advertising `listen` as the sender's peer address.
    pub fn at(mut self, listen: std::net::SocketAddr) -> Hello {
        if !listen.ip().is_unspecified() {
            self.address = listen.to_string();
        }
        self
    }

    /// The handshake of a node on an empty data directory that would bootstrap the cluster with
    /// the voters `bootstrap`, asking whether the cluster exists.
    pub fn probe(cluster: &str, node: NodeId, bootstrap: &[NodeId]) -> Hello {
        Hello {
            initialized: false,
            probe: true,
            bootstrap: bootstrap.to_vec(),
            ..Hello::new(cluster, node, Incarnation::ORIGINAL)
        }
    }

    /// Accepts a peer's hello if it speaks this protocol, for this cluster, from another node
    /// than `me`. Which node ids may take part is the configuration's business (the core counts
    /// only members of the named incarnation); who may connect at all is authentication's.
    pub fn check(&self, cluster: &str, me: NodeId) -> Result<NodeId, FrameError> {
        if self.magic != MAGIC {
            return Err(FrameError::Handshake("not a keel peer (bad magic)".into()));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(FrameError::Handshake(format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                self.version
            )));
        }
        if self.cluster != cluster {
            return Err(FrameError::Handshake(format!(
                "peer belongs to cluster {:?}, not {cluster:?}",
                self.cluster
            )));
        }
        if self.node == me {
            return Err(FrameError::Handshake(format!(
                "the peer claims to be this node ({me})"
            )));
        }
        Ok(self.node)
    }
}

/// Why a connection must be closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    #[error("undecodable frame: {0}")]
    Garbage(String),
    #[error("handshake refused: {0}")]
    Handshake(String),
}

/// Encodes one value as a frame appended to `out` (serialized in place, behind its length).
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let len = append_postcard(value, out)
        .map_err(|e| FrameError::Garbage(e.to_string()))
        .and_then(|()| {
            u32::try_from(out.len() - start - 4).map_err(|_| FrameError::TooLarge {
                len: u32::MAX,
                max: u32::MAX,
            })
        });
    match len {
        Ok(len) => {
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Serializes `value` with postcard at the end of `out`, without a vector of its own (a frame
/// or a log record is sent or written from the buffer it is built in). On an error `out` is
/// left as it was.
pub(crate) fn append_postcard<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    struct Append<'a>(&'a mut Vec<u8>);
    impl postcard::ser_flavors::Flavor for Append<'_> {
        type Output = ();
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.push(data);
            Ok(())
        }
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
        fn finalize(self) -> postcard::Result<()> {
            Ok(())
        }
    }
    let start = out.len();
    let r = postcard::serialize_with_flavor(value, Append(out));
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decodes a frame's payload.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(payload).map_err(|e| FrameError::Garbage(e.to_string()))
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the bytes not yet taken out as frames start in `buf`.
    start: usize,
    max: u32,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max: max_frame_bytes,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, if one has arrived (borrowed from the decoder's buffer:
    /// no copy per frame). An oversized length is refused as soon as its prefix arrives, before
    /// any of its body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let end = 4 + len as usize;
        if rest.len() < end {
            return Ok(None);
        }
        let payload = self.start + 4..self.start + end;
        self.start += end;
        Ok(Some(&self.buf[payload]))
    }
}

/// Decodes the next message of an established connection.
pub fn decode_message(payload: &[u8]) -> Result<Message, FrameError> {
    decode(payload)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_core::{Command, Entry, LogIndex, MessageBody, Term, Write};

    use super::*;

    fn message() -> Message {
        Message {
            incarnation: keel_core::Incarnation::ORIGINAL,
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: vec![Entry {
                    term: Term(3),
                    index: LogIndex(5),
                    command: Arc::new(Command::Write(Write::Put {
                        key: keel_core::Key::user("a"),
                        value: "1".into(),
                    })),
                }],
                leader_commit: LogIndex(4),
                round: 9,
            },
        }
    }

    #[test]
    fn frames_round_trip_even_byte_by_byte() {
        let mut wire = Vec::new();
        encode(&Hello::new("prod", NodeId(1), Incarnation(5)), &mut wire).expect("encode");
        encode(&message(), &mut wire).expect("encode");
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut frames = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().expect("valid") {
                frames.push(f.to_vec());
            }
        }
        assert_eq!(frames.len(), 2);
        let hello: Hello = decode(&frames[0]).expect("hello");
        assert_eq!(hello.check("prod", NodeId(2)), Ok(NodeId(1)));
        assert_eq!(decode_message(&frames[1]).expect("message"), message());
    }

    /// Encoding in place writes the same bytes as postcard's own vector would (the wire and
    /// log formats do not change), after whatever the buffer already held.
    #[test]
    fn a_frame_is_its_length_then_postcard_s_bytes() {
        let mut wire = b"before".to_vec();
        encode(&message(), &mut wire).expect("encode");
        let payload = postcard::to_stdvec(&message()).expect("postcard");
        let mut expected = b"before".to_vec();
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&payload);
        assert_eq!(wire, expected);
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_prefix() {
        let mut d = FrameDecoder::new(1024);
        d.push(&5000u32.to_le_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: 5000,
                max: 1024
            })
        );
    }

    #[test]
    fn garbage_is_refused() {
        let mut d = FrameDecoder::new(1024);
        let mut wire = 6u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff; 6]);
        d.push(&wire);
        let payload = d.next_frame().expect("framed").expect("whole").to_vec();
        assert!(matches!(
            decode_message(&payload),
            Err(FrameError::Garbage(_))
        ));
        assert!(matches!(
            decode::<Hello>(&payload),
            Err(FrameError::Garbage(_))
        ));
    }

    #[test]
    fn a_handshake_for_another_cluster_version_or_this_node_is_refused() {
        let me = NodeId(1);
        let ok = Hello::new("prod", NodeId(2), Incarnation(7));
        assert_eq!(ok.check("prod", me), Ok(NodeId(2)));
        // A node id the configuration does not name yet may connect (a member being added).
        assert_eq!(
            Hello::new("prod", NodeId(9), Incarnation(1)).check("prod", me),
            Ok(NodeId(9))
        );
        let e = Hello::new("staging", NodeId(2), Incarnation(7)).check("prod", me);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("staging")));
        let e = Hello::new("prod", me, Incarnation(7)).check("prod", me);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("this node")));
        let mut old = ok.clone();
        old.version = 0;
        let e = old.check("prod", me);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("version 0")));
        let mut alien = ok;
        alien.magic = *b"http";
        assert!(alien.check("prod", me).is_err());
        let probe = Hello::probe("prod", NodeId(3), &[NodeId(1), NodeId(3)]);
        assert!(probe.probe && !probe.initialized);
    }
}
