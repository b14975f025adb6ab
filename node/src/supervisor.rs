//! The node's workload supervisor: runs the copies the core assigns to this node as child
//! processes, each under a [`crate::shim`], and reports back progress and exits. It never decides
//! where or whether a copy runs: it carries out what the core assigned.
//!
//! - `Start` spawns `keel shim --lease-us <left> -- command args...` with the copy's stdout and
//!   stderr appended to `<data-dir>/workloads/<name>.<epoch>.stdout|stderr`;
//! - `LeaseUntil` sends every shim the lease time left; a shim kills its copy by its own clock
//!   when no renewal comes (this node frozen, stuck or dead), so a cut-off node's copies stop
//!   before the leader places them elsewhere;
//! - `Stop` closes the shim's stdin: the shim kills the copy; if the shim itself has not gone
//!   after [`SupervisorConfig::stop_grace`], it is killed too;
//! - a copy's output counts as its progress (fed to the core's watchdog): a workload with a
//!   watchdog must write at least once per watchdog interval;
//! - an exit is reported with the copy's outcome (0 succeeded, 127 could not be started, any
//!   other code or 128 + signal failed).
//!
//! Under `--cfg madsim` there are no child processes (madsim simulates no `tokio::process`, and
//! real tokio's needs a real runtime): every start is reported as failed to start at once, and
//! what only starting copies uses is left out.
#![cfg_attr(madsim, allow(dead_code))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(not(madsim))]
use std::process::Stdio;
use std::time::Duration;

use keel_core::{
    ExitOutcome, Instant, LogIndex, WorkloadAction, WorkloadEvent, WorkloadEventKind, WorkloadSpec,
};
#[cfg(not(madsim))]
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::shim;

/// Supervisor settings, each with its default.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// The program started as each copy's shim with `shim --lease-us N -- ...`: the `keel`
    /// binary. Default: the running executable.
    pub shim_program: Option<PathBuf>,
    /// How often a copy's output files are looked at for progress. Default 200 ms.
    #[serde(with = "crate::config::duration")]
    pub progress_poll: Duration,
    /// How long a stopped copy's shim may take to exit before it is killed. Default 5 s.
    #[serde(with = "crate::config::duration")]
    pub stop_grace: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            shim_program: None,
            progress_poll: Duration::from_millis(200),
            stop_grace: Duration::from_secs(5),
        }
    }
}

struct Copy {
    epoch: LogIndex,
    /// Lease renewals to the copy's task; dropping it stops the copy.
    control: mpsc::UnboundedSender<Duration>,
}

/// The copies this node runs.
pub struct Supervisor {
    cfg: SupervisorConfig,
    program: PathBuf,
    dir: PathBuf,
    copies: BTreeMap<String, Copy>,
    /// The latest lease deadline the core announced.
    lease_until: Instant,
    events: mpsc::UnboundedSender<WorkloadEvent>,
}

impl Supervisor {
    /// A supervisor keeping copies' output under `data_dir/workloads`; what the copies do comes
    /// back on the returned receiver, to be fed to the core.
    pub fn new(
        cfg: SupervisorConfig,
        data_dir: &Path,
    ) -> std::io::Result<(Supervisor, mpsc::UnboundedReceiver<WorkloadEvent>)> {
        let program = match &cfg.shim_program {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let dir = data_dir.join("workloads");
        std::fs::create_dir_all(&dir)?;
        let (events, rx) = mpsc::unbounded_channel();
        Ok((
            Supervisor {
                cfg,
                program,
                dir,
                copies: BTreeMap::new(),
                lease_until: Instant(0),
                events,
            },
            rx,
        ))
    }

    /// How many copies run here.
    pub fn running(&self) -> usize {
        self.copies.len()
    }

    /// Carries out one action of the core, at core time `now`.
    pub fn apply(&mut self, now: Instant, action: WorkloadAction) {
        match action {
            WorkloadAction::Start { name, epoch, spec } => {
                // A copy of an older assignment must not outlive its replacement's start.
                self.copies.remove(&name);
                self.start(now, name, epoch, *spec);
            }
            WorkloadAction::Stop {
                name,
                epoch,
                reason,
            } => {
                if self.copies.get(&name).is_some_and(|c| c.epoch == epoch) {
                    tracing::info!(workload = %name, epoch = epoch.0, ?reason, "stopping copy");
                    self.copies.remove(&name);
                }
            }
            WorkloadAction::LeaseUntil { until } => {
                self.lease_until = until;
                let left = self.lease_left(now);
                // A copy whose task is gone has exited; its report is on its way.
                self.copies.retain(|_, c| c.control.send(left).is_ok());
            }
        }
    }

    /// Stops every copy (the node is shutting down).
    pub fn stop_all(&mut self) {
        self.copies.clear();
    }

    fn lease_left(&self, now: Instant) -> Duration {
        Duration::from_micros(self.lease_until.0.saturating_sub(now.0))
    }

    /// Under madsim: no processes; the copy could not be started.
    #[cfg(madsim)]
    fn start(&mut self, _now: Instant, name: String, epoch: LogIndex, _spec: WorkloadSpec) {
        tracing::warn!(workload = %name, "workload processes do not run under madsim");
        let _ = self.events.send(WorkloadEvent {
            name,
            epoch,
            kind: WorkloadEventKind::Exited(ExitOutcome::StartFailed),
        });
    }

    #[cfg(not(madsim))]
    fn start(&mut self, now: Instant, name: String, epoch: LogIndex, spec: WorkloadSpec) {
        let (control, rx) = mpsc::unbounded_channel();
        let report = |events: &mpsc::UnboundedSender<WorkloadEvent>, kind| {
            let _ = events.send(WorkloadEvent {
                name: name.clone(),
                epoch,
                kind,
            });
        };
        let out = self.dir.join(format!("{name}.{}.stdout", epoch.0));
        let err = self.dir.join(format!("{name}.{}.stderr", epoch.0));
        let files = (append(&out), append(&err));
        let (stdout, stderr) = match files {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(workload = %name, error = %e, "cannot open the copy's output files");
                report(
                    &self.events,
                    WorkloadEventKind::Exited(ExitOutcome::StartFailed),
                );
                return;
            }
        };
        let child = tokio::process::Command::new(&self.program)
            .arg("shim")
            .arg("--lease-us")
            .arg(self.lease_left(now).as_micros().to_string())
            .arg("--")
            .arg(&spec.command)
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(workload = %name, program = %self.program.display(), error = %e,
                    "cannot start the copy's shim");
                report(
                    &self.events,
                    WorkloadEventKind::Exited(ExitOutcome::StartFailed),
                );
                return;
            }
        };
        tracing::info!(workload = %name, epoch = epoch.0, command = %spec.command, pid = ?child.id(), "started copy");
        let stdin = child.stdin.take();
        tokio::spawn(watch(
            child,
            stdin,
            rx,
            self.cfg.clone(),
            [out, err],
            (name.clone(), epoch),
            self.events.clone(),
        ));
        self.copies.insert(name, Copy { epoch, control });
    }
}

#[cfg(not(madsim))]
fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// What a shim's exit status says about the copy.
pub fn outcome(status: std::process::ExitStatus) -> ExitOutcome {
    match shim::exit_code(status) {
        0 => ExitOutcome::Succeeded,
        shim::EXIT_START_FAILED => ExitOutcome::StartFailed,
        code => ExitOutcome::Failed { code },
    }
}

/// Owns one shim: forwards renewals, closes its stdin on stop, watches its output for progress,
/// and reports its exit.
#[cfg(not(madsim))]
async fn watch(
    mut child: tokio::process::Child,
    mut stdin: Option<tokio::process::ChildStdin>,
    mut control: mpsc::UnboundedReceiver<Duration>,
    cfg: SupervisorConfig,
    outputs: [PathBuf; 2],
    (name, epoch): (String, LogIndex),
    events: mpsc::UnboundedSender<WorkloadEvent>,
) {
    let mut poll = tokio::time::interval(cfg.progress_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = output_len(&outputs);
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            biased;
            status = child.wait() => break status,
            renewal = control.recv(), if kill_at.is_none() => match renewal {
                Some(left) => {
                    if let Some(pipe) = stdin.as_mut() {
                        let line = format!("lease {}\n", left.as_micros());
                        if pipe.write_all(line.as_bytes()).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                None => {
                    // Stopped: the shim kills the copy when its stdin closes.
                    stdin = None;
                    kill_at = Some(tokio::time::Instant::now() + cfg.stop_grace);
                }
            },
            _ = poll.tick() => {
                if kill_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    tracing::warn!(workload = %name, epoch = epoch.0, "the shim did not stop in time; killing it");
                    let _ = child.start_kill();
                }
                let len = output_len(&outputs);
                if len > seen {
                    seen = len;
                    let _ = events.send(WorkloadEvent { name: name.clone(), epoch, kind: WorkloadEventKind::Progress });
                }
            }
        }
    };
    let outcome = match status {
        Ok(s) => outcome(s),
        Err(_) => ExitOutcome::Failed { code: -1 },
    };
    tracing::info!(workload = %name, epoch = epoch.0, ?outcome, "copy exited");
    let _ = events.send(WorkloadEvent {
        name,
        epoch,
        kind: WorkloadEventKind::Exited(outcome),
    });
}

#[cfg(not(madsim))]
fn output_len(paths: &[PathBuf; 2]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// A shim that ignores its stdin closing is killed once `stop_grace` has passed, and its
    /// exit is still reported.
    #[tokio::test]
    async fn a_shim_that_does_not_stop_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stubborn = dir.path().join("stubborn-shim");
        std::fs::write(&stubborn, "#!/bin/sh\nexec sleep 30\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stubborn, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cfg = SupervisorConfig {
            shim_program: Some(stubborn),
            progress_poll: Duration::from_millis(20),
            stop_grace: Duration::from_millis(200),
        };
        let (mut sup, mut events) = Supervisor::new(cfg, dir.path()).expect("supervisor");
        let epoch = LogIndex(7);
        let spec = Box::new(WorkloadSpec::new("w", "true"));
        sup.apply(
            Instant(0),
            WorkloadAction::LeaseUntil {
                until: Instant(60_000_000),
            },
        );
        sup.apply(
            Instant(0),
            WorkloadAction::Start {
                name: "w".into(),
                epoch,
                spec,
            },
        );
        assert_eq!(sup.running(), 1);
        sup.apply(
            Instant(0),
            WorkloadAction::Stop {
                name: "w".into(),
                epoch,
                reason: keel_core::StopReason::Unassigned,
            },
        );
        assert_eq!(sup.running(), 0);
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("reported well before the shim's own 30 s")
            .expect("an event");
        assert_eq!(ev.epoch, epoch);
        assert!(
            matches!(
                ev.kind,
                WorkloadEventKind::Exited(ExitOutcome::Failed { .. })
            ),
            "{ev:?}"
        );
    }
}
