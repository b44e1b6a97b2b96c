//! `mux`: the command-line entry point.
//!
//! Subcommands:
//! - `check-config FILE` — validate a configuration; print every error as `FILE:LINE:COL: msg`.
//! - `replay --config FILE --input IN.pcap --output OUT.pcap` — run the real pipeline over a
//!   capture offline and print the counters as JSON; `--reload SECONDS=FILE` changes the
//!   configuration mid-capture, `--history` / `--save-history` carry second-chance history.
//!
//! - `trace FLOW… (--config FILE | --admin ADDR)` / `trace --config FILE --pcap IN.pcap` —
//!   what the MUX does with a flow and why (`mux::control::trace`).
//! - `run --config FILE` — the forwarding daemon.
//! - `announce-guard …` — the announcement guard `mux run` starts (hidden from `--help`; see
//!   `mux::control::announce`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mux: a kernel-bypass L4 load balancer (Maglev consistent hashing, IP-in-IP to host agents,
/// direct server return).
#[derive(Debug, Parser)]
#[command(name = "mux", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the MUX: forward packets for the configured VIPs until SIGTERM.
    ///
    /// One worker thread per RX queue polls the interface named in [dataplane] (AF_XDP or
    /// AF_PACKET) and encapsulates VIP traffic toward the backends. VIPs are announced through
    /// BIRD ([bgp]) once the workers forward, by a child process (the announcement guard) that
    /// withdraws them within [bgp] liveness_timeout_ms (300 ms) of the data path stopping: the
    /// MUX killed, stopped (SIGSTOP), a worker stuck, the XDP program or DPDK port gone. SIGHUP reloads the file (a bad file is refused
    /// and the running config keeps serving); SIGTERM withdraws the routes, keeps forwarding for
    /// [lifecycle] drain_seconds, and exits. Status and metrics are served on [admin] listen:
    /// /metrics, /healthz, /readyz, /v1/status. Logs go to stderr (RUST_LOG or --log-level).
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log level: error, warn, info, debug or trace (RUST_LOG overrides it).
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Validate a MUX configuration file.
    ///
    /// Exits 0 when the file is valid. Otherwise prints each error as `FILE:LINE:COL: message`
    /// (every error, not just the first) and exits 1. Runs the same code the daemon runs on
    /// start and on reload.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Run the real pipeline (one worker) over a pcap capture, offline.
    ///
    /// Every frame of IN.pcap goes through the same parse → VIP match → flow table → Maglev →
    /// encapsulation path the daemon runs. Frames the MUX would transmit (IP-in-IP toward the
    /// backends, ICMP "too big" replies) are written to OUT.pcap in order, readable with
    /// tcpdump or tshark; the counters are printed as JSON on stdout. The flow clock follows
    /// the capture's timestamps. Use it to check a config against real traffic.
    Replay {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Input capture (pcap, Ethernet link type).
        #[arg(long)]
        input: PathBuf,
        /// Output capture for transmitted frames (created or truncated).
        #[arg(long)]
        output: PathBuf,
        /// Also write the frames handed to the kernel (non-VIP traffic) to this capture.
        #[arg(long)]
        to_kernel: Option<PathBuf>,
        /// Print the result as JSON (counters by name, per VIP, per backend) instead of a
        /// summary for people.
        #[arg(long)]
        json: bool,
        /// At SECONDS (decimal) into the capture, FILE becomes the next configuration
        /// generation, as a SIGHUP would make it: flow entries and the second chance's
        /// previous tables carry over. Repeatable.
        #[arg(long = "reload", value_name = "SECONDS=FILE", value_parser = parse_reload)]
        reloads: Vec<mux::control::replay::ReplayReload>,
        /// Start from this second-chance history file (what [dataplane] second_chance_state
        /// holds), as a MUX that ran earlier generations before the capture would. Only read.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Write the second-chance history the replay ends with to FILE.
        #[arg(long, value_name = "FILE")]
        save_history: Option<PathBuf>,
    },
    /// Explain what the MUX does with a flow, and why.
    ///
    /// For each FLOW (`tcp 198.51.100.7:40000 192.0.2.10:80`: protocol, client, VIP): the VIP
    /// it matches, the flow's stable hash and Maglev slot, the backend the current table picks
    /// (where a new connection goes), what each previous table picks and the alternative a
    /// packet of an established connection without a flow entry would carry (second chance),
    /// and the outer header. Offline with --config (compiled as a MUX starting now would; add
    /// --history for its second-chance state file), or live with --admin against a running
    /// MUX's published snapshot (its per-core flow tables are not read). With --pcap, every
    /// packet of a capture goes through the real pipeline and its flow-table entry before and
    /// its verdict (forward where, with which alternative; reply; kernel; drop and why) are
    /// printed.
    Trace {
        /// Flows to explain: "PROTO SRC:PORT DST:PORT" (IPv6 as [2001:db8::7]:40000).
        #[arg(value_name = "FLOW", value_parser = mux::control::trace::FlowQuery::parse)]
        flows: Vec<mux::control::trace::FlowQuery>,
        /// Offline: the TOML configuration to compile.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// Offline: a second-chance history file (what [dataplane] second_chance_state holds).
        #[arg(long, value_name = "FILE", requires = "config")]
        history: Option<PathBuf>,
        /// Offline: trace every packet of this capture (pcap, Ethernet) instead of FLOWs.
        #[arg(
            long,
            value_name = "FILE",
            requires = "config",
            conflicts_with = "flows"
        )]
        pcap: Option<PathBuf>,
        /// Live: the admin endpoint of a running MUX ([admin] listen, e.g. 127.0.0.1:9100).
        #[arg(long, value_name = "ADDR:PORT")]
        admin: Option<std::net::SocketAddr>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The announcement guard: started by `mux run` with `[bgp] speaker = "bird"`, never by
    /// hand. Announces the VIPs the MUX sends on stdin while its heartbeats arrive; withdraws
    /// them when they stop for --timeout-ms, or when stdin closes.
    #[command(hide = true)]
    AnnounceGuard {
        /// BIRD's control socket.
        #[arg(long)]
        bird_socket: String,
        /// The file BIRD includes, where the VIP routes are written.
        #[arg(long)]
        bird_include: PathBuf,
        /// Withdraw when no heartbeat arrived for this long.
        #[arg(long)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_level } => {
            mux_daemon_kit::logging::init(&log_level);
            match mux::control::daemon::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    for line in e.to_string().lines() {
                        tracing::error!("{line}");
                    }
                    eprintln!("mux run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::AnnounceGuard {
            bird_socket,
            bird_include,
            timeout_ms,
        } => {
            mux_daemon_kit::logging::init("info");
            let speaker = mux::control::announce::BirdSpeaker {
                include: bird_include,
                socket: bird_socket,
            };
            let timeout = std::time::Duration::from_millis(timeout_ms);
            match mux::control::announce::guard::run(&speaker, timeout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("announcement guard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Trace {
            flows,
            config,
            history,
            pcap,
            admin,
            json,
        } => {
            use mux::control::trace::{self, Source};
            let result = match (pcap, config, admin) {
                (Some(pcap), Some(config), _) => {
                    trace::trace_pcap(&config, history.as_deref(), &pcap, json)
                }
                (None, _, _) if flows.is_empty() => Err(
                    "give at least one FLOW (e.g. \"tcp 198.51.100.7:40000 192.0.2.10:80\") \
                         or --pcap FILE"
                        .to_string(),
                ),
                (None, Some(config), _) => {
                    trace::trace_flows(&Source::Offline { config, history }, &flows, json)
                }
                (None, None, Some(admin)) => trace::trace_flows(&Source::Live(admin), &flows, json),
                _ => Err("give --config FILE (offline) or --admin ADDR:PORT (live)".to_string()),
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mux trace: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match mux::config::load_file(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} VIPs, {} backends)",
                    file.display(),
                    cfg.vips().len(),
                    cfg.vips().iter().map(|v| v.backends().len()).sum::<usize>()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Replay {
            config,
            input,
            output,
            to_kernel,
            json,
            reloads,
            history,
            save_history,
        } => match mux::control::replay::replay_with(
            &config,
            &input,
            &output,
            &mux::control::replay::ReplayOptions {
                to_kernel,
                reloads,
                history,
                save_history,
            },
        ) {
            Ok(outcome) if json => {
                let summary = serde_json::json!({
                    "frames_in": outcome.frames_in,
                    "frames_out": outcome.frames_out,
                    "frames_to_kernel": outcome.frames_to_kernel,
                    "output": output.display().to_string(),
                    "report": outcome.report,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("JSON values serialize")
                );
                ExitCode::SUCCESS
            }
            Ok(outcome) => {
                print!(
                    "{}",
                    mux::control::report::replay_summary(&outcome, &input, &output)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mux replay: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `SECONDS=FILE` of `mux replay --reload`.
fn parse_reload(text: &str) -> Result<mux::control::replay::ReplayReload, String> {
    let (at, file) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected SECONDS=FILE, e.g. 12.5=configs/next.toml"))?;
    let secs: f64 = at
        .trim()
        .parse()
        .map_err(|_| format!("{at:?}: not a number of seconds"))?;
    let at = std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{at:?}: give a non-negative number of seconds"))?;
    if file.is_empty() {
        return Err(format!(
            "{text:?}: the configuration file is missing after '='"
        ));
    }
    Ok(mux::control::replay::ReplayReload {
        at,
        config: PathBuf::from(file),
    })
}
