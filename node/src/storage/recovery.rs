//! Replaying a log segment into the durable state it records, checking every record: a torn
//! tail of the last segment is cut off, any other damage is an error naming file and offset.
//!
//! It reads and may truncate a segment; it never writes records.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use keel_core::{DurableState, Entry, LogIndex, Persist};

use super::format::{
    all_zero, next_record, Record, BASE_MAGIC, HEADER, MAX_RECORD_BYTES, WAL_MAGIC,
};
use super::segment::truncate;
use super::{io, Recovery, StorageError};

/// Replays one segment into a durable state; also returns where its records end. In the `last`
/// segment a torn tail is cut off; in any other, damage of any kind is an error (it was synced
/// whole before the next one began).
pub(super) fn replay(
    path: &Path,
    seed: DurableState,
    last: bool,
) -> Result<(DurableState, Recovery, u64), StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    // Segments are created whole (temporary file, fsync, rename), so a short one is damage.
    if bytes.len() < HEADER || (&bytes[..HEADER] != WAL_MAGIC && &bytes[..HEADER] != BASE_MAGIC) {
        return Err(corrupt(0, "not a keel log segment (bad magic)".into()));
    }
    let mut state = seed;
    let mut recovery = Recovery::default();
    let mut at = HEADER;
    loop {
        match next_record(&bytes, at) {
            Record::End => break,
            Record::Ok { payload, next } => {
                let p: Persist = postcard::from_bytes(payload)
                    .map_err(|e| corrupt(at, format!("undecodable record: {e}")))?;
                check_contiguous(&state, &p).map_err(|reason| corrupt(at, reason))?;
                state.apply(&p);
                recovery.records += 1;
                at = next;
            }
            Record::Torn { reason } if !last => {
                return Err(corrupt(
                    at,
                    format!("{reason} (in a segment that was complete)"),
                ))
            }
            Record::Torn { .. } => {
                // It runs to the end of the file: nothing was written after it.
                truncate(path, at as u64)?;
                recovery.truncated_tail = Some((at as u64, (bytes.len() - at) as u64));
                break;
            }
            Record::Bad { reason } => {
                // A bad record is a torn tail only if nothing was written after it: only zeros
                // (preallocated, never written) may follow the space it claims, if anything.
                let len =
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                        as usize;
                let claimed = at + 8 + len;
                if last
                    && len <= MAX_RECORD_BYTES as usize
                    && claimed <= bytes.len()
                    && all_zero(&bytes[claimed..])
                {
                    truncate(path, at as u64)?;
                    recovery.truncated_tail = Some((at as u64, (claimed - at) as u64));
                    break;
                }
                return Err(corrupt(at, reason));
            }
        }
    }
    Ok((state, recovery, at as u64))
}

/// Entries must continue the log (or replace a suffix of it); anything else is damage.
pub(super) fn check_contiguous(state: &DurableState, p: &Persist) -> Result<(), String> {
    let Persist::Entries(entries) = p else {
        return Ok(());
    };
    let Some(first) = entries.first() else {
        return Err("an empty entries record".into());
    };
    let next = state.last_index().0 + 1;
    let floor = state.entries.first().map_or(next, |e: &Entry| e.index.0);
    if first.index.0 > next || (first.index.0 < floor && !state.entries.is_empty()) {
        return Err(format!(
            "entries start at {} but the log holds {}..{}",
            first.index.0,
            floor,
            next - 1
        ));
    }
    if entries
        .windows(2)
        .any(|w| w[1].index != LogIndex(w[0].index.0 + 1))
    {
        return Err("entries within a record are not contiguous".into());
    }
    Ok(())
}
