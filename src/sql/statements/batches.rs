//! The batch statements: the one-statement delete (with its summary and
//! windows for side-by-side workers) and the keyed select of the batch loop,
//! and reading back what they returned.

use super::{ActionSql, BatchRow, Cursor, Deleted, RuleSql};
use crate::keys::keys_sha256;
use crate::sql::dialect::{DeleteSummary, DeleteTarget, Dialect};
use crate::sql::schema::{ColumnInfo, ColumnKind};
use crate::sql::{Builder, Stmt, TextRow, Val};
use std::collections::BTreeSet;

impl RuleSql {
    /// Whether the one-statement delete path applies: a delete with nothing
    /// to do per row but audit its subject.
    pub fn fast_delete(&self, d: &dyn Dialect) -> bool {
        matches!(self.action, ActionSql::Delete)
            && self.children.is_empty()
            && self.objects.is_empty()
            && d.delete_returning()
    }

    /// Whether the one-statement anonymize applies: an anonymize with
    /// nothing to do per row but audit its subject, on an engine that
    /// summarizes a batch inside the statement and hashes in SQL
    /// (PostgreSQL), of a table that is not walked leaf by leaf (an
    /// `UPDATE` through a leaf could not move a row whose partition key it
    /// rewrites).
    pub fn fast_anonymize(&self, d: &dyn Dialect) -> bool {
        matches!(self.action, ActionSql::Anonymize(_))
            && self.children.is_empty()
            && self.objects.is_empty()
            && d.summary_of_batch().is_some()
            && d.hashes_in_sql()
            && !d.deletes_per_leaf(&self.table.info)
            && !self.anonymizes_key()
    }

    /// Whether the rule rewrites its own key: then the one-statement
    /// anonymize could not match the rows it updated to the ones it selected.
    fn anonymizes_key(&self) -> bool {
        match &self.action {
            ActionSql::Anonymize(cols) => cols.iter().any(|(c, _)| c.name == self.key.name),
            ActionSql::Delete => false,
        }
    }

    /// Whether each batch is one statement that acts and summarizes at once
    /// ([`RuleSql::fast_delete`], [`RuleSql::fast_anonymize`]): no rows
    /// travel to Lethe, batches continue from the last one's bound, and
    /// side-by-side windows apply.
    pub fn one_statement(&self, d: &dyn Dialect) -> bool {
        self.fast_delete(d) || self.fast_anonymize(d)
    }

    fn returning(&self, d: &dyn Dialect) -> String {
        self.returning_with(d, &d.quote(&self.bound_column().name))
    }

    /// What a one-statement delete returns per row: key, subject and
    /// `order`, the expression whose greatest value is the batch's bound.
    fn returning_with(&self, d: &dyn Dialect, order: &str) -> String {
        let key = d.to_text(&d.quote(&self.key.name));
        let subj = match &self.subject {
            Some(s) => d.to_text(&d.quote(&s.name)),
            None => "NULL".into(),
        };
        match d.delete_summary() {
            DeleteSummary::InStatement => format!(
                "{key} AS k, {} AS s, {} AS o",
                if self.subject.is_some() {
                    subj
                } else {
                    "CAST(NULL AS TEXT)".into()
                },
                order
            ),
            DeleteSummary::SelectFirst => String::new(),
            DeleteSummary::Rows => format!("{key}, {subj}, {}", d.to_text(order)),
        }
    }

    /// `DeleteSummary::SelectFirst`: the statement that summarizes the rows
    /// the next `delete_batch` will remove (count, keys joined by newlines,
    /// the greatest value of the walked column, distinct subjects as a JSON
    /// array). `from` and `below` must be the ones `delete_batch` is given.
    pub fn summarize_batch(
        &self,
        d: &dyn Dialect,
        part: Option<&str>,
        from: Option<&str>,
        below: Option<&str>,
    ) -> Option<Stmt> {
        if d.delete_summary() != DeleteSummary::SelectFirst {
            return None;
        }
        let head = d.select_first_summary()?;
        let mut b = Builder::new(d);
        let key = d.to_text(&self.table.col(d, &self.key.name));
        let subj = match &self.subject {
            Some(s) => d.to_text(&self.table.col(d, &s.name)),
            None => "NULL".into(),
        };
        b.push(head).push(" FROM (SELECT ");
        b.push(&key).push(" AS k, ").push(&subj).push(" AS s, ");
        b.push(&self.table.col(d, &self.bound_column().name))
            .push(" AS o FROM ");
        b.push(part.unwrap_or(&self.table.from)).push(" WHERE ");
        self.push_eligible(d, &mut b);
        self.push_window(d, &mut b, from, below);
        b.push(&format!(
            " ORDER BY {} LIMIT {})",
            self.order_sql(d),
            self.batch_size
        ));
        Some(b.finish())
    }

    /// The leading column of a one-statement delete's order: the select
    /// column, or the key. Its greatest deleted value bounds the next batch
    /// from below, so the index walk starts where the last batch ended
    /// instead of stepping over every entry the run has already deleted.
    fn bound_column(&self) -> &ColumnInfo {
        match self.walked_select() {
            Some(sel) => &sel.column,
            None => &self.key,
        }
    }

    /// What a one-statement batch deleted, from the rows `delete_batch` (or,
    /// on SQLite, `summarize_batch`) returned: one summary row or every
    /// deleted row.
    pub fn parse_deleted(&self, d: &dyn Dialect, rows: Vec<TextRow>) -> Result<Deleted, String> {
        let summary = d.delete_summary();
        if summary != DeleteSummary::Rows {
            let mut row = rows.into_iter().next().ok_or("no summary row")?;
            row.resize(4, None);
            let count: u64 = row[0]
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| "unreadable batch count")?;
            let subjects = match row[3].take() {
                Some(json) => serde_json::from_str::<Vec<String>>(&json)
                    .map_err(|_| "unreadable batch subjects")?,
                None => vec![],
            };
            let keys = row[1].take();
            return Ok(Deleted {
                count,
                keys_sha256: match (summary, keys) {
                    (DeleteSummary::InStatement, Some(sha)) => sha,
                    // Keys joined by newlines: hashing the whole is hashing the list.
                    (_, Some(joined)) => keys_sha256(&[joined]),
                    (_, None) => keys_sha256(&[]),
                },
                subjects,
                bound: row[2].take(),
            });
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut subjects = BTreeSet::new();
        let mut bound: Option<String> = None;
        let int_bound = self.bound_column().kind == ColumnKind::Int;
        for mut r in rows {
            let order = r.pop().flatten();
            let subject = r.pop().flatten();
            if let Some(k) = r.pop().flatten() {
                keys.push(k);
            }
            subjects.extend(subject);
            // Rows come back in delete order (`ORDER BY … LIMIT`): the last
            // is the greatest; integers are compared as numbers anyway.
            bound = match (bound, order) {
                (Some(b), Some(o)) if int_bound => {
                    let (bi, oi) = (b.parse::<i64>(), o.parse::<i64>());
                    match (bi, oi) {
                        (Ok(bi), Ok(oi)) if bi > oi => Some(b),
                        _ => Some(o),
                    }
                }
                (b, None) => b,
                (_, o) => o,
            };
        }
        Ok(Deleted {
            count: keys.len() as u64,
            keys_sha256: keys_sha256(&keys),
            subjects: subjects.into_iter().collect(),
            bound,
        })
    }

    /// The physical tables a one-statement delete walks, one after another:
    /// `None` for the table itself, or each leaf of a PostgreSQL partitioned
    /// or inherited table (a `ctid` is unique only within one of them).
    pub fn delete_parts(&self, d: &dyn Dialect) -> Vec<Option<String>> {
        if d.deletes_per_leaf(&self.table.info) {
            self.table
                .info
                .leaves
                .iter()
                .map(|(schema, table, _)| {
                    Some(d.partition_from(&self.table.from, &self.table.name, schema, table))
                })
                .collect()
        } else {
            vec![None]
        }
    }

    /// `AND <order column> >= from AND <order column> < below`, for the
    /// parts given: a one-statement delete's window on the leading order
    /// column (see [`RuleSql::bound_column`]).
    fn push_window(
        &self,
        d: &dyn Dialect,
        b: &mut Builder<'_>,
        from: Option<&str>,
        below: Option<&str>,
    ) {
        let col = self.bound_column();
        let col_sql = self.table.col(d, &col.name);
        for (op, v) in [(" >= ", from), (" < ", below)] {
            if let Some(v) = v {
                b.push(" AND ").push(&col_sql).push(op);
                d.push_typed(b, col, v);
            }
        }
    }

    /// Where `workers` side-by-side deletes split the rule's rows: the
    /// leading order column's value at row `offset` of the eligible rows in
    /// delete order. Worker `i` takes `[split(i-1), split(i))`, so each row
    /// falls in exactly one window, also a row written after the split.
    pub fn split_point(&self, d: &dyn Dialect, offset: u64) -> Stmt {
        let mut b = Builder::new(d);
        let col_sql = self.table.col(d, &self.bound_column().name);
        b.push("SELECT ")
            .push(&d.to_text(&col_sql))
            .push(" FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        self.push_eligible(d, &mut b);
        b.push(&format!(" ORDER BY {col_sql} LIMIT 1 OFFSET {offset}"));
        b.finish()
    }

    /// Delete the next batch in one statement, returning (key, subject).
    /// `part` is one of [`RuleSql::delete_parts`].
    /// `bound`: the previous batch's greatest order value (`Deleted::bound`),
    /// or where this worker's window starts; `below`: where it ends.
    pub fn delete_batch(
        &self,
        d: &dyn Dialect,
        part: Option<&str>,
        bound: Option<&str>,
        below: Option<&str>,
    ) -> Stmt {
        let mut b = Builder::new(d);
        let key_sql = self.table.col(d, &self.key.name);
        // This path keeps no cursor, so rows that tie on the select column
        // need no tie-break. On PostgreSQL one costs an incremental sort per
        // batch (an index on the select column does not end with the key),
        // and on a partitioned MariaDB table a sort of every due row; InnoDB
        // and SQLite indexes of a plain table end with the primary key /
        // rowid, where the tie-break is free, so they keep it.
        let order = match self.walked_select() {
            Some(sel) if !d.tie_break_is_free(&self.table.info) => {
                self.table.col(d, &sel.column.name)
            }
            _ => self.order_sql(d),
        };
        let returning = self.returning(d);
        let physical = d.physical_id(&self.table.info, part);
        let table_sql = part.unwrap_or(&self.table.from);
        let target = DeleteTarget {
            table_sql,
            key_sql: &key_sql,
            order_sql: &order,
            returning_sql: &returning,
            physical_id: physical,
            summarize: d.delete_summary() == DeleteSummary::InStatement,
        };
        d.push_delete_batch(
            &mut b,
            &target,
            &|b| {
                self.push_eligible(d, b);
                self.push_window(d, b, bound, below);
            },
            self.batch_size,
        );
        b.finish()
    }

    /// Anonymize the next batch in one statement ([`RuleSql::fast_anonymize`]):
    ///
    /// ```sql
    /// WITH lethe_sel AS (SELECT ctid AS lethe_id, key AS k, subject AS s, sel AS o
    ///                    FROM t WHERE <eligible> AND sel >= <bound> ORDER BY sel LIMIT n),
    ///  lethe_upd AS (UPDATE t SET … WHERE ctid = ANY(ARRAY(SELECT lethe_id FROM lethe_sel))
    ///                AND <needs> RETURNING key AS k),
    ///  lethe_batch AS (SELECT lethe_sel.k, lethe_sel.s, lethe_sel.o
    ///                  FROM lethe_upd JOIN lethe_sel ON lethe_sel.k = lethe_upd.k)
    /// SELECT <summary> FROM lethe_batch
    /// ```
    ///
    /// The summary is of the selected rows' values from before the update,
    /// so a subject column the rule hashes is audited as it was, and the
    /// bound is the walked column's old value; the rows counted are the
    /// ones the update changed (matched back by key, which the rule does
    /// not rewrite). `ctid = ANY(ARRAY(…))` keeps the update a TID scan: a
    /// join with the selected rows let the planner hash-join a scan of the
    /// whole table at 10,000 rows a batch (800 ms a batch instead of 170).
    /// The walk needs no tie-break: a row once anonymized no longer matches
    /// `needs` (every strategy's result is its own fixed point), so the rows
    /// of the bound's value that a batch already did are not selected again,
    /// and every batch either anonymizes a row or ends the walk. A row an
    /// application changes between the select and the update is re-checked
    /// by the update (PostgreSQL follows it to its new version, whose
    /// `ctid` differs), so it is left to a later batch or run, never
    /// anonymized from a stale read.
    pub fn anonymize_batch(
        &self,
        d: &dyn Dialect,
        pads: &crate::keys::HashPads,
        bound: Option<&str>,
        below: Option<&str>,
    ) -> Stmt {
        let ActionSql::Anonymize(cols) = &self.action else {
            unreachable!("anonymize_batch of a delete");
        };
        let summary = d
            .summary_of_batch()
            .expect("fast_anonymize: the engine summarizes in the statement");
        let mut b = Builder::new(d);
        // `fast_anonymize` leaves out partitioned tables, the only ones
        // whose `ctid` is not unique.
        debug_assert!(d.physical_id(&self.table.info, None));
        let walked = self.table.col(d, &self.bound_column().name);
        let subject = match &self.subject {
            Some(s) => d.to_text(&self.table.col(d, &s.name)),
            None => "CAST(NULL AS TEXT)".into(),
        };
        let key = d.to_text(&self.table.col(d, &self.key.name));
        b.push(&format!(
            "WITH lethe_sel AS (SELECT ctid AS lethe_id, {key} AS k, {subject} AS s, {walked} AS o FROM {} WHERE ",
            self.table.from
        ));
        self.push_eligible(d, &mut b);
        self.push_window(d, &mut b, bound, below);
        b.push(&format!(
            " ORDER BY {walked} LIMIT {}), lethe_upd AS (",
            self.batch_size
        ));
        let scope = |b: &mut Builder<'_>| {
            b.push(&format!(
                "{}.ctid = ANY(ARRAY(SELECT lethe_id FROM lethe_sel))",
                self.table.name
            ));
        };
        let hashes = if self.action.hash_columns().is_empty() {
            super::Hashes::None
        } else {
            super::Hashes::InSql(pads)
        };
        crate::sql::anonymize::push_update(
            &mut b,
            &crate::sql::anonymize::Update {
                table: &self.table,
                key: Some(&self.key),
                cols,
                hashes,
            },
            &scope,
        );
        b.push(&format!(
            " RETURNING {key} AS k), lethe_batch AS (SELECT lethe_sel.k, lethe_sel.s, lethe_sel.o \
             FROM lethe_upd JOIN lethe_sel ON lethe_sel.k = lethe_upd.k)"
        ));
        b.push(summary);
        b.finish()
    }

    /// A heap walk's batch (PostgreSQL, [`crate::config::Walk::Heap`]): the
    /// first `batch_size` due rows in `ctid` order after the tuple `after`
    /// (`(page,offset)`, exclusive) and before page `below`, deleted and
    /// summarized in one statement. The summary's bound is the last deleted
    /// `ctid`, where a full batch's successor continues.
    pub fn delete_heap_batch(&self, d: &dyn Dialect, after: &str, below: u64) -> Stmt {
        let mut b = Builder::new(d);
        let key_sql = self.table.col(d, &self.key.name);
        let returning = self.returning_with(d, "ctid");
        let target = DeleteTarget {
            table_sql: &self.table.from,
            key_sql: &key_sql,
            order_sql: "ctid",
            returning_sql: &returning,
            physical_id: true,
            summarize: true,
        };
        d.push_delete_batch(
            &mut b,
            &target,
            &|b| {
                self.push_eligible(d, b);
                b.push(" AND ctid > CAST(")
                    .bind(Val::Text(after.to_string()))
                    .push(" AS tid) AND ctid < CAST(")
                    .bind(Val::Text(format!("({below},0)")))
                    .push(" AS tid)");
            },
            self.batch_size,
        );
        b.finish()
    }

    /// The heap walk's end: the table's size in pages when the rule starts
    /// (rows appended later, in new pages, are young).
    pub fn heap_pages(&self) -> Stmt {
        Stmt {
            sql: "SELECT CAST(pg_relation_size(to_regclass($1)) / current_setting('block_size')::bigint AS TEXT)".into(),
            binds: vec![Val::Text(self.table.from.clone())],
        }
    }

    /// Read (and lock) the next batch: key, subject, order value, hashed columns.
    /// `lock`: lock the rows until commit (the batch path); plans read without locking.
    pub fn select_batch(&self, d: &dyn Dialect, after: Option<&Cursor>, lock: bool) -> Stmt {
        let mut b = Builder::new(d);
        let key_sql = self.table.col(d, &self.key.name);
        b.push("SELECT ").push(&d.to_text(&key_sql)).push(", ");
        match &self.subject {
            Some(s) => b.push(&d.to_text(&self.table.col(d, &s.name))),
            None => b.push("NULL"),
        };
        b.push(", ");
        match &self.select {
            Some(s) => b.push(&d.to_text(&self.table.col(d, &s.column.name))),
            None => b.push("NULL"),
        };
        for c in self.action.hash_columns() {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        for c in &self.object_columns {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        b.push(" FROM ").push(&self.table.from).push(" WHERE ");
        self.push_eligible(d, &mut b);
        if let Some(cur) = after {
            b.push(" AND ");
            match (self.walked_select(), &cur.order) {
                (Some(s), Some(o)) => {
                    // `(sel, key) > (o, k)` written with a leading `>=` on
                    // the select column: every engine turns `sel >= o` into
                    // the lower bound of the index range, so a batch starts
                    // where the last one ended. The OR form alone is a
                    // filter, applied to every row earlier batches already
                    // passed (quadratic in the due rows).
                    let sc = self.table.col(d, &s.column.name);
                    b.push(&sc).push(" >= ");
                    d.push_typed(&mut b, &s.column, o);
                    b.push(" AND (").push(&sc).push(" > ");
                    d.push_typed(&mut b, &s.column, o);
                    b.push(" OR ").push(&key_sql).push(" > ");
                    d.push_typed(&mut b, &self.key, &cur.key);
                    b.push(")");
                }
                _ => {
                    b.push(&key_sql).push(" > ");
                    d.push_typed(&mut b, &self.key, &cur.key);
                }
            }
        }
        b.push(" ORDER BY ").push(&self.order_sql(d));
        b.push(&format!(" LIMIT {}", self.batch_size));
        if lock {
            b.push(d.lock_rows());
        }
        b.finish()
    }

    /// The rows `select_batch` returned (key, subject, order value, hashed
    /// columns, object names), in the order selected.
    pub fn parse_batch(&self, rows: Vec<super::TextRow>) -> Vec<BatchRow> {
        let hashed_end = 3 + self.action.hash_columns().len();
        rows.into_iter()
            .filter_map(|mut r| {
                let objects = r.split_off(hashed_end.min(r.len()));
                let hashed = r.split_off(3);
                let mut it = r.into_iter();
                let key = it.next().flatten()?;
                Some(BatchRow {
                    key,
                    subject: it.next().flatten(),
                    order: it.next().flatten(),
                    hashed,
                    objects,
                })
            })
            .collect()
    }
}
