//! PostgreSQL statement text.
//!
//! Lists bind as one `text[]` parameter cast to the column's array type
//! (`= ANY(CAST($1 AS integer[]))`), so a batch is one parameter whatever its
//! size. Batched deletes use `ctid` only on plain tables: a `ctid` is unique
//! within one physical table, so partitioned or inherited tables use the key.

use super::Val;
use super::dialect::{Builder, DeleteSummary, DeleteTarget, Dialect, Engine, sql_literal};
use super::schema::{ColumnInfo, ColumnKind};
use crate::config::Strategy;

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
