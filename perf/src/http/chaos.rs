//! `perf chaos-summary`: the verdict of the lab's chaos rounds.
//!
//! A chaos round injects one fault (kill -9 or SIGSTOP a MUX, drain a backend, fail a
//! backend…) while `perf http-soak` holds keep-alive connections through the VIP and opens new
//! ones, and the router logs its route events. The lab script writes each round's directory
//! `RESULTS/NN-name/` with:
//!
//! - `chaos.json` ([`ChaosSpec`]): what was done and when (unix ms), and what must hold
//!   ([`Expect`]);
//! - `soak.json`: the [`SoakReport`] of the round (with its UDP flows, if it held any);
//! - `routes.log`: the router's `ip monitor route` lines, each prefixed with the unix ms it was
//!   read at ([`parse_routes`] turns them into the VIP's number of paths over time).
//!
//! This module owns the comparison: one table of every round (failed requests, broken
//! connections, broken UDP flows when any round had some, failed and slow new connections, the
//! slowest request, when the route lost and regained a path, a drain's leftover flows) and the
//! `[ ok ]` / `[FAIL]` checks of each round's expectations plus the invariants that hold in
//! every round (all connections established, no keep-alive connection changed backend,
//! backends saw the client's own address). The expectations about breakage cover TCP
//! connections and UDP flows separately (a UDP flow breaks when another backend answers it or
//! none does: see [`super::udp`]). Figures the script measured itself and this module cannot
//! recompute (packets forwarded by the second-chance hop, its added latency) travel in
//! `chaos.json`'s `extra` and are printed under the round's checks. Timing facts come only from
//! the files, so the verdict can be recomputed from a results directory long after the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::soak::SoakReport;

/// What a round did and expects (`chaos.json`, written by the lab script).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosSpec {
    /// Short name (`mux-kill9`).
    pub name: String,
    /// One line for people.
    pub title: String,
    /// When the fault was injected.
    pub fault_unix_ms: u64,
    /// When the recovery action (SIGCONT, restart) started, if any.
    #[serde(default)]
    pub recover_unix_ms: Option<u64>,
    /// Drain rounds: the drain deadline.
    #[serde(default)]
    pub deadline_unix_ms: Option<u64>,
    /// A delay the script measured itself (e.g. backend failure detection).
    #[serde(default)]
    pub detect_ms: Option<u64>,
    /// Drain rounds: the drained backend's live flows on each MUX 1 s after the deadline.
    #[serde(default)]
    pub flows_after_deadline: Option<BTreeMap<String, u64>>,
    /// What must hold.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Figures measured by the script (`{"label": number or string, ...}`), printed as
    /// `label: value` under the round's checks, in the file's order; not checked.
    #[serde(default)]
    pub extra: Extras,
}

/// Labelled figures in their file order (a JSON object; values are any JSON, normally
/// numbers or strings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras(pub Vec<(String, serde_json::Value)>);

impl Extras {
    /// `label: value` with strings unquoted, anything else as compact JSON.
    fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|(k, v)| match v {
            serde_json::Value::String(t) => format!("{k}: {t}"),
            other => format!("{k}: {other}"),
        })
    }
}

impl Serialize for Extras {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Extras {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> serde::de::Visitor<'de> for Ordered {
            type Value = Extras;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of labelled figures")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Extras, E> {
                Ok(Extras::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Extras, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = a.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(Extras(v))
            }
        }
        d.deserialize_any(Ordered)
    }
}

/// A round's expectations; each unset one is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Expect {
    /// Broken connections allowed; broken UDP flows too, unless `udp_broken_max` is set.
    pub broken_max: Option<usize>,
    /// Broken UDP flows allowed (checked even without flows; default: `broken_max`, checked
    /// when the round had UDP flows).
    pub udp_broken_max: Option<usize>,
    /// At least this many UDP flows were answered during setup.
    pub udp_established_min: Option<usize>,
    /// Every broken connection and every broken UDP flow must have been on this backend.
    pub broken_only_backend: Option<String>,
    /// No connection may break before this time (drain: the deadline).
    pub broken_not_before_unix_ms: Option<u64>,
    /// Failed or slow new connections must all fall within [fault, fault + this].
    pub new_failures_within_ms: Option<u64>,
    /// The VIP's route must lose a path within this after the fault.
    pub withdraw_within_ms: Option<u64>,
    /// The route must get its path back within this after the recovery.
    pub restore_within_ms: Option<u64>,
    /// This backend must not answer after this time.
    pub backend_silent_after_unix_ms: Option<Silent>,
}

/// See [`Expect::backend_silent_after_unix_ms`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silent {
    /// The backend's name (its address).
    pub backend: String,
    /// No answer from it after this time.
    pub after_unix_ms: u64,
}

/// The VIP's number of usable paths from a time on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RouteEvent {
    /// When the event was read.
    pub t_unix_ms: u64,
    /// Paths of the VIP's route after it (0: no route).
    pub paths: usize,
}

/// Paths assumed before the first route event (the lab's two MUXes).
pub const PATHS_BEFORE_FIRST_EVENT: usize = 2;

/// A route line being read: its time, whether it is about the VIP, and its paths so far.
struct Pending {
    t: u64,
    about_vip: bool,
    deleted: bool,
    own_path: bool,
    nexthops: usize,
}

impl Pending {
    fn event(&self) -> Option<RouteEvent> {
        self.about_vip.then(|| RouteEvent {
            t_unix_ms: self.t,
            paths: if self.deleted {
                0
            } else if self.nexthops > 0 {
                self.nexthops
            } else {
                usize::from(self.own_path)
            },
        })
    }
}

/// Route types that forward nothing (the route is there, with no path).
const NO_PATH_TYPES: [&str; 3] = ["unreachable", "blackhole", "prohibit"];
/// Route types that are not a forwarding route to the VIP at all (ignored).
const OTHER_TYPES: [&str; 7] = [
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "nat",
    "throw",
    "unicast",
];

fn route_line(t: u64, body: &str, vip: &str) -> Pending {
    let mut tokens = body.split_whitespace().peekable();
    if tokens.peek() == Some(&"[ROUTE]") {
        tokens.next();
    }
    let deleted = tokens.next_if_eq(&"Deleted").is_some();
    let mut own_path = true;
    let mut about_vip = true;
    if let Some(kind) = tokens.peek().copied() {
        if NO_PATH_TYPES.contains(&kind) {
            own_path = false;
            tokens.next();
        } else if OTHER_TYPES.contains(&kind) {
            // `unicast` is the ordinary type when printed; the others are not the VIP's route.
            about_vip = kind == "unicast";
            tokens.next();
        }
    }
    let prefix = tokens.next().unwrap_or("");
    about_vip &= prefix == vip || prefix.strip_suffix("/32") == Some(vip);
    let rest: Vec<&str> = tokens.collect();
    own_path &= rest.iter().any(|w| *w == "via" || *w == "dev");
    Pending {
        t,
        about_vip,
        deleted,
        own_path,
        nexthops: 0,
    }
}

/// The VIP's path counts over time from `routes.log` (`UNIX_MS <ip monitor route line>`).
///
/// A route printed on one line has one path (`via` or `dev`); a route followed by indented
/// `nexthop` lines has one path per nexthop (a `dead` nexthop does not count); `Deleted`,
/// `unreachable`, `blackhole` and `prohibit` leave none. Other prefixes, and their nexthop
/// lines, are skipped; lines without a leading time are ignored.
pub fn parse_routes(text: &str, vip: &str) -> Vec<RouteEvent> {
    let mut events = Vec::new();
    let mut pending: Option<Pending> = None;
    for line in text.lines() {
        let line = line.trim_end();
        let Some((t, body)) = line.split_once(|c: char| c.is_ascii_whitespace()) else {
            continue;
        };
        let Ok(t) = t.parse::<u64>() else {
            continue;
        };
        let body = body.trim_start();
        if body.is_empty() {
            continue;
        }
        if body.starts_with("nexthop") {
            if let Some(p) = pending.as_mut()
                && !body.split_whitespace().any(|w| w == "dead")
            {
                p.nexthops += 1;
            }
            continue;
        }
        if let Some(e) = pending.take().and_then(|p| p.event()) {
            events.push(e);
        }
        pending = Some(route_line(t, body, vip));
    }
    if let Some(e) = pending.and_then(|p| p.event()) {
        events.push(e);
    }
    events
}

/// When the route lost and regained a path around a fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteTimes {
    /// Paths just before the fault.
    pub before: usize,
    /// From the fault to the first event with fewer paths.
    pub withdraw_ms: Option<u64>,
    /// From the recovery (or the loss, if later) to the first event with `before` paths again.
    pub restore_ms: Option<u64>,
}

/// Reads the timeline: paths before `fault` ([`PATHS_BEFORE_FIRST_EVENT`] if no event came
/// before it), the first loss at or after `fault`, and the first return to that count at or
/// after both `recover` and the loss.
pub fn route_times(events: &[RouteEvent], fault: u64, recover: Option<u64>) -> RouteTimes {
    let before = events
        .iter()
        .rev()
        .find(|e| e.t_unix_ms < fault)
        .map_or(PATHS_BEFORE_FIRST_EVENT, |e| e.paths);
    let lost = events
        .iter()
        .find(|e| e.t_unix_ms >= fault && e.paths < before)
        .map(|e| e.t_unix_ms);
    let restore_ms = match (lost, recover) {
        (Some(lost), Some(recover)) => events
            .iter()
            .find(|e| e.t_unix_ms >= recover.max(lost) && e.paths >= before)
            .map(|e| e.t_unix_ms.saturating_sub(recover)),
        _ => None,
    };
    RouteTimes {
        before,
        withdraw_ms: lost.map(|t| t - fault),
        restore_ms,
    }
}

/// One check and its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether it held.
    pub ok: bool,
    /// What was checked, with the figures.
    pub what: String,
}

/// One round's figures and checks (also the `--json` output).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoundOutcome {
    /// The round's directory name (`03-mux-kill9`).
    pub dir: String,
    /// See [`ChaosSpec::name`].
    pub name: String,
    /// See [`ChaosSpec::title`].
    pub title: String,
    /// See [`ChaosSpec::fault_unix_ms`].
    pub fault_unix_ms: u64,
    /// Why `soak.json` could not be read (the soak figures are then zero).
    pub soak_error: Option<String>,
    /// Keep-alive requests sent.
    pub requests: usize,
    /// Failed keep-alive requests (requests − ok).
    pub failed_requests: usize,
    /// Keep-alive connections asked for.
    pub connections: usize,
    /// Of which established.
    pub established: usize,
    /// Broken keep-alive connections.
    pub broken: usize,
    /// Broken connections by reason.
    pub broken_reasons: BTreeMap<String, usize>,
    /// First and last break, ms from the fault (negative: before it).
    pub broken_span_ms: Option<(i64, i64)>,
    /// New connections attempted.
    pub new_attempted: usize,
    /// Failed new connections in flight at or started after the fault, up to the window's
    /// end (`new_failures_within_ms` after the fault; no end when unset).
    pub new_failed_in_window: usize,
    /// The other failed new connections.
    pub new_failed_outside: usize,
    /// Failed new connections by reason.
    pub new_failed_reasons: BTreeMap<String, usize>,
    /// New connections whose connect took more than 200 ms.
    pub new_slow: usize,
    /// The slowest answered keep-alive request.
    pub slowest_request_ms: Option<u64>,
    /// UDP flows asked for (0: the round had none; the other `udp_` figures are then 0).
    pub udp_flows: usize,
    /// Of which answered during setup.
    pub udp_established: usize,
    /// Broken UDP flows.
    pub udp_broken: usize,
    /// Broken UDP flows by reason (`backend_changed`, `silent`).
    pub udp_broken_reasons: BTreeMap<String, usize>,
    /// First and last UDP break, ms from the fault (negative: before it).
    pub udp_broken_span_ms: Option<(i64, i64)>,
    /// UDP datagrams sent.
    pub udp_sent: usize,
    /// Of which never answered.
    pub udp_lost: usize,
    /// Of the answered, those answered after the timeout.
    pub udp_late: usize,
    /// Whether `routes.log` was read.
    pub routes_read: bool,
    /// The route's paths before the fault, and when it lost and regained one.
    pub route: RouteTimes,
    /// See [`ChaosSpec::detect_ms`].
    pub detect_ms: Option<u64>,
    /// See [`ChaosSpec::flows_after_deadline`].
    pub flows_after_deadline: Option<BTreeMap<String, u64>>,
    /// See [`ChaosSpec::extra`].
    pub extra: Extras,
    /// The checks.
    pub checks: Vec<Check>,
}

impl RoundOutcome {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Every round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChaosOutcome {
    /// The rounds, by directory name.
    pub rounds: Vec<RoundOutcome>,
    /// Checks that held.
    pub passed: usize,
    /// Checks.
    pub total: usize,
}

impl ChaosOutcome {
    /// Every check of every round held.
    pub fn all_passed(&self) -> bool {
        self.passed == self.total
    }
}

/// `fault+120 ms` / `fault−40 ms`.
fn rel(t: u64, fault: u64) -> String {
    if t >= fault {
        format!("fault+{} ms", t - fault)
    } else {
        format!("fault−{} ms", fault - t)
    }
}

/// `fault+120 ms` / `fault−40 ms` from an offset.
fn rel_ms(ms: i64) -> String {
    if ms >= 0 {
        format!("fault+{ms} ms")
    } else {
        format!("fault−{} ms", -ms)
    }
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_string()).or_default() += 1;
    }
    m
}

fn list(m: &BTreeMap<String, usize>) -> String {
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    v.join(", ")
}

/// Evaluates one round: its spec, its soak report (or why there is none) and its route events
/// (`None`: no `routes.log`).
pub fn evaluate_round(
    dir: &str,
    spec: &ChaosSpec,
    soak: Result<&SoakReport, &str>,
    routes: Option<&[RouteEvent]>,
) -> RoundOutcome {
    let empty = SoakReport::default();
    let s = soak.unwrap_or(&empty);
    let fault = spec.fault_unix_ms;
    let expect = spec.expect.clone().unwrap_or_default();
    let window_end = expect
        .new_failures_within_ms
        .map_or(u64::MAX, |w| fault.saturating_add(w));
    // In flight at the fault or started after it, and started before the window's end.
    let in_window = |t: u64, ms: u64| t.saturating_add(ms) >= fault && t <= window_end;
    let new_failed_in_window = s
        .new
        .failed
        .iter()
        .filter(|f| in_window(f.t_unix_ms, f.ms))
        .count();
    let slowest = (s.latency.count > 0).then(|| {
        let from_slow = s.slow.iter().map(|x| x.ms).max().unwrap_or(0);
        (s.latency.max_us / 1000).max(from_slow)
    });
    let route = routes.map_or_else(RouteTimes::default, |ev| {
        route_times(ev, fault, spec.recover_unix_ms)
    });
    let mut o = RoundOutcome {
        dir: dir.to_string(),
        name: spec.name.clone(),
        title: spec.title.clone(),
        fault_unix_ms: fault,
        soak_error: soak.err().map(str::to_string),
        requests: s.requests,
        failed_requests: s.requests.saturating_sub(s.ok),
        connections: s.connections,
        established: s.established,
        broken: s.broken.len(),
        broken_reasons: count_by(s.broken.iter().map(|b| b.reason.as_str())),
        broken_span_ms: s.broken.first().zip(s.broken.last()).map(|(a, b)| {
            (
                a.t_unix_ms as i64 - fault as i64,
                b.t_unix_ms as i64 - fault as i64,
            )
        }),
        new_attempted: s.new.attempted,
        new_failed_in_window,
        new_failed_outside: s.new.failed.len() - new_failed_in_window,
        new_failed_reasons: count_by(s.new.failed.iter().map(|f| f.reason.as_str())),
        new_slow: s.new.slow.len(),
        slowest_request_ms: slowest,
        routes_read: routes.is_some(),
        route,
        detect_ms: spec.detect_ms,
        flows_after_deadline: spec.flows_after_deadline.clone(),
        udp_flows: s.udp.flows,
        udp_established: s.udp.established,
        udp_broken: s.udp.broken.len(),
        udp_broken_reasons: count_by(s.udp.broken.iter().map(|b| b.reason.as_str())),
        udp_broken_span_ms: s.udp.broken.first().zip(s.udp.broken.last()).map(|(a, b)| {
            (
                a.t_unix_ms as i64 - fault as i64,
                b.t_unix_ms as i64 - fault as i64,
            )
        }),
        udp_sent: s.udp.sent,
        udp_lost: s.udp.lost,
        udp_late: s.udp.late,
        extra: spec.extra.clone(),
        checks: Vec::new(),
    };
    let has_udp = s.udp.flows > 0;
    let mut checks = Vec::new();
    let mut check = |ok: bool, what: String| checks.push(Check { ok, what });
    if let Err(e) = soak {
        check(false, format!("soak report: {e}"));
    }
    check(
        s.connections > 0 && s.established == s.connections,
        format!(
            "{} of {} keep-alive connections established",
            s.established, s.connections
        ),
    );
    let broken_detail = if s.broken.is_empty() {
        String::new()
    } else {
        let (first, last) = (
            s.broken[0].t_unix_ms,
            s.broken[s.broken.len() - 1].t_unix_ms,
        );
        let when = if first == last {
            format!("at {}", rel(first, fault))
        } else {
            format!("from {} to {}", rel(first, fault), rel(last, fault))
        };
        format!(": {} {when}", list(&o.broken_reasons))
    };
    if let Some(max) = expect.broken_max {
        check(
            s.broken.len() <= max,
            format!(
                "at most {max} connections broke ({}{broken_detail})",
                s.broken.len()
            ),
        );
    }
    let udp_max = expect
        .udp_broken_max
        .or(expect.broken_max.filter(|_| has_udp));
    if let Some(max) = udp_max {
        let detail = match o.udp_broken_span_ms {
            None => String::new(),
            Some((first, last)) if first == last => {
                format!(": {} at {}", list(&o.udp_broken_reasons), rel_ms(first))
            }
            Some((first, last)) => format!(
                ": {} from {} to {}",
                list(&o.udp_broken_reasons),
                rel_ms(first),
                rel_ms(last)
            ),
        };
        check(
            o.udp_broken <= max,
            format!(
                "at most {max} UDP flows broke ({} of {}{detail})",
                o.udp_broken, o.udp_established
            ),
        );
    }
    if let Some(min) = expect.udp_established_min {
        check(
            s.udp.established >= min,
            format!(
                "at least {min} UDP flows established ({} of {})",
                s.udp.established, s.udp.flows
            ),
        );
    }
    if let Some(b) = &expect.broken_only_backend {
        let others: Vec<String> = s
            .broken
            .iter()
            .filter(|x| x.backend.as_deref() != Some(b))
            .map(|x| x.backend.clone().unwrap_or_else(|| "none".into()))
            .collect();
        check(
            others.is_empty(),
            if others.is_empty() {
                format!(
                    "every broken connection was on {b} ({} broke)",
                    s.broken.len()
                )
            } else {
                format!(
                    "every broken connection was on {b}: {} of {} were not ({})",
                    others.len(),
                    s.broken.len(),
                    list(&count_by(others.iter().map(String::as_str)))
                )
            },
        );
    }
    if let Some(b) = &expect.broken_only_backend
        && has_udp
    {
        let others: Vec<&str> = s
            .udp
            .broken
            .iter()
            .filter(|x| x.backend != *b)
            .map(|x| x.backend.as_str())
            .collect();
        check(
            others.is_empty(),
            if others.is_empty() {
                format!(
                    "every broken UDP flow was on {b} ({} broke)",
                    s.udp.broken.len()
                )
            } else {
                format!(
                    "every broken UDP flow was on {b}: {} of {} were not ({})",
                    others.len(),
                    s.udp.broken.len(),
                    list(&count_by(others.into_iter()))
                )
            },
        );
    }
    if let Some(bound) = expect.broken_not_before_unix_ms {
        let early: Vec<_> = s.broken.iter().filter(|b| b.t_unix_ms < bound).collect();
        check(
            early.is_empty(),
            match early.first() {
                None => format!(
                    "no connection broke before {} ({} broke{broken_detail})",
                    rel(bound, fault),
                    s.broken.len()
                ),
                Some(first) => format!(
                    "no connection broke before {}: {} did, the first at {} ({})",
                    rel(bound, fault),
                    early.len(),
                    rel(first.t_unix_ms, fault),
                    first.reason
                ),
            },
        );
    }
    if let Some(w) = expect.new_failures_within_ms {
        let failed_out = s
            .new
            .failed
            .iter()
            .filter(|f| !in_window(f.t_unix_ms, f.ms));
        let slow_out = s
            .new
            .slow
            .iter()
            .filter(|x| !in_window(x.t_unix_ms, x.connect_ms));
        let mut outside: Vec<(u64, String)> = failed_out
            .map(|f| (f.t_unix_ms, f.reason.clone()))
            .chain(slow_out.map(|x| (x.t_unix_ms, format!("slow connect {} ms", x.connect_ms))))
            .collect();
        outside.sort();
        let head = format!(
            "new connections failed or slow only within [fault, fault+{w} ms] ({} failed, {} slow)",
            s.new.failed.len(),
            s.new.slow.len()
        );
        check(
            outside.is_empty(),
            match outside.first() {
                None => head,
                Some((t, why)) => format!(
                    "{head}: {} outside, the first at {} ({why})",
                    outside.len(),
                    rel(*t, fault)
                ),
            },
        );
    }
    if let Some(w) = expect.withdraw_within_ms {
        check(
            o.routes_read && route.withdraw_ms.is_some_and(|ms| ms <= w),
            match (o.routes_read, route.withdraw_ms) {
                (false, _) => format!("the route lost a path within {w} ms: no routes.log"),
                (true, None) => format!(
                    "the route lost a path within {w} ms of the fault: it never did ({} paths)",
                    route.before
                ),
                (true, Some(ms)) => {
                    format!("the route lost a path within {w} ms of the fault ({ms} ms)")
                }
            },
        );
    }
    if let Some(w) = expect.restore_within_ms {
        let (ok, why) = match (o.routes_read, spec.recover_unix_ms, route.withdraw_ms) {
            (false, _, _) => (false, "no routes.log".to_string()),
            (true, None, _) => (false, "no recover_unix_ms in chaos.json".to_string()),
            (true, Some(_), None) => (true, "it never lost one".to_string()),
            (true, Some(_), Some(_)) => match route.restore_ms {
                Some(ms) => (ms <= w, format!("{ms} ms")),
                None => (false, "it never did".to_string()),
            },
        };
        check(
            ok,
            format!("the route got its path back within {w} ms of the recovery ({why})"),
        );
    }
    if let Some(silent) = &expect.backend_silent_after_unix_ms {
        let last = s.last_response_unix_ms.get(&silent.backend).copied();
        check(
            soak.is_ok() && last.is_none_or(|t| t <= silent.after_unix_ms),
            format!(
                "{} answered nothing after {} (last answer {})",
                silent.backend,
                rel(silent.after_unix_ms, fault),
                last.map_or("never".to_string(), |t| format!("at {}", rel(t, fault)))
            ),
        );
    }
    check(
        s.backend_changed == 0,
        format!(
            "keep-alive connections kept their backend ({} answers from another)",
            s.backend_changed
        ),
    );
    let mismatches = s.client_mismatches + s.udp.client_mismatches;
    check(
        mismatches == 0,
        format!("backends saw the client's own address ({mismatches} answers did not)"),
    );
    o.checks = checks;
    o
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Evaluates every round directory under `results` that has a `chaos.json`, the VIP's route
/// being `vip` in `routes.log`.
pub fn evaluate(results: &Path, vip: &str) -> Result<ChaosOutcome, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map_err(|e| format!("cannot list {}: {e}", results.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("chaos.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(format!(
            "no chaos rounds (chaos.json) in {}",
            results.display()
        ));
    }
    let mut out = ChaosOutcome::default();
    for dir in dirs {
        let spec: ChaosSpec = read_json(&dir.join("chaos.json"))?;
        let soak: Result<SoakReport, String> = read_json(&dir.join("soak.json"));
        let routes = std::fs::read_to_string(dir.join("routes.log"))
            .ok()
            .map(|t| parse_routes(&t, vip));
        let name = dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let round = evaluate_round(
            &name,
            &spec,
            soak.as_ref().map_err(String::as_str),
            routes.as_deref(),
        );
        // The picture next to the figures (issue 17): best effort, a round without a soak
        // report has nothing to draw.
        if let Ok(s) = &soak {
            let svg =
                super::timeline::render(&spec.title, s, spec.fault_unix_ms, routes.as_deref());
            if let Err(e) = std::fs::write(dir.join("timeline.svg"), svg) {
                eprintln!(
                    "chaos-summary: cannot write {}: {e}",
                    dir.join("timeline.svg").display()
                );
            }
        }
        out.total += round.checks.len();
        out.passed += round.checks.iter().filter(|c| c.ok).count();
        out.rounds.push(round);
    }
    Ok(out)
}

/// Width of the table's first column (the fault's title), without the UDP column.
const TITLE_W: usize = 36;
/// Width of the UDP column (shown when a round had UDP flows; the title column gives it room).
const UDP_W: usize = 10;

fn or_dash(v: Option<u64>) -> String {
    v.map_or("–".to_string(), |v| v.to_string())
}

/// The table of every round, then each round's checks and the total.
pub fn render(o: &ChaosOutcome) -> String {
    let mut s = String::new();
    let udp = o.rounds.iter().any(|r| r.udp_flows > 0);
    let tw = if udp { TITLE_W - UDP_W - 1 } else { TITLE_W };
    let udp_col = |v: &str| {
        if udp {
            format!(" {v:>UDP_W$}")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        s,
        "{:<tw$} {:>8} {:>9}{} {:>10} {:>5} {:>8} {:>9} {:>8} {:>10}  verdict",
        "fault",
        "failed",
        "broken",
        udp_col("UDP broken"),
        "new failed",
        "new",
        "slowest",
        "path lost",
        "back",
        "drain"
    );
    let _ = writeln!(
        s,
        "{:<tw$} {:>8} {:>9}{} {:>10} {:>5} {:>8} {:>9} {:>8} {:>10}",
        "",
        "requests",
        "/ estab.",
        udp_col("/ estab."),
        "in / out",
        "slow",
        "req. ms",
        "after ms",
        "after ms",
        "flows left"
    );
    let _ = writeln!(s, "{}", "-".repeat(TITLE_W + 84));
    for r in &o.rounds {
        let title = if r.title.chars().count() <= tw {
            r.title.clone()
        } else {
            let _ = writeln!(s, "{}", r.title);
            format!("  ({})", r.name).chars().take(tw).collect()
        };
        let soak_cell = |v: String| {
            if r.soak_error.is_some() {
                "?".to_string()
            } else {
                v
            }
        };
        let route_cell = |v: Option<u64>| {
            if r.routes_read {
                or_dash(v)
            } else {
                "?".to_string()
            }
        };
        let drain = r
            .flows_after_deadline
            .as_ref()
            .map_or("–".to_string(), |m| {
                let v: Vec<String> = m.values().map(u64::to_string).collect();
                v.join("/")
            });
        let udp_cell = if r.udp_flows == 0 {
            "–".to_string()
        } else {
            soak_cell(format!("{}/{}", r.udp_broken, r.udp_established))
        };
        let _ = writeln!(
            s,
            "{:<tw$} {:>8} {:>9}{} {:>10} {:>5} {:>8} {:>9} {:>8} {:>10}  {}",
            title,
            soak_cell(r.failed_requests.to_string()),
            soak_cell(format!("{}/{}", r.broken, r.established)),
            udp_col(&udp_cell),
            soak_cell(format!(
                "{} / {}",
                r.new_failed_in_window, r.new_failed_outside
            )),
            soak_cell(r.new_slow.to_string()),
            soak_cell(or_dash(r.slowest_request_ms)),
            route_cell(r.route.withdraw_ms),
            route_cell(r.route.restore_ms),
            drain,
            if r.passed() { "pass" } else { "FAIL" }
        );
    }
    s.push('\n');
    for r in &o.rounds {
        let _ = writeln!(s, "{} · {}", r.dir, r.title);
        let mut facts = Vec::new();
        if !r.new_failed_reasons.is_empty() {
            facts.push(format!(
                "new connections failed: {}",
                list(&r.new_failed_reasons)
            ));
        }
        if let Some(d) = r.detect_ms {
            facts.push(format!("detection {d} ms (measured by the script)"));
        }
        if let Some(m) = &r.flows_after_deadline {
            let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
            facts.push(format!(
                "flows left 1 s after the deadline: {}",
                v.join(", ")
            ));
        }
        if !facts.is_empty() {
            let _ = writeln!(s, "         {}", facts.join("; "));
        }
        if r.udp_flows > 0 {
            let _ = writeln!(
                s,
                "         UDP: {} datagrams, {} lost, {} late{}",
                r.udp_sent,
                r.udp_lost,
                r.udp_late,
                if r.udp_broken_reasons.is_empty() {
                    String::new()
                } else {
                    format!("; flows broken: {}", list(&r.udp_broken_reasons))
                }
            );
        }
        for c in &r.checks {
            let _ = writeln!(s, "  [{}] {}", if c.ok { " ok " } else { "FAIL" }, c.what);
        }
        for line in r.extra.lines() {
            let _ = writeln!(s, "         {line}");
        }
    }
    s.push('\n');
    if o.all_passed() {
        let _ = writeln!(s, "PASS: {} of {} checks passed", o.passed, o.total);
    } else {
        let _ = writeln!(
            s,
            "FAIL: {} of {} checks failed ({} passed)",
            o.total - o.passed,
            o.total,
            o.passed
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::soak::{Broken, NewFailure, NewSlow};
    use crate::http::udp::UdpBroken;

    const VIP: &str = "192.0.2.10";

    /// Both MUXes, then mux1 withdrawn (kill -9), then back; other prefixes interleaved.
    const KILL: &str = "\
1700000000000 192.0.2.10 proto bird metric 32
1700000000000 \tnexthop via 10.0.11.2 dev mux1 weight 1
1700000000000 \tnexthop via 10.0.12.2 dev mux2 weight 1
1700000000100 10.0.99.0/24 via 10.0.11.2 dev mux1 proto bird metric 32
1700000010250 192.0.2.10 via 10.0.12.2 dev mux2 proto bird metric 32
1700000010251 Deleted 192.0.2.11 proto bird metric 32
1700000010251 \tnexthop via 10.0.11.2 dev mux1 weight 1
1700000010251 \tnexthop via 10.0.12.2 dev mux2 weight 1
1700000010300 192.0.2.100 via 10.0.12.2 dev mux2 proto bird metric 32
1700000015900 192.0.2.10 proto bird metric 32
1700000015900 nexthop via 10.0.11.2 dev mux1 weight 1
1700000015900 nexthop via 10.0.12.2 dev mux2 weight 1
";

    #[test]
    fn multipath_to_single_and_back() {
        let ev = parse_routes(KILL, VIP);
        let paths: Vec<(u64, usize)> = ev
            .iter()
            .map(|e| (e.t_unix_ms % 100_000, e.paths))
            .collect();
        assert_eq!(paths, [(0, 2), (10_250, 1), (15_900, 2)]);
        let t = route_times(&ev, 1_700_000_010_000, Some(1_700_000_013_000));
        assert_eq!(
            t,
            RouteTimes {
                before: 2,
                withdraw_ms: Some(250),
                restore_ms: Some(2900)
            }
        );
    }

    #[test]
    fn deleted_multipath_has_no_path_and_its_nexthops_do_not_count() {
        let log = "\
1000 Deleted 192.0.2.10 proto bird metric 32
1000 \tnexthop via 10.0.11.2 dev mux1 weight 1
1000 \tnexthop via 10.0.12.2 dev mux2 weight 1
1200 192.0.2.10/32 via 10.0.12.2 dev mux2 proto bird metric 32
1300 unreachable 192.0.2.10 proto bird metric 32
1400 local 192.0.2.10 dev lo table local proto kernel scope host src 192.0.2.10
1500 192.0.2.10 proto bird metric 32
1500 \tnexthop via 10.0.11.2 dev mux1 weight 1 dead linkdown
1500 \tnexthop via 10.0.12.2 dev mux2 weight 1
garbage line
";
        let ev = parse_routes(log, VIP);
        let paths: Vec<(u64, usize)> = ev.iter().map(|e| (e.t_unix_ms, e.paths)).collect();
        assert_eq!(paths, [(1000, 0), (1200, 1), (1300, 0), (1500, 1)]);
        // No event before the fault: 2 paths assumed; the first loss is the Deleted.
        let t = route_times(&ev, 990, Some(1100));
        assert_eq!(t.before, 2);
        assert_eq!(t.withdraw_ms, Some(10));
        assert_eq!(t.restore_ms, None, "never back to 2 paths");
        // Nothing about the VIP after the fault: no withdrawal, no restore.
        let t = route_times(&ev, 2000, Some(2500));
        assert_eq!((t.before, t.withdraw_ms, t.restore_ms), (1, None, None));
    }

    fn spec(expect: Expect) -> ChaosSpec {
        ChaosSpec {
            name: "mux-kill9".into(),
            title: "kill -9 mux1, restart it 3 s later".into(),
            fault_unix_ms: 10_000,
            recover_unix_ms: Some(13_000),
            expect: Some(expect),
            ..ChaosSpec::default()
        }
    }

    fn soak() -> SoakReport {
        let mut r = SoakReport {
            connections: 4,
            established: 4,
            requests: 400,
            ok: 399,
            ..SoakReport::default()
        };
        r.latency.count = 399;
        r.latency.max_us = 180_000;
        r.broken.push(Broken {
            conn: 2,
            t_unix_ms: 10_020,
            reason: "reset".into(),
            backend: Some("10.0.21.2".into()),
            local: None,
        });
        r.last_response_unix_ms.insert("10.0.21.2".into(), 10_010);
        r.last_response_unix_ms.insert("10.0.22.2".into(), 24_000);
        r.new.attempted = 280;
        r.new.failed.push(NewFailure {
            t_unix_ms: 9_950,
            reason: "read_timeout".into(),
            ms: 5_000,
        });
        r.new.slow.push(NewSlow {
            t_unix_ms: 10_300,
            connect_ms: 1_004,
        });
        r
    }

    fn routes() -> Vec<RouteEvent> {
        vec![
            RouteEvent {
                t_unix_ms: 10_240,
                paths: 1,
            },
            RouteEvent {
                t_unix_ms: 15_000,
                paths: 2,
            },
        ]
    }

    fn full_expect() -> Expect {
        Expect {
            broken_max: Some(1),
            udp_broken_max: None,
            udp_established_min: None,
            broken_only_backend: Some("10.0.21.2".into()),
            broken_not_before_unix_ms: Some(10_000),
            new_failures_within_ms: Some(1_000),
            withdraw_within_ms: Some(300),
            restore_within_ms: Some(3_000),
            backend_silent_after_unix_ms: Some(Silent {
                backend: "10.0.21.2".into(),
                after_unix_ms: 10_100,
            }),
        }
    }

    #[test]
    fn expectations_that_hold_pass() {
        let r = evaluate_round(
            "03-mux-kill9",
            &spec(full_expect()),
            Ok(&soak()),
            Some(&routes()),
        );
        assert!(r.passed(), "{:#?}", r.checks);
        assert_eq!(r.checks.len(), 10);
        assert_eq!((r.new_failed_in_window, r.new_failed_outside), (1, 0));
        assert_eq!(
            (r.route.withdraw_ms, r.route.restore_ms),
            (Some(240), Some(2000))
        );
        assert_eq!(r.slowest_request_ms, Some(180));
    }

    #[test]
    fn each_broken_expectation_fails_with_its_reason() {
        let mut s = soak();
        s.broken.push(Broken {
            conn: 3,
            t_unix_ms: 9_000,
            reason: "closed".into(),
            backend: Some("10.0.22.2".into()),
            local: None,
        });
        s.broken.sort_by_key(|b| b.t_unix_ms);
        s.new.failed.push(NewFailure {
            t_unix_ms: 12_000,
            reason: "connect_timeout".into(),
            ms: 3_000,
        });
        s.last_response_unix_ms.insert("10.0.21.2".into(), 11_000);
        s.backend_changed = 1;
        let late = vec![RouteEvent {
            t_unix_ms: 11_000,
            paths: 1,
        }];
        let r = evaluate_round("03-mux-kill9", &spec(full_expect()), Ok(&s), Some(&late));
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        assert_eq!(failed.len(), 8, "{failed:#?}");
        let all = failed.join("\n");
        for needle in [
            "at most 1 connections broke (2: closed 1, reset 1 from fault−1000 ms",
            "1 of 2 were not (10.0.22.2 1)",
            "1 did, the first at fault−1000 ms (closed)",
            "1 outside, the first at fault+2000 ms (connect_timeout)",
            "within 300 ms of the fault (1000 ms)",
            "recovery (it never did)",
            "last answer at fault+1000 ms",
            "(1 answers from another)",
        ] {
            assert!(all.contains(needle), "{needle:?} not in\n{all}");
        }
        // No route log and no soak report: failures, not panics.
        let r = evaluate_round(
            "x",
            &spec(full_expect()),
            Err("cannot read soak.json"),
            None,
        );
        assert!(!r.passed());
        assert!(r.checks[0].what.contains("cannot read soak.json"));
        assert!(r.checks.iter().any(|c| c.what.contains("no routes.log")));
    }

    #[test]
    fn the_table_fits_in_120_columns_and_wraps_long_titles() {
        let mut long = spec(Expect {
            broken_max: Some(0),
            ..Expect::default()
        });
        long.title =
            "drain backend 10.0.21.2 with a 5 s deadline while new connections keep arriving"
                .into();
        long.flows_after_deadline = Some([("mux1".to_string(), 0), ("mux2".to_string(), 3)].into());
        let a = evaluate_round(
            "03-mux-kill9",
            &spec(full_expect()),
            Ok(&soak()),
            Some(&routes()),
        );
        let b = evaluate_round("05-drain", &long, Ok(&soak()), Some(&[]));
        let o = ChaosOutcome {
            passed: a.checks.len() + b.checks.len() - 1,
            total: a.checks.len() + b.checks.len(),
            rounds: vec![a, b],
        };
        let text = render(&o);
        println!("{text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} chars: {line}",
                line.chars().count()
            );
        }
        assert!(text.contains("\ndrain backend 10.0.21.2 with a 5 s deadline"));
        assert!(text.contains("  (mux-kill9)"));
        assert!(text.contains("[FAIL] at most 0 connections broke (1: reset 1 at fault+20 ms)"));
        assert!(
            text.ends_with("FAIL: 1 of 14 checks failed (13 passed)\n"),
            "{text}"
        );
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["rounds"][0]["route"]["withdraw_ms"], 240);
        assert_eq!(json["rounds"][1]["flows_after_deadline"]["mux2"], 3);
    }

    /// `soak()` with 200 UDP flows: one moved to another backend, one gone silent.
    fn soak_udp() -> SoakReport {
        let mut r = soak();
        let u = &mut r.udp;
        u.flows = 200;
        u.established = 200;
        u.sent = 30_000;
        u.answered = 29_990;
        u.lost = 10;
        u.late = 2;
        for (flow, t, reason, new) in [
            (7, 10_050, "backend_changed", Some("10.0.22.2")),
            (9, 10_400, "silent", None),
        ] {
            u.broken.push(UdpBroken {
                flow,
                t_unix_ms: t,
                reason: reason.into(),
                backend: "10.0.21.2".into(),
                new_backend: new.map(str::to_string),
                local: None,
            });
        }
        r
    }

    fn failed(r: &RoundOutcome) -> Vec<&str> {
        r.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect()
    }

    #[test]
    fn udp_flows_are_held_to_the_expectations_separately() {
        // broken_max alone covers TCP (1 broke: ok) and UDP (2 broke: not ok).
        let r = evaluate_round(
            "07-sc",
            &spec(full_expect()),
            Ok(&soak_udp()),
            Some(&routes()),
        );
        assert_eq!(r.checks.len(), 12, "{:#?}", r.checks);
        assert_eq!(
            failed(&r),
            [
                "at most 1 UDP flows broke (2 of 200: backend_changed 1, silent 1 from fault+50 ms to fault+400 ms)"
            ]
        );
        assert_eq!(
            (r.udp_flows, r.udp_established, r.udp_broken),
            (200, 200, 2)
        );
        assert_eq!((r.udp_sent, r.udp_lost, r.udp_late), (30_000, 10, 2));
        assert!(
            r.checks
                .iter()
                .any(|c| c.ok && c.what == "every broken UDP flow was on 10.0.21.2 (2 broke)")
        );
        // udp_broken_max overrides it for UDP; udp_established_min is checked.
        let e = Expect {
            udp_broken_max: Some(2),
            udp_established_min: Some(200),
            ..full_expect()
        };
        let r = evaluate_round("07-sc", &spec(e.clone()), Ok(&soak_udp()), Some(&routes()));
        assert!(r.passed(), "{:#?}", r.checks);
        assert_eq!(r.checks.len(), 13);
        // A UDP flow broken on another backend, too few established, a wrong client address.
        let mut s = soak_udp();
        s.udp.broken[1].backend = "10.0.23.2".into();
        s.udp.established = 150;
        s.udp.client_mismatches = 3;
        let r = evaluate_round("07-sc", &spec(e), Ok(&s), Some(&routes()));
        assert_eq!(
            failed(&r),
            [
                "at least 200 UDP flows established (150 of 200)",
                "every broken UDP flow was on 10.0.21.2: 1 of 2 were not (10.0.23.2 1)",
                "backends saw the client's own address (3 answers did not)",
            ]
        );
        // Without UDP flows: broken_max and broken_only_backend add no UDP check, but an
        // explicit UDP expectation is checked (and fails when the round had no flows).
        let r = evaluate_round("03", &spec(full_expect()), Ok(&soak()), Some(&routes()));
        assert_eq!(r.checks.len(), 10);
        let e = Expect {
            udp_broken_max: Some(0),
            udp_established_min: Some(1),
            ..full_expect()
        };
        let r = evaluate_round("03", &spec(e), Ok(&soak()), Some(&routes()));
        assert_eq!(
            failed(&r),
            ["at least 1 UDP flows established (0 of 0)"],
            "{:#?}",
            r.checks
        );
    }

    #[test]
    fn the_udp_column_and_the_extras_keep_the_table_in_120_columns() {
        let mut sc = spec(Expect {
            broken_max: Some(0),
            ..Expect::default()
        });
        sc.name = "sc-weight".into();
        sc.title = "weight halved, mux2 restarted".into();
        sc.extra = serde_json::from_str(
            r#"{"second-chance packets forwarded": 1234, "forwarded latency p50 ms": 0.21,
                "agent": "host1"}"#,
        )
        .unwrap();
        let mut quiet = soak_udp();
        quiet.broken.clear();
        quiet.udp.broken.clear();
        let a = evaluate_round(
            "03-mux-kill9",
            &spec(full_expect()),
            Ok(&soak()),
            Some(&routes()),
        );
        let b = evaluate_round("07-sc-weight", &sc, Ok(&quiet), Some(&routes()));
        let c = evaluate_round("08-sc-x", &sc, Ok(&soak_udp()), Some(&routes()));
        let (passed, total) = [&a, &b, &c].iter().fold((0, 0), |(p, t), r| {
            (
                p + r.checks.iter().filter(|c| c.ok).count(),
                t + r.checks.len(),
            )
        });
        let o = ChaosOutcome {
            passed,
            total,
            rounds: vec![a, b, c],
        };
        let text = render(&o);
        println!("{text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} chars: {line}",
                line.chars().count()
            );
        }
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(" UDP broken "), "{text}");
        // The kill round had no UDP flows: a dash; the others: broken / established.
        let row = |name: &str| *lines.iter().find(|l| l.contains(name)).unwrap();
        assert!(row("(mux-kill9)").contains("1/4          –"), "{text}");
        // Titles wider than the narrower title column go on their own line.
        assert!(text.contains("\nweight halved, mux2 restarted\n"), "{text}");
        assert!(row("(sc-weight)").contains(" 0/4      0/200 "), "{text}");
        assert!(
            text.contains(
                "[FAIL] at most 0 UDP flows broke (2 of 200: backend_changed 1, silent 1"
            )
        );
        assert!(text.contains(
            "UDP: 30000 datagrams, 10 lost, 2 late; flows broken: backend_changed 1, silent 1"
        ));
        // The extras follow the checks, in the file's order.
        let extras = "         second-chance packets forwarded: 1234\n         forwarded latency p50 ms: 0.21\n         agent: host1\n";
        assert!(
            text.contains(&format!(
                "[ ok ] backends saw the client's own address (0 answers did not)\n{extras}"
            )),
            "{text}"
        );
        let json = serde_json::to_string(&o).unwrap();
        assert!(
            json.contains(r#""extra":{"second-chance packets forwarded":1234,"forwarded latency p50 ms":0.21,"agent":"host1"}"#),
            "{json}"
        );
        assert!(json.contains(r#""udp_broken_reasons":{"backend_changed":1,"silent":1}"#));
    }

    #[test]
    fn a_results_directory_is_read_round_by_round() {
        let dir = std::env::temp_dir().join(format!("perf-chaos-{}", std::process::id()));
        let round = dir.join("03-mux-kill9");
        std::fs::create_dir_all(&round).unwrap();
        std::fs::create_dir_all(dir.join("01-http")).unwrap();
        let chaos = r#"{"name":"mux-kill9","title":"kill -9 mux1, restart it 3 s later",
            "fault_unix_ms":1700000010000,"recover_unix_ms":1700000013000,"unknown":1,
            "expect":{"broken_max":0,"withdraw_within_ms":1000,"restore_within_ms":30000},
            "extra":{"packets forwarded":12,"hop":"mux1"}}"#;
        std::fs::write(round.join("chaos.json"), chaos).unwrap();
        let mut s = soak();
        s.broken.clear();
        s.ok = s.requests;
        std::fs::write(round.join("soak.json"), serde_json::to_string(&s).unwrap()).unwrap();
        std::fs::write(round.join("routes.log"), KILL).unwrap();
        let o = evaluate(&dir, VIP).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(o.rounds.len(), 1);
        assert!(o.all_passed(), "{}", render(&o));
        assert_eq!(o.rounds[0].route.withdraw_ms, Some(250));
        assert_eq!(o.rounds[0].route.restore_ms, Some(2900));
        assert_eq!(
            o.rounds[0].extra,
            Extras(vec![
                ("packets forwarded".into(), 12.into()),
                ("hop".into(), "mux1".into())
            ])
        );
        // `extra` may be null or absent.
        for text in [
            r#"{"name":"a","title":"b","fault_unix_ms":1,"extra":null}"#,
            r#"{"name":"a","title":"b","fault_unix_ms":1}"#,
        ] {
            let spec: ChaosSpec = serde_json::from_str(text).unwrap();
            assert_eq!(spec.extra, Extras::default());
        }
        assert!(
            serde_json::from_str::<ChaosSpec>(
                r#"{"name":"a","title":"b","fault_unix_ms":1,"extra":[1]}"#
            )
            .is_err()
        );
    }
}
