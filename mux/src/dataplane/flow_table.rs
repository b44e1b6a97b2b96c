//! The per-worker flow table: which backend each live flow is pinned to.
//!
//! # What it owns
//!
//! One [`FlowTable`] per worker core, owned by that worker alone: no sharing, no locks, no
//! atomics. It maps a flow (its [`FlowKey`], through a [`FlowHash`]) to the backend chosen when
//! the flow started, its coarse TCP/UDP [`FlowState`] and an expiry time. It is what keeps an
//! existing flow on its backend when the Maglev table changes underneath it.
//!
//! # Layout (VPP `lbhash.h` style)
//!
//! The table is a power-of-two array of 64-byte, 64-byte-aligned buckets; each bucket holds 4
//! slots of 16 bytes: `sig: u64` (0 = empty), `expires: u32` (coarse clock, seconds since the
//! worker started) and `value: u32` (backend id in the low 24 bits, state in the high 8). A flow
//! lives only in the bucket its hash selects, so a lookup touches exactly one cache line — which
//! the worker prefetches ([`FlowTable::prefetch`]) for every packet of a burst before it looks
//! any of them up, so the miss is overlapped with the work on the other packets.
//!
//! The memory is allocated (and written, so every page is faulted in) once, by
//! [`FlowTable::with_capacity`]; nothing in this module allocates afterwards. Expiry is lazy: an
//! entry whose `expires <= now` is a miss for [`FlowTable::find`] and free space for
//! [`FlowTable::insert`]; no timer wheel or sweeper is needed.
//!
//! # Census: live entries, per backend
//!
//! The worker counts its live entries a slice at a time between bursts
//! ([`FlowTable::census_step`]), so no burst stalls behind a full scan: a sweep over `b` buckets
//! in steps of `s` completes every `⌈b / s⌉` steps, and its result ([`Census`]) is as fresh as
//! that. Each live entry is also counted for its backend id, into an array of
//! [`CENSUS_BACKEND_IDS`] counters allocated with the table (256 KiB, twice: the sweep in
//! progress and the last completed one, swapped at the end of a sweep — no allocation, and one
//! array write per live entry). Backend ids come from the control plane's registry, which never
//! reuses one: an entry whose id is at or beyond the bound is counted in
//! [`Census::unattributed`] instead (a MUX that saw more than 65 536 distinct backends since it
//! started; a restart resets the ids).
//!
//! # Signatures instead of keys
//!
//! A slot stores only a 64-bit signature, not the 37-byte key, which is what lets four entries
//! fit in one cache line. [`FlowHash`] is two independently keyed 64-bit lanes of a
//! folded-multiply hash (the wyhash / foldhash construction) over the key's words, keyed by a
//! per-table seed: one lane selects the bucket, the other, with its lowest bit forced to 1 (so
//! that 0 can mean "empty"), is the signature. Treating the lanes as independent 64-bit hashes,
//! two distinct keys that share a bucket have equal signatures with probability about 2⁻⁶³. A lookup compares against at most 4 resident signatures, so a
//! false match costs at most 4·2⁻⁶³ ≈ 4.3·10⁻¹⁹ per lookup: at 10⁸ lookups per second per core,
//! about one false match per 700 years per core. Its consequence would be one flow's packets going
//! to another flow's backend (which answers with a RST) — never memory unsafety.
//!
//! The seed is random in production. This hash is in-process only and is deliberately *not* the
//! stable backend-selection hash shared by all MUXes: an attacker who cannot learn the seed
//! cannot craft keys that collide in one bucket (or on one signature).
//!
//! # Second-chance entries
//!
//! A flow the MUX had no entry for, whose packets carry an alternative backend
//! (docs/second-chance.md), is stored under a second signature of the same bucket,
//! [`FlowHash::second_chance`] (the signature with fixed bits flipped, still odd), and its slot
//! holds the *alternative's* id: the host agent needs the alternative on every packet of such a
//! flow, and the flow must keep it for its life even after the previous table that named it has
//! left the window. A normal lookup never matches such an entry, so flow-table hits stay exactly
//! as they were; only a miss of a packet that is not a bare SYN looks for it (the same,
//! already-loaded cache line). The table itself does not know the difference: such an entry
//! expires, is evicted and is counted in the census (under the alternative's id) like any other.
//!
//! # Invariants
//!
//! - Within a bucket no two non-empty slots carry the same signature ([`FlowTable::insert`]
//!   reuses a slot with the newcomer's signature, live or expired, before anything else).
//! - A stored signature is never 0; a slot with `sig == 0` is empty.
//! - The bucket count is a power of two and `mask == buckets - 1`; the table never grows.
//!
//! # Eviction: SYN floods churn only half-open entries
//!
//! When a bucket has no slot for a newcomer (no slot with its signature, none empty, none
//! expired), [`FlowTable::insert`] replaces the live entry with the earliest `expires` among
//! those the newcomer may displace ([`FlowState::may_displace`]): a [`FlowState::TcpSynOnly`]
//! newcomer may displace only `TcpSynOnly` and `TcpClosing` entries; any other newcomer may
//! displace any entry. So a SYN flood — spoofed sources, each one a new half-open flow — can only
//! churn half-open and closing entries and never evicts an established flow. When nothing may be
//! displaced the insert returns [`InsertOutcome::Full`]: an outcome the caller counts, not an
//! error. The packet is still forwarded by consistent hashing, which lands on the same backend as
//! long as the Maglev table does not change.
//!
//! # Sizing
//!
//! Keys spread over buckets like balls over bins, so a bucket can overflow well before the table
//! is full. With `n` live flows and `b` buckets the load per bucket is Poisson(n/b): at half
//! capacity (mean 2 per bucket) about 5% of buckets would want a fifth slot and about 3.8% of
//! flows end up unstored or evicted; at a quarter (mean 1) about 0.4% of buckets overflow and
//! 0.4% of flows are lost.
//! Configure the capacity at about four times the expected number of live flows.
//!
//! # Rejected alternatives
//!
//! - *Storing the full key*: 37+ bytes per entry, one entry per cache line or a second memory
//!   access per lookup; the signature argument above makes it unnecessary.
//! - *Open addressing / cuckoo / two-choice buckets*: higher achievable load, but a miss probes
//!   a second cache line (or a displacement chain on insert), which breaks the one-miss budget.
//! - *A general hash map (`hashbrown`)*: allocates on growth, stores keys, and has no notion of
//!   expiry or of which entry to sacrifice under pressure.
//! - *Exact expiry timers*: a timer wheel costs work per flow; lazy expiry costs one compare.

use mux_shared::flow_key::FlowKey;

use super::prefetch::prefetch;

/// Slots per bucket: four 16-byte slots fill one 64-byte cache line.
pub const SLOTS_PER_BUCKET: usize = 4;

/// The largest backend id a slot can hold (24 bits).
pub const MAX_BACKEND_ID: u32 = 0x00FF_FFFF;

/// Backend ids below this bound get their own census counter (see the module docs).
pub const CENSUS_BACKEND_IDS: usize = 1 << 16;

/// The result of one complete census sweep.
#[derive(Debug, PartialEq, Eq)]
pub struct Census {
    /// Live entries.
    pub live: usize,
    /// Live entries pinned to each backend id below [`CENSUS_BACKEND_IDS`].
    pub by_backend: Box<[u32]>,
    /// Live entries whose backend id is [`CENSUS_BACKEND_IDS`] or more.
    pub unattributed: usize,
}

impl Census {
    fn empty() -> Census {
        Census {
            live: 0,
            by_backend: vec![0; CENSUS_BACKEND_IDS].into_boxed_slice(),
            unattributed: 0,
        }
    }
}

/// Bit position of the state byte in a slot's `value`.
const STATE_SHIFT: u32 = 24;

/// Coarse state of a flow, as far as the MUX can tell from the client→service direction only.
///
/// Stored in the high 8 bits of a slot's value. The caller maps a state to a timeout and passes
/// `expires = now + timeout(state)`; the table only stores it and uses the state for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// A TCP flow of which only a SYN has been seen (half-open; what a SYN flood creates).
    TcpSynOnly = 0,
    /// A TCP flow past its handshake.
    TcpEstablished = 1,
    /// A TCP flow that has seen a FIN or RST.
    TcpClosing = 2,
    /// A UDP flow.
    Udp = 3,
    /// Any other protocol.
    Other = 4,
}

impl FlowState {
    /// Decodes a stored state byte. Only values written by [`FlowState`] ever reach slots; any
    /// other byte decodes as [`FlowState::Other`] rather than panicking.
    #[inline]
    const fn from_bits(bits: u8) -> FlowState {
        match bits {
            0 => FlowState::TcpSynOnly,
            1 => FlowState::TcpEstablished,
            2 => FlowState::TcpClosing,
            3 => FlowState::Udp,
            _ => FlowState::Other,
        }
    }

    /// Whether a newcomer in state `self` may displace a live entry in state `resident` from a
    /// full bucket: a `TcpSynOnly` newcomer only `TcpSynOnly` or `TcpClosing` entries, any other
    /// newcomer any entry.
    #[inline]
    pub const fn may_displace(self, resident: FlowState) -> bool {
        match self {
            FlowState::TcpSynOnly => {
                matches!(resident, FlowState::TcpSynOnly | FlowState::TcpClosing)
            }
            _ => true,
        }
    }
}

/// What [`FlowTable::insert`] did with a newcomer. A counted outcome, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsertOutcome {
    /// Stored in an empty or expired slot, or in the slot that already held this flow (refresh).
    Inserted,
    /// Stored by replacing another flow's live entry (the earliest-expiring one it may displace).
    Evicted,
    /// Not stored: the bucket is full of live entries the newcomer may not displace.
    Full,
}

/// A flow's position in one [`FlowTable`]: the bucket index and the signature.
///
/// Computed by [`FlowTable::hash`] (or [`FlowHash::new`] with the table's seed). Cheap to copy;
/// compute it once per packet, use it for [`FlowTable::prefetch`] and then
/// [`FlowTable::find`] / [`FlowTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowHash {
    /// Low 64 bits of the hash; masked to a bucket index.
    index: u64,
    /// High 64 bits of the hash with bit 0 set; never 0.
    sig: u64,
}

impl FlowHash {
    /// Hashes `key` under `seed` (use the seed of the table it is meant for): two
    /// independently keyed lanes of folded 64×64→128-bit multiplies (the wyhash / foldhash
    /// construction) over the key's 64-bit words, read straight from the key's fields. About
    /// 3 ns, against 17 ns for XXH3-128 over the key's canonical bytes.
    #[inline]
    pub fn new(key: &FlowKey, seed: u64) -> FlowHash {
        FlowHash::with_keys(key, &lane_keys(seed))
    }

    /// [`FlowHash::new`] with the lane keys already expanded (what a table keeps).
    #[inline]
    fn with_keys(key: &FlowKey, k: &[[u64; 4]; 2]) -> FlowHash {
        let s0 = u64::from_ne_bytes(key.src[..8].try_into().expect("8 bytes"));
        let s1 = u64::from_ne_bytes(key.src[8..].try_into().expect("8 bytes"));
        let d0 = u64::from_ne_bytes(key.dst[..8].try_into().expect("8 bytes"));
        let d1 = u64::from_ne_bytes(key.dst[8..].try_into().expect("8 bytes"));
        let p = (u64::from(key.src_port) << 24)
            | (u64::from(key.dst_port) << 8)
            | u64::from(key.protocol);
        let lane = |k: &[u64; 4]| {
            let a = folded_multiply(s0 ^ k[0], s1 ^ k[1]);
            let b = folded_multiply(d0 ^ k[2], d1 ^ k[3]);
            // One more multiply so that every input bit reaches the low bits the bucket mask
            // keeps (a single folded multiply leaves them nearly constant for keys that differ
            // only in a few high bits, as IPv4-mapped addresses do).
            folded_multiply(folded_multiply(a ^ p, b ^ k[0].rotate_left(29)), k[3] | 1)
        };
        FlowHash {
            index: lane(&k[0]),
            sig: lane(&k[1]) | 1,
        }
    }

    /// The bucket-selecting half of the hash (before masking).
    #[inline]
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The signature stored in and compared against slots; never 0.
    #[inline]
    pub fn sig(&self) -> u64 {
        self.sig
    }

    /// The same flow's second-chance entry: same bucket, signature with
    /// [`SECOND_CHANCE_SIG_FLIP`] applied (bit 0 untouched, so it stays odd and never 0). See
    /// the module docs. Two flows' normal and second-chance signatures collide with the same
    /// odds as two normal ones.
    #[inline]
    pub fn second_chance(&self) -> FlowHash {
        FlowHash {
            index: self.index,
            sig: self.sig ^ SECOND_CHANCE_SIG_FLIP,
        }
    }
}

/// Bits flipped in a flow's signature to key its second-chance entry (bit 0 clear).
pub const SECOND_CHANCE_SIG_FLIP: u64 = 0x9e37_79b9_7f4a_7c14;

/// The full 128-bit product of `a` and `b`, folded to 64 bits by XOR of its halves.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Expands a table seed into the keys of the two hash lanes (SplitMix64); a table does it once.
#[inline(always)]
fn lane_keys(seed: u64) -> [[u64; 4]; 2] {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    [
        [next(), next(), next(), next()],
        [next(), next(), next(), next()],
    ]
}

/// One 16-byte entry of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    /// Signature of the flow; 0 when the slot is empty.
    sig: u64,
    /// Coarse-clock second from which the entry is expired (live while `expires > now`).
    expires: u32,
    /// Backend id (low 24 bits) | state (high 8 bits).
    value: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        sig: 0,
        expires: 0,
        value: 0,
    };

    #[inline]
    fn new(sig: u64, backend: u32, state: FlowState, expires: u32) -> Slot {
        Slot {
            sig,
            expires,
            value: pack(backend, state),
        }
    }

    #[inline]
    fn is_live(&self, now: u32) -> bool {
        self.sig != 0 && self.expires > now
    }

    #[inline]
    fn state(&self) -> FlowState {
        FlowState::from_bits((self.value >> STATE_SHIFT) as u8)
    }
}

/// Packs a backend id and a state into a slot value. Backend ids above [`MAX_BACKEND_ID`] are a
/// caller bug: caught in debug builds, truncated to 24 bits in release (never a panic).
#[inline]
fn pack(backend: u32, state: FlowState) -> u32 {
    debug_assert!(
        backend <= MAX_BACKEND_ID,
        "backend id {backend} exceeds 24 bits"
    );
    (backend & MAX_BACKEND_ID) | ((state as u32) << STATE_SHIFT)
}

/// Four slots in exactly one cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Bucket {
    slots: [Slot; SLOTS_PER_BUCKET],
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        slots: [Slot::EMPTY; SLOTS_PER_BUCKET],
    };
}

/// Mutable access to one live entry found by [`FlowTable::find`].
#[derive(Debug)]
pub struct FlowEntryMut<'a> {
    slot: &'a mut Slot,
}

impl FlowEntryMut<'_> {
    /// The backend id the flow is pinned to.
    #[inline]
    pub fn backend(&self) -> u32 {
        self.slot.value & MAX_BACKEND_ID
    }

    /// The flow's stored state.
    #[inline]
    pub fn state(&self) -> FlowState {
        self.slot.state()
    }

    /// The coarse-clock second from which the entry is expired.
    #[inline]
    pub fn expires(&self) -> u32 {
        self.slot.expires
    }

    /// Replaces backend, state and expiry (e.g. re-pinning a flow whose backend was removed).
    #[inline]
    pub fn set(&mut self, backend: u32, state: FlowState, expires: u32) {
        self.slot.value = pack(backend, state);
        self.slot.expires = expires;
    }

    /// Updates state and expiry, keeping the backend (the per-packet path of a known flow).
    #[inline]
    pub fn refresh(&mut self, state: FlowState, expires: u32) {
        self.slot.value = pack(self.backend(), state);
        self.slot.expires = expires;
    }
}

/// A fixed-capacity flow table owned by one worker. See the [module docs](self).
pub struct FlowTable {
    /// Power-of-two number of buckets, allocated once.
    buckets: Box<[Bucket]>,
    /// `buckets.len() - 1`.
    mask: u64,
    /// The seed expanded into the hash lanes' keys.
    lane_keys: [[u64; 4]; 2],
    /// Incremental census ([`FlowTable::census_step`]): next bucket to count.
    census_cursor: usize,
    /// What the sweep in progress has counted so far.
    census_partial: Census,
    /// The last completed sweep.
    census_done: Census,
}

impl std::fmt::Debug for FlowTable {
    // Neither the (possibly huge) bucket array nor the secret seed belongs in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("buckets", &self.buckets.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl FlowTable {
    /// Allocates a table for at least `entries` flows: the bucket count is the smallest power of
    /// two ≥ `entries / 4` (at least 1). `seed` keys the in-process hash; use a random one in
    /// production and a fixed one in tests. This is the only allocation the table ever makes.
    ///
    /// # Panics
    ///
    /// If the bucket count overflows `usize` (`entries` near `usize::MAX`); the allocation itself
    /// aborts on out-of-memory. Configuration validation bounds `entries` long before either.
    pub fn with_capacity(entries: usize, seed: u64) -> FlowTable {
        let buckets = entries
            .div_ceil(SLOTS_PER_BUCKET)
            .max(1)
            .checked_next_power_of_two()
            .expect("flow table capacity overflows usize");
        FlowTable {
            buckets: huge_page_slice(buckets),
            mask: (buckets - 1) as u64,
            lane_keys: lane_keys(seed),
            census_cursor: 0,
            census_partial: Census::empty(),
            census_done: Census::empty(),
        }
    }

    /// The number of slots (buckets × 4): an upper bound on live entries, not a guarantee that
    /// this many flows fit (see the module docs on sizing).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS_PER_BUCKET
    }

    /// Hashes `key` with this table's seed.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> FlowHash {
        FlowHash::with_keys(key, &self.lane_keys)
    }

    #[inline]
    fn bucket_index(&self, h: &FlowHash) -> usize {
        // The mask fits in usize because it is `buckets.len() - 1`.
        (h.index & self.mask) as usize
    }

    /// Starts loading `h`'s bucket into the cache; call it for every packet of a burst before
    /// looking any of them up. A no-op on architectures without a stable prefetch intrinsic.
    #[inline]
    pub fn prefetch(&self, h: &FlowHash) {
        prefetch(&self.buckets[self.bucket_index(h)]);
    }

    /// Finds the live entry for `h`: same signature and `expires > now`. An expired entry is a
    /// miss and stays in place until an insert reuses its slot.
    #[inline]
    pub fn find(&mut self, h: &FlowHash, now: u32) -> Option<FlowEntryMut<'_>> {
        let i = self.bucket_index(h);
        self.buckets[i]
            .slots
            .iter_mut()
            .find(|s| s.sig == h.sig && s.expires > now)
            .map(|slot| FlowEntryMut { slot })
    }

    /// Stores `h → (backend, state, expires)`, choosing the slot in this order:
    /// 1. the slot already holding `h`'s signature (live or expired): refreshed in place;
    /// 2. the first empty or expired slot;
    /// 3. the live entry with the earliest `expires` among those `state` may displace
    ///    ([`FlowState::may_displace`]) — [`InsertOutcome::Evicted`];
    /// 4. none: [`InsertOutcome::Full`], nothing stored.
    ///
    /// `backend` must be ≤ [`MAX_BACKEND_ID`]. `expires` is normally `now + timeout(state)`.
    #[inline]
    pub fn insert(
        &mut self,
        h: &FlowHash,
        backend: u32,
        state: FlowState,
        expires: u32,
        now: u32,
    ) -> InsertOutcome {
        let i = self.bucket_index(h);
        let slots = &mut self.buckets[i].slots;
        let mut free: Option<usize> = None;
        let mut victim: Option<(usize, u32)> = None;
        for (j, s) in slots.iter().enumerate() {
            if s.sig == h.sig {
                free = Some(j);
                victim = None;
                break;
            }
            if !s.is_live(now) {
                free = free.or(Some(j));
            } else if state.may_displace(s.state())
                && victim.is_none_or(|(_, earliest)| s.expires < earliest)
            {
                victim = Some((j, s.expires));
            }
        }
        let new = Slot::new(h.sig, backend, state, expires);
        match (free, victim) {
            (Some(j), _) => {
                slots[j] = new;
                InsertOutcome::Inserted
            }
            (None, Some((j, _))) => {
                slots[j] = new;
                InsertOutcome::Evicted
            }
            (None, None) => InsertOutcome::Full,
        }
    }

    /// Removes `h`'s entry, live or expired. Returns whether a slot held it.
    #[inline]
    pub fn remove(&mut self, h: &FlowHash) -> bool {
        let i = self.bucket_index(h);
        match self.buckets[i].slots.iter_mut().find(|s| s.sig == h.sig) {
            Some(s) => {
                *s = Slot::EMPTY;
                true
            }
            None => false,
        }
    }

    /// Counts live entries by scanning the whole table: control plane and tests only, never on
    /// the packet path.
    pub fn live_entries(&self, now: u32) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.slots.iter())
            .filter(|s| s.is_live(now))
            .count()
    }

    /// Counts live entries, in total and per backend id, in the next `buckets` buckets of a
    /// sweep that wraps around the table. Returns the result when a sweep completes (also
    /// kept as [`FlowTable::last_census`]). Lets a worker report its flows in small steps
    /// between bursts instead of stalling on a full scan; the counts are as fresh as the last
    /// completed sweep. Never allocates.
    pub fn census_step(&mut self, now: u32, buckets: usize) -> Option<&Census> {
        let end = (self.census_cursor + buckets.max(1)).min(self.buckets.len());
        let partial = &mut self.census_partial;
        for slot in self.buckets[self.census_cursor..end]
            .iter()
            .flat_map(|b| b.slots.iter())
            .filter(|s| s.is_live(now))
        {
            partial.live += 1;
            match partial
                .by_backend
                .get_mut((slot.value & MAX_BACKEND_ID) as usize)
            {
                Some(n) => *n += 1,
                None => partial.unattributed += 1,
            }
        }
        self.census_cursor = end;
        if end < self.buckets.len() {
            return None;
        }
        self.census_cursor = 0;
        std::mem::swap(&mut self.census_partial, &mut self.census_done);
        let next = &mut self.census_partial;
        next.live = 0;
        next.unattributed = 0;
        next.by_backend.fill(0);
        Some(&self.census_done)
    }

    /// True when the next [`FlowTable::census_step`] starts a new sweep.
    pub fn census_at_start(&self) -> bool {
        self.census_cursor == 0
    }

    /// The last completed census sweep (all zeros before the first).
    pub fn last_census(&self) -> &Census {
        &self.census_done
    }

    /// Empties every slot, keeping the allocation.
    pub fn clear(&mut self) {
        self.buckets.fill(Bucket::EMPTY);
    }
}

/// Size of a transparent huge page on x86_64.
const HUGE_PAGE: usize = 2 << 20;

/// `n` empty buckets, asking the kernel to back them with transparent huge pages.
///
/// A 4 M-entry table is 64 MiB: on 4 KiB pages every random lookup also misses the TLB, which
/// costs as much as the cache miss itself. The memory is advised before it is first touched, so
/// the zero-fill faults it in as 2 MiB pages where the kernel allows (THP `madvise` or
/// `always`); elsewhere the advice is ignored and nothing else changes.
fn huge_page_slice(n: usize) -> Box<[Bucket]> {
    let mut v: Vec<Bucket> = Vec::with_capacity(n);
    advise_huge_pages(v.as_mut_ptr() as usize, n * std::mem::size_of::<Bucket>());
    v.resize(n, Bucket::EMPTY);
    v.into_boxed_slice()
}

/// `madvise(MADV_HUGEPAGE)` on the whole 2 MiB pages inside `[start, start + len)`.
#[allow(unsafe_code)]
fn advise_huge_pages(start: usize, len: usize) {
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + len) / HUGE_PAGE * HUGE_PAGE;
    if end > first {
        // SAFETY: the range lies inside an allocation this function's caller owns and has not
        // handed out; MADV_HUGEPAGE changes only how the kernel backs it, never its contents or
        // validity, and failure (e.g. THP disabled) is harmless and ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const SEED: u64 = 0x5eed_f10e_7ab1_e000;

    fn key(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        FlowKey::v4(
            [10, b[0], b[1], b[2]],
            [192, 0, 2, 10],
            1024 + u16::from(b[3]),
            80,
            6,
        )
    }

    /// A table with a single bucket: every key lands in it.
    fn one_bucket() -> FlowTable {
        let t = FlowTable::with_capacity(4, SEED);
        assert_eq!(t.capacity(), 4);
        t
    }

    fn found(t: &mut FlowTable, h: &FlowHash, now: u32) -> Option<(u32, FlowState)> {
        t.find(h, now).map(|e| (e.backend(), e.state()))
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
        let t = FlowTable::with_capacity(64, SEED);
        assert_eq!(t.buckets.as_ptr().addr() % 64, 0);
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two_buckets() {
        let cases = [
            (0, 4),
            (1, 4),
            (4, 4),
            (5, 8),
            (9, 16),
            (1000, 1024),
            (1 << 20, 1 << 20),
        ];
        for (entries, capacity) in cases {
            let t = FlowTable::with_capacity(entries, SEED);
            assert_eq!(t.capacity(), capacity, "entries {entries}");
            assert_eq!(t.mask as usize + 1, t.buckets.len());
        }
    }

    #[test]
    fn hash_is_seeded_and_sig_never_zero() {
        let k = key(7);
        assert_eq!(FlowHash::new(&k, SEED), FlowHash::new(&k, SEED));
        assert_ne!(FlowHash::new(&k, SEED), FlowHash::new(&k, SEED + 1));
        let t = FlowTable::with_capacity(16, SEED);
        assert_eq!(t.hash(&k), FlowHash::new(&k, SEED));
        for i in 0..10_000 {
            assert_eq!(FlowHash::new(&key(i), SEED).sig() & 1, 1);
        }
    }

    #[test]
    fn insert_find_round_trip() {
        let mut t = FlowTable::with_capacity(1024, SEED);
        let h = t.hash(&key(1));
        assert!(t.find(&h, 0).is_none());
        assert_eq!(
            t.insert(&h, 42, FlowState::TcpSynOnly, 10, 0),
            InsertOutcome::Inserted
        );
        {
            let e = t.find(&h, 5).expect("just inserted");
            assert_eq!(e.backend(), 42);
            assert_eq!(e.state(), FlowState::TcpSynOnly);
            assert_eq!(e.expires(), 10);
        }
        let mut e = t.find(&h, 5).expect("still live");
        e.refresh(FlowState::TcpEstablished, 305);
        assert_eq!(
            found(&mut t, &h, 300),
            Some((42, FlowState::TcpEstablished))
        );
        t.find(&h, 300)
            .expect("live")
            .set(MAX_BACKEND_ID, FlowState::TcpClosing, 310);
        assert_eq!(
            found(&mut t, &h, 300),
            Some((MAX_BACKEND_ID, FlowState::TcpClosing))
        );
        // A different key is a miss.
        assert!(t.find(&t.hash(&key(2)), 300).is_none());
        assert_eq!(t.live_entries(300), 1);
        assert!(t.remove(&h));
        assert!(!t.remove(&h));
        assert!(t.find(&h, 300).is_none());
        assert_eq!(t.live_entries(300), 0);
    }

    #[test]
    fn every_state_round_trips_through_a_slot() {
        let states = [
            FlowState::TcpSynOnly,
            FlowState::TcpEstablished,
            FlowState::TcpClosing,
            FlowState::Udp,
            FlowState::Other,
        ];
        let mut t = FlowTable::with_capacity(64, SEED);
        for (i, s) in states.into_iter().enumerate() {
            let h = t.hash(&key(i as u32));
            let backend = 0x00AB_CDEF - i as u32;
            assert_eq!(t.insert(&h, backend, s, 100, 0), InsertOutcome::Inserted);
            assert_eq!(found(&mut t, &h, 0), Some((backend, s)));
        }
    }

    #[test]
    fn reinsert_refreshes_the_same_slot() {
        let mut t = one_bucket();
        let h = t.hash(&key(1));
        assert_eq!(
            t.insert(&h, 1, FlowState::Udp, 10, 0),
            InsertOutcome::Inserted
        );
        assert_eq!(
            t.insert(&h, 2, FlowState::Udp, 20, 5),
            InsertOutcome::Inserted
        );
        assert_eq!(t.live_entries(5), 1);
        assert_eq!(found(&mut t, &h, 15), Some((2, FlowState::Udp)));
    }

    #[test]
    fn expiry_is_a_miss_and_frees_the_slot() {
        let mut t = one_bucket();
        let hs: Vec<FlowHash> = (0..4).map(|i| t.hash(&key(i))).collect();
        for (i, h) in hs.iter().enumerate() {
            let expires = if i == 2 { 10 } else { 100 };
            assert_eq!(
                t.insert(h, i as u32, FlowState::Udp, expires, 0),
                InsertOutcome::Inserted
            );
        }
        // Live until `now` reaches `expires`.
        assert_eq!(found(&mut t, &hs[2], 9), Some((2, FlowState::Udp)));
        assert!(t.find(&hs[2], 10).is_none());
        assert_eq!(t.live_entries(10), 3);
        // The bucket is full but slot 2 is expired: a newcomer takes it without evicting.
        let newcomer = t.hash(&key(99));
        assert_eq!(
            t.insert(&newcomer, 99, FlowState::TcpSynOnly, 20, 10),
            InsertOutcome::Inserted
        );
        assert_eq!(t.buckets[0].slots[2].sig, newcomer.sig());
        for (i, h) in hs.iter().enumerate().filter(|(i, _)| *i != 2) {
            assert_eq!(found(&mut t, h, 10), Some((i as u32, FlowState::Udp)));
        }
        assert!(t.find(&hs[2], 10).is_none());
        assert_eq!(t.live_entries(10), 4);
    }

    #[test]
    fn expired_entry_of_the_same_flow_is_reused_not_duplicated() {
        let mut t = one_bucket();
        let a = t.hash(&key(1));
        let b = t.hash(&key(2));
        assert_eq!(
            t.insert(&b, 2, FlowState::Udp, 5, 0),
            InsertOutcome::Inserted
        );
        assert_eq!(
            t.insert(&a, 1, FlowState::Udp, 5, 0),
            InsertOutcome::Inserted
        );
        // `b` expires and leaves slot 0 free; re-inserting `a` must still reuse slot 1.
        assert_eq!(
            t.insert(&a, 3, FlowState::Udp, 50, 10),
            InsertOutcome::Inserted
        );
        assert_eq!(t.buckets[0].slots[1].sig, a.sig());
        assert_eq!(t.buckets[0].slots[0].sig, b.sig());
        assert_eq!(found(&mut t, &a, 10), Some((3, FlowState::Udp)));
        assert!(t.remove(&a));
        assert!(t.find(&a, 10).is_none());
    }

    #[test]
    fn full_bucket_evicts_the_earliest_expiring() {
        let mut t = one_bucket();
        let hs: Vec<FlowHash> = (0..4).map(|i| t.hash(&key(i))).collect();
        let expires = [40, 30, 10, 20];
        for (i, h) in hs.iter().enumerate() {
            t.insert(h, i as u32, FlowState::TcpEstablished, expires[i], 0);
        }
        let newcomer = t.hash(&key(50));
        assert_eq!(
            t.insert(&newcomer, 50, FlowState::TcpEstablished, 100, 1),
            InsertOutcome::Evicted
        );
        assert!(
            t.find(&hs[2], 1).is_none(),
            "earliest-expiring entry evicted"
        );
        assert_eq!(
            found(&mut t, &newcomer, 1),
            Some((50, FlowState::TcpEstablished))
        );
        for i in [0, 1, 3] {
            assert_eq!(
                found(&mut t, &hs[i], 1),
                Some((i as u32, FlowState::TcpEstablished))
            );
        }
        // Next victim: expires 20 (slot 3).
        let second = t.hash(&key(51));
        assert_eq!(
            t.insert(&second, 51, FlowState::Udp, 100, 1),
            InsertOutcome::Evicted
        );
        assert!(t.find(&hs[3], 1).is_none());
        assert_eq!(t.live_entries(1), 4);
    }

    #[test]
    fn syn_newcomer_cannot_evict_established() {
        let mut t = one_bucket();
        let hs: Vec<FlowHash> = (0..4).map(|i| t.hash(&key(i))).collect();
        for (i, h) in hs.iter().enumerate() {
            t.insert(h, i as u32, FlowState::TcpEstablished, 10 + i as u32, 0);
        }
        // A SYN flood against a bucket of established flows changes nothing.
        for i in 100..200 {
            let syn = t.hash(&key(i));
            assert_eq!(
                t.insert(&syn, i, FlowState::TcpSynOnly, 5, 1),
                InsertOutcome::Full
            );
            assert!(t.find(&syn, 1).is_none());
        }
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(
                found(&mut t, h, 1),
                Some((i as u32, FlowState::TcpEstablished))
            );
        }
        // Established / UDP / other newcomers may still displace them.
        for s in [FlowState::TcpEstablished, FlowState::Udp, FlowState::Other] {
            assert!(s.may_displace(FlowState::TcpEstablished));
        }
        assert!(!FlowState::TcpSynOnly.may_displace(FlowState::Udp));
        assert!(!FlowState::TcpSynOnly.may_displace(FlowState::Other));
    }

    #[test]
    fn syn_newcomer_evicts_only_syn_only_or_closing() {
        let mut t = one_bucket();
        let hs: Vec<FlowHash> = (0..4).map(|i| t.hash(&key(i))).collect();
        // Earliest-expiring overall is established (slot 0), but a SYN may not take it.
        let setup = [
            (FlowState::TcpEstablished, 5),
            (FlowState::TcpClosing, 30),
            (FlowState::Udp, 6),
            (FlowState::TcpSynOnly, 20),
        ];
        for (h, (s, e)) in hs.iter().zip(setup) {
            t.insert(h, 0, s, e, 0);
        }
        let syn1 = t.hash(&key(100));
        assert_eq!(
            t.insert(&syn1, 100, FlowState::TcpSynOnly, 50, 1),
            InsertOutcome::Evicted
        );
        assert!(
            t.find(&hs[3], 1).is_none(),
            "SynOnly (expires 20) goes first"
        );
        let syn2 = t.hash(&key(101));
        assert_eq!(
            t.insert(&syn2, 101, FlowState::TcpSynOnly, 55, 1),
            InsertOutcome::Evicted
        );
        assert!(t.find(&hs[1], 1).is_none(), "then Closing (expires 30)");
        // Now the bucket holds Established, Udp and two SynOnly: SYNs churn the SynOnly ones.
        let syn3 = t.hash(&key(102));
        assert_eq!(
            t.insert(&syn3, 102, FlowState::TcpSynOnly, 60, 1),
            InsertOutcome::Evicted
        );
        assert!(
            t.find(&syn1, 1).is_none(),
            "earliest SynOnly (expires 50) evicted"
        );
        assert!(t.find(&syn2, 1).is_some());
        assert!(t.find(&hs[0], 1).is_some());
        assert!(t.find(&hs[2], 1).is_some());
        assert_eq!(t.live_entries(1), 4);
        // Once every displaceable entry is gone to established ones, SYNs get Full.
        for (h, s) in [
            (syn2, FlowState::TcpEstablished),
            (syn3, FlowState::TcpEstablished),
        ] {
            t.find(&h, 1).expect("live").refresh(s, 70);
        }
        let syn4 = t.hash(&key(103));
        assert_eq!(
            t.insert(&syn4, 103, FlowState::TcpSynOnly, 60, 1),
            InsertOutcome::Full
        );
    }

    #[test]
    fn clear_empties_and_keeps_the_allocation() {
        let mut t = FlowTable::with_capacity(256, SEED);
        let ptr = t.buckets.as_ptr();
        for i in 0..100 {
            let h = t.hash(&key(i));
            t.insert(&h, i, FlowState::Udp, 100, 0);
        }
        assert!(t.live_entries(0) > 90);
        t.clear();
        assert_eq!(t.live_entries(0), 0);
        assert_eq!(t.capacity(), 256);
        assert_eq!(t.buckets.as_ptr(), ptr);
        assert!(t.buckets.iter().all(|b| *b == Bucket::EMPTY));
    }

    #[test]
    fn prefetch_any_hash_is_harmless() {
        let t = FlowTable::with_capacity(16, SEED);
        for i in 0..1000 {
            t.prefetch(&t.hash(&key(i)));
        }
        t.prefetch(&FlowHash {
            index: u64::MAX,
            sig: 1,
        });
    }

    /// 128 Ki random keys at half load (capacity 256 Ki, mean 2 per bucket): signatures never
    /// collide, no lookup ever returns another flow's value, the table never reallocates, and the
    /// loss from bucket overflow matches the Poisson prediction (3.76% of flows).
    #[test]
    fn random_keys_never_return_another_flows_value() {
        const N: u32 = 1 << 17;
        let mut t = FlowTable::with_capacity(2 * N as usize, SEED);
        let (ptr, cap) = (t.buckets.as_ptr(), t.capacity());
        // Deterministic pseudo-random keys (splitmix64), full 5-tuples, IPv4 and IPv6.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut keys = Vec::with_capacity(N as usize);
        let mut seen = HashSet::new();
        while keys.len() < N as usize {
            let (a, b) = (next(), next());
            let k = if a & 1 == 0 {
                let s = (a >> 32) as u32;
                FlowKey::v4(s.to_be_bytes(), [198, 51, 100, 7], (b >> 16) as u16, 443, 6)
            } else {
                let mut src = [0u8; 16];
                src[..8].copy_from_slice(&a.to_be_bytes());
                src[8..].copy_from_slice(&b.to_be_bytes());
                FlowKey::v6(src, [0x20; 16], b as u16, 53, 17)
            };
            if seen.insert(k) {
                keys.push(k);
            }
        }
        let hashes: Vec<FlowHash> = keys.iter().map(|k| t.hash(k)).collect();
        let sigs: HashSet<u64> = hashes.iter().map(|h| h.sig()).collect();
        assert_eq!(sigs.len(), N as usize, "64-bit signatures collided");

        let mut evicted = 0;
        for (i, h) in hashes.iter().enumerate() {
            match t.insert(h, i as u32, FlowState::TcpEstablished, 1000, 0) {
                InsertOutcome::Inserted => {}
                InsertOutcome::Evicted => evicted += 1,
                InsertOutcome::Full => panic!("an established newcomer may always displace"),
            }
        }
        let mut hits = 0;
        for (i, h) in hashes.iter().enumerate() {
            if let Some(e) = t.find(h, 1) {
                assert_eq!(e.backend(), i as u32, "key {i} found another flow's value");
                hits += 1;
            }
        }
        assert_eq!(hits, t.live_entries(1));
        assert_eq!(hits + evicted, N as usize);
        assert_eq!(t.capacity(), 2 * N as usize);
        let lost_per_mille = evicted * 1000 / N as usize;
        assert!(
            (30..=45).contains(&lost_per_mille),
            "{evicted} of {N} lost to overflow; Poisson(2) predicts 3.76%"
        );
        assert_eq!((t.buckets.as_ptr(), t.capacity()), (ptr, cap));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            k: usize,
            backend: u32,
            state: FlowState,
            ttl: u32,
        },
        Find {
            k: usize,
        },
        Refresh {
            k: usize,
            state: FlowState,
            ttl: u32,
        },
        Remove {
            k: usize,
        },
        Advance {
            secs: u32,
        },
    }

    const POOL: usize = 48;

    fn state() -> impl Strategy<Value = FlowState> {
        prop_oneof![
            Just(FlowState::TcpSynOnly),
            Just(FlowState::TcpEstablished),
            Just(FlowState::TcpClosing),
            Just(FlowState::Udp),
            Just(FlowState::Other),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..POOL, 0..=MAX_BACKEND_ID, state(), 0u32..20)
                .prop_map(|(k, backend, state, ttl)| Op::Insert { k, backend, state, ttl }),
            4 => (0..POOL).prop_map(|k| Op::Find { k }),
            2 => (0..POOL, state(), 0u32..20).prop_map(|(k, state, ttl)| Op::Refresh { k, state, ttl }),
            1 => (0..POOL).prop_map(|k| Op::Remove { k }),
            2 => (0u32..8).prop_map(|secs| Op::Advance { secs }),
        ]
    }

    proptest! {
        /// Against a `HashMap` model, in a table where no bucket can overflow (checked), every
        /// lookup agrees, expiry included.
        #[test]
        fn matches_hashmap_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut t = FlowTable::with_capacity(4096, SEED);
            let hs: Vec<FlowHash> = (0..POOL as u32).map(|i| t.hash(&key(i))).collect();
            let mut per_bucket: HashMap<usize, usize> = HashMap::new();
            for h in &hs {
                *per_bucket.entry(t.bucket_index(h)).or_default() += 1;
            }
            prop_assert!(per_bucket.values().all(|&n| n <= SLOTS_PER_BUCKET));

            let mut model: HashMap<usize, (u32, FlowState, u32)> = HashMap::new();
            let mut now = 0u32;
            for op in ops {
                match op {
                    Op::Insert { k, backend, state, ttl } => {
                        let out = t.insert(&hs[k], backend, state, now + ttl, now);
                        prop_assert_eq!(out, InsertOutcome::Inserted);
                        model.insert(k, (backend, state, now + ttl));
                    }
                    Op::Find { k } => {
                        let want = model
                            .get(&k)
                            .filter(|e| e.2 > now)
                            .map(|&(b, s, _)| (b, s));
                        prop_assert_eq!(found(&mut t, &hs[k], now), want);
                    }
                    Op::Refresh { k, state, ttl } => {
                        let live = model.get_mut(&k).filter(|e| e.2 > now);
                        match (t.find(&hs[k], now), live) {
                            (Some(mut e), Some(m)) => {
                                e.refresh(state, now + ttl);
                                *m = (m.0, state, now + ttl);
                            }
                            (None, None) => {}
                            (got, want) => prop_assert!(false, "{:?} vs {:?}", got, want),
                        }
                    }
                    Op::Remove { k } => {
                        // An expired entry may already have been overwritten by another
                        // flow of its bucket: only a live one must still be there.
                        let removed = t.remove(&hs[k]);
                        match model.remove(&k) {
                            Some(e) if e.2 > now => prop_assert!(removed),
                            Some(_) => {}
                            None => prop_assert!(!removed),
                        }
                    }
                    Op::Advance { secs } => now += secs,
                }
                let live = model.values().filter(|e| e.2 > now).count();
                prop_assert_eq!(t.live_entries(now), live);
            }
        }
    }

    #[test]
    fn census_steps_add_up_to_a_full_count() {
        let mut t = FlowTable::with_capacity(4096, 3);
        for i in 0..500u32 {
            let key = FlowKey::v4(
                [10, 0, (i >> 8) as u8, i as u8],
                [192, 0, 2, 1],
                1000,
                80,
                6,
            );
            let h = t.hash(&key);
            t.insert(&h, 1, FlowState::TcpEstablished, 100, 0);
        }
        let full = t.live_entries(1);
        let mut result = None;
        for _ in 0..100 {
            if let Some(c) = t.census_step(1, 100) {
                result = Some(c.live);
                break;
            }
        }
        assert_eq!(result, Some(full));
        assert_eq!(
            t.census_step(200, usize::MAX).map(|c| c.live),
            Some(0),
            "all expired"
        );
    }

    #[test]
    fn census_counts_each_backend_and_bounds_the_ids() {
        let mut t = FlowTable::with_capacity(4096, 3);
        let ids = [
            0,
            7,
            7,
            7,
            CENSUS_BACKEND_IDS as u32 - 1,
            CENSUS_BACKEND_IDS as u32,
        ];
        for (i, id) in ids.iter().enumerate() {
            let h = t.hash(&key(i as u32));
            t.insert(&h, *id, FlowState::TcpEstablished, 100, 0);
        }
        // An expired entry counts for nobody.
        let h = t.hash(&key(99));
        t.insert(&h, 7, FlowState::Udp, 5, 0);
        let by_backend_ptr = t.last_census().by_backend.as_ptr();
        let mut sweeps = 0;
        let census = loop {
            sweeps += 1;
            if t.census_step(10, 100).is_some() {
                break t.last_census();
            }
        };
        assert_eq!(sweeps, 1024 / 100 + 1, "1024 buckets in steps of 100");
        assert_eq!(census.live, 6);
        assert_eq!(census.by_backend[0], 1);
        assert_eq!(census.by_backend[7], 3);
        assert_eq!(census.by_backend[CENSUS_BACKEND_IDS - 1], 1);
        assert_eq!(census.unattributed, 1, "id 65536 is beyond the bound");
        assert_eq!(
            census.by_backend.iter().map(|&n| n as usize).sum::<usize>(),
            5
        );
        // The next sweep starts from zero and reuses the two arrays (no allocation).
        assert!(t.census_at_start());
        let h = t.hash(&key(0));
        assert!(t.remove(&h));
        let again = t
            .census_step(10, usize::MAX)
            .expect("one step sweeps it all");
        assert_eq!(
            (again.live, again.by_backend[0], again.by_backend[7]),
            (5, 0, 3)
        );
        let ptrs = [
            t.last_census().by_backend.as_ptr(),
            t.census_partial.by_backend.as_ptr(),
        ];
        assert!(ptrs.contains(&by_backend_ptr));
    }
}
#[cfg(test)]
mod spread_tests {
    use super::*;

    /// Distinct buckets hit by `keys` in a 4096-bucket table, against the ideal for random
    /// hashing (4096 · (1 − e^(−n/4096))).
    fn spread(keys: impl Iterator<Item = FlowKey>) -> (usize, f64) {
        let mut buckets = std::collections::HashSet::new();
        let mut sigs = std::collections::HashSet::new();
        let mut n = 0;
        for key in keys {
            let h = FlowHash::new(&key, 7);
            buckets.insert(h.index() & 4095);
            sigs.insert(h.sig());
            n += 1;
        }
        assert_eq!(sigs.len(), n, "signature collision among structured keys");
        (buckets.len(), 4096.0 * (1.0 - (-(n as f64) / 4096.0).exp()))
    }

    #[test]
    fn structured_keys_spread_like_random_ones() {
        let cases: [(&str, Box<dyn Iterator<Item = FlowKey>>); 3] = [
            (
                "IPv4 clients differing in the last octet and source port",
                Box::new((0..2000u32).map(|i| {
                    let src = (0xc633_0000u32 + (i >> 8)).to_be_bytes();
                    FlowKey::v4(src, [192, 0, 2, 10], 1024 + (i & 0xff) as u16, 80, 6)
                })),
            ),
            (
                "one client, consecutive source ports",
                Box::new(
                    (0..2000u16)
                        .map(|p| FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 30000 + p, 443, 6)),
                ),
            ),
            (
                "IPv6 clients differing in one byte",
                Box::new((0..2000u32).map(|i| {
                    let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                    src[14] = (i >> 8) as u8;
                    src[15] = i as u8;
                    FlowKey::v6(src, [0x20; 16], 5000, 53, 17)
                })),
            ),
        ];
        for (what, keys) in cases {
            let (got, ideal) = spread(keys);
            assert!(
                got as f64 > ideal * 0.95,
                "{what}: {got} buckets, ideal {ideal:.0}"
            );
        }
    }
}
