//! The overload family: `Overload` sends open-loop client requests at a fixed rate (a Poisson
//! stream) for a while, on keys of their own (`user/ov0`..), to random nodes. [`Burst`] owns the
//! burst in force, its keys and its random stream; requests are recorded in the history like
//! any client's ([`crate::world::clients`]).
//! A burst never draws from the clients' stream: it has its own, so bursts leave the closed-loop
//! clients' choices as they were.

use std::sync::Arc;
use std::time::Duration;

use keel_core::Key;

use crate::rng::Stream;
use crate::scenario::Fault;
use crate::world::clients::{cached_key, get_op, put_op, Owner};
use crate::world::config::us;
use crate::world::events::Ev;
use crate::world::World;

/// Keys an overload burst writes and reads (`user/ov0`..), apart from the clients' keys.
const OVERLOAD_KEYS: usize = 1024;

pub(in crate::world) struct Burst {
    /// The burst in force: (number, until, mean gap in us).
    current: Option<(u64, u64, f64)>,
    /// Bursts started so far: a burst's arrivals stop when a later one replaces it.
    count: u64,
    rng: Stream,
    /// `user/ov{k}` and its text, by `k`, formatted once per run.
    pub(in crate::world) keys: Vec<Option<(Key, Arc<str>)>>,
}

impl Burst {
    pub(super) fn new(rng: Stream) -> Burst {
        Burst {
            current: None,
            count: 0,
            rng,
            keys: Vec::new(),
        }
    }
}

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_overload_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::Overload {
                rate_per_sec,
                lasting,
            } => self.fire_overload(*rate_per_sec, *lasting),
            other => super::misrouted(other),
        }
    }

    fn fire_overload(&mut self, rate_per_sec: f64, lasting: Duration) -> String {
        self.cover("fault Overload");
        let b = &mut self.faults.burst;
        b.count += 1;
        let interval = (1e6 / rate_per_sec.max(1e-3)).max(1.0);
        b.current = Some((b.count, self.now + us(lasting), interval));
        let burst = b.count;
        let now = self.now;
        self.schedule(now, Ev::OverloadArrival { burst });
        "the clients".to_string()
    }

    /// The next request of burst `burst` arrives (unless that burst is over).
    pub(in crate::world) fn overload_arrival(&mut self, burst: u64) {
        let Some((current, until, interval)) = self.faults.burst.current else {
            return;
        };
        if current != burst || self.now >= until || self.now >= self.end {
            return;
        }
        let target = self.faults.burst.rng.below(self.nodes.len());
        // Spread over many keys, as a burst from many independent clients would be.
        let k = self.faults.burst.rng.below(OVERLOAD_KEYS);
        let (key, key_text) = cached_key(&mut self.faults.burst.keys, "ov", k);
        let id = self.clients.new_request();
        let process = self.clients.next_process;
        self.clients.next_process += 1;
        let (op, hop) = if self.faults.burst.rng.below(2) == 0 {
            get_op(key, key_text)
        } else {
            put_op(key, key_text, format!("o{}", id.0))
        };
        self.invoke(id, Owner::Overload(k), process, hop);
        self.send_request(target, id, op);
        // Exponential inter-arrival times: a Poisson stream at the burst's rate.
        let gap = (-(1.0 - self.faults.burst.rng.unit()).ln() * interval).max(1.0) as u64;
        let next = self.now + gap;
        self.schedule(next, Ev::OverloadArrival { burst });
    }
}
