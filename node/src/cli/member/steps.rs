//! Carrying out membership changes one after another, each retried while the leader's answer
//! says it may pass later (a learner catching up, a change in progress, a new leader), until a
//! deadline; and, when a step fails, saying which and what state the cluster is left in.
//!
//! Every step is idempotent: before retrying, the configuration is read, and a change whose
//! effect already holds (an earlier attempt applied, or a previous run did it) counts as done.
//! So the command that failed is also the command that continues. Never: a change the plan
//! does not name.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use keel_node::api::MembersInfo;

use super::remote::{Change, Cluster, Outcome};

/// How long a command may wait, in all, and how often it asks again.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub started: Instant,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Wait {
    pub fn new(timeout: Duration) -> Wait {
        Wait {
            started: Instant::now(),
            timeout,
            poll: Duration::from_millis(250),
        }
    }

    fn over(&self) -> bool {
        self.started.elapsed() >= self.timeout
    }
}

/// How often a wait says it is still waiting when nothing changed...
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// ... and at most how often when the answer changes (a learner's lag, at every poll).
const REPORT_MIN: Duration = Duration::from_secs(1);

/// The refusals a leader may lift by itself: the learner catches up, the change in progress
/// commits, the new leader commits an entry of its term. (The core's `MembershipError`
/// messages; a test pins them.)
pub fn may_pass_later(reason: &str) -> bool {
    [
        "cannot be promoted: it is",
        "a membership change is in progress",
        "has not committed an entry of its term yet",
    ]
    .iter()
    .any(|p| reason.contains(p))
}

/// Whether `change`'s effect holds in `m`.
pub fn holds(change: &Change, m: &MembersInfo) -> bool {
    let find = |id: &str| m.members.iter().find(|x| x.id == id);
    match change {
        Change::Add(r) => find(&r.id).is_some_and(|x| x.incarnation == r.incarnation),
        Change::Promote(id) => find(&id.to_string()).is_some_and(|x| x.voter),
        Change::Remove(id) => find(&id.to_string()).is_none(),
    }
}

/// How a step ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// Committed at this revision.
    Committed(u64),
    /// Its effect holds: it already did, or an attempt whose answer was lost made it so.
    Holds { after_lost_answer: bool },
}

/// Carries out `change`: [`Done`], or the leader's reason (or the last one heard, at the
/// deadline) as the error.
pub fn run(
    cluster: &dyn Cluster,
    change: &Change,
    wait: &Wait,
    out: &mut dyn Write,
) -> anyhow::Result<Done> {
    let mut last = String::new();
    let mut lost = false;
    let mut reported: Option<Instant> = None;
    loop {
        let (reason, refused) = match cluster.change(change)? {
            Outcome::Committed { revision } => return Ok(Done::Committed(revision)),
            Outcome::Refused(r) => (r, true),
            Outcome::Unsettled(r) => {
                lost = true;
                (r, false)
            }
        };
        let mut note = reason.clone();
        match cluster.members() {
            Ok(m) if holds(change, &m) => {
                return Ok(Done::Holds {
                    after_lost_answer: lost,
                })
            }
            Ok(_) if refused && !may_pass_later(&reason) => bail!("{reason}"),
            Ok(_) => {}
            Err(e) if refused && !may_pass_later(&reason) => {
                bail!("{reason} (and the configuration could not be read: {e:#})")
            }
            // The cluster is between leaders, or the answering node is restarting.
            Err(e) => note = format!("{reason} (and the configuration could not be read: {e:#})"),
        }
        if wait.over() {
            bail!(
                "gave up after {:.0?} (--timeout); the last answer: {note}",
                wait.timeout
            );
        }
        let since = reported.map(|r| r.elapsed());
        let due = since.is_none_or(|t| t >= REPORT_EVERY || (note != last && t >= REPORT_MIN));
        if due {
            let waited = wait.started.elapsed().as_secs();
            let _ = writeln!(out, "  not yet ({waited}s of {:.0?}): {note}", wait.timeout);
            reported = Some(Instant::now());
        }
        last = note;
        std::thread::sleep(wait.poll);
    }
}

/// Runs `plan` in order, printing each step. On a failure the error names the step, the
/// configuration the cluster is left with, and `resume`, the command that continues.
pub fn run_plan(
    cluster: &dyn Cluster,
    plan: &[Change],
    wait: &Wait,
    resume: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    not_through_itself(cluster, plan)?;
    for (i, change) in plan.iter().enumerate() {
        let _ = writeln!(out, "step {} of {}: {change}", i + 1, plan.len());
        match run(cluster, change, wait, out) {
            Ok(Done::Committed(revision)) => {
                let _ = writeln!(out, "  done: committed at revision {revision}");
            }
            Ok(Done::Holds {
                after_lost_answer: false,
            }) => {
                let _ = writeln!(out, "  nothing to do: {}", change.already());
            }
            Ok(Done::Holds {
                after_lost_answer: true,
            }) => {
                let _ = writeln!(out, "  done (an attempt whose answer was lost made it)");
            }
            Err(e) => {
                let state = match cluster.members() {
                    Ok(m) => describe(&m),
                    Err(r) => format!("unknown: the configuration could not be read ({r:#})"),
                };
                bail!(
                    "step {} of {} ({change}) failed: {e:#}\nthe configuration now: {state}\n\
                     to continue, run again: {resume}",
                    i + 1,
                    plan.len()
                );
            }
        }
    }
    Ok(())
}

/// Refuses a plan that removes the node it is sent through: a member being removed never hears
/// that its removal committed (the leader stops sending to it), so it could neither confirm it
/// nor answer anything after it.
fn not_through_itself(cluster: &dyn Cluster, plan: &[Change]) -> anyhow::Result<()> {
    let here = cluster.here()?;
    if plan.contains(&Change::Remove(here.node.parse()?)) {
        bail!(
            "{0} is the node asked (--addr): a member being removed cannot confirm its own \
             removal; ask another member (--addr with its HTTP address)",
            here.node
        );
    }
    Ok(())
}

/// A configuration in one line: `n1 voter, n2 voter, n3 learner (incarnation ...), committed`.
pub fn describe(m: &MembersInfo) -> String {
    let mut parts: Vec<String> = m
        .members
        .iter()
        .map(|x| {
            let role = if x.voter { "voter" } else { "learner" };
            format!("{} {role} (incarnation {})", x.id, x.incarnation)
        })
        .collect();
    parts.push(if m.committed {
        "committed".to_string()
    } else {
        "not committed yet".to_string()
    });
    parts.join(", ")
}
