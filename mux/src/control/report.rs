//! Counters as JSON, with VIP and backend names resolved from the snapshot.
//!
//! Shared by `mux replay` (printed at the end) and, later, the admin endpoint's `/v1/status`.

use serde_json::{Map, Value, json};

use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::snapshot::Snapshot;

/// `{"counters": {...}, "forwarded_per_vip": {...}, "forwarded_per_backend": {...}}`.
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
    for (id, backend) in snap.parts.backends.iter().enumerate() {
        if let Some(b) = backend {
            let n = counters.backend_forwarded.get(id).copied().unwrap_or(0);
            per_backend.insert(b.label.clone(), json!(n));
        }
    }
    json!({
        "counters": scalars,
        "forwarded_per_vip": per_vip,
        "forwarded_per_backend": per_backend,
    })
}
