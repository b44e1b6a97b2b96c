//! The control plane: everything that is not per packet.
//!
//! - [`compile`] — a validated configuration → an immutable forwarding snapshot (Maglev
//!   tables built here, off the data path).
//! - [`registry`] — stable VIP and backend ids that survive reloads.
//! - [`replay`] — `mux replay`: the real pipeline over a pcap, offline.
//! - [`report`] — counters as JSON with names.

pub mod compile;
pub mod registry;
pub mod replay;
pub mod report;
