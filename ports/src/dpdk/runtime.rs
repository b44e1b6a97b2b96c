//! [`DpdkRuntime`]: the mbuf pool and the devices of one MUX, set up in the order DPDK needs.
//!
//! Start: EAL ([`eal::init`]) → probe the virtual devices (hot-plugged on the `vdev` bus, so
//! several runtimes can share one process's EAL, as the tests do; PCI devices are probed by
//! the EAL from its allow-list) → create the mbuf pool on the NIC's NUMA socket → configure
//! the NIC with one RX/TX queue pair per worker, RSS across the RX queues (so each worker sees
//! whole flows), and start it → the same for the exception device, which takes the NIC's MAC
//! so the kernel answers ARP and ND for the address the router knows.
//!
//! Stop (drop, after every [`DpdkPort`](super::DpdkPort) is gone: each holds an `Arc`):
//! stop and close both devices — `net_pcap` writes out its capture here — unplug the virtual
//! ones, free the pool.

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};

use mux_dpdk_sys as sys;

use super::eal::{self, EalConfig};
use super::{DpdkError, errno, strerror};
use crate::NicStats;
use crate::device::{device_name, is_pci_address};

/// One device to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// A PCI address (it must be in the EAL's allow-list) or a virtual-device spec
    /// (`net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`).
    pub spec: String,
    /// RX descriptors per queue (adjusted to what the device accepts).
    pub rx_descriptors: u16,
    /// TX descriptors per queue (adjusted likewise).
    pub tx_descriptors: u16,
}

/// Everything [`DpdkRuntime::start`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The EAL's arguments (PCI devices go in its allow-list; virtual devices are probed by
    /// the runtime and need not be listed).
    pub eal: EalConfig,
    /// The NIC: the device facing the router.
    pub nic: DeviceConfig,
    /// The exception device (a TAP interface into the kernel in production); `None`: frames
    /// for the kernel are freed and counted.
    pub exception: Option<DeviceConfig>,
    /// RX/TX queue pairs on each device: one per worker.
    pub queues: u16,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    pub mbuf_cache: u32,
    /// Bytes of data room per mbuf, headroom included.
    pub data_room: u16,
}

/// A started device.
#[derive(Debug)]
pub struct Device {
    name: String,
    port_id: u16,
    virtual_device: bool,
    mac: [u8; 6],
}

impl Device {
    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

/// The mbuf pool and the devices of one MUX.
#[derive(Debug)]
pub struct DpdkRuntime {
    pool: *mut sys::rte_mempool,
    nic: Device,
    exception: Option<Device>,
    queues: u16,
}

// SAFETY: the runtime only holds DPDK handles (a mempool pointer and port ids); DPDK's mempool
// and ethdev control functions may be called from any thread, and the per-queue data path is
// driven by one DpdkPort per queue, each on one thread.
unsafe impl Send for DpdkRuntime {}
// SAFETY: as for Send; the shared methods (counters, pool counts, names) are thread-safe
// reads in DPDK.
unsafe impl Sync for DpdkRuntime {}

/// Pools get unique names: several runtimes may share one process's EAL.
static POOL_SERIAL: AtomicU32 = AtomicU32::new(0);

impl DpdkRuntime {
    /// Starts the EAL (once per process), then the pool and devices.
    pub fn start(config: &RuntimeConfig) -> Result<DpdkRuntime, DpdkError> {
        if config.queues == 0 {
            return Err(DpdkError::Config("at least one queue is needed".into()));
        }
        let mut eal_config = config.eal.clone();
        if is_pci_address(&config.nic.spec) && !eal_config.devices.contains(&config.nic.spec) {
            eal_config.devices.push(config.nic.spec.clone());
        }
        eal::init(&eal_config)?;

        let nic_id = probe(&config.nic.spec)?;
        let exception_id = match &config.exception {
            Some(dev) => match probe(&dev.spec) {
                Ok(id) => Some(id),
                Err(e) => {
                    unplug(&config.nic.spec);
                    return Err(e);
                }
            },
            None => None,
        };
        let cleanup_probes = || {
            unplug(&config.nic.spec);
            if let Some(dev) = &config.exception {
                unplug(&dev.spec);
            }
        };
        let pool = match create_pool(config, nic_id) {
            Ok(p) => p,
            Err(e) => {
                cleanup_probes();
                return Err(e);
            }
        };
        let mut runtime = DpdkRuntime {
            pool,
            nic: Device {
                name: device_name(&config.nic.spec).to_string(),
                port_id: nic_id,
                virtual_device: !is_pci_address(&config.nic.spec),
                mac: [0; 6],
            },
            exception: None,
            queues: config.queues,
        };
        // From here on, dropping `runtime` undoes what was done.
        runtime.nic.mac = configure(&runtime.nic, &config.nic, config.queues, pool, true)?;
        if let (Some(id), Some(dev)) = (exception_id, &config.exception) {
            runtime.exception = Some(Device {
                name: device_name(&dev.spec).to_string(),
                port_id: id,
                virtual_device: !is_pci_address(&dev.spec),
                mac: [0; 6],
            });
            let exception = runtime.exception.as_ref().expect("just set");
            let mut mac = configure(exception, dev, config.queues, pool, false)?;
            if set_mac(exception.port_id, runtime.nic.mac) {
                mac = runtime.nic.mac;
            }
            if let Some(e) = runtime.exception.as_mut() {
                e.mac = mac;
            }
        }
        Ok(runtime)
    }

    /// The NIC.
    pub fn nic(&self) -> &Device {
        &self.nic
    }

    /// The exception device, if any.
    pub fn exception(&self) -> Option<&Device> {
        self.exception.as_ref()
    }

    /// Queue pairs per device.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The NIC's drop and error counters.
    pub fn nic_counters(&self) -> NicStats {
        let mut stats = sys::rte_eth_stats::default();
        // SAFETY: the port is started (it lives as long as self); stats is a valid
        // rte_eth_stats for the call to fill.
        let rc = unsafe { sys::rte_eth_stats_get(self.nic.port_id, &mut stats) };
        if rc != 0 {
            return NicStats::default();
        }
        NicStats {
            rx_missed: stats.imissed,
            rx_errors: stats.ierrors,
            rx_nombuf: stats.rx_nombuf,
            tx_errors: stats.oerrors,
        }
    }

    /// Whether the NIC can carry traffic: its port is still valid (not detached or removed)
    /// and its link is up. The daemon withdraws the VIPs while this is false.
    pub fn nic_link_up(&self) -> bool {
        let port = self.nic.port_id;
        // SAFETY: any port id may be asked about; the call only reads DPDK's port table.
        if unsafe { sys::rte_eth_dev_is_valid_port(port) } == 0 {
            return false;
        }
        let mut link = sys::rte_eth_link::default();
        // SAFETY: the port is valid (checked above); link is a valid rte_eth_link to fill.
        let rc = unsafe { sys::rte_eth_link_get_nowait(port, &mut link) };
        rc == 0 && link.link_status() == 1
    }

    /// Mbufs free in the pool (in its ring and the lcore caches).
    pub fn pool_available(&self) -> u32 {
        // SAFETY: the pool lives as long as self.
        unsafe { sys::rte_mempool_avail_count(self.pool) }
    }

    /// The pool (for ports that allocate, such as a benchmark's generator).
    pub(crate) fn pool(&self) -> *mut sys::rte_mempool {
        self.pool
    }
}

impl Drop for DpdkRuntime {
    fn drop(&mut self) {
        for dev in self.exception.iter().chain(std::iter::once(&self.nic)) {
            // SAFETY: the port was configured by this runtime and no DpdkPort uses it any
            // more (each holds an Arc of the runtime). Stop then close is DPDK's order.
            unsafe {
                sys::rte_eth_dev_stop(dev.port_id);
                sys::rte_eth_dev_close(dev.port_id);
            }
            if dev.virtual_device {
                unplug(&dev.name);
            }
        }
        // SAFETY: every mbuf went back to the pool: the devices are closed (their rings
        // freed) and no DpdkBuf outlives its port, which outlives none of the runtime.
        unsafe { sys::rte_mempool_free(self.pool) }
    }
}

/// Probes `spec` (hot-plugging a virtual device) and returns its port id.
fn probe(spec: &str) -> Result<u16, DpdkError> {
    let name = device_name(spec);
    let c_name = CString::new(name).map_err(|_| DpdkError::Config(format!("bad name {name:?}")))?;
    if !is_pci_address(spec) {
        let args = spec.split_once(',').map_or("", |(_, a)| a);
        let c_args =
            CString::new(args).map_err(|_| DpdkError::Config(format!("bad device {spec:?}")))?;
        // SAFETY: both strings are valid and NUL-terminated for the call; the EAL is started.
        let rc =
            unsafe { sys::rte_eal_hotplug_add(c"vdev".as_ptr(), c_name.as_ptr(), c_args.as_ptr()) };
        if rc != 0 {
            return Err(DpdkError::Device {
                device: spec.to_string(),
                what: "probing the virtual device",
                reason: strerror(rc),
            });
        }
    }
    let mut port_id = 0u16;
    // SAFETY: c_name is a valid C string and port_id a valid out-parameter.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port_id) };
    if rc != 0 {
        if !is_pci_address(spec) {
            unplug(name);
        }
        return Err(DpdkError::Device {
            device: spec.to_string(),
            what: "finding the port (is the device bound to a DPDK driver and allow-listed?)",
            reason: strerror(rc),
        });
    }
    Ok(port_id)
}

/// Unplugs the virtual device `spec` names (ignores PCI devices and failures).
fn unplug(spec: &str) {
    if is_pci_address(spec) {
        return;
    }
    if let Ok(name) = CString::new(device_name(spec)) {
        // SAFETY: valid C strings; removing an absent device only returns an error.
        unsafe { sys::rte_eal_hotplug_remove(c"vdev".as_ptr(), name.as_ptr()) };
    }
}

fn create_pool(config: &RuntimeConfig, nic: u16) -> Result<*mut sys::rte_mempool, DpdkError> {
    // SAFETY: the port id came from the EAL.
    let socket = match unsafe { sys::rte_eth_dev_socket_id(nic) } {
        s if s >= 0 => s,
        // SAFETY: no preconditions.
        _ => unsafe { sys::rte_socket_id() as i32 },
    };
    let serial = POOL_SERIAL.fetch_add(1, Ordering::Relaxed);
    let name = CString::new(format!("mux_mbufs_{serial}")).expect("no NUL");
    // SAFETY: name is a valid C string; the sizes are plain integers DPDK checks itself.
    let pool = unsafe {
        sys::rte_pktmbuf_pool_create(
            name.as_ptr(),
            config.mbufs,
            config.mbuf_cache,
            0,
            config.data_room,
            socket,
        )
    };
    if pool.is_null() {
        return Err(DpdkError::Config(format!(
            "cannot create a pool of {} mbufs of {} bytes ({}): raise [dpdk] memory_mb or lower \
             mbufs",
            config.mbufs,
            config.data_room,
            strerror(errno())
        )));
    }
    Ok(pool)
}

fn device_error(dev: &Device, what: &'static str, rc: i32) -> DpdkError {
    DpdkError::Device {
        device: dev.name.clone(),
        what,
        reason: strerror(rc),
    }
}

/// Configures `dev` with `queues` queue pairs (RSS across them when `rss`), starts it, and
/// returns its MAC.
fn configure(
    dev: &Device,
    config: &DeviceConfig,
    queues: u16,
    pool: *mut sys::rte_mempool,
    rss: bool,
) -> Result<[u8; 6], DpdkError> {
    let port = dev.port_id;
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: port is a probed port id; info is a valid out-parameter.
    let rc = unsafe { sys::rte_eth_dev_info_get(port, &mut info) };
    if rc != 0 {
        return Err(device_error(dev, "reading device info", rc));
    }
    if queues > info.max_rx_queues || queues > info.max_tx_queues {
        return Err(DpdkError::Config(format!(
            "device {} has at most {} RX and {} TX queues, and {queues} workers need one each: \
             lower [dataplane] workers (for net_af_xdp, give each queue its own vdev)",
            dev.name, info.max_rx_queues, info.max_tx_queues
        )));
    }
    let mut conf = sys::rte_eth_conf::default();
    if rss && queues > 1 {
        // SAFETY: returns a constant.
        let wanted = unsafe { sys::mux_dpdk_rss_hf_ip_tcp_udp() };
        let hf = wanted & info.flow_type_rss_offloads;
        if hf == 0 {
            return Err(DpdkError::Config(format!(
                "device {} cannot spread flows over queues (no RSS on IP/TCP/UDP): use \
                 [dataplane] workers = 1",
                dev.name
            )));
        }
        conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = hf;
    }
    // SAFETY: conf is a valid, zero-initialised configuration with the fields above set.
    let rc = unsafe { sys::rte_eth_dev_configure(port, queues, queues, &conf) };
    if rc != 0 {
        return Err(device_error(dev, "configuring the device", rc));
    }
    let (mut rx_desc, mut tx_desc) = (config.rx_descriptors, config.tx_descriptors);
    // SAFETY: valid out-parameters; the device is configured.
    let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_desc, &mut tx_desc) };
    if rc != 0 {
        return Err(device_error(dev, "adjusting the descriptor counts", rc));
    }
    // SAFETY: the port id is valid.
    let socket = unsafe { sys::rte_eth_dev_socket_id(port) } as u32;
    for q in 0..queues {
        // SAFETY: the device is configured with `queues` queues; null confs select the
        // driver's defaults; pool is a valid mbuf pool that outlives the device.
        let rc = unsafe {
            sys::rte_eth_rx_queue_setup(port, q, rx_desc, socket, std::ptr::null(), pool)
        };
        if rc != 0 {
            return Err(device_error(dev, "setting up an RX queue", rc));
        }
        // SAFETY: as above.
        let rc = unsafe { sys::rte_eth_tx_queue_setup(port, q, tx_desc, socket, std::ptr::null()) };
        if rc != 0 {
            return Err(device_error(dev, "setting up a TX queue", rc));
        }
    }
    // SAFETY: every queue is set up.
    let rc = unsafe { sys::rte_eth_dev_start(port) };
    if rc != 0 {
        return Err(device_error(dev, "starting the device", rc));
    }
    let mut mac = sys::rte_ether_addr::default();
    // SAFETY: valid out-parameter.
    unsafe { sys::rte_eth_macaddr_get(port, &mut mac) };
    Ok(mac.addr_bytes)
}

/// Gives `port` the MAC `mac` where the driver allows it (a TAP device does; a capture has no
/// MAC to set). Returns whether it took.
fn set_mac(port: u16, mac: [u8; 6]) -> bool {
    let mut addr = sys::rte_ether_addr { addr_bytes: mac };
    // SAFETY: addr is valid for the call; a driver without the operation returns -ENOTSUP.
    let rc = unsafe { sys::rte_eth_dev_default_mac_addr_set(port, &mut addr) };
    if rc != 0 && rc != -libc::ENOTSUP {
        // The shared crate does not log; a refused MAC shows up later as the kernel not
        // answering ARP for the NIC's address, so say why now.
        eprintln!(
            "mux: DPDK port {port}: cannot give the exception device the NIC's MAC ({})",
            strerror(rc)
        );
    }
    rc == 0
}
