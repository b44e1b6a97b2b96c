//! TCP resets from the VIP, built in place: how the MUX ends a flow whose backend has passed
//! its drain deadline.
//!
//! After a backend's `drain_deadline` it receives nothing. A TCP flow still pinned to it would
//! otherwise hang until the client gives up (minutes of retransmissions), so the MUX answers the
//! client's next segment the way a closed TCP endpoint does (RFC 9293 §3.10.7.1, "If the state
//! is CLOSED"): from the VIP's address and port, back to the client, and the segment itself is
//! not forwarded. Only the first segment after the deadline is answered; the pipeline removes
//! the flow's entry once the reset is sent.
//!
//! The reset's sequence numbers follow RFC 9293 so that the client accepts it:
//! - the segment carries ACK: `<SEQ=SEG.ACK><CTL=RST>` (the client expects exactly that
//!   sequence number next);
//! - otherwise: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, where `SEG.LEN` counts the data
//!   and one for each of SYN and FIN.
//!
//! A segment that itself carries RST is never answered (RFC 9293: "An incoming segment
//! containing a RST is discarded"); [`read_segment`] reports the flags so the caller can tell.
//!
//! The frame is rewritten where it lies, as [`super::icmp_reply`] does: the Ethernet header
//! keeps its place and VLAN tag, its addresses become (client's next hop ← our MAC); a fresh
//! 20-byte IPv4 header (no options; DF, identification 0 as an atomic datagram, RFC 6864) or
//! 40-byte IPv6 header (no extension headers) with TTL / hop limit 64; a 20-byte TCP header
//! without options, window 0; the frame shrinks to fit. Everything is read before anything is
//! written, since the new headers overlap the old ones.

use mux_packet::flow_key::v4_of;
use mux_packet::wire::tcp::{self, TcpFlags};
use mux_packet::wire::{IpProtocol, MacAddr, ethernet, ipv4, ipv6};
use mux_ports::PacketBuf;

use super::parse::Parsed;
use super::verdict::DropReason;

/// TTL / hop limit of the resets we send.
const TTL: u8 = 64;

/// What the reset needs from the client's segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// SEG.SEQ.
    pub seq: u32,
    /// SEG.ACK.
    pub ack: u32,
    /// The segment's flags.
    pub flags: TcpFlags,
    /// SEG.LEN: data bytes, plus one each for SYN and FIN.
    pub len: u32,
}

impl Segment {
    /// The reset's sequence number, acknowledgment number and flags (RFC 9293 §3.10.7.1).
    pub fn reset(&self) -> (u32, u32, TcpFlags) {
        if self.flags.ack() {
            (self.ack, 0, TcpFlags::RST)
        } else {
            (
                0,
                self.seq.wrapping_add(self.len),
                TcpFlags::RST | TcpFlags::ACK,
            )
        }
    }
}

/// Reads the TCP segment of a parsed TCP packet (`parsed.kind` is a TCP transport packet).
/// `None` if the headers do not hold up, which `parse` has already ruled out.
pub fn read_segment(frame: &[u8], parsed: &Parsed) -> Option<Segment> {
    let ip = frame.get(parsed.l2_len..parsed.l2_len + parsed.ip_len)?;
    let offset = if parsed.is_v4 {
        ipv4::Packet::new_checked(ip).ok()?.header_len()
    } else {
        ipv6::Packet::new_checked(ip)
            .ok()?
            .upper_layer()
            .ok()?
            .offset
    };
    let segment = tcp::Packet::new_checked(ip.get(offset..)?).ok()?;
    let flags = segment.flags();
    let data = segment.payload().len() as u32;
    Some(Segment {
        seq: segment.seq(),
        ack: segment.ack(),
        flags,
        len: data + u32::from(flags.syn()) + u32::from(flags.fin()),
    })
}

/// Replaces the packet in `buf` (a TCP segment from the client, described by `parsed` and
/// `segment`) by the reset that answers it. `source_mac` is our MAC.
pub fn write_reset<B: PacketBuf>(
    buf: &mut B,
    parsed: &Parsed,
    segment: &Segment,
    source_mac: [u8; 6],
) -> Result<(), DropReason> {
    let key = &parsed.key;
    let l2 = parsed.l2_len;
    let ip_len = if parsed.is_v4 {
        ipv4::HEADER_LEN
    } else {
        ipv6::HEADER_LEN
    };
    let len = l2 + ip_len + tcp::HEADER_LEN;
    // The reset is never longer than the segment it answers (whose IP and TCP headers are at
    // least as long), so this only shrinks the frame.
    if buf.data().len() < len || !buf.set_len(len) {
        return Err(DropReason::MalformedTransport);
    }
    let (seq, ack, flags) = segment.reset();
    let data = buf.data_mut();
    let (head, rest) = data.split_at_mut(l2);
    let mut eth = ethernet::Frame::new_unchecked(head);
    let client_mac = eth.src_addr();
    eth.set_dst_addr(client_mac);
    eth.set_src_addr(MacAddr(source_mac));

    let (ip_part, tcp_part) = rest.split_at_mut(ip_len);
    // Data offset 5 (no options), reserved bits cleared.
    tcp_part[12] = 5 << 4;
    let mut seg = tcp::Packet::new_unchecked(&mut tcp_part[..tcp::HEADER_LEN]);
    seg.set_src_port(key.dst_port);
    seg.set_dst_port(key.src_port);
    seg.set_seq(seq);
    seg.set_ack(ack);
    seg.set_flags(flags);
    seg.set_window(0);
    seg.set_urgent_ptr(0);
    if parsed.is_v4 {
        let (vip, client) = (v4_of(&key.dst).octets(), v4_of(&key.src).octets());
        ipv4::Repr {
            src: vip,
            dst: client,
            protocol: IpProtocol::Tcp,
            payload_len: tcp::HEADER_LEN,
            ttl: TTL,
            dscp_ecn: 0,
            dont_frag: true,
            ident: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(ip_part));
        seg.fill_checksum_v4(vip, client);
    } else {
        ipv6::Repr {
            src: key.dst,
            dst: key.src,
            next_header: IpProtocol::Tcp,
            payload_len: tcp::HEADER_LEN,
            hop_limit: TTL,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(ip_part));
        seg.fill_checksum_v6(&key.dst, &key.src);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: TcpFlags, len: u32) -> Segment {
        Segment {
            seq: 0xffff_fff0,
            ack: 0x1234_5678,
            flags,
            len,
        }
    }

    #[test]
    fn sequence_numbers_follow_rfc_9293() {
        // With ACK: SEQ = SEG.ACK, no ACK flag, acknowledgment field zero.
        assert_eq!(
            seg(TcpFlags::ACK, 100).reset(),
            (0x1234_5678, 0, TcpFlags::RST)
        );
        assert_eq!(
            seg(TcpFlags::ACK | TcpFlags::FIN, 1).reset(),
            (0x1234_5678, 0, TcpFlags::RST)
        );
        // Without ACK: SEQ = 0, ACK = SEG.SEQ + SEG.LEN (wrapping), RST|ACK.
        assert_eq!(
            seg(TcpFlags::PSH, 0x20).reset(),
            (0, 0x10, TcpFlags::RST | TcpFlags::ACK)
        );
        assert_eq!(
            seg(TcpFlags::SYN, 1).reset(),
            (0, 0xffff_fff1, TcpFlags::RST | TcpFlags::ACK)
        );
    }
}
