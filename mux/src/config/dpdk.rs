//! `[dpdk]`: how the MUX starts DPDK when `[dataplane] io = "dpdk"` (ignored otherwise).
//!
//! The EAL's arguments, the devices, and the mbuf pool's sizing all come from here, so a DPDK
//! MUX is configured like any other: one file, checked by `mux check-config`, every mistake
//! named with its line. `[dataplane] interface` names the TAP interface the MUX creates for
//! the kernel (the exception path) rather than a NIC.

use serde::Deserialize;
use serde_spanned::Spanned;

pub use mux_ports::device::{device_name, is_pci_address};

use super::schema::{DEFAULT_IDLE_POLL_US, IoKind, MuxConfig, int_or};
use mux_daemon_kit::config::Collector;

/// Default `[dpdk] memory_mb`.
pub const DEFAULT_DPDK_MEMORY_MB: u32 = 512;
/// Default `[dpdk] mbufs`.
pub const DEFAULT_DPDK_MBUFS: u32 = 16384;
/// Default `[dpdk] mbuf_cache`.
pub const DEFAULT_DPDK_MBUF_CACHE: u32 = 256;
/// Default `[dpdk] rx_descriptors` and `tx_descriptors`.
pub const DEFAULT_DPDK_DESCRIPTORS: u16 = 1024;
/// Descriptors of each exception-device queue (the kernel's traffic is small).
pub const DPDK_EXCEPTION_DESCRIPTORS: u16 = 256;
/// Mbufs a worker may hold outside the rings at once (its bursts in flight).
const MBUFS_IN_FLIGHT_PER_WORKER: u32 = 512;

/// `[dpdk]`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpdk {
    pub(crate) device: Option<Spanned<String>>,
    pub(crate) exception_device: Option<Spanned<String>>,
    pub(crate) hugepages: Option<Spanned<bool>>,
    pub(crate) memory_mb: Option<Spanned<i64>>,
    pub(crate) mbufs: Option<Spanned<i64>>,
    pub(crate) mbuf_cache: Option<Spanned<i64>>,
    pub(crate) rx_descriptors: Option<Spanned<i64>>,
    pub(crate) tx_descriptors: Option<Spanned<i64>>,
    pub(crate) file_prefix: Option<Spanned<String>>,
    pub(crate) idle_sleep_us: Option<Spanned<i64>>,
    pub(crate) eal_args: Option<Spanned<Vec<String>>>,
}

impl Dpdk {
    /// The NIC: a PCI address (allow-listed to the EAL) or a virtual-device spec; required
    /// with `io = "dpdk"`.
    pub fn device(&self) -> Option<&str> {
        self.device.as_ref().map(|v| v.get_ref().as_str())
    }

    /// A device to use for the exception path instead of the TAP interface (tests: a
    /// `net_pcap` capture or `net_null`).
    pub fn exception_device(&self) -> Option<&str> {
        self.exception_device.as_ref().map(|v| v.get_ref().as_str())
    }

    /// Back memory with hugepages; default true.
    pub fn hugepages(&self) -> bool {
        self.hugepages.as_ref().is_none_or(|v| *v.get_ref())
    }

    /// Megabytes for the EAL (`-m`); default 512.
    pub fn memory_mb(&self) -> u32 {
        int_or(&self.memory_mb, DEFAULT_DPDK_MEMORY_MB)
    }

    /// Mbufs in the pool; default 16384.
    pub fn mbufs(&self) -> u32 {
        int_or(&self.mbufs, DEFAULT_DPDK_MBUFS)
    }

    /// Per-lcore mempool cache; default 256.
    pub fn mbuf_cache(&self) -> u32 {
        int_or(&self.mbuf_cache, DEFAULT_DPDK_MBUF_CACHE)
    }

    /// RX descriptors per NIC queue; default 1024.
    pub fn rx_descriptors(&self) -> u16 {
        int_or(&self.rx_descriptors, DEFAULT_DPDK_DESCRIPTORS)
    }

    /// TX descriptors per NIC queue; default 1024.
    pub fn tx_descriptors(&self) -> u16 {
        int_or(&self.tx_descriptors, DEFAULT_DPDK_DESCRIPTORS)
    }

    /// The EAL's `--file-prefix`; default `mux-<name>`.
    pub fn file_prefix(&self, mux_name: &str) -> String {
        self.file_prefix
            .as_ref()
            .map_or_else(|| format!("mux-{mux_name}"), |v| v.get_ref().clone())
    }

    /// Extra EAL arguments, appended verbatim.
    pub fn eal_args(&self) -> Vec<String> {
        self.eal_args
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_default()
    }

    /// The fewest mbufs `workers` workers need: every ring full, every cache full, every
    /// worker's bursts in flight.
    pub fn mbufs_needed(&self, workers: u32) -> u64 {
        let nic = u64::from(self.rx_descriptors()) + u64::from(self.tx_descriptors());
        let exception = 2 * u64::from(DPDK_EXCEPTION_DESCRIPTORS);
        u64::from(workers) * (nic + exception + u64::from(MBUFS_IN_FLIGHT_PER_WORKER))
            + (u64::from(workers) + 1) * u64::from(self.mbuf_cache())
    }
}

/// What is wrong with a device spec, if anything.
fn device_problem(spec: &str) -> Option<&'static str> {
    if spec.is_empty() || spec.chars().any(char::is_whitespace) {
        return Some("is empty or contains spaces");
    }
    if is_pci_address(spec) || device_name(spec).starts_with("net_") {
        return None;
    }
    Some("is neither a PCI address (0000:03:00.0) nor a DPDK virtual device (net_…)")
}

impl MuxConfig {
    /// `[dpdk]`.
    pub fn dpdk(&self) -> &Dpdk {
        self.dpdk.get_ref()
    }

    pub(crate) fn check_dpdk(&self, c: &mut Collector<'_>) {
        if self.dataplane.get_ref().io() != IoKind::Dpdk {
            return;
        }
        let d = self.dpdk.get_ref();
        let ctx = "[dpdk]";
        match &d.device {
            None => c.at(
                if self.dpdk.span().is_empty() {
                    self.dataplane.span()
                } else {
                    self.dpdk.span()
                },
                format!(
                    "{ctx}: device is required with io = \"dpdk\"; add a [dpdk] section with \
                     device = \"0000:03:00.0\" (the NIC's PCI address, bound to vfio-pci) or a \
                     virtual device such as \"net_af_xdp0,iface=eth1\""
                ),
            ),
            Some(v) => {
                if let Some(problem) = device_problem(v.get_ref()) {
                    c.at(
                        v.span(),
                        format!("{ctx}: device {:?} {problem}", v.get_ref()),
                    );
                }
            }
        }
        if let Some(v) = &d.exception_device
            && let Some(problem) = device_problem(v.get_ref())
        {
            c.at(
                v.span(),
                format!(
                    "{ctx}: exception_device {:?} {problem}; remove it to use a TAP interface \
                     named by [dataplane] interface",
                    v.get_ref()
                ),
            );
        }
        if let (Some(a), Some(b)) = (&d.device, &d.exception_device)
            && device_name(a.get_ref()) == device_name(b.get_ref())
        {
            c.at(
                b.span(),
                format!("{ctx}: exception_device must be another device than device"),
            );
        }
        if let Some(v) = &d.memory_mb {
            c.check_range(ctx, "memory_mb", v, 64, 1 << 20, "512 suits one NIC");
        }
        let mut sizes_ok = true;
        if let Some(v) = &d.mbuf_cache {
            sizes_ok &= c.check_range(ctx, "mbuf_cache", v, 0, 512, "DPDK caps it at 512");
        }
        for (key, field) in [
            ("rx_descriptors", &d.rx_descriptors),
            ("tx_descriptors", &d.tx_descriptors),
        ] {
            if let Some(v) = field {
                sizes_ok &= c.check_range(ctx, key, v, 64, 16384, "1024 suits most NICs");
            }
        }
        if let Some(v) = &d.mbufs {
            sizes_ok &= c.check_range(ctx, "mbufs", v, 1024, 1 << 24, "16384 suits one NIC");
            let workers = self.dataplane.get_ref().workers() as u32;
            let needed = d.mbufs_needed(workers);
            if sizes_ok && (*v.get_ref() as u64) < needed {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: mbufs ({}) is fewer than {workers} workers' rings, caches and \
                         bursts hold ({needed}); raise mbufs to at least {needed} or lower \
                         rx_descriptors, tx_descriptors or mbuf_cache",
                        v.get_ref()
                    ),
                );
            } else if sizes_ok && (d.mbuf_cache() as f64) > (*v.get_ref() as f64) / 1.5 {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: mbuf_cache ({}) must be at most mbufs / 1.5 (DPDK's rule); \
                         raise mbufs or lower mbuf_cache",
                        d.mbuf_cache()
                    ),
                );
            }
        }
        if let Some(v) = &d.idle_sleep_us {
            // Kept in the schema only to say where it went.
            c.at(
                v.span(),
                format!(
                    "{ctx}: idle_sleep_us is gone: every I/O backend now follows [dataplane] \
                     idle (\"adaptive\" by default: poll {DEFAULT_IDLE_POLL_US} µs after the last \
                     packet, then sleep at most idle_sleep_max_us at a time; \"busy-poll\" \
                     polls without pause); remove it, and set [dataplane] idle = \"busy-poll\" \
                     for the old 0 or idle_sleep_max_us for the old sleep"
                ),
            );
        }
        if let Some(v) = &d.file_prefix {
            let p = v.get_ref();
            let ok = !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !ok {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: file_prefix {p:?} must be 1-64 of A-Z a-z 0-9 - _ . (it names \
                         the EAL's runtime files); remove it to use \"mux-<name>\""
                    ),
                );
            }
        }
        if let Some(v) = &d.eal_args
            && v.get_ref().iter().any(|a| a.is_empty())
        {
            c.at(
                v.span(),
                format!("{ctx}: eal_args has an empty argument; remove it"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_and_vdevs_are_told_apart() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(is_pci_address("0000:af:1f.7,rxq_cqe_comp_en=0"));
        assert!(!is_pci_address("net_pcap0,rx_pcap=a.pcap"));
        assert!(!is_pci_address("net_af_xdp0,iface=eth0"));
        assert!(!is_pci_address("0000:03:00"));
        assert_eq!(device_name("net_pcap0,rx_pcap=a.pcap"), "net_pcap0");
        assert_eq!(device_name("0000:03:00.0"), "0000:03:00.0");
        assert_eq!(
            device_problem("eth0"),
            Some("is neither a PCI address (0000:03:00.0) nor a DPDK virtual device (net_…)")
        );
        assert_eq!(device_problem("net_null0"), None);
    }
}
