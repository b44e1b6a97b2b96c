//! `mux-fuzz`: runs the fuzz targets and reports cases, execs/s, corpus and coverage per target.
//!
//! Use it through `scripts/fuzz`, which builds it with coverage instrumentation (stable
//! `-C passes=sancov-module`) in its own target directory; `docs/fuzzing.md` has the commands.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use mux_fuzz::driver::{self, Budget, Dirs, Report};
use mux_fuzz::{TARGETS, Target, target};

/// Fuzzes the MUX pipeline, the host agent's data path, the wire views and the config parsers.
#[derive(Debug, Parser)]
#[command(name = "mux-fuzz", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the targets.
    List,
    /// Fuzz targets (all of them by default) until each has run --cases inputs or for
    /// --seconds, whichever comes first. Prints one line per target; exits 1 if any crashed.
    Run {
        /// Targets to run (default: all).
        targets: Vec<String>,
        /// Cases per target.
        #[arg(long)]
        cases: Option<u64>,
        /// Seconds per target.
        #[arg(long)]
        seconds: Option<f64>,
        /// Seconds for the whole run, shared equally by the targets (CI's short budget).
        #[arg(long, conflicts_with = "seconds")]
        total_seconds: Option<f64>,
        /// Seed of the mutation sequence (a run is reproducible from it and the corpus).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Targets fuzzed at once, each in its own process (coverage counters are per process).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Corpus directory: inputs that found new coverage are kept in DIR/<target>/ and
        /// reused by the next run.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Where crashing inputs are written (DIR/<target>/crash-<hash>).
        #[arg(long, default_value = "target/fuzz-crashes")]
        crashes: PathBuf,
    },
    /// Run a target on saved inputs (crash files, regressions) with the normal panic output.
    Replay {
        /// The target.
        target: String,
        /// Input files.
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => {
            for t in TARGETS {
                println!("{:<22} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        Command::Replay {
            target: name,
            files,
        } => replay(&name, &files),
        Command::Run {
            targets,
            cases,
            seconds,
            total_seconds,
            seed,
            jobs,
            corpus,
            crashes,
        } => {
            let chosen = match choose(&targets) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("mux-fuzz: {e}");
                    return ExitCode::from(2);
                }
            };
            // A total budget is shared by the rounds of `jobs` targets run side by side.
            let rounds = chosen.len().div_ceil(jobs.max(1));
            let seconds = seconds.or(total_seconds.map(|t| t / rounds as f64));
            if cases.is_none() && seconds.is_none() {
                eprintln!("mux-fuzz: give a budget: --cases N, --seconds S or --total-seconds S");
                return ExitCode::from(2);
            }
            let budget = Budget {
                cases,
                time: seconds.map(Duration::from_secs_f64),
            };
            let dirs = Dirs { corpus, crashes };
            run(&chosen, budget, seed, jobs.max(1), &dirs)
        }
    }
}

fn choose(names: &[String]) -> Result<Vec<&'static Target>, String> {
    if names.is_empty() {
        return Ok(TARGETS.iter().collect());
    }
    names
        .iter()
        .map(|n| target(n).ok_or_else(|| format!("no target {n:?}; `mux-fuzz list` shows them")))
        .collect()
}

const HEADER: &str =
    "target                      cases    seconds      execs/s   corpus  features  result";

fn row(r: &Report) -> String {
    let features = if r.coverage {
        r.features.to_string()
    } else {
        "-".to_owned()
    };
    let result = match &r.crash {
        None => "ok".to_owned(),
        Some(c) => format!(
            "CRASH: {} (input: {})",
            c.message,
            c.saved
                .as_ref()
                .map_or("not saved".to_owned(), |p| p.display().to_string())
        ),
    };
    format!(
        "{:<22} {:>11} {:>10.1} {:>12.0} {:>8} {:>9}  {result}",
        r.target,
        r.cases,
        r.elapsed.as_secs_f64(),
        r.execs_per_second(),
        r.corpus,
        features
    )
}

fn run(
    targets: &[&'static Target],
    budget: Budget,
    seed: u64,
    jobs: usize,
    dirs: &Dirs,
) -> ExitCode {
    println!("{HEADER}");
    let mut crashed = false;
    let mut total_cases = 0u64;
    if jobs == 1 {
        for t in targets {
            let report = driver::run(t, budget, seed, dirs);
            println!("{}", row(&report));
            let _ = std::io::stdout().flush();
            total_cases += report.cases;
            if let Some(crash) = &report.crash {
                crashed = true;
                print_crash(t, crash);
            }
        }
    } else {
        // One process per target, `jobs` at a time; each prints its row.
        let exe = std::env::current_exe().expect("our own executable");
        for batch in targets.chunks(jobs) {
            let children: Vec<_> = batch
                .iter()
                .map(|t| {
                    let mut cmd = Process::new(&exe);
                    cmd.arg("run")
                        .arg(t.name)
                        .arg("--seed")
                        .arg(seed.to_string());
                    if let Some(c) = budget.cases {
                        cmd.arg("--cases").arg(c.to_string());
                    }
                    if let Some(s) = budget.time {
                        cmd.arg("--seconds").arg(s.as_secs_f64().to_string());
                    }
                    if let Some(c) = &dirs.corpus {
                        cmd.arg("--corpus").arg(c);
                    }
                    cmd.arg("--crashes").arg(&dirs.crashes);
                    cmd.stdout(Stdio::piped()).spawn().expect("spawn mux-fuzz")
                })
                .collect();
            for child in children {
                let out = child.wait_with_output().expect("wait for mux-fuzz");
                let text = String::from_utf8_lossy(&out.stdout);
                // Relay the child's rows, not its header and summary.
                let rows = text
                    .lines()
                    .filter(|l| !l.starts_with("target ") && !l.ends_with(" cases"));
                for line in rows {
                    println!("{line}");
                    if let Some(cases) = line.split_whitespace().nth(1) {
                        total_cases += cases.parse::<u64>().unwrap_or(0);
                    }
                }
                crashed |= !out.status.success();
            }
        }
    }
    println!("{} targets, {total_cases} cases", targets.len());
    if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_crash(t: &Target, crash: &driver::Crash) {
    println!("  {} crashed: {}", t.name, crash.message);
    if let Some(path) = &crash.saved {
        println!(
            "  replay it:   scripts/fuzz replay {} {}",
            t.name,
            path.display()
        );
        println!(
            "  keep it:     fix the bug, then `cp {} fuzz/regressions/{}/` (cargo test replays it)",
            path.display(),
            t.name
        );
    }
}

fn replay(name: &str, files: &[PathBuf]) -> ExitCode {
    let Some(t) = target(name) else {
        eprintln!("mux-fuzz: no target {name:?}; `mux-fuzz list` shows them");
        return ExitCode::from(2);
    };
    for file in files {
        let input = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("mux-fuzz: {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        println!("{}: {} bytes", file.display(), input.len());
        // The default panic hook prints the message and, with RUST_BACKTRACE=1, the stack.
        (t.run)(&input);
        println!("{}: ok", file.display());
    }
    ExitCode::SUCCESS
}
