//! Counters as JSON, with VIP and backend names resolved from the snapshot.
//!
//! Shared by `mux replay` (printed at the end) and, later, the admin endpoint's `/v1/status`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::control::replay::ReplayOutcome;

use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::snapshot::Snapshot;

/// `{"counters": {...}, "forwarded_per_vip": {...}, "forwarded_per_backend": {...},
/// "forwarded_bytes_per_backend": {...}}` (bytes: the inner IP packets').
///
/// Per-VIP and per-backend maps list every VIP and backend of the snapshot, zeros included, so
/// a reader sees which backends got nothing.
pub fn counters_json(counters: &WorkerCounters, snap: &Snapshot) -> Value {
    let mut scalars = Map::new();
    for (name, value) in counters.named() {
        scalars.insert(name, json!(value));
    }
    let mut per_vip = Map::new();
    for vip in &snap.parts.vips {
        let n = counters
            .vip_forwarded
            .get(vip.id as usize)
            .copied()
            .unwrap_or(0);
        per_vip.insert(vip.name.clone(), json!(n));
    }
    let mut per_backend = Map::new();
    let mut bytes_per_backend = Map::new();
    for (id, backend) in snap.parts.backends.iter().enumerate() {
        if let Some(b) = backend {
            let n = counters
                .backend_forwarded
                .get(id)
                .copied()
                .unwrap_or_default();
            per_backend.insert(b.label.clone(), json!(n.packets));
            bytes_per_backend.insert(b.label.clone(), json!(n.bytes));
        }
    }
    json!({
        "counters": scalars,
        "forwarded_per_vip": per_vip,
        "forwarded_per_backend": per_backend,
        "forwarded_bytes_per_backend": bytes_per_backend,
    })
}

/// A summary of a replay for people: what went where, why frames were dropped, how flows and
/// backends were used.
pub fn replay_summary(outcome: &ReplayOutcome, input: &Path, output: &Path) -> String {
    let c = &outcome.counters;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replayed {} frames from {}",
        outcome.frames_in,
        input.display()
    );
    let _ = writeln!(
        s,
        "  transmitted {:>7}  -> {} ({} encapsulated to backends, {} ICMP too-big replies and {} drain resets to clients)",
        outcome.frames_out,
        output.display(),
        c.forwarded,
        c.icmp_too_big_sent,
        c.drain_resets_sent
    );
    let _ = writeln!(
        s,
        "  to kernel   {:>7}  (not for a VIP: ARP, other addresses and ports)",
        c.to_kernel
    );
    let drops: Vec<String> = c
        .named()
        .into_iter()
        .filter(|(name, v)| name.starts_with("drop_") && *v > 0)
        .map(|(name, v)| format!("{} {v}", &name["drop_".len()..]))
        .collect();
    let _ = writeln!(
        s,
        "  dropped     {:>7}  {}",
        c.dropped_total(),
        if drops.is_empty() {
            String::new()
        } else {
            format!("({})", drops.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "flows: {} new, {} hits, {} re-hashed ({} after a failed backend's grace, {} new connections off a failed backend, {} after a drain deadline), {} evicted, {} table-full; {} fragments, {} ICMP errors routed to backends",
        c.new_flows,
        c.flow_hits,
        c.flows_rehashed
            + c.flows_rehashed_after_grace
            + c.flows_rehashed_new_on_failed
            + c.flows_rehashed_after_drain,
        c.flows_rehashed_after_grace,
        c.flows_rehashed_new_on_failed,
        c.flows_rehashed_after_drain,
        c.flows_evicted,
        c.flow_table_full,
        c.fragments_forwarded,
        c.icmp_errors_forwarded
    );
    let _ = writeln!(
        s,
        "second chance: {} flows got an alternative backend; {} packets carried one, {} sent without it (MTU)",
        c.second_chance_flows, c.second_chance_sent, c.second_chance_skipped_mtu
    );
    for (title, key) in [
        ("per VIP", "forwarded_per_vip"),
        ("per backend", "forwarded_per_backend"),
    ] {
        let _ = writeln!(s, "forwarded {title}:");
        if let Some(map) = outcome.report[key].as_object() {
            for (name, n) in map {
                let _ = writeln!(s, "  {name:<32} {n:>7}");
            }
        }
    }
    s
}
