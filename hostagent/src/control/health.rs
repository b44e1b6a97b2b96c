//! Health checks of the host's local backends, and the table of their states that the admin
//! endpoint serves to the MUXes (`/v1/backends`).
//!
//! What this module owns:
//! - **Targets**: one per distinct (backend_address, backend_port, protocol) among the
//!   configuration's `[[service]]`s — two services on one backend share one probe and one
//!   state ([`Target`]);
//! - **Probing** with `[health]` (`probe`): a TCP connect, or an HTTP/1.1 GET with an expected
//!   status, each bounded by `timeout_ms`;
//! - **The rise/fall state machine** (`machine`, pure and unit tested): `unknown` →
//!   `up`/`down`, consecutive counts, transitions, `failing_since`, `detect_ms`;
//! - **The runner** [`HealthChecker`]: start, reload, snapshot, stop.
//!
//! **UDP backends are not probed.** A TCP connect says nothing about a UDP service and there is
//! no generic UDP probe (an empty datagram gets no answer from most servers, and "no ICMP port
//! unreachable" is not evidence of health). They are reported `up` with `checked: false`, so a
//! MUX keeps sending to them exactly as it would without health checks; a MUX that wants more
//! can see `checked` and apply its own policy.
//!
//! Threads: one per TCP target (the number of distinct backends of a host — a handful; no
//! thread at all for UDP targets), named `health-ADDR:PORT`. A slow or silent backend only
//! delays its own probes. Each thread probes, records the outcome under the shared lock (held
//! only to update the table, never across a probe), and sleeps on a condition variable until
//! the next probe is due — at least `interval` after the previous probe *started*, so probes
//! never run more often than `interval`, even after a reload that shortens it. `stop()` and
//! `reload()` wake the threads at once, so a thread ends within one probe timeout. Rejected
//! alternative: one thread probing every target in turn, where N silent backends stretch every
//! backend's interval to N × timeout.
//!
//! Reload keeps the state of a target that still exists (same address, port and protocol), with
//! the new `rise`/`fall` applied to its running counts; a changed probe kind or interval applies
//! from the next probe on. Removed targets' threads end; new targets start `unknown`.
//!
//! Note for the interception layer: a probe is an ordinary local connection from this host to
//! `backend_address:backend_port`. Its replies are addressed to a local address and must not be
//! captured or source-rewritten to the VIP, or every check fails.

mod machine;
mod probe;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::config::{HealthCheck, HostAgentConfig, Protocol};
use crate::dataplane::ServiceSpec;

pub use machine::{HealthState, TargetHealth, Transition};

/// Stack of each probing thread: a probe needs little (no TLS), and a host may have dozens.
const PROBE_STACK_BYTES: usize = 256 * 1024;

/// What is probed: one local backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// `backend_address` of the services it serves.
    pub address: IpAddr,
    /// `backend_port` of the services it serves.
    pub port: u16,
    /// TCP targets are probed; UDP targets are not (see the module doc).
    pub protocol: Protocol,
}

impl Target {
    /// The target of a service.
    pub fn of(service: &ServiceSpec) -> Target {
        Target {
            address: service.backend_address,
            port: service.backend_port,
            protocol: service.protocol,
        }
    }

    /// Whether the checker probes this target (TCP only).
    pub fn is_checked(&self) -> bool {
        self.protocol == Protocol::Tcp
    }
}

/// One service's backend and its health: one entry of `/v1/backends`. Field order and names
/// are the JSON contract documented in `docs/hostagent.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendHealth {
    /// The service's VIP.
    pub vip: IpAddr,
    /// The service's VIP port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(serialize_with = "display")]
    pub protocol: Protocol,
    /// The DIP the MUX tunnels this service to.
    pub dip: IpAddr,
    /// The backend's address (the probe's destination).
    pub backend_address: IpAddr,
    /// The backend's port (the probe's destination).
    pub backend_port: u16,
    /// `unknown`, `up` or `down`.
    pub state: HealthState,
    /// Whether the backend is probed (false for UDP: always `up`).
    pub checked: bool,
    /// When the current state began (last transition, or when the target was added).
    pub since_unix_ms: u64,
    /// First failed probe of the current failure run (while failing or down), else `null`.
    pub failing_since_unix_ms: Option<u64>,
    /// When the latest probe finished; `null` before the first.
    pub last_check_unix_ms: Option<u64>,
    /// State changes since the target was added.
    pub transitions: u64,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds from the first failed probe to the last up → down transition.
    pub detect_ms: Option<u64>,
    /// The latest probe's error, `null` after a success.
    pub last_error: Option<String>,
}

fn display<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl BackendHealth {
    fn new(service: &ServiceSpec, checked: bool, h: &TargetHealth) -> Self {
        BackendHealth {
            vip: service.vip,
            port: service.port,
            protocol: service.protocol,
            dip: service.dip,
            backend_address: service.backend_address,
            backend_port: service.backend_port,
            state: h.state,
            checked,
            since_unix_ms: h.since_unix_ms,
            failing_since_unix_ms: h.failing_since_unix_ms,
            last_check_unix_ms: h.last_check_unix_ms,
            transitions: h.transitions,
            consecutive_successes: h.consecutive_successes,
            consecutive_failures: h.consecutive_failures,
            detect_ms: h.detect_ms,
            last_error: h.last_error.clone(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The services of a configuration as the data path and the checker see them.
pub fn service_specs(config: &HostAgentConfig) -> Vec<ServiceSpec> {
    config
        .services()
        .iter()
        .map(|s| ServiceSpec {
            vip: s.vip(),
            port: s.port(),
            protocol: s.protocol(),
            dip: s.dip(),
            backend_address: s.backend_address(),
            backend_port: s.backend_port(),
        })
        .collect()
}

/// One target's entry in the shared table.
#[derive(Debug)]
struct Entry {
    health: TargetHealth,
    /// Identifies the thread that probes this entry: a target removed and added again by two
    /// quick reloads gets a new id, and the old thread, seeing a different id, ends.
    worker: u64,
}

#[derive(Debug)]
struct Table {
    check: HealthCheck,
    services: Vec<ServiceSpec>,
    targets: BTreeMap<Target, Entry>,
    stopping: bool,
    next_worker: u64,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
    wake: Condvar,
}

impl Shared {
    /// The table; a thread that panicked while holding the lock left it consistent (every
    /// update is a few field writes), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A read-only handle on the checker's table, for the admin endpoint ([`HealthChecker::view`]).
/// Cheap to clone; still readable after the checker stopped (the last states).
#[derive(Clone, Debug)]
pub struct HealthView(Arc<Shared>);

impl HealthView {
    /// One entry per configured service, in configuration order.
    pub fn snapshot(&self) -> Vec<BackendHealth> {
        let table = self.0.lock();
        table
            .services
            .iter()
            .filter_map(|s| {
                let target = Target::of(s);
                let entry = table.targets.get(&target)?;
                Some(BackendHealth::new(s, target.is_checked(), &entry.health))
            })
            .collect()
    }
}

/// The running health checker: one probing thread per TCP target. See the module doc.
#[derive(Debug)]
pub struct HealthChecker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts checking the backends of `config`'s services with its `[health]`.
    pub fn start(config: &HostAgentConfig) -> HealthChecker {
        Self::start_services(service_specs(config), config.health())
    }

    /// Starts checking the backends of `services` with `check`. [`HealthChecker::start`] for
    /// services that do not come from a configuration file (tests probe loopback backends,
    /// which a validated configuration refuses).
    pub fn start_services(services: Vec<ServiceSpec>, check: HealthCheck) -> HealthChecker {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                check: check.clone(),
                services: Vec::new(),
                targets: BTreeMap::new(),
                stopping: false,
                next_worker: 0,
            }),
            wake: Condvar::new(),
        });
        let mut checker = HealthChecker {
            shared,
            threads: Vec::new(),
        };
        checker.reload_services(services, check);
        checker
    }

    /// Applies a reloaded configuration: keeps the state of targets that still exist, starts
    /// new ones `unknown`, ends the threads of removed ones.
    pub fn reload(&mut self, config: &HostAgentConfig) {
        self.reload_services(service_specs(config), config.health());
    }

    /// [`HealthChecker::reload`] for services that do not come from a configuration file.
    pub fn reload_services(&mut self, services: Vec<ServiceSpec>, check: HealthCheck) {
        let now = now_unix_ms();
        let mut start = Vec::new();
        {
            let mut table = self.shared.lock();
            if table.stopping {
                return;
            }
            let wanted: BTreeMap<Target, ()> =
                services.iter().map(|s| (Target::of(s), ())).collect();
            table.targets.retain(|t, _| wanted.contains_key(t));
            for entry in table.targets.values_mut() {
                entry.health.set_thresholds(check.rise, check.fall);
            }
            for target in wanted.into_keys() {
                if table.targets.contains_key(&target) {
                    continue;
                }
                let health = if target.is_checked() {
                    TargetHealth::new(check.rise, check.fall, now)
                } else {
                    TargetHealth::unchecked(now)
                };
                let worker = table.next_worker;
                table.next_worker += 1;
                table.targets.insert(target, Entry { health, worker });
                if target.is_checked() {
                    start.push((target, worker));
                }
            }
            table.check = check;
            table.services = services;
        }
        // Wake every thread: removed ones end, the others pick up the new interval.
        self.shared.wake.notify_all();
        self.threads.retain(|t| !t.is_finished());
        for (target, worker) in start {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(format!(
                    "health-{}",
                    SocketAddr::new(target.address, target.port)
                ))
                .stack_size(PROBE_STACK_BYTES)
                .spawn(move || run(&shared, target, worker));
            match spawned {
                Ok(handle) => self.threads.push(handle),
                Err(e) => {
                    let mut table = self.shared.lock();
                    if let Some(entry) = table.targets.get_mut(&target) {
                        entry
                            .health
                            .record(Err(format!("cannot start the probe thread: {e}")), now);
                    }
                    tracing::error!(backend = %SocketAddr::new(target.address, target.port),
                        error = %e, "cannot start a health-check thread; the backend stays unknown");
                }
            }
        }
    }

    /// A read handle on the states, for the admin endpoint.
    pub fn view(&self) -> HealthView {
        HealthView(Arc::clone(&self.shared))
    }

    /// One entry per configured service, in configuration order.
    pub fn snapshot(&self) -> Vec<BackendHealth> {
        self.view().snapshot()
    }

    /// Stops every probing thread and waits for them: returns within about one probe timeout.
    /// The states stay readable through [`HealthView`].
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a health-check thread panicked");
            }
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The body of one probing thread: probe, record, wait until the next probe is due.
fn run(shared: &Shared, target: Target, worker: u64) {
    let addr = SocketAddr::new(target.address, target.port);
    loop {
        let check = {
            let table = shared.lock();
            if !owns(&table, target, worker) {
                return;
            }
            table.check.clone()
        };
        let started = Instant::now();
        let outcome = probe::probe(addr, &check.kind, check.timeout);
        let mut table = shared.lock();
        if !owns(&table, target, worker) {
            return;
        }
        if let Some(entry) = table.targets.get_mut(&target)
            && let Some(t) = entry.health.record(outcome, now_unix_ms())
        {
            let h = &entry.health;
            tracing::info!(backend = %addr, from = t.from.name(), to = t.to.name(),
                error = h.last_error.as_deref().unwrap_or(""), detect_ms = h.detect_ms,
                "backend health changed");
        }
        // Sleep until `interval` after this probe started; re-read the interval on every
        // wake-up, so a reload applies at once.
        loop {
            let due = started + table.check.interval;
            let now = Instant::now();
            if now >= due {
                break;
            }
            table = shared
                .wake
                .wait_timeout(table, due - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if !owns(&table, target, worker) {
                return;
            }
        }
    }
}

/// Whether `worker` still probes `target` (not stopping, not removed, not replaced).
fn owns(table: &Table, target: Target, worker: u64) -> bool {
    !table.stopping
        && table
            .targets
            .get(&target)
            .is_some_and(|e| e.worker == worker)
}
