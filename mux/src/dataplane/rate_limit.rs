//! Token buckets for the packets the MUX writes itself: ICMP "too big" errors and the TCP
//! resets of drained flows.
//!
//! RFC 4443 §2.4 (f) requires an ICMPv6 sender to limit its error rate, RFC 1812 §4.3.2.8
//! asks the same of IPv4 routers: a flood of oversize packets (or, for resets, of packets on
//! flows past a drain deadline, possibly spoofed) must not turn the MUX into a packet
//! generator aimed at whoever the sources claim to be. Each worker owns its buckets (workers
//! share nothing), so the MUX's ceiling is `rate × workers`.
//!
//! A bucket holds up to `burst` tokens and gains `rate` per second; a reply takes one, and a
//! reply that finds none is not sent (the caller drops the packet and counts why). Credit is
//! kept in millionths of a token so that refilling from a microsecond clock loses nothing to
//! rounding: `elapsed µs × rate` millionths. It is refilled once per burst from the burst's
//! [`BurstTime`], never per packet, and reads no clock itself.
//!
//! Rejected: one bucket for both kinds of reply. A drain deadline can end thousands of flows
//! within a second; sharing would let those resets starve the path-MTU errors that keep new
//! flows working, and a flood of oversize packets would delay the resets. Two buckets bound
//! each kind on its own.

use super::clock::BurstTime;

/// Credit of one token.
const TOKEN: u64 = 1_000_000;

/// A bucket's parameters: tokens per second, and the most it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens gained per second; 0: the bucket stays empty (no reply is ever sent).
    pub per_second: u32,
    /// The bucket's depth: replies that may leave at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// The most credit the bucket holds.
    #[inline]
    fn cap(self) -> u64 {
        if self.per_second == 0 {
            0
        } else {
            u64::from(self.burst) * TOKEN
        }
    }
}

/// One worker's bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Millionths of a token.
    credit: u64,
    /// When it was last refilled.
    last: BurstTime,
}

impl Default for TokenBucket {
    fn default() -> Self {
        TokenBucket::new()
    }
}

impl TokenBucket {
    /// A bucket that starts full (its first refill clamps it to the limit's depth).
    pub const fn new() -> Self {
        TokenBucket {
            credit: u64::MAX,
            last: BurstTime::from_micros(0),
        }
    }

    /// Adds the tokens earned since the last refill, up to the depth. A clock that goes back
    /// (a replay's reordered capture) earns nothing.
    #[inline]
    pub fn refill(&mut self, now: BurstTime, limit: RateLimit) {
        let elapsed = now.micros().saturating_sub(self.last.micros());
        if now > self.last {
            self.last = now;
        }
        let earned = elapsed.saturating_mul(u64::from(limit.per_second));
        self.credit = self.credit.saturating_add(earned).min(limit.cap());
    }

    /// Takes one token; `false` (nothing taken) when the bucket holds less than one.
    #[inline]
    pub fn take(&mut self) -> bool {
        if self.credit >= TOKEN {
            self.credit -= TOKEN;
            true
        } else {
            false
        }
    }

    /// Whole tokens left (tests, reports).
    pub fn tokens(&self) -> u64 {
        self.credit / TOKEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 1000,
        burst: 50,
    };

    fn drain(b: &mut TokenBucket) -> u32 {
        let mut n = 0;
        while b.take() {
            n += 1;
        }
        n
    }

    #[test]
    fn starts_full_and_allows_one_burst() {
        let mut b = TokenBucket::new();
        b.refill(BurstTime::from_micros(0), LIMIT);
        assert_eq!(drain(&mut b), 50);
        assert!(!b.take());
    }

    #[test]
    fn refills_at_the_rate_without_losing_fractions() {
        let mut b = TokenBucket::new();
        b.refill(BurstTime::from_secs(10), LIMIT);
        drain(&mut b);
        // 1000/s: one token per millisecond, built up from 250 µs steps.
        let mut t = 10_000_000;
        for _ in 0..3 {
            t += 250;
            b.refill(BurstTime::from_micros(t), LIMIT);
            assert!(!b.take());
        }
        t += 250;
        b.refill(BurstTime::from_micros(t), LIMIT);
        assert!(b.take(), "four quarter-milliseconds make one token");
        // 20 ms later: 20 tokens.
        b.refill(BurstTime::from_micros(t + 20_000), LIMIT);
        assert_eq!(drain(&mut b), 20);
        // A long pause refills to the depth, not beyond.
        b.refill(BurstTime::from_secs(3600), LIMIT);
        assert_eq!(b.tokens(), 50);
    }

    #[test]
    fn a_sustained_flood_gets_the_rate() {
        let mut b = TokenBucket::new();
        let mut sent = 0u64;
        // 10 s of bursts every 100 µs, each wanting 10 replies.
        for step in 0..100_000u64 {
            b.refill(BurstTime::from_micros(step * 100), LIMIT);
            for _ in 0..10 {
                sent += u64::from(b.take());
            }
        }
        // The depth plus 1000/s over the 9.9999 s after the first burst.
        assert_eq!(sent, 50 + 9_999);
    }

    #[test]
    fn rate_zero_never_sends_and_time_going_back_earns_nothing() {
        let mut b = TokenBucket::new();
        b.refill(
            BurstTime::from_secs(5),
            RateLimit {
                per_second: 0,
                burst: 50,
            },
        );
        assert!(!b.take());
        let mut b = TokenBucket::new();
        b.refill(BurstTime::from_secs(5), LIMIT);
        drain(&mut b);
        b.refill(BurstTime::from_secs(4), LIMIT);
        assert!(!b.take());
        b.refill(BurstTime::from_micros(5_001_000), LIMIT);
        assert_eq!(
            drain(&mut b),
            1,
            "earned from the latest time seen, not the earlier one"
        );
    }

    #[test]
    fn a_smaller_depth_after_a_reload_clamps_the_credit() {
        let mut b = TokenBucket::new();
        b.refill(BurstTime::from_secs(1), LIMIT);
        b.refill(
            BurstTime::from_secs(1),
            RateLimit {
                per_second: 1000,
                burst: 3,
            },
        );
        assert_eq!(drain(&mut b), 3);
    }
}
