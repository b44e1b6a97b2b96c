//! ICMP "fragmentation needed" (IPv4) and "packet too big" (IPv6) replies, built in place.
//!
//! When a client's packet would exceed the egress MTU once the outer header is added, and the
//! client forbade fragmentation (IPv4 DF, or any IPv6 packet), the MUX answers the client the
//! way a router on the path would (RFC 1191 / RFC 8201), so path-MTU discovery lowers the
//! client's packet size instead of the flow black-holing. The reply is sent from the VIP (the
//! address the client was talking to — Katran does the same) and carries the MTU the inner
//! packet may have: the egress MTU minus the outer header.
//!
//! The reply is built in the received buffer: the original IP packet stays where it is (cut to
//! what the reply may quote — 576 bytes in all for IPv4, 1280 for IPv6) and the new IP and ICMP
//! headers go in front of it, in the headroom, with the Ethernet header moved forward and its
//! addresses reversed (the reply goes back to the router that handed us the packet, on the same
//! VLAN).

use mux_packet::flow_key::v4_of;
use mux_packet::wire::{EtherType, IpProtocol, MacAddr, ethernet, icmpv4, icmpv6, ipv4, ipv6};
use mux_ports::PacketBuf;

use super::parse::Parsed;
use super::verdict::DropReason;

/// Largest IPv4 ICMP error we send (RFC 1812 §4.3.2.3).
const V4_MAX_REPLY: usize = 576;
/// Largest ICMPv6 error we send (RFC 4443 §2.4 (c)).
const V6_MAX_REPLY: usize = ipv6::MIN_MTU;
/// ICMP header length (type, code, checksum, 4 more bytes).
const ICMP_HEADER_LEN: usize = 8;
/// ICMPv4 destination unreachable; code 4 is "fragmentation needed and DF set".
const ICMPV4_DEST_UNREACHABLE: u8 = 3;
const ICMPV4_FRAG_NEEDED: u8 = 4;
/// ICMPv6 packet too big.
const ICMPV6_PACKET_TOO_BIG: u8 = 2;

/// Replaces the packet in `buf` by an ICMP error telling the client its packets may be at most
/// `inner_mtu` bytes. `source_mac` is our MAC.
pub fn packet_too_big<B: PacketBuf>(
    buf: &mut B,
    parsed: &Parsed,
    inner_mtu: usize,
    source_mac: [u8; 6],
) -> Result<(), DropReason> {
    let l2_len = parsed.l2_len;
    let (ip_hdr, max_reply) = if parsed.is_v4 {
        (ipv4::HEADER_LEN, V4_MAX_REPLY)
    } else {
        (ipv6::HEADER_LEN, V6_MAX_REPLY)
    };
    let added = ip_hdr + ICMP_HEADER_LEN;
    let quoted = parsed.ip_len.min(max_reply - added);
    let client_mac = {
        let eth = ethernet::Frame::new_unchecked(buf.data());
        eth.src_addr()
    };
    buf.set_len(l2_len + quoted);
    if !buf.push_front(added) {
        return Err(DropReason::NoHeadroom);
    }
    let data = buf.data_mut();
    data.copy_within(added..added + l2_len, 0);
    let (head, rest) = data.split_at_mut(l2_len);
    let mut eth = ethernet::Frame::new_unchecked(head);
    eth.set_dst_addr(client_mac);
    eth.set_src_addr(MacAddr(source_mac));

    // The reply goes from the VIP (the packet's destination) back to the client.
    let key = &parsed.key;
    let (ip_part, icmp_part) = rest.split_at_mut(ip_hdr);
    let icmp_len = ICMP_HEADER_LEN + quoted;
    if parsed.is_v4 {
        eth.set_ethertype(EtherType::Ipv4);
        let repr = ipv4::Repr {
            src: v4_of(&key.dst).octets(),
            dst: v4_of(&key.src).octets(),
            protocol: IpProtocol::Icmp,
            payload_len: icmp_len,
            ttl: 64,
            dscp_ecn: 0,
            dont_frag: false,
            ident: 0,
        };
        repr.emit(&mut ipv4::Packet::new_unchecked(ip_part));
        let mut icmp = icmpv4::Packet::new_unchecked(&mut icmp_part[..icmp_len]);
        icmp.set_msg_type(ICMPV4_DEST_UNREACHABLE);
        icmp.set_code(ICMPV4_FRAG_NEEDED);
        icmp.set_rest_of_header(0);
        icmp.set_next_hop_mtu(inner_mtu.clamp(ipv4::MIN_MTU, u16::MAX as usize) as u16);
        icmp.fill_checksum();
    } else {
        eth.set_ethertype(EtherType::Ipv6);
        let repr = ipv6::Repr {
            src: key.dst,
            dst: key.src,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        repr.emit(&mut ipv6::Packet::new_unchecked(ip_part));
        let mut icmp = icmpv6::Packet::new_unchecked(&mut icmp_part[..icmp_len]);
        icmp.set_msg_type(ICMPV6_PACKET_TOO_BIG);
        icmp.set_code(0);
        icmp.set_mtu(inner_mtu.max(ipv6::MIN_MTU) as u32);
        icmp.fill_checksum(&key.dst, &key.src);
    }
    Ok(())
}
