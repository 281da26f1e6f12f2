//! What differs between engines, as text: quoting, placeholders, casts, list
//! binding and the expressions behind each anonymization strategy.

use super::schema::{ColumnInfo, ColumnKind};
use super::{Stmt, Val};
use crate::config::Strategy;
use crate::config::TableRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MySql,
    MariaDb,
    Sqlite,
}

/// One implementation per engine (`postgres`, `mysql`, `sqlite`).
pub trait Dialect: Send + Sync {
    fn engine(&self) -> Engine;

    /// Quote an identifier already checked against the live schema.
    fn quote(&self, ident: &str) -> String;

    /// The placeholder for the `n`-th bound value (1-based).
    fn placeholder(&self, n: usize) -> String;

    /// Cast an expression to text, so any key or subject reads as a string.
    fn to_text(&self, expr: &str) -> String;

    /// `expr IN (…)` for values read as text from a column of type `col`.
    fn push_in_list(&self, b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]);

    /// A placeholder holding `text`, typed like `col` (for cursors and fixed values).
    fn push_typed(&self, b: &mut Builder<'_>, col: &ColumnInfo, text: &str);

    /// Suffix that locks selected rows until commit (empty where the
    /// transaction already holds the write lock).
    fn lock_rows(&self) -> &'static str;

    /// The value a strategy gives the column, as SQL; `None` for `hash`,
    /// which needs the key and is computed by Lethe.
    fn anonymized(
        &self,
        b: &mut Builder<'_>,
        col_sql: &str,
        col: &ColumnInfo,
        s: &Strategy,
    ) -> Option<String>;

    /// The `hash` strategy computed by the server: HMAC-SHA-256 of the
    /// column's UTF-8 text under the pseudonym key, as lowercase hex, with
    /// the key's pad blocks bound as bytes (`Keys::pseudonym_pads`). `None`
    /// where the engine has no SHA-256 (SQLite): Lethe computes the values
    /// and binds them.
    fn keyed_hash(
        &self,
        _b: &mut Builder<'_>,
        _col_sql: &str,
        _pads: &crate::keys::HashPads,
    ) -> Option<String> {
        None
    }

    /// Whether `keyed_hash` is available: the hash needs no values read.
    fn hashes_in_sql(&self) -> bool {
        false
    }

    /// True when a column's value already looks like Lethe's hash output
    /// (64 lowercase hex characters): such rows are done.
    fn looks_hashed(&self, col_sql: &str) -> String;

    /// `<key> belongs to shard index of count`: a stable split of the key
    /// space so N processes share a rule without overlap.
    fn shard_predicate(
        &self,
        key_sql: &str,
        key: &ColumnInfo,
        index: u32,
        count: u32,
    ) -> Result<String, String>;

    /// Whether `DELETE … RETURNING` exists.
    fn delete_returning(&self) -> bool;

    /// How a one-statement batch tells what it deleted.
    fn delete_summary(&self) -> DeleteSummary {
        DeleteSummary::Rows
    }

    /// Foreign keys that reference `t`, one row per constraint, every value
    /// text: (constraint name, referencing schema — empty for the
    /// connection's default —, referencing table — for a partition, the
    /// partitioned root —, referencing columns joined by `,`, referenced
    /// columns joined by `,` — empty entries mean the primary key —,
    /// `ON DELETE` action, deferrable `true`/`false`, enforced on this
    /// connection `true`/`false`, the physical table it is declared on when
    /// that is a partition or inheritance child, else empty, `ON UPDATE`
    /// action).
    fn referencing_keys(&self, t: &TableRef) -> Stmt;

    /// Columns that lead an index of `t` (PostgreSQL: on a partitioned or
    /// inherited table, also those that lead an index on every member), as
    /// one-column rows.
    fn leading_index_columns(&self, t: &TableRef) -> Stmt;

    /// Tables of the database that cannot carry a foreign key at all
    /// (MySQL/MariaDB: not InnoDB, or partitioned), as (table, why); `None`
    /// where every table can.
    fn keyless_tables(&self) -> Option<Stmt>;

    /// Every column of every user table (partitions folded into their root):
    /// (schema — empty for the default —, table, column, data type).
    fn all_columns(&self) -> Stmt;

    /// Statement that deletes the next batch and returns (key, subject) as text.
    /// `pred` is the full WHERE predicate; `order` the ORDER BY list.
    fn push_delete_batch(
        &self,
        b: &mut Builder<'_>,
        table: &DeleteTarget<'_>,
        pred: &dyn Fn(&mut Builder<'_>),
        limit: usize,
    );
}

/// How a one-statement batch tells Lethe what it deleted. Decoding ten
/// thousand `RETURNING` rows per batch through sqlx cost more than the delete
/// itself; where the engine allows, one summary row — count, the keys (hashed
/// or joined), the greatest order value, the distinct subjects — replaces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteSummary {
    /// `RETURNING` every deleted row's key and subject (MariaDB, which
    /// cannot use `DELETE … RETURNING` as a subquery).
    Rows,
    /// PostgreSQL: the `DELETE … RETURNING` runs in a data-modifying CTE
    /// whose query returns the summary, the keys' SHA-256 computed there.
    InStatement,
    /// SQLite: a `SELECT` summarizes the batch, then the `DELETE` (without
    /// `RETURNING`) removes the same rows — the same totally ordered `LIMIT`
    /// under the write lock `BEGIN IMMEDIATE` took, so nothing can change in
    /// between; the engine still checks the deleted count against it.
    SelectFirst,
}

/// What a fast batched delete needs to know of its table.
pub struct DeleteTarget<'a> {
    pub table_sql: &'a str,
    pub key_sql: &'a str,
    pub order_sql: &'a str,
    pub returning_sql: &'a str,
    /// The engine's physical row id may be used (PostgreSQL `ctid` on a plain
    /// table, SQLite `rowid` on a rowid table).
    pub physical_id: bool,
    /// Summarize the deleted rows in one row (`DeleteSummary::InStatement`);
    /// `returning_sql` then names its columns `k`, `s` and `o`.
    pub summarize: bool,
}

/// Builds one statement: SQL text and bound values in order.
pub struct Builder<'d> {
    pub dialect: &'d dyn Dialect,
    pub sql: String,
    pub binds: Vec<Val>,
}

impl<'d> Builder<'d> {
    pub fn new(dialect: &'d dyn Dialect) -> Self {
        Self {
            dialect,
            sql: String::with_capacity(256),
            binds: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    pub fn bind(&mut self, v: Val) -> &mut Self {
        self.binds.push(v);
        let p = self.dialect.placeholder(self.binds.len());
        self.sql.push_str(&p);
        self
    }

    /// The placeholder text for a value, without writing it to the statement.
    pub fn bind_deferred(&mut self, v: Val) -> String {
        self.binds.push(v);
        self.dialect.placeholder(self.binds.len())
    }

    pub fn finish(self) -> Stmt {
        Stmt {
            sql: self.sql,
            binds: self.binds,
        }
    }
}

/// Parse text read back from a column into a bind value of the column's kind.
pub fn typed_value(col: &ColumnInfo, text: &str) -> Val {
    match col.kind {
        ColumnKind::Int => text
            .parse()
            .map(Val::Int)
            .unwrap_or_else(|_| Val::Text(text.into())),
        _ => Val::Text(text.into()),
    }
}

/// `expr IN (?, ?, …)` with one typed placeholder per value (MySQL, SQLite);
/// never an empty `IN ()`.
pub fn push_placeholder_list(b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]) {
    if values.is_empty() {
        b.push("1 = 0");
        return;
    }
    b.push(expr).push(" IN (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            b.push(", ");
        }
        b.bind(typed_value(col, v));
    }
    b.push(")");
}

/// SQL string literal (for constants Lethe itself writes, never for data).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
