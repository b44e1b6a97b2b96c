//! `/metrics`: the daemon's state in the Prometheus text format.
//!
//! A `prometheus-client` collector builds every metric on demand from [`DaemonState`] (the
//! workers' published counters, the snapshot, reload and announcement state), so nothing on
//! the data path knows about Prometheus and a scrape costs the workers nothing.
//!
//! Metric reference (all counters end in `_total`):
//! - `mux_packets_total{outcome}` — frames by outcome: `rx`, `forwarded`, `to_kernel`,
//!   `icmp_too_big_sent`, `drain_reset_sent`, `fragments_forwarded`, `icmp_errors_forwarded`;
//! - `mux_rx_bytes_total`;
//! - `mux_dropped_packets_total{reason}` — one series per drop reason;
//! - `mux_flow_events_total{event}` — `hit`, `failed_backend_grace_hit` (a hit on a failed
//!   backend within its grace, also counted in `hit`), `new`, `rehashed` (backend removed),
//!   `rehashed_after_grace`, `rehashed_after_drain`, `evicted`, `table_full`, `second_chance`
//!   (a new flow that got a second-chance entry naming an alternative backend, also in `new`);
//! - `mux_second_chance_packets_total{outcome}` — `sent` (encapsulated with an alternative in
//!   the outer header), `skipped_mtu` (had one, sent plain: the option did not fit the MTU);
//! - `mux_vip_previous_tables{vip}` — previous Maglev tables of the VIP still within
//!   `second_chance_window_seconds` (0 to 4);
//! - `mux_vip_forwarded_packets_total{vip}`, `mux_backend_forwarded_packets_total{vip,backend}`;
//! - `mux_backend_up{vip,backend,state}` — 1 per backend, labelled with its state;
//! - `mux_backend_flows{vip,backend}` — flows the backend still receives, summed over the
//!   workers' last census sweeps (absent until every worker has completed one, and for ids
//!   beyond the census bound); `mux_backend_drained{vip,backend}` — per draining backend, 1
//!   once it receives nothing more (see `DaemonState::backend_views`);
//! - `mux_flows{worker}`, `mux_flow_capacity{worker}` — live flow entries and table size;
//!   `mux_flows_unattributed{worker}` — live entries whose backend id is beyond the census
//!   bound; `mux_flow_census_age_ms{worker}` — age of the last completed census sweep;
//! - `mux_port_packets_total{worker,direction}`, `mux_port_dropped_packets_total{worker,direction}`
//!   — what each worker's port moved and lost (ring full, no buffer, refused);
//!   `mux_worker_idle_waits_total{worker}` — times the worker slept on its port when idle;
//! - `mux_config_generation`, `mux_reloads_total{result}`, `mux_ready`, `mux_vip_announced{address}`;
//! - the announcement's liveness: `mux_data_path_alive` (1 while every worker polls and the
//!   data path is intact), `mux_data_path_downs_total` (times it was found down),
//!   `mux_announce_guard_restarts_total` (the guard process died and was replaced);
//! - the health feed: `mux_health_agent_up{agent}` (1 while the agent's last poll succeeded),
//!   `mux_health_polls_total{agent,result}` (`ok`, `failed`), and per backend some agent
//!   reports `mux_backend_health_failed{vip,backend}` (1 while the feed fails it),
//!   `mux_backend_health_transitions_total{vip,backend}` and
//!   `mux_backend_health_detect_ms{vip,backend}` (detection time of its last failure, once it
//!   has one).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use mux_shared::prometheus_text::{self, counter_family, gauge_family, label};

use mux_shared::flow_key::unmap;

use crate::control::state::{DaemonState, Phase, backend_state_name, census_age_ms};
use crate::dataplane::verdict::DropReason;

#[derive(Debug)]
struct MuxCollector(Arc<DaemonState>);

/// Renders the current metrics as Prometheus text.
pub fn render(state: &Arc<DaemonState>) -> String {
    prometheus_text::render(Box::new(MuxCollector(Arc::clone(state))))
}

impl Collector for MuxCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        let c = state.counters();
        let snap = state.snapshot.load();

        let outcomes = [
            ("rx", c.rx),
            ("forwarded", c.forwarded),
            ("to_kernel", c.to_kernel),
            ("icmp_too_big_sent", c.icmp_too_big_sent),
            ("drain_reset_sent", c.drain_resets_sent),
            ("fragments_forwarded", c.fragments_forwarded),
            ("icmp_errors_forwarded", c.icmp_errors_forwarded),
        ];
        let series: Vec<_> = outcomes
            .iter()
            .map(|(o, v)| (vec![label("outcome", o)], *v))
            .collect();
        counter_family(
            &mut e,
            "mux_packets",
            "Frames by outcome, summed over workers.",
            &series,
        )?;
        counter_family(
            &mut e,
            "mux_rx_bytes",
            "Bytes received.",
            &[(vec![], c.rx_bytes)],
        )?;
        let series: Vec<_> = DropReason::ALL
            .iter()
            .map(|r| (vec![label("reason", r.name())], c.dropped(*r)))
            .collect();
        counter_family(
            &mut e,
            "mux_dropped_packets",
            "Dropped frames by reason.",
            &series,
        )?;
        let events = [
            ("hit", c.flow_hits),
            ("failed_backend_grace_hit", c.failed_backend_grace_hits),
            ("new", c.new_flows),
            ("rehashed", c.flows_rehashed),
            ("rehashed_after_grace", c.flows_rehashed_after_grace),
            ("rehashed_after_drain", c.flows_rehashed_after_drain),
            ("evicted", c.flows_evicted),
            ("table_full", c.flow_table_full),
            ("second_chance", c.second_chance_flows),
        ];
        let series: Vec<_> = events
            .iter()
            .map(|(ev, v)| (vec![label("event", ev)], *v))
            .collect();
        counter_family(&mut e, "mux_flow_events", "Flow-table outcomes.", &series)?;
        counter_family(
            &mut e,
            "mux_second_chance_packets",
            "Frames that had an alternative backend: sent with it, or sent plain because it did not fit the MTU.",
            &[
                (vec![label("outcome", "sent")], c.second_chance_sent),
                (
                    vec![label("outcome", "skipped_mtu")],
                    c.second_chance_skipped_mtu,
                ),
            ],
        )?;
        let now = state.flow_now();
        let series: Vec<_> = snap
            .parts
            .vips
            .iter()
            .map(|v| {
                let n = v.previous.iter().filter(|t| now < t.until).count();
                (vec![label("vip", &v.name)], n as i64)
            })
            .collect();
        gauge_family(
            &mut e,
            "mux_vip_previous_tables",
            "Previous Maglev tables of the VIP still within second_chance_window_seconds: the tables that may name a flow's alternative backend.",
            &series,
        )?;

        let series: Vec<_> = snap
            .parts
            .vips
            .iter()
            .map(|v| {
                let n = c.vip_forwarded.get(v.id as usize).copied().unwrap_or(0);
                (vec![label("vip", &v.name)], n)
            })
            .collect();
        counter_family(
            &mut e,
            "mux_vip_forwarded_packets",
            "Frames forwarded per VIP.",
            &series,
        )?;
        let mut per_backend = Vec::new();
        let mut up = Vec::new();
        for (id, b) in snap.parts.backends.iter().enumerate() {
            let Some(b) = b else { continue };
            let vip = snap
                .parts
                .vips
                .iter()
                .find(|v| v.id == b.vip_id)
                .map_or("?", |v| v.name.as_str());
            let addr = unmap(b.address).to_string();
            let n = c.backend_forwarded.get(id).copied().unwrap_or(0);
            per_backend.push((vec![label("vip", vip), label("backend", &addr)], n));
            up.push((
                vec![
                    label("vip", vip),
                    label("backend", &addr),
                    label("state", backend_state_name(b.state)),
                ],
                1,
            ));
        }
        counter_family(
            &mut e,
            "mux_backend_forwarded_packets",
            "Frames forwarded per backend.",
            &per_backend,
        )?;
        gauge_family(
            &mut e,
            "mux_backend_up",
            "1 per configured backend, labelled with its state.",
            &up,
        )?;
        let mut flows = Vec::new();
        let mut drained = Vec::new();
        for b in state.backend_views(&snap) {
            let labels = vec![label("vip", &b.vip), label("backend", b.address)];
            if let Some(n) = b.flows {
                flows.push((labels.clone(), i64::try_from(n).unwrap_or(i64::MAX)));
            }
            if let Some(d) = b.drained {
                drained.push((labels, i64::from(d)));
            }
        }
        gauge_family(
            &mut e,
            "mux_backend_flows",
            "Flows the backend still receives (live flow entries pinned to it, 0 once its drain deadline or failed grace has passed), summed over workers, as of their last census sweeps.",
            &flows,
        )?;
        gauge_family(
            &mut e,
            "mux_backend_drained",
            "Per draining backend: 1 once it receives nothing more (deadline passed, or no flow left in sweeps started under the current snapshot).",
            &drained,
        )?;

        let flows: Vec<_> = state
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    vec![label("worker", i)],
                    w.live_flows.load(Ordering::Relaxed) as i64,
                )
            })
            .collect();
        gauge_family(
            &mut e,
            "mux_flows",
            "Live flow-table entries per worker (last census).",
            &flows,
        )?;
        let caps: Vec<_> = state
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    vec![label("worker", i)],
                    w.flow_capacity.load(Ordering::Relaxed) as i64,
                )
            })
            .collect();
        gauge_family(
            &mut e,
            "mux_flow_capacity",
            "Flow-table slots per worker.",
            &caps,
        )?;
        let mut unattributed = Vec::new();
        let mut ages = Vec::new();
        for (i, w) in state.workers.iter().enumerate() {
            let n = w.unattributed_flows.load(Ordering::Relaxed);
            unattributed.push((vec![label("worker", i)], n as i64));
            if let Some(ms) = census_age_ms(w, state.started) {
                ages.push((vec![label("worker", i)], ms as i64));
            }
        }
        gauge_family(
            &mut e,
            "mux_flows_unattributed",
            "Live flow entries whose backend id is beyond the census bound (65536 ids since the MUX started; a restart resets ids).",
            &unattributed,
        )?;
        gauge_family(
            &mut e,
            "mux_flow_census_age_ms",
            "Milliseconds since the worker's last completed flow census sweep (a sweep takes ceil(capacity / 65536) x 100 ms).",
            &ages,
        )?;

        let ports: Vec<_> = state
            .workers
            .iter()
            .map(|w| w.port.lock().map(|p| *p).unwrap_or_default())
            .collect();
        let mut moved = Vec::new();
        let mut lost = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for (dir, n, dropped) in [("rx", p.rx, p.rx_dropped), ("tx", p.tx, p.tx_dropped)] {
                moved.push((vec![label("worker", i), label("direction", dir)], n));
                lost.push((vec![label("worker", i), label("direction", dir)], dropped));
            }
        }
        counter_family(
            &mut e,
            "mux_port_packets",
            "Frames moved by each worker's port.",
            &moved,
        )?;
        counter_family(
            &mut e,
            "mux_port_dropped_packets",
            "Frames each worker's port lost: receive ring full or no buffer (rx), transmit refused (tx).",
            &lost,
        )?;
        let waits: Vec<_> = state
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    vec![label("worker", i)],
                    w.idle_waits.load(Ordering::Relaxed),
                )
            })
            .collect();
        counter_family(
            &mut e,
            "mux_worker_idle_waits",
            "Times each worker found its queue empty past [dataplane] idle_poll_us and slept on its port ([dataplane] idle = \"adaptive\").",
            &waits,
        )?;
        let mut kernel = Vec::new();
        let mut kernel_lost = Vec::new();
        let mut nic = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for (dir, n, dropped) in [
                ("to_kernel", p.to_kernel, p.to_kernel_dropped),
                ("from_kernel", p.from_kernel, p.from_kernel_dropped),
            ] {
                kernel.push((vec![label("worker", i), label("direction", dir)], n));
                kernel_lost.push((vec![label("worker", i), label("direction", dir)], dropped));
            }
            if let Some(n) = p.nic {
                for (reason, v) in [
                    ("imissed", n.rx_missed),
                    ("ierrors", n.rx_errors),
                    ("rx_nombuf", n.rx_nombuf),
                    ("oerrors", n.tx_errors),
                ] {
                    nic.push((vec![label("reason", reason)], v));
                }
            }
        }
        counter_family(
            &mut e,
            "mux_exception_packets",
            "Frames on the user-space exception path (DPDK's TAP): to the kernel and from it to the NIC.",
            &kernel,
        )?;
        counter_family(
            &mut e,
            "mux_exception_dropped_packets",
            "Frames the exception path refused, by direction.",
            &kernel_lost,
        )?;
        if !nic.is_empty() {
            counter_family(
                &mut e,
                "mux_nic_dropped_packets",
                "The NIC's own drop and error counters (DPDK rte_eth_stats): imissed (workers behind), ierrors, rx_nombuf (mbuf pool too small), oerrors.",
                &nic,
            )?;
        }
        gauge_family(
            &mut e,
            "mux_config_generation",
            "Generation of the configuration being served.",
            &[(vec![], snap.generation() as i64)],
        )?;
        let reloads = [
            (
                vec![label("result", "ok")],
                state.reloads.ok.load(Ordering::Relaxed),
            ),
            (
                vec![label("result", "failed")],
                state.reloads.failed.load(Ordering::Relaxed),
            ),
        ];
        counter_family(&mut e, "mux_reloads", "SIGHUP reloads by result.", &reloads)?;
        let ready = i64::from(state.phase() == Phase::Ready);
        gauge_family(
            &mut e,
            "mux_ready",
            "1 while forwarding and announcing.",
            &[(vec![], ready)],
        )?;
        let announced: Vec<_> = state
            .announced
            .lock()
            .map(|a| a.iter().map(|x| (vec![label("address", x)], 1)).collect())
            .unwrap_or_default();
        gauge_family(
            &mut e,
            "mux_vip_announced",
            "1 per VIP address announced over BGP.",
            &announced,
        )?;
        let (alive, downs, restarts) = state
            .announcement
            .lock()
            .map(|a| {
                (
                    i64::from(a.liveness == Some(crate::control::liveness::Verdict::Alive)),
                    a.downs,
                    a.guard_restarts,
                )
            })
            .unwrap_or_default();
        gauge_family(
            &mut e,
            "mux_data_path_alive",
            "1 while every worker polls its queue and the data path is intact (the VIPs may be announced).",
            &[(vec![], alive)],
        )?;
        counter_family(
            &mut e,
            "mux_data_path_downs",
            "Times the data path was found down (a worker stalled, the XDP link or DPDK port lost).",
            &[(vec![], downs)],
        )?;
        counter_family(
            &mut e,
            "mux_announce_guard_restarts",
            "Times the announcement guard process died and was replaced.",
            &[(vec![], restarts)],
        )?;
        encode_health(&mut e, state)
    }
}

fn encode_health(
    e: &mut DescriptorEncoder<'_>,
    state: &DaemonState,
) -> Result<(), std::fmt::Error> {
    let mut up = Vec::new();
    let mut polls = Vec::new();
    if let Ok(agents) = state.health.agents.lock() {
        for a in agents.iter() {
            let agent = a.address.to_string();
            up.push((vec![label("agent", &agent)], i64::from(a.reachable)));
            polls.push((
                vec![label("agent", &agent), label("result", "ok")],
                a.polls_ok,
            ));
            polls.push((
                vec![label("agent", &agent), label("result", "failed")],
                a.polls_failed,
            ));
        }
    }
    gauge_family(
        e,
        "mux_health_agent_up",
        "1 while the host agent's last poll succeeded.",
        &up,
    )?;
    counter_family(
        e,
        "mux_health_polls",
        "Polls of each host agent by result.",
        &polls,
    )?;
    let mut failed = Vec::new();
    let mut transitions = Vec::new();
    let mut detect = Vec::new();
    if let Ok(rows) = state.health.backends.lock() {
        for b in rows.iter() {
            let labels = vec![label("vip", &b.vip), label("backend", b.backend)];
            failed.push((labels.clone(), i64::from(b.failed)));
            transitions.push((labels.clone(), b.transitions));
            if let Some(ms) = b.last_detect_ms {
                detect.push((labels, i64::try_from(ms).unwrap_or(i64::MAX)));
            }
        }
    }
    gauge_family(
        e,
        "mux_backend_health_failed",
        "1 while the health feed fails the backend (no new flows at once; its flows re-hashed once failed_backend_grace has passed).",
        &failed,
    )?;
    counter_family(
        e,
        "mux_backend_health_transitions",
        "Times the health feed changed the backend between failed and ok.",
        &transitions,
    )?;
    gauge_family(
        e,
        "mux_backend_health_detect_ms",
        "Milliseconds from the backend's first failed check (or its agent's last answer) to the MUX applying the failure, for its last failure.",
        &detect,
    )?;
    let factors: Vec<_> = state
        .health
        .weights
        .lock()
        .map(|w| {
            w.iter()
                .map(|v| {
                    let labels = vec![label("vip", &v.vip), label("backend", v.backend)];
                    (labels, (v.factor * 100.0).round() as i64)
                })
                .collect()
        })
        .unwrap_or_default();
    gauge_family(
        e,
        "mux_backend_weight_factor_percent",
        "Load-aware weights: the backend's effective Maglev weight in percent of its configured one (VIPs with [vip.load_aware]).",
        &factors,
    )?;
    counter_family(
        e,
        "mux_load_weight_changes",
        "Load-aware weight changes applied.",
        &[(vec![], state.health.weight_changes.load(Ordering::Relaxed))],
    )
}
