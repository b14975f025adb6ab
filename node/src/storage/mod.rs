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
//! - `LOCK`: held with an exclusive lock while a process has the directory open, with that
//!   process's pid in it; a second process is refused, naming the pid (see `lock.rs`).
//!
//! Recovery reads the snapshot, then replays the segments. A torn tail of the last segment (the
//! last record cut short or failing its checksum, as a crash mid-write leaves it) is truncated
//! away with a warning: it was never synced, so nothing acknowledged was in it. Damage anywhere
//! else stops recovery with an error naming the file and the byte offset: a node must not start
//! from a log it cannot trust. (A `wal.log` from before segments is read as the base segment 0.)

mod format;
pub mod identity;
mod lock;
mod recovery;
mod segment;
mod snapshot;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_core::{DurableState, Persist};

pub use self::format::MAX_RECORD_BYTES;
use self::format::{push_record, BASE_MAGIC, HEADER, WAL_MAGIC};
use self::recovery::replay;
use self::segment::{magic_of, replace_atomically, segment_name, segments, write_zeros};

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
    /// Another process holds the data directory (see `lock.rs`).
    #[error(
        "{dir}: the data directory is in use by another keel process ({}); stop it first, or \
         give this node another --data-dir",
        holder.map_or("pid unknown".to_string(), |pid| format!("pid {pid}"))
    )]
    Locked { dir: PathBuf, holder: Option<u32> },
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
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
    /// The data directory's lock, held while this storage is open.
    _lock: lock::DirLock,
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
        let lock = lock::DirLock::acquire(dir)?;
        let snapshot = snapshot::read(&dir.join("snapshot.bin"))?;
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
            snapshot::install(&mut state, snap);
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
            _lock: lock,
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
                snapshot::write(&self.dir, snap)?;
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
