//! Flow behaviour across packets, reloads and MUXes: consistency, stickiness, draining,
//! removal, failure, timeouts, SYN floods, fragments, ICMP errors and counter accounting.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use mux::control::compile::{self, CompileOptions, FailedBackend, FlowClock};
use mux::control::registry::Registry;
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::verdict::{Reply, Verdict};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};

fn config(backends: &[(&str, &str, u32)], extra: &str) -> String {
    let mut s = String::from(
        r#"
[mux]
name = "flows"
[dataplane]
io = "mem"
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
"#,
    );
    for (addr, state, weight) in backends {
        s.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{addr}\"\n  state = \"{state}\"\n  weight = {weight}\n"
        ));
    }
    s.push_str(extra);
    s
}

fn three() -> String {
    config(
        &[
            ("10.1.0.1", "active", 100),
            ("10.1.0.2", "active", 100),
            ("10.1.0.3", "active", 100),
        ],
        "",
    )
}

fn compile_with(
    text: &str,
    registry: &mut Registry,
    generation: u64,
    options: &CompileOptions,
) -> Snapshot {
    let cfg = mux::config::parse(text, "flows.toml").expect("valid");
    compile::compile(&cfg, registry, generation, options).expect("compiles")
}

/// A TCP packet of client `i` (distinct source address and port per i).
fn client_packet(i: u32, flags: u8) -> Vec<u8> {
    let src = std::net::Ipv4Addr::from(0xc633_0000u32 + (i >> 8)); // 198.51.x.y
    PacketBuilder::tcp(
        src.into(),
        1024 + (i & 0xff) as u16,
        ip("192.0.2.10"),
        80,
        flags,
    )
    .build()
}

/// The backend (outer destination, IPv4) of each transmitted frame.
fn backends_of(frames: &[Vec<u8>]) -> Vec<[u8; 4]> {
    frames
        .iter()
        .map(|f| f[30..34].try_into().unwrap())
        .collect()
}

/// A VIP of the determinism test: name, address, port and backends `(address, weight)`.
type TestVip<'a> = (&'a str, &'a str, u16, &'a [(&'a str, u32)]);

/// One MUX's config for the determinism test: its VIPs in the given order, each with its
/// backends in the given order.
fn mux_config(name: &str, vips: &[TestVip<'_>]) -> String {
    let mut s = format!(
        "[mux]\nname = \"{name}\"\n[dataplane]\nio = \"mem\"\n[tunnel]\n\
         source_v4 = \"10.0.0.11\"\nsource_v6 = \"fd00::11\"\n[next_hop]\n\
         mac = \"02:00:00:00:00:fe\"\nsource_mac = \"02:00:00:00:00:01\"\n"
    );
    for (vip, address, port, backends) in vips {
        s.push_str(&format!(
            "[[vip]]\nname = \"{vip}\"\naddress = \"{address}\"\nport = {port}\n\
             protocol = \"tcp\"\nmaglev_table_size = 1009\n"
        ));
        for (backend, weight) in *backends {
            s.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{backend}\"\n  weight = {weight}\n"
            ));
        }
    }
    s
}

/// The outer destination (the backend) of each transmitted frame, IPv4 or IPv6 outer header.
fn outer_destinations(frames: &[Vec<u8>]) -> Vec<std::net::IpAddr> {
    frames
        .iter()
        .map(|f| match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 => std::net::IpAddr::from(<[u8; 4]>::try_from(&f[30..34]).unwrap()),
            _ => std::net::IpAddr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()),
        })
        .collect()
}

/// "Same answer on every MUX" (docs/architecture.md): two MUXes that parsed and compiled the same service
/// from their own files — backends listed in another order, VIPs in another order, registries
/// of their own that numbered VIPs and backends differently — send every flow to the same
/// backend address, without sharing any state.
#[test]
fn same_flow_same_backend_on_every_mux() {
    let web_a: &[(&str, u32)] = &[
        ("10.1.0.1", 100),
        ("10.1.0.2", 100),
        ("10.1.0.3", 200),
        ("fd00:1::4", 100),
        ("10.1.0.5", 50),
    ];
    let web_b: &[(&str, u32)] = &[
        ("10.1.0.5", 50),
        ("fd00:1::4", 100),
        ("10.1.0.2", 100),
        ("10.1.0.3", 200),
        ("10.1.0.1", 100),
    ];
    let web6_a: &[(&str, u32)] = &[("fd00:1::1", 100), ("10.1.0.2", 100), ("fd00:1::3", 100)];
    let web6_b: &[(&str, u32)] = &[("fd00:1::3", 100), ("fd00:1::1", 100), ("10.1.0.2", 100)];
    let text_a = mux_config(
        "mux-a",
        &[
            ("web", "192.0.2.10", 80, web_a),
            ("web6", "2001:db8::10", 443, web6_a),
        ],
    );
    let text_b = mux_config(
        "mux-b",
        &[
            ("web6", "2001:db8::10", 443, web6_b),
            ("web", "192.0.2.10", 80, web_b),
        ],
    );
    // MUX B has lived longer: an earlier config numbered other VIPs and backends first.
    let mut registry_b = Registry::default();
    compile_with(&three(), &mut registry_b, 1, &CompileOptions::default());
    let mut registry_a = Registry::default();
    let snap_a = compile_with(&text_a, &mut registry_a, 1, &CompileOptions::default());
    let snap_b = compile_with(&text_b, &mut registry_b, 2, &CompileOptions::default());
    // The two MUXes really numbered things differently (else this test would prove little).
    let web_ids = |snap: &Snapshot| {
        let web = snap.parts.vips.iter().find(|v| v.name == "web").unwrap();
        (web.id, web.maglev_backends.clone())
    };
    assert_ne!(web_ids(&snap_a), web_ids(&snap_b));

    let mut packets: Vec<_> = (0..2000).map(|i| client_packet(i, SYN)).collect();
    packets.extend((0..1000u16).map(|i| {
        let src = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, i >> 4, i);
        PacketBuilder::tcp(src.into(), 1024 + i, ip("2001:db8::10"), 443, SYN).build()
    }));
    // Two workers whose flow tables use different in-process seeds.
    let mut mux_a = worker(1 << 14);
    let mut mux_b = mux::dataplane::worker::Worker::new(
        mux_ports::mem::MemPort::new(64, mux_ports::mem::Capture::Keep),
        mux::dataplane::pipeline::Pipeline::new(1 << 14, 0xdead_beef),
        32,
    );
    let a = run_on(&mut mux_a, &snap_a, 1, &packets);
    let b = run_on(&mut mux_b, &snap_b, 1, &packets);
    assert_eq!(a.transmitted.len(), packets.len());
    assert_eq!(b.transmitted.len(), packets.len());
    let (to_a, to_b) = (
        outer_destinations(&a.transmitted),
        outer_destinations(&b.transmitted),
    );
    let differ = to_a.iter().zip(&to_b).filter(|(x, y)| x != y).count();
    assert_eq!(
        differ,
        0,
        "{differ} of {} flows went to another backend",
        packets.len()
    );

    // And the spread follows the weights (100:100:200:100:50 of 550 for web).
    let mut share: HashMap<std::net::IpAddr, usize> = HashMap::new();
    for be in &to_a[..2000] {
        *share.entry(*be).or_default() += 1;
    }
    assert_eq!(share.len(), 5);
    for (backend, weight) in web_a {
        let n = share[&ip(backend)];
        let expected = 2000 * *weight as usize / 550;
        assert!(
            n * 10 >= expected * 7 && n * 10 <= expected * 13,
            "{backend} (weight {weight}) got {n} of 2000 flows, expected about {expected}"
        );
    }
    let web6: std::collections::HashSet<_> = to_a[2000..].iter().collect();
    assert_eq!(web6.len(), 3, "web6's flows reach all three backends");
}

#[test]
fn flows_stick_to_their_backend_until_it_is_removed() {
    let mut registry = Registry::default();
    let before = compile_with(&three(), &mut registry, 1, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let syns: Vec<_> = (0..600).map(|i| client_packet(i, SYN)).collect();
    let acks: Vec<_> = (0..600).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &before, 1, &syns).transmitted);

    // Reload adding a fourth backend: Maglev changes, established flows do not.
    let four = config(
        &[
            ("10.1.0.1", "active", 100),
            ("10.1.0.2", "active", 100),
            ("10.1.0.3", "active", 100),
            ("10.1.0.4", "active", 100),
        ],
        "",
    );
    let grown = compile_with(&four, &mut registry, 2, &CompileOptions::default());
    let out = run_on(&mut w, &grown, 2, &acks);
    assert_eq!(
        backends_of(&out.transmitted),
        first,
        "a reload moved established flows"
    );
    assert_eq!(out.counters.flow_hits, 600);
    // A fresh worker (no flow state) would have moved about a quarter of them.
    let fresh = backends_of(&run(&grown, &acks).transmitted);
    let moved = fresh.iter().zip(&first).filter(|(a, b)| a != b).count();
    assert!(
        (90..=220).contains(&moved),
        "Maglev moved {moved} of 600 new-flow slots"
    );

    // Draining 10.1.0.1: its flows stay, new flows avoid it.
    let drain = config(
        &[
            ("10.1.0.1", "draining", 100),
            ("10.1.0.2", "active", 100),
            ("10.1.0.3", "active", 100),
        ],
        "",
    );
    let drained = compile_with(&drain, &mut registry, 3, &CompileOptions::default());
    let out = run_on(&mut w, &drained, 3, &acks);
    assert_eq!(backends_of(&out.transmitted), first, "draining moved flows");
    let newcomers: Vec<_> = (1000..1300).map(|i| client_packet(i, SYN)).collect();
    let out = run_on(&mut w, &drained, 3, &newcomers);
    assert!(
        backends_of(&out.transmitted)
            .iter()
            .all(|b| *b != [10, 1, 0, 1])
    );

    // Removing 10.1.0.1: its flows are re-hashed, the others stay.
    let removed_cfg = config(
        &[("10.1.0.2", "active", 100), ("10.1.0.3", "active", 100)],
        "",
    );
    let removed = compile_with(&removed_cfg, &mut registry, 4, &CompileOptions::default());
    let rehashed_before = w.pipeline.counters.flows_rehashed;
    let out = run_on(&mut w, &removed, 4, &acks);
    let after = backends_of(&out.transmitted);
    let on_removed = first.iter().filter(|b| **b == [10, 1, 0, 1]).count();
    assert!(on_removed > 100);
    assert_eq!(
        out.counters.flows_rehashed - rehashed_before,
        on_removed as u64
    );
    for (a, b) in first.iter().zip(&after) {
        if *a == [10, 1, 0, 1] {
            assert_ne!(*b, [10, 1, 0, 1]);
        } else {
            assert_eq!(a, b, "a flow on a surviving backend moved");
        }
    }
}

/// Compile options failing `addr` of VIP `web` at second `at` of a flow clock that started
/// at `origin`.
fn failing(addr: &str, origin: Instant, at: u64) -> CompileOptions {
    CompileOptions {
        failed: vec![FailedBackend {
            vip: "web".to_string(),
            backend: ip(addr),
            since: origin + Duration::from_secs(at),
        }],
        clock: FlowClock {
            origin,
            origin_unix: SystemTime::now(),
        },
        ..CompileOptions::default()
    }
}

/// 300 flows established at second 1 over the three healthy backends of [`three`].
struct Established {
    registry: Registry,
    healthy: Snapshot,
    w: mux::dataplane::worker::Worker<mux_ports::mem::MemPort>,
    /// An ACK of each flow, in flow order.
    acks: Vec<Vec<u8>>,
    /// The backend each flow went to.
    first: Vec<[u8; 4]>,
}

fn established_on_three() -> Established {
    let mut registry = Registry::default();
    let healthy = compile_with(&three(), &mut registry, 1, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    Established {
        registry,
        healthy,
        w,
        acks,
        first,
    }
}

#[test]
fn a_failed_backend_keeps_its_flows_for_the_grace_then_they_move() {
    let origin = Instant::now();
    let Established {
        mut registry,
        mut w,
        acks,
        first,
        ..
    } = established_on_three();
    let on_failed = first.iter().filter(|b| **b == [10, 1, 0, 2]).count();
    assert!(on_failed > 50);

    // 10.1.0.2 fails at second 10; the default grace is 5 s.
    let options = failing("10.1.0.2", origin, 10);
    let sick = compile_with(&three(), &mut registry, 2, &options);
    let out = run_on(&mut w, &sick, 10, &acks);
    assert_eq!(
        backends_of(&out.transmitted),
        first,
        "nothing moves within the grace"
    );
    assert_eq!(out.counters.failed_backend_grace_hits, on_failed as u64);
    // New flows avoid it at once.
    let newcomers: Vec<_> = (1000..1300).map(|i| client_packet(i, SYN)).collect();
    let out = run_on(&mut w, &sick, 11, &newcomers);
    assert!(
        backends_of(&out.transmitted)
            .iter()
            .all(|b| *b != [10, 1, 0, 2])
    );

    // A reload (or any recompile) while it stays failed keeps the deadline.
    let reloaded = compile_with(&three(), &mut registry, 3, &options);
    let out = run_on(&mut w, &reloaded, 14, &acks);
    assert_eq!(
        backends_of(&out.transmitted),
        first,
        "a reload restarted or ended the grace"
    );
    assert_eq!(out.counters.flows_rehashed_after_grace, 0);

    // Second 15: the grace is over; its flows are re-hashed, once each, and counted.
    let out = run_on(&mut w, &reloaded, 15, &acks);
    let after = backends_of(&out.transmitted);
    assert!(after.iter().all(|b| *b != [10, 1, 0, 2]));
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(moved, on_failed, "only the failed backend's flows moved");
    assert_eq!(out.counters.flows_rehashed_after_grace, on_failed as u64);
    assert_eq!(out.counters.flows_rehashed, 0);
    let out = run_on(&mut w, &reloaded, 16, &acks);
    assert_eq!(
        backends_of(&out.transmitted),
        after,
        "re-hashed flows stick"
    );
    assert_eq!(out.counters.flows_rehashed_after_grace, on_failed as u64);
}

#[test]
fn a_new_connection_on_a_kept_4_tuple_leaves_a_failed_backend() {
    // A client that reuses its port for a new connection while the old connection's entry is
    // still kept (closing, or within the grace) must not be sent to the dead backend: the grace
    // keeps connections the backend carried, and a bare SYN starts another one.
    let origin = Instant::now();
    let Established {
        mut registry,
        healthy,
        mut w,
        acks,
        first,
        ..
    } = established_on_three();
    let fins: Vec<_> = (0..300).map(|i| client_packet(i, FIN | ACK)).collect();
    assert_eq!(
        backends_of(&run_on(&mut w, &healthy, 2, &fins).transmitted),
        first
    );
    let on_failed = first.iter().filter(|b| **b == [10, 1, 0, 2]).count();
    assert!(on_failed > 50);

    let sick = compile_with(&three(), &mut registry, 2, &failing("10.1.0.2", origin, 10));
    let syns: Vec<_> = (0..300).map(|i| client_packet(i, SYN)).collect();
    let out = run_on(&mut w, &sick, 11, &syns);
    let after = backends_of(&out.transmitted);
    assert!(
        after.iter().all(|b| *b != [10, 1, 0, 2]),
        "a new connection was sent to the failed backend"
    );
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(moved, on_failed, "only the failed backend's 4-tuples moved");
    assert_eq!(out.counters.flows_rehashed_new_on_failed, on_failed as u64);
    assert_eq!(out.counters.failed_backend_grace_hits, 0);

    // The new connection sticks to where it went, and the entry is a new one (SYN-only): its
    // handshake completes there.
    let out = run_on(&mut w, &sick, 12, &acks);
    assert_eq!(backends_of(&out.transmitted), after);
    assert_eq!(out.counters.failed_backend_grace_hits, 0);
}

#[test]
fn a_backend_that_recovers_within_its_grace_keeps_every_flow() {
    let origin = Instant::now();
    let Established {
        mut registry,
        mut w,
        acks,
        first,
        ..
    } = established_on_three();

    // A host agent restarts: its backend is failed at second 10 and back at second 13.
    let sick = compile_with(&three(), &mut registry, 2, &failing("10.1.0.2", origin, 10));
    run_on(&mut w, &sick, 12, &acks);
    let recovered = compile_with(&three(), &mut registry, 3, &CompileOptions::default());
    for now in [13, 15, 60] {
        let out = run_on(&mut w, &recovered, now, &acks);
        assert_eq!(
            backends_of(&out.transmitted),
            first,
            "a flow moved at second {now}"
        );
    }
    let c = &w.pipeline.counters;
    assert_eq!(
        (c.flows_rehashed, c.flows_rehashed_after_grace),
        (0, 0),
        "recovery within the grace moves nothing"
    );
    assert_eq!(c.flow_hits, 300 * 4);
}

#[test]
fn grace_zero_rehashes_at_once_as_before() {
    let origin = Instant::now();
    let mut registry = Registry::default();
    let text = three().replace("udp = 30\n", "udp = 30\nfailed_backend_grace = 0\n");
    let healthy = compile_with(&text, &mut registry, 1, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let sick = compile_with(&text, &mut registry, 2, &failing("10.1.0.2", origin, 10));
    let after = backends_of(&run_on(&mut w, &sick, 10, &acks).transmitted);
    assert!(after.iter().all(|b| *b != [10, 1, 0, 2]));
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(moved, first.iter().filter(|b| **b == [10, 1, 0, 2]).count());
    assert_eq!(w.pipeline.counters.flows_rehashed_after_grace, moved as u64);
}

#[test]
fn entries_expire_by_state() {
    let snap = snapshot(&three());
    let mut w = worker(1 << 12);
    run_on(&mut w, &snap, 100, &[client_packet(1, SYN)]);
    assert_eq!(w.pipeline.counters.new_flows, 1);
    // SYN-only entries live 5 s.
    run_on(&mut w, &snap, 104, &[client_packet(1, SYN)]);
    assert_eq!(w.pipeline.counters.flow_hits, 1);
    run_on(&mut w, &snap, 110, &[client_packet(1, ACK)]);
    assert_eq!(
        w.pipeline.counters.new_flows, 2,
        "the SYN-only entry expired"
    );
    // Established entries live 300 s from their last packet.
    run_on(&mut w, &snap, 400, &[client_packet(1, ACK)]);
    assert_eq!(w.pipeline.counters.flow_hits, 2);
    run_on(&mut w, &snap, 701, &[client_packet(1, ACK)]);
    assert_eq!(w.pipeline.counters.new_flows, 3);
    // Closing entries live 10 s.
    run_on(&mut w, &snap, 702, &[client_packet(1, FIN | ACK)]);
    run_on(&mut w, &snap, 713, &[client_packet(1, ACK)]);
    assert_eq!(w.pipeline.counters.new_flows, 4);
    assert_eq!(w.pipeline.flow_table().live_entries(713), 1);
}

#[test]
fn a_syn_flood_does_not_evict_established_flows() {
    let snap = snapshot(&three());
    // A tiny table: 64 entries (16 buckets of 4), 12 established flows that all fit.
    let mut w = worker(64);
    let established: Vec<_> = (0..12).map(|i| client_packet(i, ACK)).collect();
    run_on(&mut w, &snap, 1, &established);
    assert_eq!(w.pipeline.flow_table().live_entries(1), 12);
    let flood: Vec<_> = (10_000..20_000).map(|i| client_packet(i, SYN)).collect();
    let out = run_on(&mut w, &snap, 1, &flood);
    assert_eq!(
        out.counters.forwarded,
        12 + 10_000,
        "flood packets are still forwarded"
    );
    assert!(
        out.counters.flows_evicted > 9000,
        "the flood churned only its own half-open entries"
    );
    assert_eq!(
        w.pipeline.flow_table().live_entries(1),
        64,
        "SYNs took every free slot"
    );
    let hits_before = w.pipeline.counters.flow_hits;
    run_on(&mut w, &snap, 2, &established);
    assert_eq!(
        w.pipeline.counters.flow_hits - hits_before,
        12,
        "an established flow was evicted"
    );
}

#[test]
fn fragments_of_a_datagram_stay_together_on_every_mux() {
    let text = config(
        &[
            ("10.1.0.1", "active", 100),
            ("10.1.0.2", "active", 100),
            ("10.1.0.3", "active", 100),
        ],
        r#"
[[vip]]
name = "dns"
address = "192.0.2.53"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
  [[vip.backend]]
  address = "10.1.0.3"
"#,
    );
    let snap = snapshot(&text);
    let mut seen = std::collections::HashSet::new();
    for i in 0..200u32 {
        let src = std::net::Ipv4Addr::from(0xc633_0000u32 + i);
        let first = PacketBuilder::udp(src.into(), 5353, ip("192.0.2.53"), 53)
            .payload_len(1000)
            .fragment(0, true)
            .build();
        let last = PacketBuilder::udp(src.into(), 5353, ip("192.0.2.53"), 53)
            .payload_len(200)
            .fragment(1008, false)
            .build();
        let a = backends_of(&run(&snap, &[first.clone(), last.clone()]).transmitted);
        let b = backends_of(&run(&snap, &[last, first]).transmitted);
        assert_eq!(a[0], a[1], "fragments split");
        assert_eq!(a[0], b[0], "another MUX (order) chose another backend");
        seen.insert(a[0]);
    }
    assert_eq!(seen.len(), 3, "fragments are still spread over backends");
}

#[test]
fn icmp_errors_reach_the_backend_that_owns_the_flow() {
    let snap = snapshot(&three());
    let mut w = worker(1 << 12);
    for i in 0..100u32 {
        let src = std::net::Ipv4Addr::from(0xc633_0000u32 + (i >> 8));
        let sport = 1024 + (i & 0xff) as u16;
        let data = run_on(&mut w, &snap, 1, &[client_packet(i, ACK)]);
        let sent = PacketBuilder::tcp(ip("192.0.2.10"), 80, src.into(), sport, ACK)
            .payload_len(1400)
            .build_ip();
        let icmp = PacketBuilder::icmp(ip("203.0.113.1"), ip("192.0.2.10"), 3, 4, 1300)
            .payload(sent[..28].to_vec())
            .build();
        let err = run_on(&mut w, &snap, 1, &[icmp]);
        assert_eq!(
            backends_of(&err.transmitted),
            backends_of(&data.transmitted)
        );
        // And without flow state (another MUX), Maglev agrees.
        let icmp_again = PacketBuilder::icmp(ip("203.0.113.1"), ip("192.0.2.10"), 3, 4, 1300)
            .payload(sent[..28].to_vec())
            .build();
        assert_eq!(
            backends_of(&run(&snap, &[icmp_again]).transmitted),
            backends_of(&data.transmitted)
        );
    }
    assert_eq!(w.pipeline.counters.icmp_errors_forwarded, 100);
    assert_eq!(
        w.pipeline.counters.new_flows, 100,
        "ICMP errors create no flows"
    );
}

#[test]
fn every_frame_is_accounted_for() {
    let snap = snapshot(FIXTURE_CONFIG);
    let mut frames = Vec::new();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, ACK)
        .payload_len(30)
        .build();
    for _ in 0..5000 {
        let mut f = base.clone();
        // Corrupt a few random bytes, and sometimes cut the frame.
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % f.len();
            f[i] = next() as u8;
        }
        if next() % 3 == 0 {
            f.truncate((next() as usize) % f.len());
        }
        frames.push(f);
    }
    let out = run(&snap, &frames);
    let c = &out.counters;
    assert_eq!(c.rx, 5000);
    assert_eq!(
        c.forwarded + c.icmp_too_big_sent + c.drain_resets_sent + c.to_kernel + c.dropped_total(),
        c.rx
    );
    assert_eq!(
        out.transmitted.len() as u64,
        c.forwarded + c.icmp_too_big_sent + c.drain_resets_sent
    );
    assert_eq!(out.to_kernel.len() as u64, c.to_kernel);
    assert!(out.verdicts.iter().any(|v| matches!(v, Verdict::Drop(_))));
}

#[test]
fn the_icmp_bucket_suppresses_and_counts() {
    let text = FIXTURE_CONFIG.replace(
        "mtu = 1500\n",
        "mtu = 1500\nicmp_rate = 2\nicmp_burst = 5\n",
    );
    let snap = snapshot(&text);
    let mut w = worker(1 << 12);
    let too_big = |i: u16| {
        PacketBuilder::tcp(ip("198.51.100.7"), 40000 + i, ip("192.0.2.10"), 80, ACK)
            .payload_len(1460)
            .build()
    };
    let too_big6 = |i: u16| {
        PacketBuilder::tcp(ip("2001:db8:c::7"), 40000 + i, ip("2001:db8::10"), 443, ACK)
            .payload_len(1440)
            .build()
    };
    let flood: Vec<_> = (0..10).map(too_big).chain((0..10).map(too_big6)).collect();
    let limited = |c: &mux::dataplane::counters::WorkerCounters| {
        c.dropped(mux::dataplane::verdict::DropReason::IcmpRateLimited)
    };

    // The bucket starts full: its depth (5) goes out, the rest is dropped and counted.
    let out = run_on(&mut w, &snap, 10, &flood);
    assert_eq!(out.counters.icmp_too_big_sent, 5);
    assert_eq!(limited(&out.counters), 15);
    assert_eq!(out.transmitted.len(), 5);
    assert_eq!(
        out.verdicts
            .iter()
            .filter(|v| **v == Verdict::Drop(mux::dataplane::verdict::DropReason::IcmpRateLimited))
            .count(),
        15
    );
    // One second later: 2 more tokens. Normal traffic is not affected by an empty bucket.
    let mut mixed = flood.clone();
    mixed.push(client_packet(1, ACK));
    let out = run_on(&mut w, &snap, 11, &mixed);
    assert_eq!(out.counters.icmp_too_big_sent, 5 + 2);
    assert_eq!(limited(&out.counters), 15 + 18);
    assert_eq!(out.counters.forwarded, 1);
    // A long pause refills to the depth, not beyond.
    let out = run_on(&mut w, &snap, 100, &flood);
    assert_eq!(out.counters.icmp_too_big_sent, 7 + 5);
    let c = &out.counters;
    assert_eq!(
        c.forwarded + c.icmp_too_big_sent + c.to_kernel + c.dropped_total(),
        c.rx
    );
}

/// Web (TCP) and dns (UDP) over 10.1.0.1..3, with `drain` replaced by its draining form.
fn tcp_and_udp(drain: Option<&str>, extra: &str) -> String {
    let backends = "  [[vip.backend]]\n  address = \"10.1.0.1\"\n\
                    [[vip.backend]]\n  address = \"10.1.0.2\"\n\
                    [[vip.backend]]\n  address = \"10.1.0.3\"\n";
    let text = config(
        &[
            ("10.1.0.1", "active", 100),
            ("10.1.0.2", "active", 100),
            ("10.1.0.3", "active", 100),
        ],
        &format!(
            "[[vip]]\nname = \"dns\"\naddress = \"192.0.2.53\"\nport = 53\nprotocol = \"udp\"\n{backends}"
        ),
    );
    let text = text.replace("[timeouts]\n", &format!("{extra}[timeouts]\n"));
    match drain {
        Some(d) => text
            .replace(
                "  address = \"10.1.0.1\"\n  state = \"active\"\n",
                &format!("  address = \"10.1.0.1\"\n  state = \"draining\"\n{d}"),
            )
            .replace(
                "  address = \"10.1.0.1\"\n[[vip.backend]]",
                &format!("  address = \"10.1.0.1\"\n  state = \"draining\"\n{d}[[vip.backend]]"),
            ),
        None => text,
    }
}

/// A flow clock on which 2026-12-05T10:00:00Z is second 50.
fn clock_deadline_at_50() -> FlowClock {
    FlowClock {
        origin: Instant::now(),
        origin_unix: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_800 - 50),
    }
}

const DEADLINE: &str = "  drain_deadline = 2026-12-05T10:00:00Z\n";

fn udp_packet(i: u32) -> Vec<u8> {
    let src = std::net::Ipv4Addr::from(0xc633_0000u32 + (i >> 8));
    PacketBuilder::udp(src.into(), 1024 + (i & 0xff) as u16, ip("192.0.2.53"), 53)
        .payload_len(20)
        .build()
}

/// Per packet: `Some(backend)` for a forwarded frame, `None` for a reset; drops are skipped.
fn outcomes(out: &Run) -> Vec<Option<[u8; 4]>> {
    let mut frames = out.transmitted.iter();
    out.verdicts
        .iter()
        .filter_map(|v| match v {
            Verdict::Forward => Some(Some(frames.next().unwrap()[30..34].try_into().unwrap())),
            Verdict::Reply(Reply::Reset) => {
                let f = frames.next().unwrap();
                assert_eq!(f[47] & 0x04, 0x04, "a reset carries RST");
                Some(None)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_drain_deadline_resets_tcp_and_moves_udp() {
    let mut registry = Registry::default();
    let healthy = compile_with(
        &tcp_and_udp(None, ""),
        &mut registry,
        1,
        &CompileOptions::default(),
    );
    let mut w = worker(1 << 14);
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let udps: Vec<_> = (0..300).map(udp_packet).collect();
    let tcp_first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let udp_first = backends_of(&run_on(&mut w, &healthy, 1, &udps).transmitted);
    let drained_tcp = tcp_first.iter().filter(|b| **b == [10, 1, 0, 1]).count();
    let drained_udp = udp_first.iter().filter(|b| **b == [10, 1, 0, 1]).count();
    assert!(drained_tcp > 50 && drained_udp > 50);

    // Reload: 10.1.0.1 drains until its deadline, second 50 of the flow clock.
    let options = CompileOptions {
        clock: clock_deadline_at_50(),
        ..CompileOptions::default()
    };
    let draining = compile_with(&tcp_and_udp(Some(DEADLINE), ""), &mut registry, 2, &options);
    // Before the deadline: every flow stays, new flows avoid it.
    for now in [10, 30, 49] {
        assert_eq!(
            backends_of(&run_on(&mut w, &draining, now, &acks).transmitted),
            tcp_first
        );
        assert_eq!(
            backends_of(&run_on(&mut w, &draining, now, &udps).transmitted),
            udp_first
        );
    }
    let newcomers: Vec<_> = (1000..1300).map(|i| client_packet(i, SYN)).collect();
    let out = run_on(&mut w, &draining, 49, &newcomers);
    assert!(
        backends_of(&out.transmitted)
            .iter()
            .all(|b| *b != [10, 1, 0, 1])
    );
    assert_eq!(w.pipeline.counters.drain_resets_sent, 0);

    // At the deadline: its TCP flows get a reset (no segment reaches it), its UDP flows move.
    let out = run_on(&mut w, &draining, 50, &acks);
    let got = outcomes(&out);
    for (before, now) in tcp_first.iter().zip(&got) {
        match now {
            None => assert_eq!(
                *before,
                [10, 1, 0, 1],
                "a flow of another backend was reset"
            ),
            Some(b) => assert_eq!(b, before, "a flow of another backend moved"),
        }
    }
    assert_eq!(out.counters.drain_resets_sent, drained_tcp as u64);
    let out = run_on(&mut w, &draining, 50, &udps);
    let udp_after = backends_of(&out.transmitted);
    assert!(udp_after.iter().all(|b| *b != [10, 1, 0, 1]));
    let moved = udp_first
        .iter()
        .zip(&udp_after)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        moved, drained_udp,
        "only the drained backend's UDP flows moved"
    );
    assert_eq!(out.counters.flows_rehashed_after_drain, drained_udp as u64);

    // Afterwards the backend receives nothing at all: a reset flow's entry is gone, so a
    // retransmission is a new flow on an active backend (which answers it with its own reset).
    let out = run_on(&mut w, &draining, 51, &acks);
    assert!(
        outcomes(&out)
            .iter()
            .all(|b| b.is_some_and(|b| b != [10, 1, 0, 1]))
    );
    assert_eq!(
        out.counters.drain_resets_sent, drained_tcp as u64,
        "one reset per flow"
    );
    let c = &out.counters;
    assert_eq!(
        c.forwarded + c.icmp_too_big_sent + c.drain_resets_sent + c.to_kernel + c.dropped_total(),
        c.rx
    );
}

#[test]
fn drain_resets_are_rate_limited_and_retried() {
    let mut registry = Registry::default();
    let limits = "[dataplane]\nio = \"mem\"\ndrain_reset_rate = 2\ndrain_reset_burst = 5\n";
    let text = |drain| tcp_and_udp(drain, "").replace("[dataplane]\nio = \"mem\"\n", limits);
    let healthy = compile_with(&text(None), &mut registry, 1, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let drained: Vec<_> = acks
        .iter()
        .zip(&first)
        .filter(|(_, b)| **b == [10, 1, 0, 1])
        .map(|(p, _)| p.clone())
        .take(20)
        .collect();
    let options = CompileOptions {
        clock: clock_deadline_at_50(),
        ..CompileOptions::default()
    };
    let draining = compile_with(&text(Some(DEADLINE)), &mut registry, 2, &options);
    let limited = mux::dataplane::verdict::DropReason::DrainResetRateLimited;
    let out = run_on(&mut w, &draining, 50, &drained);
    assert_eq!(out.counters.drain_resets_sent, 5, "the bucket's depth");
    assert_eq!(out.counters.dropped(limited), 15);
    assert!(
        out.transmitted.len() == 5,
        "a suppressed reset is not replaced by forwarding"
    );
    // The suppressed flows kept their entries: their retransmissions get resets as tokens come.
    let out = run_on(&mut w, &draining, 51, &drained);
    assert_eq!(out.counters.drain_resets_sent, 5 + 2);
    let out = run_on(&mut w, &draining, 60, &drained);
    assert_eq!(out.counters.drain_resets_sent, 5 + 2 + 5);
}

/// The id of backend `addr`.
fn backend_id(snap: &Snapshot, addr: &str) -> usize {
    let addr = mux_packet::flow_key::canonical_addr(ip(addr));
    snap.parts
        .backends
        .iter()
        .position(|b| b.as_ref().is_some_and(|b| b.address == addr))
        .expect("configured")
}

#[test]
fn per_backend_flow_counts_reach_zero_after_a_drain_deadline() {
    use mux::dataplane::clock::BurstTime;
    use mux::dataplane::worker::WorkerStats;
    use std::sync::atomic::Ordering;
    let mut registry = Registry::default();
    let healthy = compile_with(
        &tcp_and_udp(None, ""),
        &mut registry,
        1,
        &CompileOptions::default(),
    );
    let options = CompileOptions {
        clock: clock_deadline_at_50(),
        ..CompileOptions::default()
    };
    let draining = compile_with(&tcp_and_udp(Some(DEADLINE), ""), &mut registry, 2, &options);
    let ids: Vec<usize> = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
        .iter()
        .map(|a| backend_id(&healthy, a))
        .collect();
    let mut w = worker(1 << 14);
    let stats = WorkerStats::default();
    // A 16 Ki-entry table (4 Ki buckets) is swept in one publish.
    let census = |w: &mut mux::dataplane::worker::Worker<_>, snap: &Snapshot, now: u32| {
        let sweeps = stats.census_sweeps.load(Ordering::Relaxed);
        w.publish(&stats, snap, BurstTime::from_secs(now));
        assert_eq!(stats.census_sweeps.load(Ordering::Relaxed), sweeps + 1);
        let flows = stats.backend_flows.lock().unwrap();
        (
            ids.iter().map(|&id| flows[id]).collect::<Vec<u32>>(),
            stats.live_flows.load(Ordering::Relaxed),
        )
    };
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let on = |b: [u8; 4]| first.iter().filter(|x| **x == b).count() as u32;
    let expected = vec![on([10, 1, 0, 1]), on([10, 1, 0, 2]), on([10, 1, 0, 3])];
    assert_eq!(census(&mut w, &healthy, 1), (expected.clone(), 300));
    // Draining before its deadline: its flows still count (they still reach it).
    assert_eq!(census(&mut w, &draining, 10), (expected.clone(), 300));
    // From the deadline it receives nothing: 0 at once, even before its flows send a packet
    // (their entries are still in the table until then).
    let mut after = expected.clone();
    after[0] = 0;
    assert_eq!(census(&mut w, &draining, 50), (after.clone(), 300));
    // Their next packets are reset and their entries removed.
    run_on(&mut w, &draining, 50, &acks);
    assert_eq!(
        census(&mut w, &draining, 51),
        (after, u64::from(300 - expected[0]))
    );

    // Without a deadline, a drain ends as its flows end: FINs, then the closing timeout.
    let mut registry = Registry::default();
    let healthy = compile_with(&three(), &mut registry, 1, &CompileOptions::default());
    let drain = three().replacen("state = \"active\"", "state = \"draining\"", 1);
    let draining = compile_with(&drain, &mut registry, 2, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let id = backend_id(&draining, "10.1.0.1");
    let fins: Vec<_> = (0..300)
        .filter(|i| first[*i as usize] == [10, 1, 0, 1])
        .map(|i| client_packet(i, FIN | ACK))
        .collect();
    let stats = WorkerStats::default();
    let flows_of = |w: &mut mux::dataplane::worker::Worker<_>, now: u32| {
        w.publish(&stats, &draining, BurstTime::from_secs(now));
        stats.backend_flows.lock().unwrap()[id]
    };
    assert_eq!(flows_of(&mut w, 2), fins.len() as u32);
    run_on(&mut w, &draining, 3, &fins);
    assert_eq!(
        flows_of(&mut w, 12),
        fins.len() as u32,
        "closing entries live 10 s"
    );
    assert_eq!(flows_of(&mut w, 13), 0, "drained");
}
