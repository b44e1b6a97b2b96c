//! The host agent: the end of the MUX's IP-in-IP tunnel on a backend's host.
//!
//! - [`config`]: the TOML configuration and its validation (`hostagent check-config`).
//! - [`dataplane`]: the pure packet path — decapsulation with the VIP → DIP rewrite for
//!   packets from the MUXes, and the DIP → VIP source rewrite of the backends' replies (direct
//!   server return). No I/O: the interception layer that feeds it is not built yet (see
//!   `docs/hostagent.md`).
#![deny(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod io;
