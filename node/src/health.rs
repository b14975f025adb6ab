//! Health and recovery summaries: what `/health/summary` and `/recovery/metrics` report, built
//! from the workload registry (read linearizably through the core) and the cluster as the
//! answering node sees it.
//!
//! Pure functions of their inputs: no I/O, no clock, no access to the running node.

use std::collections::BTreeMap;

use keel_core::{Desired, Health, NodeId, Registry, Status};

use crate::api::{
    ClusterInfo, HealthCheck, HealthSummary, NeedsReplacement, NodeHealth, RecoveryReport,
};

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
        needs_replacement: needs_replacement(info),
    })
}

/// Members that must be added back, as the answering node knows them: every member it heard as
/// another incarnation than the configuration names (a node back on an empty data directory;
/// the leader hears each one, other nodes only those that talk to them), and itself if it is
/// such a node.
pub fn needs_replacement(info: &ClusterInfo) -> Vec<NeedsReplacement> {
    let fix = |id: &str| format!("keel member replace {id}");
    let mut found: Vec<NeedsReplacement> = info
        .strangers
        .iter()
        .map(|s| {
            let named = info
                .membership
                .iter()
                .find(|m| m.id == s.id)
                .map_or("none", |m| m.incarnation.as_str());
            NeedsReplacement {
                node: s.id.clone(),
                incarnation: s.incarnation.clone(),
                reason: format!(
                    "{} answers as incarnation {}, the configuration names incarnation {named}: \
                     it lost its data directory and does not vote",
                    s.id, s.incarnation
                ),
                fix: fix(&s.id),
            }
        })
        .collect();
    if info.needs_replacement && !found.iter().any(|n| n.node == info.node) {
        found.push(NeedsReplacement {
            node: info.node.clone(),
            incarnation: info.incarnation.clone(),
            reason: format!(
                "{} (which answered) is incarnation {}, which the configuration does not name: \
                 it started on an empty data directory and does not vote",
                info.node, info.incarnation
            ),
            fix: fix(&info.node),
        });
    }
    found
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberInfo, StrangerInfo};

    fn cluster(strangers: Vec<StrangerInfo>, needs_replacement: bool) -> ClusterInfo {
        let member = |id: &str| MemberInfo {
            id: id.into(),
            incarnation: "0000000000000000".into(),
            voter: true,
            address: String::new(),
        };
        ClusterInfo {
            node: "n1".into(),
            leader: Some("n1".into()),
            term: 2,
            commit_index: 5,
            members: vec!["n1".into(), "n2".into()],
            incarnation: "00000000000000aa".into(),
            peer_address: "127.0.0.1:7001".into(),
            voter: true,
            needs_replacement,
            membership: vec![member("n1"), member("n2")],
            strangers,
        }
    }

    /// A cluster with nothing to replace answers exactly as before the field existed.
    #[test]
    fn a_healthy_summary_is_unchanged() {
        let s = summary(&Registry::default(), 5, &cluster(vec![], false)).expect("summary");
        assert_eq!(
            serde_json::to_string(&s).expect("json"),
            concat!(
                r#"{"degraded_nodes":0,"desired_workloads":0,"failed_workloads":0,"#,
                r#""leader":"n1","node_details":[{"draining":false,"leader":true,"#,
                r#""node_key":"n1","status":"online","status_since_index":0,"workloads":0},"#,
                r#"{"draining":false,"leader":false,"node_key":"n2","status":"online","#,
                r#""status_since_index":0,"workloads":0}],"offline_nodes":0,"online_nodes":2,"#,
                r#""revision":5,"running_workloads":0,"total_nodes":2}"#
            )
        );
    }

    #[test]
    fn a_stranger_and_a_wiped_answering_node_need_replacement() {
        let heard = StrangerInfo {
            id: "n2".into(),
            incarnation: "00000000000000bb".into(),
        };
        let s = summary(&Registry::default(), 5, &cluster(vec![heard], true)).expect("summary");
        let nodes: Vec<(&str, &str, &str)> = s
            .needs_replacement
            .iter()
            .map(|n| (n.node.as_str(), n.incarnation.as_str(), n.fix.as_str()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("n2", "00000000000000bb", "keel member replace n2"),
                ("n1", "00000000000000aa", "keel member replace n1"),
            ]
        );
        assert!(s.needs_replacement[0]
            .reason
            .contains("the configuration names incarnation 0000000000000000"));
        let json = serde_json::to_string(&s).expect("json");
        assert!(json.contains(r#""total_nodes":2,"needs_replacement":[{"node":"n2""#));
    }
}
