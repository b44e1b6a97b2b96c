//! The AF_PACKET port: TPACKET_V3 receive ring plus `sendmmsg`, on any Linux interface.
//!
//! This is the portable backend: it needs no driver support, no XDP program and no DPDK, only
//! `CAP_NET_RAW`. It owns one packet socket per worker, bound to one interface, and a pool of
//! buffers filled once at [`AfPacketPort::open`].
//!
//! # Receive
//! The socket has a TPACKET_V3 ring mapped into our memory: blocks (1 MiB by default) that the
//! kernel fills with frames and *retires* to user space when full or after a timeout of a few
//! milliseconds, so one `poll(2)` wakes us for a whole block. [`Port::recv`] walks the retired
//! blocks and copies each frame into a pooled [`AfBuf`] behind [`MIN_HEADROOM`] bytes of
//! headroom, then hands each block back as soon as its last frame is copied. The copy is the
//! price of portability (frames in the ring have no headroom and the ring's blocks must go back
//! in order); the AF_XDP backend is the zero-copy one.
//!
//! The kernel strips a frame's 802.1Q tag into metadata (`tp_vlan_tci`, `TP_STATUS_VLAN_VALID`)
//! before a packet socket sees it; the copy puts the tag back, so the pipeline sees the frame as
//! it was on the wire.
//!
//! With several workers, every socket joins the same `PACKET_FANOUT` group in
//! `PACKET_FANOUT_HASH` mode: the kernel hashes each frame's flow and gives it to one member, so
//! each worker sees whole flows and no frame twice.
//!
//! # Transmit
//! [`Port::send`] passes the burst to `sendmmsg(2)` (one call per up to
//! [`AfPacketConfig::tx_batch`] frames), with `PACKET_QDISC_BYPASS` set so frames go straight to
//! the driver. Rejected alternative: a `PACKET_TX_RING` (TPACKET_V2, on a second socket since
//! V3 TX rings are limited). It would also cost one copy per frame (into the ring instead of
//! into an skb) and one syscall per burst, but it needs a second socket and mapping, tracking of
//! in-flight slots, and it reports errors only as slot states, after the fact; with `sendmmsg`
//! the kernel has copied each frame when the call returns, so buffers go straight back to the
//! pool, and a refused frame is known and counted at once. The fast path is AF_XDP anyway.
//! Frames longer than the interface MTU plus the Ethernet header (plus 4 bytes when
//! VLAN-tagged) are dropped before the call and counted ([`AfPacketStats::tx_oversize`]).
//!
//! # `to_kernel` frees: a packet socket is a tap
//! AF_PACKET does not intercept frames: the kernel delivers each frame to our socket *and* to its
//! own stack. ARP, ND, BGP and SSH therefore already reached the host, and [`Port::to_kernel`]
//! only frees the buffers (counting them in [`AfPacketStats::to_kernel`]). What this implies for
//! operators: VIP traffic is seen by the host's stack too. The host must not own the VIP
//! addresses, and must keep `net.ipv4.ip_forward` / `net.ipv6.conf.all.forwarding` off (or drop
//! VIP traffic in an nftables `prerouting` chain, which runs after packet sockets have taken
//! their copy); otherwise the host would forward or answer the same packets the MUX
//! encapsulates. The lab and the daemon must keep forwarding off (or filter) on MUX hosts. Likewise, disable
//! GRO/LRO on the interface (`ethtool -K <if> gro off lro off`): a packet socket sees frames after
//! GRO, and merged super-frames larger than a buffer are dropped
//! ([`AfPacketStats::rx_oversize`]).
//!
//! Our own transmissions are hidden from our sockets (`PACKET_IGNORE_OUTGOING`, or the fanout
//! group's `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`); frames marked outgoing that still show up (the
//! host's own traffic on kernels without those options) are skipped and counted.
//!
//! # Fragments and `PACKET_FANOUT_FLAG_DEFRAG`
//! The kernel's fanout hash ignores ports for every IP fragment, so all fragments of a datagram
//! already reach the same worker, which is all the pipeline needs (it sends fragments by a
//! 3-tuple hash). `PACKET_FANOUT_FLAG_DEFRAG` would instead make the kernel *reassemble*
//! fragments before our socket sees them, turning them into one datagram larger than the MTU
//! that the MUX can neither buffer nor encapsulate. It is therefore off by default and available
//! as [`AfPacketConfig::fanout_defrag`].
//!
//! # Invariants
//! - No allocation, lock or log per packet; syscalls per burst only (`sendmmsg`, and `poll` in
//!   [`Port::wait`]).
//! - A block is returned to the kernel only after all its frames were copied; kernel-written
//!   offsets are bounds-checked before use (`ring`).
//! - Every frame received is either delivered or counted in exactly one drop counter.

// AF_PACKET is a system-call and shared-memory interface: the socket options, `mmap` of the ring,
// the ring's kernel-written headers, `sendmmsg` and `setns` have no safe std equivalent, and no
// allowed crate wraps TPACKET_V3. So this module is one of the crate's edges where `unsafe` is
// allowed; it is confined to `sys` (one system call per function) and `ring` (reading the
// mapping), each block with a `// SAFETY:` comment, and nothing `unsafe` leaks through the API.
#![allow(unsafe_code)]

mod raw;
mod ring;
mod sys;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::heap_buf::HeapBuf;
use super::{MIN_HEADROOM, PacketBuf, Port, PortStats};
use ring::{Entry, RxRing};

pub use raw::{MAX_CAPTURE, MAX_SEND_BATCH, RawSocket};
pub use sys::enter_netns;

/// Geometry and options of an [`AfPacketPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// `PACKET_FANOUT` group id; every worker socket on the interface uses the same one. `None`:
    /// a single socket, no fanout.
    pub fanout_group: Option<u16>,
    /// Adds `PACKET_FANOUT_FLAG_DEFRAG` (the kernel reassembles IP fragments before fanout).
    /// Off by default: see the module doc.
    pub fanout_defrag: bool,
    /// Bytes per RX ring block: a positive multiple of the page size and of `frame_size`.
    pub block_size: u32,
    /// Number of RX ring blocks.
    pub block_count: u32,
    /// The ring's nominal frame size (TPACKET_V3 packs frames tightly; the kernel only uses this
    /// to validate the geometry): a multiple of 16 that divides `block_size`.
    pub frame_size: u32,
    /// Milliseconds after which the kernel retires a block that is not full (the receive latency
    /// at low rates); 0 lets the kernel choose.
    pub retire_timeout_ms: u32,
    /// Bytes per pooled buffer, headroom included.
    pub buf_size: usize,
    /// Number of pooled buffers (allocated once).
    pub pool_size: usize,
    /// Most frames per `sendmmsg` call (1..=1024).
    pub tx_batch: usize,
    /// Sets `PACKET_QDISC_BYPASS`: transmitted frames skip the interface's queueing discipline
    /// (faster; a full device queue drops instead of queueing).
    pub qdisc_bypass: bool,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            fanout_group: None,
            fanout_defrag: false,
            block_size: 1 << 20,
            block_count: 8,
            frame_size: 2048,
            retire_timeout_ms: 2,
            buf_size: 2048,
            pool_size: 512,
            tx_batch: 256,
            qdisc_bypass: true,
        }
    }
}

impl AfPacketConfig {
    /// Checks the geometry, with a message that says what to change.
    pub fn validate(&self) -> Result<(), AfPacketError> {
        let page = sys::page_size();
        let block = self.block_size as usize;
        let frame = self.frame_size as usize;
        if block == 0 || !block.is_multiple_of(page) {
            return Err(AfPacketError::Config(
                "block_size must be a positive multiple of the page size (e.g. 1048576)",
            ));
        }
        if frame < libc::TPACKET3_HDRLEN + 64
            || !frame.is_multiple_of(libc::TPACKET_ALIGNMENT)
            || !block.is_multiple_of(frame)
        {
            return Err(AfPacketError::Config(
                "frame_size must be a multiple of 16, at least 144, that divides block_size (e.g. 2048)",
            ));
        }
        if self.block_count == 0 || (self.block_count as usize).checked_mul(block).is_none() {
            return Err(AfPacketError::Config("block_count must be at least 1"));
        }
        if self.buf_size < MIN_HEADROOM + 64 {
            return Err(AfPacketError::Config(
                "buf_size must leave room for a frame after the 128-byte headroom (e.g. 2048)",
            ));
        }
        if self.pool_size == 0 {
            return Err(AfPacketError::Config("pool_size must be at least 1"));
        }
        if !(1..=1024).contains(&self.tx_batch) {
            return Err(AfPacketError::Config("tx_batch must be between 1 and 1024"));
        }
        Ok(())
    }
}

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// The configuration is unusable.
    #[error("afpacket: invalid configuration: {0}")]
    Config(&'static str),
    /// The interface does not exist in the calling thread's network namespace.
    #[error("afpacket: no interface {ifname:?} in this network namespace: {source}")]
    NoInterface {
        /// The interface asked for.
        ifname: String,
        /// The lookup's error.
        source: io::Error,
    },
    /// A system call failed while setting the socket up.
    #[error(
        "afpacket on {ifname}: {step} failed: {source}{}",
        permission_hint(source)
    )]
    Sys {
        /// The interface.
        ifname: String,
        /// The step that failed (e.g. `"PACKET_RX_RING"`).
        step: &'static str,
        /// The system call's error.
        source: io::Error,
    },
}

fn permission_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (packet sockets need CAP_NET_RAW: run as root or grant the capability)"
    } else {
        ""
    }
}

/// Counters of one port. Every received frame lands in `rx` or in exactly one `rx_*` drop
/// counter; every buffer given to the port lands in `tx`, `tx_errors`, `tx_oversize`,
/// `to_kernel` or `freed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames copied out of the ring and handed to the worker.
    pub rx: u64,
    /// Bytes of those frames (VLAN tag included).
    pub rx_bytes: u64,
    /// Frames the kernel dropped because the ring was full (`tp_drops`), as of the last
    /// [`AfPacketPort::stats`] call.
    pub rx_dropped: u64,
    /// Times the kernel found the ring full and froze it (`tp_freeze_q_cnt`), as of the last
    /// [`AfPacketPort::stats`] call.
    pub rx_freeze: u64,
    /// Frames longer than a buffer (or truncated by the ring), dropped.
    pub rx_oversize: u64,
    /// Frames marked outgoing (transmitted by this host) that reached the ring, skipped.
    pub rx_outgoing: u64,
    /// Ring entries with impossible offsets; the rest of their block was skipped.
    pub rx_ring_errors: u64,
    /// Frames the kernel accepted for transmission.
    pub tx: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the kernel refused (device queue full, interface down, malformed header).
    pub tx_errors: u64,
    /// Frames longer than the MTU plus the Ethernet (and 802.1Q) header, dropped unsent.
    pub tx_oversize: u64,
    /// Buffers handed to [`Port::to_kernel`] (freed: the kernel has its own copy).
    pub to_kernel: u64,
    /// Buffers handed to [`Port::free`].
    pub freed: u64,
}

/// A buffer owned by an [`AfPacketPort`]: one frame behind at least [`MIN_HEADROOM`] bytes
/// (the port copies each frame out of the kernel's ring into one).
pub type AfBuf = HeapBuf;

/// The `sendmmsg` batch: headers and I/O vectors allocated once; header `i` points at vector
/// `i` for the port's whole life, vectors are refilled per burst.
struct TxBatch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
}

// SAFETY: the raw pointers in `hdrs`/`iovs` point only into `iovs`' own heap allocation (which
// moves with the value) or, during one `send` call, into buffers borrowed by that call. No
// pointer is shared with another thread, so moving the batch to another thread is sound.
unsafe impl Send for TxBatch {}

impl TxBatch {
    fn new(n: usize) -> Self {
        let mut iovs: Box<[libc::iovec]> = (0..n)
            .map(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            })
            .collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: `mmsghdr` is plain data; all zeroes is a valid value (null name and
                // control, no flags).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        TxBatch { hdrs, iovs }
    }
}

/// An AF_PACKET port on one interface (one per worker; see the module doc).
pub struct AfPacketPort {
    fd: OwnedFd,
    ring: RxRing,
    pool: Vec<AfBuf>,
    tx: TxBatch,
    ifname: String,
    ifindex: i32,
    mtu: u32,
    fanout_group: Option<u16>,
    stats: AfPacketStats,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("mtu", &self.mtu)
            .field("fanout_group", &self.fanout_group)
            .field("pool_free", &self.pool.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The error for a failed system call `step` on `ifname`, for `map_err`.
pub(crate) fn sys_error(
    ifname: &str,
    step: &'static str,
) -> impl FnOnce(io::Error) -> AfPacketError + use<> {
    let ifname = ifname.to_owned();
    move |source| AfPacketError::Sys {
        ifname,
        step,
        source,
    }
}

/// An AF_PACKET socket (protocol 0: nothing arrives until it is bound) and the index of
/// `ifname`, shared by the port and [`RawSocket`].
pub(crate) fn open_socket(ifname: &str) -> Result<(OwnedFd, i32), AfPacketError> {
    let fd = sys::packet_socket().map_err(sys_error(ifname, "socket(AF_PACKET)"))?;
    let ifindex = sys::ifindex(ifname).map_err(|source| AfPacketError::NoInterface {
        ifname: ifname.to_owned(),
        source,
    })?;
    Ok((fd, ifindex))
}

impl AfPacketPort {
    /// Opens a port on `ifname` (resolved in the calling thread's network namespace): a
    /// TPACKET_V3 socket with its RX ring mapped, bound to the interface, in the fanout group if
    /// one is configured.
    pub fn open(ifname: &str, config: &AfPacketConfig) -> Result<Self, AfPacketError> {
        config.validate()?;
        let sys_err = |step| sys_error(ifname, step);
        let (fd, ifindex) = open_socket(ifname)?;
        let mtu = sys::mtu(&fd, ifname).map_err(sys_err("SIOCGIFMTU"))?;
        sys::set_packet_int(
            &fd,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V3 as libc::c_int,
        )
        .map_err(sys_err("PACKET_VERSION=TPACKET_V3"))?;
        // Best effort: without it (kernels before 4.20) outgoing frames are skipped in `recv`.
        let _ = sys::set_packet_int(&fd, libc::PACKET_IGNORE_OUTGOING, 1);
        if config.qdisc_bypass {
            sys::set_packet_int(&fd, libc::PACKET_QDISC_BYPASS, 1)
                .map_err(sys_err("PACKET_QDISC_BYPASS"))?;
        }
        let req = libc::tpacket_req3 {
            tp_block_size: config.block_size,
            tp_block_nr: config.block_count,
            tp_frame_size: config.frame_size,
            tp_frame_nr: (config.block_size / config.frame_size) * config.block_count,
            tp_retire_blk_tov: config.retire_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::set_opt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(sys_err("PACKET_RX_RING"))?;
        let ring_len = config.block_size as usize * config.block_count as usize;
        let map = sys::Mapping::new(&fd, ring_len).map_err(sys_err("mmap of the RX ring"))?;
        let ring = RxRing::new(map, config.block_size as usize, config.block_count as usize);
        sys::bind_all(&fd, ifindex).map_err(sys_err("bind"))?;
        if let Some(group) = config.fanout_group {
            let mut flags = libc::PACKET_FANOUT_HASH;
            if config.fanout_defrag {
                flags |= libc::PACKET_FANOUT_FLAG_DEFRAG;
            }
            let join = |flags: libc::c_uint| {
                let arg: u32 = u32::from(group) | (flags << 16);
                sys::set_opt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            };
            // The group-wide ignore-outgoing flag (Linux 6.9+); older kernels refuse it, and then
            // `recv` skips outgoing frames instead.
            join(flags | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING)
                .or_else(|e| match e.raw_os_error() {
                    Some(libc::EINVAL) => join(flags),
                    _ => Err(e),
                })
                .map_err(sys_err("PACKET_FANOUT"))?;
        }
        let mut pool = Vec::with_capacity(config.pool_size);
        pool.extend((0..config.pool_size).map(|_| AfBuf::new(config.buf_size)));
        Ok(AfPacketPort {
            fd,
            ring,
            pool,
            tx: TxBatch::new(config.tx_batch),
            ifname: ifname.to_owned(),
            ifindex,
            mtu,
            fanout_group: config.fanout_group,
            stats: AfPacketStats::default(),
        })
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The interface MTU read at open (frames up to MTU + Ethernet header are transmitted).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The fanout group this socket joined.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout_group
    }

    /// The port's counters, after adding the kernel's drop counters (`PACKET_STATISTICS`, which
    /// the kernel resets on each read; one syscall: call it from the control loop, not per
    /// burst).
    pub fn stats(&mut self) -> AfPacketStats {
        if let Ok(k) = sys::packet_stats(&self.fd) {
            self.stats.rx_dropped += u64::from(k.tp_drops);
            self.stats.rx_freeze += u64::from(k.tp_freeze_q_cnt);
        }
        self.stats
    }

    /// The longest frame the interface takes with this frame's header (802.1Q-tagged or not).
    fn max_frame(&self, frame: &[u8]) -> usize {
        let tagged = matches!(frame.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
        self.mtu as usize + 14 + if tagged { 4 } else { 0 }
    }

    /// Sends `iovs[..k]` with as few `sendmmsg` calls as errors allow. A frame the kernel
    /// refuses is counted and skipped; when the device has no room (`ENOBUFS`, `EAGAIN`) the
    /// rest of the batch is dropped rather than retried (the data path never waits).
    fn flush(&mut self, k: usize) -> usize {
        let fd = self.fd.as_raw_fd();
        let mut i = 0;
        let mut sent = 0;
        while i < k {
            match sys::send_batch(fd, &mut self.tx.hdrs[i..k]) {
                Ok(0) => {
                    self.stats.tx_errors += (k - i) as u64;
                    break;
                }
                Ok(m) => {
                    let m = m.min(k - i);
                    let bytes: u64 = self.tx.iovs[i..i + m]
                        .iter()
                        .map(|v| v.iov_len as u64)
                        .sum();
                    self.stats.tx_bytes += bytes;
                    sent += m;
                    i += m;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    self.stats.tx_errors += (k - i) as u64;
                    break;
                }
                Err(_) => {
                    self.stats.tx_errors += 1;
                    i += 1;
                }
            }
        }
        self.stats.tx += sent as u64;
        sent
    }

    fn recycle(&mut self, burst: &mut Vec<AfBuf>) {
        self.pool.append(burst);
    }
}

impl Port for AfPacketPort {
    fn stats(&mut self) -> PortStats {
        let s = AfPacketPort::stats(self);
        PortStats {
            rx: s.rx,
            tx: s.tx,
            rx_dropped: s.rx_dropped + s.rx_oversize + s.rx_ring_errors,
            tx_dropped: s.tx_errors + s.tx_oversize,
            ..PortStats::default()
        }
    }

    type Buf = AfBuf;

    fn recv(&mut self, burst: &mut Vec<AfBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut buf) = self.pool.pop() else {
                break;
            };
            let stats = &mut self.stats;
            let delivered = self.ring.pop_with(|entry| match entry {
                Entry::Corrupt => {
                    stats.rx_ring_errors += 1;
                    false
                }
                Entry::Frame(f) if f.pkttype == libc::PACKET_OUTGOING => {
                    stats.rx_outgoing += 1;
                    false
                }
                Entry::Frame(f) => {
                    if f.data.len() < f.wire_len as usize || !buf.load(f.data, f.vlan) {
                        stats.rx_oversize += 1;
                        false
                    } else {
                        stats.rx += 1;
                        stats.rx_bytes += buf.data().len() as u64;
                        true
                    }
                }
            });
            match delivered {
                Some(true) => {
                    burst.push(buf);
                    n += 1;
                }
                Some(false) => self.pool.push(buf),
                None => {
                    self.pool.push(buf);
                    break;
                }
            }
        }
        n
    }

    fn send(&mut self, burst: &mut Vec<AfBuf>) -> usize {
        let mut sent = 0;
        let mut k = 0;
        for buf in burst.iter() {
            let frame = buf.data();
            if frame.len() > self.max_frame(frame) {
                self.stats.tx_oversize += 1;
                continue;
            }
            // The kernel only reads through this pointer; `burst` stays borrowed (unchanged)
            // until the batch is flushed below.
            self.tx.iovs[k] = libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            };
            k += 1;
            if k == self.tx.iovs.len() {
                sent += self.flush(k);
                k = 0;
            }
        }
        if k > 0 {
            sent += self.flush(k);
        }
        self.recycle(burst);
        sent
    }

    fn to_kernel(&mut self, burst: &mut Vec<AfBuf>) {
        // The kernel received its own copy of every frame (see the module doc).
        self.stats.to_kernel += burst.len() as u64;
        self.recycle(burst);
    }

    fn free(&mut self, burst: &mut Vec<AfBuf>) {
        self.stats.freed += burst.len() as u64;
        self.recycle(burst);
    }

    fn wait(&mut self, timeout: Duration) {
        if self.ring.ready() {
            return;
        }
        // An error (e.g. the interface went away) shows up as an idle port; the worker's
        // next poll and the control plane's health checks see it.
        let _ = sys::poll_in(self.fd.as_raw_fd(), timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_reinserts_the_vlan_tag_after_the_macs() {
        let mut buf = AfBuf::new(2048);
        let frame: Vec<u8> = (0..20).collect();
        assert!(buf.load(&frame, Some((0x8100, 0x202a))));
        let mut expected = frame[..12].to_vec();
        expected.extend_from_slice(&[0x81, 0x00, 0x20, 0x2a]);
        expected.extend_from_slice(&frame[12..]);
        assert_eq!(buf.data(), &expected[..]);
        assert_eq!(buf.headroom(), MIN_HEADROOM);
        assert!(buf.load(&frame, None));
        assert_eq!(buf.data(), &frame[..]);
    }

    #[test]
    fn load_refuses_frames_longer_than_the_buffer() {
        let mut buf = AfBuf::new(MIN_HEADROOM + 100);
        assert!(buf.load(&[7; 100], None));
        assert!(!buf.load(&[7; 97], Some((0x8100, 1))), "97 + 4 > 100");
        assert!(!buf.load(&[7; 101], None));
        assert_eq!(
            buf.data(),
            &[7; 100],
            "a refused load leaves the buffer as it was"
        );
        assert_eq!(buf.tailroom(), 0);
    }

    #[test]
    fn validate_names_the_field_to_fix() {
        let ok = AfPacketConfig::default();
        assert!(ok.validate().is_ok());
        let cases: [(AfPacketConfig, &str); 6] = [
            (
                AfPacketConfig {
                    block_size: 1000,
                    ..ok.clone()
                },
                "block_size",
            ),
            (
                AfPacketConfig {
                    frame_size: 2000,
                    ..ok.clone()
                },
                "frame_size",
            ),
            (
                AfPacketConfig {
                    block_count: 0,
                    ..ok.clone()
                },
                "block_count",
            ),
            (
                AfPacketConfig {
                    buf_size: 100,
                    ..ok.clone()
                },
                "buf_size",
            ),
            (
                AfPacketConfig {
                    pool_size: 0,
                    ..ok.clone()
                },
                "pool_size",
            ),
            (
                AfPacketConfig {
                    tx_batch: 0,
                    ..ok.clone()
                },
                "tx_batch",
            ),
        ];
        for (cfg, field) in cases {
            let msg = cfg.validate().expect_err(field).to_string();
            assert!(msg.contains(field), "{msg}");
        }
    }

    #[test]
    fn a_port_can_move_to_its_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<AfPacketPort>();
    }

    #[test]
    fn opening_a_missing_interface_says_so() {
        let err = AfPacketPort::open("no-such-if0", &AfPacketConfig::default()).unwrap_err();
        let msg = err.to_string();
        // Unprivileged runs fail at socket() with a hint; privileged ones at the lookup.
        assert!(
            msg.contains("no interface \"no-such-if0\"") || msg.contains("CAP_NET_RAW"),
            "{msg}"
        );
    }
}
