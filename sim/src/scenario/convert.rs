//! From the raw form to the model, with every check made after parsing: cluster size, rates
//! and probabilities, durations (well-formed, above zero where a window must be), unknown node
//! or workload names, faults out of order or not before the end of the run. Every refusal names
//! its line and field through the [`Locator`]. Nothing here reads a file or scans text.

use std::time::Duration;

use keel_core::duration::format as format_duration;

use super::fault::FaultCx;
use super::locate::Locator;
use super::raw::{RawClients, RawExpectation, RawNetwork, RawScenario, RawTimedFault, RawWorkload};
use super::{
    parse_duration, ClientSpec, Expectation, NetworkSpec, Scenario, ScenarioError, TimedFault,
    WorkloadSpec, WORKLOAD_STATUSES,
};

/// The duration written at `path`.
fn dur(loc: &Locator<'_>, path: &str, s: &str) -> Result<Duration, ScenarioError> {
    parse_duration(s).map_err(|m| loc.error(path, m))
}

/// The duration written at `path`, which must be above zero.
pub(super) fn positive(loc: &Locator<'_>, path: &str, s: &str) -> Result<Duration, ScenarioError> {
    let d = dur(loc, path, s)?;
    if d.is_zero() {
        return Err(loc.error(path, "the duration must be above zero".into()));
    }
    Ok(d)
}

/// The scenario `raw` describes, or the first thing wrong with it.
pub(super) fn convert(loc: &Locator<'_>, raw: RawScenario) -> Result<Scenario, ScenarioError> {
    if !(1..=9).contains(&raw.nodes) {
        return Err(loc.error(
            "nodes",
            format!("a cluster has 1 to 9 nodes, not {}", raw.nodes),
        ));
    }
    let members = raw.members.unwrap_or(raw.nodes);
    if !(1..=raw.nodes).contains(&members) {
        return Err(loc.error(
            "members",
            format!(
                "the cluster is bootstrapped by 1 to {} of its nodes, not {members}",
                raw.nodes
            ),
        ));
    }
    let duration = positive(loc, "duration", &raw.duration)?;
    let network = network(loc, &raw.network)?;
    let clients = clients(loc, &raw.clients)?;
    let workloads = workloads(loc, raw.workloads)?;
    let faults = faults(loc, raw.faults, raw.nodes, duration, &workloads)?;
    let expect = expectations(loc, raw.expect, &workloads)?;
    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        nodes: raw.nodes,
        members,
        duration,
        network,
        clients,
        workloads,
        faults,
        expect,
        lease_reads: raw.lease_reads,
    })
}

fn network(loc: &Locator<'_>, raw: &RawNetwork) -> Result<NetworkSpec, ScenarioError> {
    let latency = (
        dur(loc, "network.latency", &raw.latency.0)?,
        dur(loc, "network.latency", &raw.latency.1)?,
    );
    if latency.0 > latency.1 {
        return Err(loc.error(
            "network.latency",
            format!(
                "the minimum ({}) is above the maximum ({})",
                format_duration(latency.0),
                format_duration(latency.1)
            ),
        ));
    }
    for (name, v) in [
        ("network.drop_rate", raw.drop_rate),
        ("network.duplicate_rate", raw.duplicate_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(loc.error(
                name,
                format!("a probability is between 0.0 and 1.0, not {v}"),
            ));
        }
    }
    Ok(NetworkSpec {
        latency,
        drop_rate: raw.drop_rate,
        duplicate_rate: raw.duplicate_rate,
    })
}

fn clients(loc: &Locator<'_>, c: &RawClients) -> Result<ClientSpec, ScenarioError> {
    if !c.rate_per_sec.is_finite() || c.rate_per_sec < 0.0 {
        return Err(loc.error(
            "clients.rate_per_sec",
            format!("must be a non-negative number, not {}", c.rate_per_sec),
        ));
    }
    if c.count > 0 && c.keys == 0 {
        return Err(loc.error("clients.keys", "clients need at least one key".into()));
    }
    let timeout = positive(loc, "clients.timeout", &c.timeout)?;
    Ok(ClientSpec {
        count: c.count,
        rate_per_sec: c.rate_per_sec,
        keys: c.keys,
        timeout,
    })
}

fn workloads(loc: &Locator<'_>, raw: Vec<RawWorkload>) -> Result<Vec<WorkloadSpec>, ScenarioError> {
    let mut workloads: Vec<WorkloadSpec> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let path = format!("workloads[{i}].name");
        if w.name.trim().is_empty() {
            return Err(loc.error(&path, "a workload needs a name".into()));
        }
        if workloads.iter().any(|x| x.name == w.name) {
            return Err(loc.error(&path, format!("workload {:?} is listed twice", w.name)));
        }
        let spec = workload(loc, i, w)?;
        workloads.push(spec);
    }
    Ok(workloads)
}

/// Workload `i`, once its name is known to be new.
fn workload(loc: &Locator<'_>, i: usize, w: RawWorkload) -> Result<WorkloadSpec, ScenarioError> {
    if !(1..=1000).contains(&w.count) {
        return Err(loc.error(
            &format!("workloads[{i}].count"),
            format!("a workload has 1 to 1000 instances, not {}", w.count),
        ));
    }
    if w.max_attempts == 0 {
        return Err(loc.error(
            &format!("workloads[{i}].max_attempts"),
            "at least one attempt is needed".into(),
        ));
    }
    let watchdog = dur(loc, &format!("workloads[{i}].watchdog"), &w.watchdog)?;
    let backoff_path = format!("workloads[{i}].backoff");
    let backoff = (
        dur(loc, &backoff_path, &w.backoff.0)?,
        dur(loc, &backoff_path, &w.backoff.1)?,
    );
    if backoff.0 > backoff.1 {
        return Err(loc.error(&backoff_path, "the base is above the cap".to_string()));
    }
    Ok(WorkloadSpec {
        name: w.name,
        count: w.count,
        max_attempts: w.max_attempts,
        watchdog: (!watchdog.is_zero()).then_some(watchdog),
        backoff,
    })
}

fn faults(
    loc: &Locator<'_>,
    raw: Vec<RawTimedFault>,
    nodes: usize,
    duration: Duration,
    workloads: &[WorkloadSpec],
) -> Result<Vec<TimedFault>, ScenarioError> {
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let mut faults = Vec::new();
    let mut last_at = Duration::ZERO;
    for (i, f) in raw.into_iter().enumerate() {
        let at_path = format!("faults[{i}].at");
        let at = dur(loc, &at_path, &f.at)?;
        if at >= duration {
            return Err(loc.error(
                &at_path,
                format!(
                    "fault at {} is after the end of the scenario ({})",
                    format_duration(at),
                    format_duration(duration)
                ),
            ));
        }
        if at < last_at {
            return Err(loc.error(
                &at_path,
                format!(
                    "faults must be in time order: {} comes after {}",
                    format_duration(at),
                    format_duration(last_at)
                ),
            ));
        }
        last_at = at;
        let cx = FaultCx {
            loc,
            path: format!("faults[{i}].fault"),
            nodes,
            names: &names,
            workloads,
        };
        let fault = cx.convert(f.fault)?;
        faults.push(TimedFault { at, fault });
    }
    Ok(faults)
}

fn expectations(
    loc: &Locator<'_>,
    raw: Vec<RawExpectation>,
    workloads: &[WorkloadSpec],
) -> Result<Vec<Expectation>, ScenarioError> {
    let mut expect = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let path = format!("expect[{i}]");
        let positive = |d: &str| positive(loc, &path, d);
        expect.push(match e {
            RawExpectation::NewLeaderWithin(d) => Expectation::NewLeaderWithin(positive(&d)?),
            RawExpectation::WorkloadsRecoveredWithin(d) => {
                Expectation::WorkloadsRecoveredWithin(positive(&d)?)
            }
            RawExpectation::NoLostWrites => Expectation::NoLostWrites,
            RawExpectation::Linearizable => Expectation::Linearizable,
            RawExpectation::AtMostOneRunningCopy => Expectation::AtMostOneRunningCopy,
            RawExpectation::NoFalseReschedules => Expectation::NoFalseReschedules,
            RawExpectation::MaxReplacements(n) => Expectation::MaxReplacements(n),
            RawExpectation::MaxLeaderChanges(n) => Expectation::MaxLeaderChanges(n),
            RawExpectation::MinLeaderChanges(n) => Expectation::MinLeaderChanges(n),
            RawExpectation::MedianWriteLatencyWithin(d) => {
                Expectation::MedianWriteLatencyWithin(positive(&d)?)
            }
            RawExpectation::MedianReadLatencyWithin(d) => {
                Expectation::MedianReadLatencyWithin(positive(&d)?)
            }
            RawExpectation::TransfersReachTarget(d) => {
                Expectation::TransfersReachTarget(positive(&d)?)
            }
            RawExpectation::MembershipSettledWithin(d) => {
                Expectation::MembershipSettledWithin(positive(&d)?)
            }
            RawExpectation::WorkloadEnds(w, st) => workload_ends(loc, &path, workloads, w, st)?,
        });
    }
    Ok(expect)
}

fn workload_ends(
    loc: &Locator<'_>,
    path: &str,
    workloads: &[WorkloadSpec],
    w: String,
    st: String,
) -> Result<Expectation, ScenarioError> {
    if !workloads.iter().any(|x| x.name == w) {
        return Err(loc.error(
            path,
            format!("unknown workload {w:?} (not listed in `workloads`)"),
        ));
    }
    if !WORKLOAD_STATUSES.contains(&st.as_str()) {
        return Err(loc.error(
            path,
            format!(
                "unknown status {st:?}: expected one of {}",
                WORKLOAD_STATUSES.join(", ")
            ),
        ));
    }
    Ok(Expectation::WorkloadEnds(w, st))
}
