//! The snapshot file (`snapshot.bin`): the magic `KEELSNP1` and one record holding the newest
//! snapshot, replaced atomically; and how a recovered log is put under it.
//!
//! It never touches log segments.

use std::fs;
use std::path::Path;

use keel_core::{DurableState, Snapshot};

use super::format::{next_record, push_record, Record, HEADER, SNAPSHOT_MAGIC};
use super::segment::replace_atomically;
use super::{io, StorageError};

/// Writes `snap` as `dir`'s snapshot file, atomically.
pub(super) fn write(dir: &Path, snap: &Snapshot) -> Result<(), StorageError> {
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    push_record(&mut bytes, snap)?;
    replace_atomically(dir, "snapshot.bin", &bytes)
}

/// The newest snapshot in `path`, if the file exists.
pub(super) fn read(path: &Path) -> Result<Option<Snapshot>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let corrupt = |offset: usize, reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    if bytes.len() < HEADER || &bytes[..HEADER] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a keel snapshot (bad magic)"));
    }
    match next_record(&bytes, HEADER) {
        Record::Ok { payload, .. } => postcard::from_bytes(payload)
            .map(Some)
            .map_err(|e| corrupt(HEADER, &format!("undecodable snapshot: {e}"))),
        // A snapshot file is replaced atomically: a partial one is damage, never a torn write.
        Record::Torn { reason } | Record::Bad { reason } => Err(corrupt(HEADER, &reason)),
        Record::End => Err(corrupt(HEADER, "empty snapshot file")),
    }
}

/// Puts the snapshot under a log replayed from disk. The log either still holds everything
/// (the rewrite after the snapshot did not happen) or starts right after the snapshot.
pub(super) fn install(state: &mut DurableState, snap: Snapshot) {
    let last = snap.last_index;
    let holds_last = state
        .entries
        .iter()
        .any(|e| e.index == last && e.term == snap.last_term);
    let starts_after = state
        .entries
        .first()
        .is_some_and(|e| e.index.0 == last.0 + 1);
    if holds_last {
        state.entries.retain(|e| e.index > last);
    } else if !starts_after {
        state.entries.clear();
    }
    state.snapshot = Some(snap);
}
