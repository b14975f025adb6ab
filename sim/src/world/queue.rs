//! The event queue: events in (time, scheduling sequence) order, so events at one instant run in
//! the order they were scheduled.
//!
//! A calendar queue. Almost every event is scheduled a few milliseconds ahead (a message's
//! latency, a CPU step, an fsync), so the near future is a ring of [`BUCKETS`] buckets of
//! 2^[`BUCKET_SHIFT`] µs each, with a bitmap of the non-empty ones; each bucket keeps its few
//! events sorted, the earliest last. Events beyond the ring's reach wait in a binary heap and move
//! into the ring as time reaches them. Scheduling and taking an event cost a few comparisons
//! instead of a heap's sift through dozens of pending events. The event itself waits in a slab
//! (slots are reused), so a large event is written once and read once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A bucket spans 2^10 µs (about a millisecond).
const BUCKET_SHIFT: u32 = 10;
/// The ring covers 256 buckets (about a quarter of a second).
const BUCKETS: u64 = 256;
const WORDS: usize = (BUCKETS / 64) as usize;

/// An entry: (time, sequence, slot). Ordered by time, then sequence (unique).
type Entry = (u64, u64, u32);

pub(super) struct EventQueue<T> {
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
    /// `ring[b % BUCKETS]` holds the events of bucket `b` for `base <= b < base + BUCKETS`,
    /// sorted by (time, seq) descending: the earliest is last.
    ring: Vec<Vec<Entry>>,
    /// Bit `i` set: `ring[i]` is not empty.
    occupied: [u64; WORDS],
    /// The bucket (time >> BUCKET_SHIFT) of the current time: nothing earlier is pending.
    base: u64,
    /// Events of buckets at or beyond `base + BUCKETS`.
    far: BinaryHeap<Reverse<Entry>>,
}

impl<T> EventQueue<T> {
    pub(super) fn new() -> Self {
        EventQueue {
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
            ring: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            base: 0,
            far: BinaryHeap::new(),
        }
    }

    /// Schedules `ev` at `time`, after every event already scheduled at that time.
    pub(super) fn push(&mut self, time: u64, ev: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slab.get_mut(slot as usize) {
                    *s = Some(ev);
                }
                slot
            }
            None => {
                // Beyond 4 G pending events the run has long run out of memory.
                let slot = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
                self.slab.push(Some(ev));
                slot
            }
        };
        self.seq += 1;
        self.insert((time, self.seq, slot));
    }

    fn insert(&mut self, e: Entry) {
        // An event in the past (never scheduled by the engine) goes to the current bucket, where
        // it still sorts first.
        let bucket = (e.0 >> BUCKET_SHIFT).max(self.base);
        if bucket >= self.base + BUCKETS {
            self.far.push(Reverse(e));
            return;
        }
        let i = (bucket % BUCKETS) as usize;
        let v = &mut self.ring[i];
        // Descending order; a new event usually sorts first (latest), so search from the front.
        let at = v.iter().position(|x| *x < e).unwrap_or(v.len());
        v.insert(at, e);
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

    /// Moves every far event that the ring now reaches into the ring.
    fn pull_far(&mut self) {
        while let Some(&Reverse(e)) = self.far.peek() {
            if (e.0 >> BUCKET_SHIFT) >= self.base + BUCKETS {
                break;
            }
            self.far.pop();
            self.insert(e);
        }
    }

    /// The time and slot of the earliest event; take the event itself with [`Self::take`].
    pub(super) fn pop(&mut self) -> Option<(u64, u32)> {
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
                let Reverse(first) = *self.far.peek()?;
                self.base = first.0 >> BUCKET_SHIFT;
                self.pull_far();
                (self.base % BUCKETS) as usize
            }
        };
        let v = &mut self.ring[i];
        let (time, _, slot) = v.pop()?;
        if v.is_empty() {
            self.occupied[i / 64] &= !(1 << (i % 64));
        }
        Some((time, slot))
    }

    /// The event waiting in `slot` (popped by [`Self::pop`]); frees the slot.
    pub(super) fn take(&mut self, slot: u32) -> Option<T> {
        let ev = self.slab.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(ev)
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
                } else if let Some((t, slot)) = q.pop() {
                    let id = q.take(slot).expect("an event");
                    now = t;
                    got.push((t, id));
                    let Reverse(w) = reference.pop().expect("same length");
                    want.push(w);
                }
            }
            while let Some((t, slot)) = q.pop() {
                got.push((t, q.take(slot).expect("an event")));
            }
            while let Some(Reverse(w)) = reference.pop() {
                want.push(w);
            }
            assert_eq!(got, want, "round {round}");
        }
    }
}
