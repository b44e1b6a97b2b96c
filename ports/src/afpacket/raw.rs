//! A plain AF_PACKET socket for injecting and capturing frames one at a time.
//!
//! Not a data-path port: no ring, one syscall per frame, or per up to [`MAX_SEND_BATCH`]
//! frames with [`RawSocket::send_batch`] (`sendmmsg`, for generators). It serves the tests, the lab and
//! simple generators, which need to put exact bytes on a wire and read back exactly what
//! arrived. It sees every frame arriving on its interface, including those an XDP program
//! passes to the kernel, but not the ones this host transmits (`PACKET_IGNORE_OUTGOING`). Like
//! the port's ring, a received frame gets its stripped 802.1Q tag put back (from
//! `PACKET_AUXDATA`, as libpcap does), so captures are the frames as they were on the wire.
//!
//! [`RawSocket::recv`] copies into the caller's buffer and allocates nothing;
//! [`RawSocket::collect`] is the allocating convenience for tests (one `Vec` per frame).
//!
//! It lives here rather than next to either port's tests: it is an AF_PACKET socket, and the
//! AF_PACKET and AF_XDP tests and the lab all use this one copy (with [`super::enter_netns`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{AfPacketError, sys};

/// The largest frame [`RawSocket::collect`] captures (VLAN tag included); a packet socket never
/// delivers more than 64 KiB.
pub const MAX_CAPTURE: usize = 65536 + 4;

/// The most frames one [`RawSocket::send_batch`] call hands to the kernel (its headers live on
/// the stack).
pub const MAX_SEND_BATCH: usize = 64;

/// An AF_PACKET socket bound to one interface (see the module doc).
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    /// Opens a socket bound to `ifname` (in the calling thread's network namespace), receiving
    /// every protocol except its own transmissions.
    pub fn open(ifname: &str) -> Result<Self, AfPacketError> {
        let sys_err = |step| super::sys_error(ifname, step);
        let (fd, ifindex) = super::open_socket(ifname)?;
        sys::set_packet_int(&fd, libc::PACKET_AUXDATA, 1).map_err(sys_err("PACKET_AUXDATA"))?;
        sys::set_packet_int(&fd, libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(sys_err("PACKET_IGNORE_OUTGOING"))?;
        sys::bind_all(&fd, ifindex).map_err(sys_err("bind"))?;
        Ok(RawSocket { fd })
    }

    /// Transmits one whole frame (Ethernet header included). Does not block: a full socket
    /// buffer is a `WouldBlock` error.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::send_one(self.fd.as_raw_fd(), frame)?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "packet socket sent part of a frame",
            ));
        }
        Ok(())
    }

    /// Transmits up to [`MAX_SEND_BATCH`] whole frames with one `sendmmsg(2)`, in order, without
    /// blocking. Returns how many of the first frames the kernel accepted (at least one); the
    /// error of the first frame when it accepted none (`WouldBlock`: socket buffer full,
    /// `ENOBUFS`: the device dropped it). Frames past [`MAX_SEND_BATCH`] are not looked at: the
    /// caller sends them next.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let k = frames.len().min(MAX_SEND_BATCH);
        if k == 0 {
            return Ok(0);
        }
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_SEND_BATCH];
        for (iov, f) in iovs.iter_mut().zip(&frames[..k]) {
            // The kernel only reads through this pointer (`sendmmsg` takes a mutable header
            // only because it writes `msg_len`).
            iov.iov_base = f.as_ptr().cast_mut().cast();
            iov.iov_len = f.len();
        }
        // SAFETY: `mmsghdr` is plain data; all zeroes is a valid value (null name and control,
        // no flags).
        let mut hdrs: [libc::mmsghdr; MAX_SEND_BATCH] = unsafe { std::mem::zeroed() };
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // `iovs` and the borrowed `frames` outlive the call, as `sys::send_batch` requires.
        let m = sys::send_batch(self.fd.as_raw_fd(), &mut hdrs[..k])?;
        let m = m.min(k);
        if hdrs[..m]
            .iter()
            .zip(&frames[..m])
            .any(|(h, f)| h.msg_len as usize != f.len())
        {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "packet socket sent part of a frame",
            ));
        }
        Ok(m)
    }

    /// Waits up to `timeout` for one frame and copies it into `buf`, VLAN tag re-inserted.
    /// Returns its length, or `None` on timeout. A frame that does not fit in `buf` (tag
    /// included) is an `InvalidData` error.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if buf.len() < 18 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "capture buffer shorter than an 802.1Q header",
            ));
        }
        let deadline = Instant::now() + timeout;
        let room = buf.len() - 4;
        loop {
            if let Some(r) = sys::recv_with_vlan(self.fd.as_raw_fd(), &mut buf[..room])? {
                if r.truncated {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "captured frame longer than the buffer",
                    ));
                }
                let len = match r.vlan {
                    Some((tpid, tci)) if r.len >= 12 => {
                        buf.copy_within(12..r.len, 16);
                        buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                        buf[14..16].copy_from_slice(&tci.to_be_bytes());
                        r.len + 4
                    }
                    _ => r.len,
                };
                return Ok(Some(len));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            sys::poll_in(self.fd.as_raw_fd(), left)?;
        }
    }

    /// Receives every frame that arrives within `window`, stopping early once `enough` frames
    /// were seen (frames already queued are taken even when `window` is zero). Frames of up to
    /// [`MAX_CAPTURE`] bytes; allocates one buffer per call and one `Vec` per frame.
    pub fn collect(&self, window: Duration, enough: usize) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + window;
        let mut buf = vec![0u8; MAX_CAPTURE];
        let mut out = Vec::new();
        while out.len() < enough {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(&mut buf, left)? {
                Some(len) => out.push(buf[..len].to_vec()),
                None => break,
            }
        }
        Ok(out)
    }
}
