//! Faults in scenario files, in one place: the [`Fault`] model, its raw form as `ron` reads it,
//! its conversion (with the checks that name the faulty line and field), and its RON form. A new
//! fault kind is an arm in each of these (and [`Fault::family`] names the file of the engine that
//! injects it, `sim/src/world/faults/{family}.rs`). Nothing here injects a fault.

use std::time::Duration;

use serde::Deserialize;

use super::locate::Locator;
use super::printer::{quoted_duration, selector_ron};
use super::raw::RawSelector;
use super::{ScenarioError, Selector, WorkloadSpec};

/// What happens to the cluster; durations are how long the effect lasts (above zero).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The node stops at once; what it had not synced is lost.
    Crash(Selector),
    /// A crashed node starts again from its durable state.
    Restart(Selector),
    /// Two nodes can talk iff some group holds both (groups may overlap: a bridge).
    Partition(Vec<Vec<String>>),
    /// The node can reach no one and no one can reach it.
    Isolate(Selector),
    /// Messages from the first node no longer reach the second.
    OneWay(Selector, Selector),
    /// Undo every partition, isolation and one-way cut.
    Heal,
    /// The node processes nothing for the duration, then resumes with stale beliefs.
    Hang(Selector, Duration),
    /// The node's CPU, disk and outgoing links are slower by the factor (at least 1.0) for the
    /// duration.
    Slow(Selector, f64, Duration),
    /// Open-loop client requests at this rate, for this long.
    /// RON: `Overload(rate_per_sec: 20000, lasting: "5s")`.
    Overload {
        /// Requests per second, above zero.
        rate_per_sec: f64,
        /// How long the burst lasts.
        lasting: Duration,
    },
    /// Crash a running copy of the named workload (listed in `workloads`; `name-K` names one
    /// instance, `name` any of them).
    CrashWorkload(String),
    /// Hang a running copy of the named workload (as for `CrashWorkload`).
    HangWorkload(String),
    /// The operator asks the leader to hand leadership to its most caught-up follower (what a
    /// node does when it shuts down gracefully). Nothing happens if no node leads.
    TransferLeadership,
    /// The operator asks the leader to hand leadership to the selected node (resolved when the
    /// fault fires). A leader refuses a target that is not one of its followers (itself, when
    /// the selector is `Leader`): nothing happens then. Nothing happens if no node leads.
    /// RON: `TransferLeadershipTo(Node("n3"))`.
    TransferLeadershipTo(Selector),
    /// Messages from the first node to the second are held back: every message sent on that
    /// link while the delay lasts arrives `extra` later than the network would deliver it (it is
    /// not lost for it; a cut link still loses it). Another delay of the same link replaces this
    /// one. `Heal` leaves delays alone: they end on their own.
    /// RON: `Delay(from: Leader, to: Follower, extra: "150ms", lasting: "2s")`.
    Delay {
        /// The sending end, resolved when the fault fires.
        from: Selector,
        /// The receiving end, resolved when the fault fires (after `from`).
        to: Selector,
        /// Latency added to each message, above zero.
        extra: Duration,
        /// For how long messages sent on the link are held back, above zero.
        lasting: Duration,
    },
    /// Arm the selected node (resolved when the fault fires; `LastCrashed` arms a node that is
    /// down, for when it is back): the next time it grants a vote, it crashes right after the
    /// answer has left it, and restarts from its durable state the given time later. A node that
    /// grants no vote within [`ARMED_FAULT_PATIENCE`] is disarmed.
    /// RON: `CrashAfterVote(Leader, "2ms")`.
    CrashAfterVote(Selector, Duration),
    /// Arm the cluster: the next leader to append entries while it is not cut off is cut off
    /// from every node right after that step (its entries of that step reach no one), for the
    /// given time; then its links come back. Several armed at once hit successive leaders, which
    /// is how the Raft paper's figure 8 happens. Disarmed after [`ARMED_FAULT_PATIENCE`].
    /// RON: `IsolateLeaderOnAppend("800ms")`.
    IsolateLeaderOnAppend(Duration),
    /// Arm the cluster: the next leader to advance its commit index while it is not cut off is
    /// cut off from every node right after that step (the messages of that step, which would
    /// tell the followers what it committed, reach no one), for the given time. A leader that
    /// commits only what a majority holds loses nothing to this; one that commits an
    /// earlier-term entry by counting replicas (the Raft paper's figure 8) may. Disarmed after
    /// [`ARMED_FAULT_PATIENCE`]; several armed at once hit successive commits.
    /// RON: `IsolateLeaderOnCommit("2s")`.
    IsolateLeaderOnCommit(Duration),
    /// The node crashes and starts again at once on an empty disk: a new incarnation (a disk
    /// life the cluster's configuration does not name) with no bootstrap members. It must never
    /// vote or count until an operator adds it back (`ReplaceNode`). RON: `WipeDisk(Follower)`.
    WipeDisk(Selector),
    /// The operator asks the leader to add the selected node, of its current incarnation, as a
    /// learner, and asks again (after `SimConfig::member_retry`) until that is committed.
    /// RON: `AddLearner(Node("n4"))`.
    AddLearner(Selector),
    /// The operator adds the selected node as a learner, then keeps asking the leader to
    /// promote it (a refusal such as "not caught up" is asked again a little later) until it is
    /// a voter in a committed configuration. RON: `AddMember(Node("n4"))`.
    AddMember(Selector),
    /// The operator asks the leader to promote the selected learner to voter, again until it
    /// is committed (a node that is not a member yet, its `AddLearner` still on its way, is
    /// waited for). RON: `Promote(Node("n4"))`.
    Promote(Selector),
    /// The operator asks the leader to remove the selected node (voter or learner), again
    /// until it is committed. RON: `RemoveMember(Leader)`.
    RemoveMember(Selector),
    /// The operator's replace after a disk died: the selected node's current incarnation is
    /// added as a learner (which demotes the old incarnation's voter in the same step), and
    /// promoted once caught up. RON: `ReplaceNode(LastWiped)`.
    ReplaceNode(Selector),
}

/// How long an armed fault (`CrashAfterVote`, `IsolateLeaderOnAppend`, `IsolateLeaderOnCommit`)
/// waits for its moment.
pub const ARMED_FAULT_PATIENCE: Duration = Duration::from_secs(3);

/// The fault families: each is injected by one file of the engine
/// (`sim/src/world/faults/{family}.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `Crash`, `Restart`, `WipeDisk`.
    Crash,
    /// `Partition`, `Isolate`, `OneWay`, `Heal`.
    Partition,
    /// `Hang`, `Slow`.
    Hang,
    /// `Overload`.
    Overload,
    /// `CrashWorkload`, `HangWorkload`.
    Workload,
    /// `TransferLeadership`, `TransferLeadershipTo`.
    Transfer,
    /// `Delay`.
    Delay,
    /// `CrashAfterVote`, `IsolateLeaderOnAppend`, `IsolateLeaderOnCommit`.
    Armed,
    /// `AddLearner`, `AddMember`, `Promote`, `RemoveMember`, `ReplaceNode` (in `members.rs`).
    Membership,
}

impl Fault {
    /// The family whose file injects this fault.
    pub fn family(&self) -> Family {
        match self {
            Fault::Crash(_) | Fault::Restart(_) | Fault::WipeDisk(_) => Family::Crash,
            Fault::Partition(_) | Fault::Isolate(_) | Fault::OneWay(..) | Fault::Heal => {
                Family::Partition
            }
            Fault::Hang(..) | Fault::Slow(..) => Family::Hang,
            Fault::Overload { .. } => Family::Overload,
            Fault::CrashWorkload(_) | Fault::HangWorkload(_) => Family::Workload,
            Fault::TransferLeadership | Fault::TransferLeadershipTo(_) => Family::Transfer,
            Fault::Delay { .. } => Family::Delay,
            Fault::CrashAfterVote(..)
            | Fault::IsolateLeaderOnAppend(_)
            | Fault::IsolateLeaderOnCommit(_) => Family::Armed,
            Fault::AddLearner(_)
            | Fault::AddMember(_)
            | Fault::Promote(_)
            | Fault::RemoveMember(_)
            | Fault::ReplaceNode(_) => Family::Membership,
        }
    }
}

/// A fault as written in the file: durations still as text, selectors unchecked.
#[derive(Deserialize)]
pub(super) enum RawFault {
    Crash(RawSelector),
    Restart(RawSelector),
    Partition(Vec<Vec<String>>),
    Isolate(RawSelector),
    OneWay(RawSelector, RawSelector),
    Heal,
    Hang(RawSelector, String),
    Slow(RawSelector, f64, String),
    Overload {
        rate_per_sec: f64,
        lasting: String,
    },
    CrashWorkload(String),
    HangWorkload(String),
    TransferLeadership,
    TransferLeadershipTo(RawSelector),
    Delay {
        from: RawSelector,
        to: RawSelector,
        extra: String,
        lasting: String,
    },
    CrashAfterVote(RawSelector, String),
    IsolateLeaderOnAppend(String),
    IsolateLeaderOnCommit(String),
    WipeDisk(RawSelector),
    AddLearner(RawSelector),
    AddMember(RawSelector),
    Promote(RawSelector),
    RemoveMember(RawSelector),
    ReplaceNode(RawSelector),
}

/// What converting one fault needs to know: where it is written, and the names it may use.
pub(super) struct FaultCx<'c, 't> {
    pub(super) loc: &'c Locator<'t>,
    /// The fault's path, `faults[2].fault`.
    pub(super) path: String,
    /// The scenario's node count and names (`n1`..`nN`).
    pub(super) nodes: usize,
    pub(super) names: &'c [String],
    pub(super) workloads: &'c [WorkloadSpec],
}

impl FaultCx<'_, '_> {
    /// The model of `raw`, or the error that names it.
    pub(super) fn convert(&self, raw: RawFault) -> Result<Fault, ScenarioError> {
        let path = &self.path;
        Ok(match raw {
            RawFault::Crash(s) => Fault::Crash(self.sel(s)?),
            RawFault::Restart(s) => Fault::Restart(self.sel(s)?),
            RawFault::Partition(groups) => Fault::Partition(
                groups
                    .into_iter()
                    .map(|g| {
                        g.into_iter()
                            .map(|n| self.node(n))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            RawFault::Isolate(s) => Fault::Isolate(self.sel(s)?),
            RawFault::OneWay(a, b) => Fault::OneWay(self.sel(a)?, self.sel(b)?),
            RawFault::Heal => Fault::Heal,
            RawFault::TransferLeadership => Fault::TransferLeadership,
            RawFault::TransferLeadershipTo(s) => Fault::TransferLeadershipTo(self.sel(s)?),
            RawFault::Delay {
                from,
                to,
                extra,
                lasting,
            } => Fault::Delay {
                from: self.sel(from)?,
                to: self.sel(to)?,
                extra: self.positive(&format!("{path}.extra"), &extra)?,
                lasting: self.positive(&format!("{path}.lasting"), &lasting)?,
            },
            RawFault::Hang(s, d) => Fault::Hang(self.sel(s)?, self.positive(path, &d)?),
            RawFault::Slow(s, factor, d) => {
                if !factor.is_finite() || factor < 1.0 {
                    return Err(self.loc.error(
                        path,
                        format!("a slow-down factor is at least 1.0, not {factor}"),
                    ));
                }
                Fault::Slow(self.sel(s)?, factor, self.positive(path, &d)?)
            }
            RawFault::Overload {
                rate_per_sec,
                lasting,
            } => self.overload(rate_per_sec, &lasting)?,
            RawFault::CrashWorkload(w) => Fault::CrashWorkload(self.workload(w)?),
            RawFault::HangWorkload(w) => Fault::HangWorkload(self.workload(w)?),
            RawFault::CrashAfterVote(s, down) => {
                Fault::CrashAfterVote(self.sel(s)?, self.positive(path, &down)?)
            }
            RawFault::IsolateLeaderOnAppend(t) => {
                Fault::IsolateLeaderOnAppend(self.positive(path, &t)?)
            }
            RawFault::IsolateLeaderOnCommit(t) => {
                Fault::IsolateLeaderOnCommit(self.positive(path, &t)?)
            }
            RawFault::WipeDisk(s) => Fault::WipeDisk(self.sel(s)?),
            RawFault::AddLearner(s) => Fault::AddLearner(self.sel(s)?),
            RawFault::AddMember(s) => Fault::AddMember(self.sel(s)?),
            RawFault::Promote(s) => Fault::Promote(self.sel(s)?),
            RawFault::RemoveMember(s) => Fault::RemoveMember(self.sel(s)?),
            RawFault::ReplaceNode(s) => Fault::ReplaceNode(self.sel(s)?),
        })
    }

    fn overload(&self, rate_per_sec: f64, lasting: &str) -> Result<Fault, ScenarioError> {
        if !rate_per_sec.is_finite() || rate_per_sec <= 0.0 {
            return Err(self.loc.error(
                &self.path,
                format!("the overload rate must be above zero, not {rate_per_sec}"),
            ));
        }
        Ok(Fault::Overload {
            rate_per_sec,
            lasting: self.positive(&self.path, lasting)?,
        })
    }

    fn positive(&self, path: &str, s: &str) -> Result<Duration, ScenarioError> {
        super::convert::positive(self.loc, path, s)
    }

    /// A node name this scenario has.
    fn node(&self, n: String) -> Result<String, ScenarioError> {
        if self.names.contains(&n) {
            return Ok(n);
        }
        // Point at the name itself inside this fault, if it is written plainly.
        let loc = self.loc;
        let quoted = format!("{n:?}");
        let off = loc.span(&self.path).map_or(0, |s| {
            loc.text
                .get(s.start..s.end)
                .and_then(|t| t.find(&quoted))
                .map_or(s.start, |k| s.start + k)
        });
        Err(loc.error_at(
            off,
            Some(self.path.clone()),
            format!(
                "unknown node {quoted} (this scenario has n1..n{})",
                self.nodes
            ),
        ))
    }

    fn sel(&self, s: RawSelector) -> Result<Selector, ScenarioError> {
        Ok(match s {
            RawSelector::Node(n) => Selector::Node(self.node(n)?),
            RawSelector::Leader => Selector::Leader,
            RawSelector::Follower => Selector::Follower,
            RawSelector::LastCrashed => Selector::LastCrashed,
            RawSelector::Random => Selector::Random,
            RawSelector::LastWiped => Selector::LastWiped,
        })
    }

    /// A workload by its name (any of its instances) or one instance, `name-K`.
    fn workload(&self, w: String) -> Result<String, ScenarioError> {
        let instance = |x: &WorkloadSpec| {
            w.strip_prefix(x.name.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| (1..=x.count).contains(&k) && x.count > 1)
        };
        if self.workloads.iter().any(|x| x.name == w || instance(x)) {
            Ok(w)
        } else {
            Err(self.loc.error(
                &self.path,
                format!("unknown workload {w:?} (not listed in `workloads`)"),
            ))
        }
    }
}

/// A fault as the scenario file writes it.
pub(crate) fn fault_ron(f: &Fault) -> String {
    let d = quoted_duration;
    match f {
        Fault::Crash(s) => format!("Crash({})", selector_ron(s)),
        Fault::Restart(s) => format!("Restart({})", selector_ron(s)),
        Fault::Partition(groups) => format!("Partition({groups:?})"),
        Fault::Isolate(s) => format!("Isolate({})", selector_ron(s)),
        Fault::OneWay(a, b) => format!("OneWay({}, {})", selector_ron(a), selector_ron(b)),
        Fault::Heal => "Heal".into(),
        Fault::Hang(s, t) => format!("Hang({}, {})", selector_ron(s), d(t)),
        Fault::Slow(s, factor, t) => format!("Slow({}, {factor:?}, {})", selector_ron(s), d(t)),
        Fault::Overload {
            rate_per_sec,
            lasting,
        } => format!(
            "Overload(rate_per_sec: {rate_per_sec:?}, lasting: {})",
            d(lasting)
        ),
        Fault::CrashWorkload(w) => format!("CrashWorkload({w:?})"),
        Fault::HangWorkload(w) => format!("HangWorkload({w:?})"),
        Fault::TransferLeadership => "TransferLeadership".into(),
        Fault::TransferLeadershipTo(s) => format!("TransferLeadershipTo({})", selector_ron(s)),
        Fault::Delay {
            from,
            to,
            extra,
            lasting,
        } => format!(
            "Delay(from: {}, to: {}, extra: {}, lasting: {})",
            selector_ron(from),
            selector_ron(to),
            d(extra),
            d(lasting)
        ),
        Fault::CrashAfterVote(s, down) => {
            format!("CrashAfterVote({}, {})", selector_ron(s), d(down))
        }
        Fault::IsolateLeaderOnAppend(t) => format!("IsolateLeaderOnAppend({})", d(t)),
        Fault::IsolateLeaderOnCommit(t) => format!("IsolateLeaderOnCommit({})", d(t)),
        Fault::WipeDisk(s) => format!("WipeDisk({})", selector_ron(s)),
        Fault::AddLearner(s) => format!("AddLearner({})", selector_ron(s)),
        Fault::AddMember(s) => format!("AddMember({})", selector_ron(s)),
        Fault::Promote(s) => format!("Promote({})", selector_ron(s)),
        Fault::RemoveMember(s) => format!("RemoveMember({})", selector_ron(s)),
        Fault::ReplaceNode(s) => format!("ReplaceNode({})", selector_ron(s)),
    }
}
