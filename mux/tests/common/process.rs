//! Helpers for tests that run `mux run` as a process: a free admin port, the admin endpoint's
//! answers, waiting, and signals.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A TCP port nothing listens on right now (for the admin endpoint).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the admin endpoint at 127.0.0.1:`port`: (status, body), or `None` when it
/// does not answer.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// `/v1/status` as JSON (panics when the endpoint does not answer).
pub fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&get(port, "/v1/status").expect("status answers").1).unwrap()
}

/// Waits up to `limit` for `f` to hold; panics naming `what` otherwise.
pub fn wait_up_to(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to 10 s for `f` to hold.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_up_to(what, Duration::from_secs(10), f)
}

/// Sends `sig` (`HUP`, `TERM`, ...) to `child`.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// SIGTERM to `child`, then waits up to `limit` for it to exit with success; on failure or
/// timeout panics with the daemon's log, `log_file`.
pub fn terminate(child: &mut Child, limit: Duration, log_file: &std::path::Path) {
    let log = || std::fs::read_to_string(log_file).unwrap_or_default();
    signal(child, "TERM");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(code)) = child.try_wait() {
            assert!(code.success(), "mux exited with {code}:\n{}", log());
            return;
        }
        assert!(Instant::now() < deadline, "mux did not stop:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
