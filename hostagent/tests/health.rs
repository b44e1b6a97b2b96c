//! Health checks against real listeners on 127.0.0.1: a TCP listener, tiny HTTP responders
//! answering a fixed status, a silent server, a closed port.
//!
//! Deterministic by construction: nothing asserts how fast a state is reached, only that it is
//! reached within a generous deadline (polling the published state, never a fixed sleep), and
//! the one rate check is an upper bound that holds however slow the machine is. The backends are loopback, which a validated
//! configuration refuses, so these use `HealthChecker::start_services`; the configuration entry
//! points are tested with UDP services, which are never probed (no traffic leaves the test).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostagent::config::{self, HealthCheck, HealthKind, Protocol};
use hostagent::control::health::{BackendHealth, HealthChecker, HealthState};
use hostagent::dataplane::ServiceSpec;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEADLINE: Duration = Duration::from_secs(10);

fn check(kind: HealthKind) -> HealthCheck {
    HealthCheck {
        kind,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        rise: 2,
        fall: 2,
    }
}

fn http(status: u16) -> HealthKind {
    HealthKind::Http {
        tls: false,
        path: "/healthz".into(),
        expected_status: status,
    }
}

fn service(vip_last: u8, port: u16, protocol: Protocol, backend_port: u16) -> ServiceSpec {
    ServiceSpec {
        vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, vip_last)),
        port,
        protocol,
        dip: IpAddr::V4(Ipv4Addr::new(10, 0, 21, 2)),
        backend_address: LOCALHOST,
        backend_port,
    }
}

/// An address nothing listens on: 127.0.0.2 (every other test binds 127.0.0.1 only) at a
/// port that was free a moment ago.
const CLOSED_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn closed_port() -> u16 {
    let l = TcpListener::bind((CLOSED_HOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// A service whose backend refuses connections.
fn closed_service(vip_last: u8) -> ServiceSpec {
    ServiceSpec {
        backend_address: CLOSED_HOST,
        ..service(vip_last, 80, Protocol::Tcp, closed_port())
    }
}

/// A listener that accepts and closes every connection; counts them.
fn tcp_backend() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if conn.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, accepted)
}

/// An HTTP responder answering every request with `status`; keeps the last request head.
fn http_backend(status: u16) -> (u16, Arc<Mutex<String>>) {
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let last = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&last);
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            *seen.lock().expect("lock") = String::from_utf8_lossy(&head).into_owned();
            let reply = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (port, last)
}

/// A server that accepts and never answers (holds every connection open).
fn silent_backend() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// Polls `checker` until `done` holds for its snapshot; panics with the last snapshot after
/// [`DEADLINE`].
fn wait_for(
    checker: &HealthChecker,
    what: &str,
    done: impl Fn(&[BackendHealth]) -> bool,
) -> Vec<BackendHealth> {
    let start = Instant::now();
    loop {
        let snap = checker.snapshot();
        if done(&snap) {
            return snap;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not reached in {DEADLINE:?}; last snapshot {snap:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_is(state: HealthState) -> impl Fn(&[BackendHealth]) -> bool {
    move |s| !s.is_empty() && s.iter().all(|b| b.state == state)
}

#[test]
fn tcp_check_of_a_listening_backend_goes_up() {
    let (port, accepted) = tcp_backend();
    let checker = HealthChecker::start_services(
        vec![service(10, 80, Protocol::Tcp, port)],
        check(HealthKind::Tcp),
    );
    let first = checker.snapshot();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, HealthState::Unknown);
    let snap = wait_for(&checker, "tcp up", state_is(HealthState::Up));
    let b = &snap[0];
    assert!(b.checked);
    assert_eq!(b.transitions, 1);
    assert!(b.consecutive_successes >= 2);
    assert_eq!(b.consecutive_failures, 0);
    assert_eq!(b.failing_since_unix_ms, None);
    assert_eq!(b.last_error, None);
    assert!(b.last_check_unix_ms.is_some_and(|t| t >= b.since_unix_ms));
    checker.stop();
    assert!(accepted.load(Ordering::SeqCst) >= 2);
}

#[test]
fn tcp_check_of_a_closed_port_goes_down_with_the_reason() {
    let checker = HealthChecker::start_services(vec![closed_service(10)], check(HealthKind::Tcp));
    let snap = wait_for(&checker, "tcp down", state_is(HealthState::Down));
    let b = &snap[0];
    assert_eq!(b.last_error.as_deref(), Some("connect: connection refused"));
    assert!(b.failing_since_unix_ms.is_some());
    assert_eq!(b.detect_ms, None, "never up: nothing detected");
    assert!(b.consecutive_failures >= 2);
    checker.stop();
}

#[test]
fn http_check_wants_the_expected_status() {
    let (ok_port, last_request) = http_backend(200);
    let (bad_port, _) = http_backend(503);
    let checker = HealthChecker::start_services(
        vec![
            service(10, 80, Protocol::Tcp, ok_port),
            service(11, 80, Protocol::Tcp, bad_port),
        ],
        check(http(200)),
    );
    let snap = wait_for(&checker, "200 up, 503 down", |s| {
        s.len() == 2 && s[0].state == HealthState::Up && s[1].state == HealthState::Down
    });
    assert_eq!(
        snap[1].last_error.as_deref(),
        Some("http status 503, want 200")
    );
    checker.stop();
    let head = last_request.lock().expect("lock").to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{ok_port}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");

    // The same 503 backend is healthy when 503 is what is expected.
    let checker = HealthChecker::start_services(
        vec![service(11, 80, Protocol::Tcp, bad_port)],
        check(http(503)),
    );
    wait_for(&checker, "503 expected", state_is(HealthState::Up));
    checker.stop();
}

#[test]
fn http_check_of_a_silent_backend_times_out() {
    let checker = HealthChecker::start_services(
        vec![service(10, 80, Protocol::Tcp, silent_backend())],
        HealthCheck {
            timeout: Duration::from_millis(200),
            fall: 1,
            ..check(http(200))
        },
    );
    let snap = wait_for(&checker, "timeout down", state_is(HealthState::Down));
    assert_eq!(snap[0].last_error.as_deref(), Some("timeout after 200 ms"));
    checker.stop();
}

#[test]
fn http_check_of_a_closed_port_is_a_connect_error() {
    let checker = HealthChecker::start_services(
        vec![closed_service(10)],
        HealthCheck {
            fall: 1,
            ..check(http(200))
        },
    );
    let snap = wait_for(&checker, "closed down", state_is(HealthState::Down));
    assert_eq!(
        snap[0].last_error.as_deref(),
        Some("connect: connection refused")
    );
    checker.stop();
}

#[test]
fn a_backend_that_stops_is_detected_and_one_that_returns_comes_back() {
    // Serve, then stop serving (drop the listener), then serve again on the same port.
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let checker = HealthChecker::start_services(
        vec![service(10, 80, Protocol::Tcp, port)],
        check(HealthKind::Tcp),
    );
    wait_for(&checker, "up", state_is(HealthState::Up));
    drop(listener);
    let snap = wait_for(&checker, "down", state_is(HealthState::Down));
    let b = &snap[0];
    assert_eq!(b.transitions, 2);
    let failing_since = b.failing_since_unix_ms.expect("failing since");
    assert_eq!(b.detect_ms, Some(b.since_unix_ms - failing_since));
    let Ok(listener) = TcpListener::bind((LOCALHOST, port)) else {
        // Someone else took the port in between: the up → down part was still checked.
        checker.stop();
        return;
    };
    let snap = wait_for(&checker, "up again", state_is(HealthState::Up));
    assert_eq!(snap[0].transitions, 3);
    assert_eq!(snap[0].failing_since_unix_ms, None);
    assert_eq!(
        snap[0].detect_ms, b.detect_ms,
        "kept from the last up → down"
    );
    checker.stop();
    drop(listener);
}

#[test]
fn udp_backends_are_not_probed_and_reported_up() {
    let checker = HealthChecker::start_services(
        vec![service(10, 53, Protocol::Udp, closed_port())],
        check(HealthKind::Tcp),
    );
    let snap = checker.snapshot();
    assert_eq!(snap.len(), 1);
    let b = &snap[0];
    assert_eq!(b.state, HealthState::Up);
    assert!(!b.checked);
    assert_eq!(b.transitions, 0);
    assert_eq!(b.last_check_unix_ms, None);
    checker.stop();
}

#[test]
fn services_sharing_a_backend_share_its_state_and_appear_once_each() {
    let (port, _) = tcp_backend();
    let checker = HealthChecker::start_services(
        vec![
            service(10, 80, Protocol::Tcp, port),
            service(20, 8080, Protocol::Tcp, port),
        ],
        check(HealthKind::Tcp),
    );
    let snap = wait_for(&checker, "both up", state_is(HealthState::Up));
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[0].vip, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(snap[1].vip, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)));
    assert_eq!(snap[1].port, 8080);
    assert_eq!(snap[0].transitions, snap[1].transitions);
    checker.stop();
}

#[test]
fn reload_keeps_surviving_targets_and_replaces_the_others() {
    let (kept_port, _) = tcp_backend();
    let (removed_port, removed_accepts) = tcp_backend();
    let mut checker = HealthChecker::start_services(
        vec![
            service(10, 80, Protocol::Tcp, kept_port),
            service(11, 80, Protocol::Tcp, removed_port),
        ],
        check(HealthKind::Tcp),
    );
    wait_for(&checker, "both up", state_is(HealthState::Up));
    let closed = closed_service(13);
    checker.reload_services(
        vec![
            // Same backend, other VIP: still the same target, so its state is kept.
            service(12, 443, Protocol::Tcp, kept_port),
            closed,
        ],
        HealthCheck {
            rise: 5,
            ..check(HealthKind::Tcp)
        },
    );
    let snap = checker.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[0].state, HealthState::Up, "kept");
    assert_eq!(snap[0].port, 443);
    assert_eq!(snap[0].transitions, 1);
    assert_eq!(snap[1].backend_port, closed.backend_port);
    assert!(
        snap[1].state == HealthState::Unknown || snap[1].state == HealthState::Down,
        "new target starts unknown"
    );
    wait_for(&checker, "new target down", |s| {
        s.len() == 2 && s[1].state == HealthState::Down
    });
    // The removed target's thread has ended: while the kept target is probed three more times
    // (its published success count), the removed backend sees at most the one probe that was
    // in flight during the reload.
    let settled = removed_accepts.load(Ordering::SeqCst);
    let kept_successes = checker.snapshot()[0].consecutive_successes;
    wait_for(&checker, "three more probes of the kept target", |s| {
        s[0].consecutive_successes >= kept_successes + 3
    });
    assert!(removed_accepts.load(Ordering::SeqCst) <= settled + 1);
    checker.stop();
}

#[test]
fn probes_never_run_more_often_than_the_interval() {
    let (port, accepted) = tcp_backend();
    let interval = Duration::from_millis(200);
    let start = Instant::now();
    let checker = HealthChecker::start_services(
        vec![service(10, 80, Protocol::Tcp, port)],
        HealthCheck {
            interval,
            timeout: Duration::from_millis(100),
            ..check(HealthKind::Tcp)
        },
    );
    // Wait for five probes (the backend counts them); a checker that probed too often would
    // reach them early, and then `elapsed` is too short for the count.
    let deadline = start + DEADLINE;
    while accepted.load(Ordering::SeqCst) < 5 {
        assert!(
            Instant::now() < deadline,
            "five probes not seen in {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Count first, then take the time: every counted probe started before `elapsed`.
    let probes = accepted.load(Ordering::SeqCst) as u128;
    let elapsed = start.elapsed();
    checker.stop();
    let most = elapsed.as_millis() / interval.as_millis() + 1;
    assert!(probes <= most, "{probes} probes in {elapsed:?}");
}

#[test]
fn stop_is_prompt_even_with_a_long_interval() {
    let (port, _) = tcp_backend();
    let checker = HealthChecker::start_services(
        vec![service(10, 80, Protocol::Tcp, port)],
        HealthCheck {
            interval: Duration::from_secs(60),
            ..check(HealthKind::Tcp)
        },
    );
    wait_for(&checker, "first probe", |s| {
        s[0].last_check_unix_ms.is_some()
    });
    let view = checker.view();
    let start = Instant::now();
    checker.stop();
    // Generous: the thread is woken, not polled; 60 s would mean it slept out its interval.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(view.snapshot().len(), 1, "states stay readable after stop");
}

const UDP_CONFIG: &str = r#"
[agent]
name = "host1"
[tunnel]
mux_sources = ["10.0.11.2"]
[[service]]
vip = "192.0.2.10"
port = 53
protocol = "udp"
dip = "10.0.21.2"
[[service]]
vip = "192.0.2.11"
port = 53
protocol = "udp"
dip = "10.0.21.3"
"#;

#[test]
fn start_and_reload_from_a_configuration() {
    let config = config::parse(UDP_CONFIG, "test.toml").expect("valid");
    let mut checker = HealthChecker::start(&config);
    let snap = checker.snapshot();
    assert_eq!(snap.len(), 2);
    assert!(
        snap.iter()
            .all(|b| b.state == HealthState::Up && !b.checked)
    );
    let since = snap[0].since_unix_ms;
    let one = UDP_CONFIG
        .split("[[service]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("[[service]]");
    let config = config::parse(&one, "test.toml").expect("valid");
    checker.reload(&config);
    let snap = checker.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].since_unix_ms, since, "kept, not re-added");
    assert_eq!(snap[0].dip, IpAddr::V4(Ipv4Addr::new(10, 0, 21, 2)));
    checker.stop();
}

#[test]
fn backend_health_serializes_in_the_contract_shape() {
    let checker = HealthChecker::start_services(
        vec![service(10, 53, Protocol::Udp, 5353)],
        check(HealthKind::Tcp),
    );
    let snap = checker.snapshot();
    checker.stop();
    let text = serde_json::to_string(&snap[0]).expect("json");
    let since = snap[0].since_unix_ms;
    assert_eq!(
        text,
        format!(
            "{{\"vip\":\"192.0.2.10\",\"port\":53,\"protocol\":\"udp\",\"dip\":\"10.0.21.2\",\
             \"backend_address\":\"127.0.0.1\",\"backend_port\":5353,\"state\":\"up\",\
             \"checked\":false,\"since_unix_ms\":{since},\"failing_since_unix_ms\":null,\
             \"last_check_unix_ms\":null,\"transitions\":0,\"consecutive_successes\":0,\
             \"consecutive_failures\":0,\"detect_ms\":null,\"last_error\":null}}"
        )
    );
}

/// A TLS server on loopback (a self-signed test certificate, `tests/fixtures/`) answering
/// `status` to every request.
fn https_backend(status: u16) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(include_bytes!("fixtures/test-cert.pem"))
            .collect::<Result<_, _>>()
            .expect("test certificate");
    let key =
        PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/test-key.pem")).expect("test key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    );
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(session) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(session, conn);
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            let _ = tls.write_all(reply.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

fn https(status: u16) -> HealthKind {
    HealthKind::Http {
        tls: true,
        path: "/healthz".into(),
        expected_status: status,
    }
}

#[test]
fn https_check_completes_the_handshake_and_wants_the_expected_status() {
    let ok = https_backend(200);
    let bad = https_backend(503);
    let (plain, _) = http_backend(200);
    let checker = HealthChecker::start_services(
        vec![
            service(10, 443, Protocol::Tcp, ok),
            service(11, 443, Protocol::Tcp, bad),
            service(12, 443, Protocol::Tcp, plain),
        ],
        check(https(200)),
    );
    let snap = wait_for(&checker, "TLS 200 up, TLS 503 down, plain HTTP down", |s| {
        s.len() == 3
            && s[0].state == HealthState::Up
            && s[1].state == HealthState::Down
            && s[2].state == HealthState::Down
    });
    assert_eq!(
        snap[1].last_error.as_deref(),
        Some("http status 503, want 200")
    );
    assert!(
        snap[2].last_error.is_some(),
        "a server without TLS fails the check"
    );
    checker.stop();
}
