//! Compiling a validated configuration into a forwarding snapshot.
//!
//! This is where the expensive work happens, off the data path: Maglev tables are built,
//! backends get their stable ids, addresses are put in canonical form. The result is an
//! immutable [`Snapshot`] the workers adopt between bursts. `check-config`, `replay`, the
//! daemon's start and its reload all go through this one function.

use mux_shared::checksum;
use mux_shared::config::{self, MuxConfig};
use mux_shared::flow_key::canonical_addr;
use mux_shared::maglev::{self, MaglevBackend};

use crate::control::registry::{IdsExhausted, Registry};
use crate::dataplane::rate_limit::RateLimit;
use crate::dataplane::snapshot::{
    Backend, BackendState, FlowTimeouts, Snapshot, SnapshotParts, Vip, VipKey,
};

/// Inputs that do not come from the file.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Next hop MAC resolved from the neighbour table (used when the config does not pin one).
    pub next_hop_mac: Option<[u8; 6]>,
    /// The interface's MAC (used when the config does not pin `source_mac`).
    pub source_mac: Option<[u8; 6]>,
    /// Backends reported failed by health checks, as (VIP name, backend address).
    pub failed: Vec<(String, std::net::IpAddr)>,
}

/// Why a valid configuration could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A Maglev table could not be built.
    #[error("vip \"{vip}\": cannot build its Maglev table: {source}")]
    Maglev {
        /// The VIP's name.
        vip: String,
        /// What the builder said.
        source: maglev::MaglevError,
    },
    /// Backend ids ran out.
    #[error(transparent)]
    Ids(#[from] IdsExhausted),
}

/// Builds the snapshot for `cfg`, assigning ids through `registry`.
pub fn compile(
    cfg: &MuxConfig,
    registry: &mut Registry,
    generation: u64,
    options: &CompileOptions,
) -> Result<Snapshot, CompileError> {
    let defaults = cfg.timeouts();
    let mut vips = Vec::with_capacity(cfg.vips().len());
    let mut backends: Vec<Option<Backend>> = Vec::new();

    for v in cfg.vips() {
        let key = VipKey {
            addr: canonical_addr(v.address()),
            port: v.port(),
            protocol: v.protocol().number(),
        };
        let vip_id = registry.vip_id(key);
        let mut ids = Vec::with_capacity(v.backends().len());
        let mut addrs = Vec::with_capacity(v.backends().len());
        for b in v.backends() {
            let address = canonical_addr(b.address());
            let id = registry.backend_id(vip_id, address)?;
            let failed = options
                .failed
                .iter()
                .any(|(name, addr)| name == v.name() && *addr == b.address());
            let state = match (failed, b.state()) {
                (true, _) => BackendState::Failed,
                (false, config::BackendState::Active) => BackendState::Active,
                (false, config::BackendState::Draining) => BackendState::Draining,
            };
            let slot = id as usize;
            if backends.len() <= slot {
                backends.resize_with(slot + 1, || None);
            }
            backends[slot] = Some(Backend {
                vip_id,
                address,
                is_v4: b.address().is_ipv4(),
                state,
                weight: b.weight(),
                label: format!("{}/{}", v.name(), b.address()),
                outer_v4_address_sum: match (cfg.tunnel().source_v4(), b.address()) {
                    (Some(src), std::net::IpAddr::V4(dst)) => {
                        checksum::sum(&src.octets()) + checksum::sum(&dst.octets())
                    }
                    _ => 0,
                },
            });
            ids.push(id);
            addrs.push((address, state == BackendState::Active, b.weight()));
        }

        // Maglev over the backends that take new flows.
        let mut maglev_backends = Vec::new();
        let mut members = Vec::new();
        for (i, (addr, active, weight)) in addrs.iter().enumerate() {
            if *active && *weight > 0 {
                maglev_backends.push(ids[i]);
                members.push(MaglevBackend {
                    id: addr.as_slice(),
                    weight: *weight,
                });
            }
        }
        let table = if members.is_empty() {
            None
        } else {
            Some(maglev::build(&members, v.table_size()).map_err(|source| {
                CompileError::Maglev {
                    vip: v.name().to_string(),
                    source,
                }
            })?)
        };
        let t = v.timeouts(&defaults);
        vips.push(Vip {
            id: vip_id,
            name: v.name().to_string(),
            key,
            timeouts: FlowTimeouts {
                tcp_syn: t.tcp_syn,
                tcp_established: t.tcp_established,
                tcp_closing: t.tcp_closing,
                udp: t.udp,
            },
            maglev: table,
            maglev_backends,
        });
    }
    backends.resize_with(registry.backend_count(), || None);

    let next_hop = cfg.next_hop();
    Ok(Snapshot::new(SnapshotParts {
        generation,
        vips,
        backends,
        tunnel_v4: cfg.tunnel().source_v4().map(|a| a.octets()),
        tunnel_v6: cfg.tunnel().source_v6().map(|a| a.octets()),
        next_hop_mac: next_hop.mac().or(options.next_hop_mac).unwrap_or([0; 6]),
        source_mac: next_hop
            .source_mac()
            .or(options.source_mac)
            .unwrap_or([0; 6]),
        mtu: cfg.dataplane().mtu() as usize,
        vip_ids: registry.vip_count(),
        icmp_limit: RateLimit {
            per_second: cfg.dataplane().icmp_rate(),
            burst: cfg.dataplane().icmp_burst(),
        },
        drain_reset_limit: RateLimit {
            per_second: cfg.dataplane().drain_reset_rate(),
            burst: cfg.dataplane().drain_reset_burst(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[mux]
name = "t"
[dataplane]
io = "mem"
[tunnel]
source_v4 = "10.0.0.11"
[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
  [[vip.backend]]
  address = "10.1.0.3"
"#;

    /// Slots of the table held by each backend id.
    fn slots_by_backend(snap: &Snapshot) -> Vec<(u32, u32)> {
        let vip = &snap.parts.vips[0];
        let table = vip.maglev.as_ref().expect("a table");
        let counts = table.slot_counts(vip.maglev_backends.len());
        vip.maglev_backends.iter().copied().zip(counts).collect()
    }

    #[test]
    fn a_failed_backend_gets_no_maglev_slots() {
        let cfg = config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let mut registry = Registry::default();
        let healthy = compile(&cfg, &mut registry, 1, &CompileOptions::default()).unwrap();
        let before = slots_by_backend(&healthy);
        assert_eq!(before.len(), 3);
        assert!(before.iter().all(|(_, n)| *n > 0));

        let failed_addr: std::net::IpAddr = "10.1.0.2".parse().unwrap();
        let options = CompileOptions {
            failed: vec![("web".to_string(), failed_addr)],
            ..CompileOptions::default()
        };
        let sick = compile(&cfg, &mut registry, 2, &options).unwrap();
        let failed_id = sick
            .parts
            .backends
            .iter()
            .position(|b| {
                b.as_ref()
                    .is_some_and(|b| b.address == canonical_addr(failed_addr))
            })
            .expect("the failed backend keeps its id") as u32;
        let b = sick.parts.backends[failed_id as usize].as_ref().unwrap();
        assert_eq!(b.state, BackendState::Failed);
        assert!(!b.keeps_flows(), "its flows are re-hashed");
        let after = slots_by_backend(&sick);
        assert_eq!(after.len(), 2);
        assert!(after.iter().all(|(id, _)| *id != failed_id));
        assert_eq!(after.iter().map(|(_, n)| n).sum::<u32>(), 1009);
        // An entry names its VIP: the same address under another VIP's name changes nothing.
        let other = CompileOptions {
            failed: vec![("dns".to_string(), failed_addr)],
            ..CompileOptions::default()
        };
        let unaffected = compile(&cfg, &mut registry, 3, &other).unwrap();
        assert_eq!(slots_by_backend(&unaffected), before);
    }

    #[test]
    fn every_backend_failed_leaves_the_vip_without_a_table() {
        let cfg = config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let failed = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
            .iter()
            .map(|a| ("web".to_string(), a.parse().unwrap()))
            .collect();
        let options = CompileOptions {
            failed,
            ..CompileOptions::default()
        };
        let snap = compile(&cfg, &mut Registry::default(), 1, &options).unwrap();
        assert!(snap.parts.vips[0].maglev.is_none());
        assert!(snap.parts.vips[0].maglev_backends.is_empty());
    }
}
