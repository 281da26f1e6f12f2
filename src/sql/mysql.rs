//! MySQL and MariaDB statement text.
//!
//! MariaDB refuses `IN (SELECT … LIMIT n)` (error 1235), so batches use
//! `DELETE … ORDER BY … LIMIT n`, with `RETURNING` on MariaDB; MySQL has no
//! `RETURNING` and takes the select-then-delete path.

use super::Stmt;
use super::Val;
use super::dialect::{
    Builder, DeleteTarget, Dialect, Engine, push_placeholder_list, sql_literal, typed_value,
};
use super::schema::{ColumnInfo, ColumnKind};
use crate::config::{Strategy, TableRef};

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

    /// Only InnoDB keeps foreign keys: MyISAM tables and partitioned tables
    /// have none here (see [`Dialect::keyless_tables`]). A session with
    /// `foreign_key_checks = 0` enforces none.
    fn referencing_keys(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT CAST(r.CONSTRAINT_NAME AS CHAR), CAST(IF(k.TABLE_SCHEMA = DATABASE(), '', k.TABLE_SCHEMA) AS CHAR), \
                    CAST(k.TABLE_NAME AS CHAR), \
                    CAST(GROUP_CONCAT(k.COLUMN_NAME ORDER BY k.ORDINAL_POSITION SEPARATOR ',') AS CHAR), \
                    CAST(GROUP_CONCAT(k.REFERENCED_COLUMN_NAME ORDER BY k.ORDINAL_POSITION SEPARATOR ',') AS CHAR), \
                    CAST(r.DELETE_RULE AS CHAR), 'false', IF(@@foreign_key_checks = 1, 'true', 'false'), '', \
                    CAST(r.UPDATE_RULE AS CHAR) \
                  FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
                    ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
                  WHERE k.REFERENCED_TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME = ? \
                  GROUP BY r.CONSTRAINT_SCHEMA, r.CONSTRAINT_NAME, k.TABLE_SCHEMA, k.TABLE_NAME, r.DELETE_RULE, r.UPDATE_RULE \
                  ORDER BY 2, 3, 1"
                .into(),
            binds: vec![Val::Text(t.table.clone())],
        }
    }

    fn leading_index_columns(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
                  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND SEQ_IN_INDEX = 1"
                .into(),
            binds: vec![Val::Text(t.table.clone())],
        }
    }

    fn keyless_tables(&self) -> Option<Stmt> {
        Some(Stmt {
            sql: "SELECT CAST(TABLE_NAME AS CHAR), \
                    CAST(IF(CREATE_OPTIONS LIKE '%partitioned%', 'partitioned', CONCAT('engine ', ENGINE)) AS CHAR) \
                  FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
                    AND (ENGINE <> 'InnoDB' OR CREATE_OPTIONS LIKE '%partitioned%') ORDER BY 1"
                .into(),
            binds: vec![],
        })
    }

    fn all_columns(&self) -> Stmt {
        Stmt {
            sql: "SELECT '', CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR) \
                  FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                    ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                  WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' \
                  ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
                .into(),
            binds: vec![],
        }
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
