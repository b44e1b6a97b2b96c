//! The packet ports: the unsafe I/O edge of mux.
//!
//! This crate owns every way a frame gets in or out of the process (AF_XDP, AF_PACKET, DPDK
//! behind the `dpdk` feature, and the in-memory port tests and benchmarks use) and the
//! system-call wrappers shared with the host agent's raw sockets and TUN device. It is separate
//! from `mux-packet` so that the pure packet code has no `unsafe` at all: here, `unsafe` is
//! allowed module by module (`afxdp`, `afpacket`, `dpdk`, `sys`), and each block carries its
//! `// SAFETY:` note. The crate root denies it.
//!
//! The packet-port trait: the only thing the data path knows about packet I/O.
//!
//! A port receives bursts of frames into buffers it owns, and takes them back to transmit, to
//! hand to the kernel, or to free. The MUX's workers are generic over [`Port`] and monomorphised
//! per backend, so the same pipeline runs over the in-memory port ([`mem`]) in tests and
//! benchmarks and over AF_PACKET, AF_XDP and DPDK in production.
//!
//! Contract:
//! - Buffers carry at least [`MIN_HEADROOM`] bytes of headroom in front of the frame so the
//!   pipeline can prepend an outer IPv6 header (40 bytes) or build an ICMP error in place
//!   without copying the packet.
//! - Burst vectors are reused: a port appends to the `Vec` it is given and never needs to grow it
//!   past the capacity the worker reserved at start, so the steady state allocates nothing.
//! - Every method is non-blocking. A port that cannot transmit a buffer frees it and counts it in
//!   its own statistics; the pipeline never waits for a port.

#![deny(unsafe_code)]

pub mod afpacket;
pub mod afxdp;
pub mod device;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod heap_buf;
pub mod mem;
pub mod sys;

/// Headroom every port guarantees in front of a received frame.
pub const MIN_HEADROOM: usize = 128;

/// A packet buffer: a frame in `data()`, with headroom in front of it.
pub trait PacketBuf {
    /// The frame, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The frame, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes available in front of the frame.
    fn headroom(&self) -> usize;
    /// Bytes available after the frame.
    fn tailroom(&self) -> usize;
    /// Grows the frame at the front by `n` bytes taken from the headroom (their content is
    /// unspecified). Returns `false`, changing nothing, when the headroom is too small.
    fn push_front(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front of the frame (`n` is clamped to the frame length).
    fn pull_front(&mut self, n: usize);
    /// Sets the frame length to `len`; grows into tailroom when `len` is larger (new bytes
    /// unspecified). Returns `false`, changing nothing, when the tailroom is too small.
    fn set_len(&mut self, len: usize) -> bool;
}

/// What a port counts, in the same terms for every backend (each port keeps finer counters of
/// its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames handed to the worker.
    pub rx: u64,
    /// Frames handed to the NIC or kernel for transmission.
    pub tx: u64,
    /// Frames lost on the receive side before the worker saw them (ring full, no free
    /// buffer, malformed ring entries).
    pub rx_dropped: u64,
    /// Frames the worker sent that the port could not transmit (ring full, too big, refused).
    pub tx_dropped: u64,
    /// Frames handed to the kernel through a user-space exception path (DPDK's TAP device;
    /// ports whose kernel path is the kernel's own, such as AF_XDP's XDP_PASS, leave it 0).
    pub to_kernel: u64,
    /// Kernel-bound frames the exception path refused.
    pub to_kernel_dropped: u64,
    /// Frames the kernel sent out through the exception path onto the NIC.
    pub from_kernel: u64,
    /// Frames from the kernel the NIC refused.
    pub from_kernel_dropped: u64,
    /// The NIC's own counters, where the port reads them (DPDK; one worker reports them for
    /// the whole device).
    pub nic: Option<NicStats>,
}

/// A NIC's drop and error counters for the whole device (DPDK's `rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames the NIC dropped because no RX descriptor was free (`imissed`): the workers fell
    /// behind.
    pub rx_missed: u64,
    /// Erroneous received frames (`ierrors`).
    pub rx_errors: u64,
    /// Receive failures for want of an mbuf (`rx_nombuf`): the mbuf pool is too small.
    pub rx_nombuf: u64,
    /// Failed transmissions (`oerrors`).
    pub tx_errors: u64,
}

/// A source and sink of packet bursts.
pub trait Port {
    /// The buffer type this port hands out.
    type Buf: PacketBuf;

    /// Receives up to `max` frames, appending them to `burst`. Returns how many were appended.
    fn recv(&mut self, burst: &mut Vec<Self::Buf>, max: usize) -> usize;

    /// Transmits every buffer in `burst` (draining it). Returns how many were sent; the rest
    /// were freed and counted by the port.
    fn send(&mut self, burst: &mut Vec<Self::Buf>) -> usize;

    /// Hands every buffer in `burst` (draining it) to the host kernel's stack (the exception
    /// path for ARP, ND, BGP, SSH and anything not addressed to a VIP).
    fn to_kernel(&mut self, burst: &mut Vec<Self::Buf>);

    /// Frees every buffer in `burst` (draining it).
    fn free(&mut self, burst: &mut Vec<Self::Buf>);

    /// Blocks for at most `timeout` until frames may be ready: an idle worker calls this
    /// instead of spinning, and loops again when it returns (so `timeout` also bounds how long
    /// the worker's heartbeat and stop check wait). A port with a wakeup (a socket, an Rx
    /// interrupt) sleeps on it and returns with the first frame; one without sleeps a bounded
    /// step. The default returns at once (the worker then spins).
    fn wait(&mut self, timeout: std::time::Duration) {
        let _ = timeout;
    }

    /// The port's counters. Called by the worker between bursts, a few times a second (it may
    /// make a system call to read the kernel's counters).
    fn stats(&mut self) -> PortStats {
        PortStats::default()
    }

    /// Work the port must do even when no frames arrive (e.g. reclaiming transmitted buffers,
    /// flushing a TX batch). The worker calls it once per poll.
    fn maintain(&mut self) {}
}
