//! The host agent: the end of the MUX's IP-in-IP tunnel on a backend's host.
//!
//! - [`config`]: the TOML configuration and its validation (`hostagent check-config`).
//! - [`dataplane`]: the pure packet path — decapsulation with the VIP → DIP rewrite for
//!   packets from the MUXes, the DIP → VIP source rewrite of the backends' replies (direct
//!   server return), and second chance: the table of connections the agent carries and the
//!   decision to forward a packet of one it does not carry to the MUX's alternative. No I/O.
//! - [`io`]: the interception layer that feeds it — raw tunnel sockets, the TUN device, the
//!   host's routing rules, the forwarder loop and the connection state file.
//! - [`daemon`]: `hostagent run`, which starts and stops all of it.
//! - [`control`]: the control plane beside the packet path — health checks of the local
//!   backends (rise/fall), the state the daemon's threads share, and the admin endpoint
//!   (`/v1/backends` for the MUXes, `/v1/status`, `/metrics`, `/healthz`, `/readyz`).
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod io;
