//! PostgreSQL statement text.
//!
//! Lists bind as one `text[]` parameter cast to the column's array type
//! (`= ANY(CAST($1 AS integer[]))`), so a batch is one parameter whatever its
//! size. Batched deletes use `ctid` only on plain tables: a `ctid` is unique
//! within one physical table, so partitioned or inherited tables use the key.

use super::Stmt;
use super::Val;
use super::dialect::{Builder, DeleteSummary, DeleteTarget, Dialect, Engine, sql_literal};
use super::schema::{ColumnInfo, ColumnKind};
use crate::config::{Strategy, TableRef};

pub struct Postgres;

impl Dialect for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    fn to_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    fn push_in_list(&self, b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]) {
        let p = b.bind_deferred(Val::TextList(values.to_vec()));
        b.push(&format!("{expr} = ANY(CAST({p} AS {}[]))", col.data_type));
    }

    fn push_typed(&self, b: &mut Builder<'_>, col: &ColumnInfo, text: &str) {
        let p = b.bind_deferred(Val::Text(text.to_string()));
        b.push(&format!("CAST({p} AS {})", col.data_type));
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

    fn delete_returning(&self) -> bool {
        true
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

    fn keyless_tables(&self) -> Option<Stmt> {
        None
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

    fn push_delete_batch(
        &self,
        b: &mut Builder<'_>,
        t: &DeleteTarget<'_>,
        pred: &dyn Fn(&mut Builder<'_>),
        limit: usize,
    ) {
        let id = if t.physical_id { "ctid" } else { t.key_sql };
        if t.summarize {
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
        if t.summarize {
            // The keys joined by newlines, hashed by the server: the same
            // value as `keys::keys_sha256` of the rows in RETURNING order.
            b.push(
                ") SELECT CAST(COUNT(*) AS TEXT), \
                 encode(sha256(convert_to(string_agg(k, E'\\n'), 'UTF8')), 'hex'), \
                 CAST(MAX(o) AS TEXT), \
                 CAST(json_agg(DISTINCT s) FILTER (WHERE s IS NOT NULL) AS TEXT) \
                 FROM lethe_batch",
            );
        }
    }
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
