//! The RON printer: a scenario as text in the shape [`Scenario::parse`] reads, so that printing
//! and parsing again gives the same scenario. Faults print in [`super::fault`]. Nothing here
//! parses or checks.

use std::time::Duration;

use keel_core::duration::format as format_duration;

use super::fault::fault_ron;
use super::{Expectation, Scenario, Selector};

impl Scenario {
    /// The scenario as RON text in the shape [`Scenario::parse`] reads (round trip exact).
    pub fn to_ron(&self) -> String {
        let mut s = String::new();
        s.push_str("Scenario(\n");
        s.push_str(&format!("    name: {:?},\n", self.name));
        s.push_str(&format!("    description: {:?},\n", self.description));
        s.push_str(&format!("    nodes: {},\n", self.nodes));
        if self.members != self.nodes {
            s.push_str(&format!("    members: {},\n", self.members));
        }
        s.push_str(&format!(
            "    duration: {:?},\n",
            format_duration(self.duration)
        ));
        let n = &self.network;
        s.push_str(&format!(
            "    network: (latency: ({:?}, {:?}), drop_rate: {:?}, duplicate_rate: {:?}),\n",
            format_duration(n.latency.0),
            format_duration(n.latency.1),
            n.drop_rate,
            n.duplicate_rate
        ));
        let c = &self.clients;
        s.push_str(&format!(
            "    clients: (count: {}, rate_per_sec: {:?}, keys: {}, timeout: {:?}),\n",
            c.count,
            c.rate_per_sec,
            c.keys,
            format_duration(c.timeout)
        ));
        s.push_str("    workloads: [\n");
        for w in &self.workloads {
            s.push_str(&format!(
                "        (name: {:?}, count: {}, max_attempts: {}, watchdog: {:?}, backoff: ({:?}, {:?})),\n",
                w.name,
                w.count,
                w.max_attempts,
                format_duration(w.watchdog.unwrap_or_default()),
                format_duration(w.backoff.0),
                format_duration(w.backoff.1)
            ));
        }
        s.push_str("    ],\n    faults: [\n");
        for f in &self.faults {
            s.push_str(&format!(
                "        (at: {:?}, fault: {}),\n",
                format_duration(f.at),
                fault_ron(&f.fault)
            ));
        }
        s.push_str("    ],\n    expect: [");
        let expect: Vec<String> = self.expect.iter().map(expectation_ron).collect();
        s.push_str(&expect.join(", "));
        s.push_str("],\n");
        if !self.lease_reads {
            s.push_str("    lease_reads: false,\n");
        }
        s.push_str(")\n");
        s
    }
}

pub(super) fn selector_ron(s: &Selector) -> String {
    match s {
        Selector::Node(n) => format!("Node({n:?})"),
        Selector::Leader => "Leader".into(),
        Selector::Follower => "Follower".into(),
        Selector::LastCrashed => "LastCrashed".into(),
        Selector::Random => "Random".into(),
        Selector::LastWiped => "LastWiped".into(),
    }
}

/// A duration as the file writes it: quoted, `"1.5s"`.
pub(super) fn quoted_duration(d: &Duration) -> String {
    format!("{:?}", format_duration(*d))
}

fn expectation_ron(e: &Expectation) -> String {
    match e {
        Expectation::NewLeaderWithin(d) => format!("NewLeaderWithin({:?})", format_duration(*d)),
        Expectation::WorkloadsRecoveredWithin(d) => {
            format!("WorkloadsRecoveredWithin({:?})", format_duration(*d))
        }
        Expectation::NoLostWrites => "NoLostWrites".into(),
        Expectation::Linearizable => "Linearizable".into(),
        Expectation::AtMostOneRunningCopy => "AtMostOneRunningCopy".into(),
        Expectation::NoFalseReschedules => "NoFalseReschedules".into(),
        Expectation::MaxReplacements(n) => format!("MaxReplacements({n})"),
        Expectation::MaxLeaderChanges(n) => format!("MaxLeaderChanges({n})"),
        Expectation::MinLeaderChanges(n) => format!("MinLeaderChanges({n})"),
        Expectation::MedianWriteLatencyWithin(d) => {
            format!("MedianWriteLatencyWithin({:?})", format_duration(*d))
        }
        Expectation::MedianReadLatencyWithin(d) => {
            format!("MedianReadLatencyWithin({:?})", format_duration(*d))
        }
        Expectation::WorkloadEnds(w, st) => format!("WorkloadEnds({w:?}, {st:?})"),
        Expectation::TransfersReachTarget(d) => {
            format!("TransfersReachTarget({:?})", format_duration(*d))
        }
        Expectation::MembershipSettledWithin(d) => {
            format!("MembershipSettledWithin({:?})", format_duration(*d))
        }
    }
}
