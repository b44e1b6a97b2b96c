//! Flow logs through the real daemon: `mux run` with `io = "afpacket"` on one end of a veth
//! pair in a throw-away namespace, new flows sent from the other end.
//!
//! - every new flow is on disk, with the right fields, once SIGTERM has stopped the daemon;
//!   a SIGHUP reopens the file (external rotation), and a reload that changes
//!   `queue_depth` is refused with the reason while the rest keeps running;
//! - with a one-record queue, what the rings could not hold is counted: written + dropped =
//!   new flows, and the file holds exactly the written ones.
//!
//! Needs root and `ip` (each test says why it skips, or fails under `CI=true`). Each test has
//! its own namespace and scratch directory, removed at the end; every wait polls what the
//! daemon publishes on its admin endpoint, with a deadline.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Netns, lab_available};
use common::process::{free_port, get, signal, terminate};
use common::scratch::Scratch;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::SYN};
use mux_ports::afpacket::RawSocket;

const MUX_IF: &str = "fa";
const PEER_IF: &str = "fb";

/// The namespace lab: a veth pair, the daemon on one end, a raw socket on the other.
struct Lab {
    ns: Netns,
    child: Child,
    admin: u16,
    dir: Scratch,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(admin: u16, flow_log: &Path, workers: usize, queue_depth: usize) -> String {
    format!(
        r#"
[mux]
name = "flowlog-mux"

[dataplane]
io = "afpacket"
interface = "{MUX_IF}"
workers = {workers}
flow_table_capacity = 65536

[tunnel]
source_v4 = "10.0.0.11"

[next_hop]
mac = "02:00:00:00:00:fe"
source_mac = "02:00:00:00:00:01"

[admin]
listen = "127.0.0.1:{admin}"

[lifecycle]
drain_seconds = 0

[flow_log]
path = "{}"
sample = 1
queue_depth = {queue_depth}

[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.1"
"#,
        flow_log.display()
    )
}

impl Lab {
    /// Starts the namespace and the daemon; `None` when this machine cannot run the lab.
    fn start(test: &str, workers: usize, queue_depth: usize) -> Option<Lab> {
        if !lab_available(test) {
            return None;
        }
        let ns = Netns::create(
            "flowlog",
            test,
            [MUX_IF, PEER_IF],
            Some(["02:00:00:00:00:01", "02:00:00:00:00:fe"]),
        )
        .expect("namespace lab");
        let up = Command::new("ip")
            .args(["-n", ns.name(), "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        let dir = Scratch::new(test);
        let admin = free_port();
        let file = dir.0.join("mux.toml");
        std::fs::write(
            &file,
            config(admin, &dir.0.join("flows.jsonl"), workers, queue_depth),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_mux")])
            .args(["run", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut lab = Lab {
            ns,
            child,
            admin,
            dir,
        };
        lab.wait("every worker running", |s| {
            (0..workers).all(|w| s["workers"][w]["running"] == true)
        });
        Some(lab)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }

    fn flows(&self) -> PathBuf {
        self.dir.0.join("flows.jsonl")
    }

    /// `/v1/status`, asked from inside the namespace (the endpoint listens there).
    fn status(&self) -> Option<serde_json::Value> {
        let admin = self.admin;
        self.ns.run(move || {
            get(admin, "/v1/status").and_then(|(_, body)| serde_json::from_str(&body).ok())
        })
    }

    fn metrics(&self) -> String {
        let admin = self.admin;
        self.ns
            .run(move || get(admin, "/metrics").map(|(_, body)| body))
            .unwrap_or_default()
    }

    /// Waits (up to 15 s) for `f` to hold of the status; panics with the daemon's log.
    fn wait(&mut self, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(code)) = self.child.try_wait() {
                panic!("mux exited ({code}) waiting for {what}:\n{}", self.log());
            }
            if self.status().is_some_and(|s| f(&s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {:?}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one SYN from 198.51.100.7 to the VIP per source port, from the peer end.
    fn send_syns(&self, ports: std::ops::Range<u16>) {
        self.ns.run(move || {
            let peer = RawSocket::open(PEER_IF).expect("raw socket on the peer end");
            for port in ports {
                let frame = PacketBuilder::tcp(
                    "198.51.100.7".parse().unwrap(),
                    port,
                    "192.0.2.10".parse().unwrap(),
                    80,
                    SYN,
                )
                .build();
                // A full socket buffer is a WouldBlock: wait for room, never skip a flow.
                while let Err(e) = peer.send(&frame) {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
    }

    /// SIGTERM, then waits (up to 15 s) for a clean exit.
    fn stop(&mut self) {
        let log = self.dir.0.join("stderr");
        terminate(&mut self.child, Duration::from_secs(15), &log);
    }
}

fn counter(s: &serde_json::Value, name: &str) -> u64 {
    s["counters"][name].as_u64().unwrap_or(0)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The source ports of `records`, each checked to be a well-formed record of this lab's flow.
fn checked_ports(records: &[serde_json::Value], generation: u64) -> BTreeSet<u64> {
    let mut ports = BTreeSet::new();
    for r in records {
        assert_eq!(r["mux"], "flowlog-mux", "{r}");
        assert_eq!(r["protocol"], "tcp", "{r}");
        assert_eq!(r["src"], "198.51.100.7", "{r}");
        assert_eq!(r["dst"], "192.0.2.10", "{r}");
        assert_eq!(r["dst_port"], 80, "{r}");
        assert_eq!(r["vip"], "web", "{r}");
        assert_eq!(r["backend"], "10.1.0.1", "{r}");
        assert_eq!(r["second_chance"], false, "{r}");
        assert_eq!(r["alternative"], serde_json::Value::Null, "{r}");
        assert_eq!(r["generation"], generation, "{r}");
        assert!(r["worker"].as_u64().is_some_and(|w| w < 2), "{r}");
        let time = r["time"].as_str().unwrap();
        assert!(time.starts_with("20") && time.ends_with('Z'), "{r}");
        assert!(
            r["unix_us"].as_u64().unwrap() > 1_700_000_000_000_000,
            "{r}"
        );
        assert!(
            ports.insert(r["src_port"].as_u64().unwrap()),
            "one record per flow: {r}"
        );
    }
    ports
}

#[test]
fn every_new_flow_is_on_disk_after_sigterm_and_sighup_reopens_the_file() {
    let Some(mut lab) = Lab::start("all", 2, 4096) else {
        return;
    };
    const FIRST: u16 = 300;
    const SECOND: u16 = 200;
    lab.send_syns(10_000..10_000 + FIRST);
    lab.wait("the first flows", |s| {
        counter(s, "new_flows") == u64::from(FIRST)
    });
    // Per backend: packets and inner bytes (40-byte SYNs: IPv4 + TCP headers).
    let s = lab.status().unwrap();
    let backend = &s["vips"][0]["backends"][0];
    assert_eq!(backend["forwarded_packets"], u64::from(FIRST), "{backend}");
    assert_eq!(
        backend["forwarded_bytes"],
        40 * u64::from(FIRST),
        "{backend}"
    );
    let metrics = lab.metrics();
    assert!(
        metrics.contains(&format!(
            "mux_backend_forwarded_bytes_total{{vip=\"web\",backend=\"10.1.0.1\"}} {}",
            40 * u64::from(FIRST)
        )),
        "{metrics}"
    );

    // External rotation, and a reload that would resize the rings: refused, the file reopened.
    let moved = lab.dir.0.join("flows.jsonl.rotated");
    std::fs::rename(lab.flows(), &moved).unwrap();
    let file = lab.dir.0.join("mux.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("queue_depth = 4096", "queue_depth = 64"),
    )
    .unwrap();
    signal(&lab.child, "HUP");
    lab.wait("the refused reload and the reopen", |s| {
        s["reloads"]["failed"] == 1 && s["flow_log"]["reopens"] == 1
    });
    let s = lab.status().unwrap();
    let why = s["reloads"]["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("queue_depth changed (4096 -> 64)") && why.contains("restart"),
        "{why}"
    );
    assert_eq!(s["generation"], 1);
    assert!(lab.flows().exists(), "reopened under its name");

    // More flows, then SIGTERM right after the workers counted them.
    lab.send_syns(20_000..20_000 + SECOND);
    lab.wait("the second flows", |s| {
        counter(s, "new_flows") == u64::from(FIRST + SECOND)
    });
    lab.stop();

    let before = checked_ports(&lines(&moved), 1);
    assert_eq!(before, (10_000..10_000 + u64::from(FIRST)).collect());
    let after = checked_ports(&lines(&lab.flows()), 1);
    assert_eq!(after, (20_000..20_000 + u64::from(SECOND)).collect());
    let log = lab.log();
    assert!(log.contains("flow log drained and closed"), "{log}");
}

#[test]
fn a_one_record_queue_counts_every_record_it_cannot_hold() {
    let Some(mut lab) = Lab::start("overflow", 1, 1) else {
        return;
    };
    const FLOWS: u16 = 2000;
    lab.send_syns(30_000..30_000 + FLOWS);
    lab.wait("every flow", |s| {
        counter(s, "new_flows") == u64::from(FLOWS)
    });
    // The writer drains one record per 20 ms round at most: most records were dropped.
    lab.wait("the writer to catch up", |s| {
        let f = &s["flow_log"];
        f["records"].as_u64().unwrap_or(0) + f["dropped_queue_full"].as_u64().unwrap_or(0)
            == u64::from(FLOWS)
    });
    let s = lab.status().unwrap();
    let (records, dropped) = (
        s["flow_log"]["records"].as_u64().unwrap(),
        s["flow_log"]["dropped_queue_full"].as_u64().unwrap(),
    );
    assert!(
        dropped > 0,
        "a one-record ring overflowed: {}",
        s["flow_log"]
    );
    assert_eq!(counter(&s, "flow_log_dropped"), dropped);
    let metrics = lab.metrics();
    for series in [
        format!("mux_flow_log_dropped_total{{reason=\"queue_full\"}} {dropped}"),
        "mux_flow_log_dropped_total{reason=\"write_error\"} 0".to_string(),
        format!("mux_flow_log_records_total {records}"),
        "mux_flow_log_write_errors_total 0".to_string(),
    ] {
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    lab.stop();
    let on_disk = checked_ports(&lines(&lab.flows()), 1);
    assert_eq!(
        on_disk.len() as u64,
        records,
        "the file holds what was counted written"
    );
}
