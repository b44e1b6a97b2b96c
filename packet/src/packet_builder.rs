//! Building whole Ethernet frames from a description: for fixtures, benchmarks and generators.
//!
//! Not on any data path. It writes every header byte by byte with correct lengths and
//! checksums, so tests can state a packet in one line (`PacketBuilder::tcp(...).flags(SYN)`)
//! and compare the pipeline's output against frames built the same way.

use std::net::IpAddr;

use crate::checksum;

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The transport part of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP header (20 bytes, no options).
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flag bits ([`tcp_flags`]).
        flags: u8,
    },
    /// A UDP header.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP (v4 or v6, by the IP version) message: type, code, the 4 bytes after the
    /// checksum, then the payload.
    Icmp {
        /// Message type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The header's last 4 bytes (e.g. the next-hop MTU).
        rest: u32,
    },
    /// Raw bytes after the IP header with this protocol number (no checksum computed).
    Raw {
        /// IP protocol number.
        protocol: u8,
    },
}

impl L4 {
    fn protocol(&self, v4: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } if v4 => 1,
            L4::Icmp { .. } => 58,
            L4::Raw { protocol } => *protocol,
        }
    }

    fn header_len(&self) -> usize {
        match self {
            L4::Tcp { .. } => 20,
            L4::Udp { .. } | L4::Icmp { .. } => 8,
            L4::Raw { .. } => 0,
        }
    }
}

/// A frame description. Build with [`PacketBuilder::tcp`], [`PacketBuilder::udp`],
/// [`PacketBuilder::icmp`] or [`PacketBuilder::raw`], adjust with the setters, then
/// [`PacketBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketBuilder {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Source address (both addresses must be of the same family).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class byte.
    pub tos: u8,
    /// IPv4 DF bit.
    pub dont_frag: bool,
    /// IPv4 identification (IPv6: fragment identification).
    pub ident: u16,
    /// Fragment offset in bytes (multiple of 8) and more-fragments flag; IPv6 gets a fragment
    /// header.
    pub fragment: Option<(u16, bool)>,
    /// IPv6 only: insert an (empty, 8-byte) hop-by-hop options header.
    pub hop_by_hop: bool,
    /// IPv6 flow label.
    pub flow_label: u32,
    /// Transport header.
    pub l4: L4,
    /// Bytes after the transport header.
    pub payload: Vec<u8>,
    /// Ethernet padding appended after the IP packet.
    pub padding: usize,
}

/// Client-side MAC used by default (the router in front of the MUX).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
/// MUX-side MAC used by default.
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

impl PacketBuilder {
    fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        PacketBuilder {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src,
            dst,
            ttl: 64,
            tos: 0,
            dont_frag: true,
            ident: 0x1234,
            fragment: None,
            hop_by_hop: false,
            flow_label: 0,
            l4,
            payload: Vec::new(),
            padding: 0,
        }
    }

    /// A TCP segment.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            },
        )
    }

    /// A UDP datagram.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self::new(src, dst, L4::Udp { src_port, dst_port })
    }

    /// An ICMP or ICMPv6 message (by address family) whose payload is set separately.
    pub fn icmp(src: IpAddr, dst: IpAddr, msg_type: u8, code: u8, rest: u32) -> Self {
        Self::new(
            src,
            dst,
            L4::Icmp {
                msg_type,
                code,
                rest,
            },
        )
    }

    /// An IP packet with raw bytes after the IP header.
    pub fn raw(src: IpAddr, dst: IpAddr, protocol: u8) -> Self {
        Self::new(src, dst, L4::Raw { protocol })
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the payload to `len` bytes of a counting pattern.
    pub fn payload_len(mut self, len: usize) -> Self {
        self.payload = (0..len).map(|i| i as u8).collect();
        self
    }

    /// Tags the frame with an 802.1Q VLAN id.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// Sets the IPv4 DF bit.
    pub fn dont_frag(mut self, df: bool) -> Self {
        self.dont_frag = df;
        self
    }

    /// Sets the TOS / traffic class byte.
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// Makes this a fragment at `offset` bytes with the more-fragments flag `more`.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.fragment = Some((offset, more));
        self.dont_frag = false;
        self
    }

    /// IPv6: adds an empty hop-by-hop options header.
    pub fn hop_by_hop(mut self) -> Self {
        self.hop_by_hop = true;
        self
    }

    /// Appends `n` bytes of Ethernet padding after the IP packet.
    pub fn padding(mut self, n: usize) -> Self {
        self.padding = n;
        self
    }

    /// Sets the MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The transport header and payload, checksummed. Only the first fragment carries the
    /// transport header; later fragments carry the payload alone.
    fn transport(&self) -> Vec<u8> {
        let first = self.fragment.is_none_or(|(off, _)| off == 0);
        let mut out = Vec::with_capacity(self.l4.header_len() + self.payload.len());
        if !first {
            out.extend_from_slice(&self.payload);
            return out;
        }
        let v4 = self.src.is_ipv4();
        match &self.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // sequence
                let ack = if flags & tcp_flags::ACK != 0 {
                    0x0a0b_0c0d
                } else {
                    0
                };
                out.extend_from_slice(&u32::to_be_bytes(ack));
                out.push(5 << 4);
                out.push(*flags);
                out.extend_from_slice(&0xffffu16.to_be_bytes()); // window
                out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            }
            L4::Udp { src_port, dst_port } => {
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            L4::Icmp {
                msg_type,
                code,
                rest,
            } => {
                out.extend_from_slice(&[*msg_type, *code, 0, 0]);
                out.extend_from_slice(&rest.to_be_bytes());
            }
            L4::Raw { .. } => {}
        }
        out.extend_from_slice(&self.payload);
        if self.fragment.is_some() {
            // A first fragment's checksum would cover the whole datagram; leave it zero.
            return out;
        }
        let protocol = self.l4.protocol(v4);
        let pseudo = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                checksum::pseudo_header_v4(s.octets(), d.octets(), protocol, out.len() as u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                checksum::pseudo_header_v6(&s.octets(), &d.octets(), protocol, out.len() as u32)
            }
            _ => panic!("PacketBuilder: source and destination must be the same family"),
        };
        let at = match &self.l4 {
            L4::Tcp { .. } => Some((16, true)),
            L4::Udp { .. } => Some((6, true)),
            L4::Icmp { .. } => Some((2, !v4)),
            L4::Raw { .. } => None,
        };
        if let Some((offset, with_pseudo)) = at {
            let initial = if with_pseudo { pseudo } else { 0 };
            let mut c = checksum::finish(initial as u64 + checksum::sum(&out) as u64);
            if matches!(self.l4, L4::Udp { .. }) && c == 0 {
                c = 0xffff;
            }
            out[offset..offset + 2].copy_from_slice(&c.to_be_bytes());
        }
        out
    }

    /// The IP packet (header included).
    pub fn build_ip(&self) -> Vec<u8> {
        let transport = self.transport();
        let protocol = self.l4.protocol(self.src.is_ipv4());
        let mut out = Vec::with_capacity(48 + transport.len());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = 20 + transport.len();
                out.push(0x45);
                out.push(self.tos);
                out.extend_from_slice(&(total as u16).to_be_bytes());
                out.extend_from_slice(&self.ident.to_be_bytes());
                let (offset, more) = self.fragment.unwrap_or((0, false));
                let mut flags_frag = offset / 8;
                if self.dont_frag {
                    flags_frag |= 0x4000;
                }
                if more {
                    flags_frag |= 0x2000;
                }
                out.extend_from_slice(&flags_frag.to_be_bytes());
                out.push(self.ttl);
                out.push(protocol);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let c = checksum::internet_checksum(&out[..20]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let mut next = protocol;
                if let Some((offset, more)) = self.fragment {
                    let mut frag = vec![next, 0];
                    frag.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
                    frag.extend_from_slice(&u32::from(self.ident).to_be_bytes());
                    ext.splice(0..0, frag);
                    next = 44;
                }
                if self.hop_by_hop {
                    // Next header, length 0 (8 bytes), then a PadN option filling 6 bytes.
                    let hbh = vec![next, 0, 1, 4, 0, 0, 0, 0];
                    ext.splice(0..0, hbh);
                    next = 0;
                }
                let payload_len = ext.len() + transport.len();
                let vtf = (6u32 << 28) | (u32::from(self.tos) << 20) | (self.flow_label & 0xfffff);
                out.extend_from_slice(&vtf.to_be_bytes());
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
                out.push(next);
                out.push(self.ttl);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                out.extend_from_slice(&ext);
            }
            _ => panic!("PacketBuilder: source and destination must be the same family"),
        }
        out.extend_from_slice(&transport);
        out
    }

    /// The whole Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let ip = self.build_ip();
        let mut out = Vec::with_capacity(18 + ip.len() + self.padding);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        if let Some(vlan) = self.vlan {
            out.extend_from_slice(&[0x81, 0x00]);
            out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
        }
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(&ip);
        out.resize(out.len() + self.padding, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_v4_frame_has_valid_checksums_and_lengths() {
        let f = PacketBuilder::tcp(ip("10.0.0.1"), 40000, ip("192.0.2.10"), 80, tcp_flags::SYN)
            .payload_len(6)
            .build();
        assert_eq!(f.len(), 14 + 20 + 20 + 6);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(
            checksum::internet_checksum(&f[14..34]),
            0,
            "IPv4 header sums to zero"
        );
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [192, 0, 2, 10], 6, 26);
        assert_eq!(
            checksum::finish(pseudo as u64 + checksum::sum(&f[34..]) as u64),
            0
        );
    }

    #[test]
    fn udp_v6_with_extension_headers() {
        let f = PacketBuilder::udp(ip("2001:db8::1"), 5353, ip("2001:db8::10"), 53)
            .hop_by_hop()
            .payload_len(4)
            .vlan(7)
            .build();
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x07]);
        assert_eq!(&f[16..18], &[0x86, 0xdd]);
        assert_eq!(f[18 + 6], 0, "next header is hop-by-hop");
        assert_eq!(f.len(), 18 + 40 + 8 + 8 + 4);
    }
}
