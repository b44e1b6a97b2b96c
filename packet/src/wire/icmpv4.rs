//! ICMP for IPv4 (RFC 792, RFC 1191 for "fragmentation needed").
//!
//! The MUX reads ICMP errors addressed to a VIP to route them by the quoted datagram
//! ([`Packet::data`] + [`super::ipv4::Packet::new_checked_truncated`]) and writes
//! "fragmentation needed" (type 3 code 4, [`Packet::set_next_hop_mtu`]) when encapsulation no
//! longer fits the MTU. Every message has the same 8-byte header: type, code, checksum and four
//! type-specific bytes (echo identifier/sequence, next-hop MTU, pointer), which is all this view
//! interprets. The checksum covers the whole buffer (the whole ICMP message).
//!
//! Invariant after [`Packet::check_len`]: at least [`HEADER_LEN`] bytes.

use super::{Field, WireError, get_u16, set_u16};
use crate::checksum;

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    pub const UNUSED: Field = 4..6;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const POINTER: usize = 4;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header (type-specific word included).
pub const HEADER_LEN: usize = 8;

/// Destination-unreachable code "fragmentation needed and DF set" (RFC 792 / RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

enum_with_unknown! {
    /// ICMPv4 message types, as an open enum.
    pub enum Message(u8) {
        /// Echo reply, `0`.
        EchoReply = 0,
        /// Destination unreachable, `3` (code 4: fragmentation needed).
        DestUnreachable = 3,
        /// Source quench, `4` (deprecated by RFC 6633, still an error message).
        SourceQuench = 4,
        /// Redirect, `5`.
        Redirect = 5,
        /// Echo request, `8`.
        Echo = 8,
        /// Time exceeded, `11`.
        TimeExceeded = 11,
        /// Parameter problem, `12`.
        ParamProblem = 12,
    }
}

/// A view of an ICMPv4 message over a buffer `T`.
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

    /// Whether this is an error message that quotes the offending datagram: destination
    /// unreachable (3), source quench (4), time exceeded (11), parameter problem (12).
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(self.msg_type(), 3 | 4 | 11 | 12)
    }

    /// Whether this is "fragmentation needed" (type 3, code 4).
    #[inline]
    pub fn is_frag_needed(&self) -> bool {
        self.msg_type() == 3 && self.code() == CODE_FRAG_NEEDED
    }

    /// Bytes 6..8: the next-hop MTU of a "fragmentation needed" message (RFC 1191; `0` from
    /// routers predating it). Meaningless for other types.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
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

    /// Byte 4: the pointer of a parameter problem.
    #[inline]
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// Everything after the 8-byte header: for an error, the quoted original datagram (parse it
    /// with [`super::ipv4::Packet::new_checked_truncated`]); for an echo, its data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(field::DATA..).unwrap_or(&[])
    }

    /// Whether the checksum (over the whole buffer) is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::internet_checksum(self.buffer.as_ref()) == 0
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

    /// Sets the next-hop MTU (bytes 6..8) and zeroes the unused bytes 4..6, as "fragmentation
    /// needed" requires.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        let data = self.buffer.as_mut();
        set_u16(data, field::UNUSED, 0);
        set_u16(data, field::NEXT_HOP_MTU, mtu);
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

    /// Sets bytes 4..8 (the type-specific word) at once, e.g. to zero for time exceeded.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        super::set_u32(self.buffer.as_mut(), 4..8, value);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let start = field::DATA.min(data.len());
        &mut data[start..]
    }

    /// Recomputes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::internet_checksum(self.buffer.as_ref());
        self.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IpProtocol, ipv4, tcp};
    use super::*;
    use proptest::prelude::*;

    /// Echo request id 0x1234 seq 1, data "abcdefgh", checksum 0x5435.
    const ECHO_REQUEST: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    /// Fragmentation needed, next-hop MTU 1400, quoting the IPv4 header and 8 TCP bytes of a
    /// 1500-byte packet 10.0.0.1:40000 -> 192.0.2.10:80 (the ICMP part of an IPv4 packet).
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x5a, 0xf2, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x05, 0xdc, 0x1c, 0x46, 0x40,
        0x00, 0x40, 0x06, 0x4c, 0xcb, 0x0a, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x0a, 0x9c, 0x40,
        0x00, 0x50, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct_echo() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), 8);
        assert_eq!(p.message(), Message::Echo);
        assert_eq!(p.code(), 0);
        assert!(!p.is_error());
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert_eq!(p.checksum(), 0x5435);
        assert!(p.verify_checksum());
        assert_eq!(p.data(), b"abcdefgh");
    }

    #[test]
    fn deconstruct_frag_needed_and_its_quote() {
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(p.message(), Message::DestUnreachable);
        assert!(p.is_error());
        assert!(p.is_frag_needed());
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(p.verify_checksum());
        let quoted = ipv4::Packet::new_checked_truncated(p.data()).unwrap();
        assert_eq!(quoted.protocol(), IpProtocol::Tcp);
        assert_eq!(quoted.src_addr(), [10, 0, 0, 1]);
        assert_eq!(quoted.dst_addr(), [192, 0, 2, 10]);
        assert_eq!(tcp::ports(quoted.payload()), Some((40000, 80)));
    }

    #[test]
    fn construct_frag_needed() {
        let mut buf = [0xeeu8; 36];
        buf[8..].copy_from_slice(&FRAG_NEEDED[8..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_message(Message::DestUnreachable);
        p.set_code(CODE_FRAG_NEEDED);
        p.set_next_hop_mtu(1400);
        p.fill_checksum();
        assert_eq!(buf, FRAG_NEEDED);
    }

    #[test]
    fn construct_echo_and_reply() {
        let mut buf = [0u8; 16];
        buf[8..].copy_from_slice(b"abcdefgh");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(8);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.fill_checksum();
        assert_eq!(buf, ECHO_REQUEST);
        // Turning a request into a reply: incremental update of the type/code word.
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let check = checksum::update_u16(p.checksum(), 0x0800, 0x0000);
        p.set_message(Message::EchoReply);
        p.set_checksum(check);
        assert!(p.verify_checksum());
        p.data_mut()[0] = b'z';
        p.set_rest_of_header(0);
        p.fill_checksum();
        assert!(p.verify_checksum());
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
        let p = Packet::new_checked(&ECHO_REQUEST[..8]).unwrap();
        assert!(p.data().is_empty());
        for (t, err) in [
            (0, false),
            (3, true),
            (4, true),
            (5, false),
            (11, true),
            (12, true),
        ] {
            let mut b = ECHO_REQUEST;
            b[0] = t;
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap().is_error(),
                err,
                "type {t}"
            );
        }
        assert_eq!(u8::from(Message::TimeExceeded), 11);
        assert_eq!(Message::from(12), Message::ParamProblem);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.message(), p.code(), p.checksum(), p.is_error(), p.is_frag_needed());
                let _ = (p.next_hop_mtu(), p.echo_ident(), p.echo_seq(), p.pointer());
                let _ = p.verify_checksum();
                prop_assert_eq!(p.data().len() + HEADER_LEN, data.len());
                if p.is_error()
                    && let Ok(q) = ipv4::Packet::new_checked_truncated(p.data())
                {
                    let _ = (q.payload(), q.src_addr(), q.protocol());
                }
            }
        }
    }
}
