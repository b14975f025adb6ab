//! The event queue: events in (time, scheduling sequence) order, so events at one instant run in
//! the order they were scheduled.
//!
//! A calendar queue. Almost every event is scheduled a few milliseconds ahead (a message's
//! latency, a CPU step, an fsync), so the near future is a ring of [`BUCKETS`] buckets of
//! 2^[`BUCKET_SHIFT`] µs each, with a bitmap of the non-empty ones; each bucket is a list of its
//! few events in ascending order, the earliest first. Events beyond the ring's reach wait in a
//! binary heap and move into the ring as time reaches them. Scheduling and taking an event cost a
//! few comparisons instead of a heap's sift through dozens of pending events.
//!
//! The events themselves live in one slab whose free slots are reused last-freed-first, linked
//! into their bucket's list through the slab. A run has a hundred or so events pending at any
//! moment, so the slots in use stay few and warm in the cache, while the ring (a pair of slot
//! numbers per bucket) is small: an event is written once, into a recently freed slot, and read
//! once. (Buckets that each owned a buffer spread the same events over a thousand allocations,
//! one of them cold at almost every schedule and every take.)
//!
//! A bucket needs no sequence numbers: an event is scheduled after every event already in its
//! bucket at the same or an earlier time, which is exactly scheduling order, because every event
//! of a bucket the ring reaches is in the ring (the far heap is emptied into a bucket as soon as the
//! ring reaches it, and keeps sequence numbers to hand its events over in order).
//!
//! The queue never looks inside an event and never reorders two events of one instant.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A bucket spans 2^8 µs (a quarter of a millisecond): few enough events land in one that a new
/// event almost always sorts last.
const BUCKET_SHIFT: u32 = 8;
/// The ring covers 1024 buckets (about a quarter of a second).
const BUCKETS: u64 = 1024;
const WORDS: usize = (BUCKETS / 64) as usize;
/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

/// One event of the slab, or a free slot (`ev` is `None`).
struct Slot<T> {
    time: u64,
    /// The next slot of the same bucket (or of the free list).
    next: u32,
    ev: Option<T>,
}

pub(super) struct EventQueue<T> {
    seq: u64,
    /// The time of the event taken last.
    time: u64,
    slots: Vec<Slot<T>>,
    /// The most recently freed slot (the free list runs through `Slot::next`).
    free: u32,
    /// `head[b % BUCKETS]` and `tail[...]`: the first and last slot of bucket `b`'s list, for
    /// `base <= b < base + BUCKETS`, ascending by time and, at equal times, in scheduling order.
    /// Meaningful only while the bucket's `occupied` bit is set.
    head: Box<[u32]>,
    tail: Box<[u32]>,
    /// Bit `i` set: bucket `i` of the ring is not empty.
    occupied: [u64; WORDS],
    /// The bucket (time >> BUCKET_SHIFT) of the current time: nothing earlier is pending.
    base: u64,
    /// Events of buckets at or beyond `base + BUCKETS`: (time, sequence, slot).
    far: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// The bucket of the earliest far event (`u64::MAX` when there is none), so that advancing
    /// the ring looks at the heap only when it reaches that bucket.
    far_bucket: u64,
}

impl<T> EventQueue<T> {
    pub(super) fn new() -> Self {
        EventQueue {
            seq: 0,
            time: 0,
            slots: Vec::with_capacity(256),
            free: NIL,
            head: vec![NIL; BUCKETS as usize].into_boxed_slice(),
            tail: vec![NIL; BUCKETS as usize].into_boxed_slice(),
            occupied: [0; WORDS],
            base: 0,
            far: BinaryHeap::new(),
            far_bucket: u64::MAX,
        }
    }

    /// Schedules `ev` at `time`, after every event already scheduled at that time.
    pub(super) fn push(&mut self, time: u64, ev: T) {
        self.push_with(time, || ev);
    }

    /// [`Self::push`] of the event `make` builds, inlined into the caller: for the hottest call
    /// site. Built where it is stored, the event is not first assembled on the stack and then
    /// copied in chunks that straddle the stores that assembled it (which stalls the CPU).
    #[inline(always)]
    pub(super) fn push_with(&mut self, time: u64, make: impl FnOnce() -> T) {
        let s = self.store(time, make);
        // An event in the past (never scheduled by the engine) goes to the current bucket, where
        // it still sorts first.
        let bucket = (time >> BUCKET_SHIFT).max(self.base);
        if bucket >= self.base + BUCKETS {
            self.seq += 1;
            self.far_bucket = self.far_bucket.min(bucket);
            self.far.push(Reverse((time, self.seq, s)));
            return;
        }
        self.link(bucket, s);
    }

    /// Puts the event into a slot, the most recently freed one if there is one.
    #[inline(always)]
    fn store(&mut self, time: u64, make: impl FnOnce() -> T) -> u32 {
        match self.slots.get_mut(self.free as usize) {
            Some(slot) => {
                let s = self.free;
                self.free = slot.next;
                slot.time = time;
                slot.ev = Some(make());
                s
            }
            None => {
                let s = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&s| s != NIL)
                    .expect("fewer than 2^32 - 1 events pending");
                self.slots.push(Slot {
                    time,
                    next: NIL,
                    ev: Some(make()),
                });
                s
            }
        }
    }

    /// Links slot `s` into the ring's bucket `bucket`, after every event there at its time or
    /// earlier.
    #[inline(always)]
    fn link(&mut self, bucket: u64, s: u32) {
        let i = (bucket % BUCKETS) as usize;
        let time = self.slots[s as usize].time;
        let bit = 1u64 << (i % 64);
        if self.occupied[i / 64] & bit == 0 {
            self.occupied[i / 64] |= bit;
            self.slots[s as usize].next = NIL;
            self.head[i] = s;
            self.tail[i] = s;
            return;
        }
        // A new event usually sorts last (latest).
        let last = self.tail[i];
        if self.slots[last as usize].time <= time {
            self.slots[last as usize].next = s;
            self.slots[s as usize].next = NIL;
            self.tail[i] = s;
            return;
        }
        let first = self.head[i];
        if self.slots[first as usize].time > time {
            // Earlier than everything in the bucket (usually a single event).
            self.slots[s as usize].next = first;
            self.head[i] = s;
            return;
        }
        // Somewhere in between: after the last event at `time` or earlier, which is not the
        // tail (the tail is later than `time`).
        let mut p = first;
        loop {
            let next = self.slots[p as usize].next;
            if self.slots[next as usize].time > time {
                self.slots[s as usize].next = next;
                self.slots[p as usize].next = s;
                return;
            }
            p = next;
        }
    }

    /// The ring index of the first non-empty bucket at or after ring index `from`, wrapping.
    fn next_occupied(&self, from: usize) -> Option<usize> {
        let (w0, b0) = (from / 64, from % 64);
        let first = self.occupied[w0] & (!0u64 << b0);
        if first != 0 {
            return Some(w0 * 64 + first.trailing_zeros() as usize);
        }
        for k in 1..=WORDS {
            let w = (w0 + k) % WORDS;
            let mut bits = self.occupied[w];
            if k == WORDS {
                // Back at the first word: only the positions before `from`.
                bits &= !(!0u64 << b0);
            }
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }

    /// Moves every far event that the ring now reaches into the ring, in (time, sequence)
    /// order.
    #[inline(always)]
    fn pull_far(&mut self) {
        if self.far_bucket < self.base + BUCKETS {
            self.pull_far_now();
        }
    }

    #[inline(never)]
    fn pull_far_now(&mut self) {
        while let Some(&Reverse((time, _, s))) = self.far.peek() {
            if time >> BUCKET_SHIFT >= self.base + BUCKETS {
                break;
            }
            self.far.pop();
            self.link((time >> BUCKET_SHIFT).max(self.base), s);
        }
        self.far_bucket = self
            .far
            .peek()
            .map_or(u64::MAX, |Reverse((time, _, _))| time >> BUCKET_SHIFT);
    }

    /// Takes the earliest event; [`Self::time`] is its time then. The event comes back in the
    /// `Option` it had in its slot, untouched: wrapping it anew with its time (as a tuple) made
    /// the compiler copy it through the stack at odd offsets, which stalls store forwarding on
    /// the hottest path of the engine.
    #[inline(always)]
    pub(super) fn pop(&mut self) -> Option<T> {
        let from = (self.base % BUCKETS) as usize;
        let i = match self.next_occupied(from) {
            Some(i) => {
                let d = (i + BUCKETS as usize - from) % BUCKETS as usize;
                if d > 0 {
                    self.base += d as u64;
                    // Far events the ring reaches now land after bucket `base`.
                    self.pull_far();
                }
                i
            }
            None => {
                let Reverse((first, _, _)) = *self.far.peek()?;
                self.base = first >> BUCKET_SHIFT;
                self.pull_far();
                (self.base % BUCKETS) as usize
            }
        };
        let s = self.head[i];
        let slot = &mut self.slots[s as usize];
        let next = std::mem::replace(&mut slot.next, self.free);
        self.time = slot.time;
        self.free = s;
        if next == NIL {
            self.occupied[i / 64] &= !(1 << (i % 64));
        } else {
            self.head[i] = next;
        }
        let ev = self.slots[s as usize].ev.take();
        // Every linked slot holds its event: an empty one would end the run as if nothing were
        // pending.
        debug_assert!(ev.is_some(), "slot {s} of bucket {i} is linked but empty");
        ev
    }

    /// The time of the event [`Self::pop`] took last.
    #[inline(always)]
    pub(super) fn time(&self) -> u64 {
        self.time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random schedules (near, far, equal times, interleaved with pops) come out in exactly the
    /// order of a binary heap over (time, sequence), and the slab never holds more slots than
    /// events were pending at once (freed slots are reused).
    #[test]
    fn same_order_as_a_heap_of_time_and_sequence() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..50 {
            let mut q: EventQueue<u64> = EventQueue::new();
            let mut reference: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
            let mut seq = 0;
            let mut now = 0;
            let mut got = Vec::new();
            let mut want = Vec::new();
            let mut most_pending = 0;
            for _ in 0..3000 {
                if rnd(3) > 0 {
                    let ahead = match rnd(10) {
                        0 => 0,
                        1 => rnd(5_000_000),
                        2 => rnd(300_000),
                        _ => rnd(12_000),
                    };
                    let t = now + ahead + round;
                    seq += 1;
                    q.push(t, seq);
                    reference.push(Reverse((t, seq)));
                    most_pending = most_pending.max(reference.len());
                } else if let Some(id) = q.pop() {
                    let t = q.time();
                    now = t;
                    got.push((t, id));
                    let Reverse(w) = reference.pop().expect("same length");
                    want.push(w);
                }
            }
            while let Some(id) = q.pop() {
                got.push((q.time(), id));
            }
            while let Some(Reverse(w)) = reference.pop() {
                want.push(w);
            }
            assert_eq!(got, want, "round {round}");
            assert!(
                q.slots.len() <= most_pending,
                "round {round}: slab outgrew the events"
            );
        }
    }
}
