//! Building blocks shared by the mux binaries (the MUX, later the host agent, and the benchmark
//! drivers).
//!
//! Everything here is deterministic and free of I/O policy:
//! - [`wire`]: zero-copy views over packet bytes (Ethernet, ARP, IPv4, IPv6, TCP, UDP, ICMP).
//! - [`drop_reasons`]: the macro both data paths declare their drop reasons with.
//! - [`checksum`]: the internet checksum, pseudo-header sums and RFC 1624 incremental updates.
//! - [`flow_key`]: the canonical 5-tuple every component hashes and compares.
//! - [`stable_hash`]: the specified, seeded, portable hash used for backend selection.
//! - [`maglev`]: the weighted Maglev lookup-table builder.
//! - [`packet_builder`]: whole frames from a description, for fixtures, benchmarks and generators.
//! - [`config`]: the MUX configuration schema and its validation.
//! - [`port`]: the packet-port trait the data path is generic over, the ports, and the
//!   system-call wrappers shared with the host agent's raw sockets.
//! - What both daemons share around their data paths: [`admin_server`] (the admin endpoint's
//!   HTTP loop), [`prometheus_text`] (metric families for `/metrics`), [`logging`],
//!   [`signals`].
#![deny(unsafe_code)]

pub mod admin_server;
pub mod config;
pub mod logging;
pub mod prometheus_text;
pub mod signals;
