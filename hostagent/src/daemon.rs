//! `hostagent run`: the agent's daemon.
//!
//! Start: load and validate the config → build the service table → read the connection state
//! file into a new connection table (second chance's restart rule: the connections carried
//! before a restart are still known) → delete what an earlier agent left on the host (crash
//! clean-up) → create the TUN device and open the tunnel sockets → install the routes and
//! capture rules → start the health checker, the admin endpoint, the state writer and the
//! forwarder thread → ready (`/readyz` answers 200).
//!
//! Run: the control thread wakes every 100 ms for signals.
//! - SIGHUP: parse → validate → build the new service table → add the new capture rules →
//!   hand the table to the forwarder (adopted between batches) → delete the stale rules. A bad
//!   file is refused with every error logged and counted, and the old configuration keeps
//!   serving. The health checker keeps the state of backends that are still configured; the
//!   connection table keeps every connection (new timeouts apply from each one's next
//!   packet). `[interception]`, `[connections]` and `[admin] listen` changes need a restart
//!   (logged).
//! - SIGTERM / SIGINT: not ready, stop the forwarder (which hands a last copy of the
//!   connection table to the state writer), wait for the file to be written, remove every
//!   rule and route, close the TUN device (which removes it), stop the checker and the
//!   endpoint, exit 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use mux_daemon_kit::signals::Signals;

use crate::config::{self, ConfigErrors, HostAgentConfig};
use crate::control::admin;
use crate::control::health::HealthChecker;
use crate::control::state::AgentState;
use crate::control::state::StateFileStats;
use crate::dataplane::{ConnTable, DataPath, ServiceTable, TableError};
use crate::io::forwarder::Forwarder;
use crate::io::host_setup::{HostSetup, SetupError};
use crate::io::raw::RawSender;
use crate::io::state_file::{self, StateWriter};
use crate::io::tun::Tun;

/// How often the control thread wakes.
const TICK: Duration = Duration::from_millis(100);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration was refused.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The services could not be turned into a table.
    #[error("{0}")]
    Table(#[from] TableError),
    /// The host's network could not be set up.
    #[error("{0}")]
    Setup(#[from] SetupError),
    /// Something else needed to start was missing or failed.
    #[error("{0}")]
    Startup(String),
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let cfg = config::load_file(config_path)?;
    let table = ServiceTable::from_config(&cfg)?;
    let settings = cfg.interception();
    let state_path = state_file_path(config_path, &cfg.connections().state_file);
    let state_stats = Arc::new(StateFileStats::default());
    let datapath = restore_connections(&cfg, table, &state_path, &state_stats);

    HostSetup::clean_stale(&settings);
    let tun = Tun::open(&settings.tun_name).map_err(|e| {
        DaemonError::Startup(format!(
            "cannot create TUN device {}: {e}; the agent needs root and /dev/net/tun",
            settings.tun_name
        ))
    })?;
    let receivers = Forwarder::open_receivers().map_err(|e| {
        DaemonError::Startup(format!("cannot open the tunnel sockets: {e}; run as root"))
    })?;
    let sender = RawSender::open(settings.mark).map_err(|e| {
        DaemonError::Startup(format!("cannot open the send socket: {e}; run as root"))
    })?;
    let mut setup = match HostSetup::install(&settings, datapath.table().services()) {
        Ok(s) => s,
        Err(e) => {
            HostSetup::clean_stale(&settings);
            return Err(e.into());
        }
    };
    for rule in setup.rules() {
        tracing::debug!(rule = %rule.describe(), "capture rule");
    }

    let signals = Signals::register().map_err(DaemonError::Startup)?;
    let mut checker = HealthChecker::start(&cfg);
    let mut state = AgentState::new(
        cfg.name().to_string(),
        config_path.to_path_buf(),
        checker.view(),
    );
    state.state_file = Arc::clone(&state_stats);
    let state = Arc::new(state);
    let stop_admin = Arc::new(AtomicBool::new(false));
    let admin = match admin::start(
        cfg.admin_listen(),
        Arc::clone(&state),
        Arc::clone(&stop_admin),
    ) {
        Ok(a) => a,
        Err(e) => {
            checker.stop();
            setup.remove();
            return Err(DaemonError::Startup(e));
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (table_tx, table_rx) = mpsc::channel::<ServiceTable>();
    let (writer, link) = match StateWriter::start(state_path.clone(), Arc::clone(&state_stats)) {
        Ok((w, l)) => (Some(w), Some(l)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the state writer; connections will not be saved");
            (None, None)
        }
    };
    let mut forwarder = Forwarder::new(tun, receivers, sender, datapath, link);
    let forwarder_thread = {
        let stop = Arc::clone(&stop);
        let state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("hostagent-fwd".into())
            .spawn(move || {
                forwarder.run(&stop, &table_rx, |data_path, io| {
                    state.publish_data_path(data_path);
                    state.io.store(io);
                });
            })
            .map_err(|e| DaemonError::Startup(format!("cannot start the forwarder: {e}")))?
    };
    state.set_ready(true);
    tracing::info!(
        name = cfg.name(),
        tun = %settings.tun_name,
        services = cfg.services().len(),
        admin = %cfg.admin_listen(),
        "hostagent started"
    );

    let mut current = cfg;
    while !signals.terminate.load(Ordering::Relaxed) {
        if signals.reload.swap(false, Ordering::Relaxed) {
            match reload(config_path, &current, &mut setup, &table_tx) {
                Ok(cfg) => {
                    checker.reload(&cfg);
                    state.generation.fetch_add(1, Ordering::AcqRel);
                    state.reloads.record_ok();
                    current = cfg;
                }
                Err(text) => {
                    state.reloads.record_failed(text.clone());
                    for line in text.lines() {
                        tracing::error!("reload refused: {line}");
                    }
                    tracing::error!("the previous configuration keeps serving");
                }
            }
        }
        std::thread::sleep(TICK);
    }

    tracing::info!("stopping");
    state.set_ready(false);
    stop.store(true, Ordering::Relaxed);
    let _ = forwarder_thread.join();
    if let Some(writer) = writer {
        writer.join();
    }
    setup.remove();
    checker.stop();
    stop_admin.store(true, Ordering::Relaxed);
    let _ = admin.join();
    let c = state.data_path().counters;
    tracing::info!(
        inbound = c.inbound,
        delivered = c.delivered,
        replies_rewritten = c.replies_rewritten,
        dropped = c.total_drops(),
        "hostagent stopped"
    );
    Ok(())
}

/// The state file: `configured` as is when absolute, else relative to the configuration
/// file's directory.
pub fn state_file_path(config_path: &Path, configured: &Path) -> PathBuf {
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    config_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(configured)
}

/// The data path with its connection table sized from `[connections] capacity` and filled
/// from the state file (entries with time left). A missing file is a first start; an
/// unreadable or damaged one is logged and ignored (the table re-learns from replies).
fn restore_connections(
    cfg: &HostAgentConfig,
    table: ServiceTable,
    path: &Path,
    stats: &StateFileStats,
) -> DataPath {
    *stats
        .path
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = path.display().to_string();
    let capacity = cfg.connections().capacity;
    let mut datapath = DataPath::with_connections(table, ConnTable::with_capacity(capacity));
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the state file's directory");
    }
    match state_file::load(path, SystemTime::now()) {
        Ok(loaded) => {
            let restored = datapath.restore_connections(&loaded.records);
            stats.loaded.store(restored as u64, Ordering::Relaxed);
            stats
                .load_expired
                .store(loaded.expired as u64, Ordering::Relaxed);
            tracing::info!(
                path = %path.display(),
                restored,
                expired = loaded.expired,
                refused = loaded.records.len() - restored,
                "connections restored from the state file"
            );
        }
        Err(e) => {
            stats.set_last_error(e.to_string());
            tracing::warn!(error = %e, "connection state not restored");
        }
    }
    datapath
}

/// SIGHUP: the new configuration, applied — or the errors, with nothing changed.
fn reload(
    path: &Path,
    current: &HostAgentConfig,
    setup: &mut HostSetup,
    tables: &mpsc::Sender<ServiceTable>,
) -> Result<HostAgentConfig, String> {
    let cfg = config::load_file(path).map_err(|e| e.to_string())?;
    let table = ServiceTable::from_config(&cfg).map_err(|e| e.to_string())?;
    if cfg.interception() != current.interception() {
        tracing::warn!("[interception] changes take effect on restart only");
    }
    if cfg.admin_listen() != current.admin_listen() {
        tracing::warn!("[admin] listen changes take effect on restart only");
    }
    if cfg.connections() != current.connections() {
        tracing::warn!("[connections] changes take effect on restart only");
    }
    // New rules first, so a service present before and after never loses its capture; the
    // forwarder adopts the table between batches.
    let specs: Vec<_> = table.services().to_vec();
    setup.reconcile(&specs).map_err(|e| e.to_string())?;
    tables
        .send(table)
        .map_err(|_| "the forwarder has stopped".to_string())?;
    tracing::info!(services = cfg.services().len(), "configuration reloaded");
    Ok(cfg)
}
