//! `perf`: benchmark drivers for mux.
//!
//! Subcommands:
//! - `pipeline` — the in-process benchmark of the real worker loop (see [`perf::runner`]).
//! - `demo-capture` — writes the deterministic demo pcap (see [`perf::demo`]).
//!
//! The criterion micro-benchmarks (`parse`, `flow_table`, `maglev`) live in `perf/benches/`
//! and run with `cargo bench -p perf`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use perf::runner::{self, Settings};
use perf::scenario::{MAX_FLOWS, Scenario};

/// Benchmark drivers for the mux L4 load balancer.
#[derive(Debug, Parser)]
#[command(name = "perf", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the real worker loop on one core, per scenario.
    ///
    /// Pre-builds the frames of each scenario, then runs `Worker::poll` (parse, VIP match,
    /// flow table, Maglev, IP-in-IP encapsulation) over an in-memory port that replays them in
    /// a loop, on the calling thread. Prints packets, Mpps, ns/packet, the ratio to a baseline
    /// (a MAC-swapping forwarder over the same port, measured in the same run) and the
    /// pipeline counters that show the work was real.
    ///
    /// Scenarios (16 VIPs × 64 backends each):
    ///   baseline     MAC swap only: the floor of the I/O path (always runs, first)
    ///   established  60-byte IPv4 TCP ACKs of warmed flows: every packet a flow-table hit
    ///   new-flows    60-byte IPv4 TCP SYNs: every packet a miss, a Maglev pick and an insert
    ///   mixed        9 ACKs of established flows to 1 SYN of a new flow
    ///   ipv6         74-byte IPv6 TCP ACKs, IPv6 VIPs to IPv6 backends: hits
    ///
    /// Build with `--release` (figures from a debug build mean nothing). For stable figures
    /// run on a quiet machine and pin the thread: `taskset -c 1 target/release/perf pipeline`.
    #[command(verbatim_doc_comment)]
    Pipeline(PipelineArgs),
    /// Write the deterministic demo capture for `configs/mux.demo.toml`.
    ///
    /// About 55 frames over 3.4 s: TCP connections to `web`, UDP to `dns`, IPv6 TCP to
    /// `web6`, fragments, an ICMP error about a flow, oversize packets with and without DF,
    /// non-VIP traffic and malformed frames. Check it with
    /// `mux replay --config configs/mux.demo.toml --input configs/demo.pcap --output out.pcap`.
    DemoCapture {
        /// Where to write the capture (created or truncated).
        #[arg(long, default_value = "configs/demo.pcap")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Packets per timed run [default: 20000000, or 1000000 with --quick].
    #[arg(long, value_name = "N")]
    packets: Option<u64>,
    /// Distinct flows (frames) per scenario [default: 1000000, or 10000 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_FLOWS as u64))]
    flows: Option<u64>,
    /// Run only these scenarios (repeatable); the baseline always runs. Default: all.
    #[arg(long = "scenario", value_name = "NAME", value_enum)]
    scenarios: Vec<Scenario>,
    /// Small sizes for a CI smoke run of a few seconds (10 k flows, 1 M packets per run).
    #[arg(long)]
    quick: bool,
    /// Frames per receive burst (1..=256), as `[dataplane] burst_size`.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=256))]
    burst: u64,
    /// Timed runs per scenario; the median run is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Pipeline(args) => pipeline(args),
        Command::DemoCapture { output } => match perf::demo::write(&output) {
            Ok((frames, bytes)) => {
                println!("{}: {frames} frames, {bytes} bytes", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", output.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn pipeline(args: PipelineArgs) -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; figures are meaningless (use --release)");
    }
    let (flows, packets) = if args.quick {
        (10_000, 1_000_000)
    } else {
        (1_000_000, 20_000_000)
    };
    let settings = Settings {
        flows: args.flows.map_or(flows, |f| f as usize),
        packets: args.packets.unwrap_or(packets),
        burst: args.burst as usize,
        runs: args.runs as usize,
        scenarios: if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios
        },
    };
    let report = runner::run(&settings, |name| {
        eprintln!("running {name}...");
    });
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        runner::render(&report)
    };
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    if report.results.iter().any(|r| !r.warnings.is_empty()) {
        eprintln!("some scenarios did not do the work they claim: see the warnings");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
