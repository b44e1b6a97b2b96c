//! The control plane's half of the flow logs: the writer thread that drains the workers' rings
//! into a JSON-lines file, rotated by size.
//!
//! The workers push fixed-size [`FlowRecord`]s into their own bounded rings
//! (`dataplane::flow_log`); this module owns everything after that: the thread
//! (`mux-flow-log`) that pops every ring every [`DRAIN_INTERVAL`], turns each record into one
//! JSON line ([`encode`]: wall-clock time, 5-tuple, VIP name, backend, MUX name, worker,
//! config generation, second chance), and appends a round's lines with one `write(2)` to the
//! file (`LogFile`), rotating it before a line would take it past `max_bytes`:
//! `flows.jsonl` → `flows.jsonl.1` → … → `flows.jsonl.<keep>` (the oldest is overwritten;
//! `keep = 0` removes the full file).
//!
//! Lifecycle: the file is opened before the workers start (a path the MUX cannot write refuses
//! the start with the reason); SIGHUP writes what is queued and reopens the file, with the
//! reloaded `[flow_log]` if the reload was accepted ([`FlowLogWriter::reopen`]: external
//! rotation such as logrotate's `create` mode works); on SIGTERM, once the workers have
//! stopped, [`FlowLogWriter::finish`] drains every ring completely, writes, `fdatasync`s and
//! ends the thread, so every record a worker queued is on disk when the process exits.
//!
//! Accounting, each an atomic in [`FlowLogStats`]: `records` written; `lost` (records a failed
//! write or open could not place: `mux_flow_log_dropped_total{reason="write_error"}`, next to
//! the workers' `queue_full`); `write_errors` (failed opens, writes and renames). A failed
//! write closes the file; the next round opens it again. So for sampled new flows:
//! `queued = records + lost + (still in a ring)`, and `sampled = queued + queue_full`.
//!
//! Durability: lines reach the kernel every round (at most [`DRAIN_INTERVAL`] after the burst
//! that made them); a crash of the MUX loses at most what the rings held, a crash of the host
//! whatever the page cache had not written back.
//!
//! Rejected: a `BufWriter` flushed by size (a quiet MUX would hold records for minutes);
//! `fsync` per round (a disk flush every 20 ms for a log); formatting with `format!` by hand
//! (serde_json escapes the VIP name and keeps the field list in one struct).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use mux_packet::flow_key::unmap;

use crate::config::FlowLog;
use crate::control::state::DaemonState;
use crate::dataplane::flow_log::{FlowLogSource, FlowRecord};
use crate::dataplane::snapshot::Snapshot;

/// How often the writer drains the rings: with the default 4096-record rings, a worker may
/// log about 200 000 new flows per second before its ring overflows.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// What the writer needs of `[flow_log]` (the sample rate travels in the snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogSettings {
    /// The file.
    pub path: PathBuf,
    /// Rotation size.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// One new flow in `sample` is logged (for `/v1/status`).
    pub sample: u32,
}

impl From<&FlowLog> for FlowLogSettings {
    fn from(f: &FlowLog) -> Self {
        FlowLogSettings {
            path: f.path().to_path_buf(),
            max_bytes: f.max_bytes(),
            keep: f.keep(),
            sample: f.sample(),
        }
    }
}

/// What the writer has done, for `/metrics` and `/v1/status`.
#[derive(Debug)]
pub struct FlowLogStats {
    /// Records written to the file.
    pub records: AtomicU64,
    /// Records lost because a write (or the open before it) failed.
    pub lost: AtomicU64,
    /// Failed opens, writes and renames.
    pub write_errors: AtomicU64,
    /// Size rotations done.
    pub rotations: AtomicU64,
    /// Reopens done (SIGHUP).
    pub reopens: AtomicU64,
    /// The settings in force.
    pub settings: Mutex<FlowLogSettings>,
}

impl FlowLogStats {
    fn new(settings: FlowLogSettings) -> Self {
        FlowLogStats {
            records: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            settings: Mutex::new(settings),
        }
    }

    /// The `flow_log` part of `/v1/status` (`queue_full`: the workers' count, summed).
    pub fn json(&self, queue_full: u64) -> serde_json::Value {
        let settings = self.settings.lock().map(|s| s.clone()).ok();
        serde_json::json!({
            "path": settings.as_ref().map(|s| s.path.display().to_string()),
            "sample": settings.as_ref().map(|s| s.sample),
            "max_bytes": settings.as_ref().map(|s| s.max_bytes),
            "keep": settings.as_ref().map(|s| s.keep),
            "records": self.records.load(Ordering::Relaxed),
            "dropped_queue_full": queue_full,
            "dropped_write_error": self.lost.load(Ordering::Relaxed),
            "write_errors": self.write_errors.load(Ordering::Relaxed),
            "rotations": self.rotations.load(Ordering::Relaxed),
            "reopens": self.reopens.load(Ordering::Relaxed),
        })
    }
}

/// Why the flow log could not start.
#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    /// The file could not be opened for appending.
    #[error(
        "cannot open the flow log {path}: {source}; check [flow_log] path (its directory must \
         exist and be writable by the MUX)"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the flow-log writer thread: {0}")]
    Thread(io::Error),
}

/// Commands from the control thread to the writer.
#[derive(Debug)]
enum Command {
    /// Write what is queued, then reopen the file with these settings (SIGHUP).
    Reopen(FlowLogSettings),
    /// Drain every ring completely, write, sync, and end (the workers have stopped).
    Finish,
}

/// The running writer thread.
#[derive(Debug)]
pub struct FlowLogWriter {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<FlowLogStats>,
}

impl FlowLogWriter {
    /// Opens the file (an error refuses the start) and starts the thread draining `sources`
    /// (one per worker, in worker order).
    pub fn start(
        settings: FlowLogSettings,
        sources: Vec<FlowLogSource>,
        state: Arc<DaemonState>,
    ) -> Result<FlowLogWriter, FlowLogError> {
        let file = LogFile::open(&settings).map_err(|source| FlowLogError::Open {
            path: settings.path.clone(),
            source,
        })?;
        let stats = Arc::new(FlowLogStats::new(settings));
        let (commands, inbox) = mpsc::channel();
        let origin_unix_us = SystemTime::now()
            .checked_sub(state.started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as u64);
        let mut drain = Drainer {
            sources,
            file,
            stats: Arc::clone(&stats),
            context: LineContext {
                mux: state.name.clone(),
                origin_unix_us,
            },
            state,
            batch: Vec::new(),
            batch_records: 0,
            line: Vec::new(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("mux-flow-log".into())
            .spawn(move || drain.run(&inbox))
            .map_err(FlowLogError::Thread)?;
        Ok(FlowLogWriter {
            commands,
            thread: Some(thread),
            stats,
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> Arc<FlowLogStats> {
        Arc::clone(&self.stats)
    }

    /// SIGHUP: write what is queued and reopen the file with `settings`.
    pub fn reopen(&self, settings: FlowLogSettings) {
        let _ = self.commands.send(Command::Reopen(settings));
    }

    /// Drains every ring completely, writes and syncs, and waits for the thread to end. Call
    /// once the workers have stopped, so the rings receive nothing more.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(Command::Finish);
            let _ = thread.join();
        }
    }
}

impl Drop for FlowLogWriter {
    /// A start that failed after the writer began (a port that did not open) still ends it.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread's state.
struct Drainer {
    sources: Vec<FlowLogSource>,
    file: LogFile,
    stats: Arc<FlowLogStats>,
    context: LineContext,
    state: Arc<DaemonState>,
    /// The round's lines, written with one call.
    batch: Vec<u8>,
    batch_records: u64,
    line: Vec<u8>,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl Drainer {
    fn run(&mut self, inbox: &mpsc::Receiver<Command>) {
        loop {
            match inbox.recv_timeout(DRAIN_INTERVAL) {
                Err(RecvTimeoutError::Timeout) => self.round(),
                Ok(Command::Reopen(settings)) => {
                    self.round();
                    if let Err(e) = self.file.reopen(&settings) {
                        self.error("reopening", &e);
                    } else {
                        tracing::info!(path = %settings.path.display(), "flow log reopened");
                    }
                    if let Ok(mut s) = self.stats.settings.lock() {
                        *s = settings;
                    }
                    self.stats.reopens.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => {
                    // The workers have stopped: one round empties every ring.
                    self.round();
                    if let Err(e) = self.file.sync() {
                        self.error("syncing", &e);
                    }
                    return;
                }
            }
        }
    }

    /// Pops every ring empty and writes the lines, rotating where a line would not fit.
    fn round(&mut self) {
        let snap = self.state.snapshot.load();
        for worker in 0..self.sources.len() {
            while let Ok(record) = self.sources[worker].pop() {
                self.line.clear();
                encode(&record, worker, &self.context, &snap, &mut self.line);
                if self.file.would_overflow(self.batch.len() + self.line.len()) {
                    self.write_batch();
                    match self.file.rotate() {
                        Ok(()) => {
                            self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => self.error("rotating", &e),
                    }
                }
                self.batch.extend_from_slice(&self.line);
                self.batch_records += 1;
            }
        }
        self.write_batch();
    }

    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let n = std::mem::take(&mut self.batch_records);
        match self.file.append(&self.batch) {
            Ok(()) => {
                self.stats.records.fetch_add(n, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!(path = %self.file.path.display(), "flow log writable again");
                }
            }
            Err(e) => {
                self.stats.lost.fetch_add(n, Ordering::Relaxed);
                self.error("writing", &e);
            }
        }
        self.batch.clear();
    }

    fn error(&mut self, what: &str, e: &io::Error) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                path = %self.file.path.display(),
                error = %e,
                "flow log: {what} failed; records are counted as lost until it works again"
            );
        }
    }
}

/// The flow-log file: appended to, rotated by size.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// `None` after a failure: the next append opens it again.
    file: Option<File>,
    size: u64,
}

impl LogFile {
    fn open(settings: &FlowLogSettings) -> io::Result<LogFile> {
        let mut f = LogFile {
            path: settings.path.clone(),
            max_bytes: settings.max_bytes,
            keep: settings.keep,
            file: None,
            size: 0,
        };
        f.open_file()?;
        Ok(f)
    }

    fn open_file(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Closes the file and opens `settings.path` (the same path after an external rotation).
    fn reopen(&mut self, settings: &FlowLogSettings) -> io::Result<()> {
        self.file = None;
        self.path = settings.path.clone();
        self.max_bytes = settings.max_bytes;
        self.keep = settings.keep;
        self.open_file()
    }

    /// Whether `pending` more bytes would take a non-empty file past `max_bytes` (a line is
    /// never split; a file holds at least one).
    fn would_overflow(&self, pending: usize) -> bool {
        let pending = pending as u64;
        self.size > 0 && self.size + pending > self.max_bytes
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.open_file()?;
        }
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(bytes) {
            self.file = None;
            return Err(e);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `path.<keep-1>` → `path.<keep>`, …, `path` → `path.1`, then a new `path`; with
    /// `keep = 0` the full file is removed.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            ignore_missing(std::fs::remove_file(&self.path))?;
        } else {
            for k in (1..self.keep).rev() {
                ignore_missing(std::fs::rename(
                    rotated(&self.path, k),
                    rotated(&self.path, k + 1),
                ))?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.open_file()
    }

    fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// `path.k`.
pub fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What every line shares.
#[derive(Clone, Debug)]
pub struct LineContext {
    /// `[mux] name`.
    pub mux: String,
    /// Wall-clock time of the flow clock's origin, in microseconds since the Unix epoch.
    pub origin_unix_us: u64,
}

/// One line of the flow log, in field order.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    unix_us: u64,
    mux: &'a str,
    worker: usize,
    generation: u64,
    protocol: &'static str,
    src: std::net::IpAddr,
    src_port: u16,
    dst: std::net::IpAddr,
    dst_port: u16,
    vip: Option<&'a str>,
    backend: std::net::IpAddr,
    second_chance: bool,
    alternative: Option<std::net::IpAddr>,
}

/// Appends `record`'s JSON line (with its `\n`) to `out`. The VIP's name comes from `snap`
/// (by its stable id; `null` if a reload has removed the VIP since).
pub fn encode(
    record: &FlowRecord,
    worker: usize,
    context: &LineContext,
    snap: &Snapshot,
    out: &mut Vec<u8>,
) {
    let unix_us = context.origin_unix_us + record.micros;
    let key = &record.key;
    let line = Line {
        time: rfc3339_micros(unix_us),
        unix_us,
        mux: &context.mux,
        worker,
        generation: record.generation,
        protocol: match key.protocol {
            6 => "tcp",
            17 => "udp",
            _ => "other",
        },
        src: unmap(key.src),
        src_port: key.src_port,
        dst: unmap(key.dst),
        dst_port: key.dst_port,
        vip: snap
            .parts
            .vips
            .iter()
            .find(|v| v.id == record.vip_id)
            .map(|v| v.name.as_str()),
        backend: unmap(record.backend),
        second_chance: record.alternative.is_some(),
        alternative: record.alternative.map(unmap),
    };
    // Writing into a Vec cannot fail, and every field serialises.
    serde_json::to_writer(&mut *out, &line).expect("a flow-log line serialises");
    out.push(b'\n');
}

/// `2026-12-05T18:40:01.123456Z` for microseconds since the Unix epoch.
pub fn rfc3339_micros(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_us % 1_000_000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::control::compile::{self, CompileOptions};
    use crate::control::registry::Registry;
    use crate::dataplane::flow_log::FlowLogSink;
    use mux_packet::flow_key::{FlowKey, canonical_addr};

    const CONFIG: &str = r#"
[mux]
name = "mux-a"
[dataplane]
io = "mem"
workers = 2
[tunnel]
source_v4 = "10.0.0.11"
[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.1"
"#;

    fn snapshot() -> Snapshot {
        let cfg = crate::config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        compile::compile(
            &cfg,
            &mut Registry::default(),
            3,
            &CompileOptions::default(),
        )
        .unwrap()
    }

    fn record(src_port: u16, micros: u64, alternative: Option<&str>) -> FlowRecord {
        let ip = |s: &str| canonical_addr(s.parse().unwrap());
        FlowRecord {
            micros,
            generation: 3,
            key: FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], src_port, 80, 6),
            vip_id: 0,
            backend: ip("10.1.0.1"),
            alternative: alternative.map(ip),
        }
    }

    /// A scratch directory of this test's own, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("mux-flowlog-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_record_becomes_one_json_line_with_every_field() {
        let snap = snapshot();
        let context = LineContext {
            mux: "mux-a".into(),
            // 2026-12-05T18:00:00Z
            origin_unix_us: 1_796_493_600_000_000,
        };
        let mut out = Vec::new();
        encode(
            &record(40000, 1_500_000, None),
            1,
            &context,
            &snap,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-12-05T18:00:01.500000Z",
                "unix_us": 1_796_493_601_500_000u64,
                "mux": "mux-a",
                "worker": 1,
                "generation": 3,
                "protocol": "tcp",
                "src": "198.51.100.7",
                "src_port": 40000,
                "dst": "192.0.2.10",
                "dst_port": 80,
                "vip": "web",
                "backend": "10.1.0.1",
                "second_chance": false,
                "alternative": null,
            })
        );
        // A second-chance entry names its alternative; a VIP gone since is null.
        let mut out = Vec::new();
        let mut r = record(40001, 0, Some("fd00::2"));
        r.vip_id = 99;
        encode(&r, 0, &context, &snap, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["second_chance"], true);
        assert_eq!(v["alternative"], "fd00::2");
        assert_eq!(v["vip"], serde_json::Value::Null);
    }

    #[test]
    fn rfc3339_dates_are_civil_dates() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_micros(4_107_542_399_999_999),
            "2100-02-28T23:59:59.999999Z"
        );
    }

    fn settings(dir: &Path, max_bytes: u64, keep: u32) -> FlowLogSettings {
        FlowLogSettings {
            path: dir.join("flows.jsonl"),
            max_bytes,
            keep,
            sample: 1,
        }
    }

    fn line(n: usize) -> Vec<u8> {
        let mut l = format!("{n:09}").into_bytes();
        l.push(b'\n');
        l
    }

    #[test]
    fn rotation_keeps_keep_files_newest_first_and_never_splits_a_line() {
        let dir = Scratch::new("rotate");
        let s = settings(&dir.0, 25, 2);
        let mut f = LogFile::open(&s).unwrap();
        // Ten-byte lines, at most two per 25-byte file.
        for n in 0..7 {
            if f.would_overflow(10) {
                f.rotate().unwrap();
            }
            f.append(&line(n)).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(s.path.clone()), "000000006\n");
        assert_eq!(read(rotated(&s.path, 1)), "000000004\n000000005\n");
        assert_eq!(read(rotated(&s.path, 2)), "000000002\n000000003\n");
        assert!(!rotated(&s.path, 3).exists(), "only keep = 2 old files");
        // keep = 0: the full file is removed, nothing old is kept.
        let s = settings(&dir.0, 25, 0);
        let mut f = LogFile::open(&s).unwrap();
        f.rotate().unwrap();
        assert_eq!(read(s.path.clone()), "");
        // A line longer than max_bytes still goes into an empty file, whole.
        let mut f = LogFile::open(&settings(&dir.0, 4, 0)).unwrap();
        assert!(!f.would_overflow(10));
        f.append(&line(9)).unwrap();
        assert!(f.would_overflow(1));
    }

    #[test]
    fn the_writer_drains_every_ring_reopens_on_request_and_finishes_completely() {
        let dir = Scratch::new("writer");
        let s = settings(&dir.0, 1 << 20, 3);
        let state = Arc::new(DaemonState::new(
            "mux-a".into(),
            "t.toml".into(),
            snapshot(),
            2,
            Instant::now(),
        ));
        let (mut sinks, sources): (Vec<_>, Vec<_>) =
            (0..2).map(|_| FlowLogSink::ring(1000)).unzip();
        let writer = FlowLogWriter::start(s.clone(), sources, state).unwrap();
        let stats = writer.stats();
        for port in 0..300 {
            assert!(sinks[usize::from(port % 2)].push(record(port, 0, None)));
        }
        // Drained within a few rounds.
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.records.load(Ordering::Relaxed) < 300 {
            assert!(Instant::now() < deadline, "not drained");
            std::thread::sleep(Duration::from_millis(5));
        }
        // External rotation: the file is moved away; a reopen starts a new one.
        let moved = dir.0.join("moved.jsonl");
        std::fs::rename(&s.path, &moved).unwrap();
        writer.reopen(s.clone());
        while stats.reopens.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "not reopened");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Queued after the reopen, then finished at once: all of it is on disk.
        for port in 300..1300 {
            assert!(sinks[usize::from(port % 2)].push(record(port, 0, None)));
        }
        writer.finish();
        let lines = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(lines(&moved).len(), 300);
        let after = lines(&s.path);
        assert_eq!(after.len(), 1000);
        let mut ports: Vec<u64> = after
            .iter()
            .map(|v| v["src_port"].as_u64().unwrap())
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, (300..1300).collect::<Vec<u64>>());
        assert_eq!(stats.records.load(Ordering::Relaxed), 1300);
        assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_file_that_cannot_be_opened_refuses_the_start_with_its_path() {
        let dir = Scratch::new("refuse");
        let s = settings(&dir.0.join("missing-dir"), 1 << 20, 1);
        let state = Arc::new(DaemonState::new(
            "mux-a".into(),
            "t.toml".into(),
            snapshot(),
            1,
            Instant::now(),
        ));
        let err = FlowLogWriter::start(s, Vec::new(), state).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("missing-dir/flows.jsonl") && text.contains("[flow_log] path"),
            "{text}"
        );
    }
}
