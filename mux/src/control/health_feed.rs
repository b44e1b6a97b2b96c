//! The health feed's I/O: one poller thread per `[[health.agent]]` asks the host agent for
//! `GET /v1/backends` every `poll_interval_ms` (each request bounded by `timeout_ms`) and
//! publishes the answer in [`HealthShared`]. It decides nothing: the control thread judges the
//! latest answers with [`health_decision`](super::health_decision) every tick and republishes
//! the snapshot when the failed set changes. Nothing here is on the data path.
//!
//! The contract (the host agent's side): a JSON object
//! `{"agent", "generation", "backends": [{"vip", "port", "protocol", "dip", "state", …}]}` with
//! `state` one of `"unknown" | "up" | "down"`. Parsing is lenient so the two binaries can
//! evolve apart: unknown fields are ignored, only `vip`, `port`, `protocol`, `dip` and `state`
//! are required per entry, an entry missing one of them (or with a protocol the MUX does not
//! serve) is skipped and counted, and a `state` this MUX does not know reads as `"unknown"`
//! (no effect). A body that is not such an object at all is a failed poll.
//!
//! HTTP client: `ureq` 3 with default features off (no TLS, no JSON feature: the body is
//! read as text, capped at 4 MiB, and parsed with `serde_json`). It builds on rustc 1.95, so a
//! hand-written HTTP/1.1 client was not needed; ureq gives chunked bodies, keep-alive and one
//! global timeout per request (connect + send + headers + body). The agent is built with no
//! proxy: an environment `HTTP_PROXY` must not sit between a MUX and its hosts.
//!
//! Threads: one per agent, so a host that hangs until the timeout delays only its own polls.
//! Each sleeps in slices of at most 50 ms between polls and checks its stop flag, so
//! [`HealthFeed`] stops within about 50 ms plus one timeout. [`HealthFeed::configure`] applies
//! a reloaded `[health]` without blocking the control thread: new agents get a thread, removed
//! ones are told to stop (and joined once finished or at shutdown), kept ones keep their
//! history and pick up a new interval or timeout at their next poll.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config;
use mux_daemon_kit::config::Protocol;
use serde::Deserialize;

use crate::control::health_decision::BackendHealth;

/// Most bytes read from one answer.
const MAX_BODY: u64 = 4 << 20;
/// Longest sleep between two looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// A backend state as the host agent reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportedState {
    /// Passing its checks: no effect (the configured state applies).
    Up,
    /// Failing its checks: the MUX fails it.
    Down,
    /// Not checked yet (or a state this MUX does not know): no effect.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ReportedState {
    /// The contract's spelling.
    pub fn name(self) -> &'static str {
        match self {
            ReportedState::Unknown => "unknown",
            ReportedState::Up => "up",
            ReportedState::Down => "down",
        }
    }
}

/// The load an agent measured on a backend (`load` of a `/v1/backends` entry); fields this
/// MUX does not know are ignored, missing ones are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReportedLoad {
    /// Connections the backend carries.
    pub active_connections: u64,
    /// Bytes per second delivered to it.
    pub bytes_in_per_s: f64,
    /// Bytes per second of its replies.
    pub bytes_out_per_s: f64,
}

/// One entry of an agent's `backends`, with the fields the MUX uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ReportedBackend {
    /// The VIP address.
    pub vip: IpAddr,
    /// The VIP port.
    pub port: u16,
    /// The VIP protocol.
    pub protocol: Protocol,
    /// The address the MUX tunnels to: a `[[vip.backend]] address`.
    pub dip: IpAddr,
    /// The agent's verdict.
    pub state: ReportedState,
    /// When its checks started failing (agent's wall clock), while down.
    #[serde(default)]
    pub failing_since_unix_ms: Option<u64>,
    /// The agent's own transition count.
    #[serde(default)]
    pub transitions: Option<u64>,
    /// The agent's last check error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// What the agent measured on the backend (load-aware weights); absent from older agents.
    #[serde(default)]
    pub load: Option<ReportedLoad>,
}

/// A parsed `GET /v1/backends` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentReport {
    /// The agent's name.
    pub agent: Option<String>,
    /// The agent's configuration generation.
    pub generation: Option<u64>,
    /// The entries that parsed.
    pub backends: Vec<ReportedBackend>,
    /// Entries skipped because a required field was missing or malformed.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    generation: Option<u64>,
    backends: Vec<serde_json::Value>,
}

/// Parses an agent's answer leniently (see the module doc).
pub fn parse_report(body: &str) -> Result<AgentReport, String> {
    let raw: RawReport = serde_json::from_str(body)
        .map_err(|e| format!("the answer is not a backends report: {e}"))?;
    let mut backends = Vec::with_capacity(raw.backends.len());
    let mut skipped = 0;
    for entry in raw.backends {
        match serde_json::from_value::<ReportedBackend>(entry) {
            Ok(b) => backends.push(b),
            Err(_) => skipped += 1,
        }
    }
    Ok(AgentReport {
        agent: raw.agent,
        generation: raw.generation,
        backends,
        skipped,
    })
}

/// What the MUX knows of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentStatus {
    /// The configured admin endpoint.
    pub address: SocketAddr,
    /// True when the last poll succeeded.
    pub reachable: bool,
    /// When the last poll succeeded (monotonic; for staleness).
    pub last_ok: Option<Instant>,
    /// When the last poll succeeded (wall clock; for display).
    pub last_ok_unix_ms: Option<u64>,
    /// Why the last poll failed, while it does.
    pub last_error: Option<String>,
    /// Successful polls.
    pub polls_ok: u64,
    /// Failed polls (connect, timeout, HTTP status, unparsable body).
    pub polls_failed: u64,
    /// The last good answer (kept while the agent is unreachable: staleness needs it).
    pub report: Option<AgentReport>,
}

impl AgentStatus {
    /// An agent not polled yet.
    pub fn new(address: SocketAddr) -> Self {
        AgentStatus {
            address,
            reachable: false,
            last_ok: None,
            last_ok_unix_ms: None,
            last_error: None,
            polls_ok: 0,
            polls_failed: 0,
            report: None,
        }
    }

    /// Records one poll's outcome.
    pub fn record(&mut self, outcome: Result<AgentReport, String>, at: Instant, at_unix_ms: u64) {
        match outcome {
            Ok(report) => {
                self.reachable = true;
                self.last_ok = Some(at);
                self.last_ok_unix_ms = Some(at_unix_ms);
                self.last_error = None;
                self.polls_ok += 1;
                self.report = Some(report);
            }
            Err(e) => {
                self.reachable = false;
                self.last_error = Some(e);
                self.polls_failed += 1;
            }
        }
    }
}

/// What the pollers, the control thread and the admin endpoint share.
#[derive(Debug, Default)]
pub struct HealthShared {
    /// One per configured agent, in file order; written by the pollers.
    pub agents: Mutex<Vec<AgentStatus>>,
    /// The backends some agent reports, as last judged; written by the control thread.
    pub backends: Mutex<Vec<BackendHealth>>,
    /// Load-aware weights of the VIPs that have them; written by the control thread.
    pub weights: Mutex<Vec<crate::control::load_weights::WeightView>>,
    /// Load-aware weight changes applied since start.
    pub weight_changes: std::sync::atomic::AtomicU64,
}

/// Milliseconds since the Unix epoch by the wall clock (0 if it is before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Interval and timeout, shared by the pollers so a reload changes them in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    interval: Duration,
    timeout: Duration,
}

#[derive(Debug)]
struct Poller {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The running pollers. Dropping it stops and joins them.
#[derive(Debug)]
pub struct HealthFeed {
    shared: Arc<HealthShared>,
    timing: Arc<Mutex<Timing>>,
    pollers: Vec<Poller>,
    retired: Vec<Poller>,
}

impl HealthFeed {
    /// A feed with no agents that publishes into `shared`.
    pub fn new(shared: Arc<HealthShared>) -> Self {
        HealthFeed {
            shared,
            timing: Arc::new(Mutex::new(Timing {
                interval: Duration::from_millis(u64::from(config::DEFAULT_POLL_INTERVAL_MS)),
                timeout: Duration::from_millis(u64::from(config::DEFAULT_HEALTH_TIMEOUT_MS)),
            })),
            pollers: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// The agents being polled.
    pub fn agents(&self) -> Vec<SocketAddr> {
        self.pollers.iter().map(|p| p.address).collect()
    }

    /// Polls exactly the agents of `health`, with its interval and timeout. Never blocks on a
    /// poll in flight.
    pub fn configure(&mut self, health: &config::Health) {
        if let Ok(mut t) = self.timing.lock() {
            *t = Timing {
                interval: health.poll_interval(),
                timeout: health.timeout(),
            };
        }
        let wanted = health.agents();
        let (keep, retire): (Vec<Poller>, Vec<Poller>) = std::mem::take(&mut self.pollers)
            .into_iter()
            .partition(|p| wanted.contains(&p.address));
        for p in &retire {
            p.stop.store(true, Ordering::Relaxed);
        }
        self.retired.extend(retire);
        self.pollers = keep;

        // Statuses follow the file's order; kept agents keep their history.
        if let Ok(mut agents) = self.shared.agents.lock() {
            let mut old = std::mem::take(&mut *agents);
            *agents = wanted
                .iter()
                .map(|a| match old.iter().position(|s| s.address == *a) {
                    Some(i) => old.swap_remove(i),
                    None => AgentStatus::new(*a),
                })
                .collect();
        }
        for address in wanted {
            if self.pollers.iter().any(|p| p.address == address) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let shared = Arc::clone(&self.shared);
            let timing = Arc::clone(&self.timing);
            let flag = Arc::clone(&stop);
            match std::thread::Builder::new()
                .name("mux-health".into())
                .spawn(move || poll_loop(address, &shared, &timing, &flag))
            {
                Ok(handle) => self.pollers.push(Poller {
                    address,
                    stop,
                    handle,
                }),
                Err(e) => {
                    tracing::error!(agent = %address, error = %e, "cannot start the health poller");
                    if let Ok(mut agents) = self.shared.agents.lock()
                        && let Some(s) = agents.iter_mut().find(|s| s.address == address)
                    {
                        s.last_error = Some(format!("cannot start the poller: {e}"));
                    }
                }
            }
        }
        // Join the retired pollers that have finished; the others finish their poll first.
        let (done, running): (Vec<Poller>, Vec<Poller>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|p| p.handle.is_finished());
        for p in done {
            let _ = p.handle.join();
        }
        self.retired = running;
    }
}

impl HealthFeed {
    /// Stops every poller and waits for it (also done on drop).
    pub fn stop(&mut self) {
        let all: Vec<Poller> = self
            .pollers
            .drain(..)
            .chain(self.retired.drain(..))
            .collect();
        for p in &all {
            p.stop.store(true, Ordering::Relaxed);
        }
        for p in all {
            let _ = p.handle.join();
        }
    }
}

impl Drop for HealthFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One agent's poller: poll, publish, sleep until the next poll is due; until `stop`.
fn poll_loop(
    address: SocketAddr,
    shared: &HealthShared,
    timing: &Mutex<Timing>,
    stop: &AtomicBool,
) {
    let url = format!("http://{address}/v1/backends");
    let mut client: Option<(Duration, ureq::Agent)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(t) = timing.lock().map(|t| *t) else {
            return;
        };
        let agent = match &client {
            Some((timeout, agent)) if *timeout == t.timeout => agent.clone(),
            _ => {
                let agent = http_agent(t.timeout);
                client = Some((t.timeout, agent.clone()));
                agent
            }
        };
        let started = Instant::now();
        let outcome = fetch(&agent, &url);
        if let Ok(mut agents) = shared.agents.lock() {
            // Checked under the lock: a removed agent's last answer is never published.
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(s) = agents.iter_mut().find(|s| s.address == address) {
                let was_reachable = s.reachable || s.polls_failed + s.polls_ok == 0;
                if let (Err(e), true) = (&outcome, was_reachable) {
                    tracing::warn!(agent = %address, error = %e, "health agent unreachable");
                } else if outcome.is_ok() && !s.reachable && s.polls_failed > 0 {
                    tracing::info!(agent = %address, "health agent answering again");
                }
                s.record(outcome, Instant::now(), unix_ms_now());
            }
        }
        let next = started + t.interval;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    }
}

/// A client whose every request ends within `timeout`, without proxies or redirects.
fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(true)
        .user_agent("mux-health-feed")
        .build()
        .new_agent()
}

/// One `GET`, parsed.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<AgentReport, String> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Timeout(_) => "timed out".to_string(),
        other => other.to_string(),
    })?;
    let body = response
        .into_body()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    parse_report(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::health_decision::{failed_set, judge};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn the_contract_example_parses() {
        let body = r#"{"agent":"host1","generation":1,"backends":[{"vip":"192.0.2.10","port":80,"protocol":"tcp","dip":"10.0.21.2","backend_address":"10.21.1.2","backend_port":8080,"state":"up","checked":true,"since_unix_ms":1700000000000,"failing_since_unix_ms":null,"last_check_unix_ms":1700000000500,"transitions":1,"consecutive_successes":5,"consecutive_failures":0,"detect_ms":null,"last_error":null}]}"#;
        let r = parse_report(body).unwrap();
        assert_eq!(r.agent.as_deref(), Some("host1"));
        assert_eq!(r.generation, Some(1));
        assert_eq!(r.skipped, 0);
        assert_eq!(
            r.backends,
            [ReportedBackend {
                vip: "192.0.2.10".parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
                dip: "10.0.21.2".parse().unwrap(),
                state: ReportedState::Up,
                failing_since_unix_ms: None,
                transitions: Some(1),
                last_error: None,
                load: None,
            }]
        );
    }

    #[test]
    fn parsing_is_lenient_per_entry() {
        let body = r#"{"extra":true,"backends":[
            {"vip":"192.0.2.10","port":80,"protocol":"tcp","dip":"10.0.21.2","state":"down","failing_since_unix_ms":5},
            {"vip":"192.0.2.10","port":80,"protocol":"tcp","dip":"10.0.21.3","state":"degraded"},
            {"vip":"192.0.2.10","port":80,"protocol":"tcp","dip":"10.0.21.4"},
            {"vip":"192.0.2.10","port":80,"protocol":"sctp","dip":"10.0.21.5","state":"up"},
            {"vip":"not an ip","port":80,"protocol":"tcp","dip":"10.0.21.6","state":"up"},
            {"vip":"192.0.2.10","port":70000,"protocol":"tcp","dip":"10.0.21.7","state":"up"}
        ]}"#;
        let r = parse_report(body).unwrap();
        assert_eq!(r.agent, None);
        assert_eq!(r.backends.len(), 2);
        assert_eq!(r.backends[0].state, ReportedState::Down);
        assert_eq!(r.backends[0].failing_since_unix_ms, Some(5));
        assert_eq!(r.backends[1].state, ReportedState::Unknown);
        assert_eq!(r.skipped, 4);
        for bad in ["", "[]", "{}", "{\"backends\": 3}", "<html>"] {
            assert!(parse_report(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_records_outcomes_and_keeps_the_last_report() {
        let mut s = AgentStatus::new("127.0.0.1:9".parse().unwrap());
        let t = Instant::now();
        let report = parse_report(r#"{"backends":[]}"#).unwrap();
        s.record(Ok(report.clone()), t, 1000);
        s.record(Err("refused".into()), t + Duration::from_secs(1), 2000);
        assert!(!s.reachable);
        assert_eq!((s.polls_ok, s.polls_failed), (1, 1));
        assert_eq!(s.last_ok, Some(t));
        assert_eq!(s.last_ok_unix_ms, Some(1000));
        assert_eq!(s.last_error.as_deref(), Some("refused"));
        assert_eq!(s.report, Some(report));
    }

    fn health(agents: &[SocketAddr]) -> config::Health {
        let mut text = String::from(
            "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[health]\npoll_interval_ms = 100\n\
             timeout_ms = 50\n",
        );
        for a in agents {
            text.push_str(&format!("[[health.agent]]\naddress = \"{a}\"\n"));
        }
        config::parse(&text, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .health()
            .clone()
    }

    /// An address nothing listens on (bound, then closed): polls fail at once.
    fn closed_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn reconfiguring_keeps_the_history_of_kept_agents() {
        let (a, b, c) = (closed_port(), closed_port(), closed_port());
        let shared = Arc::new(HealthShared::default());
        let mut feed = HealthFeed::new(Arc::clone(&shared));
        feed.configure(&health(&[a, b]));
        let failed_polls = |addr: SocketAddr| {
            shared
                .agents
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.address == addr)
                .map(|s| s.polls_failed)
        };
        wait_until("both agents polled", || {
            failed_polls(a) > Some(0) && failed_polls(b) > Some(0)
        });
        let b_before = failed_polls(b);
        feed.configure(&health(&[c, b]));
        assert_eq!(feed.agents(), [b, c]);
        let order: Vec<_> = shared
            .agents
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.address)
            .collect();
        assert_eq!(order, [c, b], "statuses follow the file's order");
        assert!(failed_polls(b) >= b_before, "b keeps its history");
        assert_eq!(failed_polls(a), None, "a is forgotten");
        wait_until("the new agent polled", || failed_polls(c) > Some(0));
        let status = shared.agents.lock().unwrap()[0].clone();
        assert!(!status.reachable);
        assert!(status.last_error.is_some());
        assert_eq!(status.last_ok, None);
    }

    /// A fake host agent: answers every request with `body` (or 500 when `None`) until
    /// `stop`; returns its address.
    fn fake_agent(body: Arc<Mutex<Option<String>>>, stop: Arc<AtomicBool>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                // Request line and headers.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let answer = match body.lock().unwrap().clone() {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string(),
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        address
    }

    fn report(state: &str) -> Option<String> {
        Some(format!(
            r#"{{"agent":"fake","generation":1,"backends":[{{"vip":"192.0.2.10","port":80,"protocol":"tcp","dip":"10.1.0.1","state":"{state}","failing_since_unix_ms":null}}]}}"#
        ))
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn poller_follows_a_fake_agent_through_down_up_and_silence() {
        let body = Arc::new(Mutex::new(report("up")));
        let stop_agent = Arc::new(AtomicBool::new(false));
        let address = fake_agent(Arc::clone(&body), Arc::clone(&stop_agent));
        let text = format!(
            "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[tunnel]\nsource_v4 = \"10.0.0.11\"\n\
             [health]\npoll_interval_ms = 100\ntimeout_ms = 100\nstale_after_ms = 400\n\
             [[health.agent]]\naddress = \"{address}\"\n\
             [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
             [[vip.backend]]\naddress = \"10.1.0.1\"\n[[vip.backend]]\naddress = \"10.1.0.2\"\n"
        );
        let cfg = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let shared = Arc::new(HealthShared::default());
        let mut feed = HealthFeed::new(Arc::clone(&shared));
        feed.configure(cfg.health());
        assert_eq!(feed.agents(), [address]);
        let failed = || {
            let agents = shared.agents.lock().unwrap();
            failed_set(&judge(
                cfg.vips(),
                &agents,
                Instant::now(),
                cfg.health().stale_after(),
            ))
        };
        let polls_ok = || shared.agents.lock().unwrap()[0].polls_ok;
        let web1 = vec![("web".to_string(), "10.1.0.1".parse::<IpAddr>().unwrap())];

        wait_until("a first answer", || polls_ok() > 0);
        assert!(failed().is_empty());

        *body.lock().unwrap() = report("down");
        wait_until("the backend to fail", || failed() == web1);

        *body.lock().unwrap() = report("up");
        wait_until("the backend to recover", || failed().is_empty());

        // An HTTP error is a failed poll; the last report stays until it goes stale.
        *body.lock().unwrap() = None;
        wait_until("a failed poll", || {
            shared.agents.lock().unwrap()[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("500"))
        });
        *body.lock().unwrap() = report("up");
        wait_until("the agent to answer again", || {
            shared.agents.lock().unwrap()[0].reachable
        });

        // Silence: the agent stops; once stale, what it last reported counts as failed.
        stop_agent.store(true, Ordering::Relaxed);
        wait_until("the silent agent to go stale", || failed() == web1);
        {
            let agents = shared.agents.lock().unwrap();
            assert!(!agents[0].reachable);
            assert!(agents[0].polls_failed > 0);
        }

        // Removing the agent from the config stops its poller and forgets it.
        let started = Instant::now();
        feed.configure(&config::Health::default());
        assert!(feed.agents().is_empty());
        assert!(shared.agents.lock().unwrap().is_empty());
        assert!(failed().is_empty());
        drop(feed);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the pollers stop within about one timeout"
        );
    }
}
