//! Raw IP sockets: how IP-in-IP packets from the MUXes reach the agent, and how the rewritten
//! replies leave toward the clients.
//!
//! **Receiving.** The kernel hands a copy of every locally delivered packet of protocol 4 or
//! 41 to the raw sockets bound to that protocol; with a raw socket present it does not answer
//! "protocol unreachable" (this kernel has no `ipip`/`sit` modules, and a host that has them
//! must not load them for the DIPs). An IPv4 raw socket returns the packet with its outer
//! header (options included: a second-chance alternative in an IPv4 option arrives as sent);
//! an IPv6 one returns only the payload, so [`RawReceiver::recv`] rebuilds the outer IPv6
//! header from the source address and the `IPV6_PKTINFO` destination (hop limit, traffic
//! class and flow label are not reported by the socket and are written as 64 and 0), and puts
//! back the Destination Options headers the kernel reports with `IPV6_RECVDSTOPTS` — where a
//! second-chance alternative travels — chained in their order in front of the payload. Other
//! extension headers the kernel consumed (hop-by-hop, routing) are not rebuilt. The data path
//! then checks the packet exactly as if it had been captured on the wire: tunnel source, DIP,
//! options, inner service.
//!
//! The kernel has already applied RFC 8200's rule for unknown destination options (action
//! bits other than 00 discard the packet) before the socket sees it; option 0x1E has action
//! bits 00, so it reaches the agent.
//!
//! **Sending.** `IPPROTO_RAW` sockets (header included): the packet goes out as built, routed
//! by its destination through the host's main table. [`RawSender::send_parts`] gathers a
//! header and a body kept apart (a second-chance forward: the new outer header and the
//! untouched inner packet) into one packet with one `sendmsg`. They carry the agent's firewall mark
//! (`SO_MARK`), which the agent's highest-priority rule sends to the main table, so a packet
//! the agent sends is never captured again by its own reply rules.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mux_ports::sys::{check, set_opt, would_block_to_none};

/// Length of the IPv6 header [`RawReceiver::recv`] rebuilds.
pub const IPV6_HEADER_LEN: usize = 40;
/// Room kept in front of a received IPv6 payload for the rebuilt header and Destination
/// Options headers (one such header is at most 2048 bytes; more in total is refused).
pub const IPV6_HEADROOM: usize = IPV6_HEADER_LEN + MAX_DEST_OPTS_LEN;
/// The most Destination Options bytes [`RawReceiver::recv`] puts back.
pub const MAX_DEST_OPTS_LEN: usize = 2048;
/// A receive buffer that holds any packet [`RawReceiver::recv`] can return.
pub const RECV_BUF_LEN: usize = IPV6_HEADROOM + 65_536;
/// IPv6 next header of a Destination Options header.
const NEXT_DEST_OPTS: u8 = 60;

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
            // The Destination Options headers carry the second-chance alternative.
            set_opt(
                &fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVDSTOPTS,
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
    /// doc for IPv6) and returns where it lies in `buf`; `Ok(None)` when none is waiting. An
    /// IPv6 packet starts after up to [`IPV6_HEADROOM`] bytes, so `buf` should hold
    /// [`RECV_BUF_LEN`]. A packet that cannot be rebuilt (no destination reported, options cut
    /// short or too long) is returned as an empty range, which the data path drops as
    /// truncated.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Range<usize>>> {
        if !self.v6 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            return Ok(would_block_to_none(n)?.map(|n| 0..n));
        }
        if buf.len() <= IPV6_HEADROOM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        }
        let payload = &mut buf[IPV6_HEADROOM..];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: all-zero is a valid `sockaddr_in6`.
        let mut src: libc::sockaddr_in6 = unsafe { zeroed() };
        // Room for the packet-info message and two Destination Options headers.
        let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths) before we fill it.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut src as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
        // SAFETY: every pointer in `msg` refers to live, writable buffers of the stated lengths
        // (`src`, `payload` through `iov`, `control`) for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        let Some(n) = would_block_to_none(n)? else {
            return Ok(None);
        };
        let empty = Ok(Some(IPV6_HEADROOM..IPV6_HEADROOM));
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return empty;
        }
        let mut dst = None;
        // Destination Options headers, as (start, length) within `opts`, in packet order.
        let mut opts = [0u8; MAX_DEST_OPTS_LEN];
        let mut headers: [(usize, usize); 2] = [(0, 0); 2];
        let (mut count, mut used, mut too_many) = (0usize, 0usize, false);
        // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros walk the control buffer within
        // `msg_controllen`. An `in6_pktinfo` is read (unaligned) only from a cmsg of that level
        // and type, which the kernel sizes for it; a Destination Options cmsg's data is read
        // for exactly `cmsg_len - CMSG_LEN(0)` bytes, which lie inside the control buffer.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let level = (*cmsg).cmsg_level;
                let kind = (*cmsg).cmsg_type;
                if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_DSTOPTS {
                    let len =
                        ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    if count < headers.len() && used + len <= opts.len() {
                        let data = std::slice::from_raw_parts(libc::CMSG_DATA(cmsg), len);
                        opts[used..used + len].copy_from_slice(data);
                        headers[count] = (used, len);
                        count += 1;
                        used += len;
                    } else {
                        too_many = true;
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let Some(dst) = dst else {
            // Without the destination the DIP check cannot be made.
            return empty;
        };
        if too_many {
            return empty;
        }
        let headers = &headers[..count];
        let Some(start) =
            rebuild_dest_opts(&mut buf[..IPV6_HEADROOM], &opts, headers, self.protocol)
        else {
            return empty;
        };
        let src = Ipv6Addr::from(src.sin6_addr.s6_addr);
        let next = if headers.is_empty() {
            self.protocol
        } else {
            NEXT_DEST_OPTS
        };
        let header_at = start - IPV6_HEADER_LEN;
        let payload_len = IPV6_HEADROOM - start + n;
        write_ipv6_header(&mut buf[header_at..start], payload_len, next, src, dst);
        Ok(Some(header_at..IPV6_HEADROOM + n))
    }

    /// The descriptor, for `poll`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// 64-bit words of control buffer for `recvmsg`: the packet info and two Destination Options
/// headers of up to [`MAX_DEST_OPTS_LEN`] bytes together, with their cmsg headers.
const CONTROL_WORDS: usize = (MAX_DEST_OPTS_LEN + 256) / 8;

/// Writes the Destination Options headers `headers` (ranges of `opts`, in packet order) to the
/// end of `room`, each one's next header pointing to the following one and the last one's to
/// `protocol`; returns where the first starts. `None` if one is not a whole header (its length
/// byte disagrees with its size) or they do not fit.
fn rebuild_dest_opts(
    room: &mut [u8],
    opts: &[u8],
    headers: &[(usize, usize)],
    protocol: u8,
) -> Option<usize> {
    let total: usize = headers.iter().map(|&(_, len)| len).sum();
    // The IPv6 header goes in front of them.
    let start = room
        .len()
        .checked_sub(total)
        .filter(|&at| at >= IPV6_HEADER_LEN)?;
    let mut at = start;
    for (i, &(from, len)) in headers.iter().enumerate() {
        let header = opts.get(from..from + len)?;
        if len < 8 || (usize::from(*header.get(1)?) + 1) * 8 != len {
            return None;
        }
        let out = room.get_mut(at..at + len)?;
        out.copy_from_slice(header);
        out[0] = if i + 1 < headers.len() {
            NEXT_DEST_OPTS
        } else {
            protocol
        };
        at += len;
    }
    Some(start)
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
        self.send_parts(packet, &[])
    }

    /// Sends the IP packet made of `header` (which holds the whole IP header, options and
    /// extension headers included) followed by `body`, toward the header's destination, with
    /// one gathered `sendmsg`.
    pub fn send_parts(&self, header: &[u8], body: &[u8]) -> io::Result<()> {
        let packet = header;
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                // SAFETY: all-zero is a valid `sockaddr_in`.
                let mut to: libc::sockaddr_in = unsafe { zeroed() };
                to.sin_family = libc::AF_INET as libc::sa_family_t;
                to.sin_addr.s_addr = u32::from(dst).to_be();
                send_to(
                    &self.v4,
                    [header, body],
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
                    [header, body],
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

fn send_to(
    fd: &OwnedFd,
    parts: [&[u8]; 2],
    to: *const libc::sockaddr,
    len: usize,
) -> io::Result<()> {
    let mut iov = parts.map(|p| libc::iovec {
        iov_base: p.as_ptr().cast_mut().cast(),
        iov_len: p.len(),
    });
    // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths) before we fill it.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = to.cast_mut().cast();
    msg.msg_namelen = len as libc::socklen_t;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if parts[1].is_empty() { 1 } else { 2 };
    // SAFETY: `msg` points to `iov`, whose entries describe the readable slices in `parts`,
    // and to `to`, a live socket address of `len` bytes, all for the duration of the call;
    // the kernel only reads them (the iovec base is `*mut` by the C signature alone).
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
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
    fn destination_options_are_chained_in_front_of_the_payload() {
        // Two headers as the kernel reports them (their own next-header bytes are whatever
        // followed them on the wire): 8 and 16 bytes.
        let mut opts = [0u8; MAX_DEST_OPTS_LEN];
        opts[..8].copy_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        opts[8..24].copy_from_slice(&[4, 1, 0x1E, 6, 0, 0, 10, 0, 22, 3, 1, 4, 0, 0, 0, 0]);
        let mut room = [0xaau8; 100];
        let start = rebuild_dest_opts(&mut room, &opts, &[(0, 8), (8, 16)], 41).unwrap();
        assert_eq!(start, 100 - 24);
        assert_eq!(
            room[start], NEXT_DEST_OPTS,
            "the first points to the second"
        );
        assert_eq!(room[start + 8], 41, "the last to the tunnel protocol");
        assert_eq!(&room[start + 10..start + 12], &[0x1E, 6]);
        // None: no change.
        assert_eq!(rebuild_dest_opts(&mut room, &opts, &[], 4), Some(100));
        // A length byte that disagrees with the size, or no room for the IPv6 header.
        assert_eq!(rebuild_dest_opts(&mut room, &opts, &[(8, 8)], 4), None);
        let mut small = [0u8; 50];
        assert_eq!(rebuild_dest_opts(&mut small, &opts, &[(8, 16)], 4), None);
    }

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
