//! `perf lab-summary`: the lab's verdict, from the reports its rounds left in a directory.
//!
//! The lab script (`scripts/lab`) runs traffic in *rounds* and keeps every report:
//!
//! ```text
//! RESULTS/lab.json                 {"muxes": {"mux1": "10.0.11.2", ...}, "io": "afxdp", ...}
//! RESULTS/<NN-name>/round.json     what the round is and what it must show (RoundSpec)
//! RESULTS/<NN-name>/gen.json       the generator's report
//! RESULTS/<NN-name>/sink-*.json    one report per host
//! RESULTS/<NN-name>/status-<mux>-before.json, status-<mux>-after.json   GET /v1/status
//! RESULTS/<NN-name>/cpu-<mux>-before.json, cpu-<mux>-after.json   the MUX process's CPU time
//! RESULTS/<NN-name>/cpu-machine-before.json, cpu-machine-after.json   /proc/stat's cpu line
//! ```
//!
//! The CPU files are taken right before the generator starts and right after it ends; from
//! them the summary prints the MUX's CPU time per packet it forwarded (all its threads, user
//! and system: what the MUX process costs per packet, busy polling included) and the whole
//! machine's busy and softirq time per delivered packet (generator, sinks and the kernel's
//! forwarding included: the only CPU figure a Linux-forwarding baseline has).
//!
//! [`load`] reads that, [`evaluate`] computes per round: packets sent and delivered, loss,
//! rate, packets per MUX (as the sinks saw them by outer source, and as each MUX counted them),
//! per backend, and checks the round's expectations; across rounds it checks that every flow was
//! encapsulated to one backend whichever MUX carried it, and computes the MUX path's rate as a
//! ratio of the plain-forwarding baseline. [`render`] prints it for people.
//!
//! Checks that always apply to rounds through the MUXes: no invalid encapsulation, no VIP packet
//! leaked unencapsulated, one backend per flow. `strict` rounds (fixed moderate rate) also
//! demand zero loss and every flow delivered; throughput rounds (flat out) only measure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::generator::GenReport;
use super::sink::SinkReport;
use super::{FiveTuple, Service};

/// The lab-wide facts (`lab.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabInfo {
    /// MUX name → its tunnel source address.
    pub muxes: BTreeMap<String, IpAddr>,
    /// Packet I/O of the MUXes (`afxdp`, `afpacket`).
    #[serde(default)]
    pub io: String,
}

/// What a round is and what it must show (`round.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoundSpec {
    /// Short name.
    pub name: String,
    /// One line for people.
    pub title: String,
    /// `"mux"` (through the VIP) or `"baseline"` (plain forwarding).
    pub kind: String,
    /// Zero loss and every flow delivered required.
    pub strict: bool,
    /// These MUXes must each have carried traffic.
    pub expect_muxes: Vec<String>,
    /// No MUX other than `expect_muxes` may have carried traffic.
    pub only_muxes: bool,
    /// These MUXes must show more successful reloads after the round than before.
    pub expect_reloads_ok: Vec<String>,
    /// These MUXes must show more refused reloads after the round than before.
    pub expect_reloads_failed: Vec<String>,
    /// Some flows must have been carried by another MUX than in an earlier round.
    pub expect_moved: bool,
    /// The round measures throughput (its rate is compared with the baseline's).
    pub throughput: bool,
}

/// A process's CPU time (`/proc/PID/stat` fields 14 and 15), as the lab writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcCpu {
    /// User time, clock ticks.
    pub utime: u64,
    /// System time, clock ticks.
    pub stime: u64,
    /// Clock ticks per second (`getconf CLK_TCK`).
    pub hz: u64,
}

/// The machine's CPU time (`/proc/stat`'s `cpu` line, all CPUs), as the lab writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineCpu {
    /// User time, ticks.
    pub user: u64,
    /// Niced user time, ticks.
    pub nice: u64,
    /// System time, ticks.
    pub system: u64,
    /// Idle time, ticks.
    pub idle: u64,
    /// I/O wait, ticks.
    pub iowait: u64,
    /// Hard interrupts, ticks.
    pub irq: u64,
    /// Soft interrupts (the kernel's packet forwarding, veth NAPI, XDP), ticks.
    pub softirq: u64,
    /// Ticks per second.
    pub hz: u64,
}

impl MachineCpu {
    fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }
}

/// Seconds of CPU between two [`ProcCpu`] readings (`None` unless both exist, with the same
/// clock, and time did not run backwards: a restarted process).
pub fn proc_cpu_seconds(pair: &(Option<ProcCpu>, Option<ProcCpu>)) -> Option<f64> {
    let (Some(b), Some(a)) = pair else {
        return None;
    };
    let (tb, ta) = (b.utime + b.stime, a.utime + a.stime);
    (a.hz == b.hz && a.hz > 0 && ta >= tb).then(|| (ta - tb) as f64 / a.hz as f64)
}

/// Machine CPU over a round: (busy seconds, softirq seconds, seconds elapsed × CPUs).
pub fn machine_cpu_seconds(
    pair: &(Option<MachineCpu>, Option<MachineCpu>),
) -> Option<MachineSeconds> {
    let (Some(b), Some(a)) = pair else {
        return None;
    };
    let total = |c: &MachineCpu| c.busy() + c.idle + c.iowait;
    if a.hz != b.hz
        || a.hz == 0
        || total(a) < total(b)
        || a.busy() < b.busy()
        || a.softirq < b.softirq
        || a.nice < b.nice
    {
        return None;
    }
    let hz = a.hz as f64;
    Some(MachineSeconds {
        busy: (a.busy() - b.busy()) as f64 / hz,
        softirq: (a.softirq - b.softirq) as f64 / hz,
        nice: (a.nice - b.nice) as f64 / hz,
        available: (total(a) - total(b)) as f64 / hz,
    })
}

/// CPU seconds per packet in nanoseconds; `None` without packets.
pub fn ns_per_packet(seconds: f64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| seconds * 1e9 / packets as f64)
}

/// The whole machine's CPU over a round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MachineSeconds {
    /// Busy (user, nice, system, irq, softirq) seconds, all CPUs.
    pub busy: f64,
    /// Of which softirq.
    pub softirq: f64,
    /// Of which niced user time: on the lab machine, someone else's work (the lab runs nothing
    /// niced), so a round with much of it was disturbed.
    pub nice: f64,
    /// Wall seconds × CPUs (busy + idle + iowait).
    pub available: f64,
}

/// One round's inputs.
#[derive(Clone, Debug)]
pub struct Round {
    /// Directory it was read from.
    pub dir: PathBuf,
    /// What it must show.
    pub spec: RoundSpec,
    /// The generator's report.
    pub generator: GenReport,
    /// The sinks' reports.
    pub sinks: Vec<SinkReport>,
    /// MUX name → (`/v1/status` before, after), either missing when the MUX was not running.
    pub status: BTreeMap<String, (Option<Value>, Option<Value>)>,
    /// MUX name → its process's CPU time (before, after the generator), either missing.
    pub cpu: BTreeMap<String, (Option<ProcCpu>, Option<ProcCpu>)>,
    /// The machine's CPU time before and after the generator.
    pub machine_cpu: (Option<MachineCpu>, Option<MachineCpu>),
}

/// A whole lab run's inputs.
#[derive(Clone, Debug)]
pub struct LabRun {
    /// Lab facts.
    pub info: LabInfo,
    /// Rounds in order.
    pub rounds: Vec<Round>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `dir/file` if it exists (an error if it exists and does not parse).
fn optional<T: for<'de> Deserialize<'de>>(dir: &Path, file: &str) -> Result<Option<T>, String> {
    let p = dir.join(file);
    p.is_file().then(|| read_json(&p)).transpose()
}

/// Reads a results directory (layout in the module doc).
pub fn load(dir: &Path) -> Result<LabRun, String> {
    let info: LabInfo = read_json(&dir.join("lab.json"))?;
    let mut round_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("round.json").is_file())
        .collect();
    round_dirs.sort();
    let mut rounds = Vec::new();
    for rd in round_dirs {
        let spec: RoundSpec = read_json(&rd.join("round.json"))?;
        let generator: GenReport = read_json(&rd.join("gen.json"))?;
        let mut sink_paths: Vec<PathBuf> = std::fs::read_dir(&rd)
            .map_err(|e| format!("cannot list {}: {e}", rd.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sink-") && n.ends_with(".json"))
            })
            .collect();
        sink_paths.sort();
        let sinks = sink_paths
            .iter()
            .map(|p| read_json(p))
            .collect::<Result<Vec<SinkReport>, _>>()?;
        let mut cpu = BTreeMap::new();
        for name in info.muxes.keys() {
            cpu.insert(
                name.clone(),
                (
                    optional(&rd, &format!("cpu-{name}-before.json"))?,
                    optional(&rd, &format!("cpu-{name}-after.json"))?,
                ),
            );
        }
        let machine_cpu = (
            optional(&rd, "cpu-machine-before.json")?,
            optional(&rd, "cpu-machine-after.json")?,
        );
        let mut status = BTreeMap::new();
        for name in info.muxes.keys() {
            let get = |when: &str| {
                let p = rd.join(format!("status-{name}-{when}.json"));
                if p.is_file() {
                    read_json::<Value>(&p).ok()
                } else {
                    None
                }
            };
            status.insert(name.clone(), (get("before"), get("after")));
        }
        rounds.push(Round {
            dir: rd,
            spec,
            generator,
            sinks,
            status,
            cpu,
            machine_cpu,
        });
    }
    if rounds.is_empty() {
        return Err(format!(
            "no rounds (directories with round.json) in {}",
            dir.display()
        ));
    }
    Ok(LabRun { info, rounds })
}

/// One check and whether it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, for people.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
}

/// Per-MUX figures of a round.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MuxFigures {
    /// Packets the sinks received from this MUX (outer source).
    pub at_sinks: u64,
    /// `counters.forwarded` after minus before, when both were read.
    pub forwarded: Option<u64>,
    /// Frames the MUX's ports could not transmit during the round (`workers[].port.tx_dropped`).
    pub port_tx_dropped: Option<u64>,
    /// Frames the MUX's ports lost on receive during the round (`workers[].port.rx_dropped`,
    /// plus the NIC's `imissed` and `rx_nombuf` under `workers[].port.nic` on DPDK).
    pub port_rx_dropped: Option<u64>,
    /// Phase after the round (`ready`, `draining`...), or `stopped`.
    pub phase_after: String,
    /// CPU seconds the MUX process used while the generator sent.
    pub cpu_seconds: Option<f64>,
}

/// One round's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RoundOutcome {
    /// Name.
    pub name: String,
    /// Title.
    pub title: String,
    /// Kind.
    pub kind: String,
    /// Frames the generator sent.
    pub sent: u64,
    /// Frames delivered to the sinks (valid encapsulated, or plain to the destination).
    pub delivered: u64,
    /// Invalid encapsulated packets.
    pub invalid: u64,
    /// `sent - delivered` (negative: duplicates).
    pub lost: i64,
    /// Generator's rate, packets per second.
    pub sent_pps: f64,
    /// Delivered packets per second of sending time.
    pub delivered_pps: f64,
    /// Flows the generator sent.
    pub flows_sent: usize,
    /// Of those, flows seen at a sink.
    pub flows_delivered: usize,
    /// Per MUX name.
    pub per_mux: BTreeMap<String, MuxFigures>,
    /// Packets per backend.
    pub per_backend: BTreeMap<IpAddr, u64>,
    /// Invalid packets by reason.
    pub invalid_reasons: BTreeMap<String, u64>,
    /// Flows carried by a different MUX than in an earlier round.
    pub moved_flows: usize,
    /// Frame size.
    pub size: usize,
    /// The MUXes' CPU time (all MUX processes) per packet they forwarded, nanoseconds.
    pub mux_cpu_ns_per_packet: Option<f64>,
    /// The machine's CPU over the round.
    pub machine: Option<MachineSeconds>,
    /// How the generator sent (`batch 32`, `single`).
    pub tx: String,
    /// The round's checks.
    pub checks: Vec<Check>,
}

/// The whole verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// MUX I/O.
    pub io: String,
    /// Rounds.
    pub rounds: Vec<RoundOutcome>,
    /// Distinct flows seen through the MUXes.
    pub flows_total: usize,
    /// Flows carried by more than one MUX over the run.
    pub flows_multi_mux: usize,
    /// Flows that reached more than one backend (must be 0), with their backends.
    pub inconsistent: Vec<(FiveTuple, Vec<IpAddr>)>,
    /// Delivered pps of the throughput round through the MUXes.
    pub mux_pps: Option<f64>,
    /// Delivered pps of each baseline throughput round: (name, title, pps).
    pub baselines: Vec<(String, String, f64)>,
    /// The MUXes' CPU per forwarded packet in the throughput round through them, ns.
    pub mux_cpu_ns_per_packet: Option<f64>,
    /// Cross-round checks.
    pub checks: Vec<Check>,
}

impl Outcome {
    /// True when every check of every round and across rounds held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
            && self.rounds.iter().all(|r| r.checks.iter().all(|c| c.ok))
    }

    /// The MUX path's rate as a fraction of the first baseline's.
    pub fn ratio(&self) -> Option<f64> {
        match (self.mux_pps, self.baselines.first()) {
            (Some(m), Some((_, _, b))) if *b > 0.0 => Some(m / b),
            _ => None,
        }
    }
}

fn counter(v: &Option<Value>, path: &[&str]) -> Option<u64> {
    let mut cur = v.as_ref()?;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
}

fn delta(pair: &(Option<Value>, Option<Value>), path: &[&str]) -> Option<u64> {
    Some(counter(&pair.1, path)?.saturating_sub(counter(&pair.0, path)?))
}

/// Sum over `workers[].port.<field>`.
fn port_counter(v: &Option<Value>, field: &str) -> Option<u64> {
    let workers = v.as_ref()?.get("workers")?.as_array()?;
    let mut sum = 0;
    for w in workers {
        sum += w.get("port")?.get(field)?.as_u64()?;
    }
    Some(sum)
}

fn port_delta(pair: &(Option<Value>, Option<Value>), field: &str) -> Option<u64> {
    Some(port_counter(&pair.1, field)?.saturating_sub(port_counter(&pair.0, field)?))
}

/// The DPDK NIC's whole-device receive losses (`workers[].port.nic`: `imissed`, the workers
/// fell behind; `rx_nombuf`, the pool ran dry); 0 for ports without NIC counters.
fn nic_rx_lost(v: &Option<Value>) -> u64 {
    let Some(workers) = v.as_ref().and_then(|v| v.get("workers")?.as_array()) else {
        return 0;
    };
    let nic = |w: &Value, f: &str| w.get("port")?.get("nic")?.get(f)?.as_u64();
    workers
        .iter()
        .map(|w| nic(w, "imissed").unwrap_or(0) + nic(w, "rx_nombuf").unwrap_or(0))
        .sum()
}

/// Receive losses over the round: the ports' own and, on DPDK, the NIC's.
fn port_rx_lost_delta(pair: &(Option<Value>, Option<Value>)) -> Option<u64> {
    let nic = nic_rx_lost(&pair.1).saturating_sub(nic_rx_lost(&pair.0));
    Some(port_delta(pair, "rx_dropped")? + nic)
}

/// Computes every figure and check.
pub fn evaluate(run: &LabRun) -> Outcome {
    let by_addr: BTreeMap<IpAddr, &str> = run
        .info
        .muxes
        .iter()
        .map(|(n, a)| (*a, n.as_str()))
        .collect();
    // Flow → backends and MUXes over all MUX rounds so far.
    let mut backends: BTreeMap<FiveTuple, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut muxes_seen: BTreeMap<FiveTuple, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut rounds = Vec::new();
    let mut mux_pps = None;
    let mut mux_cpu_ns_per_packet = None;
    let mut baselines = Vec::new();
    for round in &run.rounds {
        let g = &round.generator;
        let spec = &round.spec;
        let is_mux = spec.kind != "baseline";
        let mut checks = Vec::new();
        let mut per_backend: BTreeMap<IpAddr, u64> = BTreeMap::new();
        let mut invalid_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut at_sinks: BTreeMap<IpAddr, u64> = BTreeMap::new();
        let mut round_flows: BTreeMap<FiveTuple, BTreeSet<IpAddr>> = BTreeMap::new();
        let (mut delivered, mut invalid, mut leaked, mut sink_drops) = (0u64, 0u64, 0u64, 0u64);
        for s in &round.sinks {
            invalid += s.invalid;
            leaked += s.plain_to_vip;
            sink_drops += s.sink_drops;
            for (k, v) in &s.invalid_reasons {
                *invalid_reasons.entry(k.clone()).or_default() += v;
            }
            if is_mux {
                delivered += s.encapsulated;
                for (b, n) in &s.per_backend {
                    *per_backend.entry(*b).or_default() += n;
                }
                for (m, n) in &s.per_mux {
                    *at_sinks.entry(*m).or_default() += n;
                }
                for f in &s.flows {
                    round_flows
                        .entry(f.flow)
                        .or_default()
                        .extend(f.muxes.keys().copied());
                    backends
                        .entry(f.flow)
                        .or_default()
                        .extend(f.backends.keys().copied());
                }
            } else {
                delivered += s
                    .plain_per_destination
                    .get(&g.destination)
                    .copied()
                    .unwrap_or(0);
            }
        }
        let dest: Option<Service> = g.destination.parse().ok();
        let flows_delivered = match dest {
            Some(d) if is_mux => g
                .flow_list
                .iter()
                .filter(|f| {
                    round_flows.contains_key(&FiveTuple {
                        src: f.src,
                        sport: f.sport,
                        dst: d.addr,
                        dport: d.port,
                        protocol: d.protocol,
                    })
                })
                .count(),
            _ => 0,
        };
        let mut moved = 0;
        for (flow, ms) in &round_flows {
            if let Some(before) = muxes_seen.get(flow)
                && !ms.is_subset(before)
            {
                moved += 1;
            }
        }
        for (flow, ms) in &round_flows {
            muxes_seen
                .entry(*flow)
                .or_default()
                .extend(ms.iter().copied());
        }
        let per_mux: BTreeMap<String, MuxFigures> = run
            .info
            .muxes
            .iter()
            .map(|(name, addr)| {
                let pair = round.status.get(name).cloned().unwrap_or((None, None));
                let phase_after = pair
                    .1
                    .as_ref()
                    .and_then(|v| v.get("phase"))
                    .and_then(Value::as_str)
                    .unwrap_or("stopped")
                    .to_string();
                (
                    name.clone(),
                    MuxFigures {
                        at_sinks: at_sinks.get(addr).copied().unwrap_or(0),
                        forwarded: delta(&pair, &["counters", "forwarded"]),
                        port_tx_dropped: port_delta(&pair, "tx_dropped"),
                        port_rx_dropped: port_rx_lost_delta(&pair),
                        phase_after,
                        cpu_seconds: round.cpu.get(name).and_then(proc_cpu_seconds),
                    },
                )
            })
            .collect();
        let unknown_mux: u64 = at_sinks
            .iter()
            .filter(|(a, _)| !by_addr.contains_key(a))
            .map(|(_, n)| n)
            .sum();
        let lost = g.sent as i64 - delivered as i64;
        let delivered_pps = if g.elapsed_seconds > 0.0 {
            delivered as f64 / g.elapsed_seconds
        } else {
            0.0
        };
        let mut check = |what: String, ok: bool| checks.push(Check { what, ok });
        check(format!("generator sent packets ({})", g.sent), g.sent > 0);
        if spec.strict {
            check(
                format!("no loss: {delivered} of {} delivered", g.sent),
                lost == 0 && g.dropped_on_send == 0,
            );
        }
        if is_mux {
            check(
                format!("every packet encapsulated correctly ({invalid} invalid)"),
                invalid == 0,
            );
            check(
                format!("no VIP packet left unencapsulated ({leaked} seen)"),
                leaked == 0,
            );
            check(
                format!("only known MUXes as tunnel sources ({unknown_mux} from others)"),
                unknown_mux == 0,
            );
            if spec.strict {
                check(
                    format!(
                        "every flow delivered: {flows_delivered} of {}",
                        g.flow_list.len()
                    ),
                    flows_delivered == g.flow_list.len(),
                );
            }
        }
        for name in &spec.expect_muxes {
            let n = per_mux.get(name).map_or(0, |m| m.at_sinks);
            check(format!("{name} carried traffic ({n} packets)"), n > 0);
        }
        if spec.only_muxes {
            let others: u64 = per_mux
                .iter()
                .filter(|(n, _)| !spec.expect_muxes.contains(n))
                .map(|(_, m)| m.at_sinks)
                .sum();
            check(
                format!(
                    "only {} carried traffic ({others} packets via others)",
                    spec.expect_muxes.join(", ")
                ),
                others == 0 && unknown_mux == 0,
            );
        }
        for (names, field) in [
            (&spec.expect_reloads_ok, "ok"),
            (&spec.expect_reloads_failed, "failed"),
        ] {
            for name in names {
                let d = round
                    .status
                    .get(name)
                    .and_then(|p| delta(p, &["reloads", field]));
                let what = if field == "ok" {
                    "reload applied"
                } else {
                    "bad config refused"
                };
                check(
                    format!(
                        "{name}: {what} (reloads.{field} +{})",
                        d.map_or("?".into(), |d| d.to_string())
                    ),
                    d.is_some_and(|d| d > 0),
                );
            }
        }
        if spec.expect_moved {
            check(format!("flows moved to another MUX ({moved})"), moved > 0);
        }
        if sink_drops > 0 {
            check(
                format!("sinks kept up ({sink_drops} frames dropped by their rings)"),
                !spec.strict,
            );
        }
        let mux_cpu: Option<f64> = per_mux
            .values()
            .filter_map(|m| m.cpu_seconds)
            .reduce(|a, b| a + b);
        let mux_forwarded: u64 = per_mux.values().filter_map(|m| m.forwarded).sum();
        let mux_cpu_ns = mux_cpu
            .filter(|_| is_mux)
            .and_then(|c| ns_per_packet(c, mux_forwarded));
        if spec.throughput {
            if is_mux {
                mux_pps = Some(delivered_pps);
                mux_cpu_ns_per_packet = mux_cpu_ns;
            } else {
                baselines.push((spec.name.clone(), spec.title.clone(), delivered_pps));
            }
        }
        rounds.push(RoundOutcome {
            name: spec.name.clone(),
            title: spec.title.clone(),
            kind: spec.kind.clone(),
            sent: g.sent,
            delivered,
            invalid,
            lost,
            sent_pps: g.pps,
            delivered_pps,
            flows_sent: g.flow_list.len(),
            flows_delivered,
            per_mux,
            per_backend,
            invalid_reasons,
            moved_flows: moved,
            size: g.size,
            mux_cpu_ns_per_packet: mux_cpu_ns,
            machine: machine_cpu_seconds(&round.machine_cpu),
            tx: g.tx.clone(),
            checks,
        });
    }
    let inconsistent: Vec<(FiveTuple, Vec<IpAddr>)> = backends
        .iter()
        .filter(|(_, b)| b.len() > 1)
        .map(|(f, b)| (*f, b.iter().copied().collect()))
        .collect();
    let flows_multi_mux = muxes_seen.values().filter(|m| m.len() > 1).count();
    let checks = vec![Check {
        what: format!(
            "same flow → same backend whichever MUX carried it ({} flows, {} carried by more than one MUX, {} with two backends)",
            backends.len(),
            flows_multi_mux,
            inconsistent.len()
        ),
        ok: inconsistent.is_empty(),
    }];
    Outcome {
        io: run.info.io.clone(),
        rounds,
        flows_total: backends.len(),
        flows_multi_mux,
        inconsistent,
        mux_pps,
        baselines,
        mux_cpu_ns_per_packet,
        checks,
    }
}

fn pct(part: i64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The summary for people.
pub fn render(o: &Outcome) -> String {
    let mut s = String::new();
    for (i, r) in o.rounds.iter().enumerate() {
        let _ = writeln!(s, "Round {} · {} — {}", i + 1, r.name, r.title);
        let _ = writeln!(
            s,
            "  sent {:>9}  ({:.3} Mpps)   delivered {:>9}  ({:.3} Mpps)   lost {} ({:.2} %)",
            r.sent,
            r.sent_pps / 1e6,
            r.delivered,
            r.delivered_pps / 1e6,
            r.lost,
            pct(r.lost, r.sent)
        );
        let mut cpu = Vec::new();
        if let Some(ns) = r.mux_cpu_ns_per_packet {
            cpu.push(format!("MUX {ns:.0} ns/packet forwarded"));
        }
        if let Some(m) = r.machine {
            let per = |sec: f64| {
                ns_per_packet(sec, r.delivered).map_or("-".to_string(), |n| format!("{n:.0}"))
            };
            let nice = if m.nice > 0.0 {
                format!(", {:.2} CPU-s niced: other work", m.nice)
            } else {
                String::new()
            };
            cpu.push(format!(
                "machine busy {:.2} of {:.2} CPU-s ({} ns/packet delivered, softirq {}{nice})",
                m.busy,
                m.available,
                per(m.busy),
                per(m.softirq)
            ));
        }
        if !cpu.is_empty() || !r.tx.is_empty() {
            let tx = if r.tx.is_empty() { "?" } else { &r.tx };
            let _ = writeln!(s, "  cpu          {} (generator tx {tx})", cpu.join("; "));
        }
        if r.kind != "baseline" {
            let muxes: Vec<String> = r
                .per_mux
                .iter()
                .map(|(n, m)| {
                    let fwd = m.forwarded.map_or("-".to_string(), |f| f.to_string());
                    let drops = match (m.port_rx_dropped, m.port_tx_dropped) {
                        (Some(rx), Some(tx)) if rx + tx > 0 => {
                            format!(", port drops rx {rx} tx {tx}")
                        }
                        _ => String::new(),
                    };
                    let cpu = m
                        .cpu_seconds
                        .map_or(String::new(), |c| format!(", {c:.2} CPU-s"));
                    format!(
                        "{n} {} (MUX counted {fwd}{drops}{cpu}, {})",
                        m.at_sinks, m.phase_after
                    )
                })
                .collect();
            let _ = writeln!(s, "  per MUX      {}", muxes.join("   "));
            let total: u64 = r.per_backend.values().sum();
            let backends: Vec<String> = r
                .per_backend
                .iter()
                .map(|(b, n)| format!("{b} {n} ({:.0} %)", pct(*n as i64, total)))
                .collect();
            let _ = writeln!(s, "  per backend  {}", backends.join("   "));
            let _ = writeln!(
                s,
                "  flows        {} of {} delivered; {} moved to another MUX than before",
                r.flows_delivered, r.flows_sent, r.moved_flows
            );
            if r.invalid > 0 {
                let _ = writeln!(s, "  invalid      {:?}", r.invalid_reasons);
            }
        }
        for c in &r.checks {
            let _ = writeln!(s, "  [{}] {}", if c.ok { " ok " } else { "FAIL" }, c.what);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Across rounds");
    for c in &o.checks {
        let _ = writeln!(s, "  [{}] {}", if c.ok { " ok " } else { "FAIL" }, c.what);
    }
    for (f, b) in o.inconsistent.iter().take(5) {
        let list: Vec<String> = b.iter().map(IpAddr::to_string).collect();
        let _ = writeln!(s, "         {f} went to {}", list.join(" and "));
    }
    if let Some(m) = o.mux_pps {
        let _ = writeln!(
            s,
            "  throughput   MUX path ({}): {:.3} Mpps delivered{}",
            o.io,
            m / 1e6,
            o.mux_cpu_ns_per_packet
                .map_or(String::new(), |ns| format!(", MUX CPU {ns:.0} ns/packet"))
        );
        for (name, _, b) in &o.baselines {
            let ratio = if *b > 0.0 { m / b } else { 0.0 };
            let _ = writeln!(
                s,
                "               {name}: {:.3} Mpps delivered; MUX path / {name} = {ratio:.2}",
                b / 1e6
            );
        }
    }
    let failed: usize = o
        .rounds
        .iter()
        .flat_map(|r| &r.checks)
        .chain(&o.checks)
        .filter(|c| !c.ok)
        .count();
    let total: usize = o.rounds.iter().map(|r| r.checks.len()).sum::<usize>() + o.checks.len();
    let _ = writeln!(
        s,
        "\n{}: {} of {total} checks passed",
        if failed == 0 { "PASS" } else { "FAIL" },
        total - failed
    );
    s
}

#[cfg(test)]
mod tests {
    use super::super::FlowSource;
    use super::super::sink::FlowRecord;
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn generator(sent: u64, flows: &[(&str, u16)]) -> GenReport {
        GenReport {
            interface: "eth0".into(),
            src_mac: "02:00:00:00:00:01".into(),
            dst_mac: "02:00:00:00:00:02".into(),
            destination: "192.0.2.10:80/tcp".into(),
            src_net: "198.51.100.0/24".into(),
            flows: flows.len(),
            seed: 1,
            size: 60,
            rate_requested: 1000,
            duration_requested: 1.0,
            syn_ack_mix: true,
            elapsed_seconds: 1.0,
            sent,
            dropped_on_send: 0,
            retries: 0,
            tx: "batch 32".into(),
            send_calls: sent.div_ceil(32),
            pps: sent as f64,
            flow_list: flows
                .iter()
                .map(|(a, p)| FlowSource {
                    src: ip(a),
                    sport: *p,
                })
                .collect(),
        }
    }

    fn flow(src: &str, sport: u16) -> FiveTuple {
        FiveTuple {
            src: ip(src),
            sport,
            dst: ip("192.0.2.10"),
            dport: 80,
            protocol: 6,
        }
    }

    /// A sink that saw `packets` of each (flow, mux, backend).
    fn sink(records: &[(&str, u16, &str, &str, u64)]) -> SinkReport {
        let mut r = SinkReport::default();
        for (src, sport, mux, backend, n) in records {
            r.encapsulated += n;
            *r.per_backend.entry(ip(backend)).or_default() += n;
            *r.per_mux.entry(ip(mux)).or_default() += n;
            r.flows.push(FlowRecord {
                flow: flow(src, *sport),
                packets: *n,
                backends: [(ip(backend), *n)].into(),
                muxes: [(ip(mux), *n)].into(),
            });
        }
        r
    }

    fn status(forwarded: u64, ok: u64, failed: u64) -> Option<Value> {
        let tx_dropped = forwarded / 10;
        Some(json!({
            "phase": "ready",
            "counters": {"forwarded": forwarded},
            "reloads": {"ok": ok, "failed": failed},
            "workers": [{"port": {"rx": forwarded, "tx": forwarded, "rx_dropped": 0, "tx_dropped": tx_dropped}}],
        }))
    }

    fn info() -> LabInfo {
        LabInfo {
            muxes: [
                ("mux1".to_string(), ip("10.0.11.2")),
                ("mux2".to_string(), ip("10.0.12.2")),
            ]
            .into(),
            io: "afxdp".into(),
        }
    }

    fn spread_round() -> Round {
        Round {
            dir: PathBuf::from("01-spread"),
            spec: RoundSpec {
                name: "spread".into(),
                kind: "mux".into(),
                strict: true,
                expect_muxes: vec!["mux1".into(), "mux2".into()],
                ..RoundSpec::default()
            },
            generator: generator(20, &[("198.51.100.1", 1111), ("198.51.100.2", 2222)]),
            sinks: vec![
                sink(&[("198.51.100.1", 1111, "10.0.11.2", "10.0.21.2", 10)]),
                sink(&[("198.51.100.2", 2222, "10.0.12.2", "10.0.22.2", 10)]),
            ],
            status: [
                ("mux1".to_string(), (status(0, 0, 0), status(10, 0, 0))),
                ("mux2".to_string(), (status(5, 0, 0), status(15, 0, 0))),
            ]
            .into(),
            cpu: [
                ("mux1".to_string(), (cpu(100, 5), cpu(110, 5))),
                ("mux2".to_string(), (cpu(200, 10), cpu(205, 12))),
            ]
            .into(),
            machine_cpu: (
                Some(machine(1000, 500, 8000, 100)),
                Some(machine(1100, 550, 8100, 150)),
            ),
        }
    }

    fn cpu(utime: u64, stime: u64) -> Option<ProcCpu> {
        Some(ProcCpu {
            utime,
            stime,
            hz: 100,
        })
    }

    fn machine(user: u64, system: u64, idle: u64, softirq: u64) -> MachineCpu {
        MachineCpu {
            user,
            system,
            idle,
            softirq,
            hz: 100,
            ..MachineCpu::default()
        }
    }

    #[test]
    fn cpu_time_arithmetic() {
        // 10 + 0 ticks at 100 Hz; a clock mismatch, a restart (time backwards) or a missing
        // reading gives nothing.
        assert_eq!(proc_cpu_seconds(&(cpu(100, 5), cpu(110, 5))), Some(0.1));
        assert_eq!(proc_cpu_seconds(&(cpu(200, 10), cpu(205, 12))), Some(0.07));
        assert_eq!(proc_cpu_seconds(&(cpu(200, 10), cpu(3, 1))), None);
        assert_eq!(proc_cpu_seconds(&(cpu(1, 1), None)), None);
        let other_hz = Some(ProcCpu {
            utime: 500,
            stime: 0,
            hz: 250,
        });
        assert_eq!(proc_cpu_seconds(&(cpu(1, 1), other_hz)), None);
        let m = machine_cpu_seconds(&(
            Some(machine(1000, 500, 8000, 100)),
            Some(machine(1100, 550, 8100, 150)),
        ))
        .unwrap();
        // busy: user 100 + system 50 + softirq 50 = 200 ticks; idle 100 more.
        assert_eq!(m.busy, 2.0);
        assert_eq!(m.softirq, 0.5);
        assert_eq!(m.available, 3.0);
        assert_eq!(m.nice, 0.0);
        let mut niced = machine(1100, 550, 8100, 150);
        niced.nice = 25;
        let m = machine_cpu_seconds(&(Some(machine(1000, 500, 8000, 100)), Some(niced))).unwrap();
        assert_eq!((m.busy, m.nice, m.available), (2.25, 0.25, 3.25));
        assert!(
            machine_cpu_seconds(&(
                Some(machine(1100, 550, 8100, 150)),
                Some(machine(1000, 500, 8000, 100))
            ))
            .is_none()
        );
        assert_eq!(ns_per_packet(0.17, 20), Some(8_500_000.0));
        assert_eq!(ns_per_packet(1.0, 0), None);
    }

    #[test]
    fn mux_cpu_per_packet_is_printed_next_to_the_rates() {
        let mut load = spread_round();
        load.spec.name = "load".into();
        load.spec.strict = false;
        load.spec.throughput = true;
        let mut base = spread_round();
        base.spec = RoundSpec {
            name: "linux-same-path".into(),
            kind: "baseline".into(),
            throughput: true,
            ..RoundSpec::default()
        };
        base.cpu = BTreeMap::new();
        let run = LabRun {
            info: info(),
            rounds: vec![load, base],
        };
        let o = evaluate(&run);
        let r = &o.rounds[0];
        assert_eq!(r.per_mux["mux1"].cpu_seconds, Some(0.1));
        assert_eq!(r.per_mux["mux2"].cpu_seconds, Some(0.07));
        // (0.1 + 0.07) s over 10 + 10 forwarded packets.
        let ns = r.mux_cpu_ns_per_packet.unwrap();
        assert!((ns - 8_500_000.0).abs() < 1e-3, "{ns}");
        assert_eq!(o.mux_cpu_ns_per_packet, r.mux_cpu_ns_per_packet);
        assert_eq!(
            o.rounds[1].mux_cpu_ns_per_packet, None,
            "no MUX CPU for a baseline"
        );
        assert_eq!(o.rounds[1].machine.unwrap().busy, 2.0);
        let text = render(&o);
        assert!(
            text.contains("MUX 8500000 ns/packet forwarded; machine busy 2.00 of 3.00 CPU-s (100000000 ns/packet delivered, softirq 25000000) (generator tx batch 32)"),
            "{text}"
        );
        assert!(text.contains(", 0.07 CPU-s, ready)"), "{text}");
        assert!(
            text.contains("MUX path (afxdp): 0.000 Mpps delivered, MUX CPU 8500000 ns/packet"),
            "{text}"
        );
    }

    fn moved_round(backend_of_first: &str) -> Round {
        Round {
            dir: PathBuf::from("02-moved"),
            spec: RoundSpec {
                name: "moved".into(),
                kind: "mux".into(),
                strict: true,
                expect_muxes: vec!["mux2".into()],
                only_muxes: true,
                expect_moved: true,
                ..RoundSpec::default()
            },
            generator: generator(20, &[("198.51.100.1", 1111), ("198.51.100.2", 2222)]),
            sinks: vec![sink(&[
                ("198.51.100.1", 1111, "10.0.12.2", backend_of_first, 10),
                ("198.51.100.2", 2222, "10.0.12.2", "10.0.22.2", 10),
            ])],
            status: [
                ("mux1".to_string(), (None, None)),
                ("mux2".to_string(), (status(15, 0, 0), status(35, 0, 0))),
            ]
            .into(),
            cpu: BTreeMap::new(),
            machine_cpu: (None, None),
        }
    }

    #[test]
    fn a_clean_run_passes_with_per_mux_and_per_backend_figures() {
        let run = LabRun {
            info: info(),
            rounds: vec![spread_round(), moved_round("10.0.21.2")],
        };
        let o = evaluate(&run);
        assert!(o.passed(), "{}", render(&o));
        let r = &o.rounds[0];
        assert_eq!((r.sent, r.delivered, r.lost), (20, 20, 0));
        assert_eq!(r.per_mux["mux1"].at_sinks, 10);
        assert_eq!(r.per_mux["mux1"].forwarded, Some(10));
        assert_eq!(r.per_mux["mux2"].forwarded, Some(10));
        assert_eq!(
            r.per_mux["mux2"].port_tx_dropped,
            Some(1),
            "1 - 0 over the round"
        );
        assert_eq!(r.per_mux["mux2"].port_rx_dropped, Some(0));
        assert_eq!(r.per_backend[&ip("10.0.22.2")], 10);
        assert_eq!(r.flows_delivered, 2);
        assert_eq!(o.rounds[1].moved_flows, 1, "the mux1 flow moved to mux2");
        assert_eq!(o.rounds[1].per_mux["mux1"].phase_after, "stopped");
        assert_eq!(o.flows_multi_mux, 1);
        let text = render(&o);
        assert!(text.contains("PASS"), "{text}");
        assert!(text.contains("per backend  10.0.21.2 10 (50 %)"), "{text}");
        assert!(
            text.contains("mux1 10 (MUX counted 10, port drops rx 0 tx 1, 0.10 CPU-s, ready)"),
            "{text}"
        );
    }

    #[test]
    fn dpdk_nic_receive_losses_count_as_port_rx_drops() {
        let port = |rx_dropped: u64, imissed: u64, nombuf: u64| {
            Some(json!({"workers": [{"port": {
                "rx_dropped": rx_dropped,
                "tx_dropped": 0,
                "nic": {"imissed": imissed, "rx_nombuf": nombuf, "ierrors": 9},
            }}]}))
        };
        let pair = (port(1, 100, 5), port(3, 130, 12));
        assert_eq!(port_rx_lost_delta(&pair), Some(2 + 30 + 7));
        let without_nic = (
            Some(json!({"workers": [{"port": {"rx_dropped": 4}}]})),
            Some(json!({"workers": [{"port": {"rx_dropped": 6}}]})),
        );
        assert_eq!(port_rx_lost_delta(&without_nic), Some(2));
        assert_eq!(port_rx_lost_delta(&(None, port(0, 1, 1))), None);
    }

    #[test]
    fn a_flow_that_changes_backend_across_muxes_fails() {
        let run = LabRun {
            info: info(),
            rounds: vec![spread_round(), moved_round("10.0.22.3")],
        };
        let o = evaluate(&run);
        assert!(!o.passed());
        assert_eq!(o.inconsistent.len(), 1);
        assert_eq!(o.inconsistent[0].0, flow("198.51.100.1", 1111));
        assert!(render(&o).contains("FAIL"));
    }

    #[test]
    fn loss_missing_muxes_and_missing_reloads_fail_strict_rounds() {
        let mut r = spread_round();
        r.sinks.pop();
        r.spec.expect_reloads_ok = vec!["mux1".into()];
        let o = evaluate(&LabRun {
            info: info(),
            rounds: vec![r],
        });
        let failed: Vec<&str> = o.rounds[0]
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        assert_eq!(failed.len(), 4, "{failed:?}");
        assert!(failed[0].starts_with("no loss: 10 of 20"));
        assert!(failed[1].starts_with("every flow delivered: 1 of 2"));
        assert!(failed[2].starts_with("mux2 carried traffic (0"));
        assert!(failed[3].starts_with("mux1: reload applied (reloads.ok +0)"));
    }

    #[test]
    fn invalid_packets_fail_even_throughput_rounds_and_the_baseline_ratio_is_computed() {
        let mut load = spread_round();
        load.spec.strict = false;
        load.spec.throughput = true;
        load.sinks[0].invalid = 1;
        load.sinks[0].encapsulated = 5;
        let mut base = spread_round();
        base.spec = RoundSpec {
            name: "baseline".into(),
            kind: "baseline".into(),
            throughput: true,
            ..RoundSpec::default()
        };
        base.generator.destination = "10.0.21.2:9/udp".into();
        let mut plain = SinkReport::default();
        plain
            .plain_per_destination
            .insert("10.0.21.2:9/udp".into(), 20);
        base.sinks = vec![plain];
        let o = evaluate(&LabRun {
            info: info(),
            rounds: vec![load, base],
        });
        assert!(!o.passed());
        assert!(
            o.rounds[0]
                .checks
                .iter()
                .any(|c| !c.ok && c.what.contains("1 invalid"))
        );
        assert!(o.rounds[1].checks.iter().all(|c| c.ok));
        assert_eq!(o.baselines, vec![("baseline".into(), String::new(), 20.0)]);
        assert_eq!(o.mux_pps, Some(15.0));
        assert_eq!(o.ratio(), Some(0.75));
    }

    #[test]
    fn load_reads_a_results_directory() {
        let dir = std::env::temp_dir().join(format!("perf-summary-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rd = dir.join("01-spread");
        std::fs::create_dir_all(&rd).unwrap();
        let r = spread_round();
        std::fs::write(
            dir.join("lab.json"),
            serde_json::to_string(&info()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            rd.join("round.json"),
            serde_json::to_string(&r.spec).unwrap(),
        )
        .unwrap();
        std::fs::write(
            rd.join("gen.json"),
            serde_json::to_string(&r.generator).unwrap(),
        )
        .unwrap();
        for (i, s) in r.sinks.iter().enumerate() {
            std::fs::write(
                rd.join(format!("sink-host{}.json", i + 1)),
                serde_json::to_string(s).unwrap(),
            )
            .unwrap();
        }
        for (name, (b, a)) in &r.status {
            std::fs::write(
                rd.join(format!("status-{name}-before.json")),
                b.as_ref().unwrap().to_string(),
            )
            .unwrap();
            std::fs::write(
                rd.join(format!("status-{name}-after.json")),
                a.as_ref().unwrap().to_string(),
            )
            .unwrap();
        }
        for (name, (b, a)) in &r.cpu {
            for (when, c) in [("before", b), ("after", a)] {
                std::fs::write(
                    rd.join(format!("cpu-{name}-{when}.json")),
                    serde_json::to_string(c.as_ref().unwrap()).unwrap(),
                )
                .unwrap();
            }
        }
        // As scripts/lab writes them.
        std::fs::write(
            rd.join("cpu-machine-before.json"),
            r#"{"user": 1000, "nice": 0, "system": 500, "idle": 8000, "iowait": 0, "irq": 0, "softirq": 100, "hz": 100}"#,
        )
        .unwrap();
        std::fs::write(
            rd.join("cpu-machine-after.json"),
            r#"{"user": 1100, "nice": 0, "system": 550, "idle": 8100, "iowait": 0, "irq": 0, "softirq": 150, "hz": 100}"#,
        )
        .unwrap();
        let run = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(run.rounds[0].cpu, r.cpu);
        assert_eq!(run.rounds[0].machine_cpu, r.machine_cpu);
        assert_eq!(run.rounds.len(), 1);
        assert_eq!(run.rounds[0].sinks.len(), 2);
        let o = evaluate(&run);
        assert!(o.passed(), "{}", render(&o));
        assert_eq!(o.rounds[0].per_mux["mux2"].forwarded, Some(10));
    }
}
