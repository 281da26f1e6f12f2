//! MySQL and MariaDB statement text.
//!
//! MariaDB refuses `IN (SELECT … LIMIT n)` (error 1235), so batches use
//! `DELETE … ORDER BY … LIMIT n`, with `RETURNING` on MariaDB; MySQL has no
//! `RETURNING` and takes the select-then-delete path.

use super::Val;
use super::dialect::{
    Builder, DeleteTarget, Dialect, Engine, push_placeholder_list, sql_literal, typed_value,
};
use super::schema::{ColumnInfo, ColumnKind};
use crate::config::Strategy;

pub struct MySql {
    pub mariadb: bool,
}

impl Dialect for MySql {
    fn engine(&self) -> Engine {
        if self.mariadb {
            Engine::MariaDb
        } else {
            Engine::MySql
        }
    }

    fn quote(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn placeholder(&self, _n: usize) -> String {
        "?".into()
    }

    fn to_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS CHAR)")
    }

    fn push_in_list(&self, b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]) {
        push_placeholder_list(b, expr, col, values);
    }

    fn push_typed(&self, b: &mut Builder<'_>, col: &ColumnInfo, text: &str) {
        b.bind(typed_value(col, text));
    }

    fn lock_rows(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn anonymized(
        &self,
        b: &mut Builder<'_>,
        c: &str,
        col: &ColumnInfo,
        s: &Strategy,
    ) -> Option<String> {
        Some(match s {
            Strategy::Null => "NULL".into(),
            Strategy::Redact => sql_literal("[REDACTED]"),
            Strategy::Fixed(v) => b.bind_deferred(Val::Text(v.clone())),
            Strategy::Mask(n) => format!(
                "(CASE WHEN CHAR_LENGTH({c}) > {n} THEN CONCAT(REPEAT('*', CHAR_LENGTH({c}) - {n}), RIGHT({c}, {n})) ELSE REPEAT('*', CHAR_LENGTH({c})) END)"
            ),
            Strategy::Year if col.kind == ColumnKind::Time => {
                format!("DATE_FORMAT({c}, '%Y-01-01')")
            }
            Strategy::Month if col.kind == ColumnKind::Time => {
                format!("DATE_FORMAT({c}, '%Y-%m-01')")
            }
            Strategy::Year => format!("CONCAT(SUBSTR({c}, 1, 4), '-01-01')"),
            Strategy::Month => format!("CONCAT(SUBSTR({c}, 1, 7), '-01')"),
            Strategy::Hash => return None,
        })
    }

    fn looks_hashed(&self, c: &str) -> String {
        format!("(CHAR_LENGTH({c}) = 64 AND {c} REGEXP '^[0-9a-f]+$')")
    }

    fn shard_predicate(&self, k: &str, key: &ColumnInfo, i: u32, n: u32) -> Result<String, String> {
        Ok(if key.kind == ColumnKind::Int {
            format!("MOD(MOD({k}, {n}) + {n}, {n}) = {i}")
        } else {
            format!("MOD(CRC32({k}), {n}) = {i}")
        })
    }

    fn delete_returning(&self) -> bool {
        self.mariadb
    }

    fn push_delete_batch(
        &self,
        b: &mut Builder<'_>,
        t: &DeleteTarget<'_>,
        pred: &dyn Fn(&mut Builder<'_>),
        limit: usize,
    ) {
        debug_assert!(self.mariadb, "MySQL has no DELETE … RETURNING");
        b.push(&format!("DELETE FROM {} WHERE ", t.table_sql));
        pred(b);
        b.push(&format!(
            " ORDER BY {} LIMIT {limit} RETURNING {}",
            t.order_sql, t.returning_sql
        ));
    }
}

/// The partitions of a MySQL / MariaDB table from `information_schema`, one
/// row each (sub-partitions repeat their partition's row): name, method
/// (`RANGE`, `RANGE COLUMNS`, …), expression, `LESS THAN` description and
/// whether it is sub-partitioned. `?` is the table's name in the
/// connection's database.
pub const PARTITIONS_SQL: &str = "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION, \
     PARTITION_DESCRIPTION, CAST(SUBPARTITION_METHOD IS NOT NULL AS CHAR) \
     FROM information_schema.PARTITIONS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL \
     ORDER BY PARTITION_ORDINAL_POSITION";

/// How a range partition's `LESS THAN` bound compares with the select
/// column, when it can: `Some("")` when the partitions are by the column
/// itself (`RANGE COLUMNS (col)`, or `RANGE (col)` on an integer column),
/// `Some("TO_DAYS")` / `Some("TO_SECONDS")` / `Some("UNIX_TIMESTAMP")` for
/// those monotonic functions of it. `None` for anything else (several
/// columns, other expressions): such partitions are batched, never dropped.
pub fn range_key(method: &str, expression: &str, column: &str) -> Option<&'static str> {
    let e: String = expression
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '`')
        .collect::<String>()
        .to_ascii_lowercase();
    let col = column.to_ascii_lowercase();
    match method {
        "RANGE COLUMNS" if e == col => Some(""),
        "RANGE" if e == col => Some(""),
        "RANGE" => ["TO_DAYS", "TO_SECONDS", "UNIX_TIMESTAMP"]
            .into_iter()
            .find(|f| e == format!("{}({col})", f.to_ascii_lowercase())),
        _ => None,
    }
}

/// The literal of a `LESS THAN` description: `'2024-02-01'` unquoted, a
/// number as it is; `None` for `MAXVALUE`.
pub fn range_description(desc: &str) -> Option<String> {
    let d = desc.trim();
    if d.eq_ignore_ascii_case("MAXVALUE") || d.is_empty() {
        return None;
    }
    if let Some(inner) = d.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return (!inner.replace("''", "").contains('\'')).then(|| inner.replace("''", "'"));
    }
    d.parse::<i64>().ok().map(|n| n.to_string())
}

#[cfg(test)]
mod partition_tests {
    use super::{range_description, range_key};

    #[test]
    fn only_monotonic_single_column_ranges_compare() {
        assert_eq!(
            range_key("RANGE COLUMNS", "`created_at`", "created_at"),
            Some("")
        );
        assert_eq!(
            range_key("RANGE", "to_days(`created_at`)", "created_at"),
            Some("TO_DAYS")
        );
        assert_eq!(
            range_key("RANGE COLUMNS", "`a`,`created_at`", "created_at"),
            None
        );
        assert_eq!(
            range_key("RANGE", "month(`created_at`)", "created_at"),
            None
        );
        assert_eq!(range_key("LIST", "`created_at`", "created_at"), None);
        assert_eq!(range_key("RANGE COLUMNS", "`other`", "created_at"), None);
        assert_eq!(
            range_description("'2024-02-01'").as_deref(),
            Some("2024-02-01")
        );
        assert_eq!(range_description("739000").as_deref(), Some("739000"));
        assert_eq!(range_description("MAXVALUE"), None);
    }
}
