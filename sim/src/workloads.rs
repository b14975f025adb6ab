//! The simulated workload processes: which copies run where, the supervisor that kills a node's
//! copies when its lease runs out (by the driver's clock, whatever the node's loop is doing), and
//! the bookkeeping behind the workload expectations: outages, re-placements, false reschedules,
//! detection-to-running times, and the at-most-one-copy check.
//!
//! A copy is *running* from its `Start` until a `Stop`, its lease expiring, its node crashing, or
//! its process crashing; a hung copy still runs (it counts for at-most-one) but is not *healthy*.
//! A workload's outage is a span with no healthy copy after it first had one.
//!
//! Nothing here steps a node or schedules an event: the engine's workload driver
//! (`world/workload_driver.rs`) calls in with the time.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_core::{LogIndex, NodeId, WorkloadSpec};

use crate::scenario::Scenario;

/// One running process of a workload.
#[derive(Clone, Debug)]
pub(crate) struct SimCopy {
    pub name: String,
    pub node: usize,
    pub epoch: LogIndex,
    pub hung: bool,
    /// Identifies this copy's progress events.
    pub token: u64,
}

/// A span without a healthy copy of a workload; `end_us` is `None` if the run ended in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadOutage {
    pub workload: String,
    pub start_us: u64,
    pub end_us: Option<u64>,
}

/// Workload figures for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadStats {
    /// Workload instances the scenario asked for.
    pub instances: usize,
    pub copies_started: u64,
    pub placements: u64,
    /// Copies given up because their node was declared dead, and placed again.
    pub replacements: u64,
    /// Re-placements away from a node that was up, reachable and undisturbed (a false suspicion).
    pub false_reschedules: Vec<String>,
    pub outages: Vec<WorkloadOutage>,
    /// From the leader declaring a node dead to each of its workloads running elsewhere, µs.
    pub detection_to_running_us: Vec<u64>,
    pub leases_lost: u64,
    pub copies_killed_at_lease_expiry: u64,
    pub watchdog_stops: u64,
    pub backoffs: u64,
    pub breakers_opened: u64,
    pub freezes: u64,
    /// Every workload decision and copy event, in time order: (time, workload, text).
    pub log: Vec<(u64, String, String)>,
    /// Failure-detector verdicts: (time, node, text).
    pub health_log: Vec<(u64, NodeId, String)>,
    /// The registry at the end, as the most advanced live node applied it:
    /// (name, status, node, attempts, committed decisions).
    pub final_state: Vec<FinalWorkload>,
}

/// A workload as the registry left it at the end of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalWorkload {
    pub name: String,
    pub status: String,
    pub node: Option<NodeId>,
    pub attempts: u32,
    pub terminal: bool,
    pub history: Vec<(u64, String)>,
}

/// The scenario's workloads as registry specs: `count` copies of a workload are instances named
/// `name-1`..`name-N` (just `name` when the count is 1).
pub(crate) fn instances(scenario: &Scenario) -> Vec<WorkloadSpec> {
    let mut out = Vec::new();
    for w in &scenario.workloads {
        for i in 1..=w.count {
            let name = if w.count == 1 {
                w.name.clone()
            } else {
                format!("{}-{i}", w.name)
            };
            let mut spec = WorkloadSpec::new(name, "sim");
            spec.max_attempts = w.max_attempts;
            spec.watchdog = w.watchdog;
            spec.backoff_base = w.backoff.0;
            spec.backoff_cap = w.backoff.1;
            out.push(spec);
        }
    }
    out
}

/// Whether an instance belongs to a scenario workload called `family`.
pub(crate) fn in_family(instance: &str, family: &str) -> bool {
    instance == family
        || instance
            .strip_prefix(family)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The processes and their supervisor.
#[derive(Debug, Default)]
pub(crate) struct Processes {
    pub copies: Vec<SimCopy>,
    /// Per node: the lease deadline its supervisor enforces (0: none).
    pub lease_until: Vec<u64>,
    next_token: u64,
    /// Per workload: when its last healthy copy went away (None while healthy or never started).
    down_since: BTreeMap<String, u64>,
    ever_up: BTreeMap<String, bool>,
}

impl Processes {
    pub fn new(nodes: usize) -> Processes {
        Processes {
            lease_until: vec![0; nodes],
            ..Processes::default()
        }
    }

    fn healthy(&self, name: &str) -> usize {
        self.copies
            .iter()
            .filter(|c| c.name == name && !c.hung)
            .count()
    }

    /// Starts a copy; returns its token and the at-most-one verdict.
    pub fn start(
        &mut self,
        now: u64,
        node: usize,
        name: &str,
        epoch: LogIndex,
        stats: &mut WorkloadStats,
    ) -> (u64, Result<(), String>) {
        let others: Vec<String> = self
            .copies
            .iter()
            .filter(|c| c.name == name)
            .map(|c| format!("n{} (epoch {})", c.node + 1, c.epoch.0))
            .collect();
        let verdict = if others.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{name} started on n{} (epoch {}) while it runs on {}",
                node + 1,
                epoch.0,
                others.join(", ")
            ))
        };
        self.next_token += 1;
        let token = self.next_token;
        self.copies.push(SimCopy {
            name: name.to_string(),
            node,
            epoch,
            hung: false,
            token,
        });
        stats.copies_started += 1;
        self.note_up(now, name, stats);
        (token, verdict)
    }

    fn note_up(&mut self, now: u64, name: &str, stats: &mut WorkloadStats) {
        if let Some(start) = self.down_since.remove(name) {
            stats.outages.push(WorkloadOutage {
                workload: name.to_string(),
                start_us: start,
                end_us: Some(now),
            });
        }
        self.ever_up.insert(name.to_string(), true);
    }

    fn note_maybe_down(&mut self, now: u64, name: &str) {
        if self.healthy(name) == 0 && self.ever_up.get(name) == Some(&true) {
            self.down_since.entry(name.to_string()).or_insert(now);
        }
    }

    /// Removes the copies matching `keep == false`; returns how many went.
    pub fn remove_where(&mut self, now: u64, mut gone: impl FnMut(&SimCopy) -> bool) -> usize {
        let mut names = Vec::new();
        self.copies.retain(|c| {
            let g = gone(c);
            if g {
                names.push(c.name.clone());
            }
            !g
        });
        for n in &names {
            self.note_maybe_down(now, n);
        }
        names.len()
    }

    /// The copy stopped hung (still running, no longer healthy).
    pub fn hang(&mut self, now: u64, token: u64) {
        let mut name = None;
        for c in &mut self.copies {
            if c.token == token {
                c.hung = true;
                name = Some(c.name.clone());
            }
        }
        if let Some(n) = name {
            self.note_maybe_down(now, &n);
        }
    }

    /// Closes the books at the end of the run.
    pub fn finish(&mut self, stats: &mut WorkloadStats) {
        for (name, start) in std::mem::take(&mut self.down_since) {
            stats.outages.push(WorkloadOutage {
                workload: name,
                start_us: start,
                end_us: None,
            });
        }
    }
}

impl WorkloadStats {
    /// The causal chain of one workload (or of every instance of a scenario workload): its
    /// decisions and copy events in time order, the failure-detector verdicts on the nodes it
    /// ran on, and the decisions the registry committed. `Err` names the known workloads.
    pub fn explain(&self, name: &str) -> Result<String, String> {
        let names: Vec<&str> = self
            .final_state
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| *n == name || in_family(n, name))
            .collect();
        if names.is_empty() {
            let known: Vec<&str> = self.final_state.iter().map(|f| f.name.as_str()).collect();
            return Err(format!(
                "no workload named {name:?}; the registry holds: {}",
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        let mut out = String::new();
        for n in names {
            self.explain_one(n, &mut out);
        }
        Ok(out)
    }

    fn explain_one(&self, name: &str, out: &mut String) {
        use std::fmt::Write as _;
        let events: Vec<&(u64, String, String)> =
            self.log.iter().filter(|(_, w, _)| w == name).collect();
        // Nodes the workload was placed on or moved from: their health verdicts are causes.
        let mut nodes = std::collections::BTreeSet::new();
        for (_, _, text) in &events {
            for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
                if let Ok(id) = word.parse::<NodeId>() {
                    nodes.insert(id);
                }
            }
        }
        let mut lines: Vec<(u64, String)> = events
            .iter()
            .map(|(t, _, text)| (*t, text.clone()))
            .collect();
        let first = lines.first().map_or(0, |l| l.0);
        for (t, node, text) in &self.health_log {
            if nodes.contains(node) && *t >= first {
                lines.push((*t, text.clone()));
            }
        }
        lines.sort_by_key(|l| l.0);
        let _ = writeln!(out, "workload {name}");
        if let Some(f) = self.final_state.iter().find(|f| f.name == name) {
            let at = f.node.map(|n| format!(" on {n}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  now: {}{at}, {} attempt(s) since submit",
                f.status, f.attempts
            );
        }
        let _ = writeln!(out, "  what happened (simulated time, who decided):");
        for (t, text) in lines {
            let _ = writeln!(out, "    {:>9.3}s  {text}", t as f64 / 1e6);
        }
        if let Some(f) = self.final_state.iter().find(|f| f.name == name) {
            let _ = writeln!(out, "  committed decisions (log index):");
            for (index, what) in &f.history {
                let _ = writeln!(out, "    #{index:<6} {what}");
            }
        }
    }
}

/// The `p`-th percentile (0..=100) of `samples`, or `None` if empty.
pub fn percentile(samples: &[u64], p: usize) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = (p * (v.len() - 1)).div_ceil(100);
    v.get(rank).copied()
}

/// Formats microseconds as milliseconds.
pub fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1e3)
}

/// The time after a fault within which a re-placement away from an undisturbed node counts as
/// false: a node disturbed within this long before the decision may really have been silent.
pub(crate) fn disturbance_window(dead_after: Duration) -> u64 {
    u64::try_from((dead_after * 2).as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_copies_of_one_workload_are_a_violation() {
        let mut p = Processes::new(3);
        let mut s = WorkloadStats::default();
        assert!(p.start(0, 0, "web", LogIndex(3), &mut s).1.is_ok());
        assert!(p.start(0, 1, "api", LogIndex(4), &mut s).1.is_ok());
        let (_, v) = p.start(5, 2, "web", LogIndex(9), &mut s);
        assert!(v.is_err_and(|e| e.contains("web started on n3") && e.contains("n1 (epoch 3)")));
    }

    #[test]
    fn outages_run_from_the_last_healthy_copy_to_the_next() {
        let mut p = Processes::new(2);
        let mut s = WorkloadStats::default();
        let (t, _) = p.start(10, 0, "web", LogIndex(1), &mut s);
        p.hang(20, t);
        p.remove_where(30, |c| c.node == 0);
        assert!(p.start(50, 1, "web", LogIndex(2), &mut s).1.is_ok());
        assert!(p.start(60, 0, "never-down", LogIndex(3), &mut s).1.is_ok());
        p.remove_where(70, |c| c.name == "never-down");
        p.finish(&mut s);
        assert_eq!(
            s.outages,
            vec![
                WorkloadOutage {
                    workload: "web".into(),
                    start_us: 20,
                    end_us: Some(50)
                },
                WorkloadOutage {
                    workload: "never-down".into(),
                    start_us: 70,
                    end_us: None
                },
            ]
        );
    }

    #[test]
    fn families_match_their_instances_only() {
        assert!(in_family("web-3", "web"));
        assert!(in_family("web", "web"));
        assert!(!in_family("webx-3", "web"));
        assert!(!in_family("web-", "web"));
        assert!(!in_family("web-a", "web"));
    }

    #[test]
    fn percentiles_pick_from_the_samples() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[5, 1, 9], 50), Some(5));
        assert_eq!(percentile(&[5, 1, 9], 99), Some(9));
    }
}
