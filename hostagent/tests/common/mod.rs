//! A small lab for the host agent's end-to-end tests: network namespaces joined by veth
//! pairs, the real `hostagent` binary inside one of them, and a stand-in MUX (a TUN device in
//! the client's namespace that IP-in-IP-encapsulates whatever the client sends to the VIP).
//!
//! Every name carries the test's name and the process id, so parallel tests and parallel
//! runs never collide; [`Lab`] deletes its namespaces when dropped, also after a panic.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hostagent::io::raw::RawSender;
use hostagent::io::tun::Tun;
use mux_packet::checksum;
use mux_ports::afpacket::enter_netns;

/// Whether this process can build namespace labs (root and the `ip` tool); otherwise the test
/// is skipped with the reason, or fails under `CI=true` ([`mux_test_prereq::skip_or_fail`]).
pub fn lab_available(test: &str) -> bool {
    mux_test_prereq::require_root(test, "network namespaces, TUN devices and raw sockets")
        && mux_test_prereq::require_tool(test, "ip", "-V", "iproute2")
}

/// Runs `ip args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip args`' stdout (empty on failure).
pub fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Namespaces deleted on drop.
pub struct Lab {
    names: Vec<String>,
}

impl Lab {
    /// Creates namespaces `hat-<test>-<pid>-<role>` for each role.
    pub fn new(test: &str, roles: &[&str]) -> Lab {
        let names: Vec<String> = roles
            .iter()
            .map(|r| format!("hat-{test}-{}-{r}", std::process::id()))
            .collect();
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
            for key in ["all", "default"] {
                sysctl(n, &format!("net.ipv4.conf.{key}.rp_filter"), "0");
            }
        }
        Lab { names }
    }

    /// The namespace of role number `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// A veth pair between namespaces `a` and `b` with the given names and addresses
    /// (`"10.0.0.1/24"`), both ends up with carrier.
    pub fn link(&self, a: usize, a_end: &str, a_addr: &str, b: usize, b_end: &str, b_addr: &str) {
        let (na, nb) = (self.ns(a).to_string(), self.ns(b).to_string());
        ip(&[
            "-n", &na, "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", &nb,
        ]);
        ip(&["-n", &na, "addr", "add", a_addr, "dev", a_end]);
        ip(&["-n", &nb, "addr", "add", b_addr, "dev", b_end]);
        ip(&["-n", &na, "link", "set", a_end, "up"]);
        ip(&["-n", &nb, "link", "set", b_end, "up"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ns, end) in [(&na, a_end), (&nb, b_end)] {
            while !ip_out(&["-n", ns, "-o", "link", "show", end]).contains("LOWER_UP") {
                assert!(Instant::now() < deadline, "{end} in {ns} never got carrier");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The path [`enter_netns`] opens for namespace `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.ns(i)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Writes a sysctl inside namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) {
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .output();
}

/// Spawns `f` on a thread inside the namespace at `path`.
pub fn in_netns<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::spawn(move || {
        enter_netns(&path).expect("setns");
        f()
    })
}

/// The `hostagent run` process in a namespace, killed on drop.
pub struct Agent {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Agent {
    /// Starts the agent in `ns` with the configuration `config` (written next to the log).
    pub fn start(ns: &str, dir: &Path, config: &str) -> Agent {
        std::fs::create_dir_all(dir).expect("state dir");
        let conf = dir.join("hostagent.toml");
        std::fs::write(&conf, config).expect("write config");
        let log = dir.join("hostagent.log");
        let logfile = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_hostagent"),
                "run",
                "--config",
            ])
            .arg(&conf)
            .args(["--log-level", "debug"])
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("spawn hostagent");
        Agent {
            child: Some(child),
            log,
        }
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status();
        }
    }

    /// Waits (up to 10 s) for the agent to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `cond` holds (up to `secs` seconds).
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stand-in MUX inside the client's namespace: a TUN device routed for the VIP whose
/// packets are wrapped in an outer IPv4 header `source → dip` (protocol 4) and sent.
pub struct StandInMux {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl StandInMux {
    /// Starts it in namespace `path`: routes `vip` into a TUN device and tunnels to `dip`.
    pub fn start(
        ns: &str,
        path: PathBuf,
        vip: Ipv4Addr,
        client: Ipv4Addr,
        source: Ipv4Addr,
        dip: Ipv4Addr,
    ) -> StandInMux {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = in_netns(path, move || {
            let tun = Tun::open("tmux0").expect("TUN in the client namespace");
            let sender = RawSender::open(1).expect("raw sender");
            ready_tx.send(()).expect("ready");
            let mut buf = vec![0u8; 65_536];
            let mut out = vec![0u8; 65_536 + 20];
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                match tun.read(&mut buf) {
                    Ok(Some(n)) if n >= 20 && buf[0] >> 4 == 4 => {
                        encapsulate(&buf[..n], source, dip, &mut out);
                        if sender.send(&out[..n + 20]).is_ok() {
                            sent += 1;
                        }
                    }
                    Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            sent
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("stand-in MUX ready");
        ip(&["-n", ns, "link", "set", "tmux0", "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            &format!("{vip}/32"),
            "dev",
            "tmux0",
            "src",
            &client.to_string(),
        ]);
        StandInMux {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; how many packets it tunnelled.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for StandInMux {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `inner` behind a 20-byte IPv4 header `src → dst`, protocol 4, TTL 64, checksum set.
pub fn encapsulate(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, out: &mut [u8]) {
    let total = (inner.len() + 20) as u16;
    let h = &mut out[..20];
    h.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::internet_checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    out[20..20 + inner.len()].copy_from_slice(inner);
}

/// A backend in namespace `ns` of `lab`: answers each connection with the address it listens
/// on and the peer address it saw (`"{addr} saw {peer}"`), then closes.
pub fn echo_backend(lab: &Lab, ns: usize, addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    in_netns(lab.path(ns), move || {
        let listener = std::net::TcpListener::bind(addr).expect("backend bind");
        tx.send(()).unwrap();
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
            let mut req = [0u8; 64];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.read(&mut req);
            let _ = conn.write_all(format!("{addr} saw {peer}\n").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("backend listening");
}
