//! Per-worker counters, named by outcome, declared once.
//!
//! This module owns the list of scalar counters: `worker_counters!` declares each one with
//! its doc and its Prometheus family and label ([`Family`]), and generates the struct, its
//! copy and sum, the named list (`mux replay` output and `--json`) and the metric table
//! ([`WorkerCounters::METRICS`]) that `control::metrics` renders. A counter is added here and
//! nowhere else.
//!
//! The outcome counters partition the traffic: every received frame ends in exactly one of
//! `forwarded`, `icmp_too_big_sent`, `drain_resets_sent`, `to_kernel` or a drop, so
//! `rx = forwarded + icmp_too_big_sent + drain_resets_sent + to_kernel + Σ drops`
//! ([`WorkerCounters::outcomes_total`]). Sub-counters ([`Family::ForwardedKind`],
//! [`Family::SecondChance`]) move only on the outcome they name (`forwarded`), once the frame is
//! encapsulated.
//!
//! Each worker owns its counters outright (plain `u64`, no atomics, no sharing): the hot path
//! pays one add per event. The control plane reads them between bursts and sums across workers
//! with [`WorkerCounters::add`]. Per-VIP and per-backend counters are indexed by the stable ids
//! the control plane assigns (see `control::registry`), so they survive reloads; the vectors
//! grow only when a new snapshot introduces new ids, between bursts.

use serde::Serialize;

use super::verdict::DropReason;

/// Declares [`WorkerCounters`] from one list of scalar counters, each with the `///` that says
/// when it moves and its metric `Family(label)`, so the struct, copying, summing, the named
/// list and the metrics cannot disagree.
macro_rules! worker_counters {
    ($( $(#[doc = $doc:literal])* $field:ident => $family:ident($label:literal), )*) => {
        /// Counters of one worker (or the sum over workers).
        ///
        /// `Clone::clone_from` is implemented by hand so that publishing counters to the
        /// control plane reuses the destination's vectors instead of allocating.
        #[derive(Debug, Default, PartialEq, Eq)]
        pub struct WorkerCounters {
            $( $(#[doc = $doc])* pub $field: u64, )*
            /// Dropped frames, indexed by [`DropReason`].
            pub drops: [u64; DropReason::COUNT],
            /// Frames forwarded per VIP, indexed by the VIP's stable id.
            pub vip_forwarded: Vec<u64>,
            /// Frames and inner bytes forwarded per backend, indexed by the backend's stable
            /// id (one element holds both, so counting a frame touches one cache line).
            pub backend_forwarded: Vec<Forwarded>,
        }

        impl WorkerCounters {
            /// The scalar counters' names, in declaration order.
            pub const SCALAR_NAMES: &'static [&'static str] = &[$(stringify!($field),)*];

            /// Each scalar counter's metric family and label value, in the order of
            /// [`WorkerCounters::SCALAR_NAMES`].
            pub const METRICS: &'static [(Family, &'static str)] = &[$((Family::$family, $label),)*];

            /// The scalar counters, in the order of [`WorkerCounters::SCALAR_NAMES`].
            pub fn scalars(&self) -> Vec<u64> {
                vec![$(self.$field,)*]
            }

            fn copy_scalars_from(&mut self, source: &Self) {
                $( self.$field = source.$field; )*
            }

            fn add_scalars(&mut self, other: &Self) {
                $( self.$field += other.$field; )*
            }

            /// Sum of the outcome counters ([`Family::Outcome`]) and the drops: equals `rx`.
            pub fn outcomes_total(&self) -> u64 {
                let mut n = self.dropped_total();
                $( if matches!(Family::$family, Family::Outcome) { n += self.$field; } )*
                n
            }
        }
    };
}

worker_counters! {
    /// Frames received from the port.
    rx => Rx(""),
    /// Bytes received from the port.
    rx_bytes => RxBytes(""),
    /// Frames encapsulated and handed to the port for transmission.
    forwarded => Outcome("forwarded"),
    /// Packets whose flow was found in the flow table with a backend that still keeps it (active,
    /// draining before its deadline, or failed within its grace).
    flow_hits => FlowEvent("hit"),
    /// Of `flow_hits`: packets forwarded to a backend the health feed has failed, because its
    /// `failed_backend_grace` has not run out (a restarting host agent loses nothing).
    failed_backend_grace_hits => FlowEvent("failed_backend_grace_hit"),
    /// Packets that created a flow-table entry (first packet of a flow, or a packet whose entry
    /// had expired or had been evicted).
    new_flows => FlowEvent("new"),
    /// Packets whose flow entry pointed at a backend that was removed from the configuration or
    /// moved to another VIP: the flow was re-hashed with Maglev and its entry updated.
    flows_rehashed => FlowEvent("rehashed"),
    /// Packets whose flow entry pointed at a backend the health feed failed more than
    /// `failed_backend_grace` seconds ago: the flow was re-hashed with Maglev and its entry
    /// updated.
    flows_rehashed_after_grace => FlowEvent("rehashed_after_grace"),
    /// Packets of non-TCP flows (and bare SYNs starting a new connection on the same 4-tuple)
    /// whose entry pointed at a backend past its drain deadline: the flow was re-hashed with
    /// Maglev and its entry updated.
    flows_rehashed_after_drain => FlowEvent("rehashed_after_drain"),
    /// Bare SYNs (a client starting a new connection on a 4-tuple whose entry is still kept)
    /// whose entry pointed at a failed backend within its grace: the grace keeps the
    /// connections the backend had, not new ones, so the flow was re-hashed with Maglev.
    flows_rehashed_new_on_failed => FlowEvent("rehashed_new_connection_on_failed"),
    /// New flows that replaced a live entry because both their buckets were full and no room
    /// could be made by moving entries (a table beyond about 95 % full).
    flows_evicted => FlowEvent("evicted"),
    /// New flows that could not be stored because both their buckets were full of entries they
    /// may not displace (e.g. a SYN against established flows) and no room could be made by
    /// moving entries. The packet was still forwarded, by Maglev alone.
    flow_table_full => FlowEvent("table_full"),
    /// IPv4 fragments and IPv6 packets with a fragment header, steered by their 3-tuple and
    /// encapsulated. Of `forwarded`.
    fragments_forwarded => ForwardedKind("fragment"),
    /// ICMP errors addressed to a VIP, routed to the backend owning the embedded flow and
    /// encapsulated. Of `forwarded`.
    icmp_errors_forwarded => ForwardedKind("icmp_error"),
    /// ICMP "fragmentation needed" / "packet too big" errors generated for clients whose
    /// packet (DF set, or IPv6) would exceed the MTU once encapsulated.
    icmp_too_big_sent => Outcome("icmp_too_big_sent"),
    /// TCP resets sent from the VIP to clients whose flow was pinned to a backend past its
    /// drain deadline, in place of their segment (which was not forwarded); the flow's entry
    /// is removed.
    drain_resets_sent => Outcome("drain_reset_sent"),
    /// Of `new_flows`: flow-table misses of packets other than a bare TCP SYN (TCP without
    /// SYN, SYN with ACK, or UDP) whose VIP's previous Maglev tables pick, within their window,
    /// another backend that still keeps flows: the flow got a second-chance entry naming that
    /// alternative, which its packets carry from then on (docs/second-chance.md). A flow
    /// whose entry could not be stored (`flow_table_full`) is not counted here; its packets
    /// are decided afresh each time.
    second_chance_flows => FlowEvent("second_chance"),
    /// Frames encapsulated with an alternative backend in the outer header (an IPv4 option or
    /// an IPv6 Destination Options header), so the current backend's host agent can pass on a
    /// connection it does not carry. Of `forwarded`.
    second_chance_sent => SecondChance("sent"),
    /// Frames that had an alternative but were encapsulated without it because the option
    /// would have taken them past the MTU while plain IP-in-IP fits (never dropped and never
    /// answered with an ICMP error for the option's sake). Of `forwarded`.
    second_chance_skipped_mtu => SecondChance("skipped_mtu"),
    /// Frames not addressed to a VIP (ARP, ND, BGP, other ports...) handed to the kernel.
    to_kernel => Outcome("to_kernel"),
    /// Sampled new flows whose flow-log record was dropped because the worker's ring was full
    /// (the writer thread is behind: a slow disk, or `[flow_log] queue_depth` too small for
    /// the new-flow rate). Never moves without `[flow_log]`.
    flow_log_dropped => FlowLogDropped("queue_full"),
}

/// The Prometheus family a scalar counter is exported in (`control::metrics`), with the label
/// that tells its counters apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `mux_rx_packets_total`: frames received (no label).
    Rx,
    /// `mux_rx_bytes_total`: bytes received (no label).
    RxBytes,
    /// `mux_packets_total{outcome}`: the one outcome of each received frame. With the drops,
    /// exported as `outcome="dropped"`, its series sum to `mux_rx_packets_total`.
    Outcome,
    /// `mux_forwarded_packets_by_kind_total{kind}`: forwarded frames that were fragments or
    /// ICMP errors. Of `outcome="forwarded"`.
    ForwardedKind,
    /// `mux_second_chance_packets_total{outcome}`: forwarded frames that had an alternative
    /// backend. Of `outcome="forwarded"`.
    SecondChance,
    /// `mux_flow_events_total{event}`: flow-table events (per packet, not an outcome).
    FlowEvent,
    /// `mux_flow_log_dropped_total{reason}`: flow-log records lost. The workers count
    /// `queue_full`; the control plane adds `write_error` (records its writer could not write).
    FlowLogDropped,
}

impl Family {
    /// Every family, in the order `/metrics` lists them.
    pub const ALL: &'static [Family] = &[
        Family::Outcome,
        Family::Rx,
        Family::RxBytes,
        Family::ForwardedKind,
        Family::SecondChance,
        Family::FlowEvent,
        Family::FlowLogDropped,
    ];

    /// The metric's name without `_total`.
    pub fn metric(self) -> &'static str {
        match self {
            Family::Rx => "mux_rx_packets",
            Family::RxBytes => "mux_rx_bytes",
            Family::Outcome => "mux_packets",
            Family::ForwardedKind => "mux_forwarded_packets_by_kind",
            Family::SecondChance => "mux_second_chance_packets",
            Family::FlowEvent => "mux_flow_events",
            Family::FlowLogDropped => "mux_flow_log_dropped",
        }
    }

    /// The label key, or `None` for a single unlabelled series.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Family::Rx | Family::RxBytes => None,
            Family::Outcome | Family::SecondChance => Some("outcome"),
            Family::ForwardedKind => Some("kind"),
            Family::FlowEvent => Some("event"),
            Family::FlowLogDropped => Some("reason"),
        }
    }

    /// The metric's help text.
    pub fn help(self) -> &'static str {
        match self {
            Family::Rx => "Frames received, summed over workers.",
            Family::RxBytes => "Bytes received.",
            Family::Outcome => {
                "Received frames by their one outcome (forwarded, ICMP too-big reply, drain reset, to the kernel, dropped): the series sum to mux_rx_packets_total."
            }
            Family::ForwardedKind => {
                "Forwarded frames that were fragments or ICMP errors (of outcome=\"forwarded\")."
            }
            Family::SecondChance => {
                "Forwarded frames that had an alternative backend: sent with it, or sent plain because it did not fit the MTU (of outcome=\"forwarded\")."
            }
            Family::FlowEvent => "Flow-table outcomes.",
            Family::FlowLogDropped => {
                "Sampled new flows whose flow-log record was lost: queue_full (a worker's ring was full), write_error (the writer could not write it)."
            }
        }
    }

    /// For a family of sub-counts, the outcome counter each of its counters is part of.
    pub fn part_of(self) -> Option<&'static str> {
        match self {
            Family::ForwardedKind | Family::SecondChance => Some("forwarded"),
            _ => None,
        }
    }
}

/// What a worker forwarded to one backend.
///
/// `bytes` are *inner* packet bytes: the client's IP packet as it arrived (IP header and
/// payload; no Ethernet or VLAN header, no outer header the MUX adds), the figure an operator
/// compares with what the backend and its host agent see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Frames encapsulated toward the backend.
    pub packets: u64,
    /// Their inner IP packets' bytes.
    pub bytes: u64,
}

impl Forwarded {
    /// Counts one frame whose inner IP packet is `bytes` long.
    #[inline(always)]
    pub fn count(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    fn add(&mut self, other: &Forwarded) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

impl Clone for WorkerCounters {
    fn clone(&self) -> Self {
        let mut out = WorkerCounters::default();
        out.clone_from(self);
        out
    }

    fn clone_from(&mut self, source: &Self) {
        self.copy_scalars_from(source);
        self.drops = source.drops;
        self.vip_forwarded.clone_from(&source.vip_forwarded);
        self.backend_forwarded.clone_from(&source.backend_forwarded);
    }
}

impl WorkerCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// Count of drops for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Sum of all drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Makes room for ids below the given bounds (between bursts, when a snapshot is adopted).
    pub fn ensure_ids(&mut self, vips: usize, backends: usize) {
        if self.vip_forwarded.len() < vips {
            self.vip_forwarded.resize(vips, 0);
        }
        if self.backend_forwarded.len() < backends {
            self.backend_forwarded
                .resize(backends, Forwarded::default());
        }
    }

    /// Adds `other` into `self` (summing workers).
    pub fn add(&mut self, other: &WorkerCounters) {
        self.add_scalars(other);
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        self.ensure_ids(other.vip_forwarded.len(), other.backend_forwarded.len());
        for (a, b) in self.vip_forwarded.iter_mut().zip(&other.vip_forwarded) {
            *a += b;
        }
        for (a, b) in self
            .backend_forwarded
            .iter_mut()
            .zip(&other.backend_forwarded)
        {
            a.add(b);
        }
    }

    /// The scalar counters as `(name, value)` pairs, drops included as `drop_<reason>`.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Self::SCALAR_NAMES
            .iter()
            .zip(self.scalars())
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        for r in DropReason::ALL {
            out.push((format!("drop_{}", r.name()), self.dropped(*r)));
        }
        out
    }
}

/// A JSON-friendly report of counters with VIP and backend names resolved.
#[derive(Debug, Serialize)]
pub struct CounterReport {
    /// Scalar counters by name (drops as `drop_<reason>`).
    pub counters: serde_json::Map<String, serde_json::Value>,
    /// Frames forwarded per VIP name.
    pub forwarded_per_vip: serde_json::Map<String, serde_json::Value>,
    /// Frames forwarded per backend (`vip/backend-address`).
    pub forwarded_per_backend: serde_json::Map<String, serde_json::Value>,
    /// Inner bytes forwarded per backend (`vip/backend-address`).
    pub forwarded_bytes_per_backend: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_field_and_grows_id_vectors() {
        let mut a = WorkerCounters {
            rx: 2,
            ..Default::default()
        };
        a.drop(DropReason::NoBackend);
        let mut b = WorkerCounters {
            rx: 3,
            ..Default::default()
        };
        b.drop(DropReason::NoBackend);
        b.ensure_ids(2, 3);
        b.backend_forwarded[2].count(60);
        b.backend_forwarded[2].count(1500);
        a.ensure_ids(2, 3);
        a.backend_forwarded[2].count(40);
        a.add(&b);
        assert_eq!(a.rx, 5);
        assert_eq!(a.dropped(DropReason::NoBackend), 2);
        let per_backend: Vec<_> = a
            .backend_forwarded
            .iter()
            .map(|f| (f.packets, f.bytes))
            .collect();
        assert_eq!(per_backend, vec![(0, 0), (0, 0), (3, 1600)]);
        assert_eq!(a.dropped_total(), 2);
    }

    #[test]
    fn clone_copies_every_field() {
        let mut a = WorkerCounters {
            rx: 1,
            to_kernel: 2,
            ..Default::default()
        };
        a.drop(DropReason::MalformedIpv6);
        a.ensure_ids(3, 4);
        a.backend_forwarded[3].count(9);
        let mut b = WorkerCounters::default();
        b.clone_from(&a);
        assert_eq!(a, b);
        assert_eq!(a.clone(), a);
    }

    #[test]
    fn add_and_clone_cover_every_scalar() {
        let mut a = WorkerCounters::default();
        let n = WorkerCounters::SCALAR_NAMES.len();
        let ones = WorkerCounters {
            rx: 1,
            rx_bytes: 1,
            forwarded: 1,
            flow_hits: 1,
            failed_backend_grace_hits: 1,
            new_flows: 1,
            flows_rehashed: 1,
            flows_rehashed_after_grace: 1,
            flows_rehashed_after_drain: 1,
            flows_rehashed_new_on_failed: 1,
            flows_evicted: 1,
            flow_table_full: 1,
            fragments_forwarded: 1,
            icmp_errors_forwarded: 1,
            icmp_too_big_sent: 1,
            drain_resets_sent: 1,
            second_chance_flows: 1,
            second_chance_sent: 1,
            second_chance_skipped_mtu: 1,
            to_kernel: 1,
            flow_log_dropped: 1,
            ..Default::default()
        };
        a.add(&ones);
        a.add(&ones);
        assert_eq!(a.scalars(), vec![2; n]);
        assert_eq!(a.clone().scalars(), vec![2; n]);
        let names: Vec<_> = a.named().into_iter().take(n).collect();
        assert_eq!(names[0], ("rx".to_string(), 2));
        assert_eq!(names[n - 1], ("flow_log_dropped".to_string(), 2));
    }

    #[test]
    fn every_counter_has_a_distinct_series_in_a_family_that_is_rendered() {
        let mut seen = std::collections::HashSet::new();
        for (name, (family, label)) in WorkerCounters::SCALAR_NAMES
            .iter()
            .zip(WorkerCounters::METRICS)
        {
            assert!(Family::ALL.contains(family), "{name}: family not rendered");
            assert_eq!(family.label().is_none(), label.is_empty(), "{name}");
            assert!(
                seen.insert((family.metric(), *label)),
                "{name}: series taken"
            );
            if let Some(parent) = family.part_of() {
                assert!(WorkerCounters::SCALAR_NAMES.contains(&parent), "{name}");
            }
        }
        for family in Family::ALL {
            assert!(
                WorkerCounters::METRICS.iter().any(|(f, _)| f == family),
                "{family:?} has no counter"
            );
        }
        // The unlabelled families hold exactly one counter each.
        for family in [Family::Rx, Family::RxBytes] {
            let n = WorkerCounters::METRICS
                .iter()
                .filter(|(f, _)| *f == family)
                .count();
            assert_eq!(n, 1, "{family:?}");
        }
    }

    #[test]
    fn outcomes_total_is_the_outcome_counters_and_the_drops() {
        let mut c = WorkerCounters {
            rx: 100,
            forwarded: 1,
            icmp_too_big_sent: 10,
            drain_resets_sent: 100,
            to_kernel: 1000,
            // Neither an outcome nor part of the sum.
            fragments_forwarded: 1,
            flow_hits: 7,
            second_chance_sent: 1,
            ..Default::default()
        };
        c.drop(DropReason::NoBackend);
        c.drop(DropReason::MalformedIpv6);
        assert_eq!(c.outcomes_total(), 1113);
    }

    #[test]
    fn named_lists_every_drop_reason() {
        let names = WorkerCounters::default().named();
        for r in DropReason::ALL {
            assert!(
                names
                    .iter()
                    .any(|(n, _)| n == &format!("drop_{}", r.name()))
            );
        }
    }
}
