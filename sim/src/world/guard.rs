//! The progress guards: simulated time must move, and at a sane event rate. Owns only two
//! counters fed with every event's time; it never looks at nodes or events themselves.

/// Events at one simulated instant past which a run is stopped as stuck (a working cluster
/// produces a few hundred at most).
const MAX_EVENTS_AT_ONE_INSTANT: u64 = 1_000_000;
/// Events per simulated second, averaged from the start, past which a run is stopped as
/// spinning (a loaded 5-node cluster produces about 3,000; the overload scenarios average
/// under 50,000).
const MAX_EVENTS_PER_SIM_SECOND: u64 = 500_000;

/// The progress guards (see [`crate::checkers::PROGRESS`]): simulated time must move, and at a
/// sane event rate. Fed every event's time; says why the run must stop, if it must.
#[derive(Default)]
pub(super) struct ProgressGuard {
    now: u64,
    at_instant: u64,
    events: u64,
}

impl ProgressGuard {
    #[inline]
    pub(super) fn observe(&mut self, time: u64) -> Option<String> {
        self.at_instant = if time == self.now {
            self.at_instant + 1
        } else {
            0
        };
        self.now = time;
        self.events += 1;
        if self.at_instant > MAX_EVENTS_AT_ONE_INSTANT {
            return Some(format!(
                "{} events at one instant: simulated time stopped",
                self.at_instant
            ));
        }
        // The budget is looked at every 4096 events: it only has to stop a spin eventually.
        if self.events & 0xfff == 0 {
            let budget = (time / 1_000_000 + 1) * MAX_EVENTS_PER_SIM_SECOND;
            if self.events > budget {
                return Some(format!(
                    "over {budget} events by this time: something spins"
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{ProgressGuard, MAX_EVENTS_AT_ONE_INSTANT, MAX_EVENTS_PER_SIM_SECOND};

    #[test]
    fn the_progress_guard_stops_a_stopped_clock_and_a_spin_but_not_a_busy_run() {
        // A busy but sane run: 100,000 events per simulated second for 3 s.
        let mut g = ProgressGuard::default();
        for e in 0..300_000u64 {
            assert_eq!(g.observe(e * 10), None, "event {e}");
        }
        // Time stands still (late in a run, where the rate budget alone would allow millions).
        let mut g = ProgressGuard::default();
        let stuck = (0..=MAX_EVENTS_AT_ONE_INSTANT + 1).find_map(|_| g.observe(60_000_000));
        assert!(stuck.is_some_and(|w| w.contains("simulated time stopped")));
        // Time crawls: a new instant every event, a microsecond apart (1 M events per second).
        let mut g = ProgressGuard::default();
        let spin = (0..2 * MAX_EVENTS_PER_SIM_SECOND).find_map(|e| g.observe(e));
        assert!(spin.is_some_and(|w| w.contains("something spins")));
    }
}
