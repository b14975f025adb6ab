//! The crash family: `Crash` (between two steps, or in the middle of the node's next step that
//! writes, after a random number of its outputs), `Restart` (from durable state) and `WipeDisk`
//! (a crash, and a restart on an empty disk as a new incarnation). What a crash or a wipe loses
//! is the host's and the disk's business ([`crate::world::host`]); this file only decides when
//! and whom it strikes, drawing from the fault stream.
//! It never touches the disk or a node's state itself.

use crate::scenario::{Fault, Selector};
use crate::world::events::Ev;
use crate::world::World;

/// How long a mid-step crash waits for a step that writes before striking between steps.
const MID_STEP_CRASH_PATIENCE_US: u64 = 50_000;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_crash_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::Crash(sel) => self.fire_crash(sel),
            Fault::Restart(sel) => self.fire_restart(sel),
            Fault::WipeDisk(sel) => self.fire_wipe(sel),
            other => super::misrouted(other),
        }
    }

    fn fire_crash(&mut self, sel: &Selector) -> String {
        self.cover("fault Crash");
        let i = match self.select(sel) {
            Some(i) if self.nodes[i].up() => i,
            _ => return "nobody (no such live node)".to_string(),
        };
        if !self.faults.rng.chance(self.cfg.mid_step_crash_probability) {
            self.crash(i, None);
            return self.name(i);
        }
        // Strike during the next step that persists, after a random number of its outputs.
        let k = self.faults.rng.between(0, 63) as u32;
        self.nodes[i].crash_in_next_step = Some(k);
        // A node that writes nothing for a while crashes anyway.
        let incarnation = self.nodes[i].incarnation;
        let at = self.now + MID_STEP_CRASH_PATIENCE_US;
        self.schedule(
            at,
            Ev::PendingCrash {
                node: i,
                incarnation,
            },
        );
        format!("{} (during its next step that writes)", self.name(i))
    }

    /// A mid-step crash that found no writing step in time strikes now.
    pub(in crate::world) fn pending_crash(&mut self, node: usize, incarnation: u64) {
        let n = &self.nodes[node];
        if n.incarnation == incarnation && n.crash_in_next_step.is_some() {
            self.crash(node, None);
        }
    }

    fn fire_restart(&mut self, sel: &Selector) -> String {
        self.cover("fault Restart");
        match self.select_for_restart(sel) {
            Some(i) if !self.nodes[i].up() => {
                self.restart(i);
                self.name(i)
            }
            _ => "nobody (no such crashed node)".to_string(),
        }
    }

    fn fire_wipe(&mut self, sel: &Selector) -> String {
        self.cover("fault WipeDisk");
        match self.select(sel) {
            Some(i) => {
                self.wipe_disk(i);
                self.name(i)
            }
            None => "nobody (no such node)".to_string(),
        }
    }

    /// Resolves a restart's target. A crash still waiting for its mid-step moment strikes now:
    /// the restart ordered after it must find the node down.
    fn select_for_restart(&mut self, sel: &Selector) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up() && self.nodes[i].crash_in_next_step.is_some() {
                self.crash(i, None);
            }
        }
        self.select(sel)
    }
}
