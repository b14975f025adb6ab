//! The impaired-node family: `Hang` (the node takes no input for a while, then resumes with
//! whatever it believed) and `Slow` (its CPU, disk and outgoing links are slower by a factor for
//! a while), with the events that end them. They only set the host's `hung_until` and
//! `slow_factor`; the host and the disk apply them.
//! Nothing here steps a node or draws randomness.

use std::time::Duration;

use keel_core::Output;

use crate::scenario::{Fault, Selector};
use crate::world::config::us;
use crate::world::events::Ev;
use crate::world::World;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_hang_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::Hang(sel, d) => self.fire_hang(sel, *d),
            Fault::Slow(sel, factor, d) => self.fire_slow(sel, *factor, *d),
            other => super::misrouted(other),
        }
    }

    fn fire_hang(&mut self, sel: &Selector, d: Duration) -> String {
        self.cover("fault Hang");
        let text = match self.select(sel) {
            Some(i) if self.nodes[i].up() => {
                let until = self.now + us(d);
                let n = &mut self.nodes[i];
                n.hung_until = n.hung_until.max(until);
                self.schedule(until, Ev::HangEnd { node: i });
                self.name(i)
            }
            _ => "nobody (no such live node)".to_string(),
        };
        self.mark_impaired();
        text
    }

    /// A hang ends: the node works through what queued up meanwhile.
    pub(in crate::world) fn hang_ends(&mut self, node: usize, out: &mut Vec<Output>) {
        self.condensed(format!("{} resumes after its hang", self.nodes[node].id));
        self.drain(node, out);
        self.arm_timer(node);
        self.update_leadership();
    }

    fn fire_slow(&mut self, sel: &Selector, factor: f64, d: Duration) -> String {
        self.cover("fault Slow");
        let text = match self.select(sel) {
            Some(i) => {
                let n = &mut self.nodes[i];
                n.slow_factor = factor;
                n.slow_token += 1;
                let token = n.slow_token;
                let until = self.now + us(d);
                self.schedule(until, Ev::SlowEnd { node: i, token });
                self.name(i)
            }
            None => "nobody (no such node)".to_string(),
        };
        self.mark_impaired();
        text
    }

    /// A slow-down ends (unless a later one of the same node replaced it).
    pub(in crate::world) fn slow_ends(&mut self, node: usize, token: u64) {
        if self.nodes[node].slow_token == token {
            self.nodes[node].slow_factor = 1.0;
        }
    }
}
