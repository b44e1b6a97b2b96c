//! The named workloads of `perf pipeline`.
//!
//! Every pipeline scenario runs against 16 VIPs × 64 backends (Maglev tables of the default
//! 65 537 slots, 2 MiB of tables in all), with flows spread evenly over the VIPs. Frames are
//! built once, before the clock starts, and replayed in a loop by the in-memory port; the flow
//! clock (`now`, in seconds) moves by [`Workload::clock_step`] after each full pass over the
//! frames. That clock step is what makes a scenario measure what its name says:
//!
//! | scenario      | frames                                   | clock step per pass        | each measured packet is |
//! |---------------|------------------------------------------|----------------------------|-------------------------|
//! | `baseline`    | the `established` frames                 | —                          | a MAC swap (no pipeline) |
//! | `established` | one 60-byte TCP ACK per flow             | 0                          | a flow-table hit        |
//! | `new-flows`   | one 60-byte TCP SYN per flow             | `tcp_syn` timeout + 1 s    | a miss + Maglev + insert |
//! | `new-flows-logged` | the same, with a flow log (`[flow_log] sample = 1`) | `tcp_syn` timeout + 1 s | the same + a flow-log record queued |
//! | `mixed`       | 9 ACKs of established flows, then 1 SYN of a new flow, repeated | `tcp_syn` + 1 s (< `tcp_established`) | 90 % hits, 10 % new flows |
//! | `ipv6`        | one 74-byte IPv6 TCP ACK per flow        | 0                          | a flow-table hit (IPv6 VIP → IPv6 backend) |
//! | `second-chance` | one 60-byte TCP ACK per flow, after a backend change | `tcp_established` + 1 s | a miss that names an alternative: previous table, second-chance entry, option |
//! | `second-chance-flows` | the same                         | 0                          | a packet of such a flow: normal miss, its second-chance entry, option |
//!
//! `new-flows` uses the clock, not an ever-growing set of 5-tuples: after each pass the SYN-only
//! entries of the previous pass have expired, so every packet is a table miss (an expired entry
//! is a miss), takes a Maglev pick and an insert. What it does not measure: eviction from a table
//! full of live half-open entries (the insert finds its own expired slot), which costs the same
//! one cache line but a few more compares.
//!
//! The two second-chance scenarios run against generation 2 of the same VIPs: each VIP's 64
//! backends draining (so they keep their flows and may be named) next to 64 new ones, compiled
//! after generation 1 with second chance on. Every flow's current pick is a new backend and
//! its previous pick an old one, so every packet carries an alternative (in a real change only
//! the moved slots do; the cost per such packet is the same). The previous tables' windows
//! are set never to end: the benchmark's flow clock runs through hours in a few seconds.
//!
//! Flow-table capacity is 4 × flows (25 % full), what the one-bucket-per-flow table needed (it
//! still lost 0.4 % of the flows to bucket overflow at that load). It is kept so that figures
//! compare across versions; the two-bucket table holds 90 % of its capacity, and
//! `established` now shows every packet a hit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mux::control::compile::{self, CompileOptions};
use mux::control::registry::Registry;
use mux::control::table_history::TableHistory;
use mux::dataplane::snapshot::Snapshot;
use mux_packet::packet_builder::PacketBuilder;
use mux_packet::packet_builder::tcp_flags::{ACK, SYN};

/// VIPs in every pipeline scenario.
pub const VIPS: usize = 16;
/// Backends per VIP.
pub const BACKENDS_PER_VIP: usize = 64;
/// Flow-table entries per expected live flow (see the module docs).
pub const FLOW_TABLE_HEADROOM: usize = 4;
/// Most flows a scenario can generate (distinct IPv4 client addresses in a /8).
pub const MAX_FLOWS: usize = 1 << 24;
/// Length of the minimum Ethernet frame without FCS.
pub const MIN_FRAME_LEN: usize = 60;

/// A named scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A MAC-swapping forwarder over the same port: the floor of the I/O path.
    Baseline,
    /// 1 M established IPv4 TCP flows, every packet a flow-table hit.
    Established,
    /// Every packet a new IPv4 TCP flow (SYN): miss, Maglev pick, insert.
    NewFlows,
    /// `new-flows` with a flow log: each new flow also queues its record in the worker's ring.
    NewFlowsLogged,
    /// 90 % established flows, 10 % new flows.
    Mixed,
    /// Established flows to IPv6 VIPs with IPv6 backends.
    Ipv6,
    /// Every packet a flow-table miss that names an alternative backend (second chance).
    SecondChance,
    /// Every packet of a flow that carries an alternative, found by its second-chance entry.
    SecondChanceFlows,
}

impl Scenario {
    /// Every scenario, in the order `perf pipeline` runs them.
    pub const ALL: [Scenario; 8] = [
        Scenario::Baseline,
        Scenario::Established,
        Scenario::NewFlows,
        Scenario::NewFlowsLogged,
        Scenario::Mixed,
        Scenario::Ipv6,
        Scenario::SecondChance,
        Scenario::SecondChanceFlows,
    ];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Established => "established",
            Scenario::NewFlows => "new-flows",
            Scenario::NewFlowsLogged => "new-flows-logged",
            Scenario::Mixed => "mixed",
            Scenario::Ipv6 => "ipv6",
            Scenario::SecondChance => "second-chance",
            Scenario::SecondChanceFlows => "second-chance-flows",
        }
    }

    /// One line saying what a measured packet is.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Baseline => "MAC swap over the same port and frames as `established`",
            Scenario::Established => "60-byte IPv4 TCP ACKs of established flows: flow-table hits",
            Scenario::NewFlows => "60-byte IPv4 TCP SYNs, each a flow miss + Maglev + insert",
            Scenario::NewFlowsLogged => {
                "the new-flows SYNs with a flow log (sample 1): + one record queued per flow"
            }
            Scenario::Mixed => "9 ACKs of established flows : 1 SYN of a new flow",
            Scenario::Ipv6 => "74-byte IPv6 TCP ACKs, IPv6 VIPs to IPv6 backends: hits",
            Scenario::SecondChance => {
                "60-byte TCP ACKs without entries after a change: miss + alternative + option"
            }
            Scenario::SecondChanceFlows => {
                "60-byte TCP ACKs of flows carrying an alternative: their second-chance entry"
            }
        }
    }
}

/// Address family of a scenario's VIPs, backends and clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 VIPs `192.0.2.1..=16:80`, backends `172.16.V.1..=64`, clients `10.0.0.0/8`.
    V4,
    /// IPv6 VIPs `2001:db8::1..=10:443`, backends `fd00:1:V::1..=40`, clients `2001:db8:c::/64`.
    V6,
}

/// A scenario ready to run: its snapshot, its frames and how its clock moves.
#[derive(Debug)]
pub struct Workload {
    /// The scenario.
    pub scenario: Scenario,
    /// The compiled configuration (16 VIPs × 64 backends of the scenario's family).
    pub snapshot: Snapshot,
    /// The frames the port replays in a loop; their count is a multiple of the burst size, so
    /// passes end on burst boundaries.
    pub frames: Vec<Vec<u8>>,
    /// Seconds the flow clock advances after each full pass over `frames`.
    pub clock_step: u32,
    /// Flow-table capacity for the pipeline.
    pub flow_capacity: usize,
}

/// The configuration text of a scenario family: 16 VIPs × 64 backends, default timeouts and
/// Maglev size, pinned MACs, in-memory I/O.
pub fn config_text(family: Family) -> String {
    let mut text = String::from(
        "[mux]\nname = \"perf\"\n\n[dataplane]\nio = \"mem\"\n\n\
         [tunnel]\nsource_v4 = \"10.255.0.11\"\nsource_v6 = \"fd00::11\"\n\n\
         [next_hop]\nmac = \"02:00:00:00:00:fe\"\nsource_mac = \"02:00:00:00:00:01\"\n",
    );
    for v in 0..VIPS {
        let (address, port, backend) = match family {
            Family::V4 => (
                vip_v4(v).to_string(),
                80,
                backend_v4 as fn(usize, usize) -> IpAddr,
            ),
            Family::V6 => (
                vip_v6(v).to_string(),
                443,
                backend_v6 as fn(usize, usize) -> IpAddr,
            ),
        };
        text.push_str(&format!(
            "\n[[vip]]\nname = \"vip{v}\"\naddress = \"{address}\"\nport = {port}\nprotocol = \"tcp\"\n"
        ));
        for b in 0..BACKENDS_PER_VIP {
            text.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{}\"\n",
                backend(v, b)
            ));
        }
    }
    text
}

/// Compiles [`config_text`] into a snapshot (generation 1, fresh registry).
///
/// # Panics
///
/// If the generated configuration is refused: a bug in this module, caught by its tests.
pub fn snapshot(family: Family) -> Snapshot {
    let cfg = mux::config::parse(&config_text(family), "perf-scenario.toml")
        .unwrap_or_else(|e| panic!("generated scenario config is invalid: {e}"));
    compile::compile(
        &cfg,
        &mut Registry::default(),
        1,
        &CompileOptions::default(),
    )
    .unwrap_or_else(|e| panic!("generated scenario config does not compile: {e}"))
}

/// Generation 2 of the IPv4 family for the second-chance scenarios: each VIP's 64 backends
/// draining, next to 64 new ones (`172.16.V.65..=128`).
pub fn second_chance_config_text() -> String {
    let mut text = config_text(Family::V4);
    for v in 0..VIPS {
        let old = format!("name = \"vip{v}\"\n");
        let mut added = String::new();
        for b in 0..BACKENDS_PER_VIP {
            added.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{}\"\n",
                backend_v4(v, BACKENDS_PER_VIP + b)
            ));
        }
        // Insert the new backends right after the VIP's header lines.
        let at = text.find(&old).expect("the VIP is in the text");
        let header_end = text[at..].find("  [[vip.backend]]").expect("backends") + at;
        text.insert_str(header_end, &added);
    }
    for v in 0..VIPS {
        for b in 0..BACKENDS_PER_VIP {
            let line = format!("  address = \"{}\"\n", backend_v4(v, b));
            text = text.replacen(&line, &format!("{line}  state = \"draining\"\n"), 1);
        }
    }
    text
}

/// The second-chance scenarios' snapshot: generation 2 compiled after generation 1 with
/// second chance on, the previous tables' windows never ending (see the module docs).
pub fn second_chance_snapshot() -> Snapshot {
    let parse = |text: &str| {
        mux::config::parse(text, "perf-scenario.toml")
            .unwrap_or_else(|e| panic!("generated scenario config is invalid: {e}"))
    };
    let options = CompileOptions::default();
    let mut registry = Registry::default();
    let compiled = |text: &str, registry: &mut Registry, generation, history: &TableHistory| {
        compile::compile_with_history(
            &parse(text),
            registry,
            generation,
            &options,
            history,
            options.clock.origin_unix,
        )
        .unwrap_or_else(|e| panic!("generated scenario config does not compile: {e}"))
    };
    let (_, history) = compiled(
        &config_text(Family::V4),
        &mut registry,
        1,
        &TableHistory::default(),
    );
    let (mut snap, _) = compiled(&second_chance_config_text(), &mut registry, 2, &history);
    for vip in &mut snap.parts.vips {
        for table in vip.previous.iter_mut() {
            table.until = u32::MAX;
        }
    }
    snap
}

/// IPv4 VIP number `v`.
fn vip_v4(v: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + v as u8)
}

/// IPv6 VIP number `v`.
fn vip_v6(v: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1 + v as u16)
}

fn backend_v4(v: usize, b: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(172, 16, v as u8, 1 + b as u8))
}

fn backend_v6(v: usize, b: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 1, v as u16, 0, 0, 0, 0, 1 + b as u16))
}

/// Client number `i` of client range `range` (0 or 1, so two ranges never share a 5-tuple).
fn client_v4(range: u32, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        ((10 + range) << 24) | (i as u32 & 0x00ff_ffff),
    ))
}

fn client_v6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(
        (0x2001_0db8_000c_0000u128 << 64) | i as u128,
    ))
}

fn source_port(i: usize) -> u16 {
    1024 + (i % 50_000) as u16
}

/// A minimum-size IPv4 TCP frame of client `i` (of `range`) to VIP `i % 16`.
fn tcp_v4(range: u32, i: usize, flags: u8) -> Vec<u8> {
    let f = PacketBuilder::tcp(
        client_v4(range, i),
        source_port(i),
        IpAddr::V4(vip_v4(i % VIPS)),
        80,
        flags,
    )
    .padding(6)
    .build();
    debug_assert_eq!(f.len(), MIN_FRAME_LEN);
    f
}

/// An IPv6 TCP ACK frame of client `i` to VIP `i % 16` (74 bytes: no padding needed).
fn tcp_v6_ack(i: usize) -> Vec<u8> {
    PacketBuilder::tcp(
        client_v6(i),
        source_port(i),
        IpAddr::V6(vip_v6(i % VIPS)),
        443,
        ACK,
    )
    .build()
}

/// Builds `scenario` with `flows` distinct flows (rounded up to a multiple of `burst`, and at
/// most [`MAX_FLOWS`]).
pub fn workload(scenario: Scenario, flows: usize, burst: usize) -> Workload {
    let n = flows.clamp(1, MAX_FLOWS).div_ceil(burst.max(1)) * burst.max(1);
    let n = n.min(MAX_FLOWS);
    let family = match scenario {
        Scenario::Ipv6 => Family::V6,
        _ => Family::V4,
    };
    let snapshot = match scenario {
        Scenario::SecondChance | Scenario::SecondChanceFlows => second_chance_snapshot(),
        _ => snapshot(family),
    };
    // Past the SYN-only timeout, well before the established one.
    let syn_step = snapshot
        .parts
        .vips
        .iter()
        .map(|v| v.timeouts.tcp_syn)
        .max()
        .unwrap_or(0)
        + 1;
    let (frames, clock_step): (Vec<Vec<u8>>, u32) = match scenario {
        Scenario::Baseline | Scenario::Established => {
            ((0..n).map(|i| tcp_v4(0, i, ACK)).collect(), 0)
        }
        Scenario::NewFlows | Scenario::NewFlowsLogged => {
            ((0..n).map(|i| tcp_v4(0, i, SYN)).collect(), syn_step)
        }
        Scenario::Mixed => (
            (0..n)
                .map(|i| {
                    if i % 10 == 9 {
                        tcp_v4(1, i, SYN)
                    } else {
                        tcp_v4(0, i, ACK)
                    }
                })
                .collect(),
            syn_step,
        ),
        Scenario::Ipv6 => ((0..n).map(tcp_v6_ack).collect(), 0),
        Scenario::SecondChance => {
            // Past the established timeout: every second-chance entry of the previous pass
            // has expired, so every packet is a real miss again.
            let established_step = snapshot
                .parts
                .vips
                .iter()
                .map(|v| v.timeouts.tcp_established)
                .max()
                .unwrap_or(0)
                + 1;
            (
                (0..n).map(|i| tcp_v4(0, i, ACK)).collect(),
                established_step,
            )
        }
        Scenario::SecondChanceFlows => ((0..n).map(|i| tcp_v4(0, i, ACK)).collect(), 0),
    };
    Workload {
        scenario,
        snapshot,
        frames,
        clock_step,
        flow_capacity: n * FLOW_TABLE_HEADROOM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux::dataplane::parse::{self, Kind, Parse};

    #[test]
    fn configs_compile_to_16_vips_of_64_backends() {
        for family in [Family::V4, Family::V6] {
            let snap = snapshot(family);
            assert_eq!(snap.parts.vips.len(), VIPS);
            assert_eq!(
                snap.parts.backends.iter().flatten().count(),
                VIPS * BACKENDS_PER_VIP
            );
            assert!(snap.parts.vips.iter().all(|v| v.maglev.is_some()));
            assert!(
                snap.parts
                    .backends
                    .iter()
                    .flatten()
                    .all(|b| b.is_v4 == (family == Family::V4))
            );
        }
    }

    #[test]
    fn frames_are_minimum_size_distinct_and_parse_as_tcp() {
        let w = workload(Scenario::Established, 100, 32);
        assert_eq!(w.frames.len(), 128, "rounded up to a multiple of the burst");
        assert_eq!(w.flow_capacity, 512);
        let mut keys = std::collections::HashSet::new();
        for f in &w.frames {
            assert_eq!(f.len(), MIN_FRAME_LEN);
            let Parse::Ip(p) = parse::parse(f) else {
                panic!("frame does not parse");
            };
            assert!(matches!(p.kind, Kind::Transport { tcp: Some(t) } if t.ack && !t.syn));
            assert!(keys.insert(p.key));
        }
        let v6 = workload(Scenario::Ipv6, 32, 32);
        assert!(
            v6.frames
                .iter()
                .all(|f| f.len() == 74 && f[12..14] == [0x86, 0xdd])
        );
    }

    #[test]
    fn mixed_has_one_syn_in_ten_and_clock_steps_past_the_syn_timeout() {
        let w = workload(Scenario::Mixed, 320, 32);
        let syns = w.frames.iter().filter(|f| f[14 + 20 + 13] == SYN).count();
        assert_eq!(syns, 32);
        let t = w.snapshot.parts.vips[0].timeouts;
        assert!(w.clock_step > t.tcp_syn && w.clock_step < t.tcp_established);
        assert_eq!(workload(Scenario::Established, 32, 32).clock_step, 0);
    }
}
