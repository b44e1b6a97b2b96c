//! `flow_table`: the per-worker flow table's operations at realistic sizes.
//!
//! - `hash`: the table's hash of one flow key (paid once per packet); `hash_prebuilt_bytes` is
//!   XXH3-128 over the key's canonical bytes built beforehand (what the table used to pay).
//! - `find_hit_1M`: lookups of 1 M live flows in a table of 4 M slots (the recommended 4×
//!   headroom), keys visited in a fixed pseudo-random order so each lookup is a cache miss as
//!   in production (the pipeline overlaps those misses with prefetching; this does not).
//! - `find_hit_hot`: the same lookup for one flow again and again (the bucket stays in L1).
//! - `insert_empty`: inserts of new flows into an empty 4 M-slot table (the table is cleared,
//!   untimed, every 1 M inserts).
//! - `insert_full_evict_with_hash`: inserts of new established flows into a table whose every
//!   bucket is full of live entries: each one evicts the earliest-expiring entry. Each newcomer
//!   is hashed in the loop (so none repeats); subtract `hash` for the insert alone.
//! - `insert_full_syn_refused`: the SYN-flood case, a SYN-only newcomer against a table full
//!   of established flows: refused (`InsertOutcome::Full`), nothing written.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mux::dataplane::flow_table::{FlowHash, FlowState, FlowTable, InsertOutcome};
use mux_packet::flow_key::FlowKey;
use xxhash_rust::xxh3::xxh3_128_with_seed;

const SEED: u64 = 0x5eed;
const FLOWS: usize = 1 << 20;
const NOW: u32 = 10;
const EXPIRES: u32 = 1_000;

fn key(i: u32) -> FlowKey {
    FlowKey::v4(
        i.to_be_bytes(),
        [192, 0, 2, 1],
        1024 + (i % 50_000) as u16,
        80,
        6,
    )
}

fn hashes(table: &FlowTable, range: std::ops::Range<u32>) -> Vec<FlowHash> {
    range.map(|i| table.hash(&key(i))).collect()
}

/// `0..n` in a fixed pseudo-random order (a multiplicative stride), so consecutive lookups hit
/// unrelated buckets.
fn shuffled(n: usize) -> Vec<usize> {
    (0..n).map(|i| i.wrapping_mul(2_654_435_761) % n).collect()
}

fn bench_flow_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_table");
    group.throughput(Throughput::Elements(1));

    let mut table = FlowTable::with_capacity(4 * FLOWS, SEED);
    let k = key(7);
    group.bench_function("hash", |b| b.iter(|| table.hash(black_box(&k))));
    // The same XXH3-128 over key bytes that already sit in memory: the difference to `hash`
    // is the cost of building `canonical_bytes` (narrow stores read back as wide loads).
    let bytes = k.canonical_bytes();
    group.bench_function("hash_prebuilt_bytes", |b| {
        b.iter(|| xxh3_128_with_seed(black_box(&bytes), SEED))
    });

    let offered = hashes(&table, 0..FLOWS as u32);
    for h in &offered {
        table.insert(h, 1, FlowState::TcpEstablished, EXPIRES, NOW);
    }
    // At 25 % full the table holds every flow (the one-bucket table lost 0.4 % here); look up
    // only the flows the table holds all the same.
    let live: Vec<FlowHash> = offered
        .iter()
        .copied()
        .filter(|h| table.find(h, NOW).is_some())
        .collect();
    assert!(live.len() > FLOWS * 99 / 100, "table holds its flows");
    let order = shuffled(live.len());
    let mut i = 0usize;
    let mut misses = 0u64;
    group.bench_function("find_hit_1M", |b| {
        b.iter(|| {
            i = if i + 1 == order.len() { 0 } else { i + 1 };
            let h = &live[order[i]];
            match table.find(black_box(h), NOW) {
                Some(e) => e.backend(),
                None => {
                    misses += 1;
                    0
                }
            }
        })
    });
    let hot = live[3];
    group.bench_function("find_hit_hot", |b| {
        b.iter(|| table.find(black_box(&hot), NOW).map(|e| e.backend()))
    });

    let fresh = hashes(&table, FLOWS as u32..2 * FLOWS as u32);
    group.bench_function("insert_empty", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                table.clear();
                let n = (iters - done).min(FLOWS as u64) as usize;
                let start = Instant::now();
                for h in &fresh[..n] {
                    black_box(table.insert(h, 2, FlowState::TcpSynOnly, EXPIRES, NOW));
                }
                elapsed += start.elapsed();
                done += n as u64;
            }
            elapsed
        })
    });

    // Fill every bucket: 4 M slots, 16 M established flows offered (each evicts when full).
    let mut full = FlowTable::with_capacity(4 * FLOWS, SEED);
    for i in 0..(16 * FLOWS) as u32 {
        let h = full.hash(&key(i));
        full.insert(&h, 1, FlowState::TcpEstablished, EXPIRES + (i % 100), NOW);
    }
    // Offered load 16 per bucket: all but ~1e-4 of the buckets are full.
    assert!(
        full.live_entries(NOW) > full.capacity() * 999 / 1000,
        "the table is full"
    );
    let newcomers = hashes(&full, (16 * FLOWS) as u32..(17 * FLOWS) as u32);
    let mut j = 0usize;
    group.bench_function("insert_full_syn_refused", |b| {
        b.iter(|| {
            j = if j + 1 == FLOWS { 0 } else { j + 1 };
            let out = full.insert(
                black_box(&newcomers[j]),
                3,
                FlowState::TcpSynOnly,
                EXPIRES,
                NOW,
            );
            debug_assert_eq!(out, InsertOutcome::Full);
            out
        })
    });
    // Newcomers must never repeat (a repeat would refresh its own slot instead of evicting),
    // so each one is hashed in the loop: subtract `hash` for the insert alone.
    let mut next = 17 * FLOWS as u32;
    group.bench_function("insert_full_evict_with_hash", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let h = full.hash(&key(black_box(next)));
            full.insert(&h, 3, FlowState::TcpEstablished, EXPIRES + 200, NOW)
        })
    });
    group.finish();
    assert_eq!(misses, 0, "every find_hit_1M lookup hit");
    let refused = newcomers
        .iter()
        .filter(|h| full.insert(h, 3, FlowState::TcpSynOnly, EXPIRES, NOW) == InsertOutcome::Full)
        .count();
    assert!(
        refused > FLOWS * 99 / 100,
        "insert_full_syn_refused measured refusals ({refused} of {FLOWS})"
    );
}

criterion_group!(benches, bench_flow_table);
criterion_main!(benches);
