//! The event queue: events in (time, scheduling sequence) order, so events at one instant run in
//! the order they were scheduled.
//!
//! A calendar queue. Almost every event is scheduled a few milliseconds ahead (a message's
//! latency, a CPU step, an fsync), so the near future is a ring of [`BUCKETS`] buckets of
//! 2^[`BUCKET_SHIFT`] µs each, with a bitmap of the non-empty ones; each bucket holds its few
//! events in ascending order, the earliest first. Events beyond the ring's reach wait in a binary
//! heap and move into the ring as time reaches them. Scheduling and taking an event cost a few
//! comparisons instead of a heap's sift through dozens of pending events, and the event itself is
//! moved into its bucket once and out of it once.
//!
//! A bucket needs no sequence numbers: an event is scheduled after every event already in its
//! bucket at the same or an earlier time, which is exactly scheduling order, because every event
//! of a bucket the ring reaches is in the ring (the far heap is emptied into a bucket as soon as the
//! ring reaches it, and keeps sequence numbers to hand its events over in order).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// A bucket spans 2^8 µs (a quarter of a millisecond): few enough events land in one that a new
/// event almost always sorts last.
const BUCKET_SHIFT: u32 = 8;
/// The ring covers 1024 buckets (about a quarter of a second).
const BUCKETS: u64 = 1024;
const WORDS: usize = (BUCKETS / 64) as usize;

/// An event beyond the ring's reach: ordered by time, then sequence (unique).
struct Far<T> {
    time: u64,
    seq: u64,
    ev: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl<T> Eq for Far<T> {}

impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Far<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

pub(super) struct EventQueue<T> {
    seq: u64,
    /// `ring[b % BUCKETS]` holds the events of bucket `b` for `base <= b < base + BUCKETS`, as
    /// (time, event), ascending by time and, at equal times, in scheduling order.
    ring: Vec<VecDeque<(u64, T)>>,
    /// Bit `i` set: `ring[i]` is not empty.
    occupied: [u64; WORDS],
    /// The bucket (time >> BUCKET_SHIFT) of the current time: nothing earlier is pending.
    base: u64,
    /// Events of buckets at or beyond `base + BUCKETS`.
    far: BinaryHeap<Reverse<Far<T>>>,
    /// The bucket of the earliest far event (`u64::MAX` when there is none), so that advancing
    /// the ring looks at the heap only when it reaches that bucket.
    far_bucket: u64,
}

impl<T> EventQueue<T> {
    pub(super) fn new() -> Self {
        EventQueue {
            seq: 0,
            ring: (0..BUCKETS).map(|_| VecDeque::with_capacity(4)).collect(),
            occupied: [0; WORDS],
            base: 0,
            far: BinaryHeap::new(),
            far_bucket: u64::MAX,
        }
    }

    /// Schedules `ev` at `time`, after every event already scheduled at that time.
    pub(super) fn push(&mut self, time: u64, ev: T) {
        self.push_inline(time, ev);
    }

    /// [`Self::push`], inlined into the caller: for the hottest call site.
    #[inline(always)]
    pub(super) fn push_inline(&mut self, time: u64, ev: T) {
        // An event in the past (never scheduled by the engine) goes to the current bucket, where
        // it still sorts first.
        let bucket = (time >> BUCKET_SHIFT).max(self.base);
        if bucket >= self.base + BUCKETS {
            self.seq += 1;
            self.far_bucket = self.far_bucket.min(bucket);
            self.far.push(Reverse(Far {
                time,
                seq: self.seq,
                ev,
            }));
            return;
        }
        self.insert(bucket, time, ev);
    }

    /// Puts `ev` into the ring's bucket `bucket`, after every event there at `time` or earlier.
    #[inline(always)]
    fn insert(&mut self, bucket: u64, time: u64, ev: T) {
        let i = (bucket % BUCKETS) as usize;
        let v = &mut self.ring[i];
        // A new event usually sorts last (latest), so search from the back.
        if v.back().is_none_or(|(t, _)| *t <= time) {
            v.push_back((time, ev));
        } else {
            let at = v.partition_point(|(t, _)| *t <= time);
            if at == 0 {
                // Earlier than everything in the bucket (usually a single event).
                v.push_front((time, ev));
            } else {
                v.insert(at, (time, ev));
            }
        }
        self.occupied[i / 64] |= 1 << (i % 64);
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
        while self
            .far
            .peek()
            .is_some_and(|Reverse(f)| (f.time >> BUCKET_SHIFT) < self.base + BUCKETS)
        {
            if let Some(Reverse(f)) = self.far.pop() {
                let bucket = (f.time >> BUCKET_SHIFT).max(self.base);
                self.insert(bucket, f.time, f.ev);
            }
        }
        self.far_bucket = self
            .far
            .peek()
            .map_or(u64::MAX, |Reverse(f)| f.time >> BUCKET_SHIFT);
    }

    /// The earliest event and its time.
    #[inline(always)]
    pub(super) fn pop(&mut self) -> Option<(u64, T)> {
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
                let first = self.far.peek()?.0.time;
                self.base = first >> BUCKET_SHIFT;
                self.pull_far();
                (self.base % BUCKETS) as usize
            }
        };
        let v = &mut self.ring[i];
        let first = v.pop_front();
        if v.is_empty() {
            self.occupied[i / 64] &= !(1 << (i % 64));
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random schedules (near, far, equal times, interleaved with pops) come out in exactly the
    /// order of a binary heap over (time, sequence).
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
                } else if let Some((t, id)) = q.pop() {
                    now = t;
                    got.push((t, id));
                    let Reverse(w) = reference.pop().expect("same length");
                    want.push(w);
                }
            }
            while let Some((t, id)) = q.pop() {
                got.push((t, id));
            }
            while let Some(Reverse(w)) = reference.pop() {
                want.push(w);
            }
            assert_eq!(got, want, "round {round}");
        }
    }
}
