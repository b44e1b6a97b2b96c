//! The AF_PACKET port on a real interface: a veth pair inside a throwaway network namespace.
//!
//! Each test creates its own namespace (`muxt-pkt-<pid>-<test>`) holding a veth pair `mux0` ↔
//! `peer0`, opens the port on `mux0` from a thread that entered the namespace, and injects and
//! captures frames on `peer0` with a plain AF_PACKET socket. The namespace is removed when the
//! test ends, also when it fails (a `Drop` guard). Needs root (namespaces, veth, packet
//! sockets); without it each test prints why it skips and passes, or fails under `CI=true`
//! (`mux_test_prereq`).

mod common;

use std::time::{Duration, Instant};

use common::netns::{Netns, lab_available};
use common::*;
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::verdict::{Reply, Verdict};
use mux::dataplane::worker::Worker;
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::packet_builder::{DEFAULT_SRC_MAC, PacketBuilder, tcp_flags::*};
use mux_packet::stable_hash;
use mux_ports::afpacket::{AfPacketConfig, AfPacketPort, RawSocket};
use mux_ports::{MIN_HEADROOM, PacketBuf, Port};

/// Every receive in these tests gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The test's namespace with the veth pair `mux0` ↔ `peer0`, or `None` (after saying why, or
/// failing under `CI=true`) when this process cannot build one.
fn lab(test: &str) -> Option<Netns> {
    if !lab_available(test) {
        return None;
    }
    Some(Netns::create("pkt", test, ["mux0", "peer0"], None).expect("build the test namespace"))
}

/// A small ring so the tests start fast.
fn config() -> AfPacketConfig {
    AfPacketConfig {
        block_size: 1 << 16,
        block_count: 4,
        pool_size: 128,
        ..AfPacketConfig::default()
    }
}

/// Receives from `port` until `n` frames whose source MAC is `src_mac` arrived or the
/// timeout passed (frames from other sources are ignored).
fn recv_from(port: &mut AfPacketPort, src_mac: [u8; 6], n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut burst = Vec::with_capacity(32);
    let deadline = Instant::now() + TIMEOUT;
    while out.len() < n && Instant::now() < deadline {
        if port.recv(&mut burst, 32) == 0 {
            port.wait(Duration::from_millis(10));
            continue;
        }
        for b in &burst {
            assert!(b.headroom() >= MIN_HEADROOM);
            if b.data()[6..12] == src_mac {
                out.push(b.data().to_vec());
            }
        }
        port.free(&mut burst);
    }
    out
}

/// Captures on `sock` until `n` frames whose source MAC is `src_mac` arrived or the timeout
/// passed; then keeps listening for `linger` to catch extra frames.
fn capture(sock: &RawSocket, src_mac: [u8; 6], n: usize, linger: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + TIMEOUT;
    let mut until = deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        if let Some(len) = sock.recv(&mut buf, left).expect("capture")
            && buf[6..12] == src_mac
        {
            out.push(buf[..len].to_vec());
            if out.len() == n {
                until = Instant::now() + linger;
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_frames_eq(got: &[Vec<u8>], expected: &[Vec<u8>], what: &str) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: got {} frames, expected {}",
        got.len(),
        expected.len()
    );
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            g == e,
            "{what}: frame {i} differs\n  got      {}\n  expected {}",
            hex(g),
            hex(e)
        );
    }
}

/// Frames covering the receive path's cases: untagged IPv4/IPv6, an 802.1Q tag with priority
/// bits, an 802.1ad tag, Q-in-Q, a short ARP frame and a full 1514-byte frame.
fn wire_frames() -> Vec<Vec<u8>> {
    let c4 = common::ip("198.51.100.7");
    let c6 = common::ip("2001:db8:c::7");
    let web = common::ip("192.0.2.10");
    let mut frames = vec![
        PacketBuilder::tcp(c4, 40000, web, 80, SYN).build(),
        PacketBuilder::udp(c4, 5353, common::ip("192.0.2.53"), 53)
            .payload_len(30)
            .build(),
        PacketBuilder::tcp(c6, 40000, common::ip("2001:db8::10"), 443, ACK)
            .payload_len(100)
            .build(),
        PacketBuilder::tcp(c4, 40001, web, 80, ACK).vlan(42).build(),
    ];
    // PCP 7, DEI 0, VID 42.
    let mut pcp = PacketBuilder::tcp(c4, 40002, web, 80, ACK).vlan(42).build();
    pcp[14] |= 0xe0;
    frames.push(pcp);
    // An 802.1ad (S-tag) TPID.
    let mut s_tag = PacketBuilder::tcp(c4, 40003, web, 80, ACK).vlan(7).build();
    s_tag[12..14].copy_from_slice(&[0x88, 0xa8]);
    frames.push(s_tag);
    // Q-in-Q: S-tag 100 outside, C-tag 42 inside (the kernel strips only the outer one).
    let inner = PacketBuilder::tcp(c4, 40004, web, 80, ACK).vlan(42).build();
    let mut qinq = inner[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
    qinq.extend_from_slice(&inner[12..]);
    frames.push(qinq);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&DEFAULT_SRC_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&DEFAULT_SRC_MAC);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 11]);
    frames.push(arp);
    frames.push(
        PacketBuilder::tcp(c4, 40005, web, 80, ACK)
            .payload_len(1460)
            .build(),
    );
    for f in &frames {
        assert_eq!(
            f[6..12],
            DEFAULT_SRC_MAC,
            "frames are recognised by source MAC"
        );
    }
    frames
}

#[test]
fn frames_cross_the_port_byte_identical_with_their_vlan_tags() {
    let Some(ns) = lab("wire") else {
        return;
    };
    ns.run(|| {
        let mut port = AfPacketPort::open("mux0", &config()).expect("open port on mux0");
        let peer = RawSocket::open("peer0").expect("open peer0");
        assert_eq!(port.mtu(), 1500);
        let frames = wire_frames();
        let (c4, web) = (common::ip("198.51.100.7"), common::ip("192.0.2.10"));

        // Receive: what the peer puts on the wire arrives unchanged, tags and all.
        for f in &frames {
            peer.send(f).expect("inject");
        }
        let got = recv_from(&mut port, DEFAULT_SRC_MAC, frames.len());
        assert_frames_eq(&got, &frames, "received");

        // Transmit: the same frames sent by the port reach the peer unchanged. A frame one byte
        // over MTU + Ethernet header is dropped and counted, not sent.
        let mut burst = Vec::with_capacity(32);
        for f in &frames {
            peer.send(f).expect("inject");
        }
        let deadline = Instant::now() + TIMEOUT;
        while burst.len() < frames.len() && Instant::now() < deadline {
            let want = frames.len() - burst.len();
            if port.recv(&mut burst, want) == 0 {
                port.wait(Duration::from_millis(10));
            }
            // Anything but our frames (there should be none) is not part of the test.
            burst.retain(|b| b.data()[6..12] == DEFAULT_SRC_MAC);
        }
        assert_eq!(burst.len(), frames.len(), "second round received");
        let oversize = PacketBuilder::tcp(c4, 1, web, 80, ACK)
            .payload_len(1461)
            .build();
        assert_eq!(oversize.len(), 1515);
        // Reuse a pooled buffer for the oversize frame: grow the last received one.
        let last = burst.last_mut().unwrap();
        assert!(last.set_len(oversize.len()));
        last.data_mut().copy_from_slice(&oversize);
        let sent = port.send(&mut burst);
        assert!(burst.is_empty(), "send drains the burst");
        assert_eq!(sent, frames.len() - 1);
        let echoed = capture(
            &peer,
            DEFAULT_SRC_MAC,
            frames.len() - 1,
            Duration::from_millis(100),
        );
        assert_frames_eq(&echoed, &frames[..frames.len() - 1], "transmitted");

        let stats = port.stats();
        assert_eq!(stats.rx, 2 * frames.len() as u64);
        assert_eq!(stats.tx, frames.len() as u64 - 1);
        assert_eq!(stats.tx_oversize, 1);
        assert_eq!(stats.tx_errors, 0);
        assert_eq!(stats.rx_dropped, 0);
        let bytes: usize = frames[..frames.len() - 1].iter().map(Vec::len).sum();
        assert_eq!(stats.tx_bytes, bytes as u64);
    });
}

#[test]
fn the_pipeline_over_afpacket_sends_what_the_in_memory_pipeline_sends() {
    let Some(ns) = lab("pipe") else {
        return;
    };
    ns.run(|| {
        let snap = snapshot(FIXTURE_CONFIG);
        let c4 = common::ip("198.51.100.7");
        let c6 = common::ip("2001:db8:c::7");
        let web = common::ip("192.0.2.10");
        let tcp4 = PacketBuilder::tcp(c4, 40000, web, 80, SYN)
            .payload_len(10)
            .build();
        let udp4 = PacketBuilder::udp(c4, 5353, common::ip("192.0.2.53"), 53)
            .payload_len(30)
            .build();
        let tcp6 = PacketBuilder::tcp(c6, 40001, common::ip("2001:db8::10"), 443, ACK | PSH)
            .payload_len(100)
            .build();
        let tagged = PacketBuilder::tcp(c4, 40002, web, 80, ACK).vlan(42).build();
        let too_big = PacketBuilder::tcp(c4, 40003, web, 80, ACK)
            .payload_len(1460)
            .build();
        let not_vip = PacketBuilder::tcp(c4, 40004, common::ip("192.0.2.99"), 80, SYN).build();
        let frames = vec![tcp4, udp4, tcp6, tagged, too_big, not_vip];

        // The in-memory expectation: the same frames through the same pipeline.
        let mem = run(&snap, &frames);
        let label = |sport| {
            let key = FlowKey {
                src: canonical_addr(c6),
                dst: canonical_addr(common::ip("2001:db8::10")),
                src_port: sport,
                dst_port: 443,
                protocol: 6,
            };
            (stable_hash::flow_hash(&key) & 0xfffff) as u32
        };
        // ... which is itself what the RFCs say, written independently.
        let independent = [
            expected_ipip_v4(&inner_ip(&frames[0], 14), [10, 1, 0, 1], None),
            expected_ipip_v4(&inner_ip(&frames[1], 14), [10, 1, 0, 2], None),
            expected_ipip_v6(&inner_ip(&frames[2], 14), "fd00:1::1", label(40001), None),
            expected_ipip_v4(&inner_ip(&frames[3], 18), [10, 1, 0, 1], Some(42)),
        ];
        assert_frames_eq(&mem.transmitted[..4], &independent, "in-memory run");
        assert_eq!(
            mem.transmitted.len(),
            5,
            "four encapsulated frames and one ICMP reply"
        );
        assert_eq!(mem.verdicts[4], Verdict::Reply(Reply::TooBig));
        assert_eq!(mem.verdicts[5], Verdict::ToKernel);

        let port = AfPacketPort::open("mux0", &config()).expect("open port on mux0");
        let peer = RawSocket::open("peer0").expect("open peer0");
        let mut worker = Worker::new(port, Pipeline::new(4096, 7), 32);
        for f in &frames {
            peer.send(f).expect("inject");
        }
        let mut verdicts = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while verdicts.len() < frames.len() && Instant::now() < deadline {
            let n = worker.poll(&snap, 100);
            if n == 0 {
                worker.port.wait(Duration::from_millis(10));
            }
            verdicts.extend_from_slice(worker.last_verdicts(n));
        }
        assert_eq!(verdicts, mem.verdicts, "same verdicts as in memory");

        // Everything the MUX sends carries its MAC as the source.
        let sent = capture(
            &peer,
            MUX_MAC,
            mem.transmitted.len(),
            Duration::from_millis(100),
        );
        assert_frames_eq(&sent, &mem.transmitted, "transmitted by the MUX");
        assert_eq!(
            sent[4][0..6],
            DEFAULT_SRC_MAC,
            "the ICMP reply goes back to the sender"
        );

        let stats = worker.port.stats();
        assert_eq!(stats.rx, frames.len() as u64);
        assert_eq!(stats.tx, 5);
        assert_eq!(stats.to_kernel, 1);
        assert_eq!(stats.tx_errors + stats.tx_oversize + stats.rx_dropped, 0);
    });
}

#[test]
fn a_fanout_group_receives_each_frame_exactly_once_and_keeps_flows_whole() {
    let Some(ns) = lab("fanout") else {
        return;
    };
    ns.run(|| {
        let cfg = AfPacketConfig {
            fanout_group: Some(0x4d58),
            ..config()
        };
        let mut ports = [
            AfPacketPort::open("mux0", &cfg).expect("open first member"),
            AfPacketPort::open("mux0", &cfg).expect("open second member"),
        ];
        assert_eq!(ports[0].fanout_group(), Some(0x4d58));
        let peer = RawSocket::open("peer0").expect("open peer0");

        // 48 flows (distinct source ports), 3 frames each; the payload names flow and frame.
        const FLOWS: u16 = 48;
        const PER_FLOW: u8 = 3;
        let mut frames = Vec::new();
        for seq in 0..PER_FLOW {
            for flow in 0..FLOWS {
                let mut payload = flow.to_be_bytes().to_vec();
                payload.push(seq);
                frames.push(
                    PacketBuilder::udp(
                        common::ip("198.51.100.7"),
                        10000 + flow,
                        common::ip("192.0.2.53"),
                        53,
                    )
                    .payload(payload)
                    .build(),
                );
            }
        }
        for f in &frames {
            peer.send(f).expect("inject");
        }

        // Drain both members until every frame arrived, then a little longer for duplicates.
        let mut got: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut burst = Vec::with_capacity(32);
        let deadline = Instant::now() + TIMEOUT;
        let mut linger_until = None;
        loop {
            let now = Instant::now();
            if now >= deadline || linger_until.is_some_and(|t| now >= t) {
                break;
            }
            let mut idle = true;
            for (port, out) in ports.iter_mut().zip(got.iter_mut()) {
                if port.recv(&mut burst, 32) > 0 {
                    idle = false;
                    out.extend(
                        burst
                            .iter()
                            .filter(|b| b.data()[6..12] == DEFAULT_SRC_MAC)
                            .map(|b| b.data().to_vec()),
                    );
                    port.free(&mut burst);
                }
            }
            if linger_until.is_none() && got[0].len() + got[1].len() >= frames.len() {
                linger_until = Some(Instant::now() + Duration::from_millis(100));
            }
            if idle {
                ports[0].wait(Duration::from_millis(5));
            }
        }

        let mut all: Vec<Vec<u8>> = got.iter().flatten().cloned().collect();
        all.sort();
        let mut expected = frames.clone();
        expected.sort();
        assert_eq!(
            all.len(),
            frames.len(),
            "each frame once, none twice, none lost"
        );
        assert!(
            all == expected,
            "the group received exactly the frames sent"
        );
        assert!(
            !got[0].is_empty() && !got[1].is_empty(),
            "48 flows all hashed to one member: {} / {}",
            got[0].len(),
            got[1].len()
        );
        // Every flow's frames went to one member.
        let flow_of = |f: &Vec<u8>| u16::from_be_bytes([f[42], f[43]]);
        for flow in 0..FLOWS {
            let members: Vec<usize> = (0..2)
                .filter(|&m| got[m].iter().any(|f| flow_of(f) == flow))
                .collect();
            assert_eq!(members.len(), 1, "flow {flow} was split across members");
        }
    });
}

#[test]
fn a_raw_socket_batch_arrives_whole_and_in_order() {
    let Some(ns) = lab("batch") else {
        return;
    };
    ns.run(|| {
        let mut port = AfPacketPort::open("mux0", &config()).expect("open port on mux0");
        let peer = RawSocket::open("peer0").expect("open peer0");
        let web = common::ip("192.0.2.10");
        // 100 frames of 100 different flows (the generator's batches): one call takes at most
        // MAX_SEND_BATCH of them, the caller sends the rest next.
        let frames: Vec<Vec<u8>> = (0..100u16)
            .map(|i| PacketBuilder::tcp(common::ip("198.51.100.7"), 1000 + i, web, 80, ACK).build())
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        assert_eq!(peer.send_batch(&[]).expect("empty batch"), 0);
        let mut sent = 0;
        let mut calls = 0;
        while sent < refs.len() {
            let m = peer.send_batch(&refs[sent..]).expect("send a batch");
            assert!((1..=mux_ports::afpacket::MAX_SEND_BATCH).contains(&m));
            sent += m;
            calls += 1;
        }
        assert!(calls >= 2, "100 frames need two calls at least");
        let got = recv_from(&mut port, DEFAULT_SRC_MAC, frames.len());
        assert_frames_eq(&got, &frames, "batched");
    });
}
