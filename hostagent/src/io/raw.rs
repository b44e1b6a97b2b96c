//! Raw IP sockets: how IP-in-IP packets from the MUXes reach the agent, and how the rewritten
//! replies leave toward the clients.
//!
//! **Receiving.** The kernel hands a copy of every locally delivered packet of protocol 4 or
//! 41 to the raw sockets bound to that protocol; with a raw socket present it does not answer
//! "protocol unreachable" (this kernel has no `ipip`/`sit` modules, and a host that has them
//! must not load them for the DIPs). An IPv4 raw socket returns the packet with its outer
//! header; an IPv6 one returns only the payload, so [`RawReceiver::recv`] rebuilds the outer
//! IPv6 header from the source address and the `IPV6_PKTINFO` destination (hop limit, traffic
//! class and flow label are not reported by the socket and are written as 64 and 0; extension
//! headers the kernel consumed are not rebuilt). The data path then checks the packet exactly
//! as if it had been captured on the wire: tunnel source, DIP, inner service.
//!
//! **Sending.** `IPPROTO_RAW` sockets (header included): the packet goes out as built, routed
//! by its destination through the host's main table. They carry the agent's firewall mark
//! (`SO_MARK`), which the agent's highest-priority rule sends to the main table, so a packet
//! the agent sends is never captured again by its own reply rules.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::sys::{check, set_opt, would_block_to_none};

/// Length of the IPv6 header [`RawReceiver::recv`] rebuilds.
pub const IPV6_HEADER_LEN: usize = 40;

/// A raw socket of one family receiving one tunnel protocol (4 or 41).
#[derive(Debug)]
pub struct RawReceiver {
    fd: OwnedFd,
    v6: bool,
    protocol: u8,
}

fn raw_socket(domain: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; no pointers.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: `fd` was just returned by `socket` and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl RawReceiver {
    /// A receiver of `protocol` (4: IPv4 inner, 41: IPv6 inner) over IPv4 or IPv6 (`v6`).
    pub fn open(v6: bool, protocol: u8) -> io::Result<RawReceiver> {
        let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        let fd = raw_socket(domain, libc::c_int::from(protocol))?;
        if v6 {
            set_opt(
                &fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                &1 as &libc::c_int,
            )?;
        }
        // A larger receive buffer rides out bursts while the forwarder is busy elsewhere.
        let _ = set_opt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &(4 << 20) as &libc::c_int,
        );
        Ok(RawReceiver { fd, v6, protocol })
    }

    /// Receives one tunnel packet into `buf` as a complete outer IP packet (see the module
    /// doc for IPv6); `Ok(None)` when none is waiting. `buf` must hold at least 40 bytes.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if !self.v6 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            return would_block_to_none(n);
        }
        if buf.len() < IPV6_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        }
        let payload = &mut buf[IPV6_HEADER_LEN..];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: all-zero is a valid `sockaddr_in6`.
        let mut src: libc::sockaddr_in6 = unsafe { zeroed() };
        let mut control = [MaybeUninit::<u64>::uninit(); 8];
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths) before we fill it.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut src as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>();
        // SAFETY: every pointer in `msg` refers to live, writable buffers of the stated lengths
        // (`src`, `payload` through `iov`, `control`) for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        let Some(n) = would_block_to_none(n)? else {
            return Ok(None);
        };
        let mut dst = None;
        // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros walk the control buffer within
        // `msg_controllen`, and an `in6_pktinfo` is read (unaligned) only from a cmsg of that
        // level and type, which the kernel sizes for it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::IPPROTO_IPV6
                    && (*cmsg).cmsg_type == libc::IPV6_PKTINFO
                {
                    let info: libc::in6_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let Some(dst) = dst else {
            // Without the destination the DIP check cannot be made: report an empty packet,
            // which the data path drops as truncated.
            return Ok(Some(0));
        };
        let src = Ipv6Addr::from(src.sin6_addr.s6_addr);
        write_ipv6_header(&mut buf[..IPV6_HEADER_LEN], n, self.protocol, src, dst);
        Ok(Some(IPV6_HEADER_LEN + n))
    }

    /// The descriptor, for `poll`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Writes a 40-byte IPv6 header (traffic class and flow label 0, hop limit 64).
fn write_ipv6_header(h: &mut [u8], payload_len: usize, next: u8, src: Ipv6Addr, dst: Ipv6Addr) {
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    // A payload over 65535 bytes cannot arrive on a raw socket without a jumbogram; saturate.
    let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// Header-included raw sockets for both families, marked with the agent's firewall mark.
#[derive(Debug)]
pub struct RawSender {
    v4: OwnedFd,
    v6: Option<OwnedFd>,
}

impl RawSender {
    /// Opens the senders; `mark` is set as `SO_MARK` on both. A host without IPv6 gets an
    /// IPv4 sender only.
    pub fn open(mark: u32) -> io::Result<RawSender> {
        let v4 = raw_socket(libc::AF_INET, libc::IPPROTO_RAW)?;
        set_opt(&v4, libc::SOL_SOCKET, libc::SO_MARK, &mark)?;
        let v6 = match raw_socket(libc::AF_INET6, libc::IPPROTO_RAW) {
            Ok(fd) => {
                set_opt(&fd, libc::SOL_SOCKET, libc::SO_MARK, &mark)?;
                Some(fd)
            }
            Err(_) => None,
        };
        Ok(RawSender { v4, v6 })
    }

    /// Sends the IP packet `packet` (header included) toward its destination.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                // SAFETY: all-zero is a valid `sockaddr_in`.
                let mut to: libc::sockaddr_in = unsafe { zeroed() };
                to.sin_family = libc::AF_INET as libc::sa_family_t;
                to.sin_addr.s_addr = u32::from(dst).to_be();
                send_to(
                    &self.v4,
                    packet,
                    (&to as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>(),
                )
            }
            Some(6) if packet.len() >= IPV6_HEADER_LEN => {
                let Some(fd) = &self.v6 else {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "no IPv6 on this host",
                    ));
                };
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&packet[24..40]);
                // SAFETY: all-zero is a valid `sockaddr_in6`.
                let mut to: libc::sockaddr_in6 = unsafe { zeroed() };
                to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                to.sin6_addr.s6_addr = octets;
                send_to(
                    fd,
                    packet,
                    (&to as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>(),
                )
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IP packet",
            )),
        }
    }
}

fn send_to(fd: &OwnedFd, packet: &[u8], to: *const libc::sockaddr, len: usize) -> io::Result<()> {
    // SAFETY: `packet` is readable for its length and `to` points to a live socket address of
    // `len` bytes for the duration of the call; the kernel copies both.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            to,
            len as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The source address of an IP packet, if it has a readable header.
pub fn source_of(packet: &[u8]) -> Option<IpAddr> {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::new(
            packet[12], packet[13], packet[14], packet[15],
        ))),
        Some(6) if packet.len() >= IPV6_HEADER_LEN => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&packet[8..24]);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilt_ipv6_header_has_the_addresses_length_and_next_header() {
        let mut h = [0u8; 40];
        let src: Ipv6Addr = "fd00:11::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00:21::2".parse().unwrap();
        write_ipv6_header(&mut h, 60, 4, src, dst);
        assert_eq!(h[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([h[4], h[5]]), 60);
        assert_eq!(h[6], 4);
        assert_eq!(&h[8..24], &src.octets());
        assert_eq!(&h[24..40], &dst.octets());
    }
}
