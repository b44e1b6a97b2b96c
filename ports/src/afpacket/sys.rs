//! Thin, safe wrappers over the system calls the AF_PACKET port makes.
//!
//! Each function does one call and turns its C-style return into an [`io::Result`]. The only
//! state kept here is the shared ring mapping ([`Mapping`]), unmapped on drop. Nothing here runs
//! per packet except [`send_batch`] and [`poll_in`], which run once per burst.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

use crate::sys::check;
pub(super) use crate::sys::set_opt;

/// `ETH_P_ALL` in network byte order, as `socket(2)` and `bind(2)` want it.
pub(super) const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// A new `AF_PACKET`/`SOCK_RAW` socket that receives nothing until it is bound (protocol 0), so
/// no frame from another interface slips in between `socket` and `bind`.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by `socket` and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, SOL_PACKET, name, &(value as c_int))`.
pub(super) fn set_packet_int(
    fd: &OwnedFd,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_opt(fd, libc::SOL_PACKET, name, &value)
}

/// Reads (and thereby resets) the socket's `PACKET_STATISTICS` for a TPACKET_V3 socket.
pub(super) fn packet_stats(fd: &OwnedFd) -> io::Result<libc::tpacket_stats_v3> {
    let mut stats = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes, and `len` holds the size of `stats`; the
    // kernel writes at most `len` bytes of plain integers.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    })?;
    Ok(stats)
}

/// The interface index of `ifname` in the calling thread's network namespace.
pub(super) fn ifindex(ifname: &str) -> io::Result<libc::c_int> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// The MTU of `ifname` (`SIOCGIFMTU`), asked through `fd`'s network namespace.
pub(super) fn mtu(fd: &OwnedFd, ifname: &str) -> io::Result<u32> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `ifreq` is plain data (a name and a union of integers and addresses); all zeroes
    // is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid, NUL-terminated `ifreq` the kernel fills in for SIOCGIFMTU.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) })?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the `ifru_mtu` member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Binds a packet socket to `ifindex`, receiving every protocol.
pub(super) fn bind_all(fd: &OwnedFd, ifindex: libc::c_int) -> io::Result<()> {
    // SAFETY: `sockaddr_ll` is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = ETH_P_ALL_BE;
    addr.sll_ifindex = ifindex;
    // SAFETY: `addr` is a valid `sockaddr_ll` and the length passed is its size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Waits up to `timeout` for `fd` to become readable. Returns whether it is. `EINTR` counts as
/// "not readable" (the caller polls again).
pub(super) fn poll_in(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so that a sub-millisecond timeout still waits rather than spinning.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid `pollfd`, and we pass a count of 1.
    let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(ret > 0 && pfd.revents & libc::POLLIN != 0)
}

/// The page size, for validating ring geometry.
pub(super) fn page_size() -> usize {
    // SAFETY: plain syscall wrapper with a constant argument.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// A shared, read-write mapping of a packet socket's ring, unmapped on drop.
#[derive(Debug)]
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value alone (no other Rust pointer to
// it exists); moving that ownership to another thread is sound.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd`'s ring.
    pub(super) fn new(fd: &OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint); it aliases no Rust
        // object. The ring was configured with exactly `len` bytes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mapping { ptr, len })
    }

    /// An anonymous private mapping standing in for a ring in unit tests.
    #[cfg(test)]
    pub(super) fn anonymous(len: usize) -> Self {
        // SAFETY: a fresh private anonymous mapping chosen by the kernel; it aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "anonymous mmap");
        Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        }
    }

    /// The whole mapping as bytes, for unit tests that play the kernel's part.
    #[cfg(test)]
    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes owned by `self`, and the
        // returned borrow is tied to `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The start of the mapping.
    pub(super) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Its length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody else unmaps; no borrow of
        // it outlives `self` (the ring hands out borrows tied to `&mut self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `sendmmsg(fd, hdrs, MSG_DONTWAIT)`: returns how many messages were sent.
pub(super) fn send_batch(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let count = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: `hdrs` holds `count` initialised headers; each points at one `iovec` that points at
    // a live buffer the caller keeps borrowed for the duration of the call. The kernel writes
    // only the `msg_len` fields.
    let ret = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count, libc::MSG_DONTWAIT) };
    Ok(check(ret)? as usize)
}

/// `send(fd, frame, MSG_DONTWAIT)` on a bound packet socket.
pub(super) fn send_one(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is readable for `frame.len()` bytes during the call.
    let ret = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// What [`recv_with_vlan`] read.
pub(super) struct Received {
    /// Bytes written to the buffer.
    pub len: usize,
    /// The frame was longer than the buffer.
    pub truncated: bool,
    /// The 802.1Q tag the kernel stripped: `(tpid, tci)`.
    pub vlan: Option<(u16, u16)>,
}

/// One non-blocking `recvmsg` on a packet socket with `PACKET_AUXDATA` enabled. `Ok(None)` when
/// nothing is queued.
pub(super) fn recv_with_vlan(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    // Room for one cmsg carrying a `tpacket_auxdata` (40 bytes on 64-bit), u64-aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `msghdr` is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, both live and writable for
    // their stated lengths during the call.
    let ret = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        };
    }
    let wire_len = ret as usize;
    let mut vlan = None;
    // SAFETY: `msg` was filled by a successful `recvmsg`; the CMSG_* helpers walk `control`
    // within `msg_controllen`, and the auxdata payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_PACKET
                && c.cmsg_type == libc::PACKET_AUXDATA
                && c.cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize
            {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        libc::ETH_P_8021Q as u16
                    };
                    vlan = Some((tpid, aux.tp_vlan_tci));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some(Received {
        len: wire_len.min(buf.len()),
        truncated: wire_len > buf.len(),
        vlan,
    }))
}

/// Moves the calling thread into the network namespace at `path` (e.g.
/// `/run/netns/<name>`, as `ip netns add` creates, or `/proc/<pid>/ns/net`). Sockets the thread
/// creates afterwards live in that namespace; other threads are not affected.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}
