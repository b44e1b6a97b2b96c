//! The lab's imbalance round: `perf http-imbalance` (one phase of load) and `perf
//! imbalance-summary` (both phases side by side, with the agents' and Prometheus's figures).
//!
//! # The load
//!
//! A flow hash balances connection *counts*; what it cannot see is that some connections carry
//! far more bytes than others. A phase holds `heavy` downloads at all times (each `GET
//! /stream?bytes=B&rate=R` from `perf http-backend`: B bytes paced at R bytes/s; when one ends
//! the next starts) plus `light_per_second` new one-request connections. The heavy downloads
//! leave from client ports whose 5-tuple the *static* Maglev table of the phase's VIP (the MUX
//! config given, compiled as `mux trace --config` does) sends to `heavy_backend`: the skew a
//! hash produces by chance when a few heavy clients happen to share a backend, made certain so
//! that one run shows it. Under load-aware weights the MUX's table changes, and the same
//! 5-tuples (new ones, never reused) land where the new table puts them: only new flows move,
//! established downloads keep their backend.
//!
//! While it runs, a sampler reads every agent's `/v1/backends` once a second and keeps the
//! phase VIP's per-backend `load` (bytes per second both ways, active connections). The report
//! (JSON) holds per second the requests answered and failed, and the samples.
//!
//! # The summary
//!
//! [`summarize`] reads `RESULTS/<phase>/imbalance.json` for the phases `static` and
//! `load-aware`, each with the MUXes' `/v1/status` at the end of the phase (`status-*.json`)
//! and Prometheus's answers (`prom-*.json`, the recording rules' values at the end of the
//! phase), averages the agents' samples over the last `measure` seconds of each phase (the
//! window Prometheus's `rate(...[1m])` covers at that moment, for the default 60 s) and gives
//! max/avg per phase; for steadiness, also the max/avg of each sample on its own (p50 and p90
//! over the window) and how far apart the MUXes' factors ended. [`render_text`] prints it; the timeline is
//! [`super::timeline::render_imbalance`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::read_head;

/// What one phase sends.
#[derive(Clone, Debug)]
pub struct ImbalanceSpec {
    /// The phase's name (`static`, `load-aware`).
    pub phase: String,
    /// The VIP and port.
    pub target: SocketAddr,
    /// The client's own address (what the MUX hashes as the source).
    pub client: IpAddr,
    /// A MUX configuration with the phase's VIP: its static table picks the heavy ports.
    pub config: PathBuf,
    /// The backend the heavy downloads' ports hash to under the static table.
    pub heavy_backend: IpAddr,
    /// Client ports the heavy downloads may use (first, last).
    pub heavy_ports: (u16, u16),
    /// Heavy downloads held at once.
    pub heavy: usize,
    /// Bytes per heavy download.
    pub heavy_bytes: u64,
    /// Bytes per second each heavy download is paced at.
    pub heavy_rate: u64,
    /// New light connections per second.
    pub light_per_second: f64,
    /// How long the phase sends.
    pub duration: Duration,
    /// Host agents' admin endpoints (`/v1/backends`).
    pub agents: Vec<SocketAddr>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

/// One second of the phase, from the client's side.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    /// Requests answered in full (light answers and completed downloads).
    pub ok: u64,
    /// Requests that failed (connect, read, short body).
    pub failed: u64,
    /// Body bytes received per backend.
    pub bytes: BTreeMap<String, u64>,
}

/// A backend's load as its agent reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendSample {
    /// Bytes per second, both directions.
    pub bytes_per_s: f64,
    /// Active connections.
    pub active_connections: u64,
}

/// One read of every agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentSample {
    /// When.
    pub t_unix_ms: u64,
    /// Per backend (DIP) of the phase's VIP.
    pub backends: BTreeMap<String, BackendSample>,
}

/// Connections of one kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Kind {
    /// Started.
    pub started: u64,
    /// Answered in full.
    pub ok: u64,
    /// Failed, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Answered, per backend.
    pub per_backend: BTreeMap<String, u64>,
}

/// The report of one phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    /// The phase's name.
    pub phase: String,
    /// The VIP and port.
    pub target: String,
    /// The backend the heavy ports hash to under the static table.
    pub heavy_backend: String,
    /// How many client ports of the range do.
    pub heavy_ports_available: usize,
    /// Heavy downloads held at once, their size and pace.
    pub heavy_at_once: usize,
    /// Bytes per heavy download.
    pub heavy_bytes: u64,
    /// Pace of each heavy download.
    pub heavy_rate: u64,
    /// New light connections per second.
    pub light_per_second: f64,
    /// When the phase started and ended.
    pub started_unix_ms: u64,
    /// See `started_unix_ms`.
    pub ended_unix_ms: u64,
    /// Per second from the start.
    pub seconds: Vec<Second>,
    /// The agents' samples.
    pub samples: Vec<AgentSample>,
    /// The heavy downloads.
    pub heavy: Kind,
    /// The light connections.
    pub light: Kind,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The client ports in `spec.heavy_ports` whose flow the static table of the VIP in
/// `spec.config` sends to `spec.heavy_backend`.
pub fn heavy_ports(spec: &ImbalanceSpec) -> Result<Vec<u16>, String> {
    use mux::control::trace;
    let (snap, now) = trace::offline_snapshot(&spec.config, None)
        .map_err(|e| format!("{}: {e}", spec.config.display()))?;
    let mut out = Vec::new();
    for port in spec.heavy_ports.0..=spec.heavy_ports.1 {
        let q = trace::FlowQuery {
            protocol: 6,
            src: SocketAddr::new(spec.client, port),
            dst: spec.target,
        };
        let e = trace::explain(&snap, &q, now);
        if e.vip.is_none() {
            return Err(format!(
                "{} has no VIP {} (tcp)",
                spec.config.display(),
                spec.target
            ));
        }
        if e.current.is_some_and(|b| b.address == spec.heavy_backend) {
            out.push(port);
        }
    }
    Ok(out)
}

struct Shared {
    start: Instant,
    seconds: Mutex<Vec<Second>>,
    heavy: Mutex<Kind>,
    light: Mutex<Kind>,
}

impl Shared {
    fn second(&self, f: impl FnOnce(&mut Second)) {
        let i = self.start.elapsed().as_secs() as usize;
        let mut s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() <= i {
            s.resize(i + 1, Second::default());
        }
        f(&mut s[i]);
    }
    fn outcome(&self, heavy: bool, result: Result<String, String>) {
        let kind = if heavy { &self.heavy } else { &self.light };
        let mut k = kind.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(backend) => {
                k.ok += 1;
                *k.per_backend.entry(backend).or_default() += 1;
                drop(k);
                self.second(|s| s.ok += 1);
            }
            Err(reason) => {
                *k.failed.entry(reason).or_default() += 1;
                drop(k);
                self.second(|s| s.failed += 1);
            }
        }
    }
}

/// A TCP connection to `to` from `local` (port 0: any), within `timeout`.
fn connect_from(
    local: Option<SocketAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let Some(local) = local else {
        return TcpStream::connect_timeout(&to, timeout).map_err(|e| reason("connect", &e));
    };
    let (SocketAddr::V4(l), SocketAddr::V4(t)) = (local, to) else {
        return Err("connect: IPv4 only".into());
    };
    mux_ports::sys::tcp_connect_from(l, t, timeout).map_err(|e| {
        // Taken ports fail at bind: the caller tries the next one.
        if e.kind() == std::io::ErrorKind::AddrInUse {
            "bind_address_in_use".to_string()
        } else {
            reason("connect", &e)
        }
    })
}

fn reason(what: &str, e: &std::io::Error) -> String {
    let kind = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "reset".to_string(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout".to_string(),
        std::io::ErrorKind::AddrInUse => "address_in_use".to_string(),
        std::io::ErrorKind::UnexpectedEof => "eof".to_string(),
        k => format!("{k:?}").to_lowercase(),
    };
    format!("{what}_{kind}")
}

/// One request on a new connection: returns the backend that answered. `count` gets the body
/// bytes as they arrive (backend, bytes).
fn request(
    local: Option<SocketAddr>,
    spec: &ImbalanceSpec,
    path: &str,
    deadline: Instant,
    mut count: impl FnMut(&str, u64),
) -> Result<String, String> {
    let conn = connect_from(local, spec.target, spec.timeout)?;
    conn.set_read_timeout(Some(spec.timeout))
        .map_err(|e| reason("read", &e))?;
    conn.set_write_timeout(Some(spec.timeout))
        .map_err(|e| reason("write", &e))?;
    let mut w = conn.try_clone().map_err(|e| reason("clone", &e))?;
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        spec.target
    )
    .map_err(|e| reason("write", &e))?;
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    let head = read_head(&mut r)
        .map_err(|e| reason("read", &e))?
        .ok_or("read_eof")?;
    if !head.first_line.contains(" 200 ") {
        return Err("status".into());
    }
    let len = head.content_length.ok_or("no_length")? as u64;
    let mut first = String::new();
    r.read_line(&mut first).map_err(|e| reason("read", &e))?;
    let v: serde_json::Value = serde_json::from_str(first.trim()).map_err(|_| "body")?;
    let backend = v
        .get("backend")
        .and_then(|b| b.as_str())
        .ok_or("body")?
        .to_string();
    let mut got = first.len() as u64;
    count(&backend, got);
    let mut buf = vec![0u8; 64 * 1024];
    while got < len {
        if Instant::now() >= deadline {
            // The phase is over: the download is cut, neither answered nor failed.
            return Err(PHASE_END.into());
        }
        let want = ((len - got) as usize).min(buf.len());
        let n = r.read(&mut buf[..want]).map_err(|e| reason("read", &e))?;
        if n == 0 {
            return Err("read_short".into());
        }
        got += n as u64;
        count(&backend, n as u64);
    }
    Ok(backend)
}

/// What [`request`] returns for a download the end of the phase cut.
const PHASE_END: &str = "phase_end";

/// GETs `path` from `agent`: the body.
fn http_get(agent: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut c = TcpStream::connect_timeout(&agent, timeout).map_err(|e| reason("connect", &e))?;
    c.set_read_timeout(Some(timeout))
        .map_err(|e| reason("read", &e))?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {agent}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| reason("write", &e))?;
    let mut text = String::new();
    c.read_to_string(&mut text)
        .map_err(|e| reason("read", &e))?;
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| "no body".into())
}

/// The phase VIP's per-backend load in an agent's `/v1/backends` document.
pub fn loads_in(doc: &serde_json::Value, target: SocketAddr) -> BTreeMap<String, BackendSample> {
    let mut out = BTreeMap::new();
    for b in doc["backends"].as_array().into_iter().flatten() {
        let vip = b["vip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
        if vip != Some(target.ip())
            || b["port"].as_u64() != Some(u64::from(target.port()))
            || b["protocol"].as_str() != Some("tcp")
        {
            continue;
        }
        let (Some(dip), Some(load)) = (b["dip"].as_str(), b.get("load")) else {
            continue;
        };
        if load.is_null() {
            continue;
        }
        let f = |k: &str| load[k].as_f64().unwrap_or(0.0);
        out.insert(
            dip.to_string(),
            BackendSample {
                bytes_per_s: f("bytes_in_per_s") + f("bytes_out_per_s"),
                active_connections: load["active_connections"].as_u64().unwrap_or(0),
            },
        );
    }
    out
}

/// Runs one phase.
pub fn run(spec: &ImbalanceSpec) -> Result<PhaseReport, String> {
    let ports = heavy_ports(spec)?;
    if ports.len() < spec.heavy * 4 {
        return Err(format!(
            "only {} ports of {}..={} hash to {}",
            ports.len(),
            spec.heavy_ports.0,
            spec.heavy_ports.1,
            spec.heavy_backend
        ));
    }
    let shared = Arc::new(Shared {
        start: Instant::now(),
        seconds: Mutex::new(Vec::new()),
        heavy: Mutex::new(Kind::default()),
        light: Mutex::new(Kind::default()),
    });
    let started_unix_ms = unix_ms();
    let deadline = shared.start + spec.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let spec = Arc::new(spec.clone());
    let ports = Arc::new(ports);
    let next_port = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();

    // The agents' load, once a second.
    {
        let (spec, stop, samples) = (Arc::clone(&spec), Arc::clone(&stop), Arc::clone(&samples));
        threads.push(std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let mut sample = AgentSample {
                    t_unix_ms: unix_ms(),
                    ..AgentSample::default()
                };
                for a in &spec.agents {
                    if let Ok(body) = http_get(*a, "/v1/backends", Duration::from_millis(500))
                        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body)
                    {
                        sample.backends.extend(loads_in(&doc, spec.target));
                    }
                }
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sample);
                next += Duration::from_secs(1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
    }

    // Heavy downloads: `heavy` slots, each starting the next download when one ends.
    for slot in 0..spec.heavy {
        let (spec, shared, ports, next_port) = (
            Arc::clone(&spec),
            Arc::clone(&shared),
            Arc::clone(&ports),
            Arc::clone(&next_port),
        );
        threads.push(std::thread::spawn(move || {
            // Staggered starts, so downloads do not all end together.
            let pause = Duration::from_secs_f64(
                spec.heavy_bytes as f64 / spec.heavy_rate.max(1) as f64 * slot as f64
                    / spec.heavy as f64,
            );
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            while Instant::now() < deadline {
                let i = next_port.fetch_add(1, Ordering::Relaxed);
                let Some(port) = ports.get(i % ports.len()) else {
                    return;
                };
                let local = SocketAddr::new(spec.client, *port);
                let path = format!(
                    "/stream?bytes={}&rate={}",
                    spec.heavy_bytes, spec.heavy_rate
                );
                shared
                    .heavy
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .started += 1;
                let result = request(Some(local), &spec, &path, deadline, |b, n| {
                    shared.second(|s| *s.bytes.entry(b.to_string()).or_default() += n)
                });
                if result.as_ref().is_err_and(|e| e.starts_with("bind_")) {
                    // The port is taken (an ephemeral port of a light connection): not a
                    // request, try the next one.
                    shared
                        .heavy
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .started -= 1;
                    continue;
                }
                if result.as_ref().is_err_and(|e| e == PHASE_END) {
                    shared
                        .heavy
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .started -= 1;
                    break;
                }
                let failed = result.is_err();
                shared.outcome(true, result);
                if failed {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }

    // Light connections: one request each, at a steady rate.
    {
        let (spec, shared) = (Arc::clone(&spec), Arc::clone(&shared));
        threads.push(std::thread::spawn(move || {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let gap = Duration::from_secs_f64(1.0 / spec.light_per_second.max(0.01));
            let mut next = Instant::now();
            let mut workers = Vec::new();
            while spec.light_per_second > 0.0 && Instant::now() < deadline {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += gap;
                shared
                    .light
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .started += 1;
                if in_flight.load(Ordering::Relaxed) >= 256 {
                    shared.outcome(false, Err("too_many_in_flight".into()));
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (spec, shared, in_flight) = (
                    Arc::clone(&spec),
                    Arc::clone(&shared),
                    Arc::clone(&in_flight),
                );
                workers.push(std::thread::spawn(move || {
                    let far = Instant::now() + Duration::from_secs(3600);
                    let result = request(None, &spec, "/", far, |b, n| {
                        shared.second(|s| *s.bytes.entry(b.to_string()).or_default() += n)
                    });
                    shared.outcome(false, result);
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }));
                workers.retain(|w| !w.is_finished());
            }
            for w in workers {
                let _ = w.join();
            }
        }));
    }

    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    // The load ends here (downloads still running are cut; light requests sent before the
    // deadline may still be answered): the summary's window ends at this moment.
    let ended_unix_ms = unix_ms();
    let n = threads.len();
    // The sampler is the first thread: keep it sampling until the loads have ended.
    let mut it = threads.into_iter();
    let sampler = it.next();
    for t in it.take(n - 1) {
        let _ = t.join();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    let take = |m: &Mutex<Kind>| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(PhaseReport {
        phase: spec.phase.clone(),
        target: spec.target.to_string(),
        heavy_backend: spec.heavy_backend.to_string(),
        heavy_ports_available: ports.len(),
        heavy_at_once: spec.heavy,
        heavy_bytes: spec.heavy_bytes,
        heavy_rate: spec.heavy_rate,
        light_per_second: spec.light_per_second,
        started_unix_ms,
        ended_unix_ms,
        seconds: std::mem::take(&mut *shared.seconds.lock().unwrap_or_else(|e| e.into_inner())),
        samples: std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner())),
        heavy: take(&shared.heavy),
        light: take(&shared.light),
    })
}

// ---------------------------------------------------------------------------------------------
// The summary

/// The phases a results directory holds, in order.
pub const PHASES: [&str; 2] = ["static", "load-aware"];

/// Per MUX (by name): per backend (address, effective Maglev weight, load-aware factor).
pub type MuxWeights = BTreeMap<String, Vec<(String, u64, Option<f64>)>>;

/// One phase, evaluated.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseOutcome {
    /// The phase's report.
    pub report: PhaseReport,
    /// The window averaged: its start (the end is the phase's end).
    pub window_from_unix_ms: u64,
    /// Agent samples in the window.
    pub window_samples: usize,
    /// Per backend: mean bytes/s and active connections over the window.
    pub backends: BTreeMap<String, BackendSample>,
    /// max/avg of bytes/s over the backends.
    pub bytes_max_over_avg: Option<f64>,
    /// max/avg of active connections over the backends.
    pub connections_max_over_avg: Option<f64>,
    /// Steadiness: max/avg of bytes/s over the backends in each sample of the window (the
    /// instantaneous balance), its median and 90th percentile.
    pub bytes_instant_max_over_avg: Option<(f64, f64)>,
    /// Per backend, the largest ratio between two MUXes' load-aware factors at the end of the
    /// phase (1 = they agree); the largest first. Empty without factors from two MUXes.
    pub factor_spread: Vec<(String, f64)>,
    /// Prometheus's answers at the end of the phase: (query, value), for the phase's port.
    pub prometheus: Vec<(String, Option<f64>)>,
    /// Per MUX: per backend (address, Maglev weight, load-aware factor).
    pub weights: MuxWeights,
}

/// Both phases and the verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// In [`PHASES`] order; a phase without a report is absent.
    pub phases: Vec<PhaseOutcome>,
    /// Seconds averaged at the end of each phase.
    pub measure_s: u64,
    /// Checks: (passed, text).
    pub checks: Vec<(bool, String)>,
}

impl Outcome {
    /// Whether every check passed (and there was one).
    pub fn all_passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.0)
    }
}

/// max/avg of `values` (`None` when empty or the average is 0).
pub fn max_over_avg(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    (avg > 0.0).then(|| max / avg)
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of `values` (`None` when empty).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Per backend, the largest ratio between two MUXes' load-aware factors (see
/// [`PhaseOutcome::factor_spread`]).
pub fn factor_spread(weights: &MuxWeights) -> Vec<(String, f64)> {
    let mut per_backend: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ws in weights.values() {
        for (a, _, f) in ws {
            if let Some(f) = f.filter(|f| *f > 0.0) {
                per_backend.entry(a).or_default().push(f);
            }
        }
    }
    let mut out: Vec<(String, f64)> = per_backend
        .into_iter()
        .filter(|(_, fs)| fs.len() >= 2)
        .map(|(a, fs)| {
            let max = fs.iter().copied().fold(f64::MIN, f64::max);
            let min = fs.iter().copied().fold(f64::MAX, f64::min);
            (a.to_string(), max / min)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Averages `report`'s samples over the `measure` seconds before its end.
pub fn evaluate_phase(report: PhaseReport, measure_s: u64) -> PhaseOutcome {
    let from = report.ended_unix_ms.saturating_sub(measure_s * 1000);
    let window: Vec<&AgentSample> = report
        .samples
        .iter()
        .filter(|s| s.t_unix_ms >= from && s.t_unix_ms <= report.ended_unix_ms)
        .collect();
    let mut sums: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for s in &window {
        for (dip, b) in &s.backends {
            let e = sums.entry(dip.clone()).or_default();
            e.0 += b.bytes_per_s;
            e.1 += b.active_connections as f64;
            e.2 += 1;
        }
    }
    let backends: BTreeMap<String, BackendSample> = sums
        .into_iter()
        .map(|(dip, (bytes, conns, n))| {
            let n = n.max(1) as f64;
            (
                dip,
                BackendSample {
                    bytes_per_s: bytes / n,
                    active_connections: (conns / n).round() as u64,
                },
            )
        })
        .collect();
    // The balance of each sample on its own (samples missing a backend the window saw are
    // left out: a missing report is not an idle backend).
    let instant: Vec<f64> = window
        .iter()
        .filter(|s| s.backends.len() == backends.len() && backends.len() >= 2)
        .filter_map(|s| {
            let v: Vec<f64> = s.backends.values().map(|b| b.bytes_per_s).collect();
            max_over_avg(&v)
        })
        .collect();
    let bytes_instant_max_over_avg = quantile(&instant, 0.5).zip(quantile(&instant, 0.9));
    let bytes: Vec<f64> = backends.values().map(|b| b.bytes_per_s).collect();
    let conns: Vec<f64> = backends
        .values()
        .map(|b| b.active_connections as f64)
        .collect();
    PhaseOutcome {
        window_from_unix_ms: from,
        window_samples: window.len(),
        bytes_max_over_avg: max_over_avg(&bytes),
        connections_max_over_avg: max_over_avg(&conns),
        bytes_instant_max_over_avg,
        backends,
        report,
        ..PhaseOutcome::default()
    }
}

/// The value Prometheus's instant-query answer `doc` gives for the series whose `port` label
/// is `port` (the recording rules keep `vip`, `port`, `protocol`).
pub fn prometheus_value(doc: &serde_json::Value, port: u16) -> Option<f64> {
    doc["data"]["result"]
        .as_array()?
        .iter()
        .find(|r| r["metric"]["port"].as_str() == Some(&port.to_string()))
        .and_then(|r| r["value"][1].as_str())
        .and_then(|v| v.parse().ok())
}

/// Per backend of `vip`: (address, effective Maglev weight, load-aware factor) from a MUX's
/// status: `vips[].backends[].weight` is the configured weight; with load-aware factors the
/// table is built from `load_weights::effective_weight` of it.
pub fn weights_in(status: &serde_json::Value, vip: &str) -> Vec<(String, u64, Option<f64>)> {
    let factors: BTreeMap<String, f64> = status["health"]["load_aware_weights"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["vip"].as_str() == Some(vip))
        .filter_map(|w| Some((w["backend"].as_str()?.to_string(), w["factor"].as_f64()?)))
        .collect();
    let scaled = factors.values().any(|f| (f - 1.0).abs() > 1e-9);
    status["vips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"].as_str() == Some(vip))
        .flat_map(|v| v["backends"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| {
            let a = b["address"].as_str()?.to_string();
            let f = factors.get(&a).copied();
            let w = u32::try_from(b["weight"].as_u64()?).ok()?;
            let effective =
                mux::control::load_weights::effective_weight(w, f.unwrap_or(1.0), scaled);
            Some((a, u64::from(effective), f))
        })
        .collect()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Evaluates `results/static` and `results/load-aware` (see the module docs). `vips` names the
/// MUX VIP of each phase (for the weights in `status-*.json`).
pub fn summarize(results: &Path, measure_s: u64, vips: [&str; 2]) -> Result<Outcome, String> {
    let mut out = Outcome {
        measure_s,
        ..Outcome::default()
    };
    for (phase, vip) in PHASES.iter().zip(vips) {
        let dir = results.join(phase);
        let path = dir.join("imbalance.json");
        if !path.exists() {
            continue;
        }
        let report: PhaseReport = read_json(&path)?;
        let port = report
            .target
            .parse::<SocketAddr>()
            .map(|a| a.port())
            .map_err(|e| format!("{}: target: {e}", path.display()))?;
        let mut p = evaluate_phase(report, measure_s);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for f in entries {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(query) = name
                .strip_prefix("prom-")
                .and_then(|n| n.strip_suffix(".json"))
            {
                let doc: serde_json::Value = read_json(&f)?;
                p.prometheus
                    .push((query.to_string(), prometheus_value(&doc, port)));
            } else if let Some(mux) = name
                .strip_prefix("status-")
                .and_then(|n| n.strip_suffix(".json"))
            {
                let doc: serde_json::Value = read_json(&f)?;
                p.weights.insert(mux.to_string(), weights_in(&doc, vip));
            }
        }
        p.factor_spread = factor_spread(&p.weights);
        out.phases.push(p);
    }
    if out.phases.is_empty() {
        return Err(format!(
            "{}: no static/imbalance.json or load-aware/imbalance.json",
            results.display()
        ));
    }
    for p in &out.phases {
        let failed: u64 = p.report.light.failed.values().sum::<u64>()
            + p.report.heavy.failed.values().sum::<u64>();
        let total = p.report.light.ok + p.report.heavy.ok + failed;
        out.checks.push((
            failed * 100 <= total,
            format!(
                "{}: requests answered ({} of {}, {} failed: at most 1 % may fail)",
                p.report.phase,
                total - failed,
                total,
                failed
            ),
        ));
        out.checks.push((
            p.window_samples * 2 >= measure_s as usize,
            format!(
                "{}: the agents' load sampled ({} samples in the last {measure_s} s)",
                p.report.phase, p.window_samples
            ),
        ));
    }
    if let [s, a] = &out.phases[..] {
        match (s.bytes_max_over_avg, a.bytes_max_over_avg) {
            (Some(x), Some(y)) => out.checks.push((
                y < x,
                format!(
                    "load-aware weights lower max/avg of bytes/s: {x:.2} static → {y:.2} load-aware"
                ),
            )),
            _ => out
                .checks
                .push((false, "max/avg of bytes/s: no load in a phase".into())),
        }
    }
    Ok(out)
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

fn ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The summary as text.
pub fn render_text(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let Some(first) = o.phases.first() else {
        return s;
    };
    let r = &first.report;
    let _ = writeln!(
        s,
        "Imbalance round — {} heavy downloads at once ({} MB each at {} each; client ports static \
         Maglev sends to {}), plus {} new light connections/s",
        r.heavy_at_once,
        r.heavy_bytes / 1_000_000,
        mb(r.heavy_rate as f64),
        r.heavy_backend,
        r.light_per_second
    );
    let _ = writeln!(
        s,
        "  per backend, as the agents report it (/v1/backends load), mean of the last {} s of each phase",
        o.measure_s
    );
    let mut header = format!("  {:<11}", "backend");
    for p in &o.phases {
        let _ = write!(
            header,
            " | {:<42}",
            format!("{} ({})", p.report.phase, p.report.target)
        );
    }
    let _ = writeln!(s, "{header}");
    let mut sub = format!("  {:<11}", "");
    for _ in &o.phases {
        let _ = write!(
            sub,
            " | {:>12} {:>6} {:>6} {:>6} {:>8}",
            "bytes/s", "conns", "heavy", "light", "weight"
        );
    }
    let _ = writeln!(s, "{sub}");
    let mut dips: Vec<&String> = o.phases.iter().flat_map(|p| p.backends.keys()).collect();
    dips.sort();
    dips.dedup();
    for dip in dips {
        let mut line = format!("  {dip:<11}");
        for p in &o.phases {
            let b = p.backends.get(dip).copied().unwrap_or_default();
            let heavy = p.report.heavy.per_backend.get(dip).copied().unwrap_or(0);
            let light = p.report.light.per_backend.get(dip).copied().unwrap_or(0);
            // The weight the first MUX (by name) ended the phase with.
            let w = p
                .weights
                .values()
                .next()
                .and_then(|ws| ws.iter().find(|w| &w.0 == dip))
                .map_or("-".to_string(), |w| w.1.to_string());
            let _ = write!(
                line,
                " | {:>12} {:>6} {:>6} {:>6} {:>8}",
                mb(b.bytes_per_s),
                b.active_connections,
                heavy,
                light,
                w
            );
        }
        let _ = writeln!(s, "{line}");
    }
    let mut line = format!("  {:<11}", "max/avg");
    for p in &o.phases {
        let _ = write!(
            line,
            " | {:>12} {:>6} {:>22}",
            ratio(p.bytes_max_over_avg),
            ratio(p.connections_max_over_avg),
            ""
        );
    }
    let _ = writeln!(s, "{line}");
    let mut line = format!("  {:<11}", "instant");
    for p in &o.phases {
        let v = p
            .bytes_instant_max_over_avg
            .map_or("-".to_string(), |(p50, p90)| format!("{p50:.2} / {p90:.2}"));
        let _ = write!(line, " | {v:>12} {:>29}", "");
    }
    let _ = writeln!(s, "{line}");
    let _ = writeln!(
        s,
        "  (heavy, light: downloads and light requests answered per backend over the whole phase; \
         weight: the effective Maglev weight mux1 ended the phase with; instant: max/avg of \
         bytes/s in each agent sample of the window, p50 / p90)"
    );
    for p in &o.phases {
        let _ = writeln!(
            s,
            "  {} — Prometheus at the end of the phase:",
            p.report.phase
        );
        if p.prometheus.is_empty() {
            let _ = writeln!(s, "    (no answer recorded)");
        }
        for (q, v) in &p.prometheus {
            let _ = writeln!(s, "    {q:<48} {}", ratio(*v));
        }
        for (mux, ws) in &p.weights {
            if ws.iter().all(|w| w.2.is_none()) {
                continue;
            }
            let list: Vec<String> = ws
                .iter()
                .map(|(a, w, f)| format!("{a} ×{:.2} ({w})", f.unwrap_or(1.0)))
                .collect();
            let _ = writeln!(
                s,
                "    {mux} load-aware factor (Maglev weight): {}",
                list.join("  ")
            );
        }
        if let Some((a, worst)) = p.factor_spread.first() {
            let _ = writeln!(
                s,
                "    factor spread between the MUXes: up to ×{worst:.2} ({a}; 1 = they agree)"
            );
        }
    }
    for (ok, text) in &o.checks {
        let _ = writeln!(s, "  [{}] {text}", if *ok { " ok " } else { "FAIL" });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_over_avg_and_phase_windows() {
        assert_eq!(max_over_avg(&[]), None);
        assert_eq!(max_over_avg(&[0.0, 0.0]), None);
        assert_eq!(max_over_avg(&[3.0, 1.0, 1.0, 3.0]), Some(1.5));
        let sample = |t, a: f64, b: f64| AgentSample {
            t_unix_ms: t,
            backends: [
                (
                    "10.0.21.2".to_string(),
                    BackendSample {
                        bytes_per_s: a,
                        active_connections: 4,
                    },
                ),
                (
                    "10.0.22.2".to_string(),
                    BackendSample {
                        bytes_per_s: b,
                        active_connections: 2,
                    },
                ),
            ]
            .into(),
        };
        let report = PhaseReport {
            ended_unix_ms: 100_000,
            // The first sample is before the 60 s window and does not count.
            samples: vec![
                sample(30_000, 1e9, 0.0),
                sample(50_000, 300.0, 100.0),
                sample(90_000, 500.0, 100.0),
            ],
            ..PhaseReport::default()
        };
        let p = evaluate_phase(report, 60);
        assert_eq!(p.window_samples, 2);
        assert_eq!(p.backends["10.0.21.2"].bytes_per_s, 400.0);
        assert_eq!(p.bytes_max_over_avg, Some(400.0 / 250.0));
        assert_eq!(p.connections_max_over_avg, Some(4.0 / 3.0));
        // Each sample on its own: 300/200 = 1.5 and 500/300 = 5/3; p50 and p90 by rank.
        assert_eq!(p.bytes_instant_max_over_avg, Some((1.5, 500.0 / 300.0)));
    }

    #[test]
    fn instantaneous_balance_and_factor_spread() {
        assert_eq!(quantile(&[], 0.5), None);
        let v = [1.0, 4.0, 2.0, 3.0, 10.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        assert_eq!(quantile(&v, 0.5), Some(5.0));
        assert_eq!(quantile(&v, 0.9), Some(9.0));
        // Even on average, uneven at every instant: the averaged figure hides waves, the
        // instantaneous one shows them.
        let sample = |t, a: f64, b: f64| AgentSample {
            t_unix_ms: t,
            backends: [
                (
                    "10.0.21.2".to_string(),
                    BackendSample {
                        bytes_per_s: a,
                        active_connections: 1,
                    },
                ),
                (
                    "10.0.22.2".to_string(),
                    BackendSample {
                        bytes_per_s: b,
                        active_connections: 1,
                    },
                ),
            ]
            .into(),
        };
        let mut samples: Vec<AgentSample> = (0..10)
            .map(|i| {
                let t = 41_000 + i * 1000;
                if i % 2 == 0 {
                    sample(t, 300.0, 100.0)
                } else {
                    sample(t, 100.0, 300.0)
                }
            })
            .collect();
        // A sample missing a backend is left out of the instantaneous figure.
        samples.push(AgentSample {
            t_unix_ms: 99_000,
            backends: [("10.0.21.2".to_string(), BackendSample::default())].into(),
        });
        let p = evaluate_phase(
            PhaseReport {
                ended_unix_ms: 100_000,
                samples,
                ..PhaseReport::default()
            },
            60,
        );
        assert_eq!(p.window_samples, 11);
        assert!(
            p.bytes_max_over_avg.unwrap() < 1.2,
            "{:?}",
            p.bytes_max_over_avg
        );
        assert_eq!(p.bytes_instant_max_over_avg, Some((1.5, 1.5)));
        // Factor spread: per backend the largest ratio between two MUXes' factors.
        let weights: MuxWeights = [
            (
                "mux1".to_string(),
                vec![
                    ("10.0.21.2".to_string(), 2500, Some(0.25)),
                    ("10.0.21.3".to_string(), 40000, Some(4.0)),
                    ("10.0.22.2".to_string(), 100, None),
                ],
            ),
            (
                "mux2".to_string(),
                vec![
                    ("10.0.21.2".to_string(), 2500, Some(0.25)),
                    ("10.0.21.3".to_string(), 2500, Some(0.25)),
                    ("10.0.22.2".to_string(), 100, None),
                ],
            ),
        ]
        .into();
        assert_eq!(
            factor_spread(&weights),
            vec![
                ("10.0.21.3".to_string(), 16.0),
                ("10.0.21.2".to_string(), 1.0)
            ]
        );
        let one: BTreeMap<_, _> = weights.into_iter().take(1).collect();
        assert!(factor_spread(&one).is_empty());
        // Both appear in the text.
        let outcome = Outcome {
            phases: vec![PhaseOutcome {
                bytes_instant_max_over_avg: Some((1.5, 2.25)),
                factor_spread: vec![("10.0.21.3".to_string(), 16.0)],
                ..p
            }],
            measure_s: 60,
            ..Outcome::default()
        };
        let text = render_text(&outcome);
        assert!(text.contains("1.50 / 2.25"), "{text}");
        assert!(text.contains("up to ×16.00 (10.0.21.3"), "{text}");
    }

    #[test]
    fn agents_prometheus_and_status_documents_are_read() {
        let doc = serde_json::json!({"agent": "host1", "backends": [
            {"vip": "192.0.2.10", "port": 8000, "protocol": "tcp", "dip": "10.0.21.2",
             "load": {"active_connections": 7, "bytes_in_per_s": 10.0, "bytes_out_per_s": 90.0}},
            {"vip": "192.0.2.10", "port": 80, "protocol": "tcp", "dip": "10.0.21.2",
             "load": {"active_connections": 1, "bytes_in_per_s": 1.0, "bytes_out_per_s": 1.0}},
            {"vip": "192.0.2.10", "port": 8000, "protocol": "tcp", "dip": "10.0.21.3", "load": null}
        ]});
        let l = loads_in(&doc, "192.0.2.10:8000".parse().unwrap());
        assert_eq!(l.len(), 1);
        assert_eq!(
            l["10.0.21.2"],
            BackendSample {
                bytes_per_s: 100.0,
                active_connections: 7
            }
        );
        let prom = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"port": "8000"}, "value": [1.0, "3.5"]},
            {"metric": {"port": "8001"}, "value": [1.0, "1.25"]}]}});
        assert_eq!(prometheus_value(&prom, 8001), Some(1.25));
        assert_eq!(prometheus_value(&prom, 80), None);
        let status = serde_json::json!({
            "vips": [{"name": "imb-aware", "backends": [
                {"address": "10.0.21.2", "weight": 100}, {"address": "10.0.22.2", "weight": 150}]}],
            "health": {"load_aware_weights": [
                {"vip": "imb-aware", "backend": "10.0.21.2", "factor": 0.25},
                {"vip": "imb-aware", "backend": "10.0.22.2", "factor": 1.5}]}});
        assert_eq!(
            weights_in(&status, "imb-aware"),
            vec![
                // Effective Maglev weights: weight × factor × 100 once a factor moved.
                ("10.0.21.2".into(), 2500, Some(0.25)),
                ("10.0.22.2".into(), 22500, Some(1.5))
            ]
        );
    }
}
