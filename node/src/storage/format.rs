//! The on-disk record format shared by log segments and the snapshot file: the magics that
//! open each file, and records `[len: u32 LE][crc32(payload): u32 LE][payload]` with a postcard
//! payload. These bytes are the format: changing them breaks every existing data directory.
//!
//! Pure encoding and decoding of byte buffers; no file access.

pub(super) const WAL_MAGIC: &[u8; 8] = b"KEELWAL1";
pub(super) const BASE_MAGIC: &[u8; 8] = b"KEELWALB";
pub(super) const SNAPSHOT_MAGIC: &[u8; 8] = b"KEELSNP1";
pub(super) const HEADER: usize = 8;
/// The largest record accepted when reading (a length beyond it is damage, not data).
pub const MAX_RECORD_BYTES: u32 = 256 << 20;

/// Appends `value` to `buf` as one record: the payload's length and checksum, then the payload
/// (postcard), serialized in place (no vector of its own). On an error `buf` is left as it was.
pub(super) fn push_record<T: serde::Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), postcard::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    if let Err(e) = crate::codec::append_postcard(value, buf) {
        buf.truncate(start);
        return Err(e);
    }
    let payload = &buf[start + 8..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

pub(super) enum Record<'a> {
    Ok {
        payload: &'a [u8],
        next: usize,
    },
    /// The record runs past the end of the data.
    Torn {
        reason: String,
    },
    /// The record is whole but fails its checksum (or its length is absurd).
    Bad {
        reason: String,
    },
    End,
}

pub(super) fn next_record(bytes: &[u8], at: usize) -> Record<'_> {
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Record::End;
    }
    if rest.len() < 8 {
        if all_zero(rest) {
            return Record::End; // the last few preallocated zeros
        }
        return Record::Torn {
            reason: format!("a record header cut short ({} of 8 bytes)", rest.len()),
        };
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 {
        // No record is empty: this is where the records end, in zeros preallocated after them.
        if all_zero(rest) {
            return Record::End;
        }
        return Record::Bad {
            reason: "an empty record before more data".to_string(),
        };
    }
    if len > MAX_RECORD_BYTES {
        return Record::Bad {
            reason: format!("record length {len} is beyond the {MAX_RECORD_BYTES}-byte limit"),
        };
    }
    let end = 8 + len as usize;
    if rest.len() < end {
        return Record::Torn {
            reason: format!(
                "a record of {len} bytes cut short ({} present)",
                rest.len() - 8
            ),
        };
    }
    let payload = &rest[8..end];
    if crc32fast::hash(payload) != crc {
        return Record::Bad {
            reason: "record checksum mismatch".to_string(),
        };
    }
    Record::Ok {
        payload,
        next: at + end,
    }
}

pub(super) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}
