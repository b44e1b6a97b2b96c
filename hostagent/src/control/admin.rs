//! The admin endpoint: `/v1/backends`, `/v1/status`, `/metrics`, `/healthz`, `/readyz`.
//!
//! A blocking `tiny_http` server on its own thread, like the MUX's; loopback by default
//! (`[admin] listen`). It only reads [`AgentState`], so a slow client cannot affect the packet
//! path or the health checks. `/v1/backends` is the contract the MUXes poll; its shape is
//! documented field by field in `docs/hostagent.md` ("Admin endpoint").
//!
//! Every route answers any method (they are all reads); a query string is ignored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Header, Response, Server};

use crate::control::metrics;
use crate::control::state::AgentState;

/// How often the server thread checks `stop` while idle.
const POLL: Duration = Duration::from_millis(100);

/// The response type of every route.
type Reply = Response<std::io::Cursor<Vec<u8>>>;

/// Starts the endpoint on `listen`; the thread ends within about 100 ms of `stop` being set.
///
/// Errors when the address cannot be bound (in use, not local, no permission) or the thread
/// cannot be started; the message names `[admin] listen`.
pub fn start(
    listen: SocketAddr,
    state: Arc<AgentState>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let server = Server::http(listen).map_err(|e| {
        format!("cannot listen on {listen} for the admin endpoint: {e}; change [admin] listen")
    })?;
    std::thread::Builder::new()
        .name("hostagent-admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(POLL) {
                    Ok(Some(request)) => {
                        let response = route(request.url(), &state);
                        if let Err(e) = request.respond(response) {
                            tracing::debug!(error = %e, "admin endpoint: client went away");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "admin endpoint receive failed");
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the admin thread: {e}"))
}

/// The response to `url` (path and optional query).
fn route(url: &str, state: &Arc<AgentState>) -> Reply {
    let path = url.split('?').next().unwrap_or("");
    match path {
        "/v1/backends" => json(&state.backends_report()),
        "/v1/status" => json(&state.status_json()),
        "/metrics" => text(200, metrics::render(state), "text/plain; version=0.0.4"),
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

fn json(value: &impl Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(200, body + "\n", "application/json"),
        Err(e) => text(500, format!("cannot encode JSON: {e}\n"), "text/plain"),
    }
}

fn text(status: u16, body: String, content_type: &str) -> Reply {
    let mut r = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r.add_header(h);
    }
    r
}
