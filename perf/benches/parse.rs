//! `parse`: cost of turning one received frame into the pipeline's summary
//! (`mux::dataplane::parse::parse`) for the common shapes: IPv4 TCP, IPv6 TCP, VLAN-tagged
//! IPv4 TCP. Minimum-size frames, so the figure is header work, not payload. Also `classify/
//! vip_lookup`: `Snapshot::vip` for the parsed key against 16 VIPs (the next step per packet).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mux::dataplane::parse::{self, Parse};
use mux::dataplane::snapshot::VipKey;
use mux_packet::packet_builder::PacketBuilder;
use mux_packet::packet_builder::tcp_flags::ACK;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bench_parse(c: &mut Criterion) {
    let frames = [
        (
            "v4_tcp",
            PacketBuilder::tcp(ip("10.0.0.1"), 40000, ip("192.0.2.1"), 80, ACK)
                .padding(6)
                .build(),
        ),
        (
            "v6_tcp",
            PacketBuilder::tcp(ip("2001:db8:c::1"), 40000, ip("2001:db8::1"), 443, ACK).build(),
        ),
        (
            "vlan_v4_tcp",
            PacketBuilder::tcp(ip("10.0.0.1"), 40000, ip("192.0.2.1"), 80, ACK)
                .vlan(42)
                .padding(2)
                .build(),
        ),
    ];
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &frames {
        assert!(matches!(parse::parse(frame), Parse::Ip(_)), "{name} parses");
        group.bench_function(*name, |b| b.iter(|| parse::parse(black_box(frame))));
    }
    group.finish();

    // The VIP match that follows parsing, against the benchmark's 16 IPv4 VIPs.
    let snap = perf::scenario::snapshot(perf::scenario::Family::V4);
    let Parse::Ip(p) = parse::parse(&frames[0].1) else {
        unreachable!("checked above");
    };
    let key = VipKey {
        addr: p.key.dst,
        port: p.key.dst_port,
        protocol: p.key.protocol,
    };
    assert!(snap.vip(&key).is_some(), "the frame is for a VIP");
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("vip_lookup", |b| {
        b.iter(|| snap.vip(black_box(&key)).map(|(i, _)| i))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
