//! Parse and validation tests: the shipped files, syntax/type errors, one test per semantic
//! rule (asserting the exact line:column and a substring of the message), error collection
//! and defaults.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../../configs/mux.example.toml");
const DEMO: &str = include_str!("../../../configs/mux.demo.toml");

/// A valid head: `io = "mem"` and both tunnel sources, so VIP tests need nothing else.
const HEAD: &str = "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[tunnel]\n\
                    source_v4 = \"10.0.0.11\"\nsource_v6 = \"fd00::11\"\n";

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

/// Asserts `text` is refused with exactly one error, located at the `nth` occurrence of `at`,
/// whose message contains `needle`.
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

fn valid(text: &str) -> MuxConfig {
    parse(text, "t.toml").unwrap_or_else(|e| panic!("refused:\n{e}\n{text}"))
}

/// `HEAD` plus one TCP VIP `web` on 192.0.2.10:80 with the given extra keys and backends.
fn web(extra: &str, backends: &str) -> String {
    format!(
        "{HEAD}[[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\n\
         protocol = \"tcp\"\n{extra}{backends}"
    )
}

fn backend(address: &str) -> String {
    format!("[[vip.backend]]\naddress = \"{address}\"\n")
}

// ---- the shipped files ------------------------------------------------------------------

#[test]
fn example_file_parses_and_validates() {
    let c = parse(EXAMPLE, "configs/mux.example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.name(), "mux1");
    assert_eq!(c.dataplane().io(), IoKind::Afxdp);
    assert_eq!(c.dataplane().interface(), Some("eth0"));
    assert_eq!(c.dataplane().workers(), 2);
    assert_eq!(
        c.next_hop().address(),
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
    assert_eq!(c.next_hop().mac(), None);
    let names: Vec<_> = c.vips().iter().map(Vip::name).collect();
    assert_eq!(names, ["web", "dns", "web6"]);
    let web = &c.vips()[0];
    assert_eq!(web.timeouts(&c.timeouts()).tcp_established, 600);
    assert_eq!(web.backends()[1].weight(), 200);
    assert_eq!(web.backends()[2].state(), BackendState::Draining);
    assert_eq!(
        web.backends()[2].drain_deadline(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_796_464_800))
    );
    assert_eq!(web.timeouts(&c.timeouts()).failed_backend_grace, 5);
    assert_eq!(
        (c.dataplane().icmp_rate(), c.dataplane().icmp_burst()),
        (1000, 50)
    );
    assert_eq!(c.vips()[2].table_size(), 1009);
    assert_eq!(c.health().poll_interval(), Duration::from_millis(1000));
    assert_eq!(c.health().stale_after(), Duration::from_millis(3000));
    assert_eq!(c.health().agents().len(), 2);
}

#[test]
fn demo_file_parses_and_validates() {
    let c = parse(DEMO, "configs/mux.demo.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.dataplane().io(), IoKind::Mem);
    assert_eq!(c.dataplane().interface(), None);
    assert_eq!(c.next_hop().mac(), Some([2, 0, 0, 0, 0, 0xfe]));
    assert_eq!(c.next_hop().source_mac(), Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(c.tunnel().source_v4(), Some(Ipv4Addr::new(10, 0, 0, 11)));
    assert_eq!(
        c.tunnel().source_v6(),
        Some("fd00::11".parse::<Ipv6Addr>().unwrap())
    );

    let summary: Vec<_> = c
        .vips()
        .iter()
        .map(|v| {
            let backends: Vec<_> = v
                .backends()
                .iter()
                .map(|b| (b.address().to_string(), b.state()))
                .collect();
            (
                v.name(),
                SocketAddr::new(v.address(), v.port()),
                v.protocol(),
                backends,
            )
        })
        .collect();
    let a = BackendState::Active;
    let d = BackendState::Draining;
    let ip = |s: &str| s.to_string();
    assert_eq!(
        summary,
        [
            (
                "web",
                "192.0.2.10:80".parse().unwrap(),
                Protocol::Tcp,
                vec![
                    (ip("10.1.0.1"), a),
                    (ip("10.1.0.2"), a),
                    (ip("10.1.0.3"), d)
                ]
            ),
            (
                "dns",
                "192.0.2.53:53".parse().unwrap(),
                Protocol::Udp,
                vec![(ip("10.1.0.1"), a), (ip("10.1.0.2"), a)]
            ),
            (
                "web6",
                "[2001:db8::10]:443".parse().unwrap(),
                Protocol::Tcp,
                vec![(ip("fd00:1::1"), a), (ip("fd00:1::2"), a)]
            ),
        ]
    );
}

#[test]
fn load_file_reads_and_names_the_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let c = load_file(&dir.join("mux.demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.name(), "demo");

    let missing = dir.join("no-such-file.toml");
    let e = load_file(&missing).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e.0[0].line, e.0[0].column), (0, 0));
    assert_eq!(e.0[0].file, missing.display().to_string());
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read", missing.display())),
        "{shown}"
    );
    assert!(shown.contains("check the path"), "{shown}");
}

#[test]
fn equality_ignores_layout_and_comments() {
    let compact = "[mux]\nname=\"t\"\n[dataplane]\nio=\"mem\"\n";
    let spaced = "# c\n\n[mux]\n  name = \"t\"   # n\n\n[dataplane]\n  io = \"mem\"\n";
    assert_eq!(valid(compact), valid(spaced));
    assert_ne!(valid(compact), valid(&compact.replace("\"t\"", "\"u\"")));
}

// ---- syntax and type errors ---------------------------------------------------------------

#[test]
fn syntax_error_is_one_error_at_its_position() {
    let text = "[mux]\nname = \"t\"\n[dataplane]\nworkers = = 3\n";
    refused_at_nth(text, "=", 2, "expected");
    let e = &errors(text)[0];
    assert_eq!((e.line, e.column), (4, 11));
    assert!(e.to_string().starts_with("t.toml:4:11: "), "{e}");

    let unclosed = "[mux]\nname = \"t\n";
    let errs = errors(unclosed);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 2);
}

#[test]
fn unknown_field_names_it_and_lists_the_expected_ones() {
    let text = web("", "[[vip.backend]]\naddress = \"10.1.0.1\"\nwieght = 5\n");
    refused_at(&text, "wieght", "unknown field `wieght`");
    let msg = &errors(&text)[0].message;
    for key in ["`address`", "`weight`", "`state`", "fix the spelling"] {
        assert!(msg.contains(key), "{msg}");
    }
    // Unknown sections too.
    let text = format!("{HEAD}[nexthop]\nmac = \"02:00:00:00:00:01\"\n");
    refused_at(&text, "nexthop", "unknown field `nexthop`");
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.1\"\nweight = \"heavy\"\n",
    );
    refused_at(&text, "\"heavy\"", "expected an integer");
    let text = web("", "[[vip.backend]]\naddress = 10\n");
    refused_at(&text, "10\n", "put the value in double quotes");
    let text = format!("{HEAD}[timeouts]\nudp = 1.5\n");
    refused_at(&text, "1.5", "expected an integer");
}

#[test]
fn malformed_values_are_reported_at_the_value_with_an_example() {
    let text = web("", &backend("10.1.0.300"));
    refused_at(&text, "\"10.1.0.300\"", "expected an IP address such as");
    let text = web("", &backend("10.1.0.0/24"));
    refused_at(&text, "\"10.1.0.0/24\"", "without a prefix length");
    let text = format!("{HEAD}[next_hop]\nmac = \"02:00:00:00:00\"\n");
    refused_at(&text, "\"02:00", "expected a MAC address such as");
    let text = format!("{HEAD}[admin]\nlisten = \"127.0.0.1\"\n");
    refused_at(&text, "\"127.0.0.1\"", "expected an address:port");
}

#[test]
fn unknown_enum_values_list_the_allowed_ones() {
    let text = "[mux]\nname = \"t\"\n[dataplane]\nio = \"xdp\"\n";
    refused_at(text, "\"xdp\"", "`afxdp`, `afpacket`, `dpdk`, `mem`");
    let text = web("", &backend("10.1.0.1")).replace("\"tcp\"", "\"sctp\"");
    refused_at(&text, "\"sctp\"", "expected `tcp` or `udp`");
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.1\"\nstate = \"down\"\n",
    );
    refused_at(&text, "\"down\"", "`active` or `draining`");
}

#[test]
fn missing_required_keys_point_at_their_table() {
    // A missing key is reported at its table, with the file's other errors: here a file without
    // [dataplane] io = "mem" also lacks the interface and next hop an AF_PACKET MUX needs.
    let errs = errors("[mux]\n");
    assert_eq!((errs[0].line, errs[0].column), (1, 1));
    assert!(
        errs[0]
            .message
            .contains("[mux] is missing the required key `name`"),
        "{}",
        errs[0].message
    );
    let errs = errors("");
    assert_eq!((errs[0].line, errs[0].column), (1, 1));
    assert!(
        errs[0].message.contains("section `mux` is missing"),
        "{}",
        errs[0].message
    );
    let text = format!("{HEAD}[[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\n");
    refused_at(
        &format!("{text}{}", backend("10.1.0.1")),
        "[[vip]]",
        "missing the required key `protocol`",
    );
}

// ---- collection of several errors ---------------------------------------------------------

#[test]
fn every_semantic_error_is_reported_in_file_order() {
    let text = format!(
        "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\nworkers = 0\n[tunnel]\n\
         source_v6 = \"fd00::11\"\n[timeouts]\nudp = 0\n\
         [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 0\nprotocol = \"tcp\"\n\
         maglev_table_size = 100\n{}{}\
         [[vip.backend]]\naddress = \"10.1.0.2\"\nweight = 20000\n\
         [[vip]]\nname = \"web\"\naddress = \"224.0.0.1\"\nport = 80\nprotocol = \"udp\"\n",
        backend("10.1.0.1"),
        backend("10.1.0.1"),
    );
    let errs = errors(&text);
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.column, e.message.split(';').next().unwrap_or("")))
        .collect();
    let at = |needle: &str, nth: usize| position(&text, needle, nth);
    let expected = [
        (
            at("0\n", 0),
            "[dataplane]: workers must be between 1 and 128 (got 0)",
        ),
        (
            at("0\n", 1),
            "[timeouts]: udp must be between 1 and 86400 (got 0)",
        ),
        (
            at("0\n", 2),
            "vip \"web\": port must be between 1 and 65535 (got 0)",
        ),
        (
            at("100\n", 0),
            "vip \"web\": maglev_table_size must be a prime (got 100)",
        ),
        (
            at("\"10.1.0.1\"", 0),
            "vip \"web\" backend 10.1.0.1: IPv4 backends need an IPv4 tunnel source, but [tunnel] source_v4 is not set",
        ),
        (
            at("\"10.1.0.1\"", 1),
            "vip \"web\" backend 10.1.0.1: listed twice in this VIP (first at line 17)",
        ),
        (
            at("20000", 0),
            "vip \"web\" backend 10.1.0.2: weight must be between 0 and 10000 (got 20000)",
        ),
        (
            at("\"web\"", 1),
            "vip \"web\": the name is already used by the VIP at line 11",
        ),
        (at("\"web\"", 1), "vip \"web\": has no backends"),
        (
            at("\"224.0.0.1\"", 0),
            "vip \"web\": address 224.0.0.1 is a multicast address",
        ),
    ];
    let expected: Vec<_> = expected.iter().map(|&((l, c), m)| (l, c, m)).collect();
    assert_eq!(got, expected, "{}", ConfigErrors(errs.clone()));
    // The display has one line per error.
    assert_eq!(
        ConfigErrors(errs).to_string().lines().count(),
        expected.len()
    );
}

#[test]
fn the_documented_example_message_is_produced_verbatim() {
    // Line 12, column 11, as in the module documentation.
    let text = "[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n[tunnel]\n\
                source_v4 = \"10.0.0.11\"\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\n\
                port = 80\nprotocol = \"tcp\"\n[[vip.backend]]\n";
    let text = text.replace(
        "[[vip.backend]]\n",
        "backend = [{ address = \"10.1.0.7\",\n   weight = 20000 }]\n",
    );
    let errs = parse(&text, "configs/mux.toml").unwrap_err();
    assert_eq!(
        errs.to_string(),
        "configs/mux.toml:13:13: vip \"web\" backend 10.1.0.7: weight must be between 0 and \
         10000 (got 20000); lower it or set state = \"draining\""
    );
}

// ---- every error of a file TOML can parse -----------------------------------------------

/// Asserts `text` is refused with exactly these errors: (the `nth` occurrence of `at`, a
/// substring of the message), in this order.
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
fn a_bad_address_and_a_bad_weight_are_both_reported() {
    // The first example: before, only the address was reported.
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.300\"\nweight = 20000\n",
    );
    refused_with(
        &text,
        &[
            ("\"10.1.0.300\"", 0, "expected an IP address such as"),
            (
                "20000",
                0,
                "vip \"web\" backend \"10.1.0.300\": weight must be between 0 and 10000",
            ),
        ],
    );
    let e = &errors(&text)[1];
    assert_eq!((e.line, e.column), (15, 10), "{e}");
}

#[test]
fn a_typo_a_bad_address_and_a_bad_weight_are_all_reported() {
    // The second example: before, only the typo was reported.
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.300\"\nwieght = 5\n\
         [[vip.backend]]\naddress = \"10.1.0.2\"\nweight = 20000\n",
    );
    refused_with(
        &text,
        &[
            ("\"10.1.0.300\"", 0, "expected an IP address such as"),
            ("wieght", 0, "unknown field `wieght`"),
            (
                "20000",
                0,
                "backend 10.1.0.2: weight must be between 0 and 10000",
            ),
        ],
    );
    let at: Vec<_> = errors(&text).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(14, 11), (15, 1), (18, 10)]);
}

#[test]
fn type_and_value_errors_in_every_section_are_all_reported() {
    let text = "[mux]\nname = 7\n[dataplane]\nio = \"mem\"\nworkers = \"two\"\nmtu = 1.5\n\
                [tunnel]\nsource_v4 = 10\n[next_hop]\nmac = \"zz\"\n[admin]\nlisten = \"x\"\n\
                [lifecycle]\ndrain_seconds = \"5\"\n[bgp]\nspeaker = \"quagga\"\n\
                [health]\npoll_interval_ms = true\n\
                [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = \"80\"\nprotocol = \"sctp\"\n\
                [[vip.backend]]\naddress = \"10.1.0.1\"\nstate = \"down\"\n";
    refused_with(
        text,
        &[
            ("7", 0, "expected a string"),
            ("\"two\"", 0, "expected an integer"),
            ("1.5", 0, "expected an integer"),
            ("10\n", 0, "put the value in double quotes"),
            ("\"zz\"", 0, "expected a MAC address"),
            ("\"x\"", 0, "expected an address:port"),
            ("\"5\"", 0, "expected an integer"),
            ("\"quagga\"", 0, "`none` or `bird`"),
            ("true", 0, "expected an integer"),
            ("\"80\"", 0, "expected an integer"),
            ("\"sctp\"", 0, "expected `tcp` or `udp`"),
            ("\"down\"", 0, "`active` or `draining`"),
        ],
    );
}

#[test]
fn unknown_and_missing_keys_are_reported_with_the_rest() {
    let text = format!(
        "{HEAD}[timeout]\nudp = 3\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\n\
         [[vip.backend]]\naddres = \"10.1.0.1\"\n[[vip.backend]]\naddress = \"10.1.0.2\"\n\
         weight = -1\n"
    );
    refused_with(
        &text,
        &[
            ("timeout", 0, "unknown field `timeout`"),
            ("[[vip]]", 0, "missing the required key `protocol`"),
            ("[[vip.backend]]", 0, "missing the required key `address`"),
            ("addres ", 0, "unknown field `addres`"),
            ("-1", 0, "weight must be between 0 and 10000 (got -1)"),
        ],
    );
}

#[test]
fn a_refused_value_causes_no_error_of_its_own() {
    // A refused io does not make the interface or the next hop required.
    refused_at(
        "[mux]\nname = \"t\"\n[dataplane]\nio = \"xdp\"\n",
        "\"xdp\"",
        "unknown variant `xdp`",
    );
    // A refused tunnel source does not count as missing for IPv4 backends.
    let text = web("", &backend("10.1.0.1")).replace("\"10.0.0.11\"", "\"10.0.0.311\"");
    refused_at(&text, "\"10.0.0.311\"", "expected an IP address");
    // A refused protocol does not make two VIPs the same service.
    let text = format!(
        "{}[[vip]]\nname = \"web2\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tpc\"\n{}",
        web("", &backend("10.1.0.1")),
        backend("10.1.0.2")
    );
    refused_at(&text, "\"tpc\"", "expected `tcp` or `udp`");
    // Two refused backend addresses are two errors, not also a duplicate; a refused VIP
    // address is not "the VIP itself" of its backends.
    let text = web(
        "",
        &format!("{}{}", backend("10.1.0.x"), backend("10.1.0.x")),
    )
    .replace("\"192.0.2.10\"", "\"192.0.2\"");
    refused_with(
        &text,
        &[
            ("\"192.0.2\"", 0, "expected an IP address"),
            ("\"10.1.0.x\"", 0, "expected an IP address"),
            ("\"10.1.0.x\"", 1, "expected an IP address"),
        ],
    );
    // A refused weight is not "out of range" as well.
    refused_at(
        &web(
            "",
            "[[vip.backend]]\naddress = \"10.1.0.1\"\nweight = \"max\"\n",
        ),
        "\"max\"",
        "expected an integer",
    );
}

#[test]
fn a_refused_name_is_shown_as_written() {
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.1\"\nweight = 20000\n",
    )
    .replace("name = \"web\"", "name = web");
    // `name = web` is a syntax error (a bare word): reported alone.
    assert_eq!(errors(&text).len(), 1);
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.1\"\nweight = 20000\n",
    )
    .replace("name = \"web\"", "name = 5");
    refused_with(
        &text,
        &[
            ("5\n", 0, "expected a string"),
            ("20000", 0, "vip 5 backend 10.1.0.1: weight must be"),
        ],
    );
}

#[test]
fn a_syntax_error_is_still_reported_alone() {
    let text = web("", &backend("10.1.0.300")) + "weight = = 3\n";
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, text.lines().count());
}

#[test]
fn hundreds_of_errors_are_all_reported() {
    let backends: String = (0..300)
        .map(|i| backend(&format!("10.1.{i}.999")))
        .collect();
    let text = web("", &backends);
    let errs = errors(&text);
    assert_eq!(errs.len(), 300);
    assert!(
        errs.iter()
            .all(|e| e.message.contains("expected an IP address"))
    );
    assert!(
        errs.windows(2).all(|w| w[0].line < w[1].line),
        "in file order"
    );
}

#[test]
fn a_file_with_refused_values_is_never_accepted_and_validate_agrees() {
    // What `parse` accepts, `validate` accepts too, with a fresh collector.
    let text = web("", &backend("10.1.0.1"));
    let cfg = valid(&text);
    assert_eq!(cfg.validate("t.toml", &text), Ok(()));
    assert!(parse(&web("", &backend("10.1.0.1:80")), "t.toml").is_err());
}

// ---- one test per semantic rule -----------------------------------------------------------

#[test]
fn duplicate_vip_name() {
    let mut text = web("", &backend("10.1.0.1"));
    text.push_str(
        "[[vip]]\nname = \"web\"\naddress = \"192.0.2.11\"\nport = 80\nprotocol = \"tcp\"\n",
    );
    text.push_str(&backend("10.1.0.1"));
    refused_at_nth(
        &text,
        "\"web\"",
        1,
        "the name is already used by the VIP at line 9",
    );
}

#[test]
fn duplicate_address_port_protocol() {
    let mut text = web("", &backend("10.1.0.1"));
    text.push_str(
        "[[vip]]\nname = \"web2\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n",
    );
    text.push_str(&backend("10.1.0.2"));
    refused_at_nth(
        &text,
        "\"192.0.2.10\"",
        1,
        "192.0.2.10:80/tcp is already served by vip \"web\" (line 9)",
    );
    // The same address and port with the other protocol is a different service.
    valid(&text.replace(
        "port = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"10.1.0.2\"",
        "port = 80\nprotocol = \"udp\"\n[[vip.backend]]\naddress = \"10.1.0.2\"",
    ));
    // IPv6 services are shown in brackets.
    let v6 = format!(
        "{HEAD}[[vip]]\nname = \"a\"\naddress = \"2001:db8::10\"\nport = 443\nprotocol = \"tcp\"\n{}\
         [[vip]]\nname = \"b\"\naddress = \"2001:DB8::10\"\nport = 443\nprotocol = \"tcp\"\n{}",
        backend("fd00:1::1"),
        backend("fd00:1::2")
    );
    refused_at(
        &v6,
        "\"2001:DB8::10\"",
        "[2001:db8::10]:443/tcp is already served by vip \"a\"",
    );
}

#[test]
fn duplicate_backend_within_a_vip() {
    let text = web(
        "",
        &format!(
            "{}{}{}",
            backend("10.1.0.1"),
            backend("10.1.0.2"),
            backend("10.1.0.1")
        ),
    );
    refused_at_nth(
        &text,
        "\"10.1.0.1\"",
        1,
        "listed twice in this VIP (first at line 14)",
    );
    // The same backend in two VIPs is fine.
    let mut text = web("", &backend("10.1.0.1"));
    text.push_str(
        "[[vip]]\nname = \"dns\"\naddress = \"192.0.2.10\"\nport = 53\nprotocol = \"udp\"\n",
    );
    text.push_str(&backend("10.1.0.1"));
    valid(&text);
}

#[test]
fn vip_without_backends() {
    let text = web("", "");
    refused_at(
        &text,
        "\"web\"",
        "vip \"web\": has no backends; add at least one [[vip.backend]]",
    );
}

#[test]
fn vip_whose_backends_all_take_no_new_flows_is_valid() {
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.1\"\nstate = \"draining\"\n\
         [[vip.backend]]\naddress = \"10.1.0.2\"\nweight = 0\n",
    );
    let c = valid(&text);
    let b = c.vips()[0].backends();
    assert!(!b[0].takes_new_flows());
    assert!(!b[1].takes_new_flows());
    assert_eq!(b[1].state(), BackendState::Active);
    assert_eq!(b[1].weight(), 0);
}

#[test]
fn more_than_65535_backends() {
    let mut backends = String::from("backend = [\n");
    for i in 0..=MAX_BACKENDS_PER_VIP as u32 {
        let [_, b, c, d] = i.to_be_bytes();
        backends.push_str(&format!("{{address=\"10.{b}.{c}.{d}\"}},\n"));
    }
    backends.push_str("]\n");
    let text = web("", &backends);
    refused_at(
        &text,
        "\"web\"",
        "has 65536 backends, more than the 65535 allowed",
    );
}

#[test]
fn table_size_not_prime() {
    let text = web("maglev_table_size = 65536\n", &backend("10.1.0.1"));
    refused_at(
        &text,
        "65536",
        "maglev_table_size must be a prime (got 65536); use 65537",
    );
    let text = web("maglev_table_size = 1\n", &backend("10.1.0.1"));
    refused_at(&text, "1\n[[vip", "must be a prime (got 1); use 2");
}

#[test]
fn table_size_smaller_than_backend_count() {
    let backends: String = (1..=4).map(|i| backend(&format!("10.1.0.{i}"))).collect();
    let text = web("maglev_table_size = 3\n", &backends);
    refused_at(
        &text,
        "3\n",
        "maglev_table_size (3) is smaller than the number of backends (4); use a prime at least 100 times the backend count, such as 401",
    );
    valid(&text.replace("= 3\n", "= 5\n"));
}

#[test]
fn table_size_too_large() {
    let text = web("maglev_table_size = 1000033\n", &backend("10.1.0.1"));
    refused_at(
        &text,
        "1000033",
        "maglev_table_size must be at most 1000003 (got 1000033)",
    );
    valid(&text.replace("1000033", "1000003"));
}

#[test]
fn tunnel_source_v4_missing_for_ipv4_backends() {
    let text = web(
        "",
        &format!("{}{}", backend("fd00:1::1"), backend("10.1.0.1")),
    )
    .replace("source_v4 = \"10.0.0.11\"\n", "");
    refused_at(
        &text,
        "\"10.1.0.1\"",
        "IPv4 backends need an IPv4 tunnel source, but [tunnel] source_v4 is not set; add source_v4",
    );
}

#[test]
fn tunnel_source_v6_missing_for_ipv6_backends() {
    let text = web(
        "",
        &format!(
            "{}{}{}",
            backend("10.1.0.1"),
            backend("fd00:1::1"),
            backend("fd00:1::2")
        ),
    )
    .replace("source_v6 = \"fd00::11\"\n", "");
    // Reported once, at the first backend that needs it.
    refused_at(
        &text,
        "\"fd00:1::1\"",
        "IPv6 backends need an IPv6 tunnel source",
    );
    // Only the families in use need a source.
    valid(&web("", &backend("10.1.0.1")).replace("source_v6 = \"fd00::11\"\n", ""));
}

#[test]
fn tunnel_source_of_the_wrong_family() {
    let text = web("", &backend("10.1.0.1")).replace("\"10.0.0.11\"", "\"fd00::12\"");
    refused_at(
        &text,
        "\"fd00::12\"",
        "[tunnel]: source_v4 is fd00::12, an IPv6 address; set source_v4 to this MUX's IPv4 address and put fd00::12 in source_v6",
    );
    let text = web("", &backend("fd00:1::1")).replace("\"fd00::11\"", "\"10.0.0.12\"");
    refused_at(
        &text,
        "\"10.0.0.12\"",
        "[tunnel]: source_v6 is 10.0.0.12, an IPv4 address",
    );
}

#[test]
fn tunnel_source_must_be_unicast() {
    let text = web("", &backend("10.1.0.1")).replace("\"10.0.0.11\"", "\"0.0.0.0\"");
    refused_at(
        &text,
        "\"0.0.0.0\"",
        "[tunnel]: source_v4 0.0.0.0 is unspecified",
    );
}

#[test]
fn port_zero_and_out_of_range() {
    let text = web("", &backend("10.1.0.1")).replace("port = 80", "port = 0");
    refused_at(
        &text,
        "0\nprotocol",
        "vip \"web\": port must be between 1 and 65535 (got 0); use the port clients connect to",
    );
    let text = web("", &backend("10.1.0.1")).replace("port = 80", "port = 65536");
    refused_at(&text, "65536", "(got 65536)");
    let c = valid(&web("", &backend("10.1.0.1")).replace("port = 80", "port = 65535"));
    assert_eq!(c.vips()[0].port(), 65535);
}

#[test]
fn unusable_vip_addresses() {
    for (addr, problem) in [
        ("0.0.0.0", "is unspecified"),
        ("::", "is unspecified"),
        ("239.1.1.1", "is a multicast address"),
        ("ff02::1", "is a multicast address"),
        ("255.255.255.255", "is the broadcast address"),
        ("127.0.0.1", "is a loopback address"),
        ("::1", "is a loopback address"),
        (
            "::ffff:192.0.2.10",
            "is an IPv4-mapped IPv6 address; write it as plain IPv4: \"192.0.2.10\"",
        ),
    ] {
        let text = web("", &backend("10.1.0.1")).replace("\"192.0.2.10\"", &format!("\"{addr}\""));
        refused_at(
            &text,
            &format!("\"{addr}\""),
            &format!("vip \"web\": address {addr} {problem}"),
        );
    }
}

#[test]
fn unusable_backend_addresses_including_loopback() {
    for (addr, problem) in [
        ("127.0.0.2", "is a loopback address"),
        ("::1", "is a loopback address"),
        ("0.0.0.0", "is unspecified"),
        ("224.0.0.5", "is a multicast address"),
        ("255.255.255.255", "is the broadcast address"),
    ] {
        let text = web("", &backend(addr));
        refused_at(
            &text,
            &format!("\"{addr}\""),
            &format!("vip \"web\" backend {addr}: the address {problem}; use the routable address"),
        );
    }
    let text = web("", &backend("192.0.2.10"));
    refused_at_nth(&text, "\"192.0.2.10\"", 1, "the backend is the VIP itself");
}

#[test]
fn interface_required_unless_mem() {
    let text =
        "[mux]\nname = \"t\"\n[dataplane]\nio = \"afpacket\"\n[next_hop]\naddress = \"10.0.0.1\"\n";
    refused_at(
        text,
        "[dataplane]",
        "[dataplane]: interface is required with io = \"afpacket\"; add interface = \"eth0\"",
    );
    // No [dataplane] at all: io defaults to afpacket, the error points at the file's start.
    let text = "[mux]\nname = \"t\"\n[next_hop]\naddress = \"10.0.0.1\"\n";
    refused_at(text, "[mux]", "interface is required");
    let text = "[mux]\nname = \"t\"\n[dataplane]\nio = \"afxdp\"\ninterface = \"eth0\"\n[next_hop]\naddress = \"10.0.0.1\"\n";
    assert_eq!(valid(text).dataplane().interface(), Some("eth0"));
    let bad = text.replace("\"eth0\"", "\"eth0/1\"");
    refused_at(&bad, "\"eth0/1\"", "is not a valid interface name");
}

#[test]
fn next_hop_needs_mac_or_address_unless_mem() {
    let base = "[mux]\nname = \"t\"\n[dataplane]\ninterface = \"eth0\"\n";
    let text = format!("{base}[next_hop]\nsource_mac = \"02:00:00:00:00:11\"\n");
    refused_at(
        &text,
        "[next_hop]",
        "[next_hop]: neither mac nor address is set",
    );
    refused_at(base, "[mux]", "neither mac nor address is set");
    let pinned = valid(&format!("{base}[next_hop]\nmac = \"02:00:00:00:00:fe\"\n"));
    assert_eq!(pinned.next_hop().mac(), Some([2, 0, 0, 0, 0, 0xfe]));
    assert_eq!(pinned.next_hop().address(), None);
    valid(&format!("{base}[next_hop]\naddress = \"fe80::1\"\n"));
    valid("[mux]\nname = \"t\"\n[dataplane]\nio = \"mem\"\n");
}

#[test]
fn next_hop_values_must_be_unicast() {
    let text = format!("{HEAD}[next_hop]\nmac = \"01:00:5e:00:00:01\"\n");
    refused_at(
        &text,
        "\"01:",
        "[next_hop]: mac 01:00:5e:00:00:01 is a multicast or broadcast MAC",
    );
    let text = format!("{HEAD}[next_hop]\nsource_mac = \"00:00:00:00:00:00\"\n");
    refused_at(
        &text,
        "\"00:",
        "[next_hop]: source_mac 00:00:00:00:00:00 is all zeros",
    );
    let text = format!("{HEAD}[next_hop]\naddress = \"255.255.255.255\"\n");
    refused_at(
        &text,
        "\"255",
        "[next_hop]: address 255.255.255.255 is the broadcast address",
    );
}

#[test]
fn dataplane_ranges() {
    for (key, bad, range) in [
        ("workers", "0", "between 1 and 128"),
        ("workers", "129", "between 1 and 128"),
        ("flow_table_capacity", "1023", "between 1024 and 268435456"),
        (
            "flow_table_capacity",
            "268435457",
            "between 1024 and 268435456",
        ),
        ("burst_size", "0", "between 1 and 256"),
        ("burst_size", "257", "between 1 and 256"),
        ("mtu", "1279", "between 1280 and 9216"),
        ("mtu", "9217", "between 1280 and 9216"),
        ("idle_poll_us", "-1", "between 0 and 100000"),
        ("idle_poll_us", "100001", "between 0 and 100000"),
        ("idle_sleep_max_us", "49", "between 50 and 10000"),
        ("idle_sleep_max_us", "10001", "between 50 and 10000"),
    ] {
        let text = HEAD.replace("io = \"mem\"\n", &format!("io = \"mem\"\n{key} = {bad}\n"));
        refused_at(
            &text,
            &format!("{bad}\n"),
            &format!("[dataplane]: {key} must be {range} (got {bad})"),
        );
    }
    let edges = HEAD.replace(
        "io = \"mem\"\n",
        "io = \"mem\"\nworkers = 128\nflow_table_capacity = 268435456\nburst_size = 256\nmtu = 9216\n",
    );
    let dp = valid(&edges).dataplane().clone();
    assert_eq!(
        (
            dp.workers(),
            dp.flow_table_capacity(),
            dp.burst_size(),
            dp.mtu()
        ),
        (128, 1 << 28, 256, 9216)
    );
    let idle = HEAD.replace(
        "io = \"mem\"\n",
        "io = \"mem\"\nidle = \"busy-poll\"\nidle_poll_us = 0\nidle_sleep_max_us = 10000\n",
    );
    let dp = valid(&idle).dataplane().clone();
    assert_eq!(
        (dp.idle(), dp.idle_poll_us(), dp.idle_sleep_max_us()),
        (IdleMode::BusyPoll, 0, 10_000)
    );
    let text = HEAD.replace("io = \"mem\"\n", "io = \"mem\"\nidle = \"spin\"\n");
    refused_at(&text, "\"spin\"", "unknown variant `spin`");
}

#[test]
fn timeout_ranges_global_and_per_vip() {
    for key in ["tcp_syn", "tcp_established", "tcp_closing", "udp"] {
        let text = format!("{HEAD}[timeouts]\n{key} = 86401\n");
        refused_at(
            &text,
            "86401",
            &format!("[timeouts]: {key} must be between 1 and 86400 (got 86401)"),
        );
    }
    let text = web("timeouts = { udp = 0 }\n", &backend("10.1.0.1"));
    refused_at(
        &text,
        "0 }",
        "vip \"web\" timeouts: udp must be between 1 and 86400 (got 0)",
    );
    let text = web("timeouts = { udpp = 3 }\n", &backend("10.1.0.1"));
    refused_at(&text, "udpp", "unknown field `udpp`");
}

#[test]
fn failed_backend_grace_range_global_and_per_vip() {
    let text = format!("{HEAD}[timeouts]\nfailed_backend_grace = 3601\n");
    refused_at(
        &text,
        "3601",
        "[timeouts]: failed_backend_grace must be between 0 and 3600 (got 3601); give the \
         seconds a failed backend keeps its established flows",
    );
    let text = web(
        "timeouts = { failed_backend_grace = -1 }\n",
        &backend("10.1.0.1"),
    );
    refused_at(
        &text,
        "-1",
        "vip \"web\" timeouts: failed_backend_grace must be between 0 and 3600 (got -1)",
    );
    // 0 (re-hash at once, as before) and 3600 are allowed; the idle timeouts keep 1..=86400.
    let c = valid(&format!(
        "{HEAD}[timeouts]\nfailed_backend_grace = 0\n{}",
        &web(
            "timeouts = { failed_backend_grace = 3600 }\n",
            &backend("10.1.0.1")
        )[HEAD.len()..]
    ));
    assert_eq!(c.timeouts().failed_backend_grace, 0);
    assert_eq!(
        c.vips()[0].timeouts(&c.timeouts()).failed_backend_grace,
        3600
    );
}

#[test]
fn reply_rate_ranges() {
    for (key, bad, range) in [
        ("icmp_rate", "-1", "between 0 and 1000000"),
        ("icmp_rate", "1000001", "between 0 and 1000000"),
        ("icmp_burst", "0", "between 1 and 1000000"),
        ("drain_reset_rate", "1000001", "between 0 and 1000000"),
        ("drain_reset_burst", "0", "between 1 and 1000000"),
    ] {
        let text = HEAD.replace("io = \"mem\"\n", &format!("io = \"mem\"\n{key} = {bad}\n"));
        refused_at(
            &text,
            &format!("{bad}\n"),
            &format!("[dataplane]: {key} must be {range} (got {bad})"),
        );
    }
    let edges = HEAD.replace(
        "io = \"mem\"\n",
        "io = \"mem\"\nicmp_rate = 0\nicmp_burst = 1\ndrain_reset_rate = 1000000\n\
         drain_reset_burst = 1000000\n",
    );
    let dp = valid(&edges).dataplane().clone();
    assert_eq!(
        (
            dp.icmp_rate(),
            dp.icmp_burst(),
            dp.drain_reset_rate(),
            dp.drain_reset_burst()
        ),
        (0, 1, 1_000_000, 1_000_000)
    );
}

#[test]
fn second_chance_keys() {
    for (bad, range) in [
        ("-1", "between 0 and 86400"),
        ("86401", "between 0 and 86400"),
    ] {
        let text = HEAD.replace(
            "io = \"mem\"\n",
            &format!("io = \"mem\"\nsecond_chance_window_seconds = {bad}\n"),
        );
        refused_at(
            &text,
            &format!("{bad}\n"),
            &format!("[dataplane]: second_chance_window_seconds must be {range} (got {bad})"),
        );
    }
    let text = HEAD.replace(
        "io = \"mem\"\n",
        "io = \"mem\"\nsecond_chance_state = \" \"\n",
    );
    refused_at(
        &text,
        "\" \"\n",
        "[dataplane]: second_chance_state is empty",
    );
    let dp = valid(HEAD).dataplane().clone();
    assert_eq!(dp.second_chance_window(), Duration::from_secs(120));
    assert_eq!(dp.second_chance_state(), None);
    let text = HEAD.replace(
        "io = \"mem\"\n",
        "io = \"mem\"\nsecond_chance_window_seconds = 0\n\
         second_chance_state = \"/var/lib/mux/sc.json\"\n",
    );
    let dp = valid(&text).dataplane().clone();
    assert_eq!(dp.second_chance_window(), Duration::ZERO);
    assert_eq!(
        dp.second_chance_state(),
        Some(std::path::Path::new("/var/lib/mux/sc.json"))
    );
}

// ---- drain deadlines ----------------------------------------------------------------------

fn draining(extra: &str) -> String {
    web(
        "",
        &format!("[[vip.backend]]\naddress = \"10.1.0.7\"\nstate = \"draining\"\n{extra}"),
    )
}

#[test]
fn drain_deadline_is_an_instant() {
    use std::time::{Duration, SystemTime};
    let at = |text: &str| valid(text).vips()[0].backends()[0].drain_deadline();
    let unix = |s: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    // 2026-12-05T10:00:00Z is 1 796 464 800 s after the epoch.
    assert_eq!(
        at(&draining("drain_deadline = 2026-12-05T10:00:00Z\n")),
        unix(1_796_464_800)
    );
    // An offset names the same instant; fractions of a second are kept to the millisecond.
    assert_eq!(
        at(&draining("drain_deadline = 2026-12-05T11:30:00+01:30\n")),
        unix(1_796_464_800)
    );
    assert_eq!(
        at(&draining(
            "drain_deadline = 2026-12-05T10:00:00.250-00:00\n"
        )),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_464_800_250))
    );
    // Leap years and the epoch itself.
    assert_eq!(
        at(&draining("drain_deadline = 2024-02-29T00:00:00Z\n")),
        unix(1_709_164_800)
    );
    assert_eq!(
        at(&draining("drain_deadline = 1970-01-01T00:00:00Z\n")),
        unix(0)
    );
    // A deadline in the past is valid: the backend's flows are cut as soon as it is loaded.
    assert_eq!(
        at(&draining("drain_deadline = 2001-09-09T01:46:40Z\n")),
        unix(1_000_000_000)
    );
}

#[test]
fn drain_deadline_mistakes() {
    refused_at(
        &draining("drain_deadline = 2026-12-05T10:00:00\n"),
        "2026",
        "vip \"web\" backend 10.1.0.7: drain_deadline must be an offset date-time, a moment \
         every MUX agrees on (got 2026-12-05T10:00:00); add Z for UTC",
    );
    refused_at(
        &draining("drain_deadline = 2026-12-05\n"),
        "2026",
        "drain_deadline must be an offset date-time",
    );
    refused_at(
        &draining("drain_deadline = 1969-12-31T23:59:59Z\n"),
        "1969",
        "drain_deadline is before 1970",
    );
    refused_at(
        &draining("drain_deadline = \"2026-12-05T10:00:00Z\"\n"),
        "\"2026",
        "expected a TOML datetime",
    );
    // Only a draining backend has a deadline.
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.7\"\ndrain_deadline = 2026-12-05T10:00:00Z\n",
    );
    refused_at(
        &text,
        "2026",
        "vip \"web\" backend 10.1.0.7: drain_deadline applies only to a draining backend, and \
         this one is \"active\"; add state = \"draining\" or remove drain_deadline",
    );
}

#[test]
fn weight_range() {
    let text = web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.7\"\nweight = 20000\n",
    );
    refused_at(
        &text,
        "20000",
        "vip \"web\" backend 10.1.0.7: weight must be between 0 and 10000 (got 20000); lower it or set state = \"draining\"",
    );
    let text = web("", "[[vip.backend]]\naddress = \"10.1.0.7\"\nweight = -1\n");
    refused_at(&text, "-1", "(got -1); use 0 to stop new flows");
    let c = valid(&web(
        "",
        "[[vip.backend]]\naddress = \"10.1.0.7\"\nweight = 10000\n",
    ));
    assert_eq!(c.vips()[0].backends()[0].weight(), 10000);
}

#[test]
fn names_must_suit_logs_and_metrics() {
    let text = HEAD.replace("name = \"t\"", "name = \"\"");
    refused_at(
        &text,
        "\"\"",
        "[mux]: name \"\" cannot be used in logs and metrics",
    );
    let text = web("", &backend("10.1.0.1")).replace("\"web\"", "\"my web\"");
    refused_at(
        &text,
        "\"my web\"",
        "vip \"my web\": name \"my web\" cannot be used",
    );
}

// ---- defaults and overrides -------------------------------------------------------------

#[test]
fn defaults_apply_when_optional_keys_are_absent() {
    let text = "[mux]\nname = \"t\"\n[dataplane]\ninterface = \"eth0\"\n[tunnel]\n\
                source_v4 = \"10.0.0.11\"\n[next_hop]\naddress = \"10.0.0.1\"\n\
                [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"udp\"\n\
                [[vip.backend]]\naddress = \"10.1.0.1\"\n";
    let c = valid(text);
    let dp = c.dataplane();
    assert_eq!(dp.io(), IoKind::Afpacket);
    assert_eq!(
        (dp.idle(), dp.idle_poll_us(), dp.idle_sleep_max_us()),
        (IdleMode::Adaptive, 100, 1000)
    );
    assert_eq!(
        (
            dp.workers(),
            dp.flow_table_capacity(),
            dp.burst_size(),
            dp.mtu()
        ),
        (1, 1_048_576, 32, 1500)
    );
    assert_eq!(
        c.admin().listen(),
        "127.0.0.1:9100".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.next_hop().source_mac(), None);
    assert_eq!(c.tunnel().source_v6(), None);
    assert_eq!(
        c.timeouts(),
        Timeouts {
            tcp_syn: 5,
            tcp_established: 300,
            tcp_closing: 10,
            udp: 30,
            failed_backend_grace: 5,
        }
    );
    assert_eq!(
        (
            dp.icmp_rate(),
            dp.icmp_burst(),
            dp.drain_reset_rate(),
            dp.drain_reset_burst()
        ),
        (1000, 50, 10_000, 1000)
    );
    let vip = &c.vips()[0];
    assert_eq!(vip.table_size(), 65_537);
    assert_eq!(vip.protocol(), Protocol::Udp);
    assert_eq!(vip.protocol().number(), 17);
    assert_eq!(Protocol::Tcp.number(), 6);
    assert_eq!(vip.timeouts(&c.timeouts()), c.timeouts());
    let b = &vip.backends()[0];
    assert_eq!((b.weight(), b.state()), (100, BackendState::Active));
    assert_eq!(b.drain_deadline(), None);
    assert!(b.takes_new_flows());
}

#[test]
fn per_vip_timeout_overrides_merge_over_the_global_ones() {
    let text = format!(
        "{HEAD}[timeouts]\ntcp_syn = 3\nudp = 60\nfailed_backend_grace = 30\n\
         [[vip]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n\
         timeouts = {{ tcp_established = 600, udp = 5, failed_backend_grace = 0 }}\n{}",
        backend("10.1.0.1")
    );
    let c = valid(&text);
    let global = c.timeouts();
    assert_eq!(
        global,
        Timeouts {
            tcp_syn: 3,
            tcp_established: 300,
            tcp_closing: 10,
            udp: 60,
            failed_backend_grace: 30,
        }
    );
    assert_eq!(
        c.vips()[0].timeouts(&global),
        Timeouts {
            tcp_syn: 3,
            tcp_established: 600,
            tcp_closing: 10,
            udp: 5,
            failed_backend_grace: 0,
        }
    );
    // The table form works too.
    let table_form = text.replace(
        "timeouts = { tcp_established = 600, udp = 5, failed_backend_grace = 0 }\n[[vip.backend]]",
        "[vip.timeouts]\ntcp_established = 600\nudp = 5\nfailed_backend_grace = 0\n[[vip.backend]]",
    );
    assert_eq!(valid(&table_form), c);
}

#[test]
fn admin_listen_and_display_names() {
    let c = valid(&format!("{HEAD}[admin]\nlisten = \"[::1]:9200\"\n"));
    assert_eq!(
        c.admin().listen(),
        "[::1]:9200".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(IoKind::Afxdp.to_string(), "afxdp");
    assert_eq!(BackendState::Draining.to_string(), "draining");
    assert_eq!(Protocol::Udp.to_string(), "udp");
}

#[test]
fn lifecycle_and_bgp_defaults_and_rules() {
    let c = valid(HEAD);
    assert_eq!(c.lifecycle().drain_seconds(), DEFAULT_DRAIN_SECONDS);
    assert_eq!(c.bgp().speaker(), Speaker::None);
    assert_eq!(c.bgp().bird_socket(), DEFAULT_BIRD_SOCKET);
    let c = valid(&format!(
        "{HEAD}[lifecycle]\ndrain_seconds = 0\n[bgp]\nspeaker = \"bird\"\nbird_include = \"/etc/bird/mux.conf\"\n"
    ));
    assert_eq!(c.lifecycle().drain_seconds(), 0);
    assert_eq!(c.bgp().speaker(), Speaker::Bird);
    assert_eq!(c.bgp().bird_include(), Some("/etc/bird/mux.conf"));

    let text = format!(
        "{HEAD}[lifecycle]\ndrain_seconds = 7200\n[bgp]\nspeaker = \"bird\"\nbird_socket = \"bird.ctl\"\n"
    );
    let errors = parse(&text, "t.toml").unwrap_err();
    let messages: Vec<_> = errors.errors().iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{errors}");
    assert!(messages[0].contains("drain_seconds must be between 0 and 3600"));
    assert!(messages[1].contains("needs bird_include"));
    assert!(messages[2].contains("bird_socket must be an absolute path"));
}

#[test]
fn cpus_pin_one_worker_each() {
    let c = valid(&HEAD.replace("io = \"mem\"", "io = \"mem\"\nworkers = 2\ncpus = [1, 0]"));
    assert_eq!(c.dataplane().cpus(), Some(vec![1, 0]));
    assert_eq!(valid(HEAD).dataplane().cpus(), None);
    let bad = HEAD.replace("io = \"mem\"", "io = \"mem\"\nworkers = 2\ncpus = [1]");
    let errors = parse(&bad, "t.toml").unwrap_err();
    assert!(
        errors.to_string().contains("cpus must list one CPU number"),
        "{errors}"
    );
}

// ---- [health] ---------------------------------------------------------------------------

fn health(body: &str) -> String {
    format!("{HEAD}[health]\n{body}")
}

fn agent(address: &str) -> String {
    format!("[[health.agent]]\naddress = \"{address}\"\n")
}

#[test]
fn health_is_optional_and_defaults_follow_the_poll_interval() {
    let c = valid(HEAD);
    assert!(c.health().agents().is_empty());
    assert_eq!(c.health().poll_interval(), Duration::from_millis(1000));
    assert_eq!(c.health().timeout(), Duration::from_millis(500));
    assert_eq!(c.health().stale_after(), Duration::from_millis(3000));

    let c = valid(&health(&format!(
        "poll_interval_ms = 200\n{}",
        agent("10.0.21.2:9200")
    )));
    let h = c.health();
    assert_eq!(
        h.agents(),
        ["10.0.21.2:9200".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(h.poll_interval(), Duration::from_millis(200));
    // The default timeout never exceeds a short interval; stale is three intervals.
    assert_eq!(h.timeout(), Duration::from_millis(200));
    assert_eq!(h.stale_after(), Duration::from_millis(600));

    let c = valid(&health(&format!(
        "poll_interval_ms = 500\ntimeout_ms = 400\nstale_after_ms = 3000\n{}{}",
        agent("10.0.21.2:9200"),
        agent("[fd00:21::3]:9200")
    )));
    let h = c.health();
    assert_eq!(
        (h.poll_interval(), h.timeout(), h.stale_after()),
        (
            Duration::from_millis(500),
            Duration::from_millis(400),
            Duration::from_millis(3000)
        )
    );
    assert_eq!(h.agents().len(), 2);
    // An agent on the MUX's own host (loopback) is fine.
    valid(&health(&agent("127.0.0.1:9200")));
}

#[test]
fn health_ranges() {
    for (key, bad, range) in [
        ("poll_interval_ms", "99", "between 100 and 60000"),
        ("poll_interval_ms", "60001", "between 100 and 60000"),
        ("timeout_ms", "9", "between 10 and 60000"),
        ("timeout_ms", "60001", "between 10 and 60000"),
        ("stale_after_ms", "99", "between 100 and 600000"),
        ("stale_after_ms", "600001", "between 100 and 600000"),
    ] {
        let text = health(&format!("{key} = {bad}\n"));
        refused_at(
            &text,
            &format!("{bad}\n"),
            &format!("[health]: {key} must be {range} (got {bad})"),
        );
    }
    let edges = health("poll_interval_ms = 60000\ntimeout_ms = 60000\nstale_after_ms = 600000\n");
    let c = valid(&edges);
    assert_eq!(c.health().stale_after(), Duration::from_millis(600_000));
}

#[test]
fn health_timeout_must_fit_the_poll_interval() {
    let text = health("poll_interval_ms = 500\ntimeout_ms = 600\n");
    refused_at(
        &text,
        "600",
        "[health]: timeout_ms (600) is longer than poll_interval_ms (500)",
    );
    // Against the default interval (1000) too.
    let text = health("timeout_ms = 1500\n");
    refused_at(&text, "1500", "longer than poll_interval_ms (1000)");
    valid(&health("poll_interval_ms = 500\ntimeout_ms = 500\n"));
}

#[test]
fn health_stale_after_is_at_least_one_poll_interval() {
    let text = health("poll_interval_ms = 2000\nstale_after_ms = 1500\n");
    refused_at(
        &text,
        "1500",
        "[health]: stale_after_ms (1500) is shorter than poll_interval_ms (2000)",
    );
    let text = health("stale_after_ms = 500\n");
    refused_at(
        &text,
        "500",
        "use at least 1000, better three intervals (3000)",
    );
    valid(&health("poll_interval_ms = 2000\nstale_after_ms = 2000\n"));
}

#[test]
fn health_agent_addresses() {
    for (address, problem) in [
        ("10.0.21.2:0", "has port 0"),
        ("0.0.0.0:9200", "is unspecified"),
        ("[::]:9200", "is unspecified"),
        ("224.0.0.1:9200", "is a multicast address"),
        ("255.255.255.255:9200", "is the broadcast address"),
        ("[::ffff:10.0.21.2]:9200", "IPv4-mapped"),
    ] {
        let text = health(&agent(address));
        refused_at(
            &text,
            &format!("\"{address}\""),
            "[[health.agent]]: address ",
        );
        let errs = errors(&text);
        assert!(errs[0].message.contains(problem), "{}", errs[0]);
        assert!(errs[0].message.contains("admin endpoint"), "{}", errs[0]);
    }
    // Not an ip:port at all: refused while parsing, at the value.
    let text = health(&agent("host1:9200"));
    refused_at(&text, "\"host1", "expected an address:port");
    let text = health("[[health.agent]]\n");
    refused_at(&text, "[[health.agent]]", "missing");
    let text = health("[[health.agent]]\naddress = \"10.0.21.2:9200\"\nport = 1\n");
    refused_at(&text, "port", "unknown field `port`");
}

#[test]
fn health_agents_are_listed_once() {
    let text = health(&format!(
        "{}{}{}",
        agent("10.0.21.2:9200"),
        agent("10.0.21.3:9200"),
        agent("10.0.21.2:9200")
    ));
    refused_at_nth(
        &text,
        "\"10.0.21.2:9200\"",
        1,
        "[[health.agent]]: 10.0.21.2:9200 is listed twice (first at line",
    );
    // The same IP on another port is another agent.
    valid(&health(&format!(
        "{}{}",
        agent("10.0.21.2:9200"),
        agent("10.0.21.2:9201")
    )));
}

#[test]
fn health_errors_are_all_reported() {
    let text = health(&format!(
        "poll_interval_ms = 50\ntimeout_ms = 5\n{}{}",
        agent("10.0.21.2:0"),
        agent("10.0.21.2:0")
    ));
    let errors = parse(&text, "t.toml").unwrap_err();
    let messages: Vec<_> = errors.errors().iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 5, "{errors}");
    assert!(messages[0].contains("poll_interval_ms must be between"));
    assert!(messages[1].contains("timeout_ms must be between"));
    assert!(messages[2].contains("has port 0"));
    assert!(messages[3].contains("has port 0"));
    assert!(messages[4].contains("listed twice"));
}

/// A DPDK MUX's head: `[dataplane] io = "dpdk"` and the given `[dpdk]` keys.
fn dpdk_config(dataplane_extra: &str, dpdk: &str) -> String {
    format!(
        "[mux]\nname = \"t\"\n[dataplane]\nio = \"dpdk\"\n{dataplane_extra}[next_hop]\n\
         address = \"10.0.0.1\"\n[dpdk]\n{dpdk}"
    )
}

#[test]
fn dpdk_section_defaults_and_values() {
    let c = valid(&dpdk_config(
        "interface = \"mux0\"\n",
        "device = \"0000:03:00.0\"\n",
    ));
    let d = c.dpdk();
    assert_eq!(d.device(), Some("0000:03:00.0"));
    assert!(d.hugepages());
    assert_eq!(
        (d.memory_mb(), d.mbufs(), d.mbuf_cache()),
        (512, 16384, 256)
    );
    assert_eq!((d.rx_descriptors(), d.tx_descriptors()), (1024, 1024));
    assert_eq!(d.file_prefix("t"), "mux-t");
    let c = valid(&dpdk_config(
        "",
        "device = \"net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap\"\n\
         exception_device = \"net_null1\"\nhugepages = false\nmemory_mb = 256\n\
         mbufs = 8192\nmbuf_cache = 128\nrx_descriptors = 512\ntx_descriptors = 512\n\
         file_prefix = \"lab-mux1\"\neal_args = [\"--log-level=notice\"]\n",
    ));
    let d = c.dpdk();
    assert!(!d.hugepages());
    assert_eq!(d.exception_device(), Some("net_null1"));
    assert_eq!(d.file_prefix("t"), "lab-mux1");
    assert_eq!(d.eal_args(), vec!["--log-level=notice".to_string()]);
}

#[test]
fn dpdk_idle_sleep_us_is_refused_with_where_it_went() {
    refused_at(
        &dpdk_config(
            "interface = \"mux0\"\n",
            "device = \"net_null0\"\nidle_sleep_us = 200\n",
        ),
        "200",
        "[dpdk]: idle_sleep_us is gone: every I/O backend now follows [dataplane] idle",
    );
}

#[test]
fn dpdk_mistakes_are_refused_with_their_line() {
    let text = "[mux]\nname = \"t\"\n[dataplane]\nio = \"dpdk\"\ninterface = \"mux0\"\n\
                [next_hop]\naddress = \"10.0.0.1\"\n";
    refused_at(
        text,
        "[dataplane]",
        "[dpdk]: device is required with io = \"dpdk\"",
    );
    refused_at(
        &dpdk_config("", "device = \"0000:03:00.0\"\n"),
        "[dataplane]",
        "interface is required with io = \"dpdk\": it names the TAP interface",
    );
    refused_at(
        &dpdk_config("interface = \"mux0\"\n", "device = \"eth1\"\n"),
        "\"eth1\"",
        "is neither a PCI address",
    );
    refused_at(
        &dpdk_config(
            "interface = \"mux0\"\n",
            "device = \"net_null0\"\nmbufs = 2048\n",
        ),
        "2048",
        "raise mbufs to at least",
    );
    refused_at(
        &dpdk_config(
            "interface = \"mux0\"\n",
            "device = \"net_null0\"\nmbuf_cache = 600\n",
        ),
        "600",
        "mbuf_cache must be between 0 and 512",
    );
    refused_at(
        &dpdk_config(
            "interface = \"mux0\"\n",
            "device = \"net_null0\"\nfile_prefix = \"a b\"\n",
        ),
        "\"a b\"",
        "file_prefix",
    );
    refused_at(
        &dpdk_config(
            "",
            "device = \"net_null0\"\nexception_device = \"net_null0,size=64\"\n",
        ),
        "\"net_null0,size=64\"",
        "exception_device must be another device",
    );
    // Without io = "dpdk" the section is not checked (switching io keeps the file valid).
    valid(
        "[mux]\nname = \"t\"\n[dataplane]\ninterface = \"eth0\"\n[next_hop]\n\
         address = \"10.0.0.1\"\n[dpdk]\ndevice = \"eth1\"\n",
    );
}

// ---- load-aware weights -----------------------------------------------------------------

#[test]
fn load_aware_is_off_by_default_and_resolves_its_defaults() {
    let cfg = valid(&web("", &backend("10.1.0.1")));
    assert_eq!(cfg.vips()[0].load_aware(), None);
    let cfg = valid(&web(
        "[vip.load_aware]\nsignal = \"bytes\"\nmax_percent = 200\n",
        &backend("10.1.0.1"),
    ));
    let l = cfg.vips()[0].load_aware().unwrap();
    assert_eq!(l.signal, super::LoadSignal::Bytes);
    assert_eq!((l.min_factor, l.max_factor), (0.25, 2.0));
    assert_eq!((l.max_step, l.hysteresis), (0.25, 0.1));
    assert_eq!(l.interval, std::time::Duration::from_secs(10));
}

#[test]
fn load_aware_ranges_are_checked_with_a_fix() {
    refused_at(
        &web("[vip.load_aware]\nmin_percent = 0\n", &backend("10.1.0.1")),
        "0\n[[vip.backend",
        "min_percent must be between 1 and 100 (got 0); the smallest effective weight",
    );
    refused_at(
        &web(
            "[vip.load_aware]\nsignal = \"latency\"\n",
            &backend("10.1.0.1"),
        ),
        "\"latency\"",
        "connections",
    );
}

#[test]
fn flow_log_is_absent_by_default_and_reads_its_defaults_and_values() {
    assert!(valid(HEAD).flow_log().is_none());
    let cfg = valid(&format!(
        "{HEAD}[flow_log]\npath = \"/var/log/mux/flows.jsonl\"\n"
    ));
    let f = cfg.flow_log().expect("present");
    assert_eq!(f.path(), std::path::Path::new("/var/log/mux/flows.jsonl"));
    assert_eq!(
        (f.sample(), f.max_bytes(), f.keep(), f.queue_depth()),
        (
            DEFAULT_FLOW_LOG_SAMPLE,
            DEFAULT_FLOW_LOG_MAX_BYTES,
            DEFAULT_FLOW_LOG_KEEP,
            DEFAULT_FLOW_LOG_QUEUE_DEPTH
        )
    );
    let cfg = valid(&format!(
        "{HEAD}[flow_log]\npath = \"/l/f.jsonl\"\nsample = 100\nmax_bytes = 1048576\nkeep = 0\n\
         queue_depth = 16\n"
    ));
    let f = cfg.flow_log().unwrap();
    assert_eq!(
        (f.sample(), f.max_bytes(), f.keep(), f.queue_depth()),
        (100, 1 << 20, 0, 16)
    );
}

#[test]
fn flow_log_mistakes_are_refused_with_their_line() {
    let text = format!("{HEAD}[flow_log]\npath = \"flows.jsonl\"\n");
    refused_at(
        &text,
        "\"flows.jsonl\"",
        "[flow_log]: path must be an absolute file name",
    );
    for (key, value, needle) in [
        ("sample", "0", "sample must be between 1 and 1000000"),
        ("max_bytes", "100", "max_bytes must be between 4096"),
        ("keep", "-1", "keep must be between 0 and 1000"),
        (
            "queue_depth",
            "0",
            "queue_depth must be between 1 and 1048576",
        ),
    ] {
        let text = format!("{HEAD}[flow_log]\npath = \"/l/f\"\n{key} = {value}\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let (line, _) = position(&text, &format!("{key} = {value}"), 0);
        assert_eq!((errs[0].line, errs[0].column), (line, key.len() + 4));
        assert!(errs[0].message.contains(needle), "{}", errs[0]);
    }
    // The path is required; an unknown key is a typo.
    let errs = errors(&format!("{HEAD}[flow_log]\nsampel = 2\n"));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.message.contains("path")), "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.message.contains("sampel")),
        "{errs:#?}"
    );
}

#[test]
fn a_flow_log_reload_needs_a_restart_only_to_turn_it_on_or_off_or_resize_its_rings() {
    let with = |extra: &str| valid(&format!("{HEAD}[flow_log]\npath = \"/l/f\"\n{extra}"));
    let (a, b, c) = (
        with(""),
        with("sample = 10\nkeep = 2\n"),
        with("queue_depth = 8\n"),
    );
    let (a, b, c) = (a.flow_log(), b.flow_log(), c.flow_log());
    assert_eq!(FlowLog::restart_needed(None, None), None);
    assert_eq!(FlowLog::restart_needed(a, b), None);
    for (old, new, needle) in [
        (None, a, "[flow_log] was added"),
        (a, None, "[flow_log] was removed"),
        (a, c, "queue_depth changed (4096 -> 8)"),
    ] {
        let why = FlowLog::restart_needed(old, new).expect("refused");
        assert!(why.contains(needle) && why.contains("restart"), "{why}");
    }
}
