//! Byte fixtures for second chance on the host agent (`docs/second-chance.md`): decapsulation
//! with the alternative in an outer IPv4 option or IPv6 destination option, and the forward
//! decision — SYN delivered, known delivered, unknown forwarded with the exact outer header
//! expected, already-forwarded delivered, local alternative delivered — plus the restart rule
//! through a real state file.
//!
//! Two agents, A (DIPs 10.0.21.2 and fd00:21::2, also 10.0.21.3 for a second local backend)
//! and B (10.0.22.2, fd00:22::2), each listing the other as a peer. Outer packets with the
//! option are written byte by byte here (the contract's layouts), not with a helper that could
//! share a mistake with the code under test.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use hostagent::config;
use hostagent::dataplane::{ConnKey, DataPath, DropReason, ServiceTable, Verdict};
use hostagent::io::state_file;
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_packet::stable_hash;
use mux_packet::{checksum, claim_horizon};

const SERVICES_A: &str = r#"
[[service]]   # 0
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.0.21.2"
backend_port = 8080

[[service]]   # 1
vip = "192.0.2.10"
port = 53
protocol = "udp"
dip = "10.0.21.2"

[[service]]   # 2
vip = "2001:db8::10"
port = 80
protocol = "tcp"
dip = "fd00:21::2"
backend_port = 8080

[[service]]   # 3: a second backend of the same VIP port on this host
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.0.21.3"
backend_port = 8080
"#;

fn agent_a_config(with_v6_source: bool) -> String {
    let v6 = if with_v6_source {
        "source_v6 = \"fd00:21::2\"\n"
    } else {
        ""
    };
    format!(
        "[agent]\nname = \"a\"\n[tunnel]\nmux_sources = [\"10.0.11.2\", \"fd00:11::2\"]\n\
         source_v4 = \"10.0.21.2\"\n{v6}\
         [[tunnel.peer]]\naddress = \"10.0.22.2\"\n[[tunnel.peer]]\naddress = \"fd00:22::2\"\n\
         {SERVICES_A}"
    )
}

const AGENT_B: &str = r#"
[agent]
name = "b"
[tunnel]
mux_sources = ["10.0.11.2", "fd00:11::2"]
source_v4 = "10.0.22.2"
source_v6 = "fd00:22::2"
[[tunnel.peer]]
address = "10.0.21.2"
[[tunnel.peer]]
address = "fd00:21::2"

[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.0.22.2"
backend_port = 8080

[[service]]
vip = "192.0.2.10"
port = 53
protocol = "udp"
dip = "10.0.22.2"

[[service]]
vip = "2001:db8::10"
port = 80
protocol = "tcp"
dip = "fd00:22::2"
backend_port = 8080

[[service]]   # B reached over IPv6 for the IPv4 VIP
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "fd00:22::2"
backend_address = "10.0.22.3"
backend_port = 8080
"#;

fn data_path(text: &str) -> DataPath {
    let cfg = config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    DataPath::new(ServiceTable::from_config(&cfg).unwrap())
}

fn agent_a() -> DataPath {
    data_path(&agent_a_config(true))
}

fn agent_b() -> DataPath {
    data_path(AGENT_B)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

const MUX: &str = "10.0.11.2";
const MUX6: &str = "fd00:11::2";
const CLIENT: &str = "198.51.100.7";
const CLIENT6: &str = "2001:db8:c::7";
const VIP: &str = "192.0.2.10";
const VIP6: &str = "2001:db8::10";

fn tcp(client: &str, sport: u16, vip: &str, flags: u8) -> Vec<u8> {
    PacketBuilder::tcp(ip(client), sport, ip(vip), 80, flags)
        .payload(b"data".to_vec())
        .build_ip()
}

fn udp(client: &str, sport: u16, vip: &str) -> Vec<u8> {
    PacketBuilder::udp(ip(client), sport, ip(vip), 53)
        .payload_len(12)
        .build_ip()
}

/// What the backend at `backend`:8080 receives for `tcp(client, sport, VIP, flags)`: built
/// from scratch, every checksum in full.
fn to_backend(client: &str, sport: u16, backend: &str, flags: u8) -> Vec<u8> {
    PacketBuilder::tcp(ip(client), sport, ip(backend), 8080, flags)
        .payload(b"data".to_vec())
        .build_ip()
}

fn protocol_of(inner: &[u8]) -> u8 {
    if inner[0] >> 4 == 4 { 4 } else { 41 }
}

/// An outer IPv4 header `src → dst` carrying the second-chance option (alternative `alt`,
/// `flags`, `hops`) in front of `inner`, as the contract lays it out: IHL 7 for an IPv4
/// alternative, 10 for an IPv6 one; DF set, TTL 64, identification 0x4d55.
fn v4_outer(src: &str, dst: &str, alt: &str, flags: u8, hops: u8, inner: &[u8]) -> Vec<u8> {
    let alt = octets(ip(alt));
    let option_len = 4 + alt.len();
    let header_len = 20 + option_len;
    let total = (header_len + inner.len()) as u16;
    let mut p = vec![0x40 | (header_len / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x4d, 0x55, 0x40, 0, 64, protocol_of(inner), 0, 0]);
    p.extend_from_slice(&octets(ip(src)));
    p.extend_from_slice(&octets(ip(dst)));
    p.extend_from_slice(&[0x1E, option_len as u8, flags, hops]);
    p.extend_from_slice(&alt);
    let c = checksum::internet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(inner);
    p
}

/// An outer IPv6 header `src → dst` with a Destination Options header carrying the option:
/// 16 bytes (PadN of 4 data bytes) for an IPv4 alternative, 24 (PadN of 0) for an IPv6 one.
fn v6_outer(src: &str, dst: &str, alt: &str, flags: u8, hops: u8, inner: &[u8]) -> Vec<u8> {
    let alt = octets(ip(alt));
    let mut dest = vec![
        protocol_of(inner),
        0,
        0x1E,
        2 + alt.len() as u8,
        flags,
        hops,
    ];
    dest.extend_from_slice(&alt);
    if alt.len() == 4 {
        dest[1] = 1;
        dest.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
    } else {
        dest[1] = 2;
        dest.extend_from_slice(&[1, 0]);
    }
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((dest.len() + inner.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[60, 64]);
    p.extend_from_slice(&octets(ip(src)));
    p.extend_from_slice(&octets(ip(dst)));
    p.extend_from_slice(&dest);
    p.extend_from_slice(inner);
    p
}

/// The 20 bits of flow hash the forwarded IPv6 header's flow label carries.
fn flow_label(inner: &[u8]) -> u32 {
    let (src, dst, proto, l4) = if inner[0] >> 4 == 4 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&canonical_addr(ip_at(&inner[12..16])));
        d.copy_from_slice(&canonical_addr(ip_at(&inner[16..20])));
        (s, d, inner[9], 20)
    } else {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&inner[8..24]);
        d.copy_from_slice(&inner[24..40]);
        (s, d, inner[6], 40)
    };
    let key = FlowKey {
        src,
        dst,
        src_port: u16::from_be_bytes([inner[l4], inner[l4 + 1]]),
        dst_port: u16::from_be_bytes([inner[l4 + 2], inner[l4 + 3]]),
        protocol: proto,
    };
    (stable_hash::flow_hash(&key) as u32) & 0xfffff
}

fn ip_at(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 4];
    o.copy_from_slice(b);
    IpAddr::from(o)
}

/// Runs `decap` and returns the verdict, asserting a `Forward` or `Drop` left the buffer as
/// it came.
fn decap(dp: &mut DataPath, packet: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = packet.to_vec();
    let verdict = dp.decap(&mut buf);
    if matches!(verdict, Verdict::Forward { .. } | Verdict::Drop(_)) {
        assert_eq!(buf, packet, "{verdict:?} changed the buffer");
    }
    (verdict, buf)
}

/// The packet a `Forward` verdict sends: its header, then the inner packet.
fn forwarded(verdict: Verdict, buf: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let Verdict::Forward {
        header,
        offset,
        len,
    } = verdict
    else {
        panic!("not forwarded: {verdict:?}");
    };
    (
        header.as_bytes().to_vec(),
        buf[offset..offset + len].to_vec(),
    )
}

/// The inner packet a `Deliver` verdict hands the kernel.
fn delivered(verdict: Verdict, buf: &[u8]) -> Vec<u8> {
    let Verdict::Deliver { offset, len } = verdict else {
        panic!("not delivered: {verdict:?}");
    };
    buf[offset..offset + len].to_vec()
}

#[test]
fn v4_outer_v4_alternative_unknown_connection_is_forwarded_with_this_outer_header() {
    let mut a = agent_a();
    let inner = tcp(CLIENT, 40000, VIP, ACK | PSH);
    let packet = v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &inner);
    let (verdict, buf) = decap(&mut a, &packet);
    let (header, body) = forwarded(verdict, &buf);
    assert_eq!(body, inner, "the inner packet goes on untouched");
    let total = (28 + inner.len()) as u16;
    let mut expected = vec![
        0x47,
        0x00, // version 4, IHL 7; TOS copied from the inner packet
        (total >> 8) as u8,
        total as u8, // total length
        0x00,
        0x00, // identification: chosen by the kernel
        0x40,
        0x00, // DF copied from the inner packet
        64,
        4, // TTL, protocol IPv4-in-IP
        0x00,
        0x00, // checksum, below
        10,
        0,
        21,
        2, // this agent's source_v4
        10,
        0,
        22,
        2, // the alternative
        0x1E,
        8,
        0x01,
        1, // option: type, length, flags = forwarded, hops = 1
        10,
        0,
        22,
        2, // the alternative, kept
    ];
    let c = checksum::internet_checksum(&expected);
    expected[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(header, expected);
    let c = a.counters();
    assert_eq!(c.second_chance.forwarded, 1);
    assert_eq!(c.services[0].forwarded, 1);
    assert_eq!(c.delivered, 0);
    assert_eq!(
        c.connections.inserts, 0,
        "a forwarded packet teaches nothing"
    );
}

#[test]
fn v4_outer_v6_alternative_is_forwarded_over_ipv6_with_a_destination_option() {
    let mut a = agent_a();
    let inner = tcp(CLIENT, 40001, VIP, ACK);
    let packet = v4_outer(MUX, "10.0.21.2", "fd00:22::2", 0, 0, &inner);
    assert_eq!(packet[0], 0x4a, "IHL 10 for an IPv6 alternative");
    let (verdict, buf) = decap(&mut a, &packet);
    let (header, body) = forwarded(verdict, &buf);
    assert_eq!(body, inner);
    let label = flow_label(&inner);
    // Version 6, traffic class 0 (the inner TOS), the flow label.
    let mut expected = vec![0x60, (label >> 16) as u8, (label >> 8) as u8, label as u8];
    expected.extend_from_slice(&((24 + inner.len()) as u16).to_be_bytes());
    expected.extend_from_slice(&[60, 64]); // Destination Options next, hop limit 64
    expected.extend_from_slice(&octets(ip("fd00:21::2")));
    expected.extend_from_slice(&octets(ip("fd00:22::2")));
    expected.extend_from_slice(&[4, 2, 0x1E, 18, 0x01, 1]);
    expected.extend_from_slice(&octets(ip("fd00:22::2")));
    expected.extend_from_slice(&[1, 0]); // PadN to 24 bytes
    assert_eq!(header, expected);
    // B accepts it (from its peer fd00:21::2, to its DIP fd00:22::2) and delivers it.
    let mut b = agent_b();
    let mut onward = header.clone();
    onward.extend_from_slice(&body);
    let (verdict, buf) = decap(&mut b, &onward);
    let got = delivered(verdict, &buf);
    assert_eq!(&got[16..20], &[10, 0, 22, 3], "to B's backend of that DIP");
    assert_eq!(b.counters().second_chance.forward_refused, 1);
}

#[test]
fn v6_outer_with_destination_options_v4_and_v6_alternatives() {
    let mut a = agent_a();
    // IPv6 VIP over an IPv6 tunnel, IPv6 alternative.
    let inner = tcp(CLIENT6, 40000, VIP6, ACK);
    let packet = v6_outer(MUX6, "fd00:21::2", "fd00:22::2", 0, 0, &inner);
    let (verdict, buf) = decap(&mut a, &packet);
    let (header, body) = forwarded(verdict, &buf);
    assert_eq!(body, inner);
    assert_eq!(header.len(), 64);
    assert_eq!(&header[40..46], &[41, 2, 0x1E, 18, 1, 1]);
    // IPv6 outer with an IPv4 alternative: forwarded over IPv4, protocol 41.
    let packet = v6_outer(MUX6, "fd00:21::2", "10.0.22.2", 0, 0, &inner);
    let (verdict, buf) = decap(&mut a, &packet);
    let (header, body) = forwarded(verdict, &buf);
    assert_eq!(body, inner);
    assert_eq!(header.len(), 28);
    assert_eq!(header[9], 41);
    assert_eq!(&header[20..28], &[0x1E, 8, 1, 1, 10, 0, 22, 2]);
    assert_eq!(checksum::internet_checksum(&header), 0);
    // A delivered packet with the option starts after the whole outer header.
    let syn = tcp(CLIENT6, 40002, VIP6, SYN);
    let packet = v6_outer(MUX6, "fd00:21::2", "10.0.22.2", 0, 0, &syn);
    let (verdict, _) = decap(&mut a, &packet);
    assert_eq!(
        verdict,
        Verdict::Deliver {
            offset: 56,
            len: syn.len()
        }
    );
    assert_eq!(a.counters().second_chance.forwarded, 2);
    assert_eq!(a.counters().second_chance.delivered_syn, 1);
}

#[test]
fn syn_then_known_connection_are_delivered() {
    let mut a = agent_a();
    let syn = tcp(CLIENT, 40010, VIP, SYN);
    let (verdict, buf) = decap(&mut a, &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &syn));
    assert_eq!(
        delivered(verdict, &buf),
        to_backend(CLIENT, 40010, "10.0.21.2", SYN),
        "rewritten exactly as on the plain path"
    );
    // The rest of the connection: known now, delivered despite the alternative.
    for flags in [ACK, ACK | PSH, FIN | ACK] {
        let inner = tcp(CLIENT, 40010, VIP, flags);
        let (verdict, _) = decap(
            &mut a,
            &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &inner),
        );
        assert!(
            matches!(verdict, Verdict::Deliver { .. }),
            "{flags:#x}: {verdict:?}"
        );
    }
    // A SYN-ACK-looking packet from the client (ACK set) is not a SYN: unknown → forwarded.
    let odd = tcp(CLIENT, 40011, VIP, SYN | ACK);
    let (verdict, _) = decap(&mut a, &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &odd));
    assert!(matches!(verdict, Verdict::Forward { .. }));
    let sc = a.counters().second_chance;
    assert_eq!(
        (sc.delivered_syn, sc.delivered_known, sc.forwarded),
        (1, 3, 1)
    );
    assert_eq!(a.counters().connections.inserts, 1);
}

#[test]
fn a_closed_connection_does_not_claim_its_ports_next_connection() {
    // The backend here served a short connection from port 40030 and closed it (the server's
    // FIN, as with `Connection: close`): its socket sits in TIME_WAIT. The client reuses the
    // port for a new connection, which the MUX's table of the time sends to 10.0.22.2. After
    // a change, a MUX without its entry sends it here with 10.0.22.2 as the alternative: it
    // must go there, not to the TIME_WAIT socket (which would answer with bare ACKs until the
    // client gave up: the lab's idle case saw such read timeouts).
    let mut a = agent_a();
    let via_mux = |flags: u8| {
        v4_outer(
            MUX,
            "10.0.21.2",
            "10.0.22.2",
            0,
            0,
            &tcp(CLIENT, 40030, VIP, flags),
        )
    };
    let (verdict, _) = decap(&mut a, &via_mux(SYN));
    assert!(matches!(verdict, Verdict::Deliver { .. }));
    let (verdict, _) = decap(&mut a, &via_mux(ACK | PSH));
    assert!(
        matches!(verdict, Verdict::Deliver { .. }),
        "open: carried here"
    );
    let mut fin =
        PacketBuilder::tcp(ip("10.0.21.2"), 8080, ip(CLIENT), 40030, FIN | ACK).build_ip();
    assert!(matches!(a.snat(&mut fin), Verdict::Send { .. }));
    let (verdict, _) = decap(&mut a, &via_mux(FIN | ACK));
    assert!(
        matches!(verdict, Verdict::Forward { .. }),
        "closing: not claimed"
    );
    let key = ConnKey::new(ip(CLIENT), 40030, ip("10.0.21.2"), 8080, 6);
    assert!(!a.carries(&key));
    assert!(
        a.connections().contains(&key, a.clock()),
        "still remembered, as closing"
    );
    // The port's next connection, living at the alternative.
    let (verdict, _) = decap(&mut a, &via_mux(ACK | PSH));
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    // Its SYN, had it come here, opens it here again: known from then on.
    let (verdict, _) = decap(&mut a, &via_mux(SYN));
    assert!(matches!(verdict, Verdict::Deliver { .. }));
    let (verdict, _) = decap(&mut a, &via_mux(ACK));
    assert!(matches!(verdict, Verdict::Deliver { .. }), "{verdict:?}");
    let sc = a.counters().second_chance;
    assert_eq!(
        (sc.delivered_syn, sc.delivered_known, sc.forwarded),
        (2, 2, 2)
    );
}

#[test]
fn a_connection_learned_from_a_reply_is_known() {
    let mut a = agent_a();
    // The backend answers (a connection the agent did not see start, e.g. after a restart).
    let mut reply = PacketBuilder::tcp(ip("10.0.21.2"), 8080, ip(CLIENT), 40020, ACK)
        .payload_len(10)
        .build_ip();
    assert!(matches!(a.snat(&mut reply), Verdict::Send { .. }));
    let inner = tcp(CLIENT, 40020, VIP, ACK);
    let (verdict, _) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &inner),
    );
    assert!(matches!(verdict, Verdict::Deliver { .. }), "{verdict:?}");
    assert_eq!(a.counters().second_chance.delivered_known, 1);
    // UDP alike: an unknown flow is forwarded, one the backend answered is delivered.
    let query = udp(CLIENT, 5300, VIP);
    let (verdict, _) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &query),
    );
    assert!(matches!(verdict, Verdict::Forward { .. }));
    let mut answer = PacketBuilder::udp(ip("10.0.21.2"), 53, ip(CLIENT), 5300)
        .payload_len(30)
        .build_ip();
    assert!(matches!(a.snat(&mut answer), Verdict::Send { .. }));
    let (verdict, _) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &query),
    );
    assert!(matches!(verdict, Verdict::Deliver { .. }));
    assert!(a.carries(&ConnKey::new(ip(CLIENT), 5300, ip("10.0.21.2"), 53, 17)));
}

/// The claim horizon (docs/second-chance.md): a UDP flow last seen before the MUX's table
/// that named the alternative arrived may be an older flow on the same 5-tuple (a client
/// reusing its port); it is not claimed, and forgotten, so the flow's later packets (no
/// horizon) go to the alternative too. A flow seen within the horizon, or a packet without
/// one, is claimed as before; TCP ignores it.
#[test]
fn a_udp_flow_seen_before_the_claim_horizon_is_not_claimed() {
    let mut a = agent_a();
    let to_a = |inner: &[u8], flags: u8| v4_outer(MUX, "10.0.21.2", "10.0.22.2", flags, 0, inner);
    let plain = |inner: &[u8]| {
        PacketBuilder::raw(ip(MUX), ip("10.0.21.2"), 4)
            .payload(inner.to_vec())
            .build_ip()
    };
    let horizon = |secs: u64| claim_horizon::to_flags(claim_horizon::encode(secs * 1000));
    // Two UDP flows delivered here at second 100; a TCP connection too.
    a.set_clock(100);
    let (old, recent) = (udp(CLIENT, 5310, VIP), udp(CLIENT, 5311, VIP));
    let conn = tcp(CLIENT, 40090, VIP, ACK);
    for p in [&old, &recent, &conn] {
        assert!(matches!(
            decap(&mut a, &plain(p)).0,
            Verdict::Deliver { .. }
        ));
    }
    a.set_clock(130);
    assert!(matches!(
        decap(&mut a, &plain(&recent)).0,
        Verdict::Deliver { .. }
    ));
    // Second 140: a table that arrived 20 s ago (second 120) named the alternative.
    a.set_clock(140);
    let before = a.counters().second_chance;
    let (verdict, _) = decap(&mut a, &to_a(&old, horizon(20)));
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    let (verdict, _) = decap(&mut a, &to_a(&recent, horizon(20)));
    assert!(
        matches!(verdict, Verdict::Deliver { .. }),
        "seen at 130: {verdict:?}"
    );
    let (verdict, _) = decap(&mut a, &to_a(&conn, horizon(20)));
    assert!(
        matches!(verdict, Verdict::Deliver { .. }),
        "TCP: {verdict:?}"
    );
    let after = a.counters().second_chance;
    assert_eq!(after.forwarded - before.forwarded, 1);
    assert_eq!(after.delivered_known - before.delivered_known, 2);
    assert_eq!(a.counters().connections.before_horizon, 1);
    // Forgotten: the flow's next packet, which carries no horizon, goes to the alternative.
    let (verdict, _) = decap(&mut a, &to_a(&old, 0));
    assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
    assert!(!a.carries(&ConnKey::new(ip(CLIENT), 5310, ip("10.0.21.2"), 53, 17)));
    // Without a horizon (a MUX that sends none, or a transient table) memory claims as before.
    let other = udp(CLIENT, 5312, VIP);
    assert!(matches!(
        decap(&mut a, &plain(&other)).0,
        Verdict::Deliver { .. }
    ));
    a.set_clock(200);
    let (verdict, _) = decap(&mut a, &to_a(&other, 0));
    assert!(matches!(verdict, Verdict::Deliver { .. }), "{verdict:?}");
    // The horizon is inclusive: seen exactly `horizon` seconds ago still claims.
    let (verdict, _) = decap(&mut a, &to_a(&recent, horizon(70)));
    assert!(
        matches!(verdict, Verdict::Deliver { .. }),
        "seen at 130, horizon 70: {verdict:?}"
    );
}

#[test]
fn an_already_forwarded_packet_is_delivered_never_forwarded_again() {
    let mut b = agent_b();
    let inner = tcp(CLIENT, 40030, VIP, ACK);
    // From peer A, forwarded flag and hops 1: delivered although B does not know it either.
    let (verdict, buf) = decap(
        &mut b,
        &v4_outer("10.0.21.2", "10.0.22.2", "10.0.22.2", 0x01, 1, &inner),
    );
    let got = delivered(verdict, &buf);
    assert_eq!(&got[16..20], &[10, 0, 22, 2]);
    // hops 1 alone, or the flag alone (from a MUX that got it wrong): delivered.
    for (flags, hops) in [(0, 1), (1, 0), (0xff, 7)] {
        let (verdict, _) = decap(
            &mut b,
            &v4_outer(
                MUX,
                "10.0.22.2",
                "10.0.21.2",
                flags,
                hops,
                &tcp(CLIENT, 40031, VIP, ACK),
            ),
        );
        assert!(matches!(verdict, Verdict::Deliver { .. }), "{flags} {hops}");
    }
    assert_eq!(b.counters().second_chance.forward_refused, 4);
    // From an address that is neither a MUX nor a peer: refused like any unknown source.
    let (verdict, _) = decap(
        &mut b,
        &v4_outer("10.0.23.2", "10.0.22.2", "10.0.22.2", 0x01, 1, &inner),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::UnknownTunnelSource));
}

#[test]
fn a_local_alternative_is_delivered_to_the_backend_that_carries_the_connection() {
    let mut a = agent_a();
    // The connection started on the second local backend (dip 10.0.21.3).
    let syn = tcp(CLIENT, 40040, VIP, SYN);
    decap(&mut a, &v4_outer(MUX, "10.0.21.3", "10.0.21.2", 0, 0, &syn));
    // Now the MUX sends it to 10.0.21.2 with 10.0.21.3 as the alternative.
    let ack = tcp(CLIENT, 40040, VIP, ACK);
    let (verdict, buf) = decap(&mut a, &v4_outer(MUX, "10.0.21.2", "10.0.21.3", 0, 0, &ack));
    let got = delivered(verdict, &buf);
    assert_eq!(
        &got[16..20],
        &[10, 0, 21, 3],
        "to the backend that carries it"
    );
    // A connection neither local backend knows: delivered to the alternative, never
    // forwarded (the MUX's second-chance entry names the alternative and sends the flow there
    // plainly once a later table picks it: a flow left on the addressed backend would move).
    let other = tcp(CLIENT, 40041, VIP, ACK);
    let (verdict, buf) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "10.0.21.3", 0, 0, &other),
    );
    assert_eq!(&delivered(verdict, &buf)[16..20], &[10, 0, 21, 3]);
    // ...and from then on it is carried there: a plain packet to 10.0.21.3 finds it.
    let (verdict, buf) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.3", "10.0.21.2", 0, 0, &other),
    );
    assert_eq!(&delivered(verdict, &buf)[16..20], &[10, 0, 21, 3]);
    // The alternative equal to the packet's own DIP: delivered.
    let third = tcp(CLIENT, 40042, VIP, ACK);
    let (verdict, _) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "10.0.21.2", 0, 0, &third),
    );
    assert!(matches!(verdict, Verdict::Deliver { .. }));
    let sc = a.counters().second_chance;
    assert_eq!((sc.delivered_local_alternative, sc.forwarded), (3, 0));
    assert_eq!(sc.delivered_known, 1);
    assert_eq!(sc.delivered_syn, 1);
}

#[test]
fn without_a_source_of_the_alternatives_family_the_packet_is_delivered() {
    let mut a = data_path(&agent_a_config(false));
    let inner = tcp(CLIENT, 40050, VIP, ACK);
    let (verdict, _) = decap(
        &mut a,
        &v4_outer(MUX, "10.0.21.2", "fd00:22::2", 0, 0, &inner),
    );
    assert!(
        matches!(verdict, Verdict::Deliver { offset: 40, .. }),
        "{verdict:?}"
    );
    assert_eq!(a.counters().second_chance.delivered_cannot_forward, 1);
}

#[test]
fn no_alternative_is_the_plain_path() {
    let mut a = agent_a();
    let inner = tcp(CLIENT, 40060, VIP, ACK);
    let plain = PacketBuilder::raw(ip(MUX), ip("10.0.21.2"), 4)
        .payload(inner.clone())
        .build_ip();
    let (verdict, buf) = decap(&mut a, &plain);
    assert_eq!(
        delivered(verdict, &buf),
        to_backend(CLIENT, 40060, "10.0.21.2", ACK)
    );
    // Other IPv4 options do not make an alternative: a router alert alone is the plain path.
    let mut with_ra = vec![0x46, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0];
    with_ra.extend_from_slice(&[10, 0, 11, 2, 10, 0, 21, 2, 148, 4, 0, 0]);
    let total = (with_ra.len() + inner.len()) as u16;
    with_ra[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum::internet_checksum(&with_ra);
    with_ra[10..12].copy_from_slice(&c.to_be_bytes());
    with_ra.extend_from_slice(&inner);
    let (verdict, _) = decap(&mut a, &with_ra);
    assert!(matches!(verdict, Verdict::Deliver { offset: 24, .. }));
    assert_eq!(a.counters().second_chance.delivered_no_alternative, 2);
}

#[test]
fn malformed_options_are_dropped_and_counted() {
    let mut a = agent_a();
    let inner = tcp(CLIENT, 40070, VIP, ACK);
    // IPv4: the option says 8 bytes but the header ends after 6 of them (IHL 6 + 2).
    let mut cut = v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &inner);
    cut[0] = 0x46;
    cut[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::internet_checksum(&cut[..24]);
    cut[10..12].copy_from_slice(&c.to_be_bytes());
    let (verdict, _) = decap(&mut a, &cut);
    assert_eq!(verdict, Verdict::Drop(DropReason::MalformedOuterOption));
    // IPv6: an unknown destination option whose action bits say discard.
    let mut discard = v6_outer(MUX6, "fd00:21::2", "10.0.22.2", 0, 0, &inner);
    discard[40 + 10] = 0x7e; // the PadN becomes option 0x7e (action 01)
    let (verdict, _) = decap(&mut a, &discard);
    assert_eq!(verdict, Verdict::Drop(DropReason::UnrecognizedOuterOption));
    // IPv6: the option's length is neither 6 nor 18.
    let mut wrong = v6_outer(MUX6, "fd00:21::2", "10.0.22.2", 0, 0, &inner);
    wrong[43] = 4;
    let (verdict, _) = decap(&mut a, &wrong);
    assert_eq!(verdict, Verdict::Drop(DropReason::MalformedOuterOption));
    let c = a.counters();
    assert_eq!(c.dropped(DropReason::MalformedOuterOption), 2);
    assert_eq!(c.dropped(DropReason::UnrecognizedOuterOption), 1);
}

#[test]
fn a_forwarded_packet_is_never_forwarded_again() {
    let mut a = agent_a();
    let mut b = agent_b();
    for (alt, inner) in [
        ("10.0.22.2", tcp(CLIENT, 41000, VIP, ACK)),
        ("fd00:22::2", tcp(CLIENT6, 41001, VIP6, ACK)),
        ("10.0.22.2", udp(CLIENT, 41002, VIP)),
    ] {
        let outer_dst = if inner[0] >> 4 == 4 {
            "10.0.21.2"
        } else {
            "fd00:21::2"
        };
        let packet = if inner[0] >> 4 == 4 {
            v4_outer(MUX, outer_dst, alt, 0, 0, &inner)
        } else {
            v6_outer(MUX6, outer_dst, alt, 0, 0, &inner)
        };
        let (verdict, buf) = decap(&mut a, &packet);
        let (mut onward, body) = forwarded(verdict, &buf);
        onward.extend_from_slice(&body);
        // B does not know the connection either: delivered, not sent back.
        let (verdict, _) = decap(&mut b, &onward);
        assert!(
            matches!(verdict, Verdict::Deliver { .. }),
            "{alt}: {verdict:?}"
        );
    }
    assert_eq!(b.counters().second_chance.forward_refused, 3);
    assert_eq!(b.counters().second_chance.forwarded, 0);
}

#[test]
fn the_restart_rule_through_a_state_file() {
    let mut a = agent_a();
    a.set_clock(100);
    for port in 42000..42010 {
        let syn = tcp(CLIENT, port, VIP, SYN);
        decap(&mut a, &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &syn));
        let ack = tcp(CLIENT, port, VIP, ACK);
        decap(&mut a, &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &ack));
    }
    let mut records = Vec::new();
    let mut cursor = 0;
    while !a.sweep_connections(&mut cursor, 3, Some(&mut records)) {}
    assert_eq!(records.len(), 10);
    let dir = std::env::temp_dir().join(format!("hostagent-sc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.connections");
    let saved_at = SystemTime::now();
    let mut bytes = Vec::new();
    state_file::encode(&records, saved_at, &mut bytes);
    state_file::write_atomically(&path, &bytes).unwrap();

    // The restarted agent: a new table, a new clock; 30 s passed.
    let mut restarted = agent_a();
    let loaded = state_file::load(&path, saved_at + Duration::from_secs(30)).unwrap();
    assert_eq!((loaded.records.len(), loaded.expired), (10, 0));
    assert_eq!(restarted.restore_connections(&loaded.records), 10);
    assert_eq!(restarted.counters().connections.restored, 10);
    let ack = tcp(CLIENT, 42005, VIP, ACK);
    let (verdict, _) = decap(
        &mut restarted,
        &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &ack),
    );
    assert!(
        matches!(verdict, Verdict::Deliver { .. }),
        "a connection carried before the restart is still delivered: {verdict:?}"
    );
    // Without the file it would have been forwarded away.
    let mut amnesiac = agent_a();
    let (verdict, _) = decap(
        &mut amnesiac,
        &v4_outer(MUX, "10.0.21.2", "10.0.22.2", 0, 0, &ack),
    );
    assert!(matches!(verdict, Verdict::Forward { .. }));
    // Past its timeout (7200 s established) the file no longer vouches for it.
    let late = state_file::load(&path, saved_at + Duration::from_secs(7300)).unwrap();
    assert_eq!((late.records.len(), late.expired), (0, 10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_expire_with_their_service_timeouts() {
    let text = agent_a_config(true).replace(
        "port = 53\nprotocol = \"udp\"\ndip = \"10.0.21.2\"\n",
        "port = 53\nprotocol = \"udp\"\ndip = \"10.0.21.2\"\ntimeouts = { udp = 20 }\n",
    );
    let mut a = data_path(&format!("{text}\n[timeouts]\ntcp_established = 50\n"));
    let query = udp(CLIENT, 5301, VIP);
    let plain = PacketBuilder::raw(ip(MUX), ip("10.0.21.2"), 4)
        .payload(query.clone())
        .build_ip();
    a.set_clock(10);
    decap(&mut a, &plain);
    let key = ConnKey::new(ip(CLIENT), 5301, ip("10.0.21.2"), 53, 17);
    a.set_clock(29);
    assert!(a.carries(&key));
    a.set_clock(30);
    assert!(!a.carries(&key), "the service's udp = 20");
    let ack = tcp(CLIENT, 40080, VIP, ACK);
    decap(
        &mut a,
        &PacketBuilder::raw(ip(MUX), ip("10.0.21.2"), 4)
            .payload(ack)
            .build_ip(),
    );
    let tcp_key = ConnKey::new(ip(CLIENT), 40080, ip("10.0.21.2"), 8080, 6);
    a.set_clock(79);
    assert!(a.carries(&tcp_key));
    a.set_clock(80);
    assert!(!a.carries(&tcp_key), "[timeouts] tcp_established = 50");
    let mut cursor = 0;
    assert!(a.sweep_connections(&mut cursor, usize::MAX, None));
    assert_eq!(a.counters().connections.expiries, 2);
    assert_eq!(a.counters().connections.occupied, 0);
}

mod one_hop {
    //! Properties: whatever the packet, its option and the agents' tables, a packet is
    //! forwarded at most once, only when the contract says so, and every decision is counted.

    use super::*;
    use proptest::prelude::*;

    /// Services for every (VIP family, tunnel family, protocol) on agent `n` (21 = A, 22 = B),
    /// and the other agent as a peer.
    fn agent(n: u8) -> DataPath {
        let other = 43 - n;
        let mut text = format!(
            "[agent]\nname = \"x{n}\"\n[tunnel]\nmux_sources = [\"10.0.11.2\", \"fd00:11::2\"]\n\
             source_v4 = \"10.0.{n}.2\"\nsource_v6 = \"fd00:{n}::2\"\n\
             [[tunnel.peer]]\naddress = \"10.0.{other}.2\"\n\
             [[tunnel.peer]]\naddress = \"fd00:{other}::2\"\n"
        );
        for protocol in ["tcp", "udp"] {
            for (vip, dip, backend) in [
                (VIP, format!("10.0.{n}.2"), format!("10.0.{n}.2")),
                (VIP, format!("fd00:{n}::2"), format!("10.0.{n}.4")),
                (VIP6, format!("fd00:{n}::2"), format!("fd00:{n}::2")),
                (VIP6, format!("10.0.{n}.2"), format!("fd00:{n}::4")),
            ] {
                text.push_str(&format!(
                    "[[service]]\nvip = \"{vip}\"\nport = 80\nprotocol = \"{protocol}\"\n\
                     dip = \"{dip}\"\nbackend_address = \"{backend}\"\nbackend_port = 8080\n"
                ));
            }
        }
        data_path(&text)
    }

    #[derive(Debug, Clone)]
    struct Case {
        inner_v4: bool,
        outer_v4: bool,
        /// 0: agent B's DIP, 1: one of A's own DIPs, 2: an address nobody serves.
        alt_kind: u8,
        alt_v4: bool,
        flags: u8,
        hops: u8,
        is_tcp: bool,
        tcp_flags: u8,
        client_port: u16,
        /// The connection was seen before: `Some(false)` from a plain SYN (or first UDP
        /// packet) A delivered, `Some(true)` from a reply of A's backend.
        known: Option<bool>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            any::<(bool, bool, bool, bool)>(),
            0u8..3,
            prop_oneof![Just(0u8), Just(1), any::<u8>()],
            prop_oneof![Just(0u8), Just(1), any::<u8>()],
            any::<(u8, u16)>(),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(
                |(
                    (inner_v4, outer_v4, alt_v4, is_tcp),
                    alt_kind,
                    flags,
                    hops,
                    (tf, port),
                    known,
                )| {
                    Case {
                        inner_v4,
                        outer_v4,
                        alt_kind,
                        alt_v4,
                        flags,
                        hops,
                        is_tcp,
                        tcp_flags: tf,
                        client_port: port,
                        known,
                    }
                },
            )
    }

    fn family(v4: bool, n: u8, host: u8) -> String {
        if v4 {
            format!("10.0.{n}.{host}")
        } else {
            format!("fd00:{n}::{host}")
        }
    }

    fn inner(c: &Case, flags: u8) -> Vec<u8> {
        let (client, vip) = if c.inner_v4 {
            (CLIENT, VIP)
        } else {
            (CLIENT6, VIP6)
        };
        if c.is_tcp {
            PacketBuilder::tcp(ip(client), c.client_port, ip(vip), 80, flags)
                .payload(b"x".to_vec())
                .build_ip()
        } else {
            PacketBuilder::udp(ip(client), c.client_port, ip(vip), 80)
                .payload_len(5)
                .build_ip()
        }
    }

    fn outer(c: &Case, alt: Option<&str>, flags: u8, hops: u8, inner: &[u8]) -> Vec<u8> {
        let dip = family(c.outer_v4, 21, 2);
        let mux = if c.outer_v4 { MUX } else { MUX6 };
        match (alt, c.outer_v4) {
            (Some(alt), true) => v4_outer(mux, &dip, alt, flags, hops, inner),
            (Some(alt), false) => v6_outer(mux, &dip, alt, flags, hops, inner),
            (None, _) => PacketBuilder::raw(ip(mux), ip(&dip), protocol_of(inner))
                .payload(inner.to_vec())
                .build_ip(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn forwarded_at_most_once_and_only_by_the_rules(c in case()) {
            let (mut a, mut b) = (agent(21), agent(22));
            let alt = match c.alt_kind {
                0 => family(c.alt_v4, 22, 2),
                1 => family(c.alt_v4, 21, 2),
                _ => family(c.alt_v4, 23, 9),
            };
            match c.known {
                Some(false) => {
                    let syn = inner(&c, SYN);
                    let mut first = outer(&c, None, 0, 0, &syn);
                    let v = a.decap(&mut first);
                    prop_assert!(matches!(v, Verdict::Deliver { .. }), "{:?}", v);
                }
                Some(true) => {
                    let backend = match (c.inner_v4, c.outer_v4) {
                        (true, true) => "10.0.21.2",
                        (true, false) => "10.0.21.4",
                        (false, false) => "fd00:21::2",
                        (false, true) => "fd00:21::4",
                    };
                    let client = if c.inner_v4 { CLIENT } else { CLIENT6 };
                    let mut reply = if c.is_tcp {
                        PacketBuilder::tcp(ip(backend), 8080, ip(client), c.client_port, SYN | ACK)
                            .build_ip()
                    } else {
                        PacketBuilder::udp(ip(backend), 8080, ip(client), c.client_port)
                            .build_ip()
                    };
                    let v = a.snat(&mut reply);
                    prop_assert!(matches!(v, Verdict::Send { .. }), "{:?}", v);
                }
                None => {}
            }
            let packet = inner(&c, c.tcp_flags);
            let mut buf = outer(&c, Some(&alt), c.flags, c.hops, &packet);
            let before = buf.clone();
            let verdict = a.decap(&mut buf);
            let already = c.flags & 1 != 0 || c.hops != 0;
            let syn = c.is_tcp && c.tcp_flags & (SYN | ACK) == SYN;
            let known = c.known.is_some();
            let should_forward = !already && !syn && !known && c.alt_kind != 1;
            prop_assert_eq!(
                matches!(verdict, Verdict::Forward { .. }),
                should_forward,
                "{:?}", verdict
            );
            if let Verdict::Forward { header, offset, len } = verdict {
                prop_assert_eq!(&buf, &before);
                let mut onward = header.as_bytes().to_vec();
                onward.extend_from_slice(&buf[offset..offset + len]);
                prop_assert_eq!(&buf[offset..offset + len], &packet[..]);
                // Whoever receives it — B, or (fed back) A — never forwards it again.
                for dp in [&mut b, &mut a] {
                    let mut again = onward.clone();
                    let next = dp.decap(&mut again);
                    prop_assert!(!matches!(next, Verdict::Forward { .. }), "{:?}", next);
                }
                if c.alt_kind == 0 {
                    let mut again = onward.clone();
                    let v = b.decap(&mut again);
                    prop_assert!(matches!(v, Verdict::Deliver { .. }), "{:?}", v);
                }
            } else {
                prop_assert!(matches!(verdict, Verdict::Deliver { .. }), "{:?}", verdict);
            }
            for dp in [&a, &b] {
                let c = dp.counters();
                let decided: u64 = c.second_chance.outcomes().iter().map(|(_, v)| v).sum();
                prop_assert_eq!(decided, c.delivered + c.second_chance.forwarded);
            }
        }
    }
}
