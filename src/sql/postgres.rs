//! PostgreSQL statement text.
//!
//! Lists bind as one `text[]` parameter cast to the column's array type
//! (`= ANY(CAST($1 AS integer[]))`), so a batch is one parameter whatever its
//! size. Batched deletes use `ctid` only on plain tables: a `ctid` is unique
//! within one physical table, so partitioned or inherited tables use the key.

use super::dialect::{
    Builder, ColumnType, DbFuture, DeleteSummary, DeleteTarget, Dialect, Engine, LockView,
    Migration, RangePartition, migrations, sql_literal,
};
use super::purge::{DeadSpace, Purge};
use super::schema::{self, ColumnInfo, ColumnKind, TableInfo, catalog, firsts, s};
use super::statements::TableSql;
use super::{Db, Stmt, TextRow, Val};
use crate::config::{Strategy, TableRef};
use crate::error::Error;
use chrono::{DateTime, Utc};

/// The PostgreSQL dialect.
pub struct Postgres;

impl Dialect for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    fn push_in_list(&self, b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]) {
        let p = b.bind_deferred(Val::TextList(values.to_vec()));
        b.push(&format!("{expr} = ANY(CAST({p} AS {}[]))", col.data_type));
    }

    fn push_typed(&self, b: &mut Builder<'_>, col: &ColumnInfo, text: &str) {
        let p = b.bind_deferred(Val::Text(text.to_string()));
        b.push(&format!("CAST({p} AS {})", col.data_type));
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
            Strategy::Fixed(v) => {
                let p = b.bind_deferred(Val::Text(v.clone()));
                format!("CAST({p} AS {})", col.data_type)
            }
            Strategy::Mask(n) => format!(
                "(CASE WHEN char_length({c}) > {n} THEN repeat('*', char_length({c}) - {n}) || right({c}, {n}) ELSE repeat('*', char_length({c})) END)"
            ),
            Strategy::Year | Strategy::Month => {
                let unit = if *s == Strategy::Year {
                    "year"
                } else {
                    "month"
                };
                if col.kind == ColumnKind::Time {
                    format!("CAST(date_trunc('{unit}', {c}) AS {})", col.data_type)
                } else if *s == Strategy::Year {
                    format!("(substr({c}, 1, 4) || '-01-01')")
                } else {
                    format!("(substr({c}, 1, 7) || '-01')")
                }
            }
            Strategy::Hash => return None,
        })
    }

    fn keyed_hash(
        &self,
        b: &mut Builder<'_>,
        c: &str,
        pads: &crate::keys::HashPads,
    ) -> Option<String> {
        // sha256() is built in since PostgreSQL 11: no pgcrypto needed.
        let i = b.bind_deferred(Val::Bytes(pads.inner.clone()));
        let o = b.bind_deferred(Val::Bytes(pads.outer.clone()));
        Some(format!(
            "encode(sha256({o} || sha256({i} || convert_to(CAST({c} AS TEXT), 'UTF8'))), 'hex')"
        ))
    }

    fn hashes_in_sql(&self) -> bool {
        true
    }

    fn looks_hashed(&self, c: &str) -> String {
        format!("({c} ~ '^[0-9a-f]{{64}}$')")
    }

    fn shard_predicate(&self, k: &str, key: &ColumnInfo, i: u32, n: u32) -> Result<String, String> {
        Ok(if key.kind == ColumnKind::Int {
            format!("(({k} % {n}) + {n}) % {n} = {i}")
        } else {
            format!("((hashtext(CAST({k} AS TEXT)) % {n}) + {n}) % {n} = {i}")
        })
    }

    /// `conparentid = 0` drops the clones PostgreSQL makes of a partitioned
    /// table's key on every partition (and on every partition of a
    /// partitioned referenced table); a key declared only on a partition
    /// has no parent constraint and is mapped to its root via `pg_inherits`.
    fn referencing_keys(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT c.conname::text, \
                    CASE WHEN rn.nspname = 'public' THEN '' ELSE rn.nspname::text END, rc.relname::text, \
                    (SELECT string_agg(a.attname::text, ',' ORDER BY k.i) FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i) \
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n), \
                    (SELECT string_agg(a.attname::text, ',' ORDER BY k.i) FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i) \
                       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n), \
                    CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'r' THEN 'RESTRICT' WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END, \
                    CAST(c.condeferrable AS TEXT), 'true', \
                    CASE WHEN r.oid = c.conrelid THEN '' ELSE cl.relname::text END, \
                    CASE c.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'r' THEN 'RESTRICT' WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END \
                 FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid \
                 CROSS JOIN LATERAL (WITH RECURSIVE up(oid, depth) AS (SELECT c.conrelid, 0 UNION ALL \
                      SELECT i.inhparent, u.depth + 1 FROM pg_inherits i JOIN up u ON i.inhrelid = u.oid) \
                    SELECT oid FROM up ORDER BY depth DESC LIMIT 1) r \
                 JOIN pg_class rc ON rc.oid = r.oid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
                 WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confrelid = to_regclass($1) \
                 ORDER BY 2, 3, 1"
                .into(),
            binds: vec![Val::Text(regclass(self, t))],
        }
    }

    /// A partitioned table often has no index of its own, only one per
    /// partition: a column counts when every member that holds rows has one.
    fn leading_index_columns(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT a.attname::text FROM pg_attribute a \
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND ( \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum) \
                    OR (EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = a.attrelid) AND NOT EXISTS ( \
                      WITH RECURSIVE tree(oid) AS (SELECT a.attrelid UNION ALL \
                        SELECT h.inhrelid FROM pg_inherits h JOIN tree t ON h.inhparent = t.oid) \
                      SELECT 1 FROM tree t JOIN pg_class c ON c.oid = t.oid WHERE c.relkind = 'r' AND NOT EXISTS ( \
                        SELECT 1 FROM pg_index i JOIN pg_attribute la ON la.attrelid = i.indrelid AND la.attnum = i.indkey[0] \
                        WHERE i.indrelid = t.oid AND la.attname = a.attname))))"
                .into(),
            binds: vec![Val::Text(regclass(self, t))],
        }
    }

    fn all_columns(&self) -> Stmt {
        Stmt {
            sql: "SELECT CASE WHEN n.nspname = 'public' THEN '' ELSE n.nspname::text END, c.relname::text, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod) \
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid \
                  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped \
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
                  ORDER BY 1, 2, a.attnum"
                .into(),
            binds: vec![],
        }
    }

    fn delete_summary(&self) -> DeleteSummary {
        DeleteSummary::InStatement
    }

    fn summary_of_batch(&self) -> Option<&'static str> {
        // The keys joined by newlines, hashed by the server: the same value
        // as `keys::keys_sha256` of the rows in RETURNING order.
        Some(
            " SELECT CAST(COUNT(*) AS TEXT), \
             encode(sha256(convert_to(string_agg(k, E'\\n'), 'UTF8')), 'hex'), \
             CAST(MAX(o) AS TEXT), \
             CAST(json_agg(DISTINCT s) FILTER (WHERE s IS NOT NULL) AS TEXT) \
             FROM lethe_batch",
        )
    }

    fn push_delete_batch(
        &self,
        b: &mut Builder<'_>,
        t: &DeleteTarget<'_>,
        pred: &dyn Fn(&mut Builder<'_>),
        limit: usize,
    ) {
        let id = if t.physical_id { "ctid" } else { t.key_sql };
        let summary = self.summary_of_batch().filter(|_| t.summarize);
        if summary.is_some() {
            b.push("WITH lethe_batch AS (");
        }
        b.push(&format!(
            "DELETE FROM {tbl} WHERE {id} = ANY(ARRAY(SELECT {id} FROM {tbl} WHERE ",
            tbl = t.table_sql
        ));
        pred(b);
        b.push(&format!(
            " ORDER BY {} LIMIT {limit})) RETURNING {}",
            t.order_sql, t.returning_sql
        ));
        if let Some(summary) = summary {
            b.push(")").push(summary);
        }
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
        Box::pin(super::purge::postgres(db, tables, step))
    }

    fn state_migrations(&self) -> &'static [Migration] {
        migrations!("postgres")
    }

    /// The whole batch: its keys are one `text[]` parameter.
    fn update_chunk(&self, _hashed_columns: usize) -> usize {
        usize::MAX
    }

    fn any_key_type(&self) -> bool {
        true
    }

    fn zoned_time(&self, data_type: &str) -> bool {
        data_type.contains("with time zone")
    }

    fn tie_break_is_free(&self, _info: &TableInfo) -> bool {
        false
    }

    /// On a partitioned table only a single leaf (`part`) may use `ctid`.
    fn physical_id(&self, info: &TableInfo, part: Option<&str>) -> bool {
        part.is_some() || !info.partitioned
    }

    fn deletes_per_leaf(&self, info: &TableInfo) -> bool {
        info.partitioned
    }

    fn casts_mixed_keys(&self) -> bool {
        true
    }

    fn partition_from(&self, _from: &str, alias: &str, schema: &str, name: &str) -> String {
        format!(
            "ONLY {}.{} AS {alias}",
            self.quote(schema),
            self.quote(name)
        )
    }

    fn partition_catalog(&self, from: &str, _table: &str) -> Option<Stmt> {
        Some(Stmt {
            sql: PARTITIONS_SQL.to_string(),
            binds: vec![Val::Text(from.to_string())],
        })
    }

    /// A leaf range partition on the select column alone; sub-partitioned
    /// children are batched.
    fn range_partition(
        &self,
        row: &TextRow,
        column: &str,
        _seen: &[RangePartition],
    ) -> Option<RangePartition> {
        let s = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        if s(2) != "r" || s(5) != "r" || s(6) != "1" || s(4) != column {
            return None;
        }
        range_upper(&s(3)).map(|upper| (s(0), s(1), upper, ""))
    }

    fn integer_cast(&self) -> &'static str {
        "BIGINT"
    }

    /// `ACCESS EXCLUSIVE`, the lock `DETACH` takes anyway, taken on the
    /// parent first, in the order the application's statements on the parent
    /// take theirs, so the two cannot deadlock.
    fn lock_table(&self, from: &str) -> String {
        format!("LOCK TABLE {from} IN ACCESS EXCLUSIVE MODE")
    }

    /// Detach, then drop the detached table (one transaction).
    fn partition_drop(&self, from: &str, schema: &str, name: &str) -> Vec<Stmt> {
        let part = format!("{}.{}", self.quote(schema), self.quote(name));
        vec![
            Stmt {
                sql: format!("ALTER TABLE {from} DETACH PARTITION {part}"),
                binds: vec![],
            },
            Stmt {
                sql: format!("DROP TABLE {part}"),
                binds: vec![],
            },
        ]
    }

    fn key_checksum(&self, k: &str) -> String {
        format!("COALESCE(SUM(CAST(hashtext({k}) AS BIGINT)), 0)")
    }

    fn checksum_and_digest(
        &self,
        count: &str,
        checksum: &str,
        k: &str,
        order: &str,
        from: &str,
    ) -> Option<String> {
        Some(format!(
            "SELECT {count}, {checksum}, \
             encode(sha256(convert_to(string_agg({k}, E'\\n' ORDER BY {order}), 'UTF8')), 'hex') \
             FROM {from}"
        ))
    }

    fn transactional_ddl(&self) -> bool {
        true
    }

    fn column_ddl(&self, t: ColumnType) -> &'static str {
        match t {
            ColumnType::Id => "BIGINT PRIMARY KEY",
            ColumnType::Ref | ColumnType::Int => "BIGINT",
            ColumnType::Text => "TEXT",
            ColumnType::Ts => "TIMESTAMPTZ",
            ColumnType::Date => "DATE",
        }
    }

    /// Values travel as text: each is cast to the column's type.
    fn push_bind_as(&self, b: &mut Builder<'_>, v: Val, t: ColumnType) {
        let p = b.bind_deferred(v);
        let ty = match t {
            ColumnType::Id | ColumnType::Ref | ColumnType::Int => "BIGINT",
            ColumnType::Text => "TEXT",
            ColumnType::Ts => "TIMESTAMPTZ",
            ColumnType::Date => "DATE",
        };
        b.push(&format!("CAST({p} AS {ty})"));
    }

    fn timestamp_text(&self, t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%d %H:%M:%S+00").to_string()
    }

    /// Zero when everything received is replayed (an idle primary must not
    /// look like a lagging replica), else the age of the last transaction
    /// replayed.
    fn replica_lag_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'primary' \
             WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN '0' \
             ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 0)::text END",
        )
    }

    /// The largest `replay_lag` the standbys report, as fresh as their
    /// last feedback.
    fn primary_lag_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM replay_lag))::float8, 0)::text \
             FROM pg_stat_replication",
        )
    }

    fn active_sessions_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND pid <> pg_backend_pid() AND datname = current_database() \
             AND backend_type = 'client backend'",
        )
    }

    /// `pg_locks`, whatever the version.
    fn lock_waits_sql(&self, _view: LockView) -> Option<&'static str> {
        Some(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.datname = current_database()",
        )
    }
}

/// The catalog's view of a table: its kind, columns, primary key, the keys
/// into it, the columns that lead an index and, when it is partitioned or
/// inherited, every physical table that holds its rows.
async fn table_info(d: &Postgres, db: &Db, t: &TableRef) -> Result<Option<TableInfo>, Error> {
    let schema = t.schema.clone().unwrap_or_else(|| "public".into());
    let rel = regclass(d, t);
    let found = db
        .fetch(&catalog(
            "SELECT CAST(c.relkind AS TEXT), CAST((c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)) AS TEXT), \
                    CAST(current_setting('server_version_num')::int >= 140000 AS TEXT) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            vec![Val::Text(schema), Val::Text(t.table.clone())],
        ))
        .await?;
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let partitioned = s(&row[1]) == "true";
    let heap_walk = s(&row[0]) == "r" && !partitioned && s(&row[2]) == "true";
    let cols = db
        .fetch(&catalog(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), CAST(NOT a.attnotnull AS TEXT) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            vec![Val::Text(rel.clone())],
        ))
        .await?;
    let pk = db
        .fetch(&catalog(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            vec![Val::Text(rel.clone())],
        ))
        .await?;
    let pk = firsts(&pk);
    let fks = schema::referencing_keys(db, t, &pk).await?;
    let idx = db.fetch(&d.leading_index_columns(t)).await?;
    let leaves = if partitioned {
        leaves(db, rel).await?
    } else {
        vec![]
    };
    Ok(Some(TableInfo {
        table: t.clone(),
        columns: schema::columns(Engine::Postgres, &cols, 1, |r| s(&r[2]) == "true"),
        primary_key: pk,
        referenced_by: fks,
        partitioned,
        leaves,
        has_rowid: false,
        indexed: firsts(&idx),
        index_pairs: vec![],
        heap_walk,
    }))
}

/// Every physical table under `rel` that holds rows, as (schema, table, relkind).
async fn leaves(db: &Db, rel: String) -> Result<Vec<(String, String, String)>, Error> {
    Ok(db
        .fetch(&catalog(
            "WITH RECURSIVE tree(oid) AS (SELECT to_regclass($1)::oid UNION ALL \
               SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid) \
             SELECT n.nspname::text, c.relname::text, CAST(c.relkind AS TEXT) FROM tree t \
             JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind <> 'p' ORDER BY 1, 2",
            vec![Val::Text(rel)],
        ))
        .await?
        .iter()
        .map(|r| (s(&r[0]), s(&r[1]), s(&r[2])))
        .collect())
}

/// `"schema"."table"` for `to_regclass` (the schema defaults to `public`).
fn regclass(d: &Postgres, t: &TableRef) -> String {
    let schema = t.schema.as_deref().unwrap_or("public");
    format!("{}.{}", d.quote(schema), d.quote(&t.table))
}

/// The partitions of a partitioned table, straight from the catalog, one row
/// each: schema, name, relkind, the bound as PostgreSQL prints it
/// (`FOR VALUES FROM (…) TO (…)`), the partition key's first column, the
/// strategy (`r` range) and the number of key columns. `$1` is the parent's
/// quoted, qualified name.
pub const PARTITIONS_SQL: &str = "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
     pg_get_expr(c.relpartbound, c.oid)::text, a.attname::text, pt.partstrat::text, \
     pt.partnatts::text \
     FROM pg_partitioned_table pt \
     JOIN pg_inherits i ON i.inhparent = pt.partrelid \
     JOIN pg_class c ON c.oid = i.inhrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0] \
     WHERE pt.partrelid = to_regclass($1) ORDER BY 1, 2";

/// The exclusive upper bound of a single-column range partition: the literal
/// in `… TO ('2024-01-01 00:00:00')`, unquoted. `None` for `MAXVALUE`,
/// `DEFAULT`, several columns, or anything this parser does not know, so
/// such a partition is batched, never dropped.
pub fn range_upper(bound: &str) -> Option<String> {
    let rest = bound.trim().strip_prefix("FOR VALUES FROM (")?;
    let (_, to) = rest.split_once(") TO (")?;
    let to = to.strip_suffix(')')?;
    let inner = to.strip_prefix('\'')?.strip_suffix('\'')?;
    // One quoted literal only: a doubled quote is an escaped one, a lone
    // quote would mean a second value (`'a', 'b'`).
    let text = inner.replace("''", "\u{0}");
    if text.contains('\'') {
        return None;
    }
    Some(text.replace('\u{0}', "'"))
}

#[cfg(test)]
mod partition_tests {
    use super::range_upper;

    #[test]
    fn upper_bounds_are_read_only_from_single_literal_ranges() {
        assert_eq!(
            range_upper("FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-02-01 00:00:00')")
                .as_deref(),
            Some("2024-02-01 00:00:00")
        );
        assert_eq!(
            range_upper("FOR VALUES FROM (MINVALUE) TO ('2024-02-01')").as_deref(),
            Some("2024-02-01")
        );
        assert_eq!(
            range_upper("FOR VALUES FROM ('2024-01-01') TO (MAXVALUE)"),
            None
        );
        assert_eq!(range_upper("DEFAULT"), None);
        assert_eq!(range_upper("FOR VALUES IN ('a')"), None);
        assert_eq!(range_upper("FOR VALUES FROM ('a', 1) TO ('b', 2)"), None);
        assert_eq!(
            range_upper("FOR VALUES FROM ('it''s') TO ('o''k')").as_deref(),
            Some("o'k")
        );
    }
}
