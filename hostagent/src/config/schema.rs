//! The host agent's configuration schema: what an operator may write, with the source span of
//! every value `validate` reports on, and plain accessors (defaults applied) for the rest of
//! the agent.
//!
//! Every struct denies unknown keys, so a typo (`backend_prot = 8080`) is refused at its line
//! instead of silently falling back to a default. Integers are read as `i64` (TOML's integer
//! type) and range-checked by `validate`, so `port = 70000` gets a message with the allowed
//! range and a fix instead of a bare "expected u16" that would also hide every other problem.
//!
//! Accessors are meant for a configuration that passed `validate` (the only kind `parse` and
//! `load_file` return); on an unvalidated value an out-of-range integer falls back to the
//! field's default rather than panicking.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mux_shared::config::Protocol;
pub(crate) use mux_shared::config::values::{IpValue, SocketValue};
use serde::Deserialize;
use serde_spanned::Spanned;

/// Default `[admin] listen`: loopback only.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9200);
/// Default `[health] interval_ms`.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 1000;
/// Default `[health] timeout_ms`.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 500;
/// Default `[health] rise`.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Default `[health] fall`.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// Default `[health] http_path`.
pub const DEFAULT_HTTP_PATH: &str = "/";
/// Default `[health] http_status`.
pub const DEFAULT_HTTP_STATUS: u16 = 200;
/// Default `[interception] tun_name`.
pub const DEFAULT_TUN_NAME: &str = "muxha0";
/// Default `[interception] route_table`.
pub const DEFAULT_ROUTE_TABLE: u32 = 4242;
/// Default `[interception] rule_priority`.
pub const DEFAULT_RULE_PRIORITY: u32 = 1000;
/// Default `[interception] mark`.
pub const DEFAULT_MARK: u32 = 0x6d75;
/// Default `[interception] tun_mtu`.
pub const DEFAULT_TUN_MTU: u32 = 1500;

/// The value of an optional integer field converted to its plain type, or `default`.
fn int_or<T: TryFrom<i64>>(field: &Option<Spanned<i64>>, default: T) -> T {
    field
        .as_ref()
        .and_then(|v| T::try_from(*v.get_ref()).ok())
        .unwrap_or(default)
}

/// A section that is not in the file: its empty span says so.
fn absent<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

/// A parsed host-agent configuration. Obtain one from [`super::parse`] or
/// [`super::load_file`].
///
/// Equality compares values only, not source positions.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAgentConfig {
    pub(crate) agent: Spanned<AgentSection>,
    pub(crate) tunnel: Spanned<TunnelSection>,
    #[serde(default)]
    pub(crate) service: Vec<Service>,
    #[serde(default = "absent")]
    pub(crate) health: Spanned<HealthSection>,
    #[serde(default)]
    pub(crate) admin: AdminSection,
    #[serde(default)]
    pub(crate) interception: InterceptionSection,
}

impl HostAgentConfig {
    /// `[agent] name`, used in logs and metrics.
    pub fn name(&self) -> &str {
        self.agent.get_ref().name.get_ref()
    }

    /// `[tunnel] mux_sources`: the only outer source addresses decapsulated, in file order.
    pub fn mux_sources(&self) -> Vec<IpAddr> {
        self.tunnel
            .get_ref()
            .mux_sources
            .get_ref()
            .iter()
            .map(|a| a.get_ref().0)
            .collect()
    }

    /// The `[[service]]` entries, in file order.
    pub fn services(&self) -> &[Service] {
        &self.service
    }

    /// `[health]` resolved: the file's values over the defaults.
    pub fn health(&self) -> HealthCheck {
        let h = self.health.get_ref();
        let kind = match h.kind.as_ref().map(|k| *k.get_ref()) {
            Some(name @ (HealthKindName::Http | HealthKindName::Https)) => HealthKind::Http {
                tls: name == HealthKindName::Https,
                path: h
                    .http_path
                    .as_ref()
                    .map_or_else(|| DEFAULT_HTTP_PATH.to_owned(), |p| p.get_ref().clone()),
                expected_status: int_or(&h.http_status, DEFAULT_HTTP_STATUS),
            },
            Some(HealthKindName::Tcp) | None => HealthKind::Tcp,
        };
        HealthCheck {
            kind,
            interval: Duration::from_millis(int_or(&h.interval_ms, DEFAULT_HEALTH_INTERVAL_MS)),
            timeout: Duration::from_millis(int_or(&h.timeout_ms, DEFAULT_HEALTH_TIMEOUT_MS)),
            rise: int_or(&h.rise, DEFAULT_HEALTH_RISE),
            fall: int_or(&h.fall, DEFAULT_HEALTH_FALL),
        }
    }

    /// `[interception]` resolved: the file's values over the defaults.
    pub fn interception(&self) -> Interception {
        let i = &self.interception;
        Interception {
            tun_name: i
                .tun_name
                .as_ref()
                .map_or_else(|| DEFAULT_TUN_NAME.to_owned(), |n| n.get_ref().clone()),
            route_table: int_or(&i.route_table, DEFAULT_ROUTE_TABLE),
            rule_priority: int_or(&i.rule_priority, DEFAULT_RULE_PRIORITY),
            mark: int_or(&i.mark, DEFAULT_MARK),
            tun_mtu: int_or(&i.tun_mtu, DEFAULT_TUN_MTU),
        }
    }

    /// `[admin] listen`; default [`DEFAULT_ADMIN_LISTEN`] (loopback).
    pub fn admin_listen(&self) -> SocketAddr {
        self.admin
            .listen
            .as_ref()
            .map_or(DEFAULT_ADMIN_LISTEN, |v| v.get_ref().0)
    }
}

/// `[agent]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentSection {
    pub(crate) name: Spanned<String>,
}

/// `[tunnel]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TunnelSection {
    pub(crate) mux_sources: Spanned<Vec<Spanned<IpValue>>>,
}

/// One `[[service]]`: a VIP:port/protocol served by one local backend.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub(crate) vip: Spanned<IpValue>,
    pub(crate) port: Spanned<i64>,
    pub(crate) protocol: Spanned<Protocol>,
    pub(crate) dip: Spanned<IpValue>,
    pub(crate) backend_address: Option<Spanned<IpValue>>,
    pub(crate) backend_port: Option<Spanned<i64>>,
}

impl Service {
    /// The VIP clients address.
    pub fn vip(&self) -> IpAddr {
        self.vip.get_ref().0
    }

    /// The VIP's port, 1..=65535.
    pub fn port(&self) -> u16 {
        u16::try_from(*self.port.get_ref()).unwrap_or(0)
    }

    /// TCP or UDP.
    pub fn protocol(&self) -> Protocol {
        *self.protocol.get_ref()
    }

    /// The DIP: the outer destination the MUX tunnels this service's packets to.
    pub fn dip(&self) -> IpAddr {
        self.dip.get_ref().0
    }

    /// The address the backend receives on and replies from (the inner destination after the
    /// rewrite); default [`Service::dip`]. Always of the VIP's family. It differs from the DIP
    /// only when the MUX tunnels to an address of the other family (an IPv4 VIP over an IPv6
    /// tunnel, or the reverse).
    pub fn backend_address(&self) -> IpAddr {
        self.backend_address
            .as_ref()
            .map_or_else(|| self.dip(), |a| a.get_ref().0)
    }

    /// The port the backend listens on; default [`Service::port`].
    pub fn backend_port(&self) -> u16 {
        int_or(&self.backend_port, self.port())
    }
}

/// `[health] kind` as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthKindName {
    Tcp,
    Http,
    Https,
}

/// `[health]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthSection {
    pub(crate) kind: Option<Spanned<HealthKindName>>,
    pub(crate) interval_ms: Option<Spanned<i64>>,
    pub(crate) timeout_ms: Option<Spanned<i64>>,
    pub(crate) rise: Option<Spanned<i64>>,
    pub(crate) fall: Option<Spanned<i64>>,
    pub(crate) http_path: Option<Spanned<String>>,
    pub(crate) http_status: Option<Spanned<i64>>,
}

/// What a health check does to each local backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthKind {
    /// A TCP connect to `backend_address:backend_port`.
    Tcp,
    /// An HTTP/1.1 GET of `path` (over TLS with `kind = "https"`); healthy when the status is
    /// `expected_status`.
    Http {
        /// `kind = "https"`: the GET goes over TLS. The certificate is not verified: the check
        /// targets the backend's address, not a name the certificate would be issued for.
        tls: bool,
        /// The request path (starts with `/`).
        path: String,
        /// The status a healthy backend answers.
        expected_status: u16,
    },
}

/// `[health]` resolved: how `control::health::HealthChecker` probes each local TCP backend
/// (UDP backends are not probed) and when it changes a backend's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The probe.
    pub kind: HealthKind,
    /// Time between probes of one backend (100 ms ..= 60 s; default 1 s).
    pub interval: Duration,
    /// A probe not answered within this counts as failed (at most the interval; default
    /// 500 ms).
    pub timeout: Duration,
    /// Consecutive successes that make a backend `up` (from `unknown` or `down`; 1..=100;
    /// default 2).
    pub rise: u32,
    /// Consecutive failures that make a backend `down` (from `unknown` or `up`; 1..=100;
    /// default 3).
    pub fall: u32,
}

/// `[admin]`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSection {
    pub(crate) listen: Option<Spanned<SocketValue>>,
}

/// `[interception]`: how the agent hooks into the host's network stack.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InterceptionSection {
    pub(crate) tun_name: Option<Spanned<String>>,
    pub(crate) route_table: Option<Spanned<i64>>,
    pub(crate) rule_priority: Option<Spanned<i64>>,
    pub(crate) mark: Option<Spanned<i64>>,
    pub(crate) tun_mtu: Option<Spanned<i64>>,
}

/// `[interception]` resolved. What the agent installs with these is listed in
/// `docs/hostagent.md` ("What the agent changes on the host").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interception {
    /// The TUN device decapsulated packets enter the kernel through and replies leave it by
    /// (1–15 of `A-Z a-z 0-9 - _ .`; default `muxha0`).
    pub tun_name: String,
    /// The routing table the reply rules point to; it holds one default route to the TUN
    /// device per family (1..=4294967295 except 253–255, the kernel's own; default 4242).
    pub route_table: u32,
    /// The priority of the reply-capture rules (1..=32765, before the main table's 32766;
    /// default 1000). The rule that exempts the agent's own packets takes `rule_priority - 1`.
    pub rule_priority: u32,
    /// The firewall mark on the packets the agent sends, so its own reply rules never capture
    /// them again (non-zero; default 0x6d75).
    pub mark: u32,
    /// The TUN device's MTU (576..=65535; default 1500).
    pub tun_mtu: u32,
}
