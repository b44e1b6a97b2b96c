//! The AF_XDP packet port: kernel-bypass receive and transmit through XDP sockets, with a small
//! XDP program that steers only VIP traffic to them.
//!
//! What it owns:
//! - [`XdpProgram`] (`program.rs`, assembled in Rust by `asm.rs`, loaded through the raw
//!   `bpf()` wrappers of `bpf.rs`): one per interface. It redirects VIP frames (by destination
//!   address, port and protocol, plus the fragments and ICMP errors addressed to a VIP address)
//!   to the socket of the queue that received them and passes everything else — ARP, ND, BGP,
//!   SSH — to the kernel untouched. So the exception path for non-VIP traffic costs nothing in
//!   user space.
//! - [`AfXdpPort`] (`socket.rs`): one per (interface, queue). A UMEM of fixed-size frames
//!   shared with the kernel, its fill and completion rings, and the socket's RX and TX rings.
//!   A received frame is processed in place and transmitted from the same UMEM frame: zero
//!   copies between RX and TX (the kernel still copies once per direction in copy mode, as on
//!   veth; none on zero-copy NICs).
//!
//! Setup order: [`XdpProgram::attach`] → [`AfXdpPort::open`] per queue →
//! [`XdpProgram::register_socket`] with [`AfXdpPort::fd`] → [`XdpProgram::update_vips`]
//! (and again on each reload).
//!
//! # Why this module allows `unsafe`
//! The crate denies `unsafe_code`; this module is the exception, because AF_XDP is shared
//! memory with the kernel and the `bpf()` system call has no safe interface. The unsafe code is
//! limited to: the `bpf()` syscall and fd adoption (`bpf.rs`), `mmap` of the UMEM and the
//! slices handed out over its frames (`socket.rs`), and a few libc calls (`poll`,
//! `if_nametoindex`). Every block carries a `// SAFETY:` comment. Namespace and raw-socket
//! helpers for tests and the lab are AF_PACKET's: [`super::afpacket::enter_netns`] and
//! [`super::afpacket::RawSocket`].
#![allow(unsafe_code)]

mod asm;
mod bpf;
mod program;
mod socket;

pub use program::{KEY_LEN, MAX_VIP_KEYS, XdpProgram, ifindex, vip_key};
pub use socket::{
    AfXdpConfig, AfXdpPort, AfXdpStats, FRAME_SIZE, UMEM_HEADROOM, XdpFrame, XdpKernelStats,
    XdpMode,
};

/// Why setting up AF_XDP failed (control plane only; the data path never returns errors).
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What we were doing.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's verifier rejected the XDP program; `log` is its explanation.
    #[error("the kernel rejected the XDP program ({source}); verifier log:\n{log}")]
    Verifier {
        /// The `bpf(BPF_PROG_LOAD)` error.
        #[source]
        source: std::io::Error,
        /// The verifier log.
        log: String,
    },
    /// The program could not be assembled (a bug in `program.rs`).
    #[error("assembling the XDP program: {0}")]
    Assembly(#[from] asm::AsmError),
    /// No interface of that name in this network namespace.
    #[error("no network interface named {0:?} in this network namespace")]
    NoInterface(String),
    /// More VIP keys than the map holds.
    #[error("{0} VIP keys exceed the XDP map capacity of {MAX_VIP_KEYS}; raise MAX_VIP_KEYS")]
    TooManyVips(usize),
    /// A configuration value the kernel would reject.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
}
