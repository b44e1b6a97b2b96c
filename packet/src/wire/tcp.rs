//! TCP segments (RFC 9293): the fields a load balancer reads (ports, flags for flow state) and
//! rewrites (ports, checksum).
//!
//! The view's buffer is the whole segment — exactly the IP payload — because the checksum covers
//! all of it: `fill_checksum_*`/`verify_checksum_*` sum the entire buffer. Options are exposed
//! as bytes, not parsed.
//!
//! Invariants after [`Packet::check_len`]: at least [`HEADER_LEN`] bytes, data offset ≥ 5,
//! and the header (options included) within the buffer. The segment inside an ICMP error quote
//! is usually only 8 bytes: read its ports with [`ports`] instead of a view.

use super::{Field, WireError, get_u16, get_u32, set_u16, set_u32};
use crate::checksum;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The eight TCP flag bits (byte 13), a small `Copy` bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: no more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN: synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST: reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH: push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK: the acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG: the urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE: ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR: congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The raw flag byte.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }

    /// PSH set.
    #[inline]
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }

    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// URG set.
    #[inline]
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }

    /// ECE set.
    #[inline]
    pub const fn ece(self) -> bool {
        self.contains(Self::ECE)
    }

    /// CWR set.
    #[inline]
    pub const fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// Source and destination ports from the first four bytes of a TCP or UDP header, for the
/// 8-byte transport quote in an ICMP error. `None` below four bytes.
pub fn ports(data: &[u8]) -> Option<(u16, u16)> {
    match data {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

/// A view of a TCP segment over a buffer `T`.
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

    /// [`WireError::Truncated`] below 20 bytes, [`WireError::BadHeaderLen`] for a data offset
    /// below 5, [`WireError::Truncated`] when the options run past the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    /// The acknowledgment number.
    #[inline]
    pub fn ack(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// The header length in bytes (data offset × 4, 20..=60).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The receive window (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer.
    #[inline]
    pub fn urgent_ptr(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes (`20..header_len`, clamped to the buffer).
    #[inline]
    pub fn options(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The data after the header (clamped to the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        super::clamped(data, self.header_len(), data.len())
    }

    fn segment_len_u16(&self) -> u16 {
        u16::try_from(self.buffer.as_ref().len()).unwrap_or(u16::MAX)
    }

    fn segment_len_u32(&self) -> u32 {
        u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX)
    }

    /// Whether the checksum is correct for an IPv4 pseudo header with these addresses.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        let pseudo = checksum::pseudo_header_v4(src, dst, 6, self.segment_len_u16());
        checksum::finish(pseudo + checksum::sum(self.buffer.as_ref())) == 0
    }

    /// Whether the checksum is correct for an IPv6 pseudo header with these addresses.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let pseudo = checksum::pseudo_header_v6(src, dst, 6, self.segment_len_u32());
        checksum::finish(pseudo + checksum::sum(self.buffer.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (the checksum is not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (the checksum is not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, seq: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, seq);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack(&mut self, ack: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, ack);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, at most 60); the low
    /// nibble of byte 12 (reserved, AE) is kept.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let offset = (len / 4).min(15) as u8;
        let b = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *b = (*b & 0x0F) | (offset << 4);
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the receive window.
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, check);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_ptr(&mut self, ptr: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, ptr);
    }

    /// The data after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let end = data.len();
        super::clamped_mut(data, start, end)
    }

    /// Recomputes the checksum over an IPv4 pseudo header and the whole buffer.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, 6, self.segment_len_u16());
        let check = checksum::finish(pseudo + checksum::sum(self.buffer.as_ref()));
        self.set_checksum(check);
    }

    /// Recomputes the checksum over an IPv6 pseudo header and the whole buffer.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v6(src, dst, 6, self.segment_len_u32());
        let check = checksum::finish(pseudo + checksum::sum(self.buffer.as_ref()));
        self.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT4: [u8; 4] = [10, 0, 0, 1];
    const VIP4: [u8; 4] = [192, 0, 2, 10];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const VIP6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa,
    ];

    /// SYN 10.0.0.1:40000 -> 192.0.2.10:80, seq 0x5f3a1b2c, window 64240, options MSS 1460,
    /// SACK-permitted, timestamps, NOP, window scale 7; checksum 0x9373.
    const TCP_SYN_V4: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x5f, 0x3a, 0x1b, 0x2c, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x93, 0x73, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x12,
        0xd6, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// SYN 2001:db8::1:40001 -> 2001:db8::aa:443, seq 0x01020304, MSS 1440; checksum 0x9f2a.
    const TCP_SYN_V6: [u8; 24] = [
        0x9c, 0x41, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0x9f, 0x2a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xa0,
    ];

    #[test]
    fn deconstruct_v4() {
        let p = Packet::new_checked(&TCP_SYN_V4[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq(), 0x5f3a1b2c);
        assert_eq!(p.ack(), 0);
        assert_eq!(p.header_len(), 40);
        let flags = p.flags();
        assert!(flags.syn() && !flags.ack() && !flags.fin() && !flags.rst());
        assert_eq!(flags, TcpFlags::SYN);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0x9373);
        assert_eq!(p.urgent_ptr(), 0);
        assert_eq!(p.options(), &TCP_SYN_V4[20..]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(CLIENT4, VIP4));
        assert!(!p.verify_checksum_v4(CLIENT4, [192, 0, 2, 11]));
    }

    #[test]
    fn deconstruct_v6() {
        let p = Packet::new_checked(&TCP_SYN_V6[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40001, 443));
        assert_eq!(p.header_len(), 24);
        assert!(p.verify_checksum_v6(&CLIENT6, &VIP6));
        assert!(!p.verify_checksum_v6(&VIP6, &VIP6));
    }

    #[test]
    fn construct_v4_and_v6() {
        let mut buf = [0u8; 40];
        buf[20..].copy_from_slice(&TCP_SYN_V4[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq(0x5f3a1b2c);
        p.set_ack(0);
        p.set_header_len(40);
        p.set_flags(TcpFlags::SYN);
        p.set_window(64240);
        p.set_urgent_ptr(0);
        p.fill_checksum_v4(CLIENT4, VIP4);
        assert_eq!(buf, TCP_SYN_V4);

        let mut buf = [0u8; 24];
        buf[20..].copy_from_slice(&TCP_SYN_V6[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40001);
        p.set_dst_port(443);
        p.set_seq(0x01020304);
        p.set_header_len(24);
        p.set_flags(TcpFlags::SYN);
        p.set_window(64240);
        p.fill_checksum_v6(&CLIENT6, &VIP6);
        assert_eq!(buf, TCP_SYN_V6);
    }

    #[test]
    fn port_rewrite_with_incremental_checksum() {
        let mut buf = TCP_SYN_V4;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let check = checksum::update_u16(p.checksum(), p.dst_port(), 8080);
        p.set_dst_port(8080);
        p.set_checksum(check);
        assert!(p.verify_checksum_v4(CLIENT4, VIP4));
    }

    #[test]
    fn flags_bit_set() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.syn() && f.ack() && !f.fin() && !f.rst());
        assert!(f.contains(TcpFlags::ACK));
        assert_eq!(f.bits(), 0x12);
        let all = TcpFlags(0xff);
        assert!(all.fin() && all.psh() && all.urg() && all.ece() && all.cwr() && all.rst());
    }

    #[test]
    fn check_len_errors() {
        for len in 0..20 {
            assert_eq!(
                Packet::new_checked(&TCP_SYN_V4[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        for len in 20..40 {
            assert_eq!(
                Packet::new_checked(&TCP_SYN_V4[..len]).unwrap_err(),
                WireError::Truncated,
                "options cut at {len}"
            );
        }
        let mut bad = TCP_SYN_V4;
        bad[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        bad[12] = 0x00;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
    }

    #[test]
    fn quoted_ports() {
        assert_eq!(ports(&TCP_SYN_V4[..8]), Some((40000, 80)));
        assert_eq!(ports(&TCP_SYN_V4[..3]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq(), p.ack(), p.flags(), p.window());
                let _ = (p.checksum(), p.urgent_ptr(), p.verify_checksum_v4([0; 4], [0; 4]));
                let _ = p.verify_checksum_v6(&[0; 16], &[0; 16]);
                prop_assert_eq!(p.header_len() + p.payload().len(), data.len());
                prop_assert_eq!(p.options().len(), p.header_len() - HEADER_LEN);
            }
        }

        #[test]
        fn fill_then_verify(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
            mut data in proptest::collection::vec(any::<u8>(), 20..100),
        ) {
            data[12] = 0x50;
            let mut p = Packet::new_checked(&mut data[..]).unwrap();
            p.fill_checksum_v4(src, dst);
            prop_assert!(p.verify_checksum_v4(src, dst));
            p.fill_checksum_v6(&src6, &dst6);
            prop_assert!(p.verify_checksum_v6(&src6, &dst6));
        }
    }
}
