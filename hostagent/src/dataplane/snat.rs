//! Outbound: a backend's reply from backend_address:backend_port → the same reply from
//! VIP:port, sent straight to the client (direct server return).
//!
//! Every rewritten reply teaches the connection table (`connections`) that this host's backend
//! carries the connection — how a restarted agent re-learns the connections it did not save.
//!
//! Only packets whose (source address, source port, protocol) is a service's backend are
//! rewritten; everything else is `Pass`, untouched — the backend's own connections, SSH to the
//! host, other ports. IP fragments are passed too (counted in `fragments_passed`): their ports
//! are not on every fragment, so they cannot be attributed.
//!
//! ICMP errors a backend sends about a service flow (e.g. port unreachable for UDP, or
//! "fragmentation needed" from a backend with a small MTU) quote the packet the backend
//! *received*: client → backend_address:backend_port. The error's source (backend address)
//! becomes the VIP and the quoted packet's destination becomes VIP:port, so the client's stack
//! matches it to its socket. The quoted IPv4 header checksum and the quoted transport checksum
//! (when the quote reaches it) are updated incrementally; the ICMP checksum is recomputed over
//! the message as present.

use super::connections::ConnKey;
use super::rewrite::{self, ICMP_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Side};
use super::{DataPath, DropReason, Verdict};
use mux_packet::wire::{tcp, udp};

impl DataPath {
    pub(super) fn try_snat(&mut self, buf: &mut [u8]) -> Result<Verdict, DropReason> {
        let ip = rewrite::parse_ip(buf, false).map_err(|_| DropReason::MalformedOutbound)?;
        let packet = buf.get_mut(..ip.end).ok_or(DropReason::MalformedOutbound)?;
        match ip.protocol {
            PROTO_TCP | PROTO_UDP => {}
            PROTO_ICMP if ip.v4 => return Ok(self.snat_icmp_error(packet)),
            PROTO_ICMPV6 if !ip.v4 => return Ok(self.snat_icmp_error(packet)),
            _ => return Ok(self.pass()),
        }
        if !self.table.is_backend_address(ip.src) {
            return Ok(self.pass());
        }
        if ip.fragment {
            self.counters.fragments_passed += 1;
            return Ok(self.pass());
        }
        let transport = packet.get(ip.l4..).unwrap_or(&[]);
        let Some((src_port, dst_port)) = rewrite::ports(transport) else {
            return Ok(self.pass());
        };
        let Some((index, service)) = self.table.outbound(ip.src, src_port, ip.protocol) else {
            return Ok(self.pass());
        };
        let tcp_flags = if ip.protocol == PROTO_TCP {
            tcp::Packet::new_checked(transport).map(|t| t.flags().bits())
        } else {
            udp::Packet::new_checked(transport).map(|_| 0)
        }
        .map_err(|_| DropReason::MalformedReply)?;
        let (vip, port) = (service.vip, service.port);
        let key = ConnKey::new(ip.dst, dst_port, ip.src, src_port, ip.protocol);
        rewrite::rewrite_endpoint(packet, ip.l4, ip.protocol, Side::Src, vip, port)
            .ok_or(DropReason::MalformedReply)?;
        // The backend's reply: its connection is carried here (a restarted agent re-learns it).
        self.learn(&key, tcp_flags, index);
        self.counters.replies_rewritten += 1;
        let bytes = ip.end as u64;
        self.counters.service(index, |s| {
            s.replies_rewritten += 1;
            s.replies_rewritten_bytes += bytes;
        });
        Ok(Verdict::Send { len: ip.end })
    }

    /// `packet` (exactly its stated length) is ICMP(v6). Rewritten when it is an error from a
    /// backend address about a packet that backend received for a service; otherwise `Pass`.
    fn snat_icmp_error(&mut self, packet: &mut [u8]) -> Verdict {
        match self.try_snat_icmp_error(packet) {
            Some(v) => v,
            None => self.pass(),
        }
    }

    fn try_snat_icmp_error(&mut self, packet: &mut [u8]) -> Option<Verdict> {
        let ip = rewrite::parse_ip(packet, false).ok()?;
        if ip.fragment || !self.table.is_backend_address(ip.src) {
            return None;
        }
        if !rewrite::is_icmp_error(ip.v4, *packet.get(ip.l4)?) {
            return None;
        }
        let quoted_at = ip.l4 + ICMP_HEADER_LEN;
        let quoted = rewrite::parse_quoted(packet.get(quoted_at..ip.end)?, ip.v4)?;
        // About a packet this backend received on a service's backend port.
        if quoted.info.dst != ip.src {
            return None;
        }
        let (index, service) =
            self.table
                .outbound(quoted.info.dst, quoted.dst_port, quoted.info.protocol)?;
        let (vip, port) = (service.vip, service.port);
        rewrite::set_address(packet, Side::Src, vip)?;
        let quoted_buf = packet.get_mut(quoted_at..ip.end)?;
        rewrite::rewrite_endpoint(
            quoted_buf,
            quoted.info.l4,
            quoted.info.protocol,
            Side::Dst,
            vip,
            port,
        )?;
        rewrite::fill_icmp_checksum(packet, ip.l4, ip.end)?;
        self.counters.icmp_errors_rewritten += 1;
        self.counters
            .service(index, |s| s.icmp_errors_rewritten += 1);
        Some(Verdict::Send { len: ip.end })
    }

    fn pass(&mut self) -> Verdict {
        self.counters.passed += 1;
        Verdict::Pass
    }
}
