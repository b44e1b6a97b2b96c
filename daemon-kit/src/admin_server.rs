//! The admin endpoint's HTTP server, shared by the MUX and the host agent.
//!
//! A blocking `tiny_http` server on its own thread: the daemons' endpoints are read-only
//! views of published state (`/metrics`, `/healthz`, `/readyz`, `/v1/...`), asked a few times
//! a second at most, so a thread per daemon is all they need and a slow client cannot touch
//! the packet path. Each daemon brings its routes as a function from the URL to a [`Reply`];
//! this module owns the loop, the stop flag and the reply helpers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Header, Response, Server};

/// The response type of every route.
pub type Reply = Response<std::io::Cursor<Vec<u8>>>;

/// How often the server thread checks `stop` while idle.
const POLL: Duration = Duration::from_millis(100);

/// Starts the endpoint on `listen` in a thread named `thread_name`, answering each request
/// with `route(url)` (path and query; every method is a read); the thread ends within about
/// 100 ms of `stop` being set.
///
/// Errors when the address cannot be bound (in use, not local, no permission) or the thread
/// cannot be started; the message names `[admin] listen`.
pub fn start(
    listen: SocketAddr,
    thread_name: &str,
    stop: Arc<AtomicBool>,
    route: impl Fn(&str) -> Reply + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    let server = Server::http(listen).map_err(|e| {
        format!("cannot listen on {listen} for the admin endpoint: {e}; change [admin] listen")
    })?;
    std::thread::Builder::new()
        .name(thread_name.into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(POLL) {
                    Ok(Some(request)) => {
                        let response = route(request.url());
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

/// The path of a request URL, without its query string.
pub fn path(url: &str) -> &str {
    url.split('?').next().unwrap_or("")
}

/// A plain reply with `status`, `body` and a `Content-Type`.
pub fn text(status: u16, body: String, content_type: &str) -> Reply {
    let mut r = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r.add_header(h);
    }
    r
}

/// `200` with `value` as pretty-printed JSON, or `500` saying why it could not be encoded.
pub fn json(value: &impl Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(200, body + "\n", "application/json"),
        Err(e) => text(500, format!("cannot encode JSON: {e}\n"), "text/plain"),
    }
}

/// The Prometheus text exposition: `200` with its content type.
pub fn metrics(body: String) -> Reply {
    text(200, body, "text/plain; version=0.0.4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_drops_the_query() {
        assert_eq!(path("/metrics?x=1"), "/metrics");
        assert_eq!(path("/v1/status"), "/v1/status");
    }

    #[test]
    fn a_taken_address_is_an_error_that_names_the_setting() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let err = start(addr, "t", stop, |_| text(200, String::new(), "text/plain")).unwrap_err();
        assert!(err.contains("[admin] listen"), "{err}");
    }
}
