//! The DPDK port over virtual devices: `net_ring` loopback (what is sent comes back), the
//! exception path both ways, and the mbuf accounting (every mbuf returns to the pool).
//!
//! Built with `--features dpdk` only. The tests of this binary share one EAL (it starts once
//! per process) with `--no-huge`; each test hot-plugs devices of its own.
#![cfg(feature = "dpdk")]

use std::sync::Arc;
use std::time::Duration;

use mux_ports::dpdk::{DeviceConfig, DpdkPort, DpdkRuntime, EalConfig, RuntimeConfig};
use mux_ports::{MIN_HEADROOM, PacketBuf, Port};

fn eal() -> EalConfig {
    EalConfig {
        file_prefix: format!("mux-port-test-{}", std::process::id()),
        hugepages: false,
        memory_mb: 256,
        devices: Vec::new(),
        extra: vec!["--log-level=lib.eal:warning".into()],
    }
}

fn device(spec: &str) -> DeviceConfig {
    DeviceConfig {
        spec: spec.to_string(),
        rx_descriptors: 512,
        tx_descriptors: 512,
    }
}

fn start(nic: &str, exception: Option<&str>) -> Arc<DpdkRuntime> {
    let config = RuntimeConfig {
        eal: eal(),
        nic: device(nic),
        exception: exception.map(device),
        queues: 1,
        mbufs: 4096,
        mbuf_cache: 64,
        data_room: 2048 + MIN_HEADROOM as u16,
    };
    Arc::new(DpdkRuntime::start(&config).expect("DPDK runtime over virtual devices"))
}

fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b as u8).wrapping_add(i)).collect()
}

/// Polls until `want` frames came back (the ring PMD delivers at once; the loop only bounds it).
fn recv_all(port: &mut DpdkPort, want: usize) -> Vec<mux_ports::dpdk::DpdkBuf> {
    let mut got = Vec::with_capacity(256);
    for _ in 0..1000 {
        port.maintain();
        let room = 256 - got.len().min(255);
        port.recv(&mut got, room);
        if got.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

#[test]
fn ring_loopback_returns_what_was_sent_and_every_mbuf() {
    let runtime = start("net_ring_loop", None);
    let full = runtime.pool_available();
    let mut port = DpdkPort::open(Arc::clone(&runtime), 0).expect("open");
    let mut burst: Vec<_> = (0..100u8)
        .map(|i| port.alloc_frame(&frame(i, 60 + i as usize)).expect("alloc"))
        .collect();
    assert_eq!(port.send(&mut burst), 100);
    assert!(burst.is_empty());

    let mut got = recv_all(&mut port, 100);
    assert_eq!(got.len(), 100);
    for (i, buf) in got.iter().enumerate() {
        assert_eq!(buf.data(), frame(i as u8, 60 + i).as_slice(), "frame {i}");
        assert!(
            buf.headroom() >= MIN_HEADROOM,
            "headroom {}",
            buf.headroom()
        );
    }

    // Headroom edits, as the encapsulation does them.
    let buf = &mut got[0];
    let original = buf.data().to_vec();
    assert!(buf.push_front(20));
    assert_eq!(buf.data().len(), original.len() + 20);
    assert_eq!(&buf.data()[20..], original.as_slice());
    buf.pull_front(20);
    assert_eq!(buf.data(), original.as_slice());
    assert!(!buf.push_front(buf.headroom() + 1));
    let room = buf.tailroom();
    assert!(buf.set_len(original.len() + room));
    assert!(!buf.set_len(original.len() + room + 1));

    let stats = port.stats();
    assert_eq!(
        (stats.rx, stats.tx, stats.rx_dropped, stats.tx_dropped),
        (100, 100, 0, 0)
    );
    assert!(stats.nic.is_some(), "queue 0 reports the device counters");

    port.free(&mut got);
    drop(port);
    assert_eq!(
        runtime.pool_available(),
        full,
        "every mbuf is back in the pool"
    );
}

#[test]
fn kernel_bound_frames_cross_the_exception_device_and_come_back() {
    // The exception device is a ring loopback too: what goes "to the kernel" is what "the
    // kernel sends back", which maintain() must put on the NIC.
    let runtime = start("net_ring_nic", Some("net_ring_exc"));
    let mut port = DpdkPort::open(Arc::clone(&runtime), 0).expect("open");
    let mut burst: Vec<_> = (0..10u8)
        .map(|i| port.alloc_frame(&frame(i, 64)).expect("alloc"))
        .collect();
    port.to_kernel(&mut burst);
    let got = recv_all(&mut port, 10);
    assert_eq!(got.len(), 10, "kernel frames reach the NIC");
    assert_eq!(got[3].data(), frame(3, 64).as_slice());
    let stats = port.stats();
    assert_eq!((stats.to_kernel, stats.from_kernel), (10, 10));
    assert_eq!((stats.to_kernel_dropped, stats.from_kernel_dropped), (0, 0));
}

#[test]
fn without_an_exception_device_kernel_frames_are_counted_drops() {
    let runtime = start("net_null_nokernel", None);
    let full = runtime.pool_available();
    let mut port = DpdkPort::open(Arc::clone(&runtime), 0).expect("open");
    let mut burst: Vec<_> = (0..5u8)
        .map(|i| port.alloc_frame(&frame(i, 64)).expect("alloc"))
        .collect();
    port.to_kernel(&mut burst);
    assert_eq!(port.stats().to_kernel_dropped, 5);
    drop(port);
    assert_eq!(runtime.pool_available(), full);
}

#[test]
fn an_unknown_device_is_a_clear_error() {
    let config = RuntimeConfig {
        eal: eal(),
        nic: device("net_nosuchdriver0"),
        exception: None,
        queues: 1,
        mbufs: 1024,
        mbuf_cache: 32,
        data_room: 2176,
    };
    let err = DpdkRuntime::start(&config)
        .expect_err("no such driver")
        .to_string();
    assert!(err.contains("net_nosuchdriver0"), "{err}");
}
