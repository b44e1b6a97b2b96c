//! The admin endpoint: `/metrics`, `/healthz`, `/readyz`, `/v1/status` over HTTP.
//!
//! A blocking `tiny_http` server on its own thread; loopback by default (`[admin] listen`):
//! status is for the operator's host, not the world. It only reads shared state, so a slow client cannot affect forwarding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use crate::control::metrics;
use crate::control::state::{DaemonState, Phase};

/// Starts the endpoint on `listen`; it stops when `stop` is set.
pub fn start(
    listen: SocketAddr,
    state: Arc<DaemonState>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let server = Server::http(listen).map_err(|e| {
        format!("cannot listen on {listen} for the admin endpoint: {e}; change [admin] listen")
    })?;
    std::thread::Builder::new()
        .name("mux-admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => {
                        let response = route(request.url(), &state);
                        let _ = request.respond(response);
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

fn route(url: &str, state: &Arc<DaemonState>) -> Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or("");
    match path {
        "/metrics" => text(200, metrics::render(state), "text/plain; version=0.0.4"),
        "/healthz" => text(200, "ok\n".into(), "text/plain"),
        "/readyz" => match state.phase() {
            Phase::Ready => text(200, "ready\n".into(), "text/plain"),
            other => text(503, format!("not ready: {}\n", other.name()), "text/plain"),
        },
        "/v1/status" => {
            let body = serde_json::to_string_pretty(&state.status_json())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            text(200, body + "\n", "application/json")
        }
        _ => text(
            404,
            "not found; try /metrics, /healthz, /readyz or /v1/status\n".into(),
            "text/plain",
        ),
    }
}

fn text(status: u16, body: String, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r.add_header(h);
    }
    r
}
