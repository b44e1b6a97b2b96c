//! The fuzzing loop: seeds → mutate → run → keep what covers something new → report.
//!
//! What this module owns: one target's run within a budget of cases and/or seconds. The loop is
//! libFuzzer's in miniature: the corpus starts as the seeds (plus a saved corpus, if any), each
//! case mutates a random corpus input ([`crate::mutate`]), runs the harness under
//! `catch_unwind`, and keeps the input when it raised a coverage feature never seen before
//! ([`crate::coverage`]). The first panic ends the run: its input is written to the crash
//! directory and the report carries the message, so it can be replayed and turned into a
//! regression file.
//!
//! Without coverage (a build without the sanitizer-coverage flags) the corpus stays the seeds
//! plus one mutated input in a thousand, a random walk that still stacks mutations.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::coverage::Coverage;
use crate::mutate::{self, Rng};
use crate::targets::Target;

/// The corpus stops growing here (a run's memory stays bounded).
const MAX_CORPUS: usize = 8192;

/// When a run ends: whichever of the two limits comes first (at least one is set).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Cases (seed runs included).
    pub cases: Option<u64>,
    /// Wall-clock time.
    pub time: Option<Duration>,
}

/// A panic and the input that caused it.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The panic message and location.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
    /// Where the input was written, if it could be.
    pub saved: Option<PathBuf>,
}

/// What one target's run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Cases run (seeds included).
    pub cases: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Coverage features seen (0 without instrumentation).
    pub features: usize,
    /// Whether the build was instrumented.
    pub coverage: bool,
    /// The first crash, which ended the run.
    pub crash: Option<Crash>,
}

impl Report {
    /// Cases per second.
    pub fn execs_per_second(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

thread_local! {
    /// The last panic's message on this thread, recorded by the quiet hook.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook by one that records the message (and location) instead of printing
/// it: a run may catch many panics' worth of noise otherwise. Idempotent.
pub fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "(non-string panic payload)".to_owned()),
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{location}")));
        }));
    });
}

/// Runs `target` once on `input`; the panic message if it panicked.
pub fn run_once(target: &Target, input: &[u8]) -> Result<(), String> {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    match panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        Ok(()) => Ok(()),
        Err(payload) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(panic)".to_owned())
            })),
    }
}

/// The inputs saved in `dir` (a corpus or regression directory), sorted by name.
pub fn read_dir_inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// FNV-1a of `bytes`: stable across runs and builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A stable file name for an input: the FNV-1a hash of its bytes.
pub fn input_name(input: &[u8]) -> String {
    format!("{:016x}", fnv1a(input))
}

/// Where one run keeps its state.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// The corpus to start from and to add new inputs to (`<dir>/<target>/`), if any.
    pub corpus: Option<PathBuf>,
    /// Where a crashing input is written (`<dir>/<target>/crash-<hash>`).
    pub crashes: PathBuf,
}

/// Fuzzes `target` within `budget`, from `seed`.
pub fn run(target: &'static Target, budget: Budget, seed: u64, dirs: &Dirs) -> Report {
    install_quiet_panic_hook();
    let start = Instant::now();
    // Each target draws its own sequence from the run's seed.
    let mut rng = Rng::new(seed ^ fnv1a(target.name.as_bytes()));
    let mut coverage = Coverage::new();
    let corpus_dir = dirs.corpus.as_ref().map(|d| d.join(target.name));
    let mut corpus: Vec<Vec<u8>> = (target.seeds)()
        .into_iter()
        .map(|mut s| {
            s.truncate(target.max_len);
            s
        })
        .collect();
    if let Some(dir) = &corpus_dir {
        corpus.extend(read_dir_inputs(dir).into_iter().map(|(_, b)| b));
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut report = Report {
        target: target.name,
        cases: 0,
        elapsed: Duration::ZERO,
        corpus: 0,
        features: 0,
        coverage: coverage.available(),
        crash: None,
    };
    let out_of_budget = |cases: u64, start: Instant| {
        budget.cases.is_some_and(|n| cases >= n)
            || budget.time.is_some_and(|t| start.elapsed() >= t)
    };

    // The seeds first: a seed that crashes is a finding too.
    for seed in &corpus {
        report.cases += 1;
        if let Err(message) = run_once(target, seed) {
            report.crash = Some(save_crash(dirs, target, message, seed.clone()));
            break;
        }
        coverage.collect();
    }

    let mut input = Vec::with_capacity(target.max_len);
    while report.crash.is_none()
        && !(report.cases.is_multiple_of(256) && out_of_budget(report.cases, start))
    {
        input.clear();
        input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        mutate::mutate(
            &mut rng,
            &mut input,
            target.max_len,
            &corpus,
            target.dictionary,
        );
        report.cases += 1;
        if let Err(message) = run_once(target, &input) {
            report.crash = Some(save_crash(dirs, target, message, input.clone()));
            break;
        }
        let interesting = if coverage.available() {
            coverage.collect() > 0
        } else {
            rng.one_in(1000)
        };
        if interesting && corpus.len() < MAX_CORPUS {
            if let Some(dir) = &corpus_dir
                && std::fs::create_dir_all(dir).is_ok()
            {
                let _ = std::fs::write(dir.join(input_name(&input)), &input);
            }
            corpus.push(input.clone());
        }
    }
    report.elapsed = start.elapsed();
    report.corpus = corpus.len();
    report.features = coverage.features();
    report
}

fn save_crash(dirs: &Dirs, target: &Target, message: String, input: Vec<u8>) -> Crash {
    let dir = dirs.crashes.join(target.name);
    let path = dir.join(format!("crash-{}", input_name(&input)));
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, &input))
        .ok()
        .map(|()| path);
    Crash {
        message,
        input,
        saved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crashes_on_magic(data: &[u8]) {
        assert!(!data.starts_with(b"MUX!"), "found the magic");
    }

    const MAGIC: Target = Target {
        name: "test-magic",
        about: "panics on inputs starting with MUX!",
        run: crashes_on_magic,
        seeds: || vec![b"MUX?".to_vec()],
        max_len: 16,
        dictionary: &[b"!"],
    };

    #[test]
    fn a_crash_is_found_saved_and_reported() {
        let dir = std::env::temp_dir().join(format!("mux-fuzz-driver-{}", std::process::id()));
        let dirs = Dirs {
            corpus: None,
            crashes: dir.clone(),
        };
        let budget = Budget {
            cases: Some(2_000_000),
            time: Some(Duration::from_secs(60)),
        };
        let report = run(&MAGIC, budget, 1, &dirs);
        let crash = report.crash.expect("the magic is one mutation away");
        assert!(crash.input.starts_with(b"MUX!"));
        assert!(
            crash.message.contains("found the magic"),
            "{}",
            crash.message
        );
        let saved = crash.saved.expect("written");
        assert_eq!(std::fs::read(&saved).unwrap(), crash.input);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(run_once(&MAGIC, b"MUX?"), Ok(()));
    }

    #[test]
    fn a_budget_of_cases_is_kept() {
        let budget = Budget {
            cases: Some(1000),
            time: None,
        };
        let dirs = Dirs {
            corpus: None,
            crashes: std::env::temp_dir(),
        };
        let quiet = Target {
            run: |_| {},
            ..MAGIC
        };
        let report = run(Box::leak(Box::new(quiet)), budget, 1, &dirs);
        assert!(report.crash.is_none());
        assert!(
            (1000..1000 + 256).contains(&report.cases),
            "{}",
            report.cases
        );
    }
}
