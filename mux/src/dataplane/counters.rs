//! Per-worker counters, named by outcome.
//!
//! Each worker owns its counters outright (plain `u64`, no atomics, no sharing): the hot path
//! pays one add per event. The control plane reads them between bursts and sums across workers
//! with [`WorkerCounters::add`]. Per-VIP and per-backend counters are indexed by the stable ids
//! the control plane assigns (see `control::registry`), so they survive reloads; the vectors
//! grow only when a new snapshot introduces new ids, between bursts.

use serde::Serialize;

use super::verdict::DropReason;

/// Counters of one worker (or the sum over workers).
///
/// `Clone::clone_from` is implemented by hand so that publishing counters to the control plane
/// reuses the destination's vectors instead of allocating.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames received from the port.
    pub rx: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames encapsulated and handed to the port for transmission.
    pub forwarded: u64,
    /// Packets whose flow was found in the flow table with a usable backend.
    pub flow_hits: u64,
    /// Packets that created a flow-table entry (first packet of a flow, or a packet whose entry
    /// had expired or had been evicted).
    pub new_flows: u64,
    /// Packets whose flow entry pointed at a backend that was removed, failed or moved to
    /// another VIP: the flow was re-hashed with Maglev and its entry updated.
    pub flows_rehashed: u64,
    /// New flows that replaced a live entry because their bucket was full.
    pub flows_evicted: u64,
    /// New flows that could not be stored because their bucket was full of entries they may not
    /// displace (e.g. a SYN against established flows). The packet was still forwarded, by
    /// Maglev alone.
    pub flow_table_full: u64,
    /// IPv4 fragments and IPv6 packets with a fragment header, steered by their 3-tuple.
    pub fragments_forwarded: u64,
    /// ICMP errors addressed to a VIP, routed to the backend owning the embedded flow.
    pub icmp_errors_forwarded: u64,
    /// ICMP "fragmentation needed" / "packet too big" errors generated for clients whose
    /// packet (DF set, or IPv6) would exceed the MTU once encapsulated.
    pub icmp_too_big_sent: u64,
    /// Frames not addressed to a VIP (ARP, ND, BGP, other ports...) handed to the kernel.
    pub to_kernel: u64,
    /// Dropped frames, indexed by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
    /// Frames forwarded per VIP, indexed by the VIP's stable id.
    pub vip_forwarded: Vec<u64>,
    /// Frames forwarded per backend, indexed by the backend's stable id.
    pub backend_forwarded: Vec<u64>,
}

impl Clone for WorkerCounters {
    fn clone(&self) -> Self {
        let mut out = WorkerCounters::default();
        out.clone_from(self);
        out
    }

    fn clone_from(&mut self, source: &Self) {
        let WorkerCounters {
            rx,
            rx_bytes,
            forwarded,
            flow_hits,
            new_flows,
            flows_rehashed,
            flows_evicted,
            flow_table_full,
            fragments_forwarded,
            icmp_errors_forwarded,
            icmp_too_big_sent,
            to_kernel,
            drops,
            vip_forwarded,
            backend_forwarded,
        } = source;
        self.rx = *rx;
        self.rx_bytes = *rx_bytes;
        self.forwarded = *forwarded;
        self.flow_hits = *flow_hits;
        self.new_flows = *new_flows;
        self.flows_rehashed = *flows_rehashed;
        self.flows_evicted = *flows_evicted;
        self.flow_table_full = *flow_table_full;
        self.fragments_forwarded = *fragments_forwarded;
        self.icmp_errors_forwarded = *icmp_errors_forwarded;
        self.icmp_too_big_sent = *icmp_too_big_sent;
        self.to_kernel = *to_kernel;
        self.drops = *drops;
        self.vip_forwarded.clone_from(vip_forwarded);
        self.backend_forwarded.clone_from(backend_forwarded);
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
            self.backend_forwarded.resize(backends, 0);
        }
    }

    /// Adds `other` into `self` (summing workers).
    pub fn add(&mut self, other: &WorkerCounters) {
        self.rx += other.rx;
        self.rx_bytes += other.rx_bytes;
        self.forwarded += other.forwarded;
        self.flow_hits += other.flow_hits;
        self.new_flows += other.new_flows;
        self.flows_rehashed += other.flows_rehashed;
        self.flows_evicted += other.flows_evicted;
        self.flow_table_full += other.flow_table_full;
        self.fragments_forwarded += other.fragments_forwarded;
        self.icmp_errors_forwarded += other.icmp_errors_forwarded;
        self.icmp_too_big_sent += other.icmp_too_big_sent;
        self.to_kernel += other.to_kernel;
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
            *a += b;
        }
    }

    /// The scalar counters as `(name, value)` pairs, drops included as `drop_<reason>`.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = [
            ("rx", self.rx),
            ("rx_bytes", self.rx_bytes),
            ("forwarded", self.forwarded),
            ("flow_hits", self.flow_hits),
            ("new_flows", self.new_flows),
            ("flows_rehashed", self.flows_rehashed),
            ("flows_evicted", self.flows_evicted),
            ("flow_table_full", self.flow_table_full),
            ("fragments_forwarded", self.fragments_forwarded),
            ("icmp_errors_forwarded", self.icmp_errors_forwarded),
            ("icmp_too_big_sent", self.icmp_too_big_sent),
            ("to_kernel", self.to_kernel),
        ]
        .into_iter()
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
        b.backend_forwarded[2] = 7;
        a.add(&b);
        assert_eq!(a.rx, 5);
        assert_eq!(a.dropped(DropReason::NoBackend), 2);
        assert_eq!(a.backend_forwarded, vec![0, 0, 7]);
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
        a.backend_forwarded[3] = 9;
        let mut b = WorkerCounters::default();
        b.clone_from(&a);
        assert_eq!(a, b);
        assert_eq!(a.clone(), a);
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
