//! The data plane: everything a worker core does per packet.
//!
//! Follow a packet from RX to TX:
//! 1. [`worker`] — the poll loop: receive a burst from the port, run the pipeline, transmit.
//! 2. [`pipeline`] — per burst: classify (parse + VIP match + prefetch), then forward.
//! 3. [`parse`] — one frame's headers into a small summary.
//! 4. [`flow_table`] — the worker's own flow table (5-tuple → backend, TCP state, expiry).
//! 5. [`snapshot`] — the compiled configuration: VIPs, Maglev tables, backends, indexed for
//!    the per-packet match by [`vip_index`].
//! 6. [`encap`] — IP-in-IP toward the backend, in the buffer's headroom;
//!    [`second_chance`] — the same with an alternative backend named in the outer header,
//!    for a flow the MUX has no entry for whose previous Maglev tables disagree.
//! 7. [`icmp_reply`] — "fragmentation needed" / "packet too big" back to the client;
//!    [`tcp_reset`] — the reset that ends a flow whose backend passed its drain deadline.
//! 8. [`verdict`] and [`counters`] — what happened, and how often.
//! 9. [`clock`] — the one time reading per burst; [`rate_limit`] — the token buckets that
//!    bound the replies the MUX writes itself.
//! 10. [`flow_log`] — with `[flow_log]`: a fixed-size record per sampled new flow, pushed into
//!     the worker's own bounded ring for the control plane's writer.
//!
//! Invariants: per packet there is no lock, no allocation, no syscall and no logging; workers
//! share nothing (each owns its flow table and counters); every drop has a reason and a counter.

pub mod clock;
pub mod counters;
pub mod encap;
pub mod flow_log;
pub mod flow_table;
pub mod icmp_reply;
pub mod parse;
pub mod pipeline;
pub mod prefetch;
pub mod rate_limit;
pub mod second_chance;
pub mod snapshot;
pub mod tcp_reset;
pub mod verdict;
pub mod vip_index;
pub mod worker;
