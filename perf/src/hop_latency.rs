//! `perf hop-latency`: what the second-chance hop costs, read off captures.
//!
//! A packet the MUX sends with an alternative (docs/second-chance.md) and whose agent forwards
//! it crosses the network twice: MUX → agent A (outer option, `hops` 0), then agent A → agent B
//! (`forwarded` flag, `hops` 1). A capture that sees both transmissions — in the lab, the
//! router's interfaces toward the hosts, captured outbound — gives the extra latency of each
//! forwarded packet directly: the time between the router sending the first and sending the
//! second. That is agent A's receive, decision and re-send plus one more pass through the
//! network, i.e. what a forwarded packet pays beyond a packet delivered by its first agent. No
//! clock other than the capturing host's is involved.
//!
//! The two transmissions of one packet are matched by the inner packet, which the hop does not
//! touch: source and destination address, protocol, ports, IPv4 identification and the L4
//! checksum. Only IPv4 outer headers carrying IPv4 inner packets are read (the lab's
//! second-chance round); everything else is counted as skipped.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::http::load::{Latency, percentiles};

/// IPv4 option type of the second-chance alternative (docs/second-chance.md).
const OPTION_TYPE: u8 = 0x1E;
/// `flags` bit 0: forwarded by an agent.
const FLAG_FORWARDED: u8 = 0x01;

/// The inner packet, as both transmissions carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct InnerKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ports: [u16; 2],
    ident: u16,
    l4_checksum: u16,
}

/// One IP-in-IP frame that carries the second-chance option.
#[derive(Debug, PartialEq, Eq)]
struct Marked {
    forwarded: bool,
    inner: InnerKey,
}

/// What one frame is, for this count.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// IP-in-IP with the option.
    Marked(Marked),
    /// IP-in-IP without it (the plain path).
    Plain,
    /// Anything else.
    Other,
}

/// What the captures showed.
#[derive(Debug, Default, Serialize)]
pub struct HopReport {
    /// Frames read.
    pub frames: usize,
    /// IP-in-IP frames without the option (the plain path).
    pub plain: usize,
    /// Frames the MUX sent with an alternative (`hops` 0).
    pub sent_with_alternative: usize,
    /// Frames an agent forwarded (`forwarded` set).
    pub forwarded: usize,
    /// Forwarded frames whose first transmission is in the captures.
    pub matched: usize,
    /// Distinct inner 5-tuples among the forwarded frames.
    pub forwarded_flows: usize,
    /// Other frames (not IPv4 IP-in-IP).
    pub skipped: usize,
    /// Extra latency of the matched forwarded frames: second transmission − first.
    pub extra: Latency,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ipv4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Classifies one Ethernet frame (a VLAN tag is not expected in the lab and reads as Other).
fn classify(frame: &[u8]) -> Frame {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || be16(frame, 12) != 0x0800 {
        return Frame::Other;
    }
    let outer = &frame[ETH..];
    let ihl = usize::from(outer[0] & 0x0f) * 4;
    if outer[0] >> 4 != 4 || ihl < 20 || outer.len() < ihl + 20 || outer[9] != 4 {
        return Frame::Other;
    }
    let mut forwarded = None;
    let mut at = 20;
    while at < ihl {
        match outer[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let Some(&len) = outer.get(at + 1) else { break };
                if len < 2 || at + usize::from(len) > ihl {
                    break;
                }
                if kind == OPTION_TYPE && len >= 4 {
                    forwarded = Some(outer[at + 2] & FLAG_FORWARDED != 0 || outer[at + 3] > 0);
                }
                at += usize::from(len);
            }
        }
    }
    let Some(forwarded) = forwarded else {
        return Frame::Plain;
    };
    let inner = &outer[ihl..];
    let inner_ihl = usize::from(inner[0] & 0x0f) * 4;
    if inner[0] >> 4 != 4 || inner_ihl < 20 || inner.len() < inner_ihl + 8 {
        return Frame::Other;
    }
    let protocol = inner[9];
    let l4 = &inner[inner_ihl..];
    let (ports, l4_checksum) = match protocol {
        6 if l4.len() >= 18 => ([be16(l4, 0), be16(l4, 2)], be16(l4, 16)),
        17 => ([be16(l4, 0), be16(l4, 2)], be16(l4, 6)),
        _ => ([0, 0], 0),
    };
    Frame::Marked(Marked {
        forwarded,
        inner: InnerKey {
            src: ipv4(inner, 12),
            dst: ipv4(inner, 16),
            protocol,
            ports,
            ident: be16(inner, 4),
            l4_checksum,
        },
    })
}

/// Counts and matches the frames of every capture, merged in time order.
pub fn measure(captures: &[&Path]) -> Result<HopReport, String> {
    let mut frames = Vec::new();
    for path in captures {
        let read = mux::control::replay::read_frames(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        frames.extend(read);
    }
    frames.sort_by_key(|(t, _)| *t);
    Ok(tally(frames.iter().map(|(t, f)| (*t, f.as_slice()))))
}

fn tally<'a>(frames: impl Iterator<Item = (Duration, &'a [u8])>) -> HopReport {
    let mut r = HopReport::default();
    let mut first: HashMap<InnerKey, Duration> = HashMap::new();
    let mut flows = std::collections::HashSet::new();
    let mut extra_us = Vec::new();
    for (t, frame) in frames {
        r.frames += 1;
        match classify(frame) {
            Frame::Other => r.skipped += 1,
            Frame::Plain => r.plain += 1,
            Frame::Marked(m) if !m.forwarded => {
                r.sent_with_alternative += 1;
                first.insert(m.inner, t);
            }
            Frame::Marked(m) => {
                r.forwarded += 1;
                let k = m.inner;
                flows.insert((k.src, k.dst, k.protocol, k.ports));
                if let Some(t0) = first.remove(&k) {
                    r.matched += 1;
                    extra_us.push(t.saturating_sub(t0).as_micros() as u64);
                }
            }
        }
    }
    r.forwarded_flows = flows.len();
    r.extra = percentiles(&mut extra_us);
    r
}

impl HopReport {
    /// One line for a terminal.
    pub fn line(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{} forwarded ({} flows), {} matched to their first transmission: extra latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} sent with an alternative, {} plain)",
            self.forwarded,
            self.forwarded_flows,
            self.matched,
            ms(self.extra.p50_us),
            ms(self.extra.p99_us),
            ms(self.extra.max_us),
            self.sent_with_alternative,
            self.plain,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame: outer IPv4 (with the option when `option` is Some((flags, hops))),
    /// inner IPv4 UDP 10.0.1.2:40000 → 192.0.2.10:4433 with this identification.
    fn frame(option: Option<(u8, u8)>, ident: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let opt: Vec<u8> = match option {
            Some((flags, hops)) => vec![OPTION_TYPE, 8, flags, hops, 10, 0, 22, 3],
            None => vec![],
        };
        let ihl = (20 + opt.len()) / 4;
        let mut outer = vec![0x40 | ihl as u8, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0];
        outer.extend_from_slice(&[10, 0, 11, 2, 10, 0, 21, 2]);
        outer.extend_from_slice(&opt);
        let mut inner = vec![0x45, 0, 0, 0];
        inner.extend_from_slice(&ident.to_be_bytes());
        inner.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 10, 0, 1, 2, 192, 0, 2, 10]);
        inner.extend_from_slice(&40000u16.to_be_bytes());
        inner.extend_from_slice(&4433u16.to_be_bytes());
        inner.extend_from_slice(&[0, 8, 0xab, 0xcd]);
        f.extend(outer);
        f.extend(inner);
        f
    }

    #[test]
    fn the_option_and_its_flag_are_read() {
        assert_eq!(classify(&frame(None, 1)), Frame::Plain);
        let Frame::Marked(m) = classify(&frame(Some((0, 0)), 7)) else {
            panic!("not marked")
        };
        assert!(!m.forwarded);
        assert_eq!(
            (m.inner.ident, m.inner.ports, m.inner.l4_checksum),
            (7, [40000, 4433], 0xabcd)
        );
        let Frame::Marked(m) = classify(&frame(Some((FLAG_FORWARDED, 1)), 7)) else {
            panic!("not marked")
        };
        assert!(m.forwarded);
        assert_eq!(classify(&[0u8; 30]), Frame::Other);
        // A truncated inner packet is not read past its end.
        let mut short = frame(Some((0, 0)), 7);
        short.truncate(14 + 28 + 10);
        assert_eq!(classify(&short), Frame::Other);
    }

    #[test]
    fn a_forwarded_frame_is_timed_from_its_first_transmission() {
        let a = frame(Some((0, 0)), 1);
        let b = frame(Some((FLAG_FORWARDED, 1)), 1);
        let c = frame(Some((0, 0)), 2);
        let lone = frame(Some((FLAG_FORWARDED, 1)), 3);
        let plain = frame(None, 4);
        let ms = Duration::from_millis;
        let r = tally(
            [
                (ms(10), a.as_slice()),
                (ms(11), c.as_slice()),
                (ms(13), b.as_slice()),
                (ms(20), lone.as_slice()),
                (ms(21), plain.as_slice()),
            ]
            .into_iter(),
        );
        assert_eq!(
            (r.frames, r.sent_with_alternative, r.forwarded, r.matched),
            (5, 2, 2, 1)
        );
        assert_eq!((r.plain, r.skipped, r.forwarded_flows), (1, 0, 1));
        assert_eq!(r.extra.max_us, 3000);
        assert_eq!(r.extra.p50_us, 3000);
    }
}
