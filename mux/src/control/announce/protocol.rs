//! The lines the MUX and its announcement guard exchange over the guard's stdin and stdout.
//!
//! One message per line, words separated by spaces, so a person can read a captured exchange
//! and a test can write one by hand:
//!
//! ```text
//! MUX → guard    want 192.0.2.10 2001:db8::10     the VIPs to announce while alive (may be empty)
//!                alive                            a heartbeat: the data path made progress
//!                down worker 1 stalled for 212 ms withdraw now, until the next heartbeat
//! guard → MUX    announced 192.0.2.10             what BIRD announces now (may be empty)
//!                error birdc -s … failed: …       an announcement failed (retried each second)
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What the MUX tells its guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToGuard {
    /// The VIPs to announce while heartbeats arrive.
    Want(BTreeSet<IpAddr>),
    /// The data path made progress since the last heartbeat.
    Alive,
    /// The data path is broken: withdraw now, until the next `Alive`.
    Down(String),
}

/// What the guard tells the MUX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromGuard {
    /// BIRD now announces exactly these VIPs.
    Announced(BTreeSet<IpAddr>),
    /// An announcement failed; the guard retries.
    Error(String),
}

/// A line that is not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an announcement-guard message: {line:?} ({why})")]
pub struct BadLine {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub why: String,
}

fn addresses(
    words: std::str::SplitWhitespace<'_>,
    line: &str,
) -> Result<BTreeSet<IpAddr>, BadLine> {
    words
        .map(|w| {
            w.parse::<IpAddr>().map_err(|e| BadLine {
                line: line.to_string(),
                why: format!("{w:?}: {e}"),
            })
        })
        .collect()
}

fn join(vips: &BTreeSet<IpAddr>) -> String {
    let mut s = String::new();
    for v in vips {
        let _ = write!(s, " {v}");
    }
    s
}

/// One line's text, without its newline.
fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ToGuard {
    /// The line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            ToGuard::Want(vips) => format!("want{}\n", join(vips)),
            ToGuard::Alive => "alive\n".to_string(),
            ToGuard::Down(reason) => format!("down {}\n", single_line(reason)),
        }
    }

    /// Parses a line (with or without its newline).
    pub fn parse(line: &str) -> Result<ToGuard, BadLine> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("want") => Ok(ToGuard::Want(addresses(words, line)?)),
            Some("alive") => Ok(ToGuard::Alive),
            Some("down") => Ok(ToGuard::Down(words.collect::<Vec<_>>().join(" "))),
            _ => Err(BadLine {
                line: line.to_string(),
                why: "expected want, alive or down".into(),
            }),
        }
    }
}

impl FromGuard {
    /// The line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            FromGuard::Announced(vips) => format!("announced{}\n", join(vips)),
            FromGuard::Error(text) => format!("error {}\n", single_line(text)),
        }
    }

    /// Parses a line (with or without its newline).
    pub fn parse(line: &str) -> Result<FromGuard, BadLine> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("announced") => Ok(FromGuard::Announced(addresses(words, line)?)),
            Some("error") => Ok(FromGuard::Error(words.collect::<Vec<_>>().join(" "))),
            _ => Err(BadLine {
                line: line.to_string(),
                why: "expected announced or error".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn messages_round_trip_through_their_lines() {
        for m in [
            ToGuard::Want(set(&["192.0.2.10", "2001:db8::10"])),
            ToGuard::Want(BTreeSet::new()),
            ToGuard::Alive,
            ToGuard::Down("worker 1 stalled for 212 ms".into()),
        ] {
            let line = m.to_line();
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line:?}"
            );
            assert_eq!(ToGuard::parse(&line), Ok(m));
        }
        for m in [
            FromGuard::Announced(set(&["192.0.2.10"])),
            FromGuard::Announced(BTreeSet::new()),
            FromGuard::Error("birdc failed".into()),
        ] {
            assert_eq!(FromGuard::parse(&m.to_line()), Ok(m));
        }
        assert_eq!(
            ToGuard::Want(set(&["192.0.2.10", "2001:db8::10"])).to_line(),
            "want 192.0.2.10 2001:db8::10\n"
        );
    }

    #[test]
    fn a_reason_with_newlines_stays_one_line() {
        let line = ToGuard::Down("port\nlost".into()).to_line();
        assert_eq!(line, "down port lost\n");
        let line = FromGuard::Error("a\nb".into()).to_line();
        assert_eq!(line, "error a b\n");
    }

    #[test]
    fn bad_lines_are_refused_with_the_reason() {
        assert!(ToGuard::parse("hello").is_err());
        assert!(ToGuard::parse("").is_err());
        let e = ToGuard::parse("want 192.0.2.300").unwrap_err();
        assert!(e.why.contains("192.0.2.300"), "{e}");
        assert!(FromGuard::parse("announced x").is_err());
    }
}
