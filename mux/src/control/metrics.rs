//! `/metrics`: the daemon's state in the Prometheus text format.
//!
//! A `prometheus-client` collector builds every metric on demand from [`DaemonState`] (the
//! workers' published counters, the snapshot, reload and announcement state), so nothing on
//! the data path knows about Prometheus and a scrape costs the workers nothing. The workers'
//! scalar counters are rendered from their declaration (`dataplane::counters`: each counter
//! names its family and label), so this module lists none of them by hand.
//!
//! Metric reference (all counters end in `_total`):
//! - `mux_packets_total{outcome}` — the one outcome of each received frame: `forwarded`,
//!   `icmp_too_big_sent`, `drain_reset_sent`, `to_kernel`, `dropped`; the series sum to
//!   `mux_rx_packets_total`;
//! - `mux_rx_packets_total`, `mux_rx_bytes_total`;
//! - `mux_dropped_packets_total{reason}` — one series per drop reason, summing to
//!   `mux_packets_total{outcome="dropped"}`;
//! - `mux_forwarded_packets_by_kind_total{kind}` — `fragment`, `icmp_error`: forwarded frames
//!   of that kind (of `outcome="forwarded"`; other forwarded frames are not listed);
//! - `mux_second_chance_packets_total{outcome}` — `sent` (encapsulated with an alternative in
//!   the outer header), `skipped_mtu` (had one, sent plain: the option did not fit the MTU);
//!   both of `outcome="forwarded"`;
//! - `mux_flow_events_total{event}` — `hit`, `failed_backend_grace_hit` (a hit on a failed
//!   backend within its grace, also counted in `hit`), `new`, `rehashed` (backend removed),
//!   `rehashed_after_grace`, `rehashed_after_drain`, `evicted`, `table_full`, `second_chance`
//!   (a new flow that got a second-chance entry naming an alternative backend, also in `new`);
//! - `mux_vip_previous_tables{vip}` — previous Maglev tables of the VIP still within
//!   `second_chance_window_seconds` (0 to 4);
//! - `mux_vip_forwarded_packets_total{vip}`, `mux_backend_forwarded_packets_total{vip,backend}`,
//!   `mux_backend_forwarded_bytes_total{vip,backend}` (inner bytes: the client's IP packet as
//!   received, without its Ethernet header or the outer header the MUX adds);
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
//! - flow logs (`[flow_log]`): `mux_flow_log_records_total` (records written),
//!   `mux_flow_log_dropped_total{reason}` (`queue_full`: a worker's ring was full;
//!   `write_error`: the writer could not write them), `mux_flow_log_write_errors_total`;
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

use mux_daemon_kit::prometheus_text::{self, Labels, counter_family, gauge_family, label};

use mux_packet::flow_key::unmap;

use crate::control::state::{DaemonState, Phase, backend_state_name, census_age_ms};
use crate::dataplane::counters::{Family, WorkerCounters};
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

        // The scalar counters, family by family, as declared in `dataplane::counters`.
        let values = c.scalars();
        for family in Family::ALL {
            let mut series: Vec<(Labels, u64)> = WorkerCounters::METRICS
                .iter()
                .zip(&values)
                .filter(|((f, _), _)| f == family)
                .map(|((_, l), v)| {
                    let labels = family.label().map(|k| label(k, l)).into_iter().collect();
                    (labels, *v)
                })
                .collect();
            if *family == Family::Outcome {
                series.push((vec![label("outcome", "dropped")], c.dropped_total()));
            }
            if *family == Family::FlowLogDropped {
                let lost = state
                    .flow_log
                    .get()
                    .map_or(0, |f| f.lost.load(Ordering::Relaxed));
                series.push((vec![label("reason", "write_error")], lost));
            }
            counter_family(&mut e, family.metric(), family.help(), &series)?;
        }
        let series: Vec<_> = DropReason::ALL
            .iter()
            .map(|r| (vec![label("reason", r.name())], c.dropped(*r)))
            .collect();
        counter_family(
            &mut e,
            "mux_dropped_packets",
            "Dropped frames by reason: the outcome=\"dropped\" series of mux_packets_total, broken down.",
            &series,
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
        let mut per_backend_bytes = Vec::new();
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
            let n = c.backend_forwarded.get(id).copied().unwrap_or_default();
            per_backend.push((vec![label("vip", vip), label("backend", &addr)], n.packets));
            per_backend_bytes.push((vec![label("vip", vip), label("backend", &addr)], n.bytes));
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
        counter_family(
            &mut e,
            "mux_backend_forwarded_bytes",
            "Inner bytes forwarded per backend: the clients' IP packets as received (no Ethernet header, no outer header).",
            &per_backend_bytes,
        )?;
        gauge_family(
            &mut e,
            "mux_backend_up",
            "1 per configured backend, labelled with its state.",
            &up,
        )?;
        let mut flows = Vec::new();
        let mut drained = Vec::new();
        for b in state.backend_views(&snap, &c) {
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
        let (records, write_errors) = state.flow_log.get().map_or((0, 0), |f| {
            (
                f.records.load(Ordering::Relaxed),
                f.write_errors.load(Ordering::Relaxed),
            )
        });
        counter_family(
            &mut e,
            "mux_flow_log_records",
            "Flow-log records written to the file ([flow_log]; 0 without it).",
            &[(vec![], records)],
        )?;
        counter_family(
            &mut e,
            "mux_flow_log_write_errors",
            "Failed opens, writes and renames of the flow-log file.",
            &[(vec![], write_errors)],
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

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
"#;

    /// The value of the series `series` (name and labels, as printed) in `text`.
    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn packets_by_outcome_sum_to_rx_and_sub_counts_have_their_own_families() {
        let cfg = crate::config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let snap = compile::compile(
            &cfg,
            &mut Registry::default(),
            1,
            &CompileOptions::default(),
        )
        .unwrap();
        let state = Arc::new(DaemonState::new(
            "t".into(),
            "t.toml".into(),
            snap,
            2,
            Instant::now(),
        ));
        for (w, k) in [(0, 1), (1, 10)] {
            let mut guard = state.workers[w].counters.lock().unwrap();
            let c = &mut *guard;
            c.rx = 31 * k;
            c.forwarded = 20 * k;
            c.fragments_forwarded = 2 * k;
            c.icmp_errors_forwarded = k;
            c.second_chance_sent = 3 * k;
            c.icmp_too_big_sent = k;
            c.drain_resets_sent = 2 * k;
            c.to_kernel = 4 * k;
            c.flow_hits = 15 * k;
            // Backend 10.1.0.1 (the only one, id 0): k frames of 60 and 1500 inner bytes.
            c.ensure_ids(1, 1);
            for _ in 0..k {
                c.backend_forwarded[0].count(60);
                c.backend_forwarded[0].count(1500);
            }
            for _ in 0..k {
                c.drop(DropReason::NoBackend);
                c.drop(DropReason::NoBackend);
                c.drop(DropReason::MalformedIpv4);
                c.drop(DropReason::TooBigWithoutDf);
            }
        }
        let text = render(&state);
        let outcome = |o: &str| value(&text, &format!("mux_packets_total{{outcome=\"{o}\"}}"));
        assert_eq!(value(&text, "mux_rx_packets_total"), 341);
        assert_eq!(outcome("forwarded"), 220);
        assert_eq!(outcome("icmp_too_big_sent"), 11);
        assert_eq!(outcome("drain_reset_sent"), 22);
        assert_eq!(outcome("to_kernel"), 44);
        assert_eq!(outcome("dropped"), 44);
        let outcomes: u64 = text
            .lines()
            .filter(|l| l.starts_with("mux_packets_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(outcomes, 341, "the outcomes partition rx:\n{text}");
        assert_eq!(text.matches("mux_packets_total{").count(), 5, "{text}");
        let drops: u64 = DropReason::ALL
            .iter()
            .map(|r| {
                let series = format!("mux_dropped_packets_total{{reason=\"{}\"}}", r.name());
                value(&text, &series)
            })
            .sum();
        assert_eq!(drops, outcome("dropped"));
        let kind = |k: &str| {
            value(
                &text,
                &format!("mux_forwarded_packets_by_kind_total{{kind=\"{k}\"}}"),
            )
        };
        assert_eq!((kind("fragment"), kind("icmp_error")), (22, 11));
        assert_eq!(
            value(&text, "mux_second_chance_packets_total{outcome=\"sent\"}"),
            33
        );
        assert_eq!(value(&text, "mux_flow_events_total{event=\"hit\"}"), 165);
        assert!(!text.contains("outcome=\"rx\""), "{text}");
        let backend = "{vip=\"web\",backend=\"10.1.0.1\"}";
        assert_eq!(
            value(
                &text,
                &format!("mux_backend_forwarded_packets_total{backend}")
            ),
            22
        );
        assert_eq!(
            value(
                &text,
                &format!("mux_backend_forwarded_bytes_total{backend}")
            ),
            11 * 1560
        );
        // `/v1/status` shows the same per backend.
        let status = state.status_json();
        let b = &status["vips"][0]["backends"][0];
        assert_eq!(b["address"], "10.1.0.1");
        assert_eq!(
            (
                b["forwarded_packets"].as_u64(),
                b["forwarded_bytes"].as_u64()
            ),
            (Some(22), Some(11 * 1560))
        );
        assert_eq!(
            status["forwarded_bytes_per_backend"]["web/10.1.0.1"],
            11 * 1560
        );
    }
}
