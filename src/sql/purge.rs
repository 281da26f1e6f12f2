//! What a purge leaves on disk, per engine: an estimate of the dead space in
//! the tables a rule touched, and the online step that reclaims it
//! (`after_purge = "vacuum"` on the source).
//!
//! Deleted rows stay readable in pages until the engine reuses or cleans
//! them — personal data with them. This module owns the engine-specific
//! text: PostgreSQL `VACUUM` and `pg_stat_user_tables`, SQLite's
//! `freelist_count` / `incremental_vacuum` (its connections run with
//! `secure_delete`, see `Db::connect_source`), MariaDB's `DATA_FREE`. It
//! never rewrites a table (`VACUUM FULL`, `CLUSTER`, `OPTIMIZE TABLE`, a
//! full SQLite `VACUUM`): those block writers on the whole table and are
//! the operator's call; the report says when only they would help.

use super::statements::TableSql;
use super::{Db, Stmt, Val};
use crate::error::Error;
use serde::Serialize;

/// Dead space in the tables a rule touched, as the engine reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadSpace {
    /// The tables looked at (target, then children).
    pub tables: Vec<String>,
    /// PostgreSQL: dead row versions in the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_rows: Option<u64>,
    /// Estimated bytes still held by deleted rows: PostgreSQL the dead rows'
    /// share of the table size, SQLite free pages × page size, MariaDB
    /// `DATA_FREE`.
    pub bytes: u64,
    /// `vacuumed` (PostgreSQL, after `VACUUM`), `freed` (SQLite, after an
    /// incremental vacuum), `zeroed` (SQLite without incremental
    /// auto-vacuum: free pages stay, overwritten), `not_reclaimable_online`
    /// (MariaDB), `estimate` (a plan), `failed`.
    pub state: String,
    pub note: String,
}

fn plain(sql: String) -> Stmt {
    Stmt { sql, binds: vec![] }
}

fn names(tables: &[&TableSql]) -> Vec<String> {
    tables.iter().map(|t| t.info.table.to_string()).collect()
}

/// PostgreSQL: (dead row versions, their estimated bytes) over a table and
/// its partitions.
async fn pg_dead(db: &Db, t: &TableSql) -> Result<(u64, u64), Error> {
    let stmt = Stmt {
        sql: "SELECT CAST(COALESCE(SUM(s.n_dead_tup), 0) AS TEXT), \
              CAST(COALESCE(SUM(pg_table_size(s.relid) * s.n_dead_tup \
                / GREATEST(s.n_live_tup + s.n_dead_tup, 1)), 0) AS TEXT) \
              FROM pg_partition_tree(to_regclass($1)) p \
              JOIN pg_stat_user_tables s ON s.relid = p.relid"
            .into(),
        binds: vec![Val::Text(t.from.clone())],
    };
    let rows = db.fetch(&stmt).await?;
    let v = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .and_then(|s| s.split('.').next().and_then(|n| n.parse().ok()))
            .unwrap_or(0u64)
    };
    Ok((v(0), v(1)))
}

/// SQLite: (free pages × page size, auto_vacuum mode).
async fn sqlite_free(db: &Db) -> Result<(u64, u64), Error> {
    let free = db.count(&plain("PRAGMA freelist_count".into())).await?;
    let page = db.count(&plain("PRAGMA page_size".into())).await?;
    let auto = db.count(&plain("PRAGMA auto_vacuum".into())).await?;
    Ok((free * page, auto))
}

/// MariaDB / MySQL: `DATA_FREE` of the tables.
async fn mysql_free(db: &Db, tables: &[&TableSql]) -> Result<u64, Error> {
    let mut bytes = 0;
    for t in tables {
        bytes += db
            .count(&Stmt {
                sql: "SELECT CAST(COALESCE(SUM(DATA_FREE), 0) AS SIGNED) \
                      FROM information_schema.TABLES \
                      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
                    .into(),
                binds: vec![Val::Text(t.info.table.table.clone())],
            })
            .await?;
    }
    Ok(bytes)
}

const MARIADB_NOTE: &str = "InnoDB purges deleted records in the background; their pages \
     stay in the tablespace (and readable on disk) until OPTIMIZE TABLE rebuilds it, \
     which Lethe does not run online";

/// What `plan` shows: the dead space in the tables now.
pub async fn estimate(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    db.dialect().dead_space(db, tables, Purge::Estimate).await
}

/// After a rule deleted (or anonymized) rows: reclaim what can be reclaimed
/// online and say what is left.
pub async fn reclaim(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    db.dialect().dead_space(db, tables, Purge::Reclaim).await
}

/// Which step of [`super::Dialect::dead_space`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Only look (a plan).
    Estimate,
    /// Reclaim what can be reclaimed online, then look.
    Reclaim,
}

/// PostgreSQL: `VACUUM` and `pg_stat_user_tables`.
pub(crate) async fn postgres(
    db: &Db,
    tables: &[&TableSql],
    step: Purge,
) -> Result<DeadSpace, Error> {
    match step {
        Purge::Estimate => postgres_estimate(db, tables).await,
        Purge::Reclaim => postgres_reclaim(db, tables).await,
    }
}

/// SQLite: `freelist_count` and `incremental_vacuum`.
pub(crate) async fn sqlite(db: &Db, tables: &[&TableSql], step: Purge) -> Result<DeadSpace, Error> {
    match step {
        Purge::Estimate => sqlite_estimate(db, tables).await,
        Purge::Reclaim => sqlite_reclaim(db, tables).await,
    }
}

/// MariaDB / MySQL: `DATA_FREE`, nothing reclaimed online.
pub(crate) async fn mysql(db: &Db, tables: &[&TableSql], step: Purge) -> Result<DeadSpace, Error> {
    match step {
        Purge::Estimate => mysql_estimate(db, tables).await,
        Purge::Reclaim => mysql_reclaim(db, tables).await,
    }
}

fn estimated(tables: &[&TableSql]) -> DeadSpace {
    DeadSpace {
        tables: names(tables),
        dead_rows: None,
        bytes: 0,
        state: "estimate".into(),
        note: String::new(),
    }
}

/// PostgreSQL's estimate: dead row versions in the statistics.
async fn postgres_estimate(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    let mut out = estimated(tables);
    let (mut rows, mut bytes) = (0, 0);
    for t in tables {
        let (r, b) = pg_dead(db, t).await?;
        rows += r;
        bytes += b;
    }
    out.dead_rows = Some(rows);
    out.bytes = bytes;
    out.note = "dead row versions stay readable in pages until VACUUM; \
                after_purge runs it on the touched tables"
        .into();
    Ok(out)
}

/// SQLite's estimate: the free pages of the whole file.
async fn sqlite_estimate(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    let mut out = estimated(tables);
    let (bytes, _) = sqlite_free(db).await?;
    out.bytes = bytes;
    out.note = "free pages of the whole file".into();
    Ok(out)
}

/// MariaDB / MySQL's estimate: `DATA_FREE`.
async fn mysql_estimate(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    let mut out = estimated(tables);
    out.bytes = mysql_free(db, tables).await?;
    out.note = MARIADB_NOTE.into();
    Ok(out)
}

/// PostgreSQL: `VACUUM (ANALYZE)` each table, one statement each, outside
/// any transaction block.
async fn postgres_reclaim(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    for t in tables {
        db.execute(&plain(format!("VACUUM (ANALYZE) {}", t.from)))
            .await?;
    }
    let mut out = postgres_estimate(db, tables).await?;
    out.state = "vacuumed".into();
    out.note = "VACUUM removed the dead row versions and their index entries and made \
                their space reusable; old bytes can remain in free page space, WAL and \
                backups until overwritten (only VACUUM FULL rewrites the table)"
        .into();
    Ok(out)
}

/// SQLite: an incremental vacuum where `auto_vacuum` allows one (its
/// connections already overwrite deleted content, `secure_delete`).
async fn sqlite_reclaim(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    let (_, auto) = sqlite_free(db).await?;
    // 2 = INCREMENTAL: free pages can be returned to the file system.
    if auto == 2 {
        db.execute(&plain("PRAGMA incremental_vacuum".into()))
            .await?;
    }
    let (bytes, _) = sqlite_free(db).await?;
    Ok(DeadSpace {
        tables: names(tables),
        dead_rows: None,
        bytes,
        state: if auto == 2 { "freed" } else { "zeroed" }.into(),
        note: if auto == 2 {
            "deleted content was overwritten (secure_delete) and free pages returned \
             (incremental vacuum); copies SQLite made of rows it moved between pages \
             while they were alive can remain until a full VACUUM rewrites the file"
                .into()
        } else {
            "deleted content was overwritten (secure_delete); the free pages stay in the \
             file because auto_vacuum is not INCREMENTAL, and copies SQLite made of rows \
             it moved between pages while they were alive can remain: only a full \
             VACUUM, which rewrites the file, removes both"
                .into()
        },
    })
}

/// MariaDB / MySQL: nothing can be reclaimed online.
async fn mysql_reclaim(db: &Db, tables: &[&TableSql]) -> Result<DeadSpace, Error> {
    Ok(DeadSpace {
        tables: names(tables),
        dead_rows: None,
        bytes: mysql_free(db, tables).await?,
        state: "not_reclaimable_online".into(),
        note: MARIADB_NOTE.into(),
    })
}
