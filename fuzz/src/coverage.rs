//! Coverage feedback on stable Rust: LLVM's SanitizerCoverage inline 8-bit counters, read by
//! the driver itself.
//!
//! What this module owns: the one `unsafe` edge of the fuzzing crate. `scripts/fuzz` builds with
//! `-C passes=sancov-module -C llvm-args=-sanitizer-coverage-inline-8bit-counters` (stable
//! `-C` options, unlike the `-Z sanitizer` flags `cargo fuzz` uses by default); LLVM then gives
//! every instrumented module a byte per control-flow edge, increments it when the edge runs,
//! and calls [`__sanitizer_cov_8bit_counters_init`] from a constructor, before `main`, with the
//! module's counter range. libFuzzer normally defines that function; here we do, and
//! [`Coverage`] turns the counters into features the way libFuzzer does: one feature per
//! (edge, hit-count bucket), buckets 1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+.
//!
//! Without the instrumentation (a plain `cargo build`, `cargo test`), nothing registers and
//! [`Coverage::available`] is false: the driver still runs every target, mutating seeds blind.
//!
//! Invariants: counters are only read and cleared on the fuzzing thread, between two runs of a
//! target, when no instrumented code runs on it; the driver runs one target per process at a
//! time (the counters are process-wide), so a parallel run forks processes, not threads.

use std::sync::Mutex;

/// The counter ranges registered by the instrumented modules: (start address, length).
static REGIONS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Called by each instrumented module's constructor (before `main`, single-threaded) with its
/// counters `start..stop`.
///
/// The symbol name and signature are SanitizerCoverage's ABI.
#[unsafe(no_mangle)]
pub extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    let (start, stop) = (start as usize, stop as usize);
    if stop > start {
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        if !regions.iter().any(|&(s, _)| s == start) {
            regions.push((start, stop - start));
        }
    }
}

/// The coverage seen so far by one target's run, over the process's counters.
#[derive(Debug)]
pub struct Coverage {
    regions: Vec<(usize, usize)>,
    /// One bit per (counter, bucket): 8 bits per counter.
    seen: Vec<u64>,
    features: usize,
}

impl Coverage {
    /// Starts with nothing seen and every counter cleared.
    pub fn new() -> Coverage {
        let regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let counters: usize = regions.iter().map(|&(_, len)| len).sum();
        let mut coverage = Coverage {
            regions,
            seen: vec![0; counters.div_ceil(8)],
            features: 0,
        };
        coverage.clear();
        coverage
    }

    /// Whether the build is instrumented (any module registered counters).
    pub fn available(&self) -> bool {
        !self.regions.is_empty()
    }

    /// Distinct features seen so far.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Instrumented edges in the process.
    pub fn edges(&self) -> usize {
        self.regions.iter().map(|&(_, len)| len).sum()
    }

    /// Clears every counter (before the first run).
    pub fn clear(&mut self) {
        for &(start, len) in &self.regions {
            // SAFETY: `start..start + len` is a counter array LLVM allocated for the life of the
            // process and registered through `__sanitizer_cov_8bit_counters_init`; only this
            // thread runs instrumented code now (module invariant), so nothing writes it
            // concurrently.
            unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
        }
    }

    /// Folds the counters of the run that just ended into the features seen, clears them, and
    /// returns how many features were new.
    pub fn collect(&mut self) -> usize {
        let mut new = 0;
        let mut base = 0;
        for &(start, len) in &self.regions {
            // SAFETY: as in `clear`: a live, registered counter array that no other thread
            // writes while the driver collects.
            let counters = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
            let mut i = 0;
            while i < len {
                // Skip untouched counters eight at a time: most edges do not run.
                if i + 8 <= len && counters[i..i + 8] == [0; 8] {
                    i += 8;
                    continue;
                }
                let hits = counters[i];
                if hits != 0 {
                    counters[i] = 0;
                    let feature = (base + i) * 8 + bucket(hits);
                    let (word, bit) = (feature / 64, 1u64 << (feature % 64));
                    if self.seen[word] & bit == 0 {
                        self.seen[word] |= bit;
                        new += 1;
                    }
                }
                i += 1;
            }
            base += len;
        }
        self.features += new;
        new
    }
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage::new()
    }
}

/// libFuzzer's hit-count buckets: 1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+.
fn bucket(hits: u8) -> usize {
    match hits {
        0 | 1 => 0,
        2 => 1,
        3 => 2,
        4..=7 => 3,
        8..=15 => 4,
        16..=31 => 5,
        32..=127 => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn hit_counts_fall_in_libfuzzers_buckets() {
        let buckets: Vec<usize> = [1u8, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255]
            .iter()
            .map(|&h| bucket(h))
            .collect();
        assert_eq!(buckets, [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
    }
}
