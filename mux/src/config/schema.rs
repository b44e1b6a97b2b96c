//! The configuration schema: what an operator may write, with the source span of every value
//! `validate` reports on, and plain accessors for the compile step.
//!
//! Every struct denies unknown keys, so a typo (`wieght = 5`) is refused at its line instead of
//! silently falling back to a default. Integers are read as `i64` (TOML's integer type) and
//! range-checked by `validate`, so `port = 70000` gets a message with the allowed range and a
//! fix instead of a bare "expected u16" type error; every other value has its final type.
//!
//! Accessors return plain values with defaults applied. They are meant for a configuration that
//! passed `validate` (the only kind `parse` and `load_file` return); on an unvalidated value an
//! out-of-range integer falls back to the field's default rather than panicking.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_spanned::Spanned;

pub use mux_daemon_kit::config::Protocol;

use mux_daemon_kit::config::values::{IpValue, MacValue, SocketValue};

/// Default `[dataplane] workers`.
pub const DEFAULT_WORKERS: usize = 1;
/// Default `[dataplane] flow_table_capacity` (entries per worker).
pub const DEFAULT_FLOW_TABLE_CAPACITY: usize = 1 << 20;
/// Default `[dataplane] burst_size`.
pub const DEFAULT_BURST_SIZE: usize = 32;
/// Default `[dataplane] mtu`.
pub const DEFAULT_MTU: u16 = 1500;
/// Default `[admin] listen`.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100);
/// Default `maglev_table_size` of a VIP (a prime).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Largest accepted `maglev_table_size` (a prime).
pub const MAX_TABLE_SIZE: u32 = 1_000_003;
/// Most backends one VIP may have.
pub const MAX_BACKENDS_PER_VIP: usize = 65_535;
/// Default backend `weight`.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Largest accepted backend `weight`.
pub const MAX_WEIGHT: u32 = 10_000;
/// Default `[dataplane] icmp_rate` (ICMP errors per second per worker; Linux's
/// `icmp_msgs_per_sec` default).
pub const DEFAULT_ICMP_RATE: u32 = 1000;
/// Default `[dataplane] icmp_burst` (Linux's `icmp_msgs_burst` default).
pub const DEFAULT_ICMP_BURST: u32 = 50;
/// Default `[dataplane] drain_reset_rate` (TCP resets per second per worker).
pub const DEFAULT_DRAIN_RESET_RATE: u32 = 10_000;
/// Default `[dataplane] drain_reset_burst`.
pub const DEFAULT_DRAIN_RESET_BURST: u32 = 1000;
/// Largest accepted reply rate or burst (`icmp_*`, `drain_reset_*`).
pub const MAX_REPLY_RATE: u32 = 1_000_000;
/// Default `[dataplane] idle_poll_us`: how long an idle worker keeps polling after its last
/// packet before it sleeps.
pub const DEFAULT_IDLE_POLL_US: u32 = 100;
/// Largest accepted `[dataplane] idle_poll_us` (100 ms).
pub const MAX_IDLE_POLL_US: u32 = 100_000;
/// Default `[dataplane] idle_sleep_max_us`: the longest one wait of an idle worker.
pub const DEFAULT_IDLE_SLEEP_MAX_US: u32 = 1000;
/// Smallest accepted `[dataplane] idle_sleep_max_us` (below it a sleep is all timer slack).
pub const MIN_IDLE_SLEEP_MAX_US: u32 = 50;
/// Largest accepted `[dataplane] idle_sleep_max_us`: a sleeping worker still loops at least
/// every 10 ms, far inside the smallest liveness timeout (60 ms, judged after two thirds).
pub const MAX_IDLE_SLEEP_MAX_US: u32 = 10_000;
/// Default `[dataplane] second_chance_window_seconds`: how long after a VIP's Maglev table
/// was replaced it may still name a flow's alternative backend.
pub const DEFAULT_SECOND_CHANCE_WINDOW: u32 = 120;
/// Largest accepted `second_chance_window_seconds` (one day).
pub const MAX_SECOND_CHANCE_WINDOW: u32 = 86_400;

/// A parsed MUX configuration. Obtain one from [`super::parse`] or [`super::load_file`].
///
/// Equality compares values only, not source positions, so two loads of files that differ
/// only in comments or layout compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuxConfig {
    pub(crate) mux: Spanned<MuxSection>,
    #[serde(default = "absent")]
    pub(crate) dataplane: Spanned<Dataplane>,
    #[serde(default)]
    pub(crate) tunnel: Tunnel,
    #[serde(default = "absent")]
    pub(crate) next_hop: Spanned<NextHop>,
    #[serde(default)]
    pub(crate) admin: Admin,
    #[serde(default)]
    pub(crate) lifecycle: Lifecycle,
    #[serde(default)]
    pub(crate) bgp: Bgp,
    #[serde(default)]
    pub(crate) timeouts: TimeoutSettings,
    #[serde(default)]
    pub(crate) health: Health,
    #[serde(default = "absent")]
    pub(crate) dpdk: Spanned<super::dpdk::Dpdk>,
    #[serde(default)]
    pub(crate) flow_log: Option<Spanned<super::flow_log::FlowLog>>,
    #[serde(default)]
    pub(crate) vip: Vec<Vip>,
}

/// A section that is not in the file: its empty span says so (a present section's span is
/// its non-empty `[header]`).
fn absent<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

impl MuxConfig {
    /// `[mux] name`, used in logs and metrics.
    pub fn name(&self) -> &str {
        self.mux.get_ref().name.get_ref()
    }

    /// `[dataplane]`.
    pub fn dataplane(&self) -> &Dataplane {
        self.dataplane.get_ref()
    }

    /// `[tunnel]`.
    pub fn tunnel(&self) -> &Tunnel {
        &self.tunnel
    }

    /// `[next_hop]`.
    pub fn next_hop(&self) -> &NextHop {
        self.next_hop.get_ref()
    }

    /// `[admin]`.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// `[lifecycle]`.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// `[bgp]`.
    pub fn bgp(&self) -> &Bgp {
        &self.bgp
    }

    /// `[timeouts]` resolved: the file's values over the built-in defaults.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts.merge_over(&Timeouts::default())
    }

    /// `[health]`: the host agents to poll for backend states.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The `[[vip]]` entries, in file order.
    pub fn vips(&self) -> &[Vip] {
        &self.vip
    }
}

/// `[mux]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MuxSection {
    pub(crate) name: Spanned<String>,
}

/// The packet I/O backend (`[dataplane] io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoKind {
    /// AF_XDP sockets (zero-copy where the driver supports it).
    Afxdp,
    /// AF_PACKET v3 rings: works on any interface; the default.
    #[default]
    Afpacket,
    /// DPDK poll-mode drivers.
    Dpdk,
    /// The in-memory port: tests, benchmarks and the offline demo; needs no interface.
    Mem,
}

impl fmt::Display for IoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoKind::Afxdp => "afxdp",
            IoKind::Afpacket => "afpacket",
            IoKind::Dpdk => "dpdk",
            IoKind::Mem => "mem",
        })
    }
}

/// What a worker does when its queue is empty (`[dataplane] idle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleMode {
    /// Keep polling for `idle_poll_us` after the last packet, then sleep on the queue's wakeup
    /// (at most `idle_sleep_max_us` at a time), giving the core back; the default.
    #[default]
    Adaptive,
    /// Poll without pause: lowest latency, one whole core per worker.
    BusyPoll,
}

impl fmt::Display for IdleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdleMode::Adaptive => "adaptive",
            IdleMode::BusyPoll => "busy-poll",
        })
    }
}

/// `[dataplane]`: packet I/O and worker sizing.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    pub(crate) io: Option<Spanned<IoKind>>,
    pub(crate) interface: Option<Spanned<String>>,
    pub(crate) workers: Option<Spanned<i64>>,
    pub(crate) flow_table_capacity: Option<Spanned<i64>>,
    pub(crate) burst_size: Option<Spanned<i64>>,
    pub(crate) mtu: Option<Spanned<i64>>,
    pub(crate) cpus: Option<Spanned<Vec<i64>>>,
    pub(crate) icmp_rate: Option<Spanned<i64>>,
    pub(crate) icmp_burst: Option<Spanned<i64>>,
    pub(crate) drain_reset_rate: Option<Spanned<i64>>,
    pub(crate) drain_reset_burst: Option<Spanned<i64>>,
    pub(crate) idle: Option<Spanned<IdleMode>>,
    pub(crate) idle_poll_us: Option<Spanned<i64>>,
    pub(crate) idle_sleep_max_us: Option<Spanned<i64>>,
    pub(crate) second_chance_window_seconds: Option<Spanned<i64>>,
    pub(crate) second_chance_state: Option<Spanned<String>>,
}

/// The value of an optional integer field converted to its plain type, or `default`.
pub(crate) fn int_or<T: TryFrom<i64>>(field: &Option<Spanned<i64>>, default: T) -> T {
    field
        .as_ref()
        .and_then(|v| T::try_from(*v.get_ref()).ok())
        .unwrap_or(default)
}

impl Dataplane {
    /// The packet I/O backend; default [`IoKind::Afpacket`].
    pub fn io(&self) -> IoKind {
        self.io.as_ref().map(|v| *v.get_ref()).unwrap_or_default()
    }

    /// The network interface; always `Some` unless `io` is [`IoKind::Mem`].
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_ref().map(|v| v.get_ref().as_str())
    }

    /// Worker threads, one per RX queue; default 1, range 1..=128.
    pub fn workers(&self) -> usize {
        int_or(&self.workers, DEFAULT_WORKERS)
    }

    /// Flow-table entries per worker; default 1 048 576, range 1024..=2^28.
    pub fn flow_table_capacity(&self) -> usize {
        int_or(&self.flow_table_capacity, DEFAULT_FLOW_TABLE_CAPACITY)
    }

    /// Packets per receive burst; default 32, range 1..=256.
    pub fn burst_size(&self) -> usize {
        int_or(&self.burst_size, DEFAULT_BURST_SIZE)
    }

    /// Egress MTU toward the hosts; default 1500, range 1280..=9216.
    pub fn mtu(&self) -> u16 {
        int_or(&self.mtu, DEFAULT_MTU)
    }

    /// ICMP "fragmentation needed" / "packet too big" replies each worker may send per second
    /// (a token bucket, RFC 4443 §2.4 (f)); default 1000, range 0..=1000000 (0: none).
    pub fn icmp_rate(&self) -> u32 {
        int_or(&self.icmp_rate, DEFAULT_ICMP_RATE)
    }

    /// Replies a worker may send at once after a quiet spell (the bucket's depth); default 50,
    /// range 1..=1000000.
    pub fn icmp_burst(&self) -> u32 {
        int_or(&self.icmp_burst, DEFAULT_ICMP_BURST)
    }

    /// TCP resets each worker may send per second to clients of flows whose backend passed its
    /// drain deadline (a bucket of its own); default 10000, range 0..=1000000 (0: none).
    pub fn drain_reset_rate(&self) -> u32 {
        int_or(&self.drain_reset_rate, DEFAULT_DRAIN_RESET_RATE)
    }

    /// Depth of the reset bucket; default 1000, range 1..=1000000.
    pub fn drain_reset_burst(&self) -> u32 {
        int_or(&self.drain_reset_burst, DEFAULT_DRAIN_RESET_BURST)
    }

    /// What an idle worker does; default [`IdleMode::Adaptive`].
    pub fn idle(&self) -> IdleMode {
        self.idle.as_ref().map(|v| *v.get_ref()).unwrap_or_default()
    }

    /// Microseconds an adaptive worker keeps polling after its last packet before it sleeps;
    /// default 100, range 0..=100000.
    pub fn idle_poll_us(&self) -> u32 {
        int_or(&self.idle_poll_us, DEFAULT_IDLE_POLL_US)
    }

    /// The longest one wait of an idle adaptive worker, in microseconds; default 1000, range
    /// 50..=10000.
    pub fn idle_sleep_max_us(&self) -> u32 {
        int_or(&self.idle_sleep_max_us, DEFAULT_IDLE_SLEEP_MAX_US)
    }

    /// How long a VIP's replaced Maglev table may still name the alternative backend of a flow
    /// the MUX has no entry for (second chance); default 120 s, range 0..=86400 (0: never).
    pub fn second_chance_window(&self) -> Duration {
        Duration::from_secs(u64::from(int_or(
            &self.second_chance_window_seconds,
            DEFAULT_SECOND_CHANCE_WINDOW,
        )))
    }

    /// The file the MUX keeps its previous Maglev tables in across restarts; `None`: not kept
    /// (a restarted MUX starts without them).
    pub fn second_chance_state(&self) -> Option<&std::path::Path> {
        self.second_chance_state
            .as_ref()
            .map(|v| std::path::Path::new(v.get_ref().as_str()))
    }

    /// CPUs to pin the workers to (worker i on `cpus[i]`); `None`: not pinned.
    pub fn cpus(&self) -> Option<Vec<usize>> {
        self.cpus
            .as_ref()
            .map(|v| v.get_ref().iter().map(|c| (*c).max(0) as usize).collect())
    }
}

/// `[tunnel]`: outer source addresses of the encapsulated packets.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    pub(crate) source_v4: Option<Spanned<IpValue>>,
    pub(crate) source_v6: Option<Spanned<IpValue>>,
}

impl Tunnel {
    /// Outer source for IPv4 outer headers; `Some` whenever a backend is IPv4.
    pub fn source_v4(&self) -> Option<Ipv4Addr> {
        match self.source_v4.as_ref()?.get_ref().0 {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// Outer source for IPv6 outer headers; `Some` whenever a backend is IPv6.
    pub fn source_v6(&self) -> Option<Ipv6Addr> {
        match self.source_v6.as_ref()?.get_ref().0 {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
}

/// `[next_hop]`: where encapsulated packets are sent on the link.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextHop {
    pub(crate) mac: Option<Spanned<MacValue>>,
    pub(crate) address: Option<Spanned<IpValue>>,
    pub(crate) source_mac: Option<Spanned<MacValue>>,
}

impl NextHop {
    /// The pinned next-hop MAC; when `None`, resolve [`NextHop::address`] through the
    /// neighbour table.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac.as_ref().map(|v| v.get_ref().0)
    }

    /// The next hop's IP address (to resolve its MAC); optional when `mac` is set.
    pub fn address(&self) -> Option<IpAddr> {
        self.address.as_ref().map(|v| v.get_ref().0)
    }

    /// Our source MAC; `None` means the interface's own MAC.
    pub fn source_mac(&self) -> Option<[u8; 6]> {
        self.source_mac.as_ref().map(|v| v.get_ref().0)
    }
}

/// `[admin]`: the admin/metrics endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub(crate) listen: Option<Spanned<SocketValue>>,
}

impl Admin {
    /// Listen address; default `127.0.0.1:9100` (loopback: the endpoint is not exposed unless
    /// the operator says so).
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .as_ref()
            .map_or(DEFAULT_ADMIN_LISTEN, |v| v.get_ref().0)
    }
}

/// Default `[lifecycle] drain_seconds`.
pub const DEFAULT_DRAIN_SECONDS: u32 = 5;
/// Largest accepted `[lifecycle] drain_seconds`.
pub const MAX_DRAIN_SECONDS: u32 = 3600;

/// `[lifecycle]`: how the daemon stops.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub(crate) drain_seconds: Option<Spanned<i64>>,
}

impl Lifecycle {
    /// Seconds the daemon keeps forwarding after withdrawing its routes on SIGTERM, so the
    /// routers move traffic away before the workers stop; default 5.
    pub fn drain_seconds(&self) -> u32 {
        int_or(&self.drain_seconds, DEFAULT_DRAIN_SECONDS)
    }
}

/// Which BGP speaker announces the VIPs (`[bgp] speaker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// Announce nothing (the operator routes VIPs some other way); the default.
    #[default]
    None,
    /// BIRD 2: the MUX writes its VIP routes to `bird_include` and asks BIRD to reconfigure.
    Bird,
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Speaker::None => "none",
            Speaker::Bird => "bird",
        })
    }
}

/// Default `[bgp] bird_socket`.
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";

/// `[bgp]`: VIP announcement through an existing BGP daemon.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    pub(crate) speaker: Option<Spanned<Speaker>>,
    pub(crate) bird_socket: Option<Spanned<String>>,
    pub(crate) bird_include: Option<Spanned<String>>,
    pub(crate) liveness_timeout_ms: Option<Spanned<i64>>,
}

/// Default `[bgp] liveness_timeout_ms`.
pub const DEFAULT_LIVENESS_TIMEOUT_MS: u32 = 300;
/// Smallest and largest accepted `[bgp] liveness_timeout_ms`.
pub const LIVENESS_TIMEOUT_RANGE_MS: (u32, u32) = (60, 10_000);

impl Bgp {
    /// The speaker; default `none`.
    pub fn speaker(&self) -> Speaker {
        self.speaker
            .as_ref()
            .map_or(Speaker::None, |s| *s.get_ref())
    }

    /// BIRD's control socket (`birdc -s`); default `/run/bird/bird.ctl`.
    pub fn bird_socket(&self) -> &str {
        self.bird_socket
            .as_ref()
            .map_or(DEFAULT_BIRD_SOCKET, |s| s.get_ref().as_str())
    }

    /// The file the MUX writes its VIP routes to, included by BIRD's configuration.
    pub fn bird_include(&self) -> Option<&str> {
        self.bird_include.as_ref().map(|s| s.get_ref().as_str())
    }

    /// How long the data path may show no progress (the process dead or stopped, a worker
    /// stuck, the XDP program or DPDK port gone) before its VIP routes are withdrawn; default
    /// 300 ms. The announcement guard (`mux announce-guard`) enforces it from outside the
    /// MUX's process, so it holds even when the MUX cannot act.
    pub fn liveness_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(int_or(
            &self.liveness_timeout_ms,
            DEFAULT_LIVENESS_TIMEOUT_MS,
        )))
    }
}

/// Default `[health] poll_interval_ms`.
pub const DEFAULT_POLL_INTERVAL_MS: u32 = 1000;
/// Default `[health] timeout_ms`.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u32 = 500;
/// Largest accepted `[health] poll_interval_ms` and `timeout_ms`.
pub const MAX_POLL_INTERVAL_MS: u32 = 60_000;
/// Largest accepted `[health] stale_after_ms`.
pub const MAX_STALE_AFTER_MS: u32 = 600_000;

/// `[health]`: the host agents whose backend states the MUX applies (the health feed).
///
/// Without the section, or without any `[[health.agent]]`, nothing is polled and backends take
/// their state from the file alone.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub(crate) poll_interval_ms: Option<Spanned<i64>>,
    pub(crate) timeout_ms: Option<Spanned<i64>>,
    pub(crate) stale_after_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) agent: Vec<HealthAgent>,
}

impl Health {
    /// How often each agent is asked; default 1000 ms, range 100..=60000.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(u64::from(int_or(
            &self.poll_interval_ms,
            DEFAULT_POLL_INTERVAL_MS,
        )))
    }

    /// How long one poll may take; range 10..=60000 and at most the poll interval; default
    /// 500 ms, or the poll interval when that is shorter (so a short interval alone is valid).
    pub fn timeout(&self) -> Duration {
        match &self.timeout_ms {
            Some(_) => Duration::from_millis(u64::from(int_or(
                &self.timeout_ms,
                DEFAULT_HEALTH_TIMEOUT_MS,
            ))),
            None => self
                .poll_interval()
                .min(Duration::from_millis(u64::from(DEFAULT_HEALTH_TIMEOUT_MS))),
        }
    }

    /// How long an agent may stay unanswered before its backends count as failed; default
    /// three poll intervals, range poll interval..=600000 ms.
    pub fn stale_after(&self) -> Duration {
        match self
            .stale_after_ms
            .as_ref()
            .and_then(|v| u64::try_from(*v.get_ref()).ok())
        {
            Some(ms) => Duration::from_millis(ms),
            None => self.poll_interval() * 3,
        }
    }

    /// The agents' admin endpoints, in file order (distinct after validation).
    pub fn agents(&self) -> Vec<SocketAddr> {
        self.agent.iter().map(HealthAgent::address).collect()
    }
}

/// One `[[health.agent]]`: a host agent's admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthAgent {
    pub(crate) address: Spanned<SocketValue>,
}

impl HealthAgent {
    /// Where the agent serves `GET /v1/backends`.
    pub fn address(&self) -> SocketAddr {
        self.address.get_ref().0
    }
}

/// Default `failed_backend_grace` in seconds.
pub const DEFAULT_FAILED_BACKEND_GRACE: u32 = 5;
/// Largest accepted `failed_backend_grace` in seconds.
pub const MAX_FAILED_BACKEND_GRACE: u32 = 3600;

/// Flow timeouts in seconds, resolved (every field set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// A TCP flow that has seen only a SYN; default 5.
    pub tcp_syn: u32,
    /// An established TCP flow; default 300.
    pub tcp_established: u32,
    /// A TCP flow that has seen a FIN or RST; default 10.
    pub tcp_closing: u32,
    /// A UDP flow; default 30.
    pub udp: u32,
    /// How long the flows pinned to a backend the health feed failed keep going to it (so a
    /// restarting host agent or a blip breaks nothing) before they are re-hashed; default 5,
    /// 0 = re-hash at once. New flows avoid a failed backend at once regardless.
    pub failed_backend_grace: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 5,
            tcp_established: 300,
            tcp_closing: 10,
            udp: 30,
            failed_backend_grace: DEFAULT_FAILED_BACKEND_GRACE,
        }
    }
}

/// Largest accepted timeout, in seconds (one day).
pub const MAX_TIMEOUT_SECS: u32 = 86_400;

/// A `[timeouts]` table or a VIP's `timeouts = { ... }`: any subset of the fields.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSettings {
    pub(crate) tcp_syn: Option<Spanned<i64>>,
    pub(crate) tcp_established: Option<Spanned<i64>>,
    pub(crate) tcp_closing: Option<Spanned<i64>>,
    pub(crate) udp: Option<Spanned<i64>>,
    pub(crate) failed_backend_grace: Option<Spanned<i64>>,
}

impl TimeoutSettings {
    /// The fields that are set override `base`.
    pub fn merge_over(&self, base: &Timeouts) -> Timeouts {
        Timeouts {
            tcp_syn: int_or(&self.tcp_syn, base.tcp_syn),
            tcp_established: int_or(&self.tcp_established, base.tcp_established),
            tcp_closing: int_or(&self.tcp_closing, base.tcp_closing),
            udp: int_or(&self.udp, base.udp),
            failed_backend_grace: int_or(&self.failed_backend_grace, base.failed_backend_grace),
        }
    }

    /// The idle-timeout fields with their names, for validation (`failed_backend_grace` has a
    /// range of its own).
    pub(crate) fn idle_fields(&self) -> [(&'static str, &Option<Spanned<i64>>); 4] {
        [
            ("tcp_syn", &self.tcp_syn),
            ("tcp_established", &self.tcp_established),
            ("tcp_closing", &self.tcp_closing),
            ("udp", &self.udp),
        ]
    }
}

/// One `[[vip]]`: a virtual IP, port and protocol and the backends behind it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<IpValue>,
    pub(crate) port: Spanned<i64>,
    pub(crate) protocol: Spanned<Protocol>,
    pub(crate) maglev_table_size: Option<Spanned<i64>>,
    pub(crate) timeouts: Option<Spanned<TimeoutSettings>>,
    pub(crate) load_aware: Option<Spanned<LoadAwareSettings>>,
    #[serde(default)]
    pub(crate) backend: Vec<Backend>,
}

/// What load-aware weights even out (`[vip.load_aware] signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadSignal {
    /// Connections each backend carries, as its host agent counts them; the default.
    #[default]
    Connections,
    /// Bytes per second through each backend, both directions.
    Bytes,
}

impl fmt::Display for LoadSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadSignal::Connections => "connections",
            LoadSignal::Bytes => "bytes",
        })
    }
}

/// `[vip.load_aware]` as written; [`Vip::load_aware`] resolves it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadAwareSettings {
    pub(crate) signal: Option<Spanned<LoadSignal>>,
    pub(crate) min_percent: Option<Spanned<i64>>,
    pub(crate) max_percent: Option<Spanned<i64>>,
    pub(crate) max_step_percent: Option<Spanned<i64>>,
    pub(crate) hysteresis_percent: Option<Spanned<i64>>,
    pub(crate) interval_seconds: Option<Spanned<i64>>,
}

/// Load-aware weights of one VIP (opt-in): each active backend's effective Maglev weight is
/// its configured weight times a factor the MUX moves from the load the host agents report,
/// within bounds (`docs/operations.md`, "Load-aware weights").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadAware {
    /// What is evened out.
    pub signal: LoadSignal,
    /// Smallest factor (default 0.25).
    pub min_factor: f64,
    /// Largest factor (default 4).
    pub max_factor: f64,
    /// Largest relative change of a factor per interval (default 0.25: ±25 %), whatever the
    /// correction, leak and rescaling together ask for.
    pub max_step: f64,
    /// A backend within this relative distance of the VIP's average load per unit of
    /// configured weight gets no correction of its own; when every backend is, nothing moves
    /// (default 0.1).
    pub hysteresis: f64,
    /// How often factors are revised (default 10 s).
    pub interval: std::time::Duration,
}

/// `[vip.load_aware]` ranges: (key, default, min, max).
pub(crate) const LOAD_AWARE_RANGES: [(&str, i64, i64, i64); 5] = [
    ("min_percent", 25, 1, 100),
    ("max_percent", 400, 100, 1000),
    ("max_step_percent", 25, 1, 100),
    ("hysteresis_percent", 10, 0, 100),
    ("interval_seconds", 10, 1, 3600),
];

impl LoadAwareSettings {
    /// The integer fields with their keys, in [`LOAD_AWARE_RANGES`] order.
    pub(crate) fn fields(&self) -> [(&'static str, &Option<Spanned<i64>>); 5] {
        [
            ("min_percent", &self.min_percent),
            ("max_percent", &self.max_percent),
            ("max_step_percent", &self.max_step_percent),
            ("hysteresis_percent", &self.hysteresis_percent),
            ("interval_seconds", &self.interval_seconds),
        ]
    }

    fn resolve(&self) -> LoadAware {
        let v = |i: usize| int_or(self.fields()[i].1, LOAD_AWARE_RANGES[i].1) as f64;
        LoadAware {
            signal: self
                .signal
                .as_ref()
                .map(|s| *s.get_ref())
                .unwrap_or_default(),
            min_factor: v(0) / 100.0,
            max_factor: v(1) / 100.0,
            max_step: v(2) / 100.0,
            hysteresis: v(3) / 100.0,
            interval: std::time::Duration::from_secs(v(4) as u64),
        }
    }
}

impl Vip {
    /// The VIP's unique name.
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// The virtual IP address clients connect to.
    pub fn address(&self) -> IpAddr {
        self.address.get_ref().0
    }

    /// The port clients connect to (1..=65535).
    pub fn port(&self) -> u16 {
        u16::try_from(*self.port.get_ref()).unwrap_or(0)
    }

    /// TCP or UDP.
    pub fn protocol(&self) -> Protocol {
        *self.protocol.get_ref()
    }

    /// The Maglev lookup-table size, a prime; default 65 537.
    pub fn table_size(&self) -> u32 {
        int_or(&self.maglev_table_size, DEFAULT_TABLE_SIZE)
    }

    /// This VIP's timeouts: its own overrides over `defaults` (normally
    /// [`MuxConfig::timeouts`]).
    pub fn timeouts(&self, defaults: &Timeouts) -> Timeouts {
        match &self.timeouts {
            Some(overrides) => overrides.get_ref().merge_over(defaults),
            None => *defaults,
        }
    }

    /// The backends, in file order (never empty after validation).
    pub fn backends(&self) -> &[Backend] {
        &self.backend
    }

    /// Load-aware weights, when `[vip.load_aware]` is present.
    pub fn load_aware(&self) -> Option<LoadAware> {
        self.load_aware.as_ref().map(|s| s.get_ref().resolve())
    }
}

/// Whether a backend takes new flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows in proportion to its weight; the default.
    #[default]
    Active,
    /// Takes no new flows; flows it already has keep going to it.
    Draining,
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
        })
    }
}

/// One `[[vip.backend]]`: a DIP (host agent address) behind a VIP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub(crate) address: Spanned<IpValue>,
    pub(crate) weight: Option<Spanned<i64>>,
    pub(crate) state: Option<Spanned<BackendState>>,
    pub(crate) drain_deadline: Option<Spanned<toml::value::Datetime>>,
}

impl Backend {
    /// The DIP; IPv4 or IPv6, independent of the VIP's family.
    pub fn address(&self) -> IpAddr {
        self.address.get_ref().0
    }

    /// Relative share of new flows, 0..=10000; default 100.
    pub fn weight(&self) -> u32 {
        int_or(&self.weight, DEFAULT_WEIGHT)
    }

    /// Active or draining; default active.
    pub fn state(&self) -> BackendState {
        self.state
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or_default()
    }

    /// For a draining backend, the moment from which it receives nothing: its remaining TCP
    /// flows are reset, its UDP flows re-hashed. `None`: its flows stay until they end. Only
    /// an offset date-time (`2026-12-05T10:00:00Z`) passes validation.
    pub fn drain_deadline(&self) -> Option<SystemTime> {
        let ms = offset_datetime_unix_ms(self.drain_deadline.as_ref()?.get_ref())?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
    }

    /// True when the backend should receive new flows: active with a non-zero weight.
    pub fn takes_new_flows(&self) -> bool {
        self.state() == BackendState::Active && self.weight() > 0
    }
}

/// Milliseconds since the Unix epoch of a TOML offset date-time (`None` for local date-times,
/// dates and times, which name no instant). May be negative (before 1970).
pub(crate) fn offset_datetime_unix_ms(dt: &toml::value::Datetime) -> Option<i64> {
    use toml::value::Offset;
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let millis = i64::from(time.nanosecond.unwrap_or(0) / 1_000_000);
    Some((seconds - offset_minutes * 60) * 1000 + millis)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
