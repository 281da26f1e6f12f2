//! Side-by-side batches: a plain delete split into windows of its select
//! column, one worker and one connection per window.
//!
//! One batch at a time leaves the server idle while Lethe records and
//! commits, and a single statement uses one core of it. A rule with
//! `concurrency = N` splits its eligible rows, at the start of the rule,
//! into N contiguous windows of the leading order column (equal row counts,
//! found with `ORDER BY … OFFSET`), and walks each window with the same
//! one-statement batch as the serial path. Windows are disjoint, so workers
//! never wait on each other's rows; every batch is still one short
//! transaction, recorded (fsynced) before it commits; the audit log holds
//! the batches in the order they were recorded, numbered in that order.
//! The workers are futures on the run's task: the database does their work
//! in parallel, Lethe mostly waits for it.

use super::sizing::{self, BatchSizer};
use super::{
    BatchDone, JobCtx, RuleProgress, RuleReport, RuleStatus, act_next_batch, batch_event,
    count_batch, roll_back_or_retry, rollback_event,
};
use crate::config::Rule;
use crate::error::Error;
use crate::sql::Db;
use crate::sql::statements::RuleSql;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How many workers delete this rule's rows: its `concurrency`, where the
/// path and engine allow more than one, capped by the source's pool.
pub(super) fn workers(db: &Db, rule: &Rule, sql: &RuleSql) -> usize {
    if rule.concurrency <= 1 {
        return 1;
    }
    if let Some(why) = crate::plan::walk::why_one_worker(db, sql) {
        tracing::info!(
            concurrency = rule.concurrency,
            why,
            "deleting one batch at a time"
        );
        return 1;
    }
    let pool = db.max_connections as usize;
    if rule.concurrency > pool {
        tracing::warn!(
            concurrency = rule.concurrency,
            max_connections = pool,
            "concurrency is capped by the source's max_connections"
        );
    }
    rule.concurrency.min(pool)
}

/// What the workers share: the job (audit log), the report and the bar.
struct Shared<'a, 'c> {
    ctx: &'a mut JobCtx<'c>,
    report: &'a mut RuleReport,
    bar: &'a mut Option<Box<dyn RuleProgress>>,
    /// Batches recorded so far, across workers.
    recorded: u64,
}

/// One worker's window of the leading order column: `[from, below)`.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    from: Option<String>,
    below: Option<String>,
}

/// Split the rule's eligible rows into `workers` windows of about equal
/// row counts. Ties at a split point all fall in the later window; equal
/// split points merge, so a column with few values gets fewer windows.
async fn split(db: &Db, sql: &RuleSql, matched: u64, workers: usize) -> Result<Vec<Window>, Error> {
    let mut points: Vec<String> = Vec::new();
    for i in 1..workers as u64 {
        let offset = matched * i / workers as u64;
        let rows = db.fetch(&sql.split_point(db.dialect(), offset)).await?;
        // No row there any more (deleted since the count) or a NULL: no split.
        if let Some(v) = rows.into_iter().next().and_then(|mut r| r.pop().flatten())
            && points.last() != Some(&v)
        {
            points.push(v);
        }
    }
    let mut windows = Vec::with_capacity(points.len() + 1);
    let mut from = None;
    for p in points {
        windows.push(Window {
            from,
            below: Some(p.clone()),
        });
        from = Some(p);
    }
    windows.push(Window { from, below: None });
    Ok(windows)
}

/// Delete the rule's rows with `workers` side-by-side windows.
pub(super) async fn execute(
    run: &mut super::batch::RuleRun<'_, '_>,
    workers: usize,
) -> Result<(), Error> {
    let (ctx, db, rule, sql) = (&mut *run.ctx, run.db, run.rule, run.sql);
    let (report, bar) = (&mut *run.report, &mut *run.bar);
    let windows = split(db, sql, report.matched, workers).await?;
    // Numbered after the partitions dropped whole, if any.
    let recorded = report.batches;
    tracing::info!(workers = windows.len(), "deleting in side-by-side windows");
    let shared = Mutex::new(Shared {
        ctx,
        report,
        bar,
        recorded,
    });
    let stop = AtomicBool::new(false);
    let (shared_ref, stop_ref) = (&shared, &stop);
    let results = futures_util::future::join_all(windows.iter().map(|w| async move {
        let r = walk(shared_ref, stop_ref, db, rule, sql, w).await;
        if r.is_err() {
            // The others stop at their next batch boundary.
            stop_ref.store(true, Ordering::SeqCst);
        }
        r
    }))
    .await;
    let shared = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    // An audit failure stops the run, so it wins; any other fails the rule.
    let (mut errors, mut stopped_early) = (Vec::new(), false);
    for r in results {
        match r {
            Ok(early) => stopped_early |= early,
            Err(e) => errors.push(e),
        }
    }
    if let Some(i) = errors.iter().position(|e| matches!(e, Error::Audit(_))) {
        return Err(errors.swap_remove(i));
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    shared.report.status = if stopped_early {
        tracing::warn!("interrupted at a batch boundary");
        RuleStatus::Interrupted
    } else {
        RuleStatus::Done
    };
    Ok(())
}

fn lock<'m, 'a, 'c>(m: &'m Mutex<Shared<'a, 'c>>) -> std::sync::MutexGuard<'m, Shared<'a, 'c>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Number and record a worker's batch under one lock, so numbers follow
/// the log.
fn record(
    shared: &Mutex<Shared<'_, '_>>,
    rule: &Rule,
    del: &crate::sql::statements::Deleted,
    limit: Option<u64>,
) -> Result<BatchDone<'static>, Error> {
    let mut s = lock(shared);
    s.recorded += 1;
    let done = BatchDone {
        batch: s.recorded,
        count: del.count,
        children: vec![],
        keys_digest: s.ctx.keys.digest_of(&del.keys_sha256),
        subjects: del.subjects.iter().map(|x| s.ctx.keys.subject(x)).collect(),
        resolved: None,
        limit,
        partition: None,
    };
    let record = batch_event(s.ctx, rule, s.report, &done);
    s.ctx.audit.append(record).map(|_| done)
}

/// One worker: batches over its window until the window is empty
/// (`Ok(false)`) or the run is cancelled (`Ok(true)`: work is left).
async fn walk(
    shared: &Mutex<Shared<'_, '_>>,
    stop: &AtomicBool,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    window: &Window,
) -> Result<bool, Error> {
    let mut bound = window.from.clone();
    let mut conflicts = 0u32;
    // Each worker sizes its own batches by time (its window, its connection).
    let mut sizer = rule
        .batch_time
        .map(|t| BatchSizer::new(sql.batch_size, t, rule.batch_size_max));
    let mut sized = sql.clone();
    // Each worker waits on the source's `pause_when` before its batches.
    let mut throttle = super::batch::throttle_of(db).await?;
    let report_sizes = |sizer: &Option<BatchSizer>| {
        if let Some(s) = sizer {
            sizing::merge(&mut lock(shared).report.batch_sizes, s.stats());
        }
    };
    let cancel = lock(shared).ctx.opts.cancel.clone();
    let keys = lock(shared).ctx.keys;
    loop {
        let waited = super::batch::wait_for_health(throttle.as_mut(), &cancel).await?;
        lock(shared).report.add_throttled(waited);
        if lock(shared).ctx.opts.cancel.is_cancelled() || stop.load(Ordering::SeqCst) {
            // Cancelled, or another worker failed (its error fails the rule).
            report_sizes(&sizer);
            return Ok(true);
        }
        if let Some(s) = &sizer {
            sized.batch_size = s.size();
        }
        let sql = &sized;
        let limit = sizer.as_ref().map(|s| s.size() as u64);
        let started = Instant::now();
        let mut tx = db.begin().await?;
        let deleted = act_next_batch(
            &mut tx,
            db,
            keys,
            sql,
            None,
            bound.as_deref(),
            window.below.as_deref(),
        )
        .await;
        let del = match deleted {
            Ok(del) => del,
            Err(e) => {
                roll_back_or_retry(db, tx, e, &mut conflicts).await?;
                lock(shared).report.retries += 1;
                continue;
            }
        };
        if del.count == 0 {
            tx.rollback(db).await?;
            report_sizes(&sizer);
            return Ok(false);
        }
        let done = match record(shared, rule, &del, limit) {
            Ok(done) => done,
            Err(e) => {
                let _ = tx.rollback(db).await;
                return Err(e);
            }
        };
        if let Err(e) = tx.commit(db).await {
            let mut s = lock(shared);
            let record = rollback_event(s.ctx, rule, done.batch, &e);
            s.ctx.audit.append(record)?;
            return Err(e);
        }
        {
            let mut guard = lock(shared);
            let s = &mut *guard;
            count_batch(s.report, s.bar, done, started);
            super::batch::anonymize_converges(db, sql, s.report)?;
        }
        conflicts = 0;
        if let Some(s) = sizer.as_mut() {
            s.observe(del.count, started.elapsed());
        }
        if del.bound.is_some() {
            bound = del.bound;
        }
        if del.count < sql.batch_size as u64 {
            report_sizes(&sizer);
            return Ok(false);
        }
        super::batch::between_batches(db).await;
    }
}
