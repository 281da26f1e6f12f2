//! SQL sources: connections, per-dialect statement text, schema introspection.
//!
//! This is the only module that hands dynamic SQL to sqlx (`AssertSqlSafe`).
//! Table and column names come from TOML; they reach a statement only after
//! [`schema`] found them in the live catalog, and only quoted by the
//! source's [`Dialect`]. Values are always bound, never spliced.

pub mod anonymize;
pub mod dialect;
pub mod health;
pub mod mysql;
pub mod postgres;
pub mod purge;
pub mod schema;
pub mod sqlite;
pub mod statements;

pub use dialect::{Builder, Dialect, Engine};
pub use schema::{ColumnInfo, ColumnKind, ForeignKey, TableInfo};

use crate::error::{DbErrorKind, Error};
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySql, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Ts(DateTime<Utc>),
    /// A PostgreSQL `text[]`, cast in the statement to the column's array type.
    TextList(Vec<String>),
    /// Raw bytes (PostgreSQL `bytea`, MySQL binary string, SQLite blob).
    Bytes(Vec<u8>),
    Null,
}

/// A statement with its bound values.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub binds: Vec<Val>,
}

/// Every value a row-returning statement yields is read as text: keys,
/// subjects and cursors travel through Lethe as strings and are bound back
/// with the column's own type.
pub type TextRow = Vec<Option<String>>;

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// One connected SQL source.
pub struct Db {
    pub name: String,
    pool: Pool,
    dialect: Box<dyn Dialect>,
    /// Pause between batches (per-source setting).
    pub pause: Duration,
    /// The pool's size: side-by-side workers beyond it would only queue.
    pub max_connections: u32,
    /// How long a lost connection is retried before the rule fails (the
    /// source's `reconnect_for`; zero outside the engine's batch loop).
    pub reconnect_for: Duration,
    /// `after_purge = "vacuum"` on this source (SQLite connections then
    /// run with `secure_delete`).
    pub after_purge: bool,
    /// The source's `pause_when` (set by the engine like `reconnect_for`):
    /// the batch loop waits at its boundaries while the server is over it.
    pub pause_when: Option<crate::config::throttle::PauseWhen>,
}

/// An open transaction on a [`Db`].
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    My(Transaction<'static, MySql>),
    Lite(Transaction<'static, Sqlite>),
}

/// A statement ready to run on engine `DB`.
type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// How an engine binds the values whose encoding differs between engines;
/// the others bind alike ([`query`]).
trait Binds: sqlx::Database {
    /// A point in time: PostgreSQL `timestamptz`, MySQL a naive UTC
    /// `DATETIME`, SQLite text in its default format.
    fn bind_ts<'q>(q: Query<'q, Self>, t: DateTime<Utc>) -> Query<'q, Self>;

    /// A `text[]`: only the PostgreSQL dialect binds arrays.
    fn bind_list<'q>(_q: Query<'q, Self>, _list: &[String]) -> Query<'q, Self> {
        unreachable!("only the PostgreSQL dialect binds arrays")
    }
}

impl Binds for Postgres {
    fn bind_ts<'q>(q: Query<'q, Self>, t: DateTime<Utc>) -> Query<'q, Self> {
        q.bind(t)
    }

    fn bind_list<'q>(q: Query<'q, Self>, list: &[String]) -> Query<'q, Self> {
        q.bind(list)
    }
}

impl Binds for MySql {
    fn bind_ts<'q>(q: Query<'q, Self>, t: DateTime<Utc>) -> Query<'q, Self> {
        q.bind(t.naive_utc())
    }
}

impl Binds for Sqlite {
    fn bind_ts<'q>(q: Query<'q, Self>, t: DateTime<Utc>) -> Query<'q, Self> {
        q.bind(t.format("%Y-%m-%d %H:%M:%S").to_string())
    }
}

/// The statement's text with its values bound, for engine `DB`.
fn query<DB: Binds>(stmt: &Stmt) -> Query<'_, DB>
where
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t [u8]: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    Option<String>: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::query(AssertSqlSafe(stmt.sql.as_str()));
    for v in &stmt.binds {
        q = match v {
            Val::Int(i) => q.bind(*i),
            Val::Text(s) => q.bind(s.as_str()),
            Val::Ts(t) => DB::bind_ts(q, *t),
            Val::TextList(l) => DB::bind_list(q, l),
            Val::Bytes(b) => q.bind(b.as_slice()),
            Val::Null => q.bind(None::<String>),
        };
    }
    q
}

fn text_rows<R: Row>(rows: Vec<R>) -> Result<Vec<TextRow>, sqlx::Error>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.try_get::<Option<String>, usize>(i))
                .collect()
        })
        .collect()
}

/// Run `$body` with `$q` bound to the statement built for the pool's engine.
macro_rules! dispatch {
    ($target:expr, $stmt:expr, |$q:ident, $exec:ident| $body:expr) => {
        match $target {
            Target::Pg($exec) => {
                let $q = query::<Postgres>($stmt);
                $body
            }
            Target::My($exec) => {
                let $q = query::<MySql>($stmt);
                $body
            }
            Target::Lite($exec) => {
                let $q = query::<Sqlite>($stmt);
                $body
            }
        }
    };
}

/// Something statements run on: a pool or an open transaction.
enum Target<P, M, L> {
    Pg(P),
    My(M),
    Lite(L),
}

/// Lethe's own SQLite URL parameter `foreign_keys=off|on` (default on),
/// removed before sqlx sees the URL. `PRAGMA foreign_keys` is a setting of
/// each connection, not of the file: a source whose application runs with
/// it off says so here, so Lethe deletes the way the application does and
/// `check` warns that references left behind dangle unseen.
fn sqlite_foreign_keys(url: &str) -> (String, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), true);
    };
    let mut on = true;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some(("foreign_keys", v)) => {
                on = !matches!(v, "off" | "false" | "0");
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), on)
    } else {
        (format!("{base}?{}", kept.join("&")), on)
    }
}

/// Every MySQL/MariaDB connection of a source runs its transactions at READ
/// COMMITTED, where the binary log allows it. At the server's default,
/// REPEATABLE READ, InnoDB keeps a lock on every row a batch's statement
/// reads until the batch commits, also on the rows its WHERE rejects: a key
/// walk over a table without an index on the select column then blocks the
/// application's writes to every young row between the batch's first and
/// last due row (an `UPDATE` of one waited out `innodb_lock_wait_timeout`),
/// and range scans take gap locks that block inserts. At READ COMMITTED a
/// rejected row's lock is released at once and no gap locks are taken; the
/// rows a batch acts on stay locked to its commit either way. A
/// statement-format binary log refuses such writes, so there the session
/// keeps the server's level. (The partition drop asks for its own snapshot.)
async fn read_committed(conn: &mut sqlx::MySqlConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let (log_bin, format): (i64, String) =
        sqlx::query_as("SELECT CAST(@@log_bin AS SIGNED), CAST(@@binlog_format AS CHAR)")
            .fetch_one(&mut *conn)
            .await?;
    if log_bin == 0 || !format.eq_ignore_ascii_case("STATEMENT") {
        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await?;
    }
    Ok(())
}

impl Db {
    /// Connect eagerly, so an unreachable source fails here with a clear message.
    pub async fn connect(
        name: &str,
        url: &str,
        max_connections: u32,
        pause: Duration,
    ) -> Result<Db, Error> {
        Self::connect_with(name, url, max_connections, pause, false).await
    }

    /// [`Db::connect`] for a configured source, with its `after_purge`.
    pub async fn connect_source(src: &crate::config::Source) -> Result<Db, Error> {
        let after = src.after_purge == crate::config::AfterPurge::Vacuum;
        Self::connect_with(
            &src.name,
            &src.url,
            src.max_connections,
            src.batch_pause,
            after,
        )
        .await
    }

    async fn connect_with(
        name: &str,
        url: &str,
        max_connections: u32,
        pause: Duration,
        after_purge: bool,
    ) -> Result<Db, Error> {
        let fail = |e: sqlx::Error| source_error(name, &e);
        let (pool, dialect): (Pool, Box<dyn Dialect>) = if url.starts_with("postgres") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(15))
                .connect(url)
                .await
                .map_err(fail)?;
            (Pool::Pg(pool), Box::new(postgres::Postgres))
        } else if url.starts_with("mysql") || url.starts_with("mariadb") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let pool = MySqlPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(15))
                .after_connect(|conn, _meta| Box::pin(read_committed(conn)))
                .connect(&url)
                .await
                .map_err(fail)?;
            let version: String = sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(&pool)
                .await
                .map_err(fail)?;
            let mariadb = version.to_ascii_lowercase().contains("mariadb");
            (Pool::My(pool), Box::new(mysql::MySql { mariadb }))
        } else if url.starts_with("sqlite:") {
            let (url, foreign_keys) = sqlite_foreign_keys(url);
            let opts = SqliteConnectOptions::from_str(&url)
                .map_err(fail)?
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(foreign_keys);
            // Deleted content overwritten with zeros, not left in free pages.
            let opts = if after_purge {
                opts.pragma("secure_delete", "ON")
            } else {
                opts
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await
                .map_err(fail)?;
            (Pool::Lite(pool), Box::new(sqlite::Sqlite))
        } else {
            return Err(Error::Database {
                source_name: name.to_string(),
                message: "unsupported url scheme (postgres://, mysql://, mariadb:// or sqlite:)"
                    .into(),
                kind: DbErrorKind::Other,
            });
        };
        Ok(Db {
            name: name.to_string(),
            pool,
            dialect,
            pause,
            max_connections,
            reconnect_for: Duration::ZERO,
            pause_when: None,
            after_purge,
        })
    }

    /// The engine's dialect: every statement for this source is built with it.
    pub fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// A statement builder in this source's dialect.
    pub fn builder(&self) -> Builder<'_> {
        Builder::new(self.dialect.as_ref())
    }

    fn target(&self) -> Target<&PgPool, &MySqlPool, &SqlitePool> {
        match &self.pool {
            Pool::Pg(p) => Target::Pg(p),
            Pool::My(p) => Target::My(p),
            Pool::Lite(p) => Target::Lite(p),
        }
    }

    /// `e` from a statement on this source: a conflict (worth retrying
    /// the batch), else as [`source_error`] says.
    fn err(&self, e: sqlx::Error) -> Error {
        if is_conflict(&e) {
            return Error::Conflict {
                source_name: self.name.clone(),
                message: describe(&e),
            };
        }
        source_error(&self.name, &e)
    }

    /// Run a row-returning statement on the pool; every value read as text.
    pub async fn fetch(&self, stmt: &Stmt) -> Result<Vec<TextRow>, Error> {
        let rows = dispatch!(self.target(), stmt, |q, p| text_rows(
            q.fetch_all(p).await.map_err(|e| self.err(e))?
        ));
        rows.map_err(|e| self.err(e))
    }

    /// Run a statement whose first column of its one row is an integer
    /// (`COUNT(*)`, a pragma); negative answers read as 0.
    pub async fn count(&self, stmt: &Stmt) -> Result<u64, Error> {
        let n: i64 = dispatch!(self.target(), stmt, |q, p| q
            .fetch_one(p)
            .await
            .and_then(|r| r.try_get::<i64, usize>(0))
            .map_err(|e| self.err(e))?);
        Ok(n.max(0) as u64)
    }

    /// Run a statement on the pool (autocommit); the rows it affected.
    pub async fn execute(&self, stmt: &Stmt) -> Result<u64, Error> {
        Ok(dispatch!(self.target(), stmt, |q, p| q
            .execute(p)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected()))
    }

    /// Begin a batch transaction. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so the rows it selects cannot change under it.
    pub async fn begin(&self) -> Result<Tx, Error> {
        Ok(match &self.pool {
            Pool::Pg(p) => Tx::Pg(p.begin().await.map_err(|e| self.err(e))?),
            Pool::My(p) => Tx::My(p.begin().await.map_err(|e| self.err(e))?),
            Pool::Lite(p) => Tx::Lite(
                p.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| self.err(e))?,
            ),
        })
    }

    /// Close the pool, waiting for its connections to finish.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::My(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }
}

impl Tx {
    fn target(
        &mut self,
    ) -> Target<&mut sqlx::PgConnection, &mut sqlx::MySqlConnection, &mut sqlx::SqliteConnection>
    {
        match self {
            Tx::Pg(t) => Target::Pg(&mut **t),
            Tx::My(t) => Target::My(&mut **t),
            Tx::Lite(t) => Target::Lite(&mut **t),
        }
    }

    /// [`Db::fetch`] inside the transaction (`db` names the source in errors).
    pub async fn fetch(&mut self, db: &Db, stmt: &Stmt) -> Result<Vec<TextRow>, Error> {
        let rows = dispatch!(self.target(), stmt, |q, c| text_rows(
            q.fetch_all(c).await.map_err(|e| db.err(e))?
        ));
        rows.map_err(|e| db.err(e))
    }

    /// [`Db::execute`] inside the transaction.
    pub async fn execute(&mut self, db: &Db, stmt: &Stmt) -> Result<u64, Error> {
        Ok(dispatch!(self.target(), stmt, |q, c| q
            .execute(c)
            .await
            .map_err(|e| db.err(e))?
            .rows_affected()))
    }

    /// Commit; a lost answer surfaces as `Error::Connection` (whether it
    /// committed is then unknown).
    pub async fn commit(self, db: &Db) -> Result<(), Error> {
        match self {
            Tx::Pg(t) => t.commit().await,
            Tx::My(t) => t.commit().await,
            Tx::Lite(t) => t.commit().await,
        }
        .map_err(|e| db.err(e))
    }

    /// Roll back everything the transaction did.
    pub async fn rollback(self, db: &Db) -> Result<(), Error> {
        match self {
            Tx::Pg(t) => t.rollback().await,
            Tx::My(t) => t.rollback().await,
            Tx::Lite(t) => t.rollback().await,
        }
        .map_err(|e| db.err(e))
    }
}

/// `e` as Lethe's error for source `name`: a lost connection, or a
/// database error of its [`classify`] kind; the message is [`describe`]d.
pub(crate) fn source_error(name: &str, e: &sqlx::Error) -> Error {
    let (source_name, message) = (name.to_string(), describe(e));
    if is_connection_loss(e) {
        Error::Connection {
            source_name,
            message,
        }
    } else {
        Error::Database {
            source_name,
            message,
            kind: classify(e),
        }
    }
}

/// Whether the server rolled the transaction back because it collided with
/// another one — a deadlock, a serialization failure, a lock wait that timed
/// out, SQLite's busy database — so that trying the same batch again is safe
/// and likely to succeed. Shards of one job meet like this when a child table
/// is reached from two parents (a comment by one user on another's post).
pub fn is_conflict(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
        return matches!(my.number(), 1213 | 1205);
    }
    let code = d.code();
    match code.as_deref() {
        // PostgreSQL: deadlock_detected, serialization_failure, lock_not_available
        Some("40P01" | "40001" | "55P03") => true,
        // SQLite: BUSY, BUSY_SNAPSHOT, LOCKED (after busy_timeout gave up)
        Some("5" | "517" | "6") => d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some(),
        _ => false,
    }
}

/// What kind of database error `e` is: a conflict ([`is_conflict`]), a
/// unique violation (the driver's `ErrorKind::UniqueViolation`: PostgreSQL
/// 23505, MySQL 1062, SQLite 2067 / 1555; MariaDB may report only the
/// SQLSTATE class 23000, which also covers other constraints, with a
/// `Duplicate entry` message), or another.
pub fn classify(e: &sqlx::Error) -> DbErrorKind {
    if is_conflict(e) {
        return DbErrorKind::Conflict;
    }
    let sqlx::Error::Database(d) = e else {
        return DbErrorKind::Other;
    };
    let duplicate = d.code().as_deref() == Some("23000") && d.message().contains("Duplicate entry");
    if d.kind() == sqlx::error::ErrorKind::UniqueViolation || duplicate {
        DbErrorKind::UniqueViolation
    } else {
        DbErrorKind::Other
    }
}

/// Whether the connection itself failed (refused, reset, closed, timed out,
/// the server shutting down) rather than the statement: nothing of an
/// uncommitted transaction survives that, so the work may be tried again on
/// a new connection.
pub fn is_connection_loss(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // ER_SERVER_SHUTDOWN, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ER_CONNECTION_KILLED
                return matches!(my.number(), 1053 | 2006 | 2013 | 1927);
            }
            // PostgreSQL admin_shutdown, crash_shutdown, cannot_connect_now.
            matches!(d.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
                && d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
        }
        _ => false,
    }
}

/// Describe a sqlx error without any value from a row.
///
/// Database messages can quote data (`Duplicate entry '…'`, `invalid input
/// syntax for type integer: "…"`); quoted literals are replaced so a personal
/// value never reaches a log line, an error or the audit file.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            format!("database error {code}: {}", redact_literals(d.message()))
        }
        sqlx::Error::Io(io) => format!("connection failed: {io}"),
        sqlx::Error::Tls(_) => "TLS handshake failed".into(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::PoolClosed => "connection pool closed".into(),
        sqlx::Error::Configuration(_) => "invalid connection url (check the source's url)".into(),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::Decode(_) => "cannot decode a value".into(),
        sqlx::Error::Protocol(p) => format!("protocol error: {}", redact_literals(p)),
        other => redact_literals(&other.to_string()),
    }
}

/// Replace `'…'` literals, and `"…"` ones that are not plain identifiers.
pub fn redact_literals(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            let mut inner = String::new();
            let mut closed = false;
            for n in chars.by_ref() {
                if n == c {
                    closed = true;
                    break;
                }
                inner.push(n);
            }
            let ident = c == '"'
                && !inner.is_empty()
                && inner.starts_with(|x: char| x.is_ascii_alphabetic() || x == '_')
                && inner
                    .chars()
                    .all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '.');
            out.push(c);
            out.push_str(if ident { &inner } else { "…" });
            if closed {
                out.push(c);
            }
        } else {
            out.push(c);
        }
    }
    // PostgreSQL: `invalid input syntax for type integer: "…"` is covered above;
    // `Key (col)=(value)` only appears in DETAIL, which is never read.
    out
}

#[cfg(test)]
mod tests {
    use super::redact_literals;

    #[test]
    fn quoted_values_are_redacted_identifiers_kept() {
        assert_eq!(
            redact_literals("Duplicate entry 'alice@example.com' for key 'email'"),
            "Duplicate entry '…' for key '…'"
        );
        assert_eq!(
            redact_literals("relation \"legal_holds\" does not exist"),
            "relation \"legal_holds\" does not exist"
        );
        assert_eq!(
            redact_literals("invalid input syntax for type integer: \"13800138000\""),
            "invalid input syntax for type integer: \"…\""
        );
    }

    #[test]
    fn sqlite_foreign_keys_setting_is_lethes_own_url_parameter() {
        assert_eq!(
            super::sqlite_foreign_keys("sqlite://var/app.db?mode=rwc&foreign_keys=off"),
            ("sqlite://var/app.db?mode=rwc".to_string(), false)
        );
        assert_eq!(
            super::sqlite_foreign_keys("sqlite://var/app.db?foreign_keys=on"),
            ("sqlite://var/app.db".to_string(), true)
        );
        assert_eq!(
            super::sqlite_foreign_keys("sqlite://var/app.db?mode=rwc"),
            ("sqlite://var/app.db?mode=rwc".to_string(), true)
        );
    }
}
