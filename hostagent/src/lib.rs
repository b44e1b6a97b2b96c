//! The host agent: the end of the MUX's IP-in-IP tunnel on a backend's host.
//!
//! - [`config`]: the TOML configuration and its validation (`hostagent check-config`).
//! - [`dataplane`]: the pure packet path — decapsulation with the VIP → DIP rewrite for
//!   packets from the MUXes, and the DIP → VIP source rewrite of the backends' replies (direct
//!   server return). No I/O: the interception layer that feeds it is not built yet (see
//!   `docs/hostagent.md`).
//! - [`control`]: the control plane beside the packet path — health checks of the local
//!   backends (rise/fall), the state the daemon's threads share, and the admin endpoint
//!   (`/v1/backends` for the MUXes, `/v1/status`, `/metrics`, `/healthz`, `/readyz`).
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod io;
