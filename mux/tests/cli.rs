//! The `mux` binary's offline commands: `check-config` and `replay`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::scratch::Scratch;
use common::*;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::*};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

fn mux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mux"))
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for file in ["mux.example.toml", "mux.demo.toml"] {
        let path = format!("{}/../configs/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = mux().args(["check-config", &path]).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn check_config_reports_every_error_with_its_location() {
    let dir = Scratch::new("check");
    let bad = dir.path("bad.toml");
    let text = FIXTURE_CONFIG
        .replacen(
            "port = 53\nprotocol = \"udp\"",
            "port = 0\nprotocol = \"udp\"",
            1,
        )
        .replace(
            "address = \"10.1.0.2\"",
            "address = \"10.1.0.2\"\n  weight = 20000",
        );
    std::fs::write(&bad, &text).unwrap();
    let out = mux().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let port_line = text.lines().position(|l| l == "port = 0").unwrap() + 1;
    let weight_line = text
        .lines()
        .position(|l| l.contains("weight = 20000"))
        .unwrap()
        + 1;
    let prefix = bad.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{prefix}:{port_line}:")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{prefix}:{weight_line}:")),
        "{stderr}"
    );
    assert!(lines[1].contains("weight"), "{stderr}");
}

#[test]
fn check_config_reports_type_errors_with_everything_else() {
    // The example: a typo, a bad address and a bad weight in one file. Before, only
    // the typo was reported; a fix-and-rerun loop per mistake.
    let dir = Scratch::new("check-all");
    let bad = dir.path("bad.toml");
    let text = FIXTURE_CONFIG
        .replacen("address = \"10.1.0.1\"", "address = \"10.1.0.300\"", 1)
        .replacen("  address = \"10.1.0.2\"", "  adress = \"10.1.0.2\"", 1)
        .replacen(
            "  address = \"fd00:1::1\"",
            "  address = \"fd00:1::1\"\n  weight = 20000",
            1,
        );
    std::fs::write(&bad, &text).unwrap();
    let out = mux().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let prefix = bad.display().to_string();
    let expected = [
        (line_of("10.1.0.300"), 13, "expected an IP address"),
        (line_of("adress"), 3, "unknown field `adress`"),
        (line_of("20000"), 12, "weight must be between 0 and 10000"),
    ];
    // The missing address of the misspelt backend is reported too, at its table.
    assert_eq!(lines.len(), 4, "{stderr}");
    for (line, column, needle) in expected {
        let at = format!("{prefix}:{line}:{column}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&at) && l.contains(needle)),
            "no {at}…{needle} in\n{stderr}"
        );
    }
    assert!(
        stderr.contains("is missing the required key `address`"),
        "{stderr}"
    );
}

#[test]
fn check_config_names_a_missing_file() {
    let out = mux()
        .args(["check-config", "/nonexistent/mux.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mux.toml"));
}

#[test]
fn replay_writes_what_the_mux_would_send_in_order() {
    let dir = Scratch::new("replay");
    let config = dir.path("mux.toml");
    std::fs::write(&config, FIXTURE_CONFIG).unwrap();
    let input = dir.path("in.pcap");
    let output = dir.path("out.pcap");
    let kernel = dir.path("kernel.pcap");

    let frames = [
        PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, SYN).build(),
        PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.99"), 80, SYN).build(),
        PacketBuilder::udp(ip("198.51.100.7"), 5353, ip("192.0.2.53"), 53)
            .payload_len(20)
            .build(),
        vec![0u8; 8],
        PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, ACK)
            .payload_len(1460)
            .build(),
        PacketBuilder::tcp(ip("198.51.100.7"), 40000, ip("192.0.2.10"), 80, ACK).build(),
    ];
    {
        let mut w = PcapWriter::new(std::fs::File::create(&input).unwrap()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_millis(1000 + 700 * i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
    }
    let out = mux()
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--to-kernel")
        .arg(&kernel)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["frames_in"], 6);
    assert_eq!(json["frames_out"], 4);
    assert_eq!(json["frames_to_kernel"], 1);
    let counters = &json["report"]["counters"];
    assert_eq!(counters["forwarded"], 3);
    assert_eq!(counters["icmp_too_big_sent"], 1);
    assert_eq!(counters["new_flows"], 2);
    assert_eq!(
        counters["flow_hits"], 2,
        "the oversize packet and the last ACK"
    );
    assert_eq!(counters["drop_truncated_ethernet"], 1);
    assert_eq!(json["report"]["forwarded_per_vip"]["web"], 2);
    assert_eq!(json["report"]["forwarded_per_backend"]["web/10.1.0.1"], 2);

    let mut reader = PcapReader::new(std::fs::File::open(&output).unwrap()).unwrap();
    let mut got = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        got.push((p.timestamp, p.data.into_owned()));
    }
    assert_eq!(got.len(), 4);
    let ts: Vec<_> = got.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(
        ts,
        vec![1000, 2400, 3800, 4500],
        "each output carries its input's time"
    );
    assert_eq!(
        got[0].1,
        expected_ipip_v4(&inner_ip(&frames[0], 14), [10, 1, 0, 1], None)
    );
    assert_eq!(
        got[1].1,
        expected_ipip_v4(&inner_ip(&frames[2], 14), [10, 1, 0, 2], None)
    );
    assert_eq!(&got[2].1[12..14], &[0x08, 0x00]);
    assert_eq!(got[2].1[14 + 20], 3, "ICMP destination unreachable");

    let mut reader = PcapReader::new(std::fs::File::open(&kernel).unwrap()).unwrap();
    let p = reader.next_packet().unwrap().unwrap();
    assert_eq!(p.data.as_ref(), frames[1].as_slice());
}

#[test]
fn replay_refuses_a_bad_config_and_a_missing_capture() {
    let dir = Scratch::new("replay-bad");
    let config = dir.path("mux.toml");
    std::fs::write(&config, "[mux]\nname = \"x\"\nbogus = 1\n").unwrap();
    let out = mux()
        .args(["replay", "--config"])
        .arg(&config)
        .args(["--input", "/nonexistent.pcap", "--output"])
        .arg(dir.path("out.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":3:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&config, FIXTURE_CONFIG).unwrap();
    let out = mux()
        .args(["replay", "--config"])
        .arg(&config)
        .args(["--input", "/nonexistent.pcap", "--output"])
        .arg(dir.path("out.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pcap"));
}
