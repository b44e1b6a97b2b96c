//! The per-burst packet pipeline: parse → VIP match → flow lookup → Maglev → encapsulate.
//!
//! A burst goes through two passes so the flow table's cache misses overlap instead of
//! queueing (the batching VPP and DPDK's `rte_hash_lookup_bulk` use):
//!
//! 1. **classify**: parse each frame, match its VIP, compute its flow-table hash and prefetch the
//!    bucket. Frames that are settled here (to the kernel, malformed) get their verdict now.
//! 2. **forward**: for the rest, look the flow up (its bucket is in cache by now), pick a backend
//!    (the flow's, or Maglev's on a miss), and rewrite the frame: IP-in-IP toward the backend,
//!    or an ICMP "too big" back to the client.
//!
//! No I/O, no locks, no allocation, no logging: the pipeline rewrites buffers and returns one
//! [`Verdict`] per frame; the worker does the I/O. Every outcome moves a counter.
//!
//! Flow state (docs/architecture.md): TCP entries are SYN-only until a packet with ACK is seen,
//! established afterwards, closing once FIN or RST is seen; UDP entries have their own idle
//! timeout. An entry whose backend was removed or moved to another VIP is re-hashed with
//! Maglev. An entry on a draining or failed backend keeps it until the backend's
//! [`FlowCutoff`](super::snapshot::FlowCutoff), compared with the burst's `now`: a failed
//! backend's grace ending re-hashes its flows; a drain deadline passing ends its TCP flows
//! with a reset to the client ([`tcp_reset`], a bare SYN being a new connection is re-hashed
//! instead) and re-hashes the others. Each outcome has its own counter.
//!
//! The replies the MUX writes itself (ICMP "too big", drain resets) each draw from a token
//! bucket of the worker's, refilled once per burst; a reply refused by its bucket drops the
//! packet with its own reason.
//!
//! Fragments: fragments after the first carry no ports, so all fragments — the first one
//! included — are steered by Maglev over the (source, destination, protocol) 3-tuple of the VIP
//! that owns the destination address and protocol (the lowest-port VIP when several share
//! them), bypassing the flow table. All fragments of a datagram thus reach the same backend
//! (which reassembles), on every MUX. The cost: a fragmented datagram may reach a different
//! backend than the flow's unfragmented packets; for TCP, which sets DF, this does not arise.
//!
//! ICMP errors addressed to a VIP (a router on the client's path reporting on a packet the
//! backend sent from the VIP) are routed by their embedded header, reversed, to the backend
//! that owns the flow: the flow table's entry when there is one, Maglev's pick otherwise
//! (the same one, by consistent hashing). They never create or refresh flow entries.
//!
//! Second chance (docs/second-chance.md): a flow-table miss of a packet that is not
//! a bare TCP SYN (TCP without SYN, a SYN with ACK, any UDP) may belong to a connection that
//! started before the VIP's Maglev table last changed, on a backend the current table no
//! longer picks (this MUX restarted, ECMP moved the flow here, its entry expired or was
//! evicted). [`Snapshot::alternative`] asks the VIP's previous tables (the newest settled
//! one first: `control::table_history`) within their window, for a pick that differs from the current one and still keeps flows; if there
//! is one, the packet goes to the current backend with that alternative in its outer header
//! ([`second_chance`]), and the flow gets a *second-chance entry* naming the alternative
//! ([`FlowHash::second_chance`]) instead of a normal one: its later packets miss the normal
//! lookup, find that entry, and carry the same alternative for the flow's life, which is what
//! the host agent needs to keep passing on a connection it does not own (a normal entry would
//! send them plain, and the current backend would reset the connection). Hits never look at
//! any of this; a bare SYN is a new connection and never carries an alternative.
//! Fragments and ICMP errors never carry one either: fragments bypass the flow table and
//! carry no ports after the first, and an ICMP error's owner is the flow it quotes, which the
//! host agent's connection table is not asked about (see docs/architecture.md).
//!
//! Flow logs ([`flow_log`](super::flow_log)): wherever an entry is created (a bare SYN's
//! miss, a miss without SYN, a second-chance entry; `new_flows` counted), a sampled flow's
//! fixed-size record is pushed into the worker's own ring, or counted as dropped when the
//! ring is full. Without `[flow_log]` that is one test of an `Option` per new flow; hits
//! never see it.

use mux_packet::{claim_horizon, stable_hash};
use mux_ports::PacketBuf;

use super::clock::BurstTime;
use super::counters::WorkerCounters;
use super::encap::{self, outer_len};
use super::flow_log::{FlowLogSink, FlowRecord};
use super::flow_table::{FlowHash, FlowState, FlowTable, InsertOutcome};
use super::icmp_reply;
use super::parse::{self, Kind, Parsed, Settled, TcpSeen};
use super::rate_limit::TokenBucket;
use super::second_chance;
use super::snapshot::{BackendState, CutoffReason, FlowTimeouts, Pinned, Snapshot, Vip, VipKey};
use super::tcp_reset;
use super::verdict::{DropReason, Reply, Verdict};

/// Largest burst the pipeline accepts.
pub const MAX_BURST: usize = 256;

/// Where pass 2 sends a transport packet, as its flow entry or Maglev decided.
#[derive(Clone, Copy, Debug)]
enum FlowDecision {
    /// To backend `id`. `stable` is the flow's stable hash when it was computed on the way (a
    /// miss or a re-hash), for the outer IPv6 flow label.
    Backend { id: u32, stable: Option<u64> },
    /// To backend `id`, naming backend `alternative` in the outer header (second chance), with
    /// the claim horizon code `horizon` (`mux_packet::claim_horizon`).
    SecondChance {
        id: u32,
        alternative: u32,
        stable: u64,
        horizon: u8,
    },
    /// Nowhere: the flow's backend passed its drain deadline; answer the client with a reset.
    Reset,
}

/// Why a flow entry's backend was replaced by Maglev's pick (one counter each).
#[derive(Clone, Copy, Debug)]
enum Rehash {
    /// The backend left the configuration or its VIP.
    Removed,
    /// The backend failed and its grace ran out.
    AfterGrace,
    /// The backend passed its drain deadline.
    AfterDrain,
    /// A bare SYN, a new connection on the 4-tuple, found the backend failed (within its
    /// grace, which keeps only the connections it already carries).
    NewOnFailed,
}

/// Which sub-count of `forwarded` a fragment or an ICMP error goes to once encapsulated.
#[derive(Clone, Copy, Debug)]
enum ForwardKind {
    Fragment,
    IcmpError,
}

/// What pass 1 left for pass 2.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// Verdict already known.
    Settled(Verdict),
    /// A transport packet of VIP `vip` (index into the snapshot's VIPs) and its flow hash.
    /// `stable` is the stable hash, computed (and its Maglev slot prefetched) in pass 1 for a
    /// bare SYN, the packet most likely to be a new flow.
    Flow {
        vip: u16,
        hash: FlowHash,
        stable: Option<u64>,
    },
    /// A fragment of a datagram to VIP `vip`.
    Fragment { vip: u16 },
    /// An ICMP error about a flow of VIP `vip`, and that flow's hash.
    IcmpError { vip: u16, hash: FlowHash },
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    pending: Pending,
    parsed: Parsed,
}

/// One worker's pipeline: its flow table, its counters and its scratch space.
#[derive(Debug)]
pub struct Pipeline {
    flows: FlowTable,
    /// This worker's counters.
    pub counters: WorkerCounters,
    slots: Box<[Slot]>,
    ident: u16,
    generation: u64,
    /// Bounds the ICMP "too big" errors this worker writes.
    icmp_bucket: TokenBucket,
    /// Bounds the drain resets this worker writes.
    reset_bucket: TokenBucket,
    /// With `[flow_log]`: where sampled new flows' records go.
    flow_log: Option<FlowLogSink>,
    /// The current burst's time on the flow clock (for flow-log records).
    burst_micros: u64,
}

impl Pipeline {
    /// A pipeline with a flow table of `flow_capacity` entries whose in-process hash uses
    /// `seed` (random in production; fixed in tests).
    pub fn new(flow_capacity: usize, seed: u64) -> Self {
        Pipeline {
            flows: FlowTable::with_capacity(flow_capacity, seed),
            counters: WorkerCounters::default(),
            slots: vec![SETTLED; MAX_BURST].into_boxed_slice(),
            ident: 0,
            generation: 0,
            icmp_bucket: TokenBucket::new(),
            reset_bucket: TokenBucket::new(),
            flow_log: None,
            burst_micros: 0,
        }
    }

    /// The same pipeline, pushing a record of each sampled new flow into `sink`.
    pub fn with_flow_log(self, sink: FlowLogSink) -> Self {
        Pipeline {
            flow_log: Some(sink),
            ..self
        }
    }

    /// The worker's flow table (for status and tests).
    pub fn flow_table(&self) -> &FlowTable {
        &self.flows
    }

    /// The worker's flow table, mutable (for the incremental census).
    pub fn flow_table_mut(&mut self) -> &mut FlowTable {
        &mut self.flows
    }

    /// Processes a burst: rewrites each buffer in place and writes its verdict. Returns how
    /// many frames are to be transmitted (verdict `Forward` or `Reply`).
    ///
    /// `clock` is the burst's one time reading: the flow table works in its whole seconds,
    /// the reply buckets are refilled from it. `bufs` and `verdicts` have the same length, at
    /// most [`MAX_BURST`].
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        clock: BurstTime,
        bufs: &mut [B],
        verdicts: &mut [Verdict],
    ) -> usize {
        assert!(bufs.len() <= MAX_BURST && verdicts.len() >= bufs.len());
        if snap.generation() != self.generation {
            self.adopt(snap);
        }
        self.icmp_bucket.refill(clock, snap.parts.icmp_limit);
        self.reset_bucket
            .refill(clock, snap.parts.drain_reset_limit);
        let now = clock.secs();
        self.burst_micros = clock.micros();
        for (buf, slot) in bufs.iter().zip(self.slots.iter_mut()) {
            let frame = buf.data();
            self.counters.rx += 1;
            self.counters.rx_bytes += frame.len() as u64;
            classify(snap, &self.flows, frame, slot);
            if let Pending::Flow { hash, .. } | Pending::IcmpError { hash, .. } = &slot.pending {
                self.flows.prefetch(hash);
            }
        }
        // Borrow the slots out of `self` (no allocation: an empty boxed slice) so pass 2 reads
        // them in place while `forward` mutates the flow table and counters.
        let slots = std::mem::take(&mut self.slots);
        let mut transmit = 0;
        for ((buf, slot), out) in bufs.iter_mut().zip(slots.iter()).zip(verdicts.iter_mut()) {
            let verdict = self.forward(snap, now, buf, slot);
            match verdict {
                Verdict::Forward => {
                    self.counters.forwarded += 1;
                    transmit += 1;
                }
                Verdict::Reply(Reply::TooBig) => {
                    self.counters.icmp_too_big_sent += 1;
                    transmit += 1;
                }
                Verdict::Reply(Reply::Reset) => {
                    self.counters.drain_resets_sent += 1;
                    transmit += 1;
                }
                Verdict::ToKernel => self.counters.to_kernel += 1,
                Verdict::Drop(reason) => self.counters.drop(reason),
            }
            *out = verdict;
        }
        self.slots = slots;
        transmit
    }

    /// Adopts a new snapshot between bursts: sizes the per-id counters.
    fn adopt(&mut self, snap: &Snapshot) {
        self.counters
            .ensure_ids(snap.parts.vip_ids, snap.parts.backends.len());
        self.generation = snap.generation();
    }

    /// Pass 2 for one frame.
    #[inline]
    fn forward<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        now: u32,
        buf: &mut B,
        s: &Slot,
    ) -> Verdict {
        // `stable` is the flow's stable hash when it was computed on the way (a miss), for the
        // outer IPv6 flow label.
        let (vip, backend_id, stable) = match s.pending {
            Pending::Settled(v) => return v,
            Pending::Flow { vip, hash, stable } => {
                let vip = &snap.parts.vips[vip as usize];
                match self.flow_backend(snap, vip, now, &hash, stable, &s.parsed) {
                    Ok(FlowDecision::Backend { id, stable }) => (vip, id, stable),
                    Ok(FlowDecision::SecondChance {
                        id,
                        alternative,
                        stable,
                        horizon,
                    }) => {
                        return self.send_with_alternative(
                            snap,
                            vip,
                            id,
                            stable,
                            (alternative, horizon),
                            buf,
                            s,
                        );
                    }
                    Ok(FlowDecision::Reset) => return self.reset_drained(snap, &hash, buf, s),
                    Err(reason) => return Verdict::Drop(reason),
                }
            }
            Pending::Fragment { vip } => {
                let vip = &snap.parts.vips[vip as usize];
                let k = &s.parsed.key;
                let h = stable_hash::fragment_hash(&k.src, &k.dst, k.protocol);
                let Some(id) = vip.pick(h) else {
                    return Verdict::Drop(DropReason::NoBackend);
                };
                return self.send_kind(snap, vip, id, Some(h), buf, s, ForwardKind::Fragment);
            }
            Pending::IcmpError { vip, hash } => {
                let vip = &snap.parts.vips[vip as usize];
                let Some(id) = self.icmp_error_backend(snap, vip, now, &hash, &s.parsed) else {
                    return Verdict::Drop(DropReason::NoBackend);
                };
                return self.send_kind(snap, vip, id, None, buf, s, ForwardKind::IcmpError);
            }
        };
        self.send(snap, vip, backend_id, stable, buf, s)
    }

    /// Forwards a fragment or an ICMP error with [`Pipeline::send`] and, only if it was
    /// actually encapsulated, counts it under its kind (`fragments_forwarded`,
    /// `icmp_errors_forwarded`): a sub-count of `forwarded`, never of a drop or a reply.
    ///
    /// Out of line so that the flow path (every hit) runs no test of the kind.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn send_kind<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        backend_id: u32,
        stable: Option<u64>,
        buf: &mut B,
        s: &Slot,
        kind: ForwardKind,
    ) -> Verdict {
        let verdict = self.send(snap, vip, backend_id, stable, buf, s);
        if matches!(verdict, Verdict::Forward) {
            match kind {
                ForwardKind::Fragment => self.counters.fragments_forwarded += 1,
                ForwardKind::IcmpError => self.counters.icmp_errors_forwarded += 1,
            }
        }
        verdict
    }

    /// Encapsulates toward backend `backend_id` in plain IP-in-IP: an ICMP too-big reply when
    /// the packet would exceed the MTU, a drop when the backend is gone or encapsulation fails,
    /// else `Forward`, counted per VIP and backend.
    #[inline(always)]
    fn send<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        backend_id: u32,
        stable: Option<u64>,
        buf: &mut B,
        s: &Slot,
    ) -> Verdict {
        let Some(backend) = snap.backend(backend_id) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let parsed = &s.parsed;
        let outer = outer_len(backend.is_v4);
        if parsed.ip_len + outer > snap.parts.mtu {
            return self.too_big(snap, outer, buf, s);
        }
        let ident = self.outer_ident(parsed);
        // The outer flow label comes from the stable hash, so a flow's tunnelled packets look
        // the same whichever MUX sends them (hosts steer them to the same RSS queue).
        let entropy = if backend.is_v4 {
            0
        } else {
            stable.unwrap_or_else(|| stable_hash::flow_hash(&parsed.key))
        };
        if let Err(reason) = encap::encapsulate(buf, parsed, backend, &snap.parts, ident, entropy) {
            return Verdict::Drop(reason);
        }
        self.count_forwarded(vip, backend_id, parsed.ip_len);
        Verdict::Forward
    }

    /// A packet too big to forward once encapsulated in an outer header of `outer` bytes:
    /// an ICMP "fragmentation needed" / "packet too big" for the client when it may have one
    /// (DF or IPv6, not itself an ICMP error, a token in the bucket), else a counted drop.
    #[inline(always)]
    fn too_big<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        outer: usize,
        buf: &mut B,
        s: &Slot,
    ) -> Verdict {
        let parsed = &s.parsed;
        if matches!(s.pending, Pending::IcmpError { .. }) {
            return Verdict::Drop(DropReason::TooBigIcmpError);
        }
        if !parsed.dont_frag {
            return Verdict::Drop(DropReason::TooBigWithoutDf);
        }
        if !self.icmp_bucket.take() {
            return Verdict::Drop(DropReason::IcmpRateLimited);
        }
        let inner_mtu = snap.parts.mtu - outer;
        match icmp_reply::packet_too_big(buf, parsed, inner_mtu, snap.parts.source_mac) {
            Ok(()) => Verdict::Reply(Reply::TooBig),
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// RFC 6864: atomic (DF) datagrams need no unique identification; the others get the
    /// worker's next one.
    #[inline(always)]
    fn outer_ident(&mut self, parsed: &Parsed) -> u16 {
        if parsed.dont_frag {
            0
        } else {
            self.ident = self.ident.wrapping_add(1);
            self.ident
        }
    }

    /// Counts a forwarded frame for its VIP and its backend; the backend's packets and inner
    /// bytes (`ip_len`, the client's IP packet) sit side by side in one element.
    #[inline(always)]
    fn count_forwarded(&mut self, vip: &Vip, backend_id: u32, ip_len: usize) {
        if let Some(c) = self.counters.vip_forwarded.get_mut(vip.id as usize) {
            *c += 1;
        }
        if let Some(c) = self.counters.backend_forwarded.get_mut(backend_id as usize) {
            c.count(ip_len);
        }
    }

    /// Encapsulates toward backend `backend_id` naming backend `alternative` in the outer
    /// header; or plainly, counted, when the option would take the packet past the MTU and
    /// plain IP-in-IP fits (a packet is never dropped or answered for the option's sake:
    /// docs/second-chance.md). A packet too big even plainly is answered as any other.
    ///
    /// Out of line, and apart from the plain path's code, so that flow-table hits run exactly
    /// the instructions they ran before second chance existed.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn send_with_alternative<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        backend_id: u32,
        stable: u64,
        (alternative, horizon): (u32, u8),
        buf: &mut B,
        s: &Slot,
    ) -> Verdict {
        // The pipeline named both from this snapshot: they exist.
        let (Some(backend), Some(alt)) = (snap.backend(backend_id), snap.backend(alternative))
        else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let parsed = &s.parsed;
        let outer = outer_len(backend.is_v4);
        if parsed.ip_len + outer > snap.parts.mtu {
            return self.too_big(snap, outer, buf, s);
        }
        let fits =
            parsed.ip_len + second_chance::reserved_len(backend.is_v4, alt.is_v4) <= snap.parts.mtu;
        let ident = self.outer_ident(parsed);
        let entropy = if backend.is_v4 { 0 } else { stable };
        let written = if fits {
            second_chance::encapsulate_with_alternative(
                buf,
                parsed,
                backend,
                alt,
                claim_horizon::to_flags(horizon),
                &snap.parts,
                ident,
                entropy,
            )
        } else {
            encap::encapsulate(buf, parsed, backend, &snap.parts, ident, entropy)
        };
        if let Err(reason) = written {
            return Verdict::Drop(reason);
        }
        if fits {
            self.counters.second_chance_sent += 1;
        } else {
            self.counters.second_chance_skipped_mtu += 1;
        }
        self.count_forwarded(vip, backend_id, parsed.ip_len);
        Verdict::Forward
    }

    /// Where a transport packet's flow goes, creating or updating its entry.
    #[inline]
    fn flow_backend(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        now: u32,
        hash: &FlowHash,
        stable: Option<u64>,
        parsed: &Parsed,
    ) -> Result<FlowDecision, DropReason> {
        let tcp = match parsed.kind {
            Kind::Transport { tcp } => tcp,
            _ => None,
        };
        if let Some(mut entry) = self.flows.find(hash, now) {
            let state = next_state(Some(entry.state()), tcp);
            let expires = expiry(now, &vip.timeouts, state);
            let id = entry.backend();
            let why = match snap.backend(id) {
                Some(b) if b.vip_id == vip.id => match b.pinned(now) {
                    Pinned::Kept if b.state != BackendState::Failed => {
                        entry.refresh(state, expires);
                        self.counters.flow_hits += 1;
                        return Ok(FlowDecision::Backend { id, stable: None });
                    }
                    // The grace keeps established connections, not new ones: a bare SYN on
                    // the 4-tuple (a client reusing its port) belongs on a backend that is up.
                    Pinned::Kept if tcp.is_some_and(|t| t.syn && !t.ack) => Rehash::NewOnFailed,
                    Pinned::Kept => {
                        entry.refresh(state, expires);
                        self.counters.flow_hits += 1;
                        self.counters.failed_backend_grace_hits += 1;
                        return Ok(FlowDecision::Backend { id, stable: None });
                    }
                    Pinned::Cut(CutoffReason::FailedGrace) => Rehash::AfterGrace,
                    // A TCP segment of the drained connection: reset it. A bare SYN starts a
                    // new connection on the 4-tuple, which belongs on an active backend.
                    Pinned::Cut(CutoffReason::DrainDeadline)
                        if tcp.is_some_and(|t| !t.syn || t.ack) =>
                    {
                        return Ok(FlowDecision::Reset);
                    }
                    Pinned::Cut(CutoffReason::DrainDeadline) => Rehash::AfterDrain,
                },
                _ => Rehash::Removed,
            };
            let stable = stable.unwrap_or_else(|| stable_hash::flow_hash(&parsed.key));
            let id = vip.pick(stable).ok_or(DropReason::NoBackend)?;
            let (state, expires) = match why {
                // The old connection's state does not carry over to the new one.
                Rehash::NewOnFailed => (
                    FlowState::TcpSynOnly,
                    expiry(now, &vip.timeouts, FlowState::TcpSynOnly),
                ),
                _ => (state, expires),
            };
            entry.set(id, state, expires);
            match why {
                Rehash::Removed => self.counters.flows_rehashed += 1,
                Rehash::AfterGrace => self.counters.flows_rehashed_after_grace += 1,
                Rehash::AfterDrain => self.counters.flows_rehashed_after_drain += 1,
                Rehash::NewOnFailed => self.counters.flows_rehashed_new_on_failed += 1,
            }
            return Ok(FlowDecision::Backend {
                id,
                stable: Some(stable),
            });
        }
        // A miss. Anything but a bare SYN may belong to a connection older than the table.
        if !tcp.is_some_and(|t| t.syn && !t.ack) {
            return self.miss_without_syn(snap, vip, now, hash, stable, parsed, tcp);
        }
        let stable = stable.unwrap_or_else(|| stable_hash::flow_hash(&parsed.key));
        let id = vip.pick(stable).ok_or(DropReason::NoBackend)?;
        let state = next_state(None, tcp);
        let expires = expiry(now, &vip.timeouts, state);
        if self.insert_flow(hash, id, state, expires, now) {
            self.log_new_flow(snap, vip, parsed, stable, id, None);
        }
        Ok(FlowDecision::Backend {
            id,
            stable: Some(stable),
        })
    }

    /// With a flow log, and when the snapshot samples this flow (by its stable hash): queues
    /// the record of a new flow-table entry, or counts it dropped when the ring is full.
    /// Without one: a single test of `flow_log`.
    #[inline(always)]
    fn log_new_flow(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        parsed: &Parsed,
        stable: u64,
        backend: u32,
        alternative: Option<u32>,
    ) {
        if self.flow_log.is_some() && snap.parts.flow_log_sample.picks(stable) {
            self.push_flow_record(snap, vip, parsed, backend, alternative);
        }
    }

    /// Builds and queues a sampled new flow's record (out of line: the flow-log-off path and
    /// the unsampled flows never run it).
    #[inline(never)]
    fn push_flow_record(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        parsed: &Parsed,
        backend: u32,
        alternative: Option<u32>,
    ) {
        let Some(sink) = self.flow_log.as_mut() else {
            return;
        };
        // Both ids come from this snapshot's tables: they exist (a `None` is never logged
        // as an address that is not).
        let Some(address) = snap.backend(backend).map(|b| b.address) else {
            return;
        };
        let record = FlowRecord {
            micros: self.burst_micros,
            generation: snap.generation(),
            key: parsed.key,
            vip_id: vip.id,
            backend: address,
            alternative: alternative.and_then(|a| snap.backend(a)).map(|b| b.address),
        };
        if !sink.push(record) {
            self.counters.flow_log_dropped += 1;
        }
    }

    /// Records a new flow's entry, counting the outcome; true when it was stored.
    #[inline(always)]
    fn insert_flow(
        &mut self,
        hash: &FlowHash,
        id: u32,
        state: FlowState,
        expires: u32,
        now: u32,
    ) -> bool {
        match self.flows.insert(hash, id, state, expires, now) {
            InsertOutcome::Inserted => {
                self.counters.new_flows += 1;
                true
            }
            InsertOutcome::Evicted => {
                self.counters.new_flows += 1;
                self.counters.flows_evicted += 1;
                true
            }
            InsertOutcome::Full => {
                self.counters.flow_table_full += 1;
                false
            }
        }
    }

    /// A flow-table miss of a packet that is not a bare SYN: the second chance's decision
    /// ([`Pipeline::second_chance`]), or a new entry for Maglev's pick as for any miss. Out of
    /// line (see [`Pipeline::send_with_alternative`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn miss_without_syn(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        now: u32,
        hash: &FlowHash,
        stable: Option<u64>,
        parsed: &Parsed,
        tcp: Option<TcpSeen>,
    ) -> Result<FlowDecision, DropReason> {
        let stable = stable.unwrap_or_else(|| stable_hash::flow_hash(&parsed.key));
        let id = vip.pick(stable).ok_or(DropReason::NoBackend)?;
        if let Some(decision) = self.second_chance(snap, vip, now, hash, stable, id, parsed, tcp) {
            return Ok(decision);
        }
        let state = next_state(None, tcp);
        let expires = expiry(now, &vip.timeouts, state);
        if self.insert_flow(hash, id, state, expires, now) {
            self.log_new_flow(snap, vip, parsed, stable, id, None);
        }
        Ok(FlowDecision::Backend {
            id,
            stable: Some(stable),
        })
    }

    /// The second chance of a packet that missed the flow table and is not a bare SYN, whose
    /// flow Maglev sends to `current` now (see the module docs). Returns the decision when
    /// the flow has a second-chance entry or its packet gets an alternative now; `None` to
    /// go on as a plain miss (a normal entry for `current`).
    ///
    /// A second-chance entry whose alternative no longer keeps flows (removed, past its drain
    /// deadline, failed beyond its grace) has nothing left to say: it is removed, and the
    /// packet is decided afresh.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn second_chance(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        now: u32,
        hash: &FlowHash,
        stable: u64,
        current: u32,
        parsed: &Parsed,
        tcp: Option<TcpSeen>,
    ) -> Option<FlowDecision> {
        let key = hash.second_chance();
        let primary_key = hash.second_chance_primary();
        let mut known = None;
        if let Some(mut entry) = self.flows.find(&key, now) {
            let alternative = entry.backend();
            if snap.usable_alternative(vip, alternative, now) {
                let state = next_state(Some(entry.state()), tcp);
                let expires = expiry(now, &vip.timeouts, state);
                entry.refresh(state, expires);
                known = Some((alternative, state, expires));
            } else {
                self.flows.remove(&key);
                self.flows.remove(&primary_key);
            }
        }
        if let Some((alternative, state, expires)) = known {
            // The flow keeps the backend its first packet went to, whatever the tables say
            // since (see `FlowHash::second_chance_primary`); if that one no longer keeps flows
            // (or its entry was lost), the current pick takes its place.
            let primary = match self.flows.find(&primary_key, now) {
                Some(mut p) if snap.usable_alternative(vip, p.backend(), now) => {
                    p.refresh(state, expires);
                    p.backend()
                }
                Some(mut p) => {
                    p.set(current, state, expires);
                    current
                }
                None => {
                    self.insert_primary(&primary_key, current, state, expires, now);
                    current
                }
            };
            return Some(if alternative == primary {
                FlowDecision::Backend {
                    id: primary,
                    stable: Some(stable),
                }
            } else {
                // The horizon is for the agent's first decision about the flow (made on the
                // packet that created this entry): a later, stricter one would make it refuse
                // a flow it claimed and has been delivering, after an idle spell.
                FlowDecision::SecondChance {
                    id: primary,
                    alternative,
                    stable,
                    horizon: 0,
                }
            });
        }
        let alternative = snap.alternative(vip, stable, current, now)?;
        let state = next_state(None, tcp);
        let expires = expiry(now, &vip.timeouts, state);
        // Not stored when its bucket is full: the next packet is decided afresh (the same way,
        // within the window).
        if self.insert_flow(&key, alternative, state, expires, now) {
            self.counters.second_chance_flows += 1;
            self.insert_primary(&primary_key, current, state, expires, now);
            self.log_new_flow(snap, vip, parsed, stable, current, Some(alternative));
        }
        Some(FlowDecision::SecondChance {
            id: current,
            alternative,
            stable,
            horizon: snap.claim_horizon(vip, stable, alternative, self.burst_micros),
        })
    }

    /// Stores a second-chance flow's primary (see `FlowHash::second_chance_primary`). Not a
    /// new flow of its own: only what it did to the table is counted (an eviction, or no
    /// room; then the next packet stores the current pick again).
    #[cold]
    fn insert_primary(
        &mut self,
        key: &FlowHash,
        id: u32,
        state: FlowState,
        expires: u32,
        now: u32,
    ) {
        match self.flows.insert(key, id, state, expires, now) {
            InsertOutcome::Inserted => {}
            InsertOutcome::Evicted => self.counters.flows_evicted += 1,
            InsertOutcome::Full => self.counters.flow_table_full += 1,
        }
    }

    /// Answers a TCP segment of a flow whose backend passed its drain deadline: a reset from
    /// the VIP (its entry removed), unless the segment is itself a reset (dropped, its entry
    /// removed) or the reset bucket is empty (dropped, its entry kept for the retransmission).
    #[cold]
    fn reset_drained<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        hash: &FlowHash,
        buf: &mut B,
        s: &Slot,
    ) -> Verdict {
        let Some(segment) = tcp_reset::read_segment(buf.data(), &s.parsed) else {
            return Verdict::Drop(DropReason::MalformedTransport);
        };
        if segment.flags.rst() {
            self.flows.remove(hash);
            return Verdict::Drop(DropReason::RstAfterDrainDeadline);
        }
        if !self.reset_bucket.take() {
            return Verdict::Drop(DropReason::DrainResetRateLimited);
        }
        match tcp_reset::write_reset(buf, &s.parsed, &segment, snap.parts.source_mac) {
            Ok(()) => {
                self.flows.remove(hash);
                Verdict::Reply(Reply::Reset)
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// The backend owning the flow an ICMP error is about. Never changes the flow table.
    #[inline]
    fn icmp_error_backend(
        &mut self,
        snap: &Snapshot,
        vip: &Vip,
        now: u32,
        hash: &FlowHash,
        parsed: &Parsed,
    ) -> Option<u32> {
        if let Some(entry) = self.flows.find(hash, now) {
            let id = entry.backend();
            if snap
                .backend(id)
                .is_some_and(|b| b.vip_id == vip.id && b.keeps_flows(now))
            {
                return Some(id);
            }
        }
        vip.pick(stable_hash::flow_hash(&parsed.key))
    }
}

/// Pass 1 for one frame: parse it straight into its burst slot and match the VIP.
#[inline(always)]
fn classify(snap: &Snapshot, flows: &FlowTable, frame: &[u8], slot: &mut Slot) {
    slot.pending = match parse::parse_into(frame, &mut slot.parsed) {
        Ok(()) => match_vip(snap, flows, &slot.parsed),
        Err(Settled::ToKernel) => Pending::Settled(Verdict::ToKernel),
        Err(Settled::Drop(reason)) => Pending::Settled(Verdict::Drop(reason)),
    };
}

/// What pass 2 is to do with a parsed frame: its VIP and flow hash, or its verdict.
#[inline(always)]
fn match_vip(snap: &Snapshot, flows: &FlowTable, parsed: &Parsed) -> Pending {
    let settled = Pending::Settled;
    let key = &parsed.key;
    match parsed.kind {
        Kind::Transport { .. } | Kind::IcmpError => {
            let vip_key = VipKey {
                addr: key.dst,
                port: key.dst_port,
                protocol: key.protocol,
            };
            let Some((index, vip)) = snap.vip(&vip_key) else {
                return settled(Verdict::ToKernel);
            };
            let hash = flows.hash(key);
            match parsed.kind {
                Kind::IcmpError => Pending::IcmpError { vip: index, hash },
                Kind::Transport {
                    tcp:
                        Some(TcpSeen {
                            syn: true,
                            ack: false,
                            ..
                        }),
                } => {
                    // Most likely a new flow: start loading its Maglev slot now, so pass 2's
                    // pick does not wait for it.
                    let stable = stable_hash::flow_hash(key);
                    vip.prefetch_pick(stable);
                    Pending::Flow {
                        vip: index,
                        hash,
                        stable: Some(stable),
                    }
                }
                _ => Pending::Flow {
                    vip: index,
                    hash,
                    stable: None,
                },
            }
        }
        Kind::Fragment => match snap.fragment_vip(&key.dst, key.protocol) {
            Some(vip) => {
                let (i, _) = snap.vip(&vip.key).expect("fragment VIP is indexed");
                Pending::Fragment { vip: i }
            }
            None => settled(Verdict::ToKernel),
        },
        Kind::BrokenIcmpError => settled(if snap.is_vip_address(&key.dst) {
            Verdict::Drop(DropReason::MalformedIcmpError)
        } else {
            Verdict::ToKernel
        }),
    }
}

/// A slot before classification (never read as such).
const SETTLED: Slot = Slot {
    pending: Pending::Settled(Verdict::ToKernel),
    parsed: EMPTY_PARSED,
};

/// A placeholder for settled slots (never read).
const EMPTY_PARSED: Parsed = Parsed {
    l2_len: 0,
    ip_len: 0,
    is_v4: true,
    dscp_ecn: 0,
    dont_frag: false,
    key: mux_packet::flow_key::FlowKey {
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        protocol: 0,
    },
    kind: Kind::Fragment,
};

/// The flow's state after this packet. `tcp` is `None` for UDP.
#[inline]
fn next_state(current: Option<FlowState>, tcp: Option<TcpSeen>) -> FlowState {
    let Some(flags) = tcp else {
        return FlowState::Udp;
    };
    if flags.fin_or_rst {
        return FlowState::TcpClosing;
    }
    match current {
        // A bare SYN on a closing entry is a new connection reusing the 4-tuple.
        Some(FlowState::TcpClosing) if flags.syn && !flags.ack => FlowState::TcpSynOnly,
        Some(FlowState::TcpClosing) => FlowState::TcpClosing,
        Some(FlowState::TcpEstablished) => FlowState::TcpEstablished,
        _ if flags.ack => FlowState::TcpEstablished,
        _ => FlowState::TcpSynOnly,
    }
}

/// When an entry in `state` expires if nothing else is seen.
#[inline]
fn expiry(now: u32, t: &FlowTimeouts, state: FlowState) -> u32 {
    let timeout = match state {
        FlowState::TcpSynOnly => t.tcp_syn,
        FlowState::TcpEstablished => t.tcp_established,
        FlowState::TcpClosing => t.tcp_closing,
        _ => t.udp,
    };
    now.saturating_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpSeen = TcpSeen {
        syn: true,
        ack: false,
        fin_or_rst: false,
    };
    const ACK: TcpSeen = TcpSeen {
        syn: false,
        ack: true,
        fin_or_rst: false,
    };
    const FIN: TcpSeen = TcpSeen {
        syn: false,
        ack: true,
        fin_or_rst: true,
    };

    #[test]
    fn tcp_state_machine() {
        assert_eq!(next_state(None, Some(SYN)), FlowState::TcpSynOnly);
        assert_eq!(next_state(None, Some(ACK)), FlowState::TcpEstablished);
        assert_eq!(
            next_state(Some(FlowState::TcpSynOnly), Some(SYN)),
            FlowState::TcpSynOnly
        );
        assert_eq!(
            next_state(Some(FlowState::TcpSynOnly), Some(ACK)),
            FlowState::TcpEstablished
        );
        assert_eq!(
            next_state(Some(FlowState::TcpEstablished), Some(SYN)),
            FlowState::TcpEstablished
        );
        assert_eq!(
            next_state(Some(FlowState::TcpEstablished), Some(FIN)),
            FlowState::TcpClosing
        );
        assert_eq!(
            next_state(Some(FlowState::TcpClosing), Some(ACK)),
            FlowState::TcpClosing
        );
        assert_eq!(
            next_state(Some(FlowState::TcpClosing), Some(SYN)),
            FlowState::TcpSynOnly
        );
        assert_eq!(next_state(None, None), FlowState::Udp);
    }

    #[test]
    fn expiry_uses_the_state_timeout_and_saturates() {
        let t = FlowTimeouts {
            tcp_syn: 1,
            tcp_established: 2,
            tcp_closing: 3,
            udp: 4,
        };
        assert_eq!(expiry(10, &t, FlowState::TcpSynOnly), 11);
        assert_eq!(expiry(10, &t, FlowState::TcpEstablished), 12);
        assert_eq!(expiry(10, &t, FlowState::TcpClosing), 13);
        assert_eq!(expiry(10, &t, FlowState::Udp), 14);
        assert_eq!(expiry(u32::MAX, &t, FlowState::Udp), u32::MAX);
    }
}
