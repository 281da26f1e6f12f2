//! The syntax of names every section shares: identifiers, job and rule
//! names, `source.table` references and plain column names.
//!
//! Names end up quoted in SQL or in object keys; only the live schema (in
//! `crate::check`) says whether they exist. Here they are checked offline.

use super::Ctx;
use crate::config::model::{Config, TableRef};
use toml::Spanned;

/// A SQL identifier Lethe accepts unquoted in its own messages: letters,
/// digits and `_`, not starting with a digit, at most 63 bytes.
pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// A job or rule name: it names audit files, leases and metrics labels.
pub(super) fn is_job_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The name of a `[sources.<name>]` or `[stores.<name>]` table (`kind`).
pub(super) fn section_name<T>(cx: &mut Ctx, kind: &str, name: &str, spanned: &Spanned<T>) {
    if !is_identifier(name) {
        cx.err(
            spanned,
            format!("{kind} name `{name}` must be letters, digits and `_`"),
        );
    }
}

/// `source.table` or `source.schema.table`, split into its parts; `None`
/// for any other number of dots.
pub(super) fn split_table(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let parts: Vec<&str> = s.split('.').collect();
    match parts.as_slice() {
        [src, t] => Some((*src, None, *t)),
        [src, sch, t] => Some((*src, Some(*sch), *t)),
        _ => None,
    }
}

/// Parse `source.table` or `source.schema.table`.
pub(super) fn parse_table(
    cx: &mut Ctx,
    config: &Config,
    s: &Spanned<String>,
    what: &str,
) -> Option<TableRef> {
    let Some((source, schema, table)) = split_table(s.get_ref()) else {
        cx.err(
            s,
            format!(
                "{what} `{}` must be `<source>.<table>` or `<source>.<schema>.<table>`",
                s.get_ref()
            ),
        );
        return None;
    };
    if !config.sources.contains_key(source) {
        let known: Vec<&String> = config.sources.keys().collect();
        cx.err(s, format!("{what} `{}` names source `{source}`, which config does not define (known: {known:?})", s.get_ref()));
        return None;
    }
    for part in schema.iter().chain(std::iter::once(&table)) {
        if !is_identifier(part) {
            cx.err(
                s,
                format!("{what}: `{part}` is not a plain identifier (letters, digits, `_`)"),
            );
            return None;
        }
    }
    Some(TableRef {
        source: source.to_string(),
        schema: schema.map(str::to_string),
        table: table.to_string(),
    })
}

/// A plain column name (`what` says which key held it); reported, then kept.
pub(super) fn column(cx: &mut Ctx, s: &Spanned<String>, what: &str) -> String {
    if !is_identifier(s.get_ref()) {
        cx.err(
            s,
            format!(
                "{what} `{}` is not a plain column name (letters, digits, `_`)",
                s.get_ref()
            ),
        );
    }
    s.get_ref().clone()
}
