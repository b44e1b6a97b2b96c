//! `perf gen`: N flows toward one destination, at a fixed rate or flat out, for a duration.
//!
//! Frames are built once before the clock starts ([`frames`]), with
//! [`mux_packet::packet_builder::PacketBuilder`], so the send loop only picks the next frame and
//! hands it to an AF_PACKET socket ([`mux_ports::afpacket::RawSocket`]). Flows are sent
//! round-robin: packet `k` belongs to flow `k mod N`, so every flow gets the same share and a
//! lossless run delivers every flow.
//!
//! Transmit ([`TxMode`], `--tx`): by default consecutive packets of the round-robin go out in
//! batches of up to `--batch` (32) frames per `sendmmsg(2)` ([`RawSocket::send_batch`]), so a
//! batch carries that many different flows and the per-packet system-call cost, which bounded
//! the generator below what the MUX forwards, is shared; `--tx single` is the old one `send(2)`
//! per frame, kept for comparison. Batching changes neither the order of the packets nor the
//! flow list. A batch never exceeds what is due, so pacing is the same in both modes.
//!
//! Pacing (`--rate PPS`): the loop sends whatever is due at `elapsed × rate`, then sleeps a
//! little; bursts are therefore at most a few hundred microseconds' worth of packets, which the
//! veth queues absorb. `--rate 0` sends flat out (the loop only reads the clock every 256
//! frames).
//!
//! A frame the kernel drops on transmit (`ENOBUFS`: the device or its peer's backlog was full;
//! in a batch, the first frame not accepted) is counted in `dropped_on_send` and not retried; the frame is gone, as it would be on a
//! wire. `EAGAIN` (socket buffer full) is retried. Any other error stops the run: the
//! interface went away or the arguments are wrong.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mux_packet::packet_builder::PacketBuilder;
use mux_packet::packet_builder::tcp_flags::{ACK, PSH, SYN};
use mux_ports::afpacket::{MAX_SEND_BATCH, RawSocket, enter_netns};

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
    /// One frame per system call, or batches.
    pub tx: TxMode,
}

/// How the generator hands frames to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxMode {
    /// One `send(2)` per frame.
    Single,
    /// One `sendmmsg(2)` per up to N frames (1..=[`MAX_SEND_BATCH`]), consecutive packets of
    /// the round-robin, hence N different flows when there are that many.
    Batch(u64),
}

impl std::fmt::Display for TxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxMode::Single => f.write_str("single"),
            TxMode::Batch(n) => write!(f, "batch {n}"),
        }
    }
}

impl TxMode {
    /// `single`, or `batch` with a batch size (1..=[`MAX_SEND_BATCH`]).
    pub fn new(mode: &str, batch: usize) -> Result<Self, String> {
        match mode {
            "single" => Ok(TxMode::Single),
            "batch" if (1..=MAX_SEND_BATCH).contains(&batch) => Ok(TxMode::Batch(batch as u64)),
            "batch" => Err(format!("--batch {batch}: 1..={MAX_SEND_BATCH}")),
            _ => Err(format!("--tx {mode}: batch or single")),
        }
    }
}

impl TxMode {
    /// Frames the next call hands to the kernel when `owed` are due (at least 1 when `owed` is
    /// not 0): a batch never runs ahead of the pacing.
    pub fn next_call(self, owed: u64) -> u64 {
        match self {
            TxMode::Single => owed.min(1),
            TxMode::Batch(b) => b.min(owed),
        }
    }
}

/// How many packets should have been attempted `elapsed` into the run: flat out (`rate` 0),
/// 256 more than so far (the clock is read every 256 frames); paced, `elapsed × rate`, at most
/// 4096 ahead of `attempted` (a stalled loop does not burst the backlog at once).
pub fn due(rate: u64, elapsed: Duration, attempted: u64) -> u64 {
    if rate == 0 {
        attempted + 256
    } else {
        let d = elapsed.as_secs_f64() * rate as f64;
        (d as u64).min(attempted + 4096)
    }
}

/// Fills `out` with the frames of packets `first..first + k` of the round-robin (packet `p` is
/// flow `p mod N`'s; its first frame while `p < N`, its later frame after).
pub fn batch_of<'a>(frames: &'a [FlowFrames], first: u64, k: u64, out: &mut Vec<&'a [u8]>) {
    out.clear();
    let n = frames.len() as u64;
    out.extend((first..first + k).map(|p| {
        let f = &frames[(p % n) as usize];
        if p < n { &f.first[..] } else { &f.rest[..] }
    }));
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
    /// How frames were handed to the kernel: `batch N` (`sendmmsg`, up to N per call) or
    /// `single` (one `send` per frame). Empty in reports older than the option.
    #[serde(default)]
    pub tx: String,
    /// System calls that sent (or tried to send) frames.
    #[serde(default)]
    pub send_calls: u64,
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
        "gen: {} flows to {} on {}, {}-byte frames, {} for {:.1} s, tx {}",
        settings.flows,
        settings.destination,
        settings.interface,
        settings.size,
        if settings.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{} pps", settings.rate)
        },
        settings.duration.as_secs_f64(),
        settings.tx
    ));

    let mut attempted = 0u64;
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut retries = 0u64;
    let mut send_calls = 0u64;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(MAX_SEND_BATCH);
    let start = Instant::now();
    let deadline = start + settings.duration;
    let mut last_send = start;
    'outer: loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = due(settings.rate, now - start, attempted);
        while attempted < due {
            let k = settings.tx.next_call(due - attempted);
            batch_of(&frames, attempted, k, &mut batch);
            let result = if batch.len() == 1 {
                socket.send(batch[0]).map(|()| 1)
            } else {
                socket.send_batch(&batch)
            };
            send_calls += 1;
            match result {
                Ok(m) => {
                    sent += m as u64;
                    attempted += m as u64;
                }
                // The first frame of the batch was dropped: count it, go on with the next.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    dropped += 1;
                    attempted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    retries += 1;
                    std::thread::yield_now();
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                }
                Err(source) => {
                    return Err(GenError::Send {
                        interface: settings.interface.clone(),
                        sent,
                        source,
                    });
                }
            }
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
        tx: settings.tx.to_string(),
        send_calls,
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
            tx: TxMode::Batch(32),
        }
    }

    #[test]
    fn batches_cover_every_packet_in_round_robin_order() {
        let s = settings("tcp", 60, true);
        let flows = flow_sources(&s.src_net, 5, 1).unwrap();
        let fr = frames(&s, &flows).unwrap();
        // Packets 0..23 sent in batches of 4 (the last one short) equal the one-by-one sequence.
        let one_by_one: Vec<&[u8]> = (0..23u64)
            .map(|p| {
                let f = &fr[(p % 5) as usize];
                if p < 5 { &f.first[..] } else { &f.rest[..] }
            })
            .collect();
        let mut batched = Vec::new();
        let mut out = Vec::new();
        let mut p = 0u64;
        while p < 23 {
            let k = 4.min(23 - p);
            batch_of(&fr, p, k, &mut out);
            assert_eq!(out.len() as u64, k);
            batched.extend_from_slice(&out);
            p += k;
        }
        assert_eq!(batched, one_by_one);
        // A batch of 4 out of 5 flows carries 4 different flows; the first 5 packets are SYNs.
        batch_of(&fr, 0, 4, &mut out);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(*f, &fr[i].first[..]);
            assert_eq!(f[47], SYN);
        }
        batch_of(&fr, 3, 4, &mut out);
        assert_eq!(out[0], &fr[3].first[..]);
        assert_eq!(
            out[2],
            &fr[0].rest[..],
            "packet 5 wraps to flow 0's later frame"
        );
        batch_of(&fr, 7, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn pacing_with_batches_never_runs_ahead() {
        // 10 kpps, simulated 50 µs ticks: at every tick the loop sends exactly what is due, in
        // calls of at most the batch size, and after 1 s it has sent 10 000 frames.
        for tx in [TxMode::Single, TxMode::Batch(32), TxMode::Batch(64)] {
            let mut attempted = 0u64;
            let mut calls = 0u64;
            for tick in 1..=20_000u64 {
                let elapsed = Duration::from_micros(tick * 50);
                let d = due(10_000, elapsed, attempted);
                while attempted < d {
                    let k = tx.next_call(d - attempted);
                    assert!(k >= 1 && attempted + k <= d, "{tx}: a call ran ahead");
                    attempted += k;
                    calls += 1;
                }
                let expected = (elapsed.as_secs_f64() * 10_000.0) as u64;
                assert_eq!(attempted, expected, "{tx} at tick {tick}");
            }
            assert_eq!(attempted, 10_000);
            if tx == TxMode::Single {
                assert_eq!(calls, 10_000);
            }
        }
        // A stalled loop catches up at most 4096 frames at once; flat out, 256 per clock read.
        assert_eq!(due(1_000_000, Duration::from_secs(1), 0), 4096);
        assert_eq!(due(0, Duration::from_secs(1), 1000), 1256);
        // Flat out with batches of 32: 256 due = 8 calls.
        let mut owed = 256;
        let mut calls = 0;
        while owed > 0 {
            owed -= TxMode::Batch(32).next_call(owed);
            calls += 1;
        }
        assert_eq!(calls, 8);
        assert_eq!(TxMode::Batch(32).next_call(0), 0);
    }

    #[test]
    fn tx_modes_parse_and_print() {
        assert_eq!(TxMode::new("single", 32), Ok(TxMode::Single));
        assert_eq!(TxMode::new("batch", 32), Ok(TxMode::Batch(32)));
        assert_eq!(TxMode::new("batch", 64), Ok(TxMode::Batch(64)));
        assert!(TxMode::new("batch", 0).is_err());
        assert!(TxMode::new("batch", 65).is_err());
        assert!(TxMode::new("ring", 32).is_err());
        assert_eq!(TxMode::Batch(16).to_string(), "batch 16");
        assert_eq!(TxMode::Single.to_string(), "single");
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
