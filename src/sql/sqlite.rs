//! SQLite statement text.
//!
//! The bundled SQLite may lack `DELETE … LIMIT`, so batches delete
//! `WHERE rowid IN (SELECT rowid … ORDER BY … LIMIT n)` (the key on
//! `WITHOUT ROWID` tables). Dates are usually text: compare in the stored format.

use super::dialect::{
    Builder, ColumnType, DbFuture, DeleteSummary, DeleteTarget, Dialect, Engine, Migration,
    migrations, sql_literal,
};
use super::purge::{DeadSpace, Purge};
use super::schema::{self, ColumnInfo, ColumnKind, TableInfo, catalog, firsts, s};
use super::statements::TableSql;
use super::{Db, Stmt, Val};
use crate::config::{Strategy, TableRef};
use crate::error::Error;

/// The SQLite dialect.
/// Rows per anonymizing `UPDATE` whose hashes Lethe binds (see
/// `Dialect::update_chunk`): small enough that the `CASE` is cheap, large
/// enough that a batch is a few statements.
const HASHED_CHUNK: usize = 256;

pub struct Sqlite;

impl Dialect for Sqlite {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn lock_rows(&self) -> &'static str {
        // BEGIN IMMEDIATE already holds the database write lock.
        ""
    }

    fn anonymized(
        &self,
        b: &mut Builder<'_>,
        c: &str,
        _col: &ColumnInfo,
        s: &Strategy,
    ) -> Option<String> {
        Some(match s {
            Strategy::Null => "NULL".into(),
            Strategy::Redact => sql_literal("[REDACTED]"),
            Strategy::Fixed(v) => b.bind_deferred(Val::Text(v.clone())),
            Strategy::Mask(n) => format!(
                "(CASE WHEN length({c}) > {n} THEN replace(hex(zeroblob(length({c}) - {n})), '00', '*') || substr({c}, -{n}) ELSE replace(hex(zeroblob(length({c}))), '00', '*') END)"
            ),
            Strategy::Year => format!("(substr({c}, 1, 4) || '-01-01')"),
            Strategy::Month => format!("(substr({c}, 1, 7) || '-01')"),
            Strategy::Hash => return None,
        })
    }

    fn looks_hashed(&self, c: &str) -> String {
        format!("(length({c}) = 64 AND {c} NOT GLOB '*[^0-9a-f]*')")
    }

    fn shard_predicate(&self, k: &str, key: &ColumnInfo, i: u32, n: u32) -> Result<String, String> {
        if key.kind != ColumnKind::Int {
            return Err(format!(
                "key `{}` is text: SQLite has no hash function to shard it by (and one writer at a time gains nothing from shards)",
                key.name
            ));
        }
        Ok(format!("(({k} % {n}) + {n}) % {n} = {i}"))
    }

    fn delete_summary(&self) -> DeleteSummary {
        DeleteSummary::SelectFirst
    }

    /// SQLite keys have no names: Lethe calls them `<table>_fk<id>` after
    /// `PRAGMA foreign_key_list`'s id. They are enforced only when the
    /// connection has `PRAGMA foreign_keys` on (Lethe turns it on unless the
    /// source URL says `foreign_keys=off`).
    fn referencing_keys(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT t || '_fk' || id, '', t, group_concat(\"from\", ','), group_concat(COALESCE(\"to\", ''), ','), \
                    on_delete, 'false', \
                    CASE WHEN (SELECT foreign_keys FROM pragma_foreign_keys()) = 1 THEN 'true' ELSE 'false' END, '', on_update \
                  FROM (SELECT m.name AS t, f.id, f.seq, f.\"from\", f.\"to\", f.on_delete, f.on_update FROM sqlite_master m \
                        JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table' AND f.\"table\" = ? COLLATE NOCASE \
                        ORDER BY m.name, f.id, f.seq) \
                  GROUP BY t, id ORDER BY t, id"
                .into(),
            binds: vec![Val::Text(t.table.clone())],
        }
    }

    fn leading_index_columns(&self, t: &TableRef) -> Stmt {
        Stmt {
            sql: "SELECT ii.name FROM pragma_index_list(?) il JOIN pragma_index_info(il.name) ii WHERE ii.seqno = 0".into(),
            binds: vec![Val::Text(t.table.clone())],
        }
    }

    fn all_columns(&self) -> Stmt {
        Stmt {
            sql: "SELECT '', m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                  WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY m.name, p.cid"
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
        let id = if t.physical_id { "rowid" } else { t.key_sql };
        b.push(&format!(
            "DELETE FROM {tbl} WHERE {id} IN (SELECT {id} FROM {tbl} WHERE ",
            tbl = t.table_sql
        ));
        pred(b);
        b.push(&format!(" ORDER BY {} LIMIT {limit})", t.order_sql));
        if !t.returning_sql.is_empty() {
            b.push(" RETURNING ").push(t.returning_sql);
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
        Box::pin(super::purge::sqlite(db, tables, step))
    }

    fn select_first_summary(&self) -> Option<&'static str> {
        Some(
            "SELECT CAST(COUNT(*) AS TEXT), group_concat(k, char(10)), CAST(MAX(o) AS TEXT), \
             json_group_array(DISTINCT s) FILTER (WHERE s IS NOT NULL)",
        )
    }

    fn state_migrations(&self) -> &'static [Migration] {
        migrations!("sqlite")
    }

    /// A key and a value per hashed column per row, under SQLite's bind
    /// limit; and with hashes bound, at most [`HASHED_CHUNK`] rows: each row
    /// the `UPDATE` touches walks `CASE key WHEN … THEN …` until its own key,
    /// so one statement for a whole batch of n rows costs n²/2 comparisons
    /// (a 10,000-row batch took 1.7 s; in statements of 256 rows, in the
    /// same transaction, it is linear).
    fn update_chunk(&self, hashed_columns: usize) -> usize {
        let under_limit = 30_000 / (1 + 2 * hashed_columns);
        if hashed_columns == 0 {
            under_limit
        } else {
            under_limit.min(HASHED_CHUNK)
        }
    }

    fn enforces_text_width(&self) -> bool {
        false
    }

    /// On a rowid table (not `WITHOUT ROWID`).
    fn physical_id(&self, info: &TableInfo, _part: Option<&str>) -> bool {
        info.has_rowid
    }

    fn single_writer(&self) -> bool {
        true
    }

    fn column_ddl(&self, t: ColumnType) -> &'static str {
        match t {
            ColumnType::Id => "INTEGER PRIMARY KEY",
            ColumnType::Ref | ColumnType::Int => "INTEGER",
            ColumnType::Text | ColumnType::Ts | ColumnType::Date => "TEXT",
        }
    }
}

/// The catalog's view of a table: whether it has a rowid, its columns,
/// primary key (in key order), the keys into it and the columns that lead
/// an index (the primary key's first column among them).
async fn table_info(d: &Sqlite, db: &Db, t: &TableRef) -> Result<Option<TableInfo>, Error> {
    let master = db
        .fetch(&catalog(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            vec![Val::Text(t.table.clone())],
        ))
        .await?;
    let Some(row) = master.first() else {
        return Ok(None);
    };
    let has_rowid = !s(&row[0]).to_ascii_uppercase().contains("WITHOUT ROWID");
    let cols = db
        .fetch(&catalog(
            "SELECT name, type, CAST(\"notnull\" AS TEXT), CAST(pk AS TEXT) FROM pragma_table_info(?) ORDER BY cid",
            vec![Val::Text(t.table.clone())],
        ))
        .await?;
    let mut pk: Vec<(i64, String)> = cols
        .iter()
        .filter_map(|r| {
            let n: i64 = s(&r[3]).parse().unwrap_or(0);
            (n > 0).then(|| (n, s(&r[0])))
        })
        .collect();
    pk.sort();
    let idx = db.fetch(&d.leading_index_columns(t)).await?;
    let pk_names: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
    // `to` is NULL when the key references the primary key.
    let fks = schema::referencing_keys(db, t, &pk_names).await?;
    let mut indexed = firsts(&idx);
    if let Some(first) = pk_names.first() {
        indexed.push(first.clone());
    }
    Ok(Some(TableInfo {
        table: t.clone(),
        columns: schema::columns(Engine::Sqlite, &cols, 1, |r| s(&r[2]) == "0"),
        referenced_by: fks,
        primary_key: pk_names,
        partitioned: false,
        leaves: vec![],
        has_rowid,
        indexed,
        index_pairs: vec![],
        heap_walk: false,
    }))
}
