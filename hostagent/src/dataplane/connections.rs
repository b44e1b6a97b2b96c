//! The connections this agent carries: what second chance asks before forwarding a packet.
//!
//! # What it owns
//!
//! One [`ConnTable`] per data path, owned by the thread that runs it (today the agent's one
//! forwarder thread): no locks, no atomics, no allocation after [`ConnTable::with_capacity`].
//! It maps a connection as the backend sees it — [`ConnKey`]: client address and port, backend
//! address and port, protocol — to a coarse [`ConnState`] and an expiry time. It learns from
//! every packet the agent delivers to a backend and from every reply it rewrites, so it knows
//! a connection from either direction (a restarted agent re-learns one from the backend's
//! next reply). It answers one question, [`ConnTable::contains`]: "does a backend here carry
//! this connection?".
//!
//! # Layout
//!
//! A power-of-two array of 64-byte, 64-byte-aligned buckets of [`SLOTS_PER_BUCKET`] (8)
//! slots: eight 32-bit signatures (0 = empty) and eight 32-bit expiry times, one cache line.
//! Beside it, one entry (the full 38-byte key and the state, 40 bytes) per slot. A lookup
//! hashes the key once (`hashbrown`'s seeded in-process hasher, never a stable one: the seed
//! is random per table, so nobody outside can aim keys at one bucket), reads the bucket's line,
//! and compares the full key only for a slot whose signature matches and that has not expired
//! — a second cache line only for the (expected) hit. Keys are stored, unlike the MUX's
//! signature-only flow table, because this table is saved to a file and read back by another
//! process with another seed (the restart rule), and its contents are worth showing to an
//! operator; the price is 48 bytes per entry instead of 16.
//!
//! # Time and expiry
//!
//! Times are whole seconds of a clock the caller advances ([`super::DataPath::set_clock`]:
//! the forwarder does it once per burst; tests set it). A slot is live while `expires > now`;
//! expiry is lazy: a lookup ignores an expired slot, an insert reuses it, and the sweep
//! ([`ConnTable::sweep_step`], a slice of buckets per burst, a full pass about every second)
//! clears it — counted then, once — and hands the live entries to the state-file writer.
//! Timeouts come from the service's `[timeouts]` ([`crate::config::Timeouts`]); every packet
//! of a connection pushes its expiry to `now + timeout(state)`.
//!
//! # A full bucket
//!
//! A key lives only in the bucket its hash selects. When that bucket has no slot with the
//! key, none empty and none expired, the newcomer may displace a half-open
//! ([`ConnState::TcpSyn`]) or closing ([`ConnState::TcpClosing`]) entry, the one expiring
//! first; established TCP and UDP entries are never displaced. With nothing to displace the
//! insert fails ([`Learned::Full`], counted as `table_full`): the packet is still delivered,
//! only the agent's memory of it is lost. So a SYN flood churns only half-open entries, and
//! a connection the table holds stays until it idles out.
//!
//! # Sizing
//!
//! Keys fall into buckets like balls into bins (Poisson with mean = load × 8). At a quarter
//! of the capacity (mean 2) a bucket overflows with probability about 1e-4; at half (mean 4)
//! about 2 %, and roughly 0.5 % of the newcomers then find no slot; at three quarters about
//! 15 %. Configure `[connections] capacity` at about four times the connections the host's
//! backends carry at once (the default, 262 144 entries, takes 12 MiB).
//!
//! # Rejected alternatives
//!
//! - *`hashbrown::HashMap`*: grows (allocates) under load, has no notion of expiry or of
//!   which entry to give up when full, and a SYN flood could make it grow without bound.
//! - *Signatures only (the MUX's table)*: cannot be saved and loaded across a restart, where
//!   the seed — and possibly the capacity — change.
//! - *A timer wheel*: per-connection work for exact expiry nobody needs; lazy expiry costs a
//!   compare, and the sweep is needed anyway for the state file.
//! - *Sharing the table with another thread (atomics or a lock)*: the data path would pay for
//!   every access; the sweep copies the live entries out instead, a slice at a time.

use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::DefaultHashBuilder;
use mux_packet::flow_key::{canonical_addr, unmap};

use crate::config::Timeouts;

/// Slots per bucket: eight 32-bit signatures and eight 32-bit expiry times fill one 64-byte
/// cache line.
pub const SLOTS_PER_BUCKET: usize = 8;
/// The smallest table [`ConnTable::with_capacity`] builds.
pub const MIN_CAPACITY: usize = 64;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// A connection as its backend sees it. Addresses are stored in 16-byte form (IPv4-mapped for
/// IPv4), like `mux_packet::flow_key`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's address (the inner source of a delivered packet).
    pub client: [u8; 16],
    /// The backend's address (`backend_address` of the service).
    pub backend: [u8; 16],
    /// The client's port.
    pub client_port: u16,
    /// The backend's port (`backend_port`).
    pub backend_port: u16,
    /// The IP protocol (6 TCP, 17 UDP).
    pub protocol: u8,
}

impl ConnKey {
    /// The key of the connection `client:client_port` ↔ `backend:backend_port`.
    #[inline]
    pub fn new(
        client: IpAddr,
        client_port: u16,
        backend: IpAddr,
        backend_port: u16,
        protocol: u8,
    ) -> Self {
        ConnKey {
            client: canonical_addr(client),
            backend: canonical_addr(backend),
            client_port,
            backend_port,
            protocol,
        }
    }

    /// The client address.
    pub fn client_ip(&self) -> IpAddr {
        unmap(self.client)
    }

    /// The backend address.
    pub fn backend_ip(&self) -> IpAddr {
        unmap(self.backend)
    }
}

/// The coarse state of a connection, as far as the agent can tell from both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnState {
    /// TCP: only SYN / SYN-ACK seen so far (half-open; what a SYN flood creates).
    TcpSyn = 1,
    /// TCP past its handshake.
    TcpEstablished = 2,
    /// TCP after a FIN or RST in either direction.
    TcpClosing = 3,
    /// A UDP flow.
    Udp = 4,
}

impl ConnState {
    /// The state after a packet with `protocol` and (for TCP) `tcp_flags`, given the current
    /// one (`None`: a new connection). TCP: FIN or RST → closing; a SYN (with or without ACK)
    /// → half-open unless already established; anything else → established, unless closing
    /// (late ACKs and half-closed data keep a closing connection closing).
    #[inline]
    pub fn after(current: Option<ConnState>, protocol: u8, tcp_flags: u8) -> ConnState {
        if protocol != PROTO_TCP {
            return ConnState::Udp;
        }
        if tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            ConnState::TcpClosing
        } else if tcp_flags & TCP_SYN != 0 {
            match current {
                Some(ConnState::TcpEstablished) => ConnState::TcpEstablished,
                _ => ConnState::TcpSyn,
            }
        } else {
            match current {
                Some(ConnState::TcpClosing) => ConnState::TcpClosing,
                _ => ConnState::TcpEstablished,
            }
        }
    }

    /// This state's idle timeout under `t`, in seconds.
    #[inline]
    pub fn timeout(self, t: &Timeouts) -> u32 {
        match self {
            ConnState::TcpSyn => t.tcp_syn,
            ConnState::TcpEstablished => t.tcp_established,
            ConnState::TcpClosing => t.tcp_closing,
            ConnState::Udp => t.udp,
        }
    }

    /// The state's name in the state file and in status documents.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::TcpSyn => "tcp_syn",
            ConnState::TcpEstablished => "tcp_established",
            ConnState::TcpClosing => "tcp_closing",
            ConnState::Udp => "udp",
        }
    }

    /// The state stored as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<ConnState> {
        Some(match byte {
            1 => ConnState::TcpSyn,
            2 => ConnState::TcpEstablished,
            3 => ConnState::TcpClosing,
            4 => ConnState::Udp,
            _ => return None,
        })
    }

    /// Whether an entry in this state may be displaced by a newcomer to a full bucket.
    fn displaceable(self) -> bool {
        matches!(self, ConnState::TcpSyn | ConnState::TcpClosing)
    }

    /// Whether this state fits `protocol`.
    fn fits(self, protocol: u8) -> bool {
        (self == ConnState::Udp) == (protocol == PROTO_UDP)
    }
}

/// What [`ConnTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The connection was live in the table; its state and expiry were updated.
    Refreshed,
    /// A new entry, in a free slot (or one whose entry had expired — `expired` says so).
    Inserted {
        /// The slot held an expired entry, now gone (count it as an expiry).
        expired: bool,
    },
    /// A new entry that displaced a half-open or closing one.
    Displaced,
    /// No slot could be had: the bucket holds only live established-TCP and UDP entries.
    Full,
}

/// A live connection copied out of the table: for the state file and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    /// The connection.
    pub key: ConnKey,
    /// Its state.
    pub state: ConnState,
    /// Seconds until it expires, counted from the clock at the copy.
    pub remaining_secs: u32,
}

/// One 64-byte bucket: signatures and expiry times of its eight slots.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket {
    sigs: [u32; SLOTS_PER_BUCKET],
    expires: [u32; SLOTS_PER_BUCKET],
}

/// The key and state of one slot.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: ConnKey,
    state: ConnState,
}

const EMPTY_ENTRY: Entry = Entry {
    key: ConnKey {
        client: [0; 16],
        backend: [0; 16],
        client_port: 0,
        backend_port: 0,
        protocol: 0,
    },
    state: ConnState::TcpSyn,
};

/// A fixed-capacity table of connections with lazy expiry (see the module documentation).
pub struct ConnTable {
    buckets: Box<[Bucket]>,
    entries: Box<[Entry]>,
    mask: usize,
    hasher: DefaultHashBuilder,
    /// Occupied slots (live, or expired and not yet cleared by the sweep or reused).
    occupied: usize,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("capacity", &self.capacity())
            .field("occupied", &self.occupied)
            .finish_non_exhaustive()
    }
}

impl ConnTable {
    /// A table with room for at least `capacity` entries (rounded up to a power-of-two number
    /// of buckets; at least [`MIN_CAPACITY`]). Every page is written now, so the data path
    /// never faults one in.
    pub fn with_capacity(capacity: usize) -> Self {
        let buckets = capacity
            .max(MIN_CAPACITY)
            .div_ceil(SLOTS_PER_BUCKET)
            .next_power_of_two();
        ConnTable {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            entries: vec![EMPTY_ENTRY; buckets * SLOTS_PER_BUCKET].into_boxed_slice(),
            mask: buckets - 1,
            hasher: DefaultHashBuilder::default(),
            occupied: 0,
        }
    }

    /// How many entries the table holds at most.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// How many buckets it has (the unit of [`ConnTable::sweep_step`]).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Occupied slots: the live entries, plus expired ones the sweep has not cleared yet (at
    /// most one sweep old).
    pub fn occupied(&self) -> usize {
        self.occupied
    }

    #[inline]
    fn locate(&self, key: &ConnKey) -> (usize, u32) {
        // foldhash (hashbrown's default) is built for hashbrown, which takes its tag from the
        // top bits: with some process seeds its low bits cluster for keys that differ only in
        // a port (measured: 6 % of seeds overflowed a bucket with 150 sequential ports in 1024
        // slots). A 64-bit finalizer (MurmurHash3's fmix64) spreads every input bit over the
        // bucket index and the signature.
        let hash = fmix64(self.hasher.hash_one(key));
        let bucket = (hash as usize) & self.mask;
        let sig = ((hash >> 32) as u32) | 1;
        (bucket, sig)
    }

    /// The slot holding `key` in `bucket`, live or expired.
    #[inline]
    fn slot_of(&self, bucket: usize, sig: u32, key: &ConnKey) -> Option<usize> {
        let b = self.buckets.get(bucket)?;
        (0..SLOTS_PER_BUCKET).find(|&s| {
            b.sigs[s] == sig
                && self
                    .entries
                    .get(bucket * SLOTS_PER_BUCKET + s)
                    .is_some_and(|e| e.key == *key)
        })
    }

    /// Whether `key` is a live connection at time `now`.
    #[inline]
    pub fn contains(&self, key: &ConnKey, now: u32) -> bool {
        self.state_of(key, now).is_some()
    }

    /// The state of `key` if it is live at `now`.
    #[inline]
    pub fn state_of(&self, key: &ConnKey, now: u32) -> Option<ConnState> {
        self.entry_of(key, now).map(|(state, _)| state)
    }

    /// The state of `key` and the second it expires, if it is live at `now`.
    #[inline]
    pub fn entry_of(&self, key: &ConnKey, now: u32) -> Option<(ConnState, u32)> {
        let (bucket, sig) = self.locate(key);
        let slot = self.slot_of(bucket, sig, key)?;
        let expires = self.buckets.get(bucket)?.expires[slot];
        let state = self.entries.get(bucket * SLOTS_PER_BUCKET + slot)?.state;
        (expires > now).then_some((state, expires))
    }

    /// Ends `key`'s entry now (it expires; the sweep clears and counts it like any other).
    pub fn forget(&mut self, key: &ConnKey) {
        let (bucket, sig) = self.locate(key);
        if let Some(slot) = self.slot_of(bucket, sig, key) {
            self.buckets[bucket].expires[slot] = 0;
        }
    }

    /// Records a packet of `key` at `now` with `tcp_flags` (0 for UDP): a live entry gets its
    /// new state and expiry, otherwise one is inserted (see "A full bucket").
    #[inline]
    pub fn learn(
        &mut self,
        key: &ConnKey,
        tcp_flags: u8,
        timeouts: &Timeouts,
        now: u32,
    ) -> Learned {
        let (bucket, sig) = self.locate(key);
        if let Some(slot) = self.slot_of(bucket, sig, key) {
            let i = bucket * SLOTS_PER_BUCKET + slot;
            let live = self.buckets[bucket].expires[slot] > now;
            let current = live.then(|| self.entries[i].state);
            let state = ConnState::after(current, key.protocol, tcp_flags);
            self.entries[i].state = state;
            self.buckets[bucket].expires[slot] = now.saturating_add(state.timeout(timeouts));
            return if live {
                Learned::Refreshed
            } else {
                Learned::Inserted { expired: true }
            };
        }
        let state = ConnState::after(None, key.protocol, tcp_flags);
        let expires = now.saturating_add(state.timeout(timeouts));
        let (slot, outcome) = match self.free_slot(bucket, now) {
            Some(found) => found,
            None => return Learned::Full,
        };
        let b = &mut self.buckets[bucket];
        if b.sigs[slot] == 0 {
            self.occupied += 1;
        }
        b.sigs[slot] = sig;
        b.expires[slot] = expires;
        self.entries[bucket * SLOTS_PER_BUCKET + slot] = Entry { key: *key, state };
        outcome
    }

    /// A slot for a newcomer in `bucket`: empty, else expired, else the displaceable entry
    /// expiring first.
    fn free_slot(&self, bucket: usize, now: u32) -> Option<(usize, Learned)> {
        let b = self.buckets.get(bucket)?;
        if let Some(s) = b.sigs.iter().position(|&sig| sig == 0) {
            return Some((s, Learned::Inserted { expired: false }));
        }
        if let Some(s) = b.expires.iter().position(|&e| e <= now) {
            return Some((s, Learned::Inserted { expired: true }));
        }
        (0..SLOTS_PER_BUCKET)
            .filter(|&s| {
                self.entries[bucket * SLOTS_PER_BUCKET + s]
                    .state
                    .displaceable()
            })
            .min_by_key(|&s| b.expires[s])
            .map(|s| (s, Learned::Displaced))
    }

    /// Puts a saved connection back with `remaining_secs` from `now` (a start after a restart).
    /// A record that does not fit its protocol is refused; one already present keeps the later
    /// expiry.
    pub fn restore(&mut self, record: &ConnRecord, now: u32) -> Learned {
        if !record.state.fits(record.key.protocol) || record.remaining_secs == 0 {
            return Learned::Full;
        }
        let expires = now.saturating_add(record.remaining_secs);
        let (bucket, sig) = self.locate(&record.key);
        let slot = match self.slot_of(bucket, sig, &record.key) {
            Some(slot) => slot,
            None => match self.free_slot(bucket, now) {
                Some((slot, _)) => slot,
                None => return Learned::Full,
            },
        };
        let b = &mut self.buckets[bucket];
        if b.sigs[slot] == 0 {
            self.occupied += 1;
        }
        let fresh = b.sigs[slot] != sig || b.expires[slot] <= now;
        b.sigs[slot] = sig;
        if fresh || b.expires[slot] < expires {
            b.expires[slot] = expires;
            self.entries[bucket * SLOTS_PER_BUCKET + slot] = Entry {
                key: record.key,
                state: record.state,
            };
        }
        Learned::Inserted { expired: false }
    }

    /// Visits up to `max_buckets` buckets from `*cursor` (wrapping to 0 and returning `true`
    /// when the last bucket is done): clears the expired entries, returning how many, and
    /// copies the live ones into `out` (when given).
    pub fn sweep_step(
        &mut self,
        cursor: &mut usize,
        max_buckets: usize,
        now: u32,
        out: Option<&mut Vec<ConnRecord>>,
    ) -> (usize, bool) {
        self.sweep_step_visiting(cursor, max_buckets, now, out, |_| {})
    }

    /// [`ConnTable::sweep_step`], also calling `visit` with the key of every live entry (the
    /// per-backend census of active connections).
    pub fn sweep_step_visiting(
        &mut self,
        cursor: &mut usize,
        max_buckets: usize,
        now: u32,
        mut out: Option<&mut Vec<ConnRecord>>,
        mut visit: impl FnMut(&ConnKey),
    ) -> (usize, bool) {
        let mut expired = 0;
        let end = cursor.saturating_add(max_buckets).min(self.buckets.len());
        for bucket in *cursor..end {
            let b = &mut self.buckets[bucket];
            for slot in 0..SLOTS_PER_BUCKET {
                if b.sigs[slot] == 0 {
                    continue;
                }
                if b.expires[slot] <= now {
                    b.sigs[slot] = 0;
                    expired += 1;
                    continue;
                }
                let e = &self.entries[bucket * SLOTS_PER_BUCKET + slot];
                visit(&e.key);
                if let Some(out) = out.as_deref_mut() {
                    out.push(ConnRecord {
                        key: e.key,
                        state: e.state,
                        remaining_secs: b.expires[slot] - now,
                    });
                }
            }
        }
        self.occupied -= expired;
        let done = end >= self.buckets.len();
        *cursor = if done { 0 } else { end };
        (expired, done)
    }

    /// Empties the table (a fuzz run or test that must not depend on the previous one).
    pub fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
        self.occupied = 0;
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        tcp_syn: 5,
        tcp_established: 100,
        tcp_closing: 10,
        udp: 30,
    };

    fn key(client_port: u16, protocol: u8) -> ConnKey {
        ConnKey::new(
            "198.51.100.7".parse().unwrap(),
            client_port,
            "10.0.21.2".parse().unwrap(),
            8080,
            protocol,
        )
    }

    #[test]
    fn states_follow_the_flags_of_both_directions() {
        use ConnState::*;
        let tcp = |cur, flags| ConnState::after(cur, PROTO_TCP, flags);
        assert_eq!(tcp(None, TCP_SYN), TcpSyn);
        assert_eq!(tcp(Some(TcpSyn), TCP_SYN | 0x10), TcpSyn, "SYN-ACK");
        assert_eq!(tcp(Some(TcpSyn), 0x10), TcpEstablished);
        assert_eq!(tcp(Some(TcpEstablished), TCP_SYN), TcpEstablished);
        assert_eq!(tcp(Some(TcpEstablished), TCP_FIN | 0x10), TcpClosing);
        assert_eq!(tcp(Some(TcpClosing), 0x10), TcpClosing);
        assert_eq!(tcp(Some(TcpClosing), TCP_SYN), TcpSyn, "the tuple reused");
        assert_eq!(tcp(None, 0x10), TcpEstablished, "learned mid-connection");
        assert_eq!(tcp(None, TCP_RST), TcpClosing);
        assert_eq!(ConnState::after(None, PROTO_UDP, 0xff), Udp);
        for s in [TcpSyn, TcpEstablished, TcpClosing, Udp] {
            assert_eq!(ConnState::from_byte(s as u8), Some(s));
        }
        assert_eq!(ConnState::from_byte(0), None);
    }

    #[test]
    fn a_connection_lives_for_its_state_timeout_after_its_last_packet() {
        let mut t = ConnTable::with_capacity(1024);
        let k = key(40000, PROTO_TCP);
        assert!(!t.contains(&k, 0));
        assert_eq!(
            t.learn(&k, TCP_SYN, &T, 0),
            Learned::Inserted { expired: false }
        );
        assert!(t.contains(&k, 4));
        assert!(!t.contains(&k, 5), "tcp_syn = 5");
        assert_eq!(t.learn(&k, 0x10, &T, 4), Learned::Refreshed);
        assert_eq!(t.state_of(&k, 4), Some(ConnState::TcpEstablished));
        assert!(t.contains(&k, 103));
        assert!(!t.contains(&k, 104), "tcp_established = 100 from t = 4");
        assert_eq!(t.learn(&k, TCP_FIN, &T, 50), Learned::Refreshed);
        assert!(!t.contains(&k, 60), "tcp_closing = 10");
        // Seen again after it expired: a new entry in its old slot.
        assert_eq!(
            t.learn(&k, 0x10, &T, 70),
            Learned::Inserted { expired: true }
        );
        assert_eq!(t.occupied(), 1);
        let u = key(5353, PROTO_UDP);
        t.learn(&u, 0, &T, 70);
        assert!(t.contains(&u, 99) && !t.contains(&u, 100), "udp = 30");
    }

    #[test]
    fn the_sweep_clears_expired_entries_once_and_copies_live_ones() {
        let mut t = ConnTable::with_capacity(1024);
        for port in 0..100 {
            t.learn(&key(port, PROTO_UDP), 0, &T, 0);
        }
        for port in 100..150 {
            t.learn(&key(port, PROTO_TCP), 0x10, &T, 0);
        }
        assert_eq!(t.occupied(), 150);
        let (mut cursor, mut out, mut expired, mut steps) = (0, Vec::new(), 0, 0);
        loop {
            steps += 1;
            let (e, done) = t.sweep_step(&mut cursor, 7, 40, Some(&mut out));
            expired += e;
            if done {
                break;
            }
        }
        assert_eq!(steps, t.buckets().div_ceil(7));
        assert_eq!(expired, 100, "the UDP entries are past their 30 s");
        assert_eq!(out.len(), 50);
        assert!(
            out.iter()
                .all(|r| r.state == ConnState::TcpEstablished && r.remaining_secs == 60)
        );
        assert_eq!(t.occupied(), 50);
        let (again, _) = t.sweep_step(&mut cursor, usize::MAX, 40, None);
        assert_eq!(again, 0, "an expiry is counted once");
    }

    #[test]
    fn a_full_bucket_gives_up_half_open_entries_but_never_established_ones() {
        // The smallest table: 8 buckets of 8. Fill one bucket with established connections.
        let mut t = ConnTable::with_capacity(MIN_CAPACITY);
        let mut same_bucket = Vec::new();
        let target = t.locate(&key(0, PROTO_TCP)).0;
        for port in 0..u16::MAX {
            if t.locate(&key(port, PROTO_TCP)).0 == target {
                same_bucket.push(key(port, PROTO_TCP));
            }
            if same_bucket.len() == SLOTS_PER_BUCKET + 2 {
                break;
            }
        }
        for k in &same_bucket[..SLOTS_PER_BUCKET - 1] {
            assert!(matches!(t.learn(k, 0x10, &T, 0), Learned::Inserted { .. }));
        }
        let half_open = same_bucket[SLOTS_PER_BUCKET - 1];
        t.learn(&half_open, TCP_SYN, &T, 0);
        // A newcomer displaces the half-open entry, the next one finds no room.
        assert_eq!(
            t.learn(&same_bucket[SLOTS_PER_BUCKET], 0x10, &T, 1),
            Learned::Displaced
        );
        assert!(!t.contains(&half_open, 1));
        assert_eq!(
            t.learn(&same_bucket[SLOTS_PER_BUCKET + 1], TCP_SYN, &T, 1),
            Learned::Full
        );
        for k in &same_bucket[..SLOTS_PER_BUCKET - 1] {
            assert!(t.contains(k, 1), "established entries stay");
        }
        assert_eq!(t.occupied(), SLOTS_PER_BUCKET);
        // Once they expire, there is room again.
        assert_eq!(
            t.learn(&same_bucket[SLOTS_PER_BUCKET + 1], TCP_SYN, &T, 200),
            Learned::Inserted { expired: true }
        );
    }

    #[test]
    fn capacity_is_fixed_and_rounded_up() {
        let t = ConnTable::with_capacity(1000);
        assert_eq!(t.capacity(), 1024);
        assert_eq!(t.buckets(), 128);
        assert_eq!(ConnTable::with_capacity(1).capacity(), MIN_CAPACITY);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn restored_records_come_back_with_their_remaining_time() {
        let mut a = ConnTable::with_capacity(4096);
        for port in 0..300 {
            a.learn(&key(port, PROTO_TCP), 0x10, &T, 10);
        }
        let mut saved = Vec::new();
        a.sweep_step(&mut 0, usize::MAX, 30, Some(&mut saved));
        assert_eq!(saved.len(), 300);
        // Another table (another seed, another capacity, another clock).
        let mut b = ConnTable::with_capacity(2048);
        for r in &saved {
            assert_eq!(b.restore(r, 1000), Learned::Inserted { expired: false });
        }
        assert_eq!(b.occupied(), 300);
        let k = key(7, PROTO_TCP);
        assert_eq!(b.state_of(&k, 1079), Some(ConnState::TcpEstablished));
        assert!(!b.contains(&k, 1080), "80 s were left at the save");
        // A record that contradicts its protocol, or has no time left, is refused.
        let bad = ConnRecord {
            key: key(1, PROTO_UDP),
            state: ConnState::TcpSyn,
            remaining_secs: 9,
        };
        assert_eq!(b.restore(&bad, 0), Learned::Full);
        let done = ConnRecord {
            remaining_secs: 0,
            ..saved[0]
        };
        assert_eq!(b.restore(&done, 0), Learned::Full);
        b.clear();
        assert_eq!(b.occupied(), 0);
        assert!(!b.contains(&k, 1000));
    }
}
