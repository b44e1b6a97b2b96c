//! `mux run`: the forwarding daemon.
//!
//! Start: load and validate the config → find our MAC and the next hop's → compile the first
//! snapshot → attach the XDP program (AF_XDP) → start one worker thread per queue, each opening
//! its own port → start the admin endpoint → once every worker polls and the next hop is
//! known, announce the VIPs that have usable backends (graceful start: never announce before
//! forwarding).
//!
//! Run: the control thread wakes every 100 ms to handle signals and housekeeping:
//! - SIGHUP: parse → validate → compile (Maglev built here, off the data path) → publish with
//!   one atomic pointer swap. Workers pick it up between bursts; flow tables survive because
//!   backend ids are stable. A bad file is refused, its errors logged and counted, and the old
//!   snapshot keeps serving.
//! - every second: re-read the next hop's MAC (unless pinned) and republish if it changed;
//!   reconcile the BGP announcement with what is servable.
//! - every tick: judge the health feed's latest agent answers (`[health]`, polled on threads of
//!   their own by [`HealthFeed`]); when the failed set differs from the one compiled in,
//!   recompile with it and publish, so a failed backend takes no new flows within one tick of
//!   the answer that reported it; its flows stay pinned for its `failed_backend_grace` (the
//!   snapshot carries the grace's end, so the workers re-hash them when it passes, with no
//!   republish). A reload keeps the failed set with each failure's time (an input of the
//!   compile step, not of the file), so it keeps every grace deadline, and hands a changed
//!   `[health]` to the feed.
//!
//! Clocks: the workers' flow clock counts from [`DaemonState::started`]; every compile gets a
//! [`FlowClock`] with that origin and its current wall-clock equivalent, to turn failure times
//! and drain deadlines into flow-clock seconds.
//!
//! Stop (SIGTERM or SIGINT): withdraw every route, keep forwarding for `[lifecycle]
//! drain_seconds` while the routers move traffic away, then stop the workers and exit. A second
//! signal skips the rest of the drain.
//!
//! With `io = "dpdk"` the DPDK devices start first (`dpdk_io`), and the workers open their
//! queue pairs on them; they are closed after the workers stop.
//!
//! Fields that shape the running data plane (`io`, `interface`, `workers`, `cpus`,
//! `flow_table_capacity`, `burst_size`, `[admin] listen`, `[dpdk]`) take effect on restart; a reload that
//! changes them applies everything else and logs which ones wait for a restart.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mux_shared::config::{self, IoKind, MuxConfig};
use mux_shared::port::Port;
use mux_shared::port::afpacket::{AfPacketConfig, AfPacketPort};
use mux_shared::port::afxdp::{AfXdpConfig, AfXdpPort, XdpProgram};
use mux_shared::port::mem::{Capture, MemPort};
use mux_shared::signals::Signals;

use crate::control::announce::Announcer;
use crate::control::compile::{self, CompileOptions, FlowClock};
#[cfg(feature = "dpdk")]
use crate::control::dpdk_io;
use crate::control::health_decision::{self, Tracker};
use crate::control::health_feed::{self, HealthFeed};
use crate::control::registry::Registry;
use crate::control::state::{DaemonState, Phase};
use crate::control::{admin, neighbour};
use crate::dataplane::pipeline::Pipeline;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::Worker;

/// How often the control thread wakes.
const TICK: Duration = Duration::from_millis(100);
/// How long start-up waits for the next hop's MAC before starting unannounced.
const NEXT_HOP_WAIT: Duration = Duration::from_secs(3);
/// How long start-up waits for the workers to open their ports.
const WORKER_START_WAIT: Duration = Duration::from_secs(10);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration was refused.
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    /// The configuration could not be compiled.
    #[error("{0}")]
    Compile(#[from] compile::CompileError),
    /// Something needed to start was missing or failed.
    #[error("{0}")]
    Startup(String),
}

/// What a worker thread reports once its port is open (or failed to open).
type Opened = Result<(usize, Option<RawFd>), String>;

/// Runs the daemon until SIGTERM/SIGINT. Returns once every worker has stopped.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    // The workers' flow clock starts here.
    let started = Instant::now();
    let cfg = config::load_file(config_path)?;
    let dp = cfg.dataplane().clone();
    let io = dp.io();
    let iface = dp.interface().map(str::to_string);
    #[cfg(not(feature = "dpdk"))]
    if io == IoKind::Dpdk {
        return Err(DaemonError::Startup(
            "this mux was built without DPDK: rebuild with `cargo build --release --features \
             dpdk` (needs the dpdk-dev package), or use io = \"afxdp\" or \"afpacket\""
                .into(),
        ));
    }
    // DPDK owns the NIC: start it first, its MAC is the encapsulated frames' source.
    #[cfg(feature = "dpdk")]
    let dpdk = match io {
        IoKind::Dpdk => Some(dpdk_io::start(&cfg).map_err(DaemonError::Startup)?),
        _ => None,
    };
    #[cfg(feature = "dpdk")]
    let nic_mac = dpdk.as_ref().map(|rt| rt.nic().mac());
    #[cfg(not(feature = "dpdk"))]
    let nic_mac: Option<[u8; 6]> = None;

    let mut options = CompileOptions {
        source_mac: match (cfg.next_hop().source_mac(), nic_mac, &iface) {
            (Some(mac), _, _) => Some(mac),
            (None, Some(mac), _) => Some(mac),
            (None, None, Some(i)) => Some(neighbour::interface_mac(i).map_err(|e| {
                DaemonError::Startup(format!(
                    "cannot read the MAC of interface {i}: {e}; check [dataplane] interface"
                ))
            })?),
            (None, None, None) => None,
        },
        next_hop_mac: None,
        failed: Vec::new(),
        clock: flow_clock(started),
    };
    options.next_hop_mac = next_hop_mac(&cfg, iface.as_deref(), NEXT_HOP_WAIT);
    if options.next_hop_mac.is_none() && io != IoKind::Mem {
        tracing::warn!(
            next_hop = ?cfg.next_hop().address(),
            "next hop MAC unknown; VIPs stay unannounced until the kernel resolves it"
        );
    }

    let mut registry = Registry::default();
    let snapshot = compile::compile(&cfg, &mut registry, 1, &options)?;
    let state = Arc::new(DaemonState::new(
        cfg.name().to_string(),
        config_path.to_path_buf(),
        snapshot,
        dp.workers(),
        started,
    ));

    let mut xdp = match (io, &iface) {
        (IoKind::Afxdp, Some(i)) => {
            let mut program = XdpProgram::attach(i, dp.workers() as u32).map_err(|e| {
                DaemonError::Startup(format!("cannot attach the XDP program to {i}: {e}"))
            })?;
            program
                .update_vips(&xdp_keys(&state.snapshot.load()))
                .map_err(|e| DaemonError::Startup(format!("cannot load the VIP map: {e}")))?;
            Some(program)
        }
        _ => None,
    };

    let stop_workers = Arc::new(AtomicBool::new(false));
    let (opened_tx, opened_rx) = mpsc::channel::<Opened>();
    let mut workers = Vec::new();
    let seed_source = std::collections::hash_map::RandomState::new();
    let cpus = dp.cpus();
    for index in 0..dp.workers() {
        let seed = {
            let mut h = seed_source.build_hasher();
            h.write_usize(index);
            h.finish()
        };
        let ctx = WorkerCtx {
            index,
            cpu: cpus.as_ref().and_then(|c| c.get(index).copied()),
            flow_capacity: dp.flow_table_capacity(),
            burst: dp.burst_size(),
            seed,
            state: Arc::clone(&state),
            stop: Arc::clone(&stop_workers),
            opened: opened_tx.clone(),
        };
        let iface = iface.clone().unwrap_or_default();
        let handle = match io {
            IoKind::Afpacket => {
                let group = (std::process::id() & 0xffff) as u16;
                spawn_worker(ctx, move || {
                    let config = AfPacketConfig {
                        fanout_group: Some(group),
                        ..AfPacketConfig::default()
                    };
                    AfPacketPort::open(&iface, &config)
                        .map(|p| (p, None))
                        .map_err(|e| e.to_string())
                })
            }
            IoKind::Afxdp => spawn_worker(ctx, move || {
                let port = AfXdpPort::open(&iface, index as u32, &AfXdpConfig::default())
                    .map_err(|e| e.to_string())?;
                let fd = port.fd();
                Ok((port, Some(fd)))
            }),
            #[cfg(feature = "dpdk")]
            IoKind::Dpdk => {
                let runtime = Arc::clone(dpdk.as_ref().expect("started above for io = dpdk"));
                let idle_us = cfg.dpdk().idle_sleep_us();
                spawn_worker(ctx, move || {
                    dpdk_io::open_port(runtime, index, idle_us).map(|p| (p, None))
                })
            }
            #[cfg(not(feature = "dpdk"))]
            IoKind::Dpdk => unreachable!("refused above without the dpdk feature"),
            IoKind::Mem => spawn_worker(ctx, || Ok((MemPort::new(64, Capture::CountOnly), None))),
        };
        workers.push(
            handle
                .map_err(|e| DaemonError::Startup(format!("cannot start worker {index}: {e}")))?,
        );
    }
    drop(opened_tx);
    // Every worker reports its port; AF_XDP sockets join the XSKMAP before traffic is steered.
    let deadline = Instant::now() + WORKER_START_WAIT;
    for _ in 0..workers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = opened_rx
            .recv_timeout(left)
            .map_err(|_| "a worker did not open its port in time".to_string())
            .and_then(|r| r);
        match report {
            Ok((queue, Some(fd))) => {
                if let Some(program) = xdp.as_mut() {
                    program.register_socket(queue as u32, fd).map_err(|e| {
                        DaemonError::Startup(format!("cannot register queue {queue}'s socket: {e}"))
                    })?;
                }
            }
            Ok(_) => {}
            Err(e) => {
                stop_workers.store(true, Ordering::Relaxed);
                for w in workers {
                    let _ = w.join();
                }
                return Err(DaemonError::Startup(format!(
                    "cannot open the packet port: {e}"
                )));
            }
        }
    }

    let stop_admin = Arc::new(AtomicBool::new(false));
    let admin = admin::start(
        cfg.admin().listen(),
        Arc::clone(&state),
        Arc::clone(&stop_admin),
    )
    .map_err(DaemonError::Startup)?;
    tracing::info!(
        name = cfg.name(),
        io = %io,
        interface = iface.as_deref().unwrap_or("-"),
        workers = dp.workers(),
        admin = %cfg.admin().listen(),
        "mux started"
    );

    let mut feed = HealthFeed::new(Arc::clone(&state.health));
    feed.configure(cfg.health());
    if !feed.agents().is_empty() {
        tracing::info!(
            agents = ?feed.agents(),
            poll_interval_ms = cfg.health().poll_interval().as_millis() as u64,
            "health feed polling"
        );
    }

    let signals = Signals::register().map_err(DaemonError::Startup)?;
    let mut control = Control {
        cfg,
        registry,
        options,
        state: Arc::clone(&state),
        xdp,
        announcer: None,
        iface,
        feed,
        tracker: Tracker::default(),
    };
    control.announcer = Some(Announcer::new(control.cfg.bgp()));

    // Run until told to stop.
    let mut last_housekeeping = Instant::now() - Duration::from_secs(1);
    loop {
        if signals.terminate.swap(false, Ordering::Relaxed) {
            break;
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            control.reload();
        }
        control.apply_health();
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            control.housekeeping();
            last_housekeeping = Instant::now();
        }
        std::thread::sleep(TICK);
    }

    // Graceful stop: withdraw, drain, stop.
    let drain = Duration::from_secs(u64::from(control.cfg.lifecycle().drain_seconds()));
    state.set_phase(Phase::Draining);
    control.reconcile_announcement();
    tracing::info!(
        drain_seconds = drain.as_secs(),
        "stopping: routes withdrawn, draining"
    );
    let until = Instant::now() + drain;
    while Instant::now() < until {
        if signals.terminate.swap(false, Ordering::Relaxed) {
            tracing::info!("second stop signal: skipping the rest of the drain");
            break;
        }
        // Flows still arrive while the routers converge: keep steering them off failed hosts.
        control.apply_health();
        std::thread::sleep(TICK);
    }
    stop_workers.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Every port is closed: stopping the devices now flushes what they buffer (captures).
    #[cfg(feature = "dpdk")]
    drop(dpdk);
    drop(control.feed);
    stop_admin.store(true, Ordering::Relaxed);
    let _ = admin.join();
    let c = state.counters();
    tracing::info!(
        rx = c.rx,
        forwarded = c.forwarded,
        dropped = c.dropped_total(),
        "mux stopped"
    );
    Ok(())
}

/// The flow clock counting from `origin`, with the wall-clock time it read 0 as of now.
fn flow_clock(origin: Instant) -> FlowClock {
    FlowClock {
        origin,
        origin_unix: SystemTime::now()
            .checked_sub(origin.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

/// The next hop's MAC: pinned in the config, or resolved through the kernel.
fn next_hop_mac(cfg: &MuxConfig, iface: Option<&str>, wait: Duration) -> Option<[u8; 6]> {
    if let Some(mac) = cfg.next_hop().mac() {
        return Some(mac);
    }
    let (Some(addr), Some(iface)) = (cfg.next_hop().address(), iface) else {
        return None;
    };
    neighbour::resolve(iface, addr, wait)
}

/// The XDP program's VIP keys for a snapshot.
fn xdp_keys(snap: &Snapshot) -> Vec<([u8; 16], u16, u8)> {
    snap.parts
        .vips
        .iter()
        .map(|v| (v.key.addr, v.key.port, v.key.protocol))
        .collect()
}

/// What a worker thread needs.
struct WorkerCtx {
    index: usize,
    cpu: Option<usize>,
    flow_capacity: usize,
    burst: usize,
    seed: u64,
    state: Arc<DaemonState>,
    stop: Arc<AtomicBool>,
    opened: mpsc::Sender<Opened>,
}

/// Starts a worker thread that opens its port with `open` (on the thread itself, so
/// per-thread state such as a pinned CPU applies to the port's setup) and runs until stopped.
fn spawn_worker<P, F>(ctx: WorkerCtx, open: F) -> std::io::Result<JoinHandle<()>>
where
    P: Port,
    F: FnOnce() -> Result<(P, Option<RawFd>), String> + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("mux-worker-{}", ctx.index))
        .spawn(move || {
            if let Some(cpu) = ctx.cpu
                && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
            {
                tracing::warn!(
                    worker = ctx.index,
                    cpu,
                    "could not pin the worker to its CPU"
                );
            }
            let (port, fd) = match open() {
                Ok(opened) => opened,
                Err(e) => {
                    let _ = ctx.opened.send(Err(format!("worker {}: {e}", ctx.index)));
                    return;
                }
            };
            let pipeline = Pipeline::new(ctx.flow_capacity, ctx.seed);
            let mut worker = Worker::new(port, pipeline, ctx.burst);
            let _ = ctx.opened.send(Ok((ctx.index, fd)));
            worker.run(
                &ctx.state.snapshot,
                &ctx.state.workers[ctx.index],
                &ctx.stop,
                ctx.state.started,
            );
        })
}

/// The control thread's mutable state.
struct Control {
    cfg: MuxConfig,
    registry: Registry,
    options: CompileOptions,
    state: Arc<DaemonState>,
    xdp: Option<XdpProgram>,
    announcer: Option<Announcer>,
    iface: Option<String>,
    feed: HealthFeed,
    tracker: Tracker,
}

impl Control {
    /// SIGHUP: load, validate, compile, publish — or refuse and keep serving.
    fn reload(&mut self) {
        let path = self.state.config_path.clone();
        let refuse = |state: &DaemonState, text: String| {
            state.reloads.failed.fetch_add(1, Ordering::Relaxed);
            for line in text.lines() {
                tracing::error!("reload refused: {line}");
            }
            tracing::error!("the previous configuration keeps serving");
            if let Ok(mut e) = state.reloads.last_error.lock() {
                *e = Some(text);
            }
        };
        let cfg = match config::load_file(&path) {
            Ok(cfg) => cfg,
            Err(errors) => return refuse(&self.state, errors.to_string()),
        };
        let restart_only = restart_only_changes(&self.cfg, &cfg);
        if !restart_only.is_empty() {
            tracing::warn!(fields = ?restart_only, "these changes take effect on restart only");
        }
        let generation = self.state.snapshot.load().generation() + 1;
        self.options.clock = flow_clock(self.state.started);
        let snapshot = match compile::compile(&cfg, &mut self.registry, generation, &self.options) {
            Ok(s) => s,
            Err(e) => return refuse(&self.state, e.to_string()),
        };
        if let Some(program) = self.xdp.as_mut() {
            // New VIPs are steered to the sockets before the snapshot that serves them.
            let mut keys = xdp_keys(&snapshot);
            keys.extend(xdp_keys(&self.state.snapshot.load()));
            if let Err(e) = program.update_vips(&keys) {
                return refuse(&self.state, format!("cannot update the XDP VIP map: {e}"));
            }
        }
        self.state.snapshot.store(Arc::new(snapshot));
        if let Some(program) = self.xdp.as_mut()
            && let Err(e) = program.update_vips(&xdp_keys(&self.state.snapshot.load()))
        {
            tracing::warn!(error = %e, "could not remove stale VIPs from the XDP map");
        }
        if self.cfg.bgp() != cfg.bgp() {
            self.announcer = Some(Announcer::new(cfg.bgp()));
        }
        if self.cfg.health() != cfg.health() {
            self.feed.configure(cfg.health());
            tracing::info!(agents = ?self.feed.agents(), "health feed reconfigured");
        }
        self.cfg = cfg;
        self.state.reloads.ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.state.reloads.last_error.lock() {
            *e = None;
        }
        tracing::info!(
            generation,
            vips = self.cfg.vips().len(),
            "configuration reloaded"
        );
        self.reconcile_announcement();
    }

    /// Once a second: next-hop MAC, readiness, announcement.
    fn housekeeping(&mut self) {
        if self.cfg.next_hop().mac().is_none()
            && let (Some(addr), Some(iface)) =
                (self.cfg.next_hop().address(), self.iface.as_deref())
        {
            let found = neighbour::lookup(iface, addr);
            if found.is_none() {
                neighbour::provoke(addr);
            }
            if found.is_some() && found != self.options.next_hop_mac {
                tracing::info!(next_hop = %addr, mac = ?found, "next hop MAC changed");
                self.options.next_hop_mac = found;
                self.republish();
            }
        }
        let next_hop_known =
            self.options.next_hop_mac.is_some() || self.cfg.dataplane().io() == IoKind::Mem;
        if self.state.phase() == Phase::Starting && self.state.workers_running() && next_hop_known {
            self.state.set_phase(Phase::Ready);
            tracing::info!("workers forwarding; ready");
        }
        self.reconcile_announcement();
    }

    /// Judges the agents' latest answers; on a change of the failed set, logs each transition
    /// and republishes with the new set.
    fn apply_health(&mut self) {
        let now = Instant::now();
        let judgements = match self.state.health.agents.lock() {
            Ok(agents) => health_decision::judge(
                self.cfg.vips(),
                &agents,
                now,
                self.cfg.health().stale_after(),
            ),
            Err(_) => return,
        };
        let (transitions, rows) = self
            .tracker
            .update(&judgements, now, health_feed::unix_ms_now());
        if let Ok(mut b) = self.state.health.backends.lock() {
            *b = rows;
        }
        for t in &transitions {
            let agent = t.agent.map_or_else(|| "-".to_string(), |a| a.to_string());
            if t.failed {
                tracing::info!(
                    vip = %t.vip,
                    backend = %t.backend,
                    agent = %agent,
                    cause = t.cause.map_or("-", |c| c.name()),
                    detect_ms = ?t.detect_ms,
                    "backend failed by health feed"
                );
            } else {
                tracing::info!(
                    vip = %t.vip,
                    backend = %t.backend,
                    agent = %agent,
                    "backend recovered"
                );
            }
        }
        let failed = self.tracker.failed_backends();
        if failed != self.options.failed {
            self.options.failed = failed;
            self.republish();
            self.reconcile_announcement();
        }
    }

    /// Recompiles the current config with new options (e.g. a new next-hop MAC).
    fn republish(&mut self) {
        let generation = self.state.snapshot.load().generation() + 1;
        self.options.clock = flow_clock(self.state.started);
        match compile::compile(&self.cfg, &mut self.registry, generation, &self.options) {
            Ok(s) => self.state.snapshot.store(Arc::new(s)),
            Err(e) => tracing::error!(error = %e, "could not republish the snapshot"),
        }
    }

    /// Announces what is servable while ready; nothing otherwise.
    fn reconcile_announcement(&mut self) {
        let want: BTreeSet<IpAddr> = if self.state.phase() == Phase::Ready {
            self.state.servable_vips()
        } else {
            BTreeSet::new()
        };
        let Some(announcer) = self.announcer.as_mut() else {
            return;
        };
        match announcer.set(&want) {
            Ok(true) => {
                tracing::info!(announced = ?want, "BGP announcement updated");
                if let Ok(mut a) = self.state.announced.lock() {
                    *a = want;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "BGP announcement failed; retrying in a second"),
        }
    }
}

/// Names of fields whose change needs a restart.
fn restart_only_changes(old: &MuxConfig, new: &MuxConfig) -> Vec<&'static str> {
    let (a, b) = (old.dataplane(), new.dataplane());
    let mut out = Vec::new();
    for (name, changed) in [
        ("dataplane.io", a.io() != b.io()),
        ("dataplane.interface", a.interface() != b.interface()),
        ("dataplane.workers", a.workers() != b.workers()),
        ("dataplane.cpus", a.cpus() != b.cpus()),
        (
            "dataplane.flow_table_capacity",
            a.flow_table_capacity() != b.flow_table_capacity(),
        ),
        ("dataplane.burst_size", a.burst_size() != b.burst_size()),
        ("admin.listen", old.admin().listen() != new.admin().listen()),
        ("dpdk", old.dpdk() != new.dpdk()),
    ] {
        if changed {
            out.push(name);
        }
    }
    out
}
