//! `perf dpdk`: the MUX's worker loop on DPDK virtual devices, against the I/O floor measured
//! over the same device in the same run (cargo feature `dpdk`).
//!
//! Devices, each on one core (the calling thread):
//! - `net_null`: receive allocates mbufs from the pool, transmit frees them — a NIC with an
//!   infinite supply and an infinite sink.
//! - `net_ring`: one ring is both the receive and the transmit queue, pre-filled with mbufs
//!   that circulate: no allocation at all.
//!
//! Neither device carries real packets, so the port is wrapped in [`TemplatePort`], which
//! writes one of the scenario's pre-built frames into each received mbuf (resetting its
//! headroom, as a NIC's DMA would present a fresh frame). The floor — a MAC-swapping
//! forwarder ([`crate::baseline`]) — runs over the same wrapped port, so the template copy is
//! in both figures and the ratio is the pipeline's own cost. Run once with `--hugepages` and
//! once without: the EAL starts once per process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::worker::Worker;
use mux_ports::dpdk::{DeviceConfig, DpdkPort, DpdkRuntime, EalConfig, RuntimeConfig};
use mux_ports::{MIN_HEADROOM, PacketBuf, Port, PortStats};

use crate::baseline::MacSwapForwarder;
use crate::scenario::{self, Scenario};

/// A port whose received frames are overwritten with pre-built ones, in a cycle.
#[derive(Debug)]
pub struct TemplatePort<P: Port> {
    inner: P,
    frames: Vec<Vec<u8>>,
    next: usize,
}

impl<P: Port> TemplatePort<P> {
    /// Wraps `inner`, presenting `frames` in a loop.
    pub fn new(inner: P, frames: Vec<Vec<u8>>) -> Self {
        TemplatePort {
            inner,
            frames,
            next: 0,
        }
    }
}

impl<P: Port> Port for TemplatePort<P> {
    type Buf = P::Buf;

    #[inline]
    fn recv(&mut self, burst: &mut Vec<P::Buf>, max: usize) -> usize {
        let before = burst.len();
        let n = self.inner.recv(burst, max);
        for buf in &mut burst[before..] {
            let frame = &self.frames[self.next];
            self.next = (self.next + 1) % self.frames.len();
            // Back to the standard headroom (a forwarded frame left it 20 or 40 bytes short).
            let headroom = buf.headroom();
            if headroom < MIN_HEADROOM {
                buf.set_len(buf.data().len().max(MIN_HEADROOM));
                buf.pull_front(MIN_HEADROOM - headroom);
            } else if headroom > MIN_HEADROOM {
                buf.push_front(headroom - MIN_HEADROOM);
            }
            if buf.set_len(frame.len()) {
                buf.data_mut().copy_from_slice(frame);
            }
        }
        n
    }

    #[inline]
    fn send(&mut self, burst: &mut Vec<P::Buf>) -> usize {
        self.inner.send(burst)
    }

    fn to_kernel(&mut self, burst: &mut Vec<P::Buf>) {
        self.inner.to_kernel(burst)
    }

    fn free(&mut self, burst: &mut Vec<P::Buf>) {
        self.inner.free(burst)
    }

    fn stats(&mut self) -> PortStats {
        self.inner.stats()
    }

    fn maintain(&mut self) {
        self.inner.maintain()
    }
}

/// One device's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceResult {
    /// The virtual device.
    pub device: String,
    /// Floor: packets and Mpps of the MAC-swapping forwarder.
    pub floor_packets: u64,
    /// Floor rate.
    pub floor_mpps: f64,
    /// The MUX: packets and Mpps of the worker loop.
    pub mux_packets: u64,
    /// MUX rate.
    pub mux_mpps: f64,
    /// Frames the MUX encapsulated (proves the work was done).
    pub mux_forwarded: u64,
    /// Flow-table hits among them.
    pub mux_flow_hits: u64,
    /// Frames the port could not transmit, floor and MUX.
    pub tx_dropped: u64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Back the EAL with hugepages.
    pub hugepages: bool,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Distinct flows.
    pub flows: usize,
    /// Frames per burst.
    pub burst: usize,
}

fn eal(hugepages: bool) -> EalConfig {
    EalConfig {
        file_prefix: format!("mux-perf-{}", std::process::id()),
        hugepages,
        memory_mb: 512,
        devices: Vec::new(),
        extra: vec!["--log-level=lib.eal:warning".into()],
    }
}

fn start(settings: &Settings, spec: &str) -> Result<Arc<DpdkRuntime>, String> {
    let config = RuntimeConfig {
        eal: eal(settings.hugepages),
        nic: DeviceConfig {
            spec: spec.to_string(),
            rx_descriptors: 1024,
            tx_descriptors: 1024,
        },
        exception: None,
        queues: 1,
        mbufs: 16383,
        mbuf_cache: 256,
        data_room: (MIN_HEADROOM + 2048) as u16,
    };
    DpdkRuntime::start(&config)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Fills a ring loopback with `n` frames so they circulate.
fn prefill(port: &mut DpdkPort, frame: &[u8], n: usize) {
    let mut burst = Vec::with_capacity(n);
    for _ in 0..n {
        match port.alloc_frame(frame) {
            Some(b) => burst.push(b),
            None => break,
        }
    }
    port.send(&mut burst);
}

fn open(
    settings: &Settings,
    spec: &str,
    frames: &[Vec<u8>],
) -> Result<TemplatePort<DpdkPort>, String> {
    let runtime = start(settings, spec)?;
    let mut port = DpdkPort::open(runtime, 0).map_err(|e| e.to_string())?;
    if spec.starts_with("net_ring") {
        prefill(&mut port, &frames[0], 1024);
    }
    Ok(TemplatePort::new(port, frames.to_vec()))
}

fn mpps(packets: u64, elapsed: Duration) -> f64 {
    packets as f64 / elapsed.as_secs_f64() / 1e6
}

/// Measures the floor and the MUX over `kind` (`null` or `ring`).
pub fn measure(settings: &Settings, kind: &str) -> Result<DeviceResult, String> {
    let work = scenario::workload(Scenario::Established, settings.flows, settings.burst);
    let limit = Duration::from_secs_f64(settings.seconds);

    let floor_spec = format!("net_{kind}_floor");
    let mut floor =
        MacSwapForwarder::new(open(settings, &floor_spec, &work.frames)?, settings.burst);
    let started = Instant::now();
    let mut floor_packets = 0u64;
    while started.elapsed() < limit {
        for _ in 0..1024 {
            floor_packets += floor.poll() as u64;
        }
    }
    let floor_elapsed = started.elapsed();
    let floor_dropped = floor.port.stats().tx_dropped;
    drop(floor);

    let mux_spec = format!("net_{kind}_mux");
    let port = open(settings, &mux_spec, &work.frames)?;
    let mut worker = Worker::new(port, Pipeline::new(work.flow_capacity, 1), settings.burst);
    // Warm the flow table: one pass inserts every flow; the timed loop is all hits.
    let mut warmed = 0;
    while warmed < work.frames.len() * 2 {
        warmed += worker.poll(&work.snapshot, 0);
    }
    let base = worker.pipeline.counters.clone();
    let started = Instant::now();
    let mut mux_packets = 0u64;
    while started.elapsed() < limit {
        for _ in 0..1024 {
            mux_packets += worker.poll(&work.snapshot, 0) as u64;
        }
    }
    let mux_elapsed = started.elapsed();
    let c = &worker.pipeline.counters;
    let result = DeviceResult {
        device: format!("net_{kind}"),
        floor_packets,
        floor_mpps: mpps(floor_packets, floor_elapsed),
        mux_packets,
        mux_mpps: mpps(mux_packets, mux_elapsed),
        mux_forwarded: c.forwarded - base.forwarded,
        mux_flow_hits: c.flow_hits - base.flow_hits,
        tx_dropped: floor_dropped + worker.port.stats().tx_dropped,
    };
    Ok(result)
}

/// Runs both devices and renders the table.
pub fn run(settings: &Settings) -> Result<(Vec<DeviceResult>, String), String> {
    let mut results = Vec::new();
    for kind in ["null", "ring"] {
        results.push(measure(settings, kind)?);
    }
    let mut text = format!(
        "perf dpdk: hugepages {}, one core, scenario established ({} flows, 60-byte IPv4 TCP, \
         16 VIPs x 64 backends), burst {}, {:.1} s per figure\n",
        if settings.hugepages { "yes" } else { "no" },
        settings.flows,
        settings.burst,
        settings.seconds
    );
    text.push_str(
        "device     floor Mpps  ns/pkt   mux Mpps  ns/pkt   mux/floor  forwarded   hits       tx_dropped\n",
    );
    for r in &results {
        text.push_str(&format!(
            "{:<10} {:>10.2} {:>7.1} {:>10.2} {:>7.1} {:>10.2}  {:<11} {:<10} {}\n",
            r.device,
            r.floor_mpps,
            1e3 / r.floor_mpps,
            r.mux_mpps,
            1e3 / r.mux_mpps,
            r.mux_mpps / r.floor_mpps,
            r.mux_forwarded,
            r.mux_flow_hits,
            r.tx_dropped
        ));
    }
    Ok((results, text))
}

/// Whether the MUX did what the figure claims: every packet encapsulated, nearly all hits.
pub fn check(r: &DeviceResult) -> Vec<String> {
    let mut out = Vec::new();
    if r.mux_forwarded < r.mux_packets * 99 / 100 {
        out.push(format!(
            "{}: only {} of {} packets were encapsulated",
            r.device, r.mux_forwarded, r.mux_packets
        ));
    }
    if r.mux_flow_hits < r.mux_packets * 99 / 100 {
        out.push(format!(
            "{}: only {} of {} packets hit the flow table",
            r.device, r.mux_flow_hits, r.mux_packets
        ));
    }
    out
}
