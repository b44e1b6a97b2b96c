//! The DPDK packet port (cargo feature `dpdk`): poll-mode drivers on a NIC the EAL owns, for
//! bare-metal MUX hosts, and DPDK's virtual devices (`net_pcap`, `net_ring`, `net_null`,
//! `net_af_packet`, `net_af_xdp`, `net_tap`) for tests and the lab.
//!
//! What it owns:
//! - [`eal`]: the EAL's arguments, built from the MUX config ([`EalConfig`]), and its one
//!   initialisation per process.
//! - [`runtime`]: [`DpdkRuntime`], everything the EAL hands out for one MUX: the mbuf pool
//!   (per-lcore caches, sized from config), the NIC device configured with one RX/TX queue
//!   pair per worker and RSS across them, and the exception device (a TAP interface by
//!   default). Dropping it stops and closes the devices, which flushes `net_pcap` captures.
//! - [`port`]: [`DpdkPort`], one worker's queue pair on the NIC and on the exception device.
//!   Frames the pipeline sends to the kernel (ARP, ND, BGP, SSH: anything not for a VIP) go out
//!   of the exception device into the kernel; what the kernel sends back comes in there and is
//!   transmitted on the NIC, so the host's own addresses and the BGP daemon keep working on a
//!   DPDK-owned NIC.
//! - [`buf`]: [`DpdkBuf`], an mbuf as a [`PacketBuf`](super::PacketBuf). The pipeline's outer
//!   header goes into the mbuf's headroom (128 bytes, `RTE_PKTMBUF_HEADROOM`): no copy.
//!
//! # Why this module allows `unsafe`
//! The crate denies `unsafe_code`; DPDK is a C library, so this module is the exception. The
//! unsafe code is the calls into `mux-dpdk-sys` and the mbuf accesses in `buf.rs`. Every block
//! carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod buf;
pub mod eal;
pub mod port;
pub mod runtime;

pub use buf::DpdkBuf;
pub use eal::EalConfig;
pub use port::DpdkPort;
pub use runtime::{Device, DeviceConfig, DpdkRuntime, RuntimeConfig};

/// Why setting up DPDK failed (control plane only; the data path never returns errors).
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` refused its arguments or the machine.
    #[error("DPDK EAL initialisation failed ({reason}){hint}; EAL arguments: {args}")]
    Eal {
        /// `rte_strerror` of `rte_errno`.
        reason: String,
        /// What the host lacks for hugepages, if that is the likely cause ("; …"), or empty.
        hint: String,
        /// The arguments it was given, space-separated.
        args: String,
    },
    /// The EAL was already initialised in this process with other arguments.
    #[error("the DPDK EAL is already initialised in this process (it can be only once)")]
    EalAlreadyInitialised,
    /// A call on a device failed.
    #[error("DPDK device {device}: {what} failed ({reason})")]
    Device {
        /// The device name.
        device: String,
        /// What we were doing.
        what: &'static str,
        /// `rte_strerror` of the returned code.
        reason: String,
    },
    /// A value DPDK would refuse, or a device that does not fit the config.
    #[error("DPDK: {0}")]
    Config(String),
}

/// `rte_strerror(code)` as a `String` (`code` positive or negative).
pub(crate) fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string that stays valid until the next call on this thread; it is copied at once.
    unsafe {
        let p = mux_dpdk_sys::rte_strerror(code.abs());
        if p.is_null() {
            return format!("error {code}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// `rte_errno` of the calling thread.
pub(crate) fn errno() -> i32 {
    // SAFETY: reads a thread-local integer through the shim; no preconditions.
    unsafe { mux_dpdk_sys::mux_dpdk_errno() }
}
