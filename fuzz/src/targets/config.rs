//! The two configuration parsers, `mux::config::parse` and `hostagent::config::parse`,
//! on mutated TOML (bytes that are not UTF-8 are read lossily, so no case is wasted).
//!
//! Checked for every input:
//! - a refused file has at least one error, each located inside the text (line 1..=lines + 1,
//!   column ≥ 1) with a one-line message, in file order;
//! - an accepted file is usable: every accessor answers, and it compiles — the MUX's into a
//!   forwarding snapshot, the host agent's into its service table — since validation is there
//!   to guarantee exactly that (a file `check-config` accepts must never fail at reload);
//! - collecting every error changes nothing but the number of errors: a file is accepted
//!   exactly when plain `toml::from_str` + `validate` accept it (and gives the same
//!   configuration), and the error plain deserialization stops at is always among those
//!   reported, at the same line and column.

use mux::control::compile::{self, CompileOptions};
use mux::control::registry::Registry;
use mux_daemon_kit::config::ConfigErrors;
use serde::de::DeserializeOwned;

use super::Target;
use crate::seeds;

/// `mux.toml`.
pub const MUX: Target = Target {
    name: "config-mux",
    about: "mux::config::parse (check-config and reload), then compile",
    run: mux,
    seeds: seeds::mux_configs,
    max_len: 8192,
    dictionary: MUX_DICTIONARY,
};

/// `hostagent.toml`.
pub const HOSTAGENT: Target = Target {
    name: "config-hostagent",
    about: "hostagent::config::parse, then the service table",
    run: hostagent,
    seeds: seeds::hostagent_configs,
    max_len: 8192,
    dictionary: HOSTAGENT_DICTIONARY,
};

const MUX_DICTIONARY: &[&[u8]] = &[
    b"[mux]\n",
    b"[dataplane]\n",
    b"[tunnel]\n",
    b"[next_hop]\n",
    b"[admin]\n",
    b"[lifecycle]\n",
    b"[bgp]\n",
    b"[timeouts]\n",
    b"[health]\n",
    b"[[health.agent]]\n",
    b"[dpdk]\n",
    b"[[vip]]\n",
    b"[[vip.backend]]\n",
    b"name = ",
    b"address = ",
    b"port = ",
    b"protocol = ",
    b"weight = ",
    b"state = ",
    b"maglev_table_size = ",
    b"timeouts = { udp = 3 }",
    b"io = \"mem\"",
    b"io = \"dpdk\"",
    b"interface = ",
    b"workers = ",
    b"cpus = [0, 1]",
    b"mtu = ",
    b"source_v4 = ",
    b"source_v6 = ",
    b"mac = ",
    b"listen = ",
    b"drain_seconds = ",
    b"speaker = \"bird\"",
    b"bird_include = ",
    b"poll_interval_ms = ",
    b"timeout_ms = ",
    b"stale_after_ms = ",
    b"device = ",
    b"mbufs = ",
    b"\"10.1.0.1\"",
    b"\"192.0.2.10\"",
    b"\"2001:db8::10\"",
    b"\"fd00::11\"",
    b"\"::ffff:10.0.0.1\"",
    b"\"224.0.0.1\"",
    b"\"02:00:00:00:00:01\"",
    b"\"127.0.0.1:9100\"",
    b"\"tcp\"",
    b"\"udp\"",
    b"\"draining\"",
    b"65537",
    b"1000003",
    b"-1",
    b"0",
    b"70000",
    b"1.5",
    b"true",
    b"\"",
    b"'",
    b"\n",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"#",
];

const HOSTAGENT_DICTIONARY: &[&[u8]] = &[
    b"[agent]\n",
    b"[tunnel]\n",
    b"[[service]]\n",
    b"[health]\n",
    b"[admin]\n",
    b"[interception]\n",
    b"name = ",
    b"mux_sources = ",
    b"vip = ",
    b"port = ",
    b"protocol = ",
    b"dip = ",
    b"backend_address = ",
    b"backend_port = ",
    b"kind = \"http\"",
    b"kind = \"https\"",
    b"interval_ms = ",
    b"timeout_ms = ",
    b"rise = ",
    b"fall = ",
    b"http_path = ",
    b"http_status = ",
    b"listen = ",
    b"tun_name = ",
    b"route_table = ",
    b"rule_priority = ",
    b"mark = ",
    b"tun_mtu = ",
    b"\"10.0.21.2\"",
    b"\"192.0.2.10\"",
    b"\"2001:db8::10\"",
    b"\"fd00:21::2\"",
    b"[\"10.0.11.2\", \"fd00:11::2\"]",
    b"\"tcp\"",
    b"\"udp\"",
    b"65535",
    b"0",
    b"-1",
    b"4294967296",
    b"\"",
    b"\n",
    b"=",
    b"[",
    b"]",
    b",",
];

/// Checks a refusal: errors exist, are located inside `text`, one line each, in file order.
fn check_errors(text: &str, errors: &ConfigErrors) {
    assert!(!errors.is_empty(), "a refusal names at least one error");
    let lines = text.split('\n').count();
    let mut previous = (0, 0);
    for e in errors.errors() {
        assert!(
            (1..=lines).contains(&e.line) && e.column >= 1,
            "error outside the text ({lines} lines): {e}"
        );
        assert!(
            !e.message.is_empty() && !e.message.contains('\n'),
            "one-line message: {e:?}"
        );
        assert!(
            (e.line, e.column) >= previous,
            "errors out of file order: {errors}"
        );
        previous = (e.line, e.column);
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Compares `parse`'s answer with plain deserialization (`toml::from_str`, which stops at the
/// first error) followed by `validate`: the same files are accepted, into the same value, and
/// plain deserialization's error is among those reported.
fn compare_with_plain<T: DeserializeOwned + PartialEq + std::fmt::Debug>(
    text: &str,
    ours: &Result<T, ConfigErrors>,
    validate: impl Fn(&T) -> bool,
) {
    let plain = toml::from_str::<T>(text);
    match (ours, plain) {
        (Ok(cfg), Ok(plain)) => assert_eq!(cfg, &plain, "parse and plain serde disagree"),
        (Ok(_), Err(e)) => panic!("accepted a file plain serde refuses: {e}"),
        (Err(errors), Ok(plain)) => assert!(
            !validate(&plain),
            "refused a file plain serde and validate accept: {errors}"
        ),
        (Err(errors), Err(e)) => {
            let at = line_column(text, e.span().map_or(0, |s| s.start));
            assert!(
                errors.errors().iter().any(|x| (x.line, x.column) == at),
                "plain serde's error at {at:?} ({}) is not among {errors}",
                e.message()
            );
        }
    }
}

fn mux(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = mux::config::parse(&text, "fuzz.toml");
    compare_with_plain(&text, &parsed, |c: &mux::config::MuxConfig| {
        c.validate("fuzz.toml", &text).is_ok()
    });
    let cfg = match parsed {
        Ok(cfg) => cfg,
        Err(errors) => return check_errors(&text, &errors),
    };
    let defaults = cfg.timeouts();
    std::hint::black_box((
        cfg.name(),
        cfg.dataplane().workers(),
        cfg.dataplane().cpus(),
    ));
    std::hint::black_box((
        cfg.admin().listen(),
        cfg.health().agents(),
        cfg.bgp().speaker(),
    ));
    let mut slots = 0u64;
    for vip in cfg.vips() {
        std::hint::black_box((vip.address(), vip.port(), vip.timeouts(&defaults)));
        slots += u64::from(vip.table_size()) * vip.backends().len().max(1) as u64;
    }
    // Building Maglev tables is linear in their size: compiling a file with million-slot
    // tables would measure Maglev, not the parser. Validation is what is fuzzed here.
    if slots <= 2_000_000 {
        compile::compile(
            &cfg,
            &mut Registry::default(),
            1,
            &CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("an accepted config does not compile: {e}\n{text}"));
    }
}

fn hostagent(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = hostagent::config::parse(&text, "fuzz.toml");
    compare_with_plain(&text, &parsed, |c: &hostagent::config::HostAgentConfig| {
        c.validate("fuzz.toml", &text).is_ok()
    });
    let cfg = match parsed {
        Ok(cfg) => cfg,
        Err(errors) => return check_errors(&text, &errors),
    };
    std::hint::black_box((
        cfg.name(),
        cfg.mux_sources(),
        cfg.health(),
        cfg.interception(),
    ));
    std::hint::black_box(cfg.admin_listen());
    hostagent::dataplane::ServiceTable::from_config(&cfg)
        .unwrap_or_else(|e| panic!("an accepted config makes no service table: {e}\n{text}"));
}
