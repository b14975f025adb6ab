//! The handover family: `TransferLeadership` (the leader picks its successor) and
//! `TransferLeadershipTo` (the operator names one). Both are operator requests handed to the
//! leader as an input; what happens next is the core's business.
//! Nothing here picks a successor itself: the leader does, unless the fault names one.

use keel_core::Input;

use crate::scenario::{Fault, Selector};
use crate::world::World;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_transfer_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::TransferLeadership => self.fire_transfer(),
            Fault::TransferLeadershipTo(sel) => self.fire_transfer_to(sel),
            other => super::misrouted(other),
        }
    }

    fn fire_transfer(&mut self) -> String {
        self.cover("fault TransferLeadership");
        match self.leader_index() {
            Some(i) if self.nodes[i].up() => {
                self.input(i, Input::TransferLeadership { to: None });
                self.name(i)
            }
            _ => "nobody (no leader)".to_string(),
        }
    }

    fn fire_transfer_to(&mut self, sel: &Selector) -> String {
        self.cover("fault TransferLeadershipTo");
        let l = match self.leader_index() {
            Some(l) if self.nodes[l].up() => l,
            _ => return "nobody (no leader)".to_string(),
        };
        let Some(t) = self.select(sel) else {
            return "nobody (no such node)".to_string();
        };
        let (leader, target) = (self.members[l], self.members[t]);
        self.stats
            .transfers
            .requested
            .push((self.now, leader, target));
        self.input(l, Input::TransferLeadership { to: Some(target) });
        format!("{leader} asked to hand over to {target}")
    }
}
