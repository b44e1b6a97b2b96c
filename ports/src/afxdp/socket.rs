//! One AF_XDP socket as a [`Port`]: a UMEM of fixed-size frames and the four rings.
//!
//! Frame ownership — every UMEM frame is in exactly one place at a time:
//! the fill ring (the kernel may write it) → the RX ring → an [`XdpFrame`] held by the worker
//! → the TX ring (the kernel reads it) → the completion ring → the free list → the fill ring.
//! Frames the worker frees or hands to the kernel go straight back to the free list. Because
//! an [`XdpFrame`] is the only owner of its frame while it exists, handing out `&mut [u8]`
//! over UMEM memory is sound; this relies on the kernel honouring the ring protocol (it never
//! writes a frame that is not on the fill ring), as every AF_XDP user does.
//!
//! Zero copy between RX and TX: a received frame is rewritten in place (the outer header goes
//! into the frame's headroom) and its descriptor is put on the TX ring with the new start
//! offset and length. Frames are [`FRAME_SIZE`] bytes and aligned, so a frame's base is its
//! descriptor address rounded down.
//!
//! Per burst, at most one system call: the TX kick (`sendto`) after a non-empty `send` when the
//! kernel asks for it (`XDP_USE_NEED_WAKEUP`; copy mode always asks), and `poll` in [`wait`].
//! Nothing here allocates after [`AfXdpPort::open`]: the free list has capacity for every
//! frame.
//!
//! `to_kernel`: AF_XDP cannot give a frame back to the kernel's stack. The XDP program already
//! passes every non-VIP frame to the kernel itself, so the frames that reach `to_kernel` are
//! the rare ones redirected by VIP address that the pipeline did not want (e.g. an ICMPv6 echo
//! behind an extension header); they are freed and counted in
//! [`AfXdpStats::kernel_dropped`].
//!
//! Memory safety of the frames: each [`XdpFrame`] points into the UMEM mapping, so the mapping
//! must outlive it. The port counts the frames it has handed out and not yet taken back; if it
//! is dropped while some are still out, it leaks the mapping instead of unmapping it. A frame
//! given to another port's `send`/`free` is recognised by its UMEM id and never reused there.
//!
//! [`wait`]: Port::wait

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{
    CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig,
    User,
};

use super::AfXdpError;
use crate::{MIN_HEADROOM, PacketBuf, Port, PortStats};

/// Most TX slots reserved in one `transmit` call (more than any burst).
const MAX_TX_RESERVE: u32 = 1024;

/// Size of one UMEM frame (a power of two, so a descriptor address rounds down to its frame).
pub const FRAME_SIZE: usize = 4096;
/// Headroom configured in the UMEM, in front of the kernel's own `XDP_PACKET_HEADROOM` (256):
/// received frames start at least this far into their UMEM frame.
pub const UMEM_HEADROOM: u32 = MIN_HEADROOM as u32;

const FRAME_MASK: u64 = !(FRAME_SIZE as u64 - 1);

/// Source of unique UMEM ids (to recognise a frame given to the wrong port).
static NEXT_UMEM_ID: AtomicU32 = AtomicU32::new(1);

/// How to open a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Number of UMEM frames (each [`FRAME_SIZE`] bytes).
    pub frames: u32,
    /// Entries in each of the fill, completion, RX and TX rings (a power of two).
    pub ring_size: u32,
    /// Try zero-copy first (falls back to copy mode when the driver cannot).
    pub zero_copy: bool,
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        AfXdpConfig {
            frames: 4096,
            ring_size: 2048,
            zero_copy: false,
        }
    }
}

/// How the socket is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each frame between its buffers and the UMEM.
    Copy,
}

/// The port's own counters (each moves only on the worker's thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Frames taken from the RX ring.
    pub rx: u64,
    /// Frames put on the TX ring.
    pub tx: u64,
    /// Frames dropped by `send` because the TX ring was full.
    pub tx_ring_full: u64,
    /// Times a refill found the fill ring empty (the kernel had nothing to receive into).
    pub fill_ring_empty: u64,
    /// Frames handed to `to_kernel` and dropped (AF_XDP has no path back to the stack).
    pub kernel_dropped: u64,
    /// Frames freed by the worker (pipeline drops).
    pub freed: u64,
    /// RX descriptors outside the UMEM or crossing a frame boundary (skipped).
    pub rx_invalid: u64,
    /// Frames of another port passed to this one (ignored; they stay with their port).
    pub foreign: u64,
    /// TX kicks (`sendto` system calls).
    pub tx_kicks: u64,
}

/// The kernel's counters for the socket (`getsockopt(XDP_STATISTICS)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpKernelStats {
    /// Frames dropped for reasons other than a full RX ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

/// An anonymous, page-aligned mapping holding the UMEM frames.
#[derive(Debug)]
struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
    /// Set when frames are still out at drop: the mapping is then never unmapped.
    leak: bool,
}

// SAFETY: the area is plain memory owned by this value; moving it to another thread moves the
// ownership with it.
unsafe impl Send for UmemArea {}

impl UmemArea {
    fn new(len: usize) -> Result<Self, AfXdpError> {
        // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(AfXdpError::Sys {
                what: "mapping the UMEM",
                source: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(AfXdpError::Config("mmap returned 0"))?;
        Ok(UmemArea {
            ptr,
            len,
            leak: false,
        })
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: we mapped exactly this range in `new` and no frame pointing into it is
            // alive (otherwise `leak` would be set).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// A received frame in the UMEM, owned by the worker until it is sent, freed or handed back.
#[derive(Debug)]
pub struct XdpFrame {
    /// Start of the UMEM frame (not of the packet).
    frame: NonNull<u8>,
    /// Offset of the UMEM frame in the UMEM (what the kernel calls its address).
    addr: u64,
    /// Packet start within the frame.
    start: u32,
    /// Packet length.
    len: u32,
    /// Which port's UMEM this frame belongs to.
    umem_id: u32,
}

// SAFETY: an `XdpFrame` is the unique owner of its UMEM frame (like a `Box<[u8]>`), and the
// mapping is never unmapped while a frame is out; sending it to another thread is sound.
unsafe impl Send for XdpFrame {}

impl PacketBuf for XdpFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: `start + len <= FRAME_SIZE` (checked on receive, kept by every setter) and
        // `frame` points to a FRAME_SIZE chunk of a mapping that outlives this value; the
        // chunk is owned by this frame alone (see the module doc).
        unsafe {
            std::slice::from_raw_parts(
                self.frame.as_ptr().add(self.start as usize),
                self.len as usize,
            )
        }
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes this the only live view of the frame.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.frame.as_ptr().add(self.start as usize),
                self.len as usize,
            )
        }
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start as usize
    }
    #[inline]
    fn tailroom(&self) -> usize {
        FRAME_SIZE - self.start as usize - self.len as usize
    }
    #[inline]
    fn push_front(&mut self, n: usize) -> bool {
        if n > self.start as usize {
            return false;
        }
        self.start -= n as u32;
        self.len += n as u32;
        true
    }
    #[inline]
    fn pull_front(&mut self, n: usize) {
        let n = n.min(self.len as usize) as u32;
        self.start += n;
        self.len -= n;
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if self.start as usize + len > FRAME_SIZE {
            return false;
        }
        self.len = len as u32;
        true
    }
}

/// The rings of one bound socket.
struct Rings {
    fill: FillQueue,
    comp: CompletionQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
}

/// An AF_XDP socket on one (interface, queue), as a [`Port`].
pub struct AfXdpPort {
    fill: FillQueue,
    comp: CompletionQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
    free_list: Vec<u64>,
    ring_size: u32,
    umem_id: u32,
    outstanding: usize,
    mode: XdpMode,
    need_wakeup: bool,
    stats: AfXdpStats,
    ifname: String,
    queue: u32,
    // Last: unmapped after the sockets above are closed.
    area: UmemArea,
}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("need_wakeup", &self.need_wakeup)
            .field("free", &self.free_list.len())
            .field("outstanding", &self.outstanding)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn errno(what: &'static str) -> impl Fn(xdpilone::Errno) -> AfXdpError {
    move |e| AfXdpError::Sys {
        what,
        source: std::io::Error::from_raw_os_error(e.get_raw().abs()),
    }
}

/// Registers `area` as a UMEM and binds a socket with `bind_flags`.
fn bind(
    area: &UmemArea,
    ifname: &str,
    queue: u32,
    config: &AfXdpConfig,
    bind_flags: u16,
) -> Result<Rings, AfXdpError> {
    let umem_config = UmemConfig {
        fill_size: config.ring_size,
        complete_size: config.ring_size,
        frame_size: FRAME_SIZE as u32,
        headroom: UMEM_HEADROOM,
        flags: 0,
    };
    let region = NonNull::slice_from_raw_parts(area.ptr, area.len);
    // SAFETY: `region` is our page-aligned mapping of `area.len` bytes; it outlives the UMEM
    // registration because the port drops its sockets before its `UmemArea` (field order).
    let umem = unsafe { Umem::new(umem_config, region) }.map_err(errno("registering the UMEM"))?;
    let name = CString::new(ifname).map_err(|_| AfXdpError::NoInterface(ifname.to_string()))?;
    let mut info = IfInfo::invalid();
    info.from_name(&name)
        .map_err(|_| AfXdpError::NoInterface(ifname.to_string()))?;
    info.set_queue(queue);
    let sock = Socket::with_shared(&info, &umem).map_err(errno("creating the XDP socket"))?;
    let device = umem
        .fq_cq(&sock)
        .map_err(errno("creating the fill and completion rings"))?;
    let ring = NonZeroU32::new(config.ring_size);
    let user = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: ring,
                tx_size: ring,
                bind_flags,
            },
        )
        .map_err(errno("creating the RX and TX rings"))?;
    let rx = user.map_rx().map_err(errno("mapping the RX ring"))?;
    let tx = user.map_tx().map_err(errno("mapping the TX ring"))?;
    umem.bind(&user)
        .map_err(errno("binding the XDP socket to the interface queue"))?;
    let (fill, comp) = device.into_parts();
    Ok(Rings {
        fill,
        comp,
        rx,
        tx,
        user,
    })
}

impl AfXdpPort {
    /// Opens an AF_XDP socket on `ifname` queue `queue_id` with its own UMEM. With
    /// `config.zero_copy` it tries zero-copy first and falls back to copy mode; it asks for
    /// `XDP_USE_NEED_WAKEUP` and falls back to binding without it. See [`AfXdpPort::mode`].
    pub fn open(ifname: &str, queue_id: u32, config: &AfXdpConfig) -> Result<Self, AfXdpError> {
        if !config.ring_size.is_power_of_two() || config.ring_size < 2 {
            return Err(AfXdpError::Config("ring_size must be a power of two"));
        }
        if config.frames < 2 {
            return Err(AfXdpError::Config("frames must be at least 2"));
        }
        let len = (config.frames as usize)
            .checked_mul(FRAME_SIZE)
            .ok_or(AfXdpError::Config("frames * FRAME_SIZE overflows"))?;
        let area = UmemArea::new(len)?;
        const NW: u16 = SocketConfig::XDP_BIND_NEED_WAKEUP;
        const ZC: u16 = SocketConfig::XDP_BIND_ZEROCOPY;
        const CP: u16 = SocketConfig::XDP_BIND_COPY;
        let mut attempts = Vec::with_capacity(4);
        if config.zero_copy {
            attempts.push((XdpMode::ZeroCopy, ZC | NW));
            attempts.push((XdpMode::ZeroCopy, ZC));
        }
        attempts.push((XdpMode::Copy, CP | NW));
        attempts.push((XdpMode::Copy, CP));
        let mut last = None;
        for (mode, flags) in attempts {
            match bind(&area, ifname, queue_id, config, flags) {
                Ok(rings) => {
                    return Ok(Self::assemble(
                        rings, area, mode, flags, ifname, queue_id, config,
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(AfXdpError::Config("no bind attempted")))
    }

    fn assemble(
        rings: Rings,
        area: UmemArea,
        mode: XdpMode,
        flags: u16,
        ifname: &str,
        queue: u32,
        config: &AfXdpConfig,
    ) -> Self {
        let frames = config.frames as usize;
        let mut port = AfXdpPort {
            fill: rings.fill,
            comp: rings.comp,
            rx: rings.rx,
            tx: rings.tx,
            user: rings.user,
            free_list: Vec::with_capacity(frames),
            ring_size: config.ring_size,
            umem_id: NEXT_UMEM_ID.fetch_add(1, Ordering::Relaxed),
            outstanding: 0,
            mode,
            need_wakeup: flags & SocketConfig::XDP_BIND_NEED_WAKEUP != 0,
            stats: AfXdpStats::default(),
            ifname: ifname.to_string(),
            queue,
            area,
        };
        // Highest addresses first so the fill ring starts with frame 0.
        port.free_list
            .extend((0..frames as u64).rev().map(|i| i * FRAME_SIZE as u64));
        port.refill();
        // The initial fill is not a starvation.
        port.stats = AfXdpStats::default();
        port
    }

    /// The socket's file descriptor, for [`super::XdpProgram::register_socket`].
    pub fn fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Whether the socket was bound with `XDP_USE_NEED_WAKEUP`.
    pub fn uses_need_wakeup(&self) -> bool {
        self.need_wakeup
    }

    /// The interface and queue this socket is bound to.
    pub fn queue(&self) -> (&str, u32) {
        (&self.ifname, self.queue)
    }

    /// The port's own counters.
    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    /// The kernel's counters for this socket (a system call: control plane only).
    pub fn xdp_statistics(&self) -> Result<XdpKernelStats, AfXdpError> {
        let s = self
            .user
            .statistics_v2()
            .map_err(errno("reading XDP_STATISTICS"))?;
        Ok(XdpKernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Moves transmitted frames from the completion ring to the free list.
    fn reap_completions(&mut self) {
        let mut reader = self.comp.complete(self.ring_size);
        while let Some(addr) = reader.read() {
            if self.free_list.len() < self.free_list.capacity() {
                self.free_list.push(addr & FRAME_MASK);
            }
        }
        reader.release();
    }

    /// Gives free frames to the kernel's fill ring.
    fn refill(&mut self) {
        if self.free_list.is_empty() {
            return;
        }
        if self.fill.pending() == 0 {
            self.stats.fill_ring_empty += 1;
        }
        let want = self.free_list.len().min(self.ring_size as usize) as u32;
        let mut writer = self.fill.fill(want);
        let n = writer.capacity() as usize;
        let from = self.free_list.len() - n;
        // Exactly `n` items for `n` reserved slots: none is consumed without being written.
        writer.insert(self.free_list.drain(from..));
        writer.commit();
    }

    fn kick_tx(&mut self) {
        self.tx.wake();
        self.stats.tx_kicks += 1;
    }

    fn release(&mut self, burst: &mut Vec<XdpFrame>) -> u64 {
        let mut n = 0;
        for frame in burst.drain(..) {
            if frame.umem_id != self.umem_id {
                self.stats.foreign += 1;
                continue;
            }
            self.outstanding -= 1;
            self.free_list.push(frame.addr);
            n += 1;
        }
        self.refill();
        n
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        if self.outstanding > 0 {
            self.area.leak = true;
        }
    }
}

impl Port for AfXdpPort {
    fn stats(&mut self) -> PortStats {
        let s = self.stats;
        let kernel = self.xdp_statistics().unwrap_or_default();
        PortStats {
            rx: s.rx,
            tx: s.tx,
            rx_dropped: kernel.rx_dropped + kernel.rx_ring_full + s.rx_invalid,
            tx_dropped: s.tx_ring_full,
            ..PortStats::default()
        }
    }

    type Buf = XdpFrame;

    fn recv(&mut self, burst: &mut Vec<XdpFrame>, max: usize) -> usize {
        let max = max.min(u32::MAX as usize) as u32;
        if max == 0 {
            return 0;
        }
        let mut n = 0;
        let mut reader = self.rx.receive(max);
        while let Some(desc) = reader.read() {
            let base = desc.addr & FRAME_MASK;
            let start = (desc.addr - base) as usize;
            if base >= self.area.len as u64 || start + desc.len as usize > FRAME_SIZE {
                self.stats.rx_invalid += 1;
                if base < self.area.len as u64 {
                    self.free_list.push(base);
                }
                continue;
            }
            // SAFETY: `base < area.len` and frames are FRAME_SIZE-aligned inside the area, so
            // the frame lies entirely within the mapping.
            let frame =
                unsafe { NonNull::new_unchecked(self.area.ptr.as_ptr().add(base as usize)) };
            burst.push(XdpFrame {
                frame,
                addr: base,
                start: start as u32,
                len: desc.len,
                umem_id: self.umem_id,
            });
            n += 1;
        }
        reader.release();
        drop(reader);
        self.outstanding += n;
        self.stats.rx += n as u64;
        if n == 0 {
            // Idle: recycle what the kernel transmitted and keep the fill ring topped up.
            self.reap_completions();
            self.refill();
            if self.need_wakeup && self.fill.needs_wakeup() {
                self.fill.wake();
            }
        }
        n
    }

    fn send(&mut self, burst: &mut Vec<XdpFrame>) -> usize {
        if burst.is_empty() {
            return 0;
        }
        self.reap_completions();
        // xdpilone's `transmit(n)` reserves from its cached view of the kernel's consumer and
        // refreshes that view only when the cache shows no room at all, so one call may offer
        // fewer slots than the ring really has. Reserve again until the frames are placed or
        // a fresh view says the ring is full.
        let mut sent = 0;
        let mut frames = burst.drain(..).filter(|f| {
            let ours = f.umem_id == self.umem_id;
            if !ours {
                self.stats.foreign += 1;
            }
            ours
        });
        let mut pending = frames.next();
        while pending.is_some() {
            let mut writer = self.tx.transmit(MAX_TX_RESERVE);
            let room = writer.capacity();
            if room == 0 {
                break;
            }
            let mut placed = 0;
            while placed < room {
                let Some(frame) = pending.take() else { break };
                writer.insert_once(XdpDesc {
                    addr: frame.addr + u64::from(frame.start),
                    len: frame.len,
                    options: 0,
                });
                self.outstanding -= 1;
                placed += 1;
                pending = frames.next();
            }
            writer.commit();
            sent += placed as usize;
        }
        // What did not fit goes back to the free list, counted.
        while let Some(frame) = pending {
            self.outstanding -= 1;
            self.stats.tx_ring_full += 1;
            self.free_list.push(frame.addr);
            pending = frames.next();
        }
        drop(frames);
        self.stats.tx += sent as u64;
        if sent > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.kick_tx();
        }
        // Completions reaped above and frames the full ring refused go back to the kernel.
        self.refill();
        sent
    }

    fn to_kernel(&mut self, burst: &mut Vec<XdpFrame>) {
        let n = self.release(burst);
        self.stats.kernel_dropped += n;
    }

    fn free(&mut self, burst: &mut Vec<XdpFrame>) {
        let n = self.release(burst);
        self.stats.freed += n;
    }

    fn wait(&mut self, timeout: Duration) {
        if self.rx.available() > 0 {
            return;
        }
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd` on our own socket, for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    fn maintain(&mut self) {
        self.reap_completions();
        self.refill();
        if self.tx.pending() > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.kick_tx();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn port_and_frames_can_move_to_a_worker_thread() {
        assert_send::<AfXdpPort>();
        assert_send::<XdpFrame>();
    }

    #[test]
    fn frame_headroom_and_tailroom_follow_the_descriptor() {
        let area = UmemArea::new(2 * FRAME_SIZE).unwrap();
        let mut f = XdpFrame {
            // SAFETY: FRAME_SIZE is within the two-frame area.
            frame: unsafe { NonNull::new_unchecked(area.ptr.as_ptr().add(FRAME_SIZE)) },
            addr: FRAME_SIZE as u64,
            start: 384,
            len: 60,
            umem_id: 0,
        };
        f.data_mut().fill(7);
        assert_eq!(f.headroom(), 384);
        assert_eq!(f.tailroom(), FRAME_SIZE - 444);
        assert!(f.push_front(40));
        assert_eq!(f.data().len(), 100);
        assert_eq!(&f.data()[40..], &[7; 60]);
        assert!(!f.push_front(345));
        f.pull_front(40);
        assert_eq!(f.data(), &[7; 60]);
        assert!(f.set_len(FRAME_SIZE - 384));
        assert!(!f.set_len(FRAME_SIZE - 383));
        assert!(f.set_len(60));
    }
}
