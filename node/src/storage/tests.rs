//! Storage tests: what was synced comes back, torn tails at every byte, damage, segments,
//! snapshots, and logs of earlier versions.
//!
//! They use temporary directories only and never a node's real data directory.

use std::sync::Arc;

use keel_core::{
    Command, Entry, HardState, Key, LogIndex, NodeId, Snapshot, StateMachine, Term, Write,
};
use proptest::prelude::*;

use super::format::all_zero;
use super::segment::LEGACY_WAL;
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
        membership: Default::default(),
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
                        membership: Default::default(),
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

/// One process at a time: a second open of a directory in use is refused, naming the holder's
/// pid, and succeeds once the first storage is closed (as when its process dies).
#[test]
fn a_data_directory_in_use_is_refused_with_its_holders_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _, _) = open(dir.path());
    let err = Storage::open(dir.path())
        .err()
        .expect("a second open is refused");
    match &err {
        StorageError::Locked { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
        other => panic!("expected Locked, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("in use by another keel process")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(first);
    let (_again, _, _) = open(dir.path());
}
