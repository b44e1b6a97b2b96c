//! The MUX pipeline: bursts of frames through a worker over the in-memory port.
//!
//! `pipeline-structured` builds each frame from a description — IPv4 or IPv6, toward one of
//! the configured VIPs (TCP, UDP, an IPv4 VIP with an IPv6 backend and the reverse, a VIP whose
//! only backend drains) or elsewhere, TCP/UDP/ICMP (errors quoting a flow of the VIP, and
//! other messages), with VLAN tags, fragments, hop-by-hop headers, padding, payloads around the
//! MTU — then overwrites a few bytes and may cut it. `pipeline-raw` takes length-prefixed raw
//! frames ([`encode_frames`]).
//!
//! Checked for every input:
//! - every frame gets one verdict, counted once: `rx` is the number of frames; forwarded and
//!   replies are what the port transmitted, kernel-bound frames what it handed over, drops the
//!   sum of the drop counters; each outcome counter is the number of its verdicts, the outcomes
//!   sum to `rx`, and each sub-count family (fragments and ICMP errors forwarded, second-chance
//!   packets) is at most the outcome it is part of;
//! - a kernel-bound frame is the input, byte for byte;
//! - a forwarded frame is a valid IPv4 (checksum verified) or IPv6 outer header, protocol 4 or
//!   41 matching the inner version, whose payload is exactly the input's IP packet (padding
//!   removed) with its VLAN tag kept — "inner packets are forwarded unchanged";
//! - a reply is an ICMP "fragmentation needed" (checksums verified, at most 576 bytes) or an
//!   ICMPv6 "packet too big" (checksum verified, at most 1280 bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use mux::control::compile::{self, CompileOptions};
use mux::control::registry::Registry;
use mux::dataplane::counters::{Family, WorkerCounters};
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::verdict::{Reply, Verdict};
use mux::dataplane::worker::Worker;
use mux_packet::packet_builder::PacketBuilder;
use mux_packet::wire::{EtherType, IpProtocol, ethernet, icmpv4, icmpv6, ipv4, ipv6};
use mux_ports::MIN_HEADROOM;
use mux_ports::mem::{BUF_SIZE, Capture, MemPort};

use super::{PACKET_DICTIONARY, Target};
use crate::seeds;

/// Structured bursts toward the fuzz config's VIPs.
pub const STRUCTURED: Target = Target {
    name: "pipeline-structured",
    about: "MUX pipeline: bursts of v4/v6 TCP/UDP/ICMP frames (errors, fragments, VLAN, \
            hop-by-hop, MTU edges) built from structured input, then corrupted",
    run: run_structured,
    seeds: seeds::random_inputs,
    max_len: 4096,
    dictionary: &[],
};

/// Raw frames.
pub const RAW: Target = Target {
    name: "pipeline-raw",
    about: "MUX pipeline: raw frames (length-prefixed bursts), seeded with demo.pcap and the \
            packet fixtures",
    run: run_raw,
    seeds: raw_seeds,
    max_len: 8192,
    dictionary: PACKET_DICTIONARY,
};

/// The MUX configuration the pipeline targets run against.
pub const CONFIG: &str = r#"
[mux]
name = "fuzz"
[dataplane]
io = "mem"
mtu = 1500
[tunnel]
source_v4 = "10.0.0.11"
source_v6 = "fd00::11"
[next_hop]
mac = "02:00:00:00:00:fe"
source_mac = "02:00:00:00:00:01"
[timeouts]
tcp_syn = 5
tcp_established = 300
tcp_closing = 10
udp = 30

[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
  weight = 300
  [[vip.backend]]
  address = "fd00:1::3"
  [[vip.backend]]
  address = "10.1.0.4"
  state = "draining"

[[vip]]
name = "dns"
address = "192.0.2.53"
port = 53
protocol = "udp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.2"
  [[vip.backend]]
  address = "10.1.0.5"
  weight = 0

[[vip]]
name = "web6"
address = "2001:db8::10"
port = 443
protocol = "tcp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "fd00:1::1"
  [[vip.backend]]
  address = "10.1.0.6"

[[vip]]
name = "v4-to-v6"
address = "192.0.2.20"
port = 80
protocol = "tcp"
maglev_table_size = 1009
timeouts = { tcp_established = 60 }
  [[vip.backend]]
  address = "fd00:1::2"

[[vip]]
name = "dns6-to-v4"
address = "2001:db8::53"
port = 53
protocol = "udp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.3"

[[vip]]
name = "drained"
address = "192.0.2.30"
port = 80
protocol = "tcp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.9"
  state = "draining"
"#;

/// The VIPs of [`CONFIG`]: address, port, TCP (else UDP).
const VIPS: [(&str, u16, bool); 6] = [
    ("192.0.2.10", 80, true),
    ("192.0.2.53", 53, false),
    ("2001:db8::10", 443, true),
    ("192.0.2.20", 80, true),
    ("2001:db8::53", 53, false),
    ("192.0.2.30", 80, true),
];

/// The largest frame the in-memory port carries (it cuts longer ones).
const MAX_FRAME: usize = BUF_SIZE - MIN_HEADROOM;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let cfg = mux::config::parse(CONFIG, "fuzz.toml")
            .unwrap_or_else(|e| panic!("the pipeline fuzz config is invalid:\n{e}"));
        compile::compile(
            &cfg,
            &mut Registry::default(),
            1,
            &CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("the pipeline fuzz config does not compile: {e}"))
    })
}

/// A burst of frame descriptions; `again` replays the burst 200 s later (flow-table hits,
/// refreshes and expiry).
#[derive(Arbitrary, Debug)]
struct Burst {
    frames: Vec<FrameSpec>,
    again: bool,
}

#[derive(Arbitrary, Debug)]
struct FrameSpec {
    to: Destination,
    client: u16,
    transport: Transport,
    vlan: Option<u16>,
    tos: u8,
    ttl: u8,
    dont_frag: bool,
    fragment: Option<(u16, bool)>,
    hop_by_hop: bool,
    payload_len: u16,
    padding: u8,
    edits: Vec<(u16, u8)>,
    cut: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum Destination {
    /// VIP `n % 6`, on its port.
    Vip(u8),
    /// VIP `n % 6`'s address, on another port.
    VipAddress(u8, u16),
    /// Anything: IPv4 when the first byte is even.
    Other([u8; 16], u16),
}

#[derive(Arbitrary, Debug)]
enum Transport {
    /// TCP with these flags (the VIP's protocol decides TCP or UDP for `Auto`).
    Auto {
        src_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
    },
    /// An ICMP error from a router quoting `quote` bytes of a packet the VIP sent the client.
    IcmpError {
        kind: u8,
        code: u8,
        rest: u32,
        client_port: u16,
        quote: u16,
    },
    /// Any ICMP message.
    Icmp {
        msg_type: u8,
        code: u8,
        rest: u32,
    },
    Raw {
        protocol: u8,
    },
}

fn run_structured(data: &[u8]) {
    let Ok(burst) = Burst::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let frames: Vec<Vec<u8>> = burst.frames.iter().take(64).map(build).collect();
    check_bursts(&frames, burst.again);
}

fn run_raw(data: &[u8]) {
    check_bursts(&decode_frames(data), false);
}

/// A client address of the family of `dst`.
fn client_of(dst: IpAddr, n: u16) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, (n >> 8) as u8, n as u8)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, n)),
    }
}

fn build(spec: &FrameSpec) -> Vec<u8> {
    let vip = |n: u8| VIPS[usize::from(n) % VIPS.len()];
    let (dst, port, tcp): (IpAddr, u16, bool) = match spec.to {
        Destination::Vip(n) => {
            let (a, p, t) = vip(n);
            (a.parse().expect("VIP address"), p, t)
        }
        Destination::VipAddress(n, p) => {
            let (a, _, t) = vip(n);
            (a.parse().expect("VIP address"), p, t)
        }
        Destination::Other(bytes, p) if bytes[0] % 2 == 0 => (
            IpAddr::V4(Ipv4Addr::new(bytes[1], bytes[2], bytes[3], bytes[4])),
            p,
            bytes[5] % 2 == 0,
        ),
        Destination::Other(bytes, p) => (IpAddr::V6(Ipv6Addr::from(bytes)), p, bytes[5] % 2 == 0),
    };
    let client = client_of(dst, spec.client);
    let v4 = dst.is_ipv4();
    let mut b = match spec.transport {
        Transport::Auto { src_port, flags } if tcp => {
            PacketBuilder::tcp(client, src_port, dst, port, flags)
        }
        Transport::Auto { src_port, .. } | Transport::Udp { src_port } => {
            PacketBuilder::udp(client, src_port, dst, port)
        }
        Transport::IcmpError {
            kind,
            code,
            rest,
            client_port,
            quote,
        } => {
            let (router, types): (IpAddr, [u8; 4]) = if v4 {
                (IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), [3, 11, 12, 5])
            } else {
                (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1)),
                    [2, 1, 3, 4],
                )
            };
            let sent = if tcp {
                PacketBuilder::tcp(dst, port, client, client_port, 0x10)
            } else {
                PacketBuilder::udp(dst, port, client, client_port)
            }
            .payload_len(usize::from(quote % 1400))
            .build_ip();
            let quoted = &sent[..usize::from(quote).min(sent.len())];
            let msg_type = types[usize::from(kind) % types.len()];
            PacketBuilder::icmp(router, dst, msg_type, code % 6, rest).payload(quoted.to_vec())
        }
        Transport::Icmp {
            msg_type,
            code,
            rest,
        } => PacketBuilder::icmp(client, dst, msg_type, code, rest),
        Transport::Raw { protocol } => PacketBuilder::raw(client, dst, protocol),
    };
    if !matches!(spec.transport, Transport::IcmpError { .. }) {
        b = b.payload_len(usize::from(spec.payload_len % 1600));
    }
    b.vlan = spec.vlan.map(|v| v & 0x0fff);
    b.tos = spec.tos;
    b.ttl = spec.ttl;
    b.dont_frag = spec.dont_frag;
    b.fragment = spec
        .fragment
        .map(|(offset, more)| ((offset % 8192) * 8, more));
    b.hop_by_hop = spec.hop_by_hop && !v4;
    b.padding = usize::from(spec.padding % 64);
    let mut frame = b.build();
    for &(at, value) in spec.edits.iter().take(8) {
        let len = frame.len();
        frame[usize::from(at) % len] = value;
    }
    if let Some(cut) = spec.cut {
        frame.truncate(usize::from(cut) % (frame.len() + 1));
    }
    frame
}

/// Frames as `u16` big-endian length + bytes, repeated (what `pipeline-raw` reads).
pub fn encode_frames(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let len = f.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&f[..len]);
    }
    out
}

/// The inverse of [`encode_frames`]; a length past the end takes the rest; at most 64 frames.
pub fn decode_frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while data.len() >= 2 && frames.len() < 64 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
        frames.push(data[2..2 + len].to_vec());
        data = &data[2 + len..];
    }
    frames
}

fn raw_seeds() -> Vec<Vec<u8>> {
    let mut frames = seeds::demo_frames();
    frames.extend(seeds::fixture_frames());
    let mut out: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| encode_frames(std::slice::from_ref(f)))
        .collect();
    out.push(encode_frames(&frames[..frames.len().min(32)]));
    out
}

thread_local! {
    /// A worker kept between runs (its port's buffers are costly to allocate); each run gets a
    /// fresh pipeline, so a run depends on its input only. `None` after a run that panicked.
    static WORKER: std::cell::RefCell<Option<Worker<MemPort>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `frames` through a fresh pipeline (twice, 200 s apart, when `again`) and checks the
/// module's invariants.
fn check_bursts(frames: &[Vec<u8>], again: bool) {
    let frames: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| f[..f.len().min(MAX_FRAME)].to_vec())
        .collect();
    let snap = snapshot();
    let mut worker = WORKER.with(|w| w.borrow_mut().take()).unwrap_or_else(|| {
        Worker::new(MemPort::new(64, Capture::Keep), Pipeline::new(1024, 7), 32)
    });
    worker.pipeline = Pipeline::new(1024, 7);
    let rounds: &[u32] = if again { &[100, 300] } else { &[100] };
    let mut inputs = Vec::new();
    let mut verdicts = Vec::new();
    for &now in rounds {
        for chunk in frames.chunks(32) {
            for f in chunk {
                worker.port.inject(f.clone());
            }
            let n = worker.poll(snap, now);
            assert_eq!(n, chunk.len(), "the worker took a whole burst");
            verdicts.extend_from_slice(worker.last_verdicts(n));
            inputs.extend(chunk.iter());
        }
    }
    let transmitted = worker.port.take_transmitted();
    let kernel = worker.port.take_to_kernel();
    let counters = worker.pipeline.counters.clone();
    WORKER.with(|w| *w.borrow_mut() = Some(worker));

    let count = |f: fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
    assert_eq!(counters.rx, inputs.len() as u64, "rx counts every frame");
    assert_eq!(
        count(|v| matches!(v, Verdict::Forward | Verdict::Reply(_))),
        transmitted.len(),
        "forwarded and replies are what the port sent"
    );
    assert_eq!(
        count(|v| *v == Verdict::ToKernel),
        kernel.len(),
        "kernel verdicts are what the port handed over"
    );
    assert_eq!(
        count(|v| matches!(v, Verdict::Drop(_))) as u64,
        counters.dropped_total(),
        "every drop is counted once"
    );
    let outcomes = [
        (
            counters.forwarded,
            count(|v| *v == Verdict::Forward),
            "forwarded",
        ),
        (
            counters.icmp_too_big_sent,
            count(|v| *v == Verdict::Reply(Reply::TooBig)),
            "icmp_too_big_sent",
        ),
        (
            counters.drain_resets_sent,
            count(|v| *v == Verdict::Reply(Reply::Reset)),
            "drain_resets_sent",
        ),
        (
            counters.to_kernel,
            count(|v| *v == Verdict::ToKernel),
            "to_kernel",
        ),
    ];
    for (counted, verdicts, name) in outcomes {
        assert_eq!(counted, verdicts as u64, "{name} counts its verdicts");
    }
    assert_eq!(
        counters.outcomes_total(),
        counters.rx,
        "the outcomes partition rx"
    );
    let values = counters.scalars();
    let value = |name: &str| {
        let i = WorkerCounters::SCALAR_NAMES.iter().position(|n| *n == name);
        values[i.expect("a counter")]
    };
    for family in Family::ALL {
        if let Some(parent) = family.part_of() {
            let sum: u64 = WorkerCounters::METRICS
                .iter()
                .zip(&values)
                .filter(|((f, _), _)| f == family)
                .map(|(_, v)| v)
                .sum();
            assert!(sum <= value(parent), "{family:?} counts more than {parent}");
        }
    }
    let mut sent = transmitted.iter();
    let mut handed = kernel.iter();
    for (input, verdict) in inputs.iter().zip(&verdicts) {
        match verdict {
            Verdict::Forward => check_forwarded(input, sent.next().expect("a sent frame")),
            Verdict::Reply(Reply::TooBig) => check_too_big(sent.next().expect("a sent frame")),
            Verdict::Reply(Reply::Reset) => check_reset(sent.next().expect("a sent frame")),
            Verdict::ToKernel => assert_eq!(
                handed.next().expect("a kernel frame"),
                *input,
                "a kernel-bound frame is passed on unchanged"
            ),
            Verdict::Drop(_) => {}
        }
    }
}

/// A drain reset: a TCP RST from the VIP with valid checksums.
fn check_reset(out: &[u8]) {
    let eth = ethernet::Frame::new_checked(out).expect("a reset has an Ethernet header");
    let ip = ip_packet(out).expect("a reset carries an IP packet");
    let tcp_bytes = match eth.ethertype() {
        EtherType::Ipv4 => {
            let p = ipv4::Packet::new_checked(ip).expect("a valid IPv4 reset");
            assert!(p.verify_checksum(), "reset IPv4 checksum");
            &ip[usize::from(ip[0] & 0x0f) * 4..]
        }
        EtherType::Ipv6 => &ip[40..],
        other => panic!("reset with EtherType {other:?}"),
    };
    assert!(tcp_bytes.len() >= 20, "a whole TCP header");
    assert_ne!(tcp_bytes[13] & 0x04, 0, "the RST flag is set");
}

/// The IP packet a frame carries, without Ethernet header and padding, per its own length field.
fn ip_packet(frame: &[u8]) -> Option<&[u8]> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let ip = &frame[eth.header_len()..];
    let len = match ip.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
        _ => 40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
    };
    ip.get(..len)
}

fn check_forwarded(input: &[u8], out: &[u8]) {
    let eth = ethernet::Frame::new_checked(out).expect("a forwarded frame has an Ethernet header");
    let input_eth = ethernet::Frame::new_checked(input).expect("a forwarded input was Ethernet");
    assert_eq!(eth.vlan_id(), input_eth.vlan_id(), "the VLAN tag is kept");
    let ip = eth.payload();
    let (protocol, inner) = match eth.ethertype() {
        EtherType::Ipv4 => {
            let outer = ipv4::Packet::new_checked(ip).expect("a valid outer IPv4");
            assert!(outer.verify_checksum(), "outer IPv4 checksum");
            assert_eq!(outer.header_len(), 20);
            assert_eq!(usize::from(outer.total_len()), ip.len());
            (outer.protocol(), &ip[20..])
        }
        EtherType::Ipv6 => {
            let outer = ipv6::Packet::new_checked(ip).expect("a valid outer IPv6");
            assert_eq!(40 + usize::from(outer.payload_len()), ip.len());
            (outer.next_header(), &ip[40..])
        }
        other => panic!("forwarded with EtherType {other:?}"),
    };
    let inner_version = inner.first().map(|b| b >> 4);
    match protocol {
        IpProtocol::IpIp => assert_eq!(inner_version, Some(4), "protocol 4 carries IPv4"),
        IpProtocol::Ipv6 => assert_eq!(inner_version, Some(6), "protocol 41 carries IPv6"),
        other => panic!("outer protocol {other:?}"),
    }
    assert_eq!(
        Some(inner),
        ip_packet(input),
        "the inner packet is the input's IP packet, unchanged"
    );
}

fn check_too_big(out: &[u8]) {
    let eth = ethernet::Frame::new_checked(out).expect("a reply has an Ethernet header");
    match eth.ethertype() {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).expect("a valid IPv4 reply");
            assert!(ip.verify_checksum(), "reply IPv4 checksum");
            assert!(ip.total_len() <= 576, "an ICMP error fits 576 bytes");
            let icmp = icmpv4::Packet::new_checked(ip.payload()).expect("an ICMP header");
            assert!(icmp.verify_checksum(), "ICMP checksum");
            assert_eq!(
                (icmp.msg_type(), icmp.code()),
                (3, 4),
                "fragmentation needed"
            );
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).expect("a valid IPv6 reply");
            assert!(
                40 + usize::from(ip.payload_len()) <= 1280,
                "fits the IPv6 minimum MTU"
            );
            let icmp = icmpv6::Packet::new_checked(ip.payload()).expect("an ICMPv6 header");
            assert!(
                icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()),
                "ICMPv6 checksum"
            );
            assert_eq!((icmp.msg_type(), icmp.code()), (2, 0), "packet too big");
        }
        other => panic!("reply with EtherType {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_length_prefixed_encoding() {
        let frames = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        assert_eq!(decode_frames(&encode_frames(&frames)), frames);
        assert_eq!(decode_frames(&[0, 10, 1, 2]), vec![vec![1, 2]]);
    }

    #[test]
    fn the_config_compiles() {
        assert_eq!(snapshot().parts.vips.len(), VIPS.len());
    }
}
