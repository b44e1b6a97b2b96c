//! The MUX configuration: the TOML schema, parsing with source locations, and validation that
//! reports every error at once.
//!
//! This module owns what an operator may write in `mux.toml` and the decision whether a file is
//! acceptable. It does no I/O beyond [`load_file`] reading the file, and builds no forwarding
//! state: the control plane compiles a validated [`MuxConfig`] into its tables through the plain
//! accessors ([`Vip::address`], [`Backend::weight`], [`Dataplane::workers`], …), which apply
//! the defaults so nothing downstream unwraps a span or repeats a default.
//!
//! Pipeline: the TOML text into structs that all `deny_unknown_fields` (a typo is an error,
//! not a silently ignored key) and keep the [`serde_spanned::Spanned`] location of every value
//! a rule can reject, through [`collect::deserialize`], which records *every* unknown key,
//! missing key, wrong type and malformed value (each refused value replaced by a placeholder
//! so the rest of the file is still read) → the semantic rules ([`MuxConfig::validate`]), which
//! collect all violations, skipping placeholders → a [`ConfigErrors`] whose messages read
//! `FILE:LINE:COL: CONTEXT: what is wrong (got VALUE); how to fix it`, in file order.
//!
//! Semantic rules, beyond the ranges documented on each accessor:
//! - names (`[mux]` and VIPs) are 1–64 of `A-Z a-z 0-9 - _ .` (they become metric labels);
//!   VIP names are unique, and so is each VIP's (address, port, protocol);
//! - VIP, backend, tunnel-source and next-hop addresses are unicast: not unspecified,
//!   multicast, broadcast or loopback, and not IPv4-mapped IPv6 (write those as IPv4);
//! - a VIP has 1..=65535 backends with distinct addresses, none equal to the VIP itself; a VIP
//!   whose backends are all draining or weight 0 is valid (it takes no new flows);
//! - `maglev_table_size` is a prime, at least the backend count and at most 1 000 003;
//! - `[tunnel] source_v4` is set (and IPv4) when any backend is IPv4; `source_v6` likewise;
//! - unless `io = "mem"`: `[dataplane] interface` is set, and `[next_hop]` has a `mac` or an
//!   `address`; MACs are unicast and non-zero;
//! - `drain_deadline` is an offset date-time (with `Z` or an offset, so every MUX reads the
//!   same instant) not before 1970, on a backend with `state = "draining"`;
//! - `[timeouts] failed_backend_grace` (and a VIP's override) is 0..=3600;
//! - `[lifecycle] drain_seconds` is 0..=3600; `[bgp]` paths are absolute, and
//!   `speaker = "bird"` needs `bird_include`;
//! - `[health]`: `poll_interval_ms` is 100..=60000; `timeout_ms` is 10..=60000 and at most the
//!   poll interval (a poll must end before the next one is due); `stale_after_ms` is at least
//!   the poll interval (one missed answer alone never fails a host) and at most 600000; every
//!   `[[health.agent]] address` is a unicast or loopback `ip:port` with a non-zero port, listed
//!   once.
//!
//! - `[flow_log]`: `path` is absolute; `sample` 1..=1000000, `max_bytes` 4096..=2^40, `keep`
//!   0..=1000, `queue_depth` 1..=1048576 (see `flow_log`).
//!
//! A file without any `[[vip]]` is valid: the MUX runs and forwards nothing.
//!
//! Invariants:
//! - [`parse`] and [`load_file`] return only configurations that passed [`MuxConfig::validate`].
//! - A returned error list is never empty, and every entry has a line and column (≥ 1), except
//!   a file that could not be read, which has line 0 (displayed as `FILE: message`).
//! - Every error of a file TOML can parse is reported: unknown keys, missing keys, type and
//!   value errors, and semantic errors, together. A TOML *syntax* error (an unclosed string,
//!   `key = = 3`) is reported alone: there is no document to look further into.
//! - A refused value never causes an error of its own elsewhere: it is a placeholder to the
//!   rules ([`Collector::is_poisoned`]), which skip it.
//!
//! Rejected alternatives: walking a `toml::Value` by hand (every field would need hand-written
//! type errors, and unknown-key detection would be easy to forget for a new table); reporting
//! only the first error of each kind (a reload per mistake); integers typed `u16`/`u32` in the
//! schema (an out-of-range port would become a bare "expected u16" type error; they are `i64`
//! and range-checked instead, with the allowed range and a fix in the message).

mod dpdk;
mod flow_log;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use dpdk::{
    DEFAULT_DPDK_DESCRIPTORS, DEFAULT_DPDK_MBUF_CACHE, DEFAULT_DPDK_MBUFS, DEFAULT_DPDK_MEMORY_MB,
    DPDK_EXCEPTION_DESCRIPTORS, Dpdk, device_name, is_pci_address,
};
pub use flow_log::{
    DEFAULT_FLOW_LOG_KEEP, DEFAULT_FLOW_LOG_MAX_BYTES, DEFAULT_FLOW_LOG_QUEUE_DEPTH,
    DEFAULT_FLOW_LOG_SAMPLE, FlowLog,
};
pub use mux_daemon_kit::config::{
    Collector, ConfigError, ConfigErrors, collect, from_toml, read_file, values,
};
pub use schema::{
    Admin, Backend, BackendState, Bgp, DEFAULT_ADMIN_LISTEN, DEFAULT_BIRD_SOCKET,
    DEFAULT_BURST_SIZE, DEFAULT_DRAIN_RESET_BURST, DEFAULT_DRAIN_RESET_RATE, DEFAULT_DRAIN_SECONDS,
    DEFAULT_FAILED_BACKEND_GRACE, DEFAULT_FLOW_TABLE_CAPACITY, DEFAULT_HEALTH_TIMEOUT_MS,
    DEFAULT_ICMP_BURST, DEFAULT_ICMP_RATE, DEFAULT_IDLE_POLL_US, DEFAULT_IDLE_SLEEP_MAX_US,
    DEFAULT_MTU, DEFAULT_POLL_INTERVAL_MS, DEFAULT_SECOND_CHANCE_WINDOW, DEFAULT_TABLE_SIZE,
    DEFAULT_WEIGHT, DEFAULT_WORKERS, Dataplane, Health, HealthAgent, IdleMode, IoKind, Lifecycle,
    LoadAware, LoadSignal, MAX_BACKENDS_PER_VIP, MAX_DRAIN_SECONDS, MAX_FAILED_BACKEND_GRACE,
    MAX_IDLE_POLL_US, MAX_IDLE_SLEEP_MAX_US, MAX_POLL_INTERVAL_MS, MAX_REPLY_RATE,
    MAX_SECOND_CHANCE_WINDOW, MAX_STALE_AFTER_MS, MAX_TABLE_SIZE, MAX_TIMEOUT_SECS, MAX_WEIGHT,
    MIN_IDLE_SLEEP_MAX_US, MuxConfig, NextHop, Protocol, Speaker, TimeoutSettings, Timeouts,
    Tunnel, Vip,
};

/// Parses and validates a configuration. `origin` is the file name shown in messages.
///
/// Returns every error in file order: unknown and missing keys, type and value errors, and
/// semantic errors together; a TOML syntax error alone (the file cannot be read further).
pub fn parse(text: &str, origin: &str) -> Result<MuxConfig, ConfigErrors> {
    let mut c = Collector::new(origin, text);
    let config = collect::deserialize::<MuxConfig>(text, &mut c);
    if let Some(config) = &config {
        config.check(&mut c);
    }
    collect::finish(config, c)
}

/// Reads, parses and validates the configuration file at `path`; messages name the file as
/// `path` is displayed. A file that cannot be read (missing, unreadable, not UTF-8) is one
/// error with line 0.
pub fn load_file(path: &Path) -> Result<MuxConfig, ConfigErrors> {
    let (origin, text) = read_file(path)?;
    parse(&text, &origin)
}
