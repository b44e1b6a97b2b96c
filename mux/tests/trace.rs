//! `mux trace`: the explanation agrees with what the pipeline does.
//!
//! - Offline against a configuration and a second-chance history file: for every flow, the
//!   current backend is the one the configuration's own table picks, and the alternative is
//!   the previous generation's pick exactly when the two differ.
//! - `--pcap`: each packet's flow-table entry before and its verdict, through the real
//!   pipeline (SYN then ACK; a moved flow without an entry carries its alternative and then
//!   has a second-chance entry; not for a VIP; malformed).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::scratch::Scratch;
use common::*;
use mux::control::compile::{self, CompileOptions, FlowClock};
use mux::control::registry::Registry;
use mux::control::table_history::{self, TableHistory};
use mux::control::trace::{self, FlowQuery};
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use pcap_file::pcap::{PcapPacket, PcapWriter};

const GEN1: &str = r#"
[mux]
name = "trace"
[dataplane]
io = "mem"
second_chance_window_seconds = 600
[tunnel]
source_v4 = "10.0.0.11"
[next_hop]
mac = "02:00:00:00:00:fe"
source_mac = "02:00:00:00:00:01"
[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
maglev_table_size = 1009
  [[vip.backend]]
  address = "10.1.0.1"
  [[vip.backend]]
  address = "10.1.0.2"
"#;

/// Generation 2: a third backend joins.
fn gen2() -> String {
    GEN1.to_string() + "  [[vip.backend]]\n  address = \"10.1.0.3\"\n"
}

/// Writes gen1.toml, gen2.toml and the history a MUX that ran generation 1 leaves behind.
fn files(s: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let (g1, g2, h) = (
        s.path("gen1.toml"),
        s.path("gen2.toml"),
        s.path("history.json"),
    );
    std::fs::write(&g1, GEN1).unwrap();
    std::fs::write(&g2, gen2()).unwrap();
    let cfg = mux::config::parse(GEN1, "gen1.toml").unwrap();
    let now = SystemTime::now() - Duration::from_secs(5);
    let options = CompileOptions {
        clock: FlowClock {
            origin: std::time::Instant::now(),
            origin_unix: now,
        },
        ..CompileOptions::default()
    };
    let (_, history) = compile::compile_with_history(
        &cfg,
        &mut Registry::default(),
        1,
        &options,
        &TableHistory::default(),
        now,
    )
    .unwrap();
    table_history::save(&h, &history, now).unwrap();
    (g1, g2, h)
}

fn flow(port: u16) -> FlowQuery {
    FlowQuery::parse(&format!("tcp 198.51.100.7:{port} 192.0.2.10:80")).unwrap()
}

#[test]
fn the_alternative_is_the_previous_pick_exactly_when_it_differs() {
    let s = Scratch::new("explain");
    let (g1, g2, h) = files(&s);
    let (before, now1) = trace::offline_snapshot(&g1, None).unwrap();
    let (after, now2) = trace::offline_snapshot(&g2, Some(&h)).unwrap();
    let (alone, _) = trace::offline_snapshot(&g2, None).unwrap();
    let mut moved = 0;
    for port in 40_000..40_400 {
        let q = flow(port);
        let old = trace::explain(&before, &q, now1).current.unwrap().address;
        let e = trace::explain(&after, &q, now2);
        let new = e.current.as_ref().unwrap().address;
        assert_eq!(e.vip.as_deref(), Some("web"));
        assert_eq!(e.previous.len(), 1, "{e:?}");
        assert_eq!(new, trace::explain(&alone, &q, 0).current.unwrap().address);
        if old == new {
            assert_eq!(e.alternative, None, "{port}");
        } else {
            moved += 1;
            assert_eq!(e.alternative.as_ref().unwrap().address, old, "{port}");
            assert!(e.summary[1].contains("carrying the alternative"), "{e}");
        }
    }
    // A third backend takes about a third of the slots.
    assert!((80..200).contains(&moved), "{moved} of 400 moved");

    // Not a VIP: said so.
    let q = FlowQuery::parse("udp 198.51.100.7:1 192.0.2.10:80").unwrap();
    let e = trace::explain(&after, &q, now2);
    assert_eq!(e.vip, None);
    assert!(e.summary[0].contains("not this port and protocol"), "{e}");
}

#[test]
fn a_capture_is_traced_packet_by_packet() {
    let s = Scratch::new("pcap");
    let (_, g2, h) = files(&s);
    let (after, now) = trace::offline_snapshot(&g2, Some(&h)).unwrap();
    // A flow the change moved (it has an alternative) and one it did not.
    let find = |moved: bool| {
        (41_000..42_000)
            .find(|&p| trace::explain(&after, &flow(p), now).alternative.is_some() == moved)
            .unwrap()
    };
    let (moved, stayed) = (find(true), find(false));
    let e = trace::explain(&after, &flow(moved), now);
    let (current, alt) = (e.current.unwrap().address, e.alternative.unwrap().address);
    let client = ip("198.51.100.7");
    let web = ip("192.0.2.10");
    let frames = [
        PacketBuilder::tcp(client, stayed, web, 80, SYN).build(),
        PacketBuilder::tcp(client, stayed, web, 80, ACK).build(),
        PacketBuilder::tcp(client, moved, web, 80, ACK).build(),
        PacketBuilder::tcp(client, moved, web, 80, ACK).build(),
        PacketBuilder::tcp(client, 1, ip("192.0.2.99"), 80, SYN).build(),
        vec![0u8; 10],
    ];
    let pcap = s.path("in.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_700_000_000_000 + i as u64 * 10);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
    drop(w);

    let out = Command::new(env!("CARGO_BIN_EXE_mux"))
        .args(["trace", "--json", "--config"])
        .arg(&g2)
        .arg("--history")
        .arg(&h)
        .arg("--pcap")
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |i: usize, k: &str| t[i][k].as_str().unwrap().to_string();
    assert_eq!(t.as_array().unwrap().len(), frames.len());
    assert_eq!(field(0, "flow_table_before"), "none");
    assert!(field(0, "verdict").starts_with("forward to "));
    assert!(field(1, "flow_table_before").contains("TcpSynOnly"), "{t}");
    assert_eq!(field(1, "verdict"), field(0, "verdict"));
    assert_eq!(field(2, "flow_table_before"), "none");
    assert_eq!(
        field(2, "verdict"),
        format!("forward to {current}, alternative {alt} (second chance)")
    );
    assert_eq!(
        field(3, "flow_table_before"),
        format!("second-chance entry: to {current} with alternative {alt}")
    );
    assert_eq!(field(3, "verdict"), field(2, "verdict"));
    assert_eq!(field(4, "verdict"), "to the kernel (not for a VIP)");
    assert_eq!(field(5, "verdict"), "drop: truncated_ethernet");
}
