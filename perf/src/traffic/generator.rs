//! `perf gen`: N flows toward one destination, at a fixed rate or flat out, for a duration.
//!
//! Frames are built once before the clock starts ([`frames`]), with
//! [`mux_packet::packet_builder::PacketBuilder`], so the send loop only picks the next frame and
//! hands it to an AF_PACKET socket ([`mux_ports::afpacket::RawSocket`], one `send(2)`
//! per frame). Flows are sent round-robin: packet `k` belongs to flow `k mod N`, so every flow
//! gets the same share and a lossless run delivers every flow.
//!
//! Pacing (`--rate PPS`): the loop sends whatever is due at `elapsed × rate`, then sleeps a
//! little; bursts are therefore at most a few hundred microseconds' worth of packets, which the
//! veth queues absorb. `--rate 0` sends flat out (the loop only reads the clock every 256
//! frames).
//!
//! A frame the kernel drops on transmit (`ENOBUFS`: the device or its peer's backlog was full)
//! is counted in `dropped_on_send` and not retried; the frame is gone, as it would be on a
//! wire. `EAGAIN` (socket buffer full) is retried. Any other error stops the run: the
//! interface went away or the arguments are wrong.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mux_packet::packet_builder::PacketBuilder;
use mux_packet::packet_builder::tcp_flags::{ACK, PSH, SYN};
use mux_ports::afpacket::{RawSocket, enter_netns};

use super::{FlowSource, PROTO_TCP, Prefix, Service, flow_sources, format_mac};

/// Smallest frame (Ethernet minimum without FCS).
pub const MIN_FRAME: usize = 60;
/// Largest frame (1500-byte MTU plus the Ethernet header).
pub const MAX_FRAME: usize = 1514;

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenSettings {
    /// Interface to send on (in the current network namespace, or `netns`'s).
    pub interface: String,
    /// Enter this network namespace (`/run/netns/<name>`) first.
    pub netns: Option<String>,
    /// Source MAC of every frame.
    pub src_mac: [u8; 6],
    /// Destination MAC (the router's).
    pub dst_mac: [u8; 6],
    /// Client addresses come from this prefix.
    pub src_net: Prefix,
    /// Destination of every flow (the VIP, or a plain address for the baseline).
    pub destination: Service,
    /// Number of distinct flows.
    pub flows: usize,
    /// Seed of the flow list.
    pub seed: u64,
    /// Frame length in bytes, FCS excluded ([`MIN_FRAME`]..=[`MAX_FRAME`]).
    pub size: usize,
    /// Packets per second; 0 = flat out.
    pub rate: u64,
    /// How long to send.
    pub duration: Duration,
    /// TCP only: the first packet of each flow is a SYN, the others ACKs (otherwise all ACKs).
    pub syn_ack_mix: bool,
}

/// What was sent. Serialised as the `--report` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenReport {
    /// Interface used.
    pub interface: String,
    /// Source MAC.
    pub src_mac: String,
    /// Destination MAC.
    pub dst_mac: String,
    /// Destination (`192.0.2.10:80/tcp`).
    pub destination: String,
    /// Client prefix.
    pub src_net: String,
    /// Number of flows.
    pub flows: usize,
    /// Seed of the flow list.
    pub seed: u64,
    /// Frame length, FCS excluded.
    pub size: usize,
    /// Requested rate (0 = flat out).
    pub rate_requested: u64,
    /// Requested duration in seconds.
    pub duration_requested: f64,
    /// Whether SYN-then-ACK flows were sent.
    pub syn_ack_mix: bool,
    /// Seconds between the first and the last send.
    pub elapsed_seconds: f64,
    /// Frames the kernel accepted.
    pub sent: u64,
    /// Frames the kernel dropped on transmit (`ENOBUFS`).
    pub dropped_on_send: u64,
    /// Times a send was retried (`EAGAIN`).
    pub retries: u64,
    /// Accepted frames per second.
    pub pps: f64,
    /// The flows, in sending order (flow `i` got packets `i`, `i + N`, ...).
    pub flow_list: Vec<FlowSource>,
}

/// Why a run could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Arguments that cannot work.
    #[error("{0}")]
    Settings(String),
    /// Entering the namespace or opening the socket failed.
    #[error("{0}")]
    Setup(String),
    /// A send failed with an error that is not a drop.
    #[error("send on {interface} failed after {sent} frames: {source}")]
    Send {
        /// Interface.
        interface: String,
        /// Frames sent before.
        sent: u64,
        /// The error.
        source: io::Error,
    },
}

/// Frames of one flow: the first packet, and every later one (equal unless SYN/ACK mix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFrames {
    /// The flow's first frame.
    pub first: Vec<u8>,
    /// Its later frames.
    pub rest: Vec<u8>,
}

/// Builds the frames of every flow (before the clock starts).
pub fn frames(settings: &GenSettings, flows: &[FlowSource]) -> Result<Vec<FlowFrames>, GenError> {
    let dst = settings.destination;
    if !(MIN_FRAME..=MAX_FRAME).contains(&settings.size) {
        return Err(GenError::Settings(format!(
            "--size {}: frames are {MIN_FRAME}..={MAX_FRAME} bytes (FCS excluded)",
            settings.size
        )));
    }
    if settings.src_net.addr.is_ipv4() != dst.addr.is_ipv4() {
        return Err(GenError::Settings(
            "--src-net and the destination must be the same address family".into(),
        ));
    }
    let ip_header = if dst.addr.is_ipv4() { 20 } else { 40 };
    let l4_header = if dst.protocol == PROTO_TCP { 20 } else { 8 };
    let headers = 14 + ip_header + l4_header;
    let payload = settings.size.saturating_sub(headers);
    let padding = settings.size.saturating_sub(headers + payload);
    let build = |f: &FlowSource, flags: u8| {
        let b = if dst.protocol == PROTO_TCP {
            PacketBuilder::tcp(f.src, f.sport, dst.addr, dst.port, flags)
        } else {
            PacketBuilder::udp(f.src, f.sport, dst.addr, dst.port)
        };
        b.macs(settings.src_mac, settings.dst_mac)
            .payload_len(payload)
            .padding(padding)
            .build()
    };
    Ok(flows
        .iter()
        .map(|f| {
            let rest = build(f, ACK | PSH);
            let first = if dst.protocol == PROTO_TCP && settings.syn_ack_mix {
                build(f, SYN)
            } else {
                rest.clone()
            };
            FlowFrames { first, rest }
        })
        .collect())
}

/// Sends for the configured duration and reports. `progress` gets one line at the start.
pub fn run(settings: &GenSettings, progress: impl Fn(&str)) -> Result<GenReport, GenError> {
    if settings.flows == 0 {
        return Err(GenError::Settings("--flows must be at least 1".into()));
    }
    let flow_list = flow_sources(&settings.src_net, settings.flows, settings.seed)
        .map_err(GenError::Settings)?;
    let frames = frames(settings, &flow_list)?;
    if let Some(ns) = &settings.netns {
        enter_netns(&Path::new("/run/netns").join(ns))
            .map_err(|e| GenError::Setup(format!("cannot enter network namespace {ns}: {e}")))?;
    }
    let socket =
        RawSocket::open(&settings.interface).map_err(|e| GenError::Setup(e.to_string()))?;
    progress(&format!(
        "gen: {} flows to {} on {}, {}-byte frames, {} for {:.1} s",
        settings.flows,
        settings.destination,
        settings.interface,
        settings.size,
        if settings.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{} pps", settings.rate)
        },
        settings.duration.as_secs_f64()
    ));

    let n = frames.len() as u64;
    let mut attempted = 0u64;
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut retries = 0u64;
    let start = Instant::now();
    let deadline = start + settings.duration;
    let mut last_send = start;
    'outer: loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = if settings.rate == 0 {
            attempted + 256
        } else {
            let d = (now - start).as_secs_f64() * settings.rate as f64;
            (d as u64).min(attempted + 4096)
        };
        while attempted < due {
            let flow = (attempted % n) as usize;
            let f = &frames[flow];
            let frame = if attempted < n { &f.first } else { &f.rest };
            match socket.send(frame) {
                Ok(()) => sent += 1,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => dropped += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    retries += 1;
                    std::thread::yield_now();
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                    continue;
                }
                Err(source) => {
                    return Err(GenError::Send {
                        interface: settings.interface.clone(),
                        sent,
                        source,
                    });
                }
            }
            attempted += 1;
        }
        last_send = Instant::now();
        if settings.rate > 0 {
            // Sleep until the next packet is due, at most 200 µs (pacing granularity).
            let next_due = Duration::from_secs_f64((attempted + 1) as f64 / settings.rate as f64);
            let wait = (start + next_due).saturating_duration_since(last_send);
            std::thread::sleep(wait.min(Duration::from_micros(200)));
        }
    }
    let elapsed = last_send.duration_since(start).as_secs_f64();
    Ok(GenReport {
        interface: settings.interface.clone(),
        src_mac: format_mac(&settings.src_mac),
        dst_mac: format_mac(&settings.dst_mac),
        destination: settings.destination.to_string(),
        src_net: settings.src_net.to_string(),
        flows: settings.flows,
        seed: settings.seed,
        size: settings.size,
        rate_requested: settings.rate,
        duration_requested: settings.duration.as_secs_f64(),
        syn_ack_mix: settings.syn_ack_mix,
        elapsed_seconds: elapsed,
        sent,
        dropped_on_send: dropped,
        retries,
        pps: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        flow_list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn settings(proto: &str, size: usize, mix: bool) -> GenSettings {
        GenSettings {
            interface: "lo".into(),
            netns: None,
            src_mac: [2, 0, 0, 0, 1, 2],
            dst_mac: [2, 0, 0, 0, 1, 1],
            src_net: "198.51.100.0/24".parse().unwrap(),
            destination: format!("192.0.2.10:80/{proto}").parse().unwrap(),
            flows: 3,
            seed: 1,
            size,
            rate: 0,
            duration: Duration::from_secs(1),
            syn_ack_mix: mix,
        }
    }

    #[test]
    fn frames_have_the_requested_size_and_addresses() {
        let s = settings("tcp", 60, true);
        let flows = flow_sources(&s.src_net, 3, 1).unwrap();
        let fr = frames(&s, &flows).unwrap();
        assert_eq!(fr.len(), 3);
        for (f, src) in fr.iter().zip(&flows) {
            assert_eq!(f.first.len(), 60);
            assert_eq!(f.rest.len(), 60);
            assert_eq!(&f.first[0..6], &[2, 0, 0, 0, 1, 1], "dst MAC first");
            assert_eq!(&f.first[6..12], &[2, 0, 0, 0, 1, 2]);
            let IpAddr::V4(a) = src.src else { panic!() };
            assert_eq!(&f.first[26..30], &a.octets());
            assert_eq!(&f.first[30..34], &[192, 0, 2, 10]);
            assert_eq!(u16::from_be_bytes([f.first[34], f.first[35]]), src.sport);
            assert_eq!(u16::from_be_bytes([f.first[36], f.first[37]]), 80);
            assert_eq!(f.first[47], SYN, "first packet is a SYN");
            assert_eq!(f.rest[47], ACK | PSH, "later ones ACK");
            // IP total length = frame - Ethernet header: the payload fills the frame.
            assert_eq!(u16::from_be_bytes([f.first[16], f.first[17]]), 46);
        }
        let no_mix = frames(&settings("tcp", 60, false), &flows).unwrap();
        assert_eq!(no_mix[0].first, no_mix[0].rest);
        let udp = frames(&settings("udp", 128, true), &flows).unwrap();
        assert_eq!(udp[0].first.len(), 128);
        assert_eq!(udp[0].first[23], 17);
        assert_eq!(udp[0].first, udp[0].rest, "no SYN for UDP");
    }

    #[test]
    fn bad_sizes_and_families_are_refused() {
        let flows = flow_sources(&"198.51.100.0/24".parse().unwrap(), 1, 1).unwrap();
        assert!(frames(&settings("tcp", 59, false), &flows).is_err());
        assert!(frames(&settings("tcp", 1515, false), &flows).is_err());
        let mut s = settings("tcp", 60, false);
        s.destination = "[2001:db8::10]:80/tcp".parse().unwrap();
        assert!(frames(&s, &flows).is_err());
    }
}
