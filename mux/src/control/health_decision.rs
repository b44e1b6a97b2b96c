//! The health feed's decision: which configured backends are failed, given what the host agents
//! last said and when they last answered. Pure functions over plain values (time is an
//! argument), so every rule is unit-tested without a socket or a clock; the HTTP side lives in
//! [`health_feed`](super::health_feed) and the daemon's control thread applies the result.
//!
//! Rules ([`judge`]):
//! - a report entry names a MUX backend when its (`vip`, `port`, `protocol`) is a configured
//!   VIP's and its `dip` is one of that VIP's `[[vip.backend]] address`es; entries that match
//!   nothing are ignored (the agent may serve other MUX fleets);
//! - the backend is **failed** when a fresh report says `"down"`, or when the agent whose last
//!   report named it has not answered for `stale_after`; `"up"`, `"unknown"` and no report at
//!   all leave the configured state in force;
//! - a backend no agent ever reported is never failed by the feed, and neither is anything an
//!   agent might serve but has not yet reported since this MUX started (the MUX cannot know
//!   what an agent that never answered serves);
//! - when several agents report one backend, it is failed if any of them fails it.
//!
//! Why an unreachable agent fails its backends: the agent runs on the backend's own host, in
//! front of it on the data path (it decapsulates the MUX's tunnels). A host whose agent stops
//! answering has most likely lost power, its link or its agent, and in each case new flows sent
//! there are black-holed; re-hashing them is cheap (the other backends take ~1/N more) while
//! keeping them costs every new client a timeout. `stale_after` (default three polls) keeps a
//! single lost answer from failing a healthy host. The cost is that a partition between the
//! MUX and an agent's admin port alone also fails that host's backends.
//!
//! [`Tracker`] remembers what was applied and turns the successive failed sets into
//! transitions with counts and detection times for logs, `/v1/status` and `/metrics`. It also
//! remembers, on the monotonic clock, when each backend it fails was judged failed
//! ([`Tracker::failed_backends`]): the compile step starts the backend's
//! `failed_backend_grace` there, and because the time is kept for as long as the backend stays
//! failed, a reload or any other recompile keeps its grace deadline.
//! Detection time is measured with wall clocks: for a `"down"` report it is the MUX's time of
//! applying the failure minus the agent's `failing_since_unix_ms` (two hosts' clocks: only as
//! good as their synchronisation, clamped at 0); for a stale agent it is the time since its
//! last good answer (one clock).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config;
use mux_daemon_kit::config::Protocol;

use crate::control::compile::FailedBackend;
use crate::control::health_feed::{AgentStatus, ReportedState};

/// Why the feed fails a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A fresh report says `"down"`; the agent's `failing_since_unix_ms`, when it sent one.
    Down {
        /// When the agent saw the first failed check (agent's wall clock).
        failing_since_unix_ms: Option<u64>,
    },
    /// The agent has not answered for `unanswered` (at least `stale_after`).
    Stale {
        /// Time since its last good answer.
        unanswered: Duration,
    },
}

impl Cause {
    /// `"down"` or `"stale"`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Down { .. } => "down",
            Cause::Stale { .. } => "stale",
        }
    }
}

/// The feed's view of one configured backend that some agent reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The VIP's name.
    pub vip: String,
    /// The backend's configured address (the report's `dip`).
    pub backend: IpAddr,
    /// The agent this judgement comes from (the failing one, when several report it).
    pub agent: SocketAddr,
    /// What that agent last reported.
    pub reported: ReportedState,
    /// `Some` when the feed fails the backend.
    pub failed: Option<Cause>,
}

/// A backend as both sides name it: VIP address, port, protocol and DIP.
type BackendKey = (IpAddr, u16, Protocol, IpAddr);

/// Judges every configured backend some agent reported, in config order (VIP, then backend).
/// `agents` are the poller's latest statuses; `now` is when they are judged.
pub fn judge(
    vips: &[config::Vip],
    agents: &[AgentStatus],
    now: Instant,
    stale_after: Duration,
) -> Vec<Judgement> {
    // (vip address, port, protocol, dip) → (vip index, backend index).
    let mut index: HashMap<BackendKey, Vec<(usize, usize)>> = HashMap::new();
    for (vi, v) in vips.iter().enumerate() {
        for (bi, b) in v.backends().iter().enumerate() {
            index
                .entry((v.address(), v.port(), v.protocol(), b.address()))
                .or_default()
                .push((vi, bi));
        }
    }
    let mut out: BTreeMap<(usize, usize), Judgement> = BTreeMap::new();
    for agent in agents {
        let (Some(report), Some(last_ok)) = (&agent.report, agent.last_ok) else {
            continue;
        };
        let unanswered = now.saturating_duration_since(last_ok);
        let stale = unanswered >= stale_after;
        for r in &report.backends {
            let key = (
                r.vip.to_canonical(),
                r.port,
                r.protocol,
                r.dip.to_canonical(),
            );
            let Some(matches) = index.get(&key) else {
                continue;
            };
            let failed = if stale {
                Some(Cause::Stale { unanswered })
            } else if r.state == ReportedState::Down {
                Some(Cause::Down {
                    failing_since_unix_ms: r.failing_since_unix_ms,
                })
            } else {
                None
            };
            for &(vi, bi) in matches {
                let judgement = Judgement {
                    vip: vips[vi].name().to_string(),
                    backend: vips[vi].backends()[bi].address(),
                    agent: agent.address,
                    reported: r.state,
                    failed,
                };
                match out.get(&(vi, bi)) {
                    // The first failing report wins; otherwise the first report.
                    Some(prev) if prev.failed.is_some() || judgement.failed.is_none() => {}
                    _ => {
                        out.insert((vi, bi), judgement);
                    }
                }
            }
        }
    }
    out.into_values().collect()
}

/// The failed backends as `CompileOptions::failed` takes them, sorted and without repeats.
pub fn failed_set(judgements: &[Judgement]) -> Vec<(String, IpAddr)> {
    let mut set: Vec<(String, IpAddr)> = judgements
        .iter()
        .filter(|j| j.failed.is_some())
        .map(|j| (j.vip.clone(), j.backend))
        .collect();
    set.sort();
    set.dedup();
    set
}

/// One backend changing between failed and ok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The VIP's name.
    pub vip: String,
    /// The backend's address.
    pub backend: IpAddr,
    /// The agent that reported it (`None`: no agent reports it any more).
    pub agent: Option<SocketAddr>,
    /// True: now failed; false: recovered.
    pub failed: bool,
    /// Why, for a failure.
    pub cause: Option<Cause>,
    /// Detection time of a failure in ms (see the module doc), when known.
    pub detect_ms: Option<u64>,
}

/// One row of `/v1/status` `health.backends`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendHealth {
    /// The VIP's name.
    pub vip: String,
    /// The backend's address.
    pub backend: IpAddr,
    /// The agent whose report applies.
    pub agent: SocketAddr,
    /// What it last reported.
    pub reported: ReportedState,
    /// True when the feed fails the backend.
    pub failed: bool,
    /// How often the feed changed it between failed and ok.
    pub transitions: u64,
    /// When it last did (MUX wall clock).
    pub last_transition_unix_ms: Option<u64>,
    /// Detection time of its last failure, in ms.
    pub last_detect_ms: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    transitions: u64,
    last_transition_unix_ms: Option<u64>,
    last_detect_ms: Option<u64>,
}

/// What the feed applied so far, and the per-backend history.
#[derive(Debug, Default)]
pub struct Tracker {
    applied: Vec<(String, IpAddr)>,
    /// When each backend of `applied` was judged failed.
    failed_since: HashMap<(String, IpAddr), Instant>,
    stats: HashMap<(String, IpAddr), Stats>,
}

impl Tracker {
    /// The failed set applied last.
    pub fn applied(&self) -> &[(String, IpAddr)] {
        &self.applied
    }

    /// The failed set applied last, each with the moment it was judged failed, sorted.
    pub fn failed_backends(&self) -> Vec<FailedBackend> {
        self.applied
            .iter()
            .map(|key| FailedBackend {
                vip: key.0.clone(),
                backend: key.1,
                since: *self
                    .failed_since
                    .get(key)
                    .expect("update records a time for every applied failure"),
            })
            .collect()
    }

    /// Applies `judgements` judged at `now` (`now_unix_ms` on the MUX's wall clock): returns
    /// the transitions since the last call and the status rows, in the judgements' order.
    pub fn update(
        &mut self,
        judgements: &[Judgement],
        now: Instant,
        now_unix_ms: u64,
    ) -> (Vec<Transition>, Vec<BackendHealth>) {
        let failed = failed_set(judgements);
        let mut transitions = Vec::new();
        for j in judgements {
            let key = (j.vip.clone(), j.backend);
            let was = self.applied.binary_search(&key).is_ok();
            let Some(cause) = j.failed else { continue };
            if was {
                continue;
            }
            let detect_ms = match cause {
                Cause::Down {
                    failing_since_unix_ms,
                } => failing_since_unix_ms.map(|t| now_unix_ms.saturating_sub(t)),
                Cause::Stale { unanswered } => {
                    Some(u64::try_from(unanswered.as_millis()).unwrap_or(u64::MAX))
                }
            };
            let s = self.stats.entry(key).or_default();
            s.transitions += 1;
            s.last_transition_unix_ms = Some(now_unix_ms);
            s.last_detect_ms = detect_ms;
            transitions.push(Transition {
                vip: j.vip.clone(),
                backend: j.backend,
                agent: Some(j.agent),
                failed: true,
                cause: Some(cause),
                detect_ms,
            });
        }
        for key in &self.applied {
            if failed.binary_search(key).is_ok() {
                continue;
            }
            let s = self.stats.entry(key.clone()).or_default();
            s.transitions += 1;
            s.last_transition_unix_ms = Some(now_unix_ms);
            transitions.push(Transition {
                vip: key.0.clone(),
                backend: key.1,
                agent: judgements
                    .iter()
                    .find(|j| j.vip == key.0 && j.backend == key.1)
                    .map(|j| j.agent),
                failed: false,
                cause: None,
                detect_ms: None,
            });
        }
        // A backend keeps the time it was first judged failed for as long as it stays failed.
        self.failed_since
            .retain(|key, _| failed.binary_search(key).is_ok());
        for key in &failed {
            self.failed_since.entry(key.clone()).or_insert(now);
        }
        self.applied = failed;
        let rows = judgements
            .iter()
            .map(|j| {
                let s = self
                    .stats
                    .get(&(j.vip.clone(), j.backend))
                    .cloned()
                    .unwrap_or_default();
                BackendHealth {
                    vip: j.vip.clone(),
                    backend: j.backend,
                    agent: j.agent,
                    reported: j.reported,
                    failed: j.failed.is_some(),
                    transitions: s.transitions,
                    last_transition_unix_ms: s.last_transition_unix_ms,
                    last_detect_ms: s.last_detect_ms,
                }
            })
            .collect();
        (transitions, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::health_feed::{AgentReport, AgentStatus, ReportedBackend};

    const CONFIG: &str = r#"
[mux]
name = "t"
[dataplane]
io = "mem"
[tunnel]
source_v4 = "10.0.0.11"
[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.0.21.2"
  [[vip.backend]]
  address = "10.0.22.2"
[[vip]]
name = "dns"
address = "192.0.2.10"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "10.0.21.2"
"#;

    const STALE: Duration = Duration::from_millis(3000);

    fn vips() -> Vec<config::Vip> {
        config::parse(CONFIG, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .vips()
            .to_vec()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entry(
        vip: &str,
        port: u16,
        protocol: Protocol,
        dip: &str,
        state: ReportedState,
    ) -> ReportedBackend {
        ReportedBackend {
            vip: ip(vip),
            port,
            protocol,
            dip: ip(dip),
            state,
            failing_since_unix_ms: None,
            transitions: None,
            last_error: None,
            load: None,
        }
    }

    fn web(dip: &str, state: ReportedState) -> ReportedBackend {
        entry("192.0.2.10", 80, Protocol::Tcp, dip, state)
    }

    fn agent(port: u16, last_ok: Option<Instant>, backends: Vec<ReportedBackend>) -> AgentStatus {
        let mut a = AgentStatus::new(SocketAddr::new(ip("10.0.21.2"), port));
        a.last_ok = last_ok;
        a.report = Some(AgentReport {
            agent: Some("host".into()),
            generation: Some(1),
            backends,
            skipped: 0,
        });
        a
    }

    fn failed(agents: &[AgentStatus], now: Instant) -> Vec<(String, IpAddr)> {
        failed_set(&judge(&vips(), agents, now, STALE))
    }

    #[test]
    fn down_fails_and_up_or_unknown_do_not() {
        let now = Instant::now();
        let a = agent(
            9200,
            Some(now),
            vec![
                web("10.0.21.2", ReportedState::Down),
                web("10.0.22.2", ReportedState::Up),
                entry(
                    "192.0.2.10",
                    53,
                    Protocol::Udp,
                    "10.0.21.2",
                    ReportedState::Unknown,
                ),
            ],
        );
        assert_eq!(failed(&[a], now), [("web".to_string(), ip("10.0.21.2"))]);
    }

    #[test]
    fn matching_needs_vip_port_protocol_and_dip() {
        let now = Instant::now();
        let down = ReportedState::Down;
        let a = agent(
            9200,
            Some(now),
            vec![
                entry("192.0.2.11", 80, Protocol::Tcp, "10.0.21.2", down), // other VIP address
                entry("192.0.2.10", 81, Protocol::Tcp, "10.0.21.2", down), // other port
                entry("192.0.2.10", 80, Protocol::Udp, "10.0.21.2", down), // other protocol
                entry("192.0.2.10", 80, Protocol::Tcp, "10.0.29.2", down), // not a backend
                entry("192.0.2.10", 53, Protocol::Tcp, "10.0.21.2", down), // dns is UDP
            ],
        );
        let j = judge(&vips(), &[a], now, STALE);
        assert!(j.is_empty(), "{j:?}");
        // The same DIP under the UDP VIP is a backend of its own.
        let a = agent(
            9200,
            Some(now),
            vec![entry("192.0.2.10", 53, Protocol::Udp, "10.0.21.2", down)],
        );
        assert_eq!(failed(&[a], now), [("dns".to_string(), ip("10.0.21.2"))]);
        // IPv4-mapped report addresses match their IPv4 form.
        let a = agent(
            9200,
            Some(now),
            vec![entry(
                "::ffff:192.0.2.10",
                80,
                Protocol::Tcp,
                "::ffff:10.0.22.2",
                down,
            )],
        );
        assert_eq!(failed(&[a], now), [("web".to_string(), ip("10.0.22.2"))]);
    }

    #[test]
    fn a_stale_agent_fails_everything_it_last_reported() {
        let then = Instant::now();
        let a = agent(
            9200,
            Some(then),
            vec![
                web("10.0.21.2", ReportedState::Up),
                entry(
                    "192.0.2.10",
                    53,
                    Protocol::Udp,
                    "10.0.21.2",
                    ReportedState::Unknown,
                ),
            ],
        );
        let agents = [a];
        assert!(failed(&agents, then + STALE - Duration::from_millis(1)).is_empty());
        let j = judge(&vips(), &agents, then + STALE, STALE);
        assert_eq!(j.len(), 2);
        assert!(
            j.iter()
                .all(|j| j.failed == Some(Cause::Stale { unanswered: STALE }))
        );
        assert_eq!(
            failed_set(&j),
            [
                ("dns".to_string(), ip("10.0.21.2")),
                ("web".to_string(), ip("10.0.21.2"))
            ]
        );
    }

    #[test]
    fn no_report_fails_nothing() {
        let now = Instant::now();
        // Configured, polled, never answered: nothing is known, nothing is failed.
        let silent = AgentStatus::new(SocketAddr::new(ip("10.0.22.2"), 9200));
        assert!(judge(&vips(), &[silent], now + STALE * 10, STALE).is_empty());
        // An agent that reports only one backend says nothing of the others.
        let a = agent(9200, Some(now), vec![web("10.0.21.2", ReportedState::Up)]);
        let j = judge(&vips(), &[a], now, STALE);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].backend, ip("10.0.21.2"));
    }

    #[test]
    fn any_failing_reporter_fails_a_shared_backend() {
        let now = Instant::now();
        let up = agent(9200, Some(now), vec![web("10.0.21.2", ReportedState::Up)]);
        let down = agent(9201, Some(now), vec![web("10.0.21.2", ReportedState::Down)]);
        let j = judge(&vips(), &[up.clone(), down.clone()], now, STALE);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].agent.port(), 9201);
        assert_eq!(j[0].reported, ReportedState::Down);
        let j = judge(&vips(), &[down, up], now, STALE);
        assert_eq!(j[0].agent.port(), 9201);
    }

    #[test]
    fn tracker_counts_transitions_and_detection_times() {
        let now = Instant::now();
        let mut t = Tracker::default();
        let mut down = web("10.0.21.2", ReportedState::Down);
        down.failing_since_unix_ms = Some(10_000);
        let a = agent(
            9200,
            Some(now),
            vec![down, web("10.0.22.2", ReportedState::Up)],
        );
        let (tr, rows) = t.update(&judge(&vips(), &[a], now, STALE), now, 10_750);
        assert_eq!(tr.len(), 1);
        assert!(tr[0].failed);
        assert_eq!(tr[0].detect_ms, Some(750));
        assert_eq!(tr[0].cause.map(Cause::name), Some("down"));
        assert_eq!(t.applied(), [("web".to_string(), ip("10.0.21.2"))]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].failed, rows[0].transitions, rows[0].last_detect_ms),
            (true, 1, Some(750))
        );
        assert_eq!((rows[1].failed, rows[1].transitions), (false, 0));

        // The same state again: no transition.
        let mut down = web("10.0.21.2", ReportedState::Down);
        down.failing_since_unix_ms = Some(10_000);
        let a = agent(9200, Some(now), vec![down]);
        let (tr, _) = t.update(&judge(&vips(), &[a], now, STALE), now, 11_000);
        assert!(tr.is_empty());

        // Up again: recovered, and the history stays.
        let a = agent(9200, Some(now), vec![web("10.0.21.2", ReportedState::Up)]);
        let (tr, rows) = t.update(
            &judge(&vips(), std::slice::from_ref(&a), now, STALE),
            now,
            12_000,
        );
        assert_eq!(tr.len(), 1);
        assert!(!tr[0].failed);
        assert_eq!(tr[0].agent.map(|a| a.port()), Some(9200));
        assert_eq!(
            (
                rows[0].failed,
                rows[0].transitions,
                rows[0].last_transition_unix_ms
            ),
            (false, 2, Some(12_000))
        );
        assert!(t.applied().is_empty());

        // Stale: detection time is the time since the last answer.
        let later = now + Duration::from_millis(3500);
        let (tr, _) = t.update(&judge(&vips(), &[a], later, STALE), later, 15_500);
        assert_eq!(tr[0].detect_ms, Some(3500));
        assert_eq!(tr[0].cause.map(Cause::name), Some("stale"));

        // The agent disappears from the config: its backend recovers, no agent named.
        let (tr, rows) = t.update(&[], later, 16_000);
        assert_eq!(tr.len(), 1);
        assert_eq!((tr[0].failed, tr[0].agent), (false, None));
        assert!(rows.is_empty());
    }

    #[test]
    fn the_failure_time_stays_while_the_backend_stays_failed() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let down = |at: Instant| {
            judge(
                &vips(),
                &[agent(
                    9200,
                    Some(at),
                    vec![web("10.0.21.2", ReportedState::Down)],
                )],
                at,
                STALE,
            )
        };
        let up = |at: Instant| {
            judge(
                &vips(),
                &[agent(
                    9200,
                    Some(at),
                    vec![web("10.0.21.2", ReportedState::Up)],
                )],
                at,
                STALE,
            )
        };
        let since = |t: &Tracker| {
            t.failed_backends()
                .iter()
                .map(|f| f.since)
                .collect::<Vec<_>>()
        };
        t.update(&down(t0), t0, 1000);
        assert_eq!(since(&t), [t0]);
        assert_eq!(t.failed_backends()[0].vip, "web");
        // Judged again and again (every tick, every recompile): the time does not move.
        for s in 1..5 {
            let later = t0 + Duration::from_secs(s);
            t.update(&down(later), later, 1000 + s * 1000);
            assert_eq!(since(&t), [t0]);
        }
        // Recovered: forgotten; failed again: a new time, so a new grace.
        let t1 = t0 + Duration::from_secs(10);
        t.update(&up(t1), t1, 11_000);
        assert!(t.failed_backends().is_empty());
        let t2 = t0 + Duration::from_secs(11);
        t.update(&down(t2), t2, 12_000);
        assert_eq!(since(&t), [t2]);
    }

    #[test]
    fn clock_skew_never_gives_a_negative_detection_time() {
        let now = Instant::now();
        let mut down = web("10.0.21.2", ReportedState::Down);
        down.failing_since_unix_ms = Some(20_000); // the agent's clock is ahead
        let a = agent(9200, Some(now), vec![down]);
        let (tr, _) = Tracker::default().update(&judge(&vips(), &[a], now, STALE), now, 10_000);
        assert_eq!(tr[0].detect_ms, Some(0));
    }
}
