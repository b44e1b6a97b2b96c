//! One probe of one backend: a TCP connect or an HTTP/1.1 GET, bounded by the timeout.
//!
//! What it owns: doing the I/O of a check and reducing every failure to a short, stable
//! message (`last_error`), e.g. `connect: connection refused`, `http status 503, want 200`,
//! `timeout after 500 ms`.
//!
//! - **TCP**: `TcpStream::connect_timeout`; the connection is closed at once.
//! - **HTTP**: `ureq` 3 (no default features: plain HTTP only, no TLS, no gzip). One agent per
//!   probe with `timeout_global` = `[health] timeout_ms`, so connect, request and response
//!   headers together are bounded by the timeout; no connection pool (every probe is a new
//!   connection, as a real client's would be) and `Connection: close`; no proxy (ureq would
//!   otherwise read `HTTP_PROXY` from the environment and probe the proxy instead); redirects
//!   are not followed (a 301 is a 301: healthy only if `http_status = 301`); every status is
//!   a response, not an error (`http_status_as_error(false)`). The `Host:` header is the
//!   backend's `address:port`. The body is not read.
//!
//! Why `ureq` rather than a hand-written GET: it builds on rustc 1.95, has a whole-request
//! timeout, and parses responses (status line, headers, chunking) correctly, including the odd
//! ones a hand-written parser would get wrong.
//!
//! - **HTTPS** (`kind = "https"`): the same GET over TLS (`ureq`'s rustls). The certificate
//!   is not verified: the probe targets `backend_address:backend_port`, not the name a
//!   certificate is issued for, and a health check proves the server answers, not who it is.
//!   It still proves the TLS handshake completes.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::HealthKind;

/// Longest `last_error` kept; longer messages are cut (they come from the network).
const MAX_ERROR_LEN: usize = 160;

/// Probes `addr` once with `kind`; `Ok` means healthy.
pub(super) fn probe(addr: SocketAddr, kind: &HealthKind, timeout: Duration) -> Result<(), String> {
    match kind {
        HealthKind::Tcp => tcp(addr, timeout),
        HealthKind::Http {
            tls,
            path,
            expected_status,
        } => http(addr, *tls, path, *expected_status, timeout),
    }
}

fn tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_stream) => Ok(()),
        Err(e) => Err(connect_error(&e, timeout)),
    }
}

fn http(
    addr: SocketAddr,
    tls: bool,
    path: &str,
    expected: u16,
    timeout: Duration,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(0)
        .user_agent("mux-hostagent-health-check")
        .build()
        .into();
    let url = format!("{}://{addr}{path}", if tls { "https" } else { "http" });
    match agent.get(&url).header("Connection", "close").call() {
        Ok(response) => {
            let status = response.status().as_u16();
            if status == expected {
                Ok(())
            } else {
                Err(format!("http status {status}, want {expected}"))
            }
        }
        Err(e) => Err(http_error(e, timeout)),
    }
}

fn http_error(e: ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => timeout_message(timeout),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => timeout_message(timeout),
        ureq::Error::Io(io) => {
            let what = io_message(&io);
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            ) {
                format!("connect: {what}")
            } else {
                short(format!("http: {what}"))
            }
        }
        ureq::Error::ConnectionFailed => "connect: connection failed".to_string(),
        ureq::Error::Protocol(p) => short(format!("http: bad response: {p}")),
        other => short(format!("http: {other}")),
    }
}

fn connect_error(e: &io::Error, timeout: Duration) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        timeout_message(timeout)
    } else {
        short(format!("connect: {}", io_message(e)))
    }
}

fn timeout_message(timeout: Duration) -> String {
    format!("timeout after {} ms", timeout.as_millis())
}

/// An I/O error without the `(os error N)` suffix, starting lower case: "connection refused".
fn io_message(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => e.kind().to_string(),
    }
}

fn short(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_are_short_and_lower_case() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            connect_error(&e, Duration::from_millis(5)),
            "connect: connection refused"
        );
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(io_message(&e), "connection refused");
        let e = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            connect_error(&e, Duration::from_millis(500)),
            "timeout after 500 ms"
        );
        assert_eq!(short("é".repeat(200)).len(), MAX_ERROR_LEN);
    }
}
