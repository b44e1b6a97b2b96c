//! `perf idle`: what an idle MUX costs, and what idling adds to the first packet after it.
//!
//! For each I/O backend and idle mode asked for, the benchmark builds a throw-away network
//! namespace (`mux-idle-<pid>`) holding a veth pair, `eth0` (the MUX's) ↔ `peer0` (ours),
//! starts the real daemon there (`mux run`, one worker, one VIP, the next hop's MAC pinned to
//! `peer0`'s, no BGP), waits until a probe comes back encapsulated, and then:
//!
//! 1. **Idle CPU.** Sends nothing for `--seconds` and reads the daemon's CPU time before and
//!    after: `utime + stime` of `/proc/<pid>/stat` (the whole process, in the kernel's 100 Hz
//!    ticks) and the worker thread's own `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on a
//!    CPU). Reported as a share of one core.
//! 2. **First-packet latency.** Sends `--probes` single TCP SYNs to the VIP from `peer0`, each
//!    after `--gap-ms` of silence (the worker has long been asleep), and times each from the
//!    send to the arrival of its encapsulated copy back on `peer0` (RX → MUX → TX, both veth
//!    hops and our own socket's wakeup included). Then the same number of probes *hot*: each
//!    sent as soon as the previous one's copy arrived, so the worker is still inside its
//!    busy-poll window. The idle median minus the hot median of a run is what a quiet spell
//!    costs the next packet *in total* — including the sender's and the kernel's own wakeups,
//!    which a VM pays whatever the MUX does; the cost of *adaptive idling* is the adaptive
//!    run's idle median minus the busy-poll run's, both after the same silence, printed last.
//!
//! The namespace (and with it the veth pair) is deleted and the daemon killed when the run
//! ends, also on error. Needs root, `ip`, and the `mux` binary (by default the one next to
//! this `perf`: build both with `cargo build --release -p mux -p perf`).
//!
//! Rejected: timing inside the daemon (a counter of wakeup delays): it would miss what the
//! kernel adds before the worker sees the frame, which is exactly what differs between busy
//! polling and sleeping in `poll(2)`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use mux_packet::packet_builder::PacketBuilder;
use mux_packet::packet_builder::tcp_flags::SYN;
use mux_ports::afpacket::{RawSocket, enter_netns};

use crate::traffic::sink::{Class, classify};
use crate::traffic::{PROTO_TCP, Service};

/// The MUX's end of the veth pair, and its MAC.
const MUX_END: (&str, [u8; 6]) = ("eth0", [0x02, 0, 0, 0, 0x1d, 0x01]);
/// Our end, and its MAC (the MUX's pinned next hop).
const PEER_END: (&str, [u8; 6]) = ("peer0", [0x02, 0, 0, 0, 0x1d, 0x02]);
/// The VIP the probes go to.
const VIP: Service = Service {
    addr: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
    port: 80,
    protocol: PROTO_TCP,
};
/// How long to wait for one probe's copy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the daemon may take to forward a first probe.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The `mux` binary.
    pub mux: PathBuf,
    /// `io` values to measure (`afxdp`, `afpacket`).
    pub ios: Vec<String>,
    /// `idle` values to measure (`adaptive`, `busy-poll`).
    pub modes: Vec<String>,
    /// Seconds of silence over which idle CPU is measured.
    pub seconds: f64,
    /// Probes per latency figure.
    pub probes: usize,
    /// Silence before each idle probe.
    pub gap: Duration,
}

/// One (io, idle mode) run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `[dataplane] io`.
    pub io: String,
    /// `[dataplane] idle`.
    pub idle: String,
    /// Seconds the CPU was measured over.
    pub seconds: f64,
    /// The daemon's `utime + stime` over them, as a share of one core.
    pub process_cpu: f64,
    /// The worker thread's time on a CPU over them, as a share of one core.
    pub worker_cpu: Option<f64>,
    /// Times the worker thread was scheduled onto a CPU over them (its `schedstat`): each
    /// sleep ends in one, so this is how often an idle worker wakes.
    pub worker_switches: Option<u64>,
    /// Microseconds from send to the encapsulated copy's arrival, each probe after `gap` of
    /// silence.
    pub idle_us: Vec<f64>,
    /// The same, each probe sent right after the previous one's copy arrived.
    pub hot_us: Vec<f64>,
}

impl Run {
    /// The idle probes' median minus the hot probes' median, in microseconds.
    pub fn added_us(&self) -> f64 {
        median(&self.idle_us) - median(&self.hot_us)
    }
}

/// The middle value (NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs every (io, mode) pair, one after the other; `progress` hears what happens.
pub fn run(settings: &Settings, progress: impl Fn(&str)) -> Result<Vec<Run>, String> {
    let mut out = Vec::new();
    for io in &settings.ios {
        for mode in &settings.modes {
            progress(&format!("io = {io}, idle = {mode}"));
            out.push(one(settings, io, mode, &progress)?);
        }
    }
    Ok(out)
}

/// The namespace and the daemon in it; both gone on drop.
struct Lab {
    ns: String,
    daemon: Option<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The daemon's configuration for one run.
fn config(io: &str, mode: &str) -> String {
    format!(
        "[mux]\nname = \"idle\"\n\n[dataplane]\nio = \"{io}\"\ninterface = \"{}\"\nworkers = 1\n\
         flow_table_capacity = 65536\nidle = \"{mode}\"\n\n[tunnel]\nsource_v4 = \"10.255.0.11\"\n\n\
         [next_hop]\nmac = \"{}\"\nsource_mac = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:9109\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{}\"\nport = {}\nprotocol = \"tcp\"\n\
         \x20 [[vip.backend]]\n  address = \"10.1.0.1\"\n",
        MUX_END.0,
        mac(PEER_END.1),
        mac(MUX_END.1),
        VIP.addr,
        VIP.port
    )
}

/// Builds the namespace and starts the daemon in it.
fn start(settings: &Settings, io: &str, mode: &str) -> Result<Lab, String> {
    let ns = format!("mux-idle-{}", std::process::id());
    let dir = std::env::temp_dir().join(&ns);
    let _ = ip(&["netns", "del", &ns]);
    ip(&["netns", "add", &ns])?;
    let mut lab = Lab {
        ns: ns.clone(),
        daemon: None,
        dir: dir.clone(),
    };
    for key in ["all", "default"] {
        // IPv6 off: no router solicitations or DAD frames to wake the worker or the probes.
        let _ = Command::new("ip")
            .args(["netns", "exec", &ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{key}.disable_ipv6=1"))
            .output();
    }
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &ns, "link", "add", MUX_END.0, "type", "veth", "peer", "name", PEER_END.0,
    ])?;
    for (end, m) in [MUX_END, PEER_END] {
        ip(&["-n", &ns, "link", "set", end, "address", &mac(m)])?;
        ip(&["-n", &ns, "link", "set", end, "up"])?;
    }
    if io == "afpacket" {
        // As the MUX's host requirements ask (docs/operations.md).
        let _ = ip(&[
            "netns", "exec", &ns, "ethtool", "-K", MUX_END.0, "gro", "off",
        ]);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cfg = dir.join("mux.toml");
    std::fs::write(&cfg, config(io, mode)).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let log = std::fs::File::create(dir.join("mux.log")).map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(&settings.mux)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", settings.mux.display()))?;
    lab.daemon = Some(child);
    Ok(lab)
}

/// The pid of the `mux` process `ip netns exec` became (it execs, so the same pid).
fn daemon_pid(lab: &mut Lab) -> Result<u32, String> {
    let child = lab.daemon.as_mut().ok_or("no daemon")?;
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!(
            "mux exited ({status}); its log: {}",
            std::fs::read_to_string(lab.dir.join("mux.log")).unwrap_or_default()
        ));
    }
    Ok(child.id())
}

/// `utime + stime` of a process, in seconds (`/proc` reports them in USER_HZ = 100 ticks on
/// every architecture Linux runs this on).
fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / 100.0)
            .ok_or_else(|| "bad stat".to_string())
    };
    Ok(tick(14)? + tick(15)?)
}

/// The worker thread (`mux-worker-0`) of a process.
fn worker_tid(pid: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (comm.trim() == "mux-worker-0")
            .then(|| t.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// A thread's time on a CPU and its number of times scheduled in (`schedstat`).
fn thread_sched(pid: u32, tid: u32) -> Option<(Duration, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((Duration::from_nanos(*f.first()?), *f.get(2)?))
}

/// A probe: a TCP SYN from a source port of its own, so a late copy is never taken for
/// another probe's.
fn probe(sport: u16) -> Vec<u8> {
    PacketBuilder::tcp(
        "198.51.100.7".parse().expect("literal"),
        sport,
        VIP.addr,
        VIP.port,
        SYN,
    )
    .macs(PEER_END.1, MUX_END.1)
    .build()
}

/// Sends probe `sport` and waits for its encapsulated copy; the round trip.
fn round_trip(sock: &RawSocket, sport: u16, buf: &mut [u8]) -> Result<Duration, String> {
    let frame = probe(sport);
    let sent = Instant::now();
    sock.send(&frame).map_err(|e| format!("send: {e}"))?;
    loop {
        let left = PROBE_TIMEOUT.saturating_sub(sent.elapsed());
        let Some(len) = sock.recv(buf, left).map_err(|e| format!("recv: {e}"))? else {
            return Err(format!(
                "probe {sport}: no encapsulated copy within {PROBE_TIMEOUT:?}"
            ));
        };
        if let Class::Encapsulated { inner, .. } = classify(&buf[..len], &[VIP])
            && inner.sport == sport
        {
            return Ok(sent.elapsed());
        }
    }
}

/// One (io, mode) run: start, wait for the data path, measure, tear down.
fn one(settings: &Settings, io: &str, mode: &str, progress: impl Fn(&str)) -> Result<Run, String> {
    let mut lab = start(settings, io, mode)?;
    let ns_path = Path::new("/run/netns").join(&lab.ns);
    // Our socket lives in the namespace: a thread of its own enters it.
    let (to_probe, probe_rx) = std::sync::mpsc::channel::<(u16, usize, Duration)>();
    let (to_main, results) = std::sync::mpsc::channel::<Result<Vec<Duration>, String>>();
    let prober = std::thread::spawn(move || {
        let opened = enter_netns(&ns_path)
            .map_err(|e| format!("entering {}: {e}", ns_path.display()))
            .and_then(|()| RawSocket::open(PEER_END.0).map_err(|e| e.to_string()));
        let sock = match opened {
            Ok(s) => s,
            Err(e) => {
                let _ = to_main.send(Err(e));
                return;
            }
        };
        let mut buf = vec![0u8; 2048];
        // Each request: first source port, count, silence before each (zero: back to back).
        for (first, count, gap) in probe_rx {
            let mut rtts = Vec::with_capacity(count);
            let mut failed = None;
            for i in 0..count {
                std::thread::sleep(gap);
                match round_trip(&sock, first.wrapping_add(i as u16), &mut buf) {
                    Ok(rtt) => rtts.push(rtt),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let _ = to_main.send(failed.map_or(Ok(rtts), Err));
        }
    });
    let ask = |first: u16, count: usize, gap: Duration| -> Result<Vec<Duration>, String> {
        to_probe
            .send((first, count, gap))
            .map_err(|_| "the prober is gone".to_string())?;
        results
            .recv()
            .map_err(|_| "the prober is gone".to_string())?
    };
    // The data path is up once a probe comes back.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut port = 1000u16;
    loop {
        daemon_pid(&mut lab)?;
        match ask(port, 1, Duration::ZERO) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the MUX never forwarded: {e}"));
            }
            Err(_) => port += 1,
        }
    }
    let pid = daemon_pid(&mut lab)?;
    let tid = worker_tid(pid);
    progress(&format!(
        "  data path up; {:.0} s of silence",
        settings.seconds
    ));
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, sched0, wall0) = (
        process_cpu_seconds(pid)?,
        tid.and_then(|t| thread_sched(pid, t)),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(settings.seconds));
    let (cpu1, sched1, wall) = (
        process_cpu_seconds(pid)?,
        tid.and_then(|t| thread_sched(pid, t)),
        wall0.elapsed().as_secs_f64(),
    );
    let (worker_cpu, worker_switches) = match (sched0, sched1) {
        (Some(a), Some(b)) => (Some((b.0 - a.0).as_secs_f64() / wall), Some(b.1 - a.1)),
        _ => (None, None),
    };
    progress(&format!(
        "  {} probes after {:?} of silence, then {} back to back",
        settings.probes, settings.gap, settings.probes
    ));
    let idle = ask(2000, settings.probes, settings.gap)?;
    let hot = ask(30000, settings.probes, Duration::ZERO)?;
    drop(to_probe);
    let _ = prober.join();
    daemon_pid(&mut lab)?;
    let us = |v: Vec<Duration>| v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    Ok(Run {
        io: io.to_string(),
        idle: mode.to_string(),
        seconds: wall,
        process_cpu: (cpu1 - cpu0) / wall,
        worker_cpu,
        worker_switches,
        idle_us: us(idle),
        hot_us: us(hot),
    })
}

/// The runs as a table.
pub fn render(settings: &Settings, runs: &[Run]) -> String {
    let mut out = format!(
        "perf idle: mux run in a throw-away namespace (veth), one worker; CPU over {:.0} s of \
         silence; {} probes after {} ms of silence each (idle) and {} back to back (hot), \
         RX -> MUX -> TX as seen from the peer\n",
        settings.seconds,
        settings.probes,
        settings.gap.as_millis(),
        settings.probes
    );
    out.push_str(&format!(
        "{:<9} {:<10} {:>9} {:>9} {:>9} {:>12} {:>12} {:>12} {:>12}\n",
        "io",
        "idle",
        "proc CPU",
        "wkr CPU",
        "wkr wakes",
        "idle p50 us",
        "idle max us",
        "hot p50 us",
        "added us"
    ));
    for r in runs {
        let max = r.idle_us.iter().copied().fold(f64::NAN, f64::max);
        out.push_str(&format!(
            "{:<9} {:<10} {:>8.2}% {:>9} {:>9} {:>12.0} {:>12.0} {:>12.0} {:>12.0}\n",
            r.io,
            r.idle,
            100.0 * r.process_cpu,
            r.worker_cpu
                .map_or("-".into(), |c| format!("{:.2}%", 100.0 * c)),
            r.worker_switches
                .map_or("-".into(), |s| format!("{:.0}/s", s as f64 / r.seconds)),
            median(&r.idle_us),
            max,
            median(&r.hot_us),
            r.added_us()
        ));
    }
    // What adaptive idling adds over busy polling, both measured after the same silence.
    for io in &settings.ios {
        let of = |mode: &str| runs.iter().find(|r| &r.io == io && r.idle == mode);
        if let (Some(a), Some(b)) = (of("adaptive"), of("busy-poll")) {
            out.push_str(&format!(
                "{io}: first packet after {} ms of silence, adaptive vs busy-poll: {:+.0} us \
                 (medians {:.0} vs {:.0}); idle CPU {:.2}% vs {:.2}% of a core\n",
                settings.gap.as_millis(),
                median(&a.idle_us) - median(&b.idle_us),
                median(&a.idle_us),
                median(&b.idle_us),
                100.0 * a.process_cpu,
                100.0 * b.process_cpu
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_valid_for_every_io_and_mode() {
        for io in ["afxdp", "afpacket"] {
            for mode in ["adaptive", "busy-poll"] {
                let text = config(io, mode);
                let cfg = mux::config::parse(&text, "idle.toml")
                    .unwrap_or_else(|e| panic!("{io}/{mode}: {e}\n{text}"));
                assert_eq!(cfg.dataplane().idle().to_string(), mode);
            }
        }
    }

    #[test]
    fn a_probe_parses_as_a_syn_to_the_vip() {
        let frame = probe(4242);
        assert_eq!(&frame[..6], &MUX_END.1);
        match classify(&frame, &[VIP]) {
            Class::Plain(t) => assert_eq!((t.sport, t.dst, t.dport), (4242, VIP.addr, 80)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn added_latency_is_the_difference_of_the_medians() {
        let r = Run {
            io: "afxdp".into(),
            idle: "adaptive".into(),
            seconds: 10.0,
            process_cpu: 0.01,
            worker_cpu: Some(0.005),
            worker_switches: Some(10_000),
            idle_us: vec![90.0, 70.0, 80.0],
            hot_us: vec![30.0, 20.0, 25.0],
        };
        assert_eq!(r.added_us(), 55.0);
        let text = render(
            &Settings {
                mux: "mux".into(),
                ios: vec!["afxdp".into()],
                modes: vec!["adaptive".into()],
                seconds: 10.0,
                probes: 3,
                gap: Duration::from_millis(200),
            },
            &[r],
        );
        assert!(text.contains("afxdp") && text.contains("55"));
    }
}
