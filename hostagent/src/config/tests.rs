//! Parse and validation tests: the shipped example, syntax/type errors, one test per semantic
//! rule (asserting the exact line:column and a substring of the message), error collection
//! and defaults.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../../configs/hostagent.example.toml");

const HEAD: &str =
    "[agent]\nname = \"h1\"\n[tunnel]\nmux_sources = [\"10.0.11.2\", \"10.0.12.2\"]\n";

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

/// 1-based line and column of the `nth` (0-based) occurrence of `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} occurs fewer than {} times", nth + 1))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Asserts `text` is refused with exactly one error at the `nth` occurrence of `at`, whose
/// message contains `needle`.
fn refused_at_nth(text: &str, at: &str, nth: usize, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}\n{text}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column),
        position(text, at, nth),
        "wrong position for {e}"
    );
    assert!(
        e.message.contains(needle),
        "{:?} does not contain {needle:?}",
        e.message
    );
    assert_eq!(e.file, "t.toml");
}

fn refused_at(text: &str, at: &str, needle: &str) {
    refused_at_nth(text, at, 0, needle);
}

/// Asserts one error located at the value after the first `key` (e.g. `"rise = "`).
fn refused_at_value(text: &str, key: &str, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}\n{text}");
    let (line, column) = position(text, key, 0);
    assert_eq!(
        (errs[0].line, errs[0].column),
        (line, column + key.chars().count()),
        "wrong position for {}",
        errs[0]
    );
    assert!(
        errs[0].message.contains(needle),
        "{:?} lacks {needle:?}",
        errs[0].message
    );
}

fn valid(text: &str) -> HostAgentConfig {
    parse(text, "t.toml").unwrap_or_else(|e| panic!("refused:\n{e}\n{text}"))
}

/// `HEAD` plus one service with the given keys.
fn service(keys: &str) -> String {
    format!("{HEAD}[[service]]\n{keys}")
}

const WEB: &str = "vip = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\ndip = \"10.0.21.2\"\n";

#[test]
fn example_file_parses_with_its_values() {
    let c = parse(EXAMPLE, "configs/hostagent.example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.name(), "host1");
    assert_eq!(c.mux_sources().len(), 4);
    let s = &c.services()[0];
    assert_eq!(s.vip(), "192.0.2.10".parse::<IpAddr>().unwrap());
    assert_eq!((s.port(), s.backend_port()), (80, 8080));
    assert_eq!(s.protocol(), Protocol::Tcp);
    assert_eq!(s.backend_address(), s.dip());
    assert_eq!(c.services()[1].backend_port(), 53, "defaults to port");
    let mixed = &c.services()[3];
    assert_eq!(mixed.dip(), "fd00:21::2".parse::<IpAddr>().unwrap());
    assert_eq!(
        mixed.backend_address(),
        "10.0.21.3".parse::<IpAddr>().unwrap()
    );
    let h = c.health();
    assert_eq!(
        h.kind,
        HealthKind::Http {
            tls: false,
            path: "/healthz".into(),
            expected_status: 200
        }
    );
    assert_eq!(h.interval, Duration::from_millis(1000));
    assert_eq!((h.rise, h.fall), (2, 3));
    assert!(c.tunnel_sources().v4.is_some() && c.tunnel_sources().v6.is_some());
    assert_eq!(c.peers().len(), 2);
    assert_eq!(c.connections().capacity, DEFAULT_CONNECTION_CAPACITY);
    assert_eq!(
        c.timeouts(),
        DEFAULT_TIMEOUTS,
        "the example shows the defaults"
    );
    assert_eq!(c.services()[1].timeouts(&c.timeouts()).udp, 60);
}

#[test]
fn defaults_apply_to_a_minimal_file() {
    let c = valid(HEAD);
    assert!(c.services().is_empty());
    assert_eq!(c.admin_listen(), DEFAULT_ADMIN_LISTEN);
    assert_eq!(
        c.admin_listen(),
        "127.0.0.1:9200".parse::<SocketAddr>().unwrap()
    );
    let h = c.health();
    assert_eq!(h.kind, HealthKind::Tcp);
    assert_eq!(h.timeout, Duration::from_millis(DEFAULT_HEALTH_TIMEOUT_MS));
    assert_eq!((h.rise, h.fall), (DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_FALL));
}

#[test]
fn unknown_keys_are_refused_at_their_line() {
    let text = service(&format!("{WEB}backend_prot = 8080\n"));
    refused_at(&text, "backend_prot", "unknown field `backend_prot`");
    let text = format!("{HEAD}[admin]\nlisten = \"127.0.0.1:9200\"\nbind = 1\n");
    refused_at(&text, "bind", "fix the spelling");
}

#[test]
fn missing_sections_and_keys_are_named() {
    let errs = errors("[agent]\nname = \"h\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("`tunnel`"), "{}", errs[0]);
    let text = service("vip = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("`dip`"), "{}", errs[0]);
}

#[test]
fn type_errors_get_a_fix() {
    let text = service(&WEB.replace("port = 80", "port = \"80\""));
    refused_at(&text, "\"80\"", "write a whole number without quotes");
    let text = service(&WEB.replace("\"tcp\"", "\"sctp\""));
    refused_at(&text, "\"sctp\"", "use one of the listed values");
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"10.0.21.0/24\""));
    refused_at(&text, "\"10.0.21.0/24\"", "without a prefix length");
}

#[test]
fn agent_name_must_be_a_label() {
    let text = HEAD.replace("\"h1\"", "\"host one\"");
    refused_at(&text, "\"host one\"", "[agent]: name \"host one\"");
}

#[test]
fn mux_sources_must_be_listed_unicast_and_unique() {
    let text = "[agent]\nname = \"h\"\n[tunnel]\nmux_sources = []\n";
    refused_at(text, "[]", "mux_sources is empty");
    let text = HEAD.replace("\"10.0.12.2\"", "\"224.0.0.1\"");
    refused_at(&text, "\"224.0.0.1\"", "is a multicast address");
    let text = HEAD.replace("\"10.0.12.2\"", "\"10.0.11.2\"");
    refused_at_nth(&text, "\"10.0.11.2\"", 1, "listed twice (first on line 4)");
    let text = HEAD.replace("\"10.0.12.2\"", "\"::ffff:10.0.12.2\"");
    refused_at(
        &text,
        "\"::ffff:10.0.12.2\"",
        "write it as plain IPv4: \"10.0.12.2\"",
    );
}

#[test]
fn ports_are_range_checked() {
    let text = service(&WEB.replace("port = 80", "port = 70000"));
    refused_at(
        &text,
        "70000",
        "service 192.0.2.10:0/tcp: port must be between 1 and 65535",
    );
    let text = service(&format!("{WEB}backend_port = 0\n"));
    refused_at_value(
        &text,
        "backend_port = ",
        "backend_port must be between 1 and 65535",
    );
}

#[test]
fn service_addresses_must_be_unicast() {
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"127.0.0.1\""));
    refused_at(&text, "\"127.0.0.1\"", "dip is a loopback address");
    let text = service(&WEB.replace("\"192.0.2.10\"", "\"0.0.0.0\""));
    refused_at(&text, "\"0.0.0.0\"", "vip is unspecified");
    let text = service(&format!("{WEB}backend_address = \"255.255.255.255\"\n"));
    refused_at(
        &text,
        "\"255.255.255.255\"",
        "backend_address is the broadcast address",
    );
}

#[test]
fn mixed_family_needs_a_backend_address_of_the_vip_family() {
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"fd00:21::2\""));
    refused_at(&text, "\"fd00:21::2\"", "add backend_address");
    let text = service(&format!(
        "{}backend_address = \"fd00:21::3\"\n",
        WEB.replace("\"10.0.21.2\"", "\"fd00:21::2\"")
    ));
    refused_at(&text, "\"fd00:21::3\"", "is not IPv4 like the vip");
    let ok = service(&format!(
        "{}backend_address = \"10.0.21.3\"\n",
        WEB.replace("\"10.0.21.2\"", "\"fd00:21::2\"")
    ));
    valid(&ok);
}

#[test]
fn vip_must_differ_from_dip() {
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"192.0.2.10\""));
    refused_at(&text, "\"192.0.2.10\"", "is also the service's dip");
}

#[test]
fn duplicate_services_and_backends_are_refused_with_the_first_line() {
    let text = format!("{}[[service]]\n{WEB}backend_port = 81\n", service(WEB));
    refused_at_nth(&text, "\"192.0.2.10\"", 1, "as the service on line 6");
    // Two VIP ports answered by one backend port: replies could not be told apart.
    let text = format!(
        "{}[[service]]\n{}backend_port = 80\n",
        service(WEB),
        WEB.replace("port = 80", "port = 81")
    );
    refused_at_value(
        &text,
        "backend_port = ",
        "indistinguishable from those of the service on line 6",
    );
    // The same VIP port through two DIPs (two backends on one host) is fine.
    valid(&format!(
        "{}[[service]]\n{}",
        service(WEB),
        WEB.replace("\"10.0.21.2\"", "\"10.0.21.3\"")
    ));
}

#[test]
fn health_values_are_checked() {
    let h = |body: &str| format!("{HEAD}[health]\n{body}");
    refused_at(
        &h("interval_ms = 50\n"),
        "50",
        "[health]: interval_ms must be between 100 and 60000",
    );
    refused_at(
        &h("timeout_ms = 2000\n"),
        "2000",
        "longer than interval_ms 1000",
    );
    refused_at(
        &h("interval_ms = 3000\ntimeout_ms = 4000\n"),
        "4000",
        "longer than interval_ms 3000",
    );
    refused_at_value(
        &h("rise = 0\n"),
        "rise = ",
        "rise must be between 1 and 100",
    );
    refused_at(&h("fall = 101\n"), "101", "fall must be between 1 and 100");
    refused_at(
        &h("kind = \"http\"\nhttp_status = 600\n"),
        "600",
        "http_status must be between 100 and 599",
    );
    refused_at(
        &h("kind = \"http\"\nhttp_path = \"healthz\"\n"),
        "\"healthz\"",
        "not a request path",
    );
    refused_at(
        &h("http_path = \"/x\"\n"),
        "\"/x\"",
        "only used by HTTP checks",
    );
    refused_at(&h("kind = \"icmp\"\n"), "\"icmp\"", "unknown variant");
    let ok = valid(&h("kind = \"http\"\n"));
    assert_eq!(
        ok.health().kind,
        HealthKind::Http {
            tls: false,
            path: DEFAULT_HTTP_PATH.into(),
            expected_status: DEFAULT_HTTP_STATUS
        }
    );
}

#[test]
fn admin_listen_needs_a_fixed_port() {
    let text = format!("{HEAD}[admin]\nlisten = \"127.0.0.1:0\"\n");
    refused_at(&text, "\"127.0.0.1:0\"", "give a fixed port");
    let text = format!("{HEAD}[admin]\nlisten = \"localhost:9200\"\n");
    refused_at(&text, "\"localhost:9200\"", "expected an address:port");
}

#[test]
fn every_semantic_error_is_reported_in_file_order() {
    let text = format!(
        "[agent]\nname = \"a b\"\n[tunnel]\nmux_sources = [\"0.0.0.0\"]\n[[service]]\n{}\
         [health]\nrise = 0\n",
        WEB.replace("port = 80", "port = 0")
    );
    let errs = errors(&text);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 7, 11], "{errs:#?}");
}

/// Asserts `text` is refused with exactly these errors, in order: (the `nth` occurrence of
/// `at`, a substring of the message).
fn refused_with(text: &str, expected: &[(&str, usize, &str)]) {
    let errs = errors(text);
    let shown = ConfigErrors(errs.clone()).to_string();
    assert_eq!(errs.len(), expected.len(), "{shown}\n---\n{text}");
    for (e, &(at, nth, needle)) in errs.iter().zip(expected) {
        assert_eq!(
            (e.line, e.column),
            position(text, at, nth),
            "{needle:?} at the wrong place: {shown}"
        );
        assert!(
            e.message.contains(needle),
            "{:?} lacks {needle:?}",
            e.message
        );
    }
}

#[test]
fn a_bad_address_and_a_bad_port_are_both_reported() {
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"10.0.21.300\"")) + "backend_port = 80800\n";
    refused_with(
        &text,
        &[
            ("\"10.0.21.300\"", 0, "expected an IP address such as"),
            (
                "80800",
                0,
                "service 192.0.2.10:80/tcp: backend_port must be between 1 and 65535",
            ),
        ],
    );
}

#[test]
fn a_typo_a_bad_address_and_a_bad_port_are_all_reported() {
    let text = service(&WEB.replace("\"192.0.2.10\"", "\"192.0.2\""))
        + "backend_prot = 8080\n"
        + "[[service]]\nvip = \"192.0.2.11\"\nport = 0\nprotocol = \"tcp\"\ndip = \"10.0.21.2\"\n";
    refused_with(
        &text,
        &[
            ("\"192.0.2\"", 0, "expected an IP address such as"),
            ("backend_prot", 0, "unknown field `backend_prot`"),
            (
                "0\nprotocol",
                1,
                "service 192.0.2.11:0/tcp: port must be between 1 and 65535",
            ),
        ],
    );
    let at: Vec<_> = errors(&text).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(6, 7), (10, 1), (13, 8)]);
}

#[test]
fn type_errors_across_sections_are_all_reported() {
    let text = "[agent]\nname = 1\n[tunnel]\nmux_sources = \"10.0.11.2\"\n[[service]]\n\
                vip = \"192.0.2.10\"\nport = \"80\"\nprotocol = \"icmp\"\ndip = \"10.0.21.2\"\n\
                [health]\nkind = \"ping\"\nrise = 1.5\n[admin]\nlisten = 9200\n\
                [interception]\nmark = \"0x6d75\"\n";
    refused_with(
        text,
        &[
            ("1\n", 0, "expected a string"),
            ("\"10.0.11.2\"", 0, "expected a sequence"),
            ("\"80\"", 0, "expected an integer"),
            ("\"icmp\"", 0, "expected `tcp` or `udp`"),
            ("\"ping\"", 0, "unknown variant `ping`"),
            ("1.5", 0, "expected an integer"),
            ("9200", 0, "put the value in double quotes"),
            ("\"0x6d75\"", 0, "expected an integer"),
        ],
    );
}

#[test]
fn a_refused_value_causes_no_error_of_its_own() {
    // A refused VIP is not of "another family" than the DIP, nor equal to it.
    let text = service(&WEB.replace("\"192.0.2.10\"", "\"2001:db8::zz\""));
    refused_at(&text, "\"2001:db8::zz\"", "expected an IP address");
    // A refused kind might have been "http": its http_* keys are not judged.
    let text = format!("{HEAD}[health]\nkind = \"htp\"\nhttp_path = \"/healthz\"\n");
    refused_at(&text, "\"htp\"", "unknown variant `htp`");
    // Two refused services' addresses do not make them duplicates.
    let text = service(&WEB.replace("\"10.0.21.2\"", "\"x\""))
        + "[[service]]\n"
        + &WEB.replace("\"10.0.21.2\"", "\"x\"");
    refused_with(
        &text,
        &[
            ("\"x\"", 0, "expected an IP address"),
            ("\"x\"", 1, "expected an IP address"),
        ],
    );
}

#[test]
fn unreadable_file_is_one_error_without_position() {
    let errs = load_file(std::path::Path::new("/nonexistent/hostagent.toml")).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.errors()[0].line, 0);
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/hostagent.toml: cannot read")
    );
}

#[test]
fn interception_defaults_and_values() {
    let i = valid(HEAD).interception();
    assert_eq!(i.tun_name, DEFAULT_TUN_NAME);
    assert_eq!(
        (i.route_table, i.rule_priority, i.mark, i.tun_mtu),
        (
            DEFAULT_ROUTE_TABLE,
            DEFAULT_RULE_PRIORITY,
            DEFAULT_MARK,
            DEFAULT_TUN_MTU
        )
    );
    let text = format!(
        "{HEAD}[interception]\ntun_name = \"ha1\"\nroute_table = 100\nrule_priority = 50\nmark = 7\ntun_mtu = 9000\n"
    );
    let i = valid(&text).interception();
    assert_eq!(i.tun_name, "ha1");
    assert_eq!(
        (i.route_table, i.rule_priority, i.mark, i.tun_mtu),
        (100, 50, 7, 9000)
    );
}

#[test]
fn interception_values_are_range_checked() {
    let at = |body: &str, key: &str, needle: &str| {
        refused_at_value(&format!("{HEAD}[interception]\n{body}\n"), key, needle)
    };
    at(
        "tun_name = \"a-name-far-too-long\"",
        "tun_name = ",
        "1-15 of letters",
    );
    at("tun_name = \"bad/name\"", "tun_name = ", "1-15 of letters");
    at("route_table = 254", "route_table = ", "kernel's own");
    at("route_table = 0", "route_table = ", "between 1 and");
    at(
        "rule_priority = 32766",
        "rule_priority = ",
        "between 2 and 32765",
    );
    at("mark = 0", "mark = ", "between 1 and");
    at("tun_mtu = 100", "tun_mtu = ", "between 576 and 65535");
    let text = format!("{HEAD}[interception]\ntunname = \"x\"\n");
    refused_at(&text, "tunname", "unknown field `tunname`");
}

#[test]
fn https_checks_take_the_http_keys() {
    let text = format!("{HEAD}[health]\nkind = \"https\"\nhttp_path = \"/h\"\nhttp_status = 204\n");
    assert_eq!(
        valid(&text).health().kind,
        HealthKind::Http {
            tls: true,
            path: "/h".into(),
            expected_status: 204
        }
    );
}

#[test]
fn second_chance_keys_default_to_nothing_and_the_table_defaults() {
    let c = valid(HEAD);
    assert_eq!(c.tunnel_sources(), TunnelSources::default());
    assert!(c.peers().is_empty());
    let conn = c.connections();
    assert_eq!(conn.capacity, DEFAULT_CONNECTION_CAPACITY);
    assert_eq!(
        conn.state_file,
        std::path::Path::new(DEFAULT_STATE_DIR).join("h1.connections"),
        "one file per agent name, so agents sharing a filesystem never share a file"
    );
    assert_eq!(c.timeouts(), DEFAULT_TIMEOUTS);
}

#[test]
fn tunnel_sources_peers_connections_and_timeouts_are_read() {
    let text = format!(
        "{HEAD}source_v4 = \"10.0.21.2\"\nsource_v6 = \"fd00:21::2\"\n\
         [[tunnel.peer]]\naddress = \"10.0.22.2\"\n[[tunnel.peer]]\naddress = \"fd00:22::2\"\n\
         [connections]\ncapacity = 4096\nstate_file = \"state/conns\"\n\
         [timeouts]\ntcp_established = 900\nudp = 120\n\
         [[service]]\n{WEB}timeouts = {{ udp = 30, tcp_syn = 5 }}\n\
         [[service]]\n{}",
        WEB.replace("port = 80", "port = 81")
    );
    let c = valid(&text);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        c.tunnel_sources(),
        TunnelSources {
            v4: Some(ip("10.0.21.2")),
            v6: Some(ip("fd00:21::2"))
        }
    );
    assert_eq!(
        c.tunnel_sources().for_family_of(ip("10.9.9.9")),
        Some(ip("10.0.21.2"))
    );
    assert_eq!(c.peers(), vec![ip("10.0.22.2"), ip("fd00:22::2")]);
    assert_eq!(c.connections().capacity, 4096);
    assert_eq!(
        c.connections().state_file,
        std::path::PathBuf::from("state/conns")
    );
    let global = c.timeouts();
    assert_eq!(
        global,
        Timeouts {
            tcp_syn: DEFAULT_TIMEOUTS.tcp_syn,
            tcp_established: 900,
            tcp_closing: DEFAULT_TIMEOUTS.tcp_closing,
            udp: 120
        }
    );
    assert_eq!(
        c.services()[0].timeouts(&global),
        Timeouts {
            tcp_syn: 5,
            udp: 30,
            ..global
        }
    );
    assert_eq!(c.services()[1].timeouts(&global), global);
}

#[test]
fn tunnel_sources_must_be_of_their_family_and_unicast() {
    let text = format!("{HEAD}source_v4 = \"fd00:21::2\"\n");
    refused_at(
        &text,
        "\"fd00:21::2\"",
        "[tunnel]: source_v4 must be an IPv4 address",
    );
    let text = format!("{HEAD}source_v6 = \"10.0.21.2\"\n");
    refused_at(&text, "\"10.0.21.2\"", "move it to source_v4");
    let text = format!("{HEAD}source_v4 = \"127.0.0.1\"\n");
    refused_at(&text, "\"127.0.0.1\"", "is a loopback address");
}

#[test]
fn peers_must_be_unicast_unique_and_known_keys() {
    let peer = |a: &str| format!("[[tunnel.peer]]\naddress = \"{a}\"\n");
    let text = format!("{HEAD}{}{}", peer("10.0.22.2"), peer("10.0.22.2"));
    refused_at_nth(
        &text,
        "\"10.0.22.2\"",
        1,
        "[[tunnel.peer]]: address 10.0.22.2 is listed twice (first on line 6)",
    );
    let text = format!("{HEAD}{}", peer("0.0.0.0"));
    refused_at(&text, "\"0.0.0.0\"", "is unspecified");
    let text = format!("{HEAD}[[tunnel.peer]]\naddres = \"10.0.22.2\"\n");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.message.contains("unknown field `addres`")),
        "{errs:#?}"
    );
    // The agent's own source may be in the list (one list for every host).
    valid(&format!(
        "{HEAD}source_v4 = \"10.0.21.2\"\n{}{}",
        peer("10.0.21.2"),
        peer("10.0.22.2")
    ));
}

#[test]
fn connections_and_timeouts_are_range_checked() {
    let at = |body: &str, key: &str, needle: &str| {
        refused_at_value(&format!("{HEAD}{body}\n"), key, needle)
    };
    at(
        "[connections]\ncapacity = 10",
        "capacity = ",
        "[connections]: capacity must be between 1024 and 16777216",
    );
    at(
        "[connections]\nstate_file = \"\"",
        "state_file = ",
        "is not a file path",
    );
    at(
        "[connections]\nstate_file = \"/var/lib/\"",
        "state_file = ",
        "is not a file path",
    );
    at(
        "[timeouts]\nudp = 0",
        "udp = ",
        "[timeouts]: udp must be between 1 and 604800",
    );
    at(
        "[timeouts]\ntcp_established = 604801",
        "tcp_established = ",
        "at most a week",
    );
    let text = service(&format!("{WEB}timeouts = {{ tcp_closing = 0 }}\n"));
    refused_at_value(
        &text,
        "tcp_closing = ",
        "service 192.0.2.10:80/tcp timeouts: tcp_closing must be between 1 and 604800",
    );
    let text = service(&format!("{WEB}timeouts = {{ tcp_idle = 5 }}\n"));
    refused_at(&text, "tcp_idle", "unknown field `tcp_idle`");
    let text = format!("{HEAD}[connections]\nsize = 5\n");
    refused_at(&text, "size", "unknown field `size`");
}
