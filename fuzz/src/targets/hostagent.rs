//! The host agent's data path: decapsulation with the VIP → backend rewrite, and the backend
//! → VIP source rewrite of replies (SNAT).
//!
//! `hostagent-structured` builds, for one of the configured services, a tunnelled packet (from
//! a MUX source or elsewhere, to the DIP or elsewhere, protocol 4/41 right or wrong, with or
//! without a second-chance alternative in an outer IPv4 option or IPv6 destination option —
//! a peer's DIP, a local one or any address, any flags and hops — TCP/UDP toward the service
//! port or another, or an ICMP error quoting a reply) and a backend's reply (or an ICMP error
//! the backend's host sends about a client's packet), then may overwrite a few bytes.
//! `hostagent-decap` and `hostagent-snat` take raw IP packets (the decap seeds include
//! tunnelled packets carrying the option).
//!
//! Checked for every input (the data path's documented contract, `hostagent::dataplane`):
//! - `Drop`, `Pass` and `Forward` leave the buffer exactly as it came in; `decap` never says
//!   `Send` and `snat` never `Deliver` or `Forward`; the ranges a verdict names lie inside the
//!   buffer;
//! - a `Forward` carries a well-formed outer header (checksum, lengths) whose option says
//!   `forwarded` with `hops` 1, and the packet it makes is never forwarded again by the agent
//!   it goes to (a second data path configured as that peer);
//! - each run starts with an empty connection table, so a run depends on its input only;
//! - for an unedited structured packet: a well-formed tunnelled packet from a MUX source to a
//!   service is delivered, rewritten to the backend address and port with every checksum still
//!   verifying (IPv4 header, TCP/UDP over the pseudo-header, ICMP); a backend's reply is sent
//!   from the VIP and port, its checksums verifying.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use hostagent::config::Protocol;
use hostagent::dataplane::{ConnTable, DataPath, ServiceSpec, ServiceTable, Verdict};
use mux_packet::packet_builder::PacketBuilder;
use mux_packet::wire::{icmpv4, icmpv6, ipv4, ipv6, tcp, udp};

use super::{PACKET_DICTIONARY, Target};

/// The peer agent's configuration: the data path a forwarded packet is checked against.
const PEER_CONFIG: &str = r#"
[agent]
name = "fuzz-peer"
[tunnel]
mux_sources = ["10.0.11.2"]
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

[[service]]
vip = "2001:db8::10"
port = 53
protocol = "udp"
dip = "fd00:22::2"
"#;

/// The alternatives a structured case may name: a peer's DIPs, this agent's own, others.
const ALTERNATIVES: [&str; 6] = [
    "10.0.22.2",
    "fd00:22::2",
    "10.0.21.2",
    "fd00:21::2",
    "10.0.99.9",
    "fd00:99::9",
];
use crate::seeds;

/// Structured tunnelled packets and replies for the configured services.
pub const STRUCTURED: Target = Target {
    name: "hostagent-structured",
    about: "host agent: tunnelled packets and backend replies for the configured services \
            (v4/v6 tunnels, mixed families, ICMP errors), checksums verified after the rewrite",
    run: run_structured,
    seeds: seeds::random_inputs,
    max_len: 4096,
    dictionary: &[],
};

/// Raw inbound packets.
pub const DECAP: Target = Target {
    name: "hostagent-decap",
    about: "host agent: raw outer IP packets through decap (second-chance options included)",
    run: run_decap,
    seeds: decap_seeds,
    max_len: 2048,
    dictionary: DECAP_DICTIONARY,
};

/// Tokens of outer headers with options: IHLs, the option type with its lengths, IPv6
/// Destination Options and PadN.
const DECAP_DICTIONARY: &[&[u8]] = &[
    &[0x45],
    &[0x46],
    &[0x47],
    &[0x4a],
    &[0x60],
    &[4],
    &[41],
    &[60],
    &[0x1E, 8],
    &[0x1E, 20],
    &[0x1E, 6],
    &[0x1E, 18],
    &[0x01, 0x01],
    &[1, 0],
    &[1, 4, 0, 0, 0, 0],
    &[0x94, 0x04, 0, 0],
    &[10, 0, 21, 2],
    &[10, 0, 22, 2],
];

/// Raw outbound packets.
pub const SNAT: Target = Target {
    name: "hostagent-snat",
    about: "host agent: raw IP packets from backends through snat",
    run: run_snat,
    seeds: snat_seeds,
    max_len: 2048,
    dictionary: PACKET_DICTIONARY,
};

/// The host agent configuration these targets run against (the fixtures' services).
pub const CONFIG: &str = r#"
[agent]
name = "fuzz"
[tunnel]
mux_sources = ["10.0.11.2", "10.0.12.2", "fd00:11::2"]
source_v4 = "10.0.21.2"
source_v6 = "fd00:21::2"
[[tunnel.peer]]
address = "10.0.22.2"
[[tunnel.peer]]
address = "fd00:22::2"

[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.0.21.2"
backend_port = 8080

[[service]]
vip = "192.0.2.10"
port = 53
protocol = "udp"
dip = "10.0.21.2"

[[service]]
vip = "2001:db8::10"
port = 53
protocol = "udp"
dip = "fd00:21::2"
backend_port = 5353

[[service]]
vip = "2001:db8::10"
port = 80
protocol = "tcp"
dip = "fd00:21::2"
backend_port = 8080

[[service]]
vip = "192.0.2.20"
port = 443
protocol = "tcp"
dip = "fd00:21::2"
backend_address = "10.0.21.3"

[[service]]
vip = "2001:db8::20"
port = 80
protocol = "tcp"
dip = "10.0.21.2"
backend_address = "fd00:21::3"
backend_port = 8081
"#;

const MUX_SOURCES_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 11, 2), Ipv4Addr::new(10, 0, 12, 2)];
const MUX_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x11, 0, 0, 0, 0, 0, 2);

fn table() -> &'static ServiceTable {
    static TABLE: OnceLock<ServiceTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cfg = hostagent::config::parse(CONFIG, "fuzz.toml")
            .unwrap_or_else(|e| panic!("the host agent fuzz config is invalid:\n{e}"));
        ServiceTable::from_config(&cfg).expect("the fuzz config makes a service table")
    })
}

fn peer_table() -> &'static ServiceTable {
    static TABLE: OnceLock<ServiceTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cfg = hostagent::config::parse(PEER_CONFIG, "fuzz-peer.toml")
            .unwrap_or_else(|e| panic!("the peer fuzz config is invalid:\n{e}"));
        ServiceTable::from_config(&cfg).expect("the peer fuzz config makes a service table")
    })
}

/// Connection-table capacity of the fuzzed data paths (small: cleared every run).
const FUZZ_CONNECTIONS: usize = 256;

thread_local! {
    /// One data path per thread, kept between runs with its connection table emptied at the
    /// start of each, so a run depends on its input only.
    static DATA_PATH: std::cell::RefCell<Option<DataPath>> = const { std::cell::RefCell::new(None) };
    /// The peer agent's data path, for checking forwarded packets.
    static PEER: std::cell::RefCell<Option<DataPath>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on this thread's data path, its connection table empty.
fn with_data_path<R>(f: impl FnOnce(&mut DataPath) -> R) -> R {
    DATA_PATH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dp = slot.get_or_insert_with(|| {
            DataPath::with_connections(table().clone(), ConnTable::with_capacity(FUZZ_CONNECTIONS))
        });
        dp.clear_connections();
        f(dp)
    })
}

/// Decapsulates `packet` on the peer agent: what becomes of a forwarded packet.
fn on_peer(packet: &mut [u8]) -> Verdict {
    PEER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dp = slot.get_or_insert_with(|| {
            DataPath::with_connections(
                peer_table().clone(),
                ConnTable::with_capacity(FUZZ_CONNECTIONS),
            )
        });
        dp.clear_connections();
        dp.decap(packet)
    })
}

#[derive(Arbitrary, Debug)]
struct Case {
    service: u8,
    inbound: Inbound,
    reply: Reply,
}

#[derive(Arbitrary, Debug)]
struct Inbound {
    from_mux: Option<u8>,
    other_source: u16,
    to_dip: bool,
    wrong_protocol: bool,
    outer_df: bool,
    /// A second-chance option: which of [`ALTERNATIVES`], flags, hops.
    alternative: Option<(u8, u8, u8)>,
    kind: InnerKind,
    client: u16,
    client_port: u16,
    payload_len: u16,
    tos: u8,
    trailing: u8,
    edits: Vec<(u16, u8)>,
}

#[derive(Arbitrary, Debug)]
enum InnerKind {
    /// TCP (with these flags) or UDP, by the service's protocol, to the service's port.
    Service { flags: u8 },
    /// The same to another port.
    OtherPort { port: u16, flags: u8 },
    /// An ICMP error from a router about a reply the agent sent (VIP:port → client).
    IcmpError {
        kind: u8,
        code: u8,
        rest: u32,
        quote: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Reply {
    client: u16,
    client_port: u16,
    payload_len: u16,
    /// The backend's host answers a client's packet with an ICMP error instead of a reply.
    icmp_error: Option<(u8, u8, u16)>,
    edits: Vec<(u16, u8)>,
}

fn client_of(family_of: IpAddr, n: u16) -> IpAddr {
    match family_of {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, (n >> 8) as u8, n as u8)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, n)),
    }
}

fn router_of(family_of: IpAddr) -> IpAddr {
    match family_of {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1)),
    }
}

/// A transport packet `src:sport → dst:dport` of the service's protocol.
fn transport(
    protocol: Protocol,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: u8,
) -> PacketBuilder {
    match protocol {
        Protocol::Tcp => PacketBuilder::tcp(src, sport, dst, dport, flags),
        Protocol::Udp => PacketBuilder::udp(src, sport, dst, dport),
    }
}

fn edit(packet: &mut [u8], edits: &[(u16, u8)]) -> bool {
    let mut changed = false;
    for &(at, value) in edits.iter().take(8) {
        if packet.is_empty() {
            break;
        }
        let i = usize::from(at) % packet.len();
        changed |= packet[i] != value;
        packet[i] = value;
    }
    changed
}

fn run_structured(data: &[u8]) {
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let services = table().services();
    let s = services[usize::from(case.service) % services.len()];
    with_data_path(|dp| {
        inbound(dp, &s, &case.inbound);
        outbound(dp, &s, &case.reply);
    });
}

fn inbound(dp: &mut DataPath, s: &ServiceSpec, spec: &Inbound) {
    let client = client_of(s.vip, spec.client);
    let (inner, to_service) = match spec.kind {
        InnerKind::Service { flags } => (
            transport(s.protocol, client, spec.client_port, s.vip, s.port, flags),
            true,
        ),
        InnerKind::OtherPort { port, flags } => (
            transport(s.protocol, client, spec.client_port, s.vip, port, flags),
            port == s.port,
        ),
        InnerKind::IcmpError {
            kind,
            code,
            rest,
            quote,
        } => {
            let sent = transport(s.protocol, s.vip, s.port, client, spec.client_port, 0x10)
                .payload_len(usize::from(quote % 1200))
                .build_ip();
            let quoted = sent[..usize::from(quote).min(sent.len())].to_vec();
            let types: [u8; 3] = if s.vip.is_ipv4() {
                [3, 11, 12]
            } else {
                [1, 2, 3]
            };
            let msg_type = types[usize::from(kind) % types.len()];
            let b = PacketBuilder::icmp(router_of(s.vip), s.vip, msg_type, code % 6, rest)
                .payload(quoted);
            (b, false)
        }
    };
    let mut inner = inner;
    if !matches!(spec.kind, InnerKind::IcmpError { .. }) {
        inner = inner.payload_len(usize::from(spec.payload_len % 1400));
    }
    inner.tos = spec.tos;
    let inner = inner.build_ip();
    let source = match (spec.from_mux, s.dip) {
        (Some(i), IpAddr::V4(_)) => IpAddr::V4(MUX_SOURCES_V4[usize::from(i) % 2]),
        (Some(_), IpAddr::V6(_)) => IpAddr::V6(MUX_SOURCE_V6),
        (None, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::new(
            10,
            9,
            (spec.other_source >> 8) as u8,
            spec.other_source as u8,
        )),
        (None, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x99,
            0,
            0,
            0,
            0,
            0,
            spec.other_source,
        )),
    };
    let destination = match (spec.to_dip, s.dip) {
        (true, dip) => dip,
        (false, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::new(10, 0, 21, 99)),
        (false, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0x21, 0, 0, 0, 0, 0, 0x99)),
    };
    let right = if s.vip.is_ipv4() { 4 } else { 41 };
    let protocol = if spec.wrong_protocol {
        4 + 41 - right
    } else {
        right
    };
    let mut outer = PacketBuilder::raw(source, destination, protocol).payload(inner.clone());
    outer.dont_frag = spec.outer_df;
    let mut packet = outer.build_ip();
    let alternative = spec.alternative.map(|(which, flags, hops)| {
        let alt: IpAddr = ALTERNATIVES[usize::from(which) % ALTERNATIVES.len()]
            .parse()
            .expect("an address");
        packet = with_option(&packet, alt, flags, hops);
        (alt, flags, hops)
    });
    packet.extend(std::iter::repeat_n(0xa5, usize::from(spec.trailing % 8)));
    let edited = edit(&mut packet, &spec.edits);

    let verdict = decap_checked(dp, &mut packet);
    if edited {
        return;
    }
    let well_formed = spec.from_mux.is_some() && spec.to_dip && !spec.wrong_protocol && to_service;
    // The contract's decision on an empty table: forward when there is an alternative that
    // is not local and not already forwarded, and the packet is not a TCP SYN (or an ICMP
    // error, which is always delivered).
    let forward = match (alternative, &spec.kind) {
        (Some((alt, flags, hops)), &InnerKind::Service { flags: tcp }) => {
            let local = table().is_dip(alt);
            let syn = s.protocol == Protocol::Tcp && tcp & 0x12 == 0x02;
            !local && flags & 1 == 0 && hops == 0 && !syn
        }
        _ => false,
    };
    if well_formed {
        assert_eq!(
            matches!(verdict, Verdict::Forward { .. }),
            forward,
            "a well-formed tunnelled packet to {s:?} with {alternative:?}: {verdict:?}"
        );
        assert!(
            matches!(verdict, Verdict::Deliver { .. } | Verdict::Forward { .. }),
            "a well-formed tunnelled packet to {s:?} was dropped: {verdict:?}"
        );
    }
    if let Verdict::Forward { offset, len, .. } = verdict {
        assert_eq!(
            &packet[offset..offset + len],
            &inner[..],
            "forwarded untouched"
        );
    }
    if let Verdict::Deliver { offset, len } = verdict {
        let delivered = &packet[offset..offset + len];
        check_rewritten(delivered, s.backend_address, Some(s.backend_port), true);
        if let InnerKind::Service { .. } = spec.kind {
            assert_eq!(
                ports(delivered).map(|p| p.1),
                Some(s.backend_port),
                "delivered to the backend port"
            );
        }
    }
}

fn outbound(dp: &mut DataPath, s: &ServiceSpec, spec: &Reply) {
    let client = client_of(s.backend_address, spec.client);
    let mut packet = match spec.icmp_error {
        None => transport(
            s.protocol,
            s.backend_address,
            s.backend_port,
            client,
            spec.client_port,
            0x18,
        )
        .payload_len(usize::from(spec.payload_len % 1400))
        .build_ip(),
        Some((kind, code, quote)) => {
            // The backend's host reports a problem with a client's packet it received.
            let received = transport(
                s.protocol,
                client,
                spec.client_port,
                s.backend_address,
                s.backend_port,
                0x10,
            )
            .payload_len(usize::from(spec.payload_len % 1200))
            .build_ip();
            let quoted = received[..(usize::from(quote) + 28).min(received.len())].to_vec();
            let types: [u8; 2] = if s.vip.is_ipv4() { [3, 11] } else { [1, 3] };
            PacketBuilder::icmp(
                s.backend_address,
                client,
                types[usize::from(kind) % 2],
                code % 4,
                0,
            )
            .payload(quoted)
            .build_ip()
        }
    };
    let edited = edit(&mut packet, &spec.edits);
    let verdict = snat_checked(dp, &mut packet);
    if edited {
        return;
    }
    if spec.icmp_error.is_none() {
        assert!(
            matches!(verdict, Verdict::Send { .. }),
            "a reply from {s:?}'s backend was not rewritten: {verdict:?}"
        );
    }
    if let Verdict::Send { len } = verdict {
        let sent = &packet[..len];
        let port = spec.icmp_error.is_none().then_some(s.port);
        check_rewritten(sent, s.vip, port, false);
    }
}

/// `decap` with the contract checks every verdict must pass.
fn decap_checked(dp: &mut DataPath, packet: &mut [u8]) -> Verdict {
    let before = packet.to_vec();
    let verdict = dp.decap(packet);
    match verdict {
        Verdict::Deliver { offset, len } => assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= packet.len()),
            "Deliver {{ offset: {offset}, len: {len} }} outside a {}-byte buffer",
            packet.len()
        ),
        Verdict::Forward {
            header,
            offset,
            len,
        } => {
            assert_eq!(packet, &before[..], "Forward changed the buffer");
            let inner = packet
                .get(offset..offset.saturating_add(len))
                .expect("Forward names a range inside the buffer");
            check_forwarded(header.as_bytes(), inner);
        }
        Verdict::Send { .. } => panic!("decap answered Send"),
        Verdict::Pass | Verdict::Drop(_) => {
            assert_eq!(packet, &before[..], "{verdict:?} changed the buffer")
        }
    }
    verdict
}

/// A forwarded packet: a well-formed outer header toward an alternative whose option says it
/// was forwarded (hops 1), which the alternative's agent never forwards again.
fn check_forwarded(header: &[u8], inner: &[u8]) {
    let mut onward = header.to_vec();
    onward.extend_from_slice(inner);
    match header.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(&onward[..]).expect("forwarded IPv4 parses");
            assert!(ip.verify_checksum(), "forwarded IPv4 header checksum");
            assert_eq!(ip.header_len(), 28);
            assert_eq!(
                &header[20..24],
                &[0x1E, 8, 1, 1],
                "option: forwarded, hops 1"
            );
            assert_eq!(
                &header[24..28],
                &header[16..20],
                "the alternative is the destination"
            );
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(&onward[..]).expect("forwarded IPv6 parses");
            assert_eq!(ip.upper_layer().expect("its chain parses").offset, 64);
            assert_eq!(
                &header[42..46],
                &[0x1E, 18, 1, 1],
                "option: forwarded, hops 1"
            );
            assert_eq!(&header[46..62], &header[24..40]);
        }
        _ => panic!("a forwarded header that is not IP: {header:?}"),
    }
    let next = on_peer(&mut onward);
    assert!(
        !matches!(next, Verdict::Forward { .. }),
        "a forwarded packet was forwarded again: {next:?}"
    );
}

/// `packet` (an outer IPv4 or IPv6 packet without options) with the second-chance option for
/// `alt` added as the contract lays it out.
fn with_option(packet: &[u8], alt: IpAddr, flags: u8, hops: u8) -> Vec<u8> {
    let alt_bytes = match alt {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    if packet[0] >> 4 == 4 {
        let mut option = vec![0x1E, 4 + alt_bytes.len() as u8, flags, hops];
        option.extend_from_slice(&alt_bytes);
        let header_len = 20 + option.len();
        let mut out = packet[..20].to_vec();
        out[0] = 0x40 | (header_len / 4) as u8;
        let total = (packet.len() + option.len()) as u16;
        out[2..4].copy_from_slice(&total.to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        out.extend_from_slice(&option);
        let c = mux_packet::checksum::internet_checksum(&out);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&packet[20..]);
        out
    } else {
        let mut dest = vec![packet[6], 0, 0x1E, 2 + alt_bytes.len() as u8, flags, hops];
        dest.extend_from_slice(&alt_bytes);
        if alt_bytes.len() == 4 {
            dest[1] = 1;
            dest.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
        } else {
            dest[1] = 2;
            dest.extend_from_slice(&[1, 0]);
        }
        let mut out = packet[..40].to_vec();
        out[6] = 60;
        let payload = (packet.len() - 40 + dest.len()) as u16;
        out[4..6].copy_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&dest);
        out.extend_from_slice(&packet[40..]);
        out
    }
}

/// `snat` with the contract checks every verdict must pass.
fn snat_checked(dp: &mut DataPath, packet: &mut [u8]) -> Verdict {
    let before = packet.to_vec();
    let verdict = dp.snat(packet);
    match verdict {
        Verdict::Send { len } => assert!(len <= packet.len(), "Send {{ len: {len} }} too long"),
        Verdict::Deliver { .. } => panic!("snat answered Deliver"),
        Verdict::Forward { .. } => panic!("snat answered Forward"),
        Verdict::Pass | Verdict::Drop(_) => {
            assert_eq!(packet, &before[..], "{verdict:?} changed the buffer")
        }
    }
    verdict
}

/// The (source, destination) ports of a TCP or UDP packet.
fn ports(packet: &[u8]) -> Option<(u16, u16)> {
    let l4 = match packet.first()? >> 4 {
        4 => ipv4::Packet::new_checked(packet).ok()?.payload().to_vec(),
        _ => {
            let p = ipv6::Packet::new_checked(packet).ok()?;
            let upper = p.upper_layer().ok()?;
            packet.get(upper.offset..)?.to_vec()
        }
    };
    tcp::ports(&l4)
}

/// Checks a rewritten packet: its header checksums verify, and `address` (and `port`, for
/// TCP/UDP) is the destination (`inbound`) or the source (outbound) it was rewritten to.
fn check_rewritten(packet: &[u8], address: IpAddr, port: Option<u16>, inbound: bool) {
    match address {
        IpAddr::V4(a) => {
            let ip = ipv4::Packet::new_checked(packet).expect("a rewritten IPv4 packet parses");
            assert!(
                ip.verify_checksum(),
                "IPv4 header checksum after the rewrite"
            );
            let rewritten = if inbound {
                ip.dst_addr()
            } else {
                ip.src_addr()
            };
            assert_eq!(rewritten, a.octets(), "rewritten address");
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            check_l4(
                ip.protocol().into(),
                ip.payload(),
                port,
                inbound,
                |l4, proto| match proto {
                    6 => tcp::Packet::new_checked(l4).is_ok_and(|t| t.verify_checksum_v4(src, dst)),
                    17 => udp::Packet::new_checked(l4)
                        .is_ok_and(|u| u.checksum() == 0 || u.verify_checksum_v4(src, dst)),
                    _ => icmpv4::Packet::new_checked(l4).is_ok_and(|i| i.verify_checksum()),
                },
            );
        }
        IpAddr::V6(a) => {
            let ip = ipv6::Packet::new_checked(packet).expect("a rewritten IPv6 packet parses");
            let rewritten = if inbound {
                ip.dst_addr()
            } else {
                ip.src_addr()
            };
            assert_eq!(rewritten, a.octets(), "rewritten address");
            let upper = ip.upper_layer().expect("its extension headers still parse");
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let l4 = &packet[upper.offset..40 + usize::from(ip.payload_len())];
            check_l4(
                upper.protocol.into(),
                l4,
                port,
                inbound,
                |l4, proto| match proto {
                    6 => {
                        tcp::Packet::new_checked(l4).is_ok_and(|t| t.verify_checksum_v6(&src, &dst))
                    }
                    17 => {
                        udp::Packet::new_checked(l4).is_ok_and(|u| u.verify_checksum_v6(&src, &dst))
                    }
                    _ => {
                        icmpv6::Packet::new_checked(l4).is_ok_and(|i| i.verify_checksum(&src, &dst))
                    }
                },
            );
        }
    }
}

fn check_l4(
    protocol: u8,
    l4: &[u8],
    port: Option<u16>,
    inbound: bool,
    verifies: impl Fn(&[u8], u8) -> bool,
) {
    assert!(
        verifies(l4, protocol),
        "protocol {protocol} checksum does not verify after the rewrite"
    );
    if let (Some(port), 6 | 17) = (port, protocol) {
        let (sport, dport) = tcp::ports(l4).expect("ports");
        assert_eq!(if inbound { dport } else { sport }, port, "rewritten port");
    }
}

fn run_decap(data: &[u8]) {
    let mut packet = data.to_vec();
    with_data_path(|dp| decap_checked(dp, &mut packet));
}

fn run_snat(data: &[u8]) {
    let mut packet = data.to_vec();
    with_data_path(|dp| snat_checked(dp, &mut packet));
}

/// Tunnelled versions of the seed frames' IP packets, from a MUX to a DIP and elsewhere.
fn decap_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let v4_dip = IpAddr::V4(Ipv4Addr::new(10, 0, 21, 2));
    let v6_dip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x21, 0, 0, 0, 0, 0, 2));
    for ip in seeds::ip_packets() {
        let protocol = if ip[0] >> 4 == 4 { 4 } else { 41 };
        let v4 = PacketBuilder::raw(IpAddr::V4(MUX_SOURCES_V4[0]), v4_dip, protocol)
            .payload(ip.clone())
            .build_ip();
        let v6 = PacketBuilder::raw(IpAddr::V6(MUX_SOURCE_V6), v6_dip, protocol)
            .payload(ip.clone())
            .build_ip();
        // The same with a second-chance alternative (a peer's, of either family).
        for alt in &ALTERNATIVES[..2] {
            let alt: IpAddr = alt.parse().expect("an address");
            out.push(with_option(&v4, alt, 0, 0));
            out.push(with_option(&v6, alt, 0, 0));
        }
        out.push(v4);
        out.push(v6);
        out.push(ip);
    }
    out
}

/// The seed frames' IP packets, and replies from each service's backend.
fn snat_seeds() -> Vec<Vec<u8>> {
    let mut out = seeds::ip_packets();
    for s in table().services() {
        let client = client_of(s.backend_address, 7);
        out.push(
            transport(
                s.protocol,
                s.backend_address,
                s.backend_port,
                client,
                40000,
                0x18,
            )
            .payload_len(20)
            .build_ip(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_delivers_and_rewrites_a_plain_packet() {
        // An all-zero description: the first service, a well-formed packet from a MUX.
        for service in 0..table().services().len() as u8 {
            let case = Case {
                service,
                inbound: Inbound {
                    from_mux: Some(0),
                    other_source: 0,
                    to_dip: true,
                    wrong_protocol: false,
                    outer_df: true,
                    alternative: None,
                    kind: InnerKind::Service { flags: 0x02 },
                    client: 1,
                    client_port: 40000,
                    payload_len: 10,
                    tos: 0,
                    trailing: 0,
                    edits: Vec::new(),
                },
                reply: Reply {
                    client: 1,
                    client_port: 40000,
                    payload_len: 10,
                    icmp_error: None,
                    edits: Vec::new(),
                },
            };
            let s = table().services()[usize::from(service)];
            let mut dp = DataPath::new(table().clone());
            inbound(&mut dp, &s, &case.inbound);
            outbound(&mut dp, &s, &case.reply);
            assert_eq!(dp.counters().total_drops(), 0, "{s:?}");
        }
    }
}
