//! Flow behaviour across packets, reloads and MUXes: consistency, stickiness, draining,
//! removal, failure, timeouts, SYN floods, fragments, ICMP errors and counter accounting.

mod common;

use std::collections::HashMap;

use common::*;
use mux::control::compile::{self, CompileOptions};
use mux::control::registry::Registry;
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::verdict::Verdict;
use mux_shared::packet_builder::{PacketBuilder, tcp_flags::*};

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
    let cfg = mux_shared::config::parse(text, "flows.toml").expect("valid");
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

/// DESIGN §2 "same answer on every MUX": two MUXes that parsed and compiled the same service
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
        mux_shared::port::mem::MemPort::new(64, mux_shared::port::mem::Capture::Keep),
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

#[test]
fn failed_backends_lose_their_flows() {
    let mut registry = Registry::default();
    let healthy = compile_with(&three(), &mut registry, 1, &CompileOptions::default());
    let mut w = worker(1 << 14);
    let acks: Vec<_> = (0..300).map(|i| client_packet(i, ACK)).collect();
    let first = backends_of(&run_on(&mut w, &healthy, 1, &acks).transmitted);
    let options = CompileOptions {
        failed: vec![("web".to_string(), ip("10.1.0.2"))],
        ..CompileOptions::default()
    };
    let sick = compile_with(&three(), &mut registry, 2, &options);
    let after = backends_of(&run_on(&mut w, &sick, 2, &acks).transmitted);
    assert!(after.iter().all(|b| *b != [10, 1, 0, 2]));
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(moved, first.iter().filter(|b| **b == [10, 1, 0, 2]).count());
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
        c.forwarded + c.icmp_too_big_sent + c.to_kernel + c.dropped_total(),
        c.rx
    );
    assert_eq!(
        out.transmitted.len() as u64,
        c.forwarded + c.icmp_too_big_sent
    );
    assert_eq!(out.to_kernel.len() as u64, c.to_kernel);
    assert!(out.verdicts.iter().any(|v| matches!(v, Verdict::Drop(_))));
}
