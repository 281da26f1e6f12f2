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
use super::throttle::{self, Throttle};
use super::{
    JobCtx, RuleProgress, RuleReport, RuleStatus, object_rules, partitions, sizing, windows,
};
use crate::anonymize::hash::rehash;
use crate::audit::{ChildCount, Event};
use crate::config::{Partitions, Rule};
use crate::error::Error;
use crate::keys::Keys;
use crate::objects::{Stores, linked};
use crate::plan::sources::Outage;
use crate::sql::anonymize::hash_source;
use crate::sql::statements::{BatchRow, Cursor, Deleted, RuleSql, act_chunk};
use crate::sql::{Db, Tx};
use crate::state::State;
use chrono::Utc;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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

/// Run one one-statement batch (`RuleSql::one_statement`: a delete, or on
/// PostgreSQL an anonymize) inside `tx` and say what it did. `bound` is the
/// previous batch's `Deleted::bound` (or where the caller's window starts);
/// `below` ends the window. `keys` gives the pseudonym key of `hash`.
pub async fn act_next_batch(
    tx: &mut Tx,
    db: &Db,
    keys: &Keys,
    sql: &RuleSql,
    part: Option<&str>,
    bound: Option<&str>,
    below: Option<&str>,
) -> Result<Deleted, Error> {
    let d = db.dialect();
    let unreadable = |e: &str| unreadable(db, e);
    if sql.fast_anonymize(d) {
        let stmt = sql.anonymize_batch(d, &keys.pseudonym_pads(), bound, below);
        let rows = tx.fetch(db, &stmt).await?;
        return sql.parse_deleted(d, rows).map_err(|e| unreadable(&e));
    }
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
    /// Rows selected (and locked, and acted on) by the general path, with
    /// the objects they name and the children acted on with them.
    Rows {
        rows: Vec<BatchRow>,
        resolved: Option<linked::Resolved>,
        children: Vec<ChildCount>,
    },
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

/// One executed rule on its way through the batch loop: what the loop and
/// the commit protocol would otherwise pass around as long argument lists.
pub(crate) struct RuleRun<'c, 'j> {
    pub(crate) ctx: &'c mut JobCtx<'j>,
    pub(crate) db: &'c Db,
    pub(crate) rule: &'c Rule,
    /// The rule's prepared statements, as planned.
    pub(crate) sql: &'c RuleSql,
    pub(crate) stores: &'c Stores,
    pub(crate) report: &'c mut RuleReport,
    pub(crate) bar: &'c mut Option<Box<dyn RuleProgress>>,
}

/// Where the batch loops pause between two batches (the source's `pause`).
pub(crate) async fn between_batches(db: &Db) {
    if !db.pause.is_zero() {
        tokio::time::sleep(db.pause).await;
    }
}

/// The source's `pause_when`, connected (its replica, if it names one);
/// `None` when the source has none.
pub(crate) async fn throttle_of(db: &Db) -> Result<Option<Throttle<'_>>, Error> {
    match db.pause_when.clone() {
        Some(p) => Throttle::connect(p, db)
            .await
            .map(Some)
            .map_err(throttle_error),
        None => Ok(None),
    }
}

/// Before a batch begins: wait while the database is over a `pause_when`
/// threshold; returns what was waited, per reason (add it to the rule's
/// report with [`RuleReport::add_throttled`]). Returns early when the run
/// is cancelled (the loop's own check then stops it).
pub(crate) async fn wait_for_health(
    throttle: Option<&mut Throttle<'_>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<throttle::Waited, Error> {
    match throttle {
        Some(t) => t.wait(cancel).await.map_err(throttle_error),
        None => Ok(throttle::Waited::default()),
    }
}

/// A status query's own failure stays what it was (a lost connection is
/// retried like any other); a pause beyond `max_wait` fails the rule.
fn throttle_error(e: throttle::Error) -> Error {
    match e {
        throttle::Error::Db(e) => e,
        other => Error::Throttle(other.to_string()),
    }
}

/// Record a batch, erase its objects, commit, and count it.
///
/// The record is written (fsynced) before the commit: a crash between the
/// two leaves a record of a batch that the next run will do (and record)
/// again, never an unrecorded deletion. Objects go before the rows commit:
/// if erasing fails, the rows stay and still name every object that is left.
async fn commit_batch(
    run: &mut RuleRun<'_, '_>,
    tx: Tx,
    done: BatchDone<'_>,
    started: Instant,
) -> Result<(), Error> {
    let (ctx, db, rule) = (&mut *run.ctx, run.db, run.rule);
    let record = batch_event(ctx, rule, run.report, &done);
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
    count_batch(run.report, run.bar, done, started);
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
        action: report.action.into(),
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

/// The batch loop of an executed rule: wholly due partitions first (when
/// the rule drops them), then windows side by side (when it has workers),
/// else one batch at a time through each part of the table.
pub(crate) async fn execute(run: &mut RuleRun<'_, '_>) -> Result<(), Error> {
    let (db, rule, sql) = (run.db, run.rule, run.sql);
    let d = db.dialect();
    let fast = sql.one_statement(d);
    // Wholly due partitions first, dropped whole; the loop below batches
    // what is left (the partitions that straddle the cutoff, or hold a held
    // subject). Not under `--shard`: a partition is not one shard's share.
    let dropped = if rule.partitions == Partitions::Drop && run.ctx.opts.shard.is_none() {
        partitions::drop_whole(run).await?
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
        return windows::execute(run, workers).await;
    }
    let mut walk = Walk {
        // Numbered after the partitions dropped whole, if any.
        batch_no: run.report.batches,
        throttle: throttle_of(db).await?,
        conflicts: 0,
        sizer: rule
            .batch_time
            .map(|t| sizing::BatchSizer::new(sql.batch_size, t, rule.batch_size_max)),
        sized: sql.clone(),
        outage: Outage::default(),
        fast,
    };
    // One-statement deletes walk each physical table in turn (a ctid is
    // unique only within one); every other path has a single part. The heap
    // walk is of one table by page.
    let finished = if sql.walk == crate::config::Walk::Heap {
        walk.heap(run).await?
    } else {
        let mut finished = true;
        for part in &parts {
            if !walk.part(run, part.as_deref()).await? {
                finished = false;
                break;
            }
        }
        finished
    };
    run.report.batch_sizes = walk.sizer.map(|s| s.stats());
    run.report.status = if finished {
        RuleStatus::Done
    } else {
        tracing::warn!("interrupted at a batch boundary");
        RuleStatus::Interrupted
    };
    Ok(())
}

/// The batch loop's state from one batch to the next (and one part to the next).
struct Walk<'t> {
    batch_no: u64,
    /// The source's `pause_when`: waited on before every batch.
    throttle: Option<Throttle<'t>>,
    /// Conflicts in a row on the current batch; reset by every commit.
    conflicts: u32,
    /// Batches sized by time: the controller picks each batch's size.
    sizer: Option<sizing::BatchSizer>,
    /// The rule's statements with the size of the next batch.
    sized: RuleSql,
    /// A lost connection, retried within the source's `reconnect_for`.
    outage: Outage,
    /// One-statement batches (`RuleSql::one_statement`).
    fast: bool,
}

/// A batch begun: its transaction, the size it was given, when it began.
struct Begun {
    tx: Tx,
    limit: Option<u64>,
    started: Instant,
}

/// Where the walk of one part stands between batches.
#[derive(Default)]
struct Position {
    /// The keyed loop: the last row of the previous batch.
    cursor: Option<Cursor>,
    /// A one-statement delete: the previous batch's `Deleted::bound`.
    bound: Option<String>,
}

impl Walk<'_> {
    /// At a batch boundary: wait while `pause_when` says so, then size the
    /// batch. `None` when the run was cancelled; else the size the sizer
    /// chose, if it chooses.
    async fn before_batch(
        &mut self,
        run: &mut RuleRun<'_, '_>,
    ) -> Result<Option<Option<u64>>, Error> {
        let waited = wait_for_health(self.throttle.as_mut(), &run.ctx.opts.cancel).await?;
        run.report.add_throttled(waited);
        if run.ctx.opts.cancel.is_cancelled() {
            return Ok(None);
        }
        if let Some(s) = &self.sizer {
            self.sized.batch_size = s.size();
        }
        Ok(Some(self.sizer.as_ref().map(|s| s.size() as u64)))
    }

    /// The batch's transaction; `None` after waiting out a lost connection
    /// (within `reconnect_for`), when the batch is to be tried again.
    async fn begin(&mut self, db: &Db) -> Result<Option<Tx>, Error> {
        match db.begin().await {
            Ok(tx) => Ok(Some(tx)),
            Err(e) => {
                self.outage.wait(&db.name, db.reconnect_for, e).await?;
                Ok(None)
            }
        }
    }

    /// The first half of a batch failed, before anything of it was recorded
    /// or committed: roll back, then wait out a lost connection or back off
    /// from a conflict. `Ok` means the batch is to be tried again.
    async fn retry_after(
        &mut self,
        run: &mut RuleRun<'_, '_>,
        tx: Tx,
        e: Error,
    ) -> Result<(), Error> {
        let db = run.db;
        match e {
            e @ Error::Connection { .. } => {
                let _ = tx.rollback(db).await;
                self.outage.wait(&db.name, db.reconnect_for, e).await?;
            }
            e => roll_back_or_retry(db, tx, e, &mut self.conflicts).await?,
        }
        run.report.retries += 1;
        Ok(())
    }

    /// Batch one part of the table until nothing is left; `false` when the
    /// run was cancelled at a batch boundary.
    async fn part(&mut self, run: &mut RuleRun<'_, '_>, part: Option<&str>) -> Result<bool, Error> {
        let db = run.db;
        let mut pos = Position::default();
        loop {
            let Some(limit) = self.before_batch(run).await? else {
                return Ok(false);
            };
            let started = Instant::now();
            let Some(mut tx) = self.begin(db).await? else {
                continue;
            };
            let outcome = match self.fast {
                true => {
                    let keys = run.ctx.keys;
                    let bound = pos.bound.as_deref();
                    act_next_batch(&mut tx, db, keys, &self.sized, part, bound, None)
                        .await
                        .map(Fetched::Deleted)
                }
                false => fetch_and_act(&mut tx, run, &self.sized, pos.cursor.as_ref()).await,
            };
            let fetched = match outcome {
                Ok(r) => r,
                Err(e) => {
                    self.retry_after(run, tx, e).await?;
                    continue;
                }
            };
            let begun = Begun { tx, limit, started };
            let more = match fetched {
                Fetched::Deleted(del) => self.commit_deleted(run, begun, del, &mut pos).await?,
                Fetched::Rows {
                    rows,
                    resolved,
                    children,
                } => {
                    let acted = (rows, resolved, children);
                    self.commit_rows(run, begun, acted, &mut pos).await?
                }
            };
            if !more {
                return Ok(true);
            }
            between_batches(db).await;
        }
    }

    /// The heap walk ([`crate::config::Walk::Heap`]): a window of pages that
    /// slides forward, each batch the first `batch_size` due rows by `ctid`
    /// between where the last batch ended and the window's end. The window
    /// is sized from the due rows per page seen so far (at most twice the
    /// pages of the last), so a batch is usually full or nearly so; a full
    /// one is followed by one that starts after its last row. The walk ends
    /// with the last page the table had when the rule started: rows written
    /// later go to new pages and are young, and a due row that an `UPDATE`
    /// moves behind the walk during the run is left for the next run.
    /// `false` when the run was cancelled at a batch boundary.
    async fn heap(&mut self, run: &mut RuleRun<'_, '_>) -> Result<bool, Error> {
        let db = run.db;
        // Unreadable is an error, never "no pages": that would end the walk
        // with every due row left and the rule reported done.
        let end: u64 = db
            .fetch(&self.sized.heap_pages())
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                let what = format!("cannot read the size of {} in pages", self.sized.display);
                unreadable(db, &what)
            })?;
        let span_for = |rows: usize, per_page: f64| -> u64 {
            ((rows as f64 / per_page.max(1e-6)).ceil() as u64).clamp(1, end.max(1))
        };
        // Due rows per page: first from the count, then as met.
        let mut per_page = run.report.matched.max(1) as f64 / end.max(1) as f64;
        let mut span = span_for(self.sized.batch_size, per_page);
        let mut from = 0u64;
        let mut after = "(0,0)".to_string();
        loop {
            let Some(limit) = self.before_batch(run).await? else {
                return Ok(false);
            };
            let below = (from + span).min(end);
            let started = Instant::now();
            let Some(mut tx) = self.begin(db).await? else {
                continue;
            };
            let stmt = self.sized.delete_heap_batch(db.dialect(), &after, below);
            let outcome = match tx.fetch(db, &stmt).await {
                Ok(rows) => self
                    .sized
                    .parse_deleted(db.dialect(), rows)
                    .map_err(|e| unreadable(db, &e)),
                Err(e) => Err(e),
            };
            let del = match outcome {
                Ok(del) => del,
                Err(e) => {
                    self.retry_after(run, tx, e).await?;
                    continue;
                }
            };
            let count = del.count;
            let last = del
                .bound
                .as_deref()
                .and_then(tid_page)
                .zip(del.bound.clone());
            let begun = Begun { tx, limit, started };
            let full = self
                .commit_deleted(run, begun, del, &mut Position::default())
                .await?;
            let scanned = match (full, last) {
                (true, Some((page, tid))) => {
                    let scanned = page.saturating_sub(from) + 1;
                    (from, after) = (page, tid);
                    scanned
                }
                _ if below >= end => return Ok(true),
                _ => {
                    let scanned = below - from;
                    (from, after) = (below, format!("({below},0)"));
                    scanned
                }
            };
            per_page = (per_page + count as f64 / scanned.max(1) as f64) / 2.0;
            span = span_for(self.sized.batch_size, per_page).min(span * 2);
            between_batches(db).await;
        }
    }

    /// Record and commit a one-statement batch; `false` when it was the
    /// last of its part (nothing deleted, or fewer rows than asked for).
    async fn commit_deleted(
        &mut self,
        run: &mut RuleRun<'_, '_>,
        begun: Begun,
        del: Deleted,
        pos: &mut Position,
    ) -> Result<bool, Error> {
        if del.count == 0 {
            begun.tx.rollback(run.db).await?;
            return Ok(false);
        }
        self.batch_no += 1;
        let keys = run.ctx.keys;
        let done = BatchDone {
            batch: self.batch_no,
            count: del.count,
            children: vec![],
            keys_digest: keys.digest_of(&del.keys_sha256),
            subjects: del.subjects.iter().map(|s| keys.subject(s)).collect(),
            resolved: None,
            limit: begun.limit,
            partition: None,
        };
        commit_batch(run, begun.tx, done, begun.started).await?;
        self.committed(del.count, begun.started);
        anonymize_converges(run.db, &self.sized, run.report)?;
        pos.bound = del.bound;
        Ok(del.count >= self.sized.batch_size as u64)
    }

    /// Record and commit a batch of the keyed loop; `false` when it was the
    /// last (no rows, or fewer than asked for).
    async fn commit_rows(
        &mut self,
        run: &mut RuleRun<'_, '_>,
        begun: Begun,
        (rows, resolved, children): (Vec<BatchRow>, Option<linked::Resolved>, Vec<ChildCount>),
        pos: &mut Position,
    ) -> Result<bool, Error> {
        let Some(last) = rows.last() else {
            begun.tx.rollback(run.db).await?;
            return Ok(false);
        };
        if let Some(r) = &resolved
            && !r.pending.is_empty()
        {
            object_rules::audit_linked_hold(run.ctx, run.rule, run.report, r)?;
        }
        let next = Cursor {
            order: last.order.clone(),
            key: last.key.clone(),
        };
        self.batch_no += 1;
        let keys = run.ctx.keys;
        let keys_list: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        let subjects: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.subject.as_deref().map(|s| keys.subject(s)))
            .collect();
        let done = BatchDone {
            batch: self.batch_no,
            count: rows.len() as u64,
            children,
            keys_digest: keys.digest(&keys_list),
            subjects,
            resolved: resolved.as_ref(),
            limit: begun.limit,
            partition: None,
        };
        commit_batch(run, begun.tx, done, begun.started).await?;
        self.committed(rows.len() as u64, begun.started);
        pos.cursor = Some(next);
        Ok(rows.len() >= self.sized.batch_size)
    }

    /// A batch committed: the conflict and outage counts start again, and
    /// the sizer learns how long it took.
    fn committed(&mut self, rows: u64, started: Instant) {
        self.conflicts = 0;
        if let Some(s) = self.sizer.as_mut() {
            s.observe(rows, started.elapsed());
        }
        self.outage = Outage::default();
    }
}

/// A one-statement anonymize ends when no row matches the rule any more;
/// it relies on every row it writes ceasing to match (`needs`). Should the
/// written values not stick (a trigger that writes them back, say), the
/// walk would go on forever: stop the rule once it has done far more rows
/// than were due when it started.
pub(crate) fn anonymize_converges(
    db: &Db,
    sql: &RuleSql,
    report: &RuleReport,
) -> Result<(), Error> {
    let limit = report
        .matched
        .saturating_mul(2)
        .saturating_add(2 * sql.batch_size as u64);
    if sql.fast_anonymize(db.dialect()) && report.done > limit {
        return Err(unreadable(
            db,
            &format!(
                "{} rows anonymized but {} were due: the values written do not stop matching the rule (does a trigger or a default write them back?); stopped",
                report.done, report.matched
            ),
        ));
    }
    Ok(())
}

/// An answer from `db` that Lethe cannot read (a batch summary, a size).
fn unreadable(db: &Db, message: &str) -> Error {
    Error::Database {
        source_name: db.name.clone(),
        message: message.to_string(),
        kind: crate::error::DbErrorKind::Other,
    }
}

/// The page of a `ctid` as PostgreSQL prints it, `(page,offset)`.
fn tid_page(tid: &str) -> Option<u64> {
    tid.strip_prefix('(')?.split(',').next()?.parse().ok()
}

/// The first half of a keyed batch, inside its transaction: select (and
/// lock) the next rows after `cursor`, resolve the objects they name, act
/// on their children (grandchildren first), then on the rows themselves.
async fn fetch_and_act(
    tx: &mut Tx,
    // `&mut`: the run holds a progress bar, which is `Send` but not `Sync`.
    run: &mut RuleRun<'_, '_>,
    sql: &RuleSql,
    cursor: Option<&Cursor>,
) -> Result<Fetched, Error> {
    let (db, keys) = (run.db, run.ctx.keys);
    let d = db.dialect();
    let rows = sql.parse_batch(tx.fetch(db, &sql.select_batch(d, cursor, true)).await?);
    let mut children = Vec::new();
    if rows.is_empty() {
        return Ok(Fetched::Rows {
            rows,
            resolved: None,
            children,
        });
    }
    // Objects the rows name, resolved before anything is acted on:
    // what Object Lock holds becomes pending, the rest goes.
    let keys_list: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let resolved = if linked::has_objects(sql) {
        let crows = linked::child_rows_tx(tx, db, sql, &keys_list).await?;
        Some(linked::resolve(run.stores, sql, &rows, &crows, Utc::now()).await?)
    } else {
        None
    };
    for child in &sql.children {
        process_child(tx, db, keys, child, &sql.key, &keys_list, &mut children).await?;
    }
    // One statement per batch (per chunk under the bind limits),
    // every column at once; `hash` computed by the server where
    // it can, else bound per key.
    let hashed = sql.action.hash_columns();
    let pads = keys.pseudonym_pads();
    for part in rows.chunks(act_chunk(d, hashed.len())) {
        let ks: Vec<String> = part.iter().map(|r| r.key.clone()).collect();
        let values = if hashed.is_empty() || d.hashes_in_sql() {
            vec![]
        } else {
            part.iter()
                .filter_map(|r| Some((r.key.clone(), rehash(keys, &r.hashed)?)))
                .collect()
        };
        let hashes = hash_source(d, hashed.len(), &pads, &values);
        tx.execute(db, &sql.act_by_keys(d, &ks, hashes)).await?;
    }
    Ok(Fetched::Rows {
        rows,
        resolved,
        children,
    })
}
