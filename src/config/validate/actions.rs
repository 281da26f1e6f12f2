//! `action = "delete"` or `action = { anonymize = { column = "strategy" } }`,
//! for a rule or a child.
//!
//! Which column types a strategy fits needs the live schema, so `check`
//! and the plan decide that; here a strategy is only parsed
//! (by `crate::anonymize::strategy`).

use super::Ctx;
use super::names::is_identifier;
use crate::anonymize::strategy::parse_strategy;
use crate::config::model::Action;
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
