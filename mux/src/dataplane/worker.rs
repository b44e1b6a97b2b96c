//! The worker loop: one per core, one RX queue each.
//!
//! A packet's path, start to end: [`Port::recv`] fills a burst → [`Pipeline::process_burst`]
//! rewrites each buffer and gives it a verdict → the buffers are split by verdict into the
//! transmit, kernel and free bursts (keeping their order) → [`Port::send`],
//! [`Port::to_kernel`], [`Port::free`].
//!
//! The burst vectors are allocated once, at their full capacity; the loop never allocates.
//! [`Worker::poll`] takes the snapshot from its caller (tests and replay pass a fixed one);
//! [`Worker::run`], the daemon's loop, loads it once per burst from the `arc-swap` pointer the
//! control plane publishes to, so a reload takes effect between two bursts.
//!
//! What the control plane sees of a running worker is [`WorkerStats`]: the worker copies its
//! counters there every [`PUBLISH_INTERVAL`] (a `try_lock`, never a wait) and counts its live
//! flows a slice of the table at a time, so no single burst stalls behind a full scan.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mux_shared::port::{Port, PortStats};

use super::clock::BurstTime;
use super::counters::WorkerCounters;
use super::pipeline::{MAX_BURST, Pipeline};
use super::snapshot::Snapshot;
use super::verdict::Verdict;

/// How often a running worker publishes its counters.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Buckets of the flow table counted per publish (a full sweep of a 4 M-entry table takes
/// about 6 s).
const CENSUS_BUCKETS_PER_PUBLISH: usize = 16 * 1024;
/// Empty polls in a row before an idle worker blocks in [`Port::wait`].
const SPINS_BEFORE_WAIT: u32 = 64;
/// How long an idle worker blocks at most (bounds the reaction time to a stop request).
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// What a worker publishes for the control plane.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// The worker's counters as of its last publish.
    pub counters: Mutex<WorkerCounters>,
    /// The port's counters as of the worker's last publish.
    pub port: Mutex<PortStats>,
    /// Live flow-table entries as of the last completed census sweep.
    pub live_flows: AtomicU64,
    /// Capacity of the worker's flow table.
    pub flow_capacity: AtomicU64,
    /// Generation of the snapshot the worker used for its last burst.
    pub generation: AtomicU64,
    /// Set once the worker is polling its port.
    pub running: AtomicBool,
}

/// A worker: a port and the pipeline state that goes with it.
#[derive(Debug)]
pub struct Worker<P: Port> {
    /// The packet port this worker polls.
    pub port: P,
    /// The pipeline (flow table and counters).
    pub pipeline: Pipeline,
    burst_size: usize,
    rx: Vec<P::Buf>,
    tx: Vec<P::Buf>,
    kernel: Vec<P::Buf>,
    dropped: Vec<P::Buf>,
    verdicts: Vec<Verdict>,
}

impl<P: Port> Worker<P> {
    /// A worker polling `port` in bursts of `burst_size` (clamped to 1..=[`MAX_BURST`]).
    pub fn new(port: P, pipeline: Pipeline, burst_size: usize) -> Self {
        let burst_size = burst_size.clamp(1, MAX_BURST);
        Worker {
            port,
            pipeline,
            burst_size,
            rx: Vec::with_capacity(burst_size),
            tx: Vec::with_capacity(burst_size),
            kernel: Vec::with_capacity(burst_size),
            dropped: Vec::with_capacity(burst_size),
            verdicts: vec![Verdict::ToKernel; burst_size],
        }
    }

    /// Receives and processes one burst at the start of second `now` of the flow clock (tests,
    /// benchmarks). Returns the number of frames received (0: idle).
    #[inline]
    pub fn poll(&mut self, snap: &Snapshot, now: u32) -> usize {
        self.poll_at(snap, BurstTime::from_secs(now))
    }

    /// Receives and processes one burst at `clock`. Returns the number of frames received
    /// (0: idle).
    #[inline]
    pub fn poll_at(&mut self, snap: &Snapshot, clock: BurstTime) -> usize {
        let n = self.port.recv(&mut self.rx, self.burst_size);
        if n == 0 {
            return 0;
        }
        self.pipeline
            .process_burst(snap, clock, &mut self.rx, &mut self.verdicts[..n]);
        for (buf, verdict) in self.rx.drain(..).zip(self.verdicts.iter()) {
            match verdict {
                Verdict::Forward | Verdict::Reply(_) => self.tx.push(buf),
                Verdict::ToKernel => self.kernel.push(buf),
                Verdict::Drop(_) => self.dropped.push(buf),
            }
        }
        if !self.tx.is_empty() {
            self.port.send(&mut self.tx);
        }
        if !self.kernel.is_empty() {
            self.port.to_kernel(&mut self.kernel);
        }
        if !self.dropped.is_empty() {
            self.port.free(&mut self.dropped);
        }
        n
    }

    /// The daemon's loop: poll until `stop` is set, loading the current snapshot once per
    /// burst. `clock_origin` is the instant the flow clock counts seconds from.
    pub fn run(
        &mut self,
        snapshots: &ArcSwap<Snapshot>,
        stats: &WorkerStats,
        stop: &AtomicBool,
        clock_origin: Instant,
    ) {
        stats.flow_capacity.store(
            self.pipeline.flow_table().capacity() as u64,
            Ordering::Relaxed,
        );
        stats.running.store(true, Ordering::Release);
        let mut idle = 0u32;
        let mut next_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let snap = snapshots.load();
            let instant = Instant::now();
            let clock = BurstTime::since(clock_origin, instant);
            let now = clock.secs();
            let n = self.poll_at(&snap, clock);
            self.port.maintain();
            if n == 0 {
                idle += 1;
                if idle >= SPINS_BEFORE_WAIT {
                    self.port.wait(IDLE_WAIT);
                }
            } else {
                idle = 0;
            }
            if instant >= next_publish {
                stats.generation.store(snap.generation(), Ordering::Relaxed);
                self.publish(stats, now);
                next_publish = instant + PUBLISH_INTERVAL;
            }
        }
        // Last word: everything counted up to the stop.
        let now = clock_origin.elapsed().as_secs() as u32;
        if let Ok(mut shared) = stats.counters.lock() {
            shared.clone_from(&self.pipeline.counters);
        }
        let port = self.port.stats();
        if let Ok(mut shared) = stats.port.lock() {
            *shared = port;
        }
        stats.live_flows.store(
            self.pipeline.flow_table().live_entries(now) as u64,
            Ordering::Relaxed,
        );
        stats.running.store(false, Ordering::Release);
    }

    /// Copies the counters out (if the control plane is not reading them right now) and
    /// advances the flow census.
    fn publish(&mut self, stats: &WorkerStats, now: u32) {
        if let Ok(mut shared) = stats.counters.try_lock() {
            shared.clone_from(&self.pipeline.counters);
        }
        let port = self.port.stats();
        if let Ok(mut shared) = stats.port.try_lock() {
            *shared = port;
        }
        if let Some(live) = self
            .pipeline
            .flow_table_mut()
            .census_step(now, CENSUS_BUCKETS_PER_PUBLISH)
        {
            stats.live_flows.store(live as u64, Ordering::Relaxed);
        }
    }

    /// The verdicts of the last burst (for tests and replay), in receive order.
    pub fn last_verdicts(&self, n: usize) -> &[Verdict] {
        &self.verdicts[..n.min(self.verdicts.len())]
    }
}
