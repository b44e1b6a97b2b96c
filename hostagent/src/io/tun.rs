//! The TUN device: where decapsulated packets enter the host's kernel, and where the
//! backends' replies leave it for the agent.
//!
//! A layer-3 TUN device without packet information (`IFF_TUN | IFF_NO_PI`): every `read`
//! returns one IP packet the kernel routed to the device, every `write` injects one IP packet
//! as if it had arrived on it (the kernel tells IPv4 from IPv6 by the version nibble). The
//! device exists while the file descriptor is open, so a crashed agent leaves no device
//! behind (and the routes through it go with it); the next start re-creates it.
//!
//! The descriptor is non-blocking: the forwarder polls it with the raw sockets and never waits
//! in `read` or `write`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mux_ports::sys::check;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags (the rest of the 40-byte
/// union is unused here).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name`, non-blocking.
    pub fn open(name: &str) -> io::Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN name {name:?} must be 1-15 bytes"),
            ));
        }
        // SAFETY: the path is a NUL-terminated literal; plain syscall.
        let fd = check(unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` was just returned by `open` and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a valid, initialised `struct ifreq`-sized buffer that outlives the
        // call; TUNSETIFF reads the name and flags and writes the final name back into it.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
        let len = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        Ok(Tun {
            fd,
            name: String::from_utf8_lossy(&req.name[..len]).into_owned(),
        })
    }

    /// The device's name as the kernel knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet into `buf`: `Ok(None)` when none is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        mux_ports::sys::would_block_to_none(n)
    }

    /// Injects one IP packet into the kernel, as if it had arrived on the device.
    pub fn write(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: `packet` is valid for reads of `packet.len()` bytes for the duration of the
        // call; the kernel copies it.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The descriptor, for `poll`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
