//! Deserialization that reports every type, value, unknown-key and missing-key error of a file
//! TOML can parse, not just the first.
//!
//! What this module owns: turning TOML text into a schema struct (the MUX's or the host
//! agent's) while recording every problem serde finds, each at its line and column. `serde`
//! stops at the first error a derived `Deserialize` meets, so on its own a typo hides a bad
//! address, which hides a bad weight. Here the document is parsed once into `toml`'s spanned
//! tree, then deserialized from that tree repeatedly; after each error the tree is repaired at
//! the error's location and deserialization runs again, until it succeeds:
//!
//! - **unknown key** (`deny_unknown_fields`): recorded, and the key removed — it was never part
//!   of the configuration, so nothing else depends on it;
//! - **bad value** (wrong type, malformed address, unknown variant, …): recorded, and the value
//!   replaced by a *placeholder* of the type the schema wants, found by trying candidates in
//!   turn (an integer, an address, an `address:port`, a MAC, a boolean, an empty array or
//!   table, or the variants the error message lists). The value's span is *poisoned*:
//! - **missing key**: recorded at its table, and a placeholder inserted under a synthetic span
//!   past the end of the text, poisoned as well.
//!
//! Semantic validation then runs over the repaired configuration with the same [`Collector`].
//! An error located at a poisoned span is dropped (the value there is a placeholder, already
//! reported), and the few rules that compare two values skip pairs with a poisoned member
//! ([`Collector::is_poisoned`]), so a placeholder never produces an error of its own.
//!
//! A TOML **syntax** error still stops everything: without a document there is no tree to
//! repair. It is reported alone, and the documentation says so.
//!
//! Rejected alternatives: walking a `toml::Value` by hand (every field of both schemas would
//! need hand-written type errors, and a new key would be unchecked until someone remembered);
//! making every schema field a tolerant wrapper type (every field and accessor of both schemas
//! would change, and a field added with a plain type would silently go back to first-error-only
//! behaviour); removing bad values instead of replacing them (an optional key would fall back
//! to its default and trigger rules about that default; a required key's table would have to go,
//! taking its other errors with it).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{Collector, ConfigErrors, explain_toml};

/// More repairs than any hand-written file needs; a pathological one stops here, with what
/// was found so far.
const MAX_REPAIRS: usize = 10_000;

/// One step from a table to a value: a key, or an index into an array.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Deserializes `text` into `T`, recording every error in `c` (in file order once `c` is
/// finished). Returns the configuration with placeholders where values were bad (its poisoned
/// spans recorded in `c`), to be validated further with the same collector; `None` after a
/// syntax error or a file that could not be repaired, in which case `c` holds an error.
pub fn deserialize<T>(text: &str, c: &mut Collector<'_>) -> Option<T>
where
    T: for<'de> Deserialize<'de>,
{
    let mut root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            c.record_toml_error(&e, text);
            return None;
        }
    };
    // Which candidate each repaired span holds now.
    let mut tried: HashMap<Range<usize>, usize> = HashMap::new();
    let mut next_synthetic = text.len() + 1;
    for _ in 0..MAX_REPAIRS {
        let error = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(config) => return Some(config),
            Err(e) => e,
        };
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().to_owned();
        // Whether `error` was recorded: then giving up needs no note of its own.
        let mut recorded = true;
        let repaired = if message.starts_with("unknown field") {
            c.at(span.clone(), explain_toml(&message, source(text, &span)));
            path_to_key(root.get_ref(), &span)
                .is_some_and(|(table, key)| remove_key(root.get_mut(), &table, &key))
        } else if let Some(field) = missing_field(&message) {
            c.at(span.clone(), explain_toml(&message, source(text, &span)));
            let table = if span == root.span() || span.is_empty() && span.start == 0 {
                Some(Vec::new())
            } else {
                path_to_table(root.get_ref(), &span)
            };
            match table {
                Some(table) => {
                    let synthetic = next_synthetic..next_synthetic + 1;
                    next_synthetic += 2;
                    c.poison(synthetic.clone());
                    tried.insert(synthetic.clone(), 0);
                    let value = candidate(0, &message).unwrap_or(DeValue::Boolean(false));
                    let key = Spanned::new(synthetic, Cow::Owned(field));
                    insert_key(root.get_mut(), &table, key, value)
                }
                None => false,
            }
        } else {
            // A bad value, or a placeholder that does not fit: try the next candidate.
            let attempt = match tried.get(&span) {
                Some(&n) => {
                    recorded = false;
                    n + 1
                }
                None => {
                    c.at(span.clone(), explain_toml(&message, source(text, &span)));
                    c.poison(span.clone());
                    0
                }
            };
            tried.insert(span.clone(), attempt);
            match (
                path_to_value(root.get_ref(), &span),
                candidate(attempt, &message),
            ) {
                (Some(path), Some(value)) => replace_value(root.get_mut(), &path, value),
                _ => false,
            }
        };
        if !repaired {
            if recorded && !c.is_empty() {
                c.give_up(span, "the error before this one could not be worked around");
            } else {
                c.give_up(span, &message);
            }
            return None;
        }
    }
    c.give_up(0..0, "too many errors to read this file further");
    None
}

/// The end of a parse: the configuration when nothing was recorded in `c`, otherwise every
/// error in file order (never an empty list).
pub fn finish<T>(config: Option<T>, mut c: Collector<'_>) -> Result<T, ConfigErrors> {
    match config {
        Some(config) => c.finish().map(|()| config),
        None => {
            if c.is_empty() {
                // `deserialize` records an error before it returns `None`; never accept a
                // file that was not read.
                c.give_up(0..0, "the file could not be read");
            }
            Err(c.finish().expect_err("an error was recorded"))
        }
    }
}

/// The text a span covers (empty for synthetic spans).
fn source<'t>(text: &'t str, span: &Range<usize>) -> &'t str {
    text.get(span.clone()).unwrap_or("")
}

/// The field name of a "missing field `name`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// The variants an "unknown variant `x`, expected one of `a`, `b`" (or "expected `a` or `b`")
/// message lists.
fn listed_variants(message: &str) -> Vec<String> {
    let Some((_, expected)) = message.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Placeholder candidate number `n` for a value the schema refused with `message`, or `None`
/// when they are exhausted. An enum's refusal lists its variants: the first one fits. Otherwise
/// a value of each TOML type in turn (offset date-time last), strings in the forms the schema's string-typed values
/// parse (address, `address:port`, MAC).
fn candidate(n: usize, message: &str) -> Option<DeValue<'static>> {
    if message.starts_with("unknown variant")
        && let Some(variant) = listed_variants(message).into_iter().next()
    {
        return Some(DeValue::String(Cow::Owned(variant)));
    }
    Some(match n {
        0 => DeValue::parse("0").ok()?.into_inner(),
        1 => DeValue::String(Cow::Borrowed("0.0.0.0")),
        2 => DeValue::String(Cow::Borrowed("0.0.0.0:0")),
        3 => DeValue::String(Cow::Borrowed("00:00:00:00:00:00")),
        4 => DeValue::Boolean(false),
        5 => DeValue::Array(toml::de::DeArray::new()),
        6 => DeValue::Table(DeTable::new()),
        7 => DeValue::parse("0.0").ok()?.into_inner(),
        8 => DeValue::parse("1970-01-01T00:00:00Z").ok()?.into_inner(),
        _ => return None,
    })
}

/// The path from the root to the value whose span is `span`.
fn path_to_value(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (key, value) in table.iter() {
        let step = Step::Key(key.get_ref().to_string());
        if value.span() == *span {
            return Some(vec![step]);
        }
        if let Some(mut rest) = path_in_value(value.get_ref(), span) {
            rest.insert(0, step);
            return Some(rest);
        }
    }
    None
}

fn path_in_value(value: &DeValue<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    match value {
        DeValue::Table(t) => path_to_value(t, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            if item.span() == *span {
                Some(vec![Step::Index(i)])
            } else {
                let mut rest = path_in_value(item.get_ref(), span)?;
                rest.insert(0, Step::Index(i));
                Some(rest)
            }
        }),
        _ => None,
    }
}

/// The path from the root to the table whose span is `span`. An array of tables and its
/// first table can share a span (the first `[[header]]`): the table is the one wanted.
fn path_to_table(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (key, value) in table.iter() {
        let step = Step::Key(key.get_ref().to_string());
        let found = match value.get_ref() {
            DeValue::Table(_) if value.span() == *span => Some(Vec::new()),
            DeValue::Table(t) => path_to_table(t, span),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let DeValue::Table(t) = item.get_ref() else {
                    return None;
                };
                let mut path = if item.span() == *span {
                    Vec::new()
                } else {
                    path_to_table(t, span)?
                };
                path.insert(0, Step::Index(i));
                Some(path)
            }),
            _ => None,
        };
        if let Some(mut path) = found {
            path.insert(0, step);
            return Some(path);
        }
    }
    None
}

/// The path to the table holding the key whose span is `span`, and that key.
fn path_to_key(table: &DeTable<'_>, span: &Range<usize>) -> Option<(Vec<Step>, String)> {
    for (key, value) in table.iter() {
        if key.span() == *span {
            return Some((Vec::new(), key.get_ref().to_string()));
        }
        let step = Step::Key(key.get_ref().to_string());
        let found =
            match value.get_ref() {
                DeValue::Table(t) => path_to_key(t, span),
                DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item
                    .get_ref()
                {
                    DeValue::Table(t) => path_to_key(t, span).map(|(mut path, key)| {
                        path.insert(0, Step::Index(i));
                        (path, key)
                    }),
                    _ => None,
                }),
                _ => None,
            };
        if let Some((mut path, key)) = found {
            path.insert(0, step);
            return Some((path, key));
        }
    }
    None
}

/// The value at `path` below `table`.
fn value_mut<'a, 'i>(
    table: &'a mut DeTable<'i>,
    path: &[Step],
) -> Option<&'a mut Spanned<DeValue<'i>>> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else {
        return None;
    };
    let mut value = table.get_mut(key.as_str())?;
    for step in rest {
        value = match (step, value.get_mut()) {
            (Step::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str())?,
            (Step::Index(i), DeValue::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The table at `path` below `root` (the root itself for an empty path).
fn table_mut<'a, 'i>(root: &'a mut DeTable<'i>, path: &[Step]) -> Option<&'a mut DeTable<'i>> {
    if path.is_empty() {
        return Some(root);
    }
    match value_mut(root, path)?.get_mut() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn remove_key(root: &mut DeTable<'_>, table: &[Step], key: &str) -> bool {
    table_mut(root, table).is_some_and(|t| t.remove(key).is_some())
}

fn insert_key<'i>(
    root: &mut DeTable<'i>,
    table: &[Step],
    key: Spanned<Cow<'i, str>>,
    value: DeValue<'i>,
) -> bool {
    let span = key.span();
    match table_mut(root, table) {
        Some(t) => {
            t.insert(key, Spanned::new(span, value));
            true
        }
        None => false,
    }
}

fn replace_value<'i>(root: &mut DeTable<'i>, path: &[Step], value: DeValue<'i>) -> bool {
    match value_mut(root, path) {
        Some(slot) => {
            *slot = Spanned::new(slot.span(), value);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_read_from_serde_messages() {
        assert_eq!(
            listed_variants("unknown variant `xdp`, expected one of `afxdp`, `mem`"),
            ["afxdp", "mem"]
        );
        assert_eq!(
            listed_variants("unknown variant `sctp`, expected `tcp` or `udp`"),
            ["tcp", "udp"]
        );
        assert!(listed_variants("invalid type: string \"x\", expected i64").is_empty());
        assert_eq!(
            missing_field("missing field `name`").as_deref(),
            Some("name")
        );
    }

    #[test]
    fn candidates_are_a_listed_variant_or_each_type_in_turn() {
        let m = "unknown variant `x`, expected `tcp` or `udp`";
        assert!(matches!(candidate(5, m), Some(DeValue::String(s)) if s == "tcp"));
        let m = "invalid type: string \"x\", expected i64";
        assert!(matches!(candidate(0, m), Some(DeValue::Integer(_))));
        assert!(matches!(candidate(1, m), Some(DeValue::String(s)) if s == "0.0.0.0"));
        assert!(matches!(candidate(8, m), Some(DeValue::Datetime(_))));
        assert!(candidate(9, m).is_none());
    }
}
