//! Pure packet code: what the MUX, the host agent, the benchmarks and the fuzz targets compute
//! over packet bytes, with no I/O and no `unsafe`.
//!
//! - [`wire`]: zero-copy views over packet bytes (Ethernet, ARP, IPv4, IPv6, TCP, UDP, ICMP).
//! - [`checksum`]: the internet checksum, pseudo-header sums and RFC 1624 incremental updates.
//! - [`flow_key`]: the canonical 5-tuple every component hashes and compares.
//! - [`stable_hash`]: the specified, seeded, portable hash used for backend selection.
//! - [`maglev`]: the weighted Maglev lookup-table builder.
//! - [`packet_builder`]: whole frames from a description, for fixtures, benchmarks and generators.
//! - [`drop_reasons`](mod@drop_reasons): the macro both data paths declare their drop reasons with.
//! - [`claim_horizon`]: the second-chance option's horizon for an agent's UDP memory (both
//!   sides read and write it).
//!
//! Why a crate of its own: this is the code every packet goes through and every parser fuzz
//! target exercises, so it is kept free of `unsafe` (denied here, not merely by the workspace
//! lint) and of I/O; the unsafe edge lives in `mux-ports`, daemon plumbing in
//! `mux-daemon-kit`. Anything deterministic over bytes belongs here.
#![deny(unsafe_code)]

pub mod checksum;
pub mod claim_horizon;
pub mod drop_reasons;
pub mod flow_key;
pub mod maglev;
pub mod packet_builder;
pub mod stable_hash;
pub mod wire;
