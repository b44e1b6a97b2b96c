//! Semantic validation: every rule a well-typed configuration must also satisfy.
//!
//! [`MuxConfig::validate`] walks the whole configuration and records every violation at the
//! span of the value at fault (or of the section header, or of the first value that makes a
//! missing one necessary), then returns them sorted in file order. It never stops at the first
//! error: an operator fixing a file should need one run, not one run per mistake.
//!
//! Every message reads `CONTEXT: what is wrong (got VALUE); how to fix it`, where CONTEXT is
//! `[section]`, `vip "NAME"` or `vip "NAME" backend ADDRESS` (a refused name or address is
//! shown as written).
//!
//! The configuration may hold placeholders for values that were refused while deserializing
//! (`collect`): an error at a placeholder is dropped by the [`Collector`], and every rule that
//! relates two values (duplicates, families, what `io` requires) skips a pair with a
//! placeholder in it, so one mistake is reported once.
//!
//! The rules themselves are listed in the `config` module documentation.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_spanned::Spanned;

use super::schema::{
    Backend, BackendState, IoKind, LIVENESS_TIMEOUT_RANGE_MS, LOAD_AWARE_RANGES, LoadAwareSettings,
    MAX_BACKENDS_PER_VIP, MAX_DRAIN_SECONDS, MAX_FAILED_BACKEND_GRACE, MAX_IDLE_POLL_US,
    MAX_IDLE_SLEEP_MAX_US, MAX_POLL_INTERVAL_MS, MAX_REPLY_RATE, MAX_SECOND_CHANCE_WINDOW,
    MAX_STALE_AFTER_MS, MAX_TABLE_SIZE, MAX_TIMEOUT_SECS, MAX_WEIGHT, MIN_IDLE_SLEEP_MAX_US,
    MuxConfig, Speaker, TimeoutSettings, Vip, offset_datetime_unix_ms,
};
use mux_daemon_kit::config::values::{MacValue, SocketValue};
use mux_daemon_kit::config::{Collector, ConfigErrors};

impl MuxConfig {
    /// Checks every semantic rule (listed in the [module documentation](crate::config)) and
    /// returns all violations, in file order. `origin` is the file name shown in messages and
    /// `text` the exact text this configuration was parsed from (spans are byte offsets into
    /// it).
    pub fn validate(&self, origin: &str, text: &str) -> Result<(), ConfigErrors> {
        let mut c = Collector::new(origin, text);
        self.check(&mut c);
        c.finish()
    }

    /// Records every violation of a semantic rule in `c`, which knows the placeholders of
    /// refused values (`parse` passes the collector deserialization used).
    pub fn check(&self, c: &mut Collector<'_>) {
        c.check_name("[mux]", &self.mux.get_ref().name);
        self.check_dataplane(c);
        self.check_tunnel(c);
        self.check_next_hop(c);
        check_timeouts(c, "[timeouts]", &self.timeouts);
        self.check_lifecycle_and_bgp(c);
        self.check_health(c);
        self.check_dpdk(c);
        self.check_flow_log(c);
        self.check_vips(c);
    }

    /// Whether `[dataplane] io` is known: absent (the default) or a value that was accepted.
    fn io_known(&self, c: &Collector<'_>) -> bool {
        let dp = self.dataplane.get_ref();
        dp.io.as_ref().is_none_or(|v| !c.is_poisoned(&v.span()))
    }

    fn check_dataplane(&self, c: &mut Collector<'_>) {
        let dp = self.dataplane.get_ref();
        let ctx = "[dataplane]";
        if let Some(v) = &dp.workers {
            c.check_range(ctx, "workers", v, 1, 128, "run one worker per RX queue");
        }
        if let Some(v) = &dp.flow_table_capacity {
            let fix = "size it for the concurrent flows of one worker (default 1048576)";
            c.check_range(ctx, "flow_table_capacity", v, 1024, 1 << 28, fix);
        }
        if let Some(v) = &dp.burst_size {
            c.check_range(ctx, "burst_size", v, 1, 256, "32 suits most NICs");
        }
        if let Some(v) = &dp.mtu {
            let fix = "set the MTU of the link toward the hosts";
            c.check_range(ctx, "mtu", v, 1280, 9216, fix);
        }
        if let Some(v) = &dp.idle_poll_us {
            let fix = "give how long an idle worker keeps polling after its last packet \
                       (default 100; 0 sleeps at the first empty poll)";
            c.check_range(ctx, "idle_poll_us", v, 0, i64::from(MAX_IDLE_POLL_US), fix);
        }
        if let Some(v) = &dp.idle_sleep_max_us {
            let fix = "give the longest one sleep of an idle worker (default 1000); a sleeping \
                       worker must still loop every few ms for the liveness check";
            let (lo, hi) = (MIN_IDLE_SLEEP_MAX_US, MAX_IDLE_SLEEP_MAX_US);
            c.check_range(
                ctx,
                "idle_sleep_max_us",
                v,
                i64::from(lo),
                i64::from(hi),
                fix,
            );
        }
        let max = i64::from(MAX_REPLY_RATE);
        for (key, value, lo, fix) in [
            (
                "icmp_rate",
                &dp.icmp_rate,
                0,
                "give the ICMP errors one worker may send per second (default 1000; 0 sends none)",
            ),
            (
                "icmp_burst",
                &dp.icmp_burst,
                1,
                "give how many ICMP errors may leave at once after a quiet spell (default 50)",
            ),
            (
                "drain_reset_rate",
                &dp.drain_reset_rate,
                0,
                "give the TCP resets one worker may send per second past a drain deadline \
                 (default 10000; 0 sends none)",
            ),
            (
                "drain_reset_burst",
                &dp.drain_reset_burst,
                1,
                "give how many resets may leave at once (default 1000)",
            ),
        ] {
            if let Some(v) = value {
                c.check_range(ctx, key, v, lo, max, fix);
            }
        }
        if let Some(v) = &dp.second_chance_window_seconds {
            let fix = "give how long a replaced Maglev table may still name a flow's alternative \
                       backend (default 120; 0 turns second chance off)";
            let max = i64::from(MAX_SECOND_CHANCE_WINDOW);
            c.check_range(ctx, "second_chance_window_seconds", v, 0, max, fix);
        }
        if let Some(v) = &dp.second_chance_state
            && v.get_ref().trim().is_empty()
        {
            c.at(
                v.span(),
                format!(
                    "{ctx}: second_chance_state is empty; give a file the MUX may write (e.g. \
                     \"/var/lib/mux/second-chance.json\"), or remove the key"
                ),
            );
        }
        let workers_known = dp
            .workers
            .as_ref()
            .is_none_or(|w| !c.is_poisoned(&w.span()));
        if let Some(cpus) = &dp.cpus
            && workers_known
        {
            let workers = dp.workers();
            let list = cpus.get_ref();
            if list.len() < workers || list.iter().any(|c| !(0..1024).contains(c)) {
                c.at(
                    cpus.span(),
                    format!(
                        "{ctx}: cpus must list one CPU number (0..1023) per worker, {workers} in \
                         all (got {list:?}); e.g. cpus = [2, 3] for workers = 2, or remove it to \
                         leave placement to the kernel"
                    ),
                );
            }
        }
        match &dp.interface {
            // What a refused io requires is unknown.
            None if !self.io_known(c) => {}
            Some(name) if !is_interface_name(name.get_ref()) => c.at(
                name.span(),
                format!(
                    "{ctx}: interface {:?} is not a valid interface name; use the kernel's name \
                     of the NIC, 1 to 15 characters without '/', ':' or spaces",
                    name.get_ref()
                ),
            ),
            Some(_) => {}
            None if dp.io() == IoKind::Dpdk && self.dpdk.get_ref().exception_device.is_none() => c
                .at(
                    self.dataplane.span(),
                    format!(
                        "{ctx}: interface is required with io = \"dpdk\": it names the TAP \
                         interface the MUX creates for the kernel's traffic (ARP, BGP, SSH); add \
                         interface = \"mux0\" under [dataplane], or set [dpdk] exception_device"
                    ),
                ),
            None if dp.io() == IoKind::Dpdk => {}
            None if dp.io() != IoKind::Mem => c.at(
                self.dataplane.span(),
                format!(
                    "{ctx}: interface is required with io = \"{}\"; add interface = \"eth0\" \
                     (the NIC facing the router) under [dataplane], or use io = \"mem\" for an \
                     offline run",
                    dp.io()
                ),
            ),
            None => {}
        }
    }

    fn check_lifecycle_and_bgp(&self, c: &mut Collector<'_>) {
        if let Some(v) = &self.lifecycle.drain_seconds {
            let fix = "give the seconds to keep forwarding after withdrawing routes (default 5)";
            c.check_range(
                "[lifecycle]",
                "drain_seconds",
                v,
                0,
                i64::from(MAX_DRAIN_SECONDS),
                fix,
            );
        }
        let bgp = &self.bgp;
        if let Some(v) = &bgp.liveness_timeout_ms {
            let (lo, hi) = LIVENESS_TIMEOUT_RANGE_MS;
            let fix = "give the milliseconds without data-path progress after which the VIP \
                       routes are withdrawn (default 300; a few hundred ms rides out scheduling \
                       hiccups, more than a second lets a dead MUX black-hole its flows longer)";
            c.check_range(
                "[bgp]",
                "liveness_timeout_ms",
                v,
                i64::from(lo),
                i64::from(hi),
                fix,
            );
        }
        for (key, value) in [
            ("bird_socket", &bgp.bird_socket),
            ("bird_include", &bgp.bird_include),
        ] {
            if let Some(path) = value
                && !path.get_ref().starts_with('/')
            {
                c.at(
                    path.span(),
                    format!(
                        "[bgp]: {key} must be an absolute path (got {:?}); write the full path, \
                         e.g. \"/etc/bird/mux-vips.conf\"",
                        path.get_ref()
                    ),
                );
            }
        }
        if let Some(speaker) = &bgp.speaker
            && *speaker.get_ref() == Speaker::Bird
            && bgp.bird_include.is_none()
        {
            c.at(
                speaker.span(),
                "[bgp]: speaker = \"bird\" needs bird_include, the file the MUX writes its VIP \
                 routes to; add bird_include = \"/etc/bird/mux-vips.conf\" and `include` it in \
                 bird.conf"
                    .to_string(),
            );
        }
    }

    fn check_health(&self, c: &mut Collector<'_>) {
        let h = &self.health;
        let ctx = "[health]";
        let max = i64::from(MAX_POLL_INTERVAL_MS);
        let mut interval_ok = true;
        if let Some(v) = &h.poll_interval_ms {
            let fix = "give the milliseconds between two polls of each agent (default 1000)";
            interval_ok = c.check_range(ctx, "poll_interval_ms", v, 100, max, fix);
        }
        // At most 60000 after the range check (the default otherwise), so it fits an i64.
        let interval = i64::try_from(h.poll_interval().as_millis()).unwrap_or(i64::MAX);
        if let Some(v) = &h.timeout_ms {
            let fix = "give the milliseconds one poll may take (default 500)";
            if c.check_range(ctx, "timeout_ms", v, 10, max, fix)
                && interval_ok
                && *v.get_ref() > interval
            {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: timeout_ms ({}) is longer than poll_interval_ms ({interval}), so \
                         a slow agent would still be answering when its next poll is due; \
                         lower timeout_ms or raise poll_interval_ms",
                        v.get_ref()
                    ),
                );
            }
        }
        if let Some(v) = &h.stale_after_ms {
            let fix = "give the milliseconds an agent may stay unanswered before its backends \
                       count as failed (default three poll intervals)";
            if c.check_range(
                ctx,
                "stale_after_ms",
                v,
                100,
                i64::from(MAX_STALE_AFTER_MS),
                fix,
            ) && interval_ok
                && *v.get_ref() < interval
            {
                c.at(
                    v.span(),
                    format!(
                        "{ctx}: stale_after_ms ({}) is shorter than poll_interval_ms \
                         ({interval}), so every host would count as down between two polls; \
                         use at least {interval}, better three intervals ({})",
                        v.get_ref(),
                        interval * 3
                    ),
                );
            }
        }
        let mut seen: HashMap<std::net::SocketAddr, usize> = HashMap::new();
        for agent in &h.agent {
            check_agent_address(c, &agent.address);
            if c.is_poisoned(&agent.address.span()) {
                continue;
            }
            let addr = agent.address();
            if let Some(first) = seen.get(&addr) {
                c.at(
                    agent.address.span(),
                    format!(
                        "[[health.agent]]: {addr} is listed twice (first at line {first}); \
                         remove one: each agent is polled once"
                    ),
                );
            } else {
                seen.insert(addr, c.line_of(agent.address.span().start));
            }
        }
    }

    fn check_tunnel(&self, c: &mut Collector<'_>) {
        let t = &self.tunnel;
        for (key, field, want_v4) in [
            ("source_v4", &t.source_v4, true),
            ("source_v6", &t.source_v6, false),
        ] {
            let Some(source) = field else { continue };
            let addr = source.get_ref().0;
            if addr.is_ipv4() != want_v4 {
                let (family, other, other_key) = if want_v4 {
                    ("IPv4", "an IPv6", "source_v6")
                } else {
                    ("IPv6", "an IPv4", "source_v4")
                };
                c.at(
                    source.span(),
                    format!(
                        "[tunnel]: {key} is {addr}, {other} address; set {key} to this MUX's \
                         {family} address and put {addr} in {other_key}"
                    ),
                );
            } else {
                c.check_unicast(
                    source,
                    &format!("[tunnel]: {key} {addr}"),
                    "use a unicast address of this MUX that the host agents accept",
                );
            }
        }
        // A missing source is reported once per family, at the first backend that needs it.
        let backends = || {
            self.vip
                .iter()
                .flat_map(|v| v.backend.iter().map(move |b| (v, b)))
        };
        for (key, family, set, is_family) in [
            (
                "source_v4",
                "IPv4",
                t.source_v4.is_some(),
                IpAddr::is_ipv4 as fn(&IpAddr) -> bool,
            ),
            ("source_v6", "IPv6", t.source_v6.is_some(), IpAddr::is_ipv6),
        ] {
            if set {
                continue;
            }
            let needs = |(_, b): &(&Vip, &Backend)| {
                is_family(&b.address()) && !c.is_poisoned(&b.address.span())
            };
            if let Some((vip, b)) = backends().find(needs) {
                let ctx = backend_ctx(c, vip, b);
                c.at(
                    b.address.span(),
                    format!(
                        "{ctx}: {family} backends need an {family} tunnel source, but [tunnel] \
                         {key} is not set; add {key} = \"<this MUX's {family} address>\" under \
                         [tunnel]"
                    ),
                );
            }
        }
    }

    fn check_next_hop(&self, c: &mut Collector<'_>) {
        let nh = self.next_hop.get_ref();
        if nh.mac.is_none()
            && nh.address.is_none()
            && self.dataplane.get_ref().io() != IoKind::Mem
            && self.io_known(c)
        {
            c.at(
                self.next_hop.span(),
                "[next_hop]: neither mac nor address is set, so encapsulated packets have nowhere \
                 to go; add address = \"<gateway IP>\" (its MAC is resolved) or pin mac = \
                 \"<gateway MAC>\" under [next_hop]; only io = \"mem\" may omit both"
                    .to_owned(),
            );
        }
        for (key, mac) in [("mac", &nh.mac), ("source_mac", &nh.source_mac)] {
            if let Some(mac) = mac {
                check_mac(c, key, mac);
            }
        }
        if let Some(addr) = &nh.address {
            let ctx = format!("[next_hop]: address {}", addr.get_ref().0);
            c.check_unicast(addr, &ctx, "use the gateway's unicast address");
        }
    }

    fn check_vips(&self, c: &mut Collector<'_>) {
        // name → line of first definition; (address, port, protocol) → (name, line).
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut services = HashMap::new();
        for vip in &self.vip {
            let ctx = vip_ctx(c, vip);
            c.check_name(&ctx, &vip.name);
            let name_line = c.line_of(vip.name.span().start);
            // A refused name has no duplicate to look for.
            if !c.is_poisoned(&vip.name.span()) {
                if let Some(first) = names.get(vip.name()) {
                    c.at(
                        vip.name.span(),
                        format!(
                            "{ctx}: the name is already used by the VIP at line {first}; give \
                             each VIP a unique name"
                        ),
                    );
                } else {
                    names.insert(vip.name(), name_line);
                }
            }

            c.check_unicast(
                &vip.address,
                &format!("{ctx}: address {}", vip.address()),
                "a VIP must be a unicast address clients can reach",
            );
            let port_ok = c.check_range(
                &ctx,
                "port",
                &vip.port,
                1,
                65535,
                "use the port clients connect to",
            );
            let service_known =
                !c.is_poisoned(&vip.address.span()) && !c.is_poisoned(&vip.protocol.span());
            if port_ok && service_known {
                let key = (vip.address(), vip.port(), vip.protocol());
                let service = format!(
                    "{}/{}",
                    std::net::SocketAddr::new(vip.address(), vip.port()),
                    vip.protocol()
                );
                if let Some((other, line)) = services.get(&key) {
                    c.at(
                        vip.address.span(),
                        format!(
                            "{ctx}: {service} is already served by vip {other:?} (line {line}); \
                             change the address, port or protocol, or move these backends into \
                             vip {other:?}"
                        ),
                    );
                } else {
                    services.insert(key, (vip.name(), name_line));
                }
            }

            if let Some(t) = &vip.timeouts {
                check_timeouts(c, &format!("{ctx} timeouts"), t.get_ref());
            }
            if let Some(l) = &vip.load_aware {
                check_load_aware(c, &format!("{ctx} load_aware"), l.get_ref());
            }
            check_table_size(c, &ctx, vip);
            check_backends(c, &ctx, vip);
        }
    }
}

fn check_load_aware(c: &mut Collector<'_>, ctx: &str, l: &LoadAwareSettings) {
    let fixes = [
        "the smallest effective weight, in percent of the configured one (default 25)",
        "the largest effective weight, in percent of the configured one (default 400)",
        "how far one revision may move a weight, in percent (default 25)",
        "how far from the average a backend's load may be before its weight moves, in \
         percent (default 10)",
        "how often weights are revised, in seconds (default 10; the agents measure rates \
         over about a second)",
    ];
    for (((key, field), (_, _, lo, hi)), fix) in
        l.fields().into_iter().zip(LOAD_AWARE_RANGES).zip(fixes)
    {
        if let Some(v) = field {
            c.check_range(ctx, key, v, lo, hi, fix);
        }
    }
}

fn check_table_size(c: &mut Collector<'_>, ctx: &str, vip: &Vip) {
    let Some(size) = &vip.maglev_table_size else {
        return; // the default (65537) is prime and above MAX_BACKENDS_PER_VIP
    };
    let n = *size.get_ref();
    let max = i64::from(MAX_TABLE_SIZE);
    if n > max {
        c.at(
            size.span(),
            format!(
                "{ctx}: maglev_table_size must be at most {max} (got {n}); use {max} or a \
                 smaller prime such as 65537"
            ),
        );
        return;
    }
    if !is_prime(n) {
        c.at(
            size.span(),
            format!(
                "{ctx}: maglev_table_size must be a prime (got {n}); use {}, the next prime",
                next_prime(n)
            ),
        );
    }
    let count = vip.backend.len();
    if (1..=MAX_BACKENDS_PER_VIP).contains(&count) && n < count as i64 {
        let suggestion = next_prime((count as i64).saturating_mul(100).min(max));
        c.at(
            size.span(),
            format!(
                "{ctx}: maglev_table_size ({n}) is smaller than the number of backends ({count}); \
                 use a prime at least 100 times the backend count, such as {suggestion}"
            ),
        );
    }
}

fn check_backends(c: &mut Collector<'_>, ctx: &str, vip: &Vip) {
    let count = vip.backend.len();
    if count == 0 {
        c.at(
            vip.name.span(),
            format!(
                "{ctx}: has no backends; add at least one [[vip.backend]] with its address (to \
                 stop new flows, keep the backends and set state = \"draining\")"
            ),
        );
    } else if count > MAX_BACKENDS_PER_VIP {
        c.at(
            vip.name.span(),
            format!(
                "{ctx}: has {count} backends, more than the {MAX_BACKENDS_PER_VIP} allowed; \
                 split the service across several VIPs"
            ),
        );
    }
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    let vip_known = !c.is_poisoned(&vip.address.span());
    for b in &vip.backend {
        let bctx = backend_ctx(c, vip, b);
        let addr = b.address();
        c.check_unicast(
            &b.address,
            &format!("{bctx}: the address"),
            "use the routable address of the backend's host agent",
        );
        // A refused address: its loops and duplicates cannot be judged.
        if !c.is_poisoned(&b.address.span()) {
            if vip_known && addr == vip.address() {
                c.at(
                    b.address.span(),
                    format!(
                        "{bctx}: the backend is the VIP itself, which would loop packets back \
                         to this MUX; use the host agent's own address"
                    ),
                );
            }
            if let Some(first) = seen.get(&addr) {
                c.at(
                    b.address.span(),
                    format!(
                        "{bctx}: listed twice in this VIP (first at line {first}); remove one, \
                         or change its address"
                    ),
                );
            } else {
                seen.insert(addr, c.line_of(b.address.span().start));
            }
        }
        if let Some(w) = &b.weight {
            let fix = if *w.get_ref() < 0 {
                "use 0 to stop new flows to this backend"
            } else {
                "lower it or set state = \"draining\""
            };
            c.check_range(&bctx, "weight", w, 0, i64::from(MAX_WEIGHT), fix);
        }
        check_drain_deadline(c, &bctx, b);
    }
}

/// Records an error unless `addr` is somewhere an agent can listen: a unicast or loopback
/// address (an agent on the MUX's own host is fine) with a non-zero port.
fn check_agent_address(c: &mut Collector<'_>, addr: &Spanned<SocketValue>) {
    let a = addr.get_ref().0;
    let ip = a.ip();
    let problem = if a.port() == 0 {
        "has port 0"
    } else if ip.is_unspecified() {
        "is unspecified"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        "is the broadcast address"
    } else if matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
        "is an IPv4-mapped IPv6 address (write it as plain IPv4)"
    } else {
        return;
    };
    c.at(
        addr.span(),
        format!(
            "[[health.agent]]: address {a} {problem}; use the host agent's admin endpoint, \
             e.g. address = \"10.0.21.2:9200\" (its [admin] listen)"
        ),
    );
}

/// `vip "NAME"`, or the name as written when it was refused.
fn vip_ctx(c: &Collector<'_>, vip: &Vip) -> String {
    let span = vip.name.span();
    match c.is_poisoned(&span) {
        false => format!("vip {:?}", vip.name()),
        true if c.source(&span).is_empty() => "vip (without a name)".to_owned(),
        true => format!("vip {}", c.source(&span)),
    }
}

/// `vip "NAME" backend ADDRESS`, the address as written when it was refused.
fn backend_ctx(c: &Collector<'_>, vip: &Vip, b: &Backend) -> String {
    let span = b.address.span();
    match c.is_poisoned(&span) {
        false => format!("{} backend {}", vip_ctx(c, vip), b.address()),
        true if c.source(&span).is_empty() => format!("{} backend", vip_ctx(c, vip)),
        true => format!("{} backend {}", vip_ctx(c, vip), c.source(&span)),
    }
}

fn check_timeouts(c: &mut Collector<'_>, ctx: &str, t: &TimeoutSettings) {
    for (key, field) in t.idle_fields() {
        if let Some(v) = field {
            let fix = "give the idle timeout in whole seconds, at most one day";
            c.check_range(ctx, key, v, 1, i64::from(MAX_TIMEOUT_SECS), fix);
        }
    }
    if let Some(v) = &t.failed_backend_grace {
        let fix = "give the seconds a failed backend keeps its established flows (default 5; 0 \
                   re-hashes them at once)";
        c.check_range(
            ctx,
            "failed_backend_grace",
            v,
            0,
            i64::from(MAX_FAILED_BACKEND_GRACE),
            fix,
        );
    }
}

/// `drain_deadline`: an offset date-time (an instant every MUX agrees on), after 1970, on a
/// draining backend.
fn check_drain_deadline(c: &mut Collector<'_>, bctx: &str, b: &Backend) {
    let Some(deadline) = &b.drain_deadline else {
        return;
    };
    let dt = deadline.get_ref();
    match offset_datetime_unix_ms(dt) {
        None => c.at(
            deadline.span(),
            format!(
                "{bctx}: drain_deadline must be an offset date-time, a moment every MUX agrees \
                 on (got {dt}); add Z for UTC or an offset, e.g. drain_deadline = \
                 2026-12-05T10:00:00Z"
            ),
        ),
        Some(ms) if ms < 0 => c.at(
            deadline.span(),
            format!(
                "{bctx}: drain_deadline is before 1970 (got {dt}); give the moment the \
                 backend should stop receiving, e.g. 2026-12-05T10:00:00Z"
            ),
        ),
        Some(_) => {}
    }
    if b.state() != BackendState::Draining {
        c.at(
            deadline.span(),
            format!(
                "{bctx}: drain_deadline applies only to a draining backend, and this one is \
                 \"{}\"; add state = \"draining\" or remove drain_deadline",
                b.state()
            ),
        );
    }
}

fn is_interface_name(name: &str) -> bool {
    // Linux IFNAMSIZ is 16 including the NUL.
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control())
}

fn check_mac(c: &mut Collector<'_>, key: &str, mac: &Spanned<MacValue>) {
    let m = *mac.get_ref();
    let problem = if m.is_zero() {
        "is all zeros"
    } else if m.is_group() {
        "is a multicast or broadcast MAC (the lowest bit of the first byte is set)"
    } else {
        return;
    };
    c.at(
        mac.span(),
        format!("[next_hop]: {key} {m} {problem}; use the unicast MAC of the interface"),
    );
}

/// Trial division; the numbers checked here are at most [`MAX_TABLE_SIZE`].
fn is_prime(n: i64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime `>= n` (at least 2).
fn next_prime(n: i64) -> i64 {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::{is_interface_name, is_prime, next_prime};

    #[test]
    fn primes_are_recognised() {
        let small: Vec<i64> = (-3..40).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]);
        assert!(is_prime(65_537));
        assert!(is_prime(1_000_003));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1_000_001)); // 101 × 9901
        assert!(!is_prime(10_403)); // 101 × 103: needs the d * d <= n bound to be inclusive enough
        assert!(!is_prime(9)); // 3 × 3: d * d == n
    }

    #[test]
    fn next_prime_is_the_smallest_prime_at_or_above() {
        assert_eq!(next_prime(-5), 2);
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(1_000_000), 1_000_003);
    }

    #[test]
    fn interface_names_follow_linux_rules() {
        assert!(is_interface_name("eth0"));
        assert!(is_interface_name("enp3s0f1np1"));
        assert!(!is_interface_name(""));
        assert!(!is_interface_name("a-very-long-interface"));
        assert!(!is_interface_name("eth 0"));
        assert!(!is_interface_name("eth0/1"));
    }
}
