//! The host agent's control plane: what runs beside the packet path and never on it.
//!
//! - [`health`]: health checks of the local backends (rise/fall states per backend);
//! - [`load`]: per-backend load (active connections, rates of new connections, packets and
//!   bytes in both directions) measured from the published counters;
//! - [`state`]: [`state::AgentState`], what the daemon's threads share (generation, reloads,
//!   published data-path and interception counters, readiness, a view of the health table);
//! - [`admin`]: the HTTP admin endpoint — `/v1/backends` (the contract the MUXes poll),
//!   `/v1/status`, `/metrics`, `/healthz`, `/readyz`;
//! - [`metrics`]: the Prometheus text rendering of [`state::AgentState`].
//!
//! Nothing here touches packets: the interception I/O publishes its counters into
//! [`state::AgentState`] between bursts, and the admin endpoint only reads.

pub mod admin;
pub mod health;
pub mod load;
pub mod metrics;
pub mod state;
