//! `mux run`: the forwarding daemon.
//!
//! Start: load and validate the config → find our MAC and the next hop's → read the
//! second-chance history (`[dataplane] second_chance_state`) → compile the first snapshot →
//! attach the XDP program (AF_XDP) → start one worker thread per queue, each opening its own
//! port (`ports`) → start the admin endpoint → start the announcement guard and the liveness
//! thread → once every worker polls and the next hop is known, want the VIPs that have usable
//! backends announced (graceful start: never announce before forwarding).
//!
//! Run: the control thread wakes every [`TICK`] to handle signals, health, the data-path probe
//! and housekeeping (`control`).
//!
//! Clocks: the workers' flow clock counts from [`DaemonState::started`]; every compile gets a
//! [`FlowClock`] with that origin and its current wall-clock equivalent, to turn failure times
//! and drain deadlines into flow-clock seconds. The announcement itself is carried by the liveness thread and
//! the guard process: they withdraw the VIPs within `[bgp] liveness_timeout_ms` whenever the
//! data path stops making progress, even if this process is killed or stopped
//! ([`crate::control::announce`]).
//!
//! Stop (SIGTERM or SIGINT, `stop`): withdraw every route and wait for the guard to confirm,
//! keep forwarding for `[lifecycle] drain_seconds` while the routers move traffic away, then
//! stop the workers, drain the flow-log rings completely to disk, and exit. A second signal
//! skips the rest of the drain.
//!
//! Flow logs (`[flow_log]`, `control::flow_log`): the rings and the writer thread start
//! before the workers (a file that cannot be opened refuses the start); every SIGHUP, whether
//! its reload is accepted or refused, has the writer reopen the file.
//!
//! With `io = "dpdk"` the DPDK devices start first (`dpdk_io`), and the workers open their
//! queue pairs on them; they are closed after the workers stop.

mod control;
mod ports;
mod stop;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, IoKind, MuxConfig};
use mux_daemon_kit::signals::Signals;
use mux_ports::afxdp::XdpProgram;

use crate::control::announce::{BirdSpeaker, GuardLink};
use crate::control::compile::{self, CompileOptions, FlowClock};
#[cfg(feature = "dpdk")]
use crate::control::dpdk_io;
use crate::control::flow_log::{FlowLogError, FlowLogWriter};
use crate::control::health_decision::Tracker;
use crate::control::health_feed::HealthFeed;
use crate::control::registry::Registry;
use crate::control::state::DaemonState;
use crate::control::{admin, liveness, neighbour};
use crate::dataplane::flow_log::FlowLogSink;
use crate::dataplane::snapshot::Snapshot;

use self::control::Control;

/// How often the control thread wakes.
pub const TICK: Duration = Duration::from_millis(100);
/// How long start-up waits for the next hop's MAC before starting unannounced.
const NEXT_HOP_WAIT: Duration = Duration::from_secs(3);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration was refused.
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    /// The configuration could not be compiled.
    #[error("{0}")]
    Compile(#[from] compile::CompileError),
    /// `io = "dpdk"` in a build without DPDK.
    #[error(
        "this mux was built without DPDK: rebuild with `cargo build --release --features dpdk` \
         (needs the dpdk-dev package), or use io = \"afxdp\" or \"afpacket\""
    )]
    NoDpdk,
    /// DPDK did not start.
    #[error("{0}")]
    Dpdk(String),
    /// The interface's MAC address could not be read.
    #[error("cannot read the MAC of interface {interface}: {message}; check [dataplane] interface")]
    InterfaceMac {
        /// The interface.
        interface: String,
        /// What went wrong.
        message: String,
    },
    /// The XDP program could not be attached or loaded with the VIPs.
    #[error("cannot attach the XDP program to {interface}: {message}")]
    Xdp {
        /// The interface.
        interface: String,
        /// What went wrong.
        message: String,
    },
    /// A worker thread could not be started.
    #[error("cannot start worker {index}: {source}")]
    Worker {
        /// The worker.
        index: usize,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A packet port could not be opened.
    #[error("cannot open the packet port: {0}")]
    PortOpen(String),
    /// An AF_XDP socket could not be registered with the XDP program.
    #[error("cannot register queue {queue}'s socket: {message}")]
    XskRegister {
        /// The queue.
        queue: usize,
        /// What went wrong.
        message: String,
    },
    /// The admin endpoint could not listen.
    #[error("{0}")]
    Admin(String),
    /// Signal handlers could not be installed.
    #[error("{0}")]
    Signals(String),
    /// The flow log could not start.
    #[error("{0}")]
    FlowLog(#[from] FlowLogError),
    /// The announcement guard or the liveness thread could not be started.
    #[error(
        "cannot start the announcement guard ({what}): {source}; the VIPs cannot be announced \
         safely without it"
    )]
    Guard {
        /// What failed.
        what: &'static str,
        /// What went wrong.
        source: std::io::Error,
    },
}

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
        return Err(DaemonError::NoDpdk);
    }
    // DPDK owns the NIC: start it first, its MAC is the encapsulated frames' source.
    #[cfg(feature = "dpdk")]
    let dpdk = match io {
        IoKind::Dpdk => Some(dpdk_io::start(&cfg).map_err(DaemonError::Dpdk)?),
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
            (None, None, Some(i)) => {
                Some(
                    neighbour::interface_mac(i).map_err(|e| DaemonError::InterfaceMac {
                        interface: i.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            (None, None, None) => None,
        },
        next_hop_mac: None,
        failed: Vec::new(),
        clock: flow_clock(started),
        weight_factors: Default::default(),
    };
    options.next_hop_mac = next_hop_mac(&cfg, iface.as_deref(), NEXT_HOP_WAIT);
    if options.next_hop_mac.is_none() && io != IoKind::Mem {
        tracing::warn!(
            next_hop = ?cfg.next_hop().address(),
            "next hop MAC unknown; VIPs stay unannounced until the kernel resolves it"
        );
    }

    let mut registry = Registry::default();
    // Second chance: the previous tables this MUX (or the peer whose file it was given) had
    // before it started; the table its file records as current becomes a previous one now if
    // this config's differs.
    let history = control::load_history(&cfg);
    let (snapshot, history) = compile::compile_with_history(
        &cfg,
        &mut registry,
        1,
        &options,
        &history,
        SystemTime::now(),
    )?;
    control::save_history(&cfg, &history);
    let previous_tables = control::previous_table_count(&snapshot);
    let state = Arc::new(DaemonState::new(
        cfg.name().to_string(),
        config_path.to_path_buf(),
        snapshot,
        dp.workers(),
        started,
    ));

    let mut xdp = match (io, &iface) {
        (IoKind::Afxdp, Some(i)) => {
            let xdp_error = |e: &dyn std::fmt::Display| DaemonError::Xdp {
                interface: i.clone(),
                message: e.to_string(),
            };
            let mut program =
                XdpProgram::attach(i, dp.workers() as u32).map_err(|e| xdp_error(&e))?;
            program
                .update_vips(&xdp_keys(&state.snapshot.load()))
                .map_err(|e| xdp_error(&format!("cannot load the VIP map: {e}")))?;
            Some(program)
        }
        _ => None,
    };

    // Flow logs: one ring per worker, the writer's file opened before any worker runs.
    let (flow_log_sinks, flow_log) = match cfg.flow_log() {
        Some(f) => {
            let (sinks, sources): (Vec<_>, Vec<_>) = (0..dp.workers())
                .map(|_| FlowLogSink::ring(f.queue_depth()))
                .unzip();
            let writer = FlowLogWriter::start(f.into(), sources, Arc::clone(&state))?;
            let _ = state.flow_log.set(writer.stats());
            tracing::info!(
                path = %f.path().display(),
                sample = f.sample(),
                queue_depth = f.queue_depth(),
                "flow log writing"
            );
            (sinks, Some(writer))
        }
        None => (Vec::new(), None),
    };

    let workers = ports::start_workers(
        &cfg,
        &state,
        flow_log_sinks,
        xdp.as_mut(),
        #[cfg(feature = "dpdk")]
        dpdk.as_ref(),
    )?;

    let stop_admin = Arc::new(AtomicBool::new(false));
    let admin = match admin::start(
        cfg.admin().listen(),
        Arc::clone(&state),
        Arc::clone(&stop_admin),
    ) {
        Ok(a) => a,
        Err(e) => {
            workers.stop();
            return Err(DaemonError::Admin(e));
        }
    };

    // The guard first (it announces nothing until the first heartbeat), then the thread that
    // feeds it; from here on the announcement lives and dies with the data path.
    let timeout = cfg.bgp().liveness_timeout();
    let guard = match BirdSpeaker::from_config(cfg.bgp()) {
        Some(speaker) => match GuardLink::start(speaker, timeout) {
            Ok(link) => {
                tracing::info!(
                    pid = link.pid(),
                    liveness_timeout_ms = timeout.as_millis() as u64,
                    "announcement guard started"
                );
                Some(link)
            }
            Err(source) => {
                workers.stop();
                return Err(DaemonError::Guard {
                    what: "spawning `mux announce-guard`",
                    source,
                });
            }
        },
        None => None,
    };
    let stop_liveness = Arc::new(AtomicBool::new(false));
    let liveness = liveness::spawn(
        Arc::clone(&state),
        guard,
        timeout,
        Arc::clone(&stop_liveness),
    )
    .map_err(|source| DaemonError::Guard {
        what: "starting the liveness thread",
        source,
    })?;

    tracing::info!(
        name = cfg.name(),
        io = %io,
        interface = iface.as_deref().unwrap_or("-"),
        workers = dp.workers(),
        admin = %cfg.admin().listen(),
        previous_tables,
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

    let signals = Signals::register().map_err(DaemonError::Signals)?;
    let mut control = Control {
        cfg,
        registry,
        options,
        state: Arc::clone(&state),
        xdp,
        #[cfg(feature = "dpdk")]
        dpdk: dpdk.clone(),
        iface,
        feed,
        tracker: Tracker::default(),
        last_health: None,
        stale_hold_until: None,
        history,
        load_weights: Default::default(),
        flow_log,
    };

    // Run until told to stop.
    let mut last_housekeeping = Instant::now() - Duration::from_secs(1);
    loop {
        if signals.terminate.swap(false, Ordering::Relaxed) {
            break;
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            control.reload();
            // Accepted or refused, a SIGHUP reopens the flow log (external rotation).
            control.reopen_flow_log();
        }
        control.apply_health();
        control.probe_datapath();
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            control.housekeeping();
            last_housekeeping = Instant::now();
        }
        std::thread::sleep(TICK);
    }

    stop::graceful(
        &mut control,
        &signals,
        stop::Running {
            workers,
            liveness,
            stop_liveness,
            admin,
            stop_admin,
        },
    );
    #[cfg(feature = "dpdk")]
    {
        // Every port is closed: stopping the devices now flushes what they buffer (captures).
        drop(control);
        drop(dpdk);
    }
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
