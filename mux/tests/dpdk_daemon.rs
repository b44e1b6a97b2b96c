//! `mux run` with `io = "dpdk"` over DPDK's virtual devices (built with `--features dpdk`):
//! - `net_pcap`: the demo capture in, a capture out, compared frame by frame with what
//!   `mux replay` (the in-memory port) makes of the same capture and config; kernel-bound
//!   frames go to a second capture through `[dpdk] exception_device`.
//! - `net_af_packet` and `net_af_xdp` on a veth pair in a throw-away namespace, with the
//!   default TAP exception path: VIP traffic comes out encapsulated, and an ARP request for the
//!   MUX's address crosses the TAP into the kernel, whose reply crosses back out of the NIC.
//!
//! Each daemon is its own process (DPDK's EAL starts once per process) with `--no-huge` and a
//! file prefix of its own. Needs root: without it each test says why it skips, or fails under
//! `CI=true` (`mux_test_prereq`). Every wait polls what the daemon publishes on its admin
//! endpoint, with a deadline.
#![cfg(feature = "dpdk")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Netns, lab_available};
use common::process::{free_port, status, terminate, wait_for};
use common::scratch::Scratch;
use mux_packet::packet_builder::{PacketBuilder, tcp_flags::SYN};
use mux_ports::afpacket::RawSocket;

/// A running daemon; killed on drop if the test failed before stopping it.
struct Daemon {
    child: Child,
    admin: u16,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `mux run` on `config` (written into `dir`), in namespace `netns` if given.
    fn start(dir: &Path, admin: u16, config: &str, netns: Option<&str>) -> Daemon {
        let path = dir.join("mux.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("stderr");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_mux")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mux")),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, admin, log }
    }

    /// Its stderr so far (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 15 s) until every worker polls; panics with the daemon's log otherwise.
    fn wait_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(code)) = self.child.try_wait() {
                panic!("mux exited ({code}) before running:\n{}", self.log());
            }
            let running = common::process::get(self.admin, "/v1/status")
                .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                .is_some_and(|s| s["workers"][0]["running"] == true);
            if running {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mux did not start its workers:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (up to 10 s) for a clean exit.
    fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10), &self.log);
    }
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

fn port_counter(admin: u16, key: &str) -> u64 {
    status(admin)["workers"][0]["port"][key]
        .as_u64()
        .unwrap_or(0)
}

const DEMO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/mux.demo.toml");
const DEMO_PCAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/demo.pcap");

/// `[dpdk]` for a test: the given devices, no hugepages, a small pool (idle workers sleep, as
/// `[dataplane] idle = "adaptive"`, the default, makes them).
fn dpdk_section(device: &str, exception: Option<&str>, prefix: &str) -> String {
    let exception = exception.map_or(String::new(), |e| format!("exception_device = \"{e}\"\n"));
    format!(
        "[dpdk]\ndevice = \"{device}\"\n{exception}hugepages = false\nmemory_mb = 256\n\
         mbufs = 4096\nmbuf_cache = 64\nrx_descriptors = 256\ntx_descriptors = 256\n\
         file_prefix = \"{prefix}-{}\"\n\
         eal_args = [\"--log-level=lib.eal:warning\"]\n",
        std::process::id()
    )
}

#[test]
fn pcap_in_pcap_out_matches_mux_replay() {
    if !mux_test_prereq::require_root(
        "pcap_in_pcap_out_matches_mux_replay",
        "DPDK's EAL (its runtime directory and memory)",
    ) {
        return;
    }
    let scratch = Scratch::new("pcap");
    let dir = &scratch.0;
    let input = frames(Path::new(DEMO_PCAP)).len() as u64;

    // What the in-memory port makes of the capture: the frames the DPDK run must match.
    let replay_out = dir.join("replay.pcap");
    let replay_kernel = dir.join("replay-kernel.pcap");
    let ok = Command::new(env!("CARGO_BIN_EXE_mux"))
        .args([
            "replay",
            "--config",
            DEMO_CONFIG,
            "--input",
            DEMO_PCAP,
            "--output",
        ])
        .arg(&replay_out)
        .arg("--to-kernel")
        .arg(&replay_kernel)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "mux replay failed");
    let (want_out, want_kernel) = (frames(&replay_out), frames(&replay_kernel));
    assert!(
        !want_out.is_empty() && !want_kernel.is_empty(),
        "the demo exercises both paths"
    );

    let admin = free_port();
    let demo = std::fs::read_to_string(DEMO_CONFIG)
        .unwrap()
        .replace("io = \"mem\"", "io = \"dpdk\"");
    let config = format!(
        "{demo}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[lifecycle]\ndrain_seconds = 0\n\n{}",
        dpdk_section(
            &format!(
                "net_pcap0,rx_pcap={DEMO_PCAP},tx_pcap={}/out.pcap",
                dir.display()
            ),
            Some(&format!("net_pcap1,tx_pcap={}/kernel.pcap", dir.display())),
            "mux-test-pcap",
        )
    );
    let mut daemon = Daemon::start(dir, admin, &config, None);
    daemon.wait_running();
    wait_for("every captured frame received", || {
        port_counter(admin, "rx") >= input
    });
    // The worker publishes its counters between bursts: wait until they show as many frames
    // sent and handed to the kernel as `mux replay` produced (or 10 s), then compare.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (port_counter(admin, "tx") < want_out.len() as u64
        || port_counter(admin, "to_kernel") < want_kernel.len() as u64)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = status(admin)["workers"][0]["port"].clone();
    daemon.stop();

    let (dpdk_out, dpdk_kernel) = (
        frames(&dir.join("out.pcap")),
        frames(&dir.join("kernel.pcap")),
    );
    assert_eq!(
        dpdk_out.len(),
        want_out.len(),
        "transmitted frames; port {port}"
    );
    for (i, (got, want)) in dpdk_out.iter().zip(&want_out).enumerate() {
        assert_eq!(got, want, "transmitted frame {i} differs from mux replay's");
    }
    assert_eq!(
        dpdk_kernel, want_kernel,
        "kernel-bound frames differ from mux replay's"
    );
    assert_eq!(port["tx"].as_u64(), Some(want_out.len() as u64));
    assert_eq!(port["to_kernel"].as_u64(), Some(want_kernel.len() as u64));
    assert!(
        port["nic"]["imissed"].is_u64(),
        "the NIC's counters are reported: {port}"
    );
}

/// The fixture's VIP and backend, for the veth tests.
const VETH_CONFIG: &str = r#"
[mux]
name = "dpdkveth"

[dataplane]
io = "dpdk"
interface = "mux0"

[tunnel]
source_v4 = "10.0.0.11"

[next_hop]
mac = "02:00:00:00:00:fe"

[lifecycle]
drain_seconds = 0

[[vip]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "10.1.0.1"
"#;

const MUX_IF: &str = "xa";
const PEER_IF: &str = "xb";
const MUX_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn ip_in(ns: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -n {ns} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn arp_request() -> Vec<u8> {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xfe, 10, 0, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 11]);
    arp.resize(60, 0);
    arp
}

/// Whether `f` is the kernel's ARP reply for 10.0.0.11 from the NIC's MAC.
fn is_arp_reply_from_mux(f: &[u8]) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 2]
        && f[22..28] == MUX_MAC
        && f[28..32] == [10, 0, 0, 11]
}

/// Whether `f` is an IPv4-in-IPv4 frame from the MUX to the backend 10.1.0.1.
fn is_encapsulated_to_backend(f: &[u8]) -> bool {
    f.len() >= 34
        && f[6..12] == MUX_MAC
        && f[12..14] == [0x08, 0x00]
        && f[23] == 4
        && f[30..34] == [10, 1, 0, 1]
}

/// The MUX on `device` (a vdev on the veth end `xa`) with the TAP exception path.
fn veth_round_trip(test: &str, device: &str) {
    if !lab_available(test) {
        return;
    }
    let ns = Netns::create(
        "dpdk",
        test,
        [MUX_IF, PEER_IF],
        Some(["02:00:00:00:00:01", "02:00:00:00:00:fe"]),
    )
    .expect("namespace lab");
    let name = ns.name().to_string();
    ip_in(&name, &["link", "set", "lo", "up"]).unwrap();
    // The kernel must not answer for xa itself (net_af_packet leaves it a copy of each frame):
    // an answer has to come through the TAP.
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{MUX_IF}.arp_ignore=8"),
        ])
        .status();
    let scratch = Scratch::new(test);
    let admin = free_port();
    let config = format!(
        "{VETH_CONFIG}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n{}",
        dpdk_section(device, None, &format!("mux-test-{test}"))
    );
    let mut daemon = Daemon::start(&scratch.0, admin, &config, Some(&name));
    // The admin endpoint listens inside the namespace: ask from a thread that entered it.
    let waited = ns.run(move || {
        daemon.wait_running();
        daemon
    });
    let mut daemon = waited;
    wait_for("the TAP interface mux0", || {
        ip_in(&name, &["link", "show", "mux0"]).is_ok()
    });
    ip_in(&name, &["addr", "add", "10.0.0.11/24", "dev", "mux0"]).unwrap();
    ip_in(&name, &["link", "set", "mux0", "up"]).unwrap();

    let result = ns.run(
        move || -> Result<(serde_json::Value, Vec<Vec<u8>>), String> {
            let peer = RawSocket::open(PEER_IF).map_err(|e| e.to_string())?;
            let syn = PacketBuilder::tcp(
                "198.51.100.7".parse().unwrap(),
                40000,
                "192.0.2.10".parse().unwrap(),
                80,
                SYN,
            )
            .build();
            let mut seen = Vec::new();
            // A few tries: the TAP's link may take a moment to come up in the kernel.
            for _ in 0..10 {
                peer.send(&arp_request()).map_err(|e| e.to_string())?;
                peer.send(&syn).map_err(|e| e.to_string())?;
                seen.extend(
                    peer.collect(Duration::from_millis(300), 64)
                        .map_err(|e| e.to_string())?,
                );
                if seen.iter().any(|f| is_arp_reply_from_mux(f))
                    && seen.iter().any(|f| is_encapsulated_to_backend(f))
                {
                    break;
                }
            }
            // The worker publishes its port counters between bursts: wait for the exception
            // path's two directions to show (or 5 s; the assertions below then say what is
            // missing).
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let s = status(admin);
                let port = &s["workers"][0]["port"];
                let both = port["to_kernel"].as_u64().unwrap_or(0) >= 1
                    && port["from_kernel"].as_u64().unwrap_or(0) >= 1;
                if both || Instant::now() >= deadline {
                    return Ok((s, seen));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    );
    let (s, seen) = match result {
        Ok(r) => r,
        Err(e) => panic!("{test}: {e}\n{}", daemon.log()),
    };
    let port = &s["workers"][0]["port"];
    assert!(
        seen.iter().any(|f| is_encapsulated_to_backend(f)),
        "{test}: no encapsulated frame to the backend; port {port}\n{}",
        daemon.log()
    );
    assert!(
        seen.iter().any(|f| is_arp_reply_from_mux(f)),
        "{test}: the kernel's ARP reply did not come back out through the TAP; port {port}\n{}",
        daemon.log()
    );
    assert!(port["to_kernel"].as_u64().unwrap_or(0) >= 1, "{port}");
    assert!(port["from_kernel"].as_u64().unwrap_or(0) >= 1, "{port}");
    let _ = &mut daemon;
    ns.run(move || daemon.stop());
    drop(ns);
}

#[test]
fn af_packet_vdev_on_veth_forwards_and_the_tap_carries_the_kernels_traffic() {
    veth_round_trip("afpkt", &format!("net_af_packet0,iface={MUX_IF}"));
}

#[test]
fn af_xdp_vdev_on_veth_forwards_and_the_tap_carries_the_kernels_traffic() {
    veth_round_trip("afxdp", &format!("net_af_xdp0,iface={MUX_IF}"));
}
