//! Resolving a fault's [`Selector`] to a node when the fault fires: a named node, the leader, a
//! live follower or any live node (drawn from the fault stream), the last crashed or wiped node. Only
//! reads the cluster; the one thing it changes is the fault stream's position.
//! It never changes the cluster.

use crate::scenario::Selector;
use crate::world::World;

impl World<'_> {
    /// Nodes that are up and not already doomed by a pending mid-step crash (so two crash
    /// faults at one instant hit two nodes).
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up() && self.nodes[i].crash_in_next_step.is_none())
            .collect()
    }

    /// The live node that leads in the highest term, if any.
    pub(super) fn leader_index(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, sn) in self.nodes.iter().enumerate() {
            if let Some(node) = sn.node.as_ref() {
                if node.is_leader() && best.is_none_or(|(_, t)| node.term().0 > t) {
                    best = Some((i, node.term().0));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// The node `sel` names now, if there is one.
    pub(super) fn select(&mut self, sel: &Selector) -> Option<usize> {
        match sel {
            Selector::Node(name) => self.node_named(name),
            Selector::Leader => self.leader_index(),
            Selector::Follower => {
                let leader = self.leader_index();
                // Prefer followers that are not already cut off, so two `Isolate(Follower)`
                // faults isolate two nodes.
                let mut pool: Vec<usize> = self
                    .live()
                    .into_iter()
                    .filter(|&i| Some(i) != leader && !self.net.isolated.contains(&i))
                    .collect();
                if pool.is_empty() {
                    pool = self
                        .live()
                        .into_iter()
                        .filter(|&i| Some(i) != leader)
                        .collect();
                }
                if pool.is_empty() {
                    return None;
                }
                Some(pool[self.faults.rng.below(pool.len())])
            }
            Selector::LastCrashed => self.faults.crashed_stack.last().copied(),
            Selector::LastWiped => self.faults.last_wiped,
            Selector::Random => {
                let pool = self.live();
                if pool.is_empty() {
                    return None;
                }
                Some(pool[self.faults.rng.below(pool.len())])
            }
        }
    }

    /// The node called `name` (`n1`..`nN`).
    pub(super) fn node_named(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.to_string() == *name)
    }

    /// Node `i`'s name, for the condensed trace.
    pub(super) fn name(&self, i: usize) -> String {
        self.members[i].to_string()
    }
}
