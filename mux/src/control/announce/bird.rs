//! BIRD 2 as the speaker: the VIP routes as a configuration fragment BIRD includes.
//!
//! The routes go into the include file as a `protocol static` per address family with one
//! blackhole route per VIP (BIRD exports them over eBGP with itself as next hop); then
//! `birdc configure` makes BIRD re-read it. Withdrawing is writing the file without routes.
//! The file is written atomically (temporary file, then rename), so BIRD never reads half of
//! it. Only the announcement guard ([`super::guard`]) calls this; what to announce, and when,
//! is decided there and in the daemon.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::config::{Bgp, Speaker};

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

/// Writes the include file and makes BIRD re-read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdSpeaker {
    /// The include file (`[bgp] bird_include`).
    pub include: PathBuf,
    /// BIRD's control socket (`[bgp] bird_socket`).
    pub socket: String,
}

impl BirdSpeaker {
    /// The speaker of a `[bgp]` section with `speaker = "bird"` (validation guarantees the
    /// include path); `None` for `speaker = "none"`.
    pub fn from_config(bgp: &Bgp) -> Option<BirdSpeaker> {
        if bgp.speaker() != Speaker::Bird {
            return None;
        }
        Some(BirdSpeaker {
            include: PathBuf::from(bgp.bird_include()?),
            socket: bgp.bird_socket().to_string(),
        })
    }

    /// The lock file that keeps two guards of this include file from interleaving.
    pub fn lock_path(&self) -> PathBuf {
        self.include.with_extension("lock")
    }

    /// Announces exactly `vips` (withdrawing the others): rewrites the file, then
    /// `birdc configure`.
    pub fn announce(&self, vips: &BTreeSet<IpAddr>) -> Result<(), AnnounceError> {
        let text = bird_routes(vips);
        let tmp = self.include.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.include))
            .map_err(|source| AnnounceError::Write {
                path: self.include.clone(),
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
        Ok(())
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
    fn speaker_none_has_no_bird_speaker() {
        let none =
            crate::config::parse("[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n", "t.toml")
                .unwrap();
        assert_eq!(BirdSpeaker::from_config(none.bgp()), None);
        let bird = crate::config::parse(
            "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[bgp]\nspeaker = \"bird\"\n\
             bird_include = \"/run/x/vips.conf\"\n",
            "t.toml",
        )
        .unwrap();
        let speaker = BirdSpeaker::from_config(bird.bgp()).unwrap();
        assert_eq!(speaker.include, PathBuf::from("/run/x/vips.conf"));
        assert_eq!(speaker.lock_path(), PathBuf::from("/run/x/vips.lock"));
        assert_eq!(speaker.socket, "/run/bird/bird.ctl");
    }
}
