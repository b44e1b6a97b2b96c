//! Load-aware weights: effective Maglev weights moved by the load the host agents measure.
//!
//! # Why
//!
//! A flow hash balances connection *counts*: with long-lived connections of unequal weight,
//! one backend ends up with the heavy ones while a newly added backend gets almost nothing
//! (only new connections move to it). No anchor (Katran, Maglev, GLB, IPVS) adjusts weights
//! from measured load; our host agents sit next to every backend and measure it in both
//! directions (`/v1/backends` → `load`), so the MUX can.
//!
//! # The rule ([`LoadWeights::revise`])
//!
//! For each VIP with `[vip.load_aware]`, every `interval_seconds`: the participants are its
//! active backends (not draining, not failed) whose agent reported a load. Each has a
//! configured weight `w` and a factor `f` (1 at first), so an effective weight `e = w·f`, and a
//! load `L` (active connections, or bytes per second both ways). The VIP's load per unit of
//! effective weight is `r̄ = ΣL / Σe`; a backend's is `r = L / e`. A backend whose `r` is within
//! `hysteresis` of `r̄` keeps its factor. Otherwise its factor moves toward `f · r̄ / r` (what
//! would make its share of new flows match its share of load), by at most `max_step` of
//! itself per revision, and stays within `[min, max]` of the configured weight. A backend with
//! no load grows by `max_step`. Fewer than two participants, or no load at all: nothing moves.
//!
//! # What moves
//!
//! Only new flows. A changed factor is a new Maglev table published through the normal
//! snapshot swap: established flows keep their backend through the flow table, and through
//! second chance on a MUX without their entry (the change is a generation like a reload). The
//! bounds, the step and the hysteresis keep the tables from flapping; each change is logged
//! with its reason and shown in `/v1/status` and `/metrics`.
//!
//! # Determinism across MUXes
//!
//! Every MUX polls the same agents and applies the same rule, but at its own moments: two
//! MUXes may run slightly different factors for a while, and so send a *new* flow to
//! different backends. That costs nothing for established flows (flow tables, second chance);
//! it is the price of measuring instead of configuring, and it is bounded by one step.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::config::{BackendState, LoadSignal, Vip};

use crate::control::health_feed::{AgentStatus, ReportedLoad};

/// A backend's factor changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightChange {
    /// The VIP's name.
    pub vip: String,
    /// The backend.
    pub backend: IpAddr,
    /// The factor before.
    pub from: f64,
    /// The factor now.
    pub to: f64,
    /// Why, in words (load relative to the VIP's average per unit of weight).
    pub reason: String,
}

/// One backend's load-aware state, for `/v1/status` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightView {
    /// The VIP's name.
    pub vip: String,
    /// The backend.
    pub backend: IpAddr,
    /// The configured weight.
    pub weight: u32,
    /// Its factor.
    pub factor: f64,
    /// The load last used (connections, or bytes per second).
    pub load: Option<f64>,
    /// The reason of its last change, if it had one.
    pub last_change: Option<String>,
}

/// The factors of every load-aware VIP's backends, and when each VIP was last revised.
#[derive(Debug, Default)]
pub struct LoadWeights {
    factors: HashMap<(String, IpAddr), f64>,
    loads: HashMap<(String, IpAddr), f64>,
    reasons: HashMap<(String, IpAddr), String>,
    revised: HashMap<String, Instant>,
}

/// The load a report gives for `signal`.
pub fn load_of(load: &ReportedLoad, signal: LoadSignal) -> f64 {
    match signal {
        LoadSignal::Connections => load.active_connections as f64,
        LoadSignal::Bytes => load.bytes_in_per_s + load.bytes_out_per_s,
    }
}

/// The loads the agents last reported for `vip`'s backends (a backend several agents report is
/// summed: each sees its own share).
pub fn reported_loads(vip: &Vip, agents: &[AgentStatus], signal: LoadSignal) -> Vec<(IpAddr, f64)> {
    let mut out: Vec<(IpAddr, f64)> = Vec::new();
    for report in agents.iter().filter_map(|a| a.report.as_ref()) {
        for b in &report.backends {
            let Some(load) = &b.load else { continue };
            if b.vip != vip.address() || b.port != vip.port() || b.protocol != vip.protocol() {
                continue;
            }
            if !vip.backends().iter().any(|c| c.address() == b.dip) {
                continue;
            }
            let l = load_of(load, signal);
            match out.iter_mut().find(|(a, _)| *a == b.dip) {
                Some((_, sum)) => *sum += l,
                None => out.push((b.dip, l)),
            }
        }
    }
    out
}

impl LoadWeights {
    /// The factor of `backend` of `vip` (1 when it has none).
    pub fn factor(&self, vip: &str, backend: IpAddr) -> f64 {
        self.factors
            .get(&(vip.to_string(), backend))
            .copied()
            .unwrap_or(1.0)
    }

    /// Every factor that is not 1, for the compile step.
    pub fn factors(&self) -> BTreeMap<(String, IpAddr), f64> {
        self.factors
            .iter()
            .filter(|(_, f)| (**f - 1.0).abs() > 1e-9)
            .map(|(k, f)| (k.clone(), *f))
            .collect()
    }

    /// Revises the factors of every load-aware VIP of `vips` whose interval has passed at
    /// `now`. `loads(vip)` gives the reported load per backend; `failed` says whether the
    /// health feed fails a backend. Returns the changes (see the module docs for the rule).
    pub fn revise(
        &mut self,
        vips: &[Vip],
        loads: impl Fn(&Vip, LoadSignal) -> Vec<(IpAddr, f64)>,
        failed: impl Fn(&str, IpAddr) -> bool,
        now: Instant,
    ) -> Vec<WeightChange> {
        // Forget VIPs and backends that left the configuration, or left load-aware weights.
        self.factors.retain(|(vip, backend), _| {
            vips.iter().any(|v| {
                v.name() == vip
                    && v.load_aware().is_some()
                    && v.backends().iter().any(|b| b.address() == *backend)
            })
        });
        let mut changes = Vec::new();
        for vip in vips {
            let Some(rule) = vip.load_aware() else {
                continue;
            };
            let due = self
                .revised
                .get(vip.name())
                .is_none_or(|t| now.saturating_duration_since(*t) >= rule.interval);
            if !due {
                continue;
            }
            self.revised.insert(vip.name().to_string(), now);
            let reported = loads(vip, rule.signal);
            // (backend, configured weight, factor, load)
            let members: Vec<(IpAddr, f64, f64, f64)> = vip
                .backends()
                .iter()
                .filter(|b| b.state() == BackendState::Active && b.weight() > 0)
                .filter(|b| !failed(vip.name(), b.address()))
                .filter_map(|b| {
                    let load = reported.iter().find(|(a, _)| *a == b.address())?.1;
                    let f = self.factor(vip.name(), b.address());
                    Some((b.address(), f64::from(b.weight()), f, load))
                })
                .collect();
            for (backend, _, _, load) in &members {
                self.loads.insert((vip.name().to_string(), *backend), *load);
            }
            let total_load: f64 = members.iter().map(|m| m.3).sum();
            let total_weight: f64 = members.iter().map(|m| m.1 * m.2).sum();
            if members.len() < 2 || total_load <= 0.0 || total_weight <= 0.0 {
                continue;
            }
            let average = total_load / total_weight;
            for (backend, w, f, load) in members {
                let per_weight = load / (w * f);
                let relative = per_weight / average;
                if (relative - 1.0).abs() <= rule.hysteresis {
                    continue;
                }
                let target = if load > 0.0 {
                    f / relative
                } else {
                    f * (1.0 + rule.max_step)
                };
                let to = target
                    .clamp(f * (1.0 - rule.max_step), f * (1.0 + rule.max_step))
                    .clamp(rule.min_factor, rule.max_factor);
                if (to - f).abs() < 1e-6 {
                    continue;
                }
                let reason = format!(
                    "{} {} is {relative:.2}× the VIP's average per unit of weight: factor \
                     {f:.2} → {to:.2}",
                    rule.signal,
                    if matches!(rule.signal, LoadSignal::Bytes) {
                        format!("{load:.0}/s")
                    } else {
                        format!("{load:.0}")
                    },
                );
                let key = (vip.name().to_string(), backend);
                self.factors.insert(key.clone(), to);
                self.reasons.insert(key, reason.clone());
                changes.push(WeightChange {
                    vip: vip.name().to_string(),
                    backend,
                    from: f,
                    to,
                    reason,
                });
            }
        }
        changes
    }

    /// Every load-aware VIP's backends with their factors, loads and last reasons.
    pub fn views(&self, vips: &[Vip]) -> Vec<WeightView> {
        let mut out = Vec::new();
        for vip in vips.iter().filter(|v| v.load_aware().is_some()) {
            for b in vip.backends() {
                let key = (vip.name().to_string(), b.address());
                out.push(WeightView {
                    vip: vip.name().to_string(),
                    backend: b.address(),
                    weight: b.weight(),
                    factor: self.factor(vip.name(), b.address()),
                    load: self.loads.get(&key).copied(),
                    last_change: self.reasons.get(&key).cloned(),
                });
            }
        }
        out
    }
}

/// Scale of effective weights: a load-aware VIP whose factors are not all 1 gets Maglev
/// weights `round(weight × factor × SCALE)`, so factors keep two decimals of precision.
pub const SCALE: f64 = 100.0;

/// The Maglev weight of a backend of configured weight `weight` in a VIP where `scaled` says
/// whether any factor differs from 1.
pub fn effective_weight(weight: u32, factor: f64, scaled: bool) -> u32 {
    if !scaled {
        return weight;
    }
    let w = (f64::from(weight) * factor * SCALE).round();
    (w as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vips(extra: &str) -> Vec<Vip> {
        let text = format!(
            "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[tunnel]\nsource_v4 = \"10.0.0.11\"\n\
             [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
             {extra}\
             [[vip.backend]]\naddress = \"10.1.0.1\"\n\
             [[vip.backend]]\naddress = \"10.1.0.2\"\n\
             [[vip.backend]]\naddress = \"10.1.0.3\"\nweight = 200\n"
        );
        crate::config::parse(&text, "t.toml")
            .unwrap()
            .vips()
            .to_vec()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const ON: &str = "[vip.load_aware]\nhysteresis_percent = 10\nmax_step_percent = 25\n";

    #[test]
    fn an_overloaded_backend_loses_weight_by_at_most_a_step_and_an_idle_one_gains() {
        let v = vips(ON);
        let mut lw = LoadWeights::default();
        let t0 = Instant::now();
        // Weights 100, 100, 200; loads 300, 100, 200 connections: per unit of weight 3, 1, 1
        // against an average of 600 / 400 = 1.5.
        let loads = |_: &Vip, _| {
            vec![
                (ip("10.1.0.1"), 300.0),
                (ip("10.1.0.2"), 100.0),
                (ip("10.1.0.3"), 200.0),
            ]
        };
        let changes = lw.revise(&v, loads, |_, _| false, t0);
        assert_eq!(changes.len(), 3, "{changes:?}");
        // 10.1.0.1: target 1 / 2 = 0.5, limited to 0.75; the others: target 1.5, limited to 1.25.
        assert_eq!(lw.factor("web", ip("10.1.0.1")), 0.75);
        assert_eq!(lw.factor("web", ip("10.1.0.2")), 1.25);
        assert_eq!(lw.factor("web", ip("10.1.0.3")), 1.25);
        assert!(
            changes[0].reason.contains("2.00× the VIP's average"),
            "{}",
            changes[0].reason
        );
        // Not before the interval (10 s by default).
        assert!(
            lw.revise(&v, loads, |_, _| false, t0 + Duration::from_secs(5))
                .is_empty()
        );
        // Balanced load (per effective weight) within the hysteresis: nothing moves.
        let even = |_: &Vip, _| {
            vec![
                (ip("10.1.0.1"), 75.0),
                (ip("10.1.0.2"), 125.0),
                (ip("10.1.0.3"), 250.0),
            ]
        };
        assert!(
            lw.revise(&v, even, |_, _| false, t0 + Duration::from_secs(10))
                .is_empty()
        );
        // An idle backend grows by one step; the compile step sees every factor that is not 1.
        let idle = |_: &Vip, _| {
            vec![
                (ip("10.1.0.1"), 75.0),
                (ip("10.1.0.2"), 0.0),
                (ip("10.1.0.3"), 250.0),
            ]
        };
        lw.revise(&v, idle, |_, _| false, t0 + Duration::from_secs(20));
        assert_eq!(lw.factor("web", ip("10.1.0.2")), 1.5625);
        assert_eq!(lw.factors().len(), 3);
    }

    #[test]
    fn factors_stay_within_bounds_and_only_load_aware_healthy_reported_backends_take_part() {
        let v = vips("[vip.load_aware]\nmin_percent = 50\nmax_step_percent = 100\n");
        let mut lw = LoadWeights::default();
        let mut t = Instant::now();
        let loads = |_: &Vip, _| {
            vec![
                (ip("10.1.0.1"), 1000.0),
                (ip("10.1.0.2"), 1.0),
                (ip("10.1.0.3"), 2.0),
            ]
        };
        for _ in 0..10 {
            lw.revise(&v, loads, |_, _| false, t);
            t += Duration::from_secs(10);
        }
        assert_eq!(lw.factor("web", ip("10.1.0.1")), 0.5, "min 50 %");
        assert_eq!(lw.factor("web", ip("10.1.0.2")), 4.0, "max 400 %");
        // A failed backend does not take part: with one participant left nothing moves.
        let mut lw = LoadWeights::default();
        let two = |_: &Vip, _| vec![(ip("10.1.0.1"), 1000.0), (ip("10.1.0.2"), 1.0)];
        let failed = |_: &str, b: IpAddr| b == ip("10.1.0.2");
        assert!(lw.revise(&v, two, failed, t).is_empty());
        // A VIP without [vip.load_aware] never moves, and its factors are forgotten.
        let off = vips("");
        assert!(
            lw.revise(&off, loads, |_, _| false, t + Duration::from_secs(60))
                .is_empty()
        );
        assert!(lw.factors().is_empty());
    }

    #[test]
    fn effective_weights_scale_only_when_a_factor_moved() {
        assert_eq!(effective_weight(100, 1.0, false), 100);
        assert_eq!(effective_weight(100, 1.0, true), 10_000);
        assert_eq!(effective_weight(1, 0.25, true), 25);
        assert_eq!(effective_weight(1, 0.001, true), 1);
    }
}
