//! Fuzzing on stable Rust: a harness for every parser the MUX and the host agent expose to
//! untrusted bytes, and the driver that runs them (`scripts/fuzz`, `docs/fuzzing.md`).
//!
//! What this crate owns:
//! - [`targets`]: one harness per target, `fn(&[u8])`, which panics only on a bug — a panic in
//!   the code under test, or a broken invariant the harness checks (every frame accounted for,
//!   forwarded packets unchanged inside their tunnel, dropped packets untouched, checksums that
//!   still verify after a rewrite, config errors located inside the file);
//! - seeds: the frames of `configs/demo.pcap`, the byte fixtures of `packet/src/wire/`, frames
//!   built like the packet fixtures' ([`seeds`]), the shipped configuration files;
//! - [`driver`]: mutation of the corpus ([`mutate`]), coverage feedback when the build is
//!   instrumented ([`coverage`]), panics caught and their inputs saved, execs/s reported;
//! - the regressions in `fuzz/regressions/<target>/`: every input that ever crashed a target,
//!   replayed with the seeds by `cargo test` (`tests/replay.rs`), so CI exercises them on
//!   stable without the driver.
//!
//! Why an in-repo driver rather than `cargo fuzz`, `cargo afl` or bolero: all three run their
//! coverage-guided engines through nightly flags or an extra C/C++ toolchain (libFuzzer's
//! runtime; AFL++'s compiler plugins, which must match rustc's LLVM), and the stable fallbacks
//! (`cargo fuzz --sanitizer none`, bolero's `cargo test` mode) are either still libFuzzer or
//! random testing without feedback. Here the same coverage signal libFuzzer uses (LLVM's
//! SanitizerCoverage 8-bit counters, enabled by stable `-C passes`/`-C llvm-args`) is read by a
//! few hundred lines of Rust; structured inputs come from `arbitrary`, like `cargo fuzz`'s. What
//! we give up is libFuzzer's comparison tracing (`trace-cmp`); target dictionaries
//! (EtherTypes, protocol numbers, TOML keys) and structure-aware harnesses stand in for it.

#[allow(unsafe_code)]
pub mod coverage;
pub mod driver;
pub mod mutate;
pub mod seeds;
pub mod targets;

pub use targets::{TARGETS, Target, target};
