//! One rule, start to end: its source and statements, counts and guards,
//! then either the plan (what it would do, recorded) or the batch loop
//! (`batch::execute`), and the space reclaimed after it. A rule that fails
//! is a failed report, never a stopped run (only the audit log stops one).

use super::batch::{RuleRun, execute};
use super::report::blank_report;
use super::{
    HELD_SUBJECTS_MAX, JobCtx, RuleReport, RuleStatus, Shard, object_rules, partitions,
    prepare_rule,
};
use crate::audit::Event;
use crate::config::{Partitions, Rule};
use crate::error::Error;
use crate::objects::{Stores, linked};
use crate::plan::counts::{count_children, unindexed_children};
use crate::plan::guards::guard_reason;
use crate::plan::{Sources, walk_report};
use crate::sql::Db;
use crate::sql::statements::RuleSql;
use crate::status::ActionKind;
use std::collections::BTreeSet;
use tracing::Instrument;

/// Run one rule. `Err` only when the audit log fails (the run must stop);
/// every other problem becomes a failed rule. `subject`: a request job's
/// rule acts on that subject's rows only.
pub(super) async fn run_rule(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    sources: &mut Sources<'_>,
    subject: Option<&str>,
) -> Result<RuleReport, Error> {
    let span = tracing::info_span!("rule", job = %ctx.job.name, rule = %rule.name);
    run_rule_traced(ctx, rule, sources, subject)
        .instrument(span)
        .await
}

pub(super) async fn run_rule_traced(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    sources: &mut Sources<'_>,
    subject: Option<&str>,
) -> Result<RuleReport, Error> {
    let mut report = blank_report(
        ctx.job,
        &rule.name,
        rule.target.to_string(),
        ActionKind::from(&rule.action),
    );
    let stores = sources.stores.clone();
    let db = match sources.get(&rule.target.source).await {
        Ok(db) => db,
        Err(e) => return fail(ctx, report, e),
    };
    let mut sql = match prepare_rule(db, rule, ctx.opts.as_of).await {
        Ok(s) => s,
        Err(problems) => return fail(ctx, report, problems.join("; ")),
    };
    report.walk = Some(walk_report(&sql));
    tracing::debug!(walk = sql.walk.name(), why = %sql.walk_why, "batch walk chosen");
    if let Some(s) = subject {
        sql.subjects = Some(vec![s.to_string()]);
    }
    if let Some(Shard { index, count }) = ctx.opts.shard
        && let Err(e) = sql.set_shard(db.dialect(), index, count)
    {
        return fail(ctx, report, e);
    }
    // Every store the rows name must answer before anything is touched.
    for name in linked::stores_of(&sql) {
        if let Err(e) = stores.get(&name).await {
            return fail(ctx, report, e);
        }
    }
    match count_and_guard(ctx, db, rule, &sql, &stores, &mut report).await {
        Ok(true) => {}
        Ok(false) => return Ok(report),
        Err(Error::Audit(a)) => return Err(Error::Audit(a)),
        Err(e) => return fail(ctx, report, e.to_string()),
    }
    // Dry run is the plan: the same preparation, counts and guards, and
    // the batch path never reached.
    if !ctx.opts.mode.acts() {
        return plan_rule(ctx, db, rule, &sql, report).await;
    }
    if report.matched == 0 {
        return Ok(report);
    }
    execute_rule(ctx, db, rule, &sql, &stores, report).await
}

/// The plan of a counted, guarded rule: the partitions it would drop, the
/// dead space its tables hold, and the `plan` record.
pub(super) async fn plan_rule(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    mut report: RuleReport,
) -> Result<RuleReport, Error> {
    if rule.partitions == Partitions::Drop && ctx.opts.shard.is_none() {
        match partitions::whole_partitions(db, sql).await {
            Ok(whole) => {
                report.partitions = whole
                    .iter()
                    .filter(|w| w.rows > 0)
                    .map(|w| match w.held {
                        0 => w.report("would_drop", None),
                        n => w.report("batched", Some(format!("{n} rows of held subjects"))),
                    })
                    .collect()
            }
            Err(e) => return fail(ctx, report, e.to_string()),
        }
    }
    if db.after_purge {
        match crate::sql::purge::estimate(db, &sql.touched_tables()).await {
            Ok(ds) => report.dead_space = Some(ds),
            Err(e) => tracing::warn!(error = %e, "dead space could not be estimated"),
        }
    }
    let total = report.total.unwrap_or_default();
    record_plan(ctx, &rule.name, &mut report, total)?;
    Ok(report)
}

/// Execute a counted, guarded rule that matched rows: the batch loop under
/// a progress bar, then `after_purge`.
pub(super) async fn execute_rule(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    stores: &Stores,
    mut report: RuleReport,
) -> Result<RuleReport, Error> {
    let mut bar = ctx
        .opts
        .progress
        .as_ref()
        .map(|p| p.start(&ctx.job.name, &rule.name, report.matched));
    let mut run = RuleRun {
        ctx,
        db,
        rule,
        sql,
        stores,
        report: &mut report,
        bar: &mut bar,
    };
    let outcome = execute(&mut run).await;
    if let Some(b) = bar.as_mut() {
        b.finish();
    }
    // `after_purge`: what the deletes left on disk, reclaimed where the
    // engine can do it online. A failure here is reported, never a failed
    // rule: the rows are gone either way.
    if db.after_purge && report.done > 0 && outcome.is_ok() {
        report.dead_space = Some(reclaim(db, sql).await);
    }
    match outcome {
        Ok(()) => Ok(report),
        Err(Error::Audit(a)) => Err(Error::Audit(a)),
        Err(e) => fail(ctx, report, e.to_string()),
    }
}

/// Reclaim the dead space an executed rule's deletes left, or say why not.
pub(super) async fn reclaim(db: &Db, sql: &RuleSql) -> crate::sql::purge::DeadSpace {
    let tables = sql.touched_tables();
    match crate::sql::purge::reclaim(db, &tables).await {
        Ok(ds) => {
            tracing::info!(state = %ds.state, bytes = ds.bytes, "after_purge");
            ds
        }
        Err(e) => {
            tracing::warn!(error = %e, "after_purge failed");
            crate::sql::purge::DeadSpace {
                tables: tables.iter().map(|t| t.info.table.to_string()).collect(),
                dead_rows: None,
                bytes: 0,
                state: "failed".into(),
                note: e.to_string(),
            }
        }
    }
}

/// A dry run's answer for one rule (SQL and object rules): pending when it
/// would act on something, else done, recorded as a `plan` event.
pub(super) fn record_plan(
    ctx: &mut JobCtx<'_>,
    rule: &str,
    report: &mut RuleReport,
    total: u64,
) -> Result<(), Error> {
    report.status = if report.matched > 0 {
        RuleStatus::Pending
    } else {
        RuleStatus::Done
    };
    ctx.audit.append(Event::Plan {
        job: ctx.job.name.clone(),
        rule: rule.to_string(),
        policy: ctx.job.policy.clone(),
        target: report.target.clone(),
        action: report.action.into(),
        matched: report.matched,
        held: report.held,
        total,
        children: report.children.clone(),
        objects: report.objects.clone(),
    })?;
    Ok(())
}

/// Record a failed rule (object rules too); the report names the rule and target.
pub(super) fn fail(
    ctx: &mut JobCtx<'_>,
    mut report: RuleReport,
    error: String,
) -> Result<RuleReport, Error> {
    tracing::error!(target_name = %report.target, error = %error, "rule failed");
    ctx.audit.append(Event::Failure {
        job: ctx.job.name.clone(),
        rule: Some(report.rule.clone()),
        policy: ctx.job.policy.clone(),
        target: Some(report.target.clone()),
        error: error.clone(),
    })?;
    report.status = RuleStatus::Failed;
    report.message = Some(error);
    Ok(report)
}

/// Count, audit holds and check guards. `Ok(false)`: a guard stopped the rule.
pub(super) async fn count_and_guard(
    ctx: &mut JobCtx<'_>,
    db: &Db,
    rule: &Rule,
    sql: &RuleSql,
    stores: &Stores,
    report: &mut RuleReport,
) -> Result<bool, Error> {
    let d = db.dialect();
    // Independent reads, on connections of their own: the table-wide COUNT
    // is the slowest and need not wait for the others.
    let held = async {
        match sql.hold.is_some() {
            true => db.count(&sql.count_held(d)).await,
            false => Ok(0),
        }
    };
    let need_total = !ctx.opts.mode.acts() || rule.max_fraction.is_some();
    let total = async {
        match need_total {
            true => db.count(&sql.count_total(d)).await.map(Some),
            false => Ok(None),
        }
    };
    let eligible = sql.count_eligible(d);
    (report.total, report.matched, report.held) =
        tokio::try_join!(total, db.count(&eligible), held)?;
    if !ctx.opts.mode.acts() {
        report.children = count_children(db, sql).await?;
        report.notes = unindexed_children(db, sql, report.matched).await?;
        if sql.subject.is_some() {
            let stmt = sql.select_batch(d, None, false);
            let rows = sql.parse_batch(db.fetch(&stmt).await?);
            let mut seen = BTreeSet::new();
            for r in rows.iter().filter_map(|r| r.subject.as_deref()) {
                if seen.len() >= 5 {
                    break;
                }
                seen.insert(ctx.keys.subject(r));
            }
            report.sample_subjects = seen.into_iter().collect();
        }
    }
    if report.held > 0 {
        let subjects = match sql.held_subjects(d, HELD_SUBJECTS_MAX + 1) {
            Some(stmt) => db.fetch(&stmt).await?,
            None => vec![],
        };
        let truncated = subjects.len() > HELD_SUBJECTS_MAX;
        let hashed: BTreeSet<String> = subjects
            .iter()
            .take(HELD_SUBJECTS_MAX)
            .filter_map(|r| r[0].as_deref().map(|s| ctx.keys.subject(s)))
            .collect();
        tracing::info!(held = report.held, "rows skipped for legal hold");
        ctx.audit.append(Event::Hold {
            job: ctx.job.name.clone(),
            rule: rule.name.clone(),
            policy: ctx.job.policy.clone(),
            target: report.target.clone(),
            count: report.held,
            subjects: hashed.into_iter().collect(),
            subjects_truncated: truncated,
        })?;
    }
    let reason = guard_reason(
        rule.max_rows,
        rule.max_fraction,
        report.matched,
        report.total.unwrap_or_default(),
        "rows",
    );
    if let Some(reason) = reason {
        tracing::warn!(%reason, "guard stopped the rule before it touched anything");
        if report.total.is_none() {
            // A `max_rows` trip: the record states the table's size too.
            report.total = Some(db.count(&sql.count_total(d)).await?);
        }
        ctx.audit.append(Event::Guard {
            job: ctx.job.name.clone(),
            rule: rule.name.clone(),
            policy: ctx.job.policy.clone(),
            target: report.target.clone(),
            matched: report.matched,
            total: report.total.unwrap_or_default(),
            reason: reason.clone(),
        })?;
        report.status = RuleStatus::Guard;
        report.message = Some(reason);
        return Ok(false);
    }
    // After the guards, which must judge a plan as they judge a run.
    if !ctx.opts.mode.acts() && linked::has_objects(sql) {
        object_rules::plan_linked(ctx, db, rule, sql, stores, report).await?;
    }
    Ok(true)
}
