//! The daemon's shared state: what the control thread, the admin endpoint and the workers
//! share, and the status report built from it.
//!
//! Workers touch only their own [`WorkerStats`] and the snapshot pointer; everything else is
//! written by the control thread and read by the admin endpoint.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::control::health_feed::HealthShared;
use crate::control::report;
use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::snapshot::{BackendState, Snapshot};
use crate::dataplane::worker::WorkerStats;
use mux_shared::flow_key::unmap;

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

/// Outcome counts of SIGHUP reloads.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that published a new snapshot.
    pub ok: AtomicU64,
    /// Reloads refused (the old configuration kept serving).
    pub failed: AtomicU64,
    /// The last refusal's errors, one per line.
    pub last_error: Mutex<Option<String>>,
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
    /// VIP addresses currently announced.
    pub announced: Mutex<BTreeSet<IpAddr>>,
    /// When the daemon started: the origin of the workers' flow clock.
    pub started: Instant,
    /// The health feed's agents and judged backends.
    pub health: Arc<HealthShared>,
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
            started,
            health: Arc::new(HealthShared::default()),
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

    /// The `/v1/status` document.
    pub fn status_json(&self) -> Value {
        let snap = self.snapshot.load();
        let counters = self.counters();
        let report = report::counters_json(&counters, &snap);
        let vips: Vec<Value> = snap
            .parts
            .vips
            .iter()
            .map(|v| {
                let backends: Vec<Value> = snap
                    .parts
                    .backends
                    .iter()
                    .flatten()
                    .filter(|b| b.vip_id == v.id)
                    .map(|b| {
                        json!({
                            "address": unmap(b.address).to_string(),
                            "state": backend_state_name(b.state),
                            "weight": b.weight,
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
                    "flow_capacity": w.flow_capacity.load(Ordering::Relaxed),
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
            "reloads": {
                "ok": self.reloads.ok.load(Ordering::Relaxed),
                "failed": self.reloads.failed.load(Ordering::Relaxed),
                "last_error": self.reloads.last_error.lock().ok().and_then(|e| e.clone()),
            },
            "workers": workers,
            "vips": vips,
            "health": self.health_json(),
            "counters": report["counters"],
            "forwarded_per_vip": report["forwarded_per_vip"],
            "forwarded_per_backend": report["forwarded_per_backend"],
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
        json!({ "agents": agents, "backends": backends })
    }
}

/// Lower-case name of a backend state.
pub fn backend_state_name(state: BackendState) -> &'static str {
    match state {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Failed => "failed",
    }
}
