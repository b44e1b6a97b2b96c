//! The second-chance option's claim horizon: how far back a host agent's memory of a UDP flow
//! may reach and still count as "this flow is mine".
//!
//! # Why
//!
//! UDP has no SYN and no FIN: an agent knows a UDP flow only as a 5-tuple it saw lately, and a
//! client that reuses a port within the agent's `udp` timeout makes a *new* flow with the same
//! 5-tuple. If that new flow started on another backend (under a table that picked another
//! one) and then, after a change, reaches this agent with an alternative, the agent's old
//! memory claims it and the flow changes backend. The MUX knows when the alternative's table
//! came into force: a flow the agent last saw *before* then may have been replaced, during
//! that table, by a new flow on the alternative — so the MUX tells the agent how long ago that
//! was, and the agent claims a UDP flow only if it saw it since. A flow the agent saw
//! since that moment, and any flow that was never idle for that long, keeps its claim.
//!
//! # On the wire
//!
//! Bits 1–7 of the option's `flags` byte (bit 0 is `forwarded`), as a 7-bit code:
//!
//! | code | horizon |
//! |---|---|
//! | 0 | none: any memory claims (what a MUX without this sends) |
//! | 1–60 | `code` seconds |
//! | 61–126 | 60 + 8 × (`code` − 60) seconds: 68 … 588 |
//! | 127 | none (reserved; read as 0) |
//!
//! The MUX rounds the age up, so an agent never refuses a memory from after the table's
//! arrival; a table older than 588 s sends 0 (an agent's default `udp` timeout is 300 s, so
//! no memory could predate it). An agent that does not read these bits behaves as before.

/// Longest horizon a code can say, in seconds.
pub const MAX_HORIZON_SECS: u32 = 60 + 8 * 66;

/// The option's `flags` bits the code occupies (bits 1–7).
pub const FLAGS_SHIFT: u8 = 1;

/// The 7-bit code of a table that came into force `age_ms` milliseconds ago: the smallest
/// horizon that is at least the age; 0 (no horizon) beyond [`MAX_HORIZON_SECS`].
pub fn encode(age_ms: u64) -> u8 {
    let secs = age_ms.div_ceil(1000).max(1);
    if secs <= 60 {
        secs as u8
    } else if secs <= u64::from(MAX_HORIZON_SECS) {
        (60 + (secs - 60).div_ceil(8)) as u8
    } else {
        0
    }
}

/// The horizon a 7-bit code says, in seconds; `None` for "no horizon".
pub fn decode(code: u8) -> Option<u32> {
    match code & 0x7F {
        0 | 127 => None,
        c @ 1..=60 => Some(u32::from(c)),
        c => Some(60 + 8 * (u32::from(c) - 60)),
    }
}

/// The code carried in an option's `flags` byte.
pub fn from_flags(flags: u8) -> u8 {
    flags >> FLAGS_SHIFT
}

/// The `flags` byte a MUX sends with this code (`forwarded` clear).
pub fn to_flags(code: u8) -> u8 {
    (code & 0x7F) << FLAGS_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_never_shorter_than_the_age() {
        for age_ms in (0..=MAX_HORIZON_SECS as u64 * 1000).step_by(37) {
            let code = encode(age_ms);
            let horizon = decode(code).expect("within range");
            assert!(
                u64::from(horizon) * 1000 >= age_ms,
                "{age_ms} ms → code {code} → {horizon} s"
            );
            // And no longer than one step of the scale.
            let step = if age_ms <= 60_000 { 1000 } else { 8000 };
            assert!(
                u64::from(horizon) * 1000 < age_ms + step + 1000,
                "{age_ms} → {horizon}"
            );
        }
    }

    #[test]
    fn codes_grow_with_the_age_and_fit_seven_bits() {
        let mut last = 0;
        for age_ms in (0..=MAX_HORIZON_SECS as u64 * 1000).step_by(500) {
            let code = encode(age_ms);
            assert!(code >= last && code < 127);
            last = code;
        }
        assert_eq!(last, 126);
        assert_eq!(decode(126), Some(MAX_HORIZON_SECS));
    }

    #[test]
    fn beyond_the_scale_or_reserved_means_no_horizon() {
        assert_eq!(encode(u64::from(MAX_HORIZON_SECS) * 1000 + 1), 0);
        assert_eq!(encode(u64::MAX), 0);
        assert_eq!(decode(0), None);
        assert_eq!(decode(127), None);
    }

    #[test]
    fn the_code_lives_above_the_forwarded_bit() {
        for code in 0..=127u8 {
            let flags = to_flags(code);
            assert_eq!(flags & 1, 0);
            assert_eq!(from_flags(flags), code);
            assert_eq!(from_flags(flags | 1), code);
        }
    }
}
