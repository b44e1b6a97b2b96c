//! The graceful stop: withdraw, drain, stop, in that order.
//!
//! 1. The daemon wants nothing announced; the liveness thread tells the guard, which withdraws
//!    through BIRD. We wait (at most [`WITHDRAW_WAIT`]) for the guard to confirm, so the drain
//!    time starts when the routers have been told, not before.
//! 2. Keep forwarding for `[lifecycle] drain_seconds` while the routers move the flows to the
//!    other MUXes (health is still applied: flows still arrive). A second SIGTERM/SIGINT skips
//!    the rest.
//! 3. Stop the liveness thread (its heartbeats would otherwise turn into "worker stalled"),
//!    the workers, then the flow-log writer (after the workers, so it drains every record they
//!    queued), the health feed and the admin endpoint; close the guard's pipe and wait for it
//!    to exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mux_daemon_kit::signals::Signals;

use crate::control::announce::GuardLink;
use crate::control::state::Phase;
use crate::control::table_history;

use super::TICK;
use super::control::Control;
use super::ports::Workers;

/// The longest the stop waits for the guard to confirm the withdrawal.
const WITHDRAW_WAIT: Duration = Duration::from_secs(3);
/// The longest the stop waits for the guard to exit after its pipe is closed.
const GUARD_EXIT_WAIT: Duration = Duration::from_secs(3);

/// What runs until the stop.
#[derive(Debug)]
pub struct Running {
    /// The worker threads.
    pub workers: Workers,
    /// The liveness thread; hands back the guard link.
    pub liveness: JoinHandle<Option<GuardLink>>,
    /// Stops the liveness thread.
    pub stop_liveness: Arc<AtomicBool>,
    /// The admin endpoint's thread.
    pub admin: JoinHandle<()>,
    /// Stops the admin endpoint.
    pub stop_admin: Arc<AtomicBool>,
}

/// Withdraws, drains and stops everything in `running`.
pub fn graceful(control: &mut Control, signals: &Signals, running: Running) {
    let state = Arc::clone(&control.state);
    let drain = Duration::from_secs(u64::from(control.cfg.lifecycle().drain_seconds()));
    state.set_phase(Phase::Draining);
    control.reconcile_announcement();
    let asked = Instant::now();
    while !state.announced.lock().is_ok_and(|a| a.is_empty()) && asked.elapsed() < WITHDRAW_WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::info!(
        withdraw_ms = asked.elapsed().as_millis() as u64,
        drain_seconds = drain.as_secs(),
        "stopping: routes withdrawn, draining"
    );
    // No new flow starts here from now on: the tables in force stop gathering connections,
    // and a restart must not count the time it was down as theirs (table_history, Restarts).
    let stopped_unix_ms = table_history::unix_ms(SystemTime::now());
    control.mark_history_stopped(stopped_unix_ms);
    let until = Instant::now() + drain;
    while Instant::now() < until {
        if signals.terminate.swap(false, Ordering::Relaxed) {
            tracing::info!("second stop signal: skipping the rest of the drain");
            break;
        }
        // Flows still arrive while the routers converge: keep steering them off failed hosts.
        control.apply_health();
        std::thread::sleep(TICK);
    }
    // Again: a health republish during the drain wrote a history without the mark.
    control.mark_history_stopped(stopped_unix_ms);
    running.stop_liveness.store(true, Ordering::Relaxed);
    let guard = running.liveness.join().ok().flatten();
    running.workers.stop();
    // Nothing is pushed any more: the writer empties every ring to disk before it ends.
    if let Some(writer) = control.flow_log.take() {
        let stats = writer.stats();
        writer.finish();
        tracing::info!(
            records = stats.records.load(Ordering::Relaxed),
            lost = stats.lost.load(Ordering::Relaxed),
            "flow log drained and closed"
        );
    }
    control.feed.stop();
    running.stop_admin.store(true, Ordering::Relaxed);
    let _ = running.admin.join();
    if let Some(link) = guard
        && !link.close(GUARD_EXIT_WAIT)
    {
        tracing::warn!("the announcement guard did not exit in time");
    }
    let c = state.counters();
    tracing::info!(
        rx = c.rx,
        forwarded = c.forwarded,
        dropped = c.dropped_total(),
        "mux stopped"
    );
}
