//! `perf http-summary`: the checks of the lab's HTTP rounds.
//!
//! Reads every directory of a results directory that holds an `http-round.json` (the packet
//! rounds of `perf lab-summary` hold `round.json` instead), with `http-load.json` (a
//! [`LoadReport`]), `dsr.json` (the router's counters of packets from the VIP by outgoing
//! interface, and of requests by MUX link), `agent-HOST-before|after.json` (the host agents'
//! `/v1/status`) and, for the failover, `failover.json`. Prints what happened and checks:
//! no failed request, every answer names the client's own address, keep-alive connections
//! kept their backend, the expected backends answered (or one did not), zero reply packets
//! crossed a MUX while replies reached the client (direct server return), the agents
//! rewrote replies, and failover detection and rejoin within their bounds. A round whose
//! directory also holds `retransmits.json` (the IPv6 round: new connections whose SYN-ACKs
//! the router dropped, so their SYNs were retransmitted) must show that every connection's
//! SYNs left the router toward one MUX with one IPv6 flow label: the client keeps its ECMP path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::load::{LoadReport, render as render_load};

/// What a round must show (`http-round.json`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpRoundSpec {
    /// Short name.
    pub name: String,
    /// One line for people.
    pub title: String,
    /// No request may fail.
    pub strict: bool,
    /// This many distinct backends must have answered.
    pub expect_backends: Option<usize>,
    /// This backend must not have answered.
    pub expect_no_backend: Option<String>,
}

/// The failover timings (`failover.json`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Failover {
    /// The backend stopped.
    pub backend: String,
    /// From stopping its server to every MUX applying `failed`.
    pub stopped_to_failed_ms: u64,
    /// From starting it again to every MUX applying `ok`.
    pub started_to_ok_ms: u64,
    /// The bound for the first.
    pub bound_failed_ms: u64,
    /// The bound for the second.
    pub bound_ok_ms: u64,
    /// Each MUX's own `last_detect_ms` for the backend.
    pub mux_detect_ms: BTreeMap<String, Option<u64>>,
}

/// Retransmitted SYNs at the router (`retransmits.json`, written by the lab's
/// `ipv6_retransmit_paths`): connections whose SYN-ACKs were dropped, so that their SYNs were
/// sent again, and how many of them changed MUX or flow label between two SYNs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Retransmits {
    /// The VIP the connections were opened to.
    pub vip: String,
    /// Connections opened.
    pub connections: u64,
    /// SYNs the router forwarded toward the MUXes, by MUX.
    pub syns: BTreeMap<String, u64>,
    /// Connections (client ports) seen toward more than one MUX.
    pub changed_mux: u64,
    /// Connections seen with more than one flow label.
    pub changed_label: u64,
}

impl Retransmits {
    /// The line to print and the check: every connection retransmitted its SYN at least once
    /// (two SYNs each, or the check would show nothing), and none changed MUX or label.
    fn evaluate(&self) -> (String, (bool, String)) {
        let total: u64 = self.syns.values().sum();
        let per_mux: Vec<String> = self.syns.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let line = format!(
            "  retransmits  {} new connections to {} whose SYN-ACKs the router dropped: {total} SYNs ({}); {} changed MUX, {} changed flow label\n",
            self.connections,
            self.vip,
            per_mux.join(" / "),
            self.changed_mux,
            self.changed_label
        );
        let ok = self.connections > 0
            && total >= 2 * self.connections
            && self.changed_mux == 0
            && self.changed_label == 0;
        let what = format!(
            "retransmitted SYNs kept their MUX and flow label ({total} SYNs of {} connections, at least {} needed; {} changed MUX, {} changed label)",
            self.connections,
            2 * self.connections,
            self.changed_mux,
            self.changed_label
        );
        (line, (ok, what))
    }
}

fn read<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Sum over the agents of `counters.replies_rewritten`, after minus before.
fn agents_rewritten(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(host) = name
            .strip_prefix("agent-")
            .and_then(|n| n.strip_suffix("-after.json"))
        else {
            continue;
        };
        let get = |when: &str| -> Option<u64> {
            let v: Value = read(&dir.join(format!("agent-{host}-{when}.json"))).ok()?;
            v["counters"]["replies_rewritten"].as_u64()
        };
        if let (Some(a), Some(b)) = (get("after"), get("before")) {
            total += a.saturating_sub(b);
            any = true;
        }
    }
    any.then_some(total)
}

/// Evaluates every HTTP round under `results`: the text to print and whether all checks held.
pub fn evaluate(results: &Path) -> Result<(String, bool), String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map_err(|e| format!("cannot list {}: {e}", results.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("http-round.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(format!(
            "no HTTP rounds (http-round.json) in {}",
            results.display()
        ));
    }
    let mut out = String::new();
    let (mut passed, mut total) = (0usize, 0usize);
    for dir in dirs {
        let spec: HttpRoundSpec = read(&dir.join("http-round.json"))?;
        let load: LoadReport = read(&dir.join("http-load.json"))?;
        let dsr: BTreeMap<String, Option<u64>> = read(&dir.join("dsr.json")).unwrap_or_default();
        let dsr_get = |k: &str| dsr.get(k).copied().flatten().unwrap_or(0);
        out.push_str(&format!("HTTP round · {} — {}\n", spec.name, spec.title));
        out.push_str(&render_load(&load));
        let via_mux = dsr_get("replies_via_mux1") + dsr_get("replies_via_mux2");
        let via_client = dsr_get("replies_via_client");
        out.push_str(&format!(
            "  DSR          request packets via mux1 {} / mux2 {}; reply packets from the VIP via a MUX {}, straight to the client {}\n",
            dsr_get("requests_via_mux1"),
            dsr_get("requests_via_mux2"),
            via_mux,
            via_client
        ));
        let rewritten = agents_rewritten(&dir);
        if let Some(r) = rewritten {
            out.push_str(&format!(
                "  host agents  {r} replies rewritten to come from the VIP\n"
            ));
        }
        let mut checks: Vec<(bool, String)> = Vec::new();
        if dir.join("retransmits.json").is_file() {
            let (line, check) = read::<Retransmits>(&dir.join("retransmits.json"))?.evaluate();
            out.push_str(&line);
            checks.push(check);
        }
        let failed: usize = load.failures.values().sum();
        if spec.strict {
            checks.push((
                failed == 0 && load.ok == load.requests && load.ok > 0,
                format!("every request answered ({} of {})", load.ok, load.requests),
            ));
        }
        checks.push((
            load.client_mismatches == 0 && load.client_matches == load.ok,
            format!(
                "backends saw the client's own address ({} of {} answers)",
                load.client_matches, load.ok
            ),
        ));
        // Only a round with keep-alive connections can show whether they kept their backend.
        if load.connections_keepalive > 0 {
            checks.push((
                load.backend_changed_within_connection == 0,
                format!(
                    "keep-alive connections kept their backend ({} of {} changed)",
                    load.backend_changed_within_connection, load.connections_keepalive
                ),
            ));
        }
        if let Some(n) = spec.expect_backends {
            checks.push((
                load.per_backend.len() == n,
                format!("{n} backends answered ({})", load.per_backend.len()),
            ));
        }
        if let Some(b) = &spec.expect_no_backend {
            let n = load.per_backend.get(b).copied().unwrap_or(0);
            checks.push((
                n == 0,
                format!("the failed backend {b} got no new connection ({n})"),
            ));
        }
        checks.push((
            via_mux == 0 && via_client > 0,
            format!("direct server return: {via_mux} reply packets crossed a MUX, {via_client} went straight to the client"),
        ));
        if let Some(r) = rewritten {
            checks.push((r > 0, format!("host agents rewrote replies ({r})")));
        }
        if let Ok(f) = read::<Failover>(&dir.join("failover.json")) {
            let detect: Vec<String> = f
                .mux_detect_ms
                .iter()
                .map(|(m, d)| format!("{m} {}", d.map_or("-".into(), |d| format!("{d} ms"))))
                .collect();
            out.push_str(&format!(
                "  failover     {}: server stopped → failed on every MUX after {} ms (the script's clock); \
                 each MUX's own detection, agent's first failed probe → applied: {}; server started → \
                 back on every MUX after {} ms\n",
                f.backend,
                f.stopped_to_failed_ms,
                detect.join(", "),
                f.started_to_ok_ms
            ));
            checks.push((
                f.stopped_to_failed_ms <= f.bound_failed_ms,
                format!(
                    "failure detected within the rise/fall bound ({} ms ≤ {} ms)",
                    f.stopped_to_failed_ms, f.bound_failed_ms
                ),
            ));
            checks.push((
                f.started_to_ok_ms <= f.bound_ok_ms,
                format!(
                    "recovery detected within the bound ({} ms ≤ {} ms)",
                    f.started_to_ok_ms, f.bound_ok_ms
                ),
            ));
        }
        for (ok, what) in checks {
            total += 1;
            if ok {
                passed += 1;
            }
            out.push_str(&format!(
                "  [{}] {what}\n",
                if ok { " ok " } else { "FAIL" }
            ));
        }
        out.push('\n');
    }
    let all = passed == total;
    out.push_str(&format!("HTTP: {} of {total} checks passed\n", passed));
    Ok((out, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retransmits(syns: &[(&str, u64)], changed_mux: u64, changed_label: u64) -> Retransmits {
        Retransmits {
            vip: "2001:db8::10".into(),
            connections: 12,
            syns: syns.iter().map(|(m, n)| (m.to_string(), *n)).collect(),
            changed_mux,
            changed_label,
        }
    }

    #[test]
    fn retransmits_pass_only_when_every_connection_kept_its_path() {
        let (line, (ok, what)) = retransmits(&[("mux1", 18), ("mux2", 18)], 0, 0).evaluate();
        assert!(ok, "{what}");
        assert!(line.contains("36 SYNs (mux1 18 / mux2 18)"), "{line}");
        assert!(
            !retransmits(&[("mux1", 18), ("mux2", 18)], 1, 0)
                .evaluate()
                .1
                .0
        );
        assert!(
            !retransmits(&[("mux1", 18), ("mux2", 18)], 0, 3)
                .evaluate()
                .1
                .0
        );
        // One SYN per connection: nothing was retransmitted, so nothing was shown.
        assert!(
            !retransmits(&[("mux1", 6), ("mux2", 6)], 0, 0)
                .evaluate()
                .1
                .0
        );
        assert!(!Retransmits::default().evaluate().1.0);
    }

    #[test]
    fn a_round_with_retransmits_json_gets_the_check() {
        let dir = std::env::temp_dir().join(format!("perf-http-summary-{}", std::process::id()));
        let round = dir.join("02-http6");
        std::fs::create_dir_all(&round).unwrap();
        std::fs::write(
            round.join("http-round.json"),
            r#"{"name": "http6", "title": "t", "strict": true}"#,
        )
        .unwrap();
        let load = LoadReport {
            requests: 1,
            ok: 1,
            client_matches: 1,
            ..LoadReport::default()
        };
        std::fs::write(
            round.join("http-load.json"),
            serde_json::to_string(&load).unwrap(),
        )
        .unwrap();
        std::fs::write(
            round.join("dsr.json"),
            r#"{"replies_via_client": 3, "replies_via_mux1": null}"#,
        )
        .unwrap();
        std::fs::write(
            round.join("retransmits.json"),
            r#"{"vip": "2001:db8::10", "connections": 2, "syns": {"mux1": 3, "mux2": 3}, "changed_mux": 0, "changed_label": 0}"#,
        )
        .unwrap();
        let (text, all) = evaluate(&dir).unwrap();
        assert!(all, "{text}");
        assert!(
            text.contains(
                "[ ok ] retransmitted SYNs kept their MUX and flow label (6 SYNs of 2 connections"
            ),
            "{text}"
        );
        std::fs::write(
            round.join("retransmits.json"),
            r#"{"vip": "2001:db8::10", "connections": 2, "syns": {"mux1": 3, "mux2": 3}, "changed_mux": 1, "changed_label": 0}"#,
        )
        .unwrap();
        let (text, all) = evaluate(&dir).unwrap();
        assert!(!all, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
