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
use std::path::PathBuf;
use std::time::Duration;

use mux_daemon_kit::config::Protocol;
pub(crate) use mux_daemon_kit::config::values::{IpValue, SocketValue};
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
/// Default `[connections] capacity`: connections the agent can remember at once.
pub const DEFAULT_CONNECTION_CAPACITY: usize = 262_144;
/// The directory of the default `[connections] state_file` (`<dir>/<agent name>.connections`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hostagent";
/// Default connection timeouts (`[timeouts]`), in seconds. Longer than the MUX's on purpose:
/// the agent's table is what still recognises a connection after the MUX forgot it (see
/// `docs/second-chance.md`).
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    tcp_syn: 30,
    tcp_established: 7200,
    tcp_closing: 60,
    udp: 300,
};
/// Largest accepted timeout, in seconds (a week).
pub const MAX_TIMEOUT_SECS: u32 = 604_800;

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
    #[serde(default)]
    pub(crate) connections: ConnectionsSection,
    #[serde(default)]
    pub(crate) timeouts: TimeoutSettings,
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

    /// `[tunnel] source_v4` / `source_v6`: the outer source of the packets this agent forwards
    /// to a peer (second chance), per family; `None` where not configured.
    pub fn tunnel_sources(&self) -> TunnelSources {
        let t = self.tunnel.get_ref();
        TunnelSources {
            v4: t.source_v4.as_ref().map(|a| a.get_ref().0),
            v6: t.source_v6.as_ref().map(|a| a.get_ref().0),
        }
    }

    /// `[[tunnel.peer]] address`es: other agents' tunnel sources, whose forwarded packets
    /// this agent decapsulates like a MUX's. In file order.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.tunnel
            .get_ref()
            .peer
            .iter()
            .map(|p| p.address.get_ref().0)
            .collect()
    }

    /// `[connections]` resolved: the file's values over the defaults. A relative `state_file`
    /// is returned as written; the daemon resolves it against the configuration file's
    /// directory.
    pub fn connections(&self) -> ConnectionSettings {
        let c = &self.connections;
        ConnectionSettings {
            capacity: int_or(&c.capacity, DEFAULT_CONNECTION_CAPACITY),
            state_file: c.state_file.as_ref().map_or_else(
                || PathBuf::from(DEFAULT_STATE_DIR).join(format!("{}.connections", self.name())),
                |p| PathBuf::from(p.get_ref()),
            ),
        }
    }

    /// `[timeouts]` resolved over [`DEFAULT_TIMEOUTS`]: what every service uses unless its own
    /// `timeouts` overrides a field.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts.merge_over(&DEFAULT_TIMEOUTS)
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
    pub(crate) source_v4: Option<Spanned<IpValue>>,
    pub(crate) source_v6: Option<Spanned<IpValue>>,
    #[serde(default)]
    pub(crate) peer: Vec<Peer>,
}

/// One `[[tunnel.peer]]`: another host agent that may forward packets to this one.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Peer {
    pub(crate) address: Spanned<IpValue>,
}

/// This agent's own tunnel source per family (`[tunnel] source_v4` / `source_v6`): the outer
/// source of the packets it forwards to a peer agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSources {
    /// `source_v4`: used for a forward to an IPv4 alternative.
    pub v4: Option<IpAddr>,
    /// `source_v6`: used for a forward to an IPv6 alternative.
    pub v6: Option<IpAddr>,
}

impl TunnelSources {
    /// The source for a packet to `destination`'s family.
    #[inline]
    pub fn for_family_of(&self, destination: IpAddr) -> Option<IpAddr> {
        if destination.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

/// `[connections]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionsSection {
    pub(crate) capacity: Option<Spanned<i64>>,
    pub(crate) state_file: Option<Spanned<String>>,
}

/// `[connections]` resolved: the table of connections this agent carries (second chance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// How many connections the table holds (1024..=16777216; default 262144). Fixed at
    /// start: a reload that changes it takes effect on restart.
    pub capacity: usize,
    /// Where the table is saved every second and at a clean exit, and read at start (default
    /// `/var/lib/hostagent/<agent name>.connections`; relative to the configuration file's
    /// directory when relative).
    pub state_file: PathBuf,
}

/// Idle timeouts of the connection table, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// A TCP connection of which only SYN / SYN-ACK has been seen (default 30).
    pub tcp_syn: u32,
    /// An established TCP connection (default 7200).
    pub tcp_established: u32,
    /// A TCP connection that has seen a FIN or RST (default 60).
    pub tcp_closing: u32,
    /// A UDP flow (default 300).
    pub udp: u32,
}

/// A `[timeouts]` table or a service's `timeouts = { ... }`: any subset of the fields.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeoutSettings {
    pub(crate) tcp_syn: Option<Spanned<i64>>,
    pub(crate) tcp_established: Option<Spanned<i64>>,
    pub(crate) tcp_closing: Option<Spanned<i64>>,
    pub(crate) udp: Option<Spanned<i64>>,
}

impl TimeoutSettings {
    /// The fields that are set, over `base`.
    pub(crate) fn merge_over(&self, base: &Timeouts) -> Timeouts {
        Timeouts {
            tcp_syn: int_or(&self.tcp_syn, base.tcp_syn),
            tcp_established: int_or(&self.tcp_established, base.tcp_established),
            tcp_closing: int_or(&self.tcp_closing, base.tcp_closing),
            udp: int_or(&self.udp, base.udp),
        }
    }

    /// Every field with its key, for validation.
    pub(crate) fn fields(&self) -> [(&'static str, &Option<Spanned<i64>>); 4] {
        [
            ("tcp_syn", &self.tcp_syn),
            ("tcp_established", &self.tcp_established),
            ("tcp_closing", &self.tcp_closing),
            ("udp", &self.udp),
        ]
    }
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
    pub(crate) timeouts: Option<TimeoutSettings>,
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

    /// This service's connection timeouts: its `timeouts = { ... }` over `defaults` (the
    /// resolved `[timeouts]`, [`HostAgentConfig::timeouts`]).
    pub fn timeouts(&self, defaults: &Timeouts) -> Timeouts {
        self.timeouts
            .as_ref()
            .map_or(*defaults, |t| t.merge_over(defaults))
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
