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
    /// What second chance decided for each delivered or forwarded TCP/UDP packet.
    pub second_chance: SecondChanceCounters,
    /// The connection table's events and occupancy.
    pub connections: ConnectionCounters,
    /// Per service, in the order of [`super::ServiceTable::services`].
    pub services: Box<[ServiceCounters]>,
}

/// The second-chance decision for each decapsulated TCP/UDP packet (`docs/second-chance.md`),
/// in the contract's order: exactly one of these moves per such packet, so they sum to
/// [`Counters::delivered`] plus [`SecondChanceCounters::forwarded`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondChanceCounters {
    /// Delivered: the outer header named no alternative (the plain path).
    pub delivered_no_alternative: u64,
    /// Delivered: the option says an agent already forwarded the packet (`forwarded` set or
    /// `hops` ≥ 1) — never forwarded again. On the agent a packet was forwarded to, this
    /// counts every packet it received from a peer.
    pub forward_refused: u64,
    /// Delivered: a TCP SYN without ACK (a new connection belongs where the MUX sent it).
    pub delivered_syn: u64,
    /// Delivered: a connection in this agent's table.
    pub delivered_known: u64,
    /// Delivered: the alternative is a DIP of this agent — to the alternative's backend if
    /// that one carries the connection, otherwise as addressed.
    pub delivered_local_alternative: u64,
    /// Delivered although it should have been forwarded: this agent has no tunnel source of
    /// the alternative's family (`[tunnel] source_v4` / `source_v6`), or the forwarded packet
    /// would exceed 65 535 bytes.
    pub delivered_cannot_forward: u64,
    /// Forwarded to the alternative's agent (`Verdict::Forward`): a connection this agent
    /// does not carry, with an alternative, not a SYN.
    pub forwarded: u64,
}

impl SecondChanceCounters {
    /// Every outcome with its name (as in `/v1/status` and the `outcome` label of
    /// `hostagent_second_chance_packets_total`), in the decision's order.
    pub fn outcomes(&self) -> [(&'static str, u64); 7] {
        [
            ("delivered_no_alternative", self.delivered_no_alternative),
            ("forward_refused", self.forward_refused),
            ("delivered_syn", self.delivered_syn),
            ("delivered_known", self.delivered_known),
            (
                "delivered_local_alternative",
                self.delivered_local_alternative,
            ),
            ("delivered_cannot_forward", self.delivered_cannot_forward),
            ("forwarded", self.forwarded),
        ]
    }
}

/// The connection table's counters (`connections` module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounters {
    /// New connections entered in the table (from a delivered packet or a rewritten reply).
    pub inserts: u64,
    /// Connections entered from the state file at start (the restart rule).
    pub restored: u64,
    /// Entries removed because their idle timeout passed (counted once, when the sweep or a
    /// newcomer clears them).
    pub expiries: u64,
    /// Half-open or closing entries given up to make room for a newcomer in a full bucket.
    pub displaced: u64,
    /// Connections that could not be entered: their bucket held only live established-TCP and
    /// UDP entries. Their packets were still delivered; the agent just does not remember them.
    pub table_full: u64,
    /// UDP flows this agent remembered only from before a packet's claim horizon (the MUX's
    /// table that named the alternative arrived after this agent last saw the flow): not
    /// claimed, the packet forwarded, and the memory ended (the sweep then counts its expiry).
    pub before_horizon: u64,
    /// Gauge: occupied entries (live, plus expired ones the sweep clears within a second).
    pub occupied: u64,
    /// Gauge: the table's capacity.
    pub capacity: u64,
}

impl ConnectionCounters {
    /// Every event counter with its name (as in `/v1/status` and the `event` label of
    /// `hostagent_connection_events_total`).
    pub fn events(&self) -> [(&'static str, u64); 6] {
        [
            ("inserts", self.inserts),
            ("restored", self.restored),
            ("expiries", self.expiries),
            ("displaced", self.displaced),
            ("table_full", self.table_full),
            ("before_horizon", self.before_horizon),
        ]
    }
}

/// Counters of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Packets for this service delivered to its backend.
    pub delivered: u64,
    /// Packets for this service forwarded to an alternative backend's agent (second chance).
    pub forwarded: u64,
    /// ICMP errors about this service's flows delivered to its backend.
    pub icmp_errors_delivered: u64,
    /// Replies from this service's backend rewritten to come from the VIP.
    pub replies_rewritten: u64,
    /// ICMP errors from this service's backend rewritten to come from the VIP.
    pub icmp_errors_rewritten: u64,
    /// Bytes of the inner packets delivered to its backend (IP header included).
    pub delivered_bytes: u64,
    /// Bytes of its backend's replies rewritten (IP header included).
    pub replies_rewritten_bytes: u64,
    /// Connections this agent started to carry for it (learned from a delivered packet or a
    /// rewritten reply; a restarted agent re-learns ongoing ones).
    pub new_connections: u64,
    /// Connections its backend carries, as of the last complete sweep of the connection table
    /// (about every second; a gauge, not a counter).
    pub active_connections: u64,
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
