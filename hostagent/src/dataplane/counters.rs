//! Data-path counters, named by outcome.
//!
//! One [`Counters`] belongs to one [`super::DataPath`] (one per thread when the I/O layer runs
//! several): plain `u64`, no atomics, one add per event. The per-service vector is sized when
//! the data path is built, so the hot path never allocates; the control plane reads and sums
//! them between bursts.

use super::verdict::DropReason;

/// Counters of one data path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets handed to [`super::DataPath::decap`].
    pub inbound: u64,
    /// TCP/UDP packets decapsulated, rewritten to the backend and returned as `Deliver`.
    pub delivered: u64,
    /// ICMP errors toward a VIP decapsulated, rewritten to the backend (outer destination and
    /// quoted source) and returned as `Deliver`.
    pub icmp_errors_delivered: u64,
    /// Packets handed to [`super::DataPath::snat`].
    pub outbound: u64,
    /// Backend replies whose source DIP:backend_port became VIP:port (`Send`).
    pub replies_rewritten: u64,
    /// ICMP errors from a backend about a service flow, rewritten to come from the VIP
    /// (`Send`).
    pub icmp_errors_rewritten: u64,
    /// Outbound packets that are not ours and were returned as `Pass`, untouched.
    pub passed: u64,
    /// Of [`Counters::passed`]: IP fragments from a backend address. Their ports are not
    /// visible (or not on every fragment), so they are never rewritten.
    pub fragments_passed: u64,
    /// Dropped packets, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Per service, in the order of [`super::ServiceTable::services`].
    pub services: Box<[ServiceCounters]>,
}

/// Counters of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Packets for this service delivered to its backend.
    pub delivered: u64,
    /// ICMP errors about this service's flows delivered to its backend.
    pub icmp_errors_delivered: u64,
    /// Replies from this service's backend rewritten to come from the VIP.
    pub replies_rewritten: u64,
    /// ICMP errors from this service's backend rewritten to come from the VIP.
    pub icmp_errors_rewritten: u64,
}

impl Counters {
    /// Zeroed counters for `services` services.
    pub fn new(services: usize) -> Self {
        Counters {
            services: vec![ServiceCounters::default(); services].into_boxed_slice(),
            ..Counters::default()
        }
    }

    /// The drop counter of `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// Applies `update` to the counters of service `index` (an index the table handed out, so
    /// always in range; an out-of-range one is ignored rather than a panic).
    pub(crate) fn service(&mut self, index: usize, update: impl FnOnce(&mut ServiceCounters)) {
        if let Some(counters) = self.services.get_mut(index) {
            update(counters);
        }
    }
}
