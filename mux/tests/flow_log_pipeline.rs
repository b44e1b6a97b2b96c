//! The data path's half of the flow logs, through a real worker over the in-memory port: one
//! record per new flow-table entry (none for hits), its fields, sampling by the stable hash,
//! and a full ring counted, never waited on. The writer's half (JSON lines, rotation) is tested
//! in `control::flow_log`; the whole daemon in `flow_log_daemon.rs`.

mod common;

use common::*;
use mux::dataplane::flow_log::{FlowLogSink, FlowLogSource, FlowRecord};
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::worker::Worker;
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use mux_packet::stable_hash;
use mux_ports::mem::{Capture, MemPort};

/// A worker whose pipeline logs into a ring of `depth` records.
fn logging_worker(depth: usize) -> (Worker<MemPort>, FlowLogSource) {
    let (sink, source) = FlowLogSink::ring(depth);
    let pipeline = Pipeline::new(4096, 7).with_flow_log(sink);
    (
        Worker::new(MemPort::new(64, Capture::Keep), pipeline, 32),
        source,
    )
}

fn drain(source: &mut FlowLogSource) -> Vec<FlowRecord> {
    std::iter::from_fn(|| source.pop().ok()).collect()
}

/// A SYN from 198.51.100.7:`port` to the fixture's `web` VIP (192.0.2.10:80, backend 10.1.0.1).
fn syn(port: u16) -> Vec<u8> {
    PacketBuilder::tcp(ip("198.51.100.7"), port, ip("192.0.2.10"), 80, SYN).build()
}

fn with_flow_log(sample: u32) -> String {
    format!(
        "{FIXTURE_CONFIG}\n[flow_log]\npath = \"/var/log/mux/flows.jsonl\"\nsample = {sample}\n"
    )
}

#[test]
fn one_record_per_new_flow_with_its_fields_and_none_for_hits() {
    let snap = snapshot(&with_flow_log(1));
    let (mut w, mut source) = logging_worker(64);
    let frames: Vec<_> = (0..5).map(|i| syn(40000 + i)).collect();
    let out = run_on(&mut w, &snap, 3, &frames);
    assert_eq!(out.counters.new_flows, 5);
    let records = drain(&mut source);
    assert_eq!(records.len(), 5);
    let web = snap.parts.vips.iter().find(|v| v.name == "web").unwrap();
    for (i, r) in records.iter().enumerate() {
        let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 40000 + i as u16, 80, 6);
        assert_eq!(r.key, key);
        assert_eq!(r.vip_id, web.id);
        assert_eq!(r.backend, canonical_addr(ip("10.1.0.1")));
        assert_eq!(r.alternative, None);
        assert_eq!(r.generation, 1);
        assert_eq!(r.micros, 3_000_000, "the burst's time on the flow clock");
    }
    // The same flows again (an ACK each): hits, no record.
    let acks: Vec<_> = (0..5)
        .map(|i| {
            PacketBuilder::tcp(ip("198.51.100.7"), 40000 + i, ip("192.0.2.10"), 80, ACK).build()
        })
        .collect();
    let out = run_on(&mut w, &snap, 4, &acks);
    assert_eq!(out.counters.flow_hits, 5);
    assert!(drain(&mut source).is_empty());
    // A UDP flow (a miss without SYN) is a new flow too.
    let dns = PacketBuilder::udp(ip("198.51.100.7"), 5353, ip("192.0.2.53"), 53).build();
    run_on(&mut w, &snap, 5, &[dns]);
    let records = drain(&mut source);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.protocol, 17);
    assert_eq!(records[0].backend, canonical_addr(ip("10.1.0.2")));
    assert_eq!(w.pipeline.counters.flow_log_dropped, 0);
}

#[test]
fn a_full_ring_drops_and_counts_and_forwarding_goes_on() {
    let snap = snapshot(&with_flow_log(1));
    let (mut w, mut source) = logging_worker(4);
    let frames: Vec<_> = (0..10).map(|i| syn(41000 + i)).collect();
    let out = run_on(&mut w, &snap, 1, &frames);
    assert_eq!(out.counters.forwarded, 10, "every packet still forwarded");
    assert_eq!(out.counters.new_flows, 10);
    assert_eq!(out.counters.flow_log_dropped, 6);
    let records = drain(&mut source);
    let ports: Vec<u16> = records.iter().map(|r| r.key.src_port).collect();
    assert_eq!(
        ports,
        [41000, 41001, 41002, 41003],
        "the first four, in order"
    );
    // Room again: the next new flow is logged.
    run_on(&mut w, &snap, 1, &[syn(42000)]);
    assert_eq!(drain(&mut source).len(), 1);
    assert_eq!(w.pipeline.counters.flow_log_dropped, 6);
}

#[test]
fn one_in_n_is_sampled_by_the_stable_hash() {
    let n = 8;
    let snap = snapshot(&with_flow_log(n));
    let (mut w, mut source) = logging_worker(4096);
    let frames: Vec<_> = (0..2000).map(|i| syn(20000 + i)).collect();
    run_on(&mut w, &snap, 1, &frames);
    let logged: Vec<u16> = drain(&mut source).iter().map(|r| r.key.src_port).collect();
    let threshold = u64::MAX / u64::from(n);
    let expected: Vec<u16> = (0..2000)
        .map(|i| 20000 + i)
        .filter(|&port| {
            let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], port, 80, 6);
            stable_hash::flow_hash(&key) <= threshold
        })
        .collect();
    assert_eq!(logged, expected, "exactly the flows whose hash is sampled");
    assert!(
        (180..320).contains(&logged.len()),
        "about 1 in {n}: {}",
        logged.len()
    );
}

#[test]
fn without_a_flow_log_nothing_is_queued_or_counted() {
    let snap = snapshot(FIXTURE_CONFIG);
    let mut w = worker(4096);
    let frames: Vec<_> = (0..10).map(|i| syn(43000 + i)).collect();
    let out = run_on(&mut w, &snap, 1, &frames);
    assert_eq!(out.counters.new_flows, 10);
    assert_eq!(out.counters.flow_log_dropped, 0);
}
