//! The interception layer: the host agent's edge to the operating system.
//!
//! What this module owns: every system call that moves packets, and every change to the
//! host's network configuration.
//! - [`tun`]: the TUN device that hands decapsulated packets to the kernel and receives the
//!   backends' replies;
//! - [`raw`]: raw IP sockets receiving IP-in-IP (protocols 4 and 41) addressed to the host,
//!   and sending the rewritten replies;
//! - [`host_setup`]: the routing table, policy rules and sysctls that steer replies into the
//!   TUN device — installed at start, reconciled on reload, removed at exit and cleaned up
//!   at the next start after a crash;
//! - [`forwarder`]: the loop joining them to the pure [`crate::dataplane::DataPath`];
//! - system-call wrappers come from `mux_ports::sys`, shared with the AF_PACKET port;
//! - [`state_file`]: the connection table saved every second (and at exit) by its own thread
//!   and read back at start — second chance's restart rule.
//!
//! `unsafe` is allowed here only, at the system-call edge, each block with a `// SAFETY:`
//! note; the rest of the crate denies it.
#![allow(unsafe_code)]

pub mod forwarder;
pub mod host_setup;
pub mod raw;
pub mod state_file;
pub mod tun;
