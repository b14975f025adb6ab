//! The partition family: `Partition` (groups), `Isolate` (one node from all), `OneWay` (one
//! direction of one link) and `Heal` (undo them all). They only set which links are cut
//! ([`crate::world::network::Network`]); delays are another family and `Heal` leaves them alone.
//! Nothing here touches a node or draws randomness beyond resolving selectors.

use crate::scenario::{Fault, Selector};
use crate::world::World;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_partition_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::Partition(groups) => self.fire_partition(groups),
            Fault::Isolate(sel) => self.fire_isolate(sel),
            Fault::OneWay(a, b) => self.fire_one_way(a, b),
            Fault::Heal => self.fire_heal(),
            other => super::misrouted(other),
        }
    }

    fn fire_partition(&mut self, groups: &[Vec<String>]) -> String {
        self.cover("fault Partition");
        let groups: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().filter_map(|n| self.node_named(n)).collect())
            .collect();
        self.net.groups = Some(groups);
        self.net.recompute_links();
        self.work.disturbed_at.fill(self.now);
        "the network".to_string()
    }

    fn fire_isolate(&mut self, sel: &Selector) -> String {
        self.cover("fault Isolate");
        let text = match self.select(sel) {
            Some(i) => {
                self.net.isolated.insert(i);
                self.net.recompute_links();
                self.name(i)
            }
            None => "nobody (no such node)".to_string(),
        };
        self.mark_impaired();
        text
    }

    fn fire_one_way(&mut self, a: &Selector, b: &Selector) -> String {
        self.cover("fault OneWay");
        let text = match (self.select(a), self.select(b)) {
            (Some(x), Some(y)) if x != y => {
                self.net.one_way.insert((x, y));
                self.net.recompute_links();
                format!("{} -/-> {}", self.name(x), self.name(y))
            }
            _ => "nobody (no such pair of distinct nodes)".to_string(),
        };
        self.mark_impaired();
        text
    }

    fn fire_heal(&mut self) -> String {
        self.cover("fault Heal");
        self.net.groups = None;
        self.net.isolated.clear();
        self.net.one_way.clear();
        self.net.recompute_links();
        self.work.disturbed_at.fill(self.now);
        "every link".to_string()
    }
}
