//! What a test does when this machine lacks something it needs (root, the `ip` tool, a kernel
//! with AF_XDP, DPDK): the one rule every test in the workspace follows.
//!
//! - On a developer's machine the test is **skipped**: [`skip_or_fail`] prints
//!   `SKIPPED <test>: <reason>` and the test returns early (it reports `ok`, as cargo has no
//!   "skipped" outcome for a test that already started).
//! - Under `CI=true` (or `CI=1`) the same call **fails** the test with the reason: the CI
//!   machine is set up to run everything (`.ci/run` installs what the tests need and runs as
//!   root), so a missing prerequisite there is a broken gate, not a detail.
//! - When `MUX_TEST_SKIP_LOG` names a file, every skip is also appended to it as one
//!   `test<TAB>reason` line; `scripts/test` sets it and prints the list at the end, because
//!   cargo hides the output of tests that pass.
//!
//! Rejected alternatives: `#[ignore]` on every test that needs root (a developer running
//! `sudo cargo test` would then run none of them unless they also pass `--ignored`, and the
//! test itself could not say *which* prerequisite is missing); a panic on every missing
//! prerequisite everywhere (`cargo test` without root would always be red).

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "MUX_TEST_SKIP_LOG";

/// Whether this run is CI's (`CI` set to `true`, `1` or `yes`, in any case), where no test may
/// skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// `test` cannot run here because of `reason` (which should say how to provide what is
/// missing). Under CI this panics; otherwise it prints and logs the skip and returns, and the
/// caller returns early. Messages name the test as `binary::test` when libtest runs it on its
/// own thread, `test` otherwise.
pub fn skip_or_fail(test: &str, reason: &str) {
    let log = std::env::var_os(SKIP_LOG_ENV).map(std::path::PathBuf::from);
    skip_or_fail_with(in_ci(), log.as_deref(), &test_id(test), reason);
}

/// `binary::test_path` for the running test: libtest names each test's thread after the test,
/// and the binary is `<name>-<hash>`. Falls back to `label` (e.g. with `--test-threads=1`,
/// where tests run on the main thread).
fn test_id(label: &str) -> String {
    let thread = std::thread::current();
    let Some(name) = thread.name().filter(|n| *n != "main") else {
        return label.to_owned();
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, _hash)) => name.to_owned(),
            None => stem,
        });
    match binary {
        Some(binary) => format!("{binary}::{name}"),
        None => name.to_owned(),
    }
}

/// [`skip_or_fail`] with the environment passed in.
fn skip_or_fail_with(ci: bool, log: Option<&Path>, test: &str, reason: &str) {
    if ci {
        panic!(
            "{test}: {reason}. CI=true: no test may be skipped; give this machine what the test \
             needs (.ci/run installs the packages and runs as root)"
        );
    }
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = log {
        // One short write per line with O_APPEND: lines from parallel tests do not interleave.
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Whether the effective user is root (read from `/proc/self/status`, no `unsafe`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// True when running as root; otherwise skips (or fails under CI) saying `what` needs root.
/// `what` completes "needs root for …", e.g. "network namespaces, veth and raw sockets".
pub fn require_root(test: &str, what: &str) -> bool {
    if is_root() {
        return true;
    }
    skip_or_fail(
        test,
        &format!("needs root for {what}; run the tests with sudo -E (or as root)"),
    );
    false
}

/// True when `tool` runs (`tool version_arg` starts); otherwise skips (or fails under CI)
/// naming the Debian package that provides it.
pub fn require_tool(test: &str, tool: &str, version_arg: &str, package: &str) -> bool {
    if Command::new(tool).arg(version_arg).output().is_ok() {
        return true;
    }
    skip_or_fail(
        test,
        &format!("the `{tool}` tool is not installed; apt-get install {package}"),
    );
    false
}

/// True when this process can build network-namespace labs: root and the `ip` tool.
pub fn require_netns_lab(test: &str) -> bool {
    require_root(test, "network namespaces, veth pairs and raw sockets")
        && require_tool(test, "ip", "-V", "iproute2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_ci_a_skip_is_logged_one_line_each() {
        let path = std::env::temp_dir().join(format!("mux-prereq-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        skip_or_fail_with(false, Some(&path), "a", "no\tthing\nhere");
        skip_or_fail_with(false, Some(&path), "b", "again");
        skip_or_fail_with(false, None, "c", "not logged");
        let log = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(log, "a\tno thing here\nb\tagain\n");
    }

    #[test]
    fn under_ci_a_skip_fails_with_the_reason() {
        let panic = std::panic::catch_unwind(|| skip_or_fail_with(true, None, "t", "needs X"))
            .expect_err("CI must fail a skip");
        let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.starts_with("t: needs X. CI=true: no test may be skipped"),
            "{text}"
        );
    }
}
