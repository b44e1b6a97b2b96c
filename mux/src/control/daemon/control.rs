//! The control thread's work between two ticks: reloads, health, housekeeping, and what the
//! announcement should say.
//!
//! - SIGHUP ([`Control::reload`]): parse → validate → compile (Maglev built here, off the data
//!   path) → publish with one atomic pointer swap. A reload that adds or removes `[flow_log]`
//!   or changes its `queue_depth` is refused (the rings are made at start): restart for that.
//!   Then, accepted or not, [`Control::reopen_flow_log`]. Workers pick it up between bursts; flow
//!   tables survive because backend ids are stable. A bad file is refused, its errors logged
//!   and counted, and the old snapshot keeps serving.
//! - every tick ([`Control::apply_health`]): judge the health feed's latest agent answers; when
//!   the failed set differs from the one compiled in, recompile with it and publish, so a
//!   failed backend takes no new flows within one tick of the answer that reported it; its
//!   flows stay pinned for its `failed_backend_grace` (the snapshot carries the grace's end, so
//!   the workers re-hash them when it passes, with no republish). A reload keeps the failed set
//!   with each failure's time (an input of the compile step, not of the file), so it keeps
//!   every grace deadline.
//! - second chance: every publish (reload or health republish) compiles against the previous
//!   tables' history ([`TableHistory`]) and keeps the successor only once the snapshot is
//!   published; with `[dataplane] second_chance_state` it is then written to that file, which
//!   the next start reads (see `control::table_history`).
//! - every tick ([`Control::probe_datapath`]): is the path to the NIC intact (XDP link
//!   attached, DPDK link up)? The liveness thread withdraws the VIPs while it is not.
//! - every second ([`Control::housekeeping`]): re-read the next hop's MAC (unless pinned) and
//!   republish if it changed; become ready once the workers poll and the next hop is known;
//!   reconcile the wanted announcement.
//!
//! Fields that shape the running data plane (`io`, `interface`, `workers`, `cpus`,
//! `flow_table_capacity`, `burst_size`, `[admin] listen`, `[dpdk]`, `[bgp]`) take effect on
//! restart; a reload that changes them applies everything else and logs which ones wait.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, FlowLog, IoKind, MuxConfig};
use mux_ports::afxdp::XdpProgram;

use crate::control::compile::{self, CompileOptions};
use crate::control::flow_log::FlowLogWriter;
use crate::control::health_decision::{self, Tracker};
use crate::control::health_feed::{self, HealthFeed};
use crate::control::load_weights::{self, LoadWeights};
use crate::control::neighbour;
use crate::control::registry::Registry;
use crate::control::state::{DaemonState, Phase};
use crate::control::table_history::{self, TableHistory};

use super::xdp_keys;

/// The control thread's mutable state.
#[derive(Debug)]
pub struct Control {
    pub(super) cfg: MuxConfig,
    pub(super) registry: Registry,
    pub(super) options: CompileOptions,
    pub(super) state: Arc<DaemonState>,
    pub(super) xdp: Option<XdpProgram>,
    #[cfg(feature = "dpdk")]
    pub(super) dpdk: Option<Arc<mux_ports::dpdk::DpdkRuntime>>,
    pub(super) iface: Option<String>,
    pub(super) feed: HealthFeed,
    pub(super) tracker: Tracker,
    /// When [`Control::apply_health`] last ran.
    pub(super) last_health: Option<Instant>,
    /// Until when silence counts for nothing: the process itself was paused (SIGSTOP, a
    /// starved VM), and its pollers need a poll to hear from the agents again.
    pub(super) stale_hold_until: Option<Instant>,
    /// The previous tables of the published snapshot's VIPs.
    pub(super) history: TableHistory,
    /// Load-aware weights (`[vip.load_aware]`).
    pub(super) load_weights: LoadWeights,
    /// The flow-log writer, with `[flow_log]`; taken by the stop.
    pub(super) flow_log: Option<FlowLogWriter>,
}

/// A gap between two health judgements this long means the process was not running (the
/// control thread wakes every tick): agents' silence over it is ours, not theirs.
const PAUSE_GAP: Duration = Duration::from_secs(1);

impl Control {
    /// SIGHUP: load, validate, compile, publish — or refuse and keep serving.
    pub fn reload(&mut self) {
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
        if let Some(why) = FlowLog::restart_needed(self.cfg.flow_log(), cfg.flow_log()) {
            return refuse(&self.state, why);
        }
        let restart_only = restart_only_changes(&self.cfg, &cfg);
        if !restart_only.is_empty() {
            tracing::warn!(fields = ?restart_only, "these changes take effect on restart only");
        }
        let generation = self.state.snapshot.load().generation() + 1;
        self.options.clock = super::flow_clock(self.state.started);
        let compiled = compile::compile_with_history(
            &cfg,
            &mut self.registry,
            generation,
            &self.options,
            &self.history,
            SystemTime::now(),
        );
        let (snapshot, history) = match compiled {
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
        let previous_tables = previous_table_count(&snapshot);
        self.state.snapshot.store(Arc::new(snapshot));
        self.history = history;
        save_history(&cfg, &self.history);
        if let Some(program) = self.xdp.as_mut()
            && let Err(e) = program.update_vips(&xdp_keys(&self.state.snapshot.load()))
        {
            tracing::warn!(error = %e, "could not remove stale VIPs from the XDP map");
        }
        if self.cfg.health() != cfg.health() {
            self.feed.configure(cfg.health());
            tracing::info!(agents = ?self.feed.agents(), "health feed reconfigured");
        }
        // [bgp] is restart-only: the announcement guard keeps the speaker it started with.
        self.cfg = cfg;
        self.state.reloads.ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.state.reloads.last_error.lock() {
            *e = None;
        }
        tracing::info!(
            generation,
            vips = self.cfg.vips().len(),
            previous_tables,
            "configuration reloaded"
        );
        self.reconcile_announcement();
    }

    /// SIGHUP: the flow-log writer writes what is queued and reopens its file, with the
    /// `[flow_log]` in force (the reloaded one if the reload was accepted).
    pub fn reopen_flow_log(&self) {
        if let (Some(writer), Some(f)) = (&self.flow_log, self.cfg.flow_log()) {
            writer.reopen(f.into());
        }
    }

    /// Once a second: next-hop MAC, readiness, announcement.
    pub fn housekeeping(&mut self) {
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

    /// Checks the path between the workers and the wire: the XDP program still attached
    /// through our link (not detached by `bpftool link detach`, its interface not deleted),
    /// the DPDK port valid with its link up. Records the fault for the liveness thread.
    pub fn probe_datapath(&mut self) {
        let mut fault = None;
        if let Some(program) = &self.xdp {
            let (ifname, _) = program.interface();
            match program.still_attached() {
                Ok(true) => {}
                Ok(false) => {
                    fault = Some(format!(
                        "the XDP program is no longer attached to {ifname} (interface gone or \
                         link detached): VIP traffic no longer reaches the workers"
                    ))
                }
                Err(e) => fault = Some(format!("cannot check the XDP link on {ifname}: {e}")),
            }
        }
        #[cfg(feature = "dpdk")]
        if let Some(rt) = &self.dpdk
            && !rt.nic_link_up()
        {
            fault = Some(format!(
                "the DPDK port {} is gone or its link is down",
                rt.nic().name()
            ));
        }
        self.state.set_datapath_fault(fault);
    }

    /// Judges the agents' latest answers; on a change of the failed set, logs each transition
    /// and republishes with the new set.
    ///
    /// After a pause of the whole process (SIGSTOP and SIGCONT), every agent looks silent for
    /// the length of the pause, though it is the MUX's pollers that did not ask. Judging is
    /// suspended (the applied states stand) until the pollers have had a full poll (interval
    /// + timeout) since the pause.
    pub fn apply_health(&mut self) {
        let now = Instant::now();
        let health = self.cfg.health();
        if let Some(last) = self.last_health
            && now.saturating_duration_since(last) >= PAUSE_GAP
        {
            let hold = now + health.poll_interval() + health.timeout() + super::TICK;
            tracing::warn!(
                paused_ms = now.saturating_duration_since(last).as_millis() as u64,
                "the MUX was not running (stopped or starved): agents' silence is not judged \
                 until the pollers have asked again"
            );
            self.stale_hold_until = Some(hold);
        }
        self.last_health = Some(now);
        if self.stale_hold_until.is_some_and(|until| now < until) {
            return;
        }
        let stale_after = health.stale_after();
        let judgements = match self.state.health.agents.lock() {
            Ok(agents) => health_decision::judge(self.cfg.vips(), &agents, now, stale_after),
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
        let mut republish = false;
        if failed != self.options.failed {
            self.options.failed = failed;
            republish = true;
        }
        if self.revise_load_weights(now) {
            republish = true;
        }
        if republish {
            self.republish();
            self.reconcile_announcement();
        }
    }

    /// Load-aware weights: revises the factors of the VIPs whose interval has passed from
    /// the agents' last reports (`control::load_weights`); true when one changed.
    fn revise_load_weights(&mut self, now: Instant) -> bool {
        if !self.cfg.vips().iter().any(|v| v.load_aware().is_some()) {
            return false;
        }
        let failed: Vec<(String, IpAddr)> = self
            .options
            .failed
            .iter()
            .map(|f| (f.vip.clone(), f.backend))
            .collect();
        let changes = {
            let Ok(agents) = self.state.health.agents.lock() else {
                return false;
            };
            self.load_weights.revise(
                self.cfg.vips(),
                |vip, signal| load_weights::reported_loads(vip, &agents, signal),
                |vip, backend| failed.iter().any(|(v, b)| v == vip && *b == backend),
                now,
            )
        };
        for c in &changes {
            tracing::info!(vip = %c.vip, backend = %c.backend, from = c.from, to = c.to, reason = %c.reason, "load-aware weight changed");
        }
        if let Ok(mut w) = self.state.health.weights.lock() {
            *w = self.load_weights.views(self.cfg.vips());
        }
        if changes.is_empty() {
            return false;
        }
        self.state
            .health
            .weight_changes
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        self.options.weight_factors = self.load_weights.factors();
        true
    }

    /// Recompiles the current config with new options (e.g. a new next-hop MAC, a new failed
    /// set: a table changed by health is a generation like any other).
    pub fn republish(&mut self) {
        let generation = self.state.snapshot.load().generation() + 1;
        self.options.clock = super::flow_clock(self.state.started);
        match compile::compile_with_history(
            &self.cfg,
            &mut self.registry,
            generation,
            &self.options,
            &self.history,
            SystemTime::now(),
        ) {
            Ok((snapshot, history)) => {
                self.state.snapshot.store(Arc::new(snapshot));
                self.history = history;
                save_history(&self.cfg, &self.history);
            }
            Err(e) => tracing::error!(error = %e, "could not republish the snapshot"),
        }
    }

    /// A clean stop: the second-chance history records that no new flow started here after
    /// `at_unix_ms`, and is written with that moment (see `table_history`, Restarts).
    pub fn mark_history_stopped(&mut self, at_unix_ms: u64) {
        self.history.mark_stopped(at_unix_ms);
        save_history(&self.cfg, &self.history);
    }

    /// Wants what is servable while ready, nothing otherwise; the liveness thread hands it to
    /// the announcement guard, which announces it while the data path is alive.
    pub fn reconcile_announcement(&mut self) {
        let want: BTreeSet<IpAddr> = if self.state.phase() == Phase::Ready {
            self.state.servable_vips()
        } else {
            BTreeSet::new()
        };
        self.state.set_wanted(want);
    }
}

/// Previous tables over all VIPs of a snapshot (logs).
pub(super) fn previous_table_count(snap: &crate::dataplane::snapshot::Snapshot) -> usize {
    snap.parts.vips.iter().map(|v| v.previous.len()).sum()
}

/// Writes the history to `[dataplane] second_chance_state`, when set; a failure is logged
/// (the MUX keeps forwarding; a restart would start without the history).
pub(super) fn save_history(cfg: &MuxConfig, history: &TableHistory) {
    if let Some(path) = cfg.dataplane().second_chance_state()
        && let Err(e) = table_history::save(path, history, SystemTime::now())
    {
        tracing::warn!(error = %e, "second-chance history not saved");
    }
}

/// The history the MUX starts from: `[dataplane] second_chance_state`'s, when set and
/// readable; otherwise none (logged), never a refusal to start.
pub(super) fn load_history(cfg: &MuxConfig) -> TableHistory {
    let Some(path) = cfg.dataplane().second_chance_state() else {
        return TableHistory::default();
    };
    match table_history::load(path) {
        Ok(loaded) => {
            if loaded.skipped > 0 {
                tracing::warn!(
                    path = %path.display(),
                    skipped = loaded.skipped,
                    "second-chance history: tables that do not build were skipped"
                );
            }
            tracing::info!(
                path = %path.display(),
                vips = loaded.history.len(),
                "second-chance history loaded"
            );
            loaded.history
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting without second-chance history");
            TableHistory::default()
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
        ("dataplane.idle", a.idle() != b.idle()),
        (
            "dataplane.idle_poll_us",
            a.idle_poll_us() != b.idle_poll_us(),
        ),
        (
            "dataplane.idle_sleep_max_us",
            a.idle_sleep_max_us() != b.idle_sleep_max_us(),
        ),
        ("admin.listen", old.admin().listen() != new.admin().listen()),
        ("dpdk", old.dpdk() != new.dpdk()),
        ("bgp", old.bgp() != new.bgp()),
    ] {
        if changed {
            out.push(name);
        }
    }
    out
}
