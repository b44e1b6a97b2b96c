//! What the agent changes on the host's network stack, and how it undoes it.
//!
//! The agent owns exactly these, all named by its `[interception]` settings:
//! - the TUN device (created by [`super::tun::Tun::open`]; it disappears when the agent's
//!   descriptor closes, crash included), brought up with `tun_mtu`, with IPv4
//!   `rp_filter = 0` (decapsulated packets arrive on it from client addresses routed
//!   elsewhere) and IPv4 `forwarding = 1` on the device (so decapsulated packets can be
//!   forwarded on to backends in containers or namespaces behind the host; IPv4 checks
//!   forwarding on the input device, so nothing else on the host starts forwarding);
//! - routing table `route_table`: one default route per family into the TUN device;
//! - policy rules at `rule_priority`: for each service, `from BACKEND_ADDRESS ipproto PROTO
//!   sport BACKEND_PORT lookup route_table` — the backend's replies, whether sent by a local
//!   process or forwarded from a namespace behind the host, are routed into the TUN device
//!   for the source rewrite; and per backend address `from BACKEND_ADDRESS ipproto icmp`
//!   (`ipv6-icmp`) for the ICMP errors it sends about those flows;
//! - one rule at `rule_priority - 1`: `fwmark MARK lookup main`, so the packets the agent
//!   sends itself (marked with `SO_MARK`) are never captured again.
//!
//! Replies to the host's own addresses (the agent's health checks, say) are not captured:
//! the kernel's `local` rule (priority 0) delivers them before any of these rules.
//!
//! Crash safety: [`HostSetup::clean_stale`] runs at every start and deletes every rule that
//! points to `route_table` or is the mark rule, and flushes the table, whatever a previous
//! agent left. [`HostSetup::remove`] runs at a clean exit.
//!
//! Changes go through `ip` (iproute2) rather than rtnetlink: the commands are the
//! documentation (an operator can type them, `ip rule show` shows them), they run only at
//! start, reload and exit, and the only netlink crates are async. Rejected: nftables marks
//! plus conntrack (per-flow state on the host, and the agent's rewrite must stay stateless).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use mux_daemon_kit::config::Protocol;

use crate::config::Interception;
use crate::dataplane::ServiceSpec;

/// Why changing the host failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A command could not run or failed.
    #[error("`{command}` failed: {message}; is iproute2 installed and the agent running as root?")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not start.
        message: String,
    },
}

/// One capture rule, as `ip [-6] rule` arguments after `add`/`del`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    v6: bool,
    selector: Vec<String>,
}

impl Rule {
    fn family_args(&self) -> Vec<String> {
        if self.v6 {
            vec!["-6".into()]
        } else {
            vec!["-4".into()]
        }
    }

    /// The rule as an `ip` command line after `ip`, for logs and docs.
    pub fn describe(&self) -> String {
        let mut a = self.family_args();
        a.push("rule".into());
        a.extend(self.selector.iter().cloned());
        a.join(" ")
    }
}

/// The rules capturing the replies of `services`, in a stable order.
pub fn capture_rules(services: &[ServiceSpec], s: &Interception) -> BTreeSet<Rule> {
    let table = s.route_table.to_string();
    let prio = s.rule_priority.to_string();
    let mut rules = BTreeSet::new();
    let mut add = |v6: bool, words: Vec<String>| {
        let mut selector = words;
        selector.extend(["lookup".into(), table.clone(), "pref".into(), prio.clone()]);
        rules.insert(Rule { v6, selector });
    };
    for svc in services {
        let b = svc.backend_address;
        let v6 = b.is_ipv6();
        let proto = match svc.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        add(
            v6,
            vec![
                "from".into(),
                host_prefix(b),
                "ipproto".into(),
                proto.into(),
                "sport".into(),
                svc.backend_port.to_string(),
            ],
        );
        let icmp = if v6 { "ipv6-icmp" } else { "icmp" };
        add(
            v6,
            vec!["from".into(), host_prefix(b), "ipproto".into(), icmp.into()],
        );
    }
    rules
}

fn host_prefix(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// The changes the agent has made, so they can be reconciled and removed.
#[derive(Debug)]
pub struct HostSetup {
    settings: Interception,
    installed: BTreeSet<Rule>,
    v6: bool,
}

impl HostSetup {
    /// Deletes whatever an earlier agent with these settings left (rules and routes).
    pub fn clean_stale(settings: &Interception) {
        let table = settings.route_table.to_string();
        let mark_prio = (settings.rule_priority - 1).to_string();
        let mark = format!("{:#x}", settings.mark);
        for fam in ["-4", "-6"] {
            // `ip rule del` removes the first matching rule; repeat until none is left.
            for _ in 0..10_000 {
                if ip(&[fam, "rule", "del", "lookup", &table]).is_err() {
                    break;
                }
            }
            for _ in 0..100 {
                if ip(&[
                    fam, "rule", "del", "fwmark", &mark, "lookup", "main", "pref", &mark_prio,
                ])
                .is_err()
                {
                    break;
                }
            }
            let _ = ip(&[fam, "route", "flush", "table", &table]);
        }
    }

    /// Configures the TUN device `tun` (already created), its routes and the mark rule, then
    /// the capture rules for `services`.
    pub fn install(
        settings: &Interception,
        services: &[ServiceSpec],
    ) -> Result<HostSetup, SetupError> {
        let tun = settings.tun_name.as_str();
        let table = settings.route_table.to_string();
        let mtu = settings.tun_mtu.to_string();
        ip(&["link", "set", "dev", tun, "mtu", &mtu, "up"])?;
        sysctl(&format!("net.ipv4.conf.{tun}.rp_filter"), "0")?;
        sysctl(&format!("net.ipv4.conf.{tun}.forwarding"), "1")?;
        ip(&[
            "-4", "route", "replace", "default", "dev", tun, "table", &table,
        ])?;
        // IPv6 may be disabled on the host or on the device: then only IPv4 is intercepted.
        let v6 = ip(&[
            "-6", "route", "replace", "default", "dev", tun, "table", &table,
        ])
        .is_ok();
        if !v6 {
            tracing::warn!(
                tun,
                "IPv6 unavailable on the TUN device; IPv6 services will not get replies rewritten"
            );
        }
        let mark = format!("{:#x}", settings.mark);
        let mark_prio = (settings.rule_priority - 1).to_string();
        let mut families = vec!["-4"];
        if v6 {
            families.push("-6");
        }
        for fam in families {
            ip(&[
                fam, "rule", "add", "fwmark", &mark, "lookup", "main", "pref", &mark_prio,
            ])?;
        }
        let mut setup = HostSetup {
            settings: settings.clone(),
            installed: BTreeSet::new(),
            v6,
        };
        setup.reconcile(services)?;
        Ok(setup)
    }

    /// Makes the capture rules those of `services`: adds the new ones first, then deletes the
    /// stale ones, so a reply of a service present before and after is never left uncaptured.
    pub fn reconcile(&mut self, services: &[ServiceSpec]) -> Result<(), SetupError> {
        let want = capture_rules(services, &self.settings);
        for rule in want.difference(&self.installed) {
            if rule.v6 && !self.v6 {
                continue;
            }
            let mut args = rule.family_args();
            args.extend(["rule".into(), "add".into()]);
            args.extend(rule.selector.iter().cloned());
            ip_owned(&args)?;
            tracing::info!(rule = %rule.describe(), "reply capture rule added");
        }
        let stale: Vec<Rule> = self.installed.difference(&want).cloned().collect();
        for rule in stale {
            let mut args = rule.family_args();
            args.extend(["rule".into(), "del".into()]);
            args.extend(rule.selector.iter().cloned());
            if let Err(e) = ip_owned(&args) {
                tracing::warn!(error = %e, "could not delete a stale capture rule");
            }
        }
        self.installed = want.into_iter().filter(|r| !r.v6 || self.v6).collect();
        Ok(())
    }

    /// The rules installed now.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.installed.iter()
    }

    /// Removes every rule and route the agent added (the TUN device goes when it closes).
    pub fn remove(self) {
        Self::clean_stale(&self.settings);
    }
}

fn ip(args: &[&str]) -> Result<(), SetupError> {
    run("ip", args.iter().map(|s| s.to_string()).collect())
}

fn ip_owned(args: &[String]) -> Result<(), SetupError> {
    run("ip", args.to_vec())
}

fn sysctl(key: &str, value: &str) -> Result<(), SetupError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| SetupError::Command {
        command: format!("sysctl -w {key}={value}"),
        message: e.to_string(),
    })
}

fn run(program: &str, args: Vec<String>) -> Result<(), SetupError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|e| SetupError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SetupError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Interception {
        Interception {
            tun_name: "muxha0".into(),
            route_table: 4242,
            rule_priority: 1000,
            mark: 0x6d75,
            tun_mtu: 1500,
        }
    }

    fn spec(backend: &str, port: u16, protocol: Protocol) -> ServiceSpec {
        let b: IpAddr = backend.parse().unwrap();
        ServiceSpec {
            vip: "192.0.2.10".parse().unwrap(),
            port: 80,
            protocol,
            dip: b,
            backend_address: b,
            backend_port: port,
        }
    }

    #[test]
    fn one_port_rule_per_service_and_one_icmp_rule_per_backend_address() {
        let rules = capture_rules(
            &[
                spec("10.21.1.2", 8080, Protocol::Tcp),
                spec("10.21.1.2", 53, Protocol::Udp),
                spec("fd00:21::2", 8080, Protocol::Tcp),
            ],
            &settings(),
        );
        let lines: Vec<String> = rules.iter().map(Rule::describe).collect();
        assert_eq!(
            lines,
            [
                "-4 rule from 10.21.1.2/32 ipproto icmp lookup 4242 pref 1000",
                "-4 rule from 10.21.1.2/32 ipproto tcp sport 8080 lookup 4242 pref 1000",
                "-4 rule from 10.21.1.2/32 ipproto udp sport 53 lookup 4242 pref 1000",
                "-6 rule from fd00:21::2/128 ipproto ipv6-icmp lookup 4242 pref 1000",
                "-6 rule from fd00:21::2/128 ipproto tcp sport 8080 lookup 4242 pref 1000",
            ]
        );
    }
}
