//! The second chance on the wire: IP-in-IP whose outer header names an alternative backend.
//!
//! # What it owns
//!
//! The bytes of docs/second-chance.md, the contract the host agents parse: an outer IPv4
//! header with one option, or an outer IPv6 header followed by a Destination Options header,
//! naming the DIP of the backend that may own the flow instead of the one the packet goes to.
//! The pipeline decides *whether* a packet carries an alternative (a flow-table miss of a
//! packet that is not a bare SYN, whose previous Maglev tables pick another backend that
//! still keeps flows); this module only writes it.
//!
//! ```text
//! IPv4 outer (IHL 7 or 10)            IPv6 outer (next header 60)
//! | 20-byte header            |       | 40-byte header, payload length += ext |
//! | 0x1E | len | flags | hops |       | next=4/41 | hdrlen | 0x1E | optlen |
//! | alternative (4 or 16)     |       | flags | hops | alternative (4 or 16) | PadN |
//! | inner packet, untouched   |       | inner packet, untouched               |
//! ```
//!
//! | outer \ alternative | IPv4 | IPv6 |
//! |---|---|---|
//! | IPv4 | option length 8, header 28 bytes | option length 20, header 40 bytes |
//! | IPv6 | optlen 6, 16-byte extension (PadN of 6) | optlen 18, 24-byte extension (PadN of 2) |
//!
//! The MUX sends `hops` 0 and `flags` with `forwarded` clear and bits 1–7 the claim horizon
//! (`mux_packet::claim_horizon`: how long ago the table that named the alternative came into
//! force; 0 when it was transient or its start is unknown): setting `forwarded` and `hops` 1
//! is the host agent's job on the one hop it may add.
//!
//! # Why a path of its own
//!
//! The plain encapsulation ([`super::encap`]) stays byte for byte and instruction for
//! instruction what it was: every flow-table hit, every SYN and every packet whose tables
//! agree goes through it. Packets with an alternative are a small minority (flows that lost
//! their entry just after a backend change), so this path favours plainness over speed: it
//! writes the header field by field and sums it from memory.

use mux_packet::checksum;
use mux_packet::wire::{EtherType, IpProtocol, MacAddr, ethernet, ipv4, ipv6};
use mux_ports::PacketBuf;

use super::encap::{OUTER_TTL, outer_len};
use super::parse::Parsed;
use super::snapshot::{Backend, SnapshotParts};
use super::verdict::DropReason;

/// The option's type, in the IPv4 options (RFC 4727 experimental number 30: copy 0, class 0)
/// and in the IPv6 Destination Options header (RFC 4727 experimental, action 00 = skip if
/// unknown, may not change en route).
pub const OPTION_TYPE: u8 = 0x1E;

/// `flags` bit set by a host agent on the packet it forwards to the alternative.
pub const FLAG_FORWARDED: u8 = 0x01;

/// IPv6 next-header value of the Destination Options header.
pub const IPV6_DESTINATION_OPTIONS: u8 = 60;

/// The PadN option type of IPv6 extension headers.
const PAD_N: u8 = 1;

/// Bytes the alternative adds to the plain outer header: 8 or 20 for an IPv4 outer header
/// (option with an IPv4 or IPv6 alternative), 16 or 24 for an IPv6 one (Destination Options).
#[inline]
pub fn extra_len(outer_is_v4: bool, alternative_is_v4: bool) -> usize {
    match (outer_is_v4, alternative_is_v4) {
        (true, true) => 8,
        (true, false) => 20,
        (false, true) => 16,
        (false, false) => 24,
    }
}

/// Outer bytes a packet with an alternative needs on its way: the larger of what the MUX
/// writes (`outer_len` of the backend's family plus [`extra_len`]) and what the current
/// backend's agent writes if it forwards the packet to the alternative (an outer header of the
/// alternative's family naming it, flagged forwarded: 28 bytes for IPv4, 64 for IPv6). Only an
/// IPv4 outer header with an IPv6 alternative grows on the second hop (40 → 64 bytes); the
/// agent cannot answer "too big" for the client, so the MUX reserves it.
#[inline]
pub fn reserved_len(outer_is_v4: bool, alternative_is_v4: bool) -> usize {
    let sent = outer_len(outer_is_v4) + extra_len(outer_is_v4, alternative_is_v4);
    let forwarded = outer_len(alternative_is_v4) + extra_len(alternative_is_v4, alternative_is_v4);
    sent.max(forwarded)
}

/// The alternative's address bytes on the wire: 4 for IPv4, 16 for IPv6.
#[inline]
fn address_bytes(b: &Backend) -> &[u8] {
    if b.is_v4 {
        &b.address[12..16]
    } else {
        &b.address
    }
}

/// Encapsulates the parsed packet in `buf` toward `backend`, naming `alternative` in the outer
/// header. Same rules as [`super::encap::encapsulate`] otherwise (outer TTL, DSCP/ECN, DF,
/// identification, flow label). `flags` is the option's flags byte (the claim horizon; never
/// `forwarded`). The caller has checked the MTU with [`extra_len`] included.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn encapsulate_with_alternative<B: PacketBuf>(
    buf: &mut B,
    parsed: &Parsed,
    backend: &Backend,
    alternative: &Backend,
    flags: u8,
    snap: &SnapshotParts,
    ident: u16,
    entropy: u64,
) -> Result<(), DropReason> {
    let l2_len = parsed.l2_len;
    let header = outer_len(backend.is_v4) + extra_len(backend.is_v4, alternative.is_v4);
    buf.set_len(l2_len + parsed.ip_len);
    if !buf.push_front(header) {
        return Err(DropReason::NoHeadroom);
    }
    let data = buf.data_mut();
    data.copy_within(header..header + l2_len, 0);
    let inner_protocol = if parsed.is_v4 {
        IpProtocol::IpIp
    } else {
        IpProtocol::Ipv6
    };
    let (head, rest) = data.split_at_mut(l2_len);
    let mut eth = ethernet::Frame::new_unchecked(head);
    eth.set_dst_addr(MacAddr(snap.next_hop_mac));
    eth.set_src_addr(MacAddr(snap.source_mac));
    let out = &mut rest[..header];
    if backend.is_v4 {
        let Some(src) = snap.tunnel_v4 else {
            return Err(DropReason::NoTunnelSource);
        };
        eth.set_ethertype(EtherType::Ipv4);
        write_v4(
            out,
            src,
            backend,
            alternative,
            flags,
            parsed,
            inner_protocol,
            ident,
        );
    } else {
        let Some(src) = snap.tunnel_v6 else {
            return Err(DropReason::NoTunnelSource);
        };
        eth.set_ethertype(EtherType::Ipv6);
        let ext = header - ipv6::HEADER_LEN;
        ipv6::Repr {
            src,
            dst: backend.address,
            next_header: IpProtocol::from(IPV6_DESTINATION_OPTIONS),
            payload_len: ext + parsed.ip_len,
            hop_limit: OUTER_TTL,
            traffic_class: parsed.dscp_ecn,
            flow_label: (entropy as u32) & 0x000f_ffff,
        }
        .emit(&mut ipv6::Packet::new_unchecked(
            &mut out[..ipv6::HEADER_LEN],
        ));
        write_destination_options(
            &mut out[ipv6::HEADER_LEN..],
            alternative,
            flags,
            inner_protocol,
        );
    }
    Ok(())
}

/// The outer IPv4 header with the option (`out` is exactly its 28 or 40 bytes).
#[allow(clippy::too_many_arguments)]
fn write_v4(
    out: &mut [u8],
    src: [u8; 4],
    backend: &Backend,
    alternative: &Backend,
    flags: u8,
    parsed: &Parsed,
    protocol: IpProtocol,
    ident: u16,
) {
    let header = out.len();
    let option = header - ipv4::HEADER_LEN;
    let total = (header + parsed.ip_len) as u16;
    out[0] = 0x40 | (header / 4) as u8;
    out[1] = parsed.dscp_ecn;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[4..6].copy_from_slice(&ident.to_be_bytes());
    out[6] = if parsed.dont_frag { 0x40 } else { 0 };
    out[7] = 0;
    out[8] = OUTER_TTL;
    out[9] = u8::from(protocol);
    out[10..12].fill(0);
    out[12..16].copy_from_slice(&src);
    out[16..20].copy_from_slice(&backend.address[12..16]);
    let opt = &mut out[ipv4::HEADER_LEN..];
    opt[0] = OPTION_TYPE;
    opt[1] = option as u8;
    opt[2] = flags;
    opt[3] = 0; // hops
    opt[4..].copy_from_slice(address_bytes(alternative));
    let check = checksum::internet_checksum(out);
    out[10..12].copy_from_slice(&check.to_be_bytes());
}

/// The Destination Options header (`out` is exactly its 16 or 24 bytes): the option, then
/// one PadN filling the rest.
fn write_destination_options(out: &mut [u8], alternative: &Backend, flags: u8, inner: IpProtocol) {
    let address = address_bytes(alternative);
    out[0] = u8::from(inner);
    out[1] = (out.len() / 8 - 1) as u8;
    out[2] = OPTION_TYPE;
    out[3] = (2 + address.len()) as u8;
    out[4] = flags;
    out[5] = 0; // hops
    let end = 6 + address.len();
    out[6..end].copy_from_slice(address);
    let pad = &mut out[end..];
    pad[0] = PAD_N;
    pad[1] = (pad.len() - 2) as u8;
    pad[2..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_packet::flow_key::{FlowKey, canonical_addr};

    use crate::dataplane::parse::Kind;
    use crate::dataplane::snapshot::BackendState;

    fn backend(addr: &str) -> Backend {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        Backend {
            vip_id: 0,
            address: canonical_addr(ip),
            is_v4: ip.is_ipv4(),
            state: BackendState::Active,
            weight: 1,
            label: String::new(),
            outer_v4_address_sum: 0,
            cutoff: None,
        }
    }

    fn parsed(len: usize) -> Parsed {
        Parsed {
            l2_len: 14,
            ip_len: len,
            is_v4: true,
            dscp_ecn: 0,
            dont_frag: true,
            key: FlowKey::default(),
            kind: Kind::Fragment,
        }
    }

    #[test]
    fn extra_lengths_are_the_contracts() {
        // docs/second-chance.md: IHL 7 / 10; extension 16 (hdrlen 1) / 24 (hdrlen 2).
        for (outer_v4, alt_v4, extra) in [
            (true, true, 8),
            (true, false, 20),
            (false, true, 16),
            (false, false, 24),
        ] {
            assert_eq!(extra_len(outer_v4, alt_v4), extra);
            assert_eq!(extra % if outer_v4 { 4 } else { 8 }, 0);
        }
    }

    #[test]
    fn the_reservation_covers_the_agents_forward() {
        // What the MUX writes vs what the agent writes when it forwards (28 / 64 bytes,
        // hostagent FORWARD_HEADER_V4_LEN / _V6_LEN): only IPv4 outer + IPv6 alternative grows.
        assert_eq!(reserved_len(true, true), 28);
        assert_eq!(reserved_len(true, false), 64);
        assert_eq!(reserved_len(false, true), 56);
        assert_eq!(reserved_len(false, false), 64);
    }

    #[test]
    fn ipv4_headers_sum_to_zero_and_declare_their_length() {
        for alt in ["10.1.0.9", "fd00:1::9"] {
            let alt = backend(alt);
            let len = ipv4::HEADER_LEN + extra_len(true, alt.is_v4);
            let mut out = vec![0xee; len];
            let p = parsed(100);
            write_v4(
                &mut out,
                [10, 0, 0, 11],
                &backend("10.1.0.1"),
                &alt,
                0x54,
                &p,
                IpProtocol::IpIp,
                7,
            );
            assert_eq!(checksum::internet_checksum(&out), 0);
            assert_eq!(out[ipv4::HEADER_LEN + 2], 0x54, "flags as given");
            assert_eq!(usize::from(out[0] & 0x0f) * 4, len);
            assert_eq!(u16::from_be_bytes([out[2], out[3]]) as usize, len + 100);
            assert_eq!(out[ipv4::HEADER_LEN + 1] as usize, len - ipv4::HEADER_LEN);
        }
    }

    #[test]
    fn destination_options_fill_their_length_exactly() {
        for alt in ["10.1.0.9", "fd00:1::9"] {
            let alt = backend(alt);
            let len = extra_len(false, alt.is_v4);
            let mut out = vec![0xee; len];
            write_destination_options(&mut out, &alt, 0x54, IpProtocol::Ipv6);
            assert_eq!((usize::from(out[1]) + 1) * 8, len);
            assert_eq!(out[4], 0x54, "flags as given");
            // Walk the options: exactly the alternative's option, then PadN to the end.
            let opt_end = 4 + usize::from(out[3]);
            assert_eq!(out[2], OPTION_TYPE);
            assert_eq!(out[opt_end], PAD_N);
            assert_eq!(opt_end + 2 + usize::from(out[opt_end + 1]), len);
            assert!(out[opt_end + 2..].iter().all(|b| *b == 0));
        }
    }
}
