//! `[coverage]`: the name patterns `check --coverage` calls personal.
//!
//! `patterns` replaces the built-in list, `extra_patterns` adds to it; a bad
//! pattern is reported and dropped (the built-ins are known good).

use super::Ctx;
use crate::config::model::{DEFAULT_PERSONAL_PATTERNS, PersonalPattern};
use crate::config::raw::RawCoverage;
use toml::Spanned;

/// The patterns in force, given first, then the extra ones.
pub(super) fn coverage(cx: &mut Ctx, raw: Option<&RawCoverage>) -> Vec<PersonalPattern> {
    let mut out = Vec::new();
    let given: Vec<(Option<&Spanned<String>>, String)> = match raw.and_then(|c| c.patterns.as_ref())
    {
        Some(ps) => ps.iter().map(|p| (Some(p), p.get_ref().clone())).collect(),
        None => DEFAULT_PERSONAL_PATTERNS
            .iter()
            .map(|p| (None, p.to_string()))
            .collect(),
    };
    let extra = raw
        .map(|c| {
            c.extra_patterns
                .iter()
                .map(|p| (Some(p), p.get_ref().clone()))
        })
        .into_iter()
        .flatten();
    for (span, text) in given.into_iter().chain(extra) {
        match PersonalPattern::parse(&text) {
            Ok(p) => out.push(p),
            Err(e) => {
                if let Some(s) = span {
                    cx.err(s, format!("coverage: {e}"));
                }
            }
        }
    }
    out
}
