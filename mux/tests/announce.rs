//! The announcement lives and dies with the data path: `mux run` (io = "mem") against a real
//! BIRD 2 (no peers, no kernel protocol: it only holds the static VIP routes the MUX's guard
//! writes), and the VIP route in BIRD's table watched while the MUX is stopped, continued,
//! killed and terminated. Needs `bird` and `birdc` (Debian bird2; `.ci/run` installs it).

mod common;

use common::process::{free_port, get, signal, status, wait_for};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the guard must achieve after a fault (the bound; the default timeout is 300 ms).
const WITHDRAW_BOUND: Duration = Duration::from_secs(1);

struct Lab {
    dir: PathBuf,
    bird: Child,
    muxes: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for m in &mut self.muxes {
            let _ = Command::new("kill")
                .args(["-CONT", &m.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = m.kill();
            let _ = m.wait();
        }
        // Orphaned guards exit by themselves once their pipe closes; give them a moment.
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.bird.kill();
        let _ = self.bird.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// BIRD's answer for the VIP's route, `true` when BIRD has it.
fn bird_has_route(sock: &Path, prefix: &str) -> bool {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(["show", "route", prefix])
        .output()
        .expect("birdc runs");
    String::from_utf8_lossy(&out.stdout).contains(prefix)
}

/// Polls every 5 ms until `want` holds; returns how long it took (panics after `limit`).
fn time_until(what: &str, limit: Duration, mut want: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !want() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    t0.elapsed()
}

fn start_lab(test: &str) -> Option<Lab> {
    if !(mux_test_prereq::require_tool(test, "bird", "--version", "bird2")
        && mux_test_prereq::require_tool(test, "birdc", "--version", "bird2"))
    {
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "mux-announce-test-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vips.conf"), "").unwrap();
    std::fs::write(
        dir.join("bird.conf"),
        format!(
            "router id 192.0.2.1;\nprotocol device {{ scan time 10; }}\ninclude \"{}\";\n",
            dir.join("vips.conf").display()
        ),
    )
    .unwrap();
    let bird = Command::new("bird")
        .arg("-f")
        .arg("-c")
        .arg(dir.join("bird.conf"))
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird starts");
    let sock = dir.join("bird.ctl");
    wait_for("BIRD's control socket", || {
        Command::new("birdc")
            .arg("-s")
            .arg(&sock)
            .args(["show", "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    Some(Lab {
        dir,
        bird,
        muxes: Vec::new(),
    })
}

impl Lab {
    fn sock(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// Starts `mux run` announcing through this BIRD; returns its admin port.
    fn start_mux(&mut self) -> u16 {
        let port = free_port();
        let config = common::FIXTURE_CONFIG.replace(
            "[mux]\nname = \"fixture\"",
            &format!(
                "[mux]\nname = \"fixture\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [lifecycle]\ndrain_seconds = 1\n\n[bgp]\nspeaker = \"bird\"\n\
                 bird_socket = \"{}\"\nbird_include = \"{}\"\nliveness_timeout_ms = 300",
                self.sock().display(),
                self.dir.join("vips.conf").display()
            ),
        );
        let path = self.dir.join(format!("mux-{port}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("mux-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mux"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.muxes.push(child);
        port
    }

    fn mux(&self) -> &Child {
        self.muxes.last().expect("a MUX was started")
    }

    fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("mux-{port}.log"))).unwrap_or_default()
    }
}

#[test]
fn routes_follow_the_data_path_through_stop_continue_kill_and_term() {
    let Some(mut lab) =
        start_lab("routes_follow_the_data_path_through_stop_continue_kill_and_term")
    else {
        return;
    };
    let sock = lab.sock();
    let vip = "192.0.2.10/32";
    let port = lab.start_mux();
    let announced = time_until("the first announcement", Duration::from_secs(15), || {
        bird_has_route(&sock, vip)
    });
    eprintln!("announced {announced:?} after start");
    assert!(bird_has_route(&sock, "2001:db8::10/128"), "IPv6 VIPs too");
    // The guard's confirmation reaches the status within a liveness round.
    wait_for("the announcement in the status", || {
        let st = status(port);
        st["announcement"]["data_path_alive"] == true
            && st["announced"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "192.0.2.10")
    });

    // SIGSTOP: nothing in the process runs; the guard withdraws after the liveness timeout.
    signal(lab.mux(), "STOP");
    let withdrawn = time_until("withdrawal after SIGSTOP", WITHDRAW_BOUND, || {
        !bird_has_route(&sock, vip)
    });
    eprintln!("SIGSTOP: withdrawn after {withdrawn:?}");
    assert!(
        withdrawn >= Duration::from_millis(250),
        "not before the timeout: {withdrawn:?}"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(!bird_has_route(&sock, vip), "stays withdrawn while stopped");

    // SIGCONT: heartbeats resume, the routes come back by themselves.
    signal(lab.mux(), "CONT");
    let back = time_until("re-announcement after SIGCONT", WITHDRAW_BOUND, || {
        bird_has_route(&sock, vip)
    });
    eprintln!("SIGCONT: announced again after {back:?}");
    let st = status(port);
    assert_eq!(
        st["announcement"]["downs"], 0,
        "a stop is not the MUX's verdict: {st}"
    );
    let metrics = get(port, "/metrics").expect("metrics answer").1;
    for line in [
        "mux_data_path_alive 1",
        "mux_data_path_downs_total 0",
        "mux_announce_guard_restarts_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // kill -9: the pipe closes with the process; the guard withdraws at once and exits.
    signal(lab.mux(), "KILL");
    let killed = time_until("withdrawal after kill -9", WITHDRAW_BOUND, || {
        !bird_has_route(&sock, vip)
    });
    eprintln!("kill -9: withdrawn after {killed:?}");
    let log = lab.log(port);
    assert!(log.contains("pipe closed"), "the guard says why: {log}");

    // A new MUX announces again; SIGTERM withdraws before the drain and exits cleanly.
    let port2 = lab.start_mux();
    time_until(
        "announcement by the restarted MUX",
        Duration::from_secs(15),
        || bird_has_route(&sock, vip),
    );
    signal(lab.mux(), "TERM");
    let termed = time_until("withdrawal after SIGTERM", WITHDRAW_BOUND, || {
        !bird_has_route(&sock, vip)
    });
    eprintln!("SIGTERM: withdrawn after {termed:?}");
    let mux = lab.muxes.last_mut().unwrap();
    let exit = time_until("exit after SIGTERM", Duration::from_secs(10), || {
        mux.try_wait().unwrap().is_some()
    });
    assert!(mux.try_wait().unwrap().unwrap().success());
    eprintln!("SIGTERM: exited after {exit:?}");
    let log = lab.log(port2);
    assert!(
        log.contains("VIP routes withdrawn; announcement guard exiting"),
        "the guard exits after the MUX: {log}"
    );
}

#[test]
fn a_killed_guard_is_replaced_and_the_announcement_stands() {
    let Some(mut lab) = start_lab("a_killed_guard_is_replaced_and_the_announcement_stands") else {
        return;
    };
    let sock = lab.sock();
    let vip = "192.0.2.10/32";
    let port = lab.start_mux();
    time_until("the first announcement", Duration::from_secs(15), || {
        bird_has_route(&sock, vip)
    });
    let guard = guard_pid(lab.mux().id()).expect("the MUX has a guard child");
    Command::new("kill")
        .args(["-KILL", &guard.to_string()])
        .status()
        .unwrap();
    wait_for("a new guard", || {
        guard_pid(lab.mux().id()).is_some_and(|p| p != guard)
    });
    wait_for("the restart in the status", || {
        status(port)["announcement"]["guard_restarts"] == 1
    });
    // The new guard announces again once it has the MUX's want and a heartbeat.
    time_until(
        "announcement by the new guard",
        Duration::from_secs(2),
        || bird_has_route(&sock, vip),
    );
}

/// The pid of `parent`'s child process running `mux announce-guard` (whichever of the MUX's
/// threads started it).
fn guard_pid(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after its last ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && String::from_utf8_lossy(&cmdline).contains("announce-guard"))
            .then_some(pid)
    })
}
