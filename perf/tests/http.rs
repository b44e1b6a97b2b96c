//! `perf http-backend` and `perf http-load` against each other on loopback: answers name the
//! backend and the client's own address, keep-alive reuses connections, failures are counted
//! with a reason instead of hanging, and a malformed request gets 400.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use perf::http::backend::{ServerStats, serve};
use perf::http::load::{LoadSpec, run};

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(name: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServerStats::default());
        let (s, st, n) = (Arc::clone(&stop), Arc::clone(&stats), name.to_string());
        let thread = std::thread::spawn(move || {
            serve(listener, n, None, s, st).unwrap();
        });
        Server {
            addr,
            stop,
            stats,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spec(target: SocketAddr) -> LoadSpec {
    LoadSpec {
        target,
        connections: 5,
        requests_per_connection: 4,
        new_connections: 7,
        concurrency: 3,
        timeout: Duration::from_secs(2),
        expect_client: Some("127.0.0.1".parse().unwrap()),
    }
}

#[test]
fn every_request_is_answered_by_the_named_backend_seeing_the_client() {
    let server = Server::start("b1");
    let r = run(&spec(server.addr));
    assert_eq!(r.requests, 5 * 4 + 7);
    assert_eq!(r.ok, r.requests, "{r:?}");
    assert!(r.failures.is_empty());
    assert_eq!(r.per_backend.get("b1"), Some(&r.ok));
    assert_eq!(r.client_matches, r.ok);
    assert_eq!(r.client_mismatches, 0);
    assert_eq!((r.connections_keepalive, r.connections_new), (5, 7));
    assert_eq!(r.backend_changed_within_connection, 0);
    assert_eq!(r.latency_keepalive.count, 20);
    assert_eq!(r.latency_new.count, 7);
    assert!(r.latency_new.p50_us <= r.latency_new.max_us);
    // Keep-alive: 12 connections carried 27 requests.
    assert_eq!(server.stats.connections.load(Ordering::Relaxed), 12);
    assert_eq!(server.stats.requests.load(Ordering::Relaxed), 27);
}

#[test]
fn a_closed_port_is_counted_as_refused_not_a_hang() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(&spec(SocketAddr::from(([127, 0, 0, 1], port))));
    assert_eq!(r.ok, 0);
    assert_eq!(r.failures.get("connect_refused"), Some(&r.requests));
}

#[test]
fn a_wrong_client_address_is_a_mismatch() {
    let server = Server::start("b1");
    let mut s = spec(server.addr);
    s.expect_client = Some("10.0.1.2".parse().unwrap());
    let r = run(&s);
    assert_eq!(r.client_matches, 0);
    assert_eq!(r.client_mismatches, r.ok);
}

#[test]
fn a_malformed_request_gets_400_and_health_answers_ok() {
    let server = Server::start("b1");
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok\n"));
}
