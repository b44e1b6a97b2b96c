//! Every wire view of `mux_packet::wire`: the module's contract, "after `check_len()` succeeds
//! no accessor panics, whatever the bytes are", checked by calling every accessor on whatever
//! `new_checked` accepts; setters read back what they wrote; `Repr::parse` → `emit` →
//! `parse` gives the same `Repr` where a format has one (Ethernet, ARP, IPv4, IPv6), and an
//! emitted IPv4 header's checksum verifies.
//!
//! Each view is its own target so that each gets its own coverage map and its own figure.

use std::hint::black_box;

use mux_packet::wire::tcp::TcpFlags;
use mux_packet::wire::{
    EtherType, IpProtocol, MacAddr, arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp,
};

use super::{PACKET_DICTIONARY, Target};
use crate::seeds;

const fn target(name: &'static str, about: &'static str, run: fn(&[u8])) -> Target {
    Target {
        name,
        about,
        run,
        seeds: seeds::wire_seeds,
        max_len: 2048,
        dictionary: PACKET_DICTIONARY,
    }
}

/// `ethernet::Frame`.
pub const ETHERNET: Target = target("wire-ethernet", "wire view: Ethernet / 802.1Q", ethernet);
/// `arp::Packet`.
pub const ARP: Target = target("wire-arp", "wire view: ARP", arp);
/// `ipv4::Packet`, checked and truncated forms.
pub const IPV4: Target = target(
    "wire-ipv4",
    "wire view: IPv4 (and its truncated form)",
    ipv4,
);
/// `ipv6::Packet` and its extension-header walk.
pub const IPV6: Target = target(
    "wire-ipv6",
    "wire view: IPv6, extension headers (and the truncated form)",
    ipv6,
);
/// `tcp::Packet`.
pub const TCP: Target = target("wire-tcp", "wire view: TCP", tcp);
/// `udp::Packet`.
pub const UDP: Target = target("wire-udp", "wire view: UDP", udp);
/// `icmpv4::Packet`.
pub const ICMPV4: Target = target("wire-icmpv4", "wire view: ICMP", icmpv4);
/// `icmpv6::Packet`.
pub const ICMPV6: Target = target("wire-icmpv6", "wire view: ICMPv6", icmpv6);

const ADDR4: [u8; 4] = [192, 0, 2, 10];
const ADDR6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn ethernet(data: &[u8]) {
    let Ok(frame) = ethernet::Frame::new_checked(data) else {
        return;
    };
    black_box((frame.dst_addr(), frame.src_addr(), frame.outer_ethertype()));
    black_box((frame.vlan_tci(), frame.vlan_id(), frame.ethertype()));
    let header_len = frame.header_len();
    assert_eq!(header_len + frame.payload().len(), data.len());
    assert_eq!(frame.as_bytes(), data);
    assert_eq!(frame.vlan_id().is_some(), header_len == 18);

    // Round trip, except for a second tag (QinQ): its TPID is reported as the EtherType, and
    // an untagged header carrying 0x8100 reads back as a (truncated) tagged frame.
    let repr = ethernet::Repr::parse(&frame);
    if repr.ethertype != EtherType::Vlan {
        let mut out = [0u8; ethernet::HEADER_LEN];
        ethernet::Repr::emit(&repr, &mut ethernet::Frame::new_unchecked(&mut out[..]));
        let again = ethernet::Frame::new_checked(&out[..]).expect("an emitted header parses");
        assert_eq!(
            ethernet::Repr::parse(&again),
            repr,
            "Ethernet emit/parse round trip"
        );
    }

    let mut copy = data.to_vec();
    let mut view = ethernet::Frame::new_unchecked(&mut copy[..]);
    view.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 9]));
    view.set_src_addr(MacAddr([2, 0, 0, 0, 0, 8]));
    assert_eq!(view.dst_addr(), MacAddr([2, 0, 0, 0, 0, 9]));
    assert_eq!(view.src_addr(), MacAddr([2, 0, 0, 0, 0, 8]));
    view.set_ethertype(EtherType::Ipv6);
    assert_eq!(view.ethertype(), EtherType::Ipv6);
    if view.vlan_id().is_some() {
        view.set_vlan_id(0x0abc);
        assert_eq!(view.vlan_id(), Some(0x0abc));
    }
}

fn arp(data: &[u8]) {
    let Ok(packet) = arp::Packet::new_checked(data) else {
        return;
    };
    black_box((packet.hardware_type(), packet.protocol_type()));
    black_box((
        packet.hardware_len(),
        packet.protocol_len(),
        packet.operation(),
    ));
    black_box((
        packet.sender_hw_addr(),
        packet.sender_proto_addr(),
        packet.sender_ip(),
    ));
    black_box((
        packet.target_hw_addr(),
        packet.target_proto_addr(),
        packet.target_ip(),
    ));
    let repr = arp::Repr::parse(&packet);
    let mut out = [0u8; arp::PACKET_LEN];
    repr.emit(&mut arp::Packet::new_unchecked(&mut out[..]));
    let again = arp::Packet::new_checked(&out[..]).expect("an emitted ARP packet parses");
    assert_eq!(arp::Repr::parse(&again), repr, "ARP emit/parse round trip");

    let mut copy = data.to_vec();
    let mut view = arp::Packet::new_unchecked(&mut copy[..]);
    view.set_operation(arp::Operation::Reply);
    view.set_target_proto_addr(ADDR4);
    assert_eq!(view.operation(), arp::Operation::Reply);
    assert_eq!(view.target_proto_addr(), ADDR4);
}

fn ipv4_accessors<T: AsRef<[u8]>>(p: &ipv4::Packet<T>, len: usize) {
    black_box((p.version(), p.header_len(), p.dscp_ecn(), p.dscp(), p.ecn()));
    black_box((p.total_len(), p.ident(), p.dont_frag(), p.more_frags()));
    black_box((p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol()));
    black_box((
        p.protocol_number(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
    ));
    black_box((p.src_ip(), p.dst_ip(), p.verify_checksum()));
    assert!(p.header().len() <= len && p.payload().len() <= len);
}

fn ipv4(data: &[u8]) {
    if let Ok(p) = ipv4::Packet::new_checked_truncated(data) {
        ipv4_accessors(&p, data.len());
    }
    let Ok(p) = ipv4::Packet::new_checked(data) else {
        return;
    };
    ipv4_accessors(&p, data.len());
    assert_eq!(
        p.header_len() + p.payload().len(),
        usize::from(p.total_len())
    );

    let repr = ipv4::Repr::parse(&p);
    let mut out = vec![0u8; repr.header_len() + repr.payload_len];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut out[..]));
    let again = ipv4::Packet::new_checked(&out[..]).expect("an emitted IPv4 packet parses");
    assert!(
        again.verify_checksum(),
        "an emitted header's checksum verifies"
    );
    assert_eq!(
        ipv4::Repr::parse(&again),
        repr,
        "IPv4 emit/parse round trip"
    );

    let mut copy = data.to_vec();
    let mut view = ipv4::Packet::new_unchecked(&mut copy[..]);
    view.set_ttl(7);
    view.set_protocol(IpProtocol::Udp);
    view.set_dst_addr(ADDR4);
    view.set_frag_offset(1480);
    view.set_more_frags(true);
    view.fill_checksum();
    assert_eq!((view.ttl(), view.protocol()), (7, IpProtocol::Udp));
    assert_eq!(view.dst_addr(), ADDR4);
    assert_eq!((view.frag_offset(), view.more_frags()), (1480, true));
    assert!(
        view.verify_checksum(),
        "fill_checksum makes the header verify"
    );
    black_box(view.payload_mut().len());
}

fn ipv6_accessors<T: AsRef<[u8]>>(p: &ipv6::Packet<T>, len: usize) {
    black_box((
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.payload_len(),
    ));
    black_box((p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr()));
    black_box((p.src_ip(), p.dst_ip()));
    assert!(p.payload().len() <= len);
    if let Ok(upper) = p.upper_layer() {
        assert!(
            upper.offset <= len && upper.offset >= ipv6::HEADER_LEN,
            "upper layer at {} in a {len}-byte packet",
            upper.offset
        );
        black_box(upper);
    }
}

fn ipv6(data: &[u8]) {
    if let Ok(p) = ipv6::Packet::new_checked_truncated(data) {
        ipv6_accessors(&p, data.len());
    }
    let Ok(p) = ipv6::Packet::new_checked(data) else {
        return;
    };
    ipv6_accessors(&p, data.len());
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));

    let repr = ipv6::Repr::parse(&p);
    let mut out = vec![0u8; repr.header_len() + repr.payload_len];
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut out[..]));
    let again = ipv6::Packet::new_checked(&out[..]).expect("an emitted IPv6 packet parses");
    assert_eq!(
        ipv6::Repr::parse(&again),
        repr,
        "IPv6 emit/parse round trip"
    );

    let mut copy = data.to_vec();
    let mut view = ipv6::Packet::new_unchecked(&mut copy[..]);
    view.set_traffic_class(0xb8);
    view.set_flow_label(0xfffff);
    view.set_hop_limit(3);
    view.set_src_addr(ADDR6);
    assert_eq!(view.traffic_class(), 0xb8);
    assert_eq!(view.flow_label(), 0xfffff);
    assert_eq!((view.hop_limit(), view.src_addr()), (3, ADDR6));
    assert_eq!(
        view.version(),
        6,
        "the version survives the traffic class and flow label"
    );
    black_box(view.payload_mut().len());
}

fn tcp(data: &[u8]) {
    black_box(tcp::ports(data));
    let Ok(p) = tcp::Packet::new_checked(data) else {
        return;
    };
    black_box((p.src_port(), p.dst_port(), p.seq(), p.ack(), p.flags()));
    black_box((p.window(), p.checksum(), p.urgent_ptr()));
    black_box(p.verify_checksum_v4(ADDR4, ADDR4));
    black_box(p.verify_checksum_v6(&ADDR6, &ADDR6));
    assert_eq!(p.options().len(), p.header_len() - tcp::HEADER_LEN);
    assert_eq!(p.header_len() + p.payload().len(), data.len());
    assert_eq!(tcp::ports(data), Some((p.src_port(), p.dst_port())));

    let mut copy = data.to_vec();
    let mut view = tcp::Packet::new_unchecked(&mut copy[..]);
    view.set_dst_port(8080);
    view.set_flags(TcpFlags::SYN | TcpFlags::ACK);
    view.fill_checksum_v4(ADDR4, ADDR4);
    assert_eq!(view.dst_port(), 8080);
    assert_eq!(view.flags(), TcpFlags::SYN | TcpFlags::ACK);
    assert!(
        view.verify_checksum_v4(ADDR4, ADDR4),
        "fill_checksum_v4 verifies"
    );
    view.fill_checksum_v6(&ADDR6, &ADDR6);
    assert!(
        view.verify_checksum_v6(&ADDR6, &ADDR6),
        "fill_checksum_v6 verifies"
    );
    black_box(view.payload_mut().len());
}

fn udp(data: &[u8]) {
    let Ok(p) = udp::Packet::new_checked(data) else {
        return;
    };
    black_box((p.src_port(), p.dst_port(), p.len(), p.checksum()));
    black_box(p.verify_checksum_v4(ADDR4, ADDR4));
    black_box(p.verify_checksum_v6(&ADDR6, &ADDR6));
    assert!(udp::HEADER_LEN + p.payload().len() <= data.len());

    let mut copy = data.to_vec();
    let mut view = udp::Packet::new_unchecked(&mut copy[..]);
    view.set_src_port(53);
    view.fill_checksum_v4(ADDR4, ADDR4);
    assert_eq!(view.src_port(), 53);
    assert!(
        view.verify_checksum_v4(ADDR4, ADDR4),
        "fill_checksum_v4 verifies"
    );
    view.fill_checksum_v6(&ADDR6, &ADDR6);
    assert!(
        view.verify_checksum_v6(&ADDR6, &ADDR6),
        "fill_checksum_v6 verifies"
    );
    black_box(view.payload_mut().len());
}

fn icmpv4(data: &[u8]) {
    let Ok(p) = icmpv4::Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.msg_type(),
        p.message(),
        p.code(),
        p.checksum(),
        p.is_error(),
    ));
    black_box((
        p.is_frag_needed(),
        p.next_hop_mtu(),
        p.echo_ident(),
        p.echo_seq(),
    ));
    black_box((p.pointer(), p.verify_checksum()));
    assert_eq!(icmpv4::HEADER_LEN + p.data().len(), data.len());

    let mut copy = data.to_vec();
    let mut view = icmpv4::Packet::new_unchecked(&mut copy[..]);
    view.set_msg_type(3);
    view.set_code(4);
    view.set_next_hop_mtu(1400);
    view.fill_checksum();
    assert!(view.is_frag_needed() && view.next_hop_mtu() == 1400);
    assert!(view.verify_checksum(), "fill_checksum verifies");
    black_box(view.data_mut().len());
}

fn icmpv6(data: &[u8]) {
    let Ok(p) = icmpv6::Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.msg_type(),
        p.message(),
        p.code(),
        p.checksum(),
        p.is_error(),
    ));
    black_box((p.mtu(), p.pointer(), p.echo_ident(), p.echo_seq()));
    black_box(p.verify_checksum(&ADDR6, &ADDR6));
    assert!(icmpv6::HEADER_LEN + p.data().len() <= data.len());

    let mut copy = data.to_vec();
    let mut view = icmpv6::Packet::new_unchecked(&mut copy[..]);
    view.set_msg_type(2);
    view.set_code(0);
    view.set_mtu(1280);
    view.fill_checksum(&ADDR6, &ADDR6);
    assert_eq!((view.msg_type(), view.mtu()), (2, 1280));
    assert!(
        view.verify_checksum(&ADDR6, &ADDR6),
        "fill_checksum verifies"
    );
    black_box(view.data_mut().len());
}
