//! Semantic validation: every rule a well-typed host-agent configuration must also satisfy.
//!
//! [`HostAgentConfig::validate`] records every violation at the span of the value at fault and
//! returns them sorted in file order; it never stops at the first. Every message reads
//! `CONTEXT: what is wrong (got VALUE); how to fix it`, where CONTEXT is `[section]` or
//! `service VIP:PORT/PROTO` (a refused VIP or port shown as written). The rules are listed in
//! the `config` module documentation.
//!
//! The configuration may hold placeholders for values refused while deserializing
//! (`mux_daemon_kit::config::collect`): the [`Collector`] drops errors located at one, and the
//! rules that relate two values (families, duplicates, the VIP against the DIP, what the check
//! kind allows) skip pairs with a placeholder in them.

use std::collections::HashMap;
use std::net::IpAddr;

use mux_daemon_kit::config::{ConfigErrors, Protocol};
use serde_spanned::Spanned;

use super::schema::{HealthKindName, HostAgentConfig, MAX_TIMEOUT_SECS, Service, TimeoutSettings};
use mux_daemon_kit::config::Collector;

impl HostAgentConfig {
    /// Checks every semantic rule and returns all violations in file order. `origin` is the
    /// file name shown in messages and `text` the exact text this configuration was parsed
    /// from (spans are byte offsets into it).
    pub fn validate(&self, origin: &str, text: &str) -> Result<(), ConfigErrors> {
        let mut c = Collector::new(origin, text);
        self.check(&mut c);
        c.finish()
    }

    /// Records every violation of a semantic rule in `c`, which knows the placeholders of
    /// refused values (`parse` passes the collector deserialization used).
    pub fn check(&self, c: &mut Collector<'_>) {
        c.check_name("[agent]", &self.agent.get_ref().name);
        self.check_tunnel(c);
        self.check_services(c);
        self.check_health(c);
        self.check_interception(c);
        self.check_connections(c);
        check_timeouts(c, "[timeouts]", &self.timeouts);
        if let Some(listen) = &self.admin.listen
            && listen.get_ref().0.port() == 0
        {
            c.at(
                listen.span(),
                "[admin]: listen has port 0 (got a random port); give a fixed port such as \
                 \"127.0.0.1:9200\" so the MUXes can poll it"
                    .to_string(),
            );
        }
    }

    fn check_tunnel(&self, c: &mut Collector<'_>) {
        let sources = &self.tunnel.get_ref().mux_sources;
        if sources.get_ref().is_empty() {
            c.at(
                sources.span(),
                "[tunnel]: mux_sources is empty, so every tunnelled packet would be dropped; \
                 list the tunnel source address of each MUX, e.g. [\"10.0.11.2\", \"10.0.12.2\"]"
                    .to_string(),
            );
        }
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for source in sources.get_ref() {
            let addr = source.get_ref().0;
            c.check_unicast(
                source,
                &format!("[tunnel]: mux source {addr}"),
                "use the [tunnel] source_v4/source_v6 address a MUX encapsulates from",
            );
            if c.is_poisoned(&source.span()) {
                continue;
            }
            if let Some(first) = seen.get(&addr) {
                let line = c.line_of(*first);
                c.at(
                    source.span(),
                    format!("[tunnel]: mux source {addr} is listed twice (first on line {line}); remove one"),
                );
            } else {
                seen.insert(addr, source.span().start);
            }
        }
        let tunnel = self.tunnel.get_ref();
        for (key, value, v4) in [
            ("source_v4", &tunnel.source_v4, true),
            ("source_v6", &tunnel.source_v6, false),
        ] {
            let Some(value) = value else { continue };
            let addr = value.get_ref().0;
            let fix = "use this host's address that the other agents list in [[tunnel.peer]]";
            c.check_unicast(value, &format!("[tunnel]: {key} {addr}"), fix);
            if addr.is_ipv4() != v4 {
                c.at(
                    value.span(),
                    format!(
                        "[tunnel]: {key} must be an {} address (got {addr}); it is the source \
                         of forwarded packets to {} alternatives, so {}",
                        if v4 { "IPv4" } else { "IPv6" },
                        if v4 { "IPv4" } else { "IPv6" },
                        if v4 {
                            "move it to source_v6 or give this host's IPv4 address"
                        } else {
                            "move it to source_v4 or give this host's IPv6 address"
                        }
                    ),
                );
            }
        }
        let mut peers: HashMap<IpAddr, usize> = HashMap::new();
        for peer in &tunnel.peer {
            let address = &peer.address;
            let addr = address.get_ref().0;
            c.check_unicast(
                address,
                &format!("[[tunnel.peer]]: address {addr}"),
                "use the [tunnel] source_v4/source_v6 address of the other host agent",
            );
            if c.is_poisoned(&address.span()) {
                continue;
            }
            if let Some(first) = peers.get(&addr) {
                let line = c.line_of(*first);
                c.at(
                    address.span(),
                    format!(
                        "[[tunnel.peer]]: address {addr} is listed twice (first on line \
                         {line}); remove one"
                    ),
                );
            } else {
                peers.insert(addr, address.span().start);
            }
        }
    }

    fn check_connections(&self, c: &mut Collector<'_>) {
        let ctx = "[connections]";
        let s = &self.connections;
        if let Some(capacity) = &s.capacity {
            c.check_range(
                ctx,
                "capacity",
                capacity,
                1024,
                16_777_216,
                "allow about four times the connections the host's backends carry at once \
                 (each takes 48 bytes)",
            );
        }
        if let Some(path) = &s.state_file {
            let p = path.get_ref();
            if p.trim().is_empty() || p.contains('\0') || p.ends_with('/') {
                c.at(
                    path.span(),
                    format!(
                        "{ctx}: state_file {p:?} is not a file path; give a file the agent may \
                         write, such as \"/var/lib/hostagent/host1.connections\""
                    ),
                );
            }
        }
    }

    fn check_services(&self, c: &mut Collector<'_>) {
        // (dip, vip, port, protocol) → offset of the first service with it.
        let mut by_tunnel: HashMap<(IpAddr, IpAddr, u16, Protocol), usize> = HashMap::new();
        // (backend address, backend port, protocol) → offset of the first service with it.
        let mut by_backend: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        for s in &self.service {
            let ctx = service_ctx(c, s);
            // Rules relating the addresses skip refused ones (placeholders).
            let addresses_known = !c.is_poisoned(&s.vip.span())
                && !c.is_poisoned(&s.dip.span())
                && s.backend_address
                    .as_ref()
                    .is_none_or(|b| !c.is_poisoned(&b.span()));
            let ports_ok = check_port(c, &ctx, "port", &s.port)
                & s.backend_port
                    .as_ref()
                    .is_none_or(|p| check_port(c, &ctx, "backend_port", p));
            c.check_unicast(
                &s.vip,
                &format!("{ctx}: vip"),
                "use the VIP the MUXes announce",
            );
            c.check_unicast(
                &s.dip,
                &format!("{ctx}: dip"),
                "use the address of this host (or of its backend) that the MUX tunnels to",
            );
            if let Some(b) = &s.backend_address {
                c.check_unicast(
                    b,
                    &format!("{ctx}: backend_address"),
                    "use the address the backend listens on",
                );
            }
            if let Some(t) = &s.timeouts {
                check_timeouts(c, &format!("{ctx} timeouts"), t);
            }
            if !addresses_known {
                continue;
            }
            let (vip, dip, backend) = (s.vip(), s.dip(), s.backend_address());
            match &s.backend_address {
                None if dip.is_ipv4() != vip.is_ipv4() => c.at(
                    s.dip.span(),
                    format!(
                        "{ctx}: dip {dip} and vip {vip} are of different families, so the \
                         packet cannot be delivered to the dip; add backend_address = \"<the \
                         backend's {} address>\" (the MUX still tunnels to {dip})",
                        family(vip)
                    ),
                ),
                Some(b) if backend.is_ipv4() != vip.is_ipv4() => c.at(
                    b.span(),
                    format!(
                        "{ctx}: backend_address {backend} is not {} like the vip; the backend \
                         receives the client's packet with its {} header, so give its {} \
                         address",
                        family(vip),
                        family(vip),
                        family(vip)
                    ),
                ),
                _ => {}
            }
            if vip == dip || vip == backend {
                c.at(
                    s.vip.span(),
                    format!(
                        "{ctx}: the vip {vip} is also the service's dip or backend_address; the \
                         VIP is announced by the MUXes, the DIP is this host's own address: use \
                         two different addresses"
                    ),
                );
            }
            if !ports_ok || c.is_poisoned(&s.protocol.span()) {
                continue;
            }
            let tunnel_key = (dip, vip, s.port(), s.protocol());
            if let Some(first) = by_tunnel.get(&tunnel_key) {
                let line = c.line_of(*first);
                c.at(
                    s.vip.span(),
                    format!(
                        "{ctx}: the same vip, port, protocol and dip {dip} as the service on \
                         line {line}; remove the duplicate (one backend per VIP port and DIP)"
                    ),
                );
            } else {
                by_tunnel.insert(tunnel_key, s.vip.span().start);
            }
            let backend_key = (backend, s.backend_port(), s.protocol());
            if let Some(first) = by_backend.get(&backend_key) {
                let line = c.line_of(*first);
                let at = s
                    .backend_port
                    .as_ref()
                    .map_or_else(|| s.port.span(), Spanned::span);
                c.at(
                    at,
                    format!(
                        "{ctx}: replies from {} would be indistinguishable from those of the \
                         service on line {line} (same backend address, port and protocol), so \
                         their source could not be rewritten; give each service its own \
                         backend_port or backend_address",
                        sock(backend, s.backend_port())
                    ),
                );
            } else {
                by_backend.insert(backend_key, s.vip.span().start);
            }
        }
    }

    fn check_interception(&self, c: &mut Collector<'_>) {
        let i = &self.interception;
        let ctx = "[interception]";
        if let Some(name) = &i.tun_name {
            let n = name.get_ref();
            let ok = (1..=15).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                c.at(
                    name.span(),
                    format!(
                        "{ctx}: tun_name must be 1-15 of letters, digits, '-', '_', '.' \
                         (got {n:?}); use a name such as \"muxha0\""
                    ),
                );
            }
        }
        if let Some(t) = &i.route_table
            && c.check_range(
                ctx,
                "route_table",
                t,
                1,
                i64::from(u32::MAX),
                "pick an unused table number such as 4242",
            )
            && (253..=255).contains(t.get_ref())
        {
            c.at(
                t.span(),
                format!(
                    "{ctx}: route_table {} is one of the kernel's own (default, main, local); \
                     pick an unused number such as 4242",
                    t.get_ref()
                ),
            );
        }
        if let Some(p) = &i.rule_priority {
            c.check_range(
                ctx,
                "rule_priority",
                p,
                2,
                32_765,
                "it must come before the main table's rule (32766)",
            );
        }
        if let Some(m) = &i.mark {
            c.check_range(
                ctx,
                "mark",
                m,
                1,
                i64::from(u32::MAX),
                "pick a mark no other program on the host uses",
            );
        }
        if let Some(m) = &i.tun_mtu {
            c.check_range(ctx, "tun_mtu", m, 576, 65_535, "1500 suits most hosts");
        }
    }

    fn check_health(&self, c: &mut Collector<'_>) {
        let h = self.health.get_ref();
        let ctx = "[health]";
        let interval = h.interval_ms.as_ref().map(|v| {
            let ok = c.check_range(
                ctx,
                "interval_ms",
                v,
                100,
                60_000,
                "1000 suits most backends",
            );
            (ok, *v.get_ref())
        });
        if let Some(v) = &h.timeout_ms
            && c.check_range(
                ctx,
                "timeout_ms",
                v,
                10,
                60_000,
                "keep it below interval_ms",
            )
        {
            let limit = match interval {
                Some((true, i)) => i,
                Some((false, _)) => i64::MAX,
                None => i64::try_from(super::DEFAULT_HEALTH_INTERVAL_MS).unwrap_or(i64::MAX),
            };
            if *v.get_ref() > limit {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: timeout_ms {} is longer than interval_ms {limit}, so probes \
                         would overlap; lower timeout_ms or raise interval_ms",
                        v.get_ref()
                    ),
                );
            }
        }
        for (key, v) in [("rise", &h.rise), ("fall", &h.fall)] {
            if let Some(v) = v {
                c.check_range(
                    ctx,
                    key,
                    v,
                    1,
                    100,
                    "count consecutive probe results; 2 or 3 avoids flapping",
                );
            }
        }
        if let Some(v) = &h.http_status {
            c.check_range(
                ctx,
                "http_status",
                v,
                100,
                599,
                "write an HTTP status such as 200",
            );
        }
        if let Some(p) = &h.http_path {
            let path = p.get_ref();
            if !path.starts_with('/')
                || path.chars().any(|ch| ch.is_whitespace() || ch.is_control())
            {
                c.at(
                    p.span(),
                    format!(
                        "{ctx}: http_path {path:?} is not a request path; write an absolute \
                         path without spaces, such as \"/healthz\""
                    ),
                );
            }
        }
        let is_http = h
            .kind
            .as_ref()
            .is_some_and(|k| matches!(k.get_ref(), HealthKindName::Http | HealthKindName::Https));
        // A refused kind may have been meant as "http".
        let kind_known = h.kind.as_ref().is_none_or(|k| !c.is_poisoned(&k.span()));
        if !is_http && kind_known {
            for (key, span) in [
                ("http_path", h.http_path.as_ref().map(Spanned::span)),
                ("http_status", h.http_status.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    c.at(
                        span,
                        format!(
                            "{ctx}: {key} is only used by HTTP checks but kind is \"tcp\"; set \
                             kind = \"http\" (or \"https\") or remove {key}"
                        ),
                    );
                }
            }
        }
    }
}

fn check_timeouts(c: &mut Collector<'_>, ctx: &str, t: &TimeoutSettings) {
    for (key, field) in t.fields() {
        if let Some(v) = field {
            c.check_range(
                ctx,
                key,
                v,
                1,
                i64::from(MAX_TIMEOUT_SECS),
                "give the idle timeout in whole seconds, at most a week; keep it longer than \
                 the MUX's so the agent still knows a connection the MUX forgot",
            );
        }
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn sock(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `service VIP:PORT/PROTO`, refused parts shown as written.
fn service_ctx(c: &Collector<'_>, s: &Service) -> String {
    let written = |span: std::ops::Range<usize>| match c.source(&span) {
        "" => "?".to_owned(),
        text => text.trim_matches('"').to_owned(),
    };
    let port = match c.is_poisoned(&s.port.span()) {
        true => written(s.port.span()),
        false => u16::try_from(*s.port.get_ref()).unwrap_or(0).to_string(),
    };
    let vip = match (c.is_poisoned(&s.vip.span()), s.vip()) {
        (true, _) => written(s.vip.span()),
        (false, IpAddr::V6(a)) => format!("[{a}]"),
        (false, IpAddr::V4(a)) => a.to_string(),
    };
    let protocol = match c.is_poisoned(&s.protocol.span()) {
        true => written(s.protocol.span()),
        false => s.protocol().to_string(),
    };
    format!("service {vip}:{port}/{protocol}")
}

fn check_port(c: &mut Collector<'_>, ctx: &str, key: &str, v: &Spanned<i64>) -> bool {
    c.check_range(
        ctx,
        key,
        v,
        1,
        65_535,
        "write a port number from 1 to 65535",
    )
}
