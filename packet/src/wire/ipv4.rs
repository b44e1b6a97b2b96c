//! IPv4 packets (RFC 791), options carried but not interpreted.
//!
//! Invariants after [`Packet::check_len`] (the full form): the buffer holds at least
//! [`HEADER_LEN`] bytes, the version is 4, `IHL ≥ 5`, and
//! `header_len ≤ total_len ≤ buffer.len()`. A longer buffer is fine (Ethernet padding):
//! [`Packet::payload`] is exactly `header_len..total_len`.
//!
//! [`Packet::new_checked_truncated`] is the form for the datagram embedded in an ICMP error:
//! the same checks except `total_len ≤ buffer.len()`; the payload is then whatever is present
//! up to `total_len` (typically the first 8 bytes of TCP/UDP, enough for the ports).
//!
//! The header checksum is not checked by `check_len` (the pipeline decides whether to pay for
//! [`Packet::verify_checksum`]); [`Packet::fill_checksum`] recomputes it and
//! [`crate::checksum::update_u16`]/[`update_u32`](crate::checksum::update_u32) patch it.

use std::net::Ipv4Addr;

use super::{Field, IpProtocol, WireError, clamped, clamped_mut, get_array, get_u16, set_u16};
use crate::checksum;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// The minimum MTU every IPv4 link must support (RFC 791).
pub const MIN_MTU: usize = 68;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet over a buffer `T`.
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

    /// Wraps a possibly truncated datagram (the one quoted in an ICMP error) after
    /// [`Packet::check_len_truncated`].
    #[inline]
    pub fn new_checked_truncated(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len_truncated()?;
        Ok(packet)
    }

    /// Validates the full form, in this order: [`WireError::Truncated`] below 20 bytes,
    /// [`WireError::BadVersion`], [`WireError::BadHeaderLen`] for `IHL < 5`,
    /// [`WireError::Truncated`] when the options run past the buffer,
    /// [`WireError::BadTotalLen`] for `total_len < header_len`, and [`WireError::Truncated`] for
    /// `total_len > buffer.len()`.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_len_truncated()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// [`Packet::check_len`] without the `total_len ≤ buffer.len()` check.
    #[inline]
    pub fn check_len_truncated(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        if usize::from(self.total_len()) < header_len {
            return Err(WireError::BadTotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble (4 for a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (`IHL × 4`, 20..=60).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// The whole TOS byte: DSCP (upper 6 bits) and ECN (lower 2 bits).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// The DSCP (upper 6 bits of the TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    /// The ECN codepoint (lower 2 bits of the TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// The total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }

    /// Whether this packet is a fragment (MF set or a non-zero offset). Only the first
    /// fragment (offset 0) carries the transport header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.protocol_number())
    }

    /// The protocol field as its raw number (no enum round trip: for hot paths that compare
    /// against constants).
    #[inline]
    pub fn protocol_number(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address (raw octets).
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    /// The destination address (raw octets).
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::DST)
    }

    /// The source address.
    #[inline]
    pub fn src_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_addr())
    }

    /// The destination address.
    #[inline]
    pub fn dst_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_addr())
    }

    /// The header including options (`..header_len`, clamped to the buffer).
    #[inline]
    pub fn header(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.header_len())
    }

    /// Whether the header checksum is correct (`false` when the header is not all present).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let data = self.buffer.as_ref();
        match data.get(..self.header_len()) {
            Some(header) => checksum::internet_checksum(header) == 0,
            None => false,
        }
    }

    /// The payload: `header_len..total_len`, clamped to the buffer (so a truncated view returns
    /// what is present).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0F) | (version << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, at most 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = (len / 4).min(15) as u8;
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xF0) | ihl;
    }

    /// Sets the whole TOS byte (DSCP and ECN).
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::TOS] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let old = self.flags_frag();
        let new = if on { old | flag } else { old & !flag };
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, new);
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag(FLAG_DF, on);
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag(FLAG_MF, on);
    }

    /// Sets the fragment offset in bytes (rounded down to a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let flags = self.flags_frag() & !FRAG_OFFSET_MASK;
        set_u16(
            self.buffer.as_mut(),
            field::FLAGS_FRAG,
            flags | (offset / 8),
        );
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the payload's protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the stored header checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, check);
    }

    /// Sets the source address (the checksum is not updated).
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the destination address (the checksum is not updated).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Recomputes and stores the header checksum (over `..header_len`, clamped to the buffer).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::internet_checksum(self.header());
        self.set_checksum(check);
    }

    /// The payload, mutable (same bounds as [`Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len());
        clamped_mut(self.buffer.as_mut(), start, end)
    }
}

/// The fields of an option-less IPv4 header, for emitting one (the MUX's outer header, an ICMP
/// error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (`total_len = 20 + payload_len`, saturated at 65535).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// The TOS byte (DSCP and ECN).
    pub dscp_ecn: u8,
    /// The Don't Fragment flag.
    pub dont_frag: bool,
    /// The identification field.
    pub ident: u16,
}

impl Repr {
    /// Reads the fields of a checked packet (options and fragmentation are not represented;
    /// `payload_len` is `total_len - header_len`).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
        }
    }

    /// The header length this representation emits.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (no options, MF and fragment offset zero) with a correct
    /// checksum into the front of `packet`; the payload bytes are not touched.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let total = u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX);
        let data = packet.buffer.as_mut();
        data[field::VER_IHL] = 0x45;
        data[field::TOS] = self.dscp_ecn;
        set_u16(data, field::TOTAL_LEN, total);
        set_u16(data, field::IDENT, self.ident);
        set_u16(
            data,
            field::FLAGS_FRAG,
            if self.dont_frag { FLAG_DF } else { 0 },
        );
        data[field::TTL] = self.ttl;
        data[field::PROTOCOL] = self.protocol.into();
        data[field::SRC].copy_from_slice(&self.src);
        data[field::DST].copy_from_slice(&self.dst);
        set_u16(data, field::CHECKSUM, 0);
        let check = checksum::internet_checksum(&data[..HEADER_LEN]);
        set_u16(data, field::CHECKSUM, check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 TCP SYN 10.0.0.1:40000 -> 192.0.2.10:80, DF, TTL 64, id 0x1c46, checksum 0x526b.
    const IPV4_TCP_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x52, 0x6b, 0x0a, 0x00, 0x00,
        0x01, 0xc0, 0x00, 0x02, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x5f, 0x3a, 0x1b, 0x2c, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x93, 0x73, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x00, 0x12, 0xd6, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// ICMP fragmentation needed (MTU 1400) from 198.51.100.1 to 10.0.0.1, quoting the first 28
    /// bytes of a 1500-byte TCP packet 10.0.0.1:40000 -> 192.0.2.10:80.
    const IPV4_ICMP_FRAG_NEEDED: [u8; 56] = [
        0x45, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x00, 0xff, 0x01, 0x87, 0x8f, 0xc6, 0x33, 0x64,
        0x01, 0x0a, 0x00, 0x00, 0x01, 0x03, 0x04, 0x5a, 0xf2, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00,
        0x05, 0xdc, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x4c, 0xcb, 0x0a, 0x00, 0x00, 0x01, 0xc0,
        0x00, 0x02, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01,
    ];

    fn syn_repr() -> Repr {
        Repr {
            src: [10, 0, 0, 1],
            dst: [192, 0, 2, 10],
            protocol: IpProtocol::Tcp,
            payload_len: 40,
            ttl: 64,
            dscp_ecn: 0,
            dont_frag: true,
            ident: 0x1c46,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&IPV4_TCP_SYN[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x526b);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_ip(), Ipv4Addr::new(192, 0, 2, 10));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &IPV4_TCP_SYN[20..]);
        assert_eq!(Repr::parse(&p), syn_repr());
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 60];
        buf[20..].copy_from_slice(&IPV4_TCP_SYN[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        syn_repr().emit(&mut p);
        assert_eq!(buf, IPV4_TCP_SYN);
    }

    #[test]
    fn emit_parse_round_trip() {
        let repr = Repr {
            src: [198, 51, 100, 7],
            dst: [203, 0, 113, 9],
            protocol: IpProtocol::IpIp,
            payload_len: 60,
            ttl: 64,
            dscp_ecn: 0xb9,
            dont_frag: false,
            ident: 0xbeef,
        };
        let mut buf = [0u8; 80];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.dscp(), 0xb9 >> 2);
        assert_eq!(p.ecn(), 1);
        assert_eq!(Repr::parse(&p), repr);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut padded = [0u8; 70];
        padded[..60].copy_from_slice(&IPV4_TCP_SYN);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn setters_and_fill_checksum() {
        let mut buf = IPV4_TCP_SYN;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl(63);
        p.set_src_addr([1, 2, 3, 4]);
        p.set_dst_addr([5, 6, 7, 8]);
        p.set_ident(7);
        p.set_dscp_ecn(0x2e << 2);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_protocol(IpProtocol::Udp);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.src_addr(), [1, 2, 3, 4]);
        assert_eq!(p.dst_addr(), [5, 6, 7, 8]);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(p.protocol(), IpProtocol::Udp);
        p.set_more_frags(false);
        assert!(p.is_fragment(), "a non-zero offset is still a fragment");
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        p.set_total_len(40);
        p.payload_mut().fill(0);
        assert_eq!(p.payload(), &[0u8; 20][..]);
        assert_eq!(
            buf[40..],
            IPV4_TCP_SYN[40..],
            "bytes past total_len untouched"
        );
    }

    #[test]
    fn incremental_update_matches_fill() {
        let mut buf = IPV4_TCP_SYN;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let old = u32::from_be_bytes(p.dst_addr());
        let new = [172, 16, 0, 9];
        let check = checksum::update_u32(p.checksum(), old, u32::from_be_bytes(new));
        p.set_dst_addr(new);
        p.set_checksum(check);
        assert!(p.verify_checksum());
    }

    #[test]
    fn check_len_errors() {
        // Truncated at every length below the header.
        for len in 0..20 {
            assert_eq!(
                Packet::new_checked(&IPV4_TCP_SYN[..len]).unwrap_err(),
                WireError::Truncated,
                "len {len}"
            );
        }
        // total_len > buffer: truncated anywhere inside the payload.
        for len in 20..60 {
            assert_eq!(
                Packet::new_checked(&IPV4_TCP_SYN[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut bad = IPV4_TCP_SYN;
        bad[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadVersion
        );
        let mut bad = IPV4_TCP_SYN;
        bad[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        // IHL 15 (60 bytes of header) in a 40-byte buffer: options run past the buffer.
        let mut bad = IPV4_TCP_SYN;
        bad[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&bad[..40]).unwrap_err(),
            WireError::Truncated
        );
        // total_len below the header length.
        let mut bad = IPV4_TCP_SYN;
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        let mut bad = IPV4_TCP_SYN;
        bad[0] = 0x46;
        bad[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadTotalLen
        );
    }

    #[test]
    fn embedded_truncated_datagram() {
        let outer = Packet::new_checked(&IPV4_ICMP_FRAG_NEEDED[..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.protocol(), IpProtocol::Icmp);
        let quoted = &outer.payload()[8..];
        assert_eq!(
            Packet::new_checked(quoted).unwrap_err(),
            WireError::Truncated
        );
        let inner = Packet::new_checked_truncated(quoted).unwrap();
        assert_eq!(inner.total_len(), 1500);
        assert!(inner.verify_checksum());
        assert_eq!(inner.src_addr(), [10, 0, 0, 1]);
        assert_eq!(inner.dst_addr(), [192, 0, 2, 10]);
        assert_eq!(inner.protocol(), IpProtocol::Tcp);
        assert_eq!(inner.payload(), &[0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1]);
        // The truncated form still rejects what is malformed rather than cut.
        assert_eq!(
            Packet::new_checked_truncated(&quoted[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = [0u8; 28];
        bad.copy_from_slice(quoted);
        bad[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked_truncated(&bad[..]).unwrap_err(),
            WireError::BadTotalLen
        );
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Packet<T>) -> usize {
        let _ = (
            p.version(),
            p.dscp_ecn(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
        );
        let _ = (
            p.frag_offset(),
            p.is_fragment(),
            p.ttl(),
            p.protocol(),
            p.checksum(),
        );
        let _ = (p.src_ip(), p.dst_ip(), p.verify_checksum(), Repr::parse(p));
        p.header().len() + p.payload().len()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let n = touch_all(&p);
                prop_assert_eq!(n, usize::from(p.total_len()));
            }
            if let Ok(p) = Packet::new_checked_truncated(&data[..]) {
                touch_all(&p);
                prop_assert!(p.payload().len() <= usize::from(p.total_len()) - p.header_len());
            }
        }

        #[test]
        fn mostly_valid_headers_never_panic(
            ihl in 0u8..16, total in 0u16..120, len in 0usize..100, seed in any::<[u8; 16]>(),
        ) {
            let mut data = vec![0u8; len];
            for (i, b) in data.iter_mut().enumerate() {
                *b = seed[i % 16];
            }
            if len >= 4 {
                data[0] = 0x40 | ihl;
                data[2..4].copy_from_slice(&total.to_be_bytes());
            }
            let ok = Packet::new_checked(&data[..]).is_ok();
            let expect = len >= 20 && ihl >= 5 && usize::from(ihl) * 4 <= usize::from(total)
                && usize::from(total) <= len;
            prop_assert_eq!(ok, expect);
            if let Ok(mut p) = Packet::new_checked(&mut data[..]) {
                // Setters that break the length invariants still never make accessors panic.
                p.set_header_len(60);
                p.set_total_len(u16::MAX);
                touch_all(&p);
                p.fill_checksum();
                let _ = p.payload_mut().len();
            }
        }
    }
}
