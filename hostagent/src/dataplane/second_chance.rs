//! The second-chance option on the wire: reading the alternative a MUX put in the outer
//! header, and writing the outer header of a packet this agent forwards to the alternative.
//!
//! What this module owns: the byte layout of `docs/second-chance.md` ("On the wire") on the
//! host agent's side — nothing else. Whether to forward is decided in `decap` (the
//! contract's four rules); which connections the agent carries is `connections`.
//!
//! **Reading.** An outer IPv4 header may carry options (any IHL): they are walked as RFC 791
//! TLVs — End of Option List (0) ends the walk, No-Operation (1) is one byte, every other
//! option has a length byte of at least 2 that must not run past the header. Option type
//! **0x1E** (RFC 4727 experimental, copy 0, class 0) with length 8 (an IPv4 alternative) or
//! 20 (IPv6) is the alternative; every other option is skipped. An outer IPv6 packet may carry
//! Destination Options headers anywhere in its extension chain before the upper layer: each
//! one's options are walked as RFC 8200 §4.2 TLVs — Pad1 (0) is one byte, PadN (1) and every
//! other option has a length byte and must not run past the header. Option type **0x1E**
//! (action bits 00: skip if unknown; change bit 0) with data length 6 (IPv4 alternative) or
//! 18 (IPv6) is the alternative; an unknown option is handled by its action bits: 00 skipped,
//! anything else discards the packet (RFC 8200's "discard", with or without an ICMP Parameter
//! Problem — the agent sends no ICMP; the kernel in front of the raw socket has already applied
//! the same rule). Malformed options, a 0x1E of another length or a second 0x1E are refused:
//! the caller drops the packet and counts it.
//!
//! **Writing.** A forwarded packet gets a fresh outer header toward the alternative, of the
//! alternative's family (so always with an alternative of its own family): IPv4 — 28 bytes,
//! IHL 7, the 8-byte option, no padding needed; IPv6 — 40 bytes with next header 60 and a
//! 24-byte Destination Options header (the 20-byte option, then a 2-byte PadN). The option
//! keeps the alternative, sets `flags` to exactly `forwarded` (0x01; other bits 0, as the
//! contract asks of senders) and `hops` to 1. TTL / hop limit 64; DSCP and ECN copied from the
//! inner header; DF copied from an IPv4 inner packet, set for an IPv6 one; IPv4
//! identification 0 (the kernel's raw socket picks one) and a full header checksum; the IPv6
//! flow label is given by the caller (20 bits of the flow's hash, so the receiving agent's NIC
//! spreads forwarded flows like the MUX's). The header is returned as bytes beside the
//! untouched inner packet: the I/O layer sends both parts with one gathered `sendmsg`, so
//! nothing is moved and the buffer needs no headroom.
//!
//! Invariants: nothing here panics on any input (every read is `get`/`get_mut` or bounded by
//! a length checked just before); a header [`ForwardHeader`] describes always carries
//! `forwarded` and `hops = 1`, so a receiver never forwards it again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mux_packet::{checksum, claim_horizon};

/// The option type of the alternative, in IPv4 options and IPv6 Destination Options alike.
pub const OPTION_TYPE: u8 = 0x1E;
/// `flags` bit: set by a host agent that forwarded the packet; the receiver must deliver it.
pub const FLAG_FORWARDED: u8 = 0x01;
/// IPv6 next header of a Destination Options header.
const NEXT_DEST_OPTS: u8 = 60;
/// Length of the outer header of a packet forwarded to an IPv4 alternative.
pub const FORWARD_HEADER_V4_LEN: usize = 28;
/// Length of the outer headers (IPv6 + Destination Options) of a packet forwarded to an IPv6
/// alternative.
pub const FORWARD_HEADER_V6_LEN: usize = 64;
/// TTL / hop limit of a forwarded packet's outer header (as the MUX's).
pub const OUTER_TTL: u8 = 64;

/// The alternative backend an outer header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alternative {
    /// The alternative DIP: where the agent forwards a packet of a connection it lacks.
    pub address: IpAddr,
    /// The option's flags byte as received: [`FLAG_FORWARDED`], and bits 1–7 the claim
    /// horizon ([`Alternative::claim_horizon`]).
    pub flags: u8,
    /// The option's hop count as received: 0 from a MUX, 1 after an agent forwarded it.
    pub hops: u8,
}

impl Alternative {
    /// Whether an agent already forwarded this packet (`forwarded` set, or a non-zero hop
    /// count): it must be delivered, never forwarded again.
    #[inline]
    pub fn already_forwarded(&self) -> bool {
        self.flags & FLAG_FORWARDED != 0 || self.hops != 0
    }

    /// How far back, in seconds, this agent's memory of a UDP flow may reach and still claim
    /// it (`mux_packet::claim_horizon`: the MUX's table that named the alternative arrived
    /// that long ago); `None`: any memory claims.
    #[inline]
    pub fn claim_horizon(&self) -> Option<u32> {
        claim_horizon::decode(claim_horizon::from_flags(self.flags))
    }
}

/// Why an outer header's options were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OptionError {
    /// An option runs past its header, has a length below 2 (IPv4), or is a 0x1E of the wrong
    /// length or a second one.
    Malformed,
    /// An IPv6 destination option of an unknown type whose action bits are not 00.
    UnrecognizedAction,
}

/// The alternative in the options of the IPv4 header `header` (exactly `IHL × 4` bytes).
pub(crate) fn find_in_ipv4(header: &[u8]) -> Result<Option<Alternative>, OptionError> {
    let options = header.get(20..).unwrap_or(&[]);
    let mut found = None;
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1).ok_or(OptionError::Malformed)?);
                let option = options
                    .get(i..i + len)
                    .filter(|_| len >= 2)
                    .ok_or(OptionError::Malformed)?;
                if kind == OPTION_TYPE {
                    if found.is_some() {
                        return Err(OptionError::Malformed);
                    }
                    found = Some(alternative(&option[2..])?);
                }
                i += len;
            }
        }
    }
    Ok(found)
}

/// The alternative in the Destination Options headers of the IPv6 packet `packet`, whose
/// extension chain (already validated by the caller's parse) ends at `upper` (the offset of
/// the upper-layer header).
pub(crate) fn find_in_ipv6(
    packet: &[u8],
    upper: usize,
) -> Result<Option<Alternative>, OptionError> {
    let mut next = *packet.get(6).ok_or(OptionError::Malformed)?;
    let mut offset = 40;
    let mut found = None;
    // The caller's walk bounded the chain; this one follows the same headers to `upper`.
    while offset < upper {
        let (following, len) = match next {
            0 | 43 | NEXT_DEST_OPTS => {
                let hdr = packet
                    .get(offset..offset + 2)
                    .ok_or(OptionError::Malformed)?;
                (hdr[0], (usize::from(hdr[1]) + 1) * 8)
            }
            // A fragment header (outer fragments are dropped before this) or anything else:
            // no options past it are ours.
            _ => break,
        };
        if next == NEXT_DEST_OPTS {
            let options = packet
                .get(offset + 2..offset + len)
                .ok_or(OptionError::Malformed)?;
            if let Some(alt) = find_in_destination_options(options)? {
                if found.is_some() {
                    return Err(OptionError::Malformed);
                }
                found = Some(alt);
            }
        }
        next = following;
        offset += len;
    }
    Ok(found)
}

/// Walks the options of one Destination Options header (the bytes after next header and
/// length).
fn find_in_destination_options(options: &[u8]) -> Result<Option<Alternative>, OptionError> {
    let mut found = None;
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        if kind == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*options.get(i + 1).ok_or(OptionError::Malformed)?);
        let data = options
            .get(i + 2..i + 2 + len)
            .ok_or(OptionError::Malformed)?;
        match kind {
            1 => {}
            OPTION_TYPE => {
                if found.is_some() {
                    return Err(OptionError::Malformed);
                }
                found = Some(alternative(data)?);
            }
            _ if kind >> 6 != 0 => return Err(OptionError::UnrecognizedAction),
            _ => {}
        }
        i += 2 + len;
    }
    Ok(found)
}

/// The option data `flags, hops, address` (6 or 18 bytes).
fn alternative(data: &[u8]) -> Result<Alternative, OptionError> {
    let address = match data.len() {
        6 => {
            let mut o = [0u8; 4];
            o.copy_from_slice(&data[2..6]);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        18 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&data[2..18]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(OptionError::Malformed),
    };
    Ok(Alternative {
        address,
        flags: data[0],
        hops: data[1],
    })
}

/// The outer header of a forwarded packet ([`FORWARD_HEADER_V4_LEN`] or
/// [`FORWARD_HEADER_V6_LEN`] bytes), sent in front of the untouched inner packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ForwardHeader {
    bytes: [u8; FORWARD_HEADER_V6_LEN],
    len: u8,
}

impl ForwardHeader {
    /// The header's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ForwardHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ForwardHeader(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The outer header for forwarding `inner` (the inner packet, exactly its stated length;
/// IPv4 when `inner_v4`) from `source` to `alternative`, which must be of the same family.
/// `None` when they are not, or the forwarded packet would not fit a 16-bit length.
pub(crate) fn forward_header(
    source: IpAddr,
    alternative: IpAddr,
    inner: &[u8],
    inner_v4: bool,
    flow_label: u32,
) -> Option<ForwardHeader> {
    let (tos, dont_frag) = if inner_v4 {
        let flags = *inner.get(6)?;
        (*inner.get(1)?, flags & 0x40 != 0)
    } else {
        let (b0, b1) = (*inner.first()?, *inner.get(1)?);
        ((b0 << 4) | (b1 >> 4), true)
    };
    let protocol = if inner_v4 { 4 } else { 41 };
    let mut bytes = [0u8; FORWARD_HEADER_V6_LEN];
    match (source, alternative) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(FORWARD_HEADER_V4_LEN + inner.len()).ok()?;
            let h = &mut bytes[..FORWARD_HEADER_V4_LEN];
            h[0] = 0x47; // version 4, IHL 7
            h[1] = tos;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            // identification 0: the kernel's header-included raw socket chooses one.
            h[6] = if dont_frag { 0x40 } else { 0 };
            h[8] = OUTER_TTL;
            h[9] = protocol;
            h[12..16].copy_from_slice(&src.octets());
            h[16..20].copy_from_slice(&dst.octets());
            h[20..24].copy_from_slice(&[OPTION_TYPE, 8, FLAG_FORWARDED, 1]);
            h[24..28].copy_from_slice(&dst.octets());
            let sum = checksum::internet_checksum(h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            Some(ForwardHeader {
                bytes,
                len: FORWARD_HEADER_V4_LEN as u8,
            })
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let payload = u16::try_from(FORWARD_HEADER_V6_LEN - 40 + inner.len()).ok()?;
            let label = flow_label & 0x000F_FFFF;
            let first = (6u32 << 28) | (u32::from(tos) << 20) | label;
            let h = &mut bytes;
            h[0..4].copy_from_slice(&first.to_be_bytes());
            h[4..6].copy_from_slice(&payload.to_be_bytes());
            h[6] = NEXT_DEST_OPTS;
            h[7] = OUTER_TTL;
            h[8..24].copy_from_slice(&src.octets());
            h[24..40].copy_from_slice(&dst.octets());
            // Destination Options: next header, length 2 (24 bytes), the option, PadN(0).
            h[40..46].copy_from_slice(&[protocol, 2, OPTION_TYPE, 18, FLAG_FORWARDED, 1]);
            h[46..62].copy_from_slice(&dst.octets());
            h[62..64].copy_from_slice(&[1, 0]);
            Some(ForwardHeader {
                bytes,
                len: FORWARD_HEADER_V6_LEN as u8,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A 20-byte IPv4 header followed by `options` (padded by the caller).
    fn header_with(options: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h.extend_from_slice(options);
        h
    }

    #[test]
    fn ipv4_option_with_an_ipv4_or_ipv6_alternative() {
        let h = header_with(&[0x1E, 8, 0, 0, 10, 0, 22, 3]);
        assert_eq!(
            find_in_ipv4(&h),
            Ok(Some(Alternative {
                address: v4("10.0.22.3"),
                flags: 0,
                hops: 0
            }))
        );
        let mut opt = vec![0x1E, 20, 1, 1];
        opt.extend_from_slice(
            &v4("fd00:22::3")
                .to_string()
                .parse::<Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let found = find_in_ipv4(&header_with(&opt)).unwrap().unwrap();
        assert_eq!(found.address, v4("fd00:22::3"));
        assert!(found.already_forwarded());
    }

    #[test]
    fn ipv4_other_options_are_skipped_and_eol_ends_the_list() {
        // NOP, a router alert (type 148, length 4), then ours, then EOL and garbage.
        let h = header_with(&[1, 148, 4, 0, 0, 0x1E, 8, 0, 0, 10, 0, 22, 3, 0, 0xff, 0xff]);
        assert_eq!(find_in_ipv4(&h).unwrap().unwrap().address, v4("10.0.22.3"));
        // Nothing but other options: no alternative.
        assert_eq!(find_in_ipv4(&header_with(&[1, 1, 1, 0])), Ok(None));
        assert_eq!(find_in_ipv4(&header_with(&[])), Ok(None));
        // Garbage after EOL is never read.
        assert_eq!(find_in_ipv4(&header_with(&[0, 0x1E, 3, 9])), Ok(None));
    }

    #[test]
    fn malformed_ipv4_options_are_refused() {
        for options in [
            &[0x1E, 8, 0, 0, 10, 0, 22][..],    // runs past the header
            &[0x1E, 7, 0, 0, 10, 0, 22, 0][..], // wrong length for 0x1E
            &[148, 1, 0, 0][..],                // length below 2
            &[148][..],                         // no length byte
            &[0x1E, 8, 0, 0, 10, 0, 22, 3, 0x1E, 8, 0, 0, 10, 0, 22, 3][..], // twice
        ] {
            assert_eq!(
                find_in_ipv4(&header_with(options)),
                Err(OptionError::Malformed),
                "{options:?}"
            );
        }
    }

    /// An IPv6 header (next header `next`, payload `payload`) then `payload`.
    fn ipv6_with(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv6_destination_option_after_other_headers_and_options() {
        // Hop-by-hop (8 bytes) → Destination Options with Pad1, an unknown skip-type option
        // (0x3e, action 00), then ours (IPv4 alternative) and a PadN: 2+1+3+8+2 = 16 bytes.
        let mut dest = vec![4, 1, 0, 0x3e, 1, 0, 0x1E, 6, 0, 0, 10, 0, 22, 3, 1, 0];
        assert_eq!(dest.len(), 16);
        let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
        payload.append(&mut dest);
        payload.extend_from_slice(&[0u8; 20]);
        let p = ipv6_with(0, &payload);
        let found = find_in_ipv6(&p, 40 + 24).unwrap().unwrap();
        assert_eq!(found.address, v4("10.0.22.3"));
        assert!(!found.already_forwarded());
    }

    #[test]
    fn ipv6_unknown_options_follow_their_action_bits() {
        // 0x7e: action 01 (discard).
        let dest = [4, 0, 0x7e, 1, 0, 1, 1, 0];
        let p = ipv6_with(60, &dest);
        assert_eq!(find_in_ipv6(&p, 48), Err(OptionError::UnrecognizedAction));
        // 0xde: action 11 (discard, ICMP unless multicast).
        let dest = [4, 0, 0xde, 0, 1, 2, 0, 0];
        assert_eq!(
            find_in_ipv6(&ipv6_with(60, &dest), 48),
            Err(OptionError::UnrecognizedAction)
        );
        // Only padding: no alternative.
        let dest = [4, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(find_in_ipv6(&ipv6_with(60, &dest), 48), Ok(None));
        // No extension header at all.
        assert_eq!(find_in_ipv6(&ipv6_with(4, &[0u8; 20]), 40), Ok(None));
    }

    #[test]
    fn malformed_ipv6_options_are_refused() {
        // An option running past the header.
        let dest = [4, 0, 0x1E, 6, 0, 0, 10, 0];
        assert_eq!(
            find_in_ipv6(&ipv6_with(60, &dest), 48),
            Err(OptionError::Malformed)
        );
        // A 0x1E of a length that is neither 6 nor 18.
        let dest = [4, 0, 0x1E, 4, 0, 0, 10, 0];
        assert_eq!(
            find_in_ipv6(&ipv6_with(60, &dest), 48),
            Err(OptionError::Malformed)
        );
        // Two of them in two headers.
        let one = [60, 1, 0x1E, 6, 0, 0, 10, 0, 22, 3, 1, 4, 0, 0, 0, 0];
        let mut two = one;
        two[0] = 4;
        let mut payload = one.to_vec();
        payload.extend_from_slice(&two);
        assert_eq!(
            find_in_ipv6(&ipv6_with(60, &payload), 72),
            Err(OptionError::Malformed)
        );
    }

    #[test]
    fn forward_header_v4_bytes() {
        // An IPv4 inner packet with TOS 0xb8 and DF.
        let mut inner = vec![0u8; 40];
        inner[0] = 0x45;
        inner[1] = 0xb8;
        inner[6] = 0x40;
        let h = forward_header(v4("10.0.21.2"), v4("10.0.22.3"), &inner, true, 0).unwrap();
        let b = h.as_bytes();
        assert_eq!(b.len(), FORWARD_HEADER_V4_LEN);
        assert_eq!(
            &b[..10],
            &[0x47, 0xb8, 0, 68, 0, 0, 0x40, 0, 64, 4],
            "IHL 7, TOS copied, total 28 + 40, DF, TTL 64, protocol 4"
        );
        assert_eq!(&b[12..20], &[10, 0, 21, 2, 10, 0, 22, 3]);
        assert_eq!(&b[20..28], &[0x1E, 8, 1, 1, 10, 0, 22, 3]);
        assert_eq!(checksum::internet_checksum(b), 0, "header checksum");
        assert!(find_in_ipv4(b).unwrap().unwrap().already_forwarded());
    }

    #[test]
    fn forward_header_v6_bytes() {
        // An IPv6 inner packet with traffic class 0x2e.
        let mut inner = vec![0u8; 60];
        inner[0] = 0x62;
        inner[1] = 0xe0;
        let src = v4("fd00:21::2");
        let dst = v4("fd00:22::3");
        let h = forward_header(src, dst, &inner, false, 0xabcde).unwrap();
        let b = h.as_bytes();
        assert_eq!(b.len(), FORWARD_HEADER_V6_LEN);
        assert_eq!(&b[..8], &[0x62, 0xea, 0xbc, 0xde, 0, 84, 60, 64]);
        assert_eq!(&b[40..46], &[41, 2, 0x1E, 18, 1, 1]);
        assert_eq!(&b[62..64], &[1, 0], "PadN of length 0");
        let found = find_in_ipv6(b, 64).unwrap().unwrap();
        assert_eq!(found.address, dst);
        assert!(found.already_forwarded());
        // Families must match.
        assert!(forward_header(v4("10.0.21.2"), dst, &inner, false, 0).is_none());
    }
}
