//! What differs between engines: quoting, placeholders, casts, list
//! binding, the expressions behind each anonymization strategy, schema
//! introspection, partitions, dead-space reclaim, the state store's
//! migrations and the types of the tables Lethe creates itself.
//!
//! Every `match` on [`Engine`] lives here or in the three dialect files
//! (`postgres`, `mysql`, `sqlite`): the rest of the crate asks the
//! [`Dialect`] a question named after what it needs, never which engine
//! it talks to.

use super::Db;
use super::purge::{DeadSpace, Purge};
use super::schema::{ColumnInfo, ColumnKind, TableInfo};
use super::statements::TableSql;
use super::{Stmt, Val};
use crate::config::Strategy;
use crate::config::TableRef;
use crate::error::Error;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

/// Which server a [`Dialect`] speaks to: its identity, for messages and for
/// the few questions asked where only the engine is at hand (a column's
/// kind from its declared type, a table name from the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MySql,
    MariaDb,
    Sqlite,
}

impl Engine {
    /// SQLite has no date or time type: its dates are text (or numbers) and
    /// compare in the stored format.
    pub fn dates_are_text(self) -> bool {
        self == Engine::Sqlite
    }

    /// The schema a table without one lives in, as the catalog names it
    /// (PostgreSQL `public`; elsewhere the connection's database has no name
    /// of its own in a reference).
    pub fn default_schema(self) -> Option<&'static str> {
        (self == Engine::Postgres).then_some("public")
    }

    /// SQLite compares table names without regard to case (so does its
    /// `PRAGMA foreign_key_list`'s `table`).
    pub fn table_names_fold_case(self) -> bool {
        self == Engine::Sqlite
    }
}

/// A portable column type, for the tables Lethe creates itself (the demo's):
/// each dialect names it in DDL ([`Dialect::column_ddl`]) and binds values
/// to it ([`Dialect::push_bind_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// An integer primary key.
    Id,
    /// An integer referencing another table's `Id`.
    Ref,
    Text,
    /// A point in time (with a zone where the engine has one).
    Ts,
    Date,
    Int,
}

/// One migration of the state store: its version and idempotent DDL.
pub struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

/// The state store's migrations of one backend directory
/// (`migrations/<dir>/`), embedded and in order.
macro_rules! migrations {
    ($dir:literal) => {
        migrations!(@ $dir,
            1 "0001_create_leases",
            2 "0002_create_runs",
            3 "0003_create_requests",
            4 "0004_create_pending_objects")
    };
    (@ $dir:literal, $($version:literal $file:literal),*) => {
        &[$($crate::sql::dialect::Migration {
            version: $version,
            sql: include_str!(concat!("../../migrations/", $dir, "/", $file, ".sql")),
        }),*]
    };
}
pub(crate) use migrations;

/// A partition that may be dropped whole: (schema, name, upper bound, the
/// function the partitioning expression wraps the column in, or empty).
pub type RangePartition = (String, String, String, &'static str);

/// A future borrowed from the dialect and the connection (introspection and
/// reclaim run several statements, so the trait returns them boxed).
pub type DbFuture<'a, T> = BoxFuture<'a, Result<T, Error>>;

/// One implementation per engine (`postgres`, `mysql`, `sqlite`).
pub trait Dialect: Send + Sync {
    fn engine(&self) -> Engine;

    /// Quote an identifier already checked against the live schema
    /// (standard double quotes unless the engine says otherwise).
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    /// The placeholder for the `n`-th bound value (1-based): `?` unless
    /// the engine numbers them.
    fn placeholder(&self, _n: usize) -> String {
        "?".into()
    }

    /// Cast an expression to text, so any key or subject reads as a string.
    fn to_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    /// `expr IN (…)` for values read as text from a column of type `col`:
    /// one typed placeholder per value unless the engine binds a list.
    fn push_in_list(&self, b: &mut Builder<'_>, expr: &str, col: &ColumnInfo, values: &[String]) {
        push_placeholder_list(b, expr, col, values);
    }

    /// A placeholder holding `text`, typed like `col` (for cursors and fixed values).
    fn push_typed(&self, b: &mut Builder<'_>, col: &ColumnInfo, text: &str) {
        b.bind(typed_value(col, text));
    }

    /// Suffix that locks selected rows until commit (empty where the
    /// transaction already holds the write lock).
    fn lock_rows(&self) -> &'static str {
        " FOR UPDATE"
    }

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
    fn delete_returning(&self) -> bool {
        true
    }

    /// How a one-statement batch tells what it deleted.
    fn delete_summary(&self) -> DeleteSummary {
        DeleteSummary::Rows
    }

    /// `DeleteSummary::InStatement`: what follows a data-modifying CTE
    /// `lethe_batch` whose rows are `k` (key), `s` (subject) and `o`
    /// (walked column), turning them into the one summary row (count, the
    /// keys' SHA-256, greatest `o`, distinct subjects as a JSON array).
    /// `None` for the other summaries.
    fn summary_of_batch(&self) -> Option<&'static str> {
        None
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
    fn keyless_tables(&self) -> Option<Stmt> {
        None
    }

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

    /// `DeleteSummary::SelectFirst`: the select list that summarizes the
    /// rows `k` (key), `s` (subject), `o` (walked column) of the batch about
    /// to be deleted: count, keys joined by newlines, greatest `o`, distinct
    /// subjects as a JSON array. `None` for the other summaries.
    fn select_first_summary(&self) -> Option<&'static str> {
        None
    }

    /// Inspect a table in the live catalog; `Ok(None)` if it does not exist.
    fn table_info<'a>(&'a self, db: &'a Db, t: &'a TableRef) -> DbFuture<'a, Option<TableInfo>>;

    /// The dead space in `tables`: estimated (what `plan` shows), or
    /// reclaimed online first (`after_purge`); see `purge`.
    fn dead_space<'a>(
        &'a self,
        db: &'a Db,
        tables: &'a [&'a TableSql],
        step: Purge,
    ) -> DbFuture<'a, DeadSpace>;

    /// The state store's schema on this engine, in order.
    fn state_migrations(&self) -> &'static [Migration];

    /// Rows per anonymizing `UPDATE` (all of a batch where the engine takes
    /// a list as one parameter), under the engine's bind limit.
    fn update_chunk(&self, hashed_columns: usize) -> usize;

    /// Whether the engine refuses text wider than a column's declared width
    /// (SQLite stores any length in a `VARCHAR(10)`).
    fn enforces_text_width(&self) -> bool {
        true
    }

    /// Whether a key of any type can be listed and compared (PostgreSQL
    /// casts the list to the key's array type); elsewhere only integer and
    /// text keys are.
    fn any_key_type(&self) -> bool {
        false
    }

    /// Whether a time column of this declared type (lowercase) holds an
    /// offset, so a cutoff is written with one (`…+00`).
    fn zoned_time(&self, _data_type: &str) -> bool {
        false
    }

    /// Whether the engine's indexes end with the primary key or row id, so
    /// ordering ties on the select column by the key costs nothing
    /// (InnoDB, SQLite); PostgreSQL pays an incremental sort per batch. Not
    /// on a partitioned MariaDB table: there `ORDER BY col, key LIMIT n`
    /// sorts every due row of every partition ("Using filesort", 140 ms a
    /// batch of 2,000), where `ORDER BY col LIMIT n` reads the index in
    /// order and stops after n.
    fn tie_break_is_free(&self, info: &TableInfo) -> bool {
        !info.partitioned
    }

    /// Whether the keyed loop's `ORDER BY select, key LIMIT n` over a range
    /// of an index on `select` sorts every row of the range, each batch,
    /// instead of reading the index in order (sorting at most the ties, as
    /// PostgreSQL's incremental sort and SQLite's temporary b-tree do).
    /// Each batch then costs the rows still due: quadratic in a run.
    fn sorts_every_due_row(&self, _info: &TableInfo, _select: &str, _key: &str) -> bool {
        false
    }

    /// Whether a batched delete of `info` (or of its leaf `part`) may use the
    /// engine's physical row id (PostgreSQL `ctid`, SQLite `rowid`).
    fn physical_id(&self, _info: &TableInfo, _part: Option<&str>) -> bool {
        false
    }

    /// Whether a one-statement delete of `info` walks its physical leaves
    /// one after another (a PostgreSQL partitioned or inherited table).
    fn deletes_per_leaf(&self, _info: &TableInfo) -> bool {
        false
    }

    /// Whether comparing a child's foreign key with a parent key of another
    /// type needs a cast (PostgreSQL compares no text with integers).
    fn casts_mixed_keys(&self) -> bool {
        false
    }

    /// One partition (or leaf) of the table `from` as a FROM clause whose
    /// columns are still qualified by `alias`, the table's own name.
    fn partition_from(&self, from: &str, _alias: &str, _schema: &str, name: &str) -> String {
        format!("{from} PARTITION ({})", self.quote(name))
    }

    /// The catalog query listing a table's partitions (`from` its quoted,
    /// qualified name, `table` its bare name); `None` on engines without.
    fn partition_catalog(&self, _from: &str, _table: &str) -> Option<Stmt> {
        None
    }

    /// A partition worth dropping whole, from one row of
    /// [`Dialect::partition_catalog`]: (schema, name, upper bound, the
    /// function the bound wraps the column in), when it is a single-column
    /// range partition by `column`. `seen` are the partitions taken so far.
    fn range_partition(
        &self,
        _row: &super::TextRow,
        _column: &str,
        _seen: &[RangePartition],
    ) -> Option<RangePartition> {
        None
    }

    /// The type a `CAST(… AS …)` to a 64-bit integer names.
    fn integer_cast(&self) -> &'static str {
        "SIGNED"
    }

    /// What keeps everyone out of the table `from` while a partition is
    /// re-checked and dropped.
    fn lock_table(&self, from: &str) -> String {
        format!("LOCK TABLES {from} WRITE")
    }

    /// The statements that drop one partition of `from`.
    fn partition_drop(&self, from: &str, _schema: &str, name: &str) -> Vec<Stmt> {
        vec![Stmt {
            sql: format!("ALTER TABLE {from} DROP PARTITION {}", self.quote(name)),
            binds: vec![],
        }]
    }

    /// An order-independent checksum of the text keys `k` of a partition.
    fn key_checksum(&self, k: &str) -> String {
        format!("BIT_XOR(CRC32({k}))")
    }

    /// One scan of the partition `from` that returns `count`, `checksum`
    /// (both text expressions) and the server's own keys digest: the hex
    /// SHA-256 of the text keys `k` in the order of `order`, joined by
    /// newlines, the value `keys::keys_sha256` computes (NULL for no rows,
    /// or when the server could not join them all). `None` where the engine
    /// has no aggregate for it; there the keys are read in pages and hashed
    /// by Lethe, which costs a round trip per page and every key on the wire.
    fn checksum_and_digest(
        &self,
        _count: &str,
        _checksum: &str,
        _k: &str,
        _order: &str,
        _from: &str,
    ) -> Option<String> {
        None
    }

    /// What the session must run before [`Dialect::checksum_and_digest`] in it
    /// (MariaDB: lift `group_concat_max_len`, whose 1 MiB default would cut
    /// the joined keys short).
    fn keys_digest_setup(&self) -> Option<&'static str> {
        None
    }

    /// Whether DDL runs inside a transaction (PostgreSQL): a partition is
    /// read in a snapshot, locked with a timeout, detached and dropped in
    /// one transaction; elsewhere DDL commits itself and tables are locked
    /// with `LOCK TABLES`.
    fn transactional_ddl(&self) -> bool {
        false
    }

    /// Whether only one writer is let in at a time (SQLite), so side-by-side
    /// workers gain nothing.
    fn single_writer(&self) -> bool {
        false
    }

    /// The throttle's replica lag read on a standby of this engine through
    /// [`Db`]: one text cell, `primary` when the server is not replaying
    /// (so its lag means nothing), else the seconds it is behind. `None`
    /// where a replica's lag is read otherwise (MariaDB/MySQL:
    /// `sql::health::Replica`) or not at all.
    fn replica_lag_sql(&self) -> Option<&'static str> {
        None
    }

    /// The throttle's replica lag read on the primary itself, when no
    /// replica is named: the largest lag its replicas report, as one text
    /// cell of seconds. `None` where the primary cannot tell.
    fn primary_lag_sql(&self) -> Option<&'static str> {
        None
    }

    /// A count of the sessions running a statement on the connection's
    /// database, other than the one asking; `None` where the engine has no
    /// such view (SQLite, whose `pause_when` validation refuses).
    fn active_sessions_sql(&self) -> Option<&'static str> {
        None
    }

    /// A count that is above zero when the server has the older of two
    /// lock-wait views ([`LockView::InnodbLockWaits`]); `None` where the
    /// engine has one view only (or none): nothing to look up.
    fn lock_view_probe(&self) -> Option<&'static str> {
        None
    }

    /// A count of the sessions on the connection's database waiting for a
    /// lock they asked for, read from `view` ([`Dialect::lock_view_probe`]);
    /// `None` where the engine has no such view.
    fn lock_waits_sql(&self, _view: LockView) -> Option<&'static str> {
        None
    }

    /// How the engine names a [`ColumnType`] in `CREATE TABLE`.
    fn column_ddl(&self, t: ColumnType) -> &'static str;

    /// Bind `v` for a column of type `t` (PostgreSQL casts text to it).
    fn push_bind_as(&self, b: &mut Builder<'_>, v: Val, _t: ColumnType) {
        b.bind(v);
    }

    /// A point in time as text a [`ColumnType::Ts`] column takes.
    fn timestamp_text(&self, t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// Which lock-wait view a server has, where the engine's versions differ
/// ([`Dialect::lock_view_probe`]); found once per throttle, ignored by
/// engines with a single view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockView {
    /// MariaDB and MySQL 5.7: `information_schema.INNODB_LOCK_WAITS`.
    InnodbLockWaits,
    /// MySQL 8: `performance_schema.data_lock_waits` (and what engines
    /// without a probe are asked with).
    DataLockWaits,
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
    /// An empty statement for `dialect`, whose placeholders it will write.
    pub fn new(dialect: &'d dyn Dialect) -> Self {
        Self {
            dialect,
            sql: String::with_capacity(256),
            binds: Vec::new(),
        }
    }

    /// Append SQL text: only identifiers quoted by the dialect and Lethe's own
    /// constants, never a value (values go through [`Builder::bind`]).
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// Bind a value and write its placeholder here, numbered in text order.
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

    /// The statement, ready for `Db` or `Tx` to run.
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
