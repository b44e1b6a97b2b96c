//! Data-path liveness: the heartbeat behind the VIP announcement.
//!
//! A thread of its own (`mux-liveness`) wakes every `[bgp] liveness_timeout_ms / 6` and asks two
//! questions:
//! - **Is every worker polling?** Each worker stores a loop count in its [`WorkerStats`]
//!   heartbeat on every iteration (an idle worker still loops at least every
//!   `[dataplane] idle_sleep_max_us`, at most 10 ms, see `worker.rs`). A count that did not move for two thirds of the timeout is a stuck worker
//!   ([`StallJudge`]).
//! - **Is the path to the NIC intact?** The control thread probes it every tick (the XDP link
//!   still attached, the DPDK port valid and its link up) and records a fault in
//!   [`DaemonState`]; this thread reads it.
//!
//! While both hold, it sends the announcement guard `alive`; otherwise `down REASON`, which
//! withdraws at once. If this thread, or the whole process, stops running, the heartbeats stop
//! and the guard withdraws by itself after the timeout (see [`crate::control::announce`]). The
//! thread also hands the guard the VIPs the control thread wants announced and records the
//! guard's answers in the shared state for `/v1/status` and `/metrics`.
//!
//! A stall is measured only over time this thread itself observed: after the whole process was
//! stopped (`SIGSTOP`) and continued, a worker that has not yet run since `SIGCONT` is not
//! blamed for the seconds nobody was running.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::announce::GuardLink;
use crate::control::announce::protocol::{FromGuard, ToGuard};
use crate::control::state::DaemonState;
#[allow(unused_imports)] // named in the module doc
use crate::dataplane::worker::WorkerStats;

/// Heartbeats per liveness timeout.
const BEATS_PER_TIMEOUT: u32 = 6;

/// A worker whose loop count stopped moving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The worker's index.
    pub worker: usize,
    /// How long it was seen not moving.
    pub for_: Duration,
}

/// Judges the workers' heartbeats.
#[derive(Clone, Debug)]
pub struct StallJudge {
    stall_after: Duration,
    /// Longest gap between two observations that counts in full (the rest of a longer gap is
    /// time nobody observed).
    max_step: Duration,
    last_call: Option<Instant>,
    seen: Vec<(u64, Duration)>,
}

impl StallJudge {
    /// A judge that declares a worker stuck after `stall_after` without progress.
    pub fn new(workers: usize, stall_after: Duration) -> StallJudge {
        StallJudge {
            stall_after,
            max_step: stall_after / 2,
            last_call: None,
            seen: vec![(u64::MAX, Duration::ZERO); workers],
        }
    }

    /// Takes the workers' heartbeat counts observed at `now`; returns the worker stuck longest
    /// if one is past the limit.
    pub fn judge(&mut self, beats: &[u64], now: Instant) -> Result<(), Stall> {
        let step = self
            .last_call
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(self.max_step);
        self.last_call = Some(now);
        let mut worst: Option<Stall> = None;
        for (worker, (seen, &beat)) in self.seen.iter_mut().zip(beats).enumerate() {
            if seen.0 == beat {
                seen.1 += step;
            } else {
                *seen = (beat, Duration::ZERO);
            }
            if seen.1 >= self.stall_after && worst.as_ref().is_none_or(|w| seen.1 > w.for_) {
                worst = Some(Stall {
                    worker,
                    for_: seen.1,
                });
            }
        }
        worst.map_or(Ok(()), Err)
    }
}

/// What the liveness thread concluded last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every worker polls and the data path is intact.
    Alive,
    /// Why the VIPs are withdrawn.
    Down(String),
}

/// Starts the liveness thread. It runs until `stop` is set and then hands back the guard link
/// (if any) for the daemon to close once the workers are stopped.
pub fn spawn(
    state: Arc<DaemonState>,
    guard: Option<GuardLink>,
    timeout: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Option<GuardLink>>> {
    std::thread::Builder::new()
        .name("mux-liveness".into())
        .spawn(move || run(&state, guard, timeout, &stop))
}

fn run(
    state: &DaemonState,
    mut guard: Option<GuardLink>,
    timeout: Duration,
    stop: &AtomicBool,
) -> Option<GuardLink> {
    let interval = timeout / BEATS_PER_TIMEOUT;
    let mut judge = StallJudge::new(state.workers.len(), timeout * 2 / 3);
    let mut beats = vec![0u64; state.workers.len()];
    let mut sent_want: Option<BTreeSet<std::net::IpAddr>> = None;
    let mut last = Verdict::Alive;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (b, w) in beats.iter_mut().zip(&state.workers) {
            *b = w.heartbeat.load(Ordering::Relaxed);
        }
        let verdict = match judge.judge(&beats, now) {
            Err(stall) => Verdict::Down(format!(
                "worker {} has not polled its queue for {} ms",
                stall.worker,
                stall.for_.as_millis()
            )),
            Ok(()) => match state.datapath_fault() {
                Some(fault) => Verdict::Down(fault),
                None => Verdict::Alive,
            },
        };
        if verdict != last {
            match &verdict {
                Verdict::Down(reason) => {
                    tracing::error!(%reason, "data path down: withdrawing the VIPs")
                }
                Verdict::Alive => tracing::info!("data path alive again"),
            }
            last = verdict.clone();
        }
        state.set_liveness(verdict.clone());
        let want = state.wanted();
        match guard.as_mut() {
            Some(link) => {
                if let Err(e) = feed(link, &mut sent_want, want, &verdict) {
                    tracing::error!(error = %e, "cannot reach the announcement guard; retrying");
                    sent_want = None;
                }
                for reply in link.replies() {
                    match reply {
                        FromGuard::Announced(vips) => state.set_announced(vips, None),
                        FromGuard::Error(e) => state.set_announce_error(e),
                    }
                }
                state.set_guard_restarts(link.restarts());
            }
            // speaker = "none": nothing to tell; record what would be announced.
            None => {
                let announced = if verdict == Verdict::Alive {
                    want
                } else {
                    BTreeSet::new()
                };
                state.set_announced(announced, None);
            }
        }
        std::thread::sleep(interval);
    }
    guard
}

/// Tells the guard what to announce (when it changed) and how the data path is.
fn feed(
    link: &mut GuardLink,
    sent_want: &mut Option<BTreeSet<std::net::IpAddr>>,
    want: BTreeSet<std::net::IpAddr>,
    verdict: &Verdict,
) -> std::io::Result<()> {
    if link.check()? {
        *sent_want = None;
    }
    if sent_want.as_ref() != Some(&want) {
        link.send(&ToGuard::Want(want.clone()))?;
        *sent_want = Some(want);
    }
    link.send(&match verdict {
        Verdict::Alive => ToGuard::Alive,
        Verdict::Down(reason) => ToGuard::Down(reason.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_millis(200);

    #[test]
    fn moving_workers_are_alive() {
        let t0 = Instant::now();
        let mut j = StallJudge::new(2, STALL);
        for i in 0..20u64 {
            let now = t0 + Duration::from_millis(50 * i);
            assert_eq!(j.judge(&[i, i * 3], now), Ok(()));
        }
    }

    #[test]
    fn a_worker_that_stops_moving_is_named_after_the_limit() {
        let t0 = Instant::now();
        let mut j = StallJudge::new(2, STALL);
        let mut verdicts = Vec::new();
        for i in 0..8u64 {
            let now = t0 + Duration::from_millis(50 * i);
            verdicts.push(j.judge(&[i, 7], now));
        }
        // Worker 1 never moves after the first observation: named 200 ms after it.
        assert!(verdicts[..4].iter().all(Result::is_ok), "{verdicts:?}");
        assert_eq!(
            verdicts[4],
            Err(Stall {
                worker: 1,
                for_: Duration::from_millis(200)
            })
        );
        // It moves again: alive at once.
        assert_eq!(j.judge(&[9, 8], t0 + Duration::from_millis(450)), Ok(()));
    }

    #[test]
    fn a_pause_of_the_whole_process_is_not_blamed_on_a_worker() {
        let t0 = Instant::now();
        let mut j = StallJudge::new(1, STALL);
        assert_eq!(j.judge(&[1], t0), Ok(()));
        // SIGSTOP for 5 s, then SIGCONT: the liveness thread runs before the worker did.
        let resumed = t0 + Duration::from_secs(5);
        assert_eq!(j.judge(&[1], resumed), Ok(()));
        // The worker runs and moves.
        assert_eq!(j.judge(&[2], resumed + Duration::from_millis(50)), Ok(()));
    }

    #[test]
    fn the_worst_stall_is_reported() {
        let t0 = Instant::now();
        let mut j = StallJudge::new(3, STALL);
        j.judge(&[1, 1, 1], t0).unwrap();
        j.judge(&[1, 2, 2], t0 + Duration::from_millis(50)).unwrap();
        for i in 2..6u64 {
            let _ = j.judge(&[1, 2, i], t0 + Duration::from_millis(50 * i));
        }
        let r = j.judge(&[1, 2, 9], t0 + Duration::from_millis(300));
        assert_eq!(r.unwrap_err().worker, 0);
    }
}
