//! VIP announcement through an existing BGP daemon (BIRD 2).
//!
//! The MUX never speaks BGP itself. It writes the VIP routes it is ready to serve into a file
//! BIRD includes, as a `protocol static` per address family with one blackhole route per VIP
//! (BIRD exports them over eBGP with itself as next hop), then asks BIRD to re-read its
//! configuration (`birdc configure`). Withdrawing is writing the file without routes.
//!
//! The file is written atomically (temporary file, then rename), so BIRD never reads half of
//! it. A VIP address is announced only while the MUX forwards and at least one VIP on that
//! address has a backend that takes new flows; the daemon decides that, this module only
//! carries it out.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use mux_shared::config::{Bgp, Speaker};

/// Why an announcement failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The include file could not be written.
    #[error("cannot write {path}: {source}; check the directory exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// `birdc` could not be run or BIRD refused the configuration.
    #[error(
        "birdc -s {socket} configure failed: {message}; is BIRD running, and does bird.conf include the file?"
    )]
    Birdc {
        /// BIRD's control socket.
        socket: String,
        /// What birdc said.
        message: String,
    },
}

/// Carries announcements out through the configured speaker.
#[derive(Debug)]
pub struct Announcer {
    speaker: Speaker,
    include: Option<PathBuf>,
    socket: String,
    current: Option<BTreeSet<IpAddr>>,
}

impl Announcer {
    /// An announcer for the `[bgp]` section.
    pub fn new(bgp: &Bgp) -> Self {
        Announcer {
            speaker: bgp.speaker(),
            include: bgp.bird_include().map(PathBuf::from),
            socket: bgp.bird_socket().to_string(),
            current: None,
        }
    }

    /// What is announced now (`None` before the first call).
    pub fn current(&self) -> Option<&BTreeSet<IpAddr>> {
        self.current.as_ref()
    }

    /// Announces exactly `vips` (withdrawing the others). Does nothing when unchanged.
    /// Returns whether anything changed.
    pub fn set(&mut self, vips: &BTreeSet<IpAddr>) -> Result<bool, AnnounceError> {
        if self.current.as_ref() == Some(vips) {
            return Ok(false);
        }
        if self.speaker == Speaker::Bird
            && let Some(path) = &self.include
        {
            let text = bird_routes(vips);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|source| AnnounceError::Write {
                    path: path.clone(),
                    source,
                })?;
            let out = Command::new("birdc")
                .args(["-s", &self.socket, "configure"])
                .output()
                .map_err(|e| AnnounceError::Birdc {
                    socket: self.socket.clone(),
                    message: e.to_string(),
                })?;
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            if !out.status.success() || !said.contains("econfigur") {
                return Err(AnnounceError::Birdc {
                    socket: self.socket.clone(),
                    message: format!(
                        "{} {}",
                        said.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        }
        self.current = Some(vips.clone());
        Ok(true)
    }
}

/// The BIRD configuration fragment announcing `vips`.
pub fn bird_routes(vips: &BTreeSet<IpAddr>) -> String {
    let mut s =
        String::from("# Written by mux: the VIPs this MUX is ready to serve. Do not edit.\n");
    for (family, v4) in [("ipv4", true), ("ipv6", false)] {
        let _ = writeln!(s, "protocol static mux_vips_{family} {{\n    {family};");
        for vip in vips.iter().filter(|a| a.is_ipv4() == v4) {
            let len = if v4 { 32 } else { 128 };
            let _ = writeln!(s, "    route {vip}/{len} blackhole;");
        }
        s.push_str("}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_fragment_lists_each_family() {
        let vips: BTreeSet<IpAddr> = ["192.0.2.10", "2001:db8::10"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let text = bird_routes(&vips);
        assert!(text.contains(
            "protocol static mux_vips_ipv4 {\n    ipv4;\n    route 192.0.2.10/32 blackhole;\n}"
        ));
        assert!(text.contains(
            "protocol static mux_vips_ipv6 {\n    ipv6;\n    route 2001:db8::10/128 blackhole;\n}"
        ));
        let empty = bird_routes(&BTreeSet::new());
        assert!(!empty.contains("route"));
    }

    #[test]
    fn speaker_none_only_records() {
        let bgp =
            mux_shared::config::parse("[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n", "t.toml")
                .unwrap();
        let mut a = Announcer::new(bgp.bgp());
        let vips: BTreeSet<IpAddr> = ["192.0.2.10".parse().unwrap()].into();
        assert!(a.set(&vips).unwrap());
        assert!(!a.set(&vips).unwrap());
        assert_eq!(a.current(), Some(&vips));
    }
}
