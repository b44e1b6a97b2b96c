//! UDP datagrams (RFC 768).
//!
//! Invariants after [`Packet::check_len`]: at least [`HEADER_LEN`] bytes and
//! `8 ≤ length ≤ buffer.len()`; the datagram is `..length` (a longer buffer is padding) and the
//! checksum covers exactly that.
//!
//! The zero-checksum rule (see [`crate::checksum`]): over IPv4 a stored `0` means "no
//! checksum" — [`Packet::verify_checksum_v4`] accepts it and the pipeline must keep it `0`
//! across rewrites ([`crate::checksum::update_udp`]); over IPv6 a `0` is invalid. A computed `0`
//! is stored as `0xFFFF` by both `fill_checksum_*`.

use super::{Field, WireError, clamped, clamped_mut, get_u16, set_u16};
use crate::checksum;

pub use super::tcp::ports;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram over a buffer `T`.
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

    /// [`WireError::Truncated`] below 8 bytes, [`WireError::BadLength`] for a length field
    /// below 8, [`WireError::Truncated`] when the length exceeds the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > buf_len {
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

    /// The length field (header + payload).
    #[allow(clippy::len_without_is_empty)]
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum as stored (`0`: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram: `..length`, clamped to the buffer.
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// The payload: `8..length`, clamped to the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// Whether the checksum is correct over IPv4; a `0` checksum ("none") is accepted.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        let check = self.checksum();
        check == 0 || checksum::udp_checksum_v4(src, dst, self.datagram()) == check
    }

    /// Whether the checksum is correct over IPv6; a `0` checksum is invalid (RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let check = self.checksum();
        check != 0 && checksum::udp_checksum_v6(src, dst, self.datagram()) == check
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

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, check);
    }

    /// The payload, mutable (same bounds as [`Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Computes and stores the checksum over IPv4 (a computed `0` is stored as `0xFFFF`).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        let check = checksum::udp_checksum_v4(src, dst, self.datagram());
        self.set_checksum(check);
    }

    /// Computes and stores the checksum over IPv6 (a computed `0` is stored as `0xFFFF`).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let check = checksum::udp_checksum_v6(src, dst, self.datagram());
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

    /// 10.0.0.1:5353 -> 192.0.2.10:53 "hello", checksum 0xdad8.
    const UDP_V4: [u8; 13] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0xda, 0xd8, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    /// 2001:db8::1:1234 -> 2001:db8::aa:53 "ping!", checksum 0x9edf.
    const UDP_V6: [u8; 13] = [
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x0d, 0x9e, 0xdf, 0x70, 0x69, 0x6e, 0x67, 0x21,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&UDP_V4[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (5353, 53, 13));
        assert_eq!(p.checksum(), 0xdad8);
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum_v4(CLIENT4, VIP4));
        assert!(!p.verify_checksum_v4(VIP4, CLIENT4.map(|b| b ^ 1)));

        let p = Packet::new_checked(&UDP_V6[..]).unwrap();
        assert_eq!(p.payload(), b"ping!");
        assert!(p.verify_checksum_v6(&CLIENT6, &VIP6));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"hello");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(53);
        p.set_len(13);
        p.fill_checksum_v4(CLIENT4, VIP4);
        assert_eq!(buf, UDP_V4);

        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"ping!");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(1234);
        p.set_dst_port(53);
        p.set_len(13);
        p.set_checksum(0x5555);
        p.fill_checksum_v6(&CLIENT6, &VIP6);
        assert_eq!(buf, UDP_V6);
    }

    #[test]
    fn zero_checksum_rules() {
        let mut buf = UDP_V4;
        buf[6] = 0;
        buf[7] = 0;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum_v4(CLIENT4, VIP4), "IPv4: 0 = no checksum");
        assert!(!p.verify_checksum_v6(&CLIENT6, &VIP6), "IPv6: 0 is invalid");

        // A datagram whose checksum computes to 0 carries 0xFFFF and verifies.
        let mut buf = [0u8; 10];
        buf[..6].copy_from_slice(&[0x12, 0x34, 0x00, 0x35, 0x00, 0x0a]);
        let partial =
            checksum::fold(checksum::pseudo_header_v4(CLIENT4, VIP4, 17, 10) + checksum::sum(&buf));
        buf[8..10].copy_from_slice(&(0xffff - partial).to_be_bytes());
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum_v4(CLIENT4, VIP4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(CLIENT4, VIP4));
    }

    #[test]
    fn nat_rewrite_keeps_checksum_valid() {
        let mut buf = UDP_V4;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let new_dst = [10, 1, 0, 5];
        let mut check = checksum::update_udp_bytes(p.checksum(), &VIP4, &new_dst);
        check = checksum::update_udp(check, p.dst_port(), 5300);
        p.set_dst_port(5300);
        p.set_checksum(check);
        assert!(p.verify_checksum_v4(CLIENT4, new_dst));
    }

    #[test]
    fn padding_and_errors() {
        let mut padded = [0u8; 20];
        padded[..13].copy_from_slice(&UDP_V4);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum_v4(CLIENT4, VIP4));

        for len in 0..8 {
            assert_eq!(
                Packet::new_checked(&UDP_V4[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        for len in 8..13 {
            assert_eq!(
                Packet::new_checked(&UDP_V4[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut bad = UDP_V4;
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::BadLength
        );
        bad[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(Packet::new_checked(&bad[..]).unwrap().payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum());
                let _ = p.verify_checksum_v4([1; 4], [2; 4]);
                let _ = p.verify_checksum_v6(&[1; 16], &[2; 16]);
                prop_assert_eq!(p.payload().len() + HEADER_LEN, usize::from(p.len()));
            }
        }

        #[test]
        fn fill_then_verify(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
            mut data in proptest::collection::vec(any::<u8>(), 8..60),
        ) {
            let len = data.len() as u16;
            data[4..6].copy_from_slice(&len.to_be_bytes());
            let mut p = Packet::new_checked(&mut data[..]).unwrap();
            p.fill_checksum_v4(src, dst);
            prop_assert_ne!(p.checksum(), 0);
            prop_assert!(p.verify_checksum_v4(src, dst));
            p.fill_checksum_v6(&src6, &dst6);
            prop_assert!(p.verify_checksum_v6(&src6, &dst6));
        }
    }
}
