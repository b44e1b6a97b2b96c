//! Receive-side scaling as a NIC does it: which RX queue (worker) a frame lands on.
//!
//! `perf pipeline --workers N` splits a scenario's frames over its workers the way a NIC would
//! spread them over N RX queues: the Toeplitz hash of the IP addresses and TCP/UDP ports (the
//! `IPV4_TCP` / `IPV6_TCP` hash types of Microsoft's RSS specification, which every NIC
//! implements), keyed with the specification's well-known 40-byte key, indexes a 128-entry
//! indirection table filled round-robin with the queue numbers (what drivers program by
//! default). So each worker sees whole flows, and the split has the imbalance a real NIC's has.
//!
//! The Toeplitz hash: for every set bit `i` of the input (most significant first), XOR in the
//! 32 key bits starting at bit `i`. Pinned by the specification's published vectors.
//!
//! Rejected: splitting by frame index (every worker would see every flow, which no NIC does) or
//! by the MUX's own flow hash (its seed is per worker, and a NIC knows nothing of it).

use mux::dataplane::parse::{self, Parse};
use mux_packet::flow_key::FlowKey;

/// Microsoft's default RSS key (also the default of many drivers).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries of the indirection table.
pub const RETA_SIZE: usize = 128;

/// The Toeplitz hash of `input` under `key` (input at most `key.len() - 4` bytes).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    debug_assert!(input.len() + 4 <= key.len());
    let mut hash = 0u32;
    // The 32 key bits starting at the current input bit, and the key bits still to shift in.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in (0..8).rev() {
            if byte >> bit & 1 == 1 {
                hash ^= window;
            }
            window = (window << 1) | u32::from(next >> bit & 1);
        }
    }
    hash
}

/// The RSS input of a flow: source and destination addresses, source and destination ports.
fn rss_input(key: &FlowKey, out: &mut [u8; 36]) -> usize {
    let v4 = key.src[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        && key.dst[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    let (addr, len) = if v4 {
        out[..4].copy_from_slice(&key.src[12..]);
        out[4..8].copy_from_slice(&key.dst[12..]);
        (8, 12)
    } else {
        out[..16].copy_from_slice(&key.src);
        out[16..32].copy_from_slice(&key.dst);
        (32, 36)
    };
    out[addr..addr + 2].copy_from_slice(&key.src_port.to_be_bytes());
    out[addr + 2..addr + 4].copy_from_slice(&key.dst_port.to_be_bytes());
    len
}

/// The RSS hash of a flow (Toeplitz over addresses and ports, default key).
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut input = [0u8; 36];
    let len = rss_input(key, &mut input);
    toeplitz(&DEFAULT_KEY, &input[..len])
}

/// The queue of `queues` a frame lands on: its flow's RSS hash through a round-robin
/// indirection table; frames the pipeline would not parse as IP go to queue 0.
pub fn queue_of(frame: &[u8], queues: usize) -> usize {
    let queues = queues.max(1);
    match parse::parse(frame) {
        Parse::Ip(p) => (flow_hash(&p.key) as usize % RETA_SIZE) % queues,
        _ => 0,
    }
}

/// Splits `frames` over `queues` queues as RSS would, keeping their order within each queue.
pub fn split(frames: Vec<Vec<u8>>, queues: usize) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = (0..queues.max(1)).map(|_| Vec::new()).collect();
    for frame in frames {
        let q = queue_of(&frame, queues);
        out[q].push(frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verification suite of Microsoft's RSS specification ("Verifying the RSS hash
    /// calculation"): IPv4 with TCP ports.
    /// Source address and port, destination address and port, expected hash.
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32);

    #[test]
    fn toeplitz_matches_the_specification_vectors() {
        let cases: [Vector; 5] = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x51cc_c178,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xc626_b0ea,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0x5c2b_394a,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0xafc7_327f,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x10e8_28a2,
            ),
        ];
        for (src, sport, dst, dport, want) in cases {
            let key = FlowKey::v4(src, dst, sport, dport, 6);
            assert_eq!(flow_hash(&key), want, "{src:?}:{sport} -> {dst:?}:{dport}");
        }
        // IPv4 addresses only (the IPV4 hash type).
        let input = [66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(toeplitz(&DEFAULT_KEY, &input), 0x323e_8fc2);
    }

    #[test]
    fn toeplitz_matches_the_specification_ipv6_vector() {
        let src = [
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x07,
        ];
        let dst = [
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01,
        ];
        let key = FlowKey::v6(src, dst, 2794, 1766, 6);
        assert_eq!(flow_hash(&key), 0x4020_7d3d);
    }

    #[test]
    fn split_keeps_flows_whole_and_spreads_them() {
        let frames: Vec<Vec<u8>> = (0..4000u32)
            .map(|i| {
                mux_packet::packet_builder::PacketBuilder::tcp(
                    std::net::Ipv4Addr::from(0x0a00_0000 | i).into(),
                    1024 + (i % 7) as u16,
                    "192.0.2.1".parse().unwrap(),
                    80,
                    mux_packet::packet_builder::tcp_flags::ACK,
                )
                .build()
            })
            .collect();
        let twice: Vec<Vec<u8>> = frames.iter().chain(&frames).cloned().collect();
        let queues = split(twice, 2);
        assert_eq!(queues[0].len() + queues[1].len(), 8000);
        let share = queues[0].len() as f64 / 8000.0;
        assert!((0.45..0.55).contains(&share), "queue 0 got {share}");
        // Every frame of a flow (each flow is there twice) lands on its flow's queue.
        assert!(queues[1].iter().all(|f| queue_of(f, 2) == 1));
        assert!(queues[0].iter().all(|f| queue_of(f, 2) == 0));
    }
}
