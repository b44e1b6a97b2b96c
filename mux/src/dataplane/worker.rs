//! The worker loop: one per core, one RX queue each.
//!
//! A packet's path, start to end: [`Port::recv`] fills a burst → [`Pipeline::process_burst`]
//! rewrites each buffer and gives it a verdict → the buffers are split by verdict into the
//! transmit, kernel and free bursts (keeping their order; a burst that is all to be
//! transmitted is handed over whole) → [`Port::send`], [`Port::to_kernel`], [`Port::free`].
//!
//! The burst vectors are allocated once, at their full capacity; the loop never allocates.
//! [`Worker::poll`] takes the snapshot from its caller (tests and replay pass a fixed one);
//! [`Worker::run`], the daemon's loop, loads it once per burst from the `arc-swap` pointer the
//! control plane publishes to, so a reload takes effect between two bursts.
//!
//! What the control plane sees of a running worker is [`WorkerStats`]: the worker copies its
//! counters there every [`PUBLISH_INTERVAL`] (a `try_lock`, never a wait) and counts its live
//! flows a slice of the table at a time, so no single burst stalls behind a full scan.
//!
//! The census also counts flows per backend. When a sweep completes, the worker publishes, for
//! each backend id, the flows that backend still receives: the live entries pinned to it,
//! except when the snapshot says its [`FlowCutoff`](super::snapshot::FlowCutoff) has passed
//! (its flows are being reset or re-hashed on their next packet, so it receives none). This is
//! what tells an operator a drain is over.
//!
//! # Idle: poll when busy, sleep when idle
//!
//! A worker that finds its queue empty keeps polling for a bounded time
//! ([`IdlePolicy::Adaptive`]'s `poll_for`, `[dataplane] idle_poll_us`, default 100 µs after its
//! last packet): traffic with short gaps never waits for a wakeup. After that it sleeps on its
//! port ([`Port::wait`]) at most `sleep_max` at a time (`[dataplane] idle_sleep_max_us`, default
//! 1 ms, at most 10 ms), and gives the core back. What a sleep is belongs to the port: AF_XDP
//! and AF_PACKET block in `poll(2)` on the socket (AF_XDP with `XDP_USE_NEED_WAKEUP`) and wake
//! with the first frame; DPDK sleeps on the queue's Rx interrupt where the driver has one, else
//! a ladder of sleeps that starts short and doubles up to `sleep_max`; the in-memory port
//! sleeps. Every sleep ends after `sleep_max` at the latest, so the loop still stores its
//! heartbeat at least every 10 ms (the liveness thread judges a worker stuck after two thirds
//! of `[bgp] liveness_timeout_ms`, at least 40 ms) and sees a stop request as soon.
//! [`IdlePolicy::BusyPoll`] (`idle = "busy-poll"`) never sleeps: one whole core per worker, no
//! wakeup latency. The checks cost nothing while packets flow: the loop already reads the clock
//! once per iteration.
//!
//! Rejected: counting empty polls (as this loop did, 64 of them) instead of time: a poll's
//! cost varies by port and load by orders of magnitude, so a count bounds nothing; sleeping in
//! the worker with a fixed `thread::sleep` for every port: the sockets can wake on the first
//! frame, a fixed sleep delays it by a whole sleep.
//!
//! Freshness: a sweep takes `⌈buckets / CENSUS_BUCKETS_PER_PUBLISH⌉` publishes, i.e.
//! `⌈capacity / 65 536⌉ × 100 ms`: a table of up to 65 536 entries is swept in every publish,
//! the default 1 Mi entries in 1.6 s, 4 Mi in 6.4 s. The step is not made bigger for large
//! tables: 16 Ki buckets (1 MiB) is already about 0.1–0.3 ms of scanning between two bursts, and
//! a longer stall would overflow the RX ring at line rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{DEFAULT_IDLE_POLL_US, DEFAULT_IDLE_SLEEP_MAX_US, IdleMode};
use arc_swap::ArcSwap;
use mux_ports::{Port, PortStats};

use super::clock::BurstTime;
use super::counters::WorkerCounters;
use super::flow_table::CENSUS_BACKEND_IDS;
use super::pipeline::{MAX_BURST, Pipeline};
use super::snapshot::Snapshot;
use super::verdict::Verdict;

/// How often a running worker publishes its counters.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Buckets of the flow table counted per publish (a full sweep of a 4 M-entry table takes
/// about 6 s).
const CENSUS_BUCKETS_PER_PUBLISH: usize = 16 * 1024;
/// What a worker does when its queue is empty (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll without pause.
    BusyPoll,
    /// Poll for `poll_for` after the last packet, then wait on the port at most `sleep_max` at
    /// a time.
    Adaptive {
        /// How long to keep polling after the last packet.
        poll_for: Duration,
        /// The longest one wait.
        sleep_max: Duration,
    },
}

impl IdlePolicy {
    /// The policy `[dataplane]` asks for.
    pub fn from_config(dp: &crate::config::Dataplane) -> IdlePolicy {
        match dp.idle() {
            IdleMode::BusyPoll => IdlePolicy::BusyPoll,
            IdleMode::Adaptive => IdlePolicy::Adaptive {
                poll_for: Duration::from_micros(u64::from(dp.idle_poll_us())),
                sleep_max: Duration::from_micros(u64::from(dp.idle_sleep_max_us())),
            },
        }
    }
}

impl Default for IdlePolicy {
    /// The configuration's defaults: adaptive, 100 µs of polling, sleeps of at most 1 ms.
    fn default() -> Self {
        IdlePolicy::Adaptive {
            poll_for: Duration::from_micros(u64::from(DEFAULT_IDLE_POLL_US)),
            sleep_max: Duration::from_micros(u64::from(DEFAULT_IDLE_SLEEP_MAX_US)),
        }
    }
}

/// What a worker publishes for the control plane.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// The worker's counters as of its last publish.
    pub counters: Mutex<WorkerCounters>,
    /// The port's counters as of the worker's last publish.
    pub port: Mutex<PortStats>,
    /// Live flow-table entries as of the last completed census sweep.
    pub live_flows: AtomicU64,
    /// Flows each backend still receives (index: backend id, below [`CENSUS_BACKEND_IDS`]) as
    /// of the last completed census sweep: live entries pinned to it, 0 once its cutoff has
    /// passed. Sized once when the worker starts.
    pub backend_flows: Mutex<Vec<u32>>,
    /// Live entries whose backend id is beyond [`CENSUS_BACKEND_IDS`] (not in
    /// `backend_flows`), as of the last completed sweep.
    pub unattributed_flows: AtomicU64,
    /// Census sweeps completed and published.
    pub census_sweeps: AtomicU64,
    /// When the last published sweep completed, in milliseconds of the flow clock.
    pub census_completed_ms: AtomicU64,
    /// Config generation of the snapshot in use when the last published sweep started: every
    /// entry created under an older snapshot had been created by then.
    pub census_generation: AtomicU64,
    /// Capacity of the worker's flow table.
    pub flow_capacity: AtomicU64,
    /// Generation of the snapshot the worker used for its last burst.
    pub generation: AtomicU64,
    /// Set once the worker is polling its port.
    pub running: AtomicBool,
    /// The worker's loop count, stored on every iteration (busy or idle): the liveness thread
    /// (`control::liveness`) withdraws the VIPs when it stops moving.
    pub heartbeat: AtomicU64,
    /// Times the worker waited on its port because its queue stayed empty (adaptive idle).
    pub idle_waits: AtomicU64,
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
    /// Generation of the snapshot when the census sweep in progress started.
    census_generation: u64,
    /// The last completed sweep, not yet published (the control plane held the lock): its
    /// starting generation and its completion time (ms on the flow clock).
    census_unpublished: Option<(u64, u64)>,
    /// What the daemon's loop does when the queue is empty.
    idle: IdlePolicy,
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
            census_generation: 0,
            census_unpublished: None,
            idle: IdlePolicy::default(),
        }
    }

    /// The same worker with idle policy `idle` for [`Worker::run`].
    pub fn with_idle(self, idle: IdlePolicy) -> Self {
        Worker { idle, ..self }
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
        let transmit =
            self.pipeline
                .process_burst(snap, clock, &mut self.rx, &mut self.verdicts[..n]);
        if transmit == n && self.tx.is_empty() {
            // The whole burst leaves on the wire, in order: it becomes the transmit burst as
            // it is (both vectors keep their capacity), with no per-frame sorting.
            std::mem::swap(&mut self.rx, &mut self.tx);
        } else {
            for (buf, verdict) in self.rx.drain(..).zip(self.verdicts.iter()) {
                match verdict {
                    Verdict::Forward | Verdict::Reply(_) => self.tx.push(buf),
                    Verdict::ToKernel => self.kernel.push(buf),
                    Verdict::Drop(_) => self.dropped.push(buf),
                }
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
        if let Ok(mut flows) = stats.backend_flows.lock() {
            flows.resize(CENSUS_BACKEND_IDS, 0);
        }
        stats.running.store(true, Ordering::Release);
        let mut next_publish = Instant::now();
        let mut last_packet = Instant::now();
        let mut loops = 0u64;
        let mut waits = 0u64;
        while !stop.load(Ordering::Relaxed) {
            loops = loops.wrapping_add(1);
            stats.heartbeat.store(loops, Ordering::Relaxed);
            let snap = snapshots.load();
            let instant = Instant::now();
            let clock = BurstTime::since(clock_origin, instant);
            let n = self.poll_at(&snap, clock);
            self.port.maintain();
            if n > 0 {
                last_packet = instant;
            } else if let IdlePolicy::Adaptive {
                poll_for,
                sleep_max,
            } = self.idle
                && instant.saturating_duration_since(last_packet) >= poll_for
            {
                self.port.wait(sleep_max);
                waits += 1;
            }
            if instant >= next_publish {
                stats.generation.store(snap.generation(), Ordering::Relaxed);
                stats.idle_waits.store(waits, Ordering::Relaxed);
                self.publish(stats, &snap, clock);
                next_publish = instant + PUBLISH_INTERVAL;
            }
        }
        // Last word: everything counted up to the stop.
        stats.idle_waits.store(waits, Ordering::Relaxed);
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
    /// advances the flow census, publishing its result when a sweep completes. [`Worker::run`]
    /// calls it every [`PUBLISH_INTERVAL`]; tests call it directly.
    pub fn publish(&mut self, stats: &WorkerStats, snap: &Snapshot, clock: BurstTime) {
        if let Ok(mut shared) = stats.counters.try_lock() {
            shared.clone_from(&self.pipeline.counters);
        }
        let port = self.port.stats();
        if let Ok(mut shared) = stats.port.try_lock() {
            *shared = port;
        }
        let now = clock.secs();
        let table = self.pipeline.flow_table_mut();
        if table.census_at_start() {
            self.census_generation = snap.generation();
        }
        if table.census_step(now, CENSUS_BUCKETS_PER_PUBLISH).is_some() {
            self.census_unpublished = Some((self.census_generation, clock.micros() / 1000));
        }
        if let Some((generation, completed_ms)) = self.census_unpublished {
            self.publish_census(stats, snap, now, generation, completed_ms);
        }
    }

    /// Publishes the last completed sweep, unless the control plane holds the lock (then the
    /// next publish retries).
    fn publish_census(
        &mut self,
        stats: &WorkerStats,
        snap: &Snapshot,
        now: u32,
        generation: u64,
        completed_ms: u64,
    ) {
        let Ok(mut shared) = stats.backend_flows.try_lock() else {
            return;
        };
        if shared.len() < CENSUS_BACKEND_IDS {
            // Sized by `run` before the loop; this covers callers that did not.
            shared.resize(CENSUS_BACKEND_IDS, 0);
        }
        let census = self.pipeline.flow_table().last_census();
        let ids = snap.parts.backends.len().min(CENSUS_BACKEND_IDS);
        for (id, (out, n)) in shared[..ids]
            .iter_mut()
            .zip(&census.by_backend[..ids])
            .enumerate()
        {
            let receives = snap.backend(id as u32).is_some_and(|b| b.keeps_flows(now));
            *out = if receives { *n } else { 0 };
        }
        stats
            .live_flows
            .store(census.live as u64, Ordering::Relaxed);
        stats
            .unattributed_flows
            .store(census.unattributed as u64, Ordering::Relaxed);
        stats.census_generation.store(generation, Ordering::Relaxed);
        stats
            .census_completed_ms
            .store(completed_ms, Ordering::Relaxed);
        stats.census_sweeps.fetch_add(1, Ordering::Relaxed);
        self.census_unpublished = None;
    }

    /// The verdicts of the last burst (for tests and replay), in receive order.
    pub fn last_verdicts(&self, n: usize) -> &[Verdict] {
        &self.verdicts[..n.min(self.verdicts.len())]
    }
}
