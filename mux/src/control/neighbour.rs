//! Finding MAC addresses: ours (the interface's) and the next hop's (the kernel's neighbour
//! table).
//!
//! The data plane writes the next hop's MAC into every frame it sends, so the control plane
//! must know it before the MUX announces its VIPs. Unless the config pins it, it comes from the
//! kernel: IPv4 entries from `/proc/net/arp`, IPv6 entries from `ip -6 neigh` (iproute2; there
//! is no procfs view of the IPv6 table). When the entry is missing, sending one UDP datagram to
//! the next hop's discard port makes the kernel resolve it (ARP or neighbour solicitation).
//! All of this runs on the control thread, never on a worker.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

/// The MAC of interface `ifname`, from sysfs.
pub fn interface_mac(ifname: &str) -> std::io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
    parse_mac(text.trim()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "interface {ifname} has no Ethernet address ({:?})",
                text.trim()
            ),
        )
    })
}

/// The next hop's MAC if the kernel has a usable neighbour entry for it.
pub fn lookup(ifname: &str, addr: IpAddr) -> Option<[u8; 6]> {
    match addr {
        IpAddr::V4(v4) => {
            let table = std::fs::read_to_string("/proc/net/arp").ok()?;
            lookup_arp(&table, ifname, v4)
        }
        IpAddr::V6(_) => {
            let out = Command::new("ip")
                .args(["-6", "neigh", "show", &addr.to_string(), "dev", ifname])
                .output()
                .ok()?;
            lookup_ip_neigh(&String::from_utf8_lossy(&out.stdout))
        }
    }
}

/// Makes the kernel resolve `addr` (one UDP datagram to its discard port).
pub fn provoke(addr: IpAddr) {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(b"mux neighbour probe", (addr, 9));
    }
}

/// Looks the next hop up, provoking resolution and retrying until `timeout`.
pub fn resolve(ifname: &str, addr: IpAddr, timeout: Duration) -> Option<[u8; 6]> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(mac) = lookup(ifname, addr) {
            return Some(mac);
        }
        if Instant::now() >= deadline {
            return None;
        }
        provoke(addr);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finds a complete entry (flags 0x2) for `addr` on `ifname` in `/proc/net/arp` text.
fn lookup_arp(table: &str, ifname: &str, addr: Ipv4Addr) -> Option<[u8; 6]> {
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != ifname || f[0].parse::<Ipv4Addr>().ok() != Some(addr) {
            continue;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & 0x2 != 0 {
            return parse_mac(f[3]);
        }
    }
    None
}

/// Parses `ip neigh` output: `ADDR lladdr MAC STATE`; FAILED and INCOMPLETE entries have no
/// usable address.
fn lookup_ip_neigh(text: &str) -> Option<[u8; 6]> {
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.iter().any(|s| *s == "FAILED" || *s == "INCOMPLETE") {
            continue;
        }
        if let Some(i) = f.iter().position(|s| *s == "lladdr") {
            return f.get(i + 1).and_then(|m| parse_mac(m));
        }
    }
    None
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    if parts.next().is_some() || out == [0; 6] {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
10.0.0.1         0x1         0x2         02:00:00:00:00:fe     *        eth0
10.0.0.2         0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.0.1         0x1         0x2         02:00:00:00:00:aa     *        eth1
";

    #[test]
    fn arp_table_lookup_needs_a_complete_entry_on_the_interface() {
        let a = "10.0.0.1".parse().unwrap();
        assert_eq!(lookup_arp(ARP, "eth0", a), Some([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(lookup_arp(ARP, "eth1", a), Some([2, 0, 0, 0, 0, 0xaa]));
        assert_eq!(lookup_arp(ARP, "eth0", "10.0.0.2".parse().unwrap()), None);
        assert_eq!(lookup_arp(ARP, "eth9", a), None);
    }

    #[test]
    fn ip_neigh_output() {
        assert_eq!(
            lookup_ip_neigh("fd00::1 lladdr 02:00:00:00:00:fe REACHABLE\n"),
            Some([2, 0, 0, 0, 0, 0xfe])
        );
        assert_eq!(lookup_ip_neigh("fd00::1  FAILED\n"), None);
        assert_eq!(lookup_ip_neigh(""), None);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:01"), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
    }
}
