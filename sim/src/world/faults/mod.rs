//! The fault injector: a scenario's faults fire here, each at its time, and each is handled by
//! the file of its family. What every fault shares lives here: counting it, marking the hash,
//! the condensed-trace line (written before the lines of what the fault causes), the JSON
//! trace, and re-evaluating who leads.
//!
//! One file per family: [`crash`] (Crash, Restart, WipeDisk), [`partition`] (Partition, Isolate, OneWay,
//! Heal), [`hang`] (Hang, Slow), [`delay`] (Delay), [`overload`] (Overload), [`workload`]
//! (CrashWorkload, HangWorkload), [`transfer`] (TransferLeadership, TransferLeadershipTo) and
//! [`armed`] (CrashAfterVote, IsolateLeaderOnAppend, IsolateLeaderOnCommit), [`members`]
//! (AddLearner, AddMember, Promote, RemoveMember, ReplaceNode: the operator's requests, which
//! [`operator`] asks and asks again until they are committed); [`select`] resolves selectors. A family's file owns the state its faults need and the events that end
//! them. Nothing here steps a node except through the host's inputs, and only the fault stream
//! is drawn from.

mod armed;
mod crash;
mod delay;
mod hang;
mod members;
mod operator;
mod overload;
mod partition;
mod select;
mod transfer;
mod workload;

pub(super) use armed::{Armed, Moment};
pub(super) use members::MemberOps;
pub(super) use overload::Burst;

use super::stats::fmt_time;
use super::World;
use crate::rng::Stream;
use crate::scenario::{Family, Fault};

/// The injector's own state; each family's lives in its file.
pub(super) struct FaultState {
    /// The fault stream: every choice a fault makes (a random node, a mid-step cut point).
    rng: Stream,
    /// Crashed nodes still down, the most recent last (for `LastCrashed`).
    pub(super) crashed_stack: Vec<usize>,
    /// The overload burst in force.
    pub(super) burst: Burst,
    /// Faults armed and waiting for their moment.
    pub(super) armed: Armed,
    /// The node whose disk was wiped last (for `LastWiped`).
    pub(super) last_wiped: Option<usize>,
    /// The operator's membership changes, asked for and until they are committed.
    pub(super) members: MemberOps,
}

impl FaultState {
    pub(super) fn new(n: usize, rng: Stream, overload_rng: Stream) -> FaultState {
        FaultState {
            rng,
            crashed_stack: Vec::new(),
            burst: Burst::new(overload_rng),
            armed: Armed::new(n),
            last_wiped: None,
            members: MemberOps::default(),
        }
    }
}

/// A short, stable description of a fault for traces: its scenario-file form.
fn describe_fault(f: &Fault) -> String {
    crate::scenario::fault_ron(f)
}

/// What a family's file answers for a fault [`Fault::family`] routes elsewhere (never happens:
/// each family's match ends with this arm only because the enum is shared).
#[cold]
fn misrouted(f: &Fault) -> String {
    debug_assert!(false, "{} reached the wrong family", describe_fault(f));
    format!("nobody ({} is not injected here)", describe_fault(f))
}

impl World<'_> {
    /// Scenario fault `index` fires now.
    pub(in crate::world) fn fault(&mut self, index: usize) {
        let Some(tf) = self.scenario.faults.get(index) else {
            return;
        };
        let fault = tf.fault.clone();
        self.stats.faults_injected += 1;
        self.lead.last_fault_at = self.now;
        if fault.family() != Family::Membership {
            self.stats.membership.other_faults_us.push(self.now);
        }
        self.tr.hasher.u64(0xFA17);
        self.tr.hasher.u64(index as u64);
        // The fault's line goes before the lines of what it causes.
        let line_at = self.stats.condensed.len();
        let text = self.fire(&fault);
        let line = format!(
            "{} fault {} -> {text}",
            fmt_time(self.now),
            describe_fault(&fault)
        );
        self.stats.condensed.insert(line_at, line);
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "fault", "fault": describe_fault(&fault), "target": text,
            }));
        }
        self.update_leadership();
    }

    /// Hands `fault` to the file of its family; returns whom it hit, for the condensed trace.
    fn fire(&mut self, fault: &Fault) -> String {
        match fault.family() {
            Family::Crash => self.fire_crash_family(fault),
            Family::Partition => self.fire_partition_family(fault),
            Family::Hang => self.fire_hang_family(fault),
            Family::Overload => self.fire_overload_family(fault),
            Family::Workload => self.fire_workload_family(fault),
            Family::Transfer => self.fire_transfer_family(fault),
            Family::Delay => self.fire_delay_family(fault),
            Family::Armed => self.fire_armed_family(fault),
            Family::Membership => self.fire_membership_family(fault),
        }
    }

    /// Marks every node a just-fired fault may have impaired (cut links, a hang, a slow-down) as
    /// disturbed now, to tell a false reschedule from a real one. The selector was resolved when
    /// the fault fired; every node it may have hit is marked (cut links and hangs affect how
    /// both sides hear each other).
    fn mark_impaired(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if self.net.any_cut_from(i) || n.hung_until > now || n.slow_factor > 1.0 {
                self.work.disturbed_at[i] = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    /// Every fault kind reaches the file of its family (a fault routed elsewhere would trip the
    /// debug assertion in `misrouted`, or leave its mark in the condensed trace).
    #[test]
    fn every_fault_kind_reaches_its_family() {
        let faults = [
            "CrashWorkload(\"w\")",
            "HangWorkload(\"w\")",
            "Crash(Leader)",
            "Restart(LastCrashed)",
            "Partition([[\"n1\", \"n2\"], [\"n3\"]])",
            "Heal",
            "Isolate(Follower)",
            "OneWay(Leader, Follower)",
            "Heal",
            "Hang(Random, \"100ms\")",
            "Slow(Node(\"n2\"), 2.0, \"100ms\")",
            "Overload(rate_per_sec: 1000.0, lasting: \"100ms\")",
            "TransferLeadership",
            "TransferLeadershipTo(Node(\"n3\"))",
            "Delay(from: Leader, to: Follower, extra: \"20ms\", lasting: \"100ms\")",
            "CrashAfterVote(Random, \"2ms\")",
            "IsolateLeaderOnAppend(\"100ms\")",
            "IsolateLeaderOnCommit(\"100ms\")",
        ];
        let list: Vec<String> = faults
            .iter()
            .enumerate()
            .map(|(k, f)| format!("(at: \"{}ms\", fault: {f})", 1_000 + 200 * k))
            .collect();
        let text = format!(
            "Scenario(name: \"all\", nodes: 3, duration: \"8s\", \
             workloads: [(name: \"w\", count: 1)], faults: [{}])",
            list.join(", ")
        );
        let scenario = Scenario::parse(&text, "all.ron").unwrap_or_else(|e| panic!("{e}"));
        let report = crate::run(&scenario, 1, &crate::RunOptions::default());
        assert_eq!(report.stats.faults_injected, faults.len() as u64);
        for line in &report.condensed_trace {
            assert!(!line.contains("not injected here"), "{line}");
        }
        for kind in [
            "Crash",
            "Restart",
            "Partition",
            "Heal",
            "Isolate",
            "OneWay",
            "Hang",
            "Slow",
            "Overload",
            "CrashWorkload",
            "HangWorkload",
            "TransferLeadership",
            "Delay",
            "CrashAfterVote",
            "IsolateLeaderOnAppend",
            "IsolateLeaderOnCommit",
        ] {
            let name = format!("fault {kind}");
            assert!(
                report.stats.coverage.contains_key(name.as_str()),
                "{name} never fired"
            );
        }
    }

    /// The membership faults, on a cluster of three with two spare nodes: each reaches its
    /// family, the operator commits every change, and the wiped node that was never replaced
    /// is reported as needing replacement.
    #[test]
    fn membership_faults_reach_their_family_and_settle() {
        let text = r#"Scenario(name: "members", nodes: 5, members: 3, duration: "8s", faults: [
            (at: "1s", fault: AddLearner(Node("n4"))),
            (at: "1.5s", fault: Promote(Node("n4"))),
            (at: "2s", fault: AddMember(Node("n5"))),
            (at: "3s", fault: WipeDisk(Node("n2"))),
            (at: "3.2s", fault: ReplaceNode(LastWiped)),
            (at: "5s", fault: RemoveMember(Node("n1"))),
            (at: "6s", fault: WipeDisk(Node("n3"))),
        ], expect: [MembershipSettledWithin("2s"), NoLostWrites, Linearizable])"#;
        let scenario = Scenario::parse(text, "members.ron").unwrap_or_else(|e| panic!("{e}"));
        let report = crate::run(&scenario, 1, &crate::RunOptions::default());
        let summary = report.summary(std::time::Duration::from_secs(1));
        assert!(report.passed(), "{summary}");
        let m = &report.stats.membership;
        assert_eq!(m.tasks.len(), 5);
        assert!(m
            .tasks
            .iter()
            .all(|t| matches!(t.settled, Some((_, Ok(()))))));
        assert!(
            m.final_configuration.starts_with("n2,n3,n4,n5 "),
            "{summary}"
        );
        assert_eq!(m.needs_replacement.len(), 1, "{summary}");
        assert!(
            m.needs_replacement[0].starts_with("n3 (incarnation 1)"),
            "{summary}"
        );
        assert!(summary.contains("NEEDS REPLACEMENT"), "{summary}");
        for kind in [
            "AddLearner",
            "Promote",
            "AddMember",
            "WipeDisk",
            "ReplaceNode",
            "RemoveMember",
        ] {
            let name = format!("fault {kind}");
            assert!(report.stats.coverage.contains_key(name.as_str()), "{name}");
        }
    }
}
