//! Durable storage for one node: a segmented write-ahead log of hard state and log entries, and
//! the newest snapshot, all checksummed.
//!
//! The meaning of every write is [`DurableState::apply`]: recovery must rebuild exactly the state
//! the core was told is durable. Layout of a data directory:
//!
//! - `wal-00000001.log`, `wal-00000002.log`, ...: the log, in segments. A segment holds a magic,
//!   then records `[len: u32 LE][crc32(payload): u32 LE][payload]`, each payload a
//!   postcard-encoded [`Persist::HardState`] or [`Persist::Entries`]. Appends are buffered by
//!   [`Storage::append`] and made durable together by one `fsync` (group commit); when a segment
//!   passes [`StorageOptions::segment_bytes`], the next write starts a new one (created and its
//!   directory entry synced first). Only the last segment may end in a torn record.
//! - Segments are *preallocated*: the file is extended with zeros in chunks of
//!   [`StorageOptions::preallocate_bytes`] ahead of the records, and records overwrite those
//!   zeros. An `fdatasync` then only has to flush data, not a change of the file's size and
//!   block map (on this machine's ext4: about 70 us instead of 110 us per sync, and the sync is on
//!   every write's critical path). The records end at the first all-zero record header followed
//!   only by zeros.
//! - A *base* segment (magic `KEELWALB`) is complete on its own, given the snapshot: the first
//!   segment of a new directory, and the one written after each snapshot, holding the hard state
//!   and the entries after the snapshot. Recovery replays from the newest base segment on and
//!   deletes the older segments, so compaction never rewrites the whole log and a crash in the
//!   middle of deleting old segments leaves nothing to untangle. Rolled segments carry the magic
//!   `KEELWAL1`.
//! - `snapshot.bin`: the magic `KEELSNP1` and one record holding the newest [`Snapshot`], replaced
//!   atomically (write a temporary file, fsync it, rename it over, fsync the directory), always
//!   before the base segment that follows it.
//!
//! Recovery reads the snapshot, then replays the segments. A torn tail of the last segment (the
//! last record cut short or failing its checksum, as a crash mid-write leaves it) is truncated
//! away with a warning: it was never synced, so nothing acknowledged was in it. Damage anywhere
//! else stops recovery with an error naming the file and the byte offset: a node must not start
//! from a log it cannot trust. (A `wal.log` from before segments is read as the base segment 0.)

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_core::{DurableState, Entry, LogIndex, Persist, Snapshot};

const WAL_MAGIC: &[u8; 8] = b"KEELWAL1";
const BASE_MAGIC: &[u8; 8] = b"KEELWALB";
/// The single-file log of earlier versions, read as base segment 0.
const LEGACY_WAL: &str = "wal.log";
const SNAPSHOT_MAGIC: &[u8; 8] = b"KEELSNP1";
const HEADER: usize = 8;
/// The largest record accepted when reading (a length beyond it is damage, not data).
pub const MAX_RECORD_BYTES: u32 = 256 << 20;

/// Why storage could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("encoding a record: {0}")]
    Encode(#[from] postcard::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What recovery found worth telling the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed from the log.
    pub records: usize,
    /// Bytes of a torn tail cut off the log, and where it began.
    pub truncated_tail: Option<(u64, u64)>,
    /// The segment the torn tail was cut from.
    pub torn_segment: Option<PathBuf>,
}

/// The write and the fsync that make buffered records durable; see
/// [`Storage::write_pending`].
#[must_use = "the records are neither written nor durable until `wait` ran"]
pub struct PendingSync {
    wal: std::sync::Arc<File>,
    path: std::sync::Arc<Path>,
    /// Preallocation: zeros over this range of the file, written before the records.
    zeros: Option<(u64, u64)>,
    /// The records, and where in the file they go.
    records: Vec<u8>,
    at: u64,
    /// Where the segment's records end once these are written, for the next
    /// [`Storage::write_pending`] to check.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl PendingSync {
    /// Writes the records and blocks until they are durable.
    pub fn wait(self) -> Result<(), StorageError> {
        if let Some((from, to)) = self.zeros {
            write_zeros(&self.wal, from, to).map_err(io(&self.path))?;
        }
        self.wal
            .write_all_at(&self.records, self.at)
            .map_err(io(&self.path))?;
        self.written.store(
            self.at + self.records.len() as u64,
            std::sync::atomic::Ordering::Release,
        );
        self.wal.sync_data().map_err(io(&self.path))
    }
}

/// Storage settings, each with its default (the `[storage]` table of `--config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageOptions {
    /// A segment that reached this size is closed and the next write starts a new one.
    /// Default 64 MiB.
    pub segment_bytes: u64,
    /// How far ahead of its records a segment is extended with zeros, at most, so that syncing
    /// a write does not also sync a new file size. The first extension of a segment is 64 KiB
    /// and each next one doubles up to this (a segment is often cut short by a snapshot: its
    /// zeros are written for nothing). 0 turns preallocation off (every write grows the file).
    /// Default 4 MiB.
    pub preallocate_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 << 20,
            preallocate_bytes: 4 << 20,
        }
    }
}

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:08}.log")
}

/// The log segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
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

/// One node's durable state on disk.
pub struct Storage {
    dir: PathBuf,
    options: StorageOptions,
    /// The segment being written, and its path. Shared with the [`PendingSync`]s handed out,
    /// which write and fsync it.
    wal: std::sync::Arc<File>,
    path: std::sync::Arc<Path>,
    /// Its sequence number, where its records end, and its length on disk (the records and
    /// the zeros preallocated after them).
    seq: u64,
    seg_len: u64,
    alloc_len: u64,
    /// Encoded records appended since the last sync.
    pending: Vec<u8>,
    /// Where the records written to the segment end (set by [`PendingSync::wait`]). A write
    /// handed out but never carried out would leave a hole in the log: the next one refuses
    /// to go on.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What is durable once `pending` is synced: the mirror the log is rewritten from.
    state: DurableState,
}

impl Storage {
    /// Opens (or creates) the data directory and recovers the durable state.
    pub fn open(dir: &Path) -> Result<(Storage, DurableState, Recovery), StorageError> {
        Storage::open_with(dir, StorageOptions::default())
    }

    pub fn open_with(
        dir: &Path,
        options: StorageOptions,
    ) -> Result<(Storage, DurableState, Recovery), StorageError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let snapshot = read_snapshot(&dir.join("snapshot.bin"))?;
        let mut found = segments(dir)?;
        if found.is_empty() {
            replace_atomically(dir, &segment_name(1), BASE_MAGIC)?;
            found = segments(dir)?;
        }
        // Replay from the newest base segment; older ones are superseded by it.
        let mut magics = Vec::with_capacity(found.len());
        for (seq, path) in &found {
            magics.push((*seq, magic_of(path)?));
        }
        let base = magics
            .iter()
            .rposition(|(seq, m)| m == BASE_MAGIC || *seq == 0)
            .unwrap_or(0);
        for (_, path) in &found[..base] {
            fs::remove_file(path).map_err(io(path))?;
        }
        let live = &found[base..];
        // The log continues the snapshot (if it was rewritten after it) or predates it.
        let mut state = DurableState {
            snapshot: snapshot.clone(),
            ..DurableState::default()
        };
        let mut recovery = Recovery::default();
        let mut end = HEADER as u64;
        for (i, (_, path)) in live.iter().enumerate() {
            let last = i + 1 == live.len();
            let (s, r, e) = replay(path, state, last)?;
            state = s;
            end = e;
            recovery.records += r.records;
            if r.truncated_tail.is_some() {
                recovery.truncated_tail = r.truncated_tail;
                recovery.torn_segment = Some(path.clone());
            }
        }
        if let Some(snap) = snapshot {
            install_snapshot(&mut state, snap);
        }
        let (seq, path) = live
            .last()
            .cloned()
            .unwrap_or((1, dir.join(segment_name(1))));
        let wal = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let alloc_len = wal.metadata().map_err(io(&path))?.len();
        let storage = Storage {
            dir: dir.to_path_buf(),
            options,
            wal: std::sync::Arc::new(wal),
            path: path.into(),
            seq,
            seg_len: end,
            alloc_len,
            pending: Vec::new(),
            written: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(end)),
            state: state.clone(),
        };
        Ok((storage, state, recovery))
    }

    /// Buffers a write; it is durable after the next [`Storage::sync`]. A snapshot is written
    /// (and the log compacted) at once, after syncing what was buffered before it.
    pub fn append(&mut self, p: &Persist) -> Result<(), StorageError> {
        match p {
            Persist::Snapshot(snap) => {
                self.sync()?;
                self.state.apply(p);
                self.write_snapshot(snap)?;
                self.rewrite_wal()
            }
            Persist::HardState(_) | Persist::Entries(_) => {
                push_record(&mut self.pending, p)?;
                self.state.apply(p);
                Ok(())
            }
        }
    }

    /// Makes every buffered write durable with one write and one fsync.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        match self.write_pending()? {
            Some(s) => s.wait(),
            None => Ok(()),
        }
    }

    /// Hands out the write of every buffered record to the log file and the fsync that make
    /// them durable, for the caller to run with [`PendingSync::wait`] where blocking is fine
    /// (a leader sends its AppendEntries first: its followers write while it does). `None` if
    /// nothing was buffered. Nothing that depends on these records may leave before
    /// [`PendingSync::wait`] returned `Ok`; if it fails, the node must stop (after a failed
    /// fsync the kernel may have dropped the pages: retrying could report a false success).
    /// Each one must be waited for before the next is asked for.
    pub fn write_pending(&mut self) -> Result<Option<PendingSync>, StorageError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        if self.written.load(std::sync::atomic::Ordering::Acquire) != self.seg_len {
            return Err(StorageError::Io {
                path: self.path.to_path_buf(),
                source: std::io::Error::other("an earlier write of the log was never carried out"),
            });
        }
        if self.seg_len > HEADER as u64
            && self.seg_len + self.pending.len() as u64 > self.options.segment_bytes
        {
            self.start_segment(WAL_MAGIC, &[])?;
        }
        let end = self.seg_len + self.pending.len() as u64;
        let mut zeros = None;
        if end > self.alloc_len && self.options.preallocate_bytes > 0 {
            // Zeros first, then the records over them: both are durable after the one sync.
            // The chunk grows with the segment (64 KiB, then doubling up to the setting): a
            // segment cut short by the next snapshot, as most are, costs few zeros.
            let chunk = self
                .alloc_len
                .max(64 << 10)
                .min(self.options.preallocate_bytes);
            let to = end + chunk;
            zeros = Some((end, to));
            self.alloc_len = to;
        }
        let at = self.seg_len;
        self.seg_len = end;
        self.alloc_len = self.alloc_len.max(end);
        let records = std::mem::replace(&mut self.pending, Vec::with_capacity(256));
        Ok(Some(PendingSync {
            wal: self.wal.clone(),
            path: self.path.clone(),
            zeros,
            records,
            at,
            written: self.written.clone(),
        }))
    }

    /// The state as of the last append (durable once synced).
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    fn write_snapshot(&self, snap: &Snapshot) -> Result<(), StorageError> {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        push_record(&mut bytes, snap)?;
        replace_atomically(&self.dir, "snapshot.bin", &bytes)
    }

    /// After a snapshot: a new base segment holding only the hard state and the entries after
    /// the snapshot, then the older segments go.
    fn rewrite_wal(&mut self) -> Result<(), StorageError> {
        let mut records = Vec::new();
        push_record(&mut records, &Persist::HardState(self.state.hard_state))?;
        if !self.state.entries.is_empty() {
            push_record(&mut records, &Persist::Entries(self.state.entries.clone()))?;
        }
        let old = segments(&self.dir)?;
        self.start_segment(BASE_MAGIC, &records)?;
        for (seq, path) in old {
            if seq < self.seq {
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// Creates the next segment, durably (contents, then its directory entry), and writes to it
    /// from now on.
    fn start_segment(&mut self, magic: &[u8; 8], records: &[u8]) -> Result<(), StorageError> {
        let seq = self.seq + 1;
        let name = segment_name(seq);
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(records);
        let seg_len = bytes.len() as u64;
        replace_atomically(&self.dir, &name, &bytes)?;
        let path = self.dir.join(&name);
        let wal = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        self.wal = std::sync::Arc::new(wal);
        self.path = path.into();
        self.written
            .store(seg_len, std::sync::atomic::Ordering::Release);
        self.seq = seq;
        self.seg_len = seg_len;
        self.alloc_len = bytes.len() as u64;
        Ok(())
    }
}

/// The first bytes of a segment (shorter if the file is).
fn magic_of(path: &Path) -> Result<Vec<u8>, StorageError> {
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
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Appends `value` to `buf` as one record: the payload's length and checksum, then the payload
/// (postcard), serialized in place (no vector of its own). On an error `buf` is left as it was.
fn push_record<T: serde::Serialize + ?Sized>(
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

/// Writes `name` in `dir` so that a crash leaves either the old or the new content, whole.
fn replace_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
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

/// The newest snapshot in `path`, if the file exists.
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageError> {
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

enum Record<'a> {
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

fn next_record(bytes: &[u8], at: usize) -> Record<'_> {
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

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Replays one segment into a durable state; also returns where its records end. In the `last`
/// segment a torn tail is cut off; in any other, damage of any kind is an error (it was synced
/// whole before the next one began).
fn replay(
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
fn check_contiguous(state: &DurableState, p: &Persist) -> Result<(), String> {
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

fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    f.set_len(len).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Puts the snapshot under a log replayed from disk. The log either still holds everything
/// (the rewrite after the snapshot did not happen) or starts right after the snapshot.
fn install_snapshot(state: &mut DurableState, snap: Snapshot) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_core::{Command, HardState, Key, NodeId, StateMachine, Term, Write};
    use proptest::prelude::*;

    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            command: Arc::new(Command::Write(Write::Put {
                key: Key::user(format!("k{index}")),
                value: format!("v{index}"),
            })),
        }
    }

    fn hs(term: u64, vote: Option<u32>) -> Persist {
        Persist::HardState(HardState {
            term: Term(term),
            voted_for: vote.map(NodeId),
        })
    }

    fn open(dir: &Path) -> (Storage, DurableState, Recovery) {
        Storage::open(dir).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn what_was_synced_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, state, _) = open(dir.path());
        assert_eq!(state, DurableState::default());
        let writes = [
            hs(1, Some(1)),
            Persist::Entries(vec![entry(1, 1), entry(1, 2), entry(1, 3)]),
            Persist::Entries(vec![entry(2, 3)]),
            hs(2, None),
        ];
        let mut reference = DurableState::default();
        for w in &writes {
            s.append(w).expect("append");
            reference.apply(w);
        }
        s.sync().expect("sync");
        drop(s);
        let (_, state, rec) = open(dir.path());
        assert_eq!(state, reference);
        assert_eq!(rec.records, 4);
        assert_eq!(rec.truncated_tail, None);
    }

    #[test]
    fn unsynced_appends_are_not_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = open(dir.path());
        s.append(&hs(3, Some(2))).expect("append");
        drop(s); // a crash before sync
        let (_, state, _) = open(dir.path());
        assert_eq!(state, DurableState::default());
    }

    /// `write_pending` only hands the write out: nothing reaches the file before `wait`, and a
    /// write handed out but dropped (which would leave a hole in the log) stops the next one.
    #[test]
    fn records_reach_the_file_in_wait_and_a_dropped_write_stops_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = open(dir.path());
        let path = dir.path().join(segment_name(1));
        let file = || fs::read(&path).expect("read");
        s.append(&hs(1, Some(1))).expect("append");
        let before = file();
        let pending = s
            .write_pending()
            .expect("write")
            .expect("something to write");
        assert_eq!(file(), before, "nothing written before wait");
        pending.wait().expect("wait");
        assert_ne!(file(), before);
        s.append(&hs(2, None)).expect("append");
        drop(s.write_pending().expect("write"));
        s.append(&hs(3, None)).expect("append");
        let text = s.write_pending().err().expect("refused").to_string();
        assert!(text.contains("never carried out"), "{text}");
    }

    /// The storage test the issue asks for: cut the log at every byte of its last record,
    /// either at the end of the file (an append that grew the file) or with zeros after the cut
    /// (a write into preallocated space that did not all reach the disk). Recovery keeps the
    /// records before it, and the log takes new writes after it.
    #[test]
    fn a_log_cut_at_every_byte_of_its_last_record_recovers_the_records_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StorageOptions {
            preallocate_bytes: 512,
            ..StorageOptions::default()
        };
        let (mut s, _, _) = Storage::open_with(dir.path(), options).expect("open");
        let before = [
            hs(1, Some(1)),
            Persist::Entries(vec![entry(1, 1), entry(1, 2)]),
        ];
        for w in &before {
            s.append(w).expect("append");
        }
        s.sync().expect("sync");
        let seg = segment_name(1);
        let good_len = s.seg_len;
        s.append(&Persist::Entries(vec![entry(1, 3), entry(1, 4)]))
            .expect("append");
        s.sync().expect("sync");
        let end = s.seg_len as usize;
        drop(s);
        let full = fs::read(dir.path().join(&seg)).expect("read");
        assert!(full.len() > end, "preallocated");
        assert!(all_zero(&full[end..]));
        let mut reference = DurableState::default();
        for w in &before {
            reference.apply(w);
        }
        let more = Persist::Entries(vec![entry(1, 3)]);
        let mut after = reference.clone();
        after.apply(&more);
        for cut in good_len as usize..end {
            for zeroed in [false, true] {
                let case = tempfile::tempdir().expect("tempdir");
                let mut bytes = full[..cut].to_vec();
                if zeroed {
                    bytes.resize(full.len(), 0);
                }
                fs::write(case.path().join(&seg), &bytes).expect("write");
                let (mut s, state, rec) = Storage::open_with(case.path(), options)
                    .unwrap_or_else(|e| panic!("cut at {cut} (zeroed {zeroed}): {e}"));
                assert_eq!(state, reference, "cut at {cut}");
                assert_eq!(s.seg_len, good_len, "cut at {cut}");
                if !zeroed && cut > good_len as usize {
                    assert_eq!(
                        rec.truncated_tail,
                        Some((good_len, cut as u64 - good_len)),
                        "cut at {cut}"
                    );
                    assert_eq!(
                        fs::metadata(case.path().join(&seg)).expect("meta").len(),
                        good_len,
                        "the torn tail is truncated away (cut at {cut})"
                    );
                }
                s.append(&more).expect("append");
                s.sync().expect("sync");
                drop(s);
                let (_, state, rec) = Storage::open_with(case.path(), options).expect("reopen");
                assert_eq!(state, after, "cut at {cut} (zeroed {zeroed}), then a write");
                assert_eq!(rec.truncated_tail, None);
            }
        }
    }

    /// Preallocated zeros are not records, and the file grows ahead of the records in chunks.
    #[test]
    fn a_preallocated_segment_ends_where_its_records_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StorageOptions {
            preallocate_bytes: 1000,
            ..StorageOptions::default()
        };
        let (mut s, _, _) = Storage::open_with(dir.path(), options).expect("open");
        let mut reference = DurableState::default();
        for i in 1..=30 {
            let w = Persist::Entries(vec![entry(1, i)]);
            s.append(&w).expect("append");
            s.sync().expect("sync");
            reference.apply(&w);
            let len = fs::metadata(dir.path().join(segment_name(1)))
                .expect("meta")
                .len();
            assert!(len > s.seg_len && len <= s.seg_len + 1000 + 100, "{len}");
        }
        drop(s);
        let (_, state, rec) = Storage::open_with(dir.path(), options).expect("reopen");
        assert_eq!(state, reference);
        assert_eq!((rec.records, rec.truncated_tail), (30, None));
        // Without preallocation the same log reads the same.
        let plain = StorageOptions {
            preallocate_bytes: 0,
            ..options
        };
        assert_eq!(
            Storage::open_with(dir.path(), plain).expect("reopen").1,
            reference
        );
        // Data after the zeros is damage, not a tail to cut.
        let path = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&path).expect("read");
        let n = bytes.len();
        bytes[n - 1] = 7;
        fs::write(&path, &bytes).expect("write");
        let text = Storage::open_with(dir.path(), options)
            .err()
            .expect("refused")
            .to_string();
        assert!(text.contains("empty record before more data"), "{text}");
    }

    #[test]
    fn damage_before_the_tail_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = open(dir.path());
        s.append(&hs(1, Some(1))).expect("append");
        s.append(&Persist::Entries(vec![entry(1, 1)]))
            .expect("append");
        s.sync().expect("sync");
        drop(s);
        let path = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&path).expect("read");
        // Flip a byte inside the first record's payload.
        bytes[HEADER + 8] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let err = Storage::open(dir.path()).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("wal-00000001.log") && text.contains("byte 8"),
            "{text}"
        );
        // A file that is not a log at all.
        fs::write(&path, b"garbage!garbage!").expect("write");
        let text = Storage::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(text.contains("bad magic"), "{text}");
    }

    #[test]
    fn a_snapshot_compacts_the_log_and_survives_a_crash_before_the_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = open(dir.path());
        s.append(&hs(2, Some(1))).expect("append");
        s.append(&Persist::Entries((1..=5).map(|i| entry(2, i)).collect()))
            .expect("append");
        s.sync().expect("sync");
        let old_wal = fs::read(dir.path().join(segment_name(1))).expect("read");
        let snap = Snapshot {
            last_index: LogIndex(3),
            last_term: Term(2),
            state: Arc::new(StateMachine::default()),
        };
        s.append(&Persist::Snapshot(snap.clone()))
            .expect("snapshot");
        let expected = s.state().clone();
        assert_eq!(expected.entries.len(), 2);
        drop(s);
        let (_, state, _) = open(dir.path());
        assert_eq!(state, expected);
        let listed = segments(dir.path()).expect("list");
        assert_eq!(
            listed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![2],
            "the old segment is gone, a base segment replaces it"
        );
        assert!(fs::metadata(&listed[0].1).expect("meta").len() < old_wal.len() as u64);
        // A crash after the new base segment was written, before the old one was deleted.
        fs::write(dir.path().join(segment_name(1)), &old_wal).expect("write");
        let (_, state, _) = open(dir.path());
        assert_eq!(state, expected);
        assert_eq!(segments(dir.path()).expect("list").len(), 1, "cleaned up");
        // A crash after the snapshot was renamed in, before the new base segment existed.
        fs::remove_file(dir.path().join(segment_name(2))).expect("remove");
        fs::write(dir.path().join(segment_name(1)), &old_wal).expect("write");
        let (_, state, _) = open(dir.path());
        assert_eq!(state, expected);
    }

    #[test]
    fn a_single_file_log_of_an_earlier_version_is_read_as_the_first_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Persist::Entries(vec![entry(1, 1), entry(1, 2)]);
        let mut bytes = WAL_MAGIC.to_vec();
        push_record(&mut bytes, &w).expect("encode");
        fs::write(dir.path().join(LEGACY_WAL), &bytes).expect("write");
        let (mut s, state, _) = open(dir.path());
        let mut reference = DurableState::default();
        reference.apply(&w);
        assert_eq!(state, reference);
        let more = Persist::Entries(vec![entry(1, 3)]);
        s.append(&more).expect("append");
        s.sync().expect("sync");
        reference.apply(&more);
        drop(s);
        assert_eq!(open(dir.path()).1, reference);
    }

    /// Preallocation grows with the segment: 64 KiB first, then as much as the file already
    /// holds, up to the setting.
    #[test]
    fn preallocation_chunks_start_small_and_double_up_to_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StorageOptions {
            preallocate_bytes: 256 << 10,
            ..StorageOptions::default()
        };
        let (mut s, _, _) = Storage::open_with(dir.path(), options).expect("open");
        let big = |i: u64| {
            Persist::Entries(vec![Entry {
                term: Term(1),
                index: LogIndex(i),
                command: Arc::new(Command::Write(Write::Put {
                    key: Key::user("k"),
                    value: "x".repeat(4000),
                })),
            }])
        };
        let mut chunks = Vec::new();
        let mut alloc = fs::metadata(dir.path().join(segment_name(1)))
            .expect("meta")
            .len();
        for i in 1..=400 {
            s.append(&big(i)).expect("append");
            s.sync().expect("sync");
            let len = fs::metadata(dir.path().join(segment_name(1)))
                .expect("meta")
                .len();
            assert_eq!(len, s.alloc_len);
            if len != alloc {
                chunks.push((len - s.seg_len, alloc));
                alloc = len;
            }
        }
        assert!(chunks.len() >= 4, "{chunks:?}");
        assert_eq!(chunks[0].0, 64 << 10, "{chunks:?}");
        for (chunk, before) in &chunks {
            assert_eq!(*chunk, (*before).clamp(64 << 10, 256 << 10), "{chunks:?}");
        }
        assert_eq!(chunks.last().map(|c| c.0), Some(256 << 10), "{chunks:?}");
    }

    /// Small segments; not preallocated, so that a segment's last byte is a record's.
    fn small() -> StorageOptions {
        StorageOptions {
            segment_bytes: 300,
            preallocate_bytes: 0,
        }
    }

    #[test]
    fn the_log_rolls_into_segments_and_comes_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = Storage::open_with(dir.path(), small()).expect("open");
        let mut reference = DurableState::default();
        for i in 1..=40 {
            let w = Persist::Entries(vec![entry(1, i)]);
            s.append(&w).expect("append");
            s.sync().expect("sync");
            reference.apply(&w);
        }
        drop(s);
        let listed = segments(dir.path()).expect("list");
        assert!(listed.len() > 3, "rolled: {listed:?}");
        let (_, state, rec) = Storage::open_with(dir.path(), small()).expect("reopen");
        assert_eq!(state, reference);
        assert_eq!(rec.records, 40);
        // Damage in a segment that is not the last is never taken for a torn tail, even at its
        // very end.
        let (_, first) = &listed[0];
        let bytes = fs::read(first).expect("read");
        fs::write(first, &bytes[..bytes.len() - 1]).expect("write");
        let text = Storage::open_with(dir.path(), small())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            text.contains("wal-00000001.log") && text.contains("cut short"),
            "{text}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever sequence of writes, recovery gives what DurableState::apply (the core's
        /// reference meaning) gives.
        #[test]
        fn recovery_agrees_with_the_reference(ops in prop::collection::vec((0u8..4, 1u64..4, 0u64..3), 1..40)) {
            let dir = tempfile::tempdir().expect("tempdir");
            // Small segments, so that rolling and compaction happen within a few writes, and
            // preallocation chunks smaller than some records.
            let options = StorageOptions { preallocate_bytes: 64, ..small() };
            let (mut s, _, _) = Storage::open_with(dir.path(), options).expect("open");
            let mut reference = DurableState::default();
            let mut term = 1;
            for (kind, n, back) in ops {
                let w = match kind {
                    0 => { term += 1; hs(term, Some(1)) }
                    1 | 2 => {
                        let start = reference.last_index().0.saturating_sub(back) + 1;
                        let floor = reference.snapshot.as_ref().map_or(1, |s| s.last_index.0 + 1);
                        let start = start.max(floor);
                        Persist::Entries((start..start + n).map(|i| entry(term, i)).collect())
                    }
                    _ => match reference.entries.last() {
                        Some(e) => Persist::Snapshot(Snapshot {
                            last_index: e.index,
                            last_term: e.term,
                            state: Arc::new(StateMachine::default()),
                        }),
                        None => hs(term, None),
                    },
                };
                s.append(&w).expect("append");
                reference.apply(&w);
                s.sync().expect("sync");
            }
            drop(s);
            let (_, state, _) = Storage::open_with(dir.path(), options).expect("reopen");
            prop_assert_eq!(state, reference);
        }
    }
}
