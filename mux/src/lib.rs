//! The MUX: a kernel-bypass L4 load balancer.
//!
//! Two rooms:
//! - [`dataplane`]: what runs per packet on a worker core — parse, VIP match, flow table,
//!   Maglev, encapsulation, the worker loop. No locks, no allocation, no syscalls, no logging.
//! - [`control`]: everything else — loading and compiling configuration into forwarding
//!   snapshots, the offline `replay` and `check-config` modes.
#![deny(unsafe_code)]

pub mod control;
pub mod dataplane;
