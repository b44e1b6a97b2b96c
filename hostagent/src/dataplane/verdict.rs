//! What the data path decided for one packet, and why packets are dropped.
//!
//! The data path does no I/O (boringtun's `TunnResult` pattern): it rewrites the buffer in
//! place and returns a [`Verdict`]; the interception layer writes the bytes it names to the
//! kernel (TUN) or the network. Drop reasons are a small `Copy` enum with one counter each —
//! no strings on the hot path.

use super::second_chance::ForwardHeader;

/// The data path's decision for one packet. The buffer has already been rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Decapsulated: hand `buf[offset..offset + len]` — the inner packet, its destination
    /// rewritten to the backend — to the host's kernel for delivery to the backend.
    Deliver {
        /// Where the inner packet starts (the outer header's length).
        offset: usize,
        /// The inner packet's length (as its header states; trailing bytes are not part of it).
        len: usize,
    },
    /// A backend's reply (or an ICMP error about one of its flows) whose source now is the
    /// VIP: send `buf[..len]` toward the client.
    Send {
        /// The packet's length as its header states.
        len: usize,
    },
    /// Second chance: a packet of a connection this agent does not carry, which the MUX sent
    /// with an alternative backend — send `header` followed by `buf[offset..offset + len]`
    /// (the inner packet, untouched) to the alternative's agent. The buffer is unchanged.
    Forward {
        /// The new outer header (IPv4 with the option, or IPv6 with a Destination Options
        /// header), from this agent's tunnel source to the alternative.
        header: ForwardHeader,
        /// Where the inner packet starts.
        offset: usize,
        /// The inner packet's length.
        len: usize,
    },
    /// Not ours (not from a configured backend address, port and protocol): let the packet go
    /// on untouched, as if the agent were not there.
    Pass,
    /// Free the packet; the reason's counter has been incremented.
    Drop(DropReason),
}

mux_packet::drop_reasons! {
    /// Inbound: the buffer ends before the outer IP header does, or before the length it
    /// states (empty buffers included).
    TruncatedOuter => "truncated_outer",
    /// Inbound: outer header with a version other than 4 or 6, an IPv4 IHL below 5 or total
    /// length below its header, or a malformed IPv6 extension-header chain.
    MalformedOuter => "malformed_outer",
    /// Inbound: outer IPv4 header checksum is wrong.
    BadOuterChecksum => "bad_outer_checksum",
    /// Inbound: outer packet is a fragment (the agent does not reassemble tunnel packets; the
    /// MUX sends DF or answers "too big" instead of fragmenting).
    OuterFragment => "outer_fragment",
    /// Inbound: outer protocol / next header is neither 4 (IPv4 in IP) nor 41 (IPv6 in IP).
    NotIpip => "not_ipip",
    /// Inbound: outer source is neither one of `[tunnel] mux_sources` nor a `[[tunnel.peer]]`
    /// (no open relay).
    UnknownTunnelSource => "unknown_tunnel_source",
    /// Inbound: outer destination is not the `dip` of any service.
    UnknownDip => "unknown_dip",
    /// Inbound: the outer header's options are malformed — an IPv4 option or IPv6 destination
    /// option running past its header, an IPv4 option length below 2, or a second-chance
    /// option (0x1E) of the wrong length or present twice.
    MalformedOuterOption => "malformed_outer_option",
    /// Inbound: an outer IPv6 destination option of an unknown type whose action bits ask
    /// for the packet to be discarded (RFC 8200 §4.2; no ICMP is sent).
    UnrecognizedOuterOption => "unrecognized_outer_option",
    /// Inbound: the inner packet ends before its IP header or its stated length does.
    TruncatedInner => "truncated_inner",
    /// Inbound: inner header malformed (bad IHL or total length, bad extension chain), or its
    /// version does not match the outer protocol (4 → IPv4, 41 → IPv6).
    MalformedInner => "malformed_inner",
    /// Inbound: inner packet is a fragment (not rewritten: a non-first fragment carries no
    /// ports to find the service by).
    InnerFragment => "inner_fragment",
    /// Inbound: inner TCP or UDP header cut short or inconsistent (data offset below 5 or past
    /// the packet, UDP length below 8 or past the packet).
    MalformedInnerTransport => "malformed_inner_transport",
    /// Inbound: inner protocol is neither TCP, UDP nor an ICMP error.
    UnsupportedInnerProtocol => "unsupported_inner_protocol",
    /// Inbound: inner destination VIP:port/protocol is not a service whose `dip` is the outer
    /// destination (no open relay). Also an ICMP error whose quoted flow is not such a service.
    UnknownService => "unknown_service",
    /// Inbound: ICMP error toward a VIP whose quoted packet is missing, malformed or too short
    /// to show its ports.
    MalformedInnerIcmpError => "malformed_inner_icmp_error",
    /// Outbound: the packet's IP header is truncated or malformed.
    MalformedOutbound => "malformed_outbound",
    /// Outbound: a packet from a service's backend address and port whose TCP/UDP header is cut
    /// short or inconsistent.
    MalformedReply => "malformed_reply",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_unique_name_and_a_description() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert!(!r.description().is_empty(), "{r:?}");
            assert_eq!(r.index(), i, "ALL is in discriminant order");
        }
        assert!(
            DropReason::UnknownTunnelSource
                .description()
                .starts_with("Inbound: outer source")
        );
    }
}
