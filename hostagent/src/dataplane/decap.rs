//! Inbound: an IP-in-IP packet from a MUX → the client's packet, addressed to the backend.
//!
//! Order of checks (each failure is its own drop reason, counted once):
//! outer header well formed and complete → outer IPv4 checksum → not a fragment → protocol 4
//! or 41 → source is a MUX or a peer agent (`unknown_tunnel_source`) → destination is a DIP
//! (`unknown_dip`) → outer options well formed (`malformed_outer_option`,
//! `unrecognized_outer_option`; see `second_chance`) → inner header well formed, complete and
//! of the family the outer protocol announced → not a fragment → TCP/UDP header well formed →
//! (outer destination, inner destination, port, protocol) is a service (`unknown_service`) →
//! the second-chance decision → rewrite destination VIP:port → backend_address:backend_port
//! with incremental checksums → `Deliver` (or, untouched, `Forward`).
//!
//! The second-chance decision (`docs/second-chance.md`, "Host agent side"), for TCP and UDP:
//! 1. no alternative in the outer header, or one that says it was already forwarded →
//!    deliver;
//! 2. a TCP SYN without ACK → deliver;
//! 3. a connection in the table (client address and port, backend address and port,
//!    protocol) → deliver; a UDP flow only if last seen within the option's claim horizon
//!    (otherwise it is forgotten: see `DataPath::claims`);
//! 4. otherwise forward to the alternative — unless the alternative is a DIP of this agent:
//!    then deliver, to the alternative's backend if that one carries the connection (two
//!    backends on one host), else as addressed; and unless the agent has no tunnel source of
//!    the alternative's family: then deliver (counted `delivered_cannot_forward`).
//!
//! Each outcome has its counter ([`super::SecondChanceCounters`]). Every delivered packet
//! teaches the connection table; a forwarded one does not (it is not ours). ICMP errors are
//! delivered as before whatever the option says: they belong to the flow they quote, which
//! the MUX already routed.
//!
//! An ICMP error toward a VIP (the MUX forwards those to the backend owning the quoted flow,
//! e.g. "fragmentation needed" from a router on the client's path) is rewritten the mirror way
//! of the outbound case: its destination VIP → backend address, the quoted packet's source
//! VIP:port → backend_address:backend_port, ICMP checksum recomputed.
//!
//! The outer header is not copied or moved: `Deliver` names where the inner packet starts, so
//! the I/O layer writes it from there (no `memmove` per packet). TTL and ECN of the inner
//! packet are left as the client sent them (RFC 6040 CE propagation is not done yet).

use super::connections::ConnKey;
use super::rewrite::{
    self, ICMP_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_IPIP, PROTO_IPV6, PROTO_TCP, PROTO_UDP,
    Side,
};
use super::second_chance::{self, Alternative, OptionError};
use super::{DataPath, DropReason, Verdict};
use mux_packet::flow_key::{FlowKey, canonical_addr};
use mux_packet::stable_hash;
use mux_packet::wire::{WireError, ipv4, tcp, udp};

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// How a delivered TCP/UDP packet got past the second-chance decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    NoAlternative,
    ForwardRefused,
    Syn,
    Known,
    LocalAlternative,
    CannotForward,
}

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
        if !self.table.is_tunnel_source(outer.src) {
            return Err(DropReason::UnknownTunnelSource);
        }
        if !self.table.is_dip(outer.dst) {
            return Err(DropReason::UnknownDip);
        }
        let alternative = if outer.v4 {
            second_chance::find_in_ipv4(buf.get(..outer.l4).unwrap_or(&[]))
        } else {
            second_chance::find_in_ipv6(buf, outer.l4)
        }
        .map_err(|e| match e {
            OptionError::Malformed => DropReason::MalformedOuterOption,
            OptionError::UnrecognizedAction => DropReason::UnrecognizedOuterOption,
        })?;
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
        let (src_port, dst_port, tcp_flags) = match inner.protocol {
            PROTO_TCP => tcp::Packet::new_checked(transport)
                .map(|t| (t.src_port(), t.dst_port(), t.flags().bits()))
                .map_err(|_| DropReason::MalformedInnerTransport)?,
            PROTO_UDP => udp::Packet::new_checked(transport)
                .map(|u| (u.src_port(), u.dst_port(), 0))
                .map_err(|_| DropReason::MalformedInnerTransport)?,
            PROTO_ICMP if inner_v4 => return self.decap_icmp_error(packet, offset, outer.dst),
            PROTO_ICMPV6 if !inner_v4 => return self.decap_icmp_error(packet, offset, outer.dst),
            _ => return Err(DropReason::UnsupportedInnerProtocol),
        };
        let (mut index, service) = self
            .table
            .inbound(outer.dst, inner.dst, dst_port, inner.protocol)
            .ok_or(DropReason::UnknownService)?;
        let (mut addr, mut port) = (service.backend_address, service.backend_port);
        let mut key = ConnKey::new(inner.src, src_port, addr, port, inner.protocol);

        let delivery = match alternative {
            None => Delivery::NoAlternative,
            Some(alt) if alt.already_forwarded() => Delivery::ForwardRefused,
            Some(_)
                if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && inner.protocol == PROTO_TCP =>
            {
                Delivery::Syn
            }
            Some(alt) if self.claims(&key, alt.claim_horizon(), index) => Delivery::Known,
            Some(alt) if self.table.is_dip(alt.address) => {
                // Two backends of the service on this host: the alternative gets the packet,
                // as a remote alternative would get it forwarded. Whether or not it carries
                // the connection yet: the MUX's second-chance entry keeps naming it, and sends
                // the flow to it plainly once a table picks it again, so a flow delivered here
                // as addressed (a new UDP flow has no SYN) would change backend then.
                if let Some((alt_index, alt_service)) =
                    self.table
                        .inbound(alt.address, inner.dst, dst_port, inner.protocol)
                {
                    let (a, p) = (alt_service.backend_address, alt_service.backend_port);
                    let alt_key = ConnKey::new(inner.src, src_port, a, p, inner.protocol);
                    (index, addr, port, key) = (alt_index, a, p, alt_key);
                }
                Delivery::LocalAlternative
            }
            Some(alt) => match self.forward(&alt, packet, &inner, src_port, dst_port) {
                Some(header) => {
                    self.counters.second_chance.forwarded += 1;
                    self.counters.service(index, |s| s.forwarded += 1);
                    return Ok(Verdict::Forward {
                        header,
                        offset,
                        len: inner.end,
                    });
                }
                None => Delivery::CannotForward,
            },
        };

        rewrite::rewrite_endpoint(packet, inner.l4, inner.protocol, Side::Dst, addr, port)
            .ok_or(DropReason::MalformedInnerTransport)?;
        self.learn(&key, tcp_flags, index);
        let sc = &mut self.counters.second_chance;
        match delivery {
            Delivery::NoAlternative => sc.delivered_no_alternative += 1,
            Delivery::ForwardRefused => sc.forward_refused += 1,
            Delivery::Syn => sc.delivered_syn += 1,
            Delivery::Known => sc.delivered_known += 1,
            Delivery::LocalAlternative => sc.delivered_local_alternative += 1,
            Delivery::CannotForward => sc.delivered_cannot_forward += 1,
        }
        self.counters.delivered += 1;
        let bytes = inner.end as u64;
        self.counters.service(index, |s| {
            s.delivered += 1;
            s.delivered_bytes += bytes;
        });
        Ok(Verdict::Deliver {
            offset,
            len: inner.end,
        })
    }

    /// The outer header that forwards `packet` (the inner packet, exactly its length, not yet
    /// rewritten) to `alt`, from this agent's tunnel source of its family; `None` when the
    /// agent has none or the packet would be too long.
    fn forward(
        &self,
        alt: &Alternative,
        packet: &[u8],
        inner: &rewrite::IpInfo,
        src_port: u16,
        dst_port: u16,
    ) -> Option<second_chance::ForwardHeader> {
        let source = self.table.own_sources().for_family_of(alt.address)?;
        // The flow's stable hash, as the MUX's outer IPv6 flow label carries it.
        let flow = FlowKey {
            src: canonical_addr(inner.src),
            dst: canonical_addr(inner.dst),
            src_port,
            dst_port,
            protocol: inner.protocol,
        };
        let label = stable_hash::flow_hash(&flow) as u32;
        second_chance::forward_header(source, alt.address, packet, inner.v4, label)
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
