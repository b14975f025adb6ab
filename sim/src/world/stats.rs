//! The run's statistics as the engine sees them: coverage counts, the condensed trace and its
//! five-second windows, and who leads usefully (for failover times).
//!
//! [`Window`] and [`Leadership`] own the few counters behind those figures; the figures
//! themselves go into [`crate::report::RunStats`]. Nothing here changes what the cluster does:
//! no randomness, no events, no node state.

use keel_core::NodeId;

use super::World;
use crate::report::Failover;

/// The length of one condensed-trace summary window.
const WINDOW_US: u64 = 5_000_000;

pub(super) fn fmt_time(t: u64) -> String {
    format!("{:>4}.{:03}s", t / 1_000_000, (t / 1_000) % 1_000)
}

/// Commits and client outcomes seen in the current condensed-trace window.
#[derive(Default)]
pub(super) struct Window {
    start: u64,
    pub(super) commits: u64,
    /// Client operations completed (ok, fail, info).
    pub(super) ops: (usize, usize, usize),
    /// The highest commit index any node reported.
    pub(super) max_commit: u64,
}

/// Who leads usefully, and since when there has been no such leader.
pub(super) struct Leadership {
    healthy: Option<(NodeId, u64)>,
    /// When the last fault fired (failovers are measured from it at the latest).
    pub(super) last_fault_at: u64,
    outage_since: Option<u64>,
    /// The latest election started: (term, node), to notice two candidates in one term.
    pub(super) last_election: (u64, usize),
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            healthy: None,
            last_fault_at: 0,
            outage_since: Some(0),
            last_election: (0, 0),
        }
    }
}

impl World<'_> {
    pub(super) fn cover(&mut self, what: &'static str) {
        *self.stats.coverage.entry(what).or_insert(0) += 1;
    }

    pub(super) fn condensed(&mut self, line: String) {
        self.stats
            .condensed
            .push(format!("{} {line}", fmt_time(self.now)));
    }

    /// Closes every summary window that ended by now.
    pub(super) fn roll_window(&mut self) {
        while self.now >= self.window.start + WINDOW_US {
            let (ok, fail, info) = self.window.ops;
            let start = self.window.start;
            self.window.start += WINDOW_US;
            let line = format!(
                "{}-{} commits +{}, client ops ok {ok} / fail {fail} / info {info}",
                fmt_time(start).trim_start(),
                fmt_time(self.window.start).trim_start(),
                self.window.commits,
            );
            self.stats
                .condensed
                .push(format!("{} {line}", fmt_time(self.window.start)));
            self.window.commits = 0;
            self.window.ops = (0, 0, 0);
        }
    }

    /// A node leads usefully if it is up, not hung, believes it leads, and reaches a majority
    /// of the voters of its configuration (itself included if it is one of them).
    fn compute_healthy_leader(&self) -> Option<(NodeId, u64)> {
        let n = self.nodes.len();
        let mut best: Option<(NodeId, u64)> = None;
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = sn.node.as_ref() else {
                continue;
            };
            if !node.is_leader() || self.now < sn.hung_until {
                continue;
            }
            let config = node.membership();
            let quorum = config.quorum();
            let voter = |j: usize| {
                let inc = keel_core::Incarnation(self.nodes[j].disk_life);
                config.is_voter(self.members[j], inc)
            };
            let reach = (0..n)
                .filter(|&j| voter(j))
                .filter(|&j| {
                    j == i
                        || (self.nodes[j].up()
                            && self.now >= self.nodes[j].hung_until
                            && !self.net.blocked(i, j)
                            && !self.net.blocked(j, i))
                })
                .count();
            if reach >= quorum && best.is_none_or(|(_, t)| node.term().0 > t) {
                best = Some((sn.id, node.term().0));
            }
        }
        best
    }

    /// Notes an outage starting or ending (a failover) after anything that may change who leads.
    pub(super) fn update_leadership(&mut self) {
        let now = self.compute_healthy_leader();
        match (self.lead.outage_since, now) {
            (None, None) => self.lead.outage_since = Some(self.now),
            (Some(start), Some(_)) => {
                if self.stats.first_leader_at.is_none() {
                    self.stats.first_leader_at = Some(self.now);
                } else {
                    // A fault during an outage restarts the clock: the cluster is judged on
                    // how fast it recovers from the last fault, not on faults it could not
                    // outrun (a leader crashed again before its successor was elected).
                    let start = start.max(self.lead.last_fault_at.min(self.now));
                    self.stats.failovers.push(Failover {
                        start_us: start,
                        end_us: Some(self.now),
                    });
                }
                self.lead.outage_since = None;
            }
            _ => {}
        }
        self.lead.healthy = now;
    }

    /// At the end of a run: an outage still open is a failover that never ended.
    pub(super) fn close_outage(&mut self) {
        if let Some(start) = self.lead.outage_since.take() {
            if self.stats.first_leader_at.is_some() {
                self.stats.failovers.push(Failover {
                    start_us: start.max(self.lead.last_fault_at),
                    end_us: None,
                });
            }
        }
    }
}
