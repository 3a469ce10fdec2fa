//! Children inside agency's lifetime. Every child gets a process group of its own (a
//! terminal's Ctrl-C then reaches agency alone, which forwards it exactly once) and dies
//! with agency (`PR_SET_PDEATHSIG`), so a `kill -9` of agency or of its process group
//! strands no restic or docker child. Once a run holds its lock, SIGINT and SIGTERM are
//! caught: forwarded to the running children, which are awaited, and the run stops before
//! its next change (exit 130 / 143). A task's deadline bounds the wait for a child too.

use std::{
    io,
    os::unix::process::CommandExt,
    sync::{
        Mutex, Once,
        atomic::{AtomicI32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The first SIGINT or SIGTERM caught, 0 before any.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);
/// Process groups of the running children (each child leads its own).
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// When the running task's `timeout` expires.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// How long a child stopped at a deadline has to clean up (restic removes its lock) before
/// it is killed.
const GRACE: Duration = Duration::from_secs(3);

/// From now on SIGINT and SIGTERM stop the run instead of killing it. Idempotent.
pub fn catch_interrupts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
        thread::spawn(move || {
            for signal in signals.forever() {
                let _ = INTERRUPT.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                for group in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    signal_group(*group, signal);
                }
            }
        });
    });
}

/// The signal that interrupted this run, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPT.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// `SIGINT` / `SIGTERM`, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The error of a run stopped by `signal`: it names the signal and what to do.
pub fn interrupted_error(signal: i32) -> anyhow::Error {
    anyhow::anyhow!("interrupted by {}", signal_name(signal))
}

/// Sets (or clears) the deadline of the task now running.
pub fn set_deadline(deadline: Option<Instant>) {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
}

/// The deadline of the task now running.
pub fn deadline() -> Option<Instant> {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prepares a child before it is spawned: its own process group, and death with agency.
pub fn tie(command: &mut std::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    command.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // agency died before the prctl took effect: nobody would ever stop this child.
            if libc::getppid() != parent {
                return Err(io::Error::other("agency exited before its child started"));
            }
            Ok(())
        });
    }
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// A running child, registered for signal forwarding and watched against the deadline
/// while it lives.
pub struct Watch {
    group: i32,
    expired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _stop_watchdog: Option<mpsc::Sender<()>>,
}

impl Watch {
    /// Watches the child whose pid (and so process group) is `pid`, against the deadline
    /// of the task now running.
    pub fn start(pid: u32) -> Self {
        Self::until(pid, deadline())
    }

    fn until(pid: u32, deadline: Option<Instant>) -> Self {
        let group = pid as i32;
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(group);
        // A signal caught between the spawn and the registration above.
        if let Some(signal) = interrupted() {
            signal_group(group, signal);
        }
        let expired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_watchdog = deadline.map(|deadline| {
            let (stop, stopped) = mpsc::channel::<()>();
            let expired = expired.clone();
            thread::spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                if stopped.recv_timeout(left) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return; // The child ended first.
                }
                expired.store(true, Ordering::SeqCst);
                signal_group(group, SIGTERM);
                if stopped.recv_timeout(GRACE) == Err(mpsc::RecvTimeoutError::Timeout) {
                    signal_group(group, libc::SIGKILL);
                }
            });
            stop
        });
        Self { group, expired, _stop_watchdog: stop_watchdog }
    }

    /// Sends `signal` to the child's process group (a pipeline stops one end this way).
    pub fn signal(&self, signal: i32) {
        signal_group(self.group, signal);
    }

    /// Why the child was stopped, if agency stopped it: the deadline or a signal.
    pub fn stopped(&self) -> Option<anyhow::Error> {
        if self.expired.load(Ordering::SeqCst) {
            return Some(anyhow::anyhow!("the task's timeout expired"));
        }
        interrupted().map(interrupted_error)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != self.group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_stops_a_child_and_says_so() {
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        tie(&mut command);
        let mut child = command.spawn().unwrap();
        let watch = Watch::until(child.id(), Some(Instant::now() + Duration::from_millis(200)));
        let started = Instant::now();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < Duration::from_secs(2), "the child ran {:?}", started.elapsed());
        assert_eq!(watch.stopped().unwrap().to_string(), "the task's timeout expired");
    }
}
