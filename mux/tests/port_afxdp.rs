//! The AF_XDP port on a real veth pair in a throw-away network namespace.
//!
//! Each test creates `muxt-xdp-<pid>-<test>` with a veth pair `xa` (the MUX side: XDP program
//! and socket) ↔ `xb` (the client/router side: frames injected and captured with AF_PACKET).
//! The socket work happens on a dedicated thread that enters the namespace with `setns`.
//! Needs root and a kernel with AF_XDP; without them each test prints why it is skipped, or
//! fails under `CI=true` (`mux_test_prereq`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::{Netns, lab_available};
use common::*;
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::worker::Worker;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_ports::afpacket::RawSocket;
use mux_ports::afxdp::{AfXdpConfig, AfXdpError, AfXdpPort, XdpFrame, XdpMode, XdpProgram};
use mux_ports::{MIN_HEADROOM, PacketBuf, Port};

const MUX_IF: &str = "xa";
const PEER_IF: &str = "xb";

/// Runs `body` on a thread inside a fresh namespace, or skips (fails under `CI=true`) saying why
/// it cannot. `body` returns `Err("SKIP:<why>")` when the kernel lacks what the test needs.
fn in_lab(test: &str, body: impl FnOnce(&str) -> Result<(), String> + Send + 'static) {
    if !lab_available(test) {
        return;
    }
    let ns = match Netns::create(
        "xdp",
        test,
        [MUX_IF, PEER_IF],
        Some(["02:00:00:00:00:01", "02:00:00:00:00:fe"]),
    ) {
        Ok(ns) => ns,
        Err(e) => {
            mux_test_prereq::skip_or_fail(test, &format!("cannot build the namespace lab: {e}"));
            return;
        }
    };
    let name = ns.name().to_owned();
    let result = ns.run(move || body(&name));
    drop(ns);
    match result {
        Ok(()) => {}
        Err(e) if e.starts_with("SKIP:") => mux_test_prereq::skip_or_fail(test, &e[5..]),
        Err(e) => panic!("{test}: {e}"),
    }
}

/// The configuration the brief asks for, trying zero-copy first.
const FULL: AfXdpConfig = AfXdpConfig {
    frames: 4096,
    ring_size: 2048,
    zero_copy: true,
};

/// Attaches the program with the fixture's VIPs and opens the socket on queue 0.
fn setup(config: AfXdpConfig) -> Result<(XdpProgram, AfXdpPort), String> {
    // EAFNOSUPPORT (97): a kernel built without XDP sockets.
    let unavailable = |e: &AfXdpError| matches!(e, AfXdpError::Sys { source, .. } if source.raw_os_error() == Some(97));
    let mut prog = match XdpProgram::attach(MUX_IF, 1) {
        Ok(p) => p,
        Err(e) => return Err(format!("attach: {e}")),
    };
    let port = match AfXdpPort::open(MUX_IF, 0, &config) {
        Ok(p) => p,
        Err(e) if unavailable(&e) => return Err(format!("SKIP:AF_XDP unavailable: {e}")),
        Err(e) => return Err(format!("open: {e}")),
    };
    prog.register_socket(0, port.fd())
        .map_err(|e| e.to_string())?;
    let snap = snapshot(FIXTURE_CONFIG);
    let keys: Vec<_> = snap
        .parts
        .vips
        .iter()
        .map(|v| (v.key.addr, v.key.port, v.key.protocol))
        .collect();
    prog.update_vips(&keys).map_err(|e| e.to_string())?;
    Ok((prog, port))
}

/// Receives from the port until `n` frames arrived or `timeout` passed.
fn recv_n(port: &mut AfXdpPort, n: usize, timeout: Duration) -> Vec<XdpFrame> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::with_capacity(n + 64);
    while got.len() < n && Instant::now() < deadline {
        port.maintain();
        if port.recv(&mut got, 64) == 0 {
            port.wait(Duration::from_millis(10));
        }
    }
    got
}

/// Whether `ip link` shows an XDP program on the MUX side.
fn xdp_attached(ns: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", MUX_IF])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
        .unwrap_or(false)
}

fn c4() -> std::net::IpAddr {
    ip("198.51.100.7")
}
fn c6() -> std::net::IpAddr {
    ip("2001:db8:c::7")
}

fn arp() -> Vec<u8> {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xfe, 10, 0, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 11]);
    arp
}

#[test]
fn vip_frames_reach_the_socket_and_everything_else_the_kernel() {
    in_lab("steer", |ns| {
        let (prog, mut port) = setup(FULL)?;
        eprintln!(
            "AF_XDP on veth: mode {:?}, need_wakeup {}, XDP program of {} instructions",
            port.mode(),
            port.uses_need_wakeup(),
            prog.instruction_count()
        );
        assert!(xdp_attached(ns), "the program is attached to {MUX_IF}");
        assert_eq!(port.mode(), XdpMode::Copy, "veth has no zero-copy");
        let peer = RawSocket::open(PEER_IF).map_err(|e| e.to_string())?;
        let kernel_side = RawSocket::open(MUX_IF).map_err(|e| e.to_string())?;
        let web = ip("192.0.2.10");
        let vip_frames = vec![
            PacketBuilder::tcp(c4(), 40000, web, 80, SYN)
                .payload_len(10)
                .build(),
            PacketBuilder::udp(c4(), 5353, ip("192.0.2.53"), 53)
                .payload_len(30)
                .build(),
            PacketBuilder::tcp(c6(), 40000, ip("2001:db8::10"), 443, SYN).build(),
            PacketBuilder::tcp(c4(), 40000, web, 80, ACK)
                .vlan(42)
                .build(),
            PacketBuilder::udp(c4(), 5353, ip("192.0.2.53"), 53)
                .payload_len(64)
                .fragment(1480, false)
                .build(),
            PacketBuilder::tcp(c4(), 40000, web, 80, ACK)
                .payload_len(1460)
                .build(),
        ];
        let other_frames = vec![
            arp(),
            PacketBuilder::tcp(c4(), 40000, web, 8080, SYN).build(),
            PacketBuilder::udp(c4(), 40000, web, 80).build(),
            PacketBuilder::tcp(c4(), 40000, ip("192.0.2.99"), 80, SYN).build(),
            PacketBuilder::icmp(c4(), web, 8, 0, 0x0001_0001)
                .payload_len(16)
                .build(),
            PacketBuilder::tcp(c4(), 179, ip("10.0.0.11"), 179, SYN).build(),
        ];
        // Interleave: VIP, other, VIP, other...
        for (v, o) in vip_frames.iter().zip(&other_frames) {
            peer.send(v).map_err(|e| e.to_string())?;
            peer.send(o).map_err(|e| e.to_string())?;
        }

        let mut got = recv_n(&mut port, vip_frames.len(), Duration::from_secs(5));
        let received: Vec<Vec<u8>> = got.iter().map(|f| f.data().to_vec()).collect();
        for f in &got {
            assert!(f.headroom() >= MIN_HEADROOM, "headroom {}", f.headroom());
        }
        assert_eq!(
            received, vip_frames,
            "VIP frames arrive on the XSK byte-identical"
        );
        // Nothing else arrives on the socket.
        let extra = recv_n(&mut port, 1, Duration::from_millis(300));
        assert!(
            extra.is_empty(),
            "{} unexpected frames on the XSK",
            extra.len()
        );
        port.free(&mut got);

        // The kernel side of xa saw exactly the non-VIP frames.
        let seen = kernel_side
            .collect(Duration::from_secs(2), other_frames.len())
            .map_err(|e| e.to_string())?;
        assert_eq!(seen, other_frames, "non-VIP frames go to the kernel");
        let stats = port.stats();
        assert_eq!(stats.rx, vip_frames.len() as u64);
        assert_eq!(stats.freed, vip_frames.len() as u64);
        let k = port.xdp_statistics().map_err(|e| e.to_string())?;
        assert_eq!(k.rx_dropped, 0);
        assert_eq!(k.rx_ring_full, 0);
        // Closing the BPF link detaches the program: nothing is left behind.
        drop(port);
        drop(prog);
        assert!(!xdp_attached(ns), "the program is detached on drop");
        Ok(())
    });
}

#[test]
fn pipeline_over_afxdp_transmits_what_the_memory_port_does() {
    in_lab("pipeline", |_| {
        let (_prog, port) = setup(FULL)?;
        let peer = RawSocket::open(PEER_IF).map_err(|e| e.to_string())?;
        let snap = snapshot(FIXTURE_CONFIG);
        let web = ip("192.0.2.10");
        let syn = PacketBuilder::tcp(c4(), 40000, web, 80, SYN)
            .payload_len(10)
            .build();
        let inputs = vec![
            syn.clone(),
            PacketBuilder::udp(c4(), 5353, ip("192.0.2.53"), 53)
                .payload_len(30)
                .build(),
            PacketBuilder::tcp(c6(), 40000, ip("2001:db8::10"), 443, SYN).build(),
            PacketBuilder::udp(c6(), 5353, ip("2001:db8::53"), 53)
                .payload_len(20)
                .build(),
            PacketBuilder::tcp(c4(), 40000, ip("192.0.2.20"), 80, SYN).build(),
            PacketBuilder::tcp(c4(), 40001, web, 80, ACK)
                .vlan(42)
                .build(),
            PacketBuilder::tcp(c4(), 40002, web, 80, ACK)
                .tos(0xb9)
                .build(),
            // Too big for the 1500-byte MTU once encapsulated, DF set: an ICMP reply.
            PacketBuilder::tcp(c4(), 40003, web, 80, ACK)
                .payload_len(1460)
                .build(),
            // Fragments: routed by the address-only key.
            PacketBuilder::udp(c4(), 5353, ip("192.0.2.53"), 53)
                .payload_len(64)
                .fragment(1480, false)
                .build(),
        ];
        // What the in-memory port transmits for the same inputs.
        let reference = run(&snap, &inputs);
        assert_eq!(reference.transmitted.len(), inputs.len());
        // And, independently of the MUX's code, the first one.
        assert_eq!(
            reference.transmitted[0],
            expected_ipip_v4(&inner_ip(&syn, 14), [10, 1, 0, 1], None)
        );

        let mut worker = Worker::new(port, Pipeline::new(4096, 7), 32);
        for f in &inputs {
            peer.send(f).map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut processed = 0;
        while processed < inputs.len() && Instant::now() < deadline {
            worker.port.maintain();
            let n = worker.poll(&snap, 100);
            if n == 0 {
                worker.port.wait(Duration::from_millis(10));
            }
            processed += n;
        }
        assert_eq!(processed, inputs.len(), "all inputs reached the worker");
        let captured = peer
            .collect(Duration::from_secs(3), inputs.len())
            .map_err(|e| e.to_string())?;
        // Nothing below waits for TX completions: `tx` and `tx_ring_full` are counted when the
        // worker sends, and the kernel read every TX descriptor (`tx_invalid_descs`) before
        // the frames could reach the peer.
        assert_eq!(captured.len(), reference.transmitted.len());
        for (i, (got, want)) in captured.iter().zip(&reference.transmitted).enumerate() {
            assert_eq!(got, want, "frame {i} differs from the in-memory port's");
        }
        let stats = worker.port.stats();
        assert_eq!(stats.tx, inputs.len() as u64);
        assert_eq!(stats.tx_ring_full, 0);
        assert_eq!(worker.pipeline.counters, reference.counters);
        let k = worker.port.xdp_statistics().map_err(|e| e.to_string())?;
        assert_eq!(k.tx_invalid_descs, 0);
        Ok(())
    });
}

#[test]
fn frames_sent_from_the_socket_reach_the_peer_and_are_recycled() {
    in_lab("recycle", |_| {
        // A tiny UMEM: 64 frames, rings of 32.
        let small = AfXdpConfig {
            frames: 64,
            ring_size: 32,
            zero_copy: false,
        };
        let (_prog, mut port) = setup(small)?;
        let peer = RawSocket::open(PEER_IF).map_err(|e| e.to_string())?;
        let frame = PacketBuilder::udp(c4(), 5353, ip("192.0.2.53"), 53)
            .payload_len(30)
            .build();
        // Many more round trips than the UMEM has frames: frames must come back from the
        // completion ring, or reception stalls.
        let rounds = 500;
        let mut burst = Vec::with_capacity(64);
        let mut capture = vec![0u8; 2048];
        for i in 0..rounds {
            peer.send(&frame).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while burst.is_empty() && Instant::now() < deadline {
                port.maintain();
                if port.recv(&mut burst, 64) == 0 {
                    port.wait(Duration::from_millis(5));
                }
            }
            if burst.len() != 1 {
                return Err(format!("round {i}: received {} frames", burst.len()));
            }
            // Prepend 4 bytes in the headroom and send it back out.
            assert!(burst[0].push_front(4));
            burst[0].data_mut()[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            let tail = burst[0].data()[4..].to_vec();
            assert_eq!(port.send(&mut burst), 1);
            let len = peer
                .recv(&mut capture, Duration::from_secs(2))
                .map_err(|e| e.to_string())?
                .ok_or(format!("round {i}: nothing came back"))?;
            let back = &capture[..len];
            assert_eq!(&back[..4], &[0xde, 0xad, 0xbe, 0xef]);
            assert_eq!(&back[4..], &tail[..]);
        }
        let stats = port.stats();
        assert_eq!((stats.rx, stats.tx), (rounds, rounds));
        Ok(())
    });
}

/// The daemon's probe (`XdpProgram::still_attached`) sees the program go when its interface
/// is deleted: the liveness thread then withdraws the VIPs (docs/operations.md).
#[test]
fn the_probe_notices_when_the_interface_and_its_program_are_gone() {
    in_lab(
        "the_probe_notices_when_the_interface_and_its_program_are_gone",
        |ns| {
            let prog = XdpProgram::attach(MUX_IF, 1).map_err(|e| format!("attach: {e}"))?;
            if !prog.still_attached().map_err(|e| e.to_string())? {
                return Err("a freshly attached program reports detached".into());
            }
            if !xdp_attached(ns) {
                return Err("ip link shows no XDP program after attach".into());
            }
            let deleted = Command::new("ip")
                .args(["-n", ns, "link", "del", MUX_IF])
                .status()
                .map_err(|e| e.to_string())?;
            if !deleted.success() {
                return Err("ip link del failed".into());
            }
            match prog.still_attached() {
                Ok(false) => Ok(()),
                Ok(true) => {
                    Err("the probe still reports attached after the veth was deleted".into())
                }
                Err(e) => Err(format!("probe failed: {e}")),
            }
        },
    );
}
