//! Second chance, packet by packet: byte fixtures for every outer/alternative family pair and
//! for each case that must stay plain IP-in-IP, and a property over random generations.
//!
//! Expected frames are written byte by byte from docs/second-chance.md (the contract the host
//! agents parse), independently of the MUX's code, like `pipeline_fixtures.rs`.
//!
//! The fixture generations: every VIP has one backend in generation 1; generation 2 drains it
//! (draining keeps flows, so it stays a usable alternative) and adds another, so Maglev's
//! current table picks the new backend for every flow and the previous one the old: a flow the
//! MUX has no entry for goes to the new backend and names the old one.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use mux::control::compile::{self, CompileOptions, FlowClock};
use mux::control::registry::Registry;
use mux::control::table_history::{Generation, SETTLED_MS, TableHistory, TableInputs, TableMember};
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::verdict::Verdict;
use mux_packet::checksum;
use mux_packet::claim_horizon;
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_packet::stable_hash;
use proptest::prelude::*;

const HEAD: &str = r#"
[mux]
name = "second-chance"
[dataplane]
io = "mem"
mtu = 1500
second_chance_window_seconds = @WINDOW@
[tunnel]
source_v4 = "10.0.0.11"
source_v6 = "fd00::11"
[next_hop]
mac = "02:00:00:00:00:fe"
source_mac = "02:00:00:00:00:01"
"#;

/// `(name, address, port, protocol, generation-1 backend, generation-2 backend or None when
/// generation 2 keeps the same single backend, whether generation 2 removes the old one)`.
type FixtureVip = (
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
);

const VIPS: &[FixtureVip] = &[
    (
        "v4-v4",
        "192.0.2.10",
        80,
        "tcp",
        "10.1.0.1",
        Some("10.1.0.5"),
        false,
    ),
    (
        "v4-v6alt",
        "192.0.2.11",
        80,
        "tcp",
        "fd00:1::1",
        Some("10.1.0.6"),
        false,
    ),
    (
        "v6-v4alt",
        "2001:db8::10",
        443,
        "tcp",
        "10.1.0.7",
        Some("fd00:1::7"),
        false,
    ),
    (
        "v6-v6",
        "2001:db8::11",
        443,
        "tcp",
        "fd00:1::8",
        Some("fd00:1::9"),
        false,
    ),
    (
        "v4-in-v6",
        "192.0.2.12",
        80,
        "tcp",
        "fd00:1::a",
        Some("fd00:1::b"),
        false,
    ),
    (
        "dns",
        "192.0.2.53",
        53,
        "udp",
        "10.1.0.2",
        Some("10.1.0.3"),
        false,
    ),
    ("agree", "192.0.2.20", 80, "tcp", "10.1.0.4", None, false),
    (
        "removed",
        "192.0.2.21",
        80,
        "tcp",
        "10.1.0.12",
        Some("10.1.0.13"),
        true,
    ),
];

/// The fixture config of `generation` (1 or 2) with the given window.
fn config(generation: u32, window: u32) -> String {
    let mut s = HEAD.replace("@WINDOW@", &window.to_string());
    for (name, address, port, protocol, old, new, removed) in VIPS {
        s.push_str(&format!(
            "[[vip]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {port}\n\
             protocol = \"{protocol}\"\nmaglev_table_size = 1009\n"
        ));
        match (generation, new) {
            (2, Some(new)) => {
                if !removed {
                    s.push_str(&format!(
                        "  [[vip.backend]]\n  address = \"{old}\"\n  state = \"draining\"\n"
                    ));
                }
                s.push_str(&format!("  [[vip.backend]]\n  address = \"{new}\"\n"));
            }
            _ => s.push_str(&format!("  [[vip.backend]]\n  address = \"{old}\"\n")),
        }
    }
    s
}

/// A flow clock whose origin is 1 800 000 000 s after the Unix epoch.
fn clock() -> FlowClock {
    FlowClock {
        origin: Instant::now(),
        origin_unix: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    }
}

/// Generation 1 compiled at flow second 0, generation 2 at second 10 (its previous tables'
/// window ends at 10 + `window`), one MUX (one registry).
fn generations(window: u32) -> (Snapshot, Snapshot) {
    let clock = clock();
    let options = CompileOptions {
        clock,
        ..CompileOptions::default()
    };
    let mut registry = Registry::default();
    let parse = |g| mux::config::parse(&config(g, window), "sc.toml").expect("valid");
    let (first, history) = compile::compile_with_history(
        &parse(1),
        &mut registry,
        1,
        &options,
        &TableHistory::default(),
        clock.origin_unix,
    )
    .expect("compiles");
    let (second, _) = compile::compile_with_history(
        &parse(2),
        &mut registry,
        2,
        &options,
        &history,
        clock.origin_unix + Duration::from_secs(10),
    )
    .expect("compiles");
    (first, second)
}

fn client4() -> IpAddr {
    ip("198.51.100.7")
}
fn client6() -> IpAddr {
    ip("2001:db8:c::7")
}

fn key_of(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, protocol: u8) -> FlowKey {
    FlowKey {
        src: canonical_addr(src),
        dst: canonical_addr(dst),
        src_port: sport,
        dst_port: dport,
        protocol,
    }
}

/// The IPv6 outer flow label of a flow: 20 bits of its stable hash.
fn label(key: &FlowKey) -> u32 {
    (stable_hash::flow_hash(key) & 0xfffff) as u32
}

/// (DSCP/ECN, DF, protocol number for the outer header) of an inner packet.
fn inner_fields(inner: &[u8]) -> (u8, bool, u8) {
    if inner[0] >> 4 == 4 {
        (inner[1], inner[6] & 0x40 != 0, 4)
    } else {
        let tc = ((u16::from_be_bytes([inner[0], inner[1]]) >> 4) & 0xff) as u8;
        (tc, true, 41)
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `inner` in an outer IPv4 header toward `backend` carrying the second-chance option that
/// names `alt` (docs/second-chance.md: type 0x1E, length 8 or 20, flags 0, hops 0, the
/// address; IHL 7 or 10; checksum over the whole header).
fn expected_v4_with_alternative(inner: &[u8], backend: [u8; 4], alt: IpAddr) -> Vec<u8> {
    let (tos, df, protocol) = inner_fields(inner);
    let mut option = vec![0x1e, 0, 0x00, 0x00];
    option.extend_from_slice(&addr_bytes(alt));
    option[1] = option.len() as u8;
    let header_len = 20 + option.len();
    let mut h = vec![0x40 | (header_len / 4) as u8, tos];
    h.extend_from_slice(&((header_len + inner.len()) as u16).to_be_bytes());
    h.extend_from_slice(&(if df { 0u16 } else { 1 }).to_be_bytes());
    h.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h.extend_from_slice(&[64, protocol, 0, 0]);
    h.extend_from_slice(&TUNNEL_V4);
    h.extend_from_slice(&backend);
    h.extend_from_slice(&option);
    let c = checksum::internet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = expected_eth(None, 0x0800);
    out.extend_from_slice(&h);
    out.extend_from_slice(inner);
    out
}

/// `inner` in an outer IPv6 header toward `backend` followed by a Destination Options header
/// holding the second-chance option that names `alt`, then PadN to a multiple of 8
/// (docs/second-chance.md: optlen 6 → 16 bytes, hdrlen 1; optlen 18 → 24 bytes, hdrlen 2).
fn expected_v6_with_alternative(inner: &[u8], backend: &str, alt: IpAddr, label: u32) -> Vec<u8> {
    let (tc, _, protocol) = inner_fields(inner);
    let ext: Vec<u8> = match alt {
        IpAddr::V4(a) => {
            let mut e = vec![protocol, 1, 0x1e, 6, 0, 0];
            e.extend_from_slice(&a.octets());
            e.extend_from_slice(&[1, 4, 0, 0, 0, 0]); // PadN, 4 bytes of padding
            e
        }
        IpAddr::V6(a) => {
            let mut e = vec![protocol, 2, 0x1e, 18, 0, 0];
            e.extend_from_slice(&a.octets());
            e.extend_from_slice(&[1, 0]); // PadN, no padding bytes
            e
        }
    };
    let mut out = expected_eth(None, 0x86dd);
    let vtf = (6u32 << 28) | (u32::from(tc) << 20) | (label & 0xfffff);
    out.extend_from_slice(&vtf.to_be_bytes());
    out.extend_from_slice(&((ext.len() + inner.len()) as u16).to_be_bytes());
    out.push(60);
    out.push(64);
    let src: std::net::Ipv6Addr = TUNNEL_V6.parse().unwrap();
    let dst: std::net::Ipv6Addr = backend.parse().unwrap();
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&ext);
    out.extend_from_slice(inner);
    out
}

fn plain_v4(frame: &[u8], backend: [u8; 4]) -> Vec<u8> {
    expected_ipip_v4(&inner_ip(frame, 14), backend, None)
}

/// What one fixture must produce, and the second-chance counters it must move.
struct Fixture {
    description: &'static str,
    /// Frames pushed through generation 1 at second 1 first (to create a flow entry).
    before: Vec<Vec<u8>>,
    input: Vec<u8>,
    /// Second at which `input` goes through generation 2.
    now: u32,
    expected: Vec<u8>,
    /// (second_chance_sent, second_chance_skipped_mtu, second_chance_flows)
    counters: (u64, u64, u64),
}

fn fixtures() -> Vec<Fixture> {
    let mut v = Vec::new();
    let web = ip("192.0.2.10");
    let mut add = |description, before, input: Vec<u8>, now, expected, counters| {
        v.push(Fixture {
            description,
            before,
            input,
            now,
            expected,
            counters,
        })
    };

    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .payload_len(10)
        .build();
    let e = expected_v4_with_alternative(&inner_ip(&f, 14), [10, 1, 0, 5], ip("10.1.0.1"));
    add(
        "IPv4 outer, IPv4 alternative: TCP ACK without an entry after the table changed",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.11"), 80, ACK | PSH)
        .payload_len(33)
        .build();
    let e = expected_v4_with_alternative(&inner_ip(&f, 14), [10, 1, 0, 6], ip("fd00:1::1"));
    add("IPv4 outer, IPv6 alternative", vec![], f, 100, e, (1, 0, 1));

    let dst = ip("2001:db8::10");
    let f = PacketBuilder::tcp(client6(), 40001, dst, 443, ACK)
        .payload_len(7)
        .tos(0xb9)
        .build();
    let e = expected_v6_with_alternative(
        &inner_ip(&f, 14),
        "fd00:1::7",
        ip("10.1.0.7"),
        label(&key_of(client6(), 40001, dst, 443, 6)),
    );
    add(
        "IPv6 outer, IPv4 alternative (IPv6 inner, DSCP/ECN copied)",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    let dst = ip("2001:db8::11");
    let f = PacketBuilder::tcp(client6(), 40002, dst, 443, FIN | ACK).build();
    let e = expected_v6_with_alternative(
        &inner_ip(&f, 14),
        "fd00:1::9",
        ip("fd00:1::8"),
        label(&key_of(client6(), 40002, dst, 443, 6)),
    );
    add(
        "IPv6 outer, IPv6 alternative (a FIN is not a SYN)",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    let dst = ip("192.0.2.12");
    let f = PacketBuilder::tcp(client4(), 40003, dst, 80, ACK).build();
    let e = expected_v6_with_alternative(
        &inner_ip(&f, 14),
        "fd00:1::b",
        ip("fd00:1::a"),
        label(&key_of(client4(), 40003, dst, 80, 6)),
    );
    add(
        "IPv6 outer with an IPv4 inner packet, IPv6 alternative",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    let f = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(30)
        .build();
    let e = expected_v4_with_alternative(&inner_ip(&f, 14), [10, 1, 0, 3], ip("10.1.0.2"));
    add(
        "UDP without an entry carries the alternative (no SYN to tell a new flow)",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    let f = PacketBuilder::tcp(client4(), 40004, web, 80, SYN).build();
    let e = plain_v4(&f, [10, 1, 0, 5]);
    add(
        "A bare SYN is a new connection: current backend, no option",
        vec![],
        f,
        100,
        e,
        (0, 0, 0),
    );

    let syn = PacketBuilder::tcp(client4(), 40005, web, 80, SYN).build();
    let ack = PacketBuilder::tcp(client4(), 40005, web, 80, ACK).build();
    let f = PacketBuilder::tcp(client4(), 40005, web, 80, ACK | PSH)
        .payload_len(20)
        .build();
    let e = plain_v4(&f, [10, 1, 0, 1]);
    add(
        "A flow-table hit goes to its pinned backend, no option",
        vec![syn, ack],
        f,
        100,
        e,
        (0, 0, 0),
    );

    let f = PacketBuilder::tcp(client4(), 40006, ip("192.0.2.20"), 80, ACK).build();
    let e = plain_v4(&f, [10, 1, 0, 4]);
    add("Tables that agree: no option", vec![], f, 100, e, (0, 0, 0));

    let f = PacketBuilder::tcp(client4(), 40007, ip("192.0.2.21"), 80, ACK).build();
    let e = plain_v4(&f, [10, 1, 0, 13]);
    add(
        "The previous backend was removed: not an alternative, no option",
        vec![],
        f,
        100,
        e,
        (0, 0, 0),
    );

    // 20 (IP) + 20 (TCP) + 1435 = 1475: plain fits (1495), with the option 1503 does not.
    let f = PacketBuilder::tcp(client4(), 40008, web, 80, ACK)
        .payload_len(1435)
        .build();
    let e = plain_v4(&f, [10, 1, 0, 5]);
    add(
        "MTU: the option does not fit, plain IP-in-IP does: sent without it, counted",
        vec![],
        f,
        100,
        e,
        (0, 1, 1),
    );

    // 1472 + 20 + 8 = 1500: exactly the MTU, with the option.
    let f = PacketBuilder::tcp(client4(), 40009, web, 80, ACK)
        .payload_len(1432)
        .build();
    let e = expected_v4_with_alternative(&inner_ip(&f, 14), [10, 1, 0, 5], ip("10.1.0.1"));
    add(
        "MTU: a packet that fits exactly with the option carries it",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    // IPv4 outer, IPv6 alternative: the MUX writes 40 bytes, the agent's forward to the IPv6
    // alternative 64; the reservation is 64. 1436 + 64 = 1500: the option still fits.
    let v4_v6alt = ip("192.0.2.11");
    let f = PacketBuilder::tcp(client4(), 40011, v4_v6alt, 80, ACK)
        .payload_len(1396)
        .build();
    let e = expected_v4_with_alternative(&inner_ip(&f, 14), [10, 1, 0, 6], ip("fd00:1::1"));
    add(
        "MTU, IPv6 alternative: exactly the forwarded size (64-byte outer headers) carries it",
        vec![],
        f,
        100,
        e,
        (1, 0, 1),
    );

    // 1437 + 40 = 1477 would fit what the MUX writes, but the agent's forward would be 1501.
    let f = PacketBuilder::tcp(client4(), 40012, v4_v6alt, 80, ACK)
        .payload_len(1397)
        .build();
    let e = plain_v4(&f, [10, 1, 0, 6]);
    add(
        "MTU, IPv6 alternative: one byte over the forwarded size goes plainly, counted",
        vec![],
        f,
        100,
        e,
        (0, 1, 1),
    );

    let f = PacketBuilder::tcp(client4(), 40010, web, 80, ACK).build();
    let e = plain_v4(&f, [10, 1, 0, 5]);
    add(
        "After the window (second 130 = 10 + 120): no option",
        vec![],
        f,
        130,
        e,
        (0, 0, 0),
    );
    v
}

#[test]
fn second_chance_fixtures() {
    let (first, second) = generations(120);
    let mut failures = Vec::new();
    for fx in fixtures() {
        let mut w = worker(4096);
        if !fx.before.is_empty() {
            run_on(&mut w, &first, 1, &fx.before);
        }
        let out = run_on(&mut w, &second, fx.now, std::slice::from_ref(&fx.input));
        let c = &out.counters;
        let counters = (
            c.second_chance_sent,
            c.second_chance_skipped_mtu,
            c.second_chance_flows,
        );
        let problem = match (out.verdicts[0], out.transmitted.first()) {
            (Verdict::Forward, Some(frame)) if *frame != fx.expected => Some(format!(
                "wrong bytes:\n  got      {}\n  expected {}",
                hex(frame),
                hex(&fx.expected)
            )),
            (Verdict::Forward, Some(_)) if counters != fx.counters => Some(format!(
                "counters (sent, skipped_mtu, flows) {counters:?}, expected {:?}",
                fx.counters
            )),
            (Verdict::Forward, Some(_)) => None,
            (v, _) => Some(format!("verdict {v:?}, expected Forward")),
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", fx.description));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_packet_of_a_flow_without_an_entry_carries_the_same_alternative() {
    let (_, second) = generations(120);
    let mut w = worker(4096);
    let web = ip("192.0.2.10");
    let packets: Vec<Vec<u8>> = [ACK, ACK | PSH, ACK, ACK | PSH]
        .iter()
        .map(|flags| PacketBuilder::tcp(client4(), 41000, web, 80, *flags).build())
        .collect();
    let out = run_on(&mut w, &second, 100, &packets);
    for (p, frame) in packets.iter().zip(&out.transmitted) {
        let e = expected_v4_with_alternative(&inner_ip(p, 14), [10, 1, 0, 5], ip("10.1.0.1"));
        assert_eq!(hex(frame), hex(&e));
    }
    let c = &out.counters;
    assert_eq!(
        (c.second_chance_flows, c.new_flows, c.flow_hits),
        (1, 1, 0),
        "one second-chance entry, found by the later packets (not a normal hit)"
    );
    assert_eq!(c.second_chance_sent, 4);
    // The entry outlives the window (second 130): the flow keeps its alternative for its
    // life, here up to tcp_established (300 s) after its last packet.
    let later = PacketBuilder::tcp(client4(), 41000, web, 80, ACK).build();
    let out = run_on(&mut w, &second, 200, std::slice::from_ref(&later));
    let e = expected_v4_with_alternative(&inner_ip(&later, 14), [10, 1, 0, 5], ip("10.1.0.1"));
    assert_eq!(hex(&out.transmitted[0]), hex(&e));
    // A bare SYN on the same 4-tuple is a new connection: a normal entry, plain from then on.
    let syn = PacketBuilder::tcp(client4(), 41000, web, 80, SYN).build();
    let ack = PacketBuilder::tcp(client4(), 41000, web, 80, ACK).build();
    let out = run_on(&mut w, &second, 201, &[syn.clone(), ack.clone()]);
    assert_eq!(out.transmitted[0], plain_v4(&syn, [10, 1, 0, 5]));
    assert_eq!(out.transmitted[1], plain_v4(&ack, [10, 1, 0, 5]));
}

/// A second-chance flow keeps the pair it got (primary = the pick of its first packet,
/// alternative) whatever later tables pick: its first agent decided once whether it carries
/// the connection, so neither a table that picks the alternative (which used to send the flow
/// there plainly) nor one that picks a third backend may move it.
#[test]
fn a_second_chance_flow_keeps_its_primary_and_alternative_across_later_tables() {
    let gen2 = config(2, 120);
    let v4v4 = "  [[vip.backend]]\n  address = \"10.1.0.1\"\n  state = \"draining\"\n  [[vip.backend]]\n  address = \"10.1.0.5\"\n";
    assert!(gen2.contains(v4v4), "the fixture's generation 2 of v4-v4");
    // Generation 3: the alternative (10.1.0.1) is picked again; generation 4: a third backend.
    let gen3 = gen2.replacen(
        v4v4,
        "  [[vip.backend]]\n  address = \"10.1.0.1\"\n  [[vip.backend]]\n  address = \"10.1.0.5\"\n  state = \"draining\"\n",
        1,
    );
    let gen4 = gen2.replacen(
        v4v4,
        "  [[vip.backend]]\n  address = \"10.1.0.1\"\n  state = \"draining\"\n  [[vip.backend]]\n  address = \"10.1.0.5\"\n  state = \"draining\"\n  [[vip.backend]]\n  address = \"10.1.0.9\"\n",
        1,
    );
    let snaps = compile_generations(&[(config(1, 120), 0), (gen2, 10), (gen3, 20), (gen4, 30)]);
    let web = ip("192.0.2.10");
    let ack = PacketBuilder::tcp(client4(), 41001, web, 80, ACK).build();
    let expected = expected_v4_with_alternative(&inner_ip(&ack, 14), [10, 1, 0, 5], ip("10.1.0.1"));
    let mut w = worker(4096);
    // Generation 2: no entry, current pick 10.1.0.5, previous 10.1.0.1.
    let out = run_on(&mut w, &snaps[1], 11, std::slice::from_ref(&ack));
    assert_eq!(hex(&out.transmitted[0]), hex(&expected));
    // Generations 3 and 4 pick 10.1.0.1 and 10.1.0.9 for new flows; this one keeps its pair.
    for (sent, snap, now) in [(2, &snaps[2], 21), (3, &snaps[3], 31)] {
        let out = run_on(&mut w, snap, now, std::slice::from_ref(&ack));
        assert_eq!(hex(&out.transmitted[0]), hex(&expected), "at second {now}");
        assert_eq!(
            out.counters.second_chance_sent, sent,
            "the worker's running count"
        );
    }
    // A flow that was never seen gets generation 4's own decision.
    let other = PacketBuilder::tcp(client4(), 41002, web, 80, SYN).build();
    let out = run_on(&mut w, &snaps[3], 32, std::slice::from_ref(&other));
    assert_eq!(out.transmitted[0], plain_v4(&other, [10, 1, 0, 9]));
}

/// The snapshots of three generations of the fixture (the `dns` VIP's backends: 10.1.0.9,
/// then 10.1.0.2, then 10.1.0.2 draining and 10.1.0.3), compiled at flow seconds 0, 10 and
/// 10 + `in_force`: generation 2's previous table is generation 1's, whose arrival (second
/// 10) is known.
fn three_generations(in_force: u64) -> Snapshot {
    let gen0 = config(1, 120).replacen(
        "  address = \"10.1.0.2\"\n",
        "  address = \"10.1.0.9\"\n",
        1,
    );
    let mut snaps = compile_generations(&[
        (gen0, 0),
        (config(1, 120), 10),
        (config(2, 120), 10 + in_force),
    ]);
    snaps.pop().expect("three generations")
}

/// One MUX's snapshots of the configurations `texts`, each compiled at its flow-clock second
/// (on [`clock`]) after the previous one, the history carried from each to the next.
fn compile_generations(texts: &[(String, u64)]) -> Vec<Snapshot> {
    let clock = clock();
    let options = CompileOptions {
        clock,
        ..CompileOptions::default()
    };
    let mut registry = Registry::default();
    let mut history = TableHistory::default();
    let mut snaps = Vec::new();
    for (i, (text, at)) in texts.iter().enumerate() {
        let cfg = mux::config::parse(text, "sc.toml").expect("valid");
        let (snap, h) = compile::compile_with_history(
            &cfg,
            &mut registry,
            i as u64 + 1,
            &options,
            &history,
            clock.origin_unix + Duration::from_secs(*at),
        )
        .expect("compiles");
        history = h;
        snaps.push(snap);
    }
    snaps
}

/// The option's flags byte of an outer IPv4 frame with the option.
fn option_flags(frame: &[u8]) -> u8 {
    assert_eq!(
        frame[14 + 20],
        0x1e,
        "the option follows the 20-byte header"
    );
    frame[14 + 20 + 2]
}

/// The claim horizon (docs/second-chance.md): the packet that creates a flow's second-chance
/// entry says how long ago the table that named the alternative arrived, rounded up, when
/// that table was settled; the flow's later packets, and an alternative from a transient
/// table, say nothing (0).
#[test]
fn the_first_packet_carries_the_age_of_a_settled_alternative_table() {
    let settled = three_generations(30);
    let mut w = worker(4096);
    let udp = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53).build();
    // Second 55: generation 1 arrived 45 s ago and stood 30 s.
    let out = run_on(&mut w, &settled, 55, &[udp.clone(), udp.clone()]);
    assert_eq!(out.transmitted.len(), 2);
    let first = option_flags(&out.transmitted[0]);
    assert_eq!(first & 1, 0, "a MUX never sets forwarded");
    assert_eq!(
        claim_horizon::decode(claim_horizon::from_flags(first)),
        Some(45)
    );
    assert_eq!(option_flags(&out.transmitted[1]), 0, "the entry's packets");
    // Otherwise byte for byte the same: only the flags and the header checksum differ, and
    // both headers sum to zero.
    let (a, b) = (&out.transmitted[0], &out.transmitted[1]);
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    assert!(
        differ
            .iter()
            .all(|i| [14 + 10, 14 + 11, 14 + 22].contains(i)),
        "{differ:?}"
    );
    for frame in [a, b] {
        assert_eq!(checksum::internet_checksum(&frame[14..14 + 28]), 0);
    }

    // Generation 1 stood 1 s: transient, no horizon.
    let transient = three_generations(1);
    let mut w = worker(4096);
    let out = run_on(&mut w, &transient, 15, std::slice::from_ref(&udp));
    assert_eq!(out.counters.second_chance_sent, 1);
    assert_eq!(option_flags(&out.transmitted[0]), 0);
}

#[test]
fn a_packet_too_big_even_plainly_is_answered_as_without_second_chance() {
    let (_, second) = generations(120);
    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.10"), 80, ACK)
        .payload_len(1460)
        .build();
    let out = run(&second, std::slice::from_ref(&f));
    assert_eq!(
        out.verdicts[0],
        Verdict::Reply(mux::dataplane::verdict::Reply::TooBig)
    );
    let c = &out.counters;
    assert_eq!(
        (
            c.icmp_too_big_sent,
            c.second_chance_sent,
            c.second_chance_skipped_mtu
        ),
        (1, 0, 0)
    );
    // The same without DF: dropped and counted, as always.
    let f = PacketBuilder::tcp(client4(), 40001, ip("192.0.2.10"), 80, ACK)
        .payload_len(1460)
        .dont_frag(false)
        .build();
    let out = run(&second, std::slice::from_ref(&f));
    assert_eq!(
        out.verdicts[0],
        Verdict::Drop(mux::dataplane::verdict::DropReason::TooBigWithoutDf)
    );
}

#[test]
fn a_window_of_zero_turns_second_chance_off() {
    let (_, second) = generations(0);
    assert!(second.parts.vips.iter().all(|v| v.previous.is_empty()));
    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.10"), 80, ACK).build();
    let out = run(&second, std::slice::from_ref(&f));
    assert_eq!(out.transmitted[0], plain_v4(&f, [10, 1, 0, 5]));
    assert_eq!(out.counters.second_chance_sent, 0);
}

#[test]
fn the_rx_partition_still_holds_with_alternatives() {
    let (_, second) = generations(120);
    let frames: Vec<Vec<u8>> = (0..200u16)
        .map(|i| {
            let flags = if i % 3 == 0 { SYN } else { ACK };
            // IP lengths 1420..=1479: some fit with the option (<= 1472), some only plain.
            PacketBuilder::tcp(client4(), 1024 + i, ip("192.0.2.10"), 80, flags)
                .payload_len(1380 + usize::from(i % 60))
                .build()
        })
        .collect();
    let out = run(&second, &frames);
    let c = &out.counters;
    assert_eq!(
        c.forwarded + c.icmp_too_big_sent + c.drain_resets_sent + c.to_kernel + c.dropped_total(),
        c.rx
    );
    assert!(c.second_chance_sent > 0 && c.second_chance_skipped_mtu > 0);
    assert!(c.second_chance_sent + c.second_chance_skipped_mtu <= c.forwarded);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- property: the alternative is a previous generation's pick, never the current one -----

/// The pool of backend addresses the random generations draw from (both families).
const POOL: [&str; 6] = [
    "10.1.0.1",
    "10.1.0.2",
    "10.1.0.3",
    "10.1.0.4",
    "fd00:1::5",
    "fd00:1::6",
];

/// A backend of one generation: absent, active with a weight, or draining.
#[derive(Clone, Copy, Debug)]
enum Member {
    Absent,
    Active(u32),
    Draining,
}

fn member() -> impl Strategy<Value = Member> {
    prop_oneof![
        Just(Member::Absent),
        (1u32..4).prop_map(Member::Active),
        Just(Member::Draining),
    ]
}

/// A generation: each pool backend's membership (at least one active: forced on backend 0).
fn generation() -> impl Strategy<Value = Vec<Member>> {
    proptest::collection::vec(member(), POOL.len()).prop_map(|mut g| {
        if !g.iter().any(|m| matches!(m, Member::Active(_))) {
            g[0] = Member::Active(1);
        }
        g
    })
}

/// The VIP's Maglev table in `members` (active backends only), as the history builds it.
fn generation_table(members: &[Member]) -> Generation {
    let backends = POOL
        .iter()
        .zip(members)
        .filter_map(|(a, m)| match m {
            Member::Active(w) => Some(TableMember {
                address: ip(a),
                weight: *w,
            }),
            _ => None,
        })
        .collect();
    Generation::build(TableInputs {
        table_size: 1009,
        backends,
    })
    .expect("builds")
}

fn generation_config(members: &[Member], window: u32) -> String {
    let mut s = HEAD.replace("@WINDOW@", &window.to_string());
    s.push_str(
        "[[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
         maglev_table_size = 1009\n",
    );
    for (addr, m) in POOL.iter().zip(members) {
        match m {
            Member::Absent => {}
            Member::Active(w) => s.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{addr}\"\n  weight = {w}\n"
            )),
            Member::Draining => s.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{addr}\"\n  state = \"draining\"\n"
            )),
        }
    }
    s
}

/// The outer destination and the alternative (if any) of a transmitted frame.
fn outer_and_alternative(frame: &[u8]) -> (IpAddr, Option<IpAddr>) {
    let ip_of = |b: &[u8]| -> IpAddr {
        match b.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(b).unwrap()),
            _ => IpAddr::from(<[u8; 16]>::try_from(b).unwrap()),
        }
    };
    let outer = &frame[14..];
    if outer[0] >> 4 == 4 {
        let dst = ip_of(&outer[16..20]);
        let ihl = usize::from(outer[0] & 0x0f) * 4;
        if ihl == 20 {
            return (dst, None);
        }
        assert_eq!(outer[20], 0x1e);
        let len = usize::from(outer[21]);
        (dst, Some(ip_of(&outer[24..20 + len])))
    } else {
        let dst = ip_of(&outer[24..40]);
        if outer[6] != 60 {
            return (dst, None);
        }
        let ext = &outer[40..];
        assert_eq!(ext[2], 0x1e);
        let len = usize::from(ext[3]);
        (dst, Some(ip_of(&ext[6..4 + len])))
    }
}

/// The address generation `snap` (compiled on its own) picks for `key`.
fn standalone_pick(snap: &Snapshot, key: &FlowKey) -> IpAddr {
    let vip = &snap.parts.vips[0];
    let id = vip
        .pick(stable_hash::flow_hash(key))
        .expect("an active backend");
    mux_packet::flow_key::unmap(snap.backend(id).unwrap().address)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the generations, their timing and the window: a flow without an entry
    /// carries an alternative exactly when a previous table within the window picked another
    /// backend that is still configured, and it is the pick of the first such table in the
    /// order of asking (settled tables first, newer before older, then transient ones, newer
    /// before older; the table found in force at the start is settled); never the current
    /// backend; always a backend of the VIP.
    #[test]
    fn the_alternative_is_a_previous_pick_within_the_window_never_the_current(
        gens in proptest::collection::vec(generation(), 2..=5),
        gaps in proptest::collection::vec(1u64..90, 4),
        window in prop_oneof![Just(0u32), Just(30), Just(120)],
        after in 0u32..200,
        clients in proptest::collection::vec(any::<u32>(), 48),
    ) {
        let clock = clock();
        let options = CompileOptions { clock, ..CompileOptions::default() };
        // Generation i takes over at second `starts[i]`.
        let mut starts = vec![0u64];
        for g in &gaps[..gens.len() - 1] {
            starts.push(starts.last().unwrap() + g);
        }
        let mut registry = Registry::default();
        let mut history = TableHistory::default();
        let mut snap = None;
        let mut alone = Vec::new();
        for (i, g) in gens.iter().enumerate() {
            let cfg = mux::config::parse(&generation_config(g, window), "p.toml")
                .expect("valid");
            let at = clock.origin_unix + Duration::from_secs(starts[i]);
            let (s, h) = compile::compile_with_history(
                &cfg, &mut registry, i as u64 + 1, &options, &history, at,
            ).expect("compiles");
            history = h;
            snap = Some(s);
            alone.push(compile::compile(&cfg, &mut Registry::default(), 1, &options).unwrap());
        }
        let snap = snap.unwrap();
        let last = gens.len() - 1;
        let now = starts[last] as u32 + after;
        let configured: Vec<IpAddr> = POOL
            .iter()
            .zip(&gens[last])
            .filter(|(_, m)| !matches!(m, Member::Absent))
            .map(|(a, _)| ip(a))
            .collect();

        // The history's rules, restated: consecutive generations with the same picks are one
        // table, in force from the first one's start (the first table: since ever); a table
        // is replaced when the next differing one takes over and names alternatives until
        // `window` after that; one equal to the current table or to a newer kept one is not
        // kept. Asked the settled ones (in force at least SETTLED_MS) first, then the
        // transient ones, newer before older in each group.
        let tables: Vec<Generation> = gens.iter().map(|g| generation_table(g)).collect();
        let mut runs: Vec<usize> = Vec::new();
        for k in 0..gens.len() {
            if runs.last().is_none_or(|&r| !tables[r].same_picks(&tables[k])) {
                runs.push(k);
            }
        }
        let current_run = *runs.last().unwrap();
        let mut kept: Vec<(usize, u64)> = Vec::new(); // (generation, seconds in force)
        for i in (0..runs.len() - 1).rev() {
            let (k, replaced) = (runs[i], starts[runs[i + 1]]);
            let in_window = window > 0 && u64::from(now) < replaced + u64::from(window);
            let superseded = tables[k].same_picks(&tables[current_run])
                || kept.iter().any(|&(j, _)| tables[j].same_picks(&tables[k]));
            if in_window && !superseded {
                let span = if i == 0 { u64::MAX } else { replaced - starts[k] };
                kept.push((k, span));
            }
        }
        // Stable: `kept` is newest first, and each group keeps that order.
        kept.sort_by_key(|&(_, span)| span.saturating_mul(1000) < SETTLED_MS);
        let model: Vec<usize> = kept.iter().map(|&(k, _)| k).collect();

        let web = ip("192.0.2.10");
        let flows: Vec<(Vec<u8>, FlowKey)> = clients
            .iter()
            .map(|c| {
                let src = IpAddr::from(std::net::Ipv4Addr::from(0xc633_0000 | (c & 0xffff)));
                let port = 1024 + ((c >> 16) % 60_000) as u16;
                let frame = PacketBuilder::tcp(src, port, web, 80, ACK).build();
                (frame, key_of(src, port, web, 80, 6))
            })
            .collect();
        let frames: Vec<Vec<u8>> = flows.iter().map(|(f, _)| f.clone()).collect();
        let out = run_on(&mut worker(4096), &snap, now, &frames);
        prop_assert_eq!(out.transmitted.len(), frames.len());
        for ((_, key), sent) in flows.iter().zip(&out.transmitted) {
            let (dst, alt) = outer_and_alternative(sent);
            let current = standalone_pick(&alone[last], key);
            prop_assert_eq!(dst, current, "a miss goes to the current table's pick");
            let expected = model
                .iter()
                .map(|&k| standalone_pick(&alone[k], key))
                .find(|a| *a != current && configured.contains(a));
            prop_assert_eq!(alt, expected);
            if let Some(a) = alt {
                prop_assert_ne!(a, current);
                prop_assert!(configured.contains(&a));
            }
        }
    }
}

#[test]
fn a_second_chance_entry_is_logged_with_its_alternative() {
    let (_, second) = generations(120);
    let (sink, mut source) = mux::dataplane::flow_log::FlowLogSink::ring(16);
    let mut w = mux::dataplane::worker::Worker::new(
        mux_ports::mem::MemPort::new(64, mux_ports::mem::Capture::Keep),
        mux::dataplane::pipeline::Pipeline::new(4096, 7).with_flow_log(sink),
        32,
    );
    let web = ip("192.0.2.10");
    let packets: Vec<Vec<u8>> = [ACK, ACK]
        .iter()
        .map(|flags| PacketBuilder::tcp(client4(), 41000, web, 80, *flags).build())
        .collect();
    run_on(&mut w, &second, 100, &packets);
    let record = source.pop().expect("one record");
    assert!(source.pop().is_err(), "the second packet finds the entry");
    assert_eq!(record.backend, canonical_addr(ip("10.1.0.5")));
    assert_eq!(record.alternative, Some(canonical_addr(ip("10.1.0.1"))));
    assert_eq!(record.generation, 2);
}
