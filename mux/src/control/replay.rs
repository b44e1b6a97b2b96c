//! `mux replay`: the real pipeline over a capture, offline.
//!
//! Reads an Ethernet pcap, runs every frame through one worker's pipeline (the same code the
//! daemon runs, over the in-memory port), and writes what the MUX would have transmitted —
//! encapsulated frames and generated ICMP errors — to an output pcap in order, each with the
//! timestamp of the frame that caused it. Frames handed to the kernel can be written to a
//! second capture. The worker's clock follows the capture's timestamps, so flow timeouts
//! behave as they would have live; it starts at the capture's first packet, so a backend's
//! `drain_deadline` cuts its flows where it would have live. This is how an operator checks a config against real
//! traffic before deploying it (GLB's director has the same mode).
//!
//! Generations: `--reload SECONDS=FILE` makes FILE the next generation at that offset into the
//! capture (between two bursts, as a SIGHUP would: flow entries and the second chance's
//! previous tables carry over), so one replay shows what a MUX that lived through a change
//! sends. `--history FILE` starts from a second-chance history file (what `[dataplane]
//! second_chance_state` holds: a MUX that ran other generations before this capture, or a
//! peer's file) and `--save-history FILE` writes the history the replay ends with; the
//! replay never touches the file its config names. Two replays of two captures through
//! differently started MUXes show what each would have sent for the same flows.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};

use mux_ports::mem::{Capture, MemPort};

use crate::control::compile::{self, CompileOptions, FlowClock};
use crate::control::registry::Registry;
use crate::control::report;
use crate::control::table_history::{self, HistoryFileError, TableHistory};
use crate::dataplane::clock::BurstTime;
use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::pipeline::Pipeline;
use crate::dataplane::verdict::Verdict;
use crate::dataplane::worker::Worker;

/// Flow-table seed for replay: fixed, so a replay is reproducible.
const REPLAY_FLOW_SEED: u64 = 0x6d75_785f_7265_706c;

/// Errors of `mux replay`.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration was refused.
    #[error("{0}")]
    Config(#[from] mux_daemon_kit::config::ConfigErrors),
    /// The configuration could not be compiled.
    #[error("{0}")]
    Compile(#[from] compile::CompileError),
    /// A capture could not be opened or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A capture could not be read or written.
    #[error("{path}: {message}")]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A second-chance history file could not be read or written.
    #[error("{0}")]
    History(#[from] HistoryFileError),
}

/// A reload during a replay: at `at` into the capture, `config` becomes the next generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReload {
    /// Offset from the capture's first frame.
    pub at: Duration,
    /// The configuration file.
    pub config: PathBuf,
}

/// What a replay does besides running the capture through its config.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Also write the frames handed to the kernel here.
    pub to_kernel: Option<PathBuf>,
    /// Reloads, applied in time order (those past the capture's end apply at its end).
    pub reloads: Vec<ReplayReload>,
    /// Start from this second-chance history file.
    pub history: Option<PathBuf>,
    /// Write the second-chance history the replay ends with here.
    pub save_history: Option<PathBuf>,
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Frames read from the input.
    pub frames_in: u64,
    /// Frames written to the output.
    pub frames_out: u64,
    /// Frames handed to the kernel.
    pub frames_to_kernel: u64,
    /// The worker's counters.
    pub counters: WorkerCounters,
    /// Counters as JSON, with VIP and backend names.
    pub report: serde_json::Value,
}

/// Replays `input` through the pipeline configured by `config`.
pub fn replay(
    config: &Path,
    input: &Path,
    output: &Path,
    to_kernel: Option<&Path>,
) -> Result<ReplayOutcome, ReplayError> {
    let options = ReplayOptions {
        to_kernel: to_kernel.map(Path::to_path_buf),
        ..ReplayOptions::default()
    };
    replay_with(config, input, output, &options)
}

/// The generations of a replay: the compiled snapshot in force, and what the next reload
/// needs.
struct Generations {
    snap: crate::dataplane::snapshot::Snapshot,
    registry: Registry,
    history: TableHistory,
    options: CompileOptions,
    pending: std::vec::IntoIter<ReplayReload>,
    next: Option<ReplayReload>,
}

impl Generations {
    /// Applies every reload due at `offset` (all of them with `None`: the end).
    fn advance(&mut self, offset: Option<Duration>) -> Result<(), ReplayError> {
        while let Some(r) = self.next.take_if(|r| offset.is_none_or(|o| r.at <= o)) {
            let cfg = crate::config::load_file(&r.config)?;
            let at = self.options.clock.origin_unix + r.at;
            let generation = self.snap.generation() + 1;
            let (snap, history) = compile::compile_with_history(
                &cfg,
                &mut self.registry,
                generation,
                &self.options,
                &self.history,
                at,
            )?;
            self.snap = snap;
            self.history = history;
            self.next = self.pending.next();
        }
        Ok(())
    }

    /// True when a reload is due at `offset`.
    fn due(&self, offset: Duration) -> bool {
        self.next.as_ref().is_some_and(|r| r.at <= offset)
    }
}

/// Replays `input` through the pipeline configured by `config`, with `options`.
pub fn replay_with(
    config: &Path,
    input: &Path,
    output: &Path,
    options: &ReplayOptions,
) -> Result<ReplayOutcome, ReplayError> {
    let cfg = crate::config::load_file(config)?;
    let first = first_timestamp(input)?;
    let compile_options = CompileOptions {
        clock: FlowClock {
            origin: Instant::now(),
            origin_unix: SystemTime::UNIX_EPOCH + first,
        },
        ..CompileOptions::default()
    };
    let history = match &options.history {
        Some(path) => table_history::load(path)?.history,
        None => TableHistory::default(),
    };
    let mut registry = Registry::default();
    let (snap, history) = compile::compile_with_history(
        &cfg,
        &mut registry,
        1,
        &compile_options,
        &history,
        compile_options.clock.origin_unix,
    )?;
    let mut reloads = options.reloads.clone();
    reloads.sort_by_key(|r| r.at);
    let mut pending = reloads.into_iter();
    let mut generations = Generations {
        snap,
        registry,
        history,
        options: compile_options,
        next: pending.next(),
        pending,
    };
    let burst = cfg.dataplane().burst_size();

    let mut reader = open_reader(input)?;
    let datalink = reader.header().datalink;
    if datalink != DataLink::ETHERNET {
        return Err(ReplayError::Pcap {
            path: input.to_path_buf(),
            message: format!(
                "link type {datalink:?} is not Ethernet; capture with an Ethernet interface"
            ),
        });
    }
    let mut writer = create_writer(output)?;
    let mut kernel_writer = options
        .to_kernel
        .as_deref()
        .map(create_writer)
        .transpose()?;

    let pool = burst * 2;
    let pipeline = Pipeline::new(cfg.dataplane().flow_table_capacity(), REPLAY_FLOW_SEED);
    let mut worker = Worker::new(MemPort::new(pool, Capture::Keep), pipeline, burst);
    let mut outcome = ReplayOutcome {
        frames_in: 0,
        frames_out: 0,
        frames_to_kernel: 0,
        counters: WorkerCounters::default(),
        report: serde_json::Value::Null,
    };

    let mut start: Option<Duration> = None;
    let mut stamps: Vec<Duration> = Vec::with_capacity(burst);
    let mut batch_second = 0u32;
    let mut last_offset = Duration::ZERO;
    loop {
        let packet = reader
            .next_packet()
            .transpose()
            .map_err(|e| ReplayError::Pcap {
                path: input.to_path_buf(),
                message: e.to_string(),
            })?;
        // A burst ends when it is full, when the clock's second changes, before a reload,
        // or at the end.
        let offset = packet.as_ref().map(|p| {
            let t0 = *start.get_or_insert(p.timestamp);
            p.timestamp.saturating_sub(t0)
        });
        let second = offset.map(|o| o.as_secs() as u32);
        last_offset = offset.unwrap_or(last_offset);
        let reload = offset.is_some_and(|o| generations.due(o));
        let flush =
            !stamps.is_empty() && (stamps.len() == burst || second != Some(batch_second) || reload);
        if flush {
            // The burst's clock: its first packet's time since the capture's first packet
            // (whole seconds equal `batch_second`; the reply buckets see the microseconds).
            let since_start = stamps[0].saturating_sub(start.unwrap_or_default());
            let clock =
                BurstTime::from_micros(u64::try_from(since_start.as_micros()).unwrap_or(u64::MAX));
            debug_assert_eq!(clock.secs(), batch_second);
            run_burst(
                &mut worker,
                &generations.snap,
                clock,
                &stamps,
                &mut writer,
                kernel_writer.as_mut(),
                output,
                &mut outcome,
            )?;
            stamps.clear();
        }
        if reload {
            generations.advance(offset)?;
        }
        let Some(packet) = packet else { break };
        batch_second = second.unwrap_or(0);
        stamps.push(packet.timestamp);
        worker.port.inject(packet.data.into_owned());
        outcome.frames_in += 1;
    }
    generations.advance(None)?;
    if let Some(path) = &options.save_history {
        let end = generations.options.clock.origin_unix + last_offset;
        table_history::save(path, &generations.history, end)?;
    }
    outcome.counters = worker.pipeline.counters.clone();
    outcome.report = report::counters_json(&outcome.counters, &generations.snap);
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn run_burst(
    worker: &mut Worker<MemPort>,
    snap: &crate::dataplane::snapshot::Snapshot,
    clock: BurstTime,
    stamps: &[Duration],
    writer: &mut PcapWriter<BufWriter<File>>,
    kernel_writer: Option<&mut PcapWriter<BufWriter<File>>>,
    output: &Path,
    outcome: &mut ReplayOutcome,
) -> Result<(), ReplayError> {
    let n = worker.poll_at(snap, clock);
    debug_assert_eq!(n, stamps.len());
    let verdicts = worker.last_verdicts(n).to_vec();
    let sent = worker.port.take_transmitted();
    let kernel = worker.port.take_to_kernel();
    let sent_stamps = verdicts
        .iter()
        .zip(stamps)
        .filter(|(v, _)| matches!(v, Verdict::Forward | Verdict::Reply(_)))
        .map(|(_, t)| *t);
    for (frame, ts) in sent.iter().zip(sent_stamps) {
        write(writer, ts, frame, output)?;
        outcome.frames_out += 1;
    }
    outcome.frames_to_kernel += kernel.len() as u64;
    if let Some(kw) = kernel_writer {
        let kernel_stamps = verdicts
            .iter()
            .zip(stamps)
            .filter(|(v, _)| matches!(v, Verdict::ToKernel))
            .map(|(_, t)| *t);
        for (frame, ts) in kernel.iter().zip(kernel_stamps) {
            write(kw, ts, frame, output)?;
        }
    }
    Ok(())
}

/// The timestamp of the capture's first packet (0 for an empty capture): the flow clock's
/// origin.
fn first_timestamp(path: &Path) -> Result<Duration, ReplayError> {
    let mut reader = open_reader(path)?;
    match reader.next_packet() {
        Some(Ok(p)) => Ok(p.timestamp),
        Some(Err(e)) => Err(ReplayError::Pcap {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        None => Ok(Duration::ZERO),
    }
}

/// Every frame of a pcap capture (Ethernet link type) with its timestamp, in order; for the
/// offline tools that look at frames one by one (`mux trace --pcap`).
pub fn read_frames(path: &Path) -> Result<Vec<(Duration, Vec<u8>)>, ReplayError> {
    let mut reader = open_reader(path)?;
    let datalink = reader.header().datalink;
    if datalink != DataLink::ETHERNET {
        return Err(ReplayError::Pcap {
            path: path.to_path_buf(),
            message: format!(
                "link type {datalink:?} is not Ethernet; capture with an Ethernet interface"
            ),
        });
    }
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let p = packet.map_err(|e| ReplayError::Pcap {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        frames.push((p.timestamp, p.data.into_owned()));
    }
    Ok(frames)
}

fn open_reader(path: &Path) -> Result<PcapReader<BufReader<File>>, ReplayError> {
    let file = File::open(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PcapReader::new(BufReader::new(file)).map_err(|e| ReplayError::Pcap {
        path: path.to_path_buf(),
        message: format!(
            "not a pcap file ({e}); pcapng is not supported: convert with `editcap -F pcap`"
        ),
    })
}

fn create_writer(path: &Path) -> Result<PcapWriter<BufWriter<File>>, ReplayError> {
    let file = File::create(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| ReplayError::Pcap {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write(
    writer: &mut PcapWriter<BufWriter<File>>,
    ts: Duration,
    frame: &[u8],
    path: &Path,
) -> Result<(), ReplayError> {
    let packet = PcapPacket::new(ts, frame.len() as u32, frame);
    writer
        .write_packet(&packet)
        .map(|_| ())
        .map_err(|e| ReplayError::Pcap {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}
