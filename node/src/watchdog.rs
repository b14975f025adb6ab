//! The apoptosis watchdog: a thread outside the event loop that checks the loop keeps turning.
//!
//! A node whose loop is stuck (a deadlocked lock, a disk that never answers an fsync, a bug that
//! spins) still holds its TCP connections open and looks alive to a naive observer, while it
//! answers nothing. Better a clean crash the cluster handles (a new leader, the node's workloads
//! re-placed) than such a zombie: when the loop has not turned for [`WatchdogConfig::stall_limit`],
//! the watchdog logs why and ends the process with exit code [`EXIT_STALLED`].
//!
//! The loop turns at least at every core deadline (a few times per lease renewal interval), so an
//! idle node is never mistaken for a stuck one. If the watchdog itself was not scheduled for a
//! while (the whole process was stopped with SIGSTOP, or the machine suspended), it restarts its
//! count instead of blaming the loop for time nobody ran.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code of a node ended by its watchdog (EX_SOFTWARE).
pub const EXIT_STALLED: i32 = 70;

/// Watchdog settings (the `[watchdog]` table of `--config`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// The loop not turning for this long ends the process. Default 2 s (two lease durations
    /// and more: by then the node's leases ran out anyway).
    #[serde(with = "crate::config::duration")]
    pub stall_limit: Duration,
    /// How often the watchdog looks. Default 100 ms.
    #[serde(with = "crate::config::duration")]
    pub check_every: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            stall_limit: Duration::from_secs(2),
            check_every: Duration::from_millis(100),
        }
    }
}

/// The loop's side: call [`Pulse::beat`] at every turn. Dropping it stops the watchdog.
pub struct Pulse {
    beats: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl Pulse {
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// Starts the watchdog thread; `on_stall` runs once if the loop stalls past the limit (the node
/// passes a function that logs and exits).
pub fn start(cfg: WatchdogConfig, on_stall: impl FnOnce(Duration) + Send + 'static) -> Pulse {
    let beats = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let pulse = Pulse {
        beats: beats.clone(),
        stopped: stopped.clone(),
    };
    let spawned = std::thread::Builder::new()
        .name("keel-watchdog".into())
        .spawn(move || watch(cfg, &beats, &stopped, on_stall));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the watchdog thread; running without it");
    }
    pulse
}

fn watch(
    cfg: WatchdogConfig,
    beats: &AtomicU64,
    stopped: &AtomicBool,
    on_stall: impl FnOnce(Duration),
) {
    let mut seen = beats.load(Ordering::Relaxed);
    let mut since = Instant::now();
    let mut last_look = since;
    while !stopped.load(Ordering::Relaxed) {
        std::thread::sleep(cfg.check_every);
        let now = Instant::now();
        let overslept = now.duration_since(last_look) > cfg.check_every + cfg.stall_limit / 2;
        last_look = now;
        let b = beats.load(Ordering::Relaxed);
        if b != seen || overslept {
            // The loop turned, or we did not run either: start counting afresh.
            seen = b;
            since = now;
            continue;
        }
        let stalled = now.duration_since(since);
        if stalled >= cfg.stall_limit && !stopped.load(Ordering::Relaxed) {
            on_stall(stalled);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(stall_limit: Duration) -> WatchdogConfig {
        WatchdogConfig {
            stall_limit,
            check_every: Duration::from_millis(20),
        }
    }

    #[test]
    fn a_loop_that_stops_turning_is_reported() {
        let (tx, rx) = std::sync::mpsc::channel();
        let pulse = start(quick(Duration::from_millis(300)), move |d| {
            let _ = tx.send(d);
        });
        pulse.beat();
        let stalled = rx.recv_timeout(Duration::from_secs(20)).expect("reported");
        assert!(stalled >= Duration::from_millis(300), "{stalled:?}");
        drop(pulse);
    }

    #[test]
    fn a_turning_loop_is_left_alone_and_dropping_the_pulse_ends_the_watch() {
        let (tx, rx) = std::sync::mpsc::channel();
        let pulse = start(quick(Duration::from_secs(1)), move |d| {
            let _ = tx.send(d);
        });
        for _ in 0..40 {
            pulse.beat();
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(pulse);
        // Stopped: never reports, however long nothing beats.
        assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
    }
}
