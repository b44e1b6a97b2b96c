//! IPv6 packets (RFC 8200) and the walk of their extension-header chain.
//!
//! Invariants after [`Packet::check_len`] (the full form): at least [`HEADER_LEN`] bytes,
//! version 6, and `40 + payload_len ≤ buffer.len()` (a longer buffer is Ethernet padding;
//! [`Packet::payload`] stops at `payload_len`). Jumbograms (`payload_len` 0 with a hop-by-hop
//! jumbo option, RFC 2675) are not supported: their payload reads as empty.
//!
//! [`Packet::new_checked_truncated`] is the form for the datagram quoted in an ICMPv6 error:
//! everything but `40 + payload_len ≤ buffer.len()` is checked, `payload()` returns what is
//! present, and [`Packet::upper_layer`] walks what is present.
//!
//! # The extension-header walk
//!
//! [`Packet::upper_layer`] skips hop-by-hop (0, first only), routing (43), destination options
//! (60) and fragment (44) headers and reports where the upper-layer header starts. It is bounded
//! three ways: by the stated payload (a header running past it is
//! [`WireError::BadExtensionHeader`]), by the buffer (a header cut by a truncated buffer is
//! [`WireError::Truncated`]), and by [`MAX_EXTENSION_HEADERS`] (a longer chain is
//! [`WireError::BadExtensionHeader`]: RFC 8200 allows each header once, except destination
//! options twice, so 8 covers every legitimate chain and stops a crafted one from costing a
//! per-packet loop). A non-first fragment (offset ≠ 0) ends the walk at the fragment header:
//! what follows is fragment data, not headers, and `protocol` is only the fragment header's
//! next-header value. AH (51), ESP (50) and any other value end the walk as the upper layer.

use std::net::Ipv6Addr;

use super::{Field, IpProtocol, WireError, clamped, clamped_mut, get_array, get_u16, get_u32};
use super::{set_u16, set_u32};

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The minimum MTU every IPv6 link must support (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;
/// The longest extension-header chain [`Packet::upper_layer`] walks.
pub const MAX_EXTENSION_HEADERS: usize = 8;
/// Length of a fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Where the upper-layer header of an IPv6 packet starts, found by [`Packet::upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (the last next-header value of the chain).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header's contents, when the chain has one.
    pub fragment: Option<FragmentInfo>,
}

/// The contents of an IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of this fragment's data in the original payload, in bytes (a multiple of 8).
    pub offset: u16,
    /// The M ("more fragments") flag.
    pub more: bool,
    /// The identification shared by all fragments of one packet.
    pub ident: u32,
}

/// A view of an IPv6 packet over a buffer `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validating it (see the [`crate::wire`] contract).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps a possibly truncated datagram (the one quoted in an ICMPv6 error) after
    /// [`Packet::check_len_truncated`].
    #[inline]
    pub fn new_checked_truncated(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len_truncated()?;
        Ok(packet)
    }

    /// Validates the full form: [`WireError::Truncated`] below 40 bytes,
    /// [`WireError::BadVersion`], then [`WireError::Truncated`] when
    /// `40 + payload_len > buffer.len()`.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_len_truncated()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// [`Packet::check_len`] without the payload-length check.
    #[inline]
    pub fn check_len_truncated(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// The version nibble (6 for a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The traffic class (DSCP in the upper 6 bits, ECN in the lower 2).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((self.ver_tc_flow() >> 20) & 0xFF) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000F_FFFF
    }

    /// The payload length (everything after the fixed header, extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The next-header value of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address (raw octets).
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    /// The destination address (raw octets).
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::DST)
    }

    /// The source address.
    #[inline]
    pub fn src_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_addr())
    }

    /// The destination address.
    #[inline]
    pub fn dst_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_addr())
    }

    /// End of the stated packet (`40 + payload_len`), not clamped.
    fn stated_end(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The payload (extension headers included): `40..40 + payload_len`, clamped to the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.stated_end())
    }

    /// Walks the extension-header chain to the upper-layer header (see the module doc).
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let data = self.buffer.as_ref();
        let stated_end = self.stated_end();
        let mut next = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment: Option<FragmentInfo> = None;
        // A header [offset, offset + len) must lie inside the stated payload, then inside the
        // buffer.
        let bound = |offset: usize, len: usize| -> Result<(), WireError> {
            let end = offset + len;
            if end > stated_end {
                Err(WireError::BadExtensionHeader)
            } else if end > data.len() {
                Err(WireError::Truncated)
            } else {
                Ok(())
            }
        };
        for index in 0..=MAX_EXTENSION_HEADERS {
            match next {
                IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                    if next == IpProtocol::HopByHop && index != 0 {
                        return Err(WireError::BadExtensionHeader);
                    }
                    if index == MAX_EXTENSION_HEADERS {
                        break;
                    }
                    bound(offset, 2)?;
                    let len = (usize::from(data[offset + 1]) + 1) * 8;
                    bound(offset, len)?;
                    next = IpProtocol::from(data[offset]);
                    offset += len;
                }
                IpProtocol::Ipv6Frag => {
                    if fragment.is_some() || index == MAX_EXTENSION_HEADERS {
                        return Err(WireError::BadExtensionHeader);
                    }
                    bound(offset, FRAGMENT_HEADER_LEN)?;
                    let off_flags = get_u16(data, offset + 2..offset + 4);
                    let info = FragmentInfo {
                        offset: off_flags & 0xFFF8,
                        more: off_flags & 0x0001 != 0,
                        ident: get_u32(data, offset + 4..offset + 8),
                    };
                    fragment = Some(info);
                    next = IpProtocol::from(data[offset]);
                    offset += FRAGMENT_HEADER_LEN;
                    if info.offset != 0 {
                        break;
                    }
                }
                _ => break,
            }
        }
        if matches!(
            next,
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts
        ) && fragment.is_none_or(|f| f.offset == 0)
        {
            // The cap was reached with headers still to go.
            return Err(WireError::BadExtensionHeader);
        }
        Ok(UpperLayer {
            protocol: next,
            offset,
            fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, value);
    }

    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let v = (self.ver_tc_flow() & 0x0FFF_FFFF) | (u32::from(version & 0x0F) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = (self.ver_tc_flow() & 0xF00F_FFFF) | (u32::from(tc) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label (the low 20 bits of `label`).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let v = (self.ver_tc_flow() & 0xFFF0_0000) | (label & 0x000F_FFFF);
        self.set_ver_tc_flow(v);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the fixed header's next-header value.
    #[inline]
    pub fn set_next_header(&mut self, next: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next.into();
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// The payload, mutable (same bounds as [`Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.stated_end();
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// The fields of a fixed IPv6 header, for emitting one (the MUX's outer header, an ICMPv6
/// error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next-header value of the fixed header.
    pub next_header: IpProtocol,
    /// Payload length in bytes (saturated at 65535 when emitted).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label (low 20 bits used).
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header of a checked packet.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        }
    }

    /// The header length this representation emits.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte fixed header into the front of `packet`; the payload is not touched.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let first =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xF_FFFF);
        packet.set_ver_tc_flow(first);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2001:db8::1 -> 2001:db8::aa, TC 0x28, flow 0x12345, hop-by-hop (PadN) + fragment header
    /// (offset 0, M=1, id 0xdeadbeef) + TCP SYN 40001 -> 443 with MSS 1440.
    const IPV6_HBH_FRAG_TCP: [u8; 80] = [
        0x62, 0x81, 0x23, 0x45, 0x00, 0x28, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x2c, 0x00, 0x01, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x9c, 0x41, 0x01, 0xbb,
        0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0x9f, 0x2a, 0x00,
        0x00, 0x02, 0x04, 0x05, 0xa0,
    ];

    /// 2001:db8::1 -> 2001:db8::aa UDP 1234 -> 53 "ping!".
    const IPV6_UDP: [u8; 53] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x04, 0xd2, 0x00, 0x35, 0x00,
        0x0d, 0x9e, 0xdf, 0x70, 0x69, 0x6e, 0x67, 0x21,
    ];

    const CLIENT: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const VIP: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa,
    ];

    #[test]
    fn deconstruct_udp() {
        let p = Packet::new_checked(&IPV6_UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload_len(), 13);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), CLIENT);
        assert_eq!(p.dst_ip(), Ipv6Addr::from(VIP));
        assert_eq!(p.payload(), &IPV6_UDP[40..]);
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: IpProtocol::Udp,
                offset: 40,
                fragment: None
            })
        );
    }

    #[test]
    fn hop_by_hop_and_fragment_reach_tcp() {
        let p = Packet::new_checked(&IPV6_HBH_FRAG_TCP[..]).unwrap();
        assert_eq!(p.traffic_class(), 0x28);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, IpProtocol::Tcp);
        assert_eq!(ul.offset, 56);
        assert_eq!(
            ul.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );
        // The TCP header starts there: source port 40001.
        assert_eq!(IPV6_HBH_FRAG_TCP[56..58], 40001u16.to_be_bytes());
    }

    #[test]
    fn non_first_fragment_stops_the_walk() {
        let mut buf = IPV6_HBH_FRAG_TCP;
        // Fragment offset 1448 bytes (181 × 8), M=0; next header "destination options", which
        // in a non-first fragment is data, not a header.
        buf[50..52].copy_from_slice(&(1448u16).to_be_bytes());
        buf[48] = 60;
        let ul = Packet::new_checked(&buf[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.protocol, IpProtocol::Ipv6Opts);
        assert_eq!(ul.offset, 56);
        assert_eq!(
            ul.fragment,
            Some(FragmentInfo {
                offset: 1448,
                more: false,
                ident: 0xdeadbeef
            })
        );
    }

    #[test]
    fn construct_and_round_trip() {
        let repr = Repr {
            src: CLIENT,
            dst: VIP,
            next_header: IpProtocol::HopByHop,
            payload_len: 40,
            hop_limit: 64,
            traffic_class: 0x28,
            flow_label: 0x12345,
        };
        let mut buf = IPV6_HBH_FRAG_TCP;
        buf[..40].fill(0xee);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        assert_eq!(buf, IPV6_HBH_FRAG_TCP);
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), repr);
    }

    #[test]
    fn setters() {
        let mut buf = IPV6_UDP;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_traffic_class(0xb8);
        p.set_flow_label(0xfffff);
        p.set_hop_limit(1);
        p.set_src_addr(VIP);
        p.set_dst_addr(CLIENT);
        p.set_next_header(IpProtocol::Tcp);
        p.set_payload_len(5);
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0xfffff);
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.src_addr(), VIP);
        assert_eq!(p.dst_addr(), CLIENT);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        p.payload_mut().fill(0);
        assert_eq!(p.payload(), &[0u8; 5][..]);
        p.set_version(4);
        assert_eq!(p.version(), 4);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(buf[45..], IPV6_UDP[45..]);
    }

    #[test]
    fn check_len_errors() {
        for len in 0..40 {
            assert_eq!(
                Packet::new_checked(&IPV6_UDP[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        for len in 40..53 {
            assert_eq!(
                Packet::new_checked(&IPV6_UDP[..len]).unwrap_err(),
                WireError::Truncated
            );
            assert!(Packet::new_checked_truncated(&IPV6_UDP[..len]).is_ok());
        }
        let mut bad = IPV6_UDP;
        bad[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadVersion
        );
        let mut padded = [0u8; 60];
        padded[..53].copy_from_slice(&IPV6_UDP);
        assert_eq!(
            Packet::new_checked(&padded[..]).unwrap().payload().len(),
            13
        );
    }

    #[test]
    fn extension_header_past_payload() {
        // Hop-by-hop claiming 16 bytes (len 1) while only 40 bytes of payload: fine; claiming
        // 48 bytes (len 5) runs past payload_len = 40.
        let mut buf = IPV6_HBH_FRAG_TCP;
        buf[41] = 5;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::BadExtensionHeader));
        // Payload length too short to hold the fragment header after the hop-by-hop one.
        let mut buf = IPV6_HBH_FRAG_TCP;
        buf[4..6].copy_from_slice(&12u16.to_be_bytes());
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::BadExtensionHeader));
        // Payload length 1: not even the two bytes of the hop-by-hop header.
        buf[4..6].copy_from_slice(&1u16.to_be_bytes());
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::BadExtensionHeader));
    }

    #[test]
    fn extension_header_cut_by_truncation() {
        // A quoted datagram cut inside the fragment header: truncated, not malformed.
        let p = Packet::new_checked_truncated(&IPV6_HBH_FRAG_TCP[..52]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::Truncated));
        // Cut right after the chain: the upper layer is found though its header is absent.
        let p = Packet::new_checked_truncated(&IPV6_HBH_FRAG_TCP[..56]).unwrap();
        assert_eq!(p.upper_layer().unwrap().offset, 56);
        assert_eq!(p.payload().len(), 16);
    }

    #[test]
    fn misplaced_and_repeated_headers() {
        // Hop-by-hop after the fragment header.
        let mut buf = IPV6_HBH_FRAG_TCP;
        buf[48] = 0;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::BadExtensionHeader));
        // Two fragment headers: hop-by-hop -> frag -> frag.
        let mut buf = IPV6_HBH_FRAG_TCP;
        buf[48] = 44;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::BadExtensionHeader));
    }

    /// A packet with `n` destination-options headers (8 bytes each) followed by UDP.
    fn chain(n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 40 + 8 * n + 8];
        buf[0] = 0x60;
        let payload_len = (8 * n + 8) as u16;
        buf[4..6].copy_from_slice(&payload_len.to_be_bytes());
        buf[6] = if n == 0 { 17 } else { 60 };
        for i in 0..n {
            let at = 40 + 8 * i;
            buf[at] = if i + 1 == n { 17 } else { 60 };
            buf[at + 1] = 0;
        }
        buf
    }

    #[test]
    fn chain_length_cap() {
        for n in 0..=MAX_EXTENSION_HEADERS {
            let buf = chain(n);
            let ul = Packet::new_checked(&buf[..])
                .unwrap()
                .upper_layer()
                .unwrap();
            assert_eq!(ul.protocol, IpProtocol::Udp, "n = {n}");
            assert_eq!(ul.offset, 40 + 8 * n);
        }
        let buf = chain(MAX_EXTENSION_HEADERS + 1);
        assert_eq!(
            Packet::new_checked(&buf[..]).unwrap().upper_layer(),
            Err(WireError::BadExtensionHeader)
        );
        // Eight options headers then a fragment header: also too long.
        let mut buf = chain(MAX_EXTENSION_HEADERS + 1);
        buf[40 + 8 * 7] = 44;
        buf[40 + 8 * 8] = 17;
        assert_eq!(
            Packet::new_checked(&buf[..]).unwrap().upper_layer(),
            Err(WireError::BadExtensionHeader)
        );
    }

    #[test]
    fn truncated_icmp_quote() {
        // The quoted datagram of an ICMPv6 Packet Too Big: 48 of 1460 bytes.
        let mut quoted = [0u8; 48];
        quoted[..40].copy_from_slice(&IPV6_UDP[..40]);
        quoted[4..6].copy_from_slice(&1420u16.to_be_bytes());
        quoted[40..48].copy_from_slice(&IPV6_UDP[40..48]);
        assert_eq!(
            Packet::new_checked(&quoted[..]).unwrap_err(),
            WireError::Truncated
        );
        let p = Packet::new_checked_truncated(&quoted[..]).unwrap();
        assert_eq!(p.payload(), &IPV6_UDP[40..48]);
        let ul = p.upper_layer().unwrap();
        assert_eq!((ul.protocol, ul.offset), (IpProtocol::Udp, 40));
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Packet<T>) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.next_header(),
        );
        let _ = (
            p.hop_limit(),
            p.src_ip(),
            p.dst_ip(),
            p.payload(),
            Repr::parse(p),
        );
        if let Ok(ul) = p.upper_layer() {
            assert!(ul.offset >= HEADER_LEN);
            assert!(ul.offset <= HEADER_LEN + usize::from(p.payload_len()));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                touch_all(&p);
            }
            if let Ok(p) = Packet::new_checked_truncated(&data[..]) {
                touch_all(&p);
            }
        }

        #[test]
        fn arbitrary_chains_never_panic(
            next in prop::sample::select(vec![0u8, 6, 17, 43, 44, 58, 59, 60]),
            payload_len in 0u16..140,
            body in proptest::collection::vec(
                prop::sample::select(vec![0u8, 1, 2, 6, 17, 43, 44, 60]), 0..120),
        ) {
            let mut data = vec![0u8; 40];
            data[0] = 0x60;
            data[4..6].copy_from_slice(&payload_len.to_be_bytes());
            data[6] = next;
            data.extend_from_slice(&body);
            if let Ok(p) = Packet::new_checked(&data[..]) {
                touch_all(&p);
            }
            if let Ok(p) = Packet::new_checked_truncated(&data[..]) {
                touch_all(&p);
            }
        }
    }
}
