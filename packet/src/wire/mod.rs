//! Zero-copy views over packet bytes: Ethernet (with one 802.1Q tag), ARP, IPv4, IPv6 (with its
//! extension-header chain), TCP, UDP, ICMPv4 and ICMPv6.
//!
//! What this module owns: the byte layout of every header the MUX and the host agent read or
//! write, and the validation that makes reading them safe. It owns no policy: whether a
//! fragment, an unknown protocol or a bad checksum is dropped is the pipeline's decision.
//!
//! # The contract
//!
//! Each format is a view `Packet<T: AsRef<[u8]>>` (`Frame<T>` for Ethernet) over a buffer it
//! does not copy; field offsets live in a private `mod field` of ranges; setters exist only when
//! `T: AsMut<[u8]>`.
//!
//! - `new_unchecked(buf)` wraps anything. Accessors on a view that was never checked may panic
//!   on a short buffer: use it only on bytes you just wrote or already validated.
//! - `new_checked(buf)` = `new_unchecked` + `check_len()`. **After `check_len()` (or
//!   `new_checked`) succeeds, no accessor panics**, whatever the bytes are. Accessors that depend
//!   on a length field (`payload()`, `header_len()`-bounded reads, the IPv6 extension-header
//!   walk) additionally clamp to the buffer, so even a view whose length fields were later
//!   changed through a setter never reads out of bounds.
//! - Views never allocate and never copy the payload; multi-byte fields are read with
//!   `from_be_bytes` on byte arrays (no casts to packed structs: unaligned references are UB
//!   and the crate denies `unsafe`).
//! - A buffer longer than the header says (`total_len` for IPv4, `payload_len` for IPv6, the
//!   UDP length) is accepted: Ethernet pads short frames to 60 bytes. `payload()` stops at the
//!   length the header states.
//! - **Truncated forms.** ICMP errors embed the offending datagram cut short (RFC 792 keeps the
//!   IP header and 8 bytes; RFC 4443 "as much as fits"). `ipv4::Packet::new_checked_truncated`
//!   and `ipv6::Packet::new_checked_truncated` validate everything except "the stated length
//!   fits in the buffer"; `payload()` and `upper_layer()` then return only what is present.
//!
//! Errors are one small `Copy` enum, [`WireError`], shared by all formats so the data path can
//! keep one counter per variant ([`WireError::index`], [`WireError::COUNT`]).
//!
//! Protocol numbers are *open* enums ([`EtherType`], [`IpProtocol`], …): every raw value
//! converts in (`From<u16>`/`From<u8>`) and back out losslessly; values without a named variant
//! are carried as `Unknown(raw)`. Build them with `From` so that a named value is never held as
//! `Unknown` (`IpProtocol::Unknown(6)` and `IpProtocol::Tcp` convert to the same byte but do not
//! compare equal).
//!
//! Rejected alternatives: owned header structs parsed up front (etherparse style) copy every
//! field of every header even when the pipeline reads three of them, and need a second code path
//! to write; `Option` instead of `Result` from `new_checked` would lose the drop reason the
//! counters need; a separate error type per format would make the pipeline's drop accounting a
//! tree of conversions.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;

/// Declares an open enum over an integer type: named variants plus `Unknown(raw)`, with
/// `From` conversions both ways (raw → enum maps every named value to its variant).
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            /// A value without a named variant, carried as its raw number.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// A byte range of a fixed-offset header field.
pub(crate) type Field = Range<usize>;

/// Why a view refused a buffer. Small and `Copy`: the data path counts these, one counter per
/// variant, and never formats them per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before a header (or the length a header states) does.
    Truncated,
    /// The IP version nibble is not the one the view parses (4 or 6).
    BadVersion,
    /// A header-length field is below its minimum (IPv4 IHL < 5, TCP data offset < 5).
    BadHeaderLen,
    /// The IPv4 total length is smaller than the IPv4 header.
    BadTotalLen,
    /// A length field other than the above is below its minimum (the UDP length < 8).
    BadLength,
    /// The IPv6 extension-header chain is malformed: a header runs past the stated payload, a
    /// hop-by-hop header is not first, a second fragment header appears, or the chain is longer
    /// than [`ipv6::MAX_EXTENSION_HEADERS`].
    BadExtensionHeader,
    /// The header is well formed but describes a variant the view does not parse (ARP for
    /// anything but Ethernet/IPv4).
    Unsupported,
}

impl WireError {
    /// Number of variants: the size of a per-variant counter array.
    pub const COUNT: usize = 7;

    /// Every variant, in [`WireError::index`] order.
    pub const ALL: [WireError; Self::COUNT] = [
        WireError::Truncated,
        WireError::BadVersion,
        WireError::BadHeaderLen,
        WireError::BadTotalLen,
        WireError::BadLength,
        WireError::BadExtensionHeader,
        WireError::Unsupported,
    ];

    /// A dense index in `0..COUNT`, for counter arrays.
    pub const fn index(self) -> usize {
        match self {
            WireError::Truncated => 0,
            WireError::BadVersion => 1,
            WireError::BadHeaderLen => 2,
            WireError::BadTotalLen => 3,
            WireError::BadLength => 4,
            WireError::BadExtensionHeader => 5,
            WireError::Unsupported => 6,
        }
    }

    /// A stable snake_case name, for metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLen => "bad_header_len",
            WireError::BadTotalLen => "bad_total_len",
            WireError::BadLength => "bad_length",
            WireError::BadExtensionHeader => "bad_extension_header",
            WireError::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            WireError::Truncated => "packet truncated",
            WireError::BadVersion => "wrong IP version",
            WireError::BadHeaderLen => "header length below minimum",
            WireError::BadTotalLen => "IPv4 total length smaller than its header",
            WireError::BadLength => "length field below minimum",
            WireError::BadExtensionHeader => "malformed IPv6 extension-header chain",
            WireError::Unsupported => "unsupported header variant",
        };
        f.write_str(text)
    }
}

impl std::error::Error for WireError {}

enum_with_unknown! {
    /// The EtherType of an Ethernet frame (IEEE 802.3 / IANA), as an open enum.
    pub enum EtherType(u16) {
        /// IPv4, `0x0800`.
        Ipv4 = 0x0800,
        /// ARP, `0x0806`.
        Arp = 0x0806,
        /// An IEEE 802.1Q VLAN tag (C-tag), `0x8100`.
        Vlan = 0x8100,
        /// IPv6, `0x86DD`.
        Ipv6 = 0x86DD,
    }
}

enum_with_unknown! {
    /// An IP protocol number / IPv6 next-header value (IANA "Assigned Internet Protocol
    /// Numbers"), as an open enum. Extension-header values are included because they appear in
    /// the same field.
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options header, `0`.
        HopByHop = 0,
        /// ICMP for IPv4, `1`.
        Icmp = 1,
        /// IPv4 encapsulated in IP (IPIP, RFC 2003), `4`.
        IpIp = 4,
        /// TCP, `6`.
        Tcp = 6,
        /// UDP, `17`.
        Udp = 17,
        /// IPv6 encapsulated in IP (RFC 2473 / 4213), `41`.
        Ipv6 = 41,
        /// IPv6 routing header, `43`.
        Ipv6Route = 43,
        /// IPv6 fragment header, `44`.
        Ipv6Frag = 44,
        /// ICMPv6, `58`.
        Icmpv6 = 58,
        /// IPv6 "no next header", `59`.
        Ipv6NoNxt = 59,
        /// IPv6 destination options header, `60`.
        Ipv6Opts = 60,
    }
}

/// A 48-bit Ethernet MAC address. Displays and parses as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The raw octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast, including broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMacAddrError;

impl fmt::Display for ParseMacAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address: expected six hex octets like 02:00:5e:10:00:01")
    }
}

impl std::error::Error for ParseMacAddrError {}

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Parses six colon- (or hyphen-) separated octets of one or two hex digits each.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for slot in &mut out {
            let part = parts.next().ok_or(ParseMacAddrError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacAddrError);
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| ParseMacAddrError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacAddrError);
        }
        Ok(MacAddr(out))
    }
}

/// Reads the big-endian `u16` at `field` (two bytes). Panics if the buffer is too short: callers
/// use it only within lengths their `check_len` guarantees.
#[inline]
pub(crate) fn get_u16(data: &[u8], field: Field) -> u16 {
    let b = &data[field];
    u16::from_be_bytes([b[0], b[1]])
}

/// Reads the big-endian `u32` at `field` (four bytes). Same contract as [`get_u16`].
#[inline]
pub(crate) fn get_u32(data: &[u8], field: Field) -> u32 {
    let b = &data[field];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Copies the bytes at `field` into an array of its length. Same contract as [`get_u16`].
#[inline]
pub(crate) fn get_array<const N: usize>(data: &[u8], field: Field) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&data[field]);
    out
}

/// Writes `value` big-endian at `field` (two bytes).
#[inline]
pub(crate) fn set_u16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian at `field` (four bytes).
#[inline]
pub(crate) fn set_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// `&data[start..end]` with both bounds clamped to the buffer (and `start` to `end`): never
/// panics.
#[inline]
pub(crate) fn clamped(data: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &data[start..end]
}

/// Mutable [`clamped`].
#[inline]
pub(crate) fn clamped_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &mut data[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_enums_round_trip() {
        assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
        assert_eq!(EtherType::from(0x88a8), EtherType::Unknown(0x88a8));
        assert_eq!(u16::from(EtherType::Ipv6), 0x86dd);
        assert_eq!(u16::from(EtherType::Unknown(0x1234)), 0x1234);
        assert_eq!(IpProtocol::from(4), IpProtocol::IpIp);
        assert_eq!(IpProtocol::from(41), IpProtocol::Ipv6);
        assert_eq!(u8::from(IpProtocol::Ipv6Frag), 44);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
        for raw in 0..=u8::MAX {
            assert_eq!(u8::from(IpProtocol::from(raw)), raw);
        }
    }

    #[test]
    fn wire_error_index_is_dense() {
        for (i, e) in WireError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(!e.name().is_empty());
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mac_display_and_parse() {
        let mac = MacAddr([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(mac.to_string(), "02:00:5e:10:ab:ff");
        assert_eq!("02:00:5e:10:ab:ff".parse::<MacAddr>(), Ok(mac));
        assert_eq!("02-00-5E-10-AB-FF".parse::<MacAddr>(), Ok(mac));
        assert_eq!("2:0:5e:10:ab:ff".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "02:00:5e:10:ab:fg",
            "02:00:5e:10:ab:+f",
            "002:00:5e:10:ab:ff",
            "02::5e:10:ab:ff",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacAddrError), "{bad:?}");
        }
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(mac.is_unicast());
    }

    proptest! {
        #[test]
        fn mac_round_trips(octets in any::<[u8; 6]>()) {
            let mac = MacAddr(octets);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }

        #[test]
        fn ethertype_round_trips(raw in any::<u16>()) {
            prop_assert_eq!(u16::from(EtherType::from(raw)), raw);
        }
    }
}
