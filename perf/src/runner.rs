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

use std::time::{Duration, Instant};

use serde::Serialize;

use mux::dataplane::counters::WorkerCounters;
use mux::dataplane::pipeline::Pipeline;
use mux::dataplane::worker::Worker;
use mux_shared::port::mem::{Capture, MemPort};

use crate::baseline::MacSwapForwarder;
use crate::scenario::{self, Scenario, Workload};

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

/// The pipeline counters that show what work was done, over the timed runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Frames received.
    pub rx: u64,
    /// Frames transmitted (encapsulated, or MAC-swapped for the baseline).
    pub forwarded: u64,
    /// Packets whose flow was found in the table.
    pub flow_hits: u64,
    /// Packets that created a flow entry.
    pub new_flows: u64,
    /// New flows that evicted a live entry.
    pub flows_evicted: u64,
    /// New flows that found their bucket full.
    pub flow_table_full: u64,
    /// Frames handed to the kernel.
    pub to_kernel: u64,
    /// Frames dropped, all reasons.
    pub dropped: u64,
    /// Frames sent with an alternative backend in the outer header (second chance).
    pub second_chance_sent: u64,
}

impl Counts {
    fn of(c: &WorkerCounters) -> Counts {
        Counts {
            rx: c.rx,
            forwarded: c.forwarded,
            flow_hits: c.flow_hits,
            new_flows: c.new_flows,
            flows_evicted: c.flows_evicted,
            flow_table_full: c.flow_table_full,
            to_kernel: c.to_kernel,
            dropped: c.dropped_total(),
            second_chance_sent: c.second_chance_sent,
        }
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            rx: self.rx - o.rx,
            forwarded: self.forwarded - o.forwarded,
            flow_hits: self.flow_hits - o.flow_hits,
            new_flows: self.new_flows - o.new_flows,
            flows_evicted: self.flows_evicted - o.flows_evicted,
            flow_table_full: self.flow_table_full - o.flow_table_full,
            to_kernel: self.to_kernel - o.to_kernel,
            dropped: self.dropped - o.dropped,
            second_chance_sent: self.second_chance_sent - o.second_chance_sent,
        }
    }
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
}

/// A whole `perf pipeline` report.
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
    let mut baseline_ns: Option<f64> = None;
    for s in order {
        progress(s.name());
        let w = scenario::workload(s, settings.flows, burst);
        let mut r = if s == Scenario::Baseline {
            run_baseline(w, burst, packets, runs)
        } else {
            run_pipeline(w, burst, packets, runs)
        };
        if let Some(b) = baseline_ns {
            r.vs_baseline = Some(r.ns_per_packet / b);
            r.over_baseline_ns = Some(r.ns_per_packet - b);
        } else {
            baseline_ns = Some(r.ns_per_packet);
        }
        results.push(r);
    }
    Report {
        machine,
        settings: Settings {
            packets,
            burst,
            runs,
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

fn run_pipeline(w: Workload, burst: usize, packets: u64, runs: usize) -> ScenarioResult {
    let frames = w.frames.len();
    let snap = w.snapshot;
    let port = MemPort::cycling(w.frames, 2 * burst, Capture::CountOnly);
    let mut worker = Worker::new(port, Pipeline::new(w.flow_capacity, FLOW_SEED), burst);
    let mut clock = Clock::new(frames, w.clock_step);
    clock.run(frames as u64, |now| worker.poll(&snap, now));
    let before = Counts::of(&worker.pipeline.counters);
    let durations: Vec<Duration> = (0..runs)
        .map(|_| clock.run(packets, |now| worker.poll(&snap, now)))
        .collect();
    let counters = Counts::of(&worker.pipeline.counters).minus(before);
    let warnings = check(w.scenario, &counters, packets * runs as u64);
    finish(
        &w.scenario,
        frames,
        w.flow_capacity,
        packets,
        runs,
        &durations,
        counters,
        warnings,
    )
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
    }
}

/// What the counters of `scenario` must show over `total` packets; one message per mismatch.
pub fn check(scenario: Scenario, c: &Counts, total: u64) -> Vec<String> {
    let mut w = Vec::new();
    let share = |x: u64| x as f64 / total.max(1) as f64;
    if c.forwarded != total {
        w.push(format!("forwarded {} of {total} packets", c.forwarded));
    }
    if c.dropped != 0 || c.to_kernel != 0 {
        w.push(format!(
            "{} dropped and {} to the kernel",
            c.dropped, c.to_kernel
        ));
    }
    match scenario {
        Scenario::Established | Scenario::Ipv6 if share(c.flow_hits) < 0.99 => w.push(format!(
            "only {:.2} % flow hits (expected ≥ 99 %)",
            100.0 * share(c.flow_hits)
        )),
        Scenario::NewFlows if c.new_flows + c.flow_table_full != total || c.flow_hits != 0 => w
            .push(format!(
                "{} new flows, {} table-full and {} hits of {total} packets (expected all misses)",
                c.new_flows, c.flow_table_full, c.flow_hits
            )),
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
    }
    out
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
                "mixed",
                "ipv6",
                "second-chance",
                "second-chance-flows"
            ]
        );
        for r in &report.results {
            assert!(
                r.warnings.is_empty(),
                "{}: {:?}",
                r.scenario.name(),
                r.warnings
            );
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
        assert!(text.contains("new-flows") && !text.contains("WARNING"));
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
