//! The batch loops of an executed rule: the one-statement fast delete and
//! the keyed loop (select, children, act), and the commit protocol they
//! share — the record fsynced before the commit, a conflict retried with
//! backoff, a lost connection retried within `reconnect_for`, and a commit
//! whose answer was lost recorded as unknown, never as rolled back.
//!
//! It never decides whether a rule runs: it is called only for an executed
//! rule that matched rows and passed its guards.

use super::cascade::process_child;
use super::report::add_count;
use super::{
    JobCtx, RuleProgress, RuleReport, RuleStatus, object_rules, partitions, sizing, windows,
};
use crate::anonymize::hash::{hash_source, rehash};
use crate::audit::{ChildCount, Event};
use crate::config::{Partitions, Rule};
use crate::error::Error;
use crate::objects::{Stores, linked};
use crate::sql::statements::{BatchRow, Cursor, Deleted, RuleSql, act_chunk};
use crate::sql::{Db, Tx};
use crate::state::State;
use chrono::Utc;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A connection outage in progress: when it began and how many times the
/// work was tried again since. Reset by every commit.
#[derive(Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
    attempts: u32,
}

impl Outage {
    /// After a lost connection (`Error::Connection`, before any commit was
    /// asked for): wait (100 ms, doubling, at most 2 s) and return `Ok` to
    /// try again, for as long as `budget` (the source's `reconnect_for`)
    /// allows since the outage began. Any other error, or an outage longer
    /// than the budget, comes back as `Err`, saying how long was tried.
    pub(crate) async fn wait(
        &mut self,
        source: &str,
        budget: Duration,
        e: Error,
    ) -> Result<(), Error> {
        let Error::Connection { message, .. } = &e else {
            return Err(e);
        };
        let since = *self.since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        if waited >= budget {
            return Err(Error::Connection {
                source_name: source.to_string(),
                message: if budget.is_zero() {
                    format!("{message} (reconnect_for is 0s: not retried)")
                } else {
                    format!(
                        "{message}; still unreachable after reconnecting for {:.1} s (reconnect_for = {} s)",
                        waited.as_secs_f64(),
                        budget.as_secs()
                    )
                },
            });
        }
        self.attempts += 1;
        let wait = Duration::from_millis(100u64 << self.attempts.saturating_sub(1).min(4))
            .min(budget - waited);
        tracing::warn!(
            source,
            attempt = self.attempts,
            wait_ms = wait.as_millis() as u64,
            error = %message,
            "connection lost; reconnecting"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// How many times one batch is tried again after the server rolled it back
/// on a conflict before the rule fails.
pub(crate) const MAX_CONFLICT_RETRIES: u32 = 8;

/// Exponential backoff with jitter, so that two shards that collided do not
/// collide again in step: 50 ms, 100 ms, … capped at 3.2 s, plus up to half.
pub(crate) fn conflict_backoff(attempt: u32) -> Duration {
    let base = 50u64 << attempt.saturating_sub(1).min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

/// Roll back a batch that failed before it was recorded. When the server
/// broke a conflict (deadlock, lock timeout) by rolling the batch back,
/// nothing of it is recorded or committed, so nothing is left to undo: while
/// tries remain, wait (backoff with jitter), say so, and return `Ok` — try it
/// again. Any other error, or the last conflict, comes back as `Err`.
pub(crate) async fn roll_back_or_retry(
    db: &Db,
    tx: Tx,
    e: Error,
    conflicts: &mut u32,
) -> Result<(), Error> {
    let _ = tx.rollback(db).await;
    if !matches!(e, Error::Conflict { .. }) || *conflicts >= MAX_CONFLICT_RETRIES {
        return Err(e);
    }
    *conflicts += 1;
    let wait = conflict_backoff(*conflicts);
    tracing::warn!(
        attempt = *conflicts,
        wait_ms = wait.as_millis() as u64,
        error = %e,
        "batch rolled back by a conflicting transaction; trying it again"
    );
    tokio::time::sleep(wait).await;
    Ok(())
}

/// Run one one-statement batch (`RuleSql::fast_delete`) inside `tx` and
/// say what it deleted. `bound` is the previous batch's `Deleted::bound`
/// (or where the caller's window starts); `below` ends the window.
pub async fn delete_next_batch(
    tx: &mut Tx,
    db: &Db,
    sql: &RuleSql,
    part: Option<&str>,
    bound: Option<&str>,
    below: Option<&str>,
) -> Result<Deleted, Error> {
    let d = db.dialect();
    let unreadable = |e: &str| Error::Database {
        source_name: db.name.clone(),
        message: e.to_string(),
    };
    let delete = sql.delete_batch(d, part, bound, below);
    if let Some(summary) = sql.summarize_batch(d, part, bound, below) {
        let del = sql
            .parse_deleted(d, tx.fetch(db, &summary).await?)
            .map_err(|e| unreadable(&e))?;
        if del.count > 0 {
            let n = tx.execute(db, &delete).await?;
            if n != del.count {
                return Err(unreadable(&format!(
                    "the batch deleted {n} rows but its summary counted {}; rolled back",
                    del.count
                )));
            }
        }
        return Ok(del);
    }
    let rows = tx.fetch(db, &delete).await?;
    sql.parse_deleted(d, rows).map_err(|e| unreadable(&e))
}

/// What the first half of a batch produced.
pub(crate) enum Fetched {
    /// Rows selected (and locked, and acted on) by the general path.
    Rows(Vec<BatchRow>, Option<linked::Resolved>),
    /// A one-statement delete's result.
    Deleted(Deleted),
}

/// A batch ready to be recorded and committed.
pub(crate) struct BatchDone<'r> {
    pub(crate) batch: u64,
    pub(crate) count: u64,
    pub(crate) children: Vec<ChildCount>,
    pub(crate) keys_digest: String,
    pub(crate) subjects: BTreeSet<String>,
    pub(crate) resolved: Option<&'r linked::Resolved>,
    /// The size a time-sized batch was given (recorded with it).
    pub(crate) limit: Option<u64>,
    /// A whole partition dropped instead of a batch of rows.
    pub(crate) partition: Option<crate::audit::PartitionDropped>,
}

/// Record a batch, erase its objects, commit, and count it.
///
/// The record is written (fsynced) before the commit: a crash between the
/// two leaves a record of a batch that the next run will do (and record)
/// again, never an unrecorded deletion. Objects go before the rows commit:
/// if erasing fails, the rows stay and still name every object that is left.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_batch(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    tx: Tx,
    rule: &Rule,
    report: &mut RuleReport,
    bar: &mut Option<Box<dyn RuleProgress>>,
    done: BatchDone<'_>,
    started: Instant,
) -> Result<(), Error> {
    let record = batch_event(ctx, rule, report, &done);
    if let Err(e) = ctx.audit.append(record) {
        let _ = tx.rollback(db).await;
        return Err(e);
    }
    // Held objects are listed before anything is erased or committed: once
    // the rows go, this list is all that still names them.
    let erased = match done.resolved {
        Some(r) => match record_pending(ctx.state, r).await {
            Ok(()) => linked::erase(r).await.map(drop),
            Err(e) => Err(e),
        },
        None => Ok(()),
    };
    let committed = match erased {
        Ok(()) => tx.commit(db).await,
        Err(e) => {
            let _ = tx.rollback(db).await;
            Err(e)
        }
    };
    if let Err(e) = committed {
        if let Error::Connection {
            source_name,
            message,
        } = &e
        {
            // The commit was sent and the answer lost: it may have
            // committed. Record that it is unknown, never that it rolled back.
            ctx.audit
                .append(rollback_event(ctx, rule, done.batch, &e))?;
            return Err(Error::Connection {
                source_name: source_name.clone(),
                message: format!(
                    "{message}: the connection was lost while batch {} was committing, so whether it committed is unknown; the rule stops here and a later run deletes whatever of it is left",
                    done.batch
                ),
            });
        }
        let record = rollback_event(ctx, rule, done.batch, &e);
        ctx.audit.append(record)?;
        return Err(e);
    }
    count_batch(report, bar, done, started);
    Ok(())
}

/// Put a batch's held objects on the state store's pending-erasure list.
pub(crate) async fn record_pending(
    state: Option<&State>,
    r: &linked::Resolved,
) -> Result<(), Error> {
    if r.pending.is_empty() {
        return Ok(());
    }
    match state {
        Some(state) => state.add_pending(&r.pending).await,
        None => Err(Error::State(
            "objects under Object Lock need the state store's pending-erasure list, and this run has no state store".into(),
        )),
    }
}

/// The record of a batch, written before it commits.
pub(crate) fn batch_event(
    ctx: &JobCtx<'_>,
    rule: &Rule,
    report: &RuleReport,
    done: &BatchDone<'_>,
) -> Event {
    Event::Batch {
        job: ctx.job.name.clone(),
        rule: rule.name.clone(),
        policy: ctx.job.policy.clone(),
        target: report.target.clone(),
        action: report.action.clone(),
        batch: done.batch,
        count: done.count,
        children: done.children.clone(),
        keys_digest: done.keys_digest.clone(),
        subjects: done.subjects.iter().cloned().collect(),
        objects: done.resolved.map(|r| r.counts.clone()).unwrap_or_default(),
        batch_size: done.limit,
        partition: done.partition.clone(),
    }
}

/// The record that a recorded batch did not commit after all — or, when the
/// connection was lost while it was committing, that whether it did is
/// unknown (never a rollback it may not have been).
pub(crate) fn rollback_event(ctx: &JobCtx<'_>, rule: &Rule, batch: u64, e: &Error) -> Event {
    if matches!(e, Error::Connection { .. }) {
        return Event::BatchUnknown {
            job: ctx.job.name.clone(),
            rule: rule.name.clone(),
            batch,
            reason: e.to_string(),
        };
    }
    Event::BatchRollback {
        job: ctx.job.name.clone(),
        rule: rule.name.clone(),
        batch,
        reason: e.to_string(),
    }
}

/// Count a committed batch in the rule's report and progress bar.
pub(crate) fn count_batch(
    report: &mut RuleReport,
    bar: &mut Option<Box<dyn RuleProgress>>,
    done: BatchDone<'_>,
    started: Instant,
) {
    let ms = started.elapsed().as_millis() as u64;
    report.longest_batch_ms = report.longest_batch_ms.max(ms);
    report.batches = report.batches.max(done.batch);
    report.done += done.count;
    if let Some(b) = bar.as_mut() {
        b.advance(done.count);
    }
    for c in done.children {
        add_count(&mut report.children, &c.target, &c.via, &c.action, c.count);
    }
    if let Some(r) = done.resolved {
        linked::add_erased(&mut report.objects, &r.counts);
    }
    tracing::debug!(
        batch = done.batch,
        count = done.count,
        ms,
        "batch committed"
    );
}

/// The batch loop.
pub(crate) async fn execute(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    stores: &Stores,
    report: &mut RuleReport,
    bar: &mut Option<Box<dyn RuleProgress>>,
) -> Result<(), Error> {
    let d = db.dialect();
    let fast = sql.fast_delete(d);
    // Wholly due partitions first, dropped whole; the loop below batches
    // what is left (the partitions that straddle the cutoff, or hold a held
    // subject). Not under `--shard`: a partition is not one shard's share.
    let dropped = if rule.partitions == Partitions::Drop && ctx.opts.shard.is_none() {
        partitions::drop_whole(ctx, db, rule, sql, report, bar).await?
    } else {
        vec![]
    };
    let parts = if fast {
        sql.delete_parts_except(d, &dropped)
    } else {
        vec![None]
    };
    let workers = windows::workers(db, rule, sql);
    if workers > 1 {
        return windows::execute(ctx, db, rule, sql, report, bar, workers).await;
    }
    // Numbered after the partitions dropped whole, if any.
    let mut batch_no = report.batches;
    // Conflicts in a row on the current batch; reset by every commit.
    let mut conflicts = 0u32;
    // Batches sized by time: the controller picks each batch's size.
    let mut sizer = rule
        .batch_time
        .map(|t| sizing::BatchSizer::new(sql.batch_size, t, rule.batch_size_max));
    let mut sized = sql.clone();
    // A lost connection, retried within the source's `reconnect_for`.
    let mut outage = Outage::default();
    // One-statement deletes walk each physical table in turn (a ctid is
    // unique only within one); every other path has a single part.
    for part in &parts {
        let mut cursor: Option<Cursor> = None;
        let mut bound: Option<String> = None;
        loop {
            if ctx.opts.cancel.is_cancelled() {
                report.status = RuleStatus::Interrupted;
                report.batch_sizes = sizer.as_ref().map(|s| s.stats());
                tracing::warn!("interrupted at a batch boundary");
                return Ok(());
            }
            if let Some(s) = &sizer {
                sized.batch_size = s.size();
            }
            let sql = &sized;
            let limit = sizer.as_ref().map(|s| s.size() as u64);
            let started = Instant::now();
            let mut tx = match db.begin().await {
                Ok(tx) => tx,
                Err(e) => {
                    outage.wait(&db.name, db.reconnect_for, e).await?;
                    continue;
                }
            };
            let mut children = Vec::new();
            let outcome: Result<Fetched, Error> = async {
                if fast {
                    return delete_next_batch(
                        &mut tx,
                        db,
                        sql,
                        part.as_deref(),
                        bound.as_deref(),
                        None,
                    )
                    .await
                    .map(Fetched::Deleted);
                }
                let rows = sql.parse_batch(
                    tx.fetch(db, &sql.select_batch(d, cursor.as_ref(), true))
                        .await?,
                );
                if rows.is_empty() {
                    return Ok(Fetched::Rows(rows, None));
                }
                // Objects the rows name, resolved before anything is acted on:
                // what Object Lock holds becomes pending, the rest goes.
                let keys_list: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
                let resolved = if linked::has_objects(sql) {
                    let crows = linked::child_rows_tx(&mut tx, db, sql, &keys_list).await?;
                    Some(linked::resolve(stores, sql, &rows, &crows, Utc::now()).await?)
                } else {
                    None
                };
                for child in &sql.children {
                    process_child(
                        &mut tx,
                        db,
                        ctx.keys,
                        child,
                        &sql.key,
                        &keys_list,
                        &mut children,
                    )
                    .await?;
                }
                // One statement per batch (per chunk under the bind limits),
                // every column at once; `hash` computed by the server where
                // it can, else bound per key.
                let hashed = sql.action.hash_columns();
                let pads = ctx.keys.pseudonym_pads();
                for part in rows.chunks(act_chunk(d, hashed.len())) {
                    let ks: Vec<String> = part.iter().map(|r| r.key.clone()).collect();
                    let values = if hashed.is_empty() || d.hashes_in_sql() {
                        vec![]
                    } else {
                        part.iter()
                            .filter_map(|r| Some((r.key.clone(), rehash(ctx.keys, &r.hashed)?)))
                            .collect()
                    };
                    let hashes = hash_source(d, hashed.len(), &pads, &values);
                    tx.execute(db, &sql.act_by_keys(d, &ks, hashes)).await?;
                }
                Ok(Fetched::Rows(rows, resolved))
            }
            .await;
            let fetched = match outcome {
                Ok(r) => r,
                Err(e @ Error::Connection { .. }) => {
                    // Nothing of the batch was recorded or committed.
                    let _ = tx.rollback(db).await;
                    outage.wait(&db.name, db.reconnect_for, e).await?;
                    report.retries += 1;
                    continue;
                }
                Err(e) => {
                    roll_back_or_retry(db, tx, e, &mut conflicts).await?;
                    report.retries += 1;
                    continue;
                }
            };
            let (rows, resolved) = match fetched {
                Fetched::Rows(rows, resolved) => (rows, resolved),
                Fetched::Deleted(del) => {
                    if del.count == 0 {
                        tx.rollback(db).await?;
                        break;
                    }
                    batch_no += 1;
                    let done = BatchDone {
                        batch: batch_no,
                        count: del.count,
                        children: vec![],
                        keys_digest: ctx.keys.digest_of(&del.keys_sha256),
                        subjects: del.subjects.iter().map(|s| ctx.keys.subject(s)).collect(),
                        resolved: None,
                        limit,
                        partition: None,
                    };
                    commit_batch(ctx, db, tx, rule, report, bar, done, started).await?;
                    conflicts = 0;
                    if let Some(s) = sizer.as_mut() {
                        s.observe(del.count, started.elapsed());
                    }
                    outage = Outage::default();
                    bound = del.bound;
                    if del.count < sql.batch_size as u64 {
                        break;
                    }
                    if !db.pause.is_zero() {
                        tokio::time::sleep(db.pause).await;
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                tx.rollback(db).await?;
                break;
            }
            if let Some(r) = &resolved
                && !r.pending.is_empty()
            {
                object_rules::audit_linked_hold(ctx, rule, report, r)?;
            }
            let acted: Vec<&BatchRow> = rows.iter().collect();
            let last = rows.last().expect("not empty");
            let next = Cursor {
                order: last.order.clone(),
                key: last.key.clone(),
            };
            batch_no += 1;
            let keys_list: Vec<String> = acted.iter().map(|r| r.key.clone()).collect();
            let subjects: BTreeSet<String> = acted
                .iter()
                .filter_map(|r| r.subject.as_deref().map(|s| ctx.keys.subject(s)))
                .collect();
            let done = BatchDone {
                batch: batch_no,
                count: acted.len() as u64,
                children,
                keys_digest: ctx.keys.digest(&keys_list),
                subjects,
                resolved: resolved.as_ref(),
                limit,
                partition: None,
            };
            commit_batch(ctx, db, tx, rule, report, bar, done, started).await?;
            conflicts = 0;
            if let Some(s) = sizer.as_mut() {
                s.observe(rows.len() as u64, started.elapsed());
            }
            outage = Outage::default();
            cursor = Some(next);
            if rows.len() < sql.batch_size {
                break;
            }
            if !db.pause.is_zero() {
                tokio::time::sleep(db.pause).await;
            }
        }
    }
    report.batch_sizes = sizer.map(|s| s.stats());
    report.status = RuleStatus::Done;
    Ok(())
}
