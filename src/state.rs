//! The state store: leases (one run at a time per job), run history,
//! (through `requests::store`) erasure requests, and (through `pending`) the
//! objects Object Lock kept after their rows were erased.
//!
//! SQLite by default, PostgreSQL or MySQL when configured. Its schema lives in
//! `migrations/<backend>/`, embedded by each dialect
//! (`Dialect::state_migrations`) and applied here in order.

use crate::error::{DbErrorKind, Error};
use crate::sql::{Db, Stmt, Val};
use std::time::Duration;

pub mod pending;

/// An open state store: one small pool, its tables migrated.
pub struct State {
    /// Shared with `requests::store`, which keeps its table here too.
    pub(crate) db: Db,
    pub lease_ttl: Duration,
}

/// A primary-key or unique violation, on any of the three engines.
/// (`sql::classify` decides it where the driver's error is converted.)
pub(crate) fn is_unique_violation(e: &Error) -> bool {
    matches!(
        e,
        Error::Database {
            kind: DbErrorKind::UniqueViolation,
            ..
        }
    )
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl State {
    /// Connect and migrate (creating a SQLite file's folder first), so a run
    /// fails before it touches anything if the state store cannot be used.
    pub async fn open(url: &str, lease_ttl: Duration) -> Result<State, Error> {
        if let Some(path) = url.strip_prefix("sqlite://")
            && let Some(parent) =
                std::path::Path::new(path.split('?').next().unwrap_or("")).parent()
            && !parent.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(parent);
        }
        let db = Db::connect("state", url, 2, Duration::ZERO)
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        let state = State { db, lease_ttl };
        state.migrate().await?;
        Ok(state)
    }

    pub(crate) fn stmt(&self, sql: &str, binds: Vec<Val>) -> Stmt {
        // State statements are written with `?`: each becomes the dialect's
        // placeholder (PostgreSQL `$n`).
        let d = self.db.dialect();
        let mut out = String::with_capacity(sql.len());
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push_str(&d.placeholder(n));
            } else {
                out.push(ch);
            }
        }
        Stmt { sql: out, binds }
    }

    async fn migrate(&self) -> Result<(), Error> {
        let err = |e: Error| Error::State(e.to_string());
        self.ddl("CREATE TABLE IF NOT EXISTS lethe_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .await?;
        let applied = self
            .db
            .fetch(&self.stmt(
                "SELECT CAST(version AS CHAR(20)) FROM lethe_migrations",
                vec![],
            ))
            .await
            .map_err(err)?;
        let applied: Vec<i64> = applied
            .iter()
            .filter_map(|r| r[0].as_deref().and_then(|v| v.trim().parse().ok()))
            .collect();
        let list = self.db.dialect().state_migrations();
        for m in list.iter().filter(|m| !applied.contains(&m.version)) {
            // Every migration is idempotent DDL (IF NOT EXISTS): processes that
            // start together may all apply it; one records it, the others
            // meet the primary key and go on.
            self.ddl(m.sql).await?;
            let recorded = self
                .db
                .execute(&self.stmt(
                    "INSERT INTO lethe_migrations (version, applied_ms) VALUES (?, ?)",
                    vec![Val::Int(m.version), Val::Int(now_ms())],
                ))
                .await;
            match recorded {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// Run idempotent DDL. PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not
    /// safe against itself: of two processes creating one table at once, one
    /// can fail on the catalog's unique index (`pg_type`, 23505) or with
    /// `type "…" already exists` (42710). The other created it; trying once
    /// more finds it there. (A real problem fails the second time too.)
    async fn ddl(&self, sql: &str) -> Result<(), Error> {
        let stmt = self.stmt(sql, vec![]);
        match self.db.execute(&stmt).await {
            Ok(_) => Ok(()),
            Err(e @ Error::Database { .. }) | Err(e @ Error::Conflict { .. }) => {
                tracing::debug!(error = %e, "state store DDL raced another process; trying once more");
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.db
                    .execute(&stmt)
                    .await
                    .map(drop)
                    .map_err(|e| Error::State(e.to_string()))
            }
            Err(e) => Err(Error::State(e.to_string())),
        }
    }

    /// Take the lease `name` for `holder`; `Ok(false)` if someone else holds it.
    pub async fn acquire(&self, name: &str, holder: &str) -> Result<bool, Error> {
        let now = now_ms();
        // An expired lease (its holder died) may be taken over.
        self.db
            .execute(&self.stmt(
                "DELETE FROM lethe_leases WHERE name = ? AND expires_ms < ?",
                vec![Val::Text(name.into()), Val::Int(now)],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        let inserted = self
            .db
            .execute(&self.stmt(
                "INSERT INTO lethe_leases (name, holder, acquired_ms, expires_ms) VALUES (?, ?, ?, ?)",
                vec![
                    Val::Text(name.into()),
                    Val::Text(holder.into()),
                    Val::Int(now),
                    Val::Int(now + self.lease_ttl.as_millis() as i64),
                ],
            ))
            .await;
        match inserted {
            Ok(_) => Ok(true),
            // The primary key refused a second holder.
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(Error::State(e.to_string())),
        }
    }

    /// Extend a held lease; `Ok(false)` if it was lost.
    pub async fn renew(&self, name: &str, holder: &str) -> Result<bool, Error> {
        let n = self
            .db
            .execute(&self.stmt(
                "UPDATE lethe_leases SET expires_ms = ? WHERE name = ? AND holder = ?",
                vec![
                    Val::Int(now_ms() + self.lease_ttl.as_millis() as i64),
                    Val::Text(name.into()),
                    Val::Text(holder.into()),
                ],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(n == 1)
    }

    /// Give the lease back (only `holder`'s own: a lease taken over after it
    /// expired stays with its new holder).
    pub async fn release(&self, name: &str, holder: &str) -> Result<(), Error> {
        self.db
            .execute(&self.stmt(
                "DELETE FROM lethe_leases WHERE name = ? AND holder = ?",
                vec![Val::Text(name.into()), Val::Text(holder.into())],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(())
    }

    /// Record a run as `running`, with the audit file it writes.
    pub async fn run_started(
        &self,
        run: &str,
        command: &str,
        audit_file: &str,
    ) -> Result<(), Error> {
        self.db
            .execute(&self.stmt(
                "INSERT INTO lethe_runs (run_id, command, started_ms, status, audit_file) VALUES (?, ?, ?, 'running', ?)",
                vec![
                    Val::Text(run.into()),
                    Val::Text(command.into()),
                    Val::Int(now_ms()),
                    Val::Text(audit_file.into()),
                ],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(())
    }

    /// Record how a run ended and the head and length of its audit log, so
    /// `audit verify` can tell a log cut short.
    pub async fn run_ended(
        &self,
        run: &str,
        status: &str,
        head: &str,
        records: u64,
    ) -> Result<(), Error> {
        self.db
            .execute(&self.stmt(
                "UPDATE lethe_runs SET ended_ms = ?, status = ?, head_hash = ?, records = ? WHERE run_id = ?",
                vec![
                    Val::Int(now_ms()),
                    Val::Text(status.into()),
                    Val::Text(head.into()),
                    Val::Int(records as i64),
                    Val::Text(run.into()),
                ],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(())
    }

    /// The run lease a run holds (and renews) from its start to its end, so
    /// that another process can tell a run that is still going from one that
    /// died: a `running` run whose run lease is gone or expired crashed.
    pub fn run_lease(run: &str) -> String {
        format!("run:{run}")
    }

    /// Runs that never ended and whose process is gone: status `running`,
    /// and no live run lease. `except` is the asking run itself.
    pub async fn crashed_runs(&self, except: &str) -> Result<Vec<StateRun>, Error> {
        let running = self
            .select_runs("WHERE status = 'running' ORDER BY started_ms, run_id")
            .await?;
        if running.is_empty() {
            return Ok(running);
        }
        let live = self
            .db
            .fetch(&self.stmt(
                "SELECT name FROM lethe_leases WHERE name LIKE 'run:%' AND expires_ms >= ?",
                vec![Val::Int(now_ms())],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        let live: std::collections::BTreeSet<String> =
            live.into_iter().filter_map(|r| r[0].clone()).collect();
        Ok(running
            .into_iter()
            .filter(|r| r.run_id != except && !live.contains(&Self::run_lease(&r.run_id)))
            .collect())
    }

    /// Record that `run` crashed and was recovered, with the record count
    /// and head its log had when the recovery was recorded: `audit verify`
    /// compares them with the log, as it does a finished run's.
    /// `Ok(false)` if the run was no longer `running` (recovered already).
    pub async fn run_crashed(&self, run: &str, head: &str, records: u64) -> Result<bool, Error> {
        let n = self
            .db
            .execute(&self.stmt(
                "UPDATE lethe_runs SET ended_ms = ?, status = 'crashed', head_hash = ?, records = ? WHERE run_id = ? AND status = 'running'",
                vec![
                    Val::Int(now_ms()),
                    Val::Text(head.into()),
                    Val::Int(records as i64),
                    Val::Text(run.into()),
                ],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(n == 1)
    }

    /// The most recently started run, if any: the one a new run links to.
    pub async fn last_run(&self) -> Result<Option<StateRun>, Error> {
        Ok(self
            .select_runs("ORDER BY started_ms DESC, run_id DESC LIMIT 1")
            .await?
            .pop())
    }

    /// Every run the state store recorded, oldest first.
    pub async fn runs(&self) -> Result<Vec<StateRun>, Error> {
        self.select_runs("ORDER BY started_ms, run_id").await
    }

    async fn select_runs(&self, tail: &str) -> Result<Vec<StateRun>, Error> {
        let rows = self
            .db
            .fetch(&self.stmt(
                &format!(
                    "SELECT run_id, command, CAST(started_ms AS CHAR(20)), CAST(ended_ms AS CHAR(20)), status, audit_file, head_hash, CAST(records AS CHAR(20)) FROM lethe_runs {tail}"
                ),
                vec![],
            ))
            .await
            .map_err(|e| Error::State(e.to_string()))?;
        let int = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<i64>().ok());
        Ok(rows
            .into_iter()
            .map(|r| StateRun {
                run_id: r[0].clone().unwrap_or_default(),
                command: r[1].clone().unwrap_or_default(),
                started_ms: int(&r[2]).unwrap_or(0),
                ended_ms: int(&r[3]),
                status: r[4].clone().unwrap_or_default(),
                audit_file: r[5].clone().unwrap_or_default(),
                head_hash: r[6].as_deref().map(|h| h.trim().to_string()),
                records: int(&r[7]).map(|n| n.max(0) as u64),
            })
            .collect())
    }

    /// Close the state store's pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// One row of `lethe_runs`: what the state store knows of a run, kept
/// outside the audit log so that `audit verify` can tell a log cut at its end
/// or deleted whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StateRun {
    pub run_id: String,
    pub command: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `running` until the run ends, then its status.
    pub status: String,
    pub audit_file: String,
    /// The hash of the run's last record (its seal), once it ended.
    pub head_hash: Option<String>,
    /// How many records the run wrote, once it ended.
    pub records: Option<u64>,
}
