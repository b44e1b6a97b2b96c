//! Inbound: an IP-in-IP packet from a MUX → the client's packet, addressed to the backend.
//!
//! Order of checks (each failure is its own drop reason, counted once):
//! outer header well formed and complete → outer IPv4 checksum → not a fragment → protocol 4
//! or 41 → source is a MUX (`unknown_tunnel_source`) → destination is a DIP (`unknown_dip`) →
//! inner header well formed, complete and of the family the outer protocol announced → not a
//! fragment → TCP/UDP header well formed → (outer destination, inner destination, port,
//! protocol) is a service (`unknown_service`) → rewrite destination VIP:port →
//! backend_address:backend_port with incremental checksums → `Deliver`.
//!
//! An ICMP error toward a VIP (the MUX forwards those to the backend owning the quoted flow,
//! e.g. "fragmentation needed" from a router on the client's path) is rewritten the mirror way
//! of the outbound case: its destination VIP → backend address, the quoted packet's source
//! VIP:port → backend_address:backend_port, ICMP checksum recomputed.
//!
//! The outer header is not copied or moved: `Deliver` names where the inner packet starts, so
//! the I/O layer writes it from there (no `memmove` per packet). TTL and ECN of the inner
//! packet are left as the client sent them (RFC 6040 CE propagation is not done yet).

use super::rewrite::{
    self, ICMP_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_IPIP, PROTO_IPV6, PROTO_TCP, PROTO_UDP,
    Side,
};
use super::{DataPath, DropReason, Verdict};
use mux_shared::wire::{WireError, ipv4, tcp, udp};

impl DataPath {
    pub(super) fn try_decap(&mut self, buf: &mut [u8]) -> Result<Verdict, DropReason> {
        let outer = rewrite::parse_ip(buf, false).map_err(|e| match e {
            WireError::Truncated => DropReason::TruncatedOuter,
            _ => DropReason::MalformedOuter,
        })?;
        if outer.v4 && !ipv4::Packet::new_unchecked(&*buf).verify_checksum() {
            return Err(DropReason::BadOuterChecksum);
        }
        if outer.fragment {
            return Err(DropReason::OuterFragment);
        }
        let inner_v4 = match outer.protocol {
            PROTO_IPIP => true,
            PROTO_IPV6 => false,
            _ => return Err(DropReason::NotIpip),
        };
        if !self.table.is_mux_source(outer.src) {
            return Err(DropReason::UnknownTunnelSource);
        }
        if !self.table.is_dip(outer.dst) {
            return Err(DropReason::UnknownDip);
        }
        let offset = outer.l4;
        let inner_buf = buf
            .get_mut(offset..outer.end)
            .ok_or(DropReason::TruncatedOuter)?;
        let inner = rewrite::parse_ip(inner_buf, false).map_err(|e| match e {
            WireError::Truncated => DropReason::TruncatedInner,
            _ => DropReason::MalformedInner,
        })?;
        if inner.v4 != inner_v4 {
            return Err(DropReason::MalformedInner);
        }
        if inner.fragment {
            return Err(DropReason::InnerFragment);
        }
        let packet = inner_buf
            .get_mut(..inner.end)
            .ok_or(DropReason::TruncatedInner)?;
        let transport = packet.get(inner.l4..).unwrap_or(&[]);
        let dst_port = match inner.protocol {
            PROTO_TCP => tcp::Packet::new_checked(transport)
                .map(|t| t.dst_port())
                .map_err(|_| DropReason::MalformedInnerTransport)?,
            PROTO_UDP => udp::Packet::new_checked(transport)
                .map(|u| u.dst_port())
                .map_err(|_| DropReason::MalformedInnerTransport)?,
            PROTO_ICMP if inner_v4 => return self.decap_icmp_error(packet, offset, outer.dst),
            PROTO_ICMPV6 if !inner_v4 => return self.decap_icmp_error(packet, offset, outer.dst),
            _ => return Err(DropReason::UnsupportedInnerProtocol),
        };
        let (index, service) = self
            .table
            .inbound(outer.dst, inner.dst, dst_port, inner.protocol)
            .ok_or(DropReason::UnknownService)?;
        let (addr, port) = (service.backend_address, service.backend_port);
        rewrite::rewrite_endpoint(packet, inner.l4, inner.protocol, Side::Dst, addr, port)
            .ok_or(DropReason::MalformedInnerTransport)?;
        self.counters.delivered += 1;
        self.counters.service(index, |s| s.delivered += 1);
        Ok(Verdict::Deliver {
            offset,
            len: inner.end,
        })
    }

    /// The inner packet (`packet`, exactly its stated length) is ICMP(v6) toward a VIP that
    /// came through the tunnel to `dip`.
    fn decap_icmp_error(
        &mut self,
        packet: &mut [u8],
        offset: usize,
        dip: std::net::IpAddr,
    ) -> Result<Verdict, DropReason> {
        let inner = rewrite::parse_ip(packet, false).map_err(|_| DropReason::MalformedInner)?;
        let msg_type = *packet
            .get(inner.l4)
            .ok_or(DropReason::MalformedInnerIcmpError)?;
        if !rewrite::is_icmp_error(inner.v4, msg_type) {
            return Err(DropReason::UnsupportedInnerProtocol);
        }
        let quoted_at = inner.l4 + ICMP_HEADER_LEN;
        let quoted_buf = packet
            .get(quoted_at..inner.end)
            .ok_or(DropReason::MalformedInnerIcmpError)?;
        let quoted = rewrite::parse_quoted(quoted_buf, inner.v4)
            .ok_or(DropReason::MalformedInnerIcmpError)?;
        // The quoted packet is a reply the agent sent: VIP:port → client. It must be about the
        // VIP this error is addressed to.
        if quoted.info.src != inner.dst {
            return Err(DropReason::UnknownService);
        }
        let (index, service) = self
            .table
            .inbound(dip, quoted.info.src, quoted.src_port, quoted.info.protocol)
            .ok_or(DropReason::UnknownService)?;
        let (addr, port) = (service.backend_address, service.backend_port);
        rewrite::set_address(packet, Side::Dst, addr).ok_or(DropReason::MalformedInner)?;
        let quoted_buf = packet
            .get_mut(quoted_at..inner.end)
            .ok_or(DropReason::MalformedInnerIcmpError)?;
        rewrite::rewrite_endpoint(
            quoted_buf,
            quoted.info.l4,
            quoted.info.protocol,
            Side::Src,
            addr,
            port,
        )
        .ok_or(DropReason::MalformedInnerIcmpError)?;
        rewrite::fill_icmp_checksum(packet, inner.l4, inner.end)
            .ok_or(DropReason::MalformedInnerIcmpError)?;
        self.counters.icmp_errors_delivered += 1;
        self.counters
            .service(index, |s| s.icmp_errors_delivered += 1);
        Ok(Verdict::Deliver {
            offset,
            len: inner.end,
        })
    }
}
