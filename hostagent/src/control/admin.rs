//! The host agent's admin routes: `/v1/backends`, `/v1/status`, `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! Served by the shared admin server (`mux_daemon_kit::admin_server`, the MUX's too: one blocking
//! thread, loopback by default, `[admin] listen`). Every route only reads [`AgentState`], so a
//! slow client cannot affect the packet path or the health checks. `/v1/backends` is the
//! contract the MUXes poll; its shape is documented field by field in `docs/hostagent.md`
//! ("Admin endpoint").
//!
//! Every route answers any method (they are all reads); a query string is ignored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use mux_daemon_kit::admin_server::{self, Reply, json, text};

use crate::control::metrics;
use crate::control::state::AgentState;

/// Starts the endpoint on `listen`; the thread ends within about 100 ms of `stop` being set.
///
/// Errors when the address cannot be bound (in use, not local, no permission) or the thread
/// cannot be started; the message names `[admin] listen`.
pub fn start(
    listen: SocketAddr,
    state: Arc<AgentState>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    admin_server::start(listen, "hostagent-admin", stop, move |url| {
        route(url, &state)
    })
}

/// The response to `url` (path and optional query).
fn route(url: &str, state: &Arc<AgentState>) -> Reply {
    match admin_server::path(url) {
        "/v1/backends" => json(&state.backends_report()),
        "/v1/status" => json(&state.status_json()),
        "/metrics" => admin_server::metrics(metrics::render(state)),
        "/healthz" => text(200, "ok\n".into(), "text/plain"),
        "/readyz" if state.is_ready() => text(200, "ready\n".into(), "text/plain"),
        "/readyz" => text(503, "not ready\n".into(), "text/plain"),
        _ => text(
            404,
            "not found; try /v1/backends, /v1/status, /metrics, /healthz or /readyz\n".into(),
            "text/plain",
        ),
    }
}
