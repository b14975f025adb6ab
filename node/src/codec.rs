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

use keel_core::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of [`Hello`] or [`Message`].
pub const PROTOCOL_VERSION: u16 = 2;
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
}

impl Hello {
    pub fn new(cluster: &str, node: NodeId) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster: cluster.to_string(),
            node,
        }
    }

    /// Accepts a peer's hello if it speaks this protocol, for this cluster, as a known member.
    pub fn check(&self, cluster: &str, members: &[NodeId]) -> Result<NodeId, FrameError> {
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
        if !members.contains(&self.node) {
            return Err(FrameError::Handshake(format!(
                "{} is not a member of this cluster",
                self.node
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

/// Encodes one value as a frame appended to `out`.
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let payload = postcard::to_stdvec(value).map_err(|e| FrameError::Garbage(e.to_string()))?;
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes a frame's payload.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(payload).map_err(|e| FrameError::Garbage(e.to_string()))
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: u32,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            max: max_frame_bytes,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, if one has arrived. An oversized length is refused as
    /// soon as its prefix arrives, before any of its body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = self.buf[4..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(payload))
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
        encode(&Hello::new("prod", NodeId(1)), &mut wire).expect("encode");
        encode(&message(), &mut wire).expect("encode");
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut frames = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().expect("valid") {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        let hello: Hello = decode(&frames[0]).expect("hello");
        assert_eq!(hello.check("prod", &[NodeId(1), NodeId(2)]), Ok(NodeId(1)));
        assert_eq!(decode_message(&frames[1]).expect("message"), message());
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
        let payload = d.next_frame().expect("framed").expect("whole");
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
    fn a_handshake_for_another_cluster_version_or_node_is_refused() {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let ok = Hello::new("prod", NodeId(2));
        assert_eq!(ok.check("prod", &members), Ok(NodeId(2)));
        let e = Hello::new("staging", NodeId(2)).check("prod", &members);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("staging")));
        let e = Hello::new("prod", NodeId(9)).check("prod", &members);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("n9")));
        let mut old = ok.clone();
        old.version = 0;
        let e = old.check("prod", &members);
        assert!(matches!(e, Err(FrameError::Handshake(m)) if m.contains("version 0")));
        let mut alien = ok;
        alien.magic = *b"http";
        assert!(alien.check("prod", &members).is_err());
    }
}
