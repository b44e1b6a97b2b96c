//! What the pipeline decided for one packet, and why packets are dropped.
//!
//! The pipeline does no I/O (boringtun's `TunnResult` pattern): it rewrites the buffer in place
//! and returns a [`Verdict`]; the worker hands the buffer to the port accordingly. Drop reasons
//! are a small `Copy` enum with one counter each — no strings on the hot path.

/// The pipeline's decision for one packet. The buffer has already been rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (encapsulated) frame toward the next hop.
    Forward,
    /// Transmit the frame, which the pipeline replaced by a reply of this kind to the client.
    Reply(Reply),
    /// Not for a VIP: hand the frame, unchanged, to the host kernel.
    ToKernel,
    /// Free the frame; the reason's counter has been incremented.
    Drop(DropReason),
}

/// What the MUX answered a client with, instead of forwarding its packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An ICMP "fragmentation needed" / ICMPv6 "packet too big" (the packet would exceed the
    /// MTU once encapsulated).
    TooBig,
    /// A TCP reset from the VIP (the flow's backend passed its drain deadline).
    Reset,
}

mux_packet::drop_reasons! {
    /// Frame shorter than an Ethernet header (or its 802.1Q tag).
    TruncatedEthernet => "truncated_ethernet",
    /// IPv4 packet whose header is cut short, whose version field is not 4, whose IHL is below
    /// 5, or whose total length is below its header length or beyond the frame.
    MalformedIpv4 => "malformed_ipv4",
    /// IPv6 packet shorter than its fixed header, with a version other than 6, or whose payload
    /// length runs beyond the frame.
    MalformedIpv6 => "malformed_ipv6",
    /// IPv6 extension-header chain that runs past the payload or is longer than we walk.
    MalformedIpv6Extension => "malformed_ipv6_extension",
    /// TCP or UDP header to a VIP cut short or internally inconsistent (data offset below 5,
    /// UDP length below 8 or beyond the IP payload).
    MalformedTransport => "malformed_transport",
    /// ICMP error addressed to a VIP whose embedded header is missing or cut short.
    MalformedIcmpError => "malformed_icmp_error",
    /// New flow (or fragment, or ICMP error) for a VIP that has no active backend.
    NoBackend => "no_backend",
    /// Packet without DF that would exceed the MTU once encapsulated (we do not fragment).
    TooBigWithoutDf => "too_big_without_df",
    /// ICMP error toward a VIP that would exceed the MTU once encapsulated.
    TooBigIcmpError => "too_big_icmp_error",
    /// Backend's address family has no tunnel source configured (refused by validation; kept
    /// as a guard).
    NoTunnelSource => "no_tunnel_source",
    /// The port handed us a buffer without room for the outer header (a port bug).
    NoHeadroom => "no_headroom",
    /// Packet that would have been answered with an ICMP "fragmentation needed" / "packet too
    /// big" (DF or IPv6, too big once encapsulated) while this worker's ICMP bucket
    /// (`[dataplane] icmp_rate`, `icmp_burst`) was empty: neither answered nor forwarded.
    IcmpRateLimited => "icmp_rate_limited",
    /// TCP segment of a flow whose backend passed its drain deadline while this worker's reset
    /// bucket (`[dataplane] drain_reset_rate`, `drain_reset_burst`) was empty: neither answered
    /// nor forwarded. The flow's entry stays, so the client's retransmission gets the reset.
    DrainResetRateLimited => "drain_reset_rate_limited",
    /// TCP segment carrying RST of a flow whose backend passed its drain deadline: not
    /// forwarded (the backend receives nothing more) and not answered (a RST is never
    /// answered); the flow's entry is removed.
    RstAfterDrainDeadline => "rst_after_drain_deadline",
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
        for r in DropReason::ALL {
            assert!(!r.description().is_empty(), "{r:?}");
            assert_eq!(
                DropReason::ALL[*r as usize],
                *r,
                "ALL is in discriminant order"
            );
        }
        assert!(DropReason::NoBackend.description().starts_with("New flow"));
    }
}
