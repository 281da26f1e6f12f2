//! MySQL and MariaDB statement text.
//!
//! MariaDB refuses `IN (SELECT … LIMIT n)` (error 1235), so batches use
//! `DELETE … ORDER BY … LIMIT n`, with `RETURNING` on MariaDB; MySQL has no
//! `RETURNING` and takes the select-then-delete path.

use super::dialect::{
    Builder, ColumnType, DbFuture, DeleteTarget, Dialect, Engine, LockView, Migration,
    RangePartition, migrations, sql_literal,
};
use super::purge::{DeadSpace, Purge};
use super::schema::{self, ColumnInfo, ColumnKind, TableInfo, catalog, firsts, s};
use super::statements::TableSql;
use super::{Db, Stmt, TextRow, Val};
use crate::config::{Strategy, TableRef};
use crate::error::Error;

/// The MySQL and MariaDB dialect; MariaDB (told apart by `VERSION()` at
/// connect) has `DELETE … RETURNING`, MySQL does not.
pub struct MySql {
    pub mariadb: bool,
}

impl MySql {
    /// A replica's replication status: one row per configured connection
    /// (none when replication is not configured), read by column name by
    /// `sql::health::Replica`.
    pub(crate) const REPLICA_STATUS: &'static str = "SHOW SLAVE STATUS";

    /// The column of [`MySql::REPLICA_STATUS`] that says how far behind the
    /// replica applies (NULL while it does not apply at all).
    pub(crate) const SECONDS_BEHIND: &'static str = "Seconds_Behind_Master";

    /// [`MySql::REPLICA_STATUS`] of one named connection of a MariaDB
    /// multi-source replica (`SHOW SLAVE 'name' STATUS`). `name` is checked
    /// by the validation pass (letters, digits, `_`, `-`, `.`), so it cannot
    /// leave the string literal.
    pub(crate) fn replica_status_of(name: &str) -> String {
        format!("SHOW SLAVE '{name}' STATUS")
    }

    /// The error a MariaDB replica gives for a connection name it does not
    /// have (`ER_MASTER_CONNECTION_NOT_EXIST`, "There is no master connection").
    pub(crate) const NO_SUCH_CONNECTION: u16 = 1617;
}

impl Dialect for MySql {
    /// `SHA2(GROUP_CONCAT(k ORDER BY key SEPARATOR X'0A'), 256)` (a hex
    /// separator, so `NO_BACKSLASH_ESCAPES` cannot turn it into `\n`), or
    /// NULL when the joined text came out shorter than the keys and their
    /// separators (cut at `group_concat_max_len` or `max_allowed_packet`):
    /// the caller then reads the keys in pages instead. The keys are joined
    /// once, in a derived table, for both the length check and the hash.
    fn checksum_and_digest(
        &self,
        count: &str,
        checksum: &str,
        k: &str,
        order: &str,
        from: &str,
    ) -> Option<String> {
        Some(format!(
            "SELECT c, s, CASE WHEN LENGTH(j) = l THEN SHA2(j, 256) END FROM (\
             SELECT {count} AS c, {checksum} AS s, \
             GROUP_CONCAT({k} ORDER BY {order} SEPARATOR X'0A') AS j, \
             SUM(LENGTH({k})) + COUNT(*) - 1 AS l FROM {from}) AS lethe_digest"
        ))
    }

    fn keys_digest_setup(&self) -> Option<&'static str> {
        Some("SET SESSION group_concat_max_len = 4294967295")
    }

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

    fn to_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS CHAR)")
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

    /// On a partitioned table MariaDB merges the partitions' index scans in
    /// the order of the index's own columns only; the primary key that
    /// InnoDB appends to a secondary index does not count. `ORDER BY
    /// created_at, id` over an index on `created_at` alone is then "Using
    /// filesort" of every due row, unless an index names both.
    fn sorts_every_due_row(&self, info: &TableInfo, select: &str, key: &str) -> bool {
        info.partitioned
            && !info
                .index_pairs
                .iter()
                .any(|(a, b)| a == select && b == key)
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

    fn table_info<'a>(&'a self, db: &'a Db, t: &'a TableRef) -> DbFuture<'a, Option<TableInfo>> {
        Box::pin(table_info(self, db, t))
    }

    fn dead_space<'a>(
        &'a self,
        db: &'a Db,
        tables: &'a [&'a TableSql],
        step: Purge,
    ) -> DbFuture<'a, DeadSpace> {
        Box::pin(super::purge::mysql(db, tables, step))
    }

    fn state_migrations(&self) -> &'static [Migration] {
        migrations!("mysql")
    }

    fn update_chunk(&self, _hashed_columns: usize) -> usize {
        60_000
    }

    fn partition_catalog(&self, _from: &str, table: &str) -> Option<Stmt> {
        Some(Stmt {
            sql: PARTITIONS_SQL.to_string(),
            binds: vec![Val::Text(table.to_string())],
        })
    }

    /// Sub-partitioned tables and partitions seen already (sub-partitions
    /// repeat their partition's row) are skipped.
    fn range_partition(
        &self,
        row: &TextRow,
        column: &str,
        seen: &[RangePartition],
    ) -> Option<RangePartition> {
        let s = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        if s(4) == "1" || seen.iter().any(|c| c.1 == s(0)) {
            return None;
        }
        let func = range_key(&s(1), &s(2), column)?;
        let upper = range_description(&s(3))?;
        Some((String::new(), s(0), upper, func))
    }

    fn column_ddl(&self, t: ColumnType) -> &'static str {
        match t {
            ColumnType::Id => "BIGINT PRIMARY KEY",
            ColumnType::Ref | ColumnType::Int => "BIGINT",
            ColumnType::Text => "VARCHAR(255)",
            ColumnType::Ts => "DATETIME(6)",
            ColumnType::Date => "DATE",
        }
    }

    /// Every session but idle ones and the server's own threads (replication
    /// dumps included).
    fn active_sessions_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID') \
             AND ID <> CONNECTION_ID() AND DB = DATABASE()",
        )
    }

    /// MariaDB and MySQL 5.7 have `INNODB_LOCK_WAITS`, MySQL 8 has
    /// `performance_schema.data_lock_waits` instead.
    fn lock_view_probe(&self) -> Option<&'static str> {
        Some(
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'INNODB_LOCK_WAITS'",
        )
    }

    fn lock_waits_sql(&self, view: LockView) -> Option<&'static str> {
        Some(match view {
            LockView::InnodbLockWaits => {
                "SELECT COUNT(DISTINCT w.requesting_trx_id) \
                 FROM information_schema.INNODB_LOCK_WAITS w \
                 JOIN information_schema.INNODB_TRX t ON t.trx_id = w.requesting_trx_id \
                 JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                 WHERE p.DB = DATABASE()"
            }
            LockView::DataLockWaits => {
                "SELECT COUNT(DISTINCT w.REQUESTING_ENGINE_TRANSACTION_ID) \
                 FROM performance_schema.data_lock_waits w \
                 JOIN information_schema.INNODB_TRX t \
                   ON t.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID \
                 JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                 WHERE p.DB = DATABASE()"
            }
        })
    }
}

/// The catalog's view of a table: columns, primary key, the keys into it
/// and the columns that lead an index.
async fn table_info(d: &MySql, db: &Db, t: &TableRef) -> Result<Option<TableInfo>, Error> {
    let cols = db
        .fetch(&catalog(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR), CAST(DATA_TYPE AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            vec![Val::Text(t.table.clone())],
        ))
        .await?;
    if cols.is_empty() {
        return Ok(None);
    }
    let pk = db
        .fetch(&catalog(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            vec![Val::Text(t.table.clone())],
        ))
        .await?;
    let pk = firsts(&pk);
    let fks = schema::referencing_keys(db, t, &pk).await?;
    let idx = db.fetch(&d.leading_index_columns(t)).await?;
    let partitioned = db
        .count(&catalog(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = ? AND CREATE_OPTIONS LIKE '%partitioned%'",
            vec![Val::Text(t.table.clone())],
        ))
        .await?
        > 0;
    let index_pairs = if partitioned {
        let rows = db
            .fetch(&catalog(
                "SELECT CAST(a.COLUMN_NAME AS CHAR), CAST(b.COLUMN_NAME AS CHAR) \
                 FROM information_schema.STATISTICS a JOIN information_schema.STATISTICS b \
                   ON b.TABLE_SCHEMA = a.TABLE_SCHEMA AND b.TABLE_NAME = a.TABLE_NAME \
                  AND b.INDEX_NAME = a.INDEX_NAME AND b.SEQ_IN_INDEX = 2 \
                 WHERE a.TABLE_SCHEMA = DATABASE() AND a.TABLE_NAME = ? AND a.SEQ_IN_INDEX = 1",
                vec![Val::Text(t.table.clone())],
            ))
            .await?;
        rows.iter().map(|r| (s(&r[0]), s(&r[1]))).collect()
    } else {
        vec![]
    };
    Ok(Some(TableInfo {
        table: t.clone(),
        columns: schema::columns(d.engine(), &cols, 3, |r| s(&r[2]) == "YES"),
        primary_key: pk,
        referenced_by: fks,
        partitioned,
        leaves: vec![],
        has_rowid: false,
        indexed: firsts(&idx),
        index_pairs,
        heap_walk: false,
    }))
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
