//! ARP (RFC 826) for Ethernet hardware addresses and IPv4 protocol addresses.
//!
//! The MUX itself hands ARP to the kernel; this view exists so the data path can classify it,
//! the lab tools can answer it and tests can build it. Only the Ethernet/IPv4 shape
//! (hardware type 1, protocol type `0x0800`, lengths 6 and 4) is parsed: every field then sits
//! at a fixed offset. Other shapes are refused with [`WireError::Unsupported`] rather than
//! parsed generically, because nothing in the system speaks them.
//!
//! Invariant after [`Packet::check_len`]: at least [`PACKET_LEN`] bytes, Ethernet/IPv4 shape.

use std::net::Ipv4Addr;

use super::{Field, MacAddr, WireError, get_array, get_u16, set_u16};

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type of IPv4 (its EtherType).
pub const PTYPE_IPV4: u16 = 0x0800;

enum_with_unknown! {
    /// The ARP operation, as an open enum.
    pub enum Operation(u16) {
        /// Request, `1`.
        Request = 1,
        /// Reply, `2`.
        Reply = 2,
    }
}

/// A view of an Ethernet/IPv4 ARP packet over a buffer `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validating it (see the [`crate::wire`] contract).
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the length ([`WireError::Truncated`] below [`PACKET_LEN`]) and the
    /// Ethernet/IPv4 shape ([`WireError::Unsupported`] otherwise).
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type (`0x0800` for IPv4).
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// The hardware address length (6).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length (4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        Operation::from(get_u16(self.buffer.as_ref(), field::OPER))
    }

    /// The sender's MAC address.
    pub fn sender_hw_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SHA))
    }

    /// The sender's IPv4 address (raw octets).
    pub fn sender_proto_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::SPA)
    }

    /// The target's MAC address (zero in a request).
    pub fn target_hw_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::THA))
    }

    /// The target's IPv4 address (raw octets).
    pub fn target_proto_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::TPA)
    }

    /// The sender's IPv4 address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.sender_proto_addr())
    }

    /// The target's IPv4 address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.target_proto_addr())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the fixed Ethernet/IPv4 shape: hardware type 1, protocol `0x0800`, lengths 6, 4.
    pub fn set_ethernet_ipv4_shape(&mut self) {
        let data = self.buffer.as_mut();
        set_u16(data, field::HTYPE, HTYPE_ETHERNET);
        set_u16(data, field::PTYPE, PTYPE_IPV4);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: Operation) {
        set_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets the sender's MAC address.
    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender's IPv4 address.
    pub fn set_sender_proto_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr);
    }

    /// Sets the target's MAC address.
    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target's IPv4 address.
    pub fn set_target_proto_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr);
    }
}

/// The fields of an Ethernet/IPv4 ARP packet, for building and comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Request or reply.
    pub operation: Operation,
    /// Sender MAC.
    pub sender_hw_addr: MacAddr,
    /// Sender IPv4 address.
    pub sender_proto_addr: [u8; 4],
    /// Target MAC.
    pub target_hw_addr: MacAddr,
    /// Target IPv4 address.
    pub target_proto_addr: [u8; 4],
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_proto_addr: packet.sender_proto_addr(),
            target_hw_addr: packet.target_hw_addr(),
            target_proto_addr: packet.target_proto_addr(),
        }
    }

    /// Writes all [`PACKET_LEN`] bytes.
    ///
    /// # Panics
    /// If the buffer is shorter than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_ethernet_ipv4_shape();
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw_addr);
        packet.set_sender_proto_addr(self.sender_proto_addr);
        packet.set_target_hw_addr(self.target_hw_addr);
        packet.set_target_proto_addr(self.target_proto_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "Who has 10.0.0.254? Tell 10.0.0.1" from 02:00:00:00:00:01 (payload of a broadcast
    /// frame).
    const ARP_REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xfe,
    ];

    fn request_repr() -> Repr {
        Repr {
            operation: Operation::Request,
            sender_hw_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_proto_addr: [10, 0, 0, 1],
            target_hw_addr: MacAddr([0; 6]),
            target_proto_addr: [10, 0, 0, 254],
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.sender_hw_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_hw_addr(), MacAddr([0; 6]));
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(Repr::parse(&p), request_repr());
    }

    #[test]
    fn construct() {
        let mut buf = [0xaau8; 28];
        request_repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ARP_REQUEST);
    }

    #[test]
    fn reply_setters() {
        let mut buf = ARP_REQUEST;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_operation(Operation::Reply);
        p.set_target_hw_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        p.set_target_proto_addr([10, 0, 0, 1]);
        p.set_sender_hw_addr(MacAddr([2, 0, 0, 0, 0, 0xfe]));
        p.set_sender_proto_addr([10, 0, 0, 254]);
        assert_eq!(p.operation(), Operation::Reply);
        assert_eq!(buf[6..8], [0, 2]);
        assert_eq!(buf[8..18], [2, 0, 0, 0, 0, 0xfe, 10, 0, 0, 254]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&ARP_REQUEST[..27]).unwrap_err(),
            WireError::Truncated
        );
        let mut ipv6_ptype = ARP_REQUEST;
        ipv6_ptype[2] = 0x86;
        ipv6_ptype[3] = 0xdd;
        assert_eq!(
            Packet::new_checked(&ipv6_ptype[..]).unwrap_err(),
            WireError::Unsupported
        );
        let mut bad_hlen = ARP_REQUEST;
        bad_hlen[4] = 8;
        assert_eq!(
            Packet::new_checked(&bad_hlen[..]).unwrap_err(),
            WireError::Unsupported
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let r = Repr::parse(&p);
                let _ = (p.sender_ip(), p.target_ip(), p.hardware_type(), p.protocol_len());
                prop_assert_eq!(u16::from(r.operation), u16::from_be_bytes([data[6], data[7]]));
            }
        }
    }
}
