//! Real traffic on real interfaces: the lab's packet generator, its sink, and the summary that
//! turns their reports into a verdict.
//!
//! # What it owns
//!
//! - [`generator`]: `perf gen` — N distinct flows (source address and port varied, reproducible from a
//!   seed) toward one destination, TCP (optionally a SYN then ACKs per flow) or UDP, at a fixed
//!   rate or flat out for a duration, through an AF_PACKET socket, by default in `sendmmsg`
//!   batches of consecutive frames (several flows per call); reports what it sent.
//! - [`sink`]: `perf sink` — counts and validates the IP-in-IP packets arriving on an interface
//!   (outer checksum and lengths, inner packet untouched and addressed to a VIP) and records,
//!   per inner flow, which backend (outer destination) and which MUX (outer source) carried it.
//!   Plain (not encapsulated) packets are counted too: they are the baseline's traffic.
//! - [`summary`]: `perf lab-summary` — reads the reports of a lab run (generator, sinks, MUX
//!   status before and after each round) and prints the table a person reads at a glance:
//!   packets per MUX and per backend, loss, rate, the ratio to the plain-forwarding baseline,
//!   the MUXes' CPU time per forwarded packet and the machine's, and whether every flow kept its backend whichever MUX carried it. With `--check` it
//!   fails on any broken expectation.
//! - This module: what the three share — the VIP/destination spec (`192.0.2.10:80/tcp`),
//!   prefixes, MAC addresses and the flow list.
//!
//! # Invariants
//!
//! - The flow list is a pure function of (prefix, count, seed): the generator's report carries
//!   the seed and the list, and a second run with the same arguments sends the same flows, which
//!   is how the lab checks that a flow keeps its backend when it moves to another MUX.
//! - The sink validates with its own parsing of the bytes (it does not reuse the MUX's parsers),
//!   so a bug in the MUX's header code cannot hide behind the same bug in the checker.
//! - Every received frame lands in exactly one class: valid encapsulated, invalid (with a
//!   reason), plain IP, or other (ARP, ND, ...).
//!
//! # Rejected alternatives
//!
//! - *trafgen / DPDK testpmd as the generator*: external packages with their own flow syntax and
//!   no report of which flows they sent; the lab needs the exact flow list to check backend
//!   consistency, and one binary the CI already builds.
//! - *One `send(2)` per frame* (the generator until issue 15 item 5, still `--tx single`): at
//!   0.4–0.6 Mpps on the 2-core machines here it was the same order as what the veth path
//!   forwards, so flat-out rounds measured the generator. The batches go through
//!   `mux_ports::afpacket::RawSocket::send_batch` (`sendmmsg`), so the `unsafe` stays in the
//!   ports crate with its SAFETY notes and this crate keeps `unsafe` denied.
//! - *The AF_XDP port or a TPACKET TX ring as the generator's transmit*: faster per frame, but
//!   the ports hand out buffers to fill per packet (AF_XDP also needs an XDP program on the
//!   client's veth); the generator sends the same prebuilt frames over and over, which
//!   `sendmmsg` takes as they are. The lab also reports CPU time per packet (the MUXes' and the
//!   machine's), which does not depend on how fast the generator is.

pub mod generator;
pub mod sink;
pub mod summary;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A service address: `ADDR:PORT/PROTO` (`192.0.2.10:80/tcp`, `[2001:db8::10]:443/tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Service {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// IP protocol number (6 or 17).
    pub protocol: u8,
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: expected ADDR:PORT/tcp or ADDR:PORT/udp (e.g. 192.0.2.10:80/tcp)");
        let (hostport, proto) = s.rsplit_once('/').ok_or_else(bad)?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => PROTO_TCP,
            "udp" => PROTO_UDP,
            _ => return Err(bad()),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addr: IpAddr = host.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Service {
            addr,
            port,
            protocol,
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = proto_name(self.protocol);
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{proto}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{proto}", self.port),
        }
    }
}

/// `"tcp"`, `"udp"` or the number.
pub fn proto_name(protocol: u8) -> String {
    match protocol {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        n => n.to_string(),
    }
}

/// An IP prefix: `198.51.100.0/24`, `2001:db8:1::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected ADDRESS/LENGTH (e.g. 198.51.100.0/24)");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        let p = Prefix { addr, len };
        Ok(Prefix {
            addr: p.nth(0),
            len,
        })
    }
}

impl Prefix {
    /// Host bits of the prefix (0 for a /32 or /128).
    fn host_bits(&self) -> u32 {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        u32::from(max - self.len)
    }

    /// Number of usable source addresses: the addresses of the prefix without the first and
    /// the last (network and broadcast for IPv4) when it has more than two; capped at 2^32.
    pub fn usable(&self) -> u64 {
        let bits = self.host_bits().min(32);
        let all = 1u64 << bits;
        if all > 2 { all - 2 } else { all }
    }

    /// The `i`-th usable address (`i < usable()`).
    pub fn host(&self, i: u64) -> IpAddr {
        let offset = if self.usable() < (1u64 << self.host_bits().min(32)) {
            i + 1
        } else {
            i
        };
        self.nth(u128::from(offset))
    }

    /// The network address plus `offset`, host bits only.
    fn nth(&self, offset: u128) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                let host = (offset as u32) & !mask;
                IpAddr::V4((u32::from(a) & mask | host).into())
            }
            IpAddr::V6(a) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                IpAddr::V6((u128::from(a) & mask | (offset & !mask)).into())
            }
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?}: expected a MAC address like 02:00:00:00:00:01");
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Formats a MAC address.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One client flow's source; the destination and protocol are the run's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowSource {
    /// Client address.
    pub src: IpAddr,
    /// Client port.
    pub sport: u16,
}

/// A flow's 5-tuple as the sink sees it in the inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Source port (0 when the packet has no ports, e.g. a non-first fragment).
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub protocol: u8,
}

impl fmt::Display for FiveTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{}",
            proto_name(self.protocol),
            self.src,
            self.sport,
            self.dst,
            self.dport
        )
    }
}

/// SplitMix64: a tiny, well-mixed, reproducible sequence (no dependency, same on every build).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Lowest client port used (ports below are left to well-known services).
pub const MIN_SOURCE_PORT: u16 = 1024;

/// `count` distinct flow sources in `prefix`, a pure function of the arguments. Errors when the
/// prefix cannot hold that many (address, port) pairs.
pub fn flow_sources(prefix: &Prefix, count: usize, seed: u64) -> Result<Vec<FlowSource>, String> {
    let ports = u64::from(u16::MAX - MIN_SOURCE_PORT) + 1;
    let space = prefix.usable().saturating_mul(ports);
    // Rejection sampling stays fast while the list fills at most half the space.
    if count as u64 > space / 2 {
        return Err(format!(
            "{count} flows do not fit in {prefix} ({space} address/port pairs; use at most half)"
        ));
    }
    let mut state = seed;
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let x = splitmix64(&mut state);
        let host = (x >> 16) % prefix.usable();
        let port = MIN_SOURCE_PORT + (x % ports) as u16;
        let f = FlowSource {
            src: prefix.host(host),
            sport: port,
        };
        if seen.insert(f) {
            out.push(f);
        }
    }
    Ok(out)
}

/// Ones' complement sum of 16-bit big-endian words (odd byte padded), not folded.
pub(crate) fn ones_sum(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits.
pub(crate) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_and_print() {
        let s: Service = "192.0.2.10:80/tcp".parse().unwrap();
        assert_eq!(s.addr, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!((s.port, s.protocol), (80, PROTO_TCP));
        assert_eq!(s.to_string(), "192.0.2.10:80/tcp");
        let s6: Service = "[2001:db8::10]:53/UDP".parse().unwrap();
        assert_eq!(s6.protocol, PROTO_UDP);
        assert_eq!(s6.to_string(), "[2001:db8::10]:53/udp");
        for bad in [
            "192.0.2.10:80",
            "192.0.2.10/tcp",
            "x:80/tcp",
            "192.0.2.10:0/tcp",
            "1.2.3.4:80/icmp",
        ] {
            assert!(bad.parse::<Service>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_clear_host_bits_and_skip_network_and_broadcast() {
        let p: Prefix = "198.51.100.77/24".parse().unwrap();
        assert_eq!(p.to_string(), "198.51.100.0/24");
        assert_eq!(p.usable(), 254);
        assert_eq!(p.host(0).to_string(), "198.51.100.1");
        assert_eq!(p.host(253).to_string(), "198.51.100.254");
        let one: Prefix = "203.0.113.5/32".parse().unwrap();
        assert_eq!(
            (one.usable(), one.host(0).to_string().as_str()),
            (1, "203.0.113.5")
        );
        let v6: Prefix = "2001:db8:1::/64".parse().unwrap();
        assert_eq!(
            v6.usable(),
            (1u64 << 32) - 2,
            "capped at 2^32, first and last skipped"
        );
        assert_eq!(v6.host(0).to_string(), "2001:db8:1::1");
        assert!("1.2.3.4/33".parse::<Prefix>().is_err());
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("02:00:0a:00:01:ff").unwrap();
        assert_eq!(m, [2, 0, 10, 0, 1, 255]);
        assert_eq!(format_mac(&m), "02:00:0a:00:01:ff");
        assert!(parse_mac("02:00:0a:00:01").is_err());
        assert!(parse_mac("02:00:0a:00:01:ff:00").is_err());
        assert!(parse_mac("zz:00:0a:00:01:ff").is_err());
    }

    #[test]
    fn flow_sources_are_distinct_in_prefix_and_reproducible() {
        let p: Prefix = "198.51.100.0/24".parse().unwrap();
        let a = flow_sources(&p, 5000, 7).unwrap();
        let b = flow_sources(&p, 5000, 7).unwrap();
        assert_eq!(a, b, "same seed, same flows");
        let c = flow_sources(&p, 5000, 8).unwrap();
        assert_ne!(a, c, "another seed, other flows");
        let set: HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 5000);
        for f in &a {
            let IpAddr::V4(v4) = f.src else { panic!() };
            let o = v4.octets();
            assert_eq!(&o[..3], &[198, 51, 100]);
            assert!((1..=254).contains(&o[3]));
            assert!(f.sport >= MIN_SOURCE_PORT);
        }
        // Many distinct addresses are used, not one address with many ports.
        let addrs: HashSet<_> = a.iter().map(|f| f.src).collect();
        assert!(addrs.len() > 200);
        let tiny: Prefix = "203.0.113.5/32".parse().unwrap();
        assert!(flow_sources(&tiny, 40_000, 1).is_err());
        assert_eq!(flow_sources(&tiny, 1000, 1).unwrap().len(), 1000);
    }

    #[test]
    fn checksum_helpers_match_the_shared_ones() {
        let data = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 7,
        ];
        assert_eq!(
            !fold(ones_sum(&data)),
            mux_packet::checksum::internet_checksum(&data)
        );
    }
}
