//! Scalar values written as strings in the TOML: IP addresses, MAC addresses, socket addresses.
//!
//! Each parses while deserializing, so a malformed value is refused at its own line:column with
//! an example of the expected form. Rejected alternative: keeping them as strings and parsing
//! in `validate` would report every malformed address at once, but every accessor would then
//! either re-parse or have to invent a value for a string that never parsed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::de::{Deserialize, Deserializer, Error as _};

/// An IPv4 or IPv6 address written as a string (`"192.0.2.10"`, `"2001:db8::10"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpValue(pub IpAddr);

impl<'de> Deserialize<'de> for IpValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim().parse().map(IpValue).map_err(|_| {
            D::Error::custom(format!(
                "expected an IP address such as \"192.0.2.10\" or \"2001:db8::10\", got \
                 {text:?}; write one address, without a prefix length or port"
            ))
        })
    }
}

/// A MAC address written as six hex bytes separated by `:` or `-` (`"02:00:00:00:00:01"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacValue(pub [u8; 6]);

impl MacValue {
    /// True for a group (multicast or broadcast) address: the I/G bit of the first byte.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for `00:00:00:00:00:00`.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (hex, either case, two digits per byte).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let separator = if text.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = text.split(separator);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl<'de> Deserialize<'de> for MacValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_mac(text.trim()).map(MacValue).ok_or_else(|| {
            D::Error::custom(format!(
                "expected a MAC address such as \"02:00:00:00:00:01\", got {text:?}; write six \
                 two-digit hex bytes separated by ':'"
            ))
        })
    }
}

/// An `address:port` written as a string (`"127.0.0.1:9100"`, `"[::1]:9100"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketValue(pub SocketAddr);

impl<'de> Deserialize<'de> for SocketValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim().parse().map(SocketValue).map_err(|_| {
            D::Error::custom(format!(
                "expected an address:port such as \"127.0.0.1:9100\" or \"[::1]:9100\", got \
                 {text:?}; write an IP address (IPv6 in brackets), a colon and a port"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_with_either_separator_and_case() {
        assert_eq!(parse_mac("02:00:00:00:00:fe"), Some([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(
            parse_mac("AA-bb-0C-dd-EE-0f"),
            Some([0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0x0f])
        );
        assert_eq!(
            MacValue([2, 0, 0, 0, 0, 0xfe]).to_string(),
            "02:00:00:00:00:fe"
        );
    }

    #[test]
    fn malformed_macs_are_refused() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:00",
            "002:00:00:00:00:0",
            "0g:00:00:00:00:00",
            "02:00-00:00:00:00",
            "+2:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn group_and_zero_macs_are_recognised() {
        assert!(MacValue([1, 0, 0x5e, 0, 0, 1]).is_group());
        assert!(MacValue([0xff; 6]).is_group());
        assert!(!MacValue([2, 0, 0, 0, 0, 1]).is_group());
        assert!(MacValue([0; 6]).is_zero());
    }
}
