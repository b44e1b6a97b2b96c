//! `io = "dpdk"`: the MUX config's `[dpdk]` section turned into a running [`DpdkRuntime`]
//! (cargo feature `dpdk`).
//!
//! The daemon starts the runtime before anything else that needs the NIC (its MAC is the
//! encapsulated frames' source), hands each worker an `Arc` of it to open its queue pair on
//! its own thread, and drops it after the workers have stopped, which closes the devices.
//!
//! The exception path is a TAP interface named by `[dataplane] interface` (DPDK's `net_tap`
//! driver, with one queue pair per worker and the NIC's MAC): the kernel sees the NIC through
//! it, so the host's addresses, ARP, BGP and SSH are configured on that interface. `[dpdk]
//! exception_device` replaces the TAP with another device (tests use a capture).

use std::sync::Arc;

use crate::config::{DPDK_EXCEPTION_DESCRIPTORS, MuxConfig};
use mux_ports::MIN_HEADROOM;
use mux_ports::dpdk::{DeviceConfig, DpdkPort, DpdkRuntime, EalConfig, RuntimeConfig};

/// Largest frame an mbuf must hold beyond the MTU: Ethernet with two VLAN tags, and the
/// outer IPv6 header the encapsulation adds (which goes into the headroom, not here).
const FRAME_OVERHEAD: usize = 14 + 8;

/// What the runtime is started with, from `cfg`.
pub fn runtime_config(cfg: &MuxConfig) -> RuntimeConfig {
    let d = cfg.dpdk();
    let dp = cfg.dataplane();
    let exception = match (d.exception_device(), dp.interface()) {
        (Some(spec), _) => Some(spec.to_string()),
        (None, Some(tap)) => Some(format!("net_tap_mux,iface={tap}")),
        (None, None) => None,
    };
    let frame = (usize::from(dp.mtu()) + FRAME_OVERHEAD).max(2048);
    RuntimeConfig {
        eal: EalConfig {
            file_prefix: d.file_prefix(cfg.name()),
            hugepages: d.hugepages(),
            memory_mb: d.memory_mb(),
            devices: Vec::new(),
            extra: d.eal_args(),
        },
        nic: DeviceConfig {
            spec: d.device().unwrap_or_default().to_string(),
            rx_descriptors: d.rx_descriptors(),
            tx_descriptors: d.tx_descriptors(),
        },
        exception: exception.map(|spec| DeviceConfig {
            spec,
            rx_descriptors: DPDK_EXCEPTION_DESCRIPTORS,
            tx_descriptors: DPDK_EXCEPTION_DESCRIPTORS,
        }),
        queues: dp.workers() as u16,
        mbufs: d.mbufs(),
        mbuf_cache: d.mbuf_cache(),
        data_room: (MIN_HEADROOM + frame) as u16,
    }
}

/// Starts the EAL, the pool and the devices.
pub fn start(cfg: &MuxConfig) -> Result<Arc<DpdkRuntime>, String> {
    let config = runtime_config(cfg);
    let runtime = DpdkRuntime::start(&config).map_err(|e| {
        format!("{e}; check [dpdk] device (bound to a DPDK driver?), memory_mb and hugepages")
    })?;
    tracing::info!(
        device = runtime.nic().name(),
        port = runtime.nic().port_id(),
        mac = %format_mac(runtime.nic().mac()),
        exception = runtime.exception().map_or("-", |d| d.name()),
        queues = runtime.queues(),
        mbufs = config.mbufs,
        "DPDK devices started"
    );
    Ok(Arc::new(runtime))
}

/// Opens worker `index`'s queue pair (called on the worker's thread).
pub fn open_port(runtime: Arc<DpdkRuntime>, index: usize) -> Result<DpdkPort, String> {
    DpdkPort::open(runtime, index as u16).map_err(|e| e.to_string())
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> MuxConfig {
        crate::config::parse(text, "t.toml").expect("valid")
    }

    #[test]
    fn the_tap_is_named_by_the_interface_and_sizes_follow_the_config() {
        let cfg = parse(
            "[mux]\nname = \"m1\"\n[dataplane]\nio = \"dpdk\"\ninterface = \"mux0\"\nworkers = 2\n\
             mtu = 9000\n[next_hop]\nmac = \"02:00:00:00:00:01\"\n[dpdk]\ndevice = \"0000:03:00.0\"\n\
             hugepages = false\n",
        );
        let rc = runtime_config(&cfg);
        assert_eq!(rc.nic.spec, "0000:03:00.0");
        assert_eq!(
            rc.exception.as_ref().map(|d| d.spec.as_str()),
            Some("net_tap_mux,iface=mux0")
        );
        assert_eq!(rc.queues, 2);
        assert_eq!(rc.eal.file_prefix, "mux-m1");
        assert!(!rc.eal.hugepages);
        assert_eq!(
            usize::from(rc.data_room),
            MIN_HEADROOM + 9000 + FRAME_OVERHEAD
        );
        let cfg = parse(
            "[mux]\nname = \"m1\"\n[dataplane]\nio = \"dpdk\"\n[next_hop]\nmac = \"02:00:00:00:00:01\"\n\
             [dpdk]\ndevice = \"net_pcap0,rx_pcap=a.pcap\"\nexception_device = \"net_null1\"\n",
        );
        let rc = runtime_config(&cfg);
        assert_eq!(rc.exception.map(|d| d.spec), Some("net_null1".to_string()));
        assert_eq!(usize::from(rc.data_room), MIN_HEADROOM + 2048);
    }
}
