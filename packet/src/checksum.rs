//! The internet checksum (RFC 1071), pseudo-header sums and RFC 1624 incremental updates.
//!
//! What this module owns: every one's-complement computation the data path does. The wire views
//! in [`crate::wire`] call into it for `fill_checksum`/`verify_checksum`; the pipeline calls the
//! `update_*` functions when it rewrites an address or a port, so that it never re-sums a whole
//! segment per packet.
//!
//! Vocabulary and invariants:
//! - A *partial sum* (`u32`) is the one's-complement sum of 16-bit big-endian words, reduced so
//!   that it is at most `0xFFFF` but neither folded to `u16` nor complemented. Partial sums of
//!   different regions (pseudo header + segment) are combined with plain `+` — every function
//!   here returns a partial sum small enough that adding a handful of them cannot overflow — and
//!   turned into a header value with [`finish`]. A region starting at an odd offset of the
//!   checksummed data cannot be summed separately (its bytes would land in the wrong half of
//!   the words); every region the views sum starts at an even offset.
//! - [`fold`] maps any non-zero sum to `1..=0xFFFF` (never to `0`), so a checksum computed over
//!   data that is not all zeros is never `0xFFFF`. That is what makes RFC 1624 eqn. 3 (used by
//!   the `update_*` functions) agree bit for bit with a full recomputation for every real header
//!   (an IPv4 header has its version nibble, a TCP/UDP pseudo header its protocol number).
//! - UDP (RFC 768) reserves a transmitted checksum of `0` for "no checksum" (IPv4 only; IPv6
//!   requires one, RFC 8200 §8.1). A computed `0` is therefore sent as `0xFFFF`, and an
//!   incremental update must leave a `0` field alone: [`udp_checksum_v4`], [`udp_checksum_v6`]
//!   and [`update_udp`] implement that rule.
//!
//! Rejected alternatives: eqn. 2 of RFC 1624 (`~(C + (-m) + m')`, the form RFC 1141 used) can
//! produce `0xFFFF` where a full recomputation gives `0x0000`; eqn. 3 does not. Summing byte by
//! byte is several times slower than the 8-bytes-at-a-time loop in [`sum`], which adds 32-bit
//! big-endian halves into a `u64` (2^32 ≡ 1 modulo 0xFFFF, so the halves fold correctly later).

/// Folds a wide one's-complement sum to 16 bits (end-around carry), without complementing.
///
/// A non-zero input never folds to `0`: the result for a sum congruent to 0 modulo `0xFFFF` is
/// `0xFFFF` (one's-complement "negative zero"). Takes any unsigned integer up to `u64` (give a
/// literal a suffix: `fold(0x1_fffe_u32)`).
#[inline]
pub fn fold(sum: impl Into<u64>) -> u16 {
    let mut s: u64 = sum.into();
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// Folds and complements a sum: the value to store in a checksum field.
#[inline]
pub fn finish(sum: impl Into<u64>) -> u16 {
    !fold(sum)
}

/// The one's-complement partial sum of `data` as 16-bit big-endian words (a trailing odd byte
/// is padded with a zero byte), reduced to at most `0xFFFF` but not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let (chunks, rest) = data.as_chunks::<8>();
    let mut acc: u64 = 0;
    for chunk in chunks {
        let word = u64::from_be_bytes(*chunk);
        // Each addend is below 2^32, so 2^31 chunks (16 GiB) fit in the accumulator.
        acc += (word >> 32) + (word & 0xFFFF_FFFF);
    }
    let (pairs, last) = rest.as_chunks::<2>();
    for pair in pairs {
        acc += u64::from(u16::from_be_bytes(*pair));
    }
    if let [byte] = last {
        acc += u64::from(*byte) << 8;
    }
    u32::from(fold(acc))
}

/// The internet checksum of `data`: the value to store in a header whose checksum field is
/// zero (or not part of `data`). Verifying a header that includes its checksum yields `0`.
#[inline]
pub fn internet_checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo header (RFC 793 §3.1, RFC 768): source, destination, zero,
/// protocol, and the TCP/UDP length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u32 {
    sum(&src) + sum(&dst) + u32::from(protocol) + u32::from(length)
}

/// Partial sum of the IPv6 pseudo header (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer length, three zero bytes and the next-header value.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], protocol: u8, length: u32) -> u32 {
    sum(src) + sum(dst) + (length >> 16) + (length & 0xFFFF) + u32::from(protocol)
}

/// RFC 1624 eqn. 3 for one 16-bit word: the checksum after the word `old` became `new`.
#[inline]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// RFC 1624 eqn. 3 for a 32-bit field at an even offset (an IPv4 address, a TCP sequence
/// number): the checksum after `old` became `new`.
#[inline]
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let old_hi = (old >> 16) as u16;
    let old_lo = old as u16;
    let s =
        u32::from(!check) + u32::from(!old_hi) + u32::from(!old_lo) + (new >> 16) + (new & 0xFFFF);
    !fold(s)
}

/// RFC 1624 eqn. 3 for a run of bytes at an even offset (a 16-byte IPv6 address, a 4-byte IPv4
/// address as bytes): the checksum after `old` became `new`.
///
/// `old` and `new` are the same field before and after, so they normally have the same even
/// length; other lengths are summed as [`sum`] does (odd byte padded), which is what a full
/// recomputation sees only when the field is the last thing in the checksummed data.
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let not_old = u32::from(!fold(sum(old)));
    !fold(u32::from(!check) + not_old + sum(new))
}

/// Maps a computed UDP checksum of `0` to `0xFFFF` (RFC 768: `0` means "no checksum").
#[inline]
pub fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xFFFF } else { check }
}

/// Sum of a UDP datagram with its checksum field (bytes 6..8) taken as zero.
#[inline]
fn udp_body_sum(datagram: &[u8]) -> u32 {
    let head = datagram.get(..6).unwrap_or(datagram);
    let tail = datagram.get(8..).unwrap_or(&[]);
    sum(head) + sum(tail)
}

/// The full UDP checksum over IPv4 of `datagram` (UDP header + payload; the length used in the
/// pseudo header is `datagram.len()`, saturated at `u16::MAX`). The checksum field inside
/// `datagram` is ignored (taken as zero). A computed `0` is returned as `0xFFFF`.
#[inline]
pub fn udp_checksum_v4(src: [u8; 4], dst: [u8; 4], datagram: &[u8]) -> u16 {
    let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
    let s = pseudo_header_v4(src, dst, 17, len) + udp_body_sum(datagram);
    udp_nonzero(finish(s))
}

/// The full UDP checksum over IPv6 of `datagram` (see [`udp_checksum_v4`]; the length is
/// `datagram.len()` saturated at `u32::MAX`). A computed `0` is returned as `0xFFFF`.
#[inline]
pub fn udp_checksum_v6(src: &[u8; 16], dst: &[u8; 16], datagram: &[u8]) -> u16 {
    let len = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
    let s = pseudo_header_v6(src, dst, 17, len) + udp_body_sum(datagram);
    udp_nonzero(finish(s))
}

/// [`update_u16`] for a UDP checksum: a `0` checksum (IPv4 "no checksum") stays `0`, and an
/// updated value of `0` is stored as `0xFFFF`.
#[inline]
pub fn update_udp(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        0
    } else {
        udp_nonzero(update_u16(check, old, new))
    }
}

/// [`update_u32`] with the UDP zero rule of [`update_udp`].
#[inline]
pub fn update_udp_u32(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        0
    } else {
        udp_nonzero(update_u32(check, old, new))
    }
}

/// [`update_bytes`] with the UDP zero rule of [`update_udp`].
#[inline]
pub fn update_udp_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    if check == 0 {
        0
    } else {
        udp_nonzero(update_bytes(check, old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(internet_checksum(&data), 0x220d);
        // Byte order independence (RFC 1071 §2(B)): the swapped data sums to the swapped sum.
        let swapped = [0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6];
        assert_eq!(sum(&swapped), 0xf2dd);
    }

    /// A real IPv4 header (192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF) with checksum b861.
    const REAL_IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn real_ipv4_header_checksum() {
        assert_eq!(internet_checksum(&REAL_IPV4_HEADER), 0);
        let mut zeroed = REAL_IPV4_HEADER;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(internet_checksum(&zeroed), 0xb861);
    }

    #[test]
    fn odd_length_pads_last_byte() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        // 9 bytes: one 8-byte chunk plus a padded byte.
        let data = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(sum(&data), u32::from(fold(0xffff_u64 * 4 + 0x0100)));
    }

    #[test]
    fn fold_never_yields_zero_for_nonzero() {
        assert_eq!(fold(0u32), 0);
        assert_eq!(fold(0xffffu32), 0xffff);
        assert_eq!(fold(0x1fffeu32), 0xffff);
        assert_eq!(fold(0x2_0000u64), 2);
        assert_eq!(finish(0u32), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_byte_layout() {
        let src = [10, 0, 0, 1];
        let dst = [192, 0, 2, 10];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src);
        bytes.extend_from_slice(&dst);
        bytes.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(fold(pseudo_header_v4(src, dst, 6, 1500)), fold(sum(&bytes)));

        let s6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let d6 = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 2];
        let mut b6 = Vec::new();
        b6.extend_from_slice(&s6);
        b6.extend_from_slice(&d6);
        b6.extend_from_slice(&0x0001_0010u32.to_be_bytes());
        b6.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            fold(pseudo_header_v6(&s6, &d6, 17, 0x0001_0010)),
            fold(sum(&b6))
        );
    }

    #[test]
    fn udp_zero_rule() {
        // Find a datagram whose checksum computes to 0 and check it is sent as 0xFFFF: pick the
        // last payload word so that the total sum is 0xFFFF.
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let mut dgram = [0x12, 0x34, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00];
        let partial = fold(pseudo_header_v4(src, dst, 17, 10) + sum(&dgram));
        let fill = 0xffff - partial;
        dgram[8..10].copy_from_slice(&fill.to_be_bytes());
        assert_eq!(finish(pseudo_header_v4(src, dst, 17, 10) + sum(&dgram)), 0);
        assert_eq!(udp_checksum_v4(src, dst, &dgram), 0xffff);
        // A "no checksum" datagram is left alone by the incremental update.
        assert_eq!(update_udp(0, 0x1234, 0x4321), 0);
        assert_eq!(update_udp_u32(0, 1, 2), 0);
        assert_eq!(update_udp_bytes(0, &[1, 2], &[3, 4]), 0);
    }

    #[test]
    fn update_known_vector() {
        // RFC 1624 §4 example: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// Builds a valid IPv4 header from arbitrary fields and fills its checksum.
    fn ipv4_header(fields: [u8; 20]) -> [u8; 20] {
        let mut h = fields;
        h[0] = 0x45;
        h[10] = 0;
        h[11] = 0;
        let c = internet_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn read16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Full TCP-style checksum with the checksum at `at` inside `seg`, over a v4 pseudo header.
    fn full_v4(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &[u8], at: usize) -> u16 {
        let mut s = seg.to_vec();
        s[at] = 0;
        s[at + 1] = 0;
        finish(pseudo_header_v4(src, dst, proto, s.len() as u16) + sum(&s))
    }

    fn full_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, seg: &[u8], at: usize) -> u16 {
        let mut s = seg.to_vec();
        s[at] = 0;
        s[at + 1] = 0;
        finish(pseudo_header_v6(src, dst, proto, s.len() as u32) + sum(&s))
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut naive: u64 = 0;
            for pair in data.chunks(2) {
                let hi = u64::from(pair[0]) << 8;
                let lo = pair.get(1).map_or(0, |b| u64::from(*b));
                naive += hi | lo;
            }
            prop_assert_eq!(sum(&data), u32::from(fold(naive)));
        }

        #[test]
        fn ipv4_ttl_word_update(fields in any::<[u8; 20]>(), new_ttl in any::<u8>()) {
            let h = ipv4_header(fields);
            let old = read16(&h, 8);
            let mut h2 = h;
            h2[8] = new_ttl;
            let new = read16(&h2, 8);
            let inc = update_u16(read16(&h, 10), old, new);
            h2[10] = 0;
            h2[11] = 0;
            prop_assert_eq!(inc, internet_checksum(&h2));
        }

        #[test]
        fn ipv4_address_update(fields in any::<[u8; 20]>(), new_dst in any::<[u8; 4]>()) {
            let h = ipv4_header(fields);
            let old = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
            let mut h2 = h;
            h2[16..20].copy_from_slice(&new_dst);
            let inc32 = update_u32(read16(&h, 10), old, u32::from_be_bytes(new_dst));
            let incb = update_bytes(read16(&h, 10), &h[16..20], &new_dst);
            h2[10] = 0;
            h2[11] = 0;
            let full = internet_checksum(&h2);
            prop_assert_eq!(inc32, full);
            prop_assert_eq!(incb, full);
        }

        #[test]
        fn tcp_v4_port_and_address_update(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_dst in any::<[u8; 4]>(),
            new_port in any::<u16>(),
            seg in proptest::collection::vec(any::<u8>(), 20..80),
        ) {
            let check = full_v4(src, dst, 6, &seg, 16);
            // Port change (dst port at 2..4).
            let old_port = read16(&seg, 2);
            let mut seg2 = seg.clone();
            seg2[2..4].copy_from_slice(&new_port.to_be_bytes());
            let c1 = update_u16(check, old_port, new_port);
            prop_assert_eq!(c1, full_v4(src, dst, 6, &seg2, 16));
            // Then the pseudo-header destination address.
            let c2 = update_u32(c1, u32::from_be_bytes(dst), u32::from_be_bytes(new_dst));
            prop_assert_eq!(c2, full_v4(src, new_dst, 6, &seg2, 16));
        }

        #[test]
        fn tcp_v6_address_update(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_dst in any::<[u8; 16]>(),
            seg in proptest::collection::vec(any::<u8>(), 20..80),
        ) {
            let check = full_v6(&src, &dst, 6, &seg, 16);
            let c = update_bytes(check, &dst, &new_dst);
            prop_assert_eq!(c, full_v6(&src, &new_dst, 6, &seg, 16));
        }

        #[test]
        fn udp_v4_update_with_zero_rule(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_dst in any::<[u8; 4]>(),
            new_port in any::<u16>(), fill in any::<u16>(),
            mut seg in proptest::collection::vec(any::<u8>(), 10..60),
        ) {
            let len = seg.len() as u16;
            seg[4..6].copy_from_slice(&len.to_be_bytes());
            // Steer the first payload word so that the datagram's checksum computes to 0 in
            // about half of the cases (then it is carried as 0xFFFF).
            if fill % 2 == 0 {
                seg[8] = 0;
                seg[9] = 0;
                let partial = fold(pseudo_header_v4(src, dst, 17, len) + udp_body_sum(&seg));
                seg[8..10].copy_from_slice(&(0xffff - partial).to_be_bytes());
            }
            let check = udp_checksum_v4(src, dst, &seg);
            prop_assert_ne!(check, 0);
            let old_port = read16(&seg, 2);
            let mut seg2 = seg.clone();
            seg2[2..4].copy_from_slice(&new_port.to_be_bytes());
            let c1 = update_udp(check, old_port, new_port);
            prop_assert_eq!(c1, udp_checksum_v4(src, dst, &seg2));
            let c2 = update_udp_bytes(c1, &dst, &new_dst);
            prop_assert_eq!(c2, udp_checksum_v4(src, new_dst, &seg2));
            let c3 = update_udp_u32(c2, u32::from_be_bytes(src), u32::from_be_bytes(new_dst));
            prop_assert_eq!(c3, udp_checksum_v4(new_dst, new_dst, &seg2));
            // "No checksum" survives any rewrite.
            prop_assert_eq!(update_udp(0, old_port, new_port), 0);
        }

        #[test]
        fn udp_v6_update(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_src in any::<[u8; 16]>(),
            seg in proptest::collection::vec(any::<u8>(), 8..60),
        ) {
            let check = udp_checksum_v6(&src, &dst, &seg);
            let c = update_udp_bytes(check, &src, &new_src);
            prop_assert_eq!(c, udp_checksum_v6(&new_src, &dst, &seg));
        }
    }
}
