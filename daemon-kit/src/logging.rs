//! Logging set-up for the daemons: `tracing` to standard error, without colours (journald and
//! log files keep the text as written), filtered by the `--log-level` given or by `RUST_LOG`,
//! which overrides it.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `level` is `error`, `warn`, `info`, `debug` or any
/// `EnvFilter` directive. Call once, before the first log line.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
