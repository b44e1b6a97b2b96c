//! `perf sink`: counts and validates the encapsulated packets arriving on an interface.
//!
//! It stands in for the host agent in the lab: it reads every frame on the host's interface (an
//! AF_PACKET TPACKET_V3 ring, [`mux_ports::afpacket::AfPacketPort`]) for a fixed time,
//! classifies each one ([`classify`]) and tallies them ([`Tally`]); then it writes its report
//! and exits. It leaves nothing behind: no file but the report, no process, no interface state.
//!
//! An encapsulated frame (outer IPv4 or IPv6 carrying protocol 4 or 41) is *valid* when:
//! - the outer header is well formed: IPv4 version/IHL, header checksum, not a fragment;
//! - its lengths agree: the outer total length is the outer header plus the inner packet's own
//!   total length (inner + 20 for IPv4), and the frame holds the whole outer packet with no
//!   trailing bytes beyond the 60-byte Ethernet minimum;
//! - the inner packet is intact: an IPv4 header checksum that verifies, a TCP/UDP checksum that
//!   verifies (the MUX must not touch the client's packet);
//! - the inner packet is addressed to one of the VIPs (address, port, protocol).
//!
//! Anything else encapsulated is *invalid*, counted by reason. For each valid packet the sink
//! records the inner flow's 5-tuple with the backend it was sent to (outer destination) and the
//! MUX that sent it (outer source). Plain IP packets are counted as `plain` (the baseline's
//! traffic); those addressed to a VIP also as `plain_to_vip` (a MUX leaking unencapsulated VIP
//! traffic would show there). Everything else (ARP, ND, ICMP...) is `other`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mux_ports::afpacket::{AfPacketConfig, AfPacketPort, enter_netns};
use mux_ports::{PacketBuf, Port};

use super::{FiveTuple, PROTO_TCP, PROTO_UDP, Service, fold, ones_sum};

/// IP protocol number of IPv4-in-IP.
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP.
pub const PROTO_IPV6: u8 = 41;

/// What to listen for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSettings {
    /// Interface to read.
    pub interface: String,
    /// Enter this network namespace (`/run/netns/<name>`) first.
    pub netns: Option<String>,
    /// How long to listen.
    pub duration: Duration,
    /// The VIPs (inner destinations that are valid).
    pub vips: Vec<Service>,
    /// Created (empty) once the socket is bound, so a script knows when to start sending.
    pub ready_file: Option<PathBuf>,
}

/// One inner flow as the sink saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The inner 5-tuple.
    pub flow: FiveTuple,
    /// Valid packets of the flow.
    pub packets: u64,
    /// Packets per backend (outer destination); more than one key means the flow moved.
    pub backends: BTreeMap<IpAddr, u64>,
    /// Packets per MUX (outer source).
    pub muxes: BTreeMap<IpAddr, u64>,
}

/// The sink's report (the `--report` file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkReport {
    /// Interface read.
    pub interface: String,
    /// VIPs accepted as inner destinations.
    pub vips: Vec<String>,
    /// Requested listening time, seconds.
    pub duration_requested: f64,
    /// Frames read.
    pub frames: u64,
    /// Valid encapsulated packets.
    pub encapsulated: u64,
    /// Invalid encapsulated packets.
    pub invalid: u64,
    /// Invalid packets by reason.
    pub invalid_reasons: BTreeMap<String, u64>,
    /// Plain (not encapsulated) IP packets.
    pub plain: u64,
    /// Plain IP packets addressed to a VIP.
    pub plain_to_vip: u64,
    /// Plain TCP/UDP packets by destination (`addr:port/proto`).
    pub plain_per_destination: BTreeMap<String, u64>,
    /// Other frames (ARP, ND, ICMP, ...).
    pub other: u64,
    /// Frames the kernel dropped because the sink's ring was full, and frames too long for it.
    pub sink_drops: u64,
    /// Seconds from the first to the last valid encapsulated (or, if none, plain) packet.
    pub active_seconds: f64,
    /// Valid encapsulated packets per backend (outer destination).
    pub per_backend: BTreeMap<IpAddr, u64>,
    /// Valid encapsulated packets per MUX (outer source).
    pub per_mux: BTreeMap<IpAddr, u64>,
    /// Every inner flow seen, sorted by 5-tuple.
    pub flows: Vec<FlowRecord>,
}

/// How one frame was classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// A valid encapsulated packet.
    Encapsulated {
        /// Outer source (the MUX).
        mux: IpAddr,
        /// Outer destination (the backend).
        backend: IpAddr,
        /// The inner packet's flow.
        inner: FiveTuple,
    },
    /// An encapsulated packet that failed a check; the reason.
    Invalid(&'static str),
    /// A plain IP packet (not encapsulated); its 5-tuple (ports 0 if not TCP/UDP).
    Plain(FiveTuple),
    /// Not IP.
    Other,
}

/// A parsed IP header.
#[derive(Clone, Copy, Debug)]
struct Ip {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    header_len: usize,
    total_len: usize,
    /// Any fragment (first or not).
    fragment: bool,
    /// A non-first fragment (no transport header).
    later_fragment: bool,
    checksum_ok: bool,
}

fn parse_ip(b: &[u8]) -> Result<Ip, &'static str> {
    match b.first().map(|v| v >> 4) {
        Some(4) => {
            if b.len() < 20 {
                return Err("header");
            }
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
            if ihl < 20 || b.len() < ihl || total < ihl {
                return Err("header");
            }
            let frag = u16::from_be_bytes([b[6], b[7]]);
            let offset = frag & 0x1fff;
            let more = frag & 0x2000 != 0;
            Ok(Ip {
                src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
                dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
                protocol: b[9],
                header_len: ihl,
                total_len: total,
                fragment: offset != 0 || more,
                later_fragment: offset != 0,
                checksum_ok: fold(ones_sum(&b[..ihl])) == 0xffff,
            })
        }
        Some(6) => {
            if b.len() < 40 {
                return Err("header");
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&b[8..24]);
            dst.copy_from_slice(&b[24..40]);
            Ok(Ip {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
                protocol: b[6],
                header_len: 40,
                total_len: 40 + usize::from(u16::from_be_bytes([b[4], b[5]])),
                fragment: false,
                later_fragment: false,
                checksum_ok: true,
            })
        }
        _ => Err("header"),
    }
}

/// The pseudo-header sum for a transport checksum.
fn pseudo_sum(ip: &Ip, len: usize) -> u64 {
    let addr_sum = |a: &IpAddr| match a {
        IpAddr::V4(a) => ones_sum(&a.octets()),
        IpAddr::V6(a) => ones_sum(&a.octets()),
    };
    addr_sum(&ip.src) + addr_sum(&ip.dst) + u64::from(ip.protocol) + len as u64
}

/// Reads the ports of a TCP/UDP packet and verifies its checksum. `None` when it has none to
/// read (not TCP/UDP, or a later fragment).
fn transport(ip: &Ip, packet: &[u8]) -> Result<Option<(u16, u16)>, &'static str> {
    if !matches!(ip.protocol, PROTO_TCP | PROTO_UDP) || ip.later_fragment {
        return Ok(None);
    }
    let l4 = &packet[ip.header_len..ip.total_len];
    let min = if ip.protocol == PROTO_TCP { 20 } else { 8 };
    if l4.len() < min {
        return Err("inner_transport");
    }
    let ports = (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    if !ip.fragment {
        let skip = ip.protocol == PROTO_UDP && l4[6] == 0 && l4[7] == 0 && ip.src.is_ipv4();
        if !skip && fold(pseudo_sum(ip, l4.len()) + ones_sum(l4)) != 0xffff {
            return Err("inner_l4_checksum");
        }
    }
    Ok(Some(ports))
}

/// Classifies one Ethernet frame (see the module doc for the checks).
pub fn classify(frame: &[u8], vips: &[Service]) -> Class {
    let mut off = 12;
    let mut ethertype = match frame.get(12..14) {
        Some(t) => u16::from_be_bytes([t[0], t[1]]),
        None => return Class::Other,
    };
    while matches!(ethertype, 0x8100 | 0x88a8) {
        off += 4;
        ethertype = match frame.get(off..off + 2) {
            Some(t) => u16::from_be_bytes([t[0], t[1]]),
            None => return Class::Other,
        };
    }
    if !matches!(ethertype, 0x0800 | 0x86dd) {
        return Class::Other;
    }
    let packet = &frame[off + 2..];
    let Ok(outer) = parse_ip(packet) else {
        return Class::Other;
    };
    let encapsulated = matches!(outer.protocol, PROTO_IPIP | PROTO_IPV6);
    if !encapsulated {
        if packet.len() < outer.total_len || !outer.checksum_ok {
            return Class::Other;
        }
        let ports = transport(&outer, packet).ok().flatten().unwrap_or((0, 0));
        return Class::Plain(FiveTuple {
            src: outer.src,
            sport: ports.0,
            dst: outer.dst,
            dport: ports.1,
            protocol: outer.protocol,
        });
    }
    if !outer.checksum_ok {
        return Class::Invalid("outer_checksum");
    }
    if outer.fragment {
        return Class::Invalid("outer_fragment");
    }
    if packet.len() < outer.total_len {
        return Class::Invalid("outer_length_exceeds_frame");
    }
    if packet.len() > outer.total_len && frame.len() > 60 {
        return Class::Invalid("trailing_bytes");
    }
    let inner_bytes = &packet[outer.header_len..outer.total_len];
    let inner = match parse_ip(inner_bytes) {
        Ok(i) => i,
        Err(_) => return Class::Invalid("inner_header"),
    };
    let family_ok = (outer.protocol == PROTO_IPIP) == inner.src.is_ipv4();
    if !family_ok {
        return Class::Invalid("inner_family");
    }
    if inner.total_len != inner_bytes.len() {
        return Class::Invalid("outer_length");
    }
    if !inner.checksum_ok {
        return Class::Invalid("inner_checksum");
    }
    let ports = match transport(&inner, inner_bytes) {
        Ok(p) => p.unwrap_or((0, 0)),
        Err(reason) => return Class::Invalid(reason),
    };
    let flow = FiveTuple {
        src: inner.src,
        sport: ports.0,
        dst: inner.dst,
        dport: ports.1,
        protocol: inner.protocol,
    };
    if !vips
        .iter()
        .any(|v| v.addr == flow.dst && v.protocol == flow.protocol && v.port == flow.dport)
    {
        return Class::Invalid("not_a_vip");
    }
    Class::Encapsulated {
        mux: outer.src,
        backend: outer.dst,
        inner: flow,
    }
}

/// Running counts of a sink.
#[derive(Debug, Default)]
pub struct Tally {
    vips: Vec<Service>,
    report: SinkReport,
    flows: HashMap<FiveTuple, FlowRecord>,
    first: Option<Instant>,
    last: Option<Instant>,
    first_plain: Option<Instant>,
    last_plain: Option<Instant>,
}

impl Tally {
    /// A tally accepting `vips` as inner destinations.
    pub fn new(vips: Vec<Service>) -> Self {
        Tally {
            vips,
            ..Tally::default()
        }
    }

    /// Classifies and counts one frame received at `now`.
    pub fn add(&mut self, frame: &[u8], now: Instant) {
        self.report.frames += 1;
        match classify(frame, &self.vips) {
            Class::Encapsulated {
                mux,
                backend,
                inner,
            } => {
                self.report.encapsulated += 1;
                *self.report.per_backend.entry(backend).or_default() += 1;
                *self.report.per_mux.entry(mux).or_default() += 1;
                let rec = self.flows.entry(inner).or_insert_with(|| FlowRecord {
                    flow: inner,
                    packets: 0,
                    backends: BTreeMap::new(),
                    muxes: BTreeMap::new(),
                });
                rec.packets += 1;
                *rec.backends.entry(backend).or_default() += 1;
                *rec.muxes.entry(mux).or_default() += 1;
                self.first.get_or_insert(now);
                self.last = Some(now);
            }
            Class::Invalid(reason) => {
                self.report.invalid += 1;
                *self
                    .report
                    .invalid_reasons
                    .entry(reason.to_string())
                    .or_default() += 1;
            }
            Class::Plain(t) => {
                self.report.plain += 1;
                if self.vips.iter().any(|v| v.addr == t.dst) {
                    self.report.plain_to_vip += 1;
                }
                if matches!(t.protocol, PROTO_TCP | PROTO_UDP) {
                    let key = Service {
                        addr: t.dst,
                        port: t.dport,
                        protocol: t.protocol,
                    }
                    .to_string();
                    *self.report.plain_per_destination.entry(key).or_default() += 1;
                }
                self.first_plain.get_or_insert(now);
                self.last_plain = Some(now);
            }
            Class::Other => self.report.other += 1,
        }
    }

    /// The report so far.
    pub fn report(&self) -> SinkReport {
        let mut r = self.report.clone();
        r.vips = self.vips.iter().map(Service::to_string).collect();
        let span = match (self.first, self.last) {
            (Some(a), Some(b)) => Some(b - a),
            _ => match (self.first_plain, self.last_plain) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        };
        r.active_seconds = span.map_or(0.0, |d| d.as_secs_f64());
        let mut flows: Vec<FlowRecord> = self.flows.values().cloned().collect();
        flows.sort_by_key(|a| a.flow);
        r.flows = flows;
        r
    }
}

/// Why the sink could not run.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Entering the namespace, opening the port or writing the ready file failed.
    #[error("{0}")]
    Setup(String),
}

/// Listens for the configured duration, then returns the report.
pub fn run(settings: &SinkSettings, progress: impl Fn(&str)) -> Result<SinkReport, SinkError> {
    if let Some(ns) = &settings.netns {
        enter_netns(&Path::new("/run/netns").join(ns))
            .map_err(|e| SinkError::Setup(format!("cannot enter network namespace {ns}: {e}")))?;
    }
    let config = AfPacketConfig {
        block_count: 32,
        pool_size: 1024,
        ..AfPacketConfig::default()
    };
    let mut port = AfPacketPort::open(&settings.interface, &config)
        .map_err(|e| SinkError::Setup(e.to_string()))?;
    if let Some(path) = &settings.ready_file {
        std::fs::write(path, b"")
            .map_err(|e| SinkError::Setup(format!("cannot write {}: {e}", path.display())))?;
    }
    progress(&format!(
        "sink: listening on {} for {:.1} s",
        settings.interface,
        settings.duration.as_secs_f64()
    ));
    let mut tally = Tally::new(settings.vips.clone());
    let mut burst = Vec::with_capacity(256);
    let deadline = Instant::now() + settings.duration;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if port.recv(&mut burst, 256) == 0 {
            port.wait((deadline - now).min(Duration::from_millis(20)));
            continue;
        }
        for buf in &burst {
            tally.add(buf.data(), now);
        }
        port.free(&mut burst);
    }
    let stats = port.stats();
    let mut report = tally.report();
    report.interface = settings.interface.clone();
    report.duration_requested = settings.duration.as_secs_f64();
    report.sink_drops = stats.rx_dropped + stats.rx_oversize;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_packet::packet_builder::PacketBuilder;
    use mux_packet::packet_builder::tcp_flags::SYN;

    fn vips() -> Vec<Service> {
        vec!["192.0.2.10:80/tcp".parse().unwrap()]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Wraps the IP packet of `inner_frame` in an outer IPv4 header, built by hand.
    fn encap(inner_frame: &[u8], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let inner = &inner_frame[14..];
        let inner_len = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
        let inner = &inner[..inner_len];
        let mut f = inner_frame[..14].to_vec();
        let total = (20 + inner.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_IPIP, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = !fold(ones_sum(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(inner);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    fn fix_outer_checksum(f: &mut [u8]) {
        f[24..26].copy_from_slice(&[0, 0]);
        let c = !fold(ones_sum(&f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    fn client() -> Vec<u8> {
        PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, SYN)
            .payload_len(6)
            .build()
    }

    #[test]
    fn a_correct_encapsulation_is_valid_and_names_mux_backend_and_flow() {
        let f = encap(&client(), [10, 0, 11, 2], [10, 0, 21, 2]);
        assert_eq!(
            classify(&f, &vips()),
            Class::Encapsulated {
                mux: ip("10.0.11.2"),
                backend: ip("10.0.21.2"),
                inner: FiveTuple {
                    src: ip("198.51.100.7"),
                    sport: 40000,
                    dst: ip("192.0.2.10"),
                    dport: 80,
                    protocol: PROTO_TCP,
                },
            }
        );
        // An 802.1Q tag in front changes nothing.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0, 0, 100]);
        tagged.extend_from_slice(&f[12..]);
        assert!(matches!(
            classify(&tagged, &vips()),
            Class::Encapsulated { .. }
        ));
    }

    #[test]
    fn each_broken_property_is_reported_with_its_reason() {
        let good = encap(&client(), [10, 0, 11, 2], [10, 0, 21, 2]);
        let reason = |f: &[u8]| match classify(f, &vips()) {
            Class::Invalid(r) => r,
            other => panic!("expected invalid, got {other:?}"),
        };
        let mut f = good.clone();
        f[14 + 10] ^= 1;
        assert_eq!(reason(&f), "outer_checksum");
        // Outer total length one byte too long (checksum fixed up): the frame is short of it.
        let mut f = good.clone();
        f[14 + 3] += 1;
        fix_outer_checksum(&mut f);
        assert_eq!(reason(&f), "outer_length_exceeds_frame");
        // The inner packet modified (a port rewritten without fixing the checksum).
        let mut f = good.clone();
        f[34 + 20 + 1] ^= 0x55;
        assert_eq!(reason(&f), "inner_l4_checksum");
        // The inner IPv4 header modified (TTL decremented, checksum stale).
        let mut f = good.clone();
        f[34 + 8] -= 1;
        assert_eq!(reason(&f), "inner_checksum");
        // Addressed to something that is not a VIP.
        let other = PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 81, SYN)
            .payload_len(6)
            .build();
        assert_eq!(
            reason(&encap(&other, [10, 0, 11, 2], [10, 0, 21, 2])),
            "not_a_vip"
        );
        // Garbage after the packet in a frame longer than the minimum.
        let big = PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, SYN)
            .payload_len(100)
            .build();
        let mut f = encap(&big, [10, 0, 11, 2], [10, 0, 21, 2]);
        f.extend_from_slice(&[0; 4]);
        assert_eq!(reason(&f), "trailing_bytes");
        // Protocol 41 announced but IPv4 inside.
        let mut f = good.clone();
        f[14 + 9] = PROTO_IPV6;
        fix_outer_checksum(&mut f);
        assert_eq!(reason(&f), "inner_family");
    }

    #[test]
    fn plain_and_other_frames_are_not_encapsulated_traffic() {
        let plain = PacketBuilder::udp(ip("198.51.100.7"), 4000, ip("10.0.21.2"), 9)
            .payload_len(18)
            .build();
        assert!(matches!(classify(&plain, &vips()), Class::Plain(t) if t.dport == 9));
        let mut arp = vec![0xffu8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.resize(60, 0);
        assert_eq!(classify(&arp, &vips()), Class::Other);
        assert_eq!(classify(&[1, 2, 3], &vips()), Class::Other);
    }

    #[test]
    fn the_tally_records_each_flow_with_its_backends_and_muxes() {
        let mut t = Tally::new(vips());
        let now = Instant::now();
        let a = encap(&client(), [10, 0, 11, 2], [10, 0, 21, 2]);
        let b = encap(&client(), [10, 0, 12, 2], [10, 0, 21, 2]);
        t.add(&a, now);
        t.add(&a, now);
        t.add(&b, now + Duration::from_millis(500));
        let mut bad = a.clone();
        bad[24] ^= 1;
        t.add(&bad, now);
        t.add(&client(), now);
        let r = t.report();
        assert_eq!((r.frames, r.encapsulated, r.invalid, r.plain), (5, 3, 1, 1));
        assert_eq!(r.plain_to_vip, 1);
        assert_eq!(r.invalid_reasons.get("outer_checksum"), Some(&1));
        assert_eq!(r.per_mux.get(&ip("10.0.11.2")), Some(&2));
        assert_eq!(r.per_mux.get(&ip("10.0.12.2")), Some(&1));
        assert_eq!(r.flows.len(), 1);
        assert_eq!(r.flows[0].packets, 3);
        assert_eq!(r.flows[0].backends.len(), 1);
        assert_eq!(r.flows[0].muxes.len(), 2);
        assert!((r.active_seconds - 0.5).abs() < 1e-6);
        let json = serde_json::to_string(&r).unwrap();
        let back: SinkReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
