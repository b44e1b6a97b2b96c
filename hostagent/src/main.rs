//! `hostagent`: the command-line entry point.
//!
//! Subcommands:
//! - `check-config FILE` — validate a configuration; print every error as `FILE:LINE:COL: msg`
//!   and exit 1, or print a summary and exit 0.
//!
//! - `run --config FILE` — the agent daemon (`hostagent::daemon`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// hostagent: the end of the mux IP-in-IP tunnel on a backend's host (decapsulation, VIP/DIP
/// NAT, direct server return).
#[derive(Debug, Parser)]
#[command(name = "hostagent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: intercept IP-in-IP from the MUXes, deliver to the local backends,
    /// rewrite their replies to come from the VIP, until SIGTERM.
    ///
    /// Needs root. Creates a TUN device, a routing table and policy rules (see
    /// docs/hostagent.md, "What the agent changes on the host"), removes them at exit, and
    /// removes what a crashed agent left at the next start. SIGHUP reloads the file; a bad
    /// file is refused and the running configuration keeps serving.
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing `EnvFilter` directive;
        /// `RUST_LOG` overrides it).
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Validate a host-agent configuration file.
    ///
    /// Exits 0 when the file is valid. Otherwise prints each error as `FILE:LINE:COL: message`
    /// (every error, not just the first) and exits 1.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_level } => {
            mux_daemon_kit::logging::init(&log_level);
            match hostagent::daemon::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    for line in e.to_string().lines() {
                        tracing::error!("{line}");
                    }
                    eprintln!("hostagent run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match hostagent::config::load_file(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok (agent {}, {} MUX sources, {} services)",
                    file.display(),
                    cfg.name(),
                    cfg.mux_sources().len(),
                    cfg.services().len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
    }
}
