//! The rise/fall state machine of one health-check target: pure, no clock, no I/O.
//!
//! What it owns: turning a sequence of probe outcomes (each with the wall-clock time it
//! finished) into a state — `unknown` until enough evidence, then `up` or `down` — and the
//! bookkeeping a MUX or an operator needs to judge it: consecutive counts, transitions, when
//! the current failure run began and how long the last up → down detection took.
//!
//! Rules (`rise`, `fall` ≥ 1 from `[health]`):
//! - a success resets the failure count and adds to the success count; a failure the reverse,
//!   so only *consecutive* outcomes count and a backend that alternates never changes state
//!   (no flapping);
//! - `unknown` or `down` → `up` after `rise` consecutive successes;
//! - `unknown` or `up` → `down` after `fall` consecutive failures;
//! - `failing_since_unix_ms` is the time of the first failure of the current failure run: set
//!   on a failure when unset, kept while the target is down (even across successes that are
//!   not yet `rise`), cleared by a success that leaves the state other than `down`;
//! - `detect_ms` is set on an `up` → `down` transition to (transition time − failing since):
//!   how long the outage went unreported after the first failed probe. `unknown` → `down` does
//!   not set it (nothing was detected, the target was never seen up);
//! - `last_error` is the error of the latest probe, `None` after a success.
//!
//! Times come in as arguments so the tests are exact and the machine cannot disagree with the
//! thread that timed the probe. Rejected alternative: a sliding window ("3 of the last 5"),
//! which reacts less predictably and is harder to explain in `detect_ms`.

use serde::Serialize;

/// A target's health as the checker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Not enough consecutive outcomes yet to decide (the state of a new target).
    Unknown,
    /// Healthy: `rise` consecutive successes since it was last down or unknown.
    Up,
    /// Failed: `fall` consecutive failures since it was last up or unknown.
    Down,
}

impl HealthState {
    /// Lower-case name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }

    /// The value of the `hostagent_backend_health_state` gauge: 1 up, 0 down, -1 unknown.
    pub fn gauge(self) -> i64 {
        match self {
            HealthState::Unknown => -1,
            HealthState::Up => 1,
            HealthState::Down => 0,
        }
    }
}

/// A state change made by [`TargetHealth::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: HealthState,
    /// The state after.
    pub to: HealthState,
}

/// The rise/fall state of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    rise: u32,
    fall: u32,
    /// The current state.
    pub state: HealthState,
    /// Successes in a row, up to and including the latest probe (0 after a failure).
    pub consecutive_successes: u32,
    /// Failures in a row, up to and including the latest probe (0 after a success).
    pub consecutive_failures: u32,
    /// State changes so far (`unknown` → `up` counts).
    pub transitions: u64,
    /// When the current state began: the last transition, or when the target was added.
    pub since_unix_ms: u64,
    /// First failed probe of the current failure run; see the module doc.
    pub failing_since_unix_ms: Option<u64>,
    /// When the latest probe finished; `None` before the first.
    pub last_check_unix_ms: Option<u64>,
    /// The latest probe's error; `None` after a success or before the first probe.
    pub last_error: Option<String>,
    /// Milliseconds from the first failed probe to the last `up` → `down` transition.
    pub detect_ms: Option<u64>,
}

impl TargetHealth {
    /// A target added at `now_unix_ms`, in state `unknown`. `rise` and `fall` below 1 are
    /// treated as 1.
    pub fn new(rise: u32, fall: u32, now_unix_ms: u64) -> Self {
        TargetHealth {
            rise: rise.max(1),
            fall: fall.max(1),
            state: HealthState::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            transitions: 0,
            since_unix_ms: now_unix_ms,
            failing_since_unix_ms: None,
            last_check_unix_ms: None,
            last_error: None,
            detect_ms: None,
        }
    }

    /// A target that is never probed (a UDP backend), added at `now_unix_ms`: `up` from the
    /// start, with no transition and no check.
    pub fn unchecked(now_unix_ms: u64) -> Self {
        TargetHealth {
            state: HealthState::Up,
            ..TargetHealth::new(1, 1, now_unix_ms)
        }
    }

    /// Changes the thresholds (a reload); they apply from the next outcome on, to the counts
    /// accumulated so far.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Records one probe outcome that finished at `now_unix_ms`; returns the transition it
    /// caused, if any.
    pub fn record(&mut self, outcome: Result<(), String>, now_unix_ms: u64) -> Option<Transition> {
        self.last_check_unix_ms = Some(now_unix_ms);
        let from = self.state;
        match outcome {
            Ok(()) => {
                self.last_error = None;
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                if self.state != HealthState::Up && self.consecutive_successes >= self.rise {
                    self.state = HealthState::Up;
                }
                if self.state != HealthState::Down {
                    self.failing_since_unix_ms = None;
                }
            }
            Err(error) => {
                self.last_error = Some(error);
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let first_failure = *self.failing_since_unix_ms.get_or_insert(now_unix_ms);
                if self.state != HealthState::Down && self.consecutive_failures >= self.fall {
                    self.state = HealthState::Down;
                    if from == HealthState::Up {
                        self.detect_ms = Some(now_unix_ms.saturating_sub(first_failure));
                    }
                }
            }
        }
        if self.state == from {
            return None;
        }
        self.transitions += 1;
        self.since_unix_ms = now_unix_ms;
        Some(Transition {
            from,
            to: self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Result<(), String> = Ok(());

    fn fail() -> Result<(), String> {
        Err("connect: connection refused".to_string())
    }

    #[test]
    fn starts_unknown_and_rises_after_rise_successes() {
        let mut h = TargetHealth::new(2, 3, 1000);
        assert_eq!(h.state, HealthState::Unknown);
        assert_eq!(h.since_unix_ms, 1000);
        assert_eq!(h.last_check_unix_ms, None);
        assert_eq!(h.record(OK, 1100), None);
        assert_eq!(h.state, HealthState::Unknown);
        assert_eq!(h.consecutive_successes, 1);
        let t = h.record(OK, 1200);
        assert_eq!(
            t,
            Some(Transition {
                from: HealthState::Unknown,
                to: HealthState::Up
            })
        );
        assert_eq!(h.state, HealthState::Up);
        assert_eq!(h.transitions, 1);
        assert_eq!(h.since_unix_ms, 1200);
        assert_eq!(h.last_check_unix_ms, Some(1200));
        assert_eq!(h.failing_since_unix_ms, None);
        assert_eq!(h.detect_ms, None);
    }

    #[test]
    fn unknown_goes_down_after_fall_failures_without_detect_ms() {
        let mut h = TargetHealth::new(2, 3, 0);
        h.record(fail(), 100);
        h.record(fail(), 200);
        assert_eq!(h.state, HealthState::Unknown);
        assert_eq!(h.failing_since_unix_ms, Some(100));
        assert!(h.record(fail(), 300).is_some());
        assert_eq!(h.state, HealthState::Down);
        assert_eq!(h.failing_since_unix_ms, Some(100));
        assert_eq!(h.detect_ms, None, "never seen up: nothing detected");
        assert_eq!(h.last_error.as_deref(), Some("connect: connection refused"));
    }

    #[test]
    fn up_to_down_records_failing_since_and_detect_ms() {
        let mut h = TargetHealth::new(2, 3, 0);
        h.record(OK, 0);
        h.record(OK, 1000);
        assert_eq!(h.state, HealthState::Up);
        assert_eq!(h.record(fail(), 2000), None);
        assert_eq!(h.failing_since_unix_ms, Some(2000));
        assert_eq!(h.record(fail(), 3000), None);
        let t = h.record(fail(), 4000);
        assert_eq!(
            t,
            Some(Transition {
                from: HealthState::Up,
                to: HealthState::Down
            })
        );
        assert_eq!(h.detect_ms, Some(2000));
        assert_eq!(h.since_unix_ms, 4000);
        assert_eq!(h.transitions, 2);
        // More failures change nothing but the counts.
        assert_eq!(h.record(fail(), 5000), None);
        assert_eq!(h.consecutive_failures, 4);
        assert_eq!(h.failing_since_unix_ms, Some(2000));
        assert_eq!(h.since_unix_ms, 4000);
    }

    #[test]
    fn down_comes_back_after_rise_successes_and_clears_failing_since() {
        let mut h = TargetHealth::new(2, 1, 0);
        h.record(fail(), 10);
        assert_eq!(h.state, HealthState::Down);
        h.record(OK, 20);
        assert_eq!(h.state, HealthState::Down);
        assert_eq!(
            h.failing_since_unix_ms,
            Some(10),
            "still down: the outage goes on"
        );
        assert_eq!(h.last_error, None);
        // A failure before `rise` successes: still the same outage.
        h.record(fail(), 30);
        assert_eq!(h.failing_since_unix_ms, Some(10));
        h.record(OK, 40);
        assert!(h.record(OK, 50).is_some());
        assert_eq!(h.state, HealthState::Up);
        assert_eq!(h.failing_since_unix_ms, None);
        assert_eq!(h.since_unix_ms, 50);
        // detect_ms is kept from the last up → down transition (there was none here).
        assert_eq!(h.detect_ms, None);
    }

    #[test]
    fn alternating_outcomes_do_not_flap() {
        let mut h = TargetHealth::new(2, 2, 0);
        h.record(OK, 1);
        h.record(OK, 2);
        assert_eq!(h.state, HealthState::Up);
        for i in 0..100u64 {
            let outcome = if i % 2 == 0 { fail() } else { OK };
            assert_eq!(h.record(outcome, 10 + i), None, "probe {i}");
        }
        assert_eq!(h.state, HealthState::Up);
        assert_eq!(h.transitions, 1);

        let mut d = TargetHealth::new(3, 1, 0);
        d.record(fail(), 1);
        for i in 0..100u64 {
            // Two successes, one failure: never three successes in a row.
            let outcome = if i % 3 == 2 { fail() } else { OK };
            assert_eq!(d.record(outcome, 10 + i), None, "probe {i}");
        }
        assert_eq!(d.state, HealthState::Down);
    }

    #[test]
    fn a_success_ends_a_failure_run_that_did_not_reach_fall() {
        let mut h = TargetHealth::new(1, 3, 0);
        h.record(OK, 0);
        h.record(fail(), 100);
        h.record(fail(), 200);
        assert_eq!(h.failing_since_unix_ms, Some(100));
        h.record(OK, 300);
        assert_eq!(h.failing_since_unix_ms, None);
        h.record(fail(), 400);
        h.record(fail(), 500);
        h.record(fail(), 600);
        assert_eq!(h.state, HealthState::Down);
        assert_eq!(
            h.detect_ms,
            Some(200),
            "measured from the second run's start"
        );
    }

    #[test]
    fn rise_and_fall_of_one_and_threshold_changes() {
        let mut h = TargetHealth::new(1, 1, 0);
        assert!(h.record(OK, 1).is_some());
        assert!(h.record(fail(), 2).is_some());
        assert!(h.record(OK, 3).is_some());
        assert_eq!(h.transitions, 3);
        h.set_thresholds(5, 5);
        for t in 4..8 {
            assert_eq!(h.record(fail(), t), None);
        }
        assert!(h.record(fail(), 8).is_some());
        let mut z = TargetHealth::new(0, 0, 0);
        assert!(z.record(OK, 1).is_some(), "0 is treated as 1");
    }
}
