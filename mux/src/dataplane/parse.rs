//! Parsing a received frame into what the pipeline decides on.
//!
//! One pass over the headers with the zero-copy views of `mux_packet::wire`, producing a small
//! `Copy` summary ([`Parsed`]): where the IP packet starts and ends, its 5-tuple, the TCP flags,
//! and what kind of packet it is (a transport segment, a fragment, or an ICMP error that
//! embeds a flow). Parsing never allocates and never panics: every length is checked by the
//! views' `new_checked` before any field is read.
//!
//! Two paths give the same answers. The common packet of a load balancer — an untagged IPv4
//! TCP or UDP packet without IP options and not a fragment — is read from fixed offsets of the
//! frame's first [`FAST_LEN`] bytes, after one length check and a handful of field tests
//! (`fast_v4`); everything else (VLAN tags, IPv6, IP options, fragments, ICMP, short or
//! malformed frames) goes through the general path over the checked views, out of line.
//! `fast_path_agrees_with_the_general_path` holds them to the same result. Rejected: one path
//! through the views for every packet: their per-field bounds checks and the summary moved
//! between functions cost ~150 instructions per packet, more than the flow lookup.
//!
//! What goes where:
//! - not IPv4/IPv6 (ARP, LLDP...), ICMP that is not an error (echo, ND), protocols other than
//!   TCP/UDP: the kernel;
//! - malformed IP or transport headers: dropped, each with its own reason;
//! - everything else is summarised for the VIP match.

use mux_packet::flow_key::{FlowKey, map_v4};
use mux_packet::wire::{EtherType, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp};

use super::verdict::DropReason;

/// IP protocol numbers the pipeline branches on.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP flags the flow table's state machine needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeen {
    /// SYN set.
    pub syn: bool,
    /// ACK set.
    pub ack: bool,
    /// FIN or RST set.
    pub fin_or_rst: bool,
}

/// What kind of VIP-candidate packet this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole TCP or UDP packet; `key` is its 5-tuple. `tcp` is `None` for UDP.
    Transport {
        /// TCP flags, for TCP.
        tcp: Option<TcpSeen>,
    },
    /// An IPv4 fragment or IPv6 packet with a fragment header; `key` has ports 0.
    Fragment,
    /// An ICMP error whose embedded header names a flow; `key` is that flow in the client → VIP
    /// direction (the embedded header reversed), so `key.dst`/`key.dst_port` name the VIP.
    IcmpError,
    /// An ICMP error whose embedded header is unusable; `key.dst` is the outer destination.
    BrokenIcmpError,
}

/// Summary of a parsed IP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Length of the Ethernet header, VLAN tag included (14 or 18).
    pub l2_len: usize,
    /// Length of the IP packet (header included) according to its header; bytes beyond it are
    /// Ethernet padding.
    pub ip_len: usize,
    /// IPv4 (true) or IPv6 (false) packet.
    pub is_v4: bool,
    /// TOS / traffic-class byte (DSCP and ECN), copied to the outer header.
    pub dscp_ecn: u8,
    /// IPv4 DF bit (always true for IPv6, which routers never fragment).
    pub dont_frag: bool,
    /// The flow this packet belongs to (see [`Kind`] for what it means per kind).
    pub key: FlowKey,
    /// Kind of packet.
    pub kind: Kind,
}

/// Outcome of parsing one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// An IP packet that may be for a VIP.
    Ip(Parsed),
    /// Certainly not for a VIP: to the kernel.
    ToKernel,
    /// Malformed: drop with this reason.
    Drop(DropReason),
}

/// What parsing settles on its own: a frame that is not summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Certainly not for a VIP: to the kernel.
    ToKernel,
    /// Malformed: drop with this reason.
    Drop(DropReason),
}

/// Parses one frame.
#[inline]
pub fn parse(frame: &[u8]) -> Parse {
    match fast_v4(frame) {
        Some(parsed) => Parse::Ip(parsed),
        None => parse_general(frame),
    }
}

/// Parses one frame into `out` (the pipeline's burst slot), which is written only on `Ok`.
/// The same answers as [`parse`], without building a [`Parse`] to take apart again.
#[inline(always)]
pub fn parse_into(frame: &[u8], out: &mut Parsed) -> Result<(), Settled> {
    if let Some(parsed) = fast_v4(frame) {
        *out = parsed;
        return Ok(());
    }
    match parse_general(frame) {
        Parse::Ip(parsed) => {
            *out = parsed;
            Ok(())
        }
        Parse::ToKernel => Err(Settled::ToKernel),
        Parse::Drop(reason) => Err(Settled::Drop(reason)),
    }
}

/// Bytes `fast_v4` reads: Ethernet without a tag (14), IPv4 without options (20), a TCP
/// header without options (20; a UDP header's 8 come first).
pub const FAST_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + tcp::HEADER_LEN;

/// The fast path: an untagged IPv4 packet with a 20-byte header, not a fragment, carrying a
/// well-formed TCP or UDP header, in a frame of at least [`FAST_LEN`] bytes. `None` sends the
/// frame to the general path, which decides anything this one does not accept (and agrees on
/// everything it does: the same checks as the views' `check_len`, at fixed offsets).
#[inline(always)]
fn fast_v4(frame: &[u8]) -> Option<Parsed> {
    const IP: usize = ethernet::HEADER_LEN;
    const L4: usize = IP + ipv4::HEADER_LEN;
    let h = frame.first_chunk::<FAST_LEN>()?;
    // EtherType IPv4 (no 802.1Q tag), version 4 with IHL 5 (no options).
    if h[12] != 0x08 || h[13] != 0x00 || h[IP] != 0x45 {
        return None;
    }
    let ip_len = usize::from(u16::from_be_bytes([h[IP + 2], h[IP + 3]]));
    // MF or a fragment offset: a fragment. The total length may not run past the frame.
    if h[IP + 6] & 0x3f != 0 || h[IP + 7] != 0 || ip_len > frame.len() - IP {
        return None;
    }
    let l4_len = ip_len.wrapping_sub(ipv4::HEADER_LEN);
    let protocol = h[IP + 9];
    let (tcp, ports) = match protocol {
        proto::TCP => {
            // A whole header: data offset at least 5 words and within the IP payload.
            let header_len = usize::from(h[L4 + 12] >> 4) * 4;
            if ip_len < L4 - IP + tcp::HEADER_LEN
                || header_len < tcp::HEADER_LEN
                || header_len > l4_len
            {
                return None;
            }
            let flags = h[L4 + 13];
            let seen = TcpSeen {
                syn: flags & 0x02 != 0,
                ack: flags & 0x10 != 0,
                fin_or_rst: flags & 0x05 != 0,
            };
            (Some(seen), &h[L4..L4 + 4])
        }
        proto::UDP => {
            // The UDP length covers its header and stays within the IP payload.
            let udp_len = usize::from(u16::from_be_bytes([h[L4 + 4], h[L4 + 5]]));
            if ip_len < L4 - IP + udp::HEADER_LEN || udp_len < udp::HEADER_LEN || udp_len > l4_len {
                return None;
            }
            (None, &h[L4..L4 + 4])
        }
        _ => return None,
    };
    Some(Parsed {
        l2_len: ethernet::HEADER_LEN,
        ip_len,
        is_v4: true,
        dscp_ecn: h[IP + 1],
        dont_frag: h[IP + 6] & 0x40 != 0,
        key: FlowKey {
            src: map_v4([h[IP + 12], h[IP + 13], h[IP + 14], h[IP + 15]]),
            dst: map_v4([h[IP + 16], h[IP + 17], h[IP + 18], h[IP + 19]]),
            src_port: u16::from_be_bytes([ports[0], ports[1]]),
            dst_port: u16::from_be_bytes([ports[2], ports[3]]),
            protocol,
        },
        kind: Kind::Transport { tcp },
    })
}

/// The general path: every frame, through the checked views. Out of line: the fast path
/// takes the common packet.
#[inline(never)]
fn parse_general(frame: &[u8]) -> Parse {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Parse::Drop(DropReason::TruncatedEthernet);
    };
    let l2_len = eth.header_len();
    match eth.ethertype() {
        EtherType::Ipv4 => parse_v4(&frame[l2_len..], l2_len),
        EtherType::Ipv6 => parse_v6(&frame[l2_len..], l2_len),
        _ => Parse::ToKernel,
    }
}

fn parse_v4(bytes: &[u8], l2_len: usize) -> Parse {
    let Ok(ip) = ipv4::Packet::new_checked(bytes) else {
        return Parse::Drop(DropReason::MalformedIpv4);
    };
    let protocol = ip.protocol_number();
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let parsed = Parsed {
        l2_len,
        ip_len: ip.total_len() as usize,
        is_v4: true,
        dscp_ecn: ip.dscp_ecn(),
        dont_frag: ip.dont_frag(),
        key: FlowKey::v4(src, dst, 0, 0, protocol),
        kind: Kind::Fragment,
    };
    if ip.is_fragment() {
        return fragment(parsed, protocol);
    }
    above_ip(parsed, ip.payload(), protocol)
}

fn parse_v6(bytes: &[u8], l2_len: usize) -> Parse {
    let Ok(ip) = ipv6::Packet::new_checked(bytes) else {
        return Parse::Drop(DropReason::MalformedIpv6);
    };
    let Ok(upper) = ip.upper_layer() else {
        return Parse::Drop(DropReason::MalformedIpv6Extension);
    };
    let protocol: u8 = upper.protocol.into();
    let ip_len = ipv6::HEADER_LEN + ip.payload_len() as usize;
    let parsed = Parsed {
        l2_len,
        ip_len,
        is_v4: false,
        dscp_ecn: ip.traffic_class(),
        dont_frag: true,
        key: FlowKey::v6(ip.src_addr(), ip.dst_addr(), 0, 0, protocol),
        kind: Kind::Fragment,
    };
    if upper.fragment.is_some() {
        return fragment(parsed, protocol);
    }
    above_ip(parsed, &bytes[upper.offset.min(ip_len)..ip_len], protocol)
}

/// A fragment: steered by its 3-tuple if it carries TCP or UDP, the kernel's otherwise.
#[inline]
fn fragment(parsed: Parsed, protocol: u8) -> Parse {
    match protocol {
        proto::TCP | proto::UDP => Parse::Ip(parsed),
        _ => Parse::ToKernel,
    }
}

/// The part above IP, for either family: TCP or UDP ports, or the flow an ICMP error names.
#[inline]
fn above_ip(mut parsed: Parsed, l4: &[u8], protocol: u8) -> Parse {
    let embedded = match (protocol, parsed.is_v4) {
        (proto::TCP | proto::UDP, _) => {
            return match transport(l4, protocol) {
                Some((sport, dport, tcp)) => {
                    parsed.key.src_port = sport;
                    parsed.key.dst_port = dport;
                    parsed.kind = Kind::Transport { tcp };
                    Parse::Ip(parsed)
                }
                None => Parse::Drop(DropReason::MalformedTransport),
            };
        }
        (proto::ICMP, true) => match icmpv4::Packet::new_checked(l4) {
            Ok(icmp) if icmp.is_error() => embedded_v4(icmp.data()),
            _ => return Parse::ToKernel,
        },
        (proto::ICMPV6, false) => match icmpv6::Packet::new_checked(l4) {
            Ok(icmp) if icmp.is_error() => embedded_v6(icmp.data()),
            _ => return Parse::ToKernel,
        },
        _ => return Parse::ToKernel,
    };
    match embedded {
        Some(flow) => {
            parsed.key = flow;
            parsed.kind = Kind::IcmpError;
        }
        None => parsed.kind = Kind::BrokenIcmpError,
    }
    Parse::Ip(parsed)
}

/// Ports and TCP flags of a whole TCP or UDP header, or `None` when it is malformed.
#[inline]
fn transport(l4: &[u8], protocol: u8) -> Option<(u16, u16, Option<TcpSeen>)> {
    if protocol == proto::TCP {
        let tcp = tcp::Packet::new_checked(l4).ok()?;
        let flags = tcp.flags();
        let seen = TcpSeen {
            syn: flags.syn(),
            ack: flags.ack(),
            fin_or_rst: flags.fin() || flags.rst(),
        };
        Some((tcp.src_port(), tcp.dst_port(), Some(seen)))
    } else {
        let udp = udp::Packet::new_checked(l4).ok()?;
        Some((udp.src_port(), udp.dst_port(), None))
    }
}

/// The flow named by an ICMPv4 error's embedded header, in the client → VIP direction.
fn embedded_v4(data: &[u8]) -> Option<FlowKey> {
    let ip = ipv4::Packet::new_checked_truncated(data).ok()?;
    if ip.is_fragment() && ip.frag_offset() != 0 {
        return None;
    }
    let protocol = ip.protocol_number();
    let ports = embedded_ports(&data[ip.header_len()..], protocol)?;
    let sent = FlowKey {
        src: map_v4(ip.src_addr()),
        dst: map_v4(ip.dst_addr()),
        src_port: ports.0,
        dst_port: ports.1,
        protocol,
    };
    Some(sent.reversed())
}

/// The flow named by an ICMPv6 error's embedded header, in the client → VIP direction.
fn embedded_v6(data: &[u8]) -> Option<FlowKey> {
    let ip = ipv6::Packet::new_checked_truncated(data).ok()?;
    let upper = ip.upper_layer().ok()?;
    if upper.fragment.is_some_and(|f| f.offset != 0) {
        return None;
    }
    let protocol: u8 = upper.protocol.into();
    let ports = embedded_ports(data.get(upper.offset..)?, protocol)?;
    let sent = FlowKey::v6(ip.src_addr(), ip.dst_addr(), ports.0, ports.1, protocol);
    Some(sent.reversed())
}

/// Source and destination ports from the first four bytes of an embedded TCP/UDP header (ICMP
/// errors carry at least eight bytes of it).
fn embedded_ports(l4: &[u8], protocol: u8) -> Option<(u16, u16)> {
    if protocol != proto::TCP && protocol != proto::UDP {
        return None;
    }
    let b = l4.get(..4)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_packet::packet_builder::PacketBuilder;
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Frames of every kind the fast path must take or leave to the general path.
    fn frames() -> Vec<Vec<u8>> {
        let (c, vip) = (v4("10.0.0.1"), v4("192.0.2.10"));
        vec![
            PacketBuilder::tcp(c, 40000, vip, 80, 0x10).build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x02)
                .tos(0xb9)
                .build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x11)
                .dont_frag(false)
                .build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x04)
                .payload_len(100)
                .build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x12)
                .padding(6)
                .build(),
            PacketBuilder::udp(c, 5353, vip, 53).payload_len(30).build(),
            // 42 bytes, shorter than the fast path reads; padded to the Ethernet minimum.
            PacketBuilder::udp(c, 5353, vip, 53).build(),
            PacketBuilder::udp(c, 5353, vip, 53).padding(18).build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x10).vlan(7).build(),
            PacketBuilder::tcp(c, 40000, vip, 80, 0x10)
                .fragment(0, true)
                .build(),
            PacketBuilder::icmp(c, vip, 8, 0, 0).payload_len(40).build(),
            PacketBuilder::raw(c, vip, 47).payload_len(40).build(),
            PacketBuilder::tcp(v4("2001:db8::1"), 1, v4("2001:db8::a"), 80, 0x10).build(),
        ]
    }

    #[test]
    fn fast_path_takes_plain_tcp_and_udp_only() {
        let taken: Vec<bool> = frames().iter().map(|f| fast_v4(f).is_some()).collect();
        assert_eq!(
            taken,
            [
                true, true, true, true, true, true, false, true, false, false, false, false, false
            ]
        );
    }

    #[test]
    fn fast_path_agrees_with_the_general_path_on_the_fixtures() {
        for f in frames() {
            if let Some(fast) = fast_v4(&f) {
                assert_eq!(parse_general(&f), Parse::Ip(fast), "{f:02x?}");
            }
            assert_eq!(parse(&f), parse_general(&f));
        }
    }

    /// Every single-byte change of the first 64 bytes, and every cut, of every fixture.
    #[test]
    fn fast_path_agrees_with_the_general_path_on_every_byte_edit() {
        for f in frames() {
            for at in 0..f.len().min(64) {
                for byte in 0..=255u8 {
                    let mut g = f.clone();
                    g[at] = byte;
                    if let Some(fast) = fast_v4(&g) {
                        assert_eq!(parse_general(&g), Parse::Ip(fast), "{g:02x?}");
                    }
                }
            }
            for len in 0..f.len() {
                if let Some(fast) = fast_v4(&f[..len]) {
                    assert_eq!(parse_general(&f[..len]), Parse::Ip(fast), "cut at {len}");
                }
            }
        }
    }

    proptest! {
        /// Any frame the fast path accepts, the general path summarises the same way; corrupted
        /// bytes in the headers and cut frames included.
        #[test]
        fn fast_path_agrees_with_the_general_path(
            which in 0usize..13,
            edits in proptest::collection::vec((0usize..64, any::<u8>()), 0..4),
            cut in 0usize..80,
        ) {
            let mut f = frames()[which].clone();
            for (at, byte) in edits {
                if at < f.len() {
                    f[at] = byte;
                }
            }
            f.truncate(f.len().saturating_sub(cut % 3 * cut));
            let general = parse_general(&f);
            if let Some(fast) = fast_v4(&f) {
                prop_assert_eq!(general, Parse::Ip(fast));
            }
            let mut slot = Parsed {
                l2_len: 0,
                ip_len: 0,
                is_v4: false,
                dscp_ecn: 0,
                dont_frag: false,
                key: FlowKey::default(),
                kind: Kind::Fragment,
            };
            let into = parse_into(&f, &mut slot);
            match general {
                Parse::Ip(p) => {
                    prop_assert_eq!(into, Ok(()));
                    prop_assert_eq!(slot, p);
                }
                Parse::ToKernel => prop_assert_eq!(into, Err(Settled::ToKernel)),
                Parse::Drop(r) => prop_assert_eq!(into, Err(Settled::Drop(r))),
            }
        }
    }
}
