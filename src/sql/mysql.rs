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

    fn keyed_hash(
        &self,
        b: &mut Builder<'_>,
        c: &str,
        pads: &crate::keys::HashPads,
    ) -> Option<String> {
        // `?` placeholders bind in text order: the outer pad comes first.
        // The pads travel as hex: MariaDB reads a bound blob in the
        // connection's character set and refuses bytes that are not UTF-8.
        let o = b.bind_deferred(Val::Text(hex::encode(&pads.outer)));
        let i = b.bind_deferred(Val::Text(hex::encode(&pads.inner)));
        Some(format!(
            "SHA2(CONCAT(UNHEX({o}), UNHEX(SHA2(CONCAT(UNHEX({i}), CAST(CONVERT({c} USING utf8mb4) AS BINARY)), 256))), 256)"
        ))
    }

    fn hashes_in_sql(&self) -> bool {
        true
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
