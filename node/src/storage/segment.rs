//! Log segment files and the file operations storage relies on: naming and listing segments,
//! reading a segment's magic, preallocating with zeros, truncating a torn tail, and replacing a
//! file atomically.
//!
//! No record decoding here (see [`super::format`]); every operation either completes or
//! reports the file it failed on.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::HEADER;
use super::{io, StorageError};

/// The single-file log of earlier versions, read as base segment 0.
pub(super) const LEGACY_WAL: &str = "wal.log";
pub(super) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:08}.log")
}

/// The log segments in `dir`, oldest first.
pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let seq = if name == LEGACY_WAL {
            Some(0)
        } else {
            name.strip_prefix("wal-")
                .and_then(|n| n.strip_suffix(".log"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(seq) = seq {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The first bytes of a segment (shorter if the file is).
pub(super) fn magic_of(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut buf = [0u8; HEADER];
    let mut n = 0;
    while n < HEADER {
        match f.read(&mut buf[n..]).map_err(io(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(buf[..n].to_vec())
}

/// Writes zeros over `from..to` of `file`.
pub(super) fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

pub(super) fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    f.set_len(len).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes `name` in `dir` so that a crash leaves either the old or the new content, whole.
pub(super) fn replace_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}
