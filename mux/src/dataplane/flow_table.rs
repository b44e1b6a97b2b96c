//! The per-worker flow table: which backend each live flow is pinned to.
//!
//! # What it owns
//!
//! One [`FlowTable`] per worker core, owned by that worker alone: no sharing, no locks, no
//! atomics. It maps a flow (its [`FlowKey`], through a [`FlowHash`]) to the backend chosen when
//! the flow started, its coarse TCP/UDP [`FlowState`] and an expiry time. It is what keeps an
//! existing flow on its backend when the Maglev table changes underneath it. It holds what its
//! capacity promises: uniformly random flows up to 90 % of [`FlowTable::capacity`] are all
//! stored, none evicted and none refused (see *Sizing*).
//!
//! # Layout: bucketized cuckoo hashing (VPP `lbhash.h` buckets, two of them per flow)
//!
//! The table is a power-of-two array of 64-byte, 64-byte-aligned buckets; each bucket holds 4
//! slots of 16 bytes: `sig: u64` (0 = empty), `expires: u32` (coarse clock, seconds since the
//! worker started) and `value: u32` (backend id in the low 24 bits, state in the high 8).
//!
//! Each flow has two candidate buckets: its *first* bucket `b₁ = index & mask`, and its
//! *partner* `b₂ = b₁ ⊕ (offset(sig) & mask)`, where `offset(sig)` is the signature's high half
//! with its lowest bit set (so `b₂ ≠ b₁` whenever the table has more than one bucket). The
//! partner is computed from the signature alone, and `⊕` is its own inverse, so from *either*
//! bucket a stored entry's other bucket is `bucket ⊕ offset(sig)`: an entry can be moved
//! without its key (the partial-key cuckoo hashing of cuckoo filters and MemC3, here with a
//! full-width offset, so the partner is uniform over all buckets and not limited by a small
//! fingerprint).
//!
//! - **Lookup** ([`FlowTable::find`]) compares the signature against `b₁`'s four slots, then
//!   `b₂`'s. The worker prefetches both lines ([`FlowTable::prefetch`]) for every packet of a
//!   burst before it looks any of them up, so both misses overlap with the work on the other
//!   packets; a hit in `b₂` costs four more compares, not another wait. A miss (a new flow)
//!   must read both lines, which is why both are prefetched rather than `b₂` on demand.
//! - **Insert** ([`FlowTable::insert`]) reuses the slot that already holds the flow's signature
//!   (in either bucket); otherwise it takes a free (empty or expired) slot of `b₁`, or of `b₂`
//!   when `b₁` is full or already holds 3 live entries and `b₂` fewer. So below about 75 % full
//!   nearly every flow sits in `b₁` and a hit is decided by the first line and a well-predicted
//!   branch; near full the two buckets stay balanced. Only when both are full of live entries
//!   does it *search*: a breadth-first walk over the buckets the residents could move to,
//!   reading each level's buckets together (prefetched), at most [`SEARCH_BUDGET`] buckets and
//!   so at most 4 levels (8 + 32 + 128 + 88 buckets). When it reaches a bucket with a free slot,
//!   the entries on the path each move one step (at most 4 moves, each a 16-byte copy to the
//!   entry's own other bucket) and the newcomer takes the slot freed in its own bucket. A move
//!   never drops an entry.
//!
//! The memory is allocated (and written, so every page is faulted in) once, by
//! [`FlowTable::with_capacity`]; nothing in this module allocates afterwards (the search's
//! queue is a fixed array on the stack). Expiry is lazy: an entry whose `expires <= now` is a
//! miss for [`FlowTable::find`] and free space for [`FlowTable::insert`]; no timer wheel or
//! sweeper is needed.
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
//! Cuckoo moves happen between census steps, and a move from a bucket the sweep has not reached
//! yet to one it has passed would hide that entry from the sweep. Such a move counts the entry
//! into the sweep in progress as it moves, so a flow that lives through a whole sweep is always
//! counted (a move the other way may count it twice, never zero times): an operator waiting for
//! a draining backend's count to reach 0 is never told so early.
//!
//! # Signatures instead of keys
//!
//! A slot stores only a 64-bit signature, not the 37-byte key, which is what lets four entries
//! fit in one cache line. [`FlowHash`] is two independently keyed 64-bit lanes of a
//! folded-multiply hash (the wyhash / foldhash construction) over the key's words, keyed by a
//! per-table seed: one lane selects the first bucket, the other, with its lowest bit forced to
//! 1 (so that 0 can mean "empty"), is the signature (whose high half also picks the partner).
//! Treating the lanes as independent 64-bit hashes, two distinct keys that share a bucket have
//! equal signatures with probability about 2⁻⁶³. A lookup compares against at most 8 resident
//! signatures (two buckets), so a false match costs at most 8·2⁻⁶³ ≈ 8.7·10⁻¹⁹ per lookup: at
//! 10⁸ lookups per second per core, about one false match per 360 years per core. Its
//! consequence would be one flow's packets going to another flow's backend (which answers with
//! a RST) — never memory unsafety. Moves do not change this: an entry only ever sits in one of
//! its own two buckets, where a lookup of its own key looks.
//!
//! The seed is random in production. This hash is in-process only and is deliberately *not* the
//! stable backend-selection hash shared by all MUXes: an attacker who cannot learn the seed
//! cannot craft keys that collide in one bucket pair (or on one signature).
//!
//! # Second-chance entries
//!
//! A flow the MUX had no entry for, whose packets carry an alternative backend
//! (docs/second-chance.md), is stored under a second signature of the same bucket,
//! [`FlowHash::second_chance`] (the signature with fixed bits flipped, still odd), and its slot
//! holds the *alternative's* id: the host agent needs the alternative on every packet of such a
//! flow, and the flow must keep it for its life even after the previous table that named it has
//! left the window. A third signature, [`FlowHash::second_chance_primary`], holds the backend
//! the flow's packets go to — the current pick when the entry was made — so that the pair
//! stays fixed for the flow's life, as GLB's primary/secondary pair does: its agent decided
//! once whether it carries the connection (delivered) or not (forwarded), and a later table
//! that picks another backend, or the alternative itself, must not send the flow anywhere
//! else. (With the alternative alone, a flow its first agent kept — it already carried it —
//! went plainly to the alternative when a later table picked that one, and broke: the lab's
//! second-chance round, UDP flows, 2026-12-05.) A second-chance flow takes two slots. A normal lookup never matches such an entry, so flow-table hits stay exactly
//! as they were; only a miss of a packet that is not a bare SYN looks for it (its first bucket
//! is the flow's own, already loaded; its partner follows from its own signature, like any
//! entry's, so cuckoo moves need no special case). The table itself does not know the difference: such an entry
//! expires, is evicted and is counted in the census (under the alternative's id) like any other.
//!
//! # Invariants
//!
//! - A flow's signature is stored in at most one slot of its two buckets ([`FlowTable::insert`]
//!   reuses a slot with the newcomer's signature, live or expired, before anything else, and a
//!   move takes an entry to its own other bucket, where its signature is not).
//! - Every stored entry sits in one of its two buckets, `b` and `b ⊕ offset(sig)`.
//! - A stored signature is never 0; a slot with `sig == 0` is empty, and its `expires` is 0, so
//!   "live" is the one compare `expires > now`.
//! - The bucket count is a power of two and `mask == buckets - 1`; the table never grows.
//!
//! # Eviction: SYN floods churn only half-open entries
//!
//! When neither bucket has a slot for a newcomer and the search finds no room within its
//! budget, [`FlowTable::insert`] replaces the live entry of the two buckets with the earliest
//! `expires` among those the newcomer may displace ([`FlowState::may_displace`]): a
//! [`FlowState::TcpSynOnly`] newcomer may displace only `TcpSynOnly` and `TcpClosing` entries;
//! any other newcomer may displace any entry. So a SYN flood — spoofed sources, each one a new
//! half-open flow — can only churn half-open and closing entries and never evicts an
//! established flow. When nothing may be displaced the insert returns [`InsertOutcome::Full`]:
//! an outcome the caller counts, not an error. The packet is still forwarded by consistent
//! hashing, which lands on the same backend as long as the Maglev table does not change.
//!
//! A flood that fills the table would make every further newcomer pay a fruitless search of
//! [`SEARCH_BUDGET`] buckets. After [`SATURATION_FAILURES`] fruitless searches in a row the
//! table counts as saturated and searches read at most [`SATURATED_SEARCH_BUDGET`] buckets (one
//! level), until an insert finds room again: a flood that fills the table costs each further
//! SYN one level of 8 bucket reads (prefetched together) on top of its own two, while a table
//! below 95 % practically never sees that many failures in a row (at 95 % about 1 search in
//! 4000 fails; 8 in a row, about 10⁻²⁹).
//!
//! # Sizing: why 90 % holds and 95 % nearly does
//!
//! Keys spread over buckets like balls over bins. With *one* bucket per flow, `n` live flows
//! and `b` buckets, the load per bucket is Poisson(n/b), and every flow beyond a bucket's four
//! is lost: 0.4 % of flows at 25 % of capacity, 3.8 % at 50 %, 15.9 % at 90 % (the old table
//! of this module: the 0.7 % evictions of `perf pipeline`'s established scenario at 4× headroom).
//!
//! With two buckets per flow and the freedom to move entries, storing `n` flows is a matching
//! problem: each flow is an edge between its two buckets, each bucket takes 4. For 2 choices
//! and 4 slots a complete placement exists with high probability up to a load of
//! c*₂,₄ ≈ 0.9768 and not beyond (Cain, Sanders & Wormald 2007; Fernholz & Ramachandran 2007);
//! how much of that a bounded search reaches is measured, not derived. `perf table-fill` fills
//! a table with uniformly random flows and counts what was lost (docs/benchmarks.md): with the
//! budget of 256 buckets the first flow is lost at 94.5–95 % of capacity (1 Mi and 4 Mi
//! entries, three seeds), none up to 90 %, 0–5 per million up to 95 %; 99 % is beyond the
//! threshold and loses about 1 %. The search is cheap where it matters: below 50 % full about
//! 1 insert in 3000 searches, from 50 to 75 % 1 in 22 (1.5 buckets read), from 75 to 90 % 1 in 3
//! (about 4 buckets read).
//!
//! Configure the capacity at the number of concurrent flows a worker must hold divided by 0.9
//! (the default 1 Mi entries holds 943 k flows).
//!
//! # Rejected alternatives
//!
//! - *One bucket per flow (this table before)*: one cache line per lookup, but a bucket
//!   overflows long before the table is full (above: 15.9 % lost at 90 %), so the capacity had
//!   to be four times the flows and still lost 0.4 % of them.
//! - *Larger buckets* (8 slots on two lines, one bucket per flow): two lines per lookup like
//!   this design, and still Poisson: 10.1 % of flows lost at 90 %.
//! - *Two choices without moves* (the emptier bucket): the first flow is lost at about 37 %,
//!   and 3.9 % of flows by 90 %.
//! - *Random-walk cuckoo insertion*: each move depends on the bucket read before it, so a long
//!   walk is a chain of serial cache misses; the breadth-first search reads a level's buckets
//!   together and moves at most 4 entries.
//! - *The emptier bucket always*: balances best (first loss about 0.7 % later in a model of
//!   this table), but a third of the flows sit in `b₂` even at low load, so which line holds a
//!   hit is a coin toss for the branch predictor: lookups in `perf table-fill` (4 Mi entries,
//!   25–90 % full) took about 50–70 ns against 30–36 ns with `b₁` first, in the same run.
//! - *`b₂` prefetched only when `b₁` misses* (one line per hit, as before): every new flow then
//!   waits for a dependent miss on `b₂` (inserts measured 2–3× slower); knowing which packets
//!   start flows is the pipeline's business, not the table's.
//! - *A 128-bucket search budget*: the first loss comes at about 93 %, a thin margin over the
//!   promise; 256 costs nothing below 90 %, where searches stop after a few buckets.
//! - *Storing the full key*: 37+ bytes per entry, one entry per cache line or a second memory
//!   access per lookup; the signature argument above makes it unnecessary.
//! - *A general hash map (`hashbrown`)*: allocates on growth, stores keys, and has no notion of
//!   expiry or of which entry to sacrifice under pressure.
//! - *Exact expiry timers*: a timer wheel costs work per flow; lazy expiry costs one compare.

use mux_packet::flow_key::FlowKey;

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

    /// Counts one live entry, for its backend.
    #[inline]
    fn count(&mut self, slot: &Slot) {
        self.live += 1;
        match self
            .by_backend
            .get_mut((slot.value & MAX_BACKEND_ID) as usize)
        {
            Some(n) => *n += 1,
            None => self.unattributed += 1,
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
    /// Stored in an empty or expired slot (possibly freed by moving other entries to their
    /// other bucket), or in the slot that already held this flow (refresh).
    Inserted,
    /// Stored by replacing another flow's live entry (the earliest-expiring one it may displace):
    /// both buckets were full and no room could be made by moving entries.
    Evicted,
    /// Not stored: both buckets are full of live entries the newcomer may not displace, and no
    /// room could be made by moving entries.
    Full,
}

/// A flow's position in one [`FlowTable`]: its first bucket's index and its signature (which
/// also picks its second bucket).
///
/// Computed by [`FlowTable::hash`] (or [`FlowHash::new`] with the table's seed). Cheap to copy;
/// compute it once per packet, use it for [`FlowTable::prefetch`] and then
/// [`FlowTable::find`] / [`FlowTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowHash {
    /// The bucket-selecting lane; masked to the first bucket's index.
    index: u64,
    /// The signature lane with bit 0 set; never 0.
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

    /// The same flow's second-chance *primary* entry: the backend its packets go to (with the
    /// alternative), fixed when the second-chance entry was made. Same bucket, signature with
    /// [`SECOND_CHANCE_PRIMARY_SIG_FLIP`] applied. See the module docs.
    #[inline]
    pub fn second_chance_primary(&self) -> FlowHash {
        FlowHash {
            index: self.index,
            sig: self.sig ^ SECOND_CHANCE_PRIMARY_SIG_FLIP,
        }
    }
}

/// Bits flipped in a flow's signature to key its second-chance entry (bit 0 clear).
pub const SECOND_CHANCE_SIG_FLIP: u64 = 0x9e37_79b9_7f4a_7c14;
/// Bits flipped in a flow's signature to key its second-chance primary entry (bit 0 clear;
/// neither 0 nor [`SECOND_CHANCE_SIG_FLIP`], nor their XOR's complement of it).
pub const SECOND_CHANCE_PRIMARY_SIG_FLIP: u64 = 0xc2b2_ae3d_27d4_eb4e;

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

    /// Live: not expired. An empty slot is never live: every emptied slot is [`Slot::EMPTY`],
    /// whose `expires` is 0 (a module invariant), so no separate `sig != 0` test is needed.
    #[inline(always)]
    fn is_live(&self, now: u32) -> bool {
        debug_assert!(
            self.sig != 0 || self.expires == 0,
            "an empty slot with an expiry"
        );
        self.expires > now
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
    /// Fruitless searches in a row (see the module docs on saturation).
    failed_searches_in_a_row: u32,
    /// What the inserts did (for benchmarks and tests).
    stats: TableStats,
}

/// What [`FlowTable::insert`] has done since the table was built: how hard it worked to keep
/// its promise. Benchmarks and tests read it; the packet path only adds to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// Inserts that found both buckets full of live entries and searched for room.
    pub searches: u64,
    /// Of `searches`: those that found no room within their budget (the insert then evicted
    /// or was refused).
    pub failed_searches: u64,
    /// Buckets the searches read beyond the newcomer's two.
    pub searched_buckets: u64,
    /// Entries moved to their other bucket to make room.
    pub moves: u64,
}

/// Buckets a search for room may read beyond the newcomer's own two (at most 4 levels:
/// 8 + 32 + 128 + 88).
pub const SEARCH_BUDGET: usize = 256;
/// Buckets a search may read while the table is saturated (one level).
pub const SATURATED_SEARCH_BUDGET: usize = 8;
/// Fruitless searches in a row after which the table counts as saturated.
pub const SATURATION_FAILURES: u32 = 8;

/// One bucket reached by a search: which one, and how an entry gets there.
#[derive(Clone, Copy, Debug, Default)]
struct SearchNode {
    /// The bucket.
    bucket: usize,
    /// Index of the node whose bucket's entry moves here; [`SearchNode::ROOT`] for the
    /// newcomer's own two buckets.
    parent: u16,
    /// The slot of the parent's bucket holding that entry.
    slot: u8,
}

impl SearchNode {
    const ROOT: u16 = u16::MAX;
}

/// A free slot (empty or expired) found by a search, and the path of moves that leads to it.
#[derive(Clone, Copy, Debug)]
struct Room {
    /// Index of the node whose bucket has the free slot.
    node: usize,
    /// The free slot in it.
    slot: usize,
}

impl std::fmt::Debug for FlowTable {
    // Neither the (possibly huge) bucket array nor the secret seed belongs in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("buckets", &self.buckets.len())
            .field("capacity", &self.capacity())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The first free (empty or expired) slot of `bucket`.
#[inline]
fn free_slot(bucket: &Bucket, now: u32) -> Option<usize> {
    bucket.slots.iter().position(|s| !s.is_live(now))
}

/// Whether a newcomer with room in both buckets goes to its partner: only when its first
/// bucket already holds 3 live entries and the partner fewer (`live`: the buckets' live-slot
/// masks). So at ordinary loads almost every flow sits in its first bucket, where a lookup
/// finds it without a second, mispredicted branch, and near full the two stay balanced.
#[inline(always)]
fn spill_to_partner(first_live: u32, partner_live: u32) -> bool {
    let (first, partner) = (first_live.count_ones(), partner_live.count_ones());
    first >= 3 && partner < first
}

/// What one pass over a bucket tells an insert, as bit masks over its slots (bit `j`: slot
/// `j`): branch-free, so a bucket costs a handful of instructions whatever it holds.
#[derive(Clone, Copy, Debug)]
struct BucketScan {
    /// Slots holding the newcomer's signature (live or expired; at most one).
    same: u32,
    /// Slots holding a live entry.
    live: u32,
}

impl BucketScan {
    #[inline(always)]
    fn of(bucket: &Bucket, sig: u64, now: u32) -> BucketScan {
        let (mut same, mut live) = (0, 0);
        for (j, s) in bucket.slots.iter().enumerate() {
            same |= u32::from(s.sig == sig) << j;
            live |= u32::from(s.is_live(now)) << j;
        }
        BucketScan { same, live }
    }

    /// The first slot holding the signature.
    #[inline(always)]
    fn same(self) -> Option<usize> {
        (self.same != 0).then(|| self.same.trailing_zeros() as usize)
    }

    /// The first free (empty or expired) slot.
    #[inline(always)]
    fn free(self) -> Option<usize> {
        let free = !self.live & ((1 << SLOTS_PER_BUCKET) - 1);
        (free != 0).then(|| free.trailing_zeros() as usize)
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
            failed_searches_in_a_row: 0,
            stats: TableStats::default(),
        }
    }

    /// The number of slots (buckets × 4). Uniformly random flows up to 90 % of it are all
    /// stored (see the module docs on sizing).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS_PER_BUCKET
    }

    /// What the inserts did so far.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Hashes `key` with this table's seed.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> FlowHash {
        FlowHash::with_keys(key, &self.lane_keys)
    }

    /// The other bucket of an entry with signature `sig` that sits in (or belongs to) `bucket`.
    #[inline]
    fn partner(&self, bucket: usize, sig: u64) -> usize {
        // The mask fits in usize because it is `buckets.len() - 1`.
        bucket ^ ((sig.rotate_left(32) | 1) & self.mask) as usize
    }

    /// `h`'s two buckets: the first, and its partner (equal only in a one-bucket table).
    #[inline]
    fn buckets_of(&self, h: &FlowHash) -> (usize, usize) {
        let first = (h.index & self.mask) as usize;
        (first, self.partner(first, h.sig))
    }

    /// Starts loading `h`'s two buckets into the cache; call it for every packet of a burst
    /// before looking any of them up. A no-op on architectures without a stable prefetch
    /// intrinsic.
    #[inline]
    pub fn prefetch(&self, h: &FlowHash) {
        let (b1, b2) = self.buckets_of(h);
        prefetch(&self.buckets[b1]);
        prefetch(&self.buckets[b2]);
    }

    /// Where `h`'s signature is stored (live or expired): bucket and slot.
    #[inline]
    fn position(&self, h: &FlowHash) -> Option<(usize, usize)> {
        let (b1, b2) = self.buckets_of(h);
        let at = |b: usize| {
            self.buckets[b]
                .slots
                .iter()
                .position(|s| s.sig == h.sig)
                .map(|j| (b, j))
        };
        at(b1).or_else(|| at(b2))
    }

    /// Finds the live entry for `h`: same signature and `expires > now`, in either of its
    /// buckets. An expired entry is a miss and stays in place until an insert reuses its slot.
    #[inline(always)]
    pub fn find(&mut self, h: &FlowHash, now: u32) -> Option<FlowEntryMut<'_>> {
        let live = |b: &Bucket| {
            b.slots
                .iter()
                .position(|s| s.sig == h.sig && s.expires > now)
        };
        // The partner is computed only when the first bucket misses: a hit there (nearly every
        // hit below 75 % full, see `spill_to_partner`) costs what the one-bucket table did.
        let b1 = (h.index & self.mask) as usize;
        let (b, j) = match live(&self.buckets[b1]) {
            Some(j) => (b1, j),
            None => {
                let b2 = self.partner(b1, h.sig);
                (b2, live(&self.buckets[b2])?)
            }
        };
        Some(FlowEntryMut {
            slot: &mut self.buckets[b].slots[j],
        })
    }

    /// Stores `h → (backend, state, expires)`, choosing the slot in this order:
    /// 1. the slot of either bucket already holding `h`'s signature (live or expired):
    ///    refreshed in place;
    /// 2. a free (empty or expired) slot of the first bucket, or of the partner when the first
    ///    holds 3 live entries and the partner fewer (or the first has none free);
    /// 3. a slot freed by moving up to 4 entries to their other buckets (the search of the
    ///    module docs);
    /// 4. the live entry of the two buckets with the earliest `expires` among those `state` may
    ///    displace ([`FlowState::may_displace`]) — [`InsertOutcome::Evicted`];
    /// 5. none: [`InsertOutcome::Full`], nothing stored.
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
        let new = Slot::new(h.sig, backend, state, expires);
        let (b1, b2) = self.buckets_of(h);
        let first = BucketScan::of(&self.buckets[b1], h.sig, now);
        let second = BucketScan::of(&self.buckets[b2], h.sig, now);
        let place = match (first.same(), second.same()) {
            (Some(j), _) => Some((b1, j)),
            (None, Some(j)) => Some((b2, j)),
            // The first bucket, unless it holds 3 live entries and the partner fewer.
            (None, None) => match (first.free(), second.free()) {
                (Some(_), Some(k)) if spill_to_partner(first.live, second.live) => Some((b2, k)),
                (Some(j), _) => Some((b1, j)),
                (None, Some(k)) => Some((b2, k)),
                (None, None) => None,
            },
        };
        if let Some((b, j)) = place {
            self.buckets[b].slots[j] = new;
            self.failed_searches_in_a_row = 0;
            return InsertOutcome::Inserted;
        }
        if let Some((b, j)) = self.make_room(b1, b2, now) {
            self.buckets[b].slots[j] = new;
            return InsertOutcome::Inserted;
        }
        let mut victim: Option<(usize, usize, u32)> = None;
        let pair: &[usize] = if b1 == b2 { &[b1] } else { &[b1, b2] };
        for &b in pair {
            for (j, s) in self.buckets[b].slots.iter().enumerate() {
                if state.may_displace(s.state())
                    && victim.is_none_or(|(_, _, earliest)| s.expires < earliest)
                {
                    victim = Some((b, j, s.expires));
                }
            }
        }
        match victim {
            Some((b, j, _)) => {
                self.buckets[b].slots[j] = new;
                InsertOutcome::Evicted
            }
            None => InsertOutcome::Full,
        }
    }

    /// Frees a slot in bucket `b1` or `b2` (both full of live entries) by moving entries to
    /// their other buckets: a breadth-first search over the buckets the residents may move to,
    /// within the search budget. Returns the freed slot, or `None` when no room was found
    /// (nothing moved).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, b1: usize, b2: usize, now: u32) -> Option<(usize, usize)> {
        let budget = if self.failed_searches_in_a_row >= SATURATION_FAILURES {
            SATURATED_SEARCH_BUDGET
        } else {
            SEARCH_BUDGET
        };
        self.stats.searches += 1;
        let mut nodes = [SearchNode::default(); 2 + SEARCH_BUDGET];
        nodes[0] = SearchNode {
            bucket: b1,
            parent: SearchNode::ROOT,
            slot: 0,
        };
        nodes[1] = SearchNode {
            bucket: b2,
            parent: SearchNode::ROOT,
            slot: 0,
        };
        let roots = if b1 == b2 { 1 } else { 2 };
        let found = self.search(&mut nodes, roots, budget, now);
        self.stats.searched_buckets += found.1 as u64;
        let Some(room) = found.0 else {
            self.stats.failed_searches += 1;
            self.failed_searches_in_a_row = self.failed_searches_in_a_row.saturating_add(1);
            return None;
        };
        self.failed_searches_in_a_row = 0;
        // Walk the path back from the free slot: each entry moves into the slot freed below it.
        let (mut to_bucket, mut to_slot) = (nodes[room.node].bucket, room.slot);
        let mut node = nodes[room.node];
        while node.parent != SearchNode::ROOT {
            let from_bucket = nodes[usize::from(node.parent)].bucket;
            let from_slot = usize::from(node.slot);
            self.relocate((from_bucket, from_slot), (to_bucket, to_slot), now);
            (to_bucket, to_slot) = (from_bucket, from_slot);
            node = nodes[usize::from(node.parent)];
        }
        Some((to_bucket, to_slot))
    }

    /// The search of [`FlowTable::make_room`] over `nodes`, whose first `roots` entries are the
    /// newcomer's buckets: level by level, each resident's other bucket becomes a node (all of a
    /// level prefetched before any is read), skipping buckets already on the node's path.
    /// Returns the first node with a free slot, and how many buckets were read.
    fn search(
        &self,
        nodes: &mut [SearchNode; 2 + SEARCH_BUDGET],
        roots: usize,
        budget: usize,
        now: u32,
    ) -> (Option<Room>, usize) {
        let limit = (roots + budget).min(nodes.len());
        let (mut level_start, mut len) = (0, roots);
        while level_start < len && len < limit {
            let level_end = len;
            'expand: for parent in level_start..level_end {
                let from = nodes[parent].bucket;
                for (slot, s) in self.buckets[from].slots.iter().enumerate() {
                    if len == limit {
                        break 'expand;
                    }
                    let to = self.partner(from, s.sig);
                    if self.on_path(nodes, parent, to) {
                        continue;
                    }
                    prefetch(&self.buckets[to]);
                    nodes[len] = SearchNode {
                        bucket: to,
                        parent: parent as u16,
                        slot: slot as u8,
                    };
                    len += 1;
                }
            }
            for (i, node) in nodes.iter().enumerate().take(len).skip(level_end) {
                if let Some(slot) = free_slot(&self.buckets[node.bucket], now) {
                    return (Some(Room { node: i, slot }), i + 1 - roots);
                }
            }
            level_start = level_end;
        }
        (None, len - roots)
    }

    /// Whether `bucket` is node `at`'s bucket or one of its ancestors' (a path through a bucket
    /// twice could move an entry out of a slot another move has just filled).
    fn on_path(&self, nodes: &[SearchNode], mut at: usize, bucket: usize) -> bool {
        loop {
            if nodes[at].bucket == bucket {
                return true;
            }
            match nodes[at].parent {
                SearchNode::ROOT => return false,
                p => at = usize::from(p),
            }
        }
    }

    /// Moves the live entry at `from` into the free slot `to` (its other bucket), keeping the
    /// census honest: an entry moving from a bucket the sweep in progress has not reached to
    /// one it has passed is counted now (see the module docs).
    fn relocate(&mut self, from: (usize, usize), to: (usize, usize), now: u32) {
        let slot = self.buckets[from.0].slots[from.1];
        debug_assert_eq!(self.partner(from.0, slot.sig), to.0);
        self.buckets[to.0].slots[to.1] = slot;
        self.buckets[from.0].slots[from.1] = Slot::EMPTY;
        self.stats.moves += 1;
        if from.0 >= self.census_cursor && to.0 < self.census_cursor && slot.is_live(now) {
            self.census_partial.count(&slot);
        }
    }

    /// Removes `h`'s entry, live or expired. Returns whether a slot held it.
    #[inline]
    pub fn remove(&mut self, h: &FlowHash) -> bool {
        match self.position(h) {
            Some((b, j)) => {
                self.buckets[b].slots[j] = Slot::EMPTY;
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
            partial.count(slot);
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
        self.failed_searches_in_a_row = 0;
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

    /// Deterministic pseudo-random flow keys (splitmix64), full 5-tuples, IPv4 and IPv6, all
    /// distinct.
    fn random_keys(n: usize, mut x: u64) -> Vec<FlowKey> {
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut keys = Vec::with_capacity(n);
        let mut seen = HashSet::new();
        while keys.len() < n {
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
        keys
    }

    /// Every stored entry sits in one of its own two buckets, and no signature is stored twice.
    fn assert_placement(t: &FlowTable) {
        let mut sigs = HashSet::new();
        for (b, bucket) in t.buckets.iter().enumerate() {
            for s in bucket.slots.iter().filter(|s| s.sig != 0) {
                assert!(sigs.insert(s.sig), "signature stored twice");
                let other = t.partner(b, s.sig);
                assert_eq!(t.partner(other, s.sig), b, "partner is an involution");
            }
        }
    }

    /// Random keys up to 90 % of capacity (256 Ki slots): signatures never collide, nothing is
    /// evicted or refused, no lookup ever returns another flow's value, every entry sits in one
    /// of its two buckets, and the table never reallocates. Up to 95 %: under 1 % lost.
    #[test]
    fn random_keys_up_to_90_percent_are_all_kept() {
        const CAP: usize = 1 << 18;
        let mut t = FlowTable::with_capacity(CAP, SEED);
        let (ptr, cap) = (t.buckets.as_ptr(), t.capacity());
        let keys = random_keys(CAP * 95 / 100, 0x1234_5678_9abc_def0);
        let hashes: Vec<FlowHash> = keys.iter().map(|k| t.hash(k)).collect();
        let sigs: HashSet<u64> = hashes.iter().map(|h| h.sig()).collect();
        assert_eq!(sigs.len(), hashes.len(), "64-bit signatures collided");

        let at_90 = CAP * 90 / 100;
        let mut lost = 0;
        for (i, h) in hashes.iter().enumerate() {
            // SYNs first (the pipeline's new TCP flow), then the handshake's ACK establishes it:
            // a SYN may not displace established flows, so a full pair shows as `Full`.
            match t.insert(h, i as u32, FlowState::TcpSynOnly, 1000, 0) {
                InsertOutcome::Inserted => {}
                outcome => {
                    assert!(i >= at_90, "flow {i} ({outcome:?}) below 90 % of capacity");
                    lost += 1;
                }
            }
            if let Some(mut e) = t.find(h, 0) {
                e.refresh(FlowState::TcpEstablished, 1000);
            }
            if i + 1 == at_90 {
                assert_eq!(t.live_entries(1), at_90);
                assert_placement(&t);
            }
        }
        assert!(t.stats().moves > 0, "90 % needs moves: {:?}", t.stats());
        let mut hits = 0;
        for (i, h) in hashes.iter().enumerate() {
            if let Some(e) = t.find(h, 1) {
                assert_eq!(e.backend(), i as u32, "key {i} found another flow's value");
                hits += 1;
            }
        }
        assert_eq!(hits, t.live_entries(1));
        assert_eq!(hits + lost, hashes.len());
        assert!(
            lost * 100 < hashes.len(),
            "{lost} of {} lost at 95 %",
            hashes.len()
        );
        assert_placement(&t);
        assert_eq!((t.buckets.as_ptr(), t.capacity()), (ptr, cap));
    }

    /// Moves keep the census honest: an entry moved from a bucket the sweep has not reached to
    /// one it has passed is still counted, so a sweep never misses an entry that lived through
    /// it.
    #[test]
    fn a_sweep_counts_every_entry_that_lived_through_it_despite_moves() {
        const CAP: usize = 1 << 14;
        let mut t = FlowTable::with_capacity(CAP, SEED);
        let keys = random_keys(CAP * 93 / 100, 7);
        let (old, new) = keys.split_at(CAP * 80 / 100);
        for (i, k) in old.iter().enumerate() {
            let h = t.hash(k);
            assert_eq!(
                t.insert(&h, i as u32, FlowState::Udp, 1000, 0),
                InsertOutcome::Inserted
            );
        }
        // Sweep in small steps while newcomers (backend id past the old ones) force moves all
        // over the table.
        let mut new = new.iter();
        let newcomer = old.len() as u32;
        let missed = loop {
            for k in new.by_ref().take(8) {
                let h = t.hash(k);
                t.insert(&h, newcomer, FlowState::Udp, 1000, 0);
            }
            if let Some(c) = t.census_step(0, 16) {
                break c.by_backend[..old.len()]
                    .iter()
                    .filter(|&&n| n == 0)
                    .count();
            }
        };
        assert!(t.stats().moves > 100, "{:?}", t.stats());
        assert_eq!(missed, 0, "old flows the sweep missed");
    }

    /// A saturated table (every slot live, nothing displaceable for a SYN) costs each further
    /// SYN a short search only: after a few fruitless full searches the budget drops to one
    /// level.
    #[test]
    fn a_saturated_table_searches_briefly() {
        const CAP: usize = 1 << 12;
        let mut t = FlowTable::with_capacity(CAP, SEED);
        for k in random_keys(4 * CAP, 11) {
            let h = t.hash(&k);
            t.insert(&h, 1, FlowState::TcpEstablished, 1000, 0);
        }
        assert_eq!(t.live_entries(0), CAP, "full");
        let before = t.stats();
        let syns = random_keys(1000, 12);
        for k in &syns {
            let h = t.hash(k);
            assert_eq!(
                t.insert(&h, 2, FlowState::TcpSynOnly, 5, 0),
                InsertOutcome::Full
            );
        }
        let after = t.stats();
        assert_eq!(after.failed_searches - before.failed_searches, 1000);
        let read = after.searched_buckets - before.searched_buckets;
        let most = SATURATION_FAILURES as usize * SEARCH_BUDGET
            + (1000 - SATURATION_FAILURES as usize) * SATURATED_SEARCH_BUDGET;
        assert!(read as usize <= most, "{read} buckets read, at most {most}");
        assert_eq!(after.moves, before.moves, "a failed search moves nothing");
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
                *per_bucket.entry(t.buckets_of(h).0).or_default() += 1;
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
