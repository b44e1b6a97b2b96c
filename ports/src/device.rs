//! DPDK device specs (`0000:03:00.0`, `net_pcap0,rx_pcap=in.pcap`): what the DPDK port opens,
//! read without DPDK so the configuration can validate them on any build.

/// True when `spec` names a PCI device (`0000:03:00.0` or `03:00.0`, optionally followed by
/// `,key=value` device arguments) rather than a virtual device (`net_pcap0,rx_pcap=…`).
pub fn is_pci_address(spec: &str) -> bool {
    let name = device_name(spec);
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = name.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [domain, bus, devfn] if hex(domain, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    match devfn.split_once('.') {
        Some((dev, func)) => hex(bus, 2) && hex(dev, 2) && hex(func, 1),
        None => false,
    }
}

/// The device name DPDK gives the port `spec` creates: the part before the first comma
/// (`net_pcap0` for `net_pcap0,rx_pcap=in.pcap`; the address for a PCI device).
pub fn device_name(spec: &str) -> &str {
    spec.split(',').next().unwrap_or(spec)
}
