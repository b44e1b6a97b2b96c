//! The MUX's admin routes: `/metrics`, `/healthz`, `/readyz`, `/v1/status`, and
//! `/v1/trace?flow=tcp+SRC:PORT+DST:PORT` (what the published snapshot does with a flow:
//! `mux trace --admin`).
//!
//! Served by the shared admin server (`mux_daemon_kit::admin_server`: one blocking thread,
//! loopback by default, `[admin] listen`): status is for the operator's host, not the world.
//! Every route only reads published state, so a slow client cannot affect forwarding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use mux_daemon_kit::admin_server::{self, Reply, text};

use crate::control::state::{DaemonState, Phase};
use crate::control::{metrics, trace};

/// Starts the endpoint on `listen`; it stops when `stop` is set.
pub fn start(
    listen: SocketAddr,
    state: Arc<DaemonState>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    admin_server::start(listen, "mux-admin", stop, move |url| route(url, &state))
}

fn route(url: &str, state: &Arc<DaemonState>) -> Reply {
    match admin_server::path(url) {
        "/metrics" => admin_server::metrics(metrics::render(state)),
        "/healthz" => text(200, "ok\n".into(), "text/plain"),
        "/readyz" => match state.phase() {
            Phase::Ready => text(200, "ready\n".into(), "text/plain"),
            other => text(503, format!("not ready: {}\n", other.name()), "text/plain"),
        },
        "/v1/status" => admin_server::json(&state.status_json()),
        "/v1/trace" => match trace::query_from_url(url) {
            Ok(q) => admin_server::json(&trace::explain(
                &state.snapshot.load(),
                &q,
                state.flow_now(),
            )),
            Err(e) => text(400, format!("{e}\n"), "text/plain"),
        },
        _ => text(
            404,
            "not found; try /metrics, /healthz, /readyz, /v1/status or /v1/trace?flow=…\n".into(),
            "text/plain",
        ),
    }
}
