//! `/metrics`: the host agent's state in the Prometheus text format.
//!
//! A `prometheus-client` collector builds every metric on demand from [`AgentState`] — the
//! published data-path counters, the interception counters, reloads and the health table — the
//! same way the MUX's does, so nothing on the packet path knows about Prometheus and a scrape
//! costs the I/O thread one copy of its counters.
//!
//! Metric reference (counters end in `_total`); `SVC` = labels `vip`, `port`, `protocol`,
//! `dip` of one `[[service]]`:
//! - data path, one counter per `Counters` field: `hostagent_inbound_packets_total`,
//!   `hostagent_delivered_packets_total`, `hostagent_icmp_errors_delivered_total`,
//!   `hostagent_outbound_packets_total`, `hostagent_replies_rewritten_total`,
//!   `hostagent_icmp_errors_rewritten_total`, `hostagent_passed_packets_total`,
//!   `hostagent_fragments_passed_total`;
//! - `hostagent_dropped_packets_total{reason}` — one series per drop reason;
//! - `hostagent_second_chance_packets_total{outcome}` — the second-chance decision per
//!   decapsulated TCP/UDP packet: `delivered_no_alternative`, `forward_refused`,
//!   `delivered_syn`, `delivered_known`, `delivered_local_alternative`,
//!   `delivered_cannot_forward`, `forwarded`;
//! - `hostagent_connection_events_total{event}` — the connection table: `inserts`,
//!   `restored`, `expiries`, `displaced`, `table_full`, `before_horizon`; gauges `hostagent_connections`
//!   (occupied entries) and `hostagent_connections_capacity`;
//! - `hostagent_state_file_writes_total{result}` (`ok`, `failed`) and
//!   `hostagent_state_file_entries` (in the last snapshot written);
//! - `hostagent_forwarded_sent_total` — forwarded packets the interception layer sent (they
//!   are also in `hostagent_io_packets_total{device="network",direction="tx"}`);
//! - `hostagent_service_packets_total{SVC,outcome}` — `outcome` is `delivered`, `forwarded`,
//!   `icmp_errors_delivered`, `replies_rewritten` or `icmp_errors_rewritten`;
//! - load per service (its one backend): `hostagent_service_bytes_total{SVC,direction}`
//!   (`in` delivered, `out` replies), `hostagent_service_new_connections_total{SVC}`, gauge
//!   `hostagent_service_active_connections{SVC}` (rates: Prometheus's `rate()`; the agent's own
//!   per-second figures are in `/v1/backends` `load`);
//! - `hostagent_io_packets_total{device,direction}` — `device` `network` or `tun`, `direction`
//!   `rx` or `tx`; `hostagent_io_errors_total{direction}` — failed network receives / sends;
//! - `hostagent_backend_health_state{SVC,backend,checked}` — 1 up, 0 down, -1 unknown;
//!   `backend` is `backend_address:backend_port`, `checked` is `false` for UDP (never probed);
//! - `hostagent_backend_health_transitions_total{SVC,backend}`;
//! - `hostagent_backend_health_detect_milliseconds{SVC,backend}` — the last up → down
//!   detection time; only for backends that have had one;
//! - `hostagent_config_generation`, `hostagent_reloads_total{result}` (`ok`, `failed`),
//!   `hostagent_ready` (1 once the daemon reported ready).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use mux_daemon_kit::prometheus_text::{self, Labels, counter_family, gauge_family, label};

use crate::control::health::BackendHealth;
use crate::control::state::AgentState;
use crate::dataplane::{DropReason, ServiceSpec};

#[derive(Debug)]
struct AgentCollector(Arc<AgentState>);

/// Renders the current metrics as Prometheus text.
pub fn render(state: &Arc<AgentState>) -> String {
    prometheus_text::render(Box::new(AgentCollector(Arc::clone(state))))
}

fn service_labels(s: &ServiceSpec) -> Labels {
    vec![
        label("vip", s.vip),
        label("port", s.port),
        label("protocol", s.protocol),
        label("dip", s.dip),
    ]
}

fn backend_labels(b: &BackendHealth) -> Labels {
    vec![
        label("vip", b.vip),
        label("port", b.port),
        label("protocol", b.protocol),
        label("dip", b.dip),
        label(
            "backend",
            SocketAddr::new(b.backend_address, b.backend_port),
        ),
    ]
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        let report = state.data_path();
        let c = &report.counters;

        let totals = [
            (
                "hostagent_inbound_packets",
                "Packets handed to decap (from the MUXes).",
                c.inbound,
            ),
            (
                "hostagent_delivered_packets",
                "TCP/UDP packets decapsulated and rewritten to a backend.",
                c.delivered,
            ),
            (
                "hostagent_icmp_errors_delivered",
                "ICMP errors toward a VIP rewritten to a backend.",
                c.icmp_errors_delivered,
            ),
            (
                "hostagent_outbound_packets",
                "Packets handed to snat (from the host).",
                c.outbound,
            ),
            (
                "hostagent_replies_rewritten",
                "Backend replies whose source became the VIP.",
                c.replies_rewritten,
            ),
            (
                "hostagent_icmp_errors_rewritten",
                "ICMP errors from a backend rewritten to come from the VIP.",
                c.icmp_errors_rewritten,
            ),
            (
                "hostagent_passed_packets",
                "Outbound packets that are not ours, passed untouched.",
                c.passed,
            ),
            (
                "hostagent_fragments_passed",
                "Of passed: IP fragments from a backend address.",
                c.fragments_passed,
            ),
        ];
        for (name, help, v) in totals {
            counter_family(&mut e, name, help, &[(vec![], v)])?;
        }
        let drops: Vec<_> = DropReason::ALL
            .iter()
            .map(|r| (vec![label("reason", r.name())], c.dropped(*r)))
            .collect();
        counter_family(
            &mut e,
            "hostagent_dropped_packets",
            "Dropped packets by reason.",
            &drops,
        )?;
        let outcomes: Vec<_> = c
            .second_chance
            .outcomes()
            .iter()
            .map(|(name, v)| (vec![label("outcome", name)], *v))
            .collect();
        counter_family(
            &mut e,
            "hostagent_second_chance_packets",
            "Second-chance decision per decapsulated TCP/UDP packet.",
            &outcomes,
        )?;
        let events: Vec<_> = c
            .connections
            .events()
            .iter()
            .map(|(name, v)| (vec![label("event", name)], *v))
            .collect();
        counter_family(
            &mut e,
            "hostagent_connection_events",
            "Connection table events.",
            &events,
        )?;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge_family(
            &mut e,
            "hostagent_connections",
            "Occupied entries of the connection table.",
            &[(vec![], gauge(c.connections.occupied))],
        )?;
        gauge_family(
            &mut e,
            "hostagent_connections_capacity",
            "Capacity of the connection table.",
            &[(vec![], gauge(c.connections.capacity))],
        )?;
        let sf = &state.state_file;
        counter_family(
            &mut e,
            "hostagent_state_file_writes",
            "Connection state file writes by result.",
            &[
                (
                    vec![label("result", "ok")],
                    sf.writes.load(Ordering::Relaxed),
                ),
                (
                    vec![label("result", "failed")],
                    sf.write_errors.load(Ordering::Relaxed),
                ),
            ],
        )?;
        gauge_family(
            &mut e,
            "hostagent_state_file_entries",
            "Connections in the last state file snapshot written.",
            &[(vec![], gauge(sf.last_entries.load(Ordering::Relaxed)))],
        )?;

        let mut per_service = Vec::new();
        for (i, s) in report.services.iter().enumerate() {
            let sc = c.services.get(i).copied().unwrap_or_default();
            for (outcome, v) in [
                ("delivered", sc.delivered),
                ("forwarded", sc.forwarded),
                ("icmp_errors_delivered", sc.icmp_errors_delivered),
                ("replies_rewritten", sc.replies_rewritten),
                ("icmp_errors_rewritten", sc.icmp_errors_rewritten),
            ] {
                let mut labels = service_labels(s);
                labels.push(label("outcome", outcome));
                per_service.push((labels, v));
            }
        }
        counter_family(
            &mut e,
            "hostagent_service_packets",
            "Packets per service by outcome.",
            &per_service,
        )?;
        let (mut bytes, mut new_conns, mut active) = (Vec::new(), Vec::new(), Vec::new());
        for (i, s) in report.services.iter().enumerate() {
            let sc = c.services.get(i).copied().unwrap_or_default();
            for (direction, v) in [
                ("in", sc.delivered_bytes),
                ("out", sc.replies_rewritten_bytes),
            ] {
                let mut labels = service_labels(s);
                labels.push(label("direction", direction));
                bytes.push((labels, v));
            }
            new_conns.push((service_labels(s), sc.new_connections));
            active.push((service_labels(s), gauge(sc.active_connections)));
        }
        counter_family(
            &mut e,
            "hostagent_service_bytes",
            "Bytes per service: in = delivered to the backend, out = its replies rewritten.",
            &bytes,
        )?;
        counter_family(
            &mut e,
            "hostagent_service_new_connections",
            "Connections the agent started to carry per service.",
            &new_conns,
        )?;
        gauge_family(
            &mut e,
            "hostagent_service_active_connections",
            "Connections the service's backend carries (last sweep of the connection table).",
            &active,
        )?;

        let io = state.io.snapshot();
        let moved = [
            ("network", "rx", io.rx_packets),
            ("network", "tx", io.tx_packets),
            ("tun", "rx", io.tun_rx),
            ("tun", "tx", io.tun_tx),
        ]
        .iter()
        .map(|(device, direction, v)| {
            (
                vec![label("device", device), label("direction", direction)],
                *v,
            )
        })
        .collect::<Vec<_>>();
        counter_family(
            &mut e,
            "hostagent_io_packets",
            "Packets moved by the interception layer.",
            &moved,
        )?;
        let errors = [
            (
                vec![label("device", "network"), label("direction", "rx")],
                io.rx_errors,
            ),
            (
                vec![label("device", "network"), label("direction", "tx")],
                io.tx_errors,
            ),
            (
                vec![label("device", "tun"), label("direction", "rx")],
                io.tun_rx_errors,
            ),
            (
                vec![label("device", "tun"), label("direction", "tx")],
                io.tun_tx_errors,
            ),
        ];
        counter_family(
            &mut e,
            "hostagent_forwarded_sent",
            "Second-chance packets sent to an alternative's agent.",
            &[(vec![], io.forwarded_tx)],
        )?;
        counter_family(
            &mut e,
            "hostagent_io_errors",
            "Failed receives (rx) and sends (tx) on the network sockets and the TUN device.",
            &errors,
        )?;

        let backends = state.backends();
        let states: Vec<_> = backends
            .iter()
            .map(|b| {
                let mut labels = backend_labels(b);
                labels.push(label("checked", b.checked));
                (labels, b.state.gauge())
            })
            .collect();
        gauge_family(
            &mut e,
            "hostagent_backend_health_state",
            "Health of each service's backend: 1 up, 0 down, -1 unknown.",
            &states,
        )?;
        let transitions: Vec<_> = backends
            .iter()
            .map(|b| (backend_labels(b), b.transitions))
            .collect();
        counter_family(
            &mut e,
            "hostagent_backend_health_transitions",
            "Health state changes of each service's backend.",
            &transitions,
        )?;
        let detect: Vec<_> = backends
            .iter()
            .filter_map(|b| {
                let ms = i64::try_from(b.detect_ms?).unwrap_or(i64::MAX);
                Some((backend_labels(b), ms))
            })
            .collect();
        gauge_family(
            &mut e,
            "hostagent_backend_health_detect_milliseconds",
            "Milliseconds from the first failed probe to the last up-to-down transition.",
            &detect,
        )?;

        gauge_family(
            &mut e,
            "hostagent_config_generation",
            "Generation of the configuration being served.",
            &[(
                vec![],
                i64::try_from(state.generation()).unwrap_or(i64::MAX),
            )],
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
        counter_family(
            &mut e,
            "hostagent_reloads",
            "Configuration reloads by result.",
            &reloads,
        )?;
        gauge_family(
            &mut e,
            "hostagent_ready",
            "1 once the daemon reported ready.",
            &[(vec![], i64::from(state.is_ready()))],
        )?;
        Ok(())
    }
}
