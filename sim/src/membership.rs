//! What a run found about membership: the operator's changes (asked for, committed, given up),
//! the configuration at the end, the nodes that need replacing, and the verdict of
//! `MembershipSettledWithin`.
//!
//! Plain records and their judgement: nothing here runs or changes anything.

use std::time::Duration;

use crate::workloads::ms;

/// One membership fault as the operator pursued it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberTask {
    /// The fault as the scenario writes it (`AddMember(Node("n4"))`).
    pub fault: String,
    pub requested_us: u64,
    /// When it settled and how: `Ok(())` committed, `Err(why)` given up (the leader's
    /// configuration made it impossible). `None`: still open at the end.
    pub settled: Option<(u64, Result<(), String>)>,
}

/// The membership part of a run's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipStats {
    /// Membership faults that fired.
    pub requested: u64,
    /// Every one of them, in firing order (filled in at the end of the run).
    pub tasks: Vec<MemberTask>,
    /// When each fault of another kind fired: a change is judged from the later of its request
    /// and the last of these before it settled.
    pub other_faults_us: Vec<u64>,
    /// The configuration the last leader had committed at the end (empty without one).
    pub final_configuration: String,
    /// Nodes that need replacing at the end: a wiped node whose new incarnation no
    /// configuration names, with who reports it.
    pub needs_replacement: Vec<String>,
}

impl MembershipStats {
    /// Whether there is anything membership-related to report.
    pub fn any(&self) -> bool {
        !self.tasks.is_empty() || !self.needs_replacement.is_empty()
    }

    /// When the clock of a change requested at `requested` and settled at `settled` (or
    /// still open at `end`) starts: the later of its request and the last other fault before
    /// then.
    fn clock_start(&self, requested: u64, until: u64) -> u64 {
        let last_fault = self
            .other_faults_us
            .iter()
            .copied()
            .filter(|&t| t <= until)
            .max()
            .unwrap_or(0);
        requested.max(last_fault)
    }

    /// The verdict of `MembershipSettledWithin(bound)` for a run that ended at `end_us`.
    pub fn judge(&self, bound: Duration, end_us: u64) -> (bool, String) {
        let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        let mut slowest = 0;
        for t in &self.tasks {
            match &t.settled {
                Some((at, Ok(()))) => {
                    let took = at - self.clock_start(t.requested_us, *at);
                    slowest = slowest.max(took);
                    if took > bound_us {
                        return (
                            false,
                            format!(
                                "{} asked for at {} took {} once the faults were over (bound {bound:?})",
                                t.fault,
                                ms(t.requested_us),
                                ms(took)
                            ),
                        );
                    }
                }
                Some((at, Err(why))) => {
                    return (
                        false,
                        format!("{} was given up at {}: {why}", t.fault, ms(*at)),
                    )
                }
                None if end_us - self.clock_start(t.requested_us, end_us) <= bound_us => {}
                None => {
                    return (
                        false,
                        format!(
                            "{} asked for at {} was never committed",
                            t.fault,
                            ms(t.requested_us)
                        ),
                    )
                }
            }
        }
        (
            true,
            format!(
                "{} changes asked for, each committed, slowest {} once the faults were over (bound {bound:?})",
                self.tasks.len(),
                ms(slowest)
            ),
        )
    }

    /// One line on the operator's changes, for the summary.
    pub fn changes_line(&self) -> String {
        let done = |ok: bool| {
            self.tasks
                .iter()
                .filter(|t| matches!(&t.settled, Some((_, r)) if r.is_ok() == ok))
                .count()
        };
        let (committed, given_up) = (done(true), done(false));
        let open = self.tasks.len() - committed - given_up;
        format!(
            "{} asked for: {committed} committed, {given_up} given up, {open} open at the end",
            self.tasks.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(requested_us: u64, settled: Option<(u64, Result<(), String>)>) -> MemberTask {
        MemberTask {
            fault: "AddMember(Node(\"n4\"))".into(),
            requested_us,
            settled,
        }
    }

    #[test]
    fn a_change_is_judged_from_the_last_other_fault() {
        let second = Duration::from_secs(1);
        let mut m = MembershipStats {
            tasks: vec![task(1_000_000, Some((3_500_000, Ok(()))))],
            other_faults_us: vec![500_000, 3_000_000, 9_000_000],
            ..MembershipStats::default()
        };
        // Asked at 1 s, a fault at 3 s, committed at 3.5 s: 0.5 s once the faults were over.
        assert!(m.judge(second, 10_000_000).0);
        m.other_faults_us = vec![500_000];
        let (ok, why) = m.judge(second, 10_000_000);
        assert!(!ok && why.contains("took 2500"), "{why}");
        // Still open: fine shortly before the end, a failure long after.
        m.tasks = vec![task(9_500_000, None)];
        assert!(m.judge(second, 10_000_000).0);
        m.tasks = vec![task(5_000_000, None)];
        assert!(!m.judge(second, 10_000_000).0);
        m.tasks = vec![task(5_000_000, Some((5_100_000, Err("no".into()))))];
        let (ok, why) = m.judge(second, 10_000_000);
        assert!(!ok && why.contains("given up"), "{why}");
    }
}
