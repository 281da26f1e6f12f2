//! The engine's object side: object rules (`store = ...`) and the plan and
//! hold reports of objects named by rows.
//!
//! An object rule selects once (the cutoff is fixed at rule start), checks
//! its guards before touching anything, reports what Object Lock keeps, then
//! deletes in audited batches: each batch's record is written (fsynced)
//! before any of its objects is deleted. Deleting itself happens in
//! `objects::erase`; this file decides and reports.

use super::{JobCtx, Mode, RuleReport, RuleStatus, blank_report, fail, guard_reason, record_plan};
use crate::audit::{Event, ObjectCount, Totals};
use crate::config::{ObjectRule, Rule};
use crate::error::Error;
use crate::objects::erase::{self, Filter, Tally};
use crate::objects::{OpenStore, Stores, linked};
use crate::sql::Db;
use crate::sql::statements::{Cursor, RuleSql};
use crate::status::ActionKind;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Object counts of one rule into the run's totals.
pub(super) fn add_totals(totals: &mut Totals, r: &RuleReport, mode: Mode) {
    for c in &r.objects {
        if mode.acts() {
            totals.objects_erased += c.objects;
            totals.object_versions_erased += c.versions;
            totals.object_bytes_erased += c.bytes;
        }
        totals.objects_held += c.held;
    }
}

fn count(store: &str, via: &str, t: Tally, held: u64) -> ObjectCount {
    ObjectCount {
        store: store.to_string(),
        via: via.to_string(),
        objects: t.objects,
        versions: t.versions,
        bytes: t.bytes,
        held,
    }
}

fn reasons(it: impl IntoIterator<Item = crate::objects::HoldReason>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in it {
        *m.entry(r.as_str().to_string()).or_default() += 1;
    }
    m
}

/// `objects kept by Object Lock: 1 legal_hold, 2 governance`, for the report.
fn hold_note(reasons: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("objects kept by Object Lock: {}", parts.join(", "))
}

/// How the counting pass of an object rule ended.
enum Counted {
    /// On to the erasing pass.
    Go,
    /// A guard stopped the rule, or a plan is complete: the report is final.
    Stop,
    /// The store could not be listed: the rule fails with this.
    Failed(String),
}

/// Count the selection, audit holds and check guards (and, for a plan,
/// record it). `Err` only when the audit log fails.
async fn count_and_guard(
    ctx: &mut JobCtx<'_>,
    rule: &ObjectRule,
    open: &OpenStore,
    filter: &Filter,
    now: DateTime<Utc>,
    report: &mut RuleReport,
) -> Result<Counted, Error> {
    // The guards and `plan` must know the whole selection before anything
    // is touched: a counting pass, a page at a time (nothing is held). A run
    // without guards goes straight to the erasing pass, which counts too.
    let guarded = rule.max_rows.is_some() || rule.max_fraction.is_some();
    if guarded || !ctx.opts.mode.acts() {
        let c = match erase::count(open, &rule.prefix, filter, now).await {
            Ok(c) => c,
            Err(e) => return Ok(Counted::Failed(e.to_string())),
        };
        tracing::info!(
            total = c.total,
            selected = c.selected.objects,
            held = c.held.objects,
            select_ms = c.list_ms,
            "objects selected"
        );
        let target = &report.target.clone();
        report.total = Some(c.total);
        report.matched = c.selected.objects;
        report.held = c.held.objects;
        if !ctx.opts.mode.acts() {
            audit_object_hold(ctx, rule, target, report, &c)?;
        }
        if let Some(reason) = guard_reason(
            rule.max_rows,
            rule.max_fraction,
            report.matched,
            c.total,
            "objects",
        ) {
            if ctx.opts.mode.acts() {
                audit_object_hold(ctx, rule, target, report, &c)?;
            }
            tracing::warn!(%reason, "guard stopped the rule before it touched anything");
            ctx.audit.append(Event::Guard {
                job: ctx.job.name.clone(),
                rule: rule.name.clone(),
                policy: ctx.job.policy.clone(),
                target: target.clone(),
                matched: report.matched,
                total: c.total,
                reason: reason.clone(),
            })?;
            report.status = RuleStatus::Guard;
            report.message = Some(reason);
            report.objects = vec![count(&rule.store, target, c.selected, c.held.objects)];
            return Ok(Counted::Stop);
        }
        if !ctx.opts.mode.acts() {
            report.objects = vec![count(&rule.store, target, c.selected, c.held.objects)];
            record_plan(ctx, &rule.name, report, c.total)?;
            return Ok(Counted::Stop);
        }
    }
    Ok(Counted::Go)
}

/// Run one object rule. `Err` only when the audit log fails.
pub(super) async fn run_object_rule(
    ctx: &mut JobCtx<'_>,
    rule: &ObjectRule,
    stores: &Stores,
) -> Result<RuleReport, Error> {
    let target = rule.target();
    let mut report = blank_report(ctx.job, &rule.name, target.clone(), ActionKind::Erase);
    let open = match stores.get(&rule.store).await {
        Ok(s) => s,
        Err(e) => return fail(ctx, report, e),
    };
    let filter = Filter {
        cutoff: rule.older_than.map(|p| p.before(ctx.opts.as_of)),
        tags: rule.tags.clone(),
    };
    let now = Utc::now();
    match count_and_guard(ctx, rule, &open, &filter, now, &mut report).await? {
        Counted::Go => {}
        Counted::Stop => return Ok(report),
        Counted::Failed(e) => return fail(ctx, report, e),
    }
    let started = std::time::Instant::now();
    let retries_before = open.store.retries();
    let (res, started_tally) = erase_recorded(ctx, rule, &open, &filter, now).await;
    report.longest_batch_ms = started.elapsed().as_millis() as u64;
    let (done, seen) = match res {
        Ok(d) => d,
        Err(Error::Audit(a)) => return Err(Error::Audit(a)),
        Err(e) => return fail(ctx, report, e.to_string()),
    };
    report_seen(&mut report, &seen);
    audit_object_hold(ctx, rule, &target, &mut report, &seen)?;
    let held = seen.held;
    report.batches = done.batches;
    // Retries are counted and reported, never hidden: the SDK's (5xx,
    // SlowDown, resets, timeouts) and Lethe's own per-key re-sends.
    report.retries += open.store.retries().saturating_sub(retries_before) + done.retried_keys;
    let failed_objects = done.failed_keys.len() as u64;
    let erased = Tally {
        objects: started_tally.objects - failed_objects,
        versions: done.versions,
        bytes: started_tally.bytes.saturating_sub(done.failed_bytes),
    };
    report.done = erased.objects;
    report.objects = vec![count(&rule.store, &target, erased, held.objects)];
    if done.stopped {
        report.status = RuleStatus::Interrupted;
    }
    if done.failures() > 0 {
        record_failures(ctx, rule, &mut report, &done)?;
    }
    tracing::info!(
        objects = erased.objects,
        versions = erased.versions,
        requests = done.requests,
        delete_ms = report.longest_batch_ms,
        "objects erased"
    );
    Ok(report)
}

/// The erasing pass, each batch recorded before its first delete; with it
/// the tally of the batches it started.
async fn erase_recorded(
    ctx: &mut JobCtx<'_>,
    rule: &ObjectRule,
    open: &OpenStore,
    filter: &Filter,
    now: DateTime<Utc>,
) -> (Result<(erase::Deleted, erase::Counted), Error>, Tally) {
    let target = rule.target();
    let (job, policy, keys, cancel) = (
        ctx.job.name.clone(),
        ctx.job.policy.clone(),
        ctx.keys,
        ctx.opts.cancel.clone(),
    );
    let audit = &mut *ctx.audit;
    let mut started_tally = Tally::default();
    let res = erase::erase_streamed(
        open,
        &rule.prefix,
        filter,
        now,
        rule.batch_size,
        |n, batch| {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let t = Tally::of(batch);
            let names: Vec<String> = batch.iter().map(|o| o.key.clone()).collect();
            // Recorded before the first delete of the batch: a crash leaves a
            // record of a batch the next run does again, never an unrecorded one.
            audit.append(Event::ObjectBatch {
                job: job.clone(),
                rule: rule.name.clone(),
                policy: policy.clone(),
                target: target.clone(),
                batch: n,
                objects: count(&rule.store, &target, t, 0),
                keys_digest: keys.digest(&names),
            })?;
            started_tally.objects += t.objects;
            started_tally.versions += t.versions;
            started_tally.bytes += t.bytes;
            Ok(true)
        },
    )
    .await;
    (res, started_tally)
}

/// What the erasing pass saw is what the report and the audit say.
fn report_seen(report: &mut RuleReport, seen: &erase::Counted) {
    report.total = Some(seen.total);
    report.matched = seen.selected.objects;
    report.held = seen.held.objects;
    tracing::info!(
        total = seen.total,
        selected = seen.selected.objects,
        held = seen.held.objects,
        select_ms = seen.list_ms,
        "objects selected"
    );
}

/// Audit the object versions the store refused to delete, and fail the rule.
fn record_failures(
    ctx: &mut JobCtx<'_>,
    rule: &ObjectRule,
    report: &mut RuleReport,
    done: &erase::Deleted,
) -> Result<(), Error> {
    ctx.audit.append(Event::ObjectErrors {
        job: ctx.job.name.clone(),
        rule: rule.name.clone(),
        store: rule.store.clone(),
        failed: done.failed.clone(),
    })?;
    let msg = format!(
        "store `{}`: {} object versions were not deleted: {}",
        rule.store,
        done.failures(),
        done.describe_failures()
    );
    tracing::error!(error = %msg, "rule failed");
    report.status = RuleStatus::Failed;
    report.message = Some(msg);
    Ok(())
}

/// Report and audit the objects Object Lock kept (nothing when none was).
fn audit_object_hold(
    ctx: &mut JobCtx<'_>,
    rule: &ObjectRule,
    target: &str,
    report: &mut RuleReport,
    c: &erase::Counted,
) -> Result<(), Error> {
    if c.held.objects == 0 {
        return Ok(());
    }
    tracing::info!(held = c.held.objects, "objects kept by Object Lock");
    let why = reasons(
        c.reasons
            .iter()
            .flat_map(|(r, n)| std::iter::repeat_n(*r, *n as usize)),
    );
    report.message = Some(hold_note(&why));
    ctx.audit
        .append(Event::ObjectHold {
            job: ctx.job.name.clone(),
            rule: rule.name.clone(),
            policy: ctx.job.policy.clone(),
            target: target.to_string(),
            objects: count(&rule.store, target, c.held, c.held.objects),
            reasons: why,
            rows: 0,
            subjects: vec![],
        })
        .map(|_| ())
}

/// Audit the objects of a batch that Object Lock keeps after their rows go:
/// counts per reason, and a keyed digest of their keys (never a key name).
pub(super) fn audit_linked_hold(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    report: &mut RuleReport,
    r: &linked::Resolved,
) -> Result<(), Error> {
    let stores: BTreeSet<&str> = r.counts.iter().map(|c| c.store.as_str()).collect();
    tracing::info!(
        objects = r.held.objects,
        "objects kept by Object Lock: listed as pending, the rows go"
    );
    ctx.audit.append(Event::ObjectHold {
        job: ctx.job.name.clone(),
        rule: rule.name.clone(),
        policy: ctx.job.policy.clone(),
        target: report.target.clone(),
        objects: count(
            &stores.into_iter().collect::<Vec<_>>().join(","),
            "rows",
            r.held,
            r.held.objects,
        ),
        reasons: r
            .reasons
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
        rows: 0,
        subjects: vec![],
    })?;
    let held_only: Vec<ObjectCount> = r
        .counts
        .iter()
        .map(|c| ObjectCount {
            objects: 0,
            versions: 0,
            bytes: 0,
            ..c.clone()
        })
        .collect();
    linked::add_counts(&mut report.objects, &held_only);
    Ok(())
}

/// Plan: what the eligible rows name, walked batch by batch like a run.
pub(super) async fn plan_linked(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    stores: &Stores,
    report: &mut RuleReport,
) -> Result<(), Error> {
    let d = db.dialect();
    let mut cursor: Option<Cursor> = None;
    loop {
        let rows = sql.parse_batch(
            db.fetch(&sql.select_batch(d, cursor.as_ref(), false))
                .await?,
        );
        let Some(last) = rows.last() else { break };
        cursor = Some(Cursor {
            order: last.order.clone(),
            key: last.key.clone(),
        });
        let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        let crows = linked::child_rows(db, sql, &keys).await?;
        let r = linked::resolve(stores, sql, &rows, &crows, Utc::now()).await?;
        if !r.pending.is_empty() {
            audit_linked_hold(ctx, rule, report, &r)?;
        }
        linked::add_erased(&mut report.objects, &r.counts);
        if rows.len() < sql.batch_size {
            break;
        }
    }
    Ok(())
}
