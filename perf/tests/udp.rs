//! `perf udp-backend` as the lab runs it: a process that answers datagrams with its name, the
//! client's address and the request's `seq`, and exits cleanly on SIGTERM.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_udp_backend_answers_and_stops_on_sigterm() {
    // A free port (the backend binds it right after; nothing else here competes for it).
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_perf"))
        .args([
            "udp-backend",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "u9",
            "--duration",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Until the backend is up: each try sends a new seq, any answer names its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    let answer = loop {
        assert!(Instant::now() < deadline, "no answer from perf udp-backend");
        let _ = client.send(b"41\n");
        if let Ok(n) = client.recv(&mut buf) {
            break serde_json::from_slice::<serde_json::Value>(&buf[..n]).unwrap();
        }
    };
    assert_eq!(answer["backend"], "u9");
    assert_eq!(answer["seq"], 41);
    assert_eq!(answer["client"], client.local_addr().unwrap().to_string());
    client.send(br#"{"seq": 42}"#).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = client.recv(&mut buf).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(answer["seq"], 42);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(stderr.contains("answered, 0 malformed"), "{stderr}");
}
