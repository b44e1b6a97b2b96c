//! `mux run` as a process: readiness, status, metrics, reloads good and bad, graceful stop.
//! Uses `io = "mem"` (no NIC, no root); the real-I/O path is covered by the port tests and
//! the lab smoke test.

mod common;

use common::process::{free_port, get, signal, status, wait_for};

use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running daemon, killed on drop if the test failed before stopping it.
struct Daemon {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(port: u16, extra_backend: bool) -> String {
    let mut s = common::FIXTURE_CONFIG.replace(
        "[mux]\nname = \"fixture\"",
        &format!("[mux]\nname = \"fixture\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n[lifecycle]\ndrain_seconds = 1"),
    );
    if extra_backend {
        s = s.replacen(
            "  address = \"10.1.0.1\"\n",
            "  address = \"10.1.0.1\"\n  [[vip.backend]]\n  address = \"10.1.0.7\"\n",
            1,
        );
    }
    s
}

fn start() -> Daemon {
    start_with("")
}

/// Starts a daemon on the fixture config followed by `extra`.
fn start_with(extra: &str) -> Daemon {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("mux-daemon-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mux.toml"), config(port, false) + extra).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mux"))
        .args(["run", "--config"])
        .arg(dir.join("mux.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Daemon { child, port, dir }
}

#[test]
fn daemon_lifecycle_reloads_and_endpoints() {
    let mut d = start();
    let port = d.port;
    wait_for("readiness", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(port, "/healthz").unwrap().0, 200);
    assert_eq!(get(port, "/nope").unwrap().0, 404);
    // `mux trace --admin`: the published snapshot explains a flow; a bad flow is a 400.
    let (code, body) = get(port, "/v1/trace?flow=tcp+198.51.100.7:40000+192.0.2.10:80").unwrap();
    assert_eq!(code, 200, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["vip"], "web");
    assert_eq!(e["current"]["address"], "10.1.0.1");
    assert_eq!(get(port, "/v1/trace?flow=tcp+nope").unwrap().0, 400);
    let out = Command::new(env!("CARGO_BIN_EXE_mux"))
        .args(["trace", "--admin", &format!("127.0.0.1:{port}")])
        .arg("tcp 198.51.100.7:40000 192.0.2.10:80")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("vip         \"web\"") && text.contains("10.1.0.1"),
        "{text}"
    );
    let s = status(port);
    assert_eq!(s["phase"], "ready");
    assert_eq!(s["generation"], 1);
    assert_eq!(s["workers"][0]["running"], true);
    assert_eq!(s["vips"].as_array().unwrap().len(), 6);
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(metrics.contains("mux_config_generation 1"), "{metrics}");
    monitoring_names_exist(&metrics, "mux_");
    assert!(metrics.contains("mux_dropped_packets_total{reason=\"no_backend\"} 0"));
    assert!(metrics.contains("mux_rx_packets_total 0"), "{metrics}");
    assert!(metrics.contains("mux_packets_total{outcome=\"dropped\"} 0"));
    assert!(
        metrics
            .contains("mux_backend_up{vip=\"drained\",backend=\"10.1.0.9\",state=\"draining\"} 1")
    );
    // Once every worker has swept its flow table, each backend shows the flows it still
    // receives, and the draining one with nothing pinned to it is drained.
    wait_for("a census sweep", || {
        status(port)["workers"][0]["flow_census_age_ms"].is_u64()
    });
    let s = status(port);
    let drained = &s["vips"][5]["backends"][0];
    assert_eq!(drained["address"], "10.1.0.9");
    assert_eq!(drained["live_flows"], 0);
    assert_eq!(drained["drained"], true);
    assert_eq!(drained["cutoff"], serde_json::Value::Null);
    assert_eq!(
        s["vips"][0]["backends"][0]["drained"],
        serde_json::Value::Null
    );
    assert_eq!(s["workers"][0]["flow_census_generation"], 1);
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("mux_backend_flows{vip=\"web\",backend=\"10.1.0.1\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("mux_backend_drained{vip=\"drained\",backend=\"10.1.0.9\"} 1"));
    assert!(metrics.contains("mux_flow_census_age_ms{worker=\"0\"}"));

    // A bad file is refused; the old configuration keeps serving.
    let file = d.dir.join("mux.toml");
    std::fs::write(&file, config(port, false) + "\nnot toml at all ===\n").unwrap();
    signal(&d.child, "HUP");
    wait_for("the refusal", || status(port)["reloads"]["failed"] == 1);
    let s = status(port);
    assert_eq!(s["generation"], 1);
    assert!(
        s["reloads"]["last_error"]
            .as_str()
            .unwrap()
            .contains("mux.toml:")
    );
    assert_eq!(s["phase"], "ready");

    // A file TOML can parse is refused with every error in it, each with its line: a typo, a
    // bad address and a bad weight (before, the typo hid the other two).
    let three = config(port, false)
        .replacen("address = \"10.1.0.1\"", "address = \"10.1.0.300\"", 1)
        .replacen(
            "  address = \"10.1.0.2\"",
            "  address = \"10.1.0.2\"\n  wieght = 1",
            1,
        )
        .replacen(
            "  address = \"fd00:1::1\"",
            "  address = \"fd00:1::1\"\n  weight = -5",
            1,
        );
    std::fs::write(&file, &three).unwrap();
    signal(&d.child, "HUP");
    wait_for("the second refusal", || {
        status(port)["reloads"]["failed"] == 2
    });
    let s = status(port);
    assert_eq!(s["generation"], 1);
    let error = s["reloads"]["last_error"].as_str().unwrap().to_string();
    let line_of = |needle: &str| three.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (needle, message) in [
        ("10.1.0.300", "expected an IP address"),
        ("wieght", "unknown field `wieght`"),
        ("weight = -5", "weight must be between 0 and 10000"),
    ] {
        let at = format!("mux.toml:{}:", line_of(needle));
        assert!(
            error
                .lines()
                .any(|l| l.contains(&at) && l.contains(message)),
            "{at}…{message} missing from the reload error:\n{error}"
        );
    }

    // A good file is published as generation 2.
    std::fs::write(&file, config(port, true)).unwrap();
    signal(&d.child, "HUP");
    wait_for("the reload", || status(port)["generation"] == 2);
    let s = status(port);
    assert_eq!(s["reloads"]["ok"], 1);
    assert_eq!(s["reloads"]["last_error"], serde_json::Value::Null);
    assert_eq!(s["vips"][0]["backends"].as_array().unwrap().len(), 2);
    wait_for("workers to adopt it", || {
        status(port)["workers"][0]["generation"] == 2
    });

    // SIGTERM: draining, then a clean exit.
    signal(&d.child, "TERM");
    wait_for("draining", || {
        get(port, "/readyz").is_none_or(|(code, body)| code == 503 && body.contains("draining"))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = d.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
    let mut log = String::new();
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("mux stopped"), "{log}");
}

#[test]
fn daemon_refuses_to_start_on_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("mux-daemon-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mux.toml");
    std::fs::write(
        &file,
        "[mux]\nname = \"x\"\n[dataplane]\nio = \"afpacket\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mux"))
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mux.toml:3:1") && stderr.contains("interface is required"),
        "{stderr}"
    );
}

/// A fake host agent on 127.0.0.1 answering `GET /v1/backends` with whatever `body` holds,
/// until `stop`. Returns its port.
fn fake_agent(body: Arc<Mutex<String>>, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let b = body.lock().unwrap().clone();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    port
}

fn agent_report(state: &str, failing_since_unix_ms: Option<u64>) -> String {
    serde_json::json!({
        "agent": "host1",
        "generation": 1,
        "backends": [{
            "vip": "192.0.2.10", "port": 80, "protocol": "tcp", "dip": "10.1.0.1",
            "state": state, "failing_since_unix_ms": failing_since_unix_ms,
        }],
    })
    .to_string()
}

#[test]
fn daemon_applies_the_health_feed() {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let body = Arc::new(Mutex::new(agent_report("down", Some(now_ms))));
    let stop_agent = Arc::new(AtomicBool::new(false));
    let agent = fake_agent(Arc::clone(&body), Arc::clone(&stop_agent));
    let mut d = start_with(&format!(
        "\n[health]\npoll_interval_ms = 100\ntimeout_ms = 100\nstale_after_ms = 1000\n\
         [[health.agent]]\naddress = \"127.0.0.1:{agent}\"\n"
    ));
    let port = d.port;
    wait_for("readiness", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });

    // Reported down: failed in the snapshot, with its history in the status.
    wait_for("the backend to fail", || {
        status(port)["vips"][0]["backends"][0]["state"] == "failed"
    });
    let s = status(port);
    assert_eq!(s["vips"][0]["name"], "web");
    assert_eq!(s["vips"][0]["accepting_new_flows"], false);
    let a = &s["health"]["agents"][0];
    assert_eq!(a["address"], format!("127.0.0.1:{agent}"));
    assert_eq!(a["name"], "host1");
    assert_eq!(a["reachable"], true);
    assert!(a["polls_ok"].as_u64().unwrap() >= 1);
    let b = &s["health"]["backends"][0];
    assert_eq!(b["vip"], "web");
    assert_eq!(b["backend"], "10.1.0.1");
    assert_eq!(b["reported_state"], "down");
    assert_eq!(b["applied"], "failed");
    assert_eq!(b["transitions"], 1);
    assert!(b["last_detect_ms"].as_u64().is_some(), "{b}");
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains(&format!(
            "mux_health_agent_up{{agent=\"127.0.0.1:{agent}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("mux_backend_health_failed{vip=\"web\",backend=\"10.1.0.1\"} 1"));
    assert!(
        metrics.contains("mux_backend_up{vip=\"web\",backend=\"10.1.0.1\",state=\"failed\"} 1")
    );

    // A reload keeps the failed set.
    signal(&d.child, "HUP");
    wait_for("the reload", || status(port)["reloads"]["ok"] == 1);
    assert_eq!(status(port)["vips"][0]["backends"][0]["state"], "failed");

    // Up again: recovered.
    *body.lock().unwrap() = agent_report("up", None);
    wait_for("the backend to recover", || {
        status(port)["vips"][0]["backends"][0]["state"] == "active"
    });
    assert_eq!(status(port)["health"]["backends"][0]["transitions"], 2);

    // The agent goes silent: stale after a second, so its backend fails again.
    stop_agent.store(true, Ordering::Relaxed);
    wait_for("the silent agent's backend to fail", || {
        status(port)["vips"][0]["backends"][0]["state"] == "failed"
    });
    assert_eq!(status(port)["health"]["agents"][0]["reachable"], false);

    signal(&d.child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = d.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
    let mut log = String::new();
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("backend failed by health feed"), "{log}");
    assert!(log.contains("backend recovered"), "{log}");
}

/// Stops `d` with SIGTERM and waits for a clean exit.
fn stop(d: &mut Daemon) {
    signal(&d.child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = d.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
}

#[test]
fn second_chance_history_survives_reloads_and_restarts() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("mux-daemon-sc-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("second-chance.json");
    let with_state = |extra_backend: bool| {
        config(port, extra_backend).replacen(
            "mtu = 1500\n",
            &format!(
                "mtu = 1500\nsecond_chance_state = \"{}\"\n",
                state.display()
            ),
            1,
        )
    };
    let spawn = || {
        let child = Command::new(env!("CARGO_BIN_EXE_mux"))
            .args(["run", "--config"])
            .arg(dir.join("mux.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Daemon {
            child,
            port,
            dir: dir.clone(),
        }
    };
    let previous = |vip: usize| status(port)["vips"][vip]["previous_tables"].clone();

    std::fs::write(dir.join("mux.toml"), with_state(false)).unwrap();
    let mut d = spawn();
    wait_for("readiness", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(previous(0), serde_json::json!([]), "a fresh MUX has none");
    assert!(state.exists(), "the history is written at start");

    // A reload adds a backend to `web`: its old table becomes a previous one.
    std::fs::write(dir.join("mux.toml"), with_state(true)).unwrap();
    signal(&d.child, "HUP");
    wait_for("the reload", || status(port)["generation"] == 2);
    let p = previous(0);
    assert_eq!(p.as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p[0]["in_window"], true);
    let replaced = p[0]["replaced_unix_ms"].as_u64().unwrap();
    assert_eq!(p[0]["until_unix_ms"], replaced + 120_000);
    assert_eq!(previous(1), serde_json::json!([]), "`dns` did not change");
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("mux_vip_previous_tables{vip=\"web\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("mux_second_chance_packets_total{outcome=\"sent\"} 0"));
    let file = std::fs::read_to_string(&state).unwrap();
    assert!(file.contains("\"10.1.0.7\""), "{file}");

    // A clean stop writes the file once more with the moment the MUX stopped taking new
    // flows, which ends the current table's time in force at a restart.
    stop(&mut d);
    let stopped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let stopped_at = stopped["stopped_unix_ms"].as_u64().expect("a stop mark");
    assert!(stopped_at >= replaced, "{stopped}");
    drop(d);
    // Restarted on the file as it was before the stop: the previous table is back, with its
    // original window.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mux.toml"), with_state(true)).unwrap();
    std::fs::write(&state, &file).unwrap();
    let mut d = spawn();
    wait_for("readiness after the restart", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let s = status(port);
    assert_eq!(s["generation"], 1);
    let p = &s["vips"][0]["previous_tables"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p[0]["replaced_unix_ms"], replaced);

    // A malformed file is logged and ignored: the MUX starts without history.
    stop(&mut d);
    drop(d);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mux.toml"), with_state(true)).unwrap();
    std::fs::write(&state, "{ not json").unwrap();
    let mut d = spawn();
    wait_for("readiness with a bad history file", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(previous(0), serde_json::json!([]));
    stop(&mut d);
    let mut log = String::new();
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("starting without second-chance history"),
        "{log}"
    );
}

/// Every `prefix…` metric name the shipped Prometheus rules and Grafana dashboard use
/// (deploy/) is a family of this `/metrics` text.
fn monitoring_names_exist(metrics: &str, prefix: &str) {
    use mux_daemon_kit::prometheus_text::{families, names_used};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let families = families(metrics);
    let mut checked = 0;
    for file in [
        "prometheus/rules.yml",
        "prometheus/rules_test.yml",
        "grafana/mux.json",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for name in names_used(&text, prefix) {
            assert!(
                families.contains(&name.as_str()),
                "{file} uses {name}, which /metrics does not have"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} names found");
}

#[test]
fn load_aware_weights_follow_the_agents_load() {
    let report = |heavy: u64, light: u64| {
        serde_json::json!({
            "agent": "host1",
            "generation": 1,
            "backends": [
                {"vip": "192.0.2.40", "port": 80, "protocol": "tcp", "dip": "10.1.0.21",
                 "state": "up", "load": {"active_connections": heavy}},
                {"vip": "192.0.2.40", "port": 80, "protocol": "tcp", "dip": "10.1.0.22",
                 "state": "up", "load": {"active_connections": light}},
            ],
        })
        .to_string()
    };
    let body = Arc::new(Mutex::new(report(300, 100)));
    let stop_agent = Arc::new(AtomicBool::new(false));
    let agent = fake_agent(Arc::clone(&body), Arc::clone(&stop_agent));
    let d = start_with(&format!(
        "\n[[vip]]\nname = \"heavy\"\naddress = \"192.0.2.40\"\nport = 80\nprotocol = \"tcp\"\n\
         maglev_table_size = 1009\n\
         [vip.load_aware]\ninterval_seconds = 1\n\
         [[vip.backend]]\naddress = \"10.1.0.21\"\n[[vip.backend]]\naddress = \"10.1.0.22\"\n\
         [health]\npoll_interval_ms = 100\ntimeout_ms = 100\n\
         [[health.agent]]\naddress = \"127.0.0.1:{agent}\"\n"
    ));
    let port = d.port;
    wait_for("readiness", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let heavy = |s: &serde_json::Value| {
        s["vips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "heavy")
            .unwrap()
            .clone()
    };
    let s0 = status(port);
    let (before, changes0) = (
        heavy(&s0)["maglev_fingerprint"].clone(),
        s0["health"]["load_aware_changes"].as_u64().unwrap(),
    );
    // 300 vs 100 connections on equal weights: per weight 1.5× and 0.5× the average, so the
    // heavy backend's factor moves down and the light one's up (part of the way, at most 25 %
    // per revision), once per second, within 25 %..400 %.
    wait_for("a weight change", || {
        status(port)["health"]["load_aware_changes"].as_u64() > Some(changes0)
    });
    let s = status(port);
    let w = s["health"]["load_aware_weights"].as_array().unwrap();
    let factor = |b: &str| {
        w.iter().find(|x| x["backend"] == b).unwrap()["factor"]
            .as_f64()
            .unwrap()
    };
    assert!(
        factor("10.1.0.21") < 1.0 && factor("10.1.0.22") > 1.0,
        "{w:?}"
    );
    assert!(
        w[0]["last_change"]
            .as_str()
            .unwrap()
            .contains("× the VIP's average"),
        "{w:?}"
    );
    // The change is counted just before its snapshot is published: wait for the new table.
    wait_for("a new table", || {
        heavy(&status(port))["maglev_fingerprint"] != before
    });
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("mux_backend_weight_factor_percent{vip=\"heavy\",backend=\"10.1.0.21\"}"),
        "{metrics}"
    );
    // Even load per configured weight (the rule's goal): the factors stop moving, within the
    // hysteresis; no leak or renormalisation moves them either.
    *body.lock().unwrap() = report(200, 205);
    std::thread::sleep(Duration::from_millis(300));
    let settled = status(port)["health"]["load_aware_changes"].clone();
    wait_for("two more revisions", || {
        status(port)["health"]["agents"][0]["polls_ok"].as_u64() >= Some(30)
    });
    assert_eq!(status(port)["health"]["load_aware_changes"], settled);
    stop_agent.store(true, Ordering::Relaxed);
}
