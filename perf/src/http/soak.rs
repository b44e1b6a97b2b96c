//! `perf http-soak`: long-lived keep-alive connections (and a trickle of new ones) through a
//! fault, recording exactly which connection broke, when and why.
//!
//! The lab's chaos rounds ask "did an established connection survive the MUX being killed,
//! stopped, drained, its backend failing?" — a question about *individual long-lived
//! connections*, which `perf http-load` (short bursts, failures summed by reason) cannot
//! answer. Here:
//!
//! - `connections` keep-alive connections are opened (at most [`SETUP_PARALLEL`] connects in
//!   flight) and each answers one request; then the run is *ready* (the lab injects its fault
//!   after that moment) and lasts `duration` from it.
//! - Each connection, on its own thread, sends `GET /` every `interval` on a fixed schedule
//!   (the connections are staggered over one interval; a late request is followed right away
//!   by the next, missed slots are not caught up). A request fails on the whole-request
//!   timeout, a reset, EOF, a non-200 status or a body that is not the backend's JSON; the
//!   first failure marks the connection **broken** (when the failing request was sent, why,
//!   the backend it last talked to) and it is closed, never reopened: a broken connection is
//!   what a real client would have seen.
//! - `new_per_second` times a second a new connection is attempted on its own short-lived
//!   thread (connect, one `Connection: close` request): failures by reason and connects slower
//!   than [`SLOW_MS`] (a retransmitted SYN) are recorded with their start time.
//! - With `udp`, that many long-lived UDP flows (QUIC-like: a socket each, no SYN) run beside
//!   the connections, from the same setup to the same end: each must keep the backend that
//!   first answered it and never go silent (see [`super::udp`], which owns them); the report's
//!   `udp` object holds what they saw (zeros when there were none).
//! - All times in the report are unix milliseconds, comparable with the lab script's
//!   `date +%s%3N` of the fault; [`super::chaos`] evaluates the report against the round's
//!   expectations.
//!
//! Bounded: every connect and request has a timeout, so the run ends at most one connect
//! timeout plus one request timeout after `duration` (setup takes at most
//! `ceil(connections / SETUP_PARALLEL)` × (connect timeout + request timeout); the UDP flows'
//! setup, in parallel with it, at most one request timeout).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::load::{Body, Latency, io_reason, percentiles, read_response};
use super::udp::{self, UdpReport, UdpSpec};

/// A request (or a new connection's connect) slower than this is recorded as slow.
pub const SLOW_MS: u64 = 200;
/// At most this many slow requests are kept in the report (the earliest).
pub const MAX_SLOW: usize = 20_000;
/// Keep-alive connects (with their first request) in flight at once during setup.
pub const SETUP_PARALLEL: usize = 64;
/// Stack of each connection thread: they hold a small buffer and a few counters.
const STACK: usize = 256 * 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakSpec {
    /// The VIP (or any server) address.
    pub target: SocketAddr,
    /// Keep-alive connections.
    pub connections: usize,
    /// Between two requests of a keep-alive connection.
    pub interval: Duration,
    /// From ready to the end.
    pub duration: Duration,
    /// New connections attempted per second during the duration (0: none).
    pub new_per_second: f64,
    /// Whole-request timeout (send to last body byte).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The client address backends must report seeing (besides each connection's own).
    pub expect_client: Option<IpAddr>,
    /// Long-lived UDP flows held beside the connections (`None` or 0 flows: none).
    pub udp: Option<UdpSpec>,
}

/// A keep-alive connection's first failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    /// The connection's index.
    pub conn: usize,
    /// When the failing request was sent.
    pub t_unix_ms: u64,
    /// `reset`, `closed`, `read_timeout`, `bad_status_N`, `malformed`, `other`.
    pub reason: String,
    /// The backend that answered the connection's previous request (none if it never did).
    pub backend: Option<String>,
    /// The connection's own address (`ip:port`), to find it in a capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
}

/// An answered keep-alive request slower than [`SLOW_MS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowRequest {
    /// The connection's index.
    pub conn: usize,
    /// When the request was sent.
    pub t_unix_ms: u64,
    /// How long its answer took.
    pub ms: u64,
    /// Who answered.
    pub backend: Option<String>,
}

/// A failed new connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFailure {
    /// When the attempt started (before its connect).
    pub t_unix_ms: u64,
    /// `connect_refused`, `connect_timeout`, `reset`, `closed`, `read_timeout`,
    /// `bad_status_N`, `malformed`, `other`.
    pub reason: String,
    /// From the start to the failure.
    pub ms: u64,
}

/// A new connection whose connect took longer than [`SLOW_MS`] (its SYN was retransmitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSlow {
    /// When the attempt started.
    pub t_unix_ms: u64,
    /// How long the connect took.
    pub connect_ms: u64,
}

/// The new connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewReport {
    /// Attempts started.
    pub attempted: usize,
    /// Attempts answered 200 with the backend's JSON.
    pub ok: usize,
    /// The others, by start time.
    pub failed: Vec<NewFailure>,
    /// Attempts whose connect (successful) took longer than [`SLOW_MS`], by start time.
    pub slow: Vec<NewSlow>,
    /// Connect + request + response of the answered attempts.
    pub latency: Latency,
}

/// The report (`--report FILE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakReport {
    /// `ip:port` asked.
    pub target: String,
    /// Keep-alive connections asked for.
    pub connections: usize,
    /// Keep-alive connections whose connect succeeded.
    pub established: usize,
    /// The other keep-alive connects by reason.
    pub connect_failures: BTreeMap<String, usize>,
    /// When the run started.
    pub started_unix_ms: u64,
    /// When setup ended (the ready file's content): the duration counts from here.
    pub ready_unix_ms: u64,
    /// When the last thread finished.
    pub ended_unix_ms: u64,
    /// Keep-alive requests sent, the setup request of each connection included.
    pub requests: usize,
    /// Keep-alive requests answered 200 with the backend's JSON.
    pub ok: usize,
    /// Broken keep-alive connections, by time.
    pub broken: Vec<Broken>,
    /// Answered keep-alive requests slower than [`SLOW_MS`], by time (the first [`MAX_SLOW`]).
    pub slow: Vec<SlowRequest>,
    /// Keep-alive request latency (answered requests).
    pub latency: Latency,
    /// Answers per backend, keep-alive and new connections.
    pub per_backend: BTreeMap<String, usize>,
    /// The last answer received from each backend, keep-alive and new connections.
    pub last_response_unix_ms: BTreeMap<String, u64>,
    /// Reserved: always null.
    pub first_response_after_unix_ms: Option<u64>,
    /// Keep-alive answers from another backend than the connection's first (never expected).
    pub backend_changed: usize,
    /// Answers (keep-alive and new) whose `client` is not the connection's own local address
    /// (and, with `expect_client`, that address).
    pub client_mismatches: usize,
    /// The new connections.
    pub new: NewReport,
    /// The UDP flows (all zero when there were none; absent from older reports).
    pub udp: UdpReport,
}

/// Milliseconds since the unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A stream whose reads share one deadline (the whole-request timeout).
struct Timed {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request timeout"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// A connected client: its reader, its own address and the request it sends.
struct Client {
    reader: BufReader<Timed>,
    local: Option<SocketAddr>,
    request: Vec<u8>,
}

impl Client {
    fn new(stream: TcpStream, spec: &SoakSpec, keepalive: bool) -> Client {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(spec.timeout));
        let local = stream.local_addr().ok();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n\r\n",
            spec.target,
            if keepalive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        Client {
            reader: BufReader::new(Timed {
                stream,
                deadline: Instant::now(),
            }),
            local,
            request,
        }
    }

    /// One request within `timeout`: the answer, whether its `client` is ours, or why not.
    fn exchange(
        &mut self,
        timeout: Duration,
        expect: Option<IpAddr>,
    ) -> Result<(Body, bool), String> {
        self.reader.get_mut().deadline = Instant::now() + timeout;
        let result = (&self.reader.get_ref().stream)
            .write_all(&self.request)
            .and_then(|()| read_response(&mut self.reader));
        let (status, body) = result.map_err(|e| io_reason(&e, false).to_string())?;
        if status != 200 {
            return Err(format!("bad_status_{status}"));
        }
        let body: Body = serde_json::from_slice(&body).map_err(|_| "malformed".to_string())?;
        let seen: Option<SocketAddr> = body.client.parse().ok();
        let matches = seen.is_some()
            && seen == self.local
            && expect.is_none_or(|ip| Some(ip) == seen.map(|s| s.ip()));
        Ok((body, matches))
    }
}

/// What one keep-alive connection saw.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    ok: usize,
    broken: Option<Broken>,
    slow: Vec<SlowRequest>,
    us: Vec<u64>,
    per_backend: BTreeMap<String, usize>,
    last_response: BTreeMap<String, u64>,
    backend_changed: usize,
    client_mismatches: usize,
}

/// A keep-alive connection's outcome: its connect failure reason, or what it saw.
type ConnOutcome = Result<Tally, &'static str>;

/// One new connection's outcome.
#[derive(Debug)]
struct Attempt {
    t_unix_ms: u64,
    connect_ms: Option<u64>,
    total_us: u64,
    answer: Result<(String, bool), String>,
    answered_unix_ms: u64,
}

impl Attempt {
    /// An attempt that could not even start (no thread).
    fn failed(reason: &str) -> Attempt {
        Attempt {
            t_unix_ms: unix_ms(),
            connect_ms: None,
            total_us: 0,
            answer: Err(reason.into()),
            answered_unix_ms: 0,
        }
    }
}

/// How setup is going, shared by the main thread and the connection threads.
#[derive(Debug, Default)]
struct GateState {
    /// Connects (with their first request) in flight.
    connecting: usize,
    /// Connections and UDP flows done with setup (either way).
    settled: usize,
    /// Of which connected (TCP) or answered (UDP).
    connected: usize,
    /// Set once setup is over: `Some((ready, end))` to run, `None` to stop.
    start: Option<Option<(Instant, Instant)>>,
}

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, GateState>) -> MutexGuard<'a, GateState> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// A connection is done with setup (`connected`: its connect succeeded).
    fn settle(&self, connected: bool) {
        let mut g = self.lock();
        g.connecting -= 1;
        g.settled += 1;
        g.connected += usize::from(connected);
        drop(g);
        self.changed.notify_all();
    }

    /// A UDP flow is done with setup (`established`: it was answered). Flows are not limited
    /// by [`SETUP_PARALLEL`] (a datagram costs no handshake), so they are not `connecting`.
    fn settle_udp(&self, established: bool) {
        let mut g = self.lock();
        g.settled += 1;
        g.connected += usize::from(established);
        drop(g);
        self.changed.notify_all();
    }

    /// Waits for the end of setup: the ready and end instants, or `None` to stop.
    fn wait_start(&self) -> Option<(Instant, Instant)> {
        let mut g = self.lock();
        loop {
            if let Some(start) = g.start {
                return start;
            }
            g = self.wait(g);
        }
    }

    fn open(&self, start: Option<(Instant, Instant)>) {
        self.lock().start = Some(start);
        self.changed.notify_all();
    }
}

/// Runs the soak; `on_ready` gets the ready time (unix ms) once setup is over and at least one
/// connection or UDP flow is established (it is not called otherwise, and the run ends right
/// away).
/// Always returns, bounded by the timeouts (see the module docs).
pub fn run(spec: &SoakSpec, on_ready: impl FnOnce(u64)) -> SoakReport {
    let mut report = SoakReport {
        target: spec.target.to_string(),
        connections: spec.connections,
        started_unix_ms: unix_ms(),
        ..SoakReport::default()
    };
    let spec = &SoakSpec {
        interval: spec.interval.max(Duration::from_millis(1)),
        timeout: spec.timeout.max(Duration::from_millis(1)),
        connect_timeout: spec.connect_timeout.max(Duration::from_millis(1)),
        ..spec.clone()
    };
    let gate = &Gate::default();
    let n = spec.connections;
    let mut outcomes: Vec<ConnOutcome> = Vec::with_capacity(n);
    let mut attempts: Vec<Attempt> = Vec::new();
    let udp_spec = spec.udp.as_ref().filter(|u| u.flows > 0);
    let udp_n = udp_spec.map_or(0, |u| u.flows);
    let mut udp_outcomes = Vec::with_capacity(udp_n);
    std::thread::scope(|scope| {
        let mut conns = Vec::with_capacity(n);
        let mut flows = Vec::with_capacity(udp_n);
        let mut pending = Vec::new();
        for (i, u) in udp_spec
            .iter()
            .flat_map(|u| (0..u.flows).map(move |i| (i, *u)))
        {
            let spawned = std::thread::Builder::new()
                .name(format!("soak-udp-{i}"))
                .stack_size(STACK)
                .spawn_scoped(scope, move || {
                    udp::flow(
                        i,
                        u,
                        spec.timeout,
                        spec.expect_client,
                        |ok| gate.settle_udp(ok),
                        || gate.wait_start(),
                    )
                });
            match spawned {
                Ok(h) => flows.push(h),
                Err(_) => {
                    gate.settle_udp(false);
                    udp_outcomes.push(udp::FlowTally::failed("socket"));
                }
            }
        }
        for i in 0..n {
            let mut g = gate.lock();
            while g.connecting >= SETUP_PARALLEL {
                g = gate.wait(g);
            }
            g.connecting += 1;
            drop(g);
            let spawned = std::thread::Builder::new()
                .name(format!("soak-{i}"))
                .stack_size(STACK)
                .spawn_scoped(scope, move || keepalive(i, spec, gate));
            match spawned {
                Ok(h) => conns.push(h),
                Err(_) => {
                    gate.settle(false);
                    outcomes.push(Err("other"));
                }
            }
        }
        let connected = {
            let mut g = gate.lock();
            while g.settled < n + udp_n {
                g = gate.wait(g);
            }
            g.connected
        };
        let ready = Instant::now();
        report.ready_unix_ms = unix_ms();
        let end = ready + spec.duration;
        if connected == 0 {
            gate.open(None);
        } else {
            gate.open(Some((ready, end)));
            on_ready(report.ready_unix_ms);
            let every = Duration::try_from_secs_f64(1.0 / spec.new_per_second)
                .ok()
                .filter(|_| spec.new_per_second > 0.0);
            if let Some(every) = every.map(|e| e.max(Duration::from_millis(1))) {
                let mut k: u32 = 0;
                loop {
                    let due = ready + every * k;
                    if due >= end {
                        break;
                    }
                    sleep_until(due);
                    let spawned = std::thread::Builder::new()
                        .name("soak-new".into())
                        .stack_size(STACK)
                        .spawn_scoped(scope, move || attempt(spec));
                    match spawned {
                        Ok(h) => pending.push(h),
                        Err(_) => attempts.push(Attempt::failed("other")),
                    }
                    k += 1;
                }
            }
            sleep_until(end);
        }
        for h in conns {
            outcomes.push(h.join().unwrap_or(Err("other")));
        }
        for h in pending {
            attempts.push(h.join().unwrap_or_else(|_| Attempt::failed("other")));
        }
        for h in flows {
            udp_outcomes.push(
                h.join()
                    .unwrap_or_else(|_| udp::FlowTally::failed("socket")),
            );
        }
    });
    tally(&mut report, outcomes, attempts);
    if let Some(u) = udp_spec {
        report.udp = udp::tally(u, udp_outcomes);
    }
    report.ended_unix_ms = unix_ms();
    report
}

fn sleep_until(t: Instant) {
    let left = t.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

/// Keep-alive connection `i`: setup (connect, one request), then requests on schedule until
/// the end or the first failure.
fn keepalive(i: usize, spec: &SoakSpec, gate: &Gate) -> ConnOutcome {
    let stream = match TcpStream::connect_timeout(&spec.target, spec.connect_timeout) {
        Ok(s) => s,
        Err(e) => {
            gate.settle(false);
            return Err(io_reason(&e, true));
        }
    };
    let mut client = Client::new(stream, spec, true);
    let mut t = Tally::default();
    let mut first: Option<String> = None;
    let mut last: Option<String> = None;
    let up = request(i, spec, &mut client, &mut t, &mut first, &mut last);
    gate.settle(true);
    if !up {
        return Ok(t);
    }
    let Some((ready, end)) = gate.wait_start() else {
        return Ok(t);
    };
    let n = spec.connections.max(1);
    let mut due = ready + spec.interval.mul_f64(i as f64 / n as f64);
    while due < end {
        sleep_until(due);
        if !request(i, spec, &mut client, &mut t, &mut first, &mut last) {
            break;
        }
        due += spec.interval;
        let now = Instant::now();
        if due < now {
            due = now;
        }
    }
    Ok(t)
}

/// One keep-alive request; false when it failed (the connection is then broken).
fn request(
    conn: usize,
    spec: &SoakSpec,
    client: &mut Client,
    t: &mut Tally,
    first: &mut Option<String>,
    last: &mut Option<String>,
) -> bool {
    let sent = unix_ms();
    let start = Instant::now();
    t.requests += 1;
    match client.exchange(spec.timeout, spec.expect_client) {
        Err(reason) => {
            t.broken = Some(Broken {
                conn,
                t_unix_ms: sent,
                reason,
                backend: last.clone(),
                local: client.local.map(|a| a.to_string()),
            });
            false
        }
        Ok((body, client_ok)) => {
            let us = start.elapsed().as_micros() as u64;
            t.ok += 1;
            t.us.push(us);
            *t.per_backend.entry(body.backend.clone()).or_default() += 1;
            t.last_response.insert(body.backend.clone(), unix_ms());
            if !client_ok {
                t.client_mismatches += 1;
            }
            if us > SLOW_MS * 1000 && t.slow.len() < MAX_SLOW {
                t.slow.push(SlowRequest {
                    conn,
                    t_unix_ms: sent,
                    ms: us / 1000,
                    backend: Some(body.backend.clone()),
                });
            }
            match first {
                None => *first = Some(body.backend.clone()),
                Some(b) if *b != body.backend => t.backend_changed += 1,
                Some(_) => {}
            }
            *last = Some(body.backend);
            true
        }
    }
}

/// One new connection: connect, one `Connection: close` request.
fn attempt(spec: &SoakSpec) -> Attempt {
    let t_unix_ms = unix_ms();
    let start = Instant::now();
    let mut a = Attempt {
        t_unix_ms,
        ..Attempt::failed("other")
    };
    match TcpStream::connect_timeout(&spec.target, spec.connect_timeout) {
        Err(e) => a.answer = Err(io_reason(&e, true).to_string()),
        Ok(stream) => {
            a.connect_ms = Some(start.elapsed().as_millis() as u64);
            let mut client = Client::new(stream, spec, false);
            a.answer = client
                .exchange(spec.timeout, spec.expect_client)
                .map(|(body, ok)| (body.backend, ok));
            a.answered_unix_ms = unix_ms();
        }
    }
    a.total_us = start.elapsed().as_micros() as u64;
    a
}

/// Folds the threads' outcomes into the report.
fn tally(r: &mut SoakReport, outcomes: Vec<ConnOutcome>, attempts: Vec<Attempt>) {
    let mut us = Vec::new();
    for o in outcomes {
        let t = match o {
            Ok(t) => t,
            Err(reason) => {
                *r.connect_failures.entry(reason.to_string()).or_default() += 1;
                continue;
            }
        };
        r.established += 1;
        r.requests += t.requests;
        r.ok += t.ok;
        r.broken.extend(t.broken);
        r.slow.extend(t.slow);
        us.extend(t.us);
        for (b, n) in t.per_backend {
            *r.per_backend.entry(b).or_default() += n;
        }
        for (b, at) in t.last_response {
            let e = r.last_response_unix_ms.entry(b).or_default();
            *e = (*e).max(at);
        }
        r.backend_changed += t.backend_changed;
        r.client_mismatches += t.client_mismatches;
    }
    r.broken.sort_by_key(|b| (b.t_unix_ms, b.conn));
    r.slow.sort_by_key(|s| (s.t_unix_ms, s.conn));
    r.slow.truncate(MAX_SLOW);
    r.latency = percentiles(&mut us);

    let mut new_us = Vec::new();
    r.new.attempted = attempts.len();
    for a in attempts {
        if let Some(ms) = a.connect_ms.filter(|ms| *ms > SLOW_MS) {
            r.new.slow.push(NewSlow {
                t_unix_ms: a.t_unix_ms,
                connect_ms: ms,
            });
        }
        match a.answer {
            Ok((backend, client_ok)) => {
                r.new.ok += 1;
                new_us.push(a.total_us);
                if !client_ok {
                    r.client_mismatches += 1;
                }
                let e = r.last_response_unix_ms.entry(backend.clone()).or_default();
                *e = (*e).max(a.answered_unix_ms);
                *r.per_backend.entry(backend).or_default() += 1;
            }
            Err(reason) => r.new.failed.push(NewFailure {
                t_unix_ms: a.t_unix_ms,
                reason,
                ms: a.total_us / 1000,
            }),
        }
    }
    r.new.failed.sort_by_key(|f| f.t_unix_ms);
    r.new.slow.sort_by_key(|s| s.t_unix_ms);
    r.new.latency = percentiles(&mut new_us);
}

/// `reason n, reason n` (empty when there is none).
fn by_reason<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *m.entry(r).or_default() += 1;
    }
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    v.join(", ")
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The human summary of a report.
pub fn render(r: &SoakReport) -> String {
    let mut out = String::new();
    let failures: Vec<String> = r
        .connect_failures
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    out.push_str(&format!(
        "  soak {}: {} of {} keep-alive connections established{}; {:.1} s from ready\n",
        r.target,
        r.established,
        r.connections,
        if failures.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", failures.join(", "))
        },
        r.ended_unix_ms.saturating_sub(r.ready_unix_ms) as f64 / 1000.0
    ));
    let broken = by_reason(r.broken.iter().map(|b| b.reason.as_str()));
    out.push_str(&format!(
        "  requests     {} ok of {} ({} failed); broken connections {}{}\n",
        r.ok,
        r.requests,
        r.requests.saturating_sub(r.ok),
        r.broken.len(),
        if broken.is_empty() {
            String::new()
        } else {
            format!(" ({broken})")
        }
    ));
    let failed = by_reason(r.new.failed.iter().map(|f| f.reason.as_str()));
    out.push_str(&format!(
        "  new conns    {} ok of {} ({} failed{}); {} slow connects (> {SLOW_MS} ms)\n",
        r.new.ok,
        r.new.attempted,
        r.new.failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed}")
        },
        r.new.slow.len()
    ));
    for (name, l) in [("keep-alive", &r.latency), ("new conn", &r.new.latency)] {
        if l.count > 0 {
            out.push_str(&format!(
                "  latency {name:<10} p50 {}  p99 {}  max {}  ({} answers; {} slower than {SLOW_MS} ms)\n",
                ms(l.p50_us),
                ms(l.p99_us),
                ms(l.max_us),
                l.count,
                if name == "keep-alive" {
                    r.slow.len()
                } else {
                    r.new.slow.len()
                }
            ));
        }
    }
    let per: Vec<String> = r
        .per_backend
        .iter()
        .map(|(b, n)| format!("{b} {n}"))
        .collect();
    out.push_str(&format!(
        "  per backend  {}\n",
        if per.is_empty() {
            "no answer".to_string()
        } else {
            per.join("   ")
        }
    ));
    out.push_str(&udp_lines(&r.udp));
    if r.backend_changed > 0 || r.client_mismatches > 0 {
        out.push_str(&format!(
            "  anomalies    {} answers from another backend than the connection's first, {} with another client address\n",
            r.backend_changed, r.client_mismatches
        ));
    }
    out
}

/// The UDP flows' lines of the summary (none without flows).
fn udp_lines(u: &UdpReport) -> String {
    if u.flows == 0 {
        return String::new();
    }
    let mut out = String::new();
    let failures: Vec<String> = u
        .setup_failures
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let broken = by_reason(u.broken.iter().map(|b| b.reason.as_str()));
    out.push_str(&format!(
        "  udp flows    {} of {} established{} to {}; broken {}{}\n",
        u.established,
        u.flows,
        if failures.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", failures.join(", "))
        },
        u.target,
        u.broken.len(),
        if broken.is_empty() {
            String::new()
        } else {
            format!(" ({broken})")
        }
    ));
    out.push_str(&format!(
        "  datagrams    {} answered of {} ({} lost, {} late); {} slower than {SLOW_MS} ms\n",
        u.answered,
        u.sent,
        u.lost,
        u.late,
        u.slow.len()
    ));
    if u.latency.count > 0 {
        out.push_str(&format!(
            "  latency udp        p50 {}  p99 {}  max {}\n",
            ms(u.latency.p50_us),
            ms(u.latency.p99_us),
            ms(u.latency.max_us)
        ));
    }
    let per: Vec<String> = u
        .per_backend
        .iter()
        .map(|(b, n)| format!("{b} {n}"))
        .collect();
    out.push_str(&format!(
        "  udp backend  {}\n",
        if per.is_empty() {
            "no answer".to_string()
        } else {
            per.join("   ")
        }
    ));
    if u.backend_changed > 0 || u.client_mismatches > 0 || u.unmatched > 0 || u.malformed > 0 {
        out.push_str(&format!(
            "  udp anomalies {} answers from another backend than the flow's first, {} with another client address, {} unmatched, {} malformed\n",
            u.backend_changed, u.client_mismatches, u.unmatched, u.malformed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::backend::{ServerStats, serve};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn server() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let h = std::thread::spawn(move || {
            serve(
                listener,
                "b1".into(),
                None,
                s,
                Arc::new(ServerStats::default()),
            )
            .unwrap();
        });
        (addr, stop, h)
    }

    fn spec(target: SocketAddr) -> SoakSpec {
        SoakSpec {
            target,
            connections: 6,
            interval: Duration::from_millis(50),
            duration: Duration::from_millis(1800),
            new_per_second: 10.0,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            expect_client: Some("127.0.0.1".parse().unwrap()),
            udp: None,
        }
    }

    #[test]
    fn a_quiet_soak_answers_everything() {
        let (addr, stop, h) = server();
        let mut ready_at = None;
        let r = run(&spec(addr), |t| ready_at = Some(t));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert_eq!(ready_at, Some(r.ready_unix_ms));
        assert!(r.started_unix_ms <= r.ready_unix_ms && r.ready_unix_ms < r.ended_unix_ms);
        assert!(r.ended_unix_ms - r.ready_unix_ms >= 1799, "{r:?}");
        assert_eq!((r.connections, r.established), (6, 6));
        assert!(r.broken.is_empty(), "{:?}", r.broken);
        assert_eq!(r.ok, r.requests);
        // 6 setup requests, then 1.8 s at one per 50 ms each: ~36 per connection.
        assert!(r.requests >= 6 * 30, "{}", r.requests);
        assert_eq!(r.latency.count, r.ok);
        assert_eq!(r.new.attempted, 18, "{:?}", r.new);
        assert_eq!(r.new.ok, 18, "{:?}", r.new.failed);
        assert_eq!(r.per_backend.get("b1"), Some(&(r.ok + r.new.ok)));
        assert!(r.last_response_unix_ms["b1"] >= r.ended_unix_ms - 300);
        assert_eq!((r.backend_changed, r.client_mismatches), (0, 0));
        let text = render(&r);
        assert!(text.contains("broken connections 0"), "{text}");
        let back: SoakReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn stopping_the_server_breaks_every_connection_with_a_reason() {
        let (addr, stop, h) = server();
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700));
                let t = unix_ms();
                stop.store(true, Ordering::Relaxed);
                t
            })
        };
        let r = run(&spec(addr), |_| {});
        let stopped = stopper.join().unwrap();
        h.join().unwrap();
        assert_eq!(r.established, 6);
        assert_eq!(r.broken.len(), 6, "{r:?}");
        for b in &r.broken {
            assert!(["closed", "reset"].contains(&b.reason.as_str()), "{b:?}");
            assert_eq!(b.backend.as_deref(), Some("b1"));
            // Sent after the run had been going for a while: the stop broke it (the server
            // notices its flag between connections, late on a loaded machine).
            assert!(
                b.t_unix_ms >= stopped.saturating_sub(500),
                "{b:?} {stopped}"
            );
        }
        assert_eq!(r.requests, r.ok + 6);
        assert!(r.new.ok > 0 && !r.new.failed.is_empty(), "{:?}", r.new);
        assert!(
            r.new
                .failed
                .iter()
                .all(|f| f.reason == "connect_refused" && f.t_unix_ms >= stopped - 500),
            "{:?}",
            r.new.failed
        );
        assert!(r.last_response_unix_ms["b1"] < stopped + 200);
    }

    #[test]
    fn nothing_listening_ends_at_once_without_ready() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let mut called = false;
        let r = run(&spec(SocketAddr::from(([127, 0, 0, 1], port))), |_| {
            called = true
        });
        assert!(!called);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(r.established, 0);
        assert_eq!(r.connect_failures.get("connect_refused"), Some(&6));
        assert_eq!(r.new.attempted, 0);
    }
}
