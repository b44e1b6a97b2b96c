//! The MUX: a kernel-bypass L4 load balancer.
//!
//! Two rooms:
//! - [`dataplane`]: what runs per packet on a worker core — parse, VIP match, flow table,
//!   Maglev, encapsulation, the worker loop. No locks, no allocation, no syscalls, no logging.
//! - [`control`]: everything else — loading and compiling configuration into forwarding
//!   snapshots, the offline `replay` and `check-config` modes.
//!
//! [`config`] is what an operator may write in `mux.toml` (the schema and its validation),
//! which `control` compiles; only the MUX reads it, so it lives here.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod dataplane;
