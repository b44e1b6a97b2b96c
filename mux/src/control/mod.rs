//! The control plane: everything that is not per packet.
//!
//! - [`compile`] — a validated configuration → an immutable forwarding snapshot (Maglev
//!   tables built here, off the data path).
//! - [`registry`] — stable VIP and backend ids that survive reloads.
//! - [`table_history`] — each VIP's previous Maglev tables (the second chance's memory),
//!   kept across reloads and, in a small file, across restarts.
//! - [`replay`] — `mux replay`: the real pipeline over a pcap, offline.
//! - [`report`] — counters as JSON with names.
//! - [`daemon`] — `mux run`: workers, signals, reload, graceful start and stop, built from
//!   [`state`] (what the threads share), [`admin`] and [`metrics`] (the HTTP endpoint),
//!   [`neighbour`] (MAC addresses), [`announce`] (VIP routes through BIRD, held by the
//!   announcement guard process) and [`liveness`] (the data path's heartbeat that keeps them
//!   announced); with the `dpdk` feature, `dpdk_io` starts DPDK from the config's `[dpdk]`
//!   section.
//! - [`health_feed`] — polls the host agents' `/v1/backends`; [`health_decision`] turns their
//!   answers into the failed backends the daemon compiles in.
//! - [`flow_log`] — with `[flow_log]`: the writer thread that drains the workers' flow-log
//!   rings into a rotated JSON-lines file.

pub mod admin;
pub mod announce;
pub mod compile;
pub mod daemon;
#[cfg(feature = "dpdk")]
pub mod dpdk_io;
pub mod flow_log;
pub mod health_decision;
pub mod health_feed;
pub mod liveness;
pub mod load_weights;
pub mod metrics;
pub mod neighbour;
pub mod registry;
pub mod replay;
pub mod report;
pub mod state;
pub mod table_history;
pub mod trace;
