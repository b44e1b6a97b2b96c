//! Shared helpers for the MUX's integration tests: a fixture configuration, a worker over the
//! in-memory port, and independent builders for the frames we expect the MUX to send.

#![allow(dead_code)]

pub mod netns;
pub mod process;
pub mod scratch;

use std::net::IpAddr;

use mux::control::compile::{self, CompileOptions};
use mux::control::registry::Registry;
use mux::dataplane::counters::{Family, WorkerCounters};
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::verdict::{DropReason, Reply, Verdict};
use mux::dataplane::worker::Worker;
use mux_packet::checksum;
use mux_ports::mem::{Capture, MemPort};

/// Next-hop MAC pinned in the fixture config.
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// Our MAC in the fixture config.
pub const MUX_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Tunnel sources in the fixture config.
pub const TUNNEL_V4: [u8; 4] = [10, 0, 0, 11];
pub const TUNNEL_V6: &str = "fd00::11";

/// A config with one backend per VIP, so the expected backend of each fixture is known.
pub const FIXTURE_CONFIG: &str = r#"
[mux]
name = "fixture"

[dataplane]
io = "mem"
mtu = 1500

[tunnel]
source_v4 = "10.0.0.11"
source_v6 = "fd00::11"

[next_hop]
mac = "02:00:00:00:00:fe"
source_mac = "02:00:00:00:00:01"

[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.1"

[[vip]]
name = "dns"
address = "192.0.2.53"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "10.1.0.2"

[[vip]]
name = "web6"
address = "2001:db8::10"
port = 443
protocol = "tcp"
  [[vip.backend]]
  address = "fd00:1::1"

[[vip]]
name = "v4-to-v6"
address = "192.0.2.20"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "fd00:1::2"

[[vip]]
name = "dns6-to-v4"
address = "2001:db8::53"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "10.1.0.3"

[[vip]]
name = "drained"
address = "192.0.2.30"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.9"
  state = "draining"
"#;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Compiles a config text into a snapshot (generation 1, fresh registry).
pub fn snapshot(text: &str) -> Snapshot {
    let cfg = mux::config::parse(text, "fixture.toml").expect("fixture config is valid");
    let mut registry = Registry::default();
    compile::compile(&cfg, &mut registry, 1, &CompileOptions::default()).expect("compiles")
}

/// The result of pushing frames through one worker.
pub struct Run {
    pub verdicts: Vec<Verdict>,
    pub transmitted: Vec<Vec<u8>>,
    pub to_kernel: Vec<Vec<u8>>,
    pub counters: WorkerCounters,
}

/// A worker over a capturing in-memory port, with a fixed flow-table seed.
pub fn worker(capacity: usize) -> Worker<MemPort> {
    Worker::new(
        MemPort::new(64, Capture::Keep),
        Pipeline::new(capacity, 7),
        32,
    )
}

/// Pushes `frames` through `worker` at time `now`, one burst at a time.
///
/// Every run checks the counters: they still partition the traffic ([`assert_partition`]) and
/// moved exactly as the verdicts the port acted on ([`assert_counters_follow_verdicts`]), so
/// every fixture of every test built on this helper is also a counter test.
pub fn run_on(worker: &mut Worker<MemPort>, snap: &Snapshot, now: u32, frames: &[Vec<u8>]) -> Run {
    let before = worker.pipeline.counters.clone();
    let mut verdicts = Vec::new();
    for chunk in frames.chunks(32) {
        for f in chunk {
            worker.port.inject(f.clone());
        }
        let n = worker.poll(snap, now);
        assert_eq!(n, chunk.len());
        verdicts.extend_from_slice(worker.last_verdicts(n));
    }
    let counters = &worker.pipeline.counters;
    assert_partition(counters);
    assert_counters_follow_verdicts(&before, counters, &verdicts);
    Run {
        verdicts,
        transmitted: worker.port.take_transmitted(),
        to_kernel: worker.port.take_to_kernel(),
        counters: worker.pipeline.counters.clone(),
    }
}

/// Asserts the counter partition (docs/offline-tools.md): every received frame has exactly one
/// outcome, `rx = forwarded + icmp_too_big_sent + drain_resets_sent + to_kernel + Σ drops`,
/// and each family of sub-counts (fragments and ICMP errors forwarded, second-chance packets)
/// sums to at most the outcome it is part of.
pub fn assert_partition(c: &WorkerCounters) {
    let outcomes = c.forwarded + c.icmp_too_big_sent + c.drain_resets_sent + c.to_kernel;
    assert_eq!(
        c.rx,
        outcomes + c.dropped_total(),
        "rx is not the sum of the outcomes: {c:?}"
    );
    assert_eq!(c.rx, c.outcomes_total(), "outcomes_total disagrees: {c:?}");
    let named = c.named();
    let value = |n: &str| named.iter().find(|(k, _)| k == n).expect("a counter").1;
    for family in Family::ALL {
        let Some(parent) = family.part_of() else {
            continue;
        };
        let sum: u64 = WorkerCounters::SCALAR_NAMES
            .iter()
            .zip(WorkerCounters::METRICS)
            .filter(|(_, (f, _))| f == family)
            .map(|(name, _)| value(name))
            .sum();
        assert!(
            sum <= value(parent),
            "{family:?} counts {sum}, more than {parent} ({}): {c:?}",
            value(parent)
        );
    }
}

/// Asserts that the outcome counters moved from `before` to `after` by exactly the number of
/// each verdict in `verdicts` (drops per reason), and `rx` by the number of frames.
pub fn assert_counters_follow_verdicts(
    before: &WorkerCounters,
    after: &WorkerCounters,
    verdicts: &[Verdict],
) {
    let count = |want: fn(&Verdict) -> bool| verdicts.iter().filter(|v| want(v)).count() as u64;
    let moved = [
        ("rx", after.rx - before.rx, verdicts.len() as u64),
        (
            "forwarded",
            after.forwarded - before.forwarded,
            count(|v| *v == Verdict::Forward),
        ),
        (
            "icmp_too_big_sent",
            after.icmp_too_big_sent - before.icmp_too_big_sent,
            count(|v| *v == Verdict::Reply(Reply::TooBig)),
        ),
        (
            "drain_resets_sent",
            after.drain_resets_sent - before.drain_resets_sent,
            count(|v| *v == Verdict::Reply(Reply::Reset)),
        ),
        (
            "to_kernel",
            after.to_kernel - before.to_kernel,
            count(|v| *v == Verdict::ToKernel),
        ),
    ];
    for (name, delta, expected) in moved {
        assert_eq!(
            delta, expected,
            "{name} moved by {delta}, verdicts say {expected}"
        );
    }
    for r in DropReason::ALL {
        let delta = after.dropped(*r) - before.dropped(*r);
        let expected = verdicts.iter().filter(|v| **v == Verdict::Drop(*r)).count() as u64;
        assert_eq!(
            delta, expected,
            "drop {r:?} moved by {delta}, verdicts say {expected}"
        );
    }
}

/// Pushes `frames` through a fresh worker.
pub fn run(snap: &Snapshot, frames: &[Vec<u8>]) -> Run {
    run_on(&mut worker(4096), snap, 100, frames)
}

/// The inner IP packet of a frame built with a `PacketBuilder` (Ethernet header and padding
/// removed), given its Ethernet header length.
pub fn inner_ip(frame: &[u8], l2_len: usize) -> Vec<u8> {
    let ip = &frame[l2_len..];
    let len = if ip[0] >> 4 == 4 {
        u16::from_be_bytes([ip[2], ip[3]]) as usize
    } else {
        40 + u16::from_be_bytes([ip[4], ip[5]]) as usize
    };
    ip[..len].to_vec()
}

/// The Ethernet header we expect on frames the MUX sends (next hop, our MAC, optional VLAN).
pub fn expected_eth(vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&NEXT_HOP_MAC);
    out.extend_from_slice(&MUX_MAC);
    if let Some(v) = vlan {
        out.extend_from_slice(&[0x81, 0x00]);
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out
}

/// The frame we expect for `inner` encapsulated in IPv4 toward `backend` — written byte by
/// byte from RFC 2003, independently of the MUX's code.
pub fn expected_ipip_v4(inner: &[u8], backend: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        ((u16::from_be_bytes([inner[0], inner[1]]) >> 4) & 0xff) as u8
    };
    let df = if inner_v4 { inner[6] & 0x40 != 0 } else { true };
    let mut out = expected_eth(vlan, 0x0800);
    let mut h = vec![0x45, tos];
    h.extend_from_slice(&((20 + inner.len()) as u16).to_be_bytes());
    // Identification: 0 for atomic (DF) datagrams (RFC 6864); otherwise the worker's counter,
    // which is 1 for the first such packet of a fresh worker.
    h.extend_from_slice(&(if df { 0u16 } else { 1 }).to_be_bytes());
    h.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h.push(64);
    h.push(if inner_v4 { 4 } else { 41 });
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&TUNNEL_V4);
    h.extend_from_slice(&backend);
    let c = checksum::internet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(inner);
    out
}

/// The frame we expect for `inner` encapsulated in IPv6 toward `backend` (RFC 2473), with
/// the given flow label.
pub fn expected_ipip_v6(
    inner: &[u8],
    backend: &str,
    flow_label: u32,
    vlan: Option<u16>,
) -> Vec<u8> {
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        ((u16::from_be_bytes([inner[0], inner[1]]) >> 4) & 0xff) as u8
    };
    let mut out = expected_eth(vlan, 0x86dd);
    let vtf = (6u32 << 28) | (u32::from(tos) << 20) | (flow_label & 0xfffff);
    out.extend_from_slice(&vtf.to_be_bytes());
    out.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    out.push(if inner_v4 { 4 } else { 41 });
    out.push(64);
    let src: std::net::Ipv6Addr = TUNNEL_V6.parse().unwrap();
    let dst: std::net::Ipv6Addr = backend.parse().unwrap();
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(inner);
    out
}
