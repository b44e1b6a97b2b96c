//! A throw-away network namespace holding a veth pair, for the tests that need real interfaces
//! (`port_afpacket`, `port_afxdp`).
//!
//! Each test builds its own namespace, `muxt-<kind>-<pid>-<test>`, and does all its socket work
//! on a thread that entered it ([`Netns::run`]); the namespace is deleted when the guard drops,
//! also when the test panics. Without root or without the `ip` tool the tests print why they
//! skip and pass, or fail under `CI=true` ([`lab_available`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mux_ports::afpacket::enter_netns;

/// How long a fresh veth pair may take to report carrier.
const CARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this process can build namespace labs (root, and the `ip` tool installed). When it
/// cannot, the test is skipped with the reason, or fails under `CI=true`
/// ([`mux_test_prereq::skip_or_fail`]).
pub fn lab_available(test: &str) -> bool {
    mux_test_prereq::require_netns_lab(test)
}

/// Runs `ip args`; its stderr on failure.
fn run_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A network namespace with one veth pair, both ends up; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `muxt-<kind>-<pid>-<test>` holding the veth pair `ends[0]` ↔ `ends[1]` (with
    /// the given MAC addresses, if any), with IPv6 off so that no router solicitation or DAD
    /// frame shows up in captures, and waits until both ends have carrier.
    pub fn create(
        kind: &str,
        test: &str,
        ends: [&str; 2],
        macs: Option<[&str; 2]>,
    ) -> Result<Netns, String> {
        let name = format!("muxt-{kind}-{}-{test}", std::process::id());
        let _ = run_ip(&["netns", "del", &name]);
        run_ip(&["netns", "add", &name])?;
        // From here on the guard deletes the namespace, whatever fails next.
        let ns = Netns { name };
        let n = ns.name.as_str();
        // Fails only on a kernel without IPv6, where there is no IPv6 chatter to silence.
        for key in ["all", "default"] {
            let _ = run_ip(&[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]);
        }
        let [a, b] = ends;
        run_ip(&["-n", n, "link", "add", a, "type", "veth", "peer", "name", b])?;
        if let Some(macs) = macs {
            for (end, mac) in ends.into_iter().zip(macs) {
                run_ip(&["-n", n, "link", "set", end, "address", mac])?;
            }
        }
        for end in ends {
            run_ip(&["-n", n, "link", "set", end, "up"])?;
        }
        ns.wait_for_carrier(&ends)?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file that [`enter_netns`] opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// A fresh veth end can show NO-CARRIER for a moment: waits until all `links` are up.
    fn wait_for_carrier(&self, links: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + CARRIER_TIMEOUT;
        loop {
            let up = links.iter().all(|link| {
                Command::new("ip")
                    .args(["-n", &self.name, "-o", "link", "show", link])
                    .output()
                    .map(|o| {
                        let s = String::from_utf8_lossy(&o.stdout);
                        s.contains("LOWER_UP") && !s.contains("NO-CARRIER")
                    })
                    .unwrap_or(false)
            });
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{links:?} never got carrier"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` on a new thread inside the namespace (all socket work happens there) and
    /// returns its result; a panic in `f` is re-raised on the calling thread.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            enter_netns(&path).expect("setns into the test namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}
