//! The canonical 5-tuple of a flow.
//!
//! One representation for IPv4 and IPv6 so that the flow table, the stable hash and Maglev never
//! branch on the address family: IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`,
//! RFC 4291 §2.5.5.2). The canonical byte form ([`FlowKey::canonical_bytes`]) is what the stable
//! hash consumes: every field big-endian, in a fixed order, so the same packet hashes to the same
//! value on every MUX, CPU and build.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of [`FlowKey::canonical_bytes`]: source (16) + destination (16) + source port (2) +
/// destination port (2) + protocol (1).
pub const CANONICAL_LEN: usize = 37;

/// A flow's 5-tuple, addresses in 16-byte (IPv4-mapped for IPv4) form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Source port; 0 for protocols without ports.
    pub src_port: u16,
    /// Destination port; 0 for protocols without ports.
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
}

impl FlowKey {
    /// Builds a key from IPv4 addresses.
    pub fn v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16, protocol: u8) -> Self {
        FlowKey {
            src: map_v4(src),
            dst: map_v4(dst),
            src_port,
            dst_port,
            protocol,
        }
    }

    /// Builds a key from IPv6 addresses.
    pub fn v6(src: [u8; 16], dst: [u8; 16], src_port: u16, dst_port: u16, protocol: u8) -> Self {
        FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        }
    }

    /// The same flow seen from the other direction (source and destination swapped).
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }

    /// The canonical big-endian bytes the stable hash is computed over.
    pub fn canonical_bytes(&self) -> [u8; CANONICAL_LEN] {
        let mut out = [0u8; CANONICAL_LEN];
        out[0..16].copy_from_slice(&self.src);
        out[16..32].copy_from_slice(&self.dst);
        out[32..34].copy_from_slice(&self.src_port.to_be_bytes());
        out[34..36].copy_from_slice(&self.dst_port.to_be_bytes());
        out[36] = self.protocol;
        out
    }

    /// The source as a standard library address (IPv4 when mapped).
    pub fn src_ip(&self) -> IpAddr {
        unmap(self.src)
    }

    /// The destination as a standard library address (IPv4 when mapped).
    pub fn dst_ip(&self) -> IpAddr {
        unmap(self.dst)
    }
}

/// IPv4-mapped IPv6 form of an IPv4 address.
pub fn map_v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..16].copy_from_slice(&a);
    out
}

/// Canonical 16-byte form of any address (IPv4-mapped for IPv4).
pub fn canonical_addr(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => map_v4(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Inverse of [`canonical_addr`]: IPv4-mapped addresses come back as IPv4.
pub fn unmap(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// True when the 16-byte address is IPv4-mapped.
pub fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0u8; 10] && a[10] == 0xff && a[11] == 0xff
}

/// The IPv4 address inside an IPv4-mapped address (the last four bytes).
pub fn v4_of(a: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(a[12], a[13], a[14], a[15])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_layout_is_fixed() {
        let key = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 40000, 80, 6);
        let b = key.canonical_bytes();
        assert_eq!(&b[0..16], &map_v4([10, 0, 0, 1]));
        assert_eq!(&b[16..32], &map_v4([192, 0, 2, 10]));
        assert_eq!(&b[32..34], &[0x9c, 0x40]);
        assert_eq!(&b[34..36], &[0x00, 0x50]);
        assert_eq!(b[36], 6);
    }

    #[test]
    fn reversed_twice_is_identity() {
        let key = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 40000, 80, 17);
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(key.reversed().src_port, 80);
    }

    #[test]
    fn mapping_round_trips() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(unmap(canonical_addr(v4)), v4);
        assert_eq!(unmap(canonical_addr(v6)), v6);
        assert!(is_v4_mapped(&canonical_addr(v4)));
        assert!(!is_v4_mapped(&canonical_addr(v6)));
    }
}
