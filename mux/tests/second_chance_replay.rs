//! Second chance across MUXes: the same flows through two separately started MUXes that saw
//! different configuration generations.
//!
//! The story (issue 14): 200 TCP connections start on MUX A under generation 1 (four
//! backends). A backend is added (generation 2) at second 5. A keeps every connection on its
//! backend through its flow entries; entries of connections idle past `tcp_established`
//! (30 s here) expire, and their next packet reaches A as a miss. MUX B started at generation
//! 2 (its own registry, its file listing the backends in another order) and receives the same
//! connections later, as ECMP would send them after a MUX change.
//!
//! What each MUX sends for a connection whose generation-1 backend is no longer the one
//! Maglev picks (a *moved* connection):
//! - A after the reload, entry still there: plain, to the generation-1 backend (a hit);
//! - A after the entry expired: the current backend, naming the generation-1 backend;
//! - B started without history: plain, to the current backend (which resets it: the limit);
//! - B started from a history file (its own from before its restart, or a peer's: the file
//!   holds table inputs, not ids, so it is portable): exactly what A sends, byte for byte.
//!
//! The first test drives the library (two pipelines, two registries); the second runs
//! `mux replay` over two captures, as an operator would.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::scratch::Scratch;
use common::*;
use mux::control::compile::{self, CompileOptions, FlowClock};
use mux::control::registry::Registry;
use mux::control::table_history::{self, TableHistory};
use mux::dataplane::snapshot::Snapshot;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

const FLOWS: u32 = 200;

/// A MUX config: `web` with `backends` in this order, tcp_established 30 s, window 120 s.
fn config(name: &str, backends: &[&str]) -> String {
    let mut s = format!(
        "[mux]\nname = \"{name}\"\n[dataplane]\nio = \"mem\"\nsecond_chance_window_seconds = 120\n\
         [tunnel]\nsource_v4 = \"10.0.0.11\"\n[next_hop]\nmac = \"02:00:00:00:00:fe\"\n\
         source_mac = \"02:00:00:00:00:01\"\n[timeouts]\ntcp_established = 30\n\
         [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
         maglev_table_size = 1009\n"
    );
    for b in backends {
        s.push_str(&format!("  [[vip.backend]]\n  address = \"{b}\"\n"));
    }
    s
}

const GEN1: &[&str] = &["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"];
const GEN2: &[&str] = &["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5"];
const GEN2_B: &[&str] = &["10.1.0.5", "10.1.0.3", "10.1.0.1", "10.1.0.4", "10.1.0.2"];
const GEN1_B: &[&str] = &["10.1.0.4", "10.1.0.2", "10.1.0.3", "10.1.0.1"];

/// Unix time of second 0 of the story.
const T0: u64 = 1_800_000_000;

fn clock() -> FlowClock {
    FlowClock {
        origin: Instant::now(),
        origin_unix: SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

/// One MUX's control plane: registry, history, the snapshot it publishes.
struct Mux {
    registry: Registry,
    history: TableHistory,
    snap: Option<Snapshot>,
    generation: u64,
}

impl Mux {
    fn start(history: TableHistory) -> Mux {
        Mux {
            registry: Registry::default(),
            history,
            snap: None,
            generation: 0,
        }
    }

    /// Hands out ids to other VIPs and backends first, so this MUX's ids differ from A's.
    fn number_ids_differently(&mut self) {
        let text = config("b", &["10.9.9.9", "10.1.0.3"]).replace("port = 80", "port = 8080");
        let cfg = mux::config::parse(&text, "other.toml").expect("valid");
        compile::compile(&cfg, &mut self.registry, 1, &CompileOptions::default()).unwrap();
    }

    /// Publishes `text` at second `secs`, as a start or a SIGHUP does.
    fn publish(&mut self, text: &str, secs: u64) -> &Snapshot {
        let cfg = mux::config::parse(text, "mux.toml").expect("valid");
        let options = CompileOptions {
            clock: clock(),
            ..CompileOptions::default()
        };
        self.generation += 1;
        let (snap, history) = compile::compile_with_history(
            &cfg,
            &mut self.registry,
            self.generation,
            &options,
            &self.history,
            at(secs),
        )
        .expect("compiles");
        self.history = history;
        self.snap.insert(snap)
    }
}

fn client(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xc633_0000 + i))
}

fn packet(i: u32, flags: u8) -> Vec<u8> {
    PacketBuilder::tcp(client(i), 2000 + i as u16, ip("192.0.2.10"), 80, flags)
        .payload_len(if flags & PSH != 0 { 40 } else { 0 })
        .build()
}

fn all(flags: u8) -> Vec<Vec<u8>> {
    (0..FLOWS).map(|i| packet(i, flags)).collect()
}

/// Outer destination and alternative (IPv4 outer headers only, as in this story).
fn outer(frame: &[u8]) -> (IpAddr, Option<IpAddr>) {
    let h = &frame[14..];
    let dst = IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).unwrap());
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl == 20 {
        return (dst, None);
    }
    assert_eq!((h[20], h[21]), (0x1e, 8), "the IPv4-alternative option");
    (
        dst,
        Some(IpAddr::from(<[u8; 4]>::try_from(&h[24..28]).unwrap())),
    )
}

/// A connection survives a frame when the frame reaches its backend, directly or through
/// the one second-chance hop the backend's agent may add.
fn reaches(frame: &[u8], backend: IpAddr) -> bool {
    let (dst, alt) = outer(frame);
    dst == backend || alt == Some(backend)
}

#[test]
fn two_muxes_started_at_different_generations() {
    // MUX A: generation 1 at second 0, the connections, generation 2 at second 5.
    let mut a = Mux::start(TableHistory::default());
    let mut wa = worker(1 << 12);
    let gen1 = a.publish(&config("a", GEN1), 0);
    let mut opening = all(SYN);
    opening.extend(all(ACK));
    let out = run_on(&mut wa, gen1, 1, &opening);
    let owner: Vec<IpAddr> = out.transmitted[..FLOWS as usize]
        .iter()
        .map(|f| outer(f).0)
        .collect();
    let gen2 = a.publish(&config("a", GEN2), 5);
    assert_eq!(gen2.parts.vips[0].previous.len(), 1);

    // Second 10: every connection sends; A's entries keep each on its backend, plainly.
    let out = run_on(&mut wa, gen2, 10, &all(ACK | PSH));
    for (frame, backend) in out.transmitted.iter().zip(&owner) {
        assert_eq!(outer(frame), (*backend, None));
    }
    assert_eq!(out.counters.second_chance_sent, 0);

    // Second 50: the entries expired (idle 40 s > 30 s). Moved connections get the
    // alternative; the others go plainly where they always went.
    let late = all(ACK | PSH);
    let from_a = run_on(&mut wa, gen2, 50, &late).transmitted;
    let mut moved = 0;
    for (frame, backend) in from_a.iter().zip(&owner) {
        let (dst, alt) = outer(frame);
        if dst == *backend {
            assert_eq!(alt, None);
        } else {
            moved += 1;
            assert_eq!(alt, Some(*backend), "the generation-1 backend is named");
        }
    }
    assert!(moved > 10, "adding a 5th backend moves about 1/5: {moved}");

    // MUX B without history, started at generation 2 (second 40): the limit.
    let mut b = Mux::start(TableHistory::default());
    let plain = run_on(
        &mut worker(1 << 12),
        b.publish(&config("b", GEN2_B), 40),
        50,
        &late,
    );
    let broken = plain
        .transmitted
        .iter()
        .zip(&owner)
        .filter(|(f, backend)| !reaches(f, **backend))
        .count();
    assert_eq!(
        broken, moved,
        "without history every moved connection is lost"
    );
    assert_eq!(plain.counters.second_chance_sent, 0);

    // MUX B restarted with its own history file: before the restart it ran generation 1 (its
    // own file order) and was reloaded to generation 2 at second 5, like A.
    let dir = std::env::temp_dir().join(format!("mux-sc-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let own = dir.join("b.json");
    let mut before = Mux::start(TableHistory::default());
    before.publish(&config("b", GEN1_B), 0);
    before.publish(&config("b", GEN2_B), 5);
    table_history::save(&own, &before.history, at(30)).unwrap();
    // And a peer's file: A's.
    let peer = dir.join("a.json");
    table_history::save(&peer, &a.history, at(30)).unwrap();

    for file in [&own, &peer] {
        let loaded = table_history::load(file).unwrap();
        assert_eq!(loaded.skipped, 0);
        let mut b = Mux::start(loaded.history);
        b.number_ids_differently();
        let snap = b.publish(&config("b", GEN2_B), 40);
        let out = run_on(&mut worker(1 << 12), snap, 50, &late);
        assert_eq!(
            out.transmitted,
            from_a,
            "{}: B sends byte for byte what A sends",
            file.display()
        );
        assert_eq!(out.counters.second_chance_sent as usize, moved);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- the same through `mux replay` ----------------------------------------------------------

fn mux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mux"))
}

fn write_capture(path: &PathBuf, frames: &[(u64, Vec<u8>)]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (ms, f) in frames {
        let ts = Duration::from_millis(T0 * 1000 + ms);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

fn read_capture(path: &PathBuf) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

/// `mux replay` with `args`; returns its JSON counters.
fn replay(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = mux()
        .arg("replay")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["report"]["counters"].clone()
}

#[test]
fn mux_replay_of_two_captures_through_two_muxes_of_different_generations() {
    let dir = Scratch::new("replay");
    for (file, name, backends) in [
        ("gen1.toml", "a", GEN1),
        ("gen2.toml", "a", GEN2),
        ("gen2-b.toml", "b", GEN2_B),
    ] {
        std::fs::write(dir.path(file), config(name, backends)).unwrap();
    }
    // Capture 1, at MUX A: the connections open (second 0-1), speak at second 10, and
    // again at second 50 after 40 s of silence.
    let mut c1: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..FLOWS {
        c1.push((u64::from(i), packet(i, SYN)));
        c1.push((500 + u64::from(i), packet(i, ACK)));
    }
    c1.sort_by_key(|(t, _)| *t);
    for (second, flags) in [(10_000, ACK | PSH), (50_000, ACK | PSH)] {
        c1.extend((0..FLOWS).map(|i| (second + u64::from(i), packet(i, flags))));
    }
    // Capture 2, at MUX B: the same connections at second 60 (ECMP moved them).
    let c2: Vec<(u64, Vec<u8>)> = (0..FLOWS)
        .map(|i| (60_000 + u64::from(i), packet(i, ACK | PSH)))
        .collect();
    let (in1, in2) = (dir.path("c1.pcap"), dir.path("c2.pcap"));
    write_capture(&in1, &c1);
    write_capture(&in2, &c2);

    // MUX A: generation 1, reloaded to generation 2 at second 5; it saves its history.
    let history = dir.path("a-history.json");
    let a_out = dir.path("a.pcap");
    let a = replay(&[
        "--config".as_ref(),
        dir.path("gen1.toml").as_os_str(),
        "--reload".as_ref(),
        format!("5={}", dir.path("gen2.toml").display()).as_ref(),
        "--input".as_ref(),
        in1.as_os_str(),
        "--output".as_ref(),
        a_out.as_os_str(),
        "--save-history".as_ref(),
        history.as_os_str(),
    ]);
    let sent = read_capture(&a_out);
    assert_eq!(sent.len(), 4 * FLOWS as usize);
    // The SYNs come first (then the ACKs): each connection's generation-1 backend.
    let owner: HashMap<usize, IpAddr> = (0..FLOWS as usize)
        .map(|i| (i, outer(&sent[i]).0))
        .collect();
    let at_10 = &sent[2 * FLOWS as usize..3 * FLOWS as usize];
    let at_50 = &sent[3 * FLOWS as usize..];
    for (i, f) in at_10.iter().enumerate() {
        assert_eq!(outer(f), (owner[&i], None), "hits stay plain");
    }
    let moved = at_50.iter().filter(|f| outer(f).1.is_some()).count();
    assert!(moved > 10);
    for (i, f) in at_50.iter().enumerate() {
        assert!(reaches(f, owner[&i]));
    }
    assert_eq!(a["second_chance_sent"], moved);
    assert_eq!(a["second_chance_flows"], moved);

    // MUX B, started at generation 2 without history: moved connections go elsewhere.
    let b_plain = dir.path("b-plain.pcap");
    let b = replay(&[
        "--config".as_ref(),
        dir.path("gen2-b.toml").as_os_str(),
        "--input".as_ref(),
        in2.as_os_str(),
        "--output".as_ref(),
        b_plain.as_os_str(),
    ]);
    assert_eq!(b["second_chance_sent"], 0);
    let lost = read_capture(&b_plain)
        .iter()
        .enumerate()
        .filter(|(i, f)| !reaches(f, owner[i]))
        .count();
    assert_eq!(lost, moved);

    // MUX B started from A's history file: every connection reaches its backend.
    let b_sc = dir.path("b-sc.pcap");
    let b = replay(&[
        "--config".as_ref(),
        dir.path("gen2-b.toml").as_os_str(),
        "--history".as_ref(),
        history.as_os_str(),
        "--input".as_ref(),
        in2.as_os_str(),
        "--output".as_ref(),
        b_sc.as_os_str(),
    ]);
    assert_eq!(b["second_chance_sent"], moved);
    let from_b = read_capture(&b_sc);
    for (i, f) in from_b.iter().enumerate() {
        assert!(reaches(f, owner[&i]), "flow {i}");
    }
    // Same flows, same decisions as A at second 50 (byte for byte: same tunnel source).
    assert_eq!(from_b, at_50);
}

#[test]
fn replay_refuses_a_malformed_reload_argument() {
    let out = mux()
        .args([
            "replay", "--config", "x.toml", "--input", "x", "--output", "y",
        ])
        .args(["--reload", "soon=x.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number of seconds"));
}
