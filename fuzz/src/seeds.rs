//! Where the targets' first inputs come from: the shipped capture, the wire modules' byte
//! fixtures, frames built like the packet fixtures', and the shipped configuration files.
//!
//! Seeds are read or built at start-up rather than committed as a binary corpus, so they follow
//! the code: a new byte fixture in `packet/src/wire/` or a new frame in `configs/demo.pcap`
//! seeds the fuzzers without anyone copying it. Paths are relative to this crate's manifest;
//! `tests/replay.rs` checks that every source still yields seeds, so a moved file is noticed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_packet::wire::{ethernet, ipv4, ipv6};

use crate::mutate::Rng;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The frames of `configs/demo.pcap`.
pub fn demo_frames() -> Vec<Vec<u8>> {
    let path = repo().join("configs/demo.pcap");
    let Ok(file) = std::fs::File::open(&path) else {
        return Vec::new();
    };
    let Ok(mut reader) = pcap_file::pcap::PcapReader::new(file) else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    while let Some(Ok(packet)) = reader.next_packet() {
        frames.push(packet.data.into_owned());
    }
    frames
}

/// The byte fixtures of `packet/src/wire/*.rs`: every `const NAME: [u8; N] = [ … ];` array of
/// more than 16 bytes (shorter ones are addresses), read from the source text.
pub fn wire_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("packet/src/wire");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        out.extend(byte_arrays(&text).into_iter().filter(|(_, b)| b.len() > 16));
    }
    out
}

/// `const NAME: [u8; N] = [a, b, …];` arrays in Rust source text, with their names.
fn byte_arrays(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("const ") {
        rest = &rest[at + 6..];
        let Some((name, after)) = rest.split_once(": [u8; ") else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let Some(open) = after.find("] = [") else {
            continue;
        };
        let body = &after[open + 5..];
        let Some(close) = body.find("];") else {
            continue;
        };
        let bytes: Option<Vec<u8>> = body[..close]
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| match t.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            })
            .collect();
        if let Some(bytes) = bytes {
            out.push((name.to_string(), bytes));
        }
        rest = &body[close..];
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

/// Frames of the kinds the packet fixtures (`mux/tests/pipeline_fixtures.rs`) cover, toward the
/// fuzz config's VIPs: TCP/UDP over IPv4 and IPv6, VLAN, padding, DSCP, hop-by-hop, fragments,
/// ICMP errors quoting a flow, oversize frames, non-VIP traffic.
pub fn fixture_frames() -> Vec<Vec<u8>> {
    let c4 = ip("198.51.100.7");
    let c6 = ip("2001:db8:c::7");
    let web = ip("192.0.2.10");
    let web6 = ip("2001:db8::10");
    let dns = ip("192.0.2.53");
    let dns6 = ip("2001:db8::53");
    let mut frames = vec![
        PacketBuilder::tcp(c4, 40000, web, 80, SYN)
            .payload_len(10)
            .build(),
        PacketBuilder::tcp(c4, 40000, web, 80, FIN | ACK).build(),
        PacketBuilder::udp(c4, 5353, dns, 53)
            .payload_len(30)
            .build(),
        PacketBuilder::tcp(c6, 40000, web6, 443, SYN).build(),
        PacketBuilder::udp(c6, 5353, dns6, 53)
            .payload_len(20)
            .build(),
        PacketBuilder::tcp(c4, 40000, ip("192.0.2.20"), 80, SYN).build(),
        PacketBuilder::tcp(c4, 40000, web, 80, ACK).vlan(42).build(),
        PacketBuilder::tcp(c4, 40000, web, 80, ACK)
            .padding(6)
            .build(),
        PacketBuilder::tcp(c4, 40000, web, 80, ACK)
            .tos(0xb9)
            .build(),
        PacketBuilder::tcp(c6, 40002, web6, 443, ACK)
            .hop_by_hop()
            .build(),
        PacketBuilder::tcp(c4, 40000, web, 80, ACK)
            .payload_len(1460)
            .build(),
        PacketBuilder::tcp(c6, 40000, web6, 443, ACK)
            .payload_len(1440)
            .build(),
        PacketBuilder::tcp(c4, 40000, web, 80, ACK)
            .payload_len(1460)
            .dont_frag(false)
            .build(),
        PacketBuilder::udp(c4, 5353, dns, 53)
            .payload_len(100)
            .fragment(0, true)
            .build(),
        PacketBuilder::udp(c4, 5353, dns, 53)
            .payload_len(64)
            .fragment(1480, false)
            .build(),
        PacketBuilder::udp(c6, 5353, dns6, 53)
            .payload_len(64)
            .fragment(1448, false)
            .build(),
        PacketBuilder::tcp(c4, 40000, ip("192.0.2.99"), 80, SYN).build(),
        PacketBuilder::icmp(c4, web, 8, 0, 0x0001_0001)
            .payload_len(16)
            .build(),
    ];
    let sent = PacketBuilder::tcp(web, 80, c4, 40000, ACK)
        .payload_len(1400)
        .build_ip();
    frames.push(
        PacketBuilder::icmp(ip("203.0.113.1"), web, 3, 4, 1400)
            .payload(sent[..28].to_vec())
            .build(),
    );
    let sent6 = PacketBuilder::tcp(web6, 443, c6, 40000, ACK).build_ip();
    frames.push(
        PacketBuilder::icmp(ip("2001:db8:ff::1"), web6, 2, 0, 1280)
            .payload(sent6)
            .build(),
    );
    frames
}

/// Every seed frame: the capture's and the fixture kinds'.
fn all_frames() -> Vec<Vec<u8>> {
    let mut frames = demo_frames();
    frames.extend(fixture_frames());
    frames
}

/// The IP packets inside the seed frames (Ethernet header and padding removed).
pub fn ip_packets() -> Vec<Vec<u8>> {
    all_frames()
        .iter()
        .filter_map(|f| {
            let eth = ethernet::Frame::new_checked(&f[..]).ok()?;
            let payload = eth.payload();
            match payload.first()? >> 4 {
                4 => {
                    let p = ipv4::Packet::new_checked(payload).ok()?;
                    Some(payload[..usize::from(p.total_len())].to_vec())
                }
                6 => {
                    let p = ipv6::Packet::new_checked(payload).ok()?;
                    Some(payload[..40 + usize::from(p.payload_len())].to_vec())
                }
                _ => None,
            }
        })
        .collect()
}

/// The transport segments (and ICMP messages) inside the seed frames.
fn l4_segments() -> Vec<Vec<u8>> {
    ip_packets()
        .iter()
        .filter_map(|p| match p[0] >> 4 {
            4 => ipv4::Packet::new_checked(&p[..])
                .ok()
                .map(|v| v.payload().to_vec()),
            _ => {
                let v = ipv6::Packet::new_checked(&p[..]).ok()?;
                let upper = v.upper_layer().ok()?;
                p.get(upper.offset..).map(<[u8]>::to_vec)
            }
        })
        .collect()
}

/// Seeds for every wire view: frames, IP packets, transport segments and the byte fixtures
/// (each view's parser meets the others' formats too: that is part of the test).
pub fn wire_seeds() -> Vec<Vec<u8>> {
    let mut out = all_frames();
    out.extend(ip_packets());
    out.extend(l4_segments());
    out.extend(wire_fixtures().into_iter().map(|(_, b)| b));
    out
}

/// Pseudo-random inputs for the structured targets (`arbitrary` reads any bytes as a
/// description), fixed so that runs are reproducible.
pub fn random_inputs() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x6d75_782d_6675_7a7a);
    [16usize, 64, 128, 256, 512, 1024, 2048]
        .iter()
        .flat_map(|&len| std::iter::repeat_n(len, 4))
        .map(|len| (0..len).map(|_| rng.byte()).collect())
        .collect()
}

fn read_all(paths: &[&str]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .filter_map(|p| std::fs::read(repo().join(p)).ok())
        .collect()
}

/// The shipped MUX configuration files and the lab's templates.
pub fn mux_configs() -> Vec<Vec<u8>> {
    let mut out = read_all(&[
        "configs/mux.example.toml",
        "configs/mux.demo.toml",
        "lab/mux.toml.in",
        "lab/mux-dpdk.toml.in",
    ]);
    out.push(crate::targets::pipeline::CONFIG.as_bytes().to_vec());
    out
}

/// The shipped host agent configuration files and the lab's template.
pub fn hostagent_configs() -> Vec<Vec<u8>> {
    let mut out = read_all(&["configs/hostagent.example.toml", "lab/hostagent.toml.in"]);
    out.push(crate::targets::hostagent::CONFIG.as_bytes().to_vec());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_arrays_are_read_from_source_text() {
        let text = "const A_B: [u8; 3] = [\n 0x01, 2,\n 0xff,\n];\nconst addr: [u8; 1] = [1];\n\
                    const C: [u8; 2] = [1, x];";
        assert_eq!(
            byte_arrays(text),
            vec![("A_B".to_string(), vec![1, 2, 255])]
        );
    }
}
