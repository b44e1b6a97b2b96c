//! The data path allocates nothing in steady state ("the data path never blocks", docs/architecture.md).
//!
//! A counting global allocator wraps the system one; after a warm-up burst (which sizes the
//! per-id counters for the snapshot), thousands of bursts of established, new, kernel-bound,
//! malformed and too-big traffic must not allocate once; nor, after a reload that drains the
//! web backend with a deadline already past, the resets and re-hashes that follow, the
//! rate-limited replies, and the flow census the worker runs between bursts; nor, after a
//! backend change with second chance on, the misses that name an alternative (IPv4 and IPv6
//! outer headers, the MTU skip), the second-chance entries found by the packets after them,
//! and the end of the window. (One test: the allocation counter is process-wide.)
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use mux::dataplane::clock::BurstTime;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_ports::mem::{Capture, MemPort};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_allocates_nothing() {
    let mut registry = mux::control::registry::Registry::default();
    let compile = |text: &str, registry: &mut _, generation| {
        let cfg = mux::config::parse(text, "fixture.toml").expect("valid");
        mux::control::compile::compile(&cfg, registry, generation, &Default::default())
            .expect("compiles")
    };
    let snap = compile(FIXTURE_CONFIG, &mut registry, 1);
    // `web` (TCP, 10.1.0.1) and `dns` (UDP, 10.1.0.2) drained, each next to a new backend.
    let drain = |text: String, addr: &str, new: &str| {
        text.replacen(
            &format!("  address = \"{addr}\"\n"),
            &format!(
                "  address = \"{addr}\"\n  state = \"draining\"\n  \
                 drain_deadline = 2020-01-01T00:00:00Z\n  [[vip.backend]]\n  address = \"{new}\"\n"
            ),
            1,
        )
    };
    let drained_text = drain(
        drain(FIXTURE_CONFIG.to_string(), "10.1.0.1", "10.1.0.5"),
        "10.1.0.2",
        "10.1.0.6",
    );
    let drained = compile(&drained_text, &mut registry, 2);
    let mut frames = Vec::new();
    for i in 0..512u32 {
        let src = std::net::Ipv4Addr::from(0xc633_0000u32 + i);
        frames.push(PacketBuilder::tcp(src.into(), 40000, ip("192.0.2.10"), 80, ACK).build());
        frames.push(PacketBuilder::udp(src.into(), 5353, ip("192.0.2.53"), 53).build());
    }
    frames.push(PacketBuilder::tcp(ip("198.51.100.1"), 1, ip("192.0.2.99"), 80, SYN).build());
    frames.push(vec![1, 2, 3]);
    frames.push(
        PacketBuilder::tcp(ip("198.51.100.1"), 1, ip("192.0.2.10"), 80, ACK)
            .payload_len(1460)
            .build(),
    );
    frames.push(PacketBuilder::tcp(ip("2001:db8:c::1"), 1, ip("2001:db8::10"), 443, SYN).build());

    let port = MemPort::cycling(frames, 64, Capture::CountOnly);
    // With a flow log: its records are pushed (and, the ring being small, some dropped) on
    // the data path; popping them is the writer's, counted here too.
    let (sink, mut source) = mux::dataplane::flow_log::FlowLogSink::ring(64);
    let mut w = mux::dataplane::worker::Worker::new(
        port,
        mux::dataplane::pipeline::Pipeline::new(1 << 12, 1).with_flow_log(sink),
        32,
    );
    let mut popped = 0u64;
    w.poll(&snap, 1); // warm-up: adopts the snapshot
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..2000 {
        w.poll(&snap, 1);
    }
    COUNTING.store(false, Ordering::SeqCst);
    w.poll(&drained, 2); // adopts the reload's snapshot (sizes the counters for its new id)
    // What the daemon's loop does between bursts: publish counters, step the census, publish
    // per-backend flows (the shared vectors are sized once, as `Worker::run` does).
    let stats = mux::dataplane::worker::WorkerStats::default();
    w.publish(&stats, &drained, BurstTime::from_secs(2));
    COUNTING.store(true, Ordering::SeqCst);
    for second in 2..100 {
        for _ in 0..40 {
            w.poll(&drained, second);
        }
        while source.pop().is_ok() {
            popped += 1;
        }
        w.publish(&stats, &drained, BurstTime::from_secs(second));
    }
    COUNTING.store(false, Ordering::SeqCst);
    let c = &w.pipeline.counters;
    assert!(
        c.forwarded > 30_000 && c.to_kernel > 0 && c.dropped_total() > 0 && c.icmp_too_big_sent > 0
    );
    assert!(c.drain_resets_sent > 0 && c.flows_rehashed_after_drain > 0);
    assert!(c.dropped(mux::dataplane::verdict::DropReason::IcmpRateLimited) > 0);
    assert!(stats.census_sweeps.load(Ordering::Relaxed) > 90);
    assert!(
        popped > 0 && c.flow_log_dropped > 0,
        "records both queued and dropped"
    );
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "the data path allocated"
    );
    second_chance_allocates_nothing();
}

/// Second chance: generation 2 drains every fixture VIP's backend next to a new one, so every
/// flow without an entry names an alternative.
fn second_chance_allocates_nothing() {
    use mux::control::compile::{self, CompileOptions};
    use mux::control::table_history::TableHistory;
    let options = CompileOptions::default();
    let mut registry = mux::control::registry::Registry::default();
    let cfg = |text: &str| mux::config::parse(text, "fixture.toml").expect("valid");
    let (_, history) = compile::compile_with_history(
        &cfg(FIXTURE_CONFIG),
        &mut registry,
        1,
        &options,
        &TableHistory::default(),
        options.clock.origin_unix,
    )
    .expect("compiles");
    let mut text = FIXTURE_CONFIG.to_string();
    for (old, new) in [
        ("10.1.0.1", "10.1.0.5"),
        ("10.1.0.2", "10.1.0.6"),
        ("fd00:1::1", "fd00:1::5"),
    ] {
        text = text.replacen(
            &format!("  address = \"{old}\"\n"),
            &format!(
                "  address = \"{old}\"\n  state = \"draining\"\n  [[vip.backend]]\n  \
                 address = \"{new}\"\n"
            ),
            1,
        );
    }
    let (snap, _) = compile::compile_with_history(
        &cfg(&text),
        &mut registry,
        2,
        &options,
        &history,
        options.clock.origin_unix,
    )
    .expect("compiles");
    assert!(snap.parts.vips.iter().any(|v| !v.previous.is_empty()));
    let mut frames = Vec::new();
    for i in 0..256u32 {
        let src = std::net::Ipv4Addr::from(0xc633_0000u32 + i);
        frames.push(PacketBuilder::tcp(src.into(), 40000, ip("192.0.2.10"), 80, ACK).build());
        frames.push(PacketBuilder::udp(src.into(), 5353, ip("192.0.2.53"), 53).build());
        let src6 =
            std::net::Ipv6Addr::from(0x2001_0db8_000c_0000_0000_0000_0000_0000u128 + u128::from(i));
        frames.push(PacketBuilder::tcp(src6.into(), 40000, ip("2001:db8::10"), 443, ACK).build());
        frames.push(
            PacketBuilder::tcp(src.into(), 40001, ip("192.0.2.10"), 80, ACK)
                .payload_len(1435)
                .build(),
        );
    }
    let port = MemPort::cycling(frames, 64, Capture::CountOnly);
    let mut w = mux::dataplane::worker::Worker::new(
        port,
        mux::dataplane::pipeline::Pipeline::new(1 << 12, 1),
        32,
    );
    w.poll(&snap, 1); // warm-up: adopts the snapshot
    COUNTING.store(true, Ordering::SeqCst);
    // Seconds 1-99: misses with alternatives, then their entries; 400-499: past the window
    // (120 s) and past the entries' expiry: plain misses again.
    for second in (1..100).chain(400..500) {
        for _ in 0..40 {
            w.poll(&snap, second);
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    let c = &w.pipeline.counters;
    assert!(c.second_chance_sent > 10_000 && c.second_chance_skipped_mtu > 0);
    assert!(c.second_chance_flows > 0 && c.second_chance_flows < 2000);
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "the second-chance path allocated"
    );
}
