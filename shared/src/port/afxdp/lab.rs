//! Helpers for tests and the namespace lab: entering a network namespace, and a raw AF_PACKET
//! socket that injects and captures whole Ethernet frames on one interface.
//!
//! These are not on any data path (they allocate per frame); they live here because the crates
//! that use them deny `unsafe` and the system calls have no safe std interface.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `SOL_PACKET` option: do not deliver frames this host transmits on the interface.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `SOL_PACKET` option: attach a `tpacket_auxdata` control message to each frame.
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `struct tpacket_auxdata` from `<linux/if_packet.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AuxData {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}

/// Moves the calling thread into the network namespace `name`, as created by `ip netns add`
/// (`/run/netns/<name>`). Sockets the thread creates afterwards live in that namespace; other
/// threads are unaffected.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = CString::new(format!("/run/netns/{name}"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path; the returned fd is adopted right below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened by us and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `setns` on a namespace fd we own; it only changes this thread's namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw `AF_PACKET` socket bound to one interface. It sees frames arriving on the interface
/// (including those passed to the kernel by XDP) but not the ones the host transmits. A VLAN
/// tag the driver stripped into metadata (veth's `rxvlan` offload) is put back, as libpcap
/// does, so captured frames are what was on the wire.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket on `ifname` in the calling thread's network namespace.
    pub fn bind(ifname: &str) -> io::Result<Self> {
        let index = super::ifindex(ifname).map_err(|e| io::Error::other(e.to_string()))?;
        // Protocol 0: receives nothing until bound, so no frame of another interface sneaks in.
        // SAFETY: plain socket creation; the fd is adopted below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created by us and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        for option in [PACKET_IGNORE_OUTGOING, PACKET_AUXDATA] {
            // SAFETY: a valid int option value of the size we pass.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    option,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a valid `sockaddr_ll` and we pass its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd })
    }

    /// Transmits one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of its length during the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame, waiting at most `timeout`; `None` on timeout.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid `pollfd` for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; 65536];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // u64 elements: the control buffer must be aligned for `cmsghdr`.
            let mut control = [0u64; 16];
            // SAFETY: `msghdr` is plain old data; all-zero is a valid value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` points to `iov` (over `buf`) and `control`, all alive and writable
            // for the duration of the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            buf.truncate(n as usize);
            if let Some(aux) = auxdata(&msg)
                && aux.status & TP_STATUS_VLAN_VALID != 0
                && buf.len() >= 12
            {
                let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.vlan_tpid
                } else {
                    0x8100
                };
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&aux.vlan_tci.to_be_bytes());
                buf.splice(12..12, tag);
            }
            return Ok(Some(buf));
        }
    }

    /// Receives every frame that arrives within `window` (stops early once `enough` frames
    /// were seen).
    pub fn collect(&self, window: Duration, enough: usize) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while out.len() < enough {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left)? {
                Some(f) => out.push(f),
                None => break,
            }
        }
        Ok(out)
    }
}

/// The `PACKET_AUXDATA` control message of a received frame, if present.
fn auxdata(msg: &libc::msghdr) -> Option<AuxData> {
    // SAFETY: `msg` was filled by a successful `recvmsg`; the CMSG macros walk its control
    // buffer within `msg_controllen`, and we read the payload unaligned, only when it is a
    // `PACKET_AUXDATA` message (which carries a `tpacket_auxdata`).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<AuxData>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}
