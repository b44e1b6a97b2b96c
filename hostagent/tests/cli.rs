//! The `hostagent` binary's `check-config`: exit status and `FILE:LINE:COL` messages.

use std::path::PathBuf;
use std::process::Command;

fn hostagent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hostagent"))
}

#[test]
fn check_config_accepts_the_example() {
    let path = format!(
        "{}/../configs/hostagent.example.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = hostagent().args(["check-config", &path]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.ends_with(": ok (agent host1, 4 MUX sources, 4 services)\n"),
        "{stdout}"
    );
}

#[test]
fn check_config_reports_every_error_with_its_position() {
    let dir = std::env::temp_dir().join(format!("hostagent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[agent]\nname = \"h\"\n[tunnel]\nmux_sources = [\"10.0.11.2\"]\n[[service]]\n\
         vip = \"192.0.2.10\"\nport = 0\nprotocol = \"tcp\"\ndip = \"127.0.0.1\"\n",
    )
    .unwrap();
    let out = hostagent().arg("check-config").arg(&file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let name = file.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{name}:7:8: service 192.0.2.10:0/tcp: port must be"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{name}:9:7: service 192.0.2.10:0/tcp: dip is a loopback"
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_of_a_missing_file_fails() {
    let out = hostagent()
        .args(["check-config", "/nonexistent/hostagent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}
