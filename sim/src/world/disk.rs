//! A node's simulated disk: fsyncs with a latency drawn from the node's own storage stream,
//! group commit, and what a crash keeps (exactly the syncs that completed before it).
//!
//! It owns the node's durable state and the persists still on their way to it. It never sends,
//! never schedules an event and never touches the node's volatile state: the host asks it when
//! a write is durable ([`Disk::released_at`]) and holds outputs back until then.

use std::collections::VecDeque;

use keel_core::{DurableState, Persist};

use super::config::scaled;
use crate::rng::Stream;

pub(super) struct Disk {
    /// What survives a crash: every persist whose fsync completed.
    pub(super) durable: DurableState,
    /// Persists whose fsync is under way: (completes at, what).
    syncing: VecDeque<(u64, Persist)>,
    /// When every persist issued so far is durable.
    sync_barrier: u64,
    /// When the running fsync completes.
    running_sync_end: u64,
    /// When the queued fsync (persists issued while one was running) completes.
    next_sync_end: Option<u64>,
    rng: Stream,
}

impl Disk {
    pub(super) fn new(rng: Stream) -> Disk {
        Disk {
            durable: DurableState::default(),
            syncing: VecDeque::new(),
            sync_barrier: 0,
            running_sync_end: 0,
            next_sync_end: None,
            rng,
        }
    }

    /// The node (re)starts at `now` with nothing in flight.
    pub(super) fn start(&mut self, now: u64) {
        self.sync_barrier = now;
        self.running_sync_end = now;
        self.next_sync_end = None;
    }

    /// When an output produced at `t` may leave: once every persist before it is durable.
    #[inline]
    pub(super) fn released_at(&self, t: u64) -> u64 {
        self.sync_barrier.max(t)
    }

    /// Fsyncs that completed by `now` become durable.
    #[inline]
    pub(super) fn complete_until(&mut self, now: u64) {
        while self.syncing.front().is_some_and(|(done, _)| *done <= now) {
            if let Some((_, p)) = self.syncing.pop_front() {
                self.durable.apply_owned(p);
            }
        }
    }

    /// Starts making `p` durable at `t`, with group commit: a persist issued while an fsync is
    /// running joins the next one, which starts when the running one completes and covers every
    /// persist that joined it. `(lo, hi)` is the fsync latency range, `slow` the node's factor.
    pub(super) fn persist(&mut self, t: u64, p: Persist, (lo, hi): (u64, u64), slow: f64) {
        if let Some(next) = self.next_sync_end {
            if self.sync_barrier <= t || self.running_sync_end <= t {
                // The queued batch has started by now: it is the running one.
                self.running_sync_end = next;
                self.next_sync_end = None;
            }
        }
        let done = if self.running_sync_end <= t {
            let latency = self.rng.between(lo, hi);
            self.running_sync_end = t + scaled(latency, slow);
            self.running_sync_end
        } else if let Some(next) = self.next_sync_end {
            next
        } else {
            let latency = self.rng.between(lo, hi);
            let next = self.running_sync_end + scaled(latency, slow);
            self.next_sync_end = Some(next);
            next
        };
        self.sync_barrier = self.sync_barrier.max(done);
        self.syncing.push_back((done, p));
    }

    /// The disk is lost (the node is down): nothing durable is left, nothing is on its way.
    pub(super) fn wipe(&mut self) {
        self.durable = DurableState::default();
        self.syncing.clear();
    }

    /// The node crashes at `now`: syncs completed by then are kept, the rest are lost. Returns
    /// how many were lost.
    pub(super) fn crash(&mut self, now: u64) -> u64 {
        let mut lost = 0;
        while let Some((done, p)) = self.syncing.pop_front() {
            if done <= now {
                self.durable.apply_owned(p);
            } else {
                lost += 1;
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{HardState, Persist, Term};

    use super::Disk;
    use crate::rng::Stream;

    fn term(t: u64) -> Persist {
        Persist::HardState(HardState {
            term: Term(t),
            voted_for: None,
        })
    }

    /// Persists issued while an fsync runs join the next one; a crash keeps what completed.
    #[test]
    fn group_commit_and_a_crash_keep_exactly_the_completed_syncs() {
        let mut d = Disk::new(Stream::new(1, 0));
        d.start(0);
        d.persist(0, term(1), (100, 100), 1.0);
        assert_eq!(d.released_at(0), 100);
        // Issued while the first runs: both join the next fsync, which ends 100 us after it.
        d.persist(10, term(2), (100, 100), 1.0);
        d.persist(20, term(3), (100, 100), 1.0);
        assert_eq!(d.released_at(20), 200);
        d.complete_until(150);
        assert_eq!(d.durable.hard_state.term, Term(1));
        assert_eq!(d.crash(150), 2, "the second batch was still running");
        assert_eq!(d.durable.hard_state.term, Term(1));
    }
}
