//! The counters partition the traffic: every received frame has exactly one outcome, and a
//! sub-counter moves only on the outcome it names.
//!
//! `common::run_on` checks the partition and the counters against the verdicts after every
//! run, so the byte fixtures (`pipeline_fixtures.rs`, `second_chance.rs`, `flow_behaviour.rs`)
//! check it too; this file adds the cases that used to break it (a fragment or an ICMP error
//! dropped after its backend was chosen) and random and mutated frames through one worker.

mod common;

use common::*;
use mux::dataplane::verdict::{DropReason, Reply, Verdict};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use proptest::prelude::*;

fn client4() -> std::net::IpAddr {
    ip("198.51.100.7")
}
fn client6() -> std::net::IpAddr {
    ip("2001:db8:c::7")
}

/// A fragment of a datagram to the `dns` VIP whose encapsulation would exceed the MTU, without
/// DF: its backend is chosen, then it is dropped (`TooBigWithoutDf`).
fn oversized_fragment() -> Vec<u8> {
    PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(1460)
        .dont_frag(false)
        .fragment(0, true)
        .build()
}

/// An ICMP error toward the `web` VIP about one of its flows, too big to encapsulate: its
/// backend is chosen, then it is dropped (`TooBigIcmpError`: no ICMP error about an ICMP error).
fn oversized_icmp_error() -> Vec<u8> {
    let sent = PacketBuilder::tcp(ip("192.0.2.10"), 80, client4(), 40000, ACK)
        .payload_len(1450)
        .build_ip();
    PacketBuilder::icmp(ip("203.0.113.1"), ip("192.0.2.10"), 3, 4, 1400)
        .payload(sent)
        .build()
}

#[test]
fn a_dropped_fragment_or_icmp_error_is_not_counted_as_forwarded() {
    let snap = snapshot(FIXTURE_CONFIG);
    let out = run(&snap, &[oversized_fragment(), oversized_icmp_error()]);
    assert_eq!(
        out.verdicts,
        vec![
            Verdict::Drop(DropReason::TooBigWithoutDf),
            Verdict::Drop(DropReason::TooBigIcmpError),
        ]
    );
    let c = &out.counters;
    assert_eq!((c.rx, c.forwarded, c.dropped_total()), (2, 0, 2));
    assert_eq!(c.fragments_forwarded, 0, "dropped fragment counted: {c:?}");
    assert_eq!(
        c.icmp_errors_forwarded, 0,
        "dropped ICMP error counted: {c:?}"
    );
}

#[test]
fn a_forwarded_fragment_or_icmp_error_is_counted_under_its_kind() {
    let snap = snapshot(FIXTURE_CONFIG);
    let fragment = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(100)
        .fragment(0, true)
        .build();
    let sent = PacketBuilder::tcp(ip("192.0.2.10"), 80, client4(), 40000, ACK).build_ip();
    let icmp_error = PacketBuilder::icmp(ip("203.0.113.1"), ip("192.0.2.10"), 3, 4, 1400)
        .payload(sent[..28].to_vec())
        .build();
    let out = run(&snap, &[fragment, icmp_error]);
    assert_eq!(out.verdicts, vec![Verdict::Forward, Verdict::Forward]);
    let c = &out.counters;
    assert_eq!(
        (c.forwarded, c.fragments_forwarded, c.icmp_errors_forwarded),
        (2, 1, 1)
    );
}

/// Frames covering every outcome and every parser branch, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let web = ip("192.0.2.10");
    let web6 = ip("2001:db8::10");
    let dns = ip("192.0.2.53");
    let sent = PacketBuilder::tcp(web, 80, client4(), 40000, ACK).build_ip();
    let sent6 = PacketBuilder::tcp(web6, 443, client6(), 40000, ACK).build_ip();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xaa, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xaa, 10, 0, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 11]);
    vec![
        PacketBuilder::tcp(client4(), 40000, web, 80, SYN).build(),
        PacketBuilder::tcp(client4(), 40001, web, 80, ACK)
            .payload_len(10)
            .build(),
        PacketBuilder::tcp(client4(), 40002, web, 80, ACK)
            .vlan(7)
            .build(),
        PacketBuilder::tcp(client6(), 40000, web6, 443, SYN).build(),
        PacketBuilder::tcp(client6(), 40000, web6, 443, ACK)
            .hop_by_hop()
            .build(),
        PacketBuilder::udp(client4(), 5353, dns, 53)
            .payload_len(40)
            .build(),
        PacketBuilder::udp(client4(), 5353, dns, 53)
            .payload_len(100)
            .fragment(0, true)
            .build(),
        PacketBuilder::udp(client4(), 5353, dns, 53)
            .payload_len(64)
            .fragment(1480, false)
            .build(),
        PacketBuilder::udp(client6(), 5353, ip("2001:db8::53"), 53)
            .payload_len(64)
            .fragment(1448, false)
            .build(),
        PacketBuilder::icmp(ip("203.0.113.1"), web, 3, 4, 1400)
            .payload(sent[..28].to_vec())
            .build(),
        PacketBuilder::icmp(ip("2001:db8:ff::1"), web6, 2, 0, 1280)
            .payload(sent6)
            .build(),
        PacketBuilder::icmp(client4(), web, 8, 0, 0x0001_0001)
            .payload_len(16)
            .build(),
        // Too big: a reply (DF), a drop (no DF), a dropped fragment and ICMP error.
        PacketBuilder::tcp(client4(), 40003, web, 80, ACK)
            .payload_len(1460)
            .build(),
        PacketBuilder::tcp(client4(), 40004, web, 80, ACK)
            .payload_len(1460)
            .dont_frag(false)
            .build(),
        oversized_fragment(),
        oversized_icmp_error(),
        PacketBuilder::tcp(client4(), 40005, ip("192.0.2.99"), 80, SYN).build(),
        arp,
    ]
}

#[test]
fn the_seeds_reach_every_outcome_but_resets() {
    // Drain resets need a reload; the drain fixtures of pipeline_fixtures.rs cover them.
    let out = run(&snapshot(FIXTURE_CONFIG), &seeds());
    let has = |want: Verdict| out.verdicts.contains(&want);
    assert!(has(Verdict::Forward) && has(Verdict::ToKernel));
    assert!(has(Verdict::Reply(Reply::TooBig)));
    assert!(out.verdicts.iter().any(|v| matches!(v, Verdict::Drop(_))));
}

/// A seed with some bytes overwritten and possibly cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let n = seeds().len();
    (
        0..n,
        proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..6),
        proptest::option::of(any::<proptest::sample::Index>()),
    )
        .prop_map(|(seed, writes, cut)| {
            let mut f = seeds().swap_remove(seed);
            for (at, byte) in writes {
                let i = at.index(f.len());
                f[i] = byte;
            }
            if let Some(cut) = cut {
                f.truncate(cut.index(f.len() + 1));
            }
            f
        })
}

/// Random bytes, sometimes behind a valid Ethernet + IPv4/IPv6 ethertype so they reach the
/// IP parsers.
fn random_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(None), Just(Some(0x0800u16)), Just(Some(0x86dd))],
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(ethertype, body)| match ethertype {
            None => body,
            Some(t) => {
                let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0xaa];
                f.extend_from_slice(&t.to_be_bytes());
                f.extend_from_slice(&body);
                f
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated and random frames, in bursts through one worker (so flows carry over): after
    /// every run `run_on` asserts rx = Σ outcomes, sub-counts ≤ their outcome, and the counters
    /// moved as the verdicts did.
    #[test]
    fn random_and_mutated_frames_keep_the_partition(
        frames in proptest::collection::vec(prop_oneof![mutated(), random_frame()], 1..96),
        now in 1u32..1000,
    ) {
        let snap = snapshot(FIXTURE_CONFIG);
        let mut w = worker(1024);
        let half = frames.len() / 2;
        run_on(&mut w, &snap, now, &frames[..half]);
        let out = run_on(&mut w, &snap, now + 1, &frames[half..]);
        prop_assert_eq!(out.counters.rx, frames.len() as u64);
    }
}
