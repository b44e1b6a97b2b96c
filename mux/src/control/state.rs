//! The daemon's shared state: what the control thread, the admin endpoint and the workers
//! share, and the status report built from it.
//!
//! Workers touch only their own [`WorkerStats`] and the snapshot pointer; everything else is
//! written by the control thread and read by the admin endpoint.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::control::flow_log::FlowLogStats;
use crate::control::health_feed::HealthShared;
use crate::control::liveness::Verdict;
use crate::control::report;
use crate::dataplane::counters::{Forwarded, WorkerCounters};
use crate::dataplane::flow_table::CENSUS_BACKEND_IDS;
use crate::dataplane::snapshot::{BackendState, FlowCutoff, Snapshot};
use crate::dataplane::worker::WorkerStats;
use mux_packet::flow_key::unmap;

/// Where the daemon is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening ports, resolving the next hop; nothing announced.
    Starting = 0,
    /// Forwarding; VIPs with usable backends announced.
    Ready = 1,
    /// SIGTERM received: routes withdrawn, still forwarding until the drain time ends.
    Draining = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    /// Lower-case name used in JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
        }
    }
}

/// A configured backend as `/v1/status` and `/metrics` show it.
#[derive(Clone, Debug)]
pub struct BackendView {
    /// Its VIP's name.
    pub vip: String,
    /// Its address.
    pub address: IpAddr,
    /// Its state.
    pub state: BackendState,
    /// Its weight.
    pub weight: u32,
    /// Flows it still receives, summed over the workers' last census sweeps; `None` before
    /// every worker has completed one, or for a backend id beyond the census bound.
    pub flows: Option<u64>,
    /// When its pinned flows stop going to it, and whether that moment has passed.
    pub cutoff: Option<(FlowCutoff, bool)>,
    /// For a draining backend: true once it receives nothing more, i.e. its drain deadline
    /// has passed, or no flow is pinned to it in census sweeps that all started under the
    /// current snapshot (so no flow created before it started draining can have been
    /// missed). `None` for other states.
    pub drained: Option<bool>,
    /// Frames and inner bytes the workers forwarded to it (as of their last publish).
    pub forwarded: Forwarded,
}

pub use mux_daemon_kit::reloads::ReloadStats;

/// The VIP announcement's moving parts: written by the control thread (what it wants, the data
/// path's faults) and the liveness thread (liveness, the guard's answers).
#[derive(Debug, Default)]
pub struct Announcement {
    /// The VIPs the control thread wants announced (servable while ready, none otherwise).
    pub wanted: BTreeSet<IpAddr>,
    /// A fault of the path to the NIC found by the control thread's probe (XDP link detached,
    /// DPDK link down), or `None`.
    pub datapath_fault: Option<String>,
    /// The liveness thread's last verdict (`None` before its first round).
    pub liveness: Option<Verdict>,
    /// When the data path was last found down, in Unix milliseconds.
    pub last_down_unix_ms: Option<u64>,
    /// How many times the data path was found down since start.
    pub downs: u64,
    /// The announcement guard's last error (cleared by its next success).
    pub last_error: Option<String>,
    /// Times the announcement guard was restarted after dying.
    pub guard_restarts: u64,
}

/// State shared by the daemon's threads.
#[derive(Debug)]
pub struct DaemonState {
    /// `[mux] name`.
    pub name: String,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The snapshot workers forward with.
    pub snapshot: ArcSwap<Snapshot>,
    /// One per worker.
    pub workers: Vec<Arc<WorkerStats>>,
    /// SIGHUP outcomes.
    pub reloads: ReloadStats,
    /// VIP addresses announced now (as the announcement guard last confirmed).
    pub announced: Mutex<BTreeSet<IpAddr>>,
    /// The announcement as a whole: wanted VIPs, liveness, the guard's last error.
    pub announcement: Mutex<Announcement>,
    /// When the daemon started: the origin of the workers' flow clock.
    pub started: Instant,
    /// The health feed's agents and judged backends.
    pub health: Arc<HealthShared>,
    /// The flow-log writer's counters, set once at start when `[flow_log]` is present.
    pub flow_log: OnceLock<Arc<FlowLogStats>>,
    phase: AtomicU8,
}

impl DaemonState {
    /// State for a daemon about to start its workers.
    pub fn new(
        name: String,
        config_path: PathBuf,
        snapshot: Snapshot,
        workers: usize,
        started: Instant,
    ) -> Self {
        DaemonState {
            name,
            config_path,
            snapshot: ArcSwap::from_pointee(snapshot),
            workers: (0..workers)
                .map(|_| Arc::new(WorkerStats::default()))
                .collect(),
            reloads: ReloadStats::default(),
            announced: Mutex::new(BTreeSet::new()),
            announcement: Mutex::new(Announcement::default()),
            started,
            health: Arc::new(HealthShared::default()),
            flow_log: OnceLock::new(),
            phase: AtomicU8::new(Phase::Starting as u8),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// True when every worker is polling its port.
    pub fn workers_running(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.running.load(Ordering::Acquire))
    }

    /// The workers' counters, summed.
    pub fn counters(&self) -> WorkerCounters {
        let mut total = WorkerCounters::default();
        for w in &self.workers {
            if let Ok(c) = w.counters.lock() {
                total.add(&c);
            }
        }
        total
    }

    /// The flow clock's current second (the workers' `now`).
    pub fn flow_now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Flows each backend id below `ids` (and the census bound) still receives, summed over
    /// the workers' last census sweeps; `None` until every worker has published one.
    pub fn backend_flows(&self, ids: usize) -> Option<Vec<u64>> {
        let mut total = vec![0u64; ids.min(CENSUS_BACKEND_IDS)];
        for w in &self.workers {
            if w.census_sweeps.load(Ordering::Relaxed) == 0 {
                return None;
            }
            let flows = w.backend_flows.lock().ok()?;
            for (t, n) in total.iter_mut().zip(flows.iter()) {
                *t += u64::from(*n);
            }
        }
        Some(total)
    }

    /// True when every worker's last published census sweep started under a snapshot of
    /// `generation` or later.
    pub fn census_covers(&self, generation: u64) -> bool {
        self.workers.iter().all(|w| {
            w.census_sweeps.load(Ordering::Relaxed) > 0
                && w.census_generation.load(Ordering::Relaxed) >= generation
        })
    }

    /// Every configured backend of `snap`, in id order, with its flows, cutoff and what
    /// `counters` (the workers' sum) say was forwarded to it.
    pub fn backend_views(&self, snap: &Snapshot, counters: &WorkerCounters) -> Vec<BackendView> {
        let flows = self.backend_flows(snap.parts.backends.len());
        let covered = self.census_covers(snap.generation());
        let now = self.flow_now();
        snap.parts
            .backends
            .iter()
            .enumerate()
            .filter_map(|(id, b)| {
                let b = b.as_ref()?;
                let vip = snap.parts.vips.iter().find(|v| v.id == b.vip_id)?;
                let n = flows.as_ref().and_then(|f| f.get(id).copied());
                let cutoff = b.cutoff.map(|c| (c, !b.keeps_flows(now)));
                let drained = (b.state == BackendState::Draining)
                    .then(|| cutoff.is_some_and(|(_, passed)| passed) || (n == Some(0) && covered));
                Some(BackendView {
                    vip: vip.name.clone(),
                    address: unmap(b.address),
                    state: b.state,
                    weight: b.weight,
                    flows: n,
                    cutoff,
                    drained,
                    forwarded: counters
                        .backend_forwarded
                        .get(id)
                        .copied()
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// VIP addresses that have at least one VIP with a backend taking new flows.
    pub fn servable_vips(&self) -> BTreeSet<IpAddr> {
        let snap = self.snapshot.load();
        snap.parts
            .vips
            .iter()
            .filter(|v| v.maglev.is_some())
            .map(|v| unmap(v.key.addr))
            .collect()
    }

    /// The VIPs the control thread wants announced.
    pub fn wanted(&self) -> BTreeSet<IpAddr> {
        self.announcement
            .lock()
            .map(|a| a.wanted.clone())
            .unwrap_or_default()
    }

    /// Sets the VIPs to announce while the data path is alive.
    pub fn set_wanted(&self, vips: BTreeSet<IpAddr>) {
        if let Ok(mut a) = self.announcement.lock() {
            a.wanted = vips;
        }
    }

    /// The data path's fault found by the control thread's probe, if any.
    pub fn datapath_fault(&self) -> Option<String> {
        self.announcement
            .lock()
            .ok()
            .and_then(|a| a.datapath_fault.clone())
    }

    /// Records the probe's result (`None`: intact).
    pub fn set_datapath_fault(&self, fault: Option<String>) {
        if let Ok(mut a) = self.announcement.lock() {
            a.datapath_fault = fault;
        }
    }

    /// Records the liveness thread's verdict.
    pub fn set_liveness(&self, verdict: Verdict) {
        if let Ok(mut a) = self.announcement.lock() {
            if matches!(verdict, Verdict::Down(_)) && a.liveness != Some(verdict.clone()) {
                if !matches!(a.liveness, Some(Verdict::Down(_))) {
                    a.downs += 1;
                }
                a.last_down_unix_ms = Some(crate::control::health_feed::unix_ms_now());
            }
            a.liveness = Some(verdict);
        }
    }

    /// Whether the data path was alive at the liveness thread's last round.
    pub fn alive(&self) -> bool {
        self.announcement
            .lock()
            .is_ok_and(|a| a.liveness == Some(Verdict::Alive))
    }

    /// Records what BIRD announces now (the guard's confirmation), clearing the last error.
    pub fn set_announced(&self, vips: BTreeSet<IpAddr>, error: Option<String>) {
        if let Ok(mut a) = self.announced.lock() {
            *a = vips;
        }
        if let Ok(mut a) = self.announcement.lock() {
            a.last_error = error;
        }
    }

    /// Records a failed announcement.
    pub fn set_announce_error(&self, error: String) {
        if let Ok(mut a) = self.announcement.lock() {
            a.last_error = Some(error);
        }
    }

    /// Records the guard's restart count.
    pub fn set_guard_restarts(&self, n: u64) {
        if let Ok(mut a) = self.announcement.lock() {
            a.guard_restarts = n;
        }
    }

    /// The `announcement` part of `/v1/status`.
    pub fn announcement_json(&self) -> Value {
        let Ok(a) = self.announcement.lock() else {
            return Value::Null;
        };
        let (alive, reason) = match &a.liveness {
            Some(Verdict::Alive) => (Some(true), None),
            Some(Verdict::Down(r)) => (Some(false), Some(r.clone())),
            None => (None, None),
        };
        json!({
            "wanted": a.wanted.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "data_path_alive": alive,
            "down_reason": reason,
            "downs": a.downs,
            "last_down_unix_ms": a.last_down_unix_ms,
            "last_error": a.last_error,
            "guard_restarts": a.guard_restarts,
        })
    }

    /// The `/v1/status` document.
    pub fn status_json(&self) -> Value {
        let snap = self.snapshot.load();
        let counters = self.counters();
        let report = report::counters_json(&counters, &snap);
        let views = self.backend_views(&snap, &counters);
        let now = self.flow_now();
        let vips: Vec<Value> = snap
            .parts
            .vips
            .iter()
            .map(|v| {
                let backends: Vec<Value> = views
                    .iter()
                    .filter(|b| b.vip == v.name)
                    .map(|b| {
                        json!({
                            "address": b.address.to_string(),
                            "state": backend_state_name(b.state),
                            "weight": b.weight,
                            "live_flows": b.flows,
                            "cutoff": b.cutoff.map(|(c, passed)| json!({
                                "reason": c.reason.name(),
                                "at_unix_ms": c.at_unix_ms,
                                "passed": passed,
                            })),
                            "drained": b.drained,
                            "forwarded_packets": b.forwarded.packets,
                            "forwarded_bytes": b.forwarded.bytes,
                        })
                    })
                    .collect();
                json!({
                    "name": v.name,
                    "address": unmap(v.key.addr).to_string(),
                    "port": v.key.port,
                    "protocol": if v.key.protocol == 6 { "tcp" } else { "udp" },
                    "accepting_new_flows": v.maglev.is_some(),
                    "maglev_fingerprint": v.maglev.as_ref().map(|m| format!("{:016x}", m.fingerprint())),
                    "previous_tables": v.previous.iter().map(|t| json!({
                        "since_unix_ms": (t.since_unix_ms > 0).then_some(t.since_unix_ms),
                        "replaced_unix_ms": t.replaced_unix_ms,
                        "until_unix_ms": t.until_unix_ms,
                        "in_window": now < t.until,
                        "maglev_fingerprint": format!("{:016x}", t.maglev.fingerprint()),
                    })).collect::<Vec<_>>(),
                    "backends": backends,
                })
            })
            .collect();
        let workers: Vec<Value> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let port = w.port.lock().map(|p| *p).unwrap_or_default();
                json!({
                    "index": i,
                    "port": {
                        "rx": port.rx,
                        "tx": port.tx,
                        "rx_dropped": port.rx_dropped,
                        "tx_dropped": port.tx_dropped,
                        "to_kernel": port.to_kernel,
                        "to_kernel_dropped": port.to_kernel_dropped,
                        "from_kernel": port.from_kernel,
                        "from_kernel_dropped": port.from_kernel_dropped,
                        "nic": port.nic.map(|n| json!({
                            "imissed": n.rx_missed,
                            "ierrors": n.rx_errors,
                            "rx_nombuf": n.rx_nombuf,
                            "oerrors": n.tx_errors,
                        })),
                    },
                    "running": w.running.load(Ordering::Acquire),
                    "generation": w.generation.load(Ordering::Relaxed),
                    "live_flows": w.live_flows.load(Ordering::Relaxed),
                    "idle_waits": w.idle_waits.load(Ordering::Relaxed),
                    "unattributed_flows": w.unattributed_flows.load(Ordering::Relaxed),
                    "flow_capacity": w.flow_capacity.load(Ordering::Relaxed),
                    "flow_census_age_ms": census_age_ms(w, self.started),
                    "flow_census_generation": (w.census_sweeps.load(Ordering::Relaxed) > 0)
                        .then(|| w.census_generation.load(Ordering::Relaxed)),
                })
            })
            .collect();
        let announced: Vec<String> = self
            .announced
            .lock()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        json!({
            "name": self.name,
            "phase": self.phase().name(),
            "generation": snap.generation(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "config": self.config_path.display().to_string(),
            "announced": announced,
            "announcement": self.announcement_json(),
            "reloads": self.reloads.json(),
            "workers": workers,
            "vips": vips,
            "health": self.health_json(),
            "flow_log": self.flow_log.get().map(|f| f.json(counters.flow_log_dropped)),
            "counters": report["counters"],
            "forwarded_per_vip": report["forwarded_per_vip"],
            "forwarded_per_backend": report["forwarded_per_backend"],
            "forwarded_bytes_per_backend": report["forwarded_bytes_per_backend"],
        })
    }
}

impl DaemonState {
    /// `/v1/status` `health`: every polled agent and every backend some agent reports.
    pub fn health_json(&self) -> Value {
        let agents: Vec<Value> = self
            .health
            .agents
            .lock()
            .map(|agents| {
                agents
                    .iter()
                    .map(|a| {
                        json!({
                            "address": a.address.to_string(),
                            "name": a.report.as_ref().and_then(|r| r.agent.clone()),
                            "reachable": a.reachable,
                            "last_ok_unix_ms": a.last_ok_unix_ms,
                            "last_error": a.last_error,
                            "polls_ok": a.polls_ok,
                            "polls_failed": a.polls_failed,
                            "backends_reported": a.report.as_ref().map_or(0, |r| r.backends.len()),
                            "entries_skipped": a.report.as_ref().map_or(0, |r| r.skipped),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let backends: Vec<Value> = self
            .health
            .backends
            .lock()
            .map(|rows| {
                rows.iter()
                    .map(|b| {
                        json!({
                            "vip": b.vip,
                            "backend": b.backend.to_string(),
                            "agent": b.agent.to_string(),
                            "reported_state": b.reported.name(),
                            "applied": if b.failed { "failed" } else { "ok" },
                            "transitions": b.transitions,
                            "last_transition_unix_ms": b.last_transition_unix_ms,
                            "last_detect_ms": b.last_detect_ms,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let weights = self
            .health
            .weights
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        json!({
            "agents": agents,
            "backends": backends,
            "load_aware_weights": weights,
            "load_aware_changes": self.health.weight_changes.load(Ordering::Relaxed),
        })
    }
}

/// Milliseconds since the worker's last published census sweep completed; `None` before the
/// first.
pub fn census_age_ms(w: &WorkerStats, started: Instant) -> Option<u64> {
    if w.census_sweeps.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Some(now_ms.saturating_sub(w.census_completed_ms.load(Ordering::Relaxed)))
}

/// Lower-case name of a backend state.
pub fn backend_state_name(state: BackendState) -> &'static str {
    match state {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::compile::{self, CompileOptions};
    use crate::control::registry::Registry;

    const CONFIG: &str = r#"
[mux]
name = "t"
[dataplane]
io = "mem"
workers = 2
[tunnel]
source_v4 = "10.0.0.11"
[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
  state = "draining"
"#;

    fn state(generation: u64) -> DaemonState {
        let cfg = crate::config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let snap = compile::compile(
            &cfg,
            &mut Registry::default(),
            generation,
            &CompileOptions::default(),
        )
        .unwrap();
        DaemonState::new("t".into(), "t.toml".into(), snap, 2, Instant::now())
    }

    /// Worker `w` publishes a sweep that started at `generation` with these per-id flows.
    fn sweep(s: &DaemonState, w: usize, generation: u64, flows: &[u32]) {
        let stats = &s.workers[w];
        *stats.backend_flows.lock().unwrap() = flows.to_vec();
        stats.census_generation.store(generation, Ordering::Relaxed);
        stats.census_sweeps.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn flows_are_summed_over_workers_once_every_worker_has_swept() {
        let s = state(1);
        let snap = s.snapshot.load();
        let flows = |s: &DaemonState| {
            s.backend_views(&snap, &WorkerCounters::default())
                .iter()
                .map(|b| (b.flows, b.drained))
                .collect::<Vec<_>>()
        };
        assert_eq!(flows(&s), [(None, None), (None, Some(false))]);
        sweep(&s, 0, 1, &[3, 2]);
        assert_eq!(
            flows(&s),
            [(None, None), (None, Some(false))],
            "worker 1 not yet"
        );
        sweep(&s, 1, 1, &[4, 0]);
        assert_eq!(flows(&s), [(Some(7), None), (Some(2), Some(false))]);
        sweep(&s, 0, 1, &[3, 0]);
        assert_eq!(flows(&s), [(Some(7), None), (Some(0), Some(true))]);
    }

    #[test]
    fn a_drain_is_done_only_by_sweeps_started_under_the_current_snapshot() {
        // Generation 2 (say, the reload that set state = "draining"): sweeps that started
        // under generation 1 may have passed a bucket before a flow was created in it.
        let s = state(2);
        let snap = s.snapshot.load();
        let drained =
            |s: &DaemonState| s.backend_views(&snap, &WorkerCounters::default())[1].drained;
        sweep(&s, 0, 1, &[0, 0]);
        sweep(&s, 1, 2, &[0, 0]);
        assert_eq!(drained(&s), Some(false));
        sweep(&s, 0, 2, &[0, 0]);
        assert_eq!(drained(&s), Some(true));
    }
}
