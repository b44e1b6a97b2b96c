//! Benchmark drivers for mux.
//!
//! # What it owns
//!
//! - [`scenario`]: the named workloads of `perf pipeline` — their configurations (16 VIPs × 64
//!   backends), their pre-built frames and how the flow clock moves between passes so each
//!   scenario measures what its name says (all hits, all misses, a mix, IPv6).
//! - [`runner`]: the measurement loop. It drives the real worker loop
//!   ([`mux::dataplane::worker::Worker::poll`] over a cycling
//!   [`mux_ports::mem::MemPort`]) on the calling thread and reports packets, Mpps,
//!   ns/packet, the ratio to a baseline measured in the same run, and the pipeline counters
//!   that prove the work was done.
//! - [`table_fill`]: the flow table alone, filled with random flows to 50–99 % of its
//!   capacity: what it loses, what inserts and lookups cost at each level (`perf table-fill`).
//! - [`idle`]: `mux run` on a veth in a throw-away namespace, idle: its CPU over a quiet spell,
//!   and the latency the first packet after it pays (`perf idle`).
//! - [`rss`]: the Toeplitz RSS hash a NIC spreads flows over its RX queues with, so that
//!   `perf pipeline --workers N` splits flows as a NIC would.
//! - [`baseline`]: the floor of the I/O path — a trivial MAC-swapping forwarder over the same
//!   port, so the pipeline's own cost is the difference between the two.
//! - `dpdk` (feature `dpdk`): the worker loop on DPDK's `net_null` and `net_ring` against the
//!   floor over the same devices (`perf dpdk`).
//! - [`demo`]: the deterministic demo capture (`configs/demo.pcap`) that exercises every branch
//!   of `configs/mux.demo.toml` in `mux replay`.
//! - [`traffic`]: real packets on real interfaces for the namespace lab — the generator
//!   (`perf gen`), the sink that validates encapsulated packets (`perf sink`) and the lab's
//!   verdict (`perf lab-summary`).
//!
//! # Invariants
//!
//! - Frames are built before the clock starts; the measured loop allocates nothing (the
//!   in-memory port recycles a fixed pool, the worker's burst vectors are pre-sized).
//! - Every figure is reported with the counters of the same interval; a scenario whose counters
//!   do not show the expected work (e.g. hits ≈ packets for `established`) is flagged, never
//!   silently reported.
//! - Nothing here gates on an absolute time: absolute figures depend on the machine; the ratios
//!   to the baseline are what travels between machines.
//!
//! # Rejected alternatives
//!
//! - *Timing `Pipeline::process_burst` alone*: it would hide the port's copy and the verdict
//!   split, which every real deployment pays; the baseline subtracts the I/O floor instead.
//! - *Generating frames inside the loop*: it would measure the generator. Frames are pre-built
//!   and replayed by the port (as a NIC's RX ring would deliver them).

pub mod baseline;
pub mod demo;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod hop_latency;
pub mod http;
pub mod idle;
pub mod rss;
pub mod runner;
pub mod scenario;
pub mod table_fill;
pub mod traffic;
