//! Health and recovery summaries: what `/health/summary` and `/recovery/metrics` report, built
//! from the workload registry (read linearizably through the core) and the cluster as the
//! answering node sees it.
//!
//! Pure functions of their inputs: no I/O, no clock, no access to the running node.

use std::collections::BTreeMap;

use keel_core::{Desired, Health, NodeId, Registry, Status};

use crate::api::{ClusterInfo, HealthCheck, HealthSummary, NodeHealth, RecoveryReport};

/// The operator's word for a health verdict.
pub fn word(h: Health) -> &'static str {
    match h {
        Health::Alive => "online",
        Health::Suspect => "degraded",
        Health::Dead => "offline",
    }
}

/// Node counts by health, workload counts, and per-node details; `Err` names a member that is
/// not a node id.
pub fn summary(reg: &Registry, revision: u64, info: &ClusterInfo) -> Result<HealthSummary, String> {
    let mut counts = [0usize; 3];
    let mut details = Vec::new();
    for m in &info.members {
        let id: NodeId = m.parse().map_err(|_| m.clone())?;
        let health = reg.health(id);
        counts[health as usize] += 1;
        details.push(NodeHealth {
            draining: reg.draining(id),
            leader: info.leader.as_deref() == Some(m.as_str()),
            node_key: m.clone(),
            status: word(health).to_string(),
            status_since_index: reg.nodes.get(&id).map_or(0, |r| r.since.0),
            workloads: reg.assigned_to(id).count(),
        });
    }
    let count = |pred: &dyn Fn(&keel_core::Workload) -> bool| {
        reg.workloads.values().filter(|w| pred(w)).count()
    };
    Ok(HealthSummary {
        degraded_nodes: counts[Health::Suspect as usize],
        desired_workloads: count(&|w| w.desired == Desired::Running),
        failed_workloads: count(&|w| matches!(w.status, Status::FailedPermanently { .. })),
        leader: info.leader.clone(),
        node_details: details,
        offline_nodes: counts[Health::Dead as usize],
        online_nodes: counts[Health::Alive as usize],
        revision,
        running_workloads: count(&|w| matches!(w.status, Status::Running { .. })),
        total_nodes: info.members.len(),
    })
}

/// Which workloads failed for good, which wait for placement or a retry, and the detector's
/// verdict per member (members that are not node ids are left out).
pub fn recovery(reg: &Registry, revision: u64, info: &ClusterInfo) -> RecoveryReport {
    let named = |pred: fn(&Status) -> bool| -> Vec<String> {
        reg.workloads
            .iter()
            .filter(|(_, w)| pred(&w.status))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut checks = BTreeMap::new();
    for m in &info.members {
        if let Ok(id) = m.parse::<NodeId>() {
            let check = HealthCheck {
                status: word(reg.health(id)).to_string(),
                status_since_index: reg.nodes.get(&id).map_or(0, |r| r.since.0),
            };
            checks.insert(m.clone(), check);
        }
    }
    RecoveryReport {
        attempts_total: reg.workloads.values().map(|w| u64::from(w.attempts)).sum(),
        backing_off_workloads: named(|s| matches!(s, Status::BackingOff { .. })),
        desired_state_count: reg
            .workloads
            .values()
            .filter(|w| w.desired == Desired::Running)
            .count(),
        failed_workloads: named(|s| matches!(s, Status::FailedPermanently { .. })),
        health_checks: checks,
        pending_workloads: named(|s| matches!(s, Status::Pending | Status::Assigned { .. })),
        revision,
    }
}
