//! The service table: which tunnels the agent accepts and which rewrites it may do.
//!
//! Built once from a validated configuration (off the data path) and then only read. It is the
//! whole "no open relay" policy in one place: a packet is decapsulated only from a
//! [`ServiceTable::is_tunnel_source`] (a MUX, or a peer agent forwarding a second-chance
//! packet) to a [`ServiceTable::is_dip`], its destination rewritten
//! only when (outer destination, inner destination, port, protocol) is a configured service,
//! and a reply's source only when (source, port, protocol) is a service's backend.
//!
//! Lookups hash a fixed-size key (addresses as [`IpAddr`], no strings): no allocation per
//! packet. `hashbrown`'s default hasher is fine here — nothing outside this process depends on
//! the hash. Rejected alternative: a linear scan of the services, as fast for the handful a
//! host usually has but quadratic in the worst case a config allows.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};
use mux_daemon_kit::config::Protocol;

use crate::config::{DEFAULT_TIMEOUTS, HostAgentConfig, Timeouts, TunnelSources};

/// One service as the data path uses it: the VIP side and the backend side of the rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    /// The VIP clients address.
    pub vip: IpAddr,
    /// The VIP's port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The outer destination the MUX tunnels to.
    pub dip: IpAddr,
    /// The address the backend receives on and replies from (the VIP's family).
    pub backend_address: IpAddr,
    /// The port the backend listens on.
    pub backend_port: u16,
}

/// Why a set of services cannot be turned into a table (a validated config never hits these).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Two services share (dip, vip, port, protocol): a packet could go to either.
    #[error("two services for {vip} port {port} via dip {dip}; keep one")]
    DuplicateService {
        /// The VIP.
        vip: IpAddr,
        /// The port.
        port: u16,
        /// The DIP.
        dip: IpAddr,
    },
    /// Two services share (backend address, backend port, protocol): their replies cannot be
    /// told apart.
    #[error("two services reply from {address} port {port}; give each its own backend port")]
    DuplicateBackend {
        /// The backend address.
        address: IpAddr,
        /// The backend port.
        port: u16,
    },
    /// The backend address is not of the VIP's family, so it cannot replace the VIP in the
    /// packet's header.
    #[error("backend address {backend} is not of the same family as vip {vip}")]
    FamilyMismatch {
        /// The VIP.
        vip: IpAddr,
        /// The backend address.
        backend: IpAddr,
    },
}

/// The immutable lookup structures of the data path.
#[derive(Clone, Debug)]
pub struct ServiceTable {
    /// MUX sources and peer agents: every accepted outer source.
    tunnel_sources: HashSet<IpAddr>,
    /// This agent's own sources, per family, for the packets it forwards.
    own_sources: TunnelSources,
    /// Per service (same order as `services`): its connection timeouts.
    timeouts: Box<[Timeouts]>,
    dips: HashSet<IpAddr>,
    backend_addresses: HashSet<IpAddr>,
    services: Box<[ServiceSpec]>,
    /// (dip, vip, port, protocol number) → index into `services`.
    inbound: HashMap<(IpAddr, IpAddr, u16, u8), usize>,
    /// (backend address, backend port, protocol number) → index into `services`.
    outbound: HashMap<(IpAddr, u16, u8), usize>,
}

impl ServiceTable {
    /// Builds a table from the accepted tunnel sources and the services (in order: service
    /// counters are indexed the same way).
    pub fn new(
        mux_sources: impl IntoIterator<Item = IpAddr>,
        services: impl IntoIterator<Item = ServiceSpec>,
    ) -> Result<Self, TableError> {
        let services: Box<[ServiceSpec]> = services.into_iter().collect();
        let mut inbound = HashMap::with_capacity(services.len());
        let mut outbound = HashMap::with_capacity(services.len());
        for (index, s) in services.iter().enumerate() {
            if s.vip.is_ipv4() != s.backend_address.is_ipv4() {
                return Err(TableError::FamilyMismatch {
                    vip: s.vip,
                    backend: s.backend_address,
                });
            }
            let proto = s.protocol.number();
            if inbound
                .insert((s.dip, s.vip, s.port, proto), index)
                .is_some()
            {
                return Err(TableError::DuplicateService {
                    vip: s.vip,
                    port: s.port,
                    dip: s.dip,
                });
            }
            if outbound
                .insert((s.backend_address, s.backend_port, proto), index)
                .is_some()
            {
                return Err(TableError::DuplicateBackend {
                    address: s.backend_address,
                    port: s.backend_port,
                });
            }
        }
        Ok(ServiceTable {
            tunnel_sources: mux_sources.into_iter().collect(),
            own_sources: TunnelSources::default(),
            timeouts: vec![DEFAULT_TIMEOUTS; services.len()].into_boxed_slice(),
            dips: services.iter().map(|s| s.dip).collect(),
            backend_addresses: services.iter().map(|s| s.backend_address).collect(),
            services,
            inbound,
            outbound,
        })
    }

    /// The table of a configuration (which `parse`/`load_file` validated, so this succeeds).
    pub fn from_config(config: &HostAgentConfig) -> Result<Self, TableError> {
        let services = config.services().iter().map(|s| ServiceSpec {
            vip: s.vip(),
            port: s.port(),
            protocol: s.protocol(),
            dip: s.dip(),
            backend_address: s.backend_address(),
            backend_port: s.backend_port(),
        });
        let defaults = config.timeouts();
        let timeouts: Vec<Timeouts> = config
            .services()
            .iter()
            .map(|s| s.timeouts(&defaults))
            .collect();
        Ok(Self::new(config.mux_sources(), services)?
            .with_peers(config.peers())
            .with_own_sources(config.tunnel_sources())
            .with_timeouts(&timeouts))
    }

    /// Also accepts tunnel packets from `peers`: other host agents forwarding second-chance
    /// packets (`[[tunnel.peer]]`).
    pub fn with_peers(mut self, peers: impl IntoIterator<Item = IpAddr>) -> Self {
        self.tunnel_sources.extend(peers);
        self
    }

    /// Sets this agent's own tunnel sources (`[tunnel] source_v4` / `source_v6`): the outer
    /// source of the packets it forwards. Without one for a family, packets that would be
    /// forwarded to that family are delivered.
    pub fn with_own_sources(mut self, sources: TunnelSources) -> Self {
        self.own_sources = sources;
        self
    }

    /// Sets each service's connection timeouts, in service order (services beyond `timeouts`
    /// keep [`DEFAULT_TIMEOUTS`]).
    pub fn with_timeouts(mut self, timeouts: &[Timeouts]) -> Self {
        for (slot, t) in self.timeouts.iter_mut().zip(timeouts) {
            *slot = *t;
        }
        self
    }

    /// The connection timeouts of service `index` ([`DEFAULT_TIMEOUTS`] for an index the table
    /// did not hand out).
    #[inline]
    pub fn timeouts(&self, index: usize) -> &Timeouts {
        self.timeouts.get(index).unwrap_or(&DEFAULT_TIMEOUTS)
    }

    /// This agent's own tunnel sources.
    #[inline]
    pub fn own_sources(&self) -> TunnelSources {
        self.own_sources
    }

    /// The services, in configuration order (the order of the per-service counters).
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    /// Whether `addr` is an accepted outer source: a MUX or a peer agent.
    #[inline]
    pub fn is_tunnel_source(&self, addr: IpAddr) -> bool {
        self.tunnel_sources.contains(&addr)
    }

    /// Whether `addr` is the dip of some service.
    #[inline]
    pub fn is_dip(&self, addr: IpAddr) -> bool {
        self.dips.contains(&addr)
    }

    /// Whether `addr` is the backend address of some service.
    #[inline]
    pub fn is_backend_address(&self, addr: IpAddr) -> bool {
        self.backend_addresses.contains(&addr)
    }

    /// The service a tunnelled packet to `dip` for `vip:port` over IP protocol `protocol`
    /// belongs to, with its index.
    #[inline]
    pub fn inbound(
        &self,
        dip: IpAddr,
        vip: IpAddr,
        port: u16,
        protocol: u8,
    ) -> Option<(usize, &ServiceSpec)> {
        let index = *self.inbound.get(&(dip, vip, port, protocol))?;
        Some((index, self.services.get(index)?))
    }

    /// The service whose backend sends from `address:port` over IP protocol `protocol`, with
    /// its index.
    #[inline]
    pub fn outbound(
        &self,
        address: IpAddr,
        port: u16,
        protocol: u8,
    ) -> Option<(usize, &ServiceSpec)> {
        let index = *self.outbound.get(&(address, port, protocol))?;
        Some((index, self.services.get(index)?))
    }
}
