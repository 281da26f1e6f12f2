//! The SQL behind anonymization: which column types a strategy fits, the
//! idempotence predicate and the `UPDATE`.
//!
//! The per-engine expressions stay in the dialect (`Dialect::anonymized`,
//! `keyed_hash`, `looks_hashed`); this module composes them into predicates
//! and statements. It builds text and bound values, and never runs them.

use crate::anonymize::strategy::Strategy;
use crate::sql::schema::{ColumnInfo, ColumnKind, TableInfo};
use crate::sql::statements::{Hashes, TableSql};
use crate::sql::{Builder, Dialect, Val};

/// Whether `strategy` fits column `c` of `info`; each misfit is added to
/// `problems` (`check` shows them all).
pub(crate) fn check_fit(
    d: &dyn Dialect,
    info: &TableInfo,
    c: &ColumnInfo,
    strategy: &Strategy,
    problems: &mut Vec<String>,
) {
    let text_only = matches!(
        strategy,
        Strategy::Redact | Strategy::Hash | Strategy::Mask(_)
    );
    if text_only && c.kind != ColumnKind::Text {
        problems.push(format!(
            "{}.{}: strategy `{strategy}` writes text, but the column is {}",
            info.table, c.name, c.data_type
        ));
    }
    if *strategy == Strategy::Hash && d.enforces_text_width() && c.data_type.contains('(') {
        let width: usize = c
            .data_type
            .split(['(', ')'])
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or(usize::MAX);
        if width < 64 {
            problems.push(format!(
                "{}.{}: `hash` writes 64 hex characters, but the column is {}",
                info.table, c.name, c.data_type
            ));
        }
    }
    if matches!(strategy, Strategy::Year | Strategy::Month)
        && !matches!(c.kind, ColumnKind::Time | ColumnKind::Text)
    {
        problems.push(format!(
            "{}.{}: strategy `{strategy}` needs a date column, but the column is {}",
            info.table, c.name, c.data_type
        ));
    }
    if *strategy == Strategy::Null && !c.nullable {
        problems.push(format!(
            "{}.{}: strategy `null` on a NOT NULL column",
            info.table, c.name
        ));
    }
}

/// The idempotence predicate: OR over the columns, the value differs from
/// what the strategy would make it (a row already anonymized is not
/// matched again, so a rerun changes nothing).
pub(crate) fn push_needs(
    d: &dyn Dialect,
    b: &mut Builder<'_>,
    t: &TableSql,
    cols: &[(ColumnInfo, Strategy)],
) {
    b.push("(");
    for (i, (c, s)) in cols.iter().enumerate() {
        if i > 0 {
            b.push(" OR ");
        }
        let cs = t.col(d, &c.name);
        match s {
            Strategy::Null => {
                b.push(&format!("{cs} IS NOT NULL"));
            }
            Strategy::Hash => {
                b.push(&format!(
                    "({cs} IS NOT NULL AND NOT {})",
                    d.looks_hashed(&cs)
                ));
            }
            other => {
                // Placeholders must appear in text order, so write the prefix first.
                b.push(&format!("({cs} IS NOT NULL AND {cs} <> "));
                let expr = d.anonymized(b, &cs, c, other).expect("not hash");
                b.push(&expr).push(")");
            }
        }
    }
    b.push(")");
}

/// One anonymizing `UPDATE`: the table, its key (for hashes bound per key),
/// the columns with their strategies and where `hash` values come from.
pub(crate) struct Update<'a> {
    pub table: &'a TableSql,
    pub key: Option<&'a ColumnInfo>,
    pub cols: &'a [(ColumnInfo, Strategy)],
    pub hashes: Hashes<'a>,
}

/// `UPDATE t SET … WHERE scope AND needs`: every strategy's column set at
/// once. `hash` columns come from `u.hashes`: computed by the server, or
/// bound per key; with none changing, a no-op that matches no row.
pub(crate) fn push_update(b: &mut Builder<'_>, u: &Update<'_>, scope: &dyn Fn(&mut Builder<'_>)) {
    let d = b.dialect;
    let t = u.table;
    b.push("UPDATE ").push(&t.from).push(" SET ");
    let mut set = 0;
    let mut hashed_at = 0;
    for (c, s) in u.cols {
        if *s == Strategy::Hash {
            let at = hashed_at;
            hashed_at += 1;
            let prefix = if set > 0 { ", " } else { "" };
            if push_hash(b, u, c, at, prefix) {
                set += 1;
            }
            continue;
        }
        if set > 0 {
            b.push(", ");
        }
        let cs = t.col(d, &c.name);
        b.push(&d.quote(&c.name)).push(" = ");
        let expr = d.anonymized(b, &cs, c, s).expect("not hash");
        b.push(&expr);
        set += 1;
    }
    if set == 0 {
        // Nothing to set (only hashed columns, none changing): a
        // no-op that matches no row.
        let c = d.quote(&u.cols[0].0.name);
        b.push(&format!("{c} = {c} WHERE 1 = 0"));
        return;
    }
    b.push(" WHERE ");
    scope(b);
    b.push(" AND ");
    push_needs(d, b, t, u.cols);
}

/// `, col = <keyed hash>` for the `at`-th hashed column `c`; `false` when
/// it is left as it is (no hashes, or none of the bound ones changes it).
fn push_hash(b: &mut Builder<'_>, u: &Update<'_>, c: &ColumnInfo, at: usize, prefix: &str) -> bool {
    let d = b.dialect;
    let cs = u.table.col(d, &c.name);
    match u.hashes {
        Hashes::None => false,
        Hashes::InSql(pads) => {
            b.push(prefix).push(&d.quote(&c.name)).push(" = ");
            // Placeholders in text order: the prefix first.
            b.push(&format!(
                "CASE WHEN {cs} IS NULL OR {} THEN {cs} ELSE ",
                d.looks_hashed(&cs)
            ));
            let expr = d.keyed_hash(b, &cs, pads).expect("hashes_in_sql");
            b.push(&expr).push(" END");
            true
        }
        Hashes::Bound(rows) => {
            let changed: Vec<&(String, Vec<Option<String>>)> = rows
                .iter()
                .filter(|(_, v)| v.get(at).is_some_and(|v| v.is_some()))
                .collect();
            if changed.is_empty() {
                return false;
            }
            let key = u.key.expect("hashing by key needs a key");
            b.push(prefix).push(&d.quote(&c.name)).push(" = CASE ");
            b.push(&u.table.col(d, &key.name));
            for (k, v) in changed {
                b.push(" WHEN ");
                d.push_typed(b, key, k);
                b.push(" THEN ");
                b.bind(Val::Text(v[at].clone().expect("changed")));
            }
            b.push(&format!(" ELSE {cs} END"));
            true
        }
    }
}

/// Where an `UPDATE` of `hashed` columns gets their values.
pub(crate) fn hash_source<'a>(
    d: &dyn Dialect,
    hashed: usize,
    pads: &'a crate::keys::HashPads,
    values: &'a [(String, Vec<Option<String>>)],
) -> Hashes<'a> {
    if hashed == 0 {
        Hashes::None
    } else if d.hashes_in_sql() {
        Hashes::InSql(pads)
    } else {
        Hashes::Bound(values)
    }
}
