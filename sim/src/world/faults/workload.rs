//! The workload-process family: `CrashWorkload` (a running copy exits with a failure) and
//! `HangWorkload` (a running copy stops showing progress). The copy is chosen by the fault
//! stream among the healthy copies of the named workload; the processes themselves are the
//! workload driver's ([`crate::world::workload_driver`]).
//! It never edits a node's registry: the node hears of a crashed copy as a workload event.

use keel_core::{ExitOutcome, Input, LogIndex, WorkloadEvent, WorkloadEventKind};

use crate::scenario::Fault;
use crate::workloads as wl;
use crate::world::World;

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_workload_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::CrashWorkload(w) => self.fire_crash_workload(w),
            Fault::HangWorkload(w) => self.fire_hang_workload(w),
            other => super::misrouted(other),
        }
    }

    /// A healthy copy of an instance of `family`, chosen by the fault stream.
    fn pick_copy(&mut self, family: &str) -> Option<(u64, usize, String, LogIndex)> {
        let pool: Vec<(u64, usize, String, LogIndex)> = self
            .work
            .procs
            .copies
            .iter()
            .filter(|c| !c.hung && wl::in_family(&c.name, family))
            .map(|c| (c.token, c.node, c.name.clone(), c.epoch))
            .collect();
        if pool.is_empty() {
            return None;
        }
        let k = self.faults.rng.below(pool.len());
        pool.into_iter().nth(k)
    }

    fn fire_crash_workload(&mut self, family: &str) -> String {
        self.cover("fault CrashWorkload");
        let Some((token, node, name, epoch)) = self.pick_copy(family) else {
            return format!("nothing (no running copy of {family})");
        };
        self.work.procs.remove_where(self.now, |c| c.token == token);
        let ev = WorkloadEvent {
            name: name.clone(),
            epoch,
            kind: WorkloadEventKind::Exited(ExitOutcome::Failed { code: 1 }),
        };
        self.input(node, Input::Workload(ev));
        format!("{name} on {}", self.members[node])
    }

    fn fire_hang_workload(&mut self, family: &str) -> String {
        self.cover("fault HangWorkload");
        let Some((token, node, name, _)) = self.pick_copy(family) else {
            return format!("nothing (no running copy of {family})");
        };
        self.work.procs.hang(self.now, token);
        format!("{name} on {}", self.members[node])
    }
}
