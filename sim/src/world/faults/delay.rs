//! The delay family: `Delay` holds back every message sent on one link (one direction) by a
//! fixed extra latency for a while; none is lost for it. The delay itself is applied where
//! messages are sent ([`crate::world::network`]); this file starts and ends it. Another delay of
//! the same link replaces the first; `Heal` leaves delays alone.
//! A delay never loses a message: it only holds messages back.

use std::time::Duration;

use crate::scenario::{Fault, Selector};
use crate::world::config::us;
use crate::world::events::Ev;
use crate::world::World;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_delay_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::Delay {
                from,
                to,
                extra,
                lasting,
            } => self.fire_delay(from, to, *extra, *lasting),
            other => super::misrouted(other),
        }
    }

    fn fire_delay(
        &mut self,
        from: &Selector,
        to: &Selector,
        extra: Duration,
        lasting: Duration,
    ) -> String {
        self.cover("fault Delay");
        let (x, y) = match (self.select(from), self.select(to)) {
            (Some(x), Some(y)) if x != y => (x, y),
            _ => return "nobody (no such pair of distinct nodes)".to_string(),
        };
        let n = self.nodes.len();
        let token = self.net.link_delay[x * n + y].1 + 1;
        self.net.link_delay[x * n + y] = (us(extra).max(1), token);
        self.net.delaying = true;
        let until = self.now + us(lasting);
        self.schedule(
            until,
            Ev::DelayEnd {
                from: x,
                to: y,
                token,
            },
        );
        // Both ends of the link are disturbed when it fires (and when it ends).
        self.work.disturbed_at[x] = self.now;
        self.work.disturbed_at[y] = self.now;
        format!("{} ~~> {}", self.name(x), self.name(y))
    }

    /// A `Delay` of the link `from -> to` ends: messages sent on it from now on are on time.
    pub(in crate::world) fn delay_ends(&mut self, from: usize, to: usize, token: u64) {
        let n = self.nodes.len();
        let link = &mut self.net.link_delay[from * n + to];
        if link.1 != token || link.0 == 0 {
            return;
        }
        link.0 = 0;
        self.net.delaying = self.net.link_delay.iter().any(|(extra, _)| *extra > 0);
        self.lead.last_fault_at = self.now;
        self.work.disturbed_at[from] = self.now;
        self.work.disturbed_at[to] = self.now;
        let (a, b) = (self.members[from], self.members[to]);
        self.condensed(format!("{a} ~~> {b} on time again"));
        self.tr.hasher.u64(0xDE1A);
        self.tr.hasher.u64(u64::from(a.0));
        self.tr.hasher.u64(u64::from(b.0));
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "delay-end", "from": a.to_string(), "to": b.to_string(),
            }));
        }
        self.update_leadership();
    }
}
