//! Table-driven packet fixtures for the host agent's data path: `{description, input,
//! expected, verdict}`.
//!
//! Inputs are built with `PacketBuilder`; every expected packet is built *independently* with
//! the rewritten fields already in place, so the builder computes every checksum in full —
//! which checks the data path's incremental (RFC 1624) updates bit for bit. A case without an
//! expected packet asserts the buffer is left exactly as it came in.

use std::net::IpAddr;

use hostagent::config;
use hostagent::dataplane::{DataPath, DropReason, ServiceTable, Verdict};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};

const CONFIG: &str = r#"
[agent]
name = "fixture"
[tunnel]
mux_sources = ["10.0.11.2", "10.0.12.2", "fd00:11::2"]

[[service]]   # 0: v4 TCP with port mapping
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.0.21.2"
backend_port = 8080

[[service]]   # 1: v4 UDP, no port mapping
vip = "192.0.2.10"
port = 53
protocol = "udp"
dip = "10.0.21.2"

[[service]]   # 2: v6 UDP with port mapping
vip = "2001:db8::10"
port = 53
protocol = "udp"
dip = "fd00:21::2"
backend_port = 5353

[[service]]   # 3: v6 TCP
vip = "2001:db8::10"
port = 80
protocol = "tcp"
dip = "fd00:21::2"
backend_port = 8080

[[service]]   # 4: v4 VIP over an IPv6 tunnel
vip = "192.0.2.20"
port = 443
protocol = "tcp"
dip = "fd00:21::2"
backend_address = "10.0.21.3"

[[service]]   # 5: v6 VIP over an IPv4 tunnel
vip = "2001:db8::20"
port = 80
protocol = "tcp"
dip = "10.0.21.2"
backend_address = "fd00:21::3"
backend_port = 8081
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn data_path() -> DataPath {
    let cfg = config::parse(CONFIG, "fixture.toml").unwrap_or_else(|e| panic!("{e}"));
    DataPath::new(ServiceTable::from_config(&cfg).unwrap())
}

const MUX1: &str = "10.0.11.2";
const MUX6: &str = "fd00:11::2";
const DIP: &str = "10.0.21.2";
const DIP6: &str = "fd00:21::2";
const VIP: &str = "192.0.2.10";
const VIP6: &str = "2001:db8::10";
const CLIENT: &str = "198.51.100.7";
const CLIENT6: &str = "2001:db8:c::7";
const ROUTER: &str = "203.0.113.1";

/// The IPIP packet a MUX sends: `inner` in an outer header from `src` to `dst` with protocol
/// 4 or 41 by the inner version.
fn tunnel(src: &str, dst: &str, inner: &[u8]) -> Vec<u8> {
    let proto = if inner[0] >> 4 == 4 { 4 } else { 41 };
    tunnel_proto(src, dst, proto, inner)
}

fn tunnel_proto(src: &str, dst: &str, proto: u8, inner: &[u8]) -> Vec<u8> {
    PacketBuilder::raw(ip(src), ip(dst), proto)
        .payload(inner.to_vec())
        .build_ip()
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> PacketBuilder {
    PacketBuilder::tcp(ip(src), sport, ip(dst), dport, flags)
        .payload(b"GET / HTTP/1.1\r\n".to_vec())
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> PacketBuilder {
    PacketBuilder::udp(ip(src), sport, ip(dst), dport).payload_len(37)
}

/// An ICMP error from `src` to `dst` quoting the first `quote` bytes of `about`.
fn icmp_error(
    src: &str,
    dst: &str,
    ty: u8,
    code: u8,
    rest: u32,
    about: &[u8],
    quote: usize,
) -> Vec<u8> {
    PacketBuilder::icmp(ip(src), ip(dst), ty, code, rest)
        .payload(about[..quote.min(about.len())].to_vec())
        .build_ip()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

struct Case {
    description: &'static str,
    dir: Dir,
    input: Vec<u8>,
    /// The packet the verdict names; `None`: the buffer must be unchanged.
    expected: Option<Vec<u8>>,
    verdict: Verdict,
}

fn deliver(description: &'static str, input: Vec<u8>, expected: Vec<u8>) -> Case {
    let offset = if input[0] >> 4 == 4 { 20 } else { 40 };
    let verdict = Verdict::Deliver {
        offset,
        len: expected.len(),
    };
    Case {
        description,
        dir: Dir::In,
        input,
        expected: Some(expected),
        verdict,
    }
}

fn send(description: &'static str, input: Vec<u8>, expected: Vec<u8>) -> Case {
    let verdict = Verdict::Send {
        len: expected.len(),
    };
    Case {
        description,
        dir: Dir::Out,
        input,
        expected: Some(expected),
        verdict,
    }
}

fn untouched(description: &'static str, dir: Dir, input: Vec<u8>, verdict: Verdict) -> Case {
    Case {
        description,
        dir,
        input,
        expected: None,
        verdict,
    }
}

fn dropped(description: &'static str, input: Vec<u8>, reason: DropReason) -> Case {
    untouched(description, Dir::In, input, Verdict::Drop(reason))
}

fn inbound_cases() -> Vec<Case> {
    use DropReason::*;
    let syn = tcp(CLIENT, 40000, VIP, 80, SYN).build_ip();
    let mut udp_nock = udp(CLIENT, 5300, VIP, 53).build_ip();
    udp_nock[26..28].copy_from_slice(&[0, 0]);
    let mut udp_nock_expected = udp(CLIENT, 5300, DIP, 53).build_ip();
    udp_nock_expected[26..28].copy_from_slice(&[0, 0]);
    // A reply the agent sent (VIP:80 → client), quoted by a router's "fragmentation needed".
    let reply = tcp(VIP, 80, CLIENT, 40000, ACK)
        .payload_len(1400)
        .build_ip();
    let reply_backend = tcp(DIP, 8080, CLIENT, 40000, ACK)
        .payload_len(1400)
        .build_ip();
    let mut truncated_inner = syn.clone();
    truncated_inner.truncate(syn.len() - 4);
    let mut bad_outer_checksum = tunnel(MUX1, DIP, &syn);
    bad_outer_checksum[10] ^= 0xff;
    let mut outer_cut = tunnel(MUX1, DIP, &syn);
    outer_cut.truncate(outer_cut.len() - 1);
    vec![
        deliver(
            "v4-in-v4 TCP SYN, port 80 mapped to 8080",
            tunnel(MUX1, DIP, &syn),
            tcp(CLIENT, 40000, DIP, 8080, SYN).build_ip(),
        ),
        deliver(
            "v4-in-v4 TCP from the second MUX",
            tunnel(
                "10.0.12.2",
                DIP,
                &tcp(CLIENT, 40001, VIP, 80, ACK | PSH).build_ip(),
            ),
            tcp(CLIENT, 40001, DIP, 8080, ACK | PSH).build_ip(),
        ),
        deliver(
            "v4-in-v4 UDP without port mapping",
            tunnel(MUX1, DIP, &udp(CLIENT, 5300, VIP, 53).build_ip()),
            udp(CLIENT, 5300, DIP, 53).build_ip(),
        ),
        deliver(
            "v4-in-v4 UDP with a zero (absent) checksum keeps it zero",
            tunnel(MUX1, DIP, &udp_nock),
            udp_nock_expected,
        ),
        deliver(
            "v6-in-v6 UDP, port 53 mapped to 5353",
            tunnel(MUX6, DIP6, &udp(CLIENT6, 5300, VIP6, 53).build_ip()),
            udp(CLIENT6, 5300, DIP6, 5353).build_ip(),
        ),
        deliver(
            "v6-in-v6 TCP SYN with a hop-by-hop header",
            tunnel(
                MUX6,
                DIP6,
                &tcp(CLIENT6, 40000, VIP6, 80, SYN).hop_by_hop().build_ip(),
            ),
            tcp(CLIENT6, 40000, DIP6, 8080, SYN).hop_by_hop().build_ip(),
        ),
        deliver(
            "v4-in-v6: IPv4 VIP over an IPv6 tunnel to the backend's IPv4 address",
            tunnel(
                MUX6,
                DIP6,
                &tcp(CLIENT, 40000, "192.0.2.20", 443, SYN).build_ip(),
            ),
            tcp(CLIENT, 40000, "10.0.21.3", 443, SYN).build_ip(),
        ),
        deliver(
            "v6-in-v4: IPv6 VIP over an IPv4 tunnel, port mapped",
            tunnel(
                MUX1,
                DIP,
                &tcp(CLIENT6, 40000, "2001:db8::20", 80, SYN).build_ip(),
            ),
            tcp(CLIENT6, 40000, "fd00:21::3", 8081, SYN).build_ip(),
        ),
        deliver(
            "ICMP fragmentation-needed toward the VIP reaches the backend (quote: header + 8)",
            tunnel(MUX1, DIP, &icmp_error(ROUTER, VIP, 3, 4, 1400, &reply, 28)),
            icmp_error(ROUTER, DIP, 3, 4, 1400, &reply_backend, 28),
        ),
        deliver(
            "ICMP fragmentation-needed toward the VIP, quote with the TCP checksum",
            tunnel(MUX1, DIP, &icmp_error(ROUTER, VIP, 3, 4, 1400, &reply, 548)),
            icmp_error(ROUTER, DIP, 3, 4, 1400, &reply_backend, 548),
        ),
        dropped(
            "IPIP from an unknown tunnel source",
            tunnel("10.0.99.9", DIP, &syn),
            UnknownTunnelSource,
        ),
        dropped(
            "IPIP to an unknown DIP",
            tunnel(MUX1, "10.0.21.99", &syn),
            UnknownDip,
        ),
        dropped(
            "inner packet for an unconfigured VIP",
            tunnel(
                MUX1,
                DIP,
                &tcp(CLIENT, 40000, "192.0.2.99", 80, SYN).build_ip(),
            ),
            UnknownService,
        ),
        dropped(
            "inner packet for an unconfigured port of a VIP",
            tunnel(MUX1, DIP, &tcp(CLIENT, 40000, VIP, 81, SYN).build_ip()),
            UnknownService,
        ),
        dropped(
            "inner packet for the right VIP and port but the wrong protocol",
            tunnel(MUX1, DIP, &udp(CLIENT, 40000, VIP, 80).build_ip()),
            UnknownService,
        ),
        dropped(
            "a configured VIP through another service's DIP (no open relay)",
            tunnel(
                MUX1,
                DIP,
                &tcp(CLIENT, 40000, "192.0.2.20", 443, SYN).build_ip(),
            ),
            UnknownService,
        ),
        dropped(
            "ICMP error toward the VIP about an unconfigured port",
            tunnel(
                MUX1,
                DIP,
                &icmp_error(
                    ROUTER,
                    VIP,
                    3,
                    4,
                    1400,
                    &tcp(VIP, 22, CLIENT, 1, ACK).build_ip(),
                    28,
                ),
            ),
            UnknownService,
        ),
        dropped(
            "ICMP error toward the VIP quoting too little to show ports",
            tunnel(MUX1, DIP, &icmp_error(ROUTER, VIP, 3, 4, 1400, &reply, 22)),
            MalformedInnerIcmpError,
        ),
        dropped(
            "ICMP echo request to the VIP",
            tunnel(
                MUX1,
                DIP,
                &PacketBuilder::icmp(ip(CLIENT), ip(VIP), 8, 0, 1).build_ip(),
            ),
            UnsupportedInnerProtocol,
        ),
        dropped("empty buffer", Vec::new(), TruncatedOuter),
        dropped(
            "truncated outer header",
            tunnel(MUX1, DIP, &syn)[..12].to_vec(),
            TruncatedOuter,
        ),
        dropped(
            "outer shorter than its total length",
            outer_cut,
            TruncatedOuter,
        ),
        dropped(
            "truncated outer IPv6 header",
            tunnel(MUX6, DIP6, &syn)[..30].to_vec(),
            TruncatedOuter,
        ),
        dropped(
            "truncated inner packet (inner total length beyond the outer payload)",
            tunnel(MUX1, DIP, &truncated_inner),
            TruncatedInner,
        ),
        dropped(
            "inner shorter than an IPv4 header",
            tunnel(MUX1, DIP, &syn[..12]),
            TruncatedInner,
        ),
        dropped(
            "inner TCP header cut short",
            tunnel(
                MUX1,
                DIP,
                &PacketBuilder::raw(ip(CLIENT), ip(VIP), 6)
                    .payload(vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0])
                    .build_ip(),
            ),
            MalformedInnerTransport,
        ),
        dropped(
            "non-IPIP protocol to the DIP (GRE)",
            tunnel_proto(MUX1, DIP, 47, &syn),
            NotIpip,
        ),
        dropped("plain TCP to the DIP", syn.clone(), NotIpip),
        dropped(
            "protocol 41 carrying an IPv4 packet",
            tunnel_proto(MUX1, DIP, 41, &syn),
            MalformedInner,
        ),
        dropped(
            "outer IPv4 checksum wrong",
            bad_outer_checksum,
            BadOuterChecksum,
        ),
        dropped(
            "outer fragment",
            PacketBuilder::raw(ip(MUX1), ip(DIP), 4)
                .payload(syn.clone())
                .fragment(0, true)
                .build_ip(),
            OuterFragment,
        ),
        dropped(
            "inner fragment",
            tunnel(
                MUX1,
                DIP,
                &tcp(CLIENT, 40000, VIP, 80, ACK)
                    .fragment(0, true)
                    .build_ip(),
            ),
            InnerFragment,
        ),
        dropped(
            "inner protocol neither TCP, UDP nor ICMP",
            tunnel(
                MUX1,
                DIP,
                &PacketBuilder::raw(ip(CLIENT), ip(VIP), 132)
                    .payload_len(12)
                    .build_ip(),
            ),
            UnsupportedInnerProtocol,
        ),
        dropped(
            "version 5 outer header",
            {
                let mut p = tunnel(MUX1, DIP, &syn);
                p[0] = 0x55;
                p
            },
            MalformedOuter,
        ),
    ]
}

fn outbound_cases() -> Vec<Case> {
    // The packet the backend received (client → DIP:8080), quoted by its ICMP errors.
    let received = tcp(CLIENT, 40000, DIP, 8080, ACK)
        .payload_len(1400)
        .build_ip();
    let as_sent = tcp(CLIENT, 40000, VIP, 80, ACK)
        .payload_len(1400)
        .build_ip();
    let received6 = udp(CLIENT6, 5300, DIP6, 5353).payload_len(1400).build_ip();
    let as_sent6 = udp(CLIENT6, 5300, VIP6, 53).payload_len(1400).build_ip();
    vec![
        send(
            "v4 TCP SYN-ACK from DIP:8080 leaves as VIP:80",
            tcp(DIP, 8080, CLIENT, 40000, SYN | ACK).build_ip(),
            tcp(VIP, 80, CLIENT, 40000, SYN | ACK).build_ip(),
        ),
        send(
            "v4 UDP reply without port mapping",
            udp(DIP, 53, CLIENT, 5300).build_ip(),
            udp(VIP, 53, CLIENT, 5300).build_ip(),
        ),
        send(
            "v6 UDP reply from DIP:5353 leaves as VIP:53",
            udp(DIP6, 5353, CLIENT6, 5300).build_ip(),
            udp(VIP6, 53, CLIENT6, 5300).build_ip(),
        ),
        send(
            "v6 TCP reply from DIP:8080 leaves as VIP:80",
            tcp(DIP6, 8080, CLIENT6, 40000, ACK | PSH).build_ip(),
            tcp(VIP6, 80, CLIENT6, 40000, ACK | PSH).build_ip(),
        ),
        send(
            "reply of the IPv4 VIP tunnelled over IPv6",
            tcp("10.0.21.3", 443, CLIENT, 40000, SYN | ACK).build_ip(),
            tcp("192.0.2.20", 443, CLIENT, 40000, SYN | ACK).build_ip(),
        ),
        send(
            "ICMP fragmentation-needed from the backend (quote: header + 8)",
            icmp_error(DIP, CLIENT, 3, 4, 1400, &received, 28),
            icmp_error(VIP, CLIENT, 3, 4, 1400, &as_sent, 28),
        ),
        send(
            "ICMP fragmentation-needed from the backend, quote with the TCP checksum",
            icmp_error(DIP, CLIENT, 3, 4, 1400, &received, 576 - 28),
            icmp_error(VIP, CLIENT, 3, 4, 1400, &as_sent, 576 - 28),
        ),
        send(
            "ICMPv6 packet-too-big from the backend",
            icmp_error(DIP6, CLIENT6, 2, 0, 1280, &received6, 1232),
            icmp_error(VIP6, CLIENT6, 2, 0, 1280, &as_sent6, 1232),
        ),
        send(
            "ICMPv6 port unreachable from the backend",
            icmp_error(DIP6, CLIENT6, 1, 4, 0, &received6, 48),
            icmp_error(VIP6, CLIENT6, 1, 4, 0, &as_sent6, 48),
        ),
        untouched(
            "TCP from the DIP on another port (the backend's own connection)",
            Dir::Out,
            tcp(DIP, 22, CLIENT, 40000, ACK).build_ip(),
            Verdict::Pass,
        ),
        untouched(
            "UDP from the DIP on the TCP service's port",
            Dir::Out,
            udp(DIP, 8080, CLIENT, 40000).build_ip(),
            Verdict::Pass,
        ),
        untouched(
            "TCP from an address that is no backend",
            Dir::Out,
            tcp("10.0.21.77", 8080, CLIENT, 40000, ACK).build_ip(),
            Verdict::Pass,
        ),
        untouched(
            "ICMP echo reply from the DIP",
            Dir::Out,
            PacketBuilder::icmp(ip(DIP), ip(CLIENT), 0, 0, 7).build_ip(),
            Verdict::Pass,
        ),
        untouched(
            "ICMP error from the DIP about a non-service port",
            Dir::Out,
            icmp_error(
                DIP,
                CLIENT,
                3,
                3,
                0,
                &udp(CLIENT, 1, DIP, 9999).build_ip(),
                28,
            ),
            Verdict::Pass,
        ),
        untouched(
            "fragment from the DIP",
            Dir::Out,
            tcp(DIP, 8080, CLIENT, 40000, ACK)
                .fragment(0, true)
                .build_ip(),
            Verdict::Pass,
        ),
        untouched(
            "garbage",
            Dir::Out,
            vec![0x45, 0, 0],
            Verdict::Drop(DropReason::MalformedOutbound),
        ),
        untouched(
            "TCP header cut short from DIP:8080",
            Dir::Out,
            PacketBuilder::raw(ip(DIP), ip(CLIENT), 6)
                .payload(vec![0x1f, 0x90, 0x9c, 0x40, 0, 0, 0, 1, 0, 0])
                .build_ip(),
            Verdict::Drop(DropReason::MalformedReply),
        ),
    ]
}

fn run(dp: &mut DataPath, case: &Case) {
    let mut buf = case.input.clone();
    let verdict = match case.dir {
        Dir::In => dp.decap(&mut buf),
        Dir::Out => dp.snat(&mut buf),
    };
    assert_eq!(verdict, case.verdict, "{}", case.description);
    match (&case.expected, verdict) {
        (Some(expected), Verdict::Deliver { offset, len }) => {
            assert_eq!(
                &buf[offset..offset + len],
                &expected[..],
                "{}",
                case.description
            );
        }
        (Some(expected), Verdict::Send { len }) => {
            assert_eq!(&buf[..len], &expected[..], "{}", case.description);
        }
        (None, _) => assert_eq!(buf, case.input, "{}: buffer changed", case.description),
        (Some(_), v) => panic!("{}: expected packet but verdict {v:?}", case.description),
    }
}

#[test]
fn inbound_fixtures() {
    let mut dp = data_path();
    let cases = inbound_cases();
    for case in &cases {
        run(&mut dp, case);
    }
    let c = dp.counters();
    assert_eq!(c.inbound, cases.len() as u64);
    for reason in DropReason::ALL {
        let want = cases
            .iter()
            .filter(|k| k.verdict == Verdict::Drop(*reason))
            .count() as u64;
        assert_eq!(c.dropped(*reason), want, "{}", reason.name());
    }
    assert_eq!(c.delivered, 8);
    assert_eq!(c.icmp_errors_delivered, 2);
    assert_eq!(
        c.delivered + c.icmp_errors_delivered + c.total_drops(),
        c.inbound
    );
    let per: Vec<u64> = c.services.iter().map(|s| s.delivered).collect();
    assert_eq!(per, [2, 2, 1, 1, 1, 1]);
    assert_eq!(c.services[0].icmp_errors_delivered, 2);
}

#[test]
fn outbound_fixtures() {
    let mut dp = data_path();
    let cases = outbound_cases();
    for case in &cases {
        run(&mut dp, case);
    }
    let c = dp.counters();
    assert_eq!(c.outbound, cases.len() as u64);
    assert_eq!(c.replies_rewritten, 5);
    assert_eq!(c.icmp_errors_rewritten, 4);
    assert_eq!(c.passed, 6);
    assert_eq!(c.fragments_passed, 1);
    assert_eq!(c.dropped(DropReason::MalformedOutbound), 1);
    assert_eq!(c.dropped(DropReason::MalformedReply), 1);
    let replies: Vec<u64> = c.services.iter().map(|s| s.replies_rewritten).collect();
    assert_eq!(replies, [1, 1, 1, 1, 1, 0]);
    let icmp: Vec<u64> = c.services.iter().map(|s| s.icmp_errors_rewritten).collect();
    assert_eq!(icmp, [2, 0, 2, 0, 0, 0]);
}

/// A round trip: what the backend receives after decap, answered, comes out of snat as if
/// the VIP had answered.
#[test]
fn decap_then_reply_round_trip() {
    let mut dp = data_path();
    let mut buf = tunnel(MUX1, DIP, &tcp(CLIENT, 40000, VIP, 80, SYN).build_ip());
    let Verdict::Deliver { offset, len } = dp.decap(&mut buf) else {
        panic!("not delivered");
    };
    let delivered = &buf[offset..offset + len];
    assert_eq!(&delivered[16..20], &[10, 0, 21, 2]);
    let mut reply = tcp(DIP, 8080, CLIENT, 40000, SYN | ACK).build_ip();
    assert_eq!(dp.snat(&mut reply), Verdict::Send { len: reply.len() });
    assert_eq!(&reply[12..16], &[192, 0, 2, 10]);
    assert_eq!(&reply[20..22], &80u16.to_be_bytes());
}
