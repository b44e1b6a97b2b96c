//! Parsing a received frame into what the pipeline decides on.
//!
//! One pass over the headers with the zero-copy views of `mux_packet::wire`, producing a small
//! `Copy` summary ([`Parsed`]): where the IP packet starts and ends, its 5-tuple, the TCP flags,
//! and what kind of packet it is (a transport segment, a fragment, or an ICMP error that
//! embeds a flow). Parsing never allocates and never panics: every length is checked by the
//! views' `new_checked` before any field is read.
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

/// Parses one frame.
#[inline]
pub fn parse(frame: &[u8]) -> Parse {
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
