//! The admin endpoint on 127.0.0.1: every route, the `/v1/backends` contract, `/readyz`
//! following the ready flag, `/metrics` names, and a prompt stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hostagent::config::{HealthCheck, HealthKind, Protocol};
use hostagent::control::admin;
use hostagent::control::health::HealthChecker;
use hostagent::control::state::{AgentState, IoCounters};
use hostagent::dataplane::{DataPath, DropReason, ServiceSpec, ServiceTable};
use serde_json::Value;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn services(tcp_port: u16) -> Vec<ServiceSpec> {
    vec![
        ServiceSpec {
            vip: "192.0.2.10".parse().expect("ip"),
            port: 80,
            protocol: Protocol::Tcp,
            dip: "10.0.21.2".parse().expect("ip"),
            backend_address: LOCALHOST,
            backend_port: tcp_port,
        },
        ServiceSpec {
            vip: "192.0.2.10".parse().expect("ip"),
            port: 53,
            protocol: Protocol::Udp,
            dip: "10.0.21.2".parse().expect("ip"),
            backend_address: LOCALHOST,
            backend_port: 53,
        },
    ]
}

/// Starts the endpoint on a free loopback port (found by binding port 0 and releasing it;
/// retried in case another test takes it in between).
fn start_admin(state: &Arc<AgentState>) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut last_error = String::new();
    for _ in 0..10 {
        let port = TcpListener::bind((LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::new(LOCALHOST, port);
        match admin::start(addr, Arc::clone(state), Arc::clone(&stop)) {
            Ok(handle) => return (addr, stop, handle),
            Err(e) => last_error = e,
        }
    }
    panic!("cannot start the admin endpoint: {last_error}");
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .expect("admin endpoint answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.body_mut().read_to_string().expect("body");
    (status, content_type, body)
}

#[test]
fn every_route_answers_and_backends_follow_the_contract() {
    let backend = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let tcp_port = backend.local_addr().expect("addr").port();
    let specs = services(tcp_port);
    let checker = HealthChecker::start_services(
        specs.clone(),
        HealthCheck {
            kind: HealthKind::Tcp,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 1,
        },
    );
    let state = Arc::new(AgentState::new(
        "host1".into(),
        PathBuf::from("/etc/hostagent.toml"),
        checker.view(),
    ));

    // The I/O thread's side: a data path that dropped one packet, and interception counters.
    let table = ServiceTable::new(vec!["10.0.11.2".parse().expect("ip")], specs).expect("table");
    let mut dp = DataPath::new(table);
    let mut junk: [u8; 0] = []; // empty: truncated_outer
    dp.decap(&mut junk);
    state.publish_data_path(&dp);
    IoCounters::add(&state.io.rx_packets, 1);
    state.reloads.record_failed("test.toml:3:1: nope".into());

    let (addr, stop, handle) = start_admin(&state);

    // Wait until the TCP backend is up (rise = 1), polling the endpoint itself.
    let start = Instant::now();
    let backends = loop {
        let (status, content_type, body) = get(addr, "/v1/backends");
        assert_eq!(status, 200);
        assert_eq!(content_type, "application/json");
        let v: Value = serde_json::from_str(&body).expect("json");
        if v["backends"][0]["state"] == "up" {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(backends["agent"], "host1");
    assert_eq!(backends["generation"], 1);
    let list = backends["backends"].as_array().expect("array");
    assert_eq!(list.len(), 2, "one entry per service");
    let tcp = &list[0];
    let keys: Vec<&str> = tcp
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "vip",
        "port",
        "protocol",
        "dip",
        "backend_address",
        "backend_port",
        "state",
        "checked",
        "since_unix_ms",
        "failing_since_unix_ms",
        "last_check_unix_ms",
        "transitions",
        "consecutive_successes",
        "consecutive_failures",
        "detect_ms",
        "last_error",
        "load",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(tcp["vip"], "192.0.2.10");
    assert_eq!(tcp["port"], 80);
    assert_eq!(tcp["protocol"], "tcp");
    assert_eq!(tcp["dip"], "10.0.21.2");
    assert_eq!(tcp["backend_address"], "127.0.0.1");
    assert_eq!(tcp["backend_port"], tcp_port);
    assert_eq!(tcp["checked"], true);
    assert_eq!(tcp["transitions"], 1);
    assert!(tcp["failing_since_unix_ms"].is_null());
    assert!(tcp["last_error"].is_null());
    assert!(tcp["since_unix_ms"].as_u64().is_some());
    // Load: published once, so active connections and no rates yet.
    assert_eq!(tcp["load"]["active_connections"], 0);
    assert_eq!(tcp["load"]["interval_s"], 0.0);
    assert_eq!(list[1]["protocol"], "udp");
    assert_eq!(list[1]["state"], "up");
    assert_eq!(list[1]["checked"], false);

    // The compact document keeps the contract's key order.
    let compact = state.backends_json();
    assert!(
        compact.starts_with("{\"agent\":\"host1\",\"generation\":1,\"backends\":[{\"vip\":"),
        "{compact}"
    );

    let (status, _, body) = get(addr, "/v1/status");
    assert_eq!(status, 200);
    let s: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(s["agent"], "host1");
    assert_eq!(s["config"], "/etc/hostagent.toml");
    assert_eq!(s["ready"], false);
    assert_eq!(s["counters"]["inbound"], 1);
    assert_eq!(s["counters"]["dropped"], 1);
    assert_eq!(s["counters"]["drops"][DropReason::TruncatedOuter.name()], 1);
    assert_eq!(
        s["counters"]["drops"].as_object().expect("drops").len(),
        DropReason::COUNT
    );
    assert_eq!(s["io"]["rx_packets"], 1);
    assert_eq!(s["reloads"]["failed"], 1);
    assert_eq!(s["reloads"]["last_error"], "test.toml:3:1: nope");
    assert_eq!(s["services"][0]["backend_port"], tcp_port);
    assert_eq!(s["health"].as_array().map(Vec::len), Some(2));

    let (status, content_type, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    monitoring_names_exist(&metrics, "hostagent_");
    assert!(content_type.starts_with("text/plain"));
    let labels = format!(
        "vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\",dip=\"10.0.21.2\",backend=\"127.0.0.1:{tcp_port}\""
    );
    for line in [
        "hostagent_inbound_packets_total 1".to_string(),
        "hostagent_dropped_packets_total{reason=\"truncated_outer\"} 1".to_string(),
        "hostagent_dropped_packets_total{reason=\"unknown_service\"} 0".to_string(),
        "hostagent_io_packets_total{device=\"network\",direction=\"rx\"} 1".to_string(),
        "hostagent_service_packets_total{vip=\"192.0.2.10\",port=\"53\",protocol=\"udp\",dip=\"10.0.21.2\",outcome=\"delivered\"} 0".to_string(),
        format!("hostagent_backend_health_state{{{labels},checked=\"true\"}} 1"),
        format!("hostagent_backend_health_transitions_total{{{labels}}} 1"),
        "hostagent_service_bytes_total{vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\",dip=\"10.0.21.2\",direction=\"in\"} 0".to_string(),
        "hostagent_service_new_connections_total{vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\",dip=\"10.0.21.2\"} 0".to_string(),
        "hostagent_service_active_connections{vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\",dip=\"10.0.21.2\"} 0".to_string(),
        "hostagent_reloads_total{result=\"failed\"} 1".to_string(),
        "hostagent_config_generation 1".to_string(),
        "hostagent_ready 0".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }

    assert_eq!(get(addr, "/healthz").0, 200);
    let (status, _, body) = get(addr, "/readyz");
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    state.set_ready(true);
    assert_eq!(get(addr, "/readyz?verbose=1").0, 200);
    let (status, _, body) = get(addr, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("/v1/backends"), "{body}");

    state.generation.fetch_add(1, Ordering::AcqRel);
    let (_, _, body) = get(addr, "/v1/backends");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["generation"], 2);

    let stopped = Instant::now();
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("admin thread");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    checker.stop();
    drop(backend);
}

#[test]
fn a_listen_address_in_use_is_an_error_that_names_the_setting() {
    let taken = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let addr = taken.local_addr().expect("addr");
    let checker = HealthChecker::start_services(
        Vec::new(),
        HealthCheck {
            kind: HealthKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        },
    );
    let state = Arc::new(AgentState::new(
        "host1".into(),
        PathBuf::new(),
        checker.view(),
    ));
    let err =
        admin::start(addr, state, Arc::new(AtomicBool::new(false))).expect_err("address in use");
    assert!(err.contains("[admin] listen"), "{err}");
    checker.stop();
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
    assert!(checked > 3, "only {checked} names found");
}
