//! The host agent's configuration: the TOML schema, parsing with source locations, and
//! validation that reports every error at once, in the same `FILE:LINE:COL: message; fix` form
//! as the MUX's (`mux::config`): both are built on the error machinery of
//! `mux_daemon_kit::config`.
//!
//! ```toml
//! [agent]
//! name = "host1"
//! [tunnel]
//! mux_sources = ["10.0.11.2", "10.0.12.2"]
//! source_v4 = "10.0.21.2"    # optional: the source of packets this agent forwards (second chance)
//! [[tunnel.peer]]            # other agents that may forward packets here
//! address = "10.0.22.2"
//! [connections]              # optional: the table of connections this agent carries
//! capacity = 262144
//! state_file = "/var/lib/hostagent/host1.connections"
//! [timeouts]                 # optional: idle timeouts of that table, in seconds
//! tcp_established = 7200
//! [[service]]
//! vip = "192.0.2.10"
//! port = 80
//! protocol = "tcp"
//! dip = "10.0.21.2"
//! backend_port = 8080        # optional, default = port
//! ```
//!
//! Semantic rules, beyond the ranges documented on each accessor:
//! - `[agent] name` is 1–64 of `A-Z a-z 0-9 - _ .` (it becomes a metric label);
//! - `[tunnel] mux_sources` is not empty and has no duplicates: with the `[[tunnel.peer]]`
//!   addresses (also without duplicates) it is the complete list of outer source addresses the
//!   agent decapsulates (no open relay); a peer may be this agent's own source, so one list
//!   can serve every host;
//! - `[tunnel] source_v4` is IPv4 and `source_v6` IPv6;
//! - every address (mux source, tunnel source, peer, vip, dip, backend_address) is unicast: not unspecified,
//!   multicast, broadcast or loopback, and not IPv4-mapped IPv6;
//! - `port` and `backend_port` are 1..=65535;
//! - the backend receives the client's packet with the VIP's header family, so
//!   `backend_address` (default: `dip`) has the VIP's family; when the MUX tunnels to a DIP of
//!   the other family, `backend_address` is required;
//! - the VIP differs from the service's dip and backend_address;
//! - (dip, vip, port, protocol) is unique — one local backend per VIP port and DIP — and so is
//!   (backend_address, backend_port, protocol), otherwise a reply's source could not be
//!   rewritten unambiguously;
//! - `[health]`: `interval_ms` 100..=60000, `timeout_ms` 10..=60000 and at most the interval,
//!   `rise`/`fall` 1..=100, `http_status` 100..=599, `http_path` an absolute path; the
//!   `http_*` keys only with `kind = "http"`;
//! - `[admin] listen` has a fixed (non-zero) port; it defaults to loopback `127.0.0.1:9200`;
//! - `[interception]`: `tun_name` 1–15 of `A-Z a-z 0-9 - _ .`, `route_table` 1..=2³²−1 but
//!   not 253–255, `rule_priority` 2..=32765, `mark` non-zero, `tun_mtu` 576..=65535;
//! - `[connections]`: `capacity` 1024..=16777216, `state_file` a non-empty path;
//! - `[timeouts]` and each service's `timeouts = { ... }`: `tcp_syn`, `tcp_established`,
//!   `tcp_closing`, `udp` in whole seconds, 1..=604800 (a week).
//!
//! A file without any `[[service]]` is valid: the agent runs and decapsulates nothing.
//!
//! Invariants: [`parse`] and [`load_file`] return only configurations that passed
//! [`HostAgentConfig::validate`]; a returned error list is never empty; every error of a file
//! TOML can parse is reported — unknown and missing keys, type and value errors
//! (`mux_daemon_kit::config::collect`) and semantic errors together — while a TOML syntax error is
//! reported alone, as there is no document to look further into.

mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use mux_daemon_kit::config::{Collector, collect};
pub use mux_daemon_kit::config::{ConfigError, ConfigErrors, Protocol};
pub use schema::{
    ConnectionSettings, DEFAULT_ADMIN_LISTEN, DEFAULT_CONNECTION_CAPACITY, DEFAULT_HEALTH_FALL,
    DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT_MS, DEFAULT_HTTP_PATH,
    DEFAULT_HTTP_STATUS, DEFAULT_MARK, DEFAULT_ROUTE_TABLE, DEFAULT_RULE_PRIORITY,
    DEFAULT_STATE_DIR, DEFAULT_TIMEOUTS, DEFAULT_TUN_MTU, DEFAULT_TUN_NAME, HealthCheck,
    HealthKind, HostAgentConfig, Interception, MAX_TIMEOUT_SECS, Service, Timeouts, TunnelSources,
};

/// Parses and validates a configuration. `origin` is the file name shown in messages.
///
/// Returns every error in file order: unknown and missing keys, type and value errors, and
/// semantic errors together; a TOML syntax error alone (the file cannot be read further).
pub fn parse(text: &str, origin: &str) -> Result<HostAgentConfig, ConfigErrors> {
    let mut c = Collector::new(origin, text);
    let config = collect::deserialize::<HostAgentConfig>(text, &mut c);
    if let Some(config) = &config {
        config.check(&mut c);
    }
    collect::finish(config, c)
}

/// Reads, parses and validates the configuration file at `path`. A file that cannot be read is
/// one error with line 0.
pub fn load_file(path: &Path) -> Result<HostAgentConfig, ConfigErrors> {
    let (origin, text) = mux_daemon_kit::config::read_file(path)?;
    parse(&text, &origin)
}
