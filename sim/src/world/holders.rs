//! Who holds an entry: the engine's side of the committed-on-a-majority-of-voters checker
//! ([`crate::checkers::COMMITTED_ON_VOTERS`]), which needs every node's log, disk, and the disk
//! a wiped node lost: only the engine sees them all.
//!
//! It only reads nodes and disks; it never steps a node or draws randomness.

use keel_core::{DurableState, Incarnation, LogIndex, NodeId, Term};

use super::World;

/// Whether `durable` holds the entry `index` of `term` (or a snapshot past it).
fn durable_holds(durable: &DurableState, index: LogIndex, term: Term) -> bool {
    let in_snapshot = durable
        .snapshot
        .as_ref()
        .is_some_and(|s| s.last_index >= index);
    let entries = &durable.entries;
    in_snapshot
        || entries
            .binary_search_by_key(&index, |e| e.index)
            .is_ok_and(|k| entries[k].term == term)
}

impl World<'_> {
    /// Leader `i` just committed `index` of `term`: hands the checkers every node (and every
    /// wiped node's earlier incarnation) that holds it.
    pub(super) fn check_commit_holders(&mut self, i: usize, (index, term): (LogIndex, Term)) {
        let mut holders: Vec<(NodeId, Incarnation)> = Vec::new();
        for (j, n) in self.nodes.iter().enumerate() {
            let id = self.members[j];
            let holds = match n.node.as_ref() {
                Some(node) => {
                    node.log().term_at(index) == Some(term) || node.log().offset() >= index
                }
                None => durable_holds(&n.disk.durable, index, term),
            };
            if holds {
                holders.push((id, Incarnation(n.disk_life)));
            }
            if let Some((life, lost)) = &n.lost_disk {
                if durable_holds(lost, index, term) {
                    holders.push((id, Incarnation(*life)));
                }
            }
        }
        if let Some(leader) = self.nodes[i].node.as_ref() {
            let now = self.now;
            self.checkers
                .committed_held_by(now, leader, (index, term), &holders);
        }
    }
}
