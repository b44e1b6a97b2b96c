//! The worker's clock: one reading per burst, shared by everything the burst decides.
//!
//! A worker reads `Instant::now()` once per burst (a vDSO call, no syscall) and hands the
//! pipeline a [`BurstTime`]: microseconds since the flow clock's origin (the daemon's start;
//! the Unix epoch for `mux replay`). The flow table and every per-backend deadline work in its
//! whole seconds ([`BurstTime::secs`]), which is what a 32-bit `expires` holds; the reply
//! token buckets need finer steps and read [`BurstTime::micros`]. Nothing on the packet path
//! reads a clock: every packet of a burst is decided at the same instant.

use std::time::Instant;

/// The instant a burst is processed at, in microseconds since the flow clock's origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BurstTime {
    micros: u64,
}

impl BurstTime {
    /// `micros` microseconds after the origin.
    #[inline]
    pub const fn from_micros(micros: u64) -> Self {
        BurstTime { micros }
    }

    /// The start of second `secs` (tests, benchmarks and replays that count whole seconds).
    #[inline]
    pub const fn from_secs(secs: u32) -> Self {
        BurstTime {
            micros: secs as u64 * 1_000_000,
        }
    }

    /// `now` on the clock that started at `origin` (0 if `now` is earlier).
    #[inline]
    pub fn since(origin: Instant, now: Instant) -> Self {
        let elapsed = now.saturating_duration_since(origin);
        BurstTime {
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Whole seconds since the origin: the flow clock (saturates after 136 years).
    #[inline]
    pub const fn secs(self) -> u32 {
        let s = self.micros / 1_000_000;
        if s > u32::MAX as u64 {
            u32::MAX
        } else {
            s as u32
        }
    }

    /// Microseconds since the origin.
    #[inline]
    pub const fn micros(self) -> u64 {
        self.micros
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seconds_are_whole_and_saturate() {
        assert_eq!(BurstTime::from_micros(1_999_999).secs(), 1);
        assert_eq!(BurstTime::from_secs(7).micros(), 7_000_000);
        assert_eq!(BurstTime::from_secs(u32::MAX).secs(), u32::MAX);
        assert_eq!(BurstTime::from_micros(u64::MAX).secs(), u32::MAX);
        let origin = Instant::now();
        let t = BurstTime::since(origin, origin + Duration::from_micros(2_500_001));
        assert_eq!((t.secs(), t.micros()), (2, 2_500_001));
        assert_eq!(
            BurstTime::since(origin + Duration::from_secs(1), origin).micros(),
            0
        );
    }
}
