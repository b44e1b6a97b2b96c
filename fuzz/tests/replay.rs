//! The fuzzing corpus as ordinary tests, on stable, in `cargo test` (STYLE 12): every target
//! runs its seeds and every input in `fuzz/regressions/<target>/` (inputs that once crashed
//! it), then a short deterministic fuzzing run. A regression that comes back fails here, in
//! CI's test command, without the fuzz driver.

use std::path::Path;
use std::time::Duration;

use mux_fuzz::driver::{self, Budget, Dirs};
use mux_fuzz::{TARGETS, seeds};

#[test]
fn every_seed_source_still_yields_seeds() {
    assert!(seeds::demo_frames().len() >= 10, "configs/demo.pcap");
    assert!(
        seeds::wire_fixtures().len() >= 10,
        "packet/src/wire byte fixtures"
    );
    assert!(
        seeds::mux_configs().len() >= 4,
        "configs/ and lab/ MUX files"
    );
    assert!(
        seeds::hostagent_configs().len() >= 2,
        "configs/ and lab/ agent files"
    );
}

#[test]
fn seeds_and_regressions_pass_every_target() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in TARGETS {
        let mut inputs: Vec<(String, Vec<u8>)> = (target.seeds)()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("seed {i}"), s))
            .collect();
        for (path, bytes) in driver::read_dir_inputs(&regressions.join(target.name)) {
            inputs.push((path.display().to_string(), bytes));
        }
        for (name, mut input) in inputs {
            input.truncate(target.max_len);
            replayed += 1;
            if let Err(message) = driver::run_once(target, &input) {
                failures.push(format!("{} {name}: {message}", target.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed > 100, "only {replayed} inputs replayed");
}

#[test]
fn regression_directories_name_existing_targets() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for entry in std::fs::read_dir(&regressions)
        .expect("fuzz/regressions exists")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            mux_fuzz::target(&name).is_some(),
            "fuzz/regressions/{name} is not a target: its inputs would never be replayed"
        );
    }
}

#[test]
fn a_short_fuzzing_run_finds_nothing() {
    let dirs = Dirs {
        corpus: None,
        crashes: std::env::temp_dir().join(format!("mux-fuzz-test-{}", std::process::id())),
    };
    // Two thousand cases per target (seeds included): debug builds are slow, the long runs are
    // `scripts/fuzz`'s job; this keeps every harness and its invariants exercised by CI's tests.
    let budget = Budget {
        cases: Some(2000),
        time: Some(Duration::from_secs(10)),
    };
    for target in TARGETS {
        let report = driver::run(target, budget, 7, &dirs);
        if let Some(crash) = report.crash {
            panic!(
                "{}: {} (input saved to {:?})",
                target.name, crash.message, crash.saved
            );
        }
        assert!(report.cases >= 1, "{}", target.name);
    }
}
