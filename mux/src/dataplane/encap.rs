//! IP-in-IP encapsulation, in place.
//!
//! The client's packet is forwarded untouched inside an outer IPv4 (protocol 4 for an IPv4
//! inner packet, 41 for IPv6) or IPv6 header addressed to the backend's DIP (Ananta's model,
//! RFC 2003 / RFC 2473). The outer header is written into the buffer's headroom: the Ethernet
//! header (with its 802.1Q tag, if any) moves forward by the outer header's length and nothing
//! else is copied.
//!
//! Outer header fields: TTL / hop limit 64; DSCP and ECN copied from the inner packet (RFC 6040
//! normal mode); DF copied from an IPv4 inner packet and set for an IPv6 one (IPv6 packets are
//! never fragmented on the path); a fresh header checksum. For an IPv6 outer header the flow
//! label carries 20 bits of the flow hash, so receiving NICs can spread tunnelled flows over
//! their RSS queues (the entropy Katran gets by varying the outer source).
//!
//! The frame leaves toward the configured next hop, with the same VLAN tag it arrived with
//! (one-armed deployment: the MUX sends back out of the interface and VLAN it listens on).

use mux_shared::port::PacketBuf;
use mux_shared::wire::{EtherType, IpProtocol, MacAddr, ethernet, ipv4, ipv6};

use super::parse::Parsed;
use super::snapshot::{Backend, SnapshotParts};
use super::verdict::DropReason;

/// TTL / hop limit of outer headers.
pub const OUTER_TTL: u8 = 64;

/// Bytes the outer header adds for a backend of this family.
#[inline]
pub fn outer_len(backend_is_v4: bool) -> usize {
    if backend_is_v4 {
        ipv4::HEADER_LEN
    } else {
        ipv6::HEADER_LEN
    }
}

/// Encapsulates the parsed packet in `buf` toward `backend`.
///
/// `ident` is the outer IPv4 identification to use; `entropy` the flow hash whose low 20 bits
/// become the outer IPv6 flow label. The caller has checked the MTU.
#[inline]
pub fn encapsulate<B: PacketBuf>(
    buf: &mut B,
    parsed: &Parsed,
    backend: &Backend,
    snap: &SnapshotParts,
    ident: u16,
    entropy: u64,
) -> Result<(), DropReason> {
    let l2_len = parsed.l2_len;
    let outer = outer_len(backend.is_v4);
    // Drop Ethernet padding: the inner packet ends where its IP header says.
    buf.set_len(l2_len + parsed.ip_len);
    if !buf.push_front(outer) {
        return Err(DropReason::NoHeadroom);
    }
    let data = buf.data_mut();
    data.copy_within(outer..outer + l2_len, 0);

    let inner_protocol = if parsed.is_v4 {
        IpProtocol::IpIp
    } else {
        IpProtocol::Ipv6
    };
    let (head, rest) = data.split_at_mut(l2_len);
    let mut eth = ethernet::Frame::new_unchecked(head);
    eth.set_dst_addr(MacAddr(snap.next_hop_mac));
    eth.set_src_addr(MacAddr(snap.source_mac));

    if backend.is_v4 {
        let Some(src) = snap.tunnel_v4 else {
            return Err(DropReason::NoTunnelSource);
        };
        eth.set_ethertype(EtherType::Ipv4);
        let dst = [
            backend.address[12],
            backend.address[13],
            backend.address[14],
            backend.address[15],
        ];
        let repr = ipv4::Repr {
            src,
            dst,
            protocol: inner_protocol,
            payload_len: parsed.ip_len,
            ttl: OUTER_TTL,
            dscp_ecn: parsed.dscp_ecn,
            dont_frag: parsed.dont_frag,
            ident,
        };
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut rest[..outer]));
    } else {
        let Some(src) = snap.tunnel_v6 else {
            return Err(DropReason::NoTunnelSource);
        };
        eth.set_ethertype(EtherType::Ipv6);
        let repr = ipv6::Repr {
            src,
            dst: backend.address,
            next_header: inner_protocol,
            payload_len: parsed.ip_len,
            hop_limit: OUTER_TTL,
            traffic_class: parsed.dscp_ecn,
            flow_label: (entropy as u32) & 0x000f_ffff,
        };
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut rest[..outer]));
    }
    Ok(())
}
