//! `[flow_log]`: one JSON line per new flow, sampled, written off the data path.
//!
//! Absent: no flow logs, and the workers pay one predictable branch per new flow. Present: each
//! worker gets a bounded ring of `queue_depth` records, and a writer thread appends the records
//! to `path`, rotating it by size (`max_bytes`, `keep` old files). What the control plane does
//! with these values is `control::flow_log`; this module owns what an operator may write and
//! whether it is acceptable.
//!
//! Reload: `path`, `sample`, `max_bytes` and `keep` apply on SIGHUP; adding or removing the
//! table, or changing `queue_depth`, needs a restart (the rings are sized when the workers
//! start), and a reload that asks for it is refused with that reason
//! ([`FlowLog::restart_needed`]).

use std::path::Path;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::schema::{MuxConfig, int_or};
use mux_daemon_kit::config::Collector;

/// Default `[flow_log] sample`: every new flow.
pub const DEFAULT_FLOW_LOG_SAMPLE: u32 = 1;
/// Largest accepted `[flow_log] sample`.
pub const MAX_FLOW_LOG_SAMPLE: u32 = 1_000_000;
/// Default `[flow_log] max_bytes` (100 MiB).
pub const DEFAULT_FLOW_LOG_MAX_BYTES: u64 = 100 << 20;
/// Smallest accepted `[flow_log] max_bytes` (a few records).
pub const MIN_FLOW_LOG_MAX_BYTES: u64 = 4096;
/// Largest accepted `[flow_log] max_bytes` (1 TiB).
pub const MAX_FLOW_LOG_MAX_BYTES: u64 = 1 << 40;
/// Default `[flow_log] keep`.
pub const DEFAULT_FLOW_LOG_KEEP: u32 = 5;
/// Largest accepted `[flow_log] keep`.
pub const MAX_FLOW_LOG_KEEP: u32 = 1000;
/// Default `[flow_log] queue_depth` (records per worker).
pub const DEFAULT_FLOW_LOG_QUEUE_DEPTH: usize = 4096;
/// Largest accepted `[flow_log] queue_depth`.
pub const MAX_FLOW_LOG_QUEUE_DEPTH: usize = 1 << 20;

/// `[flow_log]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLog {
    pub(crate) path: Spanned<String>,
    pub(crate) sample: Option<Spanned<i64>>,
    pub(crate) max_bytes: Option<Spanned<i64>>,
    pub(crate) keep: Option<Spanned<i64>>,
    pub(crate) queue_depth: Option<Spanned<i64>>,
}

impl FlowLog {
    /// The file the records are appended to; rotated files get `.1`, `.2`, … appended.
    pub fn path(&self) -> &Path {
        Path::new(self.path.get_ref().as_str())
    }

    /// One new flow in `sample` is logged, chosen by its stable hash (the same flows on every
    /// MUX); default 1 (every flow), range 1..=1000000.
    pub fn sample(&self) -> u32 {
        int_or(&self.sample, DEFAULT_FLOW_LOG_SAMPLE)
    }

    /// Size at which the file is rotated; default 100 MiB, range 4096..=2^40.
    pub fn max_bytes(&self) -> u64 {
        int_or(&self.max_bytes, DEFAULT_FLOW_LOG_MAX_BYTES)
    }

    /// Rotated files kept (`path.1` newest … `path.keep` oldest); default 5, range 0..=1000
    /// (0: the file is truncated when it reaches `max_bytes`).
    pub fn keep(&self) -> u32 {
        int_or(&self.keep, DEFAULT_FLOW_LOG_KEEP)
    }

    /// Records each worker's ring holds before new ones are dropped (and counted); default
    /// 4096, range 1..=1048576.
    pub fn queue_depth(&self) -> usize {
        int_or(&self.queue_depth, DEFAULT_FLOW_LOG_QUEUE_DEPTH)
    }

    /// Why going from `old` to `new` on a reload needs a restart, if it does: the rings exist
    /// only when the table was present at start, and are sized then.
    pub fn restart_needed(old: Option<&FlowLog>, new: Option<&FlowLog>) -> Option<String> {
        match (old, new) {
            (None, None) => None,
            (None, Some(_)) => Some(
                "[flow_log] was added: flow logs can only be turned on at start (the workers' \
                 rings are made then); restart the MUX, or remove [flow_log] to reload the rest"
                    .to_string(),
            ),
            (Some(_), None) => Some(
                "[flow_log] was removed: flow logs can only be turned off by a restart; restart \
                 the MUX, or put [flow_log] back to reload the rest"
                    .to_string(),
            ),
            (Some(a), Some(b)) if a.queue_depth() != b.queue_depth() => Some(format!(
                "[flow_log] queue_depth changed ({} -> {}): the workers' rings are sized at \
                 start; restart the MUX, or keep queue_depth = {} to reload the rest",
                a.queue_depth(),
                b.queue_depth(),
                a.queue_depth()
            )),
            (Some(_), Some(_)) => None,
        }
    }
}

impl MuxConfig {
    /// `[flow_log]`, when present.
    pub fn flow_log(&self) -> Option<&FlowLog> {
        self.flow_log.as_ref().map(|f| f.get_ref())
    }

    pub(crate) fn check_flow_log(&self, c: &mut Collector<'_>) {
        let Some(f) = &self.flow_log else { return };
        let f = f.get_ref();
        let ctx = "[flow_log]";
        let path = f.path.get_ref();
        if !c.is_poisoned(&f.path.span()) && (!path.starts_with('/') || path.ends_with('/')) {
            c.at(
                f.path.span(),
                format!(
                    "{ctx}: path must be an absolute file name (got {path:?}); write the full \
                     path of the log file, e.g. \"/var/log/mux/flows.jsonl\""
                ),
            );
        }
        if let Some(v) = &f.sample {
            let fix = "give N to log one new flow in N (1: every flow)";
            c.check_range(ctx, "sample", v, 1, i64::from(MAX_FLOW_LOG_SAMPLE), fix);
        }
        if let Some(v) = &f.max_bytes {
            let fix = "give the size in bytes at which the file is rotated (default 104857600)";
            c.check_range(
                ctx,
                "max_bytes",
                v,
                MIN_FLOW_LOG_MAX_BYTES as i64,
                MAX_FLOW_LOG_MAX_BYTES as i64,
                fix,
            );
        }
        if let Some(v) = &f.keep {
            let fix = "give how many rotated files to keep (default 5; 0 keeps none)";
            c.check_range(ctx, "keep", v, 0, i64::from(MAX_FLOW_LOG_KEEP), fix);
        }
        if let Some(v) = &f.queue_depth {
            let fix = "give the records each worker may queue for the writer (default 4096)";
            c.check_range(
                ctx,
                "queue_depth",
                v,
                1,
                MAX_FLOW_LOG_QUEUE_DEPTH as i64,
                fix,
            );
        }
    }
}
