//! Compiling a validated configuration into a forwarding snapshot.
//!
//! This is where the expensive work happens, off the data path: Maglev tables are built,
//! backends get their stable ids, addresses are put in canonical form. The result is an
//! immutable [`Snapshot`] the workers adopt between bursts. `check-config`, `replay`, the
//! daemon's start and its reload all go through this one function.
//!
//! Second chance: [`compile_with_history`] also gives each VIP the previous tables that
//! [`TableHistory`] says are still in their window, by backend id (ids come from the same
//! registry, so they stay meaningful across reloads), and returns the history that follows
//! the compiled snapshot; the caller keeps it once it publishes the snapshot. [`compile`] is
//! the same with no history (tests, benchmarks, `check-config`).
//!
//! Times become flow-clock seconds here ([`FlowClock`]): a failed backend's grace ends
//! `failed_backend_grace` after the moment the health tracker judged it failed (a monotonic
//! [`Instant`], kept by the tracker for as long as the backend stays failed, so recompiling
//! never restarts a grace), and a drain deadline is the file's wall-clock instant. Both are
//! rounded up to the next whole second: flows are never cut early, at most a second late.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, MuxConfig};
use mux_packet::checksum;
use mux_packet::flow_key::canonical_addr;
use mux_packet::maglev::{self, MaglevBackend};

use crate::control::load_weights;
use crate::control::registry::{IdsExhausted, Registry};
use crate::control::table_history::{
    Generation, SETTLED_MS, TableHistory, TableInputs, TableMember, VipHistory,
};
use crate::dataplane::flow_log::FlowSample;
use crate::dataplane::rate_limit::RateLimit;
use crate::dataplane::snapshot::{
    Backend, BackendState, CutoffReason, FlowCutoff, FlowTimeouts, PreviousTable, Snapshot,
    SnapshotParts, Vip, VipKey,
};

/// The workers' flow clock: whole seconds since `origin`.
///
/// `origin_unix` is the wall-clock time at which the flow clock read 0; the daemon recomputes
/// it before every compile (now on the wall clock minus the flow clock's reading), so a wall
/// clock stepped by NTP is followed from the next compile on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowClock {
    /// The instant the flow clock counts from (the daemon's start).
    pub origin: Instant,
    /// The wall-clock time of `origin`.
    pub origin_unix: SystemTime,
}

impl Default for FlowClock {
    /// A clock starting now (`check-config`, tests).
    fn default() -> Self {
        FlowClock {
            origin: Instant::now(),
            origin_unix: SystemTime::now(),
        }
    }
}

impl FlowClock {
    /// The flow-clock second from which `t` (after the origin by `offset`) has passed: `offset`
    /// rounded up, saturated to `u32`.
    fn second_from(offset: Duration) -> u32 {
        let secs = offset.as_secs() + u64::from(offset.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// The first second at which the wall-clock instant `t` has passed (0 if before the origin).
    pub fn second_at_unix(&self, t: SystemTime) -> u32 {
        Self::second_from(t.duration_since(self.origin_unix).unwrap_or_default())
    }

    /// The flow-clock microsecond of the wall-clock instant `unix_ms` (negative before the
    /// origin).
    pub fn micros_at_unix_ms(&self, unix_ms: u64) -> i64 {
        let origin = self
            .origin_unix
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let origin_us = i64::try_from(origin.as_micros()).unwrap_or(i64::MAX);
        i64::try_from(unix_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
            .saturating_sub(origin_us)
    }

    /// The first second at which `since + after` has passed.
    pub fn second_after(&self, since: Instant, after: Duration) -> u32 {
        Self::second_from(since.saturating_duration_since(self.origin) + after)
    }

    /// Unix milliseconds of `since + after` (reports).
    fn unix_ms_after(&self, since: Instant, after: Duration) -> u64 {
        let t = self.origin_unix + since.saturating_duration_since(self.origin) + after;
        unix_ms(t)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A backend the health feed fails, and since when.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FailedBackend {
    /// The VIP's name.
    pub vip: String,
    /// The backend's configured address.
    pub backend: IpAddr,
    /// When the health tracker judged it failed (kept while it stays failed).
    pub since: Instant,
}

/// Inputs that do not come from the file.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Next hop MAC resolved from the neighbour table (used when the config does not pin one).
    pub next_hop_mac: Option<[u8; 6]>,
    /// The interface's MAC (used when the config does not pin `source_mac`).
    pub source_mac: Option<[u8; 6]>,
    /// Backends reported failed by health checks.
    pub failed: Vec<FailedBackend>,
    /// The workers' flow clock, to turn failure times and drain deadlines into its seconds.
    pub clock: FlowClock,
    /// Load-aware factors of backends, by VIP name and backend address (only those that are
    /// not 1; `control::load_weights`): such a VIP's Maglev weights become
    /// `round(weight × factor × 100)`.
    pub weight_factors: std::collections::BTreeMap<(String, std::net::IpAddr), f64>,
}

/// Why a valid configuration could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A Maglev table could not be built.
    #[error("vip \"{vip}\": cannot build its Maglev table: {source}")]
    Maglev {
        /// The VIP's name.
        vip: String,
        /// What the builder said.
        source: maglev::MaglevError,
    },
    /// Backend ids ran out.
    #[error(transparent)]
    Ids(#[from] IdsExhausted),
}

/// Builds the snapshot for `cfg`, assigning ids through `registry`, without previous tables.
pub fn compile(
    cfg: &MuxConfig,
    registry: &mut Registry,
    generation: u64,
    options: &CompileOptions,
) -> Result<Snapshot, CompileError> {
    let empty = TableHistory::default();
    compile_with_history(
        cfg,
        registry,
        generation,
        options,
        &empty,
        options.clock.origin_unix,
    )
    .map(|(snap, _)| snap)
}

/// Builds the snapshot for `cfg` to replace, at wall-clock time `at`, the one `history`
/// describes: each VIP gets the previous tables still within `[dataplane]
/// second_chance_window_seconds` (see `control::table_history`). Returns the snapshot and
/// the history that follows it, for the caller to keep once it publishes the snapshot.
pub fn compile_with_history(
    cfg: &MuxConfig,
    registry: &mut Registry,
    generation: u64,
    options: &CompileOptions,
    history: &TableHistory,
    at: SystemTime,
) -> Result<(Snapshot, TableHistory), CompileError> {
    let window = cfg.dataplane().second_chance_window();
    let at_ms = unix_ms(at);
    let mut successor = TableHistory::default();
    let defaults = cfg.timeouts();
    let mut vips = Vec::with_capacity(cfg.vips().len());
    let mut backends: Vec<Option<Backend>> = Vec::new();

    for v in cfg.vips() {
        let key = VipKey {
            addr: canonical_addr(v.address()),
            port: v.port(),
            protocol: v.protocol().number(),
        };
        let vip_id = registry.vip_id(key);
        let t = v.timeouts(&defaults);
        let mut ids = Vec::with_capacity(v.backends().len());
        let mut addrs = Vec::with_capacity(v.backends().len());
        for b in v.backends() {
            let address = canonical_addr(b.address());
            let id = registry.backend_id(vip_id, address)?;
            let failed = options
                .failed
                .iter()
                .find(|f| f.vip == v.name() && f.backend == b.address());
            let state = match (failed, b.state()) {
                (Some(_), _) => BackendState::Failed,
                (None, config::BackendState::Active) => BackendState::Active,
                (None, config::BackendState::Draining) => BackendState::Draining,
            };
            // The earlier of the failure's grace and the drain deadline applies.
            let grace = failed.map(|f| {
                let after = Duration::from_secs(u64::from(t.failed_backend_grace));
                FlowCutoff {
                    // 0 re-hashes at once, even within the second of the failure.
                    at: if after.is_zero() {
                        0
                    } else {
                        options.clock.second_after(f.since, after)
                    },
                    reason: CutoffReason::FailedGrace,
                    at_unix_ms: options.clock.unix_ms_after(f.since, after),
                }
            });
            let drain = match b.state() {
                config::BackendState::Draining => b.drain_deadline().map(|d| FlowCutoff {
                    at: options.clock.second_at_unix(d),
                    reason: CutoffReason::DrainDeadline,
                    at_unix_ms: unix_ms(d),
                }),
                config::BackendState::Active => None,
            };
            let cutoff = match (grace, drain) {
                (Some(g), Some(d)) if g.at < d.at => Some(g),
                (g, d) => d.or(g),
            };
            let slot = id as usize;
            if backends.len() <= slot {
                backends.resize_with(slot + 1, || None);
            }
            backends[slot] = Some(Backend {
                vip_id,
                address,
                is_v4: b.address().is_ipv4(),
                state,
                weight: b.weight(),
                label: format!("{}/{}", v.name(), b.address()),
                outer_v4_address_sum: match (cfg.tunnel().source_v4(), b.address()) {
                    (Some(src), std::net::IpAddr::V4(dst)) => {
                        checksum::sum(&src.octets()) + checksum::sum(&dst.octets())
                    }
                    _ => 0,
                },
                cutoff,
            });
            ids.push(id);
            addrs.push((
                address,
                b.address(),
                state == BackendState::Active,
                b.weight(),
            ));
        }

        // Maglev over the backends that take new flows, at their effective weights.
        let factor = |ip: &std::net::IpAddr| {
            options
                .weight_factors
                .get(&(v.name().to_string(), *ip))
                .copied()
                .unwrap_or(1.0)
        };
        let scaled = v.load_aware().is_some()
            && addrs
                .iter()
                .any(|(_, ip, active, _)| *active && (factor(ip) - 1.0).abs() > 1e-9);
        let mut maglev_backends = Vec::new();
        let mut members = Vec::new();
        let mut inputs = TableInputs {
            table_size: v.table_size(),
            backends: Vec::new(),
        };
        for (i, (addr, ip, active, weight)) in addrs.iter().enumerate() {
            let weight = &load_weights::effective_weight(*weight, factor(ip), scaled);
            if *active && *weight > 0 {
                maglev_backends.push(ids[i]);
                members.push(MaglevBackend {
                    id: addr.as_slice(),
                    weight: *weight,
                });
                inputs.backends.push(TableMember {
                    address: *ip,
                    weight: *weight,
                });
            }
        }
        let table = if members.is_empty() {
            None
        } else {
            Some(maglev::build(&members, v.table_size()).map_err(|source| {
                CompileError::Maglev {
                    vip: v.name().to_string(),
                    source,
                }
            })?)
        };
        let current = table.as_ref().map(|maglev| Generation {
            inputs,
            maglev: maglev.clone(),
        });
        let tables = history.succeed(&key, current, at_ms, window);
        let previous = previous_tables(&tables, registry, vip_id, window, &options.clock)?;
        successor.insert(key, tables);
        vips.push(Vip {
            id: vip_id,
            name: v.name().to_string(),
            key,
            timeouts: FlowTimeouts {
                tcp_syn: t.tcp_syn,
                tcp_established: t.tcp_established,
                tcp_closing: t.tcp_closing,
                udp: t.udp,
            },
            maglev: table,
            maglev_backends,
            previous,
        });
    }
    backends.resize_with(registry.backend_count(), || None);

    let next_hop = cfg.next_hop();
    let snapshot = Snapshot::new(SnapshotParts {
        generation,
        vips,
        backends,
        tunnel_v4: cfg.tunnel().source_v4().map(|a| a.octets()),
        tunnel_v6: cfg.tunnel().source_v6().map(|a| a.octets()),
        next_hop_mac: next_hop.mac().or(options.next_hop_mac).unwrap_or([0; 6]),
        source_mac: next_hop
            .source_mac()
            .or(options.source_mac)
            .unwrap_or([0; 6]),
        mtu: cfg.dataplane().mtu() as usize,
        vip_ids: registry.vip_count(),
        icmp_limit: RateLimit {
            per_second: cfg.dataplane().icmp_rate(),
            burst: cfg.dataplane().icmp_burst(),
        },
        drain_reset_limit: RateLimit {
            per_second: cfg.dataplane().drain_reset_rate(),
            burst: cfg.dataplane().drain_reset_burst(),
        },
        flow_log_sample: FlowSample::one_in(cfg.flow_log().map_or(1, |f| f.sample())),
    });
    Ok((snapshot, successor))
}

/// A VIP's previous tables as the data plane reads them: slots by backend id (backends that
/// left the configuration get ids too, and are never alternatives), and the flow-clock second
/// each one's window ends.
fn previous_tables(
    tables: &VipHistory,
    registry: &mut Registry,
    vip_id: u32,
    window: Duration,
    clock: &FlowClock,
) -> Result<Box<[PreviousTable]>, CompileError> {
    tables
        .by_preference()
        .into_iter()
        .map(|r| {
            let backends = r
                .generation
                .inputs
                .backends
                .iter()
                .map(|m| registry.backend_id(vip_id, canonical_addr(m.address)))
                .collect::<Result<Box<[u32]>, _>>()?;
            let until = SystemTime::UNIX_EPOCH + Duration::from_millis(r.replaced_unix_ms) + window;
            Ok(PreviousTable {
                maglev: r.generation.maglev.clone(),
                backends,
                until: clock.second_at_unix(until),
                since_unix_ms: r.since_unix_ms,
                settled_since_us: (r.since_unix_ms != 0 && r.in_force_ms() >= SETTLED_MS)
                    .then(|| clock.micros_at_unix_ms(r.since_unix_ms)),
                replaced_unix_ms: r.replaced_unix_ms,
                until_unix_ms: unix_ms(until),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
  [[vip.backend]]
  address = "10.1.0.3"
"#;

    /// A flow clock whose origin is 1 800 000 000 s after the Unix epoch.
    fn clock() -> FlowClock {
        FlowClock {
            origin: Instant::now(),
            origin_unix: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn failed(vip: &str, addr: &str, since: Instant) -> FailedBackend {
        FailedBackend {
            vip: vip.to_string(),
            backend: addr.parse().unwrap(),
            since,
        }
    }

    /// The backend with address `addr`.
    fn backend<'a>(snap: &'a Snapshot, addr: &str) -> &'a Backend {
        let addr = canonical_addr(addr.parse().unwrap());
        snap.parts
            .backends
            .iter()
            .flatten()
            .find(|b| b.address == addr)
            .expect("configured")
    }

    /// Slots of the table held by each backend id.
    fn slots_by_backend(snap: &Snapshot) -> Vec<(u32, u32)> {
        let vip = &snap.parts.vips[0];
        let table = vip.maglev.as_ref().expect("a table");
        let counts = table.slot_counts(vip.maglev_backends.len());
        vip.maglev_backends.iter().copied().zip(counts).collect()
    }

    #[test]
    fn a_failed_backend_gets_no_maglev_slots() {
        let cfg = config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let mut registry = Registry::default();
        let healthy = compile(&cfg, &mut registry, 1, &CompileOptions::default()).unwrap();
        let before = slots_by_backend(&healthy);
        assert_eq!(before.len(), 3);
        assert!(before.iter().all(|(_, n)| *n > 0));

        let failed_addr: std::net::IpAddr = "10.1.0.2".parse().unwrap();
        let clock = clock();
        let options = CompileOptions {
            failed: vec![failed("web", "10.1.0.2", clock.origin)],
            clock,
            ..CompileOptions::default()
        };
        let sick = compile(&cfg, &mut registry, 2, &options).unwrap();
        let failed_id = sick
            .parts
            .backends
            .iter()
            .position(|b| {
                b.as_ref()
                    .is_some_and(|b| b.address == canonical_addr(failed_addr))
            })
            .expect("the failed backend keeps its id") as u32;
        let b = sick.parts.backends[failed_id as usize].as_ref().unwrap();
        assert_eq!(b.state, BackendState::Failed);
        assert!(
            b.keeps_flows(4),
            "its flows stay for the grace (default 5 s)"
        );
        assert!(!b.keeps_flows(5), "then they are re-hashed");
        let after = slots_by_backend(&sick);
        assert_eq!(after.len(), 2);
        assert!(after.iter().all(|(id, _)| *id != failed_id));
        assert_eq!(after.iter().map(|(_, n)| n).sum::<u32>(), 1009);
        // An entry names its VIP: the same address under another VIP's name changes nothing.
        let other = CompileOptions {
            failed: vec![failed("dns", "10.1.0.2", clock.origin)],
            ..CompileOptions::default()
        };
        let unaffected = compile(&cfg, &mut registry, 3, &other).unwrap();
        assert_eq!(slots_by_backend(&unaffected), before);
    }

    #[test]
    fn every_backend_failed_leaves_the_vip_without_a_table() {
        let cfg = config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let failed = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
            .iter()
            .map(|a| failed("web", a, Instant::now()))
            .collect();
        let options = CompileOptions {
            failed,
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut Registry::default(), 1, &options).unwrap();
        assert!(snap.parts.vips[0].maglev.is_none());
        assert!(snap.parts.vips[0].maglev_backends.is_empty());
    }

    #[test]
    fn a_failed_backends_grace_ends_grace_seconds_after_it_failed() {
        let text = CONFIG.replace(
            "maglev_table_size = 1009\n",
            "maglev_table_size = 1009\ntimeouts = { failed_backend_grace = 30 }\n",
        );
        let cfg = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let clock = clock();
        // Failed 12.3 s after the flow clock's origin: the grace ends at 42.3 s, so its flows
        // are kept through second 42 and cut from second 43 (never early, at most 1 s late).
        let since = clock.origin + Duration::from_millis(12_300);
        let options = CompileOptions {
            failed: vec![failed("web", "10.1.0.2", since)],
            clock,
            ..CompileOptions::default()
        };
        let mut registry = Registry::default();
        let snap = compile(&cfg, &mut registry, 1, &options).unwrap();
        let b = backend(&snap, "10.1.0.2");
        let cutoff = b.cutoff.expect("a failed backend has a grace");
        assert_eq!(cutoff.reason, CutoffReason::FailedGrace);
        assert_eq!(cutoff.at, 43);
        assert_eq!(cutoff.at_unix_ms, 1_800_000_042_300);
        assert!(b.keeps_flows(42) && !b.keeps_flows(43));
        assert_eq!(backend(&snap, "10.1.0.1").cutoff, None);

        // A recompile later (a reload, a new next-hop MAC) with the same failure keeps the
        // deadline, even though the wall clock moved (NTP) in between.
        let later = CompileOptions {
            clock: FlowClock {
                origin_unix: clock.origin_unix + Duration::from_secs(3),
                ..clock
            },
            ..options.clone()
        };
        let again = compile(&cfg, &mut registry, 2, &later).unwrap();
        assert_eq!(backend(&again, "10.1.0.2").cutoff.map(|c| c.at), Some(43));

        // Grace 0: re-hashed at once, even within the second of the failure.
        let zero = config::parse(
            &text.replace("failed_backend_grace = 30", "failed_backend_grace = 0"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let snap = compile(&zero, &mut registry, 3, &options).unwrap();
        assert!(!backend(&snap, "10.1.0.2").keeps_flows(0));
    }

    #[test]
    fn a_drain_deadline_becomes_a_flow_clock_second() {
        // The clock's origin is 1 800 000 000 s after the epoch; the deadline 100.5 s later.
        let text = CONFIG.replace(
            "  address = \"10.1.0.3\"\n",
            "  address = \"10.1.0.3\"\n  state = \"draining\"\n  \
             drain_deadline = 2027-01-15T08:01:40.500Z\n",
        );
        let cfg = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let clock = clock();
        let mut registry = Registry::default();
        let options = CompileOptions {
            clock,
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut registry, 1, &options).unwrap();
        let b = backend(&snap, "10.1.0.3");
        assert_eq!(b.state, BackendState::Draining);
        let cutoff = b.cutoff.expect("a deadline");
        assert_eq!(
            (cutoff.reason, cutoff.at, cutoff.at_unix_ms),
            (CutoffReason::DrainDeadline, 101, 1_800_000_100_500)
        );
        // A restarted MUX (a later origin) cuts at the same wall-clock moment.
        let restarted = CompileOptions {
            clock: FlowClock {
                origin: Instant::now(),
                origin_unix: clock.origin_unix + Duration::from_secs(60),
            },
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut Registry::default(), 1, &restarted).unwrap();
        assert_eq!(backend(&snap, "10.1.0.3").cutoff.map(|c| c.at), Some(41));
        // A deadline already past when compiled cuts from second 0.
        let late = CompileOptions {
            clock: FlowClock {
                origin: Instant::now(),
                origin_unix: clock.origin_unix + Duration::from_secs(1000),
            },
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut Registry::default(), 1, &late).unwrap();
        assert!(!backend(&snap, "10.1.0.3").keeps_flows(0));

        // Failed as well: the earlier of the two moments applies.
        let failing = CompileOptions {
            failed: vec![failed("web", "10.1.0.3", clock.origin)],
            clock,
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut registry, 2, &failing).unwrap();
        let cutoff = backend(&snap, "10.1.0.3").cutoff.unwrap();
        assert_eq!((cutoff.reason, cutoff.at), (CutoffReason::FailedGrace, 5));
    }
}
