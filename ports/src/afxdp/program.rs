//! The XDP program that steers VIP traffic to the AF_XDP sockets, and its maps.
//!
//! Logic (every packet read is bounds-checked against `data_end` first, so the verifier
//! accepts it and a truncated frame simply goes to the kernel):
//! 1. Ethernet, with at most one 802.1Q tag; anything but IPv4/IPv6 → `XDP_PASS`.
//! 2. A 20-byte key is built on the stack: `{dst address (16 bytes, IPv4 mapped as
//!    ::ffff:a.b.c.d), dst port (network order), protocol, pad}`.
//! 3. IPv4 (version checked, IHL-aware): TCP/UDP → full key. TCP/UDP fragments (MF set or
//!    offset ≠ 0) and ICMP errors (type 3, 11, 12) → address-only key (port 0, protocol 0).
//!    Everything else (ICMP echo, other protocols) → `XDP_PASS`.
//! 4. IPv6 (fixed header only): next header TCP/UDP → full key; ICMPv6 errors (types 1–4) and
//!    any other first next header (extension headers, fragments) → address-only key;
//!    ICMPv6 informational messages (echo, ND) → `XDP_PASS`.
//! 5. A hit in the VIP map → `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`: the
//!    socket of the receiving queue, or the kernel when no socket is registered there.
//!
//! Userspace inserts, for each VIP, its full key and its address-only key ([`XdpProgram::
//! update_vips`] does both). The pipeline re-parses everything, so the program only needs to be
//! a superset filter of what the pipeline wants; the few frames it redirects that the pipeline
//! then hands to the kernel (an IPv6 ICMP echo behind an extension header, say) cannot be
//! re-injected by AF_XDP and are dropped and counted by the port (`kernel_dropped`).
//!
//! The program is attached with a BPF link: closing the link (dropping [`XdpProgram`], or the
//! process dying) detaches it, so a crashed MUX never leaves the interface black-holing VIPs.
//!
//! Rejected: walking IPv6 extension headers in BPF (bounded loops cost verifier complexity
//! for a rare case the pipeline handles anyway); attaching through netlink
//! (`IFLA_XDP`), which outlives the process.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::AfXdpError;
use super::asm::{Asm, AsmError, Cond, Insn, R0, R1, R2, R3, R4, R5, R6, R7, R10, Size};
use super::bpf;

/// Length of a VIP map key.
pub const KEY_LEN: usize = 20;
/// Capacity of the VIP map (full keys plus address-only keys).
pub const MAX_VIP_KEYS: u32 = 16384;

/// XDP return codes.
#[cfg(test)]
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
/// Helper numbers.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;

/// Offsets in `struct xdp_md`.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// Stack slot of the key: `[r10 - 24, r10 - 4)`.
const KEY: i16 = -24;

/// Ethertypes as a little-endian `u16` load of the big-endian wire bytes sees them.
const fn wire16(v: u16) -> i32 {
    v.swap_bytes() as i32
}

/// A VIP map key: `(address, port in host order, protocol)` → the 20 key bytes.
pub fn vip_key(addr: &[u8; 16], port: u16, protocol: u8) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..16].copy_from_slice(addr);
    k[16..18].copy_from_slice(&port.to_be_bytes());
    k[18] = protocol;
    k
}

/// Assembles the program. `vips` and `xsks` are the map fds; `no_socket` is what
/// `bpf_redirect_map` returns when the queue has no socket (`XDP_PASS` in production; the
/// tests use `XDP_DROP` to tell a VIP hit from a miss without a socket).
pub fn build(vips: RawFd, xsks: RawFd, no_socket: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let pass = a.label();
    let no_vlan = a.label();
    let ipv4 = a.label();
    let ipv6 = a.label();
    let ports = a.label();
    let addr_only = a.label();
    let lookup = a.label();
    let icmp4 = a.label();
    let icmp6 = a.label();
    let frag4 = a.label();

    // r6 = ctx; r2 = data; r3 = data_end; zero the key.
    a.mov_reg(R6, R1);
    a.ldx(Size::W, R2, R1, MD_DATA);
    a.ldx(Size::W, R3, R1, MD_DATA_END);
    a.st(Size::Dw, R10, KEY, 0);
    a.st(Size::Dw, R10, KEY + 8, 0);
    a.st(Size::Dw, R10, KEY + 16, 0);

    // Ethernet (+ one 802.1Q tag): r5 = ethertype, r2 = start of L3.
    a.mov_reg(R4, R2);
    a.add_imm(R4, 14);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::H, R5, R2, 12);
    a.jmp_imm(Cond::Ne, R5, wire16(0x8100), no_vlan);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 18);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::H, R5, R2, 16);
    a.add_imm(R2, 4);
    a.bind(no_vlan);
    a.add_imm(R2, 14);
    a.jmp_imm(Cond::Eq, R5, wire16(0x0800), ipv4);
    a.jmp_imm(Cond::Eq, R5, wire16(0x86dd), ipv6);
    a.ja(pass);

    // IPv4.
    a.bind(ipv4);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 20);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R5, R2, 0);
    a.mov_reg(R0, R5);
    a.alu_imm(super::asm::Alu::Rsh, R0, 4);
    a.jmp_imm(Cond::Ne, R0, 4, pass);
    a.alu_imm(super::asm::Alu::And, R5, 0x0f);
    a.jmp_imm(Cond::Lt, R5, 5, pass);
    a.alu_imm(super::asm::Alu::Lsh, R5, 2); // header length, 20..=60
    a.st(Size::H, R10, KEY + 10, 0xffff);
    a.ldx(Size::W, R0, R2, 16);
    a.stx(Size::W, R10, KEY + 12, R0);
    a.ldx(Size::B, R7, R2, 9);
    // Flags + fragment offset as loaded little-endian: MF is 0x0020, the offset 0xff1f.
    a.ldx(Size::H, R0, R2, 6);
    a.jmp_imm(Cond::Set, R0, 0xff3f, frag4);
    a.alu_reg(super::asm::Alu::Add, R2, R5);
    a.jmp_imm(Cond::Eq, R7, 6, ports);
    a.jmp_imm(Cond::Eq, R7, 17, ports);
    a.jmp_imm(Cond::Eq, R7, 1, icmp4);
    a.ja(pass);

    a.bind(frag4);
    a.jmp_imm(Cond::Eq, R7, 6, addr_only);
    a.jmp_imm(Cond::Eq, R7, 17, addr_only);
    a.ja(pass);

    a.bind(icmp4);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 1);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R0, R2, 0);
    a.jmp_imm(Cond::Eq, R0, 3, addr_only);
    a.jmp_imm(Cond::Eq, R0, 11, addr_only);
    a.jmp_imm(Cond::Eq, R0, 12, addr_only);
    a.ja(pass);

    // IPv6.
    a.bind(ipv6);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 40);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R0, R2, 0);
    a.alu_imm(super::asm::Alu::Rsh, R0, 4);
    a.jmp_imm(Cond::Ne, R0, 6, pass);
    for i in 0..4i16 {
        a.ldx(Size::W, R0, R2, 24 + 4 * i);
        a.stx(Size::W, R10, KEY + 4 * i, R0);
    }
    a.ldx(Size::B, R7, R2, 6);
    a.add_imm(R2, 40);
    a.jmp_imm(Cond::Eq, R7, 6, ports);
    a.jmp_imm(Cond::Eq, R7, 17, ports);
    a.jmp_imm(Cond::Eq, R7, 58, icmp6);
    a.ja(addr_only);

    a.bind(icmp6);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 1);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R0, R2, 0);
    a.jmp_imm(Cond::Eq, R0, 0, pass);
    a.jmp_imm(Cond::Gt, R0, 4, pass);
    a.ja(addr_only);

    // TCP/UDP: port and protocol into the key.
    a.bind(ports);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 4);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::H, R0, R2, 2);
    a.stx(Size::H, R10, KEY + 16, R0);
    a.stx(Size::B, R10, KEY + 18, R7);
    a.ja(lookup);

    // Address-only key: port and protocol stay 0.
    a.bind(addr_only);

    a.bind(lookup);
    a.ld_map_fd(R1, vips);
    a.mov_reg(R2, R10);
    a.add_imm(R2, KEY as i32);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jmp_imm(Cond::Eq, R0, 0, pass);
    a.ld_map_fd(R1, xsks);
    a.ldx(Size::W, R2, R6, MD_RX_QUEUE_INDEX);
    a.mov_imm(R3, no_socket);
    a.call(HELPER_REDIRECT_MAP);
    a.exit();

    a.bind(pass);
    a.mov_imm(R0, XDP_PASS);
    a.exit();
    a.finish()
}

/// The loaded, attached program and its maps.
#[derive(Debug)]
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    insn_count: usize,
    vip_keys: HashSet<[u8; KEY_LEN]>,
    // Field order is drop order: the link first (detach), then the program and the maps.
    link: Option<OwnedFd>,
    prog: OwnedFd,
    vips: OwnedFd,
    xsks: OwnedFd,
}

/// The interface index of `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, AfXdpError> {
    let c = CString::new(ifname).map_err(|_| AfXdpError::NoInterface(ifname.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(AfXdpError::NoInterface(ifname.to_string()));
    }
    Ok(index)
}

impl XdpProgram {
    /// Creates the maps (an XSKMAP with `queues` entries and the VIP hash map), loads the
    /// program and attaches it to `ifname` (native mode where the driver supports it).
    pub fn attach(ifname: &str, queues: u32) -> Result<XdpProgram, AfXdpError> {
        let mut prog = XdpProgram::load(queues, XDP_PASS)?;
        let index = ifindex(ifname)?;
        let link = bpf::link_create_xdp(&prog.prog, index, 0).map_err(|e| AfXdpError::Sys {
            what: "attaching the XDP program (BPF_LINK_CREATE)",
            source: e,
        })?;
        prog.ifname = ifname.to_string();
        prog.ifindex = index;
        prog.link = Some(link);
        Ok(prog)
    }

    /// Whether the program is still attached to its interface through our link. `false` once
    /// the interface is gone or the link was detached from outside (`bpftool link detach`):
    /// VIP traffic then reaches the kernel, not the workers, and the MUX must stop
    /// announcing. A program loaded without attaching (tests) reports `false`.
    pub fn still_attached(&self) -> Result<bool, AfXdpError> {
        let Some(link) = &self.link else {
            return Ok(false);
        };
        let found = bpf::xdp_link_ifindex(link).map_err(|source| AfXdpError::Sys {
            what: "reading the XDP link's state (BPF_OBJ_GET_INFO_BY_FD)",
            source,
        })?;
        Ok(found == Some(self.ifindex))
    }

    /// Creates the maps and loads the program without attaching it.
    fn load(queues: u32, no_socket: i32) -> Result<XdpProgram, AfXdpError> {
        let sys = |what| move |source| AfXdpError::Sys { what, source };
        let xsks = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, queues.max(1), "mux_xsks")
            .map_err(sys("creating the XSKMAP"))?;
        let vips = bpf::map_create(
            bpf::MAP_TYPE_HASH,
            KEY_LEN as u32,
            4,
            MAX_VIP_KEYS,
            "mux_vips",
        )
        .map_err(sys("creating the VIP map"))?;
        let insns = build(vips.as_raw_fd(), xsks.as_raw_fd(), no_socket)?;
        let prog =
            bpf::prog_load_xdp(&super::asm::to_bytes(&insns), "mux_vip_steer").map_err(|e| {
                AfXdpError::Verifier {
                    source: e.error,
                    log: e.log,
                }
            })?;
        Ok(XdpProgram {
            ifname: String::new(),
            ifindex: 0,
            insn_count: insns.len(),
            vip_keys: HashSet::new(),
            link: None,
            prog,
            vips,
            xsks,
        })
    }

    /// Replaces the VIP set: inserts the new keys (plus the address-only key of each
    /// address), then deletes the keys no longer wanted. `keys` are `(address in canonical
    /// 16-byte form, port in host order, IP protocol)`. Between the two steps the map holds
    /// the union, so no VIP is ever briefly missing.
    pub fn update_vips(&mut self, keys: &[([u8; 16], u16, u8)]) -> Result<(), AfXdpError> {
        let mut wanted = HashSet::new();
        for (addr, port, protocol) in keys {
            wanted.insert(vip_key(addr, *port, *protocol));
            wanted.insert(vip_key(addr, 0, 0));
        }
        if wanted.len() > MAX_VIP_KEYS as usize {
            return Err(AfXdpError::TooManyVips(wanted.len()));
        }
        let one = 1u32.to_ne_bytes();
        for key in wanted.difference(&self.vip_keys) {
            bpf::map_update(&self.vips, key, &one).map_err(|source| AfXdpError::Sys {
                what: "inserting a VIP key",
                source,
            })?;
        }
        for key in self.vip_keys.difference(&wanted) {
            bpf::map_delete(&self.vips, key).map_err(|source| AfXdpError::Sys {
                what: "deleting a VIP key",
                source,
            })?;
        }
        self.vip_keys = wanted;
        Ok(())
    }

    /// Steers packets received on `queue` to the AF_XDP socket `xsk_fd` (which must be bound
    /// to this interface and queue, e.g. [`super::AfXdpPort::fd`]).
    pub fn register_socket(&mut self, queue: u32, xsk_fd: RawFd) -> Result<(), AfXdpError> {
        bpf::map_update(
            &self.xsks,
            &queue.to_ne_bytes(),
            &(xsk_fd as u32).to_ne_bytes(),
        )
        .map_err(|source| AfXdpError::Sys {
            what: "registering the socket in the XSKMAP",
            source,
        })
    }

    /// Stops steering packets of `queue` (they go to the kernel).
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), AfXdpError> {
        bpf::map_delete(&self.xsks, &queue.to_ne_bytes()).map_err(|source| AfXdpError::Sys {
            what: "removing the socket from the XSKMAP",
            source,
        })
    }

    /// Number of eBPF instruction slots in the program.
    pub fn instruction_count(&self) -> usize {
        self.insn_count
    }

    /// The interface it is attached to, and its index.
    pub fn interface(&self) -> (&str, u32) {
        (&self.ifname, self.ifindex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_packet::packet_builder::PacketBuilder;

    #[test]
    fn program_assembles_with_all_labels_bound() {
        let insns = build(3, 4, XDP_PASS).unwrap();
        assert!(insns.len() > 60 && insns.len() < 120, "{}", insns.len());
        // Ends with `r0 = XDP_PASS; exit`.
        let n = insns.len();
        assert_eq!(insns[n - 2].to_bytes(), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(insns[n - 1].to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn vip_key_layout() {
        let k = vip_key(&mux_packet::flow_key::map_v4([192, 0, 2, 10]), 80, 6);
        assert_eq!(
            k,
            [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10, 0, 80, 6, 0
            ]
        );
    }

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    /// Loads the program (with `XDP_DROP` as the no-socket fallback, so a VIP hit shows as 1
    /// and a miss as 2) and runs it on frames with `BPF_PROG_TEST_RUN`. Needs root.
    #[test]
    fn verifier_accepts_and_program_steers_only_vip_traffic() {
        const TEST: &str = "verifier_accepts_and_program_steers_only_vip_traffic";
        if !mux_test_prereq::require_root(TEST, "loading an XDP program (bpf())") {
            return;
        }
        let mut p = match XdpProgram::load(1, XDP_DROP) {
            Ok(p) => p,
            Err(AfXdpError::Sys { source, .. })
                if source.raw_os_error() == Some(libc::EPERM)
                    || source.raw_os_error() == Some(libc::ENOSYS) =>
            {
                mux_test_prereq::skip_or_fail(
                    TEST,
                    &format!("bpf() is unavailable ({source}); a kernel with BPF is needed"),
                );
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let v4 = mux_packet::flow_key::map_v4([192, 0, 2, 10]);
        let v6: [u8; 16] = "2001:db8::10"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        p.update_vips(&[(v4, 80, 6), (v6, 443, 6), (v4, 53, 17)])
            .unwrap();
        let c4 = ip("198.51.100.7");
        let c6 = ip("2001:db8:c::7");
        let vip4 = ip("192.0.2.10");
        let vip6 = ip("2001:db8::10");
        let hit = XDP_DROP as u32;
        let miss = XDP_PASS as u32;
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 0xaa, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        let mut opts = PacketBuilder::tcp(c4, 1, vip4, 80, 2).build();
        // IHL 6 (one 4-byte option): shift the TCP header by 4 bytes.
        opts[14] = 0x46;
        opts.splice(34..34, [1, 1, 1, 1]);
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            (
                "v4 TCP to VIP",
                PacketBuilder::tcp(c4, 1, vip4, 80, 2).build(),
                hit,
            ),
            ("v4 TCP with IP options", opts, hit),
            (
                "v4 TCP to VIP, VLAN",
                PacketBuilder::tcp(c4, 1, vip4, 80, 2).vlan(7).build(),
                hit,
            ),
            (
                "v4 UDP to VIP",
                PacketBuilder::udp(c4, 1, vip4, 53).build(),
                hit,
            ),
            (
                "v4 TCP other port",
                PacketBuilder::tcp(c4, 1, vip4, 81, 2).build(),
                miss,
            ),
            (
                "v4 UDP on TCP port",
                PacketBuilder::udp(c4, 1, vip4, 80).build(),
                miss,
            ),
            (
                "v4 TCP other address",
                PacketBuilder::tcp(c4, 1, ip("192.0.2.11"), 80, 2).build(),
                miss,
            ),
            (
                "v4 fragment",
                PacketBuilder::tcp(c4, 1, vip4, 80, 2)
                    .fragment(8, false)
                    .dont_frag(false)
                    .build(),
                hit,
            ),
            (
                "v4 first fragment (MF)",
                PacketBuilder::tcp(c4, 1, vip4, 9999, 2)
                    .fragment(0, true)
                    .dont_frag(false)
                    .build(),
                hit,
            ),
            (
                "v4 ICMP frag needed",
                PacketBuilder::icmp(c4, vip4, 3, 4, 1500)
                    .payload_len(28)
                    .build(),
                hit,
            ),
            (
                "v4 ICMP echo",
                PacketBuilder::icmp(c4, vip4, 8, 0, 1).build(),
                miss,
            ),
            (
                "v6 TCP to VIP",
                PacketBuilder::tcp(c6, 1, vip6, 443, 2).build(),
                hit,
            ),
            (
                "v6 TCP other port",
                PacketBuilder::tcp(c6, 1, vip6, 80, 2).build(),
                miss,
            ),
            (
                "v6 hop-by-hop",
                PacketBuilder::tcp(c6, 1, vip6, 443, 2).hop_by_hop().build(),
                hit,
            ),
            (
                "v6 fragment",
                PacketBuilder::tcp(c6, 1, vip6, 443, 2)
                    .fragment(8, true)
                    .build(),
                hit,
            ),
            (
                "v6 packet too big",
                PacketBuilder::icmp(c6, vip6, 2, 0, 1280)
                    .payload_len(48)
                    .build(),
                hit,
            ),
            (
                "v6 echo request",
                PacketBuilder::icmp(c6, vip6, 128, 0, 1).build(),
                miss,
            ),
            (
                "v6 hop-by-hop to another address",
                PacketBuilder::tcp(c6, 1, ip("2001:db8::11"), 443, 2)
                    .hop_by_hop()
                    .build(),
                miss,
            ),
            ("ARP", arp, miss),
        ];
        for (what, frame, want) in &cases {
            let got = bpf::prog_test_run(&p.prog, frame).unwrap();
            assert_eq!(got, *want, "{what}");
            // Every truncation is safe and never a hit.
            for cut in [14usize, 20, 33, 37, 53] {
                if cut < frame.len() {
                    let got = bpf::prog_test_run(&p.prog, &frame[..cut]).unwrap();
                    assert!(got == miss || got == hit, "{what} cut at {cut}: {got}");
                }
            }
        }
        // Removing a VIP removes its keys.
        p.update_vips(&[(v6, 443, 6)]).unwrap();
        let f = PacketBuilder::tcp(c4, 1, vip4, 80, 2).build();
        assert_eq!(bpf::prog_test_run(&p.prog, &f).unwrap(), miss);
        let f = PacketBuilder::tcp(c6, 1, vip6, 443, 2).build();
        assert_eq!(bpf::prog_test_run(&p.prog, &f).unwrap(), hit);
        assert_eq!(p.vip_keys.len(), 2);
    }
}
