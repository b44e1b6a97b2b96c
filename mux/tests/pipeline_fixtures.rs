//! Table-driven packet fixtures: `{description, input, expected output, verdict}`.
//!
//! Each fixture is one frame pushed through a fresh worker configured with
//! `common::FIXTURE_CONFIG` (one backend per VIP, so the backend is known). Expected output
//! frames are written independently of the MUX's code (see `common`).

mod common;

use common::*;
use mux::dataplane::verdict::{DropReason, Reply, Verdict};
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_packet::stable_hash;

/// What a fixture expects.
enum Expect {
    /// Forwarded, and the transmitted frame equals this.
    Frame(Vec<u8>),
    /// Replaced by an ICMP error for the client; checked by `check_icmp_too_big`.
    TooBig { mtu: u32 },
    /// Handed to the kernel unchanged.
    Kernel,
    /// Dropped with this reason.
    Drop(DropReason),
}

struct Fixture {
    description: &'static str,
    input: Vec<u8>,
    expect: Expect,
}

fn client4() -> std::net::IpAddr {
    ip("198.51.100.7")
}
fn client6() -> std::net::IpAddr {
    ip("2001:db8:c::7")
}

/// Encapsulated v4-in-v4 toward `backend`.
fn to_v4(input: &[u8], l2: usize, backend: [u8; 4], vlan: Option<u16>) -> Expect {
    Expect::Frame(expected_ipip_v4(&inner_ip(input, l2), backend, vlan))
}

/// Encapsulated in IPv6 toward `backend`, flow label from the stable hash of `key`.
fn to_v6(input: &[u8], l2: usize, backend: &str, key: FlowKey) -> Expect {
    let label = (stable_hash::flow_hash(&key) & 0xfffff) as u32;
    Expect::Frame(expected_ipip_v6(&inner_ip(input, l2), backend, label, None))
}

fn key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: canonical_addr(ip(src)),
        dst: canonical_addr(ip(dst)),
        src_port: sport,
        dst_port: dport,
        protocol: proto,
    }
}

fn fixtures() -> Vec<Fixture> {
    let web = ip("192.0.2.10");
    let mut v = Vec::new();
    let mut add = |description, input: Vec<u8>, expect| {
        v.push(Fixture {
            description,
            input,
            expect,
        })
    };

    for (description, flags) in [
        ("TCP SYN to an IPv4 VIP", SYN),
        ("TCP ACK to an IPv4 VIP", ACK),
        ("TCP FIN to an IPv4 VIP", FIN | ACK),
        ("TCP RST to an IPv4 VIP", RST),
    ] {
        let f = PacketBuilder::tcp(client4(), 40000, web, 80, flags)
            .payload_len(10)
            .build();
        let e = to_v4(&f, 14, [10, 1, 0, 1], None);
        add(description, f, e);
    }
    let f = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(30)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 2], None);
    add("UDP to an IPv4 VIP", f, e);

    let f = PacketBuilder::tcp(client6(), 40000, ip("2001:db8::10"), 443, SYN).build();
    let e = to_v6(
        &f,
        14,
        "fd00:1::1",
        key("2001:db8:c::7", 40000, "2001:db8::10", 443, 6),
    );
    add(
        "TCP SYN to an IPv6 VIP (IPv6 backend: proto 41 in IPv6)",
        f,
        e,
    );

    let f = PacketBuilder::tcp(client6(), 40001, ip("2001:db8::10"), 443, ACK | PSH)
        .payload_len(100)
        .build();
    let e = to_v6(
        &f,
        14,
        "fd00:1::1",
        key("2001:db8:c::7", 40001, "2001:db8::10", 443, 6),
    );
    add("TCP data to an IPv6 VIP", f, e);

    let f = PacketBuilder::udp(client6(), 5353, ip("2001:db8::53"), 53)
        .payload_len(20)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 3], None);
    add(
        "UDP to an IPv6 VIP with an IPv4 backend (proto 41 in IPv4)",
        f,
        e,
    );

    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.20"), 80, SYN).build();
    let e = to_v6(
        &f,
        14,
        "fd00:1::2",
        key("198.51.100.7", 40000, "192.0.2.20", 80, 6),
    );
    add("IPv4 VIP to an IPv6 backend (proto 4 in IPv6)", f, e);

    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .vlan(42)
        .build();
    let e = to_v4(&f, 18, [10, 1, 0, 1], Some(42));
    add("VLAN-tagged TCP keeps its tag", f, e);

    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .padding(6)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 1], None);
    add("Ethernet padding is not encapsulated", f, e);

    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .tos(0xb9)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 1], None);
    add("DSCP and ECN are copied to the outer header", f, e);

    let f = PacketBuilder::tcp(client6(), 40002, ip("2001:db8::10"), 443, ACK)
        .hop_by_hop()
        .build();
    let e = to_v6(
        &f,
        14,
        "fd00:1::1",
        key("2001:db8:c::7", 40002, "2001:db8::10", 443, 6),
    );
    add("IPv6 with a hop-by-hop header reaches TCP", f, e);

    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.99"), 80, SYN).build();
    add(
        "TCP to a non-VIP address goes to the kernel",
        f,
        Expect::Kernel,
    );
    let f = PacketBuilder::tcp(client4(), 40000, web, 8080, SYN).build();
    add(
        "TCP to a VIP address on another port goes to the kernel",
        f,
        Expect::Kernel,
    );
    let f = PacketBuilder::udp(client4(), 40000, web, 80).build();
    add(
        "UDP to a TCP VIP's port goes to the kernel",
        f,
        Expect::Kernel,
    );
    let f = PacketBuilder::icmp(client4(), web, 8, 0, 0x0001_0001)
        .payload_len(16)
        .build();
    add("ICMP echo to a VIP goes to the kernel", f, Expect::Kernel);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xaa, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xaa, 10, 0, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 11]);
    add("ARP goes to the kernel", arp, Expect::Kernel);

    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .payload_len(1460)
        .build();
    add(
        "Oversize IPv4 with DF: ICMP fragmentation needed",
        f,
        Expect::TooBig { mtu: 1480 },
    );
    let f = PacketBuilder::tcp(client6(), 40000, ip("2001:db8::10"), 443, ACK)
        .payload_len(1440)
        .build();
    add(
        "Oversize IPv6: ICMPv6 packet too big",
        f,
        Expect::TooBig { mtu: 1460 },
    );
    let f = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .payload_len(1460)
        .dont_frag(false)
        .build();
    add(
        "Oversize IPv4 without DF is dropped",
        f,
        Expect::Drop(DropReason::TooBigWithoutDf),
    );
    let f = PacketBuilder::tcp(client4(), 40000, ip("192.0.2.30"), 80, SYN).build();
    add(
        "New flow to a VIP whose only backend drains",
        f,
        Expect::Drop(DropReason::NoBackend),
    );

    // An ICMP "fragmentation needed" from a router on the client's path about a packet the
    // backend sent from the VIP: routed to the flow's backend.
    let sent = PacketBuilder::tcp(web, 80, client4(), 40000, ACK)
        .payload_len(1400)
        .build_ip();
    let f = PacketBuilder::icmp(ip("203.0.113.1"), web, 3, 4, 1400)
        .payload(sent[..28].to_vec())
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 1], None);
    add(
        "ICMP fragmentation needed toward a VIP goes to the flow's backend",
        f,
        e,
    );
    let sent = PacketBuilder::tcp(ip("2001:db8::10"), 443, client6(), 40000, ACK).build_ip();
    let f = PacketBuilder::icmp(ip("2001:db8:ff::1"), ip("2001:db8::10"), 2, 0, 1280)
        .payload(sent.clone())
        .build();
    let e = to_v6(
        &f,
        14,
        "fd00:1::1",
        key("2001:db8:c::7", 40000, "2001:db8::10", 443, 6),
    );
    add(
        "ICMPv6 packet too big toward a VIP goes to the flow's backend",
        f,
        e,
    );

    let f = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(100)
        .fragment(0, true)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 2], None);
    add("First IPv4 fragment", f, e);
    let f = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
        .payload_len(64)
        .fragment(1480, false)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 2], None);
    add("Last IPv4 fragment (no ports)", f, e);
    let f = PacketBuilder::udp(client6(), 5353, ip("2001:db8::53"), 53)
        .payload_len(64)
        .fragment(1448, false)
        .build();
    let e = to_v4(&f, 14, [10, 1, 0, 3], None);
    add("IPv6 fragment", f, e);

    // Malformed input: each dropped with its own reason.
    let good = PacketBuilder::tcp(client4(), 40000, web, 80, ACK).build();
    add(
        "Frame shorter than Ethernet",
        good[..10].to_vec(),
        Expect::Drop(DropReason::TruncatedEthernet),
    );
    let tagged = PacketBuilder::tcp(client4(), 40000, web, 80, ACK)
        .vlan(5)
        .build();
    add(
        "VLAN tag cut short",
        tagged[..16].to_vec(),
        Expect::Drop(DropReason::TruncatedEthernet),
    );
    add(
        "IPv4 header cut short",
        good[..24].to_vec(),
        Expect::Drop(DropReason::MalformedIpv4),
    );
    let mut bad = good.clone();
    bad[14] = 0x65;
    add(
        "IPv4 ethertype with version 6",
        bad,
        Expect::Drop(DropReason::MalformedIpv4),
    );
    let mut bad = good.clone();
    bad[14] = 0x44;
    add(
        "IPv4 IHL below 5",
        bad,
        Expect::Drop(DropReason::MalformedIpv4),
    );
    let mut bad = good.clone();
    bad[16..18].copy_from_slice(&1000u16.to_be_bytes());
    add(
        "IPv4 total length beyond the frame",
        bad,
        Expect::Drop(DropReason::MalformedIpv4),
    );
    let mut bad = good.clone();
    bad[16..18].copy_from_slice(&10u16.to_be_bytes());
    add(
        "IPv4 total length below the header",
        bad,
        Expect::Drop(DropReason::MalformedIpv4),
    );
    let good6 = PacketBuilder::tcp(client6(), 40000, ip("2001:db8::10"), 443, ACK).build();
    add(
        "IPv6 header cut short",
        good6[..40].to_vec(),
        Expect::Drop(DropReason::MalformedIpv6),
    );
    let mut bad = good6.clone();
    bad[14] = 0x45;
    add(
        "IPv6 ethertype with version 4",
        bad,
        Expect::Drop(DropReason::MalformedIpv6),
    );
    let mut bad = good6.clone();
    bad[18..20].copy_from_slice(&500u16.to_be_bytes());
    add(
        "IPv6 payload length beyond the frame",
        bad,
        Expect::Drop(DropReason::MalformedIpv6),
    );
    let mut bad = PacketBuilder::tcp(client6(), 40000, ip("2001:db8::10"), 443, ACK)
        .hop_by_hop()
        .build();
    bad[14 + 41] = 200; // hop-by-hop length: 1608 bytes, past the payload
    add(
        "IPv6 extension header past the payload",
        bad,
        Expect::Drop(DropReason::MalformedIpv6Extension),
    );
    let mut bad = good.clone();
    bad.truncate(14 + 20 + 10);
    bad[16..18].copy_from_slice(&30u16.to_be_bytes());
    bad[24..26].copy_from_slice(&[0, 0]);
    let c = mux_packet::checksum::internet_checksum(&bad[14..34]);
    bad[24..26].copy_from_slice(&c.to_be_bytes());
    add(
        "TCP header cut short",
        bad,
        Expect::Drop(DropReason::MalformedTransport),
    );
    let mut bad = good.clone();
    bad[14 + 20 + 12] = 0x40;
    add(
        "TCP data offset below 5",
        bad,
        Expect::Drop(DropReason::MalformedTransport),
    );
    let mut bad = PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53).build();
    bad[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    add(
        "UDP length below 8",
        bad,
        Expect::Drop(DropReason::MalformedTransport),
    );
    let f = PacketBuilder::icmp(ip("203.0.113.1"), web, 3, 4, 1400)
        .payload(vec![0x45, 0])
        .build();
    add(
        "ICMP error to a VIP with a cut embedded header",
        f,
        Expect::Drop(DropReason::MalformedIcmpError),
    );
    v
}

#[test]
fn packet_fixtures() {
    let snap = snapshot(FIXTURE_CONFIG);
    let mut failures = Vec::new();
    for fx in fixtures() {
        let out = run(&snap, std::slice::from_ref(&fx.input));
        let verdict = out.verdicts[0];
        let problem = match &fx.expect {
            Expect::Frame(expected) => match (verdict, out.transmitted.first()) {
                (Verdict::Forward, Some(frame)) if frame == expected => None,
                (Verdict::Forward, Some(frame)) => Some(format!(
                    "wrong bytes:\n  got      {}\n  expected {}",
                    hex(frame),
                    hex(expected)
                )),
                (v, _) => Some(format!("verdict {v:?}, expected Forward")),
            },
            Expect::TooBig { mtu } => match (verdict, out.transmitted.first()) {
                (Verdict::Reply(Reply::TooBig), Some(frame)) => {
                    check_icmp_too_big(&fx.input, frame, *mtu).err()
                }
                (v, _) => Some(format!("verdict {v:?}, expected Reply")),
            },
            Expect::Kernel => match (verdict, out.to_kernel.first()) {
                (Verdict::ToKernel, Some(frame)) if *frame == fx.input => None,
                (v, _) => Some(format!(
                    "verdict {v:?}, expected ToKernel with the frame unchanged"
                )),
            },
            Expect::Drop(reason) => {
                if verdict == Verdict::Drop(*reason) && out.counters.dropped(*reason) == 1 {
                    None
                } else {
                    Some(format!(
                        "verdict {verdict:?}, expected Drop({reason:?}) counted once"
                    ))
                }
            }
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

/// Checks an ICMP "too big" reply against the frame that caused it.
fn check_icmp_too_big(input: &[u8], reply: &[u8], mtu: u32) -> Result<(), String> {
    use mux_packet::checksum;
    let ensure = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {}", hex(reply)))
        }
    };
    ensure(
        reply[0..6] == input[6..12],
        "reply goes back to the sender's MAC",
    )?;
    ensure(reply[6..12] == MUX_MAC, "reply comes from our MAC")?;
    let orig = &input[14..];
    let ip = &reply[14..];
    if orig[0] >> 4 == 4 {
        ensure(reply[12..14] == [0x08, 0x00], "IPv4 ethertype")?;
        ensure(
            checksum::internet_checksum(&ip[..20]) == 0,
            "IPv4 header checksum",
        )?;
        ensure(ip[9] == 1, "protocol ICMP")?;
        ensure(ip[12..16] == orig[16..20], "source is the VIP")?;
        ensure(ip[16..20] == orig[12..16], "destination is the client")?;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        ensure(total == ip.len() && total <= 576, "length at most 576")?;
        let icmp = &ip[20..];
        ensure(icmp[0] == 3 && icmp[1] == 4, "type 3 code 4")?;
        ensure(
            u16::from_be_bytes([icmp[6], icmp[7]]) as u32 == mtu,
            "next-hop MTU",
        )?;
        ensure(checksum::internet_checksum(icmp) == 0, "ICMP checksum")?;
        ensure(
            icmp[8..] == orig[..icmp.len() - 8],
            "quotes the original packet",
        )
    } else {
        ensure(reply[12..14] == [0x86, 0xdd], "IPv6 ethertype")?;
        ensure(ip[6] == 58, "next header ICMPv6")?;
        ensure(ip[8..24] == orig[24..40], "source is the VIP")?;
        ensure(ip[24..40] == orig[8..24], "destination is the client")?;
        ensure(
            40 + u16::from_be_bytes([ip[4], ip[5]]) as usize == ip.len() && ip.len() <= 1280,
            "length at most 1280",
        )?;
        let icmp = &ip[40..];
        ensure(icmp[0] == 2 && icmp[1] == 0, "type 2 code 0")?;
        ensure(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]) == mtu,
            "MTU",
        )?;
        let src: [u8; 16] = ip[8..24].try_into().unwrap();
        let dst: [u8; 16] = ip[24..40].try_into().unwrap();
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 58, icmp.len() as u32);
        ensure(
            checksum::finish(pseudo as u64 + checksum::sum(icmp) as u64) == 0,
            "ICMPv6 checksum",
        )?;
        ensure(
            icmp[8..] == orig[..icmp.len() - 8],
            "quotes the original packet",
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- drain resets --------------------------------------------------------------------------
//
// A flow is pinned to a backend under the fixture config; a reload then drains that backend
// with a deadline already past (and adds an active one). The flow's next segment must be
// answered with a TCP reset from the VIP, byte for byte as RFC 9293 §3.10.7.1 says, and not
// forwarded.

/// The fixture config after the reload: `web` (10.1.0.1), `web6` (fd00:1::1) and `dns`
/// (10.1.0.2) drained with a deadline in the past, each next to a new active backend.
fn drained_config() -> String {
    let drain = |addr: &str, new: &str| {
        (
            format!("  address = \"{addr}\"\n"),
            format!(
                "  address = \"{addr}\"\n  state = \"draining\"\n  \
                 drain_deadline = 2020-01-01T00:00:00Z\n  [[vip.backend]]\n  address = \"{new}\"\n"
            ),
        )
    };
    let mut text = FIXTURE_CONFIG.to_string();
    for (from, to) in [
        drain("10.1.0.1", "10.1.0.5"),
        drain("fd00:1::1", "fd00:1::5"),
        drain("10.1.0.2", "10.1.0.6"),
    ] {
        text = text.replacen(&from, &to, 1);
    }
    text
}

/// The reset we expect, written field by field: Ethernet back to the sender (tag kept), a
/// 20-byte IPv4 header (DF, ident 0, TTL 64) or 40-byte IPv6 header (hop limit 64) from the
/// VIP, and a 20-byte TCP header (window 0) with its checksum over a pseudo header laid out
/// here by hand.
#[allow(clippy::too_many_arguments)]
fn expected_reset(
    vlan: Option<u16>,
    vip: &str,
    client: &str,
    vip_port: u16,
    client_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    use mux_packet::checksum::internet_checksum;
    let (vip, client) = (ip(vip), ip(client));
    let mut out = Vec::new();
    out.extend_from_slice(&mux_packet::packet_builder::DEFAULT_SRC_MAC);
    out.extend_from_slice(&MUX_MAC);
    if let Some(v) = vlan {
        out.extend_from_slice(&[0x81, 0x00]);
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&vip_port.to_be_bytes());
    tcp.extend_from_slice(&client_port.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0, 0, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    match (vip, client) {
        (std::net::IpAddr::V4(v), std::net::IpAddr::V4(c)) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
            h.extend_from_slice(&v.octets());
            h.extend_from_slice(&c.octets());
            let check = internet_checksum(&h);
            h[10..12].copy_from_slice(&check.to_be_bytes());
            out.extend_from_slice(&h);
            pseudo.extend_from_slice(&v.octets());
            pseudo.extend_from_slice(&c.octets());
            pseudo.extend_from_slice(&[0, 6, 0, 20]);
        }
        (std::net::IpAddr::V6(v), std::net::IpAddr::V6(c)) => {
            out.extend_from_slice(&[0x86, 0xdd]);
            out.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            out.extend_from_slice(&v.octets());
            out.extend_from_slice(&c.octets());
            pseudo.extend_from_slice(&v.octets());
            pseudo.extend_from_slice(&c.octets());
            pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        }
        _ => panic!("one family"),
    }
    pseudo.extend_from_slice(&tcp);
    let check = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    out.extend_from_slice(&tcp);
    out
}

#[test]
fn the_expected_reset_helper_matches_literal_frames() {
    // Computed independently (Python's struct and a hand-written one's-complement sum).
    let v4 = "0200000000aa0200000000010800450000280000400040064e8bc000020ac633640700509c40\
              0a0b0c0d000000005004000010f30000";
    let v6 = "0200000000aa02000000000186dd600000000014064020010db8000000000000000000000010\
              20010db8000c0000000000000000000701bb9c40000000000102030b50140000b2330000";
    assert_eq!(
        hex(&expected_reset(
            None,
            "192.0.2.10",
            "198.51.100.7",
            80,
            40000,
            0x0a0b_0c0d,
            0,
            RST
        )),
        v4
    );
    assert_eq!(
        hex(&expected_reset(
            None,
            "2001:db8::10",
            "2001:db8:c::7",
            443,
            40000,
            0,
            0x0102_030b,
            RST | ACK
        )),
        v6
    );
}

/// Adds `n` bytes (a multiple of 4) of IPv4 options (NOPs, then EOL) after the IPv4 header of
/// an untagged frame, fixing IHL, total length and the header checksum.
fn with_ipv4_options(frame: &[u8], n: usize) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out.extend(std::iter::repeat_n(1u8, n - 1));
    out.push(0);
    out.extend_from_slice(&frame[34..]);
    out[14] = 0x45 + (n / 4) as u8;
    let total = u16::from_be_bytes([out[16], out[17]]) + n as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let check = mux_packet::checksum::internet_checksum(&out[14..34 + n]);
    out[24..26].copy_from_slice(&check.to_be_bytes());
    out
}

/// Adds `n` bytes (a multiple of 4) of TCP options (NOPs) after the TCP header at `tcp` in an
/// IPv4 frame whose IP header starts at 14, fixing the data offset and the IP total length and
/// checksum (the MUX does not check TCP checksums; the reset must not depend on them).
fn with_tcp_options(frame: &[u8], tcp: usize, n: usize) -> Vec<u8> {
    let mut out = frame[..tcp + 20].to_vec();
    out.extend(std::iter::repeat_n(1u8, n));
    out.extend_from_slice(&frame[tcp + 20..]);
    out[tcp + 12] = ((20 + n as u8) / 4) << 4;
    let ihl = usize::from(out[14] & 0x0f) * 4;
    let total = u16::from_be_bytes([out[16], out[17]]) + n as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let check = mux_packet::checksum::internet_checksum(&out[14..14 + ihl]);
    out[24..26].copy_from_slice(&check.to_be_bytes());
    out
}

#[test]
fn segments_past_a_drain_deadline_get_a_reset() {
    use mux::control::compile::{self, CompileOptions};
    use mux::control::registry::Registry;
    let mut registry = Registry::default();
    let parse = |text: &str| mux::config::parse(text, "fixture.toml").expect("valid");
    let before = compile::compile(
        &parse(FIXTURE_CONFIG),
        &mut registry,
        1,
        &CompileOptions::default(),
    )
    .unwrap();
    let after = compile::compile(
        &parse(&drained_config()),
        &mut registry,
        2,
        &CompileOptions::default(),
    )
    .unwrap();

    let web = ip("192.0.2.10");
    let web6 = ip("2001:db8::10");
    let tcp4 = |sport, flags| PacketBuilder::tcp(client4(), sport, web, 80, flags);
    let tcp6 = |sport, flags| PacketBuilder::tcp(client6(), sport, web6, 443, flags);
    let reset4 = |sport, seq, ack, flags| {
        Expect::Frame(expected_reset(
            None,
            "192.0.2.10",
            "198.51.100.7",
            80,
            sport,
            seq,
            ack,
            flags,
        ))
    };
    let reset6 = |sport, seq, ack, flags| {
        Expect::Frame(expected_reset(
            None,
            "2001:db8::10",
            "2001:db8:c::7",
            443,
            sport,
            seq,
            ack,
            flags,
        ))
    };
    // (description, the flow's earlier packet, the segment after the deadline, expectation).
    // PacketBuilder segments carry SEQ 0x01020304 and, with ACK, ACK 0x0a0b0c0d.
    let mut cases: Vec<(&str, Vec<u8>, Vec<u8>, Expect)> = vec![
        (
            "ACK with data: RST, SEQ = SEG.ACK, no ACK flag",
            tcp4(41000, ACK).build(),
            tcp4(41000, ACK | PSH).payload_len(10).build(),
            reset4(41000, 0x0a0b_0c0d, 0, RST),
        ),
        (
            "FIN|ACK: RST, SEQ = SEG.ACK",
            tcp4(41001, ACK).build(),
            tcp4(41001, FIN | ACK).build(),
            reset4(41001, 0x0a0b_0c0d, 0, RST),
        ),
        (
            "data without ACK: RST|ACK, SEQ 0, ACK = SEG.SEQ + 100",
            tcp4(41002, ACK).build(),
            tcp4(41002, PSH).payload_len(100).build(),
            reset4(41002, 0, 0x0102_0368, RST | ACK),
        ),
        (
            "FIN without ACK: RST|ACK, ACK = SEG.SEQ + 1",
            tcp4(41003, ACK).build(),
            tcp4(41003, FIN).build(),
            reset4(41003, 0, 0x0102_0305, RST | ACK),
        ),
        (
            "IPv4 and TCP options are not data: ACK = SEG.SEQ + 20",
            tcp4(41004, ACK).build(),
            with_tcp_options(
                &with_ipv4_options(&tcp4(41004, PSH).payload_len(20).build(), 8),
                14 + 28,
                12,
            ),
            reset4(41004, 0, 0x0102_0318, RST | ACK),
        ),
        (
            "VLAN-tagged: the tag is kept",
            tcp4(41005, ACK).vlan(42).build(),
            tcp4(41005, ACK).vlan(42).payload_len(3).build(),
            Expect::Frame(expected_reset(
                Some(42),
                "192.0.2.10",
                "198.51.100.7",
                80,
                41005,
                0x0a0b_0c0d,
                0,
                RST,
            )),
        ),
        (
            "IPv6 ACK behind a hop-by-hop header: a 40-byte IPv6 reset",
            tcp6(41006, ACK).build(),
            tcp6(41006, ACK).hop_by_hop().payload_len(50).build(),
            reset6(41006, 0x0a0b_0c0d, 0, RST),
        ),
        (
            "IPv6 data without ACK: RST|ACK, ACK = SEG.SEQ + 7",
            tcp6(41007, ACK).build(),
            tcp6(41007, PSH).payload_len(7).build(),
            reset6(41007, 0, 0x0102_030b, RST | ACK),
        ),
        (
            "the client's own RST is not answered, nor forwarded",
            tcp4(41008, ACK).build(),
            tcp4(41008, RST | ACK).build(),
            Expect::Drop(DropReason::RstAfterDrainDeadline),
        ),
    ];
    let syn = tcp4(41009, SYN).build();
    let e = to_v4(&syn, 14, [10, 1, 0, 5], None);
    cases.push((
        "a bare SYN on the drained 4-tuple is a new connection: re-hashed to an active backend",
        tcp4(41009, ACK).build(),
        syn,
        e,
    ));
    let udp = |n| {
        PacketBuilder::udp(client4(), 5353, ip("192.0.2.53"), 53)
            .payload_len(n)
            .build()
    };
    let later = udp(40);
    let e = to_v4(&later, 14, [10, 1, 0, 6], None);
    cases.push(("UDP is re-hashed to an active backend", udp(30), later, e));

    let mut failures = Vec::new();
    for (description, first, input, expect) in cases {
        let mut w = worker(4096);
        let setup = run_on(&mut w, &before, 1, std::slice::from_ref(&first));
        assert_eq!(setup.verdicts, [Verdict::Forward], "{description}: setup");
        let out = run_on(&mut w, &after, 2, std::slice::from_ref(&input));
        let c = &out.counters;
        let problem = match (&expect, out.verdicts[0]) {
            (Expect::Frame(frame), Verdict::Reply(Reply::Reset)) => {
                if out.transmitted.first() != Some(frame) {
                    Some(format!(
                        "wrong bytes:\n  got      {}\n  expected {}",
                        hex(out.transmitted.first().map_or(&[][..], |f| f)),
                        hex(frame)
                    ))
                } else if c.drain_resets_sent != 1 || w.pipeline.flow_table().live_entries(2) != 0 {
                    Some("not counted once, or the flow's entry was kept".to_string())
                } else {
                    None
                }
            }
            (Expect::Frame(frame), Verdict::Forward) => {
                if out.transmitted.first() == Some(frame) && c.flows_rehashed_after_drain == 1 {
                    None
                } else {
                    Some(format!(
                        "re-hash: got {} (after-drain re-hashes {}), expected {}",
                        hex(out.transmitted.first().map_or(&[][..], |f| f)),
                        c.flows_rehashed_after_drain,
                        hex(frame)
                    ))
                }
            }
            (Expect::Drop(reason), v) if v == Verdict::Drop(*reason) => {
                if c.dropped(*reason) == 1
                    && out.transmitted.is_empty()
                    && w.pipeline.flow_table().live_entries(2) == 0
                {
                    None
                } else {
                    Some("not counted once, something sent, or the entry kept".to_string())
                }
            }
            (_, v) => Some(format!("verdict {v:?}")),
        };
        if let Some(p) = problem {
            failures.push(format!("{description}: {p}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} drain fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
