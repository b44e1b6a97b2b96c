//! The forwarding snapshot: the configuration compiled into what the workers read.
//!
//! Built by the control plane off the data path (`control::compile`), published atomically
//! (an `arc-swap` pointer), and loaded by each worker once per burst. Immutable once built: a
//! reload builds a whole new snapshot, so a worker never sees half a change.
//!
//! Ids: VIPs and backends carry stable ids assigned by the control plane's registry. Flow-table
//! entries store backend ids, not positions, so an entry stays meaningful across reloads: after
//! a reload the pipeline checks that the id still names a usable backend of the same VIP and
//! re-hashes the flow otherwise.
//!
//! Time-driven changes need no republish: a backend that stops keeping its flows at some
//! moment (a failed backend's grace ends, a drain deadline passes) carries that moment as a
//! [`FlowCutoff`] in the flow clock's seconds, and the pipeline compares it with the `now` it
//! already has for each burst. The control plane computes it once (failure times from the
//! health tracker, deadlines from the file), so a recompile while nothing changed yields the
//! same cutoff.
//!
//! Second chance (docs/second-chance.md): each VIP also carries the Maglev tables of its
//! previous generations ([`PreviousTable`], the newest settled one first, at most
//! [`MAX_PREVIOUS_TABLES`]), by backend id, each with the flow-clock second its window ends.
//! The control plane decides which tables to keep (`control::table_history`); the pipeline
//! asks [`Snapshot::alternative`] for a flow it has no entry for, and the end of a window, like
//! a cutoff, needs no republish.

use mux_packet::claim_horizon;
use mux_packet::maglev::MaglevTable;

use super::flow_log::FlowSample;
use super::rate_limit::RateLimit;
use super::vip_index::{IndexKey, VipIndex};

/// What identifies a VIP on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// VIP address in canonical (IPv4-mapped) form.
    pub addr: [u8; 16],
    /// VIP port.
    pub port: u16,
    /// IP protocol number (6 or 17).
    pub protocol: u8,
}

impl IndexKey for VipKey {
    #[inline(always)]
    fn words(&self) -> [u64; 2] {
        let lo = u64::from_ne_bytes(self.addr[..8].try_into().expect("8 bytes"));
        let hi = u64::from_ne_bytes(self.addr[8..].try_into().expect("8 bytes"));
        [
            lo,
            hi ^ (u64::from(self.port) << 8 | u64::from(self.protocol)).rotate_left(32),
        ]
    }
}

/// Key of the fragment and address indexes: an address and a protocol (0 for "any").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddrKey {
    addr: [u8; 16],
    protocol: u8,
}

impl IndexKey for AddrKey {
    #[inline(always)]
    fn words(&self) -> [u64; 2] {
        let lo = u64::from_ne_bytes(self.addr[..8].try_into().expect("8 bytes"));
        let hi = u64::from_ne_bytes(self.addr[8..].try_into().expect("8 bytes"));
        [lo, hi ^ u64::from(self.protocol).rotate_left(40)]
    }
}

/// Idle timeouts in seconds for each flow state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// TCP flow that has only sent SYNs.
    pub tcp_syn: u32,
    /// TCP flow that has sent a packet with ACK (and no FIN/RST).
    pub tcp_established: u32,
    /// TCP flow that has sent FIN or RST.
    pub tcp_closing: u32,
    /// UDP flow.
    pub udp: u32,
}

/// A backend's state as the data plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new flows (when its weight is above zero) and keeps its existing ones.
    Active,
    /// Takes no new flows; its existing flows stay until they end or until its drain deadline
    /// ([`FlowCutoff`]).
    Draining,
    /// Reported down by health checks: takes no new flows; its existing flows stay until its
    /// grace ends ([`FlowCutoff`]), then are re-hashed.
    Failed,
}

/// Why a backend stops keeping the flows pinned to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutoffReason {
    /// The health feed failed it and `failed_backend_grace` has passed since: its flows are
    /// re-hashed to the backends Maglev picks now.
    FailedGrace,
    /// Its `drain_deadline` has passed: it receives nothing more; TCP flows are reset toward
    /// the client, other flows re-hashed.
    DrainDeadline,
}

impl CutoffReason {
    /// `snake_case` name for reports.
    pub fn name(self) -> &'static str {
        match self {
            CutoffReason::FailedGrace => "failed_grace",
            CutoffReason::DrainDeadline => "drain_deadline",
        }
    }
}

/// The moment from which a backend stops keeping the flows pinned to it, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowCutoff {
    /// Flow-clock second from which its pinned flows no longer go to it (`now >= at`).
    pub at: u32,
    /// What the pipeline does with them then.
    pub reason: CutoffReason,
    /// The same moment on the wall clock, in Unix milliseconds (for reports).
    pub at_unix_ms: u64,
}

/// What happens at some moment to a flow pinned to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// It keeps going to the backend.
    Kept,
    /// It no longer does, for this reason.
    Cut(CutoffReason),
}

/// A backend of one VIP.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Stable id of the VIP this backend serves.
    pub vip_id: u32,
    /// Backend (DIP) address in canonical form.
    pub address: [u8; 16],
    /// True when the DIP is IPv4 (outer header IPv4), false for IPv6.
    pub is_v4: bool,
    /// Current state.
    pub state: BackendState,
    /// Maglev weight (0 = no new flows).
    pub weight: u32,
    /// `vip-name/address`, for reports.
    pub label: String,
    /// For an IPv4 backend: the one's-complement sum of the outer header's addresses (tunnel
    /// source and DIP), so encapsulation finishes the header checksum from a few field
    /// values instead of summing the header it just wrote.
    pub outer_v4_address_sum: u32,
    /// When its pinned flows stop going to it (a failed backend's grace, a drain deadline);
    /// `None`: they stay until they end.
    pub cutoff: Option<FlowCutoff>,
}

impl Backend {
    /// The fate at flow-clock second `now` of a flow pinned to this backend.
    #[inline]
    pub fn pinned(&self, now: u32) -> Pinned {
        match self.cutoff {
            Some(c) if now >= c.at => Pinned::Cut(c.reason),
            _ => Pinned::Kept,
        }
    }

    /// True when a flow pinned to this backend still goes to it at `now`.
    #[inline]
    pub fn keeps_flows(&self, now: u32) -> bool {
        self.pinned(now) == Pinned::Kept
    }
}

/// Most previous tables a VIP keeps (the newest ones; asked in the order of
/// [`Vip::previous`]).
pub const MAX_PREVIOUS_TABLES: usize = 4;

/// The Maglev table of one of a VIP's previous configuration generations, by backend id, and
/// the end of the window in which it may name a flow's alternative backend.
#[derive(Clone, Debug)]
pub struct PreviousTable {
    /// The table; its slots index `backends`.
    pub maglev: MaglevTable,
    /// Backend id for each Maglev index. Backends that have since left the configuration keep
    /// their ids (the registry never reuses one) and are simply never an alternative.
    pub backends: Box<[u32]>,
    /// Flow-clock second from which it names no alternative (`now >= until`).
    pub until: u32,
    /// When it became the VIP's current table, in Unix milliseconds; 0: unknown, in force when
    /// the history began (reports).
    pub since_unix_ms: u64,
    /// When it became the VIP's current table, in flow-clock microseconds (negative: before
    /// this process started), if it was in force long enough to be settled; `None` for a
    /// transient table or an unknown start. The age sent as the option's claim horizon
    /// (`mux_packet::claim_horizon`).
    pub settled_since_us: Option<i64>,
    /// When it stopped being the VIP's current table, in Unix milliseconds (reports).
    pub replaced_unix_ms: u64,
    /// `until` on the wall clock, in Unix milliseconds (reports).
    pub until_unix_ms: u64,
}

impl PreviousTable {
    /// The backend id this table picked for `hash`.
    #[inline]
    pub fn pick(&self, hash: u64) -> u32 {
        self.backends[self.maglev.lookup(hash) as usize]
    }
}

/// A VIP and its Maglev table.
#[derive(Debug)]
pub struct Vip {
    /// Stable id (counter index).
    pub id: u32,
    /// Operator-given name.
    pub name: String,
    /// Address, port, protocol.
    pub key: VipKey,
    /// Idle timeouts for this VIP's flows.
    pub timeouts: FlowTimeouts,
    /// Maglev table over the active backends; `None` when no backend takes new flows.
    pub maglev: Option<MaglevTable>,
    /// Backend id for each Maglev index.
    pub maglev_backends: Vec<u32>,
    /// Tables of earlier generations that differ from `maglev`, in the order they are asked
    /// (settled ones newer before older, then transient ones; `control::table_history`), at most
    /// [`MAX_PREVIOUS_TABLES`]; empty when second chance is off or nothing changed lately.
    pub previous: Box<[PreviousTable]>,
}

impl Vip {
    /// Starts loading the Maglev slot [`Vip::pick`] will read for `hash`.
    #[inline]
    pub fn prefetch_pick(&self, hash: u64) {
        if let Some(table) = &self.maglev {
            let slots = table.slots();
            super::prefetch::prefetch(&slots[(hash % u64::from(table.size())) as usize]);
        }
    }

    /// The backend id Maglev picks for `hash`, if any backend takes new flows.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<u32> {
        let table = self.maglev.as_ref()?;
        Some(self.maglev_backends[table.lookup(hash) as usize])
    }
}

/// Everything a snapshot is made of; [`Snapshot::new`] adds the indexes.
#[derive(Debug)]
pub struct SnapshotParts {
    /// Config generation (1 for the first config, +1 per successful reload).
    pub generation: u64,
    /// VIPs.
    pub vips: Vec<Vip>,
    /// Backends by stable id; `None` for ids not present in this config.
    pub backends: Vec<Option<Backend>>,
    /// Outer source address for IPv4 outer headers.
    pub tunnel_v4: Option<[u8; 4]>,
    /// Outer source address for IPv6 outer headers.
    pub tunnel_v6: Option<[u8; 16]>,
    /// Destination MAC of encapsulated frames (the next hop toward the hosts).
    pub next_hop_mac: [u8; 6],
    /// Source MAC of frames we send.
    pub source_mac: [u8; 6],
    /// Egress MTU: the largest IP packet (outer header included) we may send.
    pub mtu: usize,
    /// Number of VIP ids the registry has handed out (counter vector length).
    pub vip_ids: usize,
    /// Each worker's bucket for ICMP "too big" errors (`[dataplane] icmp_rate`, `icmp_burst`).
    pub icmp_limit: RateLimit,
    /// Each worker's bucket for the resets of flows past a drain deadline
    /// (`[dataplane] drain_reset_rate`, `drain_reset_burst`).
    pub drain_reset_limit: RateLimit,
    /// Which new flows get a flow-log record (`[flow_log] sample`; read only by workers that
    /// have a flow-log ring).
    pub flow_log_sample: FlowSample,
}

/// The immutable forwarding state workers read.
#[derive(Debug)]
pub struct Snapshot {
    /// Everything the control plane compiled.
    pub parts: SnapshotParts,
    vip_index: VipIndex<VipKey, u16>,
    fragment_index: VipIndex<AddrKey, u16>,
    vip_addresses: VipIndex<AddrKey, ()>,
}

impl Snapshot {
    /// Indexes the parts. VIP keys are assumed unique (validation guarantees it).
    pub fn new(parts: SnapshotParts) -> Self {
        // Fragments carry no ports beyond the first: all VIPs that share an address and
        // protocol steer fragments through the one with the lowest port.
        let mut by_port: Vec<(u16, usize)> = parts
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| (v.key.port, i))
            .collect();
        by_port.sort_unstable();
        let addr_key = |i: usize, protocol| AddrKey {
            addr: parts.vips[i].key.addr,
            protocol,
        };
        let fragment_index = VipIndex::build(
            by_port
                .iter()
                .map(|&(_, i)| (addr_key(i, parts.vips[i].key.protocol), i as u16)),
        );
        let vip_addresses = VipIndex::build(by_port.iter().map(|&(_, i)| (addr_key(i, 0), ())));
        let vip_index = VipIndex::build(
            parts
                .vips
                .iter()
                .enumerate()
                .map(|(i, v)| (v.key, i as u16)),
        );
        Snapshot {
            parts,
            vip_index,
            fragment_index,
            vip_addresses,
        }
    }

    /// The VIP matching a destination, if any.
    #[inline]
    pub fn vip(&self, key: &VipKey) -> Option<(u16, &Vip)> {
        let i = self.vip_index.get(key)?;
        Some((i, &self.parts.vips[i as usize]))
    }

    /// The VIP that steers fragments sent to `addr` with `protocol`.
    #[inline]
    pub fn fragment_vip(&self, addr: &[u8; 16], protocol: u8) -> Option<&Vip> {
        let i = self.fragment_index.get(&AddrKey {
            addr: *addr,
            protocol,
        })?;
        Some(&self.parts.vips[i as usize])
    }

    /// True when `addr` is the address of some VIP (any port or protocol).
    #[inline]
    pub fn is_vip_address(&self, addr: &[u8; 16]) -> bool {
        self.vip_addresses
            .get(&AddrKey {
                addr: *addr,
                protocol: 0,
            })
            .is_some()
    }

    /// The backend with stable id `id`, if present in this snapshot.
    #[inline]
    pub fn backend(&self, id: u32) -> Option<&Backend> {
        self.parts.backends.get(id as usize)?.as_ref()
    }

    /// Config generation.
    pub fn generation(&self) -> u64 {
        self.parts.generation
    }

    /// The second chance's alternative for a flow of `vip` (stable hash `hash`) that Maglev
    /// sends to backend `current` now: the previous tables are asked in their order, skipping
    /// those whose window ended, and the first pick that differs from `current` and still
    /// keeps flows at `now` (a backend of this VIP, not removed, not past its drain deadline,
    /// not failed beyond its grace) is it. `None` when every table agrees (or there is none).
    #[inline]
    pub fn alternative(&self, vip: &Vip, hash: u64, current: u32, now: u32) -> Option<u32> {
        vip.previous.iter().find_map(|table| {
            if now >= table.until {
                return None;
            }
            let id = table.pick(hash);
            (id != current && self.usable_alternative(vip, id, now)).then_some(id)
        })
    }

    /// The claim horizon code (`mux_packet::claim_horizon`) for the packet whose flow
    /// [`Snapshot::alternative`] just gave `alternative` (stable hash `hash`) at flow-clock
    /// microsecond `now_us`: the age of the table that named it (the first in the order they
    /// are asked that picks it), when that table was settled; 0 (no horizon) for a transient
    /// one or one whose start is unknown.
    #[inline]
    pub fn claim_horizon(&self, vip: &Vip, hash: u64, alternative: u32, now_us: u64) -> u8 {
        let Some(table) = vip.previous.iter().find(|t| t.pick(hash) == alternative) else {
            return 0;
        };
        let Some(since) = table.settled_since_us else {
            return 0;
        };
        let now = i64::try_from(now_us).unwrap_or(i64::MAX);
        let age_ms = now.saturating_sub(since).max(0) / 1000;
        claim_horizon::encode(age_ms as u64)
    }

    /// True when backend `id` may be named as an alternative for a flow of `vip` at `now`.
    #[inline]
    pub fn usable_alternative(&self, vip: &Vip, id: u32, now: u32) -> bool {
        self.backend(id)
            .is_some_and(|b| b.vip_id == vip.id && b.keeps_flows(now))
    }
}
