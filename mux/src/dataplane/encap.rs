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

use mux_packet::checksum;
use mux_packet::wire::{EtherType, IpProtocol, MacAddr, ethernet, ipv4, ipv6};
use mux_ports::PacketBuf;

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
    let inner_protocol = if parsed.is_v4 {
        IpProtocol::IpIp
    } else {
        IpProtocol::Ipv6
    };
    if backend.is_v4
        && l2_len == ethernet::HEADER_LEN
        && let Some(head) = data.first_chunk_mut::<{ ethernet::HEADER_LEN + ipv4::HEADER_LEN }>()
    {
        // The common case, an untagged frame toward an IPv4 backend: the new Ethernet header
        // replaces every byte of the old one, so nothing is moved; both headers are written
        // at fixed offsets of one checked chunk.
        let Some(src) = snap.tunnel_v4 else {
            return Err(DropReason::NoTunnelSource);
        };
        head[..6].copy_from_slice(&snap.next_hop_mac);
        head[6..12].copy_from_slice(&snap.source_mac);
        head[12..14].copy_from_slice(&u16::from(EtherType::Ipv4).to_be_bytes());
        head[ethernet::HEADER_LEN..].copy_from_slice(&outer_v4_header(
            src,
            backend,
            parsed,
            u8::from(inner_protocol),
            ident,
        ));
        return Ok(());
    }
    data.copy_within(outer..outer + l2_len, 0);
    let (head, rest) = data.split_at_mut(l2_len);
    let mut eth = ethernet::Frame::new_unchecked(head);
    eth.set_dst_addr(MacAddr(snap.next_hop_mac));
    eth.set_src_addr(MacAddr(snap.source_mac));

    if backend.is_v4 {
        let Some(src) = snap.tunnel_v4 else {
            return Err(DropReason::NoTunnelSource);
        };
        eth.set_ethertype(EtherType::Ipv4);
        rest[..outer].copy_from_slice(&outer_v4_header(
            src,
            backend,
            parsed,
            u8::from(inner_protocol),
            ident,
        ));
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

/// The 20-byte outer IPv4 header, written by the caller in one store, its checksum finished
/// from the backend's pre-summed addresses and the few per-packet fields (RFC 1071 sums
/// commute), instead of emitting field by field and summing the header back from memory (a
/// store-forwarding stall on every packet). `outer_v4_header_matches_the_wire_emitter` checks
/// it against [`ipv4::Repr::emit`].
#[inline]
fn outer_v4_header(
    src: [u8; 4],
    backend: &Backend,
    parsed: &Parsed,
    protocol: u8,
    ident: u16,
) -> [u8; ipv4::HEADER_LEN] {
    let total = (ipv4::HEADER_LEN + parsed.ip_len) as u16;
    let flags: u16 = if parsed.dont_frag { 0x4000 } else { 0 };
    let ttl_protocol = (u16::from(OUTER_TTL) << 8) | u16::from(protocol);
    let version_tos = 0x4500 | u16::from(parsed.dscp_ecn);
    let sum = backend.outer_v4_address_sum
        + u32::from(version_tos)
        + u32::from(total)
        + u32::from(ident)
        + u32::from(flags)
        + u32::from(ttl_protocol);
    let check = checksum::finish(sum);
    let d = &backend.address[12..16];
    [
        0x45,
        parsed.dscp_ecn,
        (total >> 8) as u8,
        total as u8,
        (ident >> 8) as u8,
        ident as u8,
        (flags >> 8) as u8,
        0,
        OUTER_TTL,
        protocol,
        (check >> 8) as u8,
        check as u8,
        src[0],
        src[1],
        src[2],
        src[3],
        d[0],
        d[1],
        d[2],
        d[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_packet::flow_key::{FlowKey, map_v4};

    use crate::dataplane::parse::Kind;
    use crate::dataplane::snapshot::BackendState;

    #[test]
    fn outer_v4_header_matches_the_wire_emitter() {
        let src = [10, 0, 0, 11];
        for (dst, tos, len, df, ident, proto) in [
            ([10, 1, 0, 1], 0u8, 60usize, true, 0u16, 4u8),
            ([192, 168, 200, 254], 0xb9, 1480, false, 0xfffe, 41),
            ([255, 255, 255, 1], 0xff, 65000, false, 1, 4),
        ] {
            let backend = Backend {
                vip_id: 0,
                address: map_v4(dst),
                is_v4: true,
                state: BackendState::Active,
                weight: 1,
                label: String::new(),
                outer_v4_address_sum: checksum::sum(&src) + checksum::sum(&dst),
                cutoff: None,
            };
            let parsed = Parsed {
                l2_len: 14,
                ip_len: len,
                is_v4: true,
                dscp_ecn: tos,
                dont_frag: df,
                key: FlowKey::default(),
                kind: Kind::Fragment,
            };
            let fast = outer_v4_header(src, &backend, &parsed, proto, ident);
            let mut slow = [0u8; 20];
            ipv4::Repr {
                src,
                dst,
                protocol: IpProtocol::from(proto),
                payload_len: len,
                ttl: OUTER_TTL,
                dscp_ecn: tos,
                dont_frag: df,
                ident,
            }
            .emit(&mut ipv4::Packet::new_unchecked(&mut slow[..]));
            assert_eq!(fast, slow);
            assert_eq!(checksum::internet_checksum(&fast), 0);
        }
    }
}
