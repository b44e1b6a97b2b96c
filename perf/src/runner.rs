//! The measurement loop of `perf pipeline`, and its report.
//!
//! For each scenario: build the workload (frames, snapshot), wrap the frames in a cycling
//! in-memory port, run one full pass untimed (warms the flow table, the caches and the branch
//! predictors, and faults in every page), then time `runs` runs of `packets` packets each with
//! [`std::time::Instant`] around the bare poll loop. The median run (by ns/packet) is the
//! scenario's figure; all runs are kept in the report so the spread is visible.
//!
//! The pipeline scenarios poll a real [`Worker`]; the baseline polls a [`MacSwapForwarder`]
//! over the same port type and the `established` frames. The loop is identical for both (a
//! closure per poll, one branch per burst for the clock), so it cancels out in the difference.
//!
//! The counters reported are the pipeline's own, summed over the timed runs only (the warm-up
//! pass is subtracted), and each scenario checks them against what it claims to measure; a
//! mismatch becomes a warning in the report rather than a silently wrong figure.
//!
//! # Several workers (`--workers N`)
//!
//! With N > 1, each pipeline scenario is measured twice in the same run: first one worker over
//! all the frames (the figures above, on the calling thread pinned to the first allowed CPU),
//! then N workers at once, each on its own thread pinned to its own CPU, each with its own
//! in-memory port, flow table (sized 4 × its share of the flows, its own seed) and counters,
//! sharing only the read-only snapshot — as the daemon's workers do. The frames are split over
//! the workers as a NIC's RSS would split them over N RX queues ([`crate::rss`]: Toeplitz hash
//! of addresses and ports, 128-entry indirection table), so each worker sees whole flows. The
//! workers start each timed run together (a barrier) and stop together after as long as the
//! single worker's median run took; a run's aggregate rate is all their packets over its wall
//! time, and its ratio to the single worker's rate is the scaling.
//!
//! On a shared machine a worker's core may be taken by another task part of the time, which
//! no pinning prevents. Each worker therefore also reads its own time on a CPU
//! (`/proc/thread-self/schedstat`) and the report gives its share of the wall time and the
//! scaling per CPU-second — what the workers do when they have their cores — next to the wall
//! clock figure, so a shortfall can be told apart from contention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use mux::dataplane::counters::WorkerCounters;
use mux::dataplane::flow_log::{FlowLogSink, FlowLogSource};
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::snapshot::Snapshot;
use mux::dataplane::worker::Worker;
use mux_ports::mem::{Capture, MemPort};

use crate::baseline::MacSwapForwarder;
use crate::rss;
use crate::scenario::{self, FLOW_TABLE_HEADROOM, Scenario, Workload};

/// Flow-table seed of the benchmark (fixed: runs are comparable).
const FLOW_SEED: u64 = 0x7065_7266_5f73_6565;
/// The flow clock's first second.
const CLOCK_START: u32 = 1;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Distinct flows (frames) per scenario before rounding to the burst size.
    pub flows: usize,
    /// Packets per timed run (rounded up to a multiple of the burst size).
    pub packets: u64,
    /// Frames per receive burst.
    pub burst: usize,
    /// Timed runs per scenario; the median is reported.
    pub runs: usize,
    /// Scenarios to run; the baseline always runs first.
    pub scenarios: Vec<Scenario>,
    /// Workers measured side by side after the single worker (1: the single worker only).
    pub workers: usize,
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// CPUs this thread may run on (`Cpus_allowed_list`); pin with `taskset -c N`.
    pub cpus_allowed: String,
    /// 1-, 5- and 15-minute load averages when the run started.
    pub load_average: String,
}

impl Machine {
    /// Reads what Linux tells about this machine; fields it cannot read are "unknown".
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let status = read("/proc/self/status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string());
        let load = read("/proc/loadavg");
        let or_unknown = |s: Option<String>| s.unwrap_or_else(|| "unknown".to_string());
        Machine {
            cpu: or_unknown(cpu),
            kernel: or_unknown(
                Some(read("/proc/sys/kernel/osrelease").trim().to_string())
                    .filter(|s| !s.is_empty()),
            ),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpus_allowed: or_unknown(allowed),
            load_average: or_unknown(
                Some(
                    load.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" "),
                )
                .filter(|s| !s.is_empty()),
            ),
        }
    }
}

/// Declares [`Counts`] from one list of the pipeline's counters (each a field of
/// [`WorkerCounters`], which the compiler checks), plus `dropped`, the sum of the drops: its
/// copy from the pipeline, sum and difference cannot leave one out.
macro_rules! counts {
    ($( $(#[doc = $doc:literal])* $field:ident, )*) => {
        /// The pipeline counters that show what work was done, over the timed runs.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct Counts {
            $( $(#[doc = $doc])* pub $field: u64, )*
            /// Frames dropped, all reasons.
            pub dropped: u64,
        }

        impl Counts {
            fn of(c: &WorkerCounters) -> Counts {
                Counts { $( $field: c.$field, )* dropped: c.dropped_total() }
            }

            fn plus(self, o: Counts) -> Counts {
                Counts { $( $field: self.$field + o.$field, )* dropped: self.dropped + o.dropped }
            }

            fn minus(self, o: Counts) -> Counts {
                Counts { $( $field: self.$field - o.$field, )* dropped: self.dropped - o.dropped }
            }

            /// The frames with an outcome: equals `rx` (the pipeline's counters partition
            /// the traffic, docs/offline-tools.md).
            fn outcomes(&self) -> u64 {
                self.forwarded
                    + self.icmp_too_big_sent
                    + self.drain_resets_sent
                    + self.to_kernel
                    + self.dropped
            }
        }
    };
}

counts! {
    /// Frames received.
    rx,
    /// Frames transmitted (encapsulated, or MAC-swapped for the baseline).
    forwarded,
    /// Packets whose flow was found in the table.
    flow_hits,
    /// Packets that created a flow entry.
    new_flows,
    /// New flows that evicted a live entry.
    flows_evicted,
    /// New flows that found their bucket full.
    flow_table_full,
    /// Frames handed to the kernel.
    to_kernel,
    /// Frames answered with an ICMP too-big error instead of being forwarded.
    icmp_too_big_sent,
    /// Frames answered with a drain reset instead of being forwarded.
    drain_resets_sent,
    /// Frames sent with an alternative backend in the outer header (second chance).
    second_chance_sent,
    /// Flow-log records dropped because the ring was full (`new-flows-logged`).
    flow_log_dropped,
}

/// One scenario's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// What a measured packet is.
    pub description: &'static str,
    /// Distinct frames (flows) the port replays.
    pub frames: usize,
    /// Flow-table capacity (0 for the baseline).
    pub flow_capacity: usize,
    /// Packets per timed run.
    pub packets_per_run: u64,
    /// Packets over all timed runs (what the counters cover).
    pub packets_total: u64,
    /// Million packets per second of the median run.
    pub mpps: f64,
    /// Nanoseconds per packet of the median run.
    pub ns_per_packet: f64,
    /// Nanoseconds per packet of the fastest run (the least disturbed one on a shared host).
    pub best_ns_per_packet: f64,
    /// Nanoseconds per packet of every run, in run order.
    pub runs_ns_per_packet: Vec<f64>,
    /// `ns_per_packet` divided by the baseline's (None for the baseline itself).
    pub vs_baseline: Option<f64>,
    /// `ns_per_packet` minus the baseline's: the pipeline's own cost per packet.
    pub over_baseline_ns: Option<f64>,
    /// Counters over all timed runs.
    pub counters: Counts,
    /// Counters that do not show the work the scenario claims to measure.
    pub warnings: Vec<String>,
    /// What the reader should know about the figure that does not make it wrong (printed,
    /// not failing the run).
    pub notes: Vec<String>,
    /// Share of the timed runs' wall time the measuring thread spent on a CPU (below 1: another
    /// task had the core part of the time); `None` where the kernel does not say.
    pub cpu_share: Option<f64>,
    /// The same scenario on several workers at once (`--workers N`, N > 1).
    pub parallel: Option<Parallel>,
}

/// One scenario on several workers at once, one per core.
#[derive(Clone, Debug, Serialize)]
pub struct Parallel {
    /// Workers (threads), one per CPU.
    pub workers: usize,
    /// The CPU each worker was pinned to (`None`: pinning failed).
    pub cpus: Vec<Option<usize>>,
    /// Frames (flows) RSS gave each worker.
    pub frames_per_worker: Vec<usize>,
    /// Wall time of each timed run: that of the single worker's median run.
    pub run_seconds: f64,
    /// Aggregate million packets per second of the median run: every worker's packets over
    /// the run's wall time.
    pub mpps: f64,
    /// Aggregate Mpps of every run, in run order.
    pub runs_mpps: Vec<f64>,
    /// Each worker's Mpps over all runs.
    pub per_worker_mpps: Vec<f64>,
    /// Each worker's share of the wall time on its CPU (below 1: another task had the core).
    pub per_worker_cpu_share: Vec<Option<f64>>,
    /// `mpps` divided by the single worker's Mpps of the same run.
    pub scaling: f64,
    /// The scaling per CPU-second: the workers' packets per second on a CPU, summed, over the
    /// single worker's; what the workers would do if no other task took their cores.
    pub scaling_on_cpu: Option<f64>,
    /// Counters summed over the workers and the timed runs.
    pub counters: Counts,
    /// Counters that do not show the work the scenario claims, and placement problems.
    pub warnings: Vec<String>,
}
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// What ran.
    pub settings: Settings,
    /// One entry per scenario, the baseline first.
    pub results: Vec<ScenarioResult>,
}

/// The flow clock and the position in the frame cycle, carried across runs.
struct Clock {
    now: u32,
    in_pass: usize,
    pass_len: usize,
    step: u32,
}

impl Clock {
    fn new(pass_len: usize, step: u32) -> Clock {
        Clock {
            now: CLOCK_START,
            in_pass: 0,
            pass_len,
            step,
        }
    }

    /// Polls until `packets` frames were processed; returns the elapsed time.
    #[inline(never)]
    fn run(&mut self, packets: u64, mut poll: impl FnMut(u32) -> usize) -> Duration {
        let mut done = 0u64;
        let start = Instant::now();
        while done < packets {
            let n = poll(self.now);
            assert!(n > 0, "a cycling port never runs dry");
            done += n as u64;
            self.in_pass += n;
            if self.in_pass >= self.pass_len {
                self.in_pass -= self.pass_len;
                self.now = self.now.wrapping_add(self.step);
            }
        }
        start.elapsed()
    }

    /// Polls until `stop` is set (checked every 16 polls); returns the packets processed.
    #[inline(never)]
    fn run_until(&mut self, stop: &AtomicBool, mut poll: impl FnMut(u32) -> usize) -> u64 {
        let mut done = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..16 {
                let n = poll(self.now);
                assert!(n > 0, "a cycling port never runs dry");
                done += n as u64;
                self.in_pass += n;
                if self.in_pass >= self.pass_len {
                    self.in_pass -= self.pass_len;
                    self.now = self.now.wrapping_add(self.step);
                }
            }
        }
        done
    }
}

/// The calling thread's scheduler times (`/proc/thread-self/schedstat`): time on a CPU, and
/// time spent runnable but waiting for one (another task had it). `None` where the kernel
/// does not provide them.
fn sched_times() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let on_cpu = fields.next()??;
    let waited = fields.next()??;
    Some((Duration::from_nanos(on_cpu), Duration::from_nanos(waited)))
}

/// Share of `wall` a thread spent on a CPU between two [`sched_times`] readings.
fn cpu_share(
    before: Option<(Duration, Duration)>,
    after: Option<(Duration, Duration)>,
    wall: Duration,
) -> Option<f64> {
    let (b, a) = (before?, after?);
    Some((a.0.saturating_sub(b.0)).as_secs_f64() / wall.as_secs_f64().max(1e-9))
}

/// Timing of the runs of one scenario.
struct Timings {
    runs_ns: Vec<f64>,
    median_ns: f64,
    best_ns: f64,
}

impl Timings {
    fn new(durations: &[Duration], packets: u64) -> Timings {
        let runs_ns: Vec<f64> = durations
            .iter()
            .map(|d| d.as_secs_f64() * 1e9 / packets as f64)
            .collect();
        let mut sorted = runs_ns.clone();
        sorted.sort_by(f64::total_cmp);
        let median_ns = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        let best_ns = sorted.first().copied().unwrap_or(f64::NAN);
        Timings {
            runs_ns,
            median_ns,
            best_ns,
        }
    }
}

/// Runs every selected scenario, the baseline first; `progress` is told each scenario's name
/// before it starts (e.g. to print to stderr).
pub fn run(settings: &Settings, mut progress: impl FnMut(&str)) -> Report {
    let machine = Machine::detect();
    let burst = settings.burst.clamp(1, mux::dataplane::pipeline::MAX_BURST);
    let packets = settings.packets.max(1).div_ceil(burst as u64) * burst as u64;
    let runs = settings.runs.max(1);
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut order = vec![Scenario::Baseline];
    order.extend(
        settings
            .scenarios
            .iter()
            .copied()
            .filter(|s| *s != Scenario::Baseline),
    );
    let workers = settings.workers.max(1);
    let cpus = worker_cpus(workers.max(2));
    // The single worker runs on the first allowed CPU (the first parallel worker's); the
    // flow-log drainer of `new-flows-logged` takes the second, so it never competes with it.
    pin(cpus[0]);
    let spare_cpu = cpus[1].filter(|c| Some(*c) != cpus[0]);
    let mut baseline_ns: Option<f64> = None;
    for s in order {
        progress(s.name());
        let w = scenario::workload(s, settings.flows, burst);
        let mut r = if s == Scenario::Baseline {
            run_baseline(w, burst, packets, runs)
        } else {
            run_pipeline(w, burst, packets, runs, spare_cpu)
        };
        if let Some(b) = baseline_ns {
            r.vs_baseline = Some(r.ns_per_packet / b);
            r.over_baseline_ns = Some(r.ns_per_packet - b);
        } else {
            baseline_ns = Some(r.ns_per_packet);
        }
        if workers > 1 && s != Scenario::Baseline {
            progress(&format!("{} on {workers} workers", s.name()));
            let w = scenario::workload(s, settings.flows, burst);
            let run_time = Duration::from_secs_f64(r.ns_per_packet * packets as f64 / 1e9);
            let mut p = run_parallel(w, burst, run_time, runs, &cpus);
            p.scaling = p.mpps / r.mpps;
            p.scaling_on_cpu = r.cpu_share.and_then(|single| {
                let on_cpu: Option<f64> = p
                    .per_worker_mpps
                    .iter()
                    .zip(&p.per_worker_cpu_share)
                    .map(|(m, share)| share.map(|s| m / s))
                    .sum();
                on_cpu.map(|sum| sum / (r.mpps / single))
            });
            r.parallel = Some(p);
        }
        results.push(r);
    }
    Report {
        machine,
        settings: Settings {
            packets,
            burst,
            runs,
            workers,
            ..settings.clone()
        },
        results,
    }
}

fn run_baseline(w: Workload, burst: usize, packets: u64, runs: usize) -> ScenarioResult {
    let frames = w.frames.len();
    let port = MemPort::cycling(w.frames, 2 * burst, Capture::CountOnly);
    let mut fwd = MacSwapForwarder::new(port, burst);
    let mut clock = Clock::new(frames, 0);
    clock.run(frames as u64, |_| fwd.poll());
    let before = (fwd.forwarded, fwd.dropped);
    let durations: Vec<Duration> = (0..runs)
        .map(|_| clock.run(packets, |_| fwd.poll()))
        .collect();
    let total = packets * runs as u64;
    let counters = Counts {
        rx: total,
        forwarded: fwd.forwarded - before.0,
        dropped: fwd.dropped - before.1,
        ..Counts::default()
    };
    let mut warnings = Vec::new();
    if counters.forwarded != total {
        warnings.push(format!(
            "forwarded {} of {total} packets",
            counters.forwarded
        ));
    }
    finish(
        &w.scenario,
        frames,
        0,
        packets,
        runs,
        &durations,
        counters,
        warnings,
    )
}

/// `w` on the calling thread; `spare_cpu` is where a flow-log drainer may run.
fn run_pipeline(
    w: Workload,
    burst: usize,
    packets: u64,
    runs: usize,
    spare_cpu: Option<usize>,
) -> ScenarioResult {
    let frames = w.frames.len();
    let snap = w.snapshot;
    let port = MemPort::cycling(w.frames, 2 * burst, Capture::CountOnly);
    let mut pipeline = Pipeline::new(w.flow_capacity, FLOW_SEED);
    let drainer = (w.scenario == Scenario::NewFlowsLogged).then(|| {
        let (sink, source) = FlowLogSink::ring(FLOW_LOG_RING);
        pipeline = std::mem::replace(&mut pipeline, Pipeline::new(0, 0)).with_flow_log(sink);
        RingDrainer::start(source, spare_cpu)
    });
    let mut worker = Worker::new(port, pipeline, burst);
    let mut clock = Clock::new(frames, w.clock_step);
    clock.run(frames as u64, |now| worker.poll(&snap, now));
    let before = Counts::of(&worker.pipeline.counters);
    let sched_before = sched_times();
    let durations: Vec<Duration> = (0..runs)
        .map(|_| clock.run(packets, |now| worker.poll(&snap, now)))
        .collect();
    let share = cpu_share(sched_before, sched_times(), durations.iter().sum());
    let counters = Counts::of(&worker.pipeline.counters).minus(before);
    let mut warnings = check(w.scenario, &counters, packets * runs as u64);
    let mut notes = Vec::new();
    if let Some(d) = drainer {
        let drained = d.stop();
        if drained.popped == 0 {
            warnings.push("the flow-log ring was never drained".to_string());
        }
        if counters.flow_log_dropped != 0 {
            notes.push(format!(
                "{} flow-log records dropped (ring full) while the drainer was held off its CPU \
                 for up to {:.1} ms; those pushes failed, a little cheaper than queued ones",
                counters.flow_log_dropped,
                drained.longest_gap.as_secs_f64() * 1e3
            ));
        }
    }
    let mut r = finish(
        &w.scenario,
        frames,
        w.flow_capacity,
        packets,
        runs,
        &durations,
        counters,
        warnings,
    );
    r.cpu_share = share;
    r.notes = notes;
    r
}

/// Records the `new-flows-logged` ring holds: the daemon's default `queue_depth` (its
/// ~400 KiB stay in cache, as in the daemon).
const FLOW_LOG_RING: usize = mux::config::DEFAULT_FLOW_LOG_QUEUE_DEPTH;
/// How long the drainer sleeps between emptyings: at 11 M new flows per second (one worker of
/// this benchmark), a 4096-record ring fills in 0.37 ms, so it is emptied about every 0.1 ms
/// (the sleep, its timer slack, and the emptying itself). (The daemon's writer drains
/// every 20 ms: it keeps up with 200 000 new flows per second per worker, and a faster rate
/// drops records, counted.)
const FLOW_LOG_DRAIN: Duration = Duration::from_micros(50);

/// Share of flow-log records `new-flows-logged` may lose to a full ring and still count as
/// measuring the push. The drainer's CPU on these VMs is sometimes taken for milliseconds (a
/// 3.7 ms gap was seen with the drainer spinning on its own CPU), and the ring fills in
/// 0.37 ms; a failed push costs a few ns less than a queued one, so 5 % failed pushes move the
/// figure by well under a nanosecond, below the run-to-run spread. Any loss is printed as a
/// note; more than this is a warning.
const FLOW_LOG_DROP_TOLERATED: f64 = 0.05;

/// What a [`RingDrainer`] did.
#[derive(Default)]
struct Drained {
    /// Records it took off the ring.
    popped: u64,
    /// The longest time between two of its looks at the ring (it looks every
    /// [`FLOW_LOG_DRAIN`] when it has its CPU).
    longest_gap: Duration,
}

/// Stands in for the daemon's flow-log writer: a thread that keeps emptying the ring and
/// discards the records (formatting and writing are the writer's cost,
/// off the data path; what is measured is the worker's push).
struct RingDrainer {
    stop: std::sync::Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Drained>,
}

impl RingDrainer {
    /// The drainer empties the ring in bulk every [`FLOW_LOG_DRAIN`], as the daemon's writer
    /// does every 20 ms, so the ring's indices do not bounce between the cores on every
    /// record. Pinned to `cpu`, a CPU the worker does not use, it waits by watching the clock:
    /// a sleeping thread on these VMs sometimes woke milliseconds late (its virtual CPU had
    /// halted) and let the ring fill, and one popping record by record slowed the worker by
    /// half, pulling the ring's cache lines across on each record. Without a spare CPU it
    /// sleeps, sharing the worker's; the report warns if pushes failed.
    fn start(mut source: FlowLogSource, cpu: Option<usize>) -> RingDrainer {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let (running, started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let own_cpu = pin(cpu);
            let mut drained = Drained::default();
            let mut last = Instant::now();
            let _ = running.send(());
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                drained.longest_gap = drained.longest_gap.max(now - last);
                last = now;
                if let Ok(chunk) = source.read_chunk(source.slots()) {
                    drained.popped += chunk.len() as u64;
                    chunk.commit_all();
                }
                if own_cpu {
                    let until = Instant::now() + FLOW_LOG_DRAIN;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::sleep(FLOW_LOG_DRAIN);
                }
            }
            // What is left once the worker stopped: the ring is never left holding records.
            if let Ok(chunk) = source.read_chunk(source.slots()) {
                drained.popped += chunk.len() as u64;
                chunk.commit_all();
            }
            drained
        });
        // The worker starts once the drainer runs on its CPU: a thread can take milliseconds
        // to be first scheduled here, long enough to fill the ring.
        let _ = started.recv();
        RingDrainer { stop, thread }
    }

    /// Stops the thread; what it drained.
    fn stop(self) -> Drained {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    scenario: &Scenario,
    frames: usize,
    flow_capacity: usize,
    packets: u64,
    runs: usize,
    durations: &[Duration],
    counters: Counts,
    warnings: Vec<String>,
) -> ScenarioResult {
    let t = Timings::new(durations, packets);
    ScenarioResult {
        scenario: *scenario,
        description: scenario.description(),
        frames,
        flow_capacity,
        packets_per_run: packets,
        packets_total: packets * runs as u64,
        mpps: 1e3 / t.median_ns,
        ns_per_packet: t.median_ns,
        best_ns_per_packet: t.best_ns,
        runs_ns_per_packet: t.runs_ns,
        vs_baseline: None,
        over_baseline_ns: None,
        counters,
        warnings,
        notes: Vec::new(),
        cpu_share: None,
        parallel: None,
    }
}

/// The CPUs `workers` workers are pinned to: the CPUs this process may run on, in order, reused
/// round-robin when there are fewer than workers (then workers share cores, and a warning says
/// so). `None` where the CPU list cannot be read.
fn worker_cpus(workers: usize) -> Vec<Option<usize>> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    (0..workers)
        .map(|i| (!allowed.is_empty()).then(|| allowed[i % allowed.len()]))
        .collect()
}

/// Pins the calling thread to `cpu`; false when it could not be.
fn pin(cpu: Option<usize>) -> bool {
    cpu.is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }))
}

/// What one of the parallel workers measured, per timed run.
struct WorkerRun {
    packets: Vec<u64>,
    wall: Vec<Duration>,
    on_cpu: Option<Duration>,
    counters: Counts,
    pinned: bool,
}

/// `w` on one worker per entry of `cpus`, at once, for `runs` runs of `run_time` each (see the
/// module docs).
fn run_parallel(
    w: Workload,
    burst: usize,
    run_time: Duration,
    runs: usize,
    cpus: &[Option<usize>],
) -> Parallel {
    let workers = cpus.len();
    let Workload {
        scenario,
        snapshot,
        frames,
        clock_step,
        ..
    } = w;
    let mut queues = rss::split(frames, workers);
    // Whole bursts per pass, so the flow clock steps between bursts, as in the single run.
    for q in &mut queues {
        q.truncate(q.len() / burst * burst);
    }
    let frames_per_worker: Vec<usize> = queues.iter().map(Vec::len).collect();
    let mut p = Parallel {
        workers,
        cpus: cpus.to_vec(),
        frames_per_worker: frames_per_worker.clone(),
        run_seconds: run_time.as_secs_f64(),
        mpps: f64::NAN,
        runs_mpps: Vec::new(),
        per_worker_mpps: Vec::new(),
        per_worker_cpu_share: Vec::new(),
        scaling: f64::NAN,
        scaling_on_cpu: None,
        counters: Counts::default(),
        warnings: Vec::new(),
    };
    if frames_per_worker.contains(&0) {
        p.warnings.push(format!(
            "a worker got less than a burst of flows ({frames_per_worker:?}): use more --flows"
        ));
        return p;
    }
    // The workers and this thread meet twice per run: at its start, and after `stop`.
    let barrier = std::sync::Barrier::new(workers + 1);
    let stop = AtomicBool::new(false);
    let results: Vec<WorkerRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = queues
            .into_iter()
            .zip(cpus)
            .enumerate()
            .map(|(i, (frames, &cpu))| {
                let (barrier, stop, snapshot) = (&barrier, &stop, &snapshot);
                scope.spawn(move || {
                    let pinned = pin(cpu);
                    let job = ParallelJob {
                        index: i,
                        snapshot,
                        clock_step,
                        burst,
                        runs,
                        barrier,
                        stop,
                    };
                    WorkerRun {
                        pinned,
                        ..job.run(frames)
                    }
                })
            })
            .collect();
        for _ in 0..runs {
            barrier.wait();
            std::thread::sleep(run_time);
            stop.store(true, Ordering::Relaxed);
            barrier.wait();
            stop.store(false, Ordering::Relaxed);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a parallel worker panicked"))
            .collect()
    });
    for r in &results {
        p.counters = p.counters.plus(r.counters);
    }
    let total: u64 = results.iter().flat_map(|r| &r.packets).sum();
    p.warnings.extend(check(scenario, &p.counters, total));
    if results.iter().any(|r| !r.pinned) {
        p.warnings
            .push("some workers could not be pinned to their CPU".into());
    }
    let distinct: std::collections::HashSet<_> = cpus.iter().flatten().collect();
    if distinct.len() < workers {
        p.warnings.push(format!(
            "only {} CPUs for {workers} workers: workers share cores",
            distinct.len()
        ));
    }
    p.runs_mpps = (0..runs)
        .map(|run| {
            let packets: u64 = results.iter().map(|r| r.packets[run]).sum();
            let wall = results
                .iter()
                .map(|r| r.wall[run])
                .max()
                .unwrap_or_default();
            packets as f64 / wall.as_secs_f64() / 1e6
        })
        .collect();
    p.mpps = median(&p.runs_mpps);
    for r in &results {
        let packets: u64 = r.packets.iter().sum();
        let wall: Duration = r.wall.iter().sum();
        p.per_worker_mpps
            .push(packets as f64 / wall.as_secs_f64() / 1e6);
        p.per_worker_cpu_share
            .push(r.on_cpu.map(|c| c.as_secs_f64() / wall.as_secs_f64()));
    }
    p
}

/// One parallel worker's part: its own port, flow table and clock.
struct ParallelJob<'a> {
    index: usize,
    snapshot: &'a Snapshot,
    clock_step: u32,
    burst: usize,
    runs: usize,
    barrier: &'a std::sync::Barrier,
    stop: &'a AtomicBool,
}

impl ParallelJob<'_> {
    /// A warm-up pass, then `runs` runs, each from the barrier until `stop`.
    fn run(&self, frames: Vec<Vec<u8>>) -> WorkerRun {
        let pass = frames.len();
        let port = MemPort::cycling(frames, 2 * self.burst, Capture::CountOnly);
        let seed = FLOW_SEED ^ (self.index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let pipeline = Pipeline::new(pass * FLOW_TABLE_HEADROOM, seed);
        let mut worker = Worker::new(port, pipeline, self.burst);
        let mut clock = Clock::new(pass, self.clock_step);
        clock.run(pass as u64, |now| worker.poll(self.snapshot, now));
        let before = Counts::of(&worker.pipeline.counters);
        let (mut packets, mut wall) = (Vec::new(), Vec::new());
        let mut on_cpu = Some(Duration::ZERO);
        for _ in 0..self.runs {
            self.barrier.wait();
            let (start, sched) = (Instant::now(), sched_times());
            packets.push(clock.run_until(self.stop, |now| worker.poll(self.snapshot, now)));
            wall.push(start.elapsed());
            let used = sched_times()
                .zip(sched)
                .map(|(a, b)| a.0.saturating_sub(b.0));
            on_cpu = on_cpu.zip(used).map(|(sum, d)| sum + d);
            self.barrier.wait();
        }
        WorkerRun {
            packets,
            wall,
            on_cpu,
            counters: Counts::of(&worker.pipeline.counters).minus(before),
            pinned: true,
        }
    }
}

/// The middle value (NaN for none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What the counters of `scenario` must show over `total` packets; one message per mismatch.
pub fn check(scenario: Scenario, c: &Counts, total: u64) -> Vec<String> {
    let mut w = Vec::new();
    let share = |x: u64| x as f64 / total.max(1) as f64;
    if c.forwarded != total {
        w.push(format!("forwarded {} of {total} packets", c.forwarded));
    }
    if c.rx != total || c.outcomes() != c.rx {
        w.push(format!(
            "received {} of {total} packets, of which {} have an outcome",
            c.rx,
            c.outcomes()
        ));
    }
    if c.dropped != 0 || c.to_kernel != 0 {
        w.push(format!(
            "{} dropped and {} to the kernel",
            c.dropped, c.to_kernel
        ));
    }
    if share(c.flow_log_dropped) > FLOW_LOG_DROP_TOLERATED {
        w.push(format!(
            "{} of {total} flow-log records dropped (ring full): the figure is mostly failed pushes",
            c.flow_log_dropped
        ));
    }
    match scenario {
        Scenario::Established | Scenario::Ipv6 if share(c.flow_hits) < 0.99 => w.push(format!(
            "only {:.2} % flow hits (expected ≥ 99 %)",
            100.0 * share(c.flow_hits)
        )),
        Scenario::NewFlows | Scenario::NewFlowsLogged
            if c.new_flows + c.flow_table_full != total || c.flow_hits != 0 =>
        {
            w.push(format!(
                "{} new flows, {} table-full and {} hits of {total} packets (expected all misses)",
                c.new_flows, c.flow_table_full, c.flow_hits
            ))
        }
        Scenario::Mixed if !(0.09..=0.12).contains(&share(c.new_flows)) => w.push(format!(
            "{:.2} % new flows (expected about 10 %)",
            100.0 * share(c.new_flows)
        )),
        Scenario::SecondChance
            if c.second_chance_sent != total
                || c.new_flows + c.flow_table_full != total
                || c.flow_hits != 0 =>
        {
            w.push(format!(
                "{} with an alternative, {} new flows, {} table-full, {} hits of {total} packets \
                 (expected all misses with an alternative)",
                c.second_chance_sent, c.new_flows, c.flow_table_full, c.flow_hits
            ))
        }
        Scenario::SecondChanceFlows if share(c.second_chance_sent) < 0.99 || c.flow_hits != 0 => w
            .push(format!(
                "{} of {total} packets with an alternative, {} hits (expected all carried by \
                 second-chance entries)",
                c.second_chance_sent, c.flow_hits
            )),
        _ => {}
    }
    w
}

/// The report as a human-readable table.
pub fn render(report: &Report) -> String {
    let m = &report.machine;
    let s = &report.settings;
    let mut out = format!(
        "machine: {} ({} CPUs, allowed {}), kernel {}, load {}\n\
         settings: {} flows, {} packets/run, {} runs (median shown; best = fastest run), \
         burst {}\n\n",
        m.cpu,
        m.cpus,
        m.cpus_allowed,
        m.kernel,
        m.load_average,
        s.flows,
        s.packets,
        s.runs,
        s.burst
    );
    out.push_str(&format!(
        "{:<19} {:>9} {:>11} {:>7} {:>8} {:>7} {:>7} {:>8}  {:>11} {:>11} {:>9} {:>8} {:>6}\n",
        "scenario",
        "frames",
        "packets",
        "Mpps",
        "ns/pkt",
        "best",
        "x base",
        "+ns",
        "forwarded",
        "flow hits",
        "new flows",
        "evicted",
        "drops"
    ));
    for r in &report.results {
        let c = &r.counters;
        out.push_str(&format!(
            "{:<19} {:>9} {:>11} {:>7.2} {:>8.1} {:>7.1} {:>7} {:>8}  {:>11} {:>11} {:>9} {:>8} {:>6}\n",
            r.scenario.name(),
            r.frames,
            r.packets_total,
            r.mpps,
            r.ns_per_packet,
            r.best_ns_per_packet,
            r.vs_baseline.map_or("-".into(), |v| format!("{v:.2}")),
            r.over_baseline_ns.map_or("-".into(), |v| format!("{v:.1}")),
            c.forwarded,
            c.flow_hits,
            c.new_flows,
            c.flows_evicted,
            c.dropped
        ));
    }
    render_parallel(report, &mut out);
    out.push('\n');
    for r in &report.results {
        let runs: Vec<String> = r
            .runs_ns_per_packet
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect();
        out.push_str(&format!(
            "{:<19} {} (runs: {} ns/pkt)\n",
            r.scenario.name(),
            r.description,
            runs.join(", ")
        ));
        for w in &r.warnings {
            out.push_str(&format!("  WARNING: {w}\n"));
        }
        for n in &r.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        for w in r.parallel.iter().flat_map(|p| &p.warnings) {
            out.push_str(&format!(
                "  WARNING ({} workers): {w}\n",
                report.settings.workers
            ));
        }
    }
    out
}

/// The `--workers N` table: each scenario's single worker next to N workers in the same run.
fn render_parallel(report: &Report, out: &mut String) {
    let with: Vec<(&ScenarioResult, &Parallel)> = report
        .results
        .iter()
        .filter_map(|r| r.parallel.as_ref().map(|p| (r, p)))
        .collect();
    let Some((_, first)) = with.first() else {
        return;
    };
    let cpus: Vec<String> = first
        .cpus
        .iter()
        .map(|c| c.map_or("-".into(), |c| c.to_string()))
        .collect();
    out.push_str(&format!(
        "\n{} workers at once, pinned to CPUs {} (the single worker on CPU {}), flows split by \
         RSS (Toeplitz, 128-entry table), each run as long as the single worker's median run\n\
         (on-CPU: share of the wall time a worker had its core; scaling on CPU: packets per \
         CPU-second, summed over the workers, over the single worker's)\n",
        first.workers,
        cpus.join(","),
        cpus[0],
    ));
    out.push_str(&format!(
        "{:<12} {:>10} {:>7} {:>10} {:>8} {:>8}  {:<12} {:<14} {:<16} {}\n",
        "scenario",
        "1 wkr Mpps",
        "on-CPU",
        "N wkr Mpps",
        "scaling",
        "on CPU",
        "per wkr Mpps",
        "per wkr on-CPU",
        "flows per wkr",
        "aggregate runs (Mpps)"
    ));
    let pct = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s));
    for (r, p) in with {
        let per: Vec<String> = p
            .per_worker_mpps
            .iter()
            .map(|m| format!("{m:.2}"))
            .collect();
        let shares: Vec<String> = p.per_worker_cpu_share.iter().map(|s| pct(*s)).collect();
        let flows: Vec<String> = p.frames_per_worker.iter().map(usize::to_string).collect();
        let runs: Vec<String> = p.runs_mpps.iter().map(|m| format!("{m:.2}")).collect();
        out.push_str(&format!(
            "{:<12} {:>10.2} {:>7} {:>10.2} {:>7.2}x {:>8}  {:<12} {:<14} {:<16} {}\n",
            r.scenario.name(),
            r.mpps,
            pct(r.cpu_share),
            p.mpps,
            p.scaling,
            p.scaling_on_cpu.map_or("-".into(), |s| format!("{s:.2}x")),
            per.join(" "),
            shares.join(" "),
            flows.join(" "),
            runs.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Report {
        run(
            &Settings {
                flows: 2_000,
                packets: 20_000,
                burst: 32,
                runs: 2,
                scenarios: Scenario::ALL.to_vec(),
                workers: 1,
            },
            |_| {},
        )
    }

    #[test]
    fn every_scenario_does_the_work_it_claims() {
        let report = small();
        let names: Vec<&str> = report.results.iter().map(|r| r.scenario.name()).collect();
        assert_eq!(
            names,
            [
                "baseline",
                "established",
                "new-flows",
                "new-flows-logged",
                "mixed",
                "ipv6",
                "second-chance",
                "second-chance-flows"
            ]
        );
        for r in &report.results {
            // Under a parallel test run the drainer may be starved of its CPU and the ring fill:
            // that is the machine, not the scenario; the records' count is checked below.
            let warnings: Vec<&String> = r
                .warnings
                .iter()
                .filter(|w| !(r.scenario == Scenario::NewFlowsLogged && w.contains("(ring full)")))
                .collect();
            assert!(warnings.is_empty(), "{}: {warnings:?}", r.scenario.name());
            assert_eq!(r.packets_per_run, 20_000, "already a multiple of 32");
            assert_eq!(r.packets_total, 40_000);
            assert_eq!(r.counters.forwarded, 40_000);
            assert_eq!(r.runs_ns_per_packet.len(), 2);
            assert!(r.ns_per_packet > 0.0 && r.mpps > 0.0);
            assert_eq!(r.vs_baseline.is_none(), r.scenario == Scenario::Baseline);
        }
        let by = |s: Scenario| {
            &report
                .results
                .iter()
                .find(|r| r.scenario == s)
                .unwrap()
                .counters
        };
        // Every packet misses; a handful may meet a bucket of live established entries left by
        // the warm-up and be forwarded unstored (counted as table-full).
        let new = by(Scenario::NewFlows);
        assert_eq!(new.new_flows + new.flow_table_full, 40_000);
        assert!(new.new_flows >= 39_600);
        assert_eq!(new.flow_hits, 0);
        let logged = by(Scenario::NewFlowsLogged);
        assert_eq!(logged.new_flows + logged.flow_table_full, 40_000);
        // Every new flow pushed a record; the drainer took some (no "never drained" warning
        // above), so not every push can have failed.
        assert!(
            logged.flow_log_dropped < 40_000,
            "{}",
            logged.flow_log_dropped
        );
        let mixed = by(Scenario::Mixed);
        assert_eq!(
            mixed.new_flows + mixed.flow_hits + mixed.flow_table_full,
            40_000
        );
        assert!(by(Scenario::Established).flow_hits >= 39_600);
        assert!(by(Scenario::Ipv6).flow_hits >= 39_600);
        let sc = by(Scenario::SecondChance);
        assert_eq!(sc.second_chance_sent, 40_000);
        assert_eq!(sc.new_flows + sc.flow_table_full, 40_000);
        let carried = by(Scenario::SecondChanceFlows);
        assert_eq!(carried.second_chance_sent, 40_000);
        // As for `established`: a bucket overflow re-creates a few entries each pass.
        assert!(carried.new_flows <= 400 && carried.flow_hits == 0);
        let text = render(&report);
        assert!(text.contains("new-flows"));
        assert!(
            text.lines()
                .all(|l| !l.contains("WARNING") || l.contains("(ring full)")),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["results"][2]["scenario"], "new-flows");
        assert!(
            json["results"][2]["counters"]["new_flows"]
                .as_u64()
                .unwrap()
                >= 39_600
        );
    }

    #[test]
    fn two_workers_split_the_flows_and_do_the_same_work() {
        let report = run(
            &Settings {
                flows: 4_000,
                packets: 8_000,
                burst: 32,
                runs: 2,
                scenarios: vec![Scenario::Established, Scenario::NewFlows],
                workers: 2,
            },
            |_| {},
        );
        assert!(report.results[0].parallel.is_none(), "not for the baseline");
        for r in &report.results[1..] {
            let p = r.parallel.as_ref().expect("measured on 2 workers");
            let checks: Vec<&String> = p
                .warnings
                .iter()
                .filter(|w| !w.contains("CPUs for") && !w.contains("pinned"))
                .collect();
            assert!(checks.is_empty(), "{}: {checks:?}", r.scenario.name());
            assert_eq!(p.workers, 2);
            assert!(p.counters.forwarded > 0 && p.counters.forwarded == p.counters.rx);
            let flows: usize = p.frames_per_worker.iter().sum();
            assert!(flows > 4_000 - 64 && p.frames_per_worker.iter().all(|&n| n > 1_500));
            assert!(p.mpps > 0.0 && p.scaling > 0.0 && p.runs_mpps.len() == 2);
        }
        let text = render(&report);
        assert!(text.contains("2 workers at once") && text.contains("scaling"));
    }

    #[test]
    fn check_flags_counters_that_do_not_match_the_claim() {
        let c = Counts {
            rx: 100,
            forwarded: 100,
            flow_hits: 50,
            new_flows: 50,
            ..Counts::default()
        };
        assert!(check(Scenario::Mixed, &c, 100)[0].contains("50.00 % new flows"));
        assert!(check(Scenario::Established, &c, 100)[0].contains("50.00 % flow hits"));
        assert!(check(Scenario::NewFlows, &c, 100)[0].contains("expected all misses"));
        let short = Counts { forwarded: 99, ..c };
        assert!(check(Scenario::Ipv6, &short, 100)[0].contains("forwarded 99 of 100"));
        assert!(check(Scenario::Ipv6, &short, 100)[1].contains("of which 99 have an outcome"));
        let counted = Counts::of(&WorkerCounters {
            rx: 3,
            forwarded: 1,
            icmp_too_big_sent: 1,
            drain_resets_sent: 1,
            ..WorkerCounters::default()
        });
        assert_eq!(counted.outcomes(), 3);
    }

    #[test]
    fn median_is_the_middle_run() {
        let t = Timings::new(
            &[
                Duration::from_nanos(300),
                Duration::from_nanos(100),
                Duration::from_nanos(200),
            ],
            10,
        );
        assert_eq!(t.runs_ns, vec![30.0, 10.0, 20.0]);
        assert_eq!(t.median_ns, 20.0);
        assert_eq!(t.best_ns, 10.0);
    }
}
