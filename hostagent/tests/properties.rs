//! Property tests of the data path: for random services, ports, addresses and payloads,
//! decapsulation yields a packet whose checksums verify in full (and equal a packet built from
//! scratch with the rewritten fields), SNAT of the backend's reply likewise, and no input —
//! however malformed — panics or goes uncounted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hostagent::config::Protocol;
use hostagent::dataplane::{DataPath, ServiceSpec, ServiceTable, Verdict};
use mux_packet::checksum;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags};
use mux_packet::wire::{ipv4, tcp, udp};
use proptest::prelude::*;

fn addr(v4: bool) -> impl Strategy<Value = IpAddr> {
    if v4 {
        any::<[u8; 4]>()
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            .boxed()
    } else {
        any::<[u8; 16]>()
            .prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .boxed()
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    service: ServiceSpec,
    mux: IpAddr,
    client: IpAddr,
    client_port: u16,
    payload: Vec<u8>,
}

/// A service whose VIP family (`inner_v4`) and tunnel family (`outer_v4`) are drawn
/// independently, with distinct addresses.
fn scenario() -> impl Strategy<Value = Scenario> {
    (any::<bool>(), any::<bool>()).prop_flat_map(|(inner_v4, outer_v4)| {
        (
            addr(inner_v4),
            addr(inner_v4),
            addr(inner_v4),
            addr(outer_v4),
            addr(outer_v4),
            any::<(u16, u16, u16, bool)>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_filter(
                "distinct addresses",
                |(vip, backend, client, dip, mux, ..)| {
                    vip != backend && vip != client && backend != client && dip != mux
                },
            )
            .prop_map(
                move |(
                    vip,
                    backend,
                    client,
                    dip,
                    mux,
                    (port, backend_port, client_port, is_tcp),
                    payload,
                )| {
                    let backend_address = if inner_v4 == outer_v4 { dip } else { backend };
                    Scenario {
                        service: ServiceSpec {
                            vip,
                            port,
                            protocol: if is_tcp { Protocol::Tcp } else { Protocol::Udp },
                            dip,
                            backend_address,
                            backend_port,
                        },
                        mux,
                        client,
                        client_port,
                        payload,
                    }
                },
            )
            .prop_filter("backend is not the client", |s| {
                s.service.backend_address != s.client && s.service.backend_address != s.service.vip
            })
    })
}

fn segment(s: &Scenario, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
    let b = match s.service.protocol {
        Protocol::Tcp => PacketBuilder::tcp(src, sport, dst, dport, tcp_flags::ACK),
        Protocol::Udp => PacketBuilder::udp(src, sport, dst, dport),
    };
    b.payload(s.payload.clone()).build_ip()
}

/// Verifies every checksum of an IP packet carrying TCP or UDP from scratch.
fn checksums_verify(packet: &[u8]) -> bool {
    let (src, dst, l4) = match packet[0] >> 4 {
        4 => {
            let p = ipv4::Packet::new_checked(packet).unwrap();
            if checksum::internet_checksum(p.header()) != 0 {
                return false;
            }
            let (hl, total) = (p.header_len(), usize::from(p.total_len()));
            (
                IpAddr::V4(p.src_ip()),
                IpAddr::V4(p.dst_ip()),
                &packet[hl..total],
            )
        }
        _ => (
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[8..24]).unwrap(),
            )),
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[24..40]).unwrap(),
            )),
            &packet[40..],
        ),
    };
    match (packet[if packet[0] >> 4 == 4 { 9 } else { 6 }], src, dst) {
        (6, IpAddr::V4(s), IpAddr::V4(d)) => tcp::Packet::new_checked(l4)
            .unwrap()
            .verify_checksum_v4(s.octets(), d.octets()),
        (6, IpAddr::V6(s), IpAddr::V6(d)) => tcp::Packet::new_checked(l4)
            .unwrap()
            .verify_checksum_v6(&s.octets(), &d.octets()),
        (17, IpAddr::V4(s), IpAddr::V4(d)) => udp::Packet::new_checked(l4)
            .unwrap()
            .verify_checksum_v4(s.octets(), d.octets()),
        (17, IpAddr::V6(s), IpAddr::V6(d)) => udp::Packet::new_checked(l4)
            .unwrap()
            .verify_checksum_v6(&s.octets(), &d.octets()),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decap_yields_verified_checksums_and_the_reply_goes_out_as_the_vip(s in scenario()) {
        let svc = s.service;
        let table = ServiceTable::new([s.mux], [svc]).unwrap();
        let mut dp = DataPath::new(table);

        let inner = segment(&s, s.client, s.client_port, svc.vip, svc.port);
        let proto = if svc.vip.is_ipv4() { 4 } else { 41 };
        let mut buf = PacketBuilder::raw(s.mux, svc.dip, proto).payload(inner).build_ip();
        let verdict = dp.decap(&mut buf);
        let Verdict::Deliver { offset, len } = verdict else {
            return Err(TestCaseError::fail(format!("{verdict:?}")));
        };
        let delivered = &buf[offset..offset + len];
        prop_assert!(checksums_verify(delivered));
        let expected = segment(&s, s.client, s.client_port, svc.backend_address, svc.backend_port);
        prop_assert_eq!(delivered, &expected[..]);

        let mut reply = segment(&s, svc.backend_address, svc.backend_port, s.client, s.client_port);
        prop_assert_eq!(dp.snat(&mut reply), Verdict::Send { len: reply.len() });
        prop_assert!(checksums_verify(&reply));
        prop_assert_eq!(reply, segment(&s, svc.vip, svc.port, s.client, s.client_port));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_always_counted(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        version in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()],
    ) {
        let svc = ServiceSpec {
            vip: "192.0.2.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            dip: "10.0.21.2".parse().unwrap(),
            backend_address: "10.0.21.2".parse().unwrap(),
            backend_port: 8080,
        };
        let mut dp = DataPath::new(ServiceTable::new(["10.0.11.2".parse().unwrap()], [svc]).unwrap());
        let mut buf = bytes.clone();
        if let Some(first) = buf.first_mut() {
            *first = version;
        }
        let mut copy = buf.clone();
        let _ = dp.decap(&mut buf);
        let _ = dp.snat(&mut copy);
        let c = dp.counters();
        prop_assert_eq!(
            c.delivered + c.second_chance.forwarded + c.icmp_errors_delivered
                + c.replies_rewritten + c.icmp_errors_rewritten + c.passed + c.total_drops(),
            c.inbound + c.outbound
        );
    }
}
