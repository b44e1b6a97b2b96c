//! Real HTTP for the namespace lab's end-to-end rounds.
//!
//! - [`backend`]: `perf http-backend`, an unmodified-backend stand-in: a small HTTP/1.1 server
//!   that answers with its name and the client address it saw (so the lab can show which
//!   backend answered and that it saw the client's real address).
//! - [`load`]: `perf http-load`, a bounded load client: keep-alive and new connections,
//!   responses per backend, failures by reason, latency percentiles.
//! - [`summary`]: `perf http-summary`, the lab's checks over the HTTP rounds' reports (with the
//!   router's DSR counters and the failover timings).
//! - [`soak`]: `perf http-soak`, long-lived keep-alive connections (and a steady trickle of new
//!   ones) held through a fault: which connection broke, when, why and on which backend.
//! - [`chaos`]: `perf chaos-summary`, the lab's chaos rounds: the soak reports against each
//!   round's expectations and the router's route events (when the VIP lost and regained a
//!   path).
//! - [`imbalance`]: `perf http-imbalance` and `perf imbalance-summary`, the lab's imbalance
//!   round: a few heavy downloads whose flows static Maglev sends to one backend, plus many
//!   light connections; the agents' per-backend load and max/avg, static against load-aware.
//! - [`udp`]: `perf udp-backend` and the soak's long-lived UDP flows (QUIC-like, no SYN): each
//!   answer names its backend, so a flow moved to another backend is seen even though nothing
//!   resets it.
//!
//! Plain `std::net` and threads, a minimal HTTP/1.1 subset (GET, `Content-Length` bodies,
//! keep-alive): the lab needs exact connection and latency accounting more than a full HTTP
//! stack, and no async runtime belongs in a benchmark helper.

pub mod backend;
pub mod chaos;
pub mod imbalance;
pub mod load;
pub mod soak;
pub mod summary;
pub mod timeline;
pub mod udp;

use std::io::{self, BufRead};

/// One parsed HTTP message head: the first line and the headers we use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Request or status line.
    pub first_line: String,
    /// `Content-Length`, if present.
    pub content_length: Option<usize>,
    /// `Connection: close` was sent.
    pub close: bool,
}

/// Reads a message head (up to the blank line). `Ok(None)` at a clean end of stream before
/// any byte; an error for a malformed or oversized head.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut head = Head::default();
    let mut line = String::new();
    let mut total = 0usize;
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 {
            if total == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated head",
            ));
        }
        total += n;
        if total > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if head.first_line.is_empty() {
            if l.is_empty() {
                continue;
            }
            head.first_line = l.to_string();
            continue;
        }
        if l.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "header without ':'",
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length =
                Some(value.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length")
                })?);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            head.close = true;
        }
    }
}
