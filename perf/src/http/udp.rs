//! UDP through the lab: `perf udp-backend` and the long-lived UDP flows of `perf http-soak`.
//!
//! Second chance (docs/second-chance.md, issue 14) must keep UDP flows — QUIC-like: long-lived,
//! no SYN, a flow is its 5-tuple — on their backend when their packets reach a MUX without a
//! flow entry. A TCP connection sent to the wrong backend is reset and [`super::soak`] sees it;
//! a UDP datagram sent to the wrong backend is simply answered, by a backend that has none of
//! the flow's state. So the backend names itself in every answer and the client checks the
//! name. This module owns both ends and the UDP part of the soak report:
//!
//! - [`serve`] (`perf udp-backend`): answers every datagram with one datagram
//!   `{"backend": NAME, "client": "IP:PORT", "seq": N}` — `client` is the source the backend
//!   saw, `seq` is copied from the request. A request is `{"seq": N}` (what the soak sends) or
//!   the bare decimal `N` (handy with `nc -u`), surrounding whitespace allowed; anything else
//!   is counted as malformed and not answered. One thread, no per-client state.
//! - `flow`: one soak flow. Its own connected socket (its own ephemeral source port, so a
//!   distinct 5-tuple for the whole run). Setup: a datagram every interval until the first
//!   answer (at most the request timeout; an ICMP port unreachable fails it at once); the first
//!   answering backend is the flow's backend. Then, from the soak's ready time to its end,
//!   `{"seq": N}` every interval on a fixed schedule (flows staggered over one interval, missed
//!   slots skipped), answers matched by `seq` whatever their order.
//! - The flow is **broken** at its first bad event: an answer from another backend
//!   (`backend_changed`: the application would have lost its state) or no answer at all for
//!   `dead` (`silent`), timed by the datagram that met it (the one the other backend answered,
//!   the first one sent after the last answer). Unlike a broken TCP connection the flow keeps
//!   sending to the end, so loss and latency describe the whole run; only the first event is
//!   recorded.
//! - A datagram is **lost** when no answer ever came (by the end of the run plus the timeout
//!   for the last ones), **late** when its answer came after the timeout (answered, not lost),
//!   **slow** when its answer took longer than [`SLOW_MS`] (the first [`MAX_SLOW`] are listed).
//!
//! The flows run beside the soak's TCP connections and are folded into [`UdpReport`]
//! (`SoakReport::udp`); [`super::chaos`] checks them against each round's expectations.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::load::{Latency, percentiles};
use super::soak::{MAX_SLOW, SLOW_MS, unix_ms};

/// Largest datagram read (requests and answers are a few dozen bytes).
const MAX_DATAGRAM: usize = 2048;
/// Unanswered datagrams a flow remembers; older ones are given up (lost, and an answer to one
/// counts as unmatched). 4096 × 100 ms is about 7 minutes of silence.
pub const MAX_OUTSTANDING: usize = 4096;
/// The backend checks its stop flag at least this often.
const POLL: Duration = Duration::from_millis(100);

/// What the backend counted.
#[derive(Debug, Default)]
pub struct UdpServerStats {
    /// Datagrams received.
    pub received: AtomicUsize,
    /// Datagrams answered.
    pub answered: AtomicUsize,
    /// Datagrams that were not a request (not answered).
    pub malformed: AtomicUsize,
}

/// The `seq` of a request: `{"seq": N}` or the bare decimal `N`, whitespace around allowed.
pub fn parse_seq(payload: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Request {
        seq: u64,
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    serde_json::from_str::<Request>(text).ok().map(|r| r.seq)
}

/// The answer to request `seq` from `client`.
pub fn answer(name: &str, client: SocketAddr, seq: u64) -> String {
    serde_json::json!({
        "backend": name,
        "client": client.to_string(),
        "seq": seq,
    })
    .to_string()
}

/// Answers every request on `socket` until `stop` is set (checked every 100 ms).
pub fn serve(
    socket: UdpSocket,
    name: &str,
    stop: &AtomicBool,
    stats: &UdpServerStats,
) -> io::Result<()> {
    socket.set_read_timeout(Some(POLL))?;
    let mut buf = [0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            // Transient (an ICMP error reported late, an interrupted call): keep serving.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        stats.received.fetch_add(1, Ordering::Relaxed);
        let Some(seq) = parse_seq(&buf[..n]) else {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if socket
            .send_to(answer(name, peer, seq).as_bytes(), peer)
            .is_ok()
        {
            stats.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The soak's UDP flows.
#[derive(Clone, Debug)]
pub struct UdpSpec {
    /// Where the flows send (the VIP's UDP service, or a `perf udp-backend`).
    pub target: SocketAddr,
    /// Flows (0: none).
    pub flows: usize,
    /// Between two datagrams of a flow.
    pub interval: Duration,
    /// No answer for this long breaks a flow (`silent`).
    pub dead: Duration,
}

/// A UDP flow's first bad event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpBroken {
    /// The flow's index.
    pub flow: usize,
    /// When the datagram that met the event was sent.
    pub t_unix_ms: u64,
    /// `backend_changed` or `silent`.
    pub reason: String,
    /// The flow's backend (the first that answered it).
    pub backend: String,
    /// `backend_changed`: the backend that answered instead.
    pub new_backend: Option<String>,
    /// The flow's own address (`ip:port`), to find it in a capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
}

/// A datagram answered slower than [`SLOW_MS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpSlow {
    /// The flow's index.
    pub flow: usize,
    /// When the datagram was sent.
    pub t_unix_ms: u64,
    /// How long its answer took.
    pub ms: u64,
    /// Who answered.
    pub backend: String,
}

/// The UDP flows of a soak (`SoakReport::udp`; all zero when there were none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpReport {
    /// `ip:port` the flows sent to (empty: no flows).
    pub target: String,
    /// Flows asked for.
    pub flows: usize,
    /// Flows answered during setup (they have a backend).
    pub established: usize,
    /// The other flows by reason (`no_reply`, `refused`, `socket`); they stopped at setup.
    pub setup_failures: BTreeMap<String, usize>,
    /// Between two datagrams of a flow.
    pub interval_ms: u64,
    /// Silence that breaks a flow.
    pub dead_ms: u64,
    /// Datagrams sent by the established flows, setup included.
    pub sent: usize,
    /// Of which answered (late ones included).
    pub answered: usize,
    /// Of the answered, those answered after the request timeout.
    pub late: usize,
    /// Never answered: `sent − answered`.
    pub lost: usize,
    /// Broken flows, by time.
    pub broken: Vec<UdpBroken>,
    /// Datagrams answered slower than [`SLOW_MS`], by time (the first [`MAX_SLOW`]).
    pub slow: Vec<UdpSlow>,
    /// Answers per backend.
    pub per_backend: BTreeMap<String, usize>,
    /// Answers from another backend than the flow's first.
    pub backend_changed: usize,
    /// Answers whose `client` is not the flow's own address (and, with `expect_client`, that
    /// address).
    pub client_mismatches: usize,
    /// Datagrams received that were not an answer.
    pub malformed: usize,
    /// Answers to no datagram outstanding (duplicates, or given up after [`MAX_OUTSTANDING`]).
    pub unmatched: usize,
    /// From send to answer, answered datagrams.
    pub latency: Latency,
}

/// What one flow saw.
#[derive(Debug, Default)]
pub(super) struct FlowTally {
    setup_failure: Option<&'static str>,
    sent: usize,
    answered: usize,
    late: usize,
    malformed: usize,
    unmatched: usize,
    backend_changed: usize,
    client_mismatches: usize,
    broken: Option<UdpBroken>,
    slow: Vec<UdpSlow>,
    us: Vec<u64>,
    per_backend: BTreeMap<String, usize>,
}

impl FlowTally {
    pub(super) fn failed(reason: &'static str) -> FlowTally {
        FlowTally {
            setup_failure: Some(reason),
            ..FlowTally::default()
        }
    }
}

/// An answer (see [`answer`]).
#[derive(Deserialize)]
struct Answer {
    backend: String,
    client: String,
    seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    at: Instant,
    unix_ms: u64,
}

/// What a wait for an answer ended with.
#[derive(PartialEq, Eq)]
enum Wait {
    Datagram,
    Timeout,
    Refused,
}

struct Flow<'a> {
    index: usize,
    socket: UdpSocket,
    local: Option<SocketAddr>,
    spec: &'a UdpSpec,
    timeout: Duration,
    expect: Option<IpAddr>,
    next_seq: u64,
    outstanding: BTreeMap<u64, Sent>,
    backend: Option<String>,
    /// The first datagram sent since the last answer.
    silence_from: Option<Sent>,
    t: FlowTally,
}

impl Flow<'_> {
    fn send(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg = format!("{{\"seq\":{seq}}}");
        let sent = Sent {
            at: Instant::now(),
            unix_ms: unix_ms(),
        };
        // A pending ICMP error of an earlier datagram is reported by this call and cleared:
        // send again. Any other failure leaves the datagram unanswered (lost).
        if let Err(e) = self.socket.send(msg.as_bytes())
            && e.kind() == ErrorKind::ConnectionRefused
        {
            let _ = self.socket.send(msg.as_bytes());
        }
        self.t.sent += 1;
        self.outstanding.insert(seq, sent);
        if self.outstanding.len() > MAX_OUTSTANDING {
            self.outstanding.pop_first();
        }
        self.silence_from.get_or_insert(sent);
    }

    /// Waits until `until` for one datagram and handles it.
    fn wait(&mut self, until: Instant) -> Wait {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wait::Timeout;
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        let received = self
            .socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| self.socket.recv(&mut buf));
        match received {
            Ok(n) => {
                self.answer(&buf[..n]);
                Wait::Datagram
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Wait::Timeout
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Wait::Refused,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                Wait::Timeout
            }
        }
    }

    fn answer(&mut self, datagram: &[u8]) {
        let Ok(a) = serde_json::from_slice::<Answer>(datagram) else {
            self.t.malformed += 1;
            return;
        };
        let Some(sent) = self.outstanding.remove(&a.seq) else {
            self.t.unmatched += 1;
            return;
        };
        let us = sent.at.elapsed().as_micros() as u64;
        let t = &mut self.t;
        t.answered += 1;
        t.us.push(us);
        if us > self.timeout.as_micros() as u64 {
            t.late += 1;
        }
        if us > SLOW_MS * 1000 && t.slow.len() < MAX_SLOW {
            t.slow.push(UdpSlow {
                flow: self.index,
                t_unix_ms: sent.unix_ms,
                ms: us / 1000,
                backend: a.backend.clone(),
            });
        }
        *t.per_backend.entry(a.backend.clone()).or_default() += 1;
        let seen: Option<SocketAddr> = a.client.parse().ok();
        let client_ok = seen.is_some()
            && seen == self.local
            && self
                .expect
                .is_none_or(|ip| Some(ip) == seen.map(|s| s.ip()));
        if !client_ok {
            t.client_mismatches += 1;
        }
        self.silence_from = None;
        match &self.backend {
            None => self.backend = Some(a.backend),
            Some(b) if *b != a.backend => {
                t.backend_changed += 1;
                if t.broken.is_none() {
                    t.broken = Some(UdpBroken {
                        flow: self.index,
                        t_unix_ms: sent.unix_ms,
                        reason: "backend_changed".into(),
                        backend: b.clone(),
                        new_backend: Some(a.backend),
                        local: self.local.map(|l| l.to_string()),
                    });
                }
            }
            Some(_) => {}
        }
    }

    fn check_silent(&mut self, now: Instant) {
        if self.t.broken.is_some() {
            return;
        }
        if let Some(s) = self.silence_from
            && now.saturating_duration_since(s.at) >= self.spec.dead
        {
            self.t.broken = Some(UdpBroken {
                flow: self.index,
                t_unix_ms: s.unix_ms,
                reason: "silent".into(),
                backend: self.backend.clone().unwrap_or_default(),
                new_backend: None,
                local: self.local.map(|l| l.to_string()),
            });
        }
    }
}

/// UDP flow `index`: setup (until its first answer), `settle(established)`, then, if
/// `wait_start` gives the run's ready and end instants, datagrams on schedule until the end
/// and the answers of the last ones for at most `timeout`.
pub(super) fn flow(
    index: usize,
    spec: &UdpSpec,
    timeout: Duration,
    expect: Option<IpAddr>,
    settle: impl FnOnce(bool),
    wait_start: impl FnOnce() -> Option<(Instant, Instant)>,
) -> FlowTally {
    let any: SocketAddr = if spec.target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(any).and_then(|s| s.connect(spec.target).map(|()| s)) {
        Ok(s) => s,
        Err(_) => {
            settle(false);
            return FlowTally::failed("socket");
        }
    };
    let mut f = Flow {
        index,
        local: socket.local_addr().ok(),
        socket,
        spec,
        timeout,
        expect,
        next_seq: 0,
        outstanding: BTreeMap::new(),
        backend: None,
        silence_from: None,
        t: FlowTally::default(),
    };
    let interval = spec.interval.max(Duration::from_millis(1));
    let give_up = Instant::now() + timeout;
    let mut due = Instant::now();
    let failure = loop {
        if f.backend.is_some() {
            break None;
        }
        let now = Instant::now();
        if now >= give_up {
            break Some("no_reply");
        }
        if now >= due {
            f.send();
            due = now + interval;
        }
        if f.wait(due.min(give_up)) == Wait::Refused {
            break Some("refused");
        }
    };
    settle(failure.is_none());
    if let Some(reason) = failure {
        return FlowTally::failed(reason);
    }
    let Some((ready, end)) = wait_start() else {
        return f.t;
    };
    // Waiting for the other flows and connections is not silence.
    f.silence_from = None;
    let mut due = ready + interval.mul_f64(index as f64 / spec.flows.max(1) as f64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= due {
            f.send();
            due += interval;
            if due <= now {
                due = now + interval;
            }
        }
        f.check_silent(now);
        f.wait(due.min(end));
    }
    // The answers of the last datagrams, each for at most its timeout.
    while let Some((_, newest)) = f.outstanding.last_key_value() {
        let until = newest.at + timeout;
        if Instant::now() >= until {
            break;
        }
        f.wait(until);
    }
    f.t
}

/// Folds the flows' tallies into the report.
pub(super) fn tally(spec: &UdpSpec, flows: Vec<FlowTally>) -> UdpReport {
    let mut r = UdpReport {
        target: spec.target.to_string(),
        flows: spec.flows,
        interval_ms: spec.interval.as_millis() as u64,
        dead_ms: spec.dead.as_millis() as u64,
        ..UdpReport::default()
    };
    let mut us = Vec::new();
    for t in flows {
        if let Some(reason) = t.setup_failure {
            *r.setup_failures.entry(reason.to_string()).or_default() += 1;
            continue;
        }
        r.established += 1;
        r.sent += t.sent;
        r.answered += t.answered;
        r.late += t.late;
        r.malformed += t.malformed;
        r.unmatched += t.unmatched;
        r.backend_changed += t.backend_changed;
        r.client_mismatches += t.client_mismatches;
        r.broken.extend(t.broken);
        r.slow.extend(t.slow);
        us.extend(t.us);
        for (b, n) in t.per_backend {
            *r.per_backend.entry(b).or_default() += n;
        }
    }
    r.lost = r.sent - r.answered;
    r.broken.sort_by_key(|b| (b.t_unix_ms, b.flow));
    r.slow.sort_by_key(|s| (s.t_unix_ms, s.flow));
    r.slow.truncate(MAX_SLOW);
    r.latency = percentiles(&mut us);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::soak::{SoakReport, SoakSpec, render, run};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A `perf udp-backend` on a loopback port, stopped when dropped.
    struct Backend {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        stats: Arc<UdpServerStats>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Backend {
        fn start(name: &str) -> Backend {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stats = Arc::new(UdpServerStats::default());
            let (s, st, n) = (Arc::clone(&stop), Arc::clone(&stats), name.to_string());
            let thread = std::thread::spawn(move || serve(socket, &n, &s, &st).unwrap());
            Backend {
                addr,
                stop,
                stats,
                thread: Some(thread),
            }
        }

        fn stop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// A UDP relay standing in for the MUX: each client gets its own upstream socket (like a
    /// NAT), and every datagram goes to the backend `target` currently points at.
    struct Relay {
        addr: SocketAddr,
        target: Arc<Mutex<SocketAddr>>,
        stop: Arc<AtomicBool>,
    }

    impl Relay {
        fn start(to: SocketAddr) -> Relay {
            let front = UdpSocket::bind("127.0.0.1:0").unwrap();
            front.set_read_timeout(Some(POLL)).unwrap();
            let addr = front.local_addr().unwrap();
            let target = Arc::new(Mutex::new(to));
            let stop = Arc::new(AtomicBool::new(false));
            let (t, s) = (Arc::clone(&target), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut up: HashMap<SocketAddr, UdpSocket> = HashMap::new();
                let mut buf = [0u8; MAX_DATAGRAM];
                while !s.load(Ordering::Relaxed) {
                    let Ok((n, client)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    let sock = up.entry(client).or_insert_with(|| {
                        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                        sock.set_read_timeout(Some(POLL)).unwrap();
                        let (back, front, s) = (
                            sock.try_clone().unwrap(),
                            front.try_clone().unwrap(),
                            s.clone(),
                        );
                        std::thread::spawn(move || {
                            let mut buf = [0u8; MAX_DATAGRAM];
                            while !s.load(Ordering::Relaxed) {
                                if let Ok(n) = back.recv(&mut buf) {
                                    let _ = front.send_to(&buf[..n], client);
                                }
                            }
                        });
                        sock
                    });
                    let to = *t.lock().unwrap();
                    let _ = sock.send_to(&buf[..n], to);
                }
            });
            Relay { addr, target, stop }
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// UDP flows only (no TCP connection), generous timeouts: nothing here races the clock
    /// except what a test means to time out.
    fn spec(target: SocketAddr, flows: usize, dead_ms: u64) -> SoakSpec {
        SoakSpec {
            target: "127.0.0.1:9".parse().unwrap(),
            connections: 0,
            interval: Duration::from_millis(50),
            duration: Duration::from_millis(1500),
            new_per_second: 0.0,
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            expect_client: Some("127.0.0.1".parse().unwrap()),
            udp: Some(UdpSpec {
                target,
                flows,
                interval: Duration::from_millis(50),
                dead: Duration::from_millis(dead_ms),
            }),
        }
    }

    #[test]
    fn requests_are_json_or_a_bare_number() {
        assert_eq!(parse_seq(b"{\"seq\":17}"), Some(17));
        assert_eq!(parse_seq(b" { \"seq\": 3, \"x\": 1 }\n"), Some(3));
        assert_eq!(parse_seq(b"42\n"), Some(42));
        for bad in [&b""[..], b"-1", b"{\"seq\":\"1\"}", b"{}", b"\xff"] {
            assert_eq!(parse_seq(bad), None, "{bad:?}");
        }
        let a: serde_json::Value =
            serde_json::from_str(&answer("b1", "10.0.0.1:5000".parse().unwrap(), 9)).unwrap();
        assert_eq!(
            a,
            serde_json::json!({"backend": "b1", "client": "10.0.0.1:5000", "seq": 9})
        );
    }

    #[test]
    fn the_backend_answers_requests_and_ignores_garbage() {
        let b = Backend::start("u1");
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(b.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.send(b"not a request").unwrap();
        c.send(b"7").unwrap();
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = c.recv(&mut buf).unwrap();
        let a: Answer = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!((a.backend.as_str(), a.seq), ("u1", 7));
        assert_eq!(a.client, c.local_addr().unwrap().to_string());
        // The backend counts its answer after sending it: wait for the count, not the reply.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while b.stats.answered.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b.stats.received.load(Ordering::Relaxed), 2);
        assert_eq!(b.stats.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(b.stats.answered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn quiet_flows_are_all_answered_by_their_backend() {
        let b = Backend::start("u1");
        // Two TCP connections beside the flows: one setup, one ready, one end for all.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let http = listener.local_addr().unwrap();
        let http_stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&http_stop);
            std::thread::spawn(move || {
                let stats = Arc::new(crate::http::backend::ServerStats::default());
                crate::http::backend::serve(listener, "h1".into(), None, stop, stats).unwrap();
            })
        };
        let mut ready = None;
        let s = SoakSpec {
            target: http,
            connections: 2,
            ..spec(b.addr, 4, 3000)
        };
        let r = run(&s, |t| ready = Some(t));
        http_stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert_eq!(r.established, 2);
        assert!(r.broken.is_empty() && r.ok == r.requests, "{r:?}");
        let u = &r.udp;
        assert_eq!(ready, Some(r.ready_unix_ms));
        assert_eq!((u.flows, u.established), (4, 4), "{u:?}");
        assert!(u.broken.is_empty(), "{:?}", u.broken);
        assert_eq!((u.lost, u.late, u.unmatched, u.malformed), (0, 0, 0, 0));
        assert_eq!(u.answered, u.sent);
        // 1.5 s at one per 50 ms: ~30 per flow (fewer if the machine is very busy).
        assert!(u.sent >= 4 * 10, "{}", u.sent);
        assert_eq!(u.per_backend.get("u1"), Some(&u.answered));
        assert_eq!((u.backend_changed, u.client_mismatches), (0, 0));
        assert_eq!(u.latency.count, u.answered);
        assert_eq!(b.stats.answered.load(Ordering::Relaxed), u.answered);
        let text = render(&r);
        assert!(text.contains("udp flows    4 of 4 established"), "{text}");
        assert!(text.contains("broken 0"), "{text}");
        let back: SoakReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_flow_answered_by_another_backend_is_broken() {
        let (b1, b2) = (Backend::start("u1"), Backend::start("u2"));
        let relay = Relay::start(b1.addr);
        let r = run(&spec(relay.addr, 3, 3000), |_| {
            // Every flow has its first answer (from u1) by now: the next comes from u2.
            *relay.target.lock().unwrap() = b2.addr;
        });
        let u = &r.udp;
        assert_eq!(u.established, 3, "{u:?}");
        assert_eq!(u.broken.len(), 3, "{u:?}");
        for b in &u.broken {
            assert_eq!(b.reason, "backend_changed");
            assert_eq!(
                (b.backend.as_str(), b.new_backend.as_deref()),
                ("u1", Some("u2"))
            );
            assert!(b.t_unix_ms >= r.ready_unix_ms, "{b:?}");
        }
        assert!(u.per_backend["u2"] > 0 && u.backend_changed > 0);
        assert_eq!(u.lost, 0);
        // The flows keep going after the break: u2 answers the rest.
        assert_eq!(u.answered, u.sent);
    }

    #[test]
    fn a_backend_gone_silent_breaks_its_flows_after_the_dead_time() {
        let mut b = Backend::start("u1");
        let s = SoakSpec {
            // The last datagrams are waited for this long after the end.
            timeout: Duration::from_millis(800),
            ..spec(b.addr, 2, 400)
        };
        let r = run(&s, |_| b.stop());
        let u = &r.udp;
        assert_eq!(u.established, 2, "{u:?}");
        assert_eq!(u.broken.len(), 2, "{u:?}");
        for x in &u.broken {
            assert_eq!(x.reason, "silent");
            assert_eq!((x.backend.as_str(), x.new_backend.as_deref()), ("u1", None));
            assert!(x.t_unix_ms >= r.ready_unix_ms, "{x:?}");
        }
        assert!(u.lost > 0 && u.answered + u.lost == u.sent, "{u:?}");
    }

    #[test]
    fn nothing_listening_fails_the_flows_at_setup() {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let mut called = false;
        let r = run(
            &spec(SocketAddr::from(([127, 0, 0, 1], port)), 2, 3000),
            |_| called = true,
        );
        assert!(!called, "nothing established, no ready");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(r.udp.established, 0);
        assert_eq!(r.udp.setup_failures.get("refused"), Some(&2), "{:?}", r.udp);
        assert_eq!(r.udp.sent, 0);
    }

    #[test]
    fn a_report_without_udp_reads_as_zero_flows() {
        let old = r#"{"target":"192.0.2.10:80","connections":2,"established":2,
            "requests":10,"ok":10,"broken":[],"new":{"attempted":0}}"#;
        let r: SoakReport = serde_json::from_str(old).unwrap();
        assert_eq!(r.udp, UdpReport::default());
        assert_eq!(r.established, 2);
        assert!(!render(&r).contains("udp"));
        let partial: UdpReport = serde_json::from_str(
            r#"{"flows":3,"broken":[{"flow":1,"t_unix_ms":5,"reason":"silent"}]}"#,
        )
        .unwrap();
        assert_eq!(partial.broken[0].backend, "");
        assert_eq!(partial.broken[0].new_backend, None);
    }
}
