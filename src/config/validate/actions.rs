//! `action = "delete"` or `action = { anonymize = { column = "strategy" } }`,
//! for a rule or a child.
//!
//! Which column types a strategy fits needs the live schema, so `check`
//! and the plan decide that; here a strategy is only parsed.

use super::Ctx;
use super::names::is_identifier;
use crate::config::model::{Action, Strategy};
use crate::config::raw::RawAction;
use toml::Spanned;

/// The typed action; every bad column name or strategy is reported, and a
/// strategy that does not parse is left out.
pub(super) fn action(cx: &mut Ctx, a: &Spanned<RawAction>) -> Action {
    match a.get_ref() {
        RawAction::Delete => Action::Delete,
        RawAction::Anonymize(cols) => {
            if cols.is_empty() {
                cx.err(a, "anonymize names no columns");
            }
            let mut out = Vec::new();
            for (col, strat) in cols {
                if !is_identifier(col) {
                    cx.err(strat, format!("`{col}` is not a plain column name"));
                }
                match parse_strategy(strat.get_ref()) {
                    Ok(s) => out.push((col.clone(), s)),
                    Err(e) => cx.err(strat, format!("column `{col}`: {e}")),
                }
            }
            Action::Anonymize(out)
        }
    }
}

/// One anonymization strategy as a job writes it (`mask:4`, `fixed:x`).
pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    let (head, arg) = match s.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (s, None),
    };
    Ok(match (head, arg) {
        ("null", None) => Strategy::Null,
        ("redact", None) => Strategy::Redact,
        ("hash", None) => Strategy::Hash,
        ("mask", None) => Strategy::Mask(4),
        ("mask", Some(n)) => Strategy::Mask(n.parse().map_err(|_| {
            format!("`mask:{n}`: the number of characters to keep must be a whole number")
        })?),
        ("year", None) => Strategy::Year,
        ("month", None) => Strategy::Month,
        ("fixed", Some(v)) => Strategy::Fixed(v.to_string()),
        ("fixed", None) => return Err("`fixed` needs a value: `fixed:<value>`".into()),
        _ => {
            return Err(format!(
                "unknown strategy `{s}` (use null, fixed:<value>, redact, hash, mask, mask:<n>, year or month)"
            ));
        }
    })
}
