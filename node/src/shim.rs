//! `keel shim`: the small process between a node and one workload copy.
//!
//! A node cannot promise that a copy stops when its lease runs out if the copy is its own direct
//! child: a node killed with SIGKILL, frozen with SIGSTOP or stuck in its loop enforces nothing,
//! and the copy would keep running while the leader starts it elsewhere. So every copy runs under
//! a shim (the `keel` binary itself, `keel shim --lease-us N -- command args...`) that enforces
//! the lease on its own clock:
//!
//! - the node writes `lease <micros>\n` to the shim's stdin at every renewal: the lease now runs
//!   `micros` from when the shim reads the line (the node sends the time left, never a clock
//!   reading, so the two processes need no common clock; the pipe's delay only shortens it);
//! - when the lease runs out, the shim kills the copy and exits with [`EXIT_LEASE_EXPIRED`];
//! - when its stdin closes (the node stopped the copy, or the node died in any way, SIGKILL
//!   included: the kernel closes the pipe), the shim kills the copy and exits with
//!   [`EXIT_STOPPED`];
//! - when the copy exits on its own, the shim exits with the copy's code (128 + signal when the
//!   copy was killed by a signal), so the node sees the copy's own outcome;
//! - when the copy cannot be started, the shim prints why on stderr and exits with
//!   [`EXIT_START_FAILED`] (127, as a shell does for a missing command).
//!
//! Limits: a copy that forks its own children must take them down itself; the shim kills the copy
//! it started, not a process group.

use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The copy could not be started.
pub const EXIT_START_FAILED: i32 = 127;
/// The node closed the shim's stdin (stop, or the node is gone); the copy was killed.
pub const EXIT_STOPPED: i32 = 124;
/// No lease renewal arrived in time; the copy was killed.
pub const EXIT_LEASE_EXPIRED: i32 = 125;

/// How often the shim looks whether the copy exited.
const POLL: Duration = Duration::from_millis(10);

enum Control {
    Lease(Duration),
    Closed,
}

/// Parses one control line from the node: `lease <micros>`.
pub fn parse_control(line: &str) -> Result<Duration, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("lease"), Some(n), None) => n
            .parse::<u64>()
            .map(Duration::from_micros)
            .map_err(|e| format!("lease micros {n:?}: {e}")),
        _ => Err(format!("expected `lease <micros>`, got {line:?}")),
    }
}

/// The exit code a shim reports for its copy's exit status.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

/// Runs `program args` under a lease of `lease` from now, renewed by the control lines read from
/// `control` (the node's pipe: the shim's stdin); returns the shim's exit code.
pub fn run(
    program: &str,
    args: &[String],
    lease: Duration,
    control: impl BufRead + Send + 'static,
) -> i32 {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel shim: cannot start {program:?}: {e}");
            return EXIT_START_FAILED;
        }
    };
    let (tx, rx) = mpsc::channel();
    // Reads the node's renewals; stdin closing ends it.
    std::thread::spawn(move || {
        for line in control.lines() {
            let Ok(line) = line else { break };
            match parse_control(&line) {
                Ok(d) => {
                    if tx.send(Control::Lease(d)).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("keel shim: ignoring a control line: {e}"),
            }
        }
        let _ = tx.send(Control::Closed);
    });
    let mut deadline = Instant::now() + lease;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return exit_code(status),
            Ok(None) => {}
            Err(e) => {
                eprintln!("keel shim: cannot wait for {program:?}: {e}");
                return stop(&mut child, EXIT_STOPPED);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            eprintln!("keel shim: the node's lease ran out; killing {program:?}");
            return stop(&mut child, EXIT_LEASE_EXPIRED);
        }
        match rx.recv_timeout(POLL.min(deadline - now)) {
            Ok(Control::Lease(d)) => deadline = Instant::now() + d,
            Ok(Control::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                return stop(&mut child, EXIT_STOPPED)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn stop(child: &mut Child, code: i32) -> i32 {
    let _ = child.kill();
    let _ = child.wait();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_or_name_what_is_wrong() {
        assert_eq!(
            parse_control("lease 800000"),
            Ok(Duration::from_millis(800))
        );
        assert!(parse_control("lease").is_err());
        assert!(parse_control("lease x")
            .unwrap_err()
            .contains("lease micros \"x\""));
        assert!(parse_control("lease 1 2").is_err());
        assert!(parse_control("renew 5").is_err());
    }

    /// A control pipe fed by the test: lines sent arrive; dropping the sender closes it.
    struct Pipe(mpsc::Receiver<String>, Vec<u8>);

    impl std::io::Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(line) => self.1 = line.into_bytes(),
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    fn pipe() -> (mpsc::Sender<String>, std::io::BufReader<Pipe>) {
        let (tx, rx) = mpsc::channel();
        (tx, std::io::BufReader::new(Pipe(rx, Vec::new())))
    }

    fn sleep_30() -> Vec<String> {
        vec!["30".to_string()]
    }

    #[test]
    fn a_copy_without_renewals_is_killed_when_the_lease_runs_out() {
        let (_keep_open, control) = pipe();
        let code = run("sleep", &sleep_30(), Duration::from_millis(200), control);
        assert_eq!(code, EXIT_LEASE_EXPIRED);
    }

    #[test]
    fn renewals_keep_the_copy_running_and_closing_the_pipe_stops_it() {
        let (tx, control) = pipe();
        let shim = std::thread::spawn(move || {
            run("sleep", &sleep_30(), Duration::from_millis(300), control)
        });
        // One renewal stretches the lease to 2 s; past the first lease's end the copy still runs
        // (otherwise the shim would already have ended, lease expired), until the pipe closes.
        tx.send("lease 2000000\n".to_string()).expect("send");
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            !shim.is_finished(),
            "the renewal did not keep the copy running"
        );
        drop(tx);
        assert_eq!(shim.join().expect("shim"), EXIT_STOPPED);
    }

    #[test]
    fn a_missing_program_is_a_start_failure() {
        let (_keep_open, control) = pipe();
        let code = run(
            "/nonexistent/keel-test-program",
            &[],
            Duration::from_secs(1),
            control,
        );
        assert_eq!(code, EXIT_START_FAILED);
    }

    #[test]
    fn the_copy_s_own_exit_code_comes_through() {
        let (_keep_open, control) = pipe();
        let code = run(
            "sh",
            &["-c".to_string(), "exit 3".to_string()],
            Duration::from_secs(5),
            control,
        );
        assert_eq!(code, 3);
    }
}
