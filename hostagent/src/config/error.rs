//! Locating configuration errors: byte spans → `FILE:LINE:COL`, collected in file order.
//!
//! The error types themselves are the MUX's ([`ConfigError`], [`ConfigErrors`] from
//! `mux_shared::config`), so both binaries print and test errors the same way. The collector
//! and the span → line:column mapping are `pub(crate)` in `mux-shared`, so this module mirrors
//! them (about sixty lines) rather than widening that crate's API from here.
//!
//! Lines are split at `\n`; columns count Unicode scalar values from 1, so a value after a
//! non-ASCII comment is still pointed at correctly. Offsets past the end or inside a
//! multi-byte character are clamped, never a panic.

use mux_shared::config::{ConfigError, ConfigErrors};

/// Collects errors located by byte span, then hands them back sorted in file order.
#[derive(Debug)]
pub(crate) struct Collector<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset of the first byte of every line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Collector<'a> {
    /// A collector for the file `origin` whose text is `text`.
    pub(crate) fn new(origin: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Collector {
            origin,
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// The 1-based `(line, column)` of byte `offset`.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }

    /// Records `message` at the start of the byte range `span`.
    pub(crate) fn at(&mut self, span: std::ops::Range<usize>, message: String) {
        let (line, column) = self.locate(span.start);
        self.errors.push(ConfigError {
            file: self.origin.to_owned(),
            line,
            column,
            message: one_line(&message),
        });
    }

    /// `Ok(())` when nothing was recorded, otherwise every error sorted by position (stable).
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.errors))
    }
}

/// Converts a `toml` syntax or type error into one located error with a hint.
pub(crate) fn from_toml(origin: &str, text: &str, error: &toml::de::Error) -> ConfigErrors {
    let span = error.span().unwrap_or(0..0);
    let spanned_text = text.get(span.clone()).unwrap_or("");
    let mut collector = Collector::new(origin, text);
    collector.at(span, explain_toml(error.message(), spanned_text));
    collector
        .finish()
        .err()
        .unwrap_or_else(|| ConfigErrors(Vec::new()))
}

/// Adds a fix to the messages `toml`/`serde` produce; others pass through unchanged.
fn explain_toml(message: &str, spanned_text: &str) -> String {
    let message = one_line(message);
    if message.starts_with("unknown field") {
        format!("{message}; fix the spelling or remove the key")
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let header = spanned_text.trim();
        if header.starts_with('[') {
            format!("{header} is missing the required key {rest}; add it")
        } else if header.is_empty() {
            format!(
                "the required section {rest} is missing; add it (see \
                 configs/hostagent.example.toml)"
            )
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
    fn lines_and_columns_are_1_based_and_count_characters() {
        let text = "ab\ncd\r\n\n# é\nx = \"ü\" y";
        let c = Collector::new("f", text);
        assert_eq!(c.locate(0), (1, 1));
        assert_eq!(c.locate(3), (2, 1));
        assert_eq!(c.locate(7), (3, 1));
        assert_eq!(c.locate(text.find('y').unwrap()), (5, 9));
        assert_eq!(c.locate(10_000), (5, 10), "clamped to the end");
        let mid = text.find('é').unwrap() + 1;
        assert_eq!(c.locate(mid), (4, 3), "inside a character → its start");
    }

    #[test]
    fn collector_sorts_in_file_order() {
        let mut c = Collector::new("f", "a\nbb\n");
        c.at(3..4, "second".into());
        c.at(0..1, "first".into());
        let got: Vec<_> = c
            .finish()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.line, e.column, e.message))
            .collect();
        assert_eq!(
            got,
            [(1, 1, "first".to_string()), (2, 2, "second".to_string())]
        );
    }
}
