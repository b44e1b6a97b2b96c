//! `mux trace`: what the MUX does with a flow, and why.
//!
//! An operator's question is "where does this client go, and why there?". The answer depends
//! on the snapshot (is the destination a VIP, which backend its Maglev table picks, which
//! backends its previous tables picked and whether second chance would name one, the
//! backends' states) and, on a running MUX, on the worker's flow table. This module answers
//! the first part for a 5-tuple from any snapshot — one compiled from a file (offline) or the
//! daemon's published one (`/v1/trace`, live) — as an [`Explanation`] that serializes to JSON
//! and renders as text. [`trace_capture`] answers both parts for every packet of a capture by
//! running it through a real [`Pipeline`] one frame at a time and looking at the flow table
//! before and at the verdict after.
//!
//! Nothing here runs on the data path: the live endpoint reads the snapshot the workers read,
//! and never the per-core flow tables (they belong to their workers; a live trace says what a
//! flow without an entry gets, which is also what a new connection gets).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use mux_packet::flow_key::{FlowKey, canonical_addr, unmap};
use mux_packet::stable_hash;
use mux_ports::PacketBuf;
use mux_ports::heap_buf::HeapBuf;

use crate::control::compile::{self, CompileOptions, FlowClock};
use crate::control::registry::Registry;
use crate::control::replay::{ReplayError, read_frames};
use crate::control::state::backend_state_name;
use crate::control::table_history::{self, TableHistory};
use crate::dataplane::clock::BurstTime;
use crate::dataplane::parse::{self, Kind, Parse};
use crate::dataplane::pipeline::Pipeline;
use crate::dataplane::second_chance;
use crate::dataplane::snapshot::{Backend, Snapshot, VipKey};
use crate::dataplane::verdict::{Reply, Verdict};

/// A flow to explain: protocol and the client → VIP addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The client's address and port.
    pub src: SocketAddr,
    /// The VIP's address and port.
    pub dst: SocketAddr,
}

impl FlowQuery {
    /// Parses `PROTO SRC:PORT DST:PORT` (`tcp 198.51.100.7:40000 192.0.2.10:80`; an arrow
    /// between the two is allowed; IPv6 as `[2001:db8::7]:40000`).
    pub fn parse(text: &str) -> Result<FlowQuery, String> {
        let words: Vec<&str> = text
            .split([' ', '+', ','])
            .filter(|w| !w.is_empty() && !matches!(*w, "->" | "→" | ">"))
            .collect();
        let usage = "write a flow as `tcp 198.51.100.7:40000 192.0.2.10:80` (protocol, client \
                     address:port, VIP address:port; IPv6 as [2001:db8::7]:40000)";
        let [proto, src, dst] = words[..] else {
            return Err(format!("{text:?}: {usage}"));
        };
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            other => return Err(format!("{text:?}: protocol {other:?} is not tcp or udp")),
        };
        let addr = |s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("{text:?}: {s:?} is not an address:port; {usage}"))
        };
        Ok(FlowQuery {
            protocol,
            src: addr(src)?,
            dst: addr(dst)?,
        })
    }

    /// The flow key the data path would build for this flow.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            src: canonical_addr(self.src.ip()),
            dst: canonical_addr(self.dst.ip()),
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            protocol: self.protocol,
        }
    }
}

impl fmt::Display for FlowQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = if self.protocol == 6 { "tcp" } else { "udp" };
        write!(f, "{p} {} → {}", self.src, self.dst)
    }
}

/// A backend as a trace names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    /// Its address.
    pub address: IpAddr,
    /// `active`, `draining` or `failed`.
    pub state: String,
    /// Its Maglev weight.
    pub weight: u32,
    /// Whether a flow pinned to it still goes to it now (not past a failed backend's grace
    /// or a drain deadline).
    pub keeps_flows: bool,
}

impl BackendView {
    fn of(b: &Backend, now: u32) -> BackendView {
        BackendView {
            address: unmap(b.address),
            state: backend_state_name(b.state).to_string(),
            weight: b.weight,
            keeps_flows: b.keeps_flows(now),
        }
    }
}

/// What one previous Maglev table picks for the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousPick {
    /// When the table took over (Unix ms); `None`: before the MUX's history began.
    pub since_unix_ms: Option<u64>,
    /// When it was replaced (Unix ms).
    pub replaced_unix_ms: u64,
    /// Whether it may still name an alternative.
    pub in_window: bool,
    /// Its pick; `None` when the backend has left the configuration.
    pub backend: Option<BackendView>,
}

/// What the MUX does with a flow, from its snapshot. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The flow, as written.
    pub flow: String,
    /// The snapshot's configuration generation.
    pub generation: u64,
    /// The VIP the flow's destination matches; `None`: not a VIP (the kernel gets it).
    pub vip: Option<String>,
    /// The flow's stable hash (what every MUX computes alike).
    pub stable_hash: String,
    /// The Maglev slot and table size; `None` when no backend takes new flows.
    pub maglev_slot: Option<(u64, u32)>,
    /// The backend the current table picks (where a new connection goes).
    pub current: Option<BackendView>,
    /// The previous tables, in the order second chance asks them.
    pub previous: Vec<PreviousPick>,
    /// The alternative a packet of an established connection without a flow entry here
    /// carries (second chance), if any.
    pub alternative: Option<BackendView>,
    /// The outer header of an encapsulated packet: `IPv4 10.0.0.11 → 10.1.0.2`.
    pub outer: Option<String>,
    /// One sentence per case: a new connection, an established one without an entry.
    pub summary: Vec<String>,
}

/// Explains `q` against `snap` at flow-clock second `now`.
pub fn explain(snap: &Snapshot, q: &FlowQuery, now: u32) -> Explanation {
    let key = q.key();
    let hash = stable_hash::flow_hash(&key);
    let mut e = Explanation {
        flow: q.to_string(),
        generation: snap.generation(),
        vip: None,
        stable_hash: format!("{hash:016x}"),
        maglev_slot: None,
        current: None,
        previous: Vec::new(),
        alternative: None,
        outer: None,
        summary: Vec::new(),
    };
    let vip_key = VipKey {
        addr: key.dst,
        port: key.dst_port,
        protocol: key.protocol,
    };
    let Some((_, vip)) = snap.vip(&vip_key) else {
        let why = if snap.is_vip_address(&key.dst) {
            "the address is a VIP's, but not this port and protocol"
        } else {
            "not a VIP address"
        };
        e.summary.push(format!(
            "not for a VIP ({why}): the MUX hands such a frame to the host kernel unchanged"
        ));
        return e;
    };
    e.vip = Some(vip.name.clone());
    let current_id = vip.pick(hash);
    if let Some(table) = &vip.maglev {
        e.maglev_slot = Some((hash % u64::from(table.size()), table.size()));
    }
    let current = current_id.and_then(|id| snap.backend(id));
    e.current = current.map(|b| BackendView::of(b, now));
    for t in vip.previous.iter() {
        e.previous.push(PreviousPick {
            since_unix_ms: (t.since_unix_ms > 0).then_some(t.since_unix_ms),
            replaced_unix_ms: t.replaced_unix_ms,
            in_window: now < t.until,
            backend: snap.backend(t.pick(hash)).map(|b| BackendView::of(b, now)),
        });
    }
    let Some((id, backend)) = current_id.zip(current) else {
        e.summary.push(format!(
            "vip {:?} has no backend that takes new flows: a new flow is dropped (no_backend); \
             a flow already pinned to a backend keeps going there while it keeps flows",
            vip.name
        ));
        return e;
    };
    let alternative = snap
        .alternative(vip, hash, id, now)
        .and_then(|a| snap.backend(a));
    e.alternative = alternative.map(|b| BackendView::of(b, now));
    let source = if backend.is_v4 {
        snap.parts.tunnel_v4.map(|a| IpAddr::from(a).to_string())
    } else {
        snap.parts.tunnel_v6.map(|a| IpAddr::from(a).to_string())
    };
    let family = if backend.is_v4 { "IPv4" } else { "IPv6" };
    e.outer = Some(format!(
        "{family} {} → {}",
        source.unwrap_or_else(|| "(no tunnel source)".into()),
        unmap(backend.address)
    ));
    let to = unmap(backend.address);
    e.summary.push(format!(
        "a new connection (TCP SYN, or a UDP flow seen first here with no previous table \
         naming another backend) goes to {to} ({}), plain IP-in-IP",
        backend_state_name(backend.state)
    ));
    match alternative {
        Some(alt) => e.summary.push(format!(
            "a packet of an established connection this MUX has no entry for goes to {to} \
             carrying the alternative {} (second chance: a previous table picked it); {to}'s \
             host agent delivers it if it carries the connection, else forwards it there",
            unmap(alt.address)
        )),
        None => e.summary.push(format!(
            "a packet of an established connection this MUX has no entry for also goes to {to}, \
             plain (no previous table in its window picks another backend that keeps flows)"
        )),
    }
    e
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flow        {}", self.flow)?;
        writeln!(f, "generation  {}", self.generation)?;
        match &self.vip {
            Some(v) => writeln!(f, "vip         {v:?}")?,
            None => writeln!(f, "vip         none")?,
        }
        writeln!(f, "stable hash {}", self.stable_hash)?;
        if let Some((slot, size)) = self.maglev_slot {
            writeln!(f, "maglev      slot {slot} of {size}")?;
        }
        if let Some(b) = &self.current {
            writeln!(f, "current     {}", backend_text(b))?;
        }
        for (i, p) in self.previous.iter().enumerate() {
            let pick = p
                .backend
                .as_ref()
                .map_or("a backend no longer configured".to_string(), backend_text);
            let window = if p.in_window {
                "in window"
            } else {
                "window ended"
            };
            writeln!(
                f,
                "previous {}  {pick} (replaced {}, {window})",
                i + 1,
                unix_ms_text(p.replaced_unix_ms)
            )?;
        }
        if let Some(a) = &self.alternative {
            writeln!(f, "alternative {}", backend_text(a))?;
        }
        if let Some(o) = &self.outer {
            writeln!(f, "outer       {o}")?;
        }
        for s in &self.summary {
            writeln!(f, "- {s}")?;
        }
        Ok(())
    }
}

fn backend_text(b: &BackendView) -> String {
    let mut s = format!("{} ({}, weight {}", b.address, b.state, b.weight);
    if !b.keeps_flows {
        s.push_str(", past its grace or drain deadline");
    }
    s.push(')');
    s
}

fn unix_ms_text(ms: u64) -> String {
    let ago = crate::control::table_history::unix_ms(SystemTime::now()).saturating_sub(ms);
    format!("{:.1} s ago", ago as f64 / 1000.0)
}

/// A snapshot compiled from `config` as a MUX starting now would (with the second-chance
/// history of `history`, if given: the file a MUX's `[dataplane] second_chance_state` holds),
/// and the flow-clock second that is now.
pub fn offline_snapshot(
    config: &Path,
    history: Option<&Path>,
) -> Result<(Snapshot, u32), ReplayError> {
    let cfg = crate::config::load_file(config)?;
    let history = match history {
        Some(p) => table_history::load(p)?.history,
        None => TableHistory::default(),
    };
    let now = SystemTime::now();
    let options = CompileOptions {
        clock: FlowClock {
            origin: Instant::now(),
            origin_unix: now,
        },
        ..CompileOptions::default()
    };
    let (snap, _) =
        compile::compile_with_history(&cfg, &mut Registry::default(), 1, &options, &history, now)?;
    Ok((snap, 0))
}

/// Room for one traced frame (headroom included): a jumbo frame fits.
const FRAME_ROOM: usize = 10_240;

/// One packet of a capture, traced.
#[derive(Clone, Debug, Serialize)]
pub struct PacketTrace {
    /// 1-based index in the capture.
    pub index: usize,
    /// The frame, summarised.
    pub packet: String,
    /// The flow-table entry before the packet: `none`, `backend 10.1.0.2 (established)` or
    /// `second chance: alternative 10.1.0.1`.
    pub flow_table_before: String,
    /// What the MUX did: forward (where, with which alternative), reply, kernel, drop (why).
    pub verdict: String,
    /// The snapshot-level explanation of the packet's flow (TCP/UDP toward a VIP only).
    pub explanation: Option<Explanation>,
}

/// Traces every frame of `input` through one pipeline built from `config` (the flow clock
/// follows the capture's timestamps, as `mux replay` does).
pub fn trace_capture(
    config: &Path,
    history: Option<&Path>,
    input: &Path,
) -> Result<Vec<PacketTrace>, ReplayError> {
    let (snap, _) = offline_snapshot(config, history)?;
    let cfg = crate::config::load_file(config)?;
    let mut pipeline = Pipeline::new(cfg.dataplane().flow_table_capacity(), 0x6d75_785f_7472);
    let frames = read_frames(input)?;
    let first = frames.first().map(|(t, _)| *t).unwrap_or_default();
    let mut out = Vec::with_capacity(frames.len());
    for (i, (t, frame)) in frames.into_iter().enumerate() {
        let offset = t.saturating_sub(first);
        let clock = BurstTime::from_micros(u64::try_from(offset.as_micros()).unwrap_or(u64::MAX));
        let now = clock.secs();
        let parsed = match parse::parse(&frame) {
            Parse::Ip(p) => Some(p),
            _ => None,
        };
        let before = parsed
            .map(|p| flow_entry_text(&mut pipeline, &snap, &p.key, now))
            .unwrap_or_else(|| "–".into());
        let packet = packet_text(&frame, parsed.as_ref());
        let mut buf = HeapBuf::new(FRAME_ROOM);
        if !buf.load(&frame, None) {
            out.push(PacketTrace {
                index: i + 1,
                packet,
                flow_table_before: before,
                verdict: format!("not traced: larger than {FRAME_ROOM} bytes"),
                explanation: None,
            });
            continue;
        }
        let mut bufs = [buf];
        let mut verdicts = [Verdict::ToKernel];
        pipeline.process_burst(&snap, clock, &mut bufs, &mut verdicts);
        let verdict = verdict_text(verdicts[0], bufs[0].data());
        let explanation = parsed
            .filter(|p| matches!(p.kind, Kind::Transport { .. }))
            .map(|p| explain(&snap, &query_of(&p.key), now));
        out.push(PacketTrace {
            index: i + 1,
            packet,
            flow_table_before: before,
            verdict,
            explanation,
        });
    }
    Ok(out)
}

fn query_of(key: &FlowKey) -> FlowQuery {
    FlowQuery {
        protocol: key.protocol,
        src: SocketAddr::new(unmap(key.src), key.src_port),
        dst: SocketAddr::new(unmap(key.dst), key.dst_port),
    }
}

fn flow_entry_text(pipeline: &mut Pipeline, snap: &Snapshot, key: &FlowKey, now: u32) -> String {
    let table = pipeline.flow_table_mut();
    let h = table.hash(key);
    if let Some(e) = table.find(&h, now) {
        let (id, state, left) = (e.backend(), e.state(), e.expires().saturating_sub(now));
        let to = snap
            .backend(id)
            .map_or(format!("backend id {id}"), |b| unmap(b.address).to_string());
        return format!("{to} ({state:?}, expires in {left} s)");
    }
    let name = |id: u32| {
        snap.backend(id)
            .map_or(format!("backend id {id}"), |b| unmap(b.address).to_string())
    };
    if let Some(e) = table.find(&h.second_chance(), now) {
        let alt = name(e.backend());
        return match table.find(&h.second_chance_primary(), now) {
            Some(p) => format!(
                "second-chance entry: to {} with alternative {alt}",
                name(p.backend())
            ),
            None => format!("second-chance entry: alternative {alt}"),
        };
    }
    "none".into()
}

fn packet_text(frame: &[u8], parsed: Option<&parse::Parsed>) -> String {
    let Some(p) = parsed else {
        return format!("{} bytes, not an IP packet for the MUX", frame.len());
    };
    let q = query_of(&p.key);
    let mut s = match p.kind {
        Kind::Transport { tcp: Some(t) } => {
            let mut flags = String::new();
            for (on, c) in [(t.syn, 'S'), (t.ack, 'A'), (t.fin_or_rst, 'F')] {
                if on {
                    flags.push(c);
                }
            }
            format!("{q} [{flags}]")
        }
        Kind::Transport { tcp: None } => q.to_string(),
        Kind::Fragment => format!("fragment {} → {}", q.src.ip(), q.dst.ip()),
        Kind::IcmpError => format!("ICMP error about {q}"),
        Kind::BrokenIcmpError => "ICMP error with an unusable quote".to_string(),
    };
    let _ = write!(s, ", {} bytes", p.ip_len);
    s
}

fn verdict_text(v: Verdict, out: &[u8]) -> String {
    match v {
        Verdict::Forward => {
            let (dst, alt) = outer_of(out);
            let to = dst.map_or("?".into(), |d| d.to_string());
            match alt {
                Some(a) => format!("forward to {to}, alternative {a} (second chance)"),
                None => format!("forward to {to}"),
            }
        }
        Verdict::Reply(Reply::TooBig) => {
            "reply: ICMP too big (the packet would exceed the MTU once encapsulated)".into()
        }
        Verdict::Reply(Reply::Reset) => {
            "reply: TCP reset from the VIP (its backend passed its drain deadline)".into()
        }
        Verdict::ToKernel => "to the kernel (not for a VIP)".into(),
        Verdict::Drop(r) => format!("drop: {}", r.name()),
    }
}

/// The outer destination of an encapsulated frame and the alternative its option names.
fn outer_of(frame: &[u8]) -> (Option<IpAddr>, Option<IpAddr>) {
    let Some(ip) = frame.get(14..) else {
        return (None, None);
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).expect("4 bytes"));
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let alt = ip.get(20..ihl).and_then(|opt| alternative_in(opt, 2));
            (Some(dst), alt)
        }
        Some(6) if ip.len() >= 40 => {
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
            let alt = (ip[6] == second_chance::IPV6_DESTINATION_OPTIONS)
                .then(|| ip.get(42..).and_then(|opt| alternative_in(opt, 2)))
                .flatten();
            (Some(dst), alt)
        }
        _ => (None, None),
    }
}

/// The alternative in an option area that starts with the second-chance option (type, length,
/// flags, hops, address: docs/second-chance.md); `skip` is where the address starts after the
/// type and length.
fn alternative_in(opt: &[u8], skip: usize) -> Option<IpAddr> {
    if opt.first() != Some(&second_chance::OPTION_TYPE) {
        return None;
    }
    let len = usize::from(*opt.get(1)?);
    let addr = opt.get(skip + 2..)?;
    match len {
        // IPv4 option: the length counts type and length; IPv6: it does not.
        8 | 6 => Some(IpAddr::from(<[u8; 4]>::try_from(addr.get(..4)?).ok()?)),
        20 | 18 => Some(IpAddr::from(<[u8; 16]>::try_from(addr.get(..16)?).ok()?)),
        _ => None,
    }
}

/// Explains a flow against a running daemon: `GET /v1/trace?flow=…` on its
/// admin endpoint (`admin`, e.g. `127.0.0.1:9100`).
pub fn explain_live(admin: SocketAddr, q: &FlowQuery) -> Result<Explanation, String> {
    use std::io::{Read, Write};
    let flow: String = q
        .to_string()
        .replace(" → ", " ")
        .replace(' ', "+")
        .replace('[', "%5B")
        .replace(']', "%5D");
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(3))
        .map_err(|e| format!("cannot reach the admin endpoint {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /v1/trace?flow={flow} HTTP/1.0\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{admin}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("{admin}: {e}"))?;
    let (head, json) = body
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{admin}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{admin}: {}", json.trim()));
    }
    serde_json::from_str(json).map_err(|e| format!("{admin}: unexpected answer: {e}"))
}

/// The admin endpoint's `/v1/trace?flow=PROTO+SRC:PORT+DST:PORT` against the published
/// snapshot: the explanation as JSON, or why the flow could not be read.
pub fn query_from_url(url: &str) -> Result<FlowQuery, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let flow = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("flow="))
        .ok_or("give the flow: /v1/trace?flow=tcp+198.51.100.7:40000+192.0.2.10:80")?;
    let decoded = flow
        .replace("%5B", "[")
        .replace("%5b", "[")
        .replace("%5D", "]")
        .replace("%5d", "]")
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%20", " ");
    FlowQuery::parse(&decoded)
}

/// Where `mux trace` takes its snapshot from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A configuration compiled here, as a MUX starting now would, with an optional
    /// second-chance history file.
    Offline {
        /// The configuration.
        config: std::path::PathBuf,
        /// The history file, if any.
        history: Option<std::path::PathBuf>,
    },
    /// A running MUX's admin endpoint.
    Live(SocketAddr),
}

/// `mux trace FLOW…`: each flow explained, as text or as a JSON array.
pub fn trace_flows(source: &Source, flows: &[FlowQuery], json: bool) -> Result<String, String> {
    let explanations: Vec<Explanation> = match source {
        Source::Offline { config, history } => {
            let (snap, now) =
                offline_snapshot(config, history.as_deref()).map_err(|e| e.to_string())?;
            flows.iter().map(|q| explain(&snap, q, now)).collect()
        }
        Source::Live(admin) => flows
            .iter()
            .map(|q| explain_live(*admin, q))
            .collect::<Result<_, _>>()?,
    };
    if json {
        return Ok(
            serde_json::to_string_pretty(&explanations).expect("explanations serialize") + "\n",
        );
    }
    let mut out = String::new();
    for (i, e) in explanations.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{e}");
    }
    Ok(out)
}

/// `mux trace --pcap`: each packet, as text or as a JSON array.
pub fn trace_pcap(
    config: &Path,
    history: Option<&Path>,
    input: &Path,
    json: bool,
) -> Result<String, String> {
    let traces = trace_capture(config, history, input).map_err(|e| e.to_string())?;
    if json {
        return Ok(serde_json::to_string_pretty(&traces).expect("traces serialize") + "\n");
    }
    let mut out = String::new();
    for t in &traces {
        let _ = writeln!(out, "#{} {}", t.index, t.packet);
        let _ = writeln!(out, "   flow table before: {}", t.flow_table_before);
        let _ = writeln!(out, "   verdict: {}", t.verdict);
        if let Some(e) = &t.explanation
            && let Some(v) = &e.vip
        {
            let current = e
                .current
                .as_ref()
                .map_or("none".into(), |b| b.address.to_string());
            let alt = e
                .alternative
                .as_ref()
                .map_or("none".into(), |b| b.address.to_string());
            let _ = writeln!(
                out,
                "   vip {v:?}: current table picks {current}; second-chance alternative {alt}"
            );
        }
    }
    Ok(out)
}
