//! End to end through the real `hostagent run`: a client's TCP connections to a VIP, tunnelled
//! by a stand-in MUX, reach an unmodified backend (a plain TCP listener) on the agent's host
//! and on a namespace behind it, the backend sees the client's own address, and the replies
//! come back from the VIP without touching the tunnel. Also: SIGTERM removes everything the
//! agent installed, and a start after a crash (SIGKILL) cleans up what the crashed one left.
//!
//! Topology (namespaces `hat-<test>-<pid>-<role>`):
//! ```text
//!  client (10.77.0.1, VIP routed into the stand-in MUX's TUN)
//!    │ c0 ── h0   10.77.0.0/24
//!  host (10.77.0.2 = DIP; agent; backend A on 10.77.0.2:8080)
//!    │ h1 ── b0   10.78.0.0/24
//!  backend (10.78.0.2; backend B on 10.78.0.2:8080)
//! ```

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{
    Agent, Lab, StandInMux, echo_backend, encapsulate, in_netns, ip, ip_out, lab_available, sysctl,
    wait_until,
};
use hostagent::io::raw::RawSender;
use serde_json::Value;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const DIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn config(admin_port: u16) -> String {
    format!(
        r#"[agent]
name = "t"
[tunnel]
mux_sources = ["10.77.0.1"]
[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
dip = "10.77.0.2"
backend_port = 8080
[[service]]
vip = "192.0.2.10"
port = 81
protocol = "tcp"
dip = "10.77.0.2"
backend_address = "10.78.0.2"
backend_port = 8080
[admin]
listen = "127.0.0.1:{admin_port}"
[connections]
state_file = "connections.state"
"#
    )
}

/// From the client namespace: connect to VIP:port, send a line, return the answer and the
/// local address used.
fn request(lab: &Lab, port: u16) -> Result<(String, SocketAddr, SocketAddr), String> {
    in_netns(lab.path(0), move || {
        let target = SocketAddr::from((VIP, port));
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
            .map_err(|e| format!("connect {target}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let local = s.local_addr().unwrap();
        let peer = s.peer_addr().unwrap();
        s.write_all(b"hello\n").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        Ok((answer, local, peer))
    })
    .join()
    .expect("client thread")
}

fn topology(test: &str) -> Lab {
    let lab = Lab::new(test, &["client", "host", "backend"]);
    lab.link(0, "c0", "10.77.0.1/24", 1, "h0", "10.77.0.2/24");
    lab.link(1, "h1", "10.78.0.1/24", 2, "b0", "10.78.0.2/24");
    ip(&[
        "-n",
        lab.ns(2),
        "route",
        "add",
        "default",
        "via",
        "10.78.0.1",
    ]);
    // Forwarding on the host, as any host with containers behind it has.
    sysctl(lab.ns(1), "net.ipv4.ip_forward", "1");
    // Nothing answers unwanted tunnel packets with ICMP.
    echo_backend(&lab, 1, "10.77.0.2:8080");
    echo_backend(&lab, 2, "10.78.0.2:8080");
    lab
}

fn agent_rules(lab: &Lab) -> usize {
    ip_out(&["-n", lab.ns(1), "rule", "show"])
        .lines()
        .filter(|l| l.contains("lookup 4242") || l.contains("fwmark 0x6d75"))
        .count()
}

/// GET `path` from the agent's admin endpoint (inside the host namespace); `None` if it does
/// not answer 200.
fn admin_get(lab: &Lab, port: u16, path: &'static str) -> Option<String> {
    in_netns(lab.path(1), move || {
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

fn status(lab: &Lab, port: u16) -> Value {
    let body = admin_get(lab, port, "/v1/status").expect("/v1/status answers");
    serde_json::from_str(&body).expect("status is JSON")
}

/// A minimal IPv4 TCP SYN `src:40000 → dst:port` (checksums are not needed: the agent drops
/// these before it reads them).
fn syn(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&port.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x02;
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19200)
}

#[test]
fn tcp_through_the_vip_reaches_unmodified_backends_and_replies_come_from_the_vip() {
    if !lab_available("tcp_through_the_vip") {
        return;
    }
    let lab = topology("tcp");
    let dir = std::env::temp_dir().join(format!("hat-tcp-{}", std::process::id()));
    let admin = free_port();
    let mut agent = Agent::start(lab.ns(1), &dir, &config(admin));
    wait_until(10, "ready", || admin_get(&lab, admin, "/readyz").is_some());
    // 2 capture rules (port + ICMP) per backend address and one mark rule.
    wait_until(10, "the agent's rules", || agent_rules(&lab) == 5);
    let mux = StandInMux::start(lab.ns(0), lab.path(0), VIP, CLIENT, CLIENT, DIP);

    for port in [80u16, 81] {
        let (answer, local, peer) =
            request(&lab, port).unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
        assert_eq!(
            peer,
            SocketAddr::from((VIP, port)),
            "the client talks to the VIP"
        );
        let want_backend = if port == 80 {
            "10.77.0.2:8080"
        } else {
            "10.78.0.2:8080"
        };
        assert_eq!(
            answer.trim(),
            format!("{want_backend} saw {local}"),
            "the backend saw the client's own address and port"
        );
    }
    let tunnelled = mux.stop();
    assert!(
        tunnelled >= 6,
        "client packets went through the tunnel ({tunnelled})"
    );

    // What the agent counted: both services delivered and replied; the health checker saw
    // both backends up.
    wait_until(10, "health up", || {
        status(&lab, admin)["health"]
            .as_array()
            .is_some_and(|h| h.iter().all(|b| b["state"] == "up"))
    });
    let st = status(&lab, admin);
    assert_eq!(st["ready"], true);
    for svc in st["services"].as_array().expect("services") {
        assert!(svc["delivered"].as_u64() >= Some(3), "{svc}");
        assert!(svc["replies_rewritten"].as_u64() >= Some(3), "{svc}");
        // Load: one connection each, bytes both ways (at least the 40-byte SYN and SYN-ACK
        // plus the request and the answer).
        assert_eq!(svc["new_connections"], 1, "{svc}");
        assert!(svc["delivered_bytes"].as_u64() > Some(3 * 40), "{svc}");
        assert!(
            svc["replies_rewritten_bytes"].as_u64() > Some(3 * 40),
            "{svc}"
        );
    }
    // The connection table's sweep (about every second) counts each backend's connection
    // (closing, still remembered); the rates cover an interval of at least a second.
    wait_until(10, "the load census", || {
        let b: Value =
            serde_json::from_str(&admin_get(&lab, admin, "/v1/backends").unwrap_or_default())
                .unwrap_or_default();
        b["backends"].as_array().is_some_and(|list| {
            list.iter().all(|e| {
                e["load"]["active_connections"] == 1
                    && e["load"]["interval_s"].as_f64() >= Some(1.0)
            })
        })
    });
    assert_eq!(st["counters"]["dropped"], 0, "{st}");

    // Bad input: dropped and counted, never delivered.
    let inner = syn(CLIENT, VIP, 80);
    let mut unknown_source = vec![0u8; inner.len() + 20];
    encapsulate(
        &inner,
        Ipv4Addr::new(10, 77, 0, 9),
        DIP,
        &mut unknown_source,
    );
    let mut unknown_vip = vec![0u8; inner.len() + 20];
    encapsulate(
        &syn(CLIENT, Ipv4Addr::new(192, 0, 2, 99), 80),
        CLIENT,
        DIP,
        &mut unknown_vip,
    );
    // The outer header says 30 bytes: 10 of the 40-byte inner packet arrive.
    let mut truncated = vec![0u8; 30];
    encapsulate(&inner[..10], CLIENT, DIP, &mut truncated);
    in_netns(lab.path(0), move || {
        let sender = RawSender::open(1).expect("raw sender");
        for p in [&unknown_source, &unknown_vip, &truncated] {
            sender.send(p).expect("send a bad packet");
        }
    })
    .join()
    .unwrap();
    wait_until(5, "the bad packets counted", || {
        status(&lab, admin)["counters"]["dropped"].as_u64() == Some(3)
    });
    let drops = &status(&lab, admin)["counters"]["drops"];
    assert_eq!(drops["unknown_tunnel_source"], 1, "{drops}");
    assert_eq!(drops["unknown_service"], 1, "{drops}");
    assert_eq!(drops["truncated_inner"], 1, "{drops}");

    // A bad reload is refused and the old configuration keeps serving; a good one applies.
    let conf = dir.join("hostagent.toml");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        good.replace("backend_port = 8080", "backend_port = 80800"),
    )
    .unwrap();
    agent.signal("HUP");
    wait_until(5, "the bad reload refused", || {
        status(&lab, admin)["reloads"]["failed"] == 1
    });
    assert_eq!(agent_rules(&lab), 5, "rules untouched by a refused reload");
    std::fs::write(&conf, good.replace("port = 81\n", "port = 82\n")).unwrap();
    agent.signal("HUP");
    wait_until(5, "the good reload applied", || {
        status(&lab, admin)["reloads"]["ok"] == 1
    });
    let mux = StandInMux::start(lab.ns(0), lab.path(0), VIP, CLIENT, CLIENT, DIP);
    let (answer, local, _) = request(&lab, 82).expect("the new service port answers");
    assert_eq!(answer.trim(), format!("10.78.0.2:8080 saw {local}"));
    request(&lab, 80).expect("the unchanged service still answers");
    mux.stop();

    agent.signal("TERM");
    assert_eq!(agent.wait(), Some(0), "clean exit:\n{}", agent.log_text());
    assert_eq!(agent_rules(&lab), 0, "SIGTERM removes every rule");
    assert!(
        ip_out(&["-n", lab.ns(1), "route", "show", "table", "4242"])
            .trim()
            .is_empty(),
        "and the routes"
    );
    assert!(
        !ip_out(&["-n", lab.ns(1), "link"]).contains("muxha0"),
        "and the TUN device"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_start_after_a_crash_cleans_up_and_serves() {
    if !lab_available("start_after_crash") {
        return;
    }
    let lab = topology("crash");
    let dir = std::env::temp_dir().join(format!("hat-crash-{}", std::process::id()));
    let port = free_port();
    let mut agent = Agent::start(lab.ns(1), &dir, &config(port));
    wait_until(10, "the agent's rules", || agent_rules(&lab) == 5);
    agent.signal("KILL");
    agent.wait();
    assert_eq!(
        agent_rules(&lab),
        5,
        "a crashed agent leaves its rules behind"
    );

    let mut agent = Agent::start(lab.ns(1), &dir, &config(port));
    wait_until(10, "the restarted agent's rules", || {
        agent.log_text().contains("hostagent started")
    });
    assert_eq!(agent_rules(&lab), 5, "stale rules replaced, not duplicated");
    let mux = StandInMux::start(lab.ns(0), lab.path(0), VIP, CLIENT, CLIENT, DIP);
    let (answer, local, _) =
        request(&lab, 80).unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(answer.trim(), format!("10.77.0.2:8080 saw {local}"));
    mux.stop();
    agent.signal("TERM");
    assert_eq!(agent.wait(), Some(0));
    assert_eq!(agent_rules(&lab), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
