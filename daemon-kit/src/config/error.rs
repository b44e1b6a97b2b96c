//! Configuration errors: every one names the file, the line and column of the offending value,
//! what is wrong and how to fix it.
//!
//! [`ConfigError`] is one such message; [`ConfigErrors`] is what `parse`, `load_file` and
//! `validate` return, so an operator sees every problem of a file in one run instead of fixing
//! them one reload at a time. Type, value and key errors come from serde through
//! `collect::deserialize` (every one of them, rewritten here with a hint), semantic errors from
//! `validate`; a syntax error is reported alone (there is no document to look further into).
//!
//! The [`Collector`] also knows which spans are *poisoned*: values that were refused and
//! replaced by a placeholder so the rest of the file could be checked. Errors located there
//! are dropped (the refusal was reported), and rules that compare values skip placeholders.
//!
//! An error that has no position in the text (the file could not be read) has `line == 0` and
//! `column == 0` and displays as `FILE: message`.

use std::fmt;
use std::ops::Range;

use super::location::Locator;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to `parse` / `load_file`.
    pub file: String,
    /// 1-based line of the offending value; 0 when the error is about the whole file.
    pub line: usize,
    /// 1-based column (in characters) of the offending value; 0 when `line` is 0.
    pub column: usize,
    /// What is wrong and how to fix it, on one line.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order.
///
/// Never empty when returned as an error. Displays one error per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn render_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects errors located by byte span, then hands them back sorted in file order.
#[derive(Debug)]
pub struct Collector<'a> {
    origin: &'a str,
    text: &'a str,
    locator: Locator<'a>,
    errors: Vec<ConfigError>,
    /// Spans of refused values that hold placeholders now (see the module documentation).
    poisoned: Vec<Range<usize>>,
}

impl<'a> Collector<'a> {
    /// A collector for the file `origin` whose text is `text`.
    pub fn new(origin: &'a str, text: &'a str) -> Self {
        Collector {
            origin,
            text,
            locator: Locator::new(text),
            errors: Vec::new(),
            poisoned: Vec::new(),
        }
    }

    /// Records `message` at the start of the byte range `span`, unless `span` holds a
    /// placeholder ([`Collector::is_poisoned`]): that value's refusal is already reported.
    pub fn at(&mut self, span: Range<usize>, message: String) {
        if self.is_poisoned(&span) {
            return;
        }
        self.push(span, message);
    }

    fn push(&mut self, span: Range<usize>, message: String) {
        let (line, column) = self.locator.locate(span.start);
        self.errors.push(ConfigError {
            file: self.origin.to_owned(),
            line,
            column,
            message: one_line(&message),
        });
    }

    /// Marks `span` as holding a placeholder for a refused value.
    pub fn poison(&mut self, span: Range<usize>) {
        self.poisoned.push(span);
    }

    /// Whether `span` holds a placeholder: a refused value, or a missing key's stand-in (whose
    /// synthetic span lies past the end of the text). Rules comparing two values skip a pair
    /// with such a member, so a placeholder never causes an error of its own.
    pub fn is_poisoned(&self, span: &Range<usize>) -> bool {
        span.start > self.text.len() || self.poisoned.contains(span)
    }

    /// The text of `span` as written in the file (empty for a synthetic span): how messages
    /// show a value that was refused.
    pub fn source(&self, span: &Range<usize>) -> &'a str {
        self.text.get(span.clone()).unwrap_or("")
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Records a `toml` syntax error (the document could not be parsed).
    pub(crate) fn record_toml_error(&mut self, error: &toml::de::Error, text: &str) {
        let span = error.span().unwrap_or(0..0);
        let spanned_text = text.get(span.clone()).unwrap_or("");
        self.push(span, explain_toml(error.message(), spanned_text));
    }

    /// Records that reading stopped at `span` because of `message` (a placeholder that fits
    /// nothing, a location the repair cannot find). The file is refused with what was found so
    /// far plus this note, never accepted.
    pub(crate) fn give_up(&mut self, span: Range<usize>, message: &str) {
        let span = if self.is_poisoned(&span) { 0..0 } else { span };
        let hint = explain_toml(message, self.source(&span));
        self.push(
            span,
            format!("{hint}; the rest of the file could not be checked after this error"),
        );
    }

    /// Records an error unless `lo <= value <= hi`, saying the range and how to fix it;
    /// returns whether the value is in range.
    pub fn check_range(
        &mut self,
        ctx: &str,
        key: &str,
        value: &serde_spanned::Spanned<i64>,
        lo: i64,
        hi: i64,
        fix: &str,
    ) -> bool {
        let v = *value.get_ref();
        // A placeholder is never "in range": rules that depend on it are skipped.
        let ok = (lo..=hi).contains(&v) && !self.is_poisoned(&value.span());
        if !ok {
            self.at(
                value.span(),
                format!("{ctx}: {key} must be between {lo} and {hi} (got {v}); {fix}"),
            );
        }
        ok
    }

    /// Records an error unless `name` can name a daemon or a VIP in logs and metrics: 1 to 64
    /// letters, digits, `-`, `_` or `.`. `ctx` says whose name it is (`[mux]`, `vip "web"`).
    pub fn check_name(&mut self, ctx: &str, name: &serde_spanned::Spanned<String>) {
        let n = name.get_ref();
        let ok = (1..=64).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.at(
                name.span(),
                format!(
                    "{ctx}: name {n:?} cannot be used in logs and metrics; use 1 to 64 letters, \
                     digits, '-', '_' or '.'"
                ),
            );
        }
    }

    /// Records an error unless `addr` is a usable unicast address (not unspecified, broadcast,
    /// multicast or loopback; an IPv4-mapped IPv6 address is to be written as IPv4). `ctx`
    /// names it (`vip "web": address 10.0.0.1`); `fix` says what to use instead.
    pub fn check_unicast(
        &mut self,
        addr: &serde_spanned::Spanned<super::values::IpValue>,
        ctx: &str,
        fix: &str,
    ) {
        use std::net::IpAddr;
        let problem = match addr.get_ref().0 {
            IpAddr::V4(a) if a.is_unspecified() => "is unspecified",
            IpAddr::V4(a) if a.is_broadcast() => "is the broadcast address",
            IpAddr::V4(a) if a.is_multicast() => "is a multicast address",
            IpAddr::V4(a) if a.is_loopback() => "is a loopback address",
            IpAddr::V6(a) if a.is_unspecified() => "is unspecified",
            IpAddr::V6(a) if a.is_multicast() => "is a multicast address",
            IpAddr::V6(a) if a.is_loopback() => "is a loopback address",
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => {
                    self.at(
                        addr.span(),
                        format!(
                            "{ctx} is an IPv4-mapped IPv6 address; write it as plain IPv4: \
                             \"{v4}\""
                        ),
                    );
                    return;
                }
                None => return,
            },
            IpAddr::V4(_) => return,
        };
        self.at(addr.span(), format!("{ctx} {problem}; {fix}"));
    }

    /// The 1-based line of byte `offset`, to refer to another definition in a message.
    pub fn line_of(&self, offset: usize) -> usize {
        self.locator.locate(offset).0
    }

    /// `Ok(())` when nothing was recorded, otherwise every error sorted by position (stable, so
    /// two errors at one position keep the order they were found in).
    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.errors))
    }
}

/// Converts a `toml` syntax or type error into one located error with a hint.
pub fn from_toml(origin: &str, text: &str, error: &toml::de::Error) -> ConfigErrors {
    let span = error.span().unwrap_or(0..0);
    let spanned_text = text.get(span.clone()).unwrap_or("");
    let mut collector = Collector::new(origin, text);
    collector.at(span, explain_toml(error.message(), spanned_text));
    collector
        .finish()
        .err()
        .unwrap_or_else(|| ConfigErrors(Vec::new()))
}

/// Adds a fix to the messages `toml`/`serde` produce; messages it does not recognise (syntax
/// errors, which already say what was expected) pass through unchanged.
pub(crate) fn explain_toml(message: &str, spanned_text: &str) -> String {
    let message = one_line(message);
    if message.starts_with("unknown field") {
        format!("{message}; fix the spelling or remove the key")
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let header = spanned_text.trim();
        if header.starts_with('[') {
            format!("{header} is missing the required key {rest}; add it")
        } else if header.is_empty() {
            format!("the required section {rest} is missing; add it (see configs/mux.example.toml)")
        } else {
            format!("missing required key {rest}; add it")
        }
    } else if message.starts_with("unknown variant") {
        format!("{message}; use one of the listed values")
    } else if message.starts_with("invalid type") && message.ends_with("expected i64") {
        let head = message.trim_end_matches("expected i64");
        format!("{head}expected an integer; write a whole number without quotes")
    } else if message.starts_with("invalid type") && message.ends_with("expected a string") {
        format!("{message}; put the value in double quotes")
    } else {
        message
    }
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_column_message() {
        let e = ConfigError {
            file: "configs/mux.toml".into(),
            line: 12,
            column: 11,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "configs/mux.toml:12:11: bad");
        let whole_file = ConfigError {
            line: 0,
            column: 0,
            ..e.clone()
        };
        assert_eq!(whole_file.to_string(), "configs/mux.toml: bad");
        let all = ConfigErrors(vec![e.clone(), whole_file]);
        assert_eq!(
            all.to_string(),
            "configs/mux.toml:12:11: bad\nconfigs/mux.toml: bad"
        );
        assert_eq!(all.len(), 2);
        assert!(!all.is_empty());
    }

    #[test]
    fn collector_sorts_in_file_order_and_keeps_ties_stable() {
        let text = "a\nbb\nccc\n";
        let mut c = Collector::new("f", text);
        c.at(7..8, "third".into());
        c.at(3..4, "second-a".into());
        c.at(0..1, "first".into());
        c.at(3..4, "second-b".into());
        let errors = c.finish().unwrap_err();
        let got: Vec<_> = errors
            .errors()
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, "first"),
                (2, 2, "second-a"),
                (2, 2, "second-b"),
                (3, 3, "third")
            ]
        );
        assert_eq!(Collector::new("f", text).finish(), Ok(()));
    }

    #[test]
    fn toml_messages_get_hints() {
        assert_eq!(
            explain_toml("missing field `name`", "[mux]"),
            "[mux] is missing the required key `name`; add it"
        );
        assert!(explain_toml("missing field `mux`", "").contains("section `mux` is missing"));
        assert_eq!(
            explain_toml("invalid type: string \"x\", expected i64", "\"x\""),
            "invalid type: string \"x\", expected an integer; write a whole number without quotes"
        );
        assert_eq!(explain_toml("extra `=`\n", "="), "extra `=`");
    }
}
