//! Ethernet II frames, with at most one IEEE 802.1Q VLAN tag.
//!
//! The view starts at the destination MAC (no preamble, no FCS). One 802.1Q C-tag (`0x8100`)
//! is understood: [`Frame::vlan_id`] reports it and [`Frame::ethertype`] is the EtherType after
//! it. A second tag — QinQ (`0x88a8` outer) or a double `0x8100` — is *not* parsed: the frame
//! reports `Unknown(0x88a8)` or [`EtherType::Vlan`] as its EtherType and the caller (the MUX
//! sends such frames to the kernel) decides. Supporting arbitrary tag stacks would make
//! `header_len` a loop on the hot path for a case the MUX's links do not carry.
//!
//! Invariant after [`Frame::check_len`]: the buffer holds the whole header — 14 bytes, or 18
//! when the outer EtherType is `0x8100`.

use super::{EtherType, Field, MacAddr, WireError, get_array, get_u16, set_u16};

mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const VLAN_TCI: Field = 14..16;
    pub const INNER_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

const TPID_8021Q: u16 = 0x8100;

/// A view of an Ethernet II frame over a buffer `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without validating it (see the [`crate::wire`] contract).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps `buffer` after [`Frame::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the whole header (including an 802.1Q tag announced by the outer
    /// EtherType) is present: [`WireError::Truncated`] otherwise.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(data, field::ETHERTYPE) == TPID_8021Q && data.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether the frame carries a parsed 802.1Q tag (outer EtherType `0x8100` and the tag
    /// present in the buffer).
    fn is_tagged(&self) -> bool {
        let data = self.buffer.as_ref();
        data.len() >= HEADER_LEN + VLAN_TAG_LEN && get_u16(data, field::ETHERTYPE) == TPID_8021Q
    }

    /// The destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::DST))
    }

    /// The source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SRC))
    }

    /// The EtherType at bytes 12..14 ([`EtherType::Vlan`] for a tagged frame).
    #[inline]
    pub fn outer_ethertype(&self) -> EtherType {
        EtherType::from(get_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The 802.1Q tag control information (PCP, DEI, VID) of a tagged frame.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        if self.is_tagged() {
            Some(get_u16(self.buffer.as_ref(), field::VLAN_TCI))
        } else {
            None
        }
    }

    /// The 12-bit VLAN identifier of a tagged frame; `None` when untagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0FFF)
    }

    /// The EtherType of the payload: after the 802.1Q tag when there is one. A second tag is
    /// reported as its TPID ([`EtherType::Vlan`] or `Unknown(0x88a8)`), not parsed.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let at = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        EtherType::from(get_u16(self.buffer.as_ref(), at))
    }

    /// Header length: [`HEADER_LEN`], plus [`VLAN_TAG_LEN`] when tagged.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the payload's EtherType: the one after the tag of a tagged frame, bytes 12..14
    /// otherwise. (Writing [`EtherType::Vlan`] into an untagged frame turns bytes 14..18 into a
    /// tag; do that only on a buffer you are building.)
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let at = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        set_u16(self.buffer.as_mut(), at, ethertype.into());
    }

    /// Sets the 12-bit VLAN identifier of a tagged frame, keeping PCP and DEI. Returns `false`,
    /// changing nothing, on an untagged frame.
    #[inline]
    pub fn set_vlan_id(&mut self, vid: u16) -> bool {
        match self.vlan_tci() {
            Some(tci) => {
                let tci = (tci & 0xF000) | (vid & 0x0FFF);
                set_u16(self.buffer.as_mut(), field::VLAN_TCI, tci);
                true
            }
            None => false,
        }
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let start = start.min(data.len());
        &mut data[start..]
    }
}

/// The fields of an untagged Ethernet II header, for building frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame (the payload EtherType, after any tag).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Repr {
        Repr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            ethertype: frame.ethertype(),
        }
    }

    /// Writes an untagged 14-byte header into the front of `frame`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        let data = frame.buffer.as_mut();
        data[field::DST].copy_from_slice(&self.dst.0);
        data[field::SRC].copy_from_slice(&self.src.0);
        set_u16(data, field::ETHERTYPE, self.ethertype.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Untagged frame: IPv4 TCP SYN 10.0.0.1:40000 -> 192.0.2.10:80.
    const ETH_IPV4_TCP_SYN: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x52, 0x6b, 0x0a, 0x00, 0x00, 0x01,
        0xc0, 0x00, 0x02, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x5f, 0x3a, 0x1b, 0x2c, 0x00, 0x00, 0x00,
        0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x93, 0x73, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0x00, 0x12, 0xd6, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// 802.1Q (PCP 3, VID 100) frame: IPv4 UDP 10.0.0.1:5353 -> 192.0.2.10:53 "hello".
    const ETH_VLAN_IPV4_UDP: [u8; 51] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x60,
        0x64, 0x08, 0x00, 0x45, 0xb8, 0x00, 0x21, 0x01, 0x02, 0x00, 0x00, 0x3f, 0x11, 0xae, 0x07,
        0x0a, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x0a, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0xda,
        0xd8, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    #[test]
    fn deconstruct_untagged() {
        let frame = Frame::new_checked(&ETH_IPV4_TCP_SYN[..]).unwrap();
        assert_eq!(frame.dst_addr(), MAC_B);
        assert_eq!(frame.src_addr(), MAC_A);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.outer_ethertype(), EtherType::Ipv4);
        assert_eq!(frame.header_len(), HEADER_LEN);
        assert_eq!(frame.payload(), &ETH_IPV4_TCP_SYN[14..]);
    }

    #[test]
    fn deconstruct_vlan_tagged() {
        let frame = Frame::new_checked(&ETH_VLAN_IPV4_UDP[..]).unwrap();
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.vlan_tci(), Some(0x6064));
        assert_eq!(frame.outer_ethertype(), EtherType::Vlan);
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &ETH_VLAN_IPV4_UDP[18..]);
        assert_eq!(frame.payload()[0], 0x45);
    }

    #[test]
    fn second_tag_is_not_parsed() {
        // QinQ: outer 0x88a8 is reported as unknown, untagged view.
        let mut qinq = ETH_VLAN_IPV4_UDP;
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        let frame = Frame::new_checked(&qinq[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x88a8));
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.header_len(), 14);
        // Double 0x8100: the first tag is parsed, the second reported as Vlan.
        let mut double = ETH_VLAN_IPV4_UDP;
        double[16..18].copy_from_slice(&[0x81, 0x00]);
        let frame = Frame::new_checked(&double[..]).unwrap();
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.ethertype(), EtherType::Vlan);
    }

    #[test]
    fn truncated_frames() {
        assert_eq!(
            Frame::new_checked(&ETH_IPV4_TCP_SYN[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Frame::new_checked(&ETH_IPV4_TCP_SYN[..14]).is_ok());
        for len in 14..18 {
            assert_eq!(
                Frame::new_checked(&ETH_VLAN_IPV4_UDP[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let frame = Frame::new_checked(&ETH_VLAN_IPV4_UDP[..18]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn construct_and_round_trip() {
        let mut buf = [0u8; 74];
        buf[14..].copy_from_slice(&ETH_IPV4_TCP_SYN[14..]);
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        let repr = Repr {
            dst: MAC_B,
            src: MAC_A,
            ethertype: EtherType::Ipv4,
        };
        repr.emit(&mut frame);
        assert_eq!(Repr::parse(&frame), repr);
        assert_eq!(frame.into_inner(), &ETH_IPV4_TCP_SYN[..]);
    }

    #[test]
    fn setters_on_tagged_frame() {
        let mut buf = ETH_VLAN_IPV4_UDP;
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        frame.set_dst_addr(MAC_A);
        frame.set_src_addr(MAC_B);
        frame.set_ethertype(EtherType::Ipv6);
        assert!(frame.set_vlan_id(0xABC));
        assert_eq!(frame.vlan_tci(), Some(0x6ABC));
        assert_eq!(frame.ethertype(), EtherType::Ipv6);
        assert_eq!(frame.outer_ethertype(), EtherType::Vlan);
        frame.payload_mut()[0] = 0x60;
        assert_eq!(buf[..12], [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        assert_eq!(buf[12..19], [0x81, 0x00, 0x6a, 0xbc, 0x86, 0xdd, 0x60]);

        let mut untagged = ETH_IPV4_TCP_SYN;
        let mut frame = Frame::new_checked(&mut untagged[..]).unwrap();
        assert!(!frame.set_vlan_id(5));
        frame.set_ethertype(EtherType::Arp);
        assert_eq!(untagged[12..14], [0x08, 0x06]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = Frame::new_checked(&data[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.vlan_tci(), frame.vlan_id());
                let _ = (frame.ethertype(), frame.outer_ethertype(), Repr::parse(&frame));
                prop_assert_eq!(frame.header_len() + frame.payload().len(), data.len());
            }
        }
    }
}
