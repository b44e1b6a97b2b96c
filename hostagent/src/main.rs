//! `hostagent`: the command-line entry point.
//!
//! Subcommands:
//! - `check-config FILE` — validate a configuration; print every error as `FILE:LINE:COL: msg`
//!   and exit 1, or print a summary and exit 0.
//!
//! The daemon (`run`: interception, health checks, admin endpoint) is not built yet; see
//! `docs/hostagent.md`.

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
