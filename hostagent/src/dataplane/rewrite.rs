//! Header parsing and checksum-preserving rewrites shared by the inbound and outbound paths.
//!
//! What this module owns: finding the fields the data path reads (addresses, protocol, ports,
//! where the transport header starts) through the `mux_packet::wire` views, and rewriting an
//! address and a port with RFC 1624 incremental checksum updates (`mux_packet::checksum`):
//! the IPv4 header checksum for the address, and the TCP/UDP checksum for the pseudo-header
//! address and the port. Never a full re-sum of a segment.
//!
//! Invariants:
//! - Nothing here panics on any input: every access goes through a view validated by
//!   `new_checked*` or through `get`/`get_mut`; a field that is absent makes the function
//!   return `None` (callers validated lengths first, so they treat that as malformed).
//! - UDP's zero checksum ("none", IPv4) stays zero; a non-zero result is never stored as zero
//!   (`checksum::update_udp*`).
//! - A transport checksum field cut off by truncation (a packet quoted in an ICMP error) is
//!   left alone; a present one is updated incrementally, which keeps it correct for the whole
//!   original segment even though only its start is present. The ICMP checksum itself is
//!   recomputed over the bytes present ([`fill_icmp_checksum`]): ICMP errors are rare and
//!   short, and a full sum needs no assumption about the sender's checksum being right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mux_packet::checksum;
use mux_packet::wire::{WireError, ipv4, ipv6};

/// IP protocol numbers the data path acts on.
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_IPIP: u8 = 4;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_IPV6: u8 = 41;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// The fields of an IP header the data path needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IpInfo {
    /// IPv4 (else IPv6).
    pub(crate) v4: bool,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// The upper-layer protocol (after any IPv6 extension headers).
    pub(crate) protocol: u8,
    /// Offset of the upper-layer header.
    pub(crate) l4: usize,
    /// The stated end of the packet (`total_len`, `40 + payload_len`), clamped to the buffer
    /// for a truncated (quoted) packet.
    pub(crate) end: usize,
    /// Any fragment (IPv4 MF or offset; IPv6 fragment header).
    pub(crate) fragment: bool,
    /// A fragment other than the first (no transport header).
    pub(crate) later_fragment: bool,
}

/// Parses the IP header at the start of `buf`. `truncated` accepts a packet cut short (one
/// quoted in an ICMP error); otherwise the stated length must fit in `buf`.
pub(crate) fn parse_ip(buf: &[u8], truncated: bool) -> Result<IpInfo, WireError> {
    match buf.first().map(|b| b >> 4) {
        None => Err(WireError::Truncated),
        Some(4) => {
            let p = if truncated {
                ipv4::Packet::new_checked_truncated(buf)?
            } else {
                ipv4::Packet::new_checked(buf)?
            };
            Ok(IpInfo {
                v4: true,
                src: IpAddr::V4(p.src_ip()),
                dst: IpAddr::V4(p.dst_ip()),
                protocol: u8::from(p.protocol()),
                l4: p.header_len(),
                end: usize::from(p.total_len()).min(buf.len()),
                fragment: p.is_fragment(),
                later_fragment: p.frag_offset() != 0,
            })
        }
        Some(6) => {
            let p = if truncated {
                ipv6::Packet::new_checked_truncated(buf)?
            } else {
                ipv6::Packet::new_checked(buf)?
            };
            let upper = p.upper_layer()?;
            Ok(IpInfo {
                v4: false,
                src: IpAddr::V6(p.src_ip()),
                dst: IpAddr::V6(p.dst_ip()),
                protocol: u8::from(upper.protocol),
                l4: upper.offset,
                end: (ipv6::HEADER_LEN + usize::from(p.payload_len())).min(buf.len()),
                fragment: upper.fragment.is_some(),
                later_fragment: upper.fragment.is_some_and(|f| f.offset != 0),
            })
        }
        Some(_) => Err(WireError::BadVersion),
    }
}

/// Which end of a packet a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
}

/// An address as its raw octets (4 or 16), without allocation.
#[derive(Clone, Copy, Debug)]
struct Octets {
    bytes: [u8; 16],
    len: usize,
}

impl Octets {
    fn of(addr: IpAddr) -> Self {
        let mut bytes = [0u8; 16];
        match addr {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                Octets { bytes, len: 4 }
            }
            IpAddr::V6(a) => Octets {
                bytes: a.octets(),
                len: 16,
            },
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn write_u16(buf: &mut [u8], at: usize, value: u16) -> Option<()> {
    buf.get_mut(at..at + 2)?
        .copy_from_slice(&value.to_be_bytes());
    Some(())
}

/// Replaces the `side` address of the IP header at the start of `ip` with `new` (which must be
/// of the header's family), updating the IPv4 header checksum. Returns the old address.
pub(crate) fn set_address(ip: &mut [u8], side: Side, new: IpAddr) -> Option<IpAddr> {
    let v4 = ip.first()? >> 4 == 4;
    let range = match (v4, side, new) {
        (true, Side::Src, IpAddr::V4(_)) => 12..16,
        (true, Side::Dst, IpAddr::V4(_)) => 16..20,
        (false, Side::Src, IpAddr::V6(_)) => 8..24,
        (false, Side::Dst, IpAddr::V6(_)) => 24..40,
        _ => return None,
    };
    let new_octets = Octets::of(new);
    let field = ip.get_mut(range)?;
    let old = if v4 {
        let mut o = [0u8; 4];
        o.copy_from_slice(field);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(field);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    field.copy_from_slice(new_octets.as_slice());
    if v4 {
        let check = read_u16(ip, 10)?;
        let updated =
            checksum::update_bytes(check, Octets::of(old).as_slice(), new_octets.as_slice());
        write_u16(ip, 10, updated)?;
    }
    Some(old)
}

/// Rewrites the `side` endpoint of a TCP or UDP packet: the address in the IP header at the
/// start of `ip` and the port in the transport header at offset `l4`, updating the IPv4 header
/// checksum and the transport checksum (pseudo-header address and port) incrementally. The
/// ports must be present; the transport checksum is updated only if present.
pub(crate) fn rewrite_endpoint(
    ip: &mut [u8],
    l4: usize,
    protocol: u8,
    side: Side,
    new_addr: IpAddr,
    new_port: u16,
) -> Option<()> {
    let port_at = l4 + if side == Side::Src { 0 } else { 2 };
    let old_port = read_u16(ip, port_at)?;
    let old_addr = set_address(ip, side, new_addr)?;
    write_u16(ip, port_at, new_port)?;
    let (old_o, new_o) = (Octets::of(old_addr), Octets::of(new_addr));
    let check_at = match protocol {
        PROTO_TCP => l4 + 16,
        PROTO_UDP => l4 + 6,
        _ => return Some(()),
    };
    let Some(check) = read_u16(ip, check_at) else {
        return Some(()); // cut off in a quoted packet: nothing to keep consistent
    };
    let updated = if protocol == PROTO_UDP {
        let c = checksum::update_udp_bytes(check, old_o.as_slice(), new_o.as_slice());
        checksum::update_udp(c, old_port, new_port)
    } else {
        let c = checksum::update_bytes(check, old_o.as_slice(), new_o.as_slice());
        checksum::update_u16(c, old_port, new_port)
    };
    write_u16(ip, check_at, updated)
}

/// The source and destination ports at the start of a transport header, if present.
pub(crate) fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((read_u16(l4, 0)?, read_u16(l4, 2)?))
}

/// Whether an ICMP message of this family and type quotes the packet it is about: IPv4
/// destination unreachable (3), source quench (4), time exceeded (11), parameter problem
/// (12); ICMPv6 destination unreachable (1), packet too big (2), time exceeded (3), parameter
/// problem (4).
pub(crate) fn is_icmp_error(v4: bool, msg_type: u8) -> bool {
    if v4 {
        matches!(msg_type, 3 | 4 | 11 | 12)
    } else {
        matches!(msg_type, 1..=4)
    }
}

/// Length of an ICMP / ICMPv6 header before the quoted packet.
pub(crate) const ICMP_HEADER_LEN: usize = 8;

/// The flow of the packet quoted in an ICMP error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quoted {
    pub(crate) info: IpInfo,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
}

/// Parses the packet quoted by an ICMP error (`quoted` = the bytes after the ICMP header) of
/// the family `v4`: a TCP or UDP packet, not a later fragment, with both ports present.
pub(crate) fn parse_quoted(quoted: &[u8], v4: bool) -> Option<Quoted> {
    let info = parse_ip(quoted, true).ok()?;
    if info.v4 != v4 || info.later_fragment || !matches!(info.protocol, PROTO_TCP | PROTO_UDP) {
        return None;
    }
    let (src_port, dst_port) = ports(quoted.get(info.l4..info.end)?)?;
    Some(Quoted {
        info,
        src_port,
        dst_port,
    })
}

/// Recomputes the ICMP (IPv4) or ICMPv6 checksum of the IP packet `ip[..end]` whose ICMP
/// message starts at `l4`, over the bytes present (ICMPv6 with the pseudo header of the
/// packet's current addresses).
pub(crate) fn fill_icmp_checksum(ip: &mut [u8], l4: usize, end: usize) -> Option<()> {
    let v4 = ip.first()? >> 4 == 4;
    let pseudo = if v4 {
        0
    } else {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(ip.get(8..24)?);
        dst.copy_from_slice(ip.get(24..40)?);
        let len = u32::try_from(end.checked_sub(l4)?).ok()?;
        checksum::pseudo_header_v6(&src, &dst, PROTO_ICMPV6, len)
    };
    write_u16(ip, l4 + 2, 0)?;
    let message = ip.get(l4..end)?;
    let value = checksum::finish(u64::from(pseudo) + u64::from(checksum::sum(message)));
    write_u16(ip, l4 + 2, value)
}
