//! `GET /metrics`: the node's counters in the Prometheus text exposition format (0.0.4).
//!
//! Kept by the event loop from what the core does and says (its trace events and replies), so
//! reading them costs the loop nothing but a copy. Names follow Prometheus conventions: `_total`
//! for counters, base units (seconds) for the histogram. This module only counts and renders: it
//! never reads a clock (latencies come measured) and never does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use keel_core::{Event, Health, Node, PlaceReason, Status, WorkloadDecision};

/// Upper bounds (seconds) of the commit latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Times this node saw the leader change to a new node (its own election included).
    pub leader_changes: u64,
    /// Peers the leader's failure detector marked suspect or dead (missed heartbeats).
    pub heartbeat_failures: u64,
    /// Workload placements after a lost or failed copy (re-placements and retries), by the leader.
    pub recovery_attempts: u64,
    /// Of those, the ones whose copy was then reported running (or completed).
    pub recovery_successes: u64,
    /// Client requests refused at once for lack of room (`Overloaded`).
    pub shed_requests: u64,
    /// Acknowledged writes through this node's API: arrival to the committed answer.
    pub commit_latency: Histogram,
    /// Messages to peers dropped because their queue was full.
    pub dropped_messages: u64,
    // Gauges, refreshed at every read.
    pub term: u64,
    pub commit_index: u64,
    pub is_leader: bool,
    pub workloads_running: usize,
    /// Recovery attempts not yet decided: workload -> (target node, seen assigned there).
    pending_recoveries: BTreeMap<String, (keel_core::NodeId, bool)>,
    last_leader: Option<keel_core::NodeId>,
}

impl Metrics {
    /// Takes in one trace event of this node's core.
    pub fn event(&mut self, e: &Event) {
        match e {
            Event::NodeHealth { health, .. } if *health != Health::Alive => {
                self.heartbeat_failures += 1
            }
            Event::RequestShed { .. } => self.shed_requests += 1,
            Event::Workload {
                name,
                decision:
                    WorkloadDecision::Placed {
                        node,
                        reason: PlaceReason::Replaced | PlaceReason::Retry,
                        ..
                    },
            } => {
                self.recovery_attempts += 1;
                self.pending_recoveries.insert(name.clone(), (*node, false));
            }
            _ => {}
        }
    }

    /// Looks at the node after a step: leader changes and how pending recoveries turned out.
    pub fn observe(&mut self, node: &Node) {
        let leader = node.leader();
        if leader.is_some() && leader != self.last_leader {
            self.leader_changes += 1;
        }
        if leader.is_some() {
            self.last_leader = leader;
        }
        if !node.is_leader() {
            // Only the leader decides recoveries; a new one counts its own.
            self.pending_recoveries.clear();
            return;
        }
        if self.pending_recoveries.is_empty() {
            return;
        }
        let registry = &node.state_machine().registry;
        let mut succeeded = 0;
        self.pending_recoveries.retain(|name, (target, assigned)| {
            match registry.get(name).map(|w| &w.status) {
                Some(Status::Running { node, .. }) if node == target => {
                    succeeded += 1;
                    false
                }
                Some(Status::Completed) => {
                    succeeded += 1;
                    false
                }
                Some(Status::Assigned { node, .. }) if node == target => {
                    *assigned = true;
                    true
                }
                // Until the placement is applied, the old status still shows.
                Some(_) if !*assigned => true,
                _ => false,
            }
        });
        self.recovery_successes += succeeded;
    }

    /// The text exposition: the counters, the gauges, then the commit latency histogram.
    pub fn render(&self, node: &str) -> String {
        let mut s = String::new();
        let label = format!("node=\"{node}\"");
        for (name, help, v) in self.counters() {
            family(&mut s, name, help, "counter", &label, &v.to_string());
        }
        for (name, help, v) in self.gauges() {
            family(&mut s, name, help, "gauge", &label, &v);
        }
        self.render_latency(&mut s, &label);
        s
    }

    /// Every counter: name, help, value.
    fn counters(&self) -> [(&'static str, &'static str, u64); 6] {
        [
            (
                "keel_leader_changes_total",
                "Times this node saw leadership move to another node.",
                self.leader_changes,
            ),
            (
                "keel_heartbeat_failures_total",
                "Peers the leader's failure detector marked suspect or dead.",
                self.heartbeat_failures,
            ),
            (
                "keel_recovery_attempts_total",
                "Workload re-placements and retries decided by this node as leader.",
                self.recovery_attempts,
            ),
            (
                "keel_recovery_successes_total",
                "Recovery attempts whose copy then ran (or completed).",
                self.recovery_successes,
            ),
            (
                "keel_shed_requests_total",
                "Client requests refused at once for lack of room.",
                self.shed_requests,
            ),
            (
                "keel_dropped_messages_total",
                "Messages to peers dropped because the peer's queue was full.",
                self.dropped_messages,
            ),
        ]
    }

    /// Every gauge: name, help, value as written.
    fn gauges(&self) -> [(&'static str, &'static str, String); 5] {
        let ratio = if self.recovery_attempts == 0 {
            1.0
        } else {
            self.recovery_successes as f64 / self.recovery_attempts as f64
        };
        [
            (
                "keel_recovery_success_ratio",
                "Recovery successes over attempts (1 when there were none).",
                format!("{ratio}"),
            ),
            (
                "keel_term",
                "The node's current term.",
                self.term.to_string(),
            ),
            (
                "keel_commit_index",
                "The node's commit index.",
                self.commit_index.to_string(),
            ),
            (
                "keel_is_leader",
                "1 if this node leads.",
                u8::from(self.is_leader).to_string(),
            ),
            (
                "keel_workloads_running",
                "Workload copies this node runs.",
                self.workloads_running.to_string(),
            ),
        ]
    }

    /// The commit latency histogram: cumulative buckets, sum and count.
    fn render_latency(&self, s: &mut String, label: &str) {
        let h = &self.commit_latency;
        let name = "keel_commit_latency_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Acknowledged writes through this node: arrival to committed answer.\n# TYPE {name} histogram"
        );
        for (le, c) in LATENCY_BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(s, "{name}_bucket{{{label},le=\"{le}\"}} {c}");
        }
        let _ = writeln!(s, "{name}_bucket{{{label},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(s, "{name}_sum{{{label}}} {}", h.sum);
        let _ = writeln!(s, "{name}_count{{{label}}} {}", h.count);
    }
}

/// One single-sample family: its help, its type, and its value for this node.
fn family(s: &mut String, name: &str, help: &str, kind: &str, label: &str, value: &str) {
    let _ = writeln!(
        s,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{label}}} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_once_with_cumulative_buckets() {
        let mut m = Metrics::default();
        m.commit_latency.observe(Duration::from_micros(300));
        m.commit_latency.observe(Duration::from_millis(30));
        m.event(&Event::RequestShed {
            id: keel_core::RequestId(1),
            reason: keel_core::ShedReason::TooManyPendingProposals,
        });
        let text = m.render("n1");
        for family in [
            "keel_leader_changes_total",
            "keel_heartbeat_failures_total",
            "keel_recovery_attempts_total",
            "keel_recovery_success_ratio",
            "keel_commit_latency_seconds",
            "keel_shed_requests_total",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}\n{text}"
            );
        }
        assert!(
            text.contains("keel_shed_requests_total{node=\"n1\"} 1"),
            "{text}"
        );
        assert!(text.contains("keel_commit_latency_seconds_bucket{node=\"n1\",le=\"0.00025\"} 0"));
        assert!(text.contains("keel_commit_latency_seconds_bucket{node=\"n1\",le=\"0.0005\"} 1"));
        assert!(text.contains("keel_commit_latency_seconds_bucket{node=\"n1\",le=\"0.05\"} 2"));
        assert!(text.contains("keel_commit_latency_seconds_count{node=\"n1\"} 2"));
    }
}
