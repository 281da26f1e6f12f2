//! `partitions = "drop"`: a range partition whose whole range is past the
//! cutoff goes in one DDL statement instead of row by row.
//!
//! Owns: finding the rule's partitions that are wholly due (bounds read from
//! the catalog through the dialect statements), recording each one's keys
//! digest and subjects as a batch record (the digest computed by the server
//! where it can, else a walk of the key a page at a time), and dropping it.
//! What it must never do: drop a partition that straddles the cutoff, that
//! holds a subject a legal hold lists, whose bound it cannot read, or whose
//! rows changed between the read and the drop. Those partitions stay, and the
//! batch loop after this step deletes their due rows as it always did (holds
//! respected row by row).
//!
//! Order of a drop, so the log never misses a row that went, and the
//! application waits only for a checksum and a DDL statement:
//! 1. In one snapshot (REPEATABLE READ), nothing locked: a checksum of the
//!    partition (`COUNT`, and `SUM(hashtext(key))` on PostgreSQL or
//!    `BIT_XOR(CRC32(key))` on MariaDB), its keys digest and its subjects.
//!    The server hashes the keys itself in the checksum's scan (PostgreSQL
//!    `sha256(string_agg(key, E'\n' ORDER BY key))`, MariaDB
//!    `SHA2(GROUP_CONCAT(…), 256)`), so no key leaves it; where it cannot
//!    (a partition over 10M rows, keys longer than MariaDB will join) the
//!    keys are read in key order a page at a time.
//! 2. Lock: PostgreSQL `LOCK TABLE parent IN ACCESS EXCLUSIVE MODE` (with a
//!    `lock_timeout`; parent first, as `DETACH` and the application's own
//!    statements take theirs), MariaDB `LOCK TABLES t WRITE`. The checksum
//!    again: a partition that changed since the read is batched instead.
//!    PostgreSQL re-checks holds here too (the hold table cannot be read
//!    under MariaDB's `LOCK TABLES`, so there holds are checked before).
//! 3. The record (fsynced), then `DETACH` + `DROP` and commit (PostgreSQL,
//!    one transaction; a failed commit is followed by a `batch_rollback`) or
//!    `ALTER TABLE … DROP PARTITION` and `UNLOCK TABLES` (MariaDB).

use super::{
    BatchDone, JobCtx, RuleProgress, RuleReport, batch_event, count_batch, rollback_event,
};
use crate::audit::PartitionDropped;
use crate::config::Rule;
use crate::error::Error;
use crate::keys::keys_sha256;
use crate::sql::statements::RuleSql;
use crate::sql::{Db, Stmt, TextRow, Tx};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::Instant;

/// Keys read per page while a partition's digest is computed.
const PAGE: usize = 10_000;
/// PostgreSQL: how long the drop waits for the parent's lock before it
/// gives up and leaves the partition to the batch loop.
const LOCK_TIMEOUT_MS: u64 = 5_000;

/// A partition whose whole range is past the cutoff.
#[derive(Debug, Clone)]
pub(crate) struct Whole {
    /// PostgreSQL schema of the partition ("" on MariaDB).
    pub schema: String,
    pub name: String,
    /// Its exclusive upper bound, as the catalog prints it.
    pub below: String,
    pub rows: u64,
    /// Rows whose subject a legal hold lists.
    pub held: u64,
}

/// What became of one wholly due partition (in `plan` and run reports).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionReport {
    pub partition: String,
    /// The partition's exclusive upper bound (at most the cutoff).
    pub below: String,
    pub rows: u64,
    /// `dropped`, `would_drop` (plan) or `batched` (kept; `reason` says why).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Whole {
    fn display(&self) -> String {
        if self.schema.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }

    pub(crate) fn report(&self, status: &str, reason: Option<String>) -> PartitionReport {
        PartitionReport {
            partition: self.display(),
            below: self.below.clone(),
            rows: self.rows,
            status: status.into(),
            reason,
        }
    }
}

/// The rule's partitions whose whole range is past the cutoff, with their
/// row and held counts. Empty where the table is not range-partitioned by
/// the select column (or the engine has no partitions).
pub(crate) async fn whole_partitions(db: &Db, sql: &RuleSql) -> Result<Vec<Whole>, Error> {
    let d = db.dialect();
    let (Some(catalog), Some(sel)) = (sql.partition_catalog(d), sql.select.as_ref()) else {
        return Ok(vec![]);
    };
    if !sel.older {
        return Ok(vec![]);
    }
    let column = sel.column.name.as_str();
    // (schema, name, upper bound, wrapping function)
    let mut candidates: Vec<(String, String, String, &'static str)> = Vec::new();
    for row in db.fetch(&catalog).await? {
        if let Some(c) = d.range_partition(&row, column, &candidates) {
            candidates.push(c);
        }
    }
    let mut out = Vec::new();
    for (schema, name, upper, func) in candidates {
        let Some(due) = sql.partition_is_due(d, &upper, func) else {
            continue;
        };
        if db.count(&due).await? != 1 {
            continue;
        }
        let from = sql.partition_from(d, &schema, &name);
        let rows = db.count(&sql.partition_count(d, &from, false)).await?;
        let held = if sql.hold.is_some() && sql.subject.is_some() {
            db.count(&sql.partition_count(d, &from, true)).await?
        } else {
            0
        };
        out.push(Whole {
            schema,
            name,
            below: upper,
            rows,
            held,
        });
    }
    Ok(out)
}

/// Keys digest (SHA-256 of the keys in key order, joined by newlines, as
/// `keys::keys_sha256`), raw subjects and the row count of one partition.
struct Read {
    count: u64,
    keys_sha256: String,
    subjects: BTreeSet<String>,
}

async fn read_keys(tx: &mut Tx, db: &Db, sql: &RuleSql, from: &str) -> Result<Read, Error> {
    let d = db.dialect();
    let mut h = Sha256::new();
    let mut count = 0u64;
    let mut subjects = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let rows = tx
            .fetch(db, &sql.partition_keys(d, from, after.as_deref(), PAGE))
            .await?;
        let n = rows.len();
        for r in rows {
            let Some(k) = r.first().cloned().flatten() else {
                continue;
            };
            if count > 0 {
                h.update(b"\n");
            }
            h.update(k.as_bytes());
            count += 1;
            if let Some(s) = r.get(1).cloned().flatten() {
                subjects.insert(s);
            }
            after = Some(k);
        }
        if n < PAGE {
            break;
        }
    }
    Ok(Read {
        count,
        keys_sha256: hex::encode(h.finalize()),
        subjects,
    })
}

/// `COUNT(*)` and a checksum of the keys of a partition, as text:
/// PostgreSQL `SUM(hashtext(key))`, MariaDB `BIT_XOR(CRC32(key))`. Equal
/// before and after the lock means no row came or went in between.
fn checksum(db: &Db, sql: &RuleSql, from: &str) -> Stmt {
    let (count, sum) = checksum_columns(db, sql);
    Stmt {
        sql: format!("SELECT {count}, {sum} FROM {from}"),
        binds: vec![],
    }
}

/// The checksum's two text columns (count, key checksum).
fn checksum_columns(db: &Db, sql: &RuleSql) -> (String, String) {
    let d = db.dialect();
    let k = d.to_text(&sql.table.col(d, &sql.key.name));
    (d.to_text("COUNT(*)"), d.to_text(&d.key_checksum(&k)))
}

/// Above this many rows a partition's keys are hashed by Lethe a page at a
/// time even where the server could: PostgreSQL's `string_agg` builds the
/// whole joined text in memory, and a text value ends at 1 GB.
const SERVER_DIGEST_MAX_ROWS: u64 = 10_000_000;

/// The snapshot statement that also has the server hash the keys (count,
/// checksum, keys digest in one scan), where the engine can and the
/// partition is small enough.
fn checksum_and_digest(db: &Db, sql: &RuleSql, from: &str, rows: u64) -> Option<Stmt> {
    if rows > SERVER_DIGEST_MAX_ROWS {
        return None;
    }
    let d = db.dialect();
    let kc = sql.table.col(d, &sql.key.name);
    let (count, sum) = checksum_columns(db, sql);
    let stmt = d.checksum_and_digest(&count, &sum, &d.to_text(&kc), &kc, from)?;
    Some(Stmt {
        sql: stmt,
        binds: vec![],
    })
}

/// The distinct subjects of a partition (the keys are hashed by the server).
async fn read_subjects(
    tx: &mut Tx,
    db: &Db,
    sql: &RuleSql,
    from: &str,
) -> Result<BTreeSet<String>, Error> {
    let d = db.dialect();
    let Some(s) = &sql.subject else {
        return Ok(BTreeSet::new());
    };
    let sc = sql.table.col(d, &s.name);
    let stmt = Stmt {
        sql: format!(
            "SELECT DISTINCT {} FROM {from} WHERE {sc} IS NOT NULL",
            d.to_text(&sc)
        ),
        binds: vec![],
    };
    Ok(tx
        .fetch(db, &stmt)
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// Why a partition that looked wholly due is batched after all.
enum Kept {
    Reason(String),
}

/// Drop every wholly due partition that holds no held subject; returns the
/// dropped ones as (schema, name) so the batch loop skips them. Partitions
/// it keeps are listed in the report with the reason.
pub(super) async fn drop_whole(
    rule_run: &mut super::batch::RuleRun<'_, '_>,
) -> Result<Vec<(String, String)>, Error> {
    let mut run = DropRun {
        ctx: &mut *rule_run.ctx,
        db: rule_run.db,
        rule: rule_run.rule,
        sql: rule_run.sql,
        report: &mut *rule_run.report,
        bar: &mut *rule_run.bar,
    };
    let mut dropped = Vec::new();
    for w in whole_partitions(run.db, run.sql).await? {
        if w.rows == 0 {
            continue;
        }
        if w.held > 0 {
            tracing::info!(
                partition = %w.display(),
                held = w.held,
                "partition holds held subjects: batched, not dropped"
            );
            run.report
                .partitions
                .push(w.report("batched", Some(format!("{} rows of held subjects", w.held))));
            continue;
        }
        let started = Instant::now();
        match drop_one(&mut run, &w, started).await? {
            Ok(()) => {
                tracing::info!(partition = %w.display(), rows = w.rows, "partition dropped whole");
                run.report.partitions.push(w.report("dropped", None));
                dropped.push((w.schema.clone(), w.name.clone()));
            }
            Err(Kept::Reason(why)) => {
                tracing::warn!(partition = %w.display(), reason = %why, "partition batched, not dropped");
                run.report.partitions.push(w.report("batched", Some(why)));
            }
        }
    }
    Ok(dropped)
}

/// The rule whose partitions are being dropped: what every drop records
/// into and counts against, passed together instead of six arguments.
struct DropRun<'c, 'j> {
    ctx: &'c mut JobCtx<'j>,
    db: &'c Db,
    rule: &'c Rule,
    sql: &'c RuleSql,
    report: &'c mut RuleReport,
    bar: &'c mut Option<Box<dyn RuleProgress>>,
}

/// One partition's statements, built once for the three steps of its drop.
struct Part<'a> {
    db: &'a Db,
    sql: &'a RuleSql,
    w: &'a Whole,
    /// The partition as a `FROM` clause.
    from: String,
    /// Its checksum query, run in the snapshot and again under the lock.
    sum: Stmt,
    /// The snapshot's checksum with the server's keys digest, where the
    /// engine computes one ([`checksum_and_digest`]).
    sum_and_digest: Option<Stmt>,
    /// PostgreSQL (transactional DDL, `LOCK TABLE`) rather than MariaDB
    /// (`LOCK TABLES`, DDL that commits itself).
    postgres: bool,
}

/// A database error that keeps the partition for the batch loop.
fn kept(e: Error) -> Kept {
    Kept::Reason(e.to_string())
}

/// One partition. The outer `Err` is an audit failure (the run stops); the
/// inner one a partition left to the batch loop.
async fn drop_one(
    run: &mut DropRun<'_, '_>,
    w: &Whole,
    started: Instant,
) -> Result<Result<(), Kept>, Error> {
    let (db, sql) = (run.db, run.sql);
    let d = db.dialect();
    let from = sql.partition_from(d, &w.schema, &w.name);
    let p = Part {
        db,
        sql,
        w,
        sum: checksum(db, sql, &from),
        sum_and_digest: checksum_and_digest(db, sql, &from, w.rows),
        from,
        postgres: d.transactional_ddl(),
    };
    // 1. Checksum, keys and subjects in one snapshot, nothing locked.
    let (before, read) = match p.snapshot().await {
        Ok(s) => s,
        Err(e) => return Ok(Err(kept(e))),
    };
    if let Some(why) = not_unique(&before, &read) {
        return Ok(Err(Kept::Reason(why)));
    }
    // 2. Lock (PostgreSQL: the parent, first, as the application's own
    // statements on the parent do; MariaDB: LOCK TABLES), and check that the
    // partition still holds exactly what was read and no held subject.
    let mut tx = match db.begin().await {
        Ok(tx) => tx,
        Err(e) => return Ok(Err(kept(e))),
    };
    match p.recheck(&mut tx, &before).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            p.unlock(tx).await;
            return Ok(Err(Kept::Reason(why)));
        }
        Err(e) => {
            p.unlock(tx).await;
            return Ok(Err(kept(e)));
        }
    }
    // 3. Record (fsynced), then drop.
    let done = batch_done(run, &read, w);
    let record = batch_event(run.ctx, run.rule, run.report, &done);
    if let Err(e) = run.ctx.audit.append(record) {
        p.unlock(tx).await;
        return Err(e);
    }
    if let Err(e) = p.drop_and_finish(tx).await {
        run.ctx
            .audit
            .append(rollback_event(run.ctx, run.rule, done.batch, &e))?;
        // The number is used (by the record and its rollback).
        run.report.batches = run.report.batches.max(done.batch);
        return Ok(Err(kept(e)));
    }
    count_batch(run.report, run.bar, done, started);
    Ok(Ok(()))
}

/// The reason to keep a partition whose key read disagrees with its count.
fn not_unique(before: &Option<TextRow>, read: &Read) -> Option<String> {
    let counted = before.as_ref().and_then(|r| r.first().cloned().flatten());
    if counted == Some(read.count.to_string()) {
        return None;
    }
    Some(format!(
        "read {} keys of a partition that holds {}: the key is not unique",
        read.count,
        counted.unwrap_or_default()
    ))
}

/// The batch record of a dropped partition: its keys and subjects as read.
fn batch_done(run: &DropRun<'_, '_>, read: &Read, w: &Whole) -> BatchDone<'static> {
    BatchDone {
        batch: run.report.batches + 1,
        count: read.count,
        children: vec![],
        keys_digest: run.ctx.keys.digest_of(&read.keys_sha256),
        subjects: read
            .subjects
            .iter()
            .map(|s| run.ctx.keys.subject(s))
            .collect(),
        resolved: None,
        limit: None,
        partition: Some(PartitionDropped {
            name: w.display(),
            below: w.below.clone(),
        }),
    }
}

impl Part<'_> {
    /// Step 1: the checksum and the keys in one snapshot, rolled back.
    async fn snapshot(&self) -> Result<(Option<TextRow>, Read), Error> {
        let mut tx = self.db.begin().await?;
        let res = self.read_snapshot(&mut tx).await;
        let _ = tx.rollback(self.db).await;
        res
    }

    async fn read_snapshot(&self, tx: &mut Tx) -> Result<(Option<TextRow>, Read), Error> {
        if self.postgres {
            tx.execute(
                self.db,
                &plain("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            )
            .await?;
        }
        if let Some(stmt) = &self.sum_and_digest {
            if let Some(setup) = self.db.dialect().keys_digest_setup() {
                tx.execute(self.db, &plain(setup)).await?;
            }
            // One scan for the checksum and the digest; only the subjects
            // travel (the keys are hashed where they are).
            let mut row = tx.fetch(self.db, stmt).await?.into_iter().next();
            let digest = row.as_mut().and_then(|r| r.pop()).flatten();
            let count: u64 = row
                .as_ref()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let keys_sha256 = match digest {
                Some(d) => d,
                None if count == 0 => keys_sha256(&[]),
                // The server could not join every key (MariaDB's
                // group_concat_max_len): Lethe hashes them, page by page.
                None => return Ok((row, read_keys(tx, self.db, self.sql, &self.from).await?)),
            };
            let subjects = read_subjects(tx, self.db, self.sql, &self.from).await?;
            let read = Read {
                count,
                keys_sha256,
                subjects,
            };
            return Ok((row, read));
        }
        let before = tx.fetch(self.db, &self.sum).await?.into_iter().next();
        let read = read_keys(tx, self.db, self.sql, &self.from).await?;
        Ok((before, read))
    }

    /// Step 2: lock, then the reason the partition changed since `before`
    /// (or took a held subject), if it did.
    async fn recheck(
        &self,
        tx: &mut Tx,
        before: &Option<TextRow>,
    ) -> Result<Option<String>, Error> {
        let (db, sql, d) = (self.db, self.sql, self.db.dialect());
        if self.postgres {
            tx.execute(
                db,
                &plain(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")),
            )
            .await?;
        }
        tx.execute(db, &sql.partition_lock(d, &self.w.schema, &self.w.name))
            .await?;
        let after = tx.fetch(db, &self.sum).await?.into_iter().next();
        if after != *before {
            return Ok(Some("the partition changed while it was read".into()));
        }
        if self.postgres && sql.hold.is_some() && sql.subject.is_some() {
            let held = tx
                .fetch(db, &sql.partition_count_text(d, &self.from, true))
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten());
            if held.as_deref() != Some("0") {
                return Ok(Some("a subject in it was put on hold".into()));
            }
        }
        Ok(None)
    }

    /// Step 3, after the record: the drop statements, then commit
    /// (PostgreSQL) or unlock (MariaDB).
    async fn drop_and_finish(&self, mut tx: Tx) -> Result<(), Error> {
        let db = self.db;
        for stmt in self
            .sql
            .partition_drop(db.dialect(), &self.w.schema, &self.w.name)
        {
            if let Err(e) = tx.execute(db, &stmt).await {
                self.unlock(tx).await;
                return Err(e);
            }
        }
        if self.postgres {
            return tx.commit(db).await;
        }
        // The partition is gone (MariaDB DDL commits itself): whatever
        // unlocking says, the recorded batch happened.
        if let Err(e) = tx.execute(db, &unlock_tables()).await {
            tracing::warn!(error = %e, "UNLOCK TABLES after a partition drop failed");
        }
        let _ = tx.commit(db).await;
        Ok(())
    }

    /// Give up the lock (MariaDB) and the transaction, whatever they say.
    async fn unlock(&self, mut tx: Tx) {
        if !self.postgres {
            let _ = tx.execute(self.db, &unlock_tables()).await;
        }
        let _ = tx.rollback(self.db).await;
    }
}

fn plain(sql: &str) -> Stmt {
    Stmt {
        sql: sql.into(),
        binds: vec![],
    }
}

fn unlock_tables() -> Stmt {
    Stmt {
        sql: "UNLOCK TABLES".into(),
        binds: vec![],
    }
}
