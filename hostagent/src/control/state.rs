//! The host agent daemon's shared state, and the JSON documents built from it.
//!
//! What it owns: everything the daemon's threads share, each part with one writer —
//! - the control thread (start-up, SIGHUP): `generation`, `reloads`, readiness;
//! - the I/O thread (the interception layer): the data-path counters and the service list they
//!   are indexed by, published together between bursts ([`AgentState::publish_data_path`]),
//!   and the [`IoCounters`] it bumps as it reads and writes;
//! - the health checker: its table, read through a [`HealthView`].
//!
//! The admin endpoint only reads. Locks are held only to copy: the I/O thread's publish is a
//! `clone_from` into buffers of the same size (no allocation once the sizes settle), so a
//! scrape never holds up the packet path for more than a copy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::control::health::{BackendHealth, HealthView};
use crate::control::load::{BackendLoad, LoadMeter};
use crate::dataplane::{Counters, DataPath, DropReason, ServiceSpec};

pub use mux_daemon_kit::reloads::ReloadStats;

/// The connection state file's writes and the load at start (`io::state_file`): written by
/// the state writer thread and the daemon, read by the admin endpoint.
#[derive(Debug, Default)]
pub struct StateFileStats {
    /// The state file's path (resolved).
    pub path: Mutex<String>,
    /// Snapshots of the connection table written to the file (temp file + rename).
    pub writes: AtomicU64,
    /// Snapshots that could not be written (the previous file stays; see `last_error`).
    pub write_errors: AtomicU64,
    /// Entries in the last snapshot written.
    pub last_entries: AtomicU64,
    /// When the last written snapshot was taken, Unix milliseconds (0: none yet).
    pub last_write_unix_ms: AtomicU64,
    /// Entries read from the file at start and put back in the table.
    pub loaded: AtomicU64,
    /// Entries in the file at start that had expired in the meantime (dropped).
    pub load_expired: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl StateFileStats {
    /// Keeps the latest write or load error.
    pub fn set_last_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The latest write or load error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "path": self.path.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            "writes": get(&self.writes),
            "write_errors": get(&self.write_errors),
            "last_entries": get(&self.last_entries),
            "last_write_unix_ms": get(&self.last_write_unix_ms),
            "loaded": get(&self.loaded),
            "load_expired": get(&self.load_expired),
            "last_error": self.last_error(),
        })
    }
}

/// Counters of the interception layer (TUN device and network sockets), bumped by the I/O
/// thread with `Relaxed` adds; the data path's own counters are in [`Counters`].
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Packets received from the network (IPIP from the MUXes) and handed to `decap`.
    pub rx_packets: AtomicU64,
    /// Receive calls on the network side that failed (the packet, if any, is lost).
    pub rx_errors: AtomicU64,
    /// Packets sent to the network (`Send`: backends' replies toward clients).
    pub tx_packets: AtomicU64,
    /// Sends to the network that failed.
    pub tx_errors: AtomicU64,
    /// Packets read from the TUN device (the backends' outbound packets, handed to `snat`).
    pub tun_rx: AtomicU64,
    /// Packets written to the TUN device (`Deliver`: decapsulated packets for the backends).
    pub tun_tx: AtomicU64,
    /// Second-chance packets sent to an alternative's agent (`Forward`); they are also in
    /// `tx_packets` / `tx_errors`.
    pub forwarded_tx: AtomicU64,
    /// Reads from the TUN device that failed.
    pub tun_rx_errors: AtomicU64,
    /// Writes into the TUN device the kernel refused (the decapsulated packet is lost).
    pub tun_tx_errors: AtomicU64,
}

/// A copy of [`IoCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IoCountersSnapshot {
    /// See [`IoCounters::rx_packets`].
    pub rx_packets: u64,
    /// See [`IoCounters::rx_errors`].
    pub rx_errors: u64,
    /// See [`IoCounters::tx_packets`].
    pub tx_packets: u64,
    /// See [`IoCounters::tx_errors`].
    pub tx_errors: u64,
    /// See [`IoCounters::tun_rx`].
    pub tun_rx: u64,
    /// See [`IoCounters::tun_tx`].
    pub tun_tx: u64,
    /// See [`IoCounters::forwarded_tx`].
    pub forwarded_tx: u64,
    /// See [`IoCounters::tun_rx_errors`].
    pub tun_rx_errors: u64,
    /// See [`IoCounters::tun_tx_errors`].
    pub tun_tx_errors: u64,
}

impl IoCounters {
    /// Adds `n` to `counter` (one of this struct's fields).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> IoCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoCountersSnapshot {
            rx_packets: get(&self.rx_packets),
            rx_errors: get(&self.rx_errors),
            tx_packets: get(&self.tx_packets),
            tx_errors: get(&self.tx_errors),
            tun_rx: get(&self.tun_rx),
            tun_tx: get(&self.tun_tx),
            forwarded_tx: get(&self.forwarded_tx),
            tun_rx_errors: get(&self.tun_rx_errors),
            tun_tx_errors: get(&self.tun_tx_errors),
        }
    }

    /// Sets every counter to the totals of `s` (the I/O thread keeps plain counters and
    /// publishes them here between batches).
    pub fn store(&self, s: &IoCountersSnapshot) {
        let set = |c: &AtomicU64, v: u64| c.store(v, Ordering::Relaxed);
        set(&self.rx_packets, s.rx_packets);
        set(&self.rx_errors, s.rx_errors);
        set(&self.tx_packets, s.tx_packets);
        set(&self.tx_errors, s.tx_errors);
        set(&self.tun_rx, s.tun_rx);
        set(&self.tun_tx, s.tun_tx);
        set(&self.forwarded_tx, s.forwarded_tx);
        set(&self.tun_rx_errors, s.tun_rx_errors);
        set(&self.tun_tx_errors, s.tun_tx_errors);
    }
}

/// `{"name": value, …}` in the given order.
fn named(pairs: &[(&'static str, u64)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(name, v)| ((*name).to_string(), json!(v)))
            .collect(),
    )
}

/// The data path's counters as last published, with the services their per-service counters
/// are indexed by (both from the same [`DataPath`], so they always agree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataPathReport {
    /// The counters.
    pub counters: Counters,
    /// `counters.services[i]` belongs to `services[i]`.
    pub services: Vec<ServiceSpec>,
}

/// The `/v1/backends` document (the contract the MUXes poll; see `docs/hostagent.md`). A
/// struct rather than a `serde_json::Value` so the keys keep the documented order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendsReport {
    /// `[agent] name`.
    pub agent: String,
    /// The configuration generation the states belong to.
    pub generation: u64,
    /// One entry per `[[service]]`, in configuration order.
    pub backends: Vec<BackendEntry>,
}

/// One backend of `/v1/backends`: its health, and the load the agent measured on it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendEntry {
    /// Health (the fields the MUXes act on).
    #[serde(flatten)]
    pub health: BackendHealth,
    /// Measured load; `null` until the data path has published once.
    pub load: Option<BackendLoad>,
}

/// State shared by the host agent daemon's threads.
#[derive(Debug)]
pub struct AgentState {
    /// `[agent] name`.
    pub name: String,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The configuration generation being served: 1 at start, +1 per applied reload.
    pub generation: AtomicU64,
    /// Reload outcomes.
    pub reloads: ReloadStats,
    /// When the daemon started.
    pub started: Instant,
    /// Interception-layer counters, bumped by the I/O thread.
    pub io: IoCounters,
    /// The health checker's table.
    pub health: HealthView,
    /// The connection state file (second chance's restart rule).
    pub state_file: Arc<StateFileStats>,
    data_path: Mutex<DataPathReport>,
    load: Mutex<LoadMeter>,
    ready: AtomicBool,
}

impl AgentState {
    /// State for a daemon starting with generation 1, not ready, no counters published yet.
    pub fn new(name: String, config_path: PathBuf, health: HealthView) -> Self {
        AgentState {
            name,
            config_path,
            generation: AtomicU64::new(1),
            reloads: ReloadStats::default(),
            started: Instant::now(),
            io: IoCounters::default(),
            health,
            state_file: Arc::new(StateFileStats::default()),
            data_path: Mutex::new(DataPathReport::default()),
            load: Mutex::new(LoadMeter::default()),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether the daemon reported itself ready (`/readyz` answers 200).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets readiness: the daemon sets it once interception is in place, and may clear it
    /// while shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publishes a data path's counters and services (called by the I/O thread between
    /// bursts; copies into the previous buffers). A multi-threaded I/O layer sums its data
    /// paths' counters first and publishes the sum with [`AgentState::publish`].
    pub fn publish_data_path(&self, data_path: &DataPath) {
        self.publish(data_path.counters(), data_path.table().services());
    }

    /// Publishes `counters`, whose per-service counters are indexed like `services`.
    pub fn publish(&self, counters: &Counters, services: &[ServiceSpec]) {
        let mut report = self.lock_data_path();
        report.counters.clone_from(counters);
        report.services.clear();
        report.services.extend_from_slice(services);
        drop(report);
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(Instant::now(), counters, services);
    }

    /// The measured load of every service's backend (see [`crate::control::load`]).
    pub fn loads(&self) -> Vec<(ServiceSpec, BackendLoad)> {
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .loads()
            .to_vec()
    }

    /// A copy of the last published counters.
    pub fn data_path(&self) -> DataPathReport {
        self.lock_data_path().clone()
    }

    fn lock_data_path(&self) -> MutexGuard<'_, DataPathReport> {
        // A publisher that panicked mid-copy leaves counters that are merely stale.
        self.data_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The health of every service's backend, in configuration order.
    pub fn backends(&self) -> Vec<BackendHealth> {
        self.health.snapshot()
    }

    /// The `/v1/backends` document.
    pub fn backends_report(&self) -> BackendsReport {
        let loads = self.loads();
        let backends = self
            .backends()
            .into_iter()
            .map(|health| {
                let load = loads
                    .iter()
                    .find(|(s, _)| {
                        s.vip == health.vip
                            && s.port == health.port
                            && s.protocol == health.protocol
                            && s.dip == health.dip
                            && s.backend_address == health.backend_address
                            && s.backend_port == health.backend_port
                    })
                    .map(|(_, l)| *l);
                BackendEntry { health, load }
            })
            .collect();
        BackendsReport {
            agent: self.name.clone(),
            generation: self.generation(),
            backends,
        }
    }

    /// The `/v1/backends` document as compact JSON, keys in the contract's order:
    /// `{"agent":…,"generation":…,"backends":[…]}`.
    pub fn backends_json(&self) -> String {
        // Only strings, numbers and `null`: serialization cannot fail.
        serde_json::to_string(&self.backends_report())
            .unwrap_or_else(|e| format!("{{\"error\":{}}}", Value::String(e.to_string())))
    }

    /// The `/v1/status` document: identity, readiness, reloads, every counter by name, and the
    /// backends' health.
    pub fn status_json(&self) -> Value {
        let report = self.data_path();
        let loads = self.loads();
        let c = &report.counters;
        let drops: Map<String, Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(c.dropped(*r))))
            .collect();
        let services: Vec<Value> = report
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let sc = c.services.get(i).copied().unwrap_or_default();
                let load = loads.iter().find(|(l, _)| l == s).map(|(_, l)| *l);
                json!({
                    "vip": s.vip,
                    "port": s.port,
                    "protocol": s.protocol.to_string(),
                    "dip": s.dip,
                    "backend_address": s.backend_address,
                    "backend_port": s.backend_port,
                    "delivered": sc.delivered,
                    "forwarded": sc.forwarded,
                    "icmp_errors_delivered": sc.icmp_errors_delivered,
                    "replies_rewritten": sc.replies_rewritten,
                    "icmp_errors_rewritten": sc.icmp_errors_rewritten,
                    "delivered_bytes": sc.delivered_bytes,
                    "replies_rewritten_bytes": sc.replies_rewritten_bytes,
                    "new_connections": sc.new_connections,
                    "active_connections": sc.active_connections,
                    "load": load,
                })
            })
            .collect();
        json!({
            "agent": self.name,
            "config": self.config_path.display().to_string(),
            "generation": self.generation(),
            "ready": self.is_ready(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "reloads": self.reloads.json(),
            "io": self.io.snapshot(),
            "counters": {
                "inbound": c.inbound,
                "delivered": c.delivered,
                "icmp_errors_delivered": c.icmp_errors_delivered,
                "outbound": c.outbound,
                "replies_rewritten": c.replies_rewritten,
                "icmp_errors_rewritten": c.icmp_errors_rewritten,
                "passed": c.passed,
                "fragments_passed": c.fragments_passed,
                "dropped": c.total_drops(),
                "drops": drops,
                "second_chance": named(&c.second_chance.outcomes()),
            },
            "connections": {
                "occupied": c.connections.occupied,
                "capacity": c.connections.capacity,
                "events": named(&c.connections.events()),
                "state_file": self.state_file.json(),
            },
            "services": services,
            "health": self.backends(),
        })
    }
}
