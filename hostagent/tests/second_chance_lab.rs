//! Second chance end to end: two real `hostagent run` processes in namespaces and a stand-in
//! MUX that behaves like one whose backend tables changed under a live connection.
//!
//! Topology (namespaces `hat-<test>-<pid>-<role>`):
//! ```text
//!              client (VIP routed into the stand-in MUX's TUN)
//!  10.77.0.1, fd77::1 │ c0──a0            c1──b0 │ 10.79.0.1
//!                     │                          │
//!  host A: 10.77.0.2, fd77::2 (DIPs)    host B: 10.79.0.2 (DIP)
//!          agent A, backend 10.77.0.2:8080      agent B, backend 10.79.0.2:8080
//!          10.80.0.1  a1 ────────────────────── b1  10.80.0.2
//!                       (A's and B's tunnel sources: each lists the other as a peer)
//! ```
//!
//! The stand-in MUX sends a client's SYN plainly to one agent (where the connection starts)
//! and every later packet of the connection to agent A with the second-chance option — over
//! IPv4 (an IPv4 option) or IPv6 (a destination option) — naming the other as the
//! alternative. So:
//! - a connection that started on B: A does not carry it and forwards every later packet to
//!   B, which delivers them; the client talks to B's backend throughout, unbroken;
//! - a connection that started on A: A carries it and delivers.
//!
//! Then B is stopped cleanly: its state file holds the connection it carried.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use common::{Agent, Lab, echo_backend, in_netns, ip, ip_out, lab_available, sysctl, wait_until};
use hostagent::io::raw::RawSender;
use hostagent::io::state_file;
use hostagent::io::tun::Tun;
use mux_packet::checksum;
use serde_json::Value;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT_B_SIDE: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const DIP_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const DIP_A6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
const DIP_B: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);

fn agent_a_config(admin: u16) -> String {
    format!(
        r#"[agent]
name = "sc-a"
[tunnel]
mux_sources = ["10.77.0.1", "fd77::1"]
source_v4 = "10.80.0.1"
[[tunnel.peer]]
address = "10.80.0.2"
[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.77.0.2"
backend_port = 8080
[[service]]   # the same VIP through A's IPv6 DIP (its backend port only tells them apart)
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "fd77::2"
backend_address = "10.77.0.2"
backend_port = 8081
[admin]
listen = "127.0.0.1:{admin}"
[connections]
state_file = "connections.state"
"#
    )
}

fn agent_b_config(admin: u16) -> String {
    format!(
        r#"[agent]
name = "sc-b"
[tunnel]
mux_sources = ["10.79.0.1"]
source_v4 = "10.80.0.2"
[[tunnel.peer]]
address = "10.80.0.1"
[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.79.0.2"
backend_port = 8080
[admin]
listen = "127.0.0.1:{admin}"
[connections]
state_file = "connections.state"
"#
    )
}

/// Where the stand-in MUX sends a connection's packets after its SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// SYN → B plainly; the rest → A over IPv4 with B as the alternative.
    StartedOnBViaV4 = 0,
    /// SYN → B plainly; the rest → A over IPv6 with B as the alternative.
    StartedOnBViaV6 = 1,
    /// SYN → A plainly; the rest → A over IPv4 with B as the alternative.
    StartedOnA = 2,
}

/// The stand-in MUX: a TUN device in the client's namespace routed for the VIP.
struct SecondChanceMux {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SecondChanceMux {
    fn start(lab: &Lab, mode: Arc<AtomicU8>) -> SecondChanceMux {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = in_netns(lab.path(0), move || {
            let tun = Tun::open("tscmux0").expect("TUN in the client namespace");
            let sender = RawSender::open(1).expect("raw sender");
            ready_tx.send(()).expect("ready");
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                match tun.read(&mut buf) {
                    Ok(Some(n)) if n >= 40 && buf[0] == 0x45 && buf[9] == 6 => {
                        let inner = &buf[..n];
                        let syn = inner[33] & 0x12 == 0x02;
                        let mode = mode.load(Ordering::Relaxed);
                        let out = match (syn, mode) {
                            (true, 2) => plain(inner, CLIENT, DIP_A),
                            (true, _) => plain(inner, CLIENT_B_SIDE, DIP_B),
                            (false, 1) => v6_with_option(inner, CLIENT6, DIP_A6, DIP_B),
                            (false, _) => v4_with_option(inner, CLIENT, DIP_A, DIP_B),
                        };
                        let _ = sender.send(&out);
                    }
                    _ => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("stand-in MUX ready");
        let ns = lab.ns(0);
        ip(&["-n", ns, "link", "set", "tscmux0", "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "192.0.2.10/32",
            "dev",
            "tscmux0",
            "src",
            "10.77.0.1",
        ]);
        SecondChanceMux {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SecondChanceMux {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// IP-in-IP without an option (what a MUX sends when its tables agree).
fn plain(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0];
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    finish_v4(out, inner)
}

/// IPv4 outer header with the option (IHL 7): type 0x1E, length 8, flags 0, hops 0.
fn v4_with_option(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, alt: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0x47, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0];
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&[0x1E, 8, 0, 0]);
    out.extend_from_slice(&alt.octets());
    finish_v4(out, inner)
}

fn finish_v4(mut header: Vec<u8>, inner: &[u8]) -> Vec<u8> {
    let total = (header.len() + inner.len()) as u16;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum::internet_checksum(&header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
    header.extend_from_slice(inner);
    header
}

/// IPv6 outer header with a 16-byte Destination Options header holding the option (an IPv4
/// alternative: option data 6 bytes, then a PadN of 4).
fn v6_with_option(inner: &[u8], src: Ipv6Addr, dst: Ipv6Addr, alt: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[60, 64]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&[4, 1, 0x1E, 6, 0, 0]);
    out.extend_from_slice(&alt.octets());
    out.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(inner);
    out
}

/// From the client: connect to VIP:80, send a line, read the answer to the end.
fn request(lab: &Lab) -> Result<(String, SocketAddr), String> {
    in_netns(lab.path(0), move || {
        let target = SocketAddr::from((VIP, 80));
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
            .map_err(|e| format!("connect {target}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(b"hello\n").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        Ok((answer, local))
    })
    .join()
    .expect("client thread")
}

fn admin_get(lab: &Lab, ns: usize, port: u16, path: &'static str) -> Option<String> {
    in_netns(lab.path(ns), move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    })
    .join()
    .ok()
    .flatten()
}

fn status(lab: &Lab, ns: usize, port: u16) -> Value {
    let body = admin_get(lab, ns, port, "/v1/status").expect("/v1/status answers");
    serde_json::from_str(&body).expect("status is JSON")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19300)
}

fn topology(test: &str) -> Lab {
    let lab = Lab::new(test, &["client", "hosta", "hostb"]);
    lab.link(0, "c0", "10.77.0.1/24", 1, "a0", "10.77.0.2/24");
    lab.link(0, "c1", "10.79.0.1/24", 2, "b0", "10.79.0.2/24");
    lab.link(1, "a1", "10.80.0.1/24", 2, "b1", "10.80.0.2/24");
    for (ns, dev, addr) in [(0, "c0", "fd77::1/64"), (1, "a0", "fd77::2/64")] {
        ip(&["-n", lab.ns(ns), "addr", "add", addr, "dev", dev, "nodad"]);
    }
    // A reaches B's DIP over the A–B link; B answers the client by its own link.
    ip(&[
        "-n",
        lab.ns(1),
        "route",
        "add",
        "10.79.0.0/24",
        "via",
        "10.80.0.2",
    ]);
    ip(&[
        "-n",
        lab.ns(2),
        "route",
        "add",
        "10.77.0.0/24",
        "via",
        "10.79.0.1",
    ]);
    for ns in 0..3 {
        sysctl(lab.ns(ns), "net.ipv4.conf.all.rp_filter", "0");
    }
    echo_backend(&lab, 1, "10.77.0.2:8080");
    echo_backend(&lab, 2, "10.79.0.2:8080");
    lab
}

/// A directory removed on drop, also after a failed assertion.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn counter(st: &Value, path: &[&str]) -> u64 {
    let mut v = st;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

#[test]
fn a_connection_moved_to_an_agent_that_lacks_it_is_forwarded_to_its_backend() {
    if !lab_available("second_chance_e2e") {
        return;
    }
    let lab = topology("sc");
    let pid = std::process::id();
    let dir_a = TempDir(std::env::temp_dir().join(format!("hat-sc-a-{pid}")));
    let dir_b = TempDir(std::env::temp_dir().join(format!("hat-sc-b-{pid}")));
    let (dir_a, dir_b) = (&dir_a.0, &dir_b.0);
    let (admin_a, admin_b) = (free_port(), free_port());
    let mut agent_a = Agent::start(lab.ns(1), dir_a, &agent_a_config(admin_a));
    let mut agent_b = Agent::start(lab.ns(2), dir_b, &agent_b_config(admin_b));
    for (ns, port) in [(1, admin_a), (2, admin_b)] {
        wait_until(10, "agents ready", || {
            admin_get(&lab, ns, port, "/readyz").is_some()
        });
    }
    let logs = |a: &Agent, b: &Agent| format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text());
    let mode = Arc::new(AtomicU8::new(Mode::StartedOnBViaV4 as u8));
    let mux = SecondChanceMux::start(&lab, Arc::clone(&mode));

    // 1. Started on B, the rest sent to A with B as the alternative (IPv4 outer).
    let (answer, local) =
        request(&lab).unwrap_or_else(|e| panic!("{e}\n{}", logs(&agent_a, &agent_b)));
    assert_eq!(
        answer.trim(),
        format!("10.79.0.2:8080 saw {local}"),
        "B's backend served the whole connection and saw the client"
    );
    // The counters are published every 100 ms.
    wait_until(5, "A's and B's counters", || {
        counter(
            &status(&lab, 1, admin_a),
            &["counters", "second_chance", "forwarded"],
        ) >= 2
            && counter(&status(&lab, 2, admin_b), &["connections", "occupied"]) >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (status(&lab, 1, admin_a), status(&lab, 2, admin_b));
    let forwarded = counter(&a, &["counters", "second_chance", "forwarded"]);
    assert!(forwarded >= 2, "A forwarded the connection's packets: {a}");
    assert_eq!(counter(&a, &["counters", "delivered"]), 0, "{a}");
    assert!(counter(&a, &["io", "forwarded_tx"]) >= 2, "{a}");
    assert!(
        counter(&b, &["counters", "second_chance", "forward_refused"]) >= 2,
        "B delivered what A forwarded, never sent it back: {b}"
    );
    assert_eq!(counter(&b, &["counters", "second_chance", "forwarded"]), 0);
    assert!(counter(&b, &["connections", "occupied"]) >= 1, "{b}");

    // 2. The same over an IPv6 outer header (the destination option, through the raw IPv6
    //    socket's rebuilt extension header).
    mode.store(Mode::StartedOnBViaV6 as u8, Ordering::Relaxed);
    let (answer, local) =
        request(&lab).unwrap_or_else(|e| panic!("{e}\n{}", logs(&agent_a, &agent_b)));
    assert_eq!(answer.trim(), format!("10.79.0.2:8080 saw {local}"));
    wait_until(5, "A's forwards over IPv6", || {
        counter(
            &status(&lab, 1, admin_a),
            &["counters", "second_chance", "forwarded"],
        ) >= forwarded + 2
    });

    // 3. Started on A: A carries it and delivers, alternative or not.
    mode.store(Mode::StartedOnA as u8, Ordering::Relaxed);
    let (answer, local) =
        request(&lab).unwrap_or_else(|e| panic!("{e}\n{}", logs(&agent_a, &agent_b)));
    assert_eq!(answer.trim(), format!("10.77.0.2:8080 saw {local}"));
    wait_until(5, "A's deliveries of its own connection", || {
        let a = status(&lab, 1, admin_a);
        counter(&a, &["counters", "second_chance", "delivered_known"]) >= 2
    });
    let a = status(&lab, 1, admin_a);
    assert_eq!(counter(&a, &["counters", "dropped"]), 0, "{a}");
    drop(mux);

    // B stopped cleanly: its state file holds the connections it carried (closing ones
    // included, within their timeout).
    let b_before = status(&lab, 2, admin_b);
    agent_b.signal("TERM");
    assert_eq!(agent_b.wait(), Some(0), "{}", agent_b.log_text());
    let saved = state_file::load(&dir_b.join("connections.state"), SystemTime::now())
        .expect("B's state file");
    assert!(
        saved.records.len() >= 2,
        "{saved:?} (B had {})",
        b_before["connections"]
    );
    for r in &saved.records {
        assert_eq!(r.key.backend_ip(), IpAddr::V4(DIP_B));
        assert_eq!(r.key.client_ip(), IpAddr::V4(CLIENT));
        assert_eq!((r.key.backend_port, r.key.protocol), (8080, 6));
    }
    // Restarted, B knows them again before any packet arrives.
    let mut agent_b = Agent::start(lab.ns(2), dir_b, &agent_b_config(admin_b));
    wait_until(10, "B restarted with its connections", || {
        admin_get(&lab, 2, admin_b, "/v1/status")
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .is_some_and(|b| {
                counter(&b, &["connections", "events", "restored"]) == saved.records.len() as u64
                    && counter(&b, &["connections", "state_file", "loaded"])
                        == saved.records.len() as u64
            })
    });
    agent_b.signal("TERM");
    assert_eq!(agent_b.wait(), Some(0));
    agent_a.signal("TERM");
    assert_eq!(agent_a.wait(), Some(0));
    assert!(
        !ip_out(&["-n", lab.ns(1), "rule", "show"]).contains("lookup 4242"),
        "A cleaned up"
    );
}
