//! `mux announce-guard`: the process that holds the VIP announcement on the MUX's behalf.
//!
//! Started by `mux run` (never by hand), it reads [`ToGuard`] lines on stdin and announces the
//! wanted VIPs through BIRD only while heartbeats keep arriving ([`GuardState`]). It answers
//! each change with a [`FromGuard`] line on stdout and logs to stderr (the MUX's log).
//!
//! Rules, in the order they are checked:
//! 1. stdin closed (the MUX exited or was killed), or SIGTERM/SIGINT: withdraw everything, then
//!    exit (retrying BIRD for [`EXIT_RETRIES`] seconds if it refuses).
//! 2. No `alive` for the timeout, or a `down`: announce nothing.
//! 3. Otherwise: announce the last `want`.
//!
//! A failed announcement is retried every [`RETRY`]. At start the guard takes an exclusive
//! lock next to the include file (waiting for an orphaned guard of a previous MUX to finish
//! withdrawing) and writes an empty announcement before the first heartbeat.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::bird::BirdSpeaker;
use super::protocol::{FromGuard, ToGuard};

/// How soon a failed announcement is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Tries (one per [`RETRY`]) to withdraw before exiting when BIRD refuses.
pub const EXIT_RETRIES: u32 = 5;
/// The longest the guard sleeps without checking its signal flag.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Why the guard could not run.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The lock file could not be opened or locked.
    #[error(
        "cannot lock {path}: {source}; check the directory of [bgp] bird_include exists and is writable"
    )]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// BIRD never accepted the withdrawal before exit.
    #[error("could not withdraw the VIPs before exiting: {0}")]
    Withdraw(String),
}

/// What the guard knows: the wanted VIPs and until when the MUX is known to be alive.
#[derive(Clone, Debug)]
pub struct GuardState {
    timeout: Duration,
    want: BTreeSet<IpAddr>,
    alive_until: Option<Instant>,
    closed: bool,
}

impl GuardState {
    /// Nothing wanted, not alive.
    pub fn new(timeout: Duration) -> GuardState {
        GuardState {
            timeout,
            want: BTreeSet::new(),
            alive_until: None,
            closed: false,
        }
    }

    /// Applies one message received at `now`.
    pub fn apply(&mut self, msg: ToGuard, now: Instant) {
        if self.closed {
            return;
        }
        match msg {
            ToGuard::Want(vips) => self.want = vips,
            ToGuard::Alive => self.alive_until = Some(now + self.timeout),
            ToGuard::Down(_) => self.alive_until = None,
        }
    }

    /// The MUX is gone (its pipe closed) or the guard was told to stop: nothing is announced
    /// from now on, whatever arrives.
    pub fn close(&mut self) {
        self.closed = true;
        self.want.clear();
        self.alive_until = None;
    }

    /// Whether [`GuardState::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// What should be announced at `now`.
    pub fn effective(&self, now: Instant) -> BTreeSet<IpAddr> {
        match self.alive_until {
            Some(until) if now < until => self.want.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// When [`GuardState::effective`] changes by itself (the heartbeat runs out), if it will.
    pub fn expires(&self, now: Instant) -> Option<Instant> {
        self.alive_until.filter(|&until| until > now)
    }
}

/// Runs the guard until its stdin closes or it is told to stop. Returns once the VIPs are
/// withdrawn.
pub fn run(speaker: &BirdSpeaker, timeout: Duration) -> Result<(), GuardError> {
    let lock_path = speaker.lock_path();
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|source| GuardError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(GuardError::Signals)?;
    }
    let lines = spawn_stdin_reader();
    tracing::info!(
        include = %speaker.include.display(),
        socket = %speaker.socket,
        timeout_ms = timeout.as_millis() as u64,
        "announcement guard started"
    );

    let mut state = GuardState::new(timeout);
    // Unknown until the first write: the first decision is always carried out.
    let mut announced: Option<BTreeSet<IpAddr>> = None;
    let mut retry_at: Option<Instant> = None;
    let mut exit_tries = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) && !state.is_closed() {
            tracing::info!("announcement guard told to stop: withdrawing");
            state.close();
        }
        let now = Instant::now();
        let wanted = state.effective(now);
        if announced.as_ref() != Some(&wanted) && retry_at.is_none_or(|t| now >= t) {
            match speaker.announce(&wanted) {
                Ok(()) => {
                    if announced.as_ref().is_some_and(|a| !a.is_empty()) && wanted.is_empty() {
                        tracing::warn!(reason = why_empty(&state, now), "VIP routes withdrawn");
                    } else {
                        tracing::info!(announced = ?wanted, "BGP announcement updated");
                    }
                    reply(&FromGuard::Announced(wanted.clone()));
                    announced = Some(wanted);
                    retry_at = None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "announcement failed; retrying in a second");
                    reply(&FromGuard::Error(e.to_string()));
                    retry_at = Some(now + RETRY);
                    if state.is_closed() {
                        exit_tries += 1;
                        if exit_tries >= EXIT_RETRIES {
                            drop(lock);
                            return Err(GuardError::Withdraw(e.to_string()));
                        }
                    }
                }
            }
            continue;
        }
        if state.is_closed() && announced.as_ref().is_some_and(BTreeSet::is_empty) {
            tracing::info!("VIP routes withdrawn; announcement guard exiting");
            drop(lock);
            return Ok(());
        }
        let mut wait = SIGNAL_CHECK;
        for t in [state.expires(now), retry_at].into_iter().flatten() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        match lines.recv_timeout(wait) {
            Ok(first) => {
                // Everything already queued is applied before deciding again, so a `want`
                // followed by `alive` costs one announcement, not two.
                let now = Instant::now();
                for line in std::iter::once(first).chain(lines.try_iter()) {
                    match ToGuard::parse(&line) {
                        Ok(msg) => {
                            if let ToGuard::Down(reason) = &msg
                                && state.effective(now) != BTreeSet::new()
                            {
                                tracing::warn!(%reason, "the MUX reports its data path down");
                            }
                            state.apply(msg, now);
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a line from the MUX"),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if !state.is_closed() {
                    tracing::warn!("the MUX's pipe closed (it exited or was killed): withdrawing");
                    state.close();
                }
            }
        }
    }
}

/// Why nothing is announced, for the log.
fn why_empty(state: &GuardState, now: Instant) -> &'static str {
    if state.is_closed() {
        "the MUX is gone"
    } else if state.expires(now).is_none() {
        "no heartbeat from the data path within the liveness timeout, or the MUX reported it down"
    } else {
        "the MUX wants nothing announced"
    }
}

/// Reads stdin line by line on a thread of its own; the channel disconnects at end of file.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("guard-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread at start-up");
    rx
}

/// Tells the MUX; a MUX that is gone cannot be told, which is fine.
fn reply(msg: &FromGuard) {
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(msg.to_line().as_bytes())
        .and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vips(v: &[&str]) -> BTreeSet<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    const T: Duration = Duration::from_millis(300);

    #[test]
    fn nothing_is_announced_before_the_first_heartbeat() {
        let t0 = Instant::now();
        let mut s = GuardState::new(T);
        s.apply(ToGuard::Want(vips(&["192.0.2.10"])), t0);
        assert!(s.effective(t0).is_empty());
        assert_eq!(s.expires(t0), None);
        s.apply(ToGuard::Alive, t0);
        assert_eq!(s.effective(t0), vips(&["192.0.2.10"]));
    }

    #[test]
    fn a_missed_heartbeat_withdraws_and_the_next_one_restores() {
        let t0 = Instant::now();
        let mut s = GuardState::new(T);
        s.apply(ToGuard::Want(vips(&["192.0.2.10"])), t0);
        s.apply(ToGuard::Alive, t0);
        assert_eq!(s.expires(t0), Some(t0 + T));
        let just_before = t0 + T - Duration::from_millis(1);
        assert_eq!(s.effective(just_before), vips(&["192.0.2.10"]));
        assert!(s.effective(t0 + T).is_empty(), "the timeout withdraws");
        assert_eq!(s.expires(t0 + T), None);
        let later = t0 + Duration::from_secs(5);
        s.apply(ToGuard::Alive, later);
        assert_eq!(
            s.effective(later),
            vips(&["192.0.2.10"]),
            "SIGCONT restores"
        );
    }

    #[test]
    fn down_withdraws_at_once_until_the_next_heartbeat() {
        let t0 = Instant::now();
        let mut s = GuardState::new(T);
        s.apply(ToGuard::Want(vips(&["192.0.2.10"])), t0);
        s.apply(ToGuard::Alive, t0);
        s.apply(ToGuard::Down("worker 0 stalled".into()), t0);
        assert!(s.effective(t0).is_empty());
        s.apply(ToGuard::Alive, t0);
        assert_eq!(s.effective(t0), vips(&["192.0.2.10"]));
    }

    #[test]
    fn a_new_want_replaces_the_old_one_while_alive() {
        let t0 = Instant::now();
        let mut s = GuardState::new(T);
        s.apply(ToGuard::Alive, t0);
        s.apply(ToGuard::Want(vips(&["192.0.2.10", "2001:db8::10"])), t0);
        assert_eq!(s.effective(t0).len(), 2);
        s.apply(ToGuard::Want(BTreeSet::new()), t0);
        assert!(s.effective(t0).is_empty(), "draining wants nothing");
    }

    #[test]
    fn closed_is_final() {
        let t0 = Instant::now();
        let mut s = GuardState::new(T);
        s.apply(ToGuard::Want(vips(&["192.0.2.10"])), t0);
        s.apply(ToGuard::Alive, t0);
        s.close();
        assert!(s.effective(t0).is_empty());
        s.apply(ToGuard::Want(vips(&["192.0.2.10"])), t0);
        s.apply(ToGuard::Alive, t0);
        assert!(s.effective(t0).is_empty(), "nothing revives a closed guard");
        assert!(s.is_closed());
    }
}
