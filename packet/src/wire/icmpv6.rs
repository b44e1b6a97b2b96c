//! ICMP for IPv6 (RFC 4443; neighbour discovery types from RFC 4861).
//!
//! Same role as [`super::icmpv4`]: the MUX routes errors addressed to a VIP by the quoted
//! datagram ([`Packet::data`] + [`super::ipv6::Packet::new_checked_truncated`]) and writes
//! "packet too big" ([`Packet::set_mtu`]) when encapsulation exceeds the MTU. Neighbour
//! discovery goes to the kernel; its types are named only so the pipeline can classify them.
//! Unlike ICMPv4, the checksum covers an IPv6 pseudo header (RFC 4443 §2.3), so
//! `fill_checksum`/`verify_checksum` take the addresses. The view's buffer is the whole ICMPv6
//! message (the IPv6 payload after any extension headers).
//!
//! Invariant after [`Packet::check_len`]: at least [`HEADER_LEN`] bytes.

use super::{Field, WireError, get_u16, get_u32, set_u16, set_u32};
use crate::checksum;

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMPv6 header (type-specific word included).
pub const HEADER_LEN: usize = 8;

/// The next-header value of ICMPv6, used in its pseudo header.
const NEXT_HEADER_ICMPV6: u8 = 58;

enum_with_unknown! {
    /// ICMPv6 message types, as an open enum. Types below 128 are errors.
    pub enum Message(u8) {
        /// Destination unreachable, `1`.
        DestUnreachable = 1,
        /// Packet too big, `2` (bytes 4..8 carry the MTU).
        PacketTooBig = 2,
        /// Time exceeded, `3`.
        TimeExceeded = 3,
        /// Parameter problem, `4` (bytes 4..8 carry a pointer).
        ParamProblem = 4,
        /// Echo request, `128`.
        EchoRequest = 128,
        /// Echo reply, `129`.
        EchoReply = 129,
        /// Router solicitation, `133`.
        RouterSolicit = 133,
        /// Router advertisement, `134`.
        RouterAdvert = 134,
        /// Neighbour solicitation, `135`.
        NeighborSolicit = 135,
        /// Neighbour advertisement, `136`.
        NeighborAdvert = 136,
        /// Redirect, `137`.
        Redirect = 137,
    }
}

/// A view of an ICMPv6 message over a buffer `T`.
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

    /// [`WireError::Truncated`] below 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The message type as an open enum.
    #[inline]
    pub fn message(&self) -> Message {
        Message::from(self.msg_type())
    }

    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether this is an error message (type < 128, RFC 4443 §2.1), which quotes the offending
    /// datagram.
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// Bytes 4..8: the MTU of a "packet too big" message. Meaningless for other types.
    #[inline]
    pub fn mtu(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    /// Bytes 4..8: the pointer of a parameter problem.
    #[inline]
    pub fn pointer(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    /// Bytes 4..6: the identifier of an echo request or reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Bytes 6..8: the sequence number of an echo request or reply.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Everything after the 8-byte header: for an error, the quoted original datagram (parse it
    /// with [`super::ipv6::Packet::new_checked_truncated`]); for an echo, its data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(field::DATA..).unwrap_or(&[])
    }

    fn pseudo_sum(&self, src: &[u8; 16], dst: &[u8; 16]) -> u32 {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        checksum::pseudo_header_v6(src, dst, NEXT_HEADER_ICMPV6, len)
    }

    /// Whether the checksum over the pseudo header (these addresses) and the whole buffer is
    /// correct.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let total = self.pseudo_sum(src, dst) + checksum::sum(self.buffer.as_ref());
        checksum::finish(total) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the raw message type.
    #[inline]
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    /// Sets the message type from the open enum.
    #[inline]
    pub fn set_message(&mut self, message: Message) {
        self.set_msg_type(message.into());
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, check);
    }

    /// Sets bytes 4..8 to the MTU of a "packet too big" message.
    #[inline]
    pub fn set_mtu(&mut self, mtu: u32) {
        set_u32(self.buffer.as_mut(), field::REST, mtu);
    }

    /// Sets bytes 4..8 (the type-specific word), e.g. to zero for time exceeded.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, ident);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, seq: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let start = field::DATA.min(data.len());
        &mut data[start..]
    }

    /// Recomputes and stores the checksum over the pseudo header (these addresses) and the
    /// whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let total = self.pseudo_sum(src, dst) + checksum::sum(self.buffer.as_ref());
        self.set_checksum(checksum::finish(total));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IpProtocol, ipv6, udp};
    use super::*;
    use proptest::prelude::*;

    const CLIENT: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const VIP: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa,
    ];
    const ROUTER: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];

    /// Echo request 2001:db8::1 -> 2001:db8::aa, id 0x4242 seq 7, "abcdefgh", checksum 0x4fb9.
    const ECHO_REQUEST: [u8; 16] = [
        0x80, 0x00, 0x4f, 0xb9, 0x42, 0x42, 0x00, 0x07, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    /// IPv6 packet 2001:db8:ffff::1 -> 2001:db8::1: Packet Too Big, MTU 1280, quoting the first
    /// 48 bytes of a 1460-byte TCP packet 2001:db8::1:40001 -> 2001:db8::aa:443.
    const IPV6_ICMPV6_TOO_BIG: [u8; 96] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x38, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x37, 0x32, 0x00,
        0x00, 0x05, 0x00, 0x60, 0x00, 0x00, 0x00, 0x05, 0x8c, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d,
        0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x9c, 0x41,
        0x01, 0xbb, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct_echo() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.message(), Message::EchoRequest);
        assert_eq!(p.msg_type(), 128);
        assert!(!p.is_error());
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x4242, 7));
        assert_eq!(p.checksum(), 0x4fb9);
        assert!(p.verify_checksum(&CLIENT, &VIP));
        assert!(!p.verify_checksum(&VIP, &CLIENT.map(|b| b ^ 0x10)));
        assert_eq!(p.data(), b"abcdefgh");
    }

    #[test]
    fn deconstruct_packet_too_big_and_its_quote() {
        let outer = ipv6::Packet::new_checked(&IPV6_ICMPV6_TOO_BIG[..]).unwrap();
        assert_eq!(outer.next_header(), IpProtocol::Icmpv6);
        let p = Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(p.message(), Message::PacketTooBig);
        assert!(p.is_error());
        assert_eq!(p.mtu(), 1280);
        assert!(p.verify_checksum(&outer.src_addr(), &outer.dst_addr()));
        let quoted = ipv6::Packet::new_checked_truncated(p.data()).unwrap();
        assert_eq!(quoted.payload_len(), 1420);
        assert_eq!(quoted.src_addr(), CLIENT);
        assert_eq!(quoted.dst_addr(), VIP);
        let ul = quoted.upper_layer().unwrap();
        assert_eq!(ul.protocol, IpProtocol::Tcp);
        assert_eq!(udp::ports(&p.data()[ul.offset..]), Some((40001, 443)));
    }

    #[test]
    fn construct_packet_too_big() {
        let mut buf = [0u8; 56];
        buf[8..].copy_from_slice(&IPV6_ICMPV6_TOO_BIG[48..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_message(Message::PacketTooBig);
        p.set_code(0);
        p.set_mtu(1280);
        p.fill_checksum(&ROUTER, &CLIENT);
        assert_eq!(buf[..], IPV6_ICMPV6_TOO_BIG[40..]);
    }

    #[test]
    fn construct_echo() {
        let mut buf = [0u8; 16];
        buf[8..].copy_from_slice(b"abcdefgh");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(128);
        p.set_echo_ident(0x4242);
        p.set_echo_seq(7);
        p.fill_checksum(&CLIENT, &VIP);
        assert_eq!(buf, ECHO_REQUEST);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.data_mut().fill(0);
        p.set_rest_of_header(0);
        p.fill_checksum(&VIP, &CLIENT);
        assert!(p.verify_checksum(&VIP, &CLIENT));
        assert_eq!(p.pointer(), 0);
    }

    #[test]
    fn errors_and_types() {
        for len in 0..8 {
            assert_eq!(
                Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        assert_eq!(Message::from(135), Message::NeighborSolicit);
        assert_eq!(u8::from(Message::NeighborAdvert), 136);
        for (t, err) in [
            (1, true),
            (2, true),
            (4, true),
            (127, true),
            (128, false),
            (135, false),
        ] {
            let mut b = ECHO_REQUEST;
            b[0] = t;
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap().is_error(),
                err,
                "type {t}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.message(), p.code(), p.checksum(), p.is_error(), p.mtu(), p.pointer());
                let _ = (p.echo_ident(), p.echo_seq(), p.verify_checksum(&CLIENT, &VIP));
                prop_assert_eq!(p.data().len() + HEADER_LEN, data.len());
                if let Ok(q) = ipv6::Packet::new_checked_truncated(p.data()) {
                    let _ = (q.payload(), q.upper_layer());
                }
            }
        }

        #[test]
        fn fill_then_verify(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
            mut data in proptest::collection::vec(any::<u8>(), 8..80),
        ) {
            let mut p = Packet::new_checked(&mut data[..]).unwrap();
            p.fill_checksum(&src, &dst);
            prop_assert!(p.verify_checksum(&src, &dst));
        }
    }
}
