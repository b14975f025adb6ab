//! The data directory's lock: one `keel` process at a time may use a data directory.
//!
//! Owns: the file `LOCK` in the data directory, held with an exclusive advisory lock (`flock`)
//! for as long as the storage is open, and the holder's pid written in it so that a refusal can
//! name the process that holds it. The kernel releases the lock when the holder exits in any
//! way, SIGKILL included, so a crashed node never leaves a stale lock behind. Never: deletes the
//! file or breaks another process's lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{io, StorageError};

/// The lock's file name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// How long a lock that names this very process is waited for: a child this process is forking
/// (a workload's shim) shares every open file of the process, the lock's included, from its fork
/// until it executes its program; a storage dropped in that window stays locked that long.
const OWN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A held lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir`, or refuses with the pid of the process that holds it. A lock
    /// that names this process is waited for up to [`OWN_LOCK_WAIT`] first (see there).
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let until = std::time::Instant::now() + OWN_LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let holder = holder(&mut file);
                    let ours = holder == Some(std::process::id());
                    if !ours || std::time::Instant::now() >= until {
                        let dir = dir.to_path_buf();
                        return Err(StorageError::Locked { dir, holder });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        write_pid(&mut file, &path)?;
        Ok(DirLock { _file: file })
    }
}

/// The pid the holder wrote into the lock file, if it is readable.
fn holder(file: &mut File) -> Option<u32> {
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File, path: &Path) -> Result<(), StorageError> {
    file.set_len(0).map_err(io(path))?;
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(path))
}
