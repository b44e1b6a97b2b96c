//! `perf http-load`: a bounded HTTP load client for the lab.
//!
//! Two phases, each over at most `concurrency` threads: `connections` keep-alive connections
//! sending `requests_per_connection` requests each, then `new_connections` connections with
//! one request each (`Connection: close`). Every request has a timeout; a failure is counted
//! with its reason and never retried. Each response body's `backend` and `client` fields (see
//! [`super::backend`]) are read: responses per backend, whether a keep-alive connection ever
//! changed backend, and whether the backend saw this client's own address.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::read_head;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The VIP (or any server) address.
    pub target: SocketAddr,
    /// Keep-alive connections.
    pub connections: usize,
    /// Requests on each keep-alive connection.
    pub requests_per_connection: usize,
    /// One-request connections.
    pub new_connections: usize,
    /// Threads.
    pub concurrency: usize,
    /// Per connect and per request.
    pub timeout: Duration,
    /// The client address backends must report seeing (besides each connection's own).
    pub expect_client: Option<std::net::IpAddr>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

/// The report (`--report FILE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// `ip:port` asked.
    pub target: String,
    /// Requests attempted (a failed connect counts its requests as failed).
    pub requests: usize,
    /// Requests answered 200 with a readable body.
    pub ok: usize,
    /// Failed requests by reason (`connect_refused`, `connect_timeout`, `read_timeout`,
    /// `reset`, `closed`, `bad_status_N`, `malformed`, `other`).
    pub failures: BTreeMap<String, usize>,
    /// Answered requests per backend name.
    pub per_backend: BTreeMap<String, usize>,
    /// Keep-alive connections whose answers came from more than one backend.
    pub backend_changed_within_connection: usize,
    /// Answers whose `client` is this connection's own local address (the backend saw the
    /// client's real address and port) and, with `expect_client`, that address.
    pub client_matches: usize,
    /// Answers with any other `client`.
    pub client_mismatches: usize,
    /// Keep-alive connections opened / one-request connections opened (successful connects).
    pub connections_keepalive: usize,
    /// See [`LoadReport::connections_keepalive`].
    pub connections_new: usize,
    /// Per request on an open keep-alive connection.
    pub latency_keepalive: Latency,
    /// Connect + request + response of a one-request connection.
    pub latency_new: Latency,
    /// Wall time of the whole run, milliseconds.
    pub elapsed_ms: u64,
}

#[derive(Default)]
struct Tally {
    report: LoadReport,
    keepalive_us: Vec<u64>,
    new_us: Vec<u64>,
}

/// The backend's answer (see [`super::backend`]).
#[derive(Deserialize)]
pub(super) struct Body {
    /// The backend's name.
    pub(super) backend: String,
    /// The client address and port the backend saw.
    pub(super) client: String,
}

/// Runs the load; always returns (bounded by the timeouts).
pub fn run(spec: &LoadSpec) -> LoadReport {
    let started = Instant::now();
    let tally = Mutex::new(Tally::default());
    for (jobs, per_conn, keepalive) in [
        (spec.connections, spec.requests_per_connection, true),
        (spec.new_connections, 1, false),
    ] {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..spec.concurrency.max(1).min(jobs.max(1)) {
                scope.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < jobs {
                        let mut local = Tally::default();
                        one_connection(spec, per_conn, keepalive, &mut local);
                        merge(&tally, local);
                    }
                });
            }
        });
    }
    let mut t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    t.report.target = spec.target.to_string();
    t.report.latency_keepalive = percentiles(&mut t.keepalive_us);
    t.report.latency_new = percentiles(&mut t.new_us);
    t.report.elapsed_ms = started.elapsed().as_millis() as u64;
    t.report
}

fn merge(into: &Mutex<Tally>, from: Tally) {
    let mut t = into.lock().unwrap_or_else(|e| e.into_inner());
    let (r, f) = (&mut t.report, &from.report);
    r.requests += f.requests;
    r.ok += f.ok;
    for (k, v) in &f.failures {
        *r.failures.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &f.per_backend {
        *r.per_backend.entry(k.clone()).or_default() += v;
    }
    r.backend_changed_within_connection += f.backend_changed_within_connection;
    r.client_matches += f.client_matches;
    r.client_mismatches += f.client_mismatches;
    r.connections_keepalive += f.connections_keepalive;
    r.connections_new += f.connections_new;
    t.keepalive_us.extend(from.keepalive_us);
    t.new_us.extend(from.new_us);
}

fn fail(t: &mut Tally, reason: &str, n: usize) {
    *t.report.failures.entry(reason.to_string()).or_default() += n;
}

/// The failure reason of an I/O error (`connect_*` while connecting).
pub(super) fn io_reason(e: &std::io::Error, connecting: bool) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connect_refused",
        TimedOut | WouldBlock if connecting => "connect_timeout",
        TimedOut | WouldBlock => "read_timeout",
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        UnexpectedEof => "closed",
        InvalidData => "malformed",
        _ => "other",
    }
}

fn one_connection(spec: &LoadSpec, requests: usize, keepalive: bool, t: &mut Tally) {
    t.report.requests += requests;
    let start = Instant::now();
    let conn = match TcpStream::connect_timeout(&spec.target, spec.timeout) {
        Ok(c) => c,
        Err(e) => return fail(t, io_reason(&e, true), requests),
    };
    if keepalive {
        t.report.connections_keepalive += 1;
    } else {
        t.report.connections_new += 1;
    }
    let _ = conn.set_read_timeout(Some(spec.timeout));
    let _ = conn.set_write_timeout(Some(spec.timeout));
    let _ = conn.set_nodelay(true);
    let local = conn.local_addr().ok();
    let Ok(mut writer) = conn.try_clone() else {
        return fail(t, "other", requests);
    };
    let mut reader = BufReader::new(conn);
    let mut first_backend: Option<String> = None;
    let mut changed = false;
    for i in 0..requests {
        let req_start = if keepalive { Instant::now() } else { start };
        let last = !keepalive || i + 1 == requests;
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n\r\n",
            spec.target,
            if last { "close" } else { "keep-alive" }
        );
        let result = writer
            .write_all(request.as_bytes())
            .and_then(|()| read_response(&mut reader));
        let (status, body) = match result {
            Ok(r) => r,
            Err(e) => return fail(t, io_reason(&e, false), requests - i),
        };
        if status != 200 {
            fail(t, &format!("bad_status_{status}"), 1);
            continue;
        }
        let Ok(body) = serde_json::from_slice::<Body>(&body) else {
            fail(t, "malformed", 1);
            continue;
        };
        let us = req_start.elapsed().as_micros() as u64;
        if keepalive {
            t.keepalive_us.push(us);
        } else {
            t.new_us.push(us);
        }
        t.report.ok += 1;
        *t.report
            .per_backend
            .entry(body.backend.clone())
            .or_default() += 1;
        match &first_backend {
            None => first_backend = Some(body.backend),
            Some(b) if *b != body.backend => changed = true,
            Some(_) => {}
        }
        let seen: Option<SocketAddr> = body.client.parse().ok();
        let matches = seen.is_some()
            && seen == local
            && spec
                .expect_client
                .is_none_or(|ip| Some(ip) == seen.map(|s| s.ip()));
        if matches {
            t.report.client_matches += 1;
        } else {
            t.report.client_mismatches += 1;
        }
    }
    if changed {
        t.report.backend_changed_within_connection += 1;
    }
}

/// Reads one response: its status and body.
pub(super) fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let head = read_head(r)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before a response",
        )
    })?;
    let status = head
        .first_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| head.first_line.starts_with("HTTP/1."))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line"))?;
    let len = head
        .content_length
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Content-Length"))?;
    let mut body = vec![0; len.min(1 << 20)];
    r.read_exact(&mut body)?;
    Ok((status, body))
}

/// Sorts `v` and takes its percentiles.
pub fn percentiles(v: &mut [u64]) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latency {
        count: v.len(),
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        max_us: v[v.len() - 1],
    }
}

/// The human summary of a report.
pub fn render(r: &LoadReport) -> String {
    let mut out = String::new();
    let failed: usize = r.failures.values().sum();
    out.push_str(&format!(
        "  responses {} of {} requests ({} failed) in {} ms; connections {} keep-alive, {} new\n",
        r.ok, r.requests, failed, r.elapsed_ms, r.connections_keepalive, r.connections_new
    ));
    let per: Vec<String> = r
        .per_backend
        .iter()
        .map(|(b, n)| format!("{b} {n} ({:.0} %)", 100.0 * *n as f64 / r.ok.max(1) as f64))
        .collect();
    out.push_str(&format!("  per backend  {}\n", per.join("   ")));
    if failed > 0 {
        let f: Vec<String> = r.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("  failures     {}\n", f.join(", ")));
    }
    out.push_str(&format!(
        "  client seen  {} of {} answers name this client's own address and port{}\n",
        r.client_matches,
        r.ok,
        if r.backend_changed_within_connection > 0 {
            format!(
                "; {} keep-alive connections changed backend",
                r.backend_changed_within_connection
            )
        } else {
            String::new()
        }
    ));
    for (name, l) in [
        ("keep-alive", &r.latency_keepalive),
        ("new conn", &r.latency_new),
    ] {
        if l.count > 0 {
            out.push_str(&format!(
                "  latency {name:<10} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} requests)\n",
                l.p50_us as f64 / 1000.0,
                l.p90_us as f64 / 1000.0,
                l.p99_us as f64 / 1000.0,
                l.max_us as f64 / 1000.0,
                l.count
            ));
        }
    }
    out
}
