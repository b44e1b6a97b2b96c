//! `perf table-fill`: does the flow table hold what its capacity promises, and what do inserts
//! and lookups cost as it fills?
//!
//! One [`FlowTable`] of `--capacity` entries (the MUX's `flow_table_capacity`, default 1 Mi) is
//! filled with uniformly random flows (random IPv4 client address and port toward 16 VIPs) to
//! each level in turn — 50, 75, 90, 95 and 99 % of its capacity by default — and at each level
//! the benchmark prints what the inserts of that step lost (evicted or refused), how hard the
//! table worked (searches, moves), the time per insert and the time per lookup of a live flow.
//!
//! Newcomers arrive as the pipeline creates them, in bursts of 32: each flow's hash is computed
//! and both of its buckets prefetched for the whole burst, then each is looked up (a miss) and
//! inserted. Two kinds of newcomer, each on its own table:
//! - `syn`: a TCP SYN (`TcpSynOnly`), established (refreshed to `TcpEstablished`) right after
//!   its burst, as the handshake's ACK would, outside the timed part. A SYN may not displace an
//!   established flow, so a newcomer without room is *refused* (`table-full`).
//! - `established`: inserted as `TcpEstablished`, which may displace anything, so a newcomer
//!   without room *evicts* another flow.
//!
//! Lookups are timed the same way, at each level: bursts of 32 random live flows, hash and
//! prefetch for the burst, then `find` for each (all hits, checked).
//!
//! The table's promise (module docs of `mux::dataplane::flow_table`): nothing lost up to 90 %,
//! under 1 % of the flows offered up to 95 %. A run that breaks it gets a warning and exits 1.

use std::time::Instant;

use serde::Serialize;

use mux::dataplane::flow_table::{FlowHash, FlowState, FlowTable, InsertOutcome, TableStats};
use mux_packet::flow_key::FlowKey;

/// Flows hashed and prefetched together, as the worker's burst.
const BURST: usize = 32;
/// Expiry of every entry: far beyond the benchmark's clock.
const EXPIRES: u32 = 1_000_000;
/// The benchmark's clock (never moves: nothing expires).
const NOW: u32 = 1;

/// How newcomers are inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Newcomer {
    /// As a SYN, established after its burst: no room means refused (`table-full`).
    Syn,
    /// As an established flow: no room means another flow is evicted.
    Established,
}

impl Newcomer {
    fn state(self) -> FlowState {
        match self {
            Newcomer::Syn => FlowState::TcpSynOnly,
            Newcomer::Established => FlowState::TcpEstablished,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The table's capacity (entries, as `flow_table_capacity`).
    pub capacity: usize,
    /// Fill levels, in percent of the capacity, increasing.
    pub levels: Vec<f64>,
    /// Lookups timed at each level.
    pub lookups: usize,
    /// Kinds of newcomer, one table each.
    pub newcomers: Vec<Newcomer>,
    /// Seed of the flows and of the table's hash.
    pub seed: u64,
}

/// The figures of one fill level.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    /// Fill level in percent of the capacity.
    pub percent: f64,
    /// Flows offered so far (all levels up to this one).
    pub offered: usize,
    /// Live entries after this level's inserts.
    pub live: usize,
    /// Newcomers of this step that evicted another flow.
    pub evicted: u64,
    /// Newcomers of this step that were refused.
    pub table_full: u64,
    /// Flows lost so far (evicted or refused), all steps, as a share of those offered.
    pub lost_share: f64,
    /// What the table did in this step (searches, moves).
    pub table: TableStats,
    /// Nanoseconds per newcomer of this step: hash, prefetch, miss, insert.
    pub insert_ns: f64,
    /// Nanoseconds per lookup of a live flow at this level: hash, prefetch, hit.
    pub lookup_ns: f64,
}

/// One kind of newcomer's fill.
#[derive(Clone, Debug, Serialize)]
pub struct Fill {
    /// The kind of newcomer.
    pub newcomer: Newcomer,
    /// The table's slots.
    pub capacity: usize,
    /// One entry per level.
    pub levels: Vec<Level>,
    /// Where the figures break the table's promise.
    pub warnings: Vec<String>,
}

/// Deterministic pseudo-random numbers (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` distinct uniformly random IPv4 TCP flows toward 16 VIPs on port 80.
pub fn random_flows(n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = SplitMix(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next();
        let key = FlowKey::v4(
            ((r >> 32) as u32).to_be_bytes(),
            [192, 0, 2, 1 + (r & 15) as u8],
            (r >> 16) as u16,
            80,
            6,
        );
        if seen.insert(key) {
            out.push(key);
        }
    }
    out
}

/// Runs every kind of newcomer.
pub fn run(settings: &Settings) -> Vec<Fill> {
    let top = settings.levels.iter().copied().fold(0.0, f64::max);
    let flows = random_flows(
        (settings.capacity as f64 * top / 100.0).ceil() as usize,
        settings.seed,
    );
    settings
        .newcomers
        .iter()
        .map(|&n| fill(settings, n, &flows))
        .collect()
}

fn fill(settings: &Settings, newcomer: Newcomer, flows: &[FlowKey]) -> Fill {
    let mut table = FlowTable::with_capacity(settings.capacity, settings.seed ^ 0x7461_626c);
    let mut offered = 0usize;
    let mut lost_total = 0u64;
    let mut levels = Vec::new();
    let mut lookup_rng = SplitMix(settings.seed.rotate_left(17));
    for &percent in &settings.levels {
        let target = ((settings.capacity as f64 * percent / 100.0) as usize).min(flows.len());
        let before = table.stats();
        let (mut evicted, mut table_full) = (0u64, 0u64);
        let mut elapsed = 0f64;
        let mut hashes = [FlowHash::new(&flows[0], 0); BURST];
        for burst in flows[offered..target].chunks(BURST) {
            let start = Instant::now();
            for (h, key) in hashes.iter_mut().zip(burst) {
                *h = table.hash(key);
                table.prefetch(h);
            }
            for (i, h) in hashes.iter().enumerate().take(burst.len()) {
                if table.find(h, NOW).is_some() {
                    continue;
                }
                match table.insert(h, i as u32, newcomer.state(), EXPIRES, NOW) {
                    InsertOutcome::Inserted => {}
                    InsertOutcome::Evicted => evicted += 1,
                    InsertOutcome::Full => table_full += 1,
                }
            }
            elapsed += start.elapsed().as_secs_f64();
            if newcomer == Newcomer::Syn {
                for h in &hashes[..burst.len()] {
                    if let Some(mut e) = table.find(h, NOW) {
                        e.refresh(FlowState::TcpEstablished, EXPIRES);
                    }
                }
            }
        }
        let inserted = target - offered;
        offered = target;
        lost_total += evicted + table_full;
        let after = table.stats();
        let lookup_ns = time_lookups(&mut table, &flows[..offered], settings.lookups, || {
            lookup_rng.next()
        });
        levels.push(Level {
            percent,
            offered,
            live: table.live_entries(NOW),
            evicted,
            table_full,
            lost_share: lost_total as f64 / offered.max(1) as f64,
            table: TableStats {
                searches: after.searches - before.searches,
                failed_searches: after.failed_searches - before.failed_searches,
                searched_buckets: after.searched_buckets - before.searched_buckets,
                moves: after.moves - before.moves,
            },
            insert_ns: elapsed * 1e9 / inserted.max(1) as f64,
            lookup_ns,
        });
    }
    let warnings = check(&levels);
    Fill {
        newcomer,
        capacity: table.capacity(),
        levels,
        warnings,
    }
}

/// Times `n` lookups of random flows among `flows` that the table holds (all of them hits).
fn time_lookups(
    table: &mut FlowTable,
    flows: &[FlowKey],
    n: usize,
    mut random: impl FnMut() -> u64,
) -> f64 {
    // Only flows the table kept (a lost one would be a miss), chosen and copied out before the
    // clock starts: the timed loop reads its keys in order, as a worker reads its RX ring.
    let picks: Vec<FlowKey> =
        std::iter::repeat_with(|| flows[(random() % flows.len() as u64) as usize])
            .filter(|k| table.find(&table.hash(k), NOW).is_some())
            .take(n)
            .collect();
    let mut hashes = [FlowHash::new(&flows[0], 0); BURST];
    let mut hits = 0usize;
    let start = Instant::now();
    for burst in picks.chunks(BURST) {
        for (h, key) in hashes.iter_mut().zip(burst) {
            *h = table.hash(key);
            table.prefetch(h);
        }
        for h in &hashes[..burst.len()] {
            hits += usize::from(table.find(h, NOW).is_some());
        }
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / picks.len().max(1) as f64;
    assert_eq!(hits, picks.len(), "every timed lookup is a hit");
    ns
}

/// Where `levels` break the promise: nothing lost up to 90 %, under 1 % up to 95 %.
pub fn check(levels: &[Level]) -> Vec<String> {
    let mut out = Vec::new();
    for l in levels {
        let lost = l.evicted + l.table_full;
        if l.percent <= 90.0 && lost > 0 {
            out.push(format!(
                "{} % full: {} evicted and {} refused (promised: none up to 90 %)",
                l.percent, l.evicted, l.table_full
            ));
        }
        if l.percent <= 95.0 && l.lost_share >= 0.01 {
            out.push(format!(
                "{} % full: {:.3} % of the flows lost (promised: under 1 % up to 95 %)",
                l.percent,
                100.0 * l.lost_share
            ));
        }
    }
    out
}

/// The fills as text tables.
pub fn render(settings: &Settings, fills: &[Fill]) -> String {
    let mut out = format!(
        "perf table-fill: capacity {} entries, uniformly random IPv4 TCP flows (seed {}), \
         bursts of {BURST} (hash + prefetch, then find + insert), {} timed lookups per level\n",
        settings.capacity, settings.seed, settings.lookups
    );
    for f in fills {
        out.push_str(&format!(
            "\nnewcomers: {} ({} slots)\n",
            match f.newcomer {
                Newcomer::Syn => "SYNs, established after their burst (no room: refused)",
                Newcomer::Established => "established flows (no room: another flow evicted)",
            },
            f.capacity
        ));
        out.push_str(&format!(
            "{:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9}\n",
            "fill",
            "offered",
            "live",
            "evicted",
            "table-full",
            "lost %",
            "searches",
            "failed",
            "moves",
            "bkts/srch",
            "insert ns",
            "lookup ns"
        ));
        for l in &f.levels {
            out.push_str(&format!(
                "{:>5}% {:>9} {:>9} {:>8} {:>10} {:>8.4} {:>9} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.1}\n",
                l.percent,
                l.offered,
                l.live,
                l.evicted,
                l.table_full,
                100.0 * l.lost_share,
                l.table.searches,
                l.table.failed_searches,
                l.table.moves,
                l.table.searched_buckets as f64 / l.table.searches.max(1) as f64,
                l.insert_ns,
                l.lookup_ns
            ));
        }
        for w in &f.warnings {
            out.push_str(&format!("  WARNING: {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_fill_keeps_the_promise_and_adds_up() {
        let settings = Settings {
            capacity: 1 << 14,
            levels: vec![50.0, 90.0, 95.0, 99.0],
            lookups: 1000,
            newcomers: vec![Newcomer::Syn, Newcomer::Established],
            seed: 3,
        };
        let fills = run(&settings);
        assert_eq!(fills.len(), 2);
        for f in &fills {
            assert!(f.warnings.is_empty(), "{:?}", f.warnings);
            let mut lost = 0;
            for l in &f.levels {
                lost += l.evicted + l.table_full;
                if f.newcomer == Newcomer::Established {
                    assert_eq!(l.table_full, 0, "an established newcomer may displace any");
                }
                assert_eq!(l.live + lost as usize, l.offered, "{l:?}");
                assert!(l.insert_ns > 0.0 && l.lookup_ns > 0.0);
            }
            assert_eq!(f.levels[3].offered, (1 << 14) * 99 / 100);
        }
        let text = render(&settings, &fills);
        assert!(text.contains("table-full") && !text.contains("WARNING"));
    }

    #[test]
    fn check_flags_losses_below_the_promise() {
        let level = |percent, evicted, lost_share| Level {
            percent,
            offered: 100,
            live: 100,
            evicted,
            table_full: 0,
            lost_share,
            table: TableStats::default(),
            insert_ns: 1.0,
            lookup_ns: 1.0,
        };
        assert!(check(&[level(90.0, 0, 0.0), level(95.0, 3, 0.009)]).is_empty());
        assert_eq!(check(&[level(90.0, 1, 0.0001)]).len(), 1);
        assert_eq!(check(&[level(95.0, 9, 0.02)]).len(), 1);
        assert!(check(&[level(99.0, 900, 0.2)]).is_empty());
    }
}
