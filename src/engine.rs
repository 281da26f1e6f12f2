//! The engine: runs jobs rule by rule, batch by batch.
//!
//! What it guarantees:
//! - the cutoff is fixed when a rule starts (`as_of`), and batches walk the
//!   selecting column's order without re-scanning finished work;
//! - a batch is one short transaction, children before parents, and its audit
//!   record is written (fsynced) before it commits;
//! - guards stop a rule before it touches anything;
//! - a failing rule does not stop the others; cancellation stops at the next
//!   batch boundary.
//!
//! This module never builds SQL text: it asks `sql::statements` for statements
//! and `sql::Db` to run them. Dry run is this module choosing not to call the
//! batch path at all.

mod object_rules;
mod partitions;
mod windows;
pub use partitions::PartitionReport;
pub(crate) use windows::why_one_worker;

use crate::audit::{AuditWriter, ChildCount, Event, JobOutcome, ObjectCount, Totals};
use crate::config::{Job, Loaded, Partitions, Rule, TableRef};
use crate::error::{Error, ExitCode};
use crate::keys::{Keys, looks_hashed};
use crate::objects::{Stores, linked};
use crate::sql::statements::{BatchRow, ChildSql, Cursor, Deleted, RuleSql, Tables, hash_update};
use crate::sql::{ColumnInfo, Db, TableInfo, Tx, schema};
use crate::state::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How many held subjects one hold record lists at most.
const HELD_SUBJECTS_MAX: usize = 1_000;
/// Keys per statement when acting on children (under every engine's bind limit).
const KEY_CHUNK: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `lethe plan`: count only.
    Plan,
    /// `lethe run --dry-run`: count only, reported as a run.
    DryRun,
    /// `lethe run`.
    Execute,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub as_of: DateTime<Utc>,
    pub mode: Mode,
    /// Jobs named on the command line; empty means every non-manual job.
    pub jobs: Vec<String>,
    pub cancel: CancellationToken,
    /// `(index, count)`: this process handles shard `index` of `count`.
    pub shard: Option<(u32, u32)>,
    /// Told about each rule's batches (the CLI draws progress bars on a terminal).
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// Progress of the rules of a run, for people watching a terminal.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A rule starts executing with `total` rows to act on.
    fn start(&self, job: &str, rule: &str, total: u64) -> Box<dyn RuleProgress>;
}

pub trait RuleProgress: Send {
    /// `n` more rows were committed.
    fn advance(&mut self, n: u64);
    fn finish(&mut self);
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// Dry run with work to do.
    Pending,
    /// Nothing (left) to do, or all done.
    Done,
    Guard,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub job: String,
    pub rule: String,
    pub policy: String,
    pub target: String,
    pub action: String,
    pub status: RuleStatus,
    /// Rows eligible when the rule started (not held).
    pub matched: u64,
    pub held: u64,
    /// Rows (objects) in the whole table (store). Counted for plans and when
    /// a `max_fraction` guard needs it; `None` on an executed run without
    /// one, where a `COUNT(*)` over a large table on every run buys nothing.
    pub total: Option<u64>,
    /// Rows acted on (deleted or anonymized) in the parent table.
    pub done: u64,
    pub children: Vec<ChildCount>,
    pub batches: u64,
    pub longest_batch_ms: u64,
    /// Batches the server rolled back on a conflict (deadlock, lock timeout)
    /// and that were tried again.
    pub retries: u64,
    /// Keyed hashes of a few subjects the rule would touch (dry run only).
    pub sample_subjects: Vec<String>,
    /// Objects erased (or, in a dry run, to erase) and kept by Object Lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectCount>,
    /// `partitions = "drop"`: the wholly due partitions, dropped (or, in a
    /// plan, to drop) or batched with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionReport>,
    /// Sources with `after_purge`: the dead space the touched tables hold
    /// (a plan: now; a run: after the reclaim step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_space: Option<crate::sql::purge::DeadSpace>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub policy: String,
    pub status: String,
    pub duration_ms: u64,
    pub rules: Vec<RuleReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: String,
    pub mode: Mode,
    pub as_of: String,
    pub audit_file: String,
    pub status: String,
    pub totals: Totals,
    pub jobs: Vec<JobReport>,
    #[serde(skip)]
    pub exit: ExitCode,
}

/// Tables inspected so far, by reference.
#[derive(Default)]
struct TableCache(BTreeMap<String, TableInfo>);

impl Tables for TableCache {
    fn get(&self, t: &TableRef) -> Option<&TableInfo> {
        self.0.get(&t.to_string())
    }
}

/// Every table a rule names.
fn rule_tables(rule: &Rule) -> Vec<TableRef> {
    fn kids(out: &mut Vec<TableRef>, cs: &[crate::config::Child]) {
        for c in cs {
            out.push(c.target.clone());
            kids(out, &c.children);
        }
    }
    let mut out = vec![rule.target.clone()];
    if let Some(h) = &rule.hold {
        out.push(h.table.clone());
    }
    kids(&mut out, &rule.children);
    out
}

/// Inspect the tables of a rule and build its statements.
pub async fn prepare_rule(
    db: &Db,
    rule: &Rule,
    as_of: DateTime<Utc>,
) -> Result<RuleSql, Vec<String>> {
    let mut cache = TableCache::default();
    for t in rule_tables(rule) {
        match schema::table_info(db, &t).await {
            Ok(Some(info)) => {
                cache.0.insert(t.to_string(), info);
            }
            Ok(None) => {}
            Err(e) => return Err(vec![e.to_string()]),
        }
    }
    RuleSql::prepare(db.dialect(), rule, &cache, as_of)
}

/// Connected sources, opened on first use; a source that cannot be reached
/// fails only the rules that use it.
pub struct Sources<'a> {
    loaded: &'a Loaded,
    open: BTreeMap<String, Result<Db, String>>,
    /// Object stores, opened on first use the same way.
    pub stores: Stores,
}

impl<'a> Sources<'a> {
    pub fn new(loaded: &'a Loaded) -> Self {
        Self {
            loaded,
            open: BTreeMap::new(),
            stores: Stores::new(&loaded.config),
        }
    }

    pub async fn get(&mut self, name: &str) -> Result<&Db, String> {
        if !self.open.contains_key(name) {
            let src = self
                .loaded
                .config
                .sources
                .get(name)
                .ok_or_else(|| format!("unknown source `{name}`"))?;
            let res = Db::connect_source(src)
                .await
                .map_err(|e| format!("{e} ({})", src.display_url()));
            if let Err(e) = &res {
                tracing::error!(source = name, error = %e, "source unreachable");
            }
            self.open.insert(name.to_string(), res);
        }
        self.open[name].as_ref().map_err(|e| e.clone())
    }

    pub async fn close(&self) {
        for db in self.open.values().flatten() {
            db.close().await;
        }
    }
}

/// Run (or dry-run) the selected jobs and write one audit file.
pub async fn run(loaded: &Loaded, keys: &Keys, opts: RunOptions) -> Result<RunReport, Error> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let shard_label = opts
        .shard
        .map(|(i, n)| format!("{i}/{n}"))
        .unwrap_or_default();
    let span = tracing::info_span!("run", run = %run_id, shard = %shard_label);
    run_traced(loaded, keys, opts, run_id)
        .instrument(span)
        .await
}

async fn run_traced(
    loaded: &Loaded,
    keys: &Keys,
    opts: RunOptions,
    run_id: String,
) -> Result<RunReport, Error> {
    let jobs = select_jobs(loaded, &opts.jobs)?;
    // The state store names the run this one links to (executed runs only).
    let (state, prev) = if opts.mode == Mode::Execute {
        let s = State::open(&loaded.config.state.url, loaded.config.state.lease_ttl).await?;
        match s.last_run().await {
            Ok(prev) => (Some(s), prev),
            Err(e) => {
                s.close().await;
                return Err(e);
            }
        }
    } else {
        (None, None)
    };
    // The audit sink before any data is touched: if it cannot be written,
    // the run stops here, having deleted nothing.
    let mut audit = match AuditWriter::create(&loaded.config.audit.dir, &run_id, &keys.key_id) {
        Ok(a) => a,
        Err(e) => {
            if let Some(s) = &state {
                s.close().await;
            }
            return Err(e);
        }
    };
    audit.append(Event::RunStart {
        version: env!("CARGO_PKG_VERSION").to_string(),
        command: match opts.mode {
            Mode::Plan => "plan",
            _ => "run",
        }
        .into(),
        dry_run: opts.mode != Mode::Execute,
        as_of: opts.as_of.to_rfc3339(),
        config_digest: loaded.config_digest.clone(),
        jobs_digest: loaded.jobs_digest.clone(),
        jobs: jobs.iter().map(|j| j.name.clone()).collect(),
        key_id: keys.key_id.clone(),
        shard: opts.shard.map(|(i, n)| format!("{i}/{n}")),
        prev_run: prev.as_ref().map(|p| p.run_id.clone()),
        prev_head: prev.and_then(|p| p.head_hash),
    })?;
    if let Some(s) = &state
        && let Err(e) = s
            .run_started(&run_id, "run", &audit.path().display().to_string())
            .await
    {
        // Seal what was written, so the log says why this run did nothing.
        let _ = audit.append(Event::RunEnd {
            status: "failed".into(),
            totals: Totals::default(),
            jobs: vec![],
        });
        s.close().await;
        return Err(e);
    }
    // The S3 copy of the log, when configured, must take the run's first
    // record before anything is touched: a sink that cannot be written stops
    // the run here.
    let s3_sink = match &loaded.config.audit.s3 {
        None => None,
        Some(s3) => {
            let opened = match crate::audit::s3::S3AuditSink::open(&loaded.config, s3).await {
                Ok(sink) => sink.put(audit.path()).await.map(|_| sink),
                Err(e) => Err(e),
            };
            match opened {
                Ok(sink) => Some(sink),
                Err(e) => {
                    tracing::error!(error = %e, "the S3 audit sink failed; nothing was touched");
                    let _ = audit.append(Event::RunEnd {
                        status: "failed".into(),
                        totals: Totals::default(),
                        jobs: vec![],
                    });
                    if let Some(s) = &state {
                        let _ = s
                            .run_ended(&run_id, "failed", audit.head(), audit.records())
                            .await;
                        s.close().await;
                    }
                    return Err(e);
                }
            }
        }
    };
    tracing::info!(mode = ?opts.mode, jobs = jobs.len(), "run started");

    let mut sources = Sources::new(loaded);
    let mut reports = Vec::new();
    let mut exit = ExitCode::Ok;
    let mut totals = Totals::default();
    let mut fatal: Option<Error> = None;
    for job in jobs {
        if opts.cancel.is_cancelled() {
            break;
        }
        let mut ctx = JobCtx {
            job,
            keys,
            audit: &mut audit,
            opts: &opts,
        };
        let res = match &state {
            Some(state) => run_job_leased(&mut ctx, state, &run_id, &mut sources).await,
            None => run_job(&mut ctx, &mut sources).await.map(Some),
        };
        match res {
            Ok(Some(report)) => {
                for r in &report.rules {
                    exit = exit.worst(match r.status {
                        RuleStatus::Pending => ExitCode::Pending,
                        RuleStatus::Done => ExitCode::Ok,
                        RuleStatus::Guard => ExitCode::Guard,
                        RuleStatus::Failed => ExitCode::Partial,
                        RuleStatus::Interrupted => ExitCode::Ok,
                    });
                    match r.action.as_str() {
                        "delete" => totals.deleted += r.done,
                        "anonymize" => totals.anonymized += r.done,
                        _ => {}
                    }
                    object_rules::add_totals(&mut totals, r, opts.mode);
                    totals.held += r.held;
                    totals.failed_rules += u64::from(r.status == RuleStatus::Failed);
                    totals.guard_trips += u64::from(r.status == RuleStatus::Guard);
                }
                reports.push(report);
            }
            Ok(None) => {
                exit = exit.worst(ExitCode::Locked);
                reports.push(JobReport {
                    job: job.name.clone(),
                    policy: job.policy.clone(),
                    status: "locked".into(),
                    duration_ms: 0,
                    rules: vec![],
                });
            }
            Err(e) => {
                // The audit log or the state store failed: stop everything.
                fatal = Some(e);
                break;
            }
        }
    }
    sources.close().await;

    // A signal stops the whole run; a lost lease stops one job: either way
    // some work was left for the next run.
    let interrupted = opts.cancel.is_cancelled()
        || reports
            .iter()
            .any(|j| j.rules.iter().any(|r| r.status == RuleStatus::Interrupted));
    let status = if fatal.is_some() {
        "failed"
    } else if interrupted {
        "interrupted"
    } else if exit == ExitCode::Ok || exit == ExitCode::Pending {
        "completed"
    } else {
        "partial"
    };
    let end = audit.append(Event::RunEnd {
        status: status.into(),
        totals: totals.clone(),
        jobs: reports
            .iter()
            .map(|j| JobOutcome {
                job: j.job.clone(),
                status: j.status.clone(),
            })
            .collect(),
    });
    let end = end.and_then(|_| audit.close());
    // The sealed log to S3; the local file already holds every record.
    let end = match (&s3_sink, end) {
        (Some(sink), Ok(())) => sink.put(audit.path()).await.map(|_| ()),
        (_, other) => other,
    };
    if let Some(state) = &state {
        // The head kept outside the log: `audit verify` compares the two.
        if let Err(e) = state
            .run_ended(&run_id, status, audit.head(), audit.records())
            .await
        {
            tracing::error!(run = %run_id, error = %e, "cannot record the run's head in the state store; `audit verify` will report the run as never ended");
        }
        state.close().await;
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    end?;
    tracing::info!(run = %run_id, status, deleted = totals.deleted, anonymized = totals.anonymized, held = totals.held, "run ended");
    Ok(RunReport {
        run: run_id,
        mode: opts.mode,
        as_of: opts.as_of.to_rfc3339(),
        audit_file: audit.path().display().to_string(),
        status: status.into(),
        totals,
        jobs: reports,
        exit: if interrupted {
            exit.worst(ExitCode::Partial)
        } else {
            exit
        },
    })
}

fn select_jobs<'a>(loaded: &'a Loaded, names: &[String]) -> Result<Vec<&'a Job>, Error> {
    if names.is_empty() {
        return Ok(loaded.jobs.iter().filter(|j| !j.manual).collect());
    }
    let mut out = Vec::new();
    for n in names {
        match loaded.job(n) {
            Some(j) => out.push(j),
            None => {
                let known: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
                return Err(Error::Usage(format!(
                    "no job named `{n}` (jobs: {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

struct JobCtx<'a> {
    job: &'a Job,
    keys: &'a Keys,
    audit: &'a mut AuditWriter,
    opts: &'a RunOptions,
}

/// Hold the job's lease for the whole job; renew it in the background.
async fn run_job_leased(
    ctx: &mut JobCtx<'_>,
    state: &State,
    run_id: &str,
    sources: &mut Sources<'_>,
) -> Result<Option<JobReport>, Error> {
    let lease = match ctx.opts.shard {
        // Each shard holds its own lease: shards run side by side, a shard never twice.
        Some((i, n)) => format!("job:{}:shard:{i}/{n}", ctx.job.name),
        None => format!("job:{}", ctx.job.name),
    };
    if !state.acquire(&lease, run_id).await? {
        tracing::warn!(job = %ctx.job.name, "another run holds this job's lease");
        ctx.audit.append(Event::Locked {
            job: ctx.job.name.clone(),
        })?;
        return Ok(None);
    }
    let renewer = {
        let every = state.lease_ttl / 3;
        let (lease, holder) = (lease.clone(), run_id.to_string());
        async move {
            loop {
                tokio::time::sleep(every).await;
                if !matches!(state.renew(&lease, &holder).await, Ok(true)) {
                    return;
                }
            }
        }
    };
    let job_cancel = ctx.opts.cancel.child_token();
    let opts = RunOptions {
        cancel: job_cancel.clone(),
        ..ctx.opts.clone()
    };
    let mut inner = JobCtx {
        job: ctx.job,
        keys: ctx.keys,
        audit: ctx.audit,
        opts: &opts,
    };
    let run = run_job(&mut inner, sources);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = renewer => {
            // The lease could not be renewed: another run may take the job
            // over once it expires. Stop at the next batch boundary.
            tracing::error!(lease = %lease, "lost the job's lease; stopping at the next batch boundary");
            job_cancel.cancel();
            run.await
        }
    };
    state.release(&lease, run_id).await?;
    result.map(Some)
}

async fn run_job(ctx: &mut JobCtx<'_>, sources: &mut Sources<'_>) -> Result<JobReport, Error> {
    let job = ctx.job;
    let started = Instant::now();
    let mut rules = Vec::new();
    for rule in &job.rules {
        if ctx.opts.cancel.is_cancelled() {
            break;
        }
        let report = run_rule(ctx, rule, sources).await?;
        rules.push(report);
    }
    for rule in &job.object_rules {
        if ctx.opts.cancel.is_cancelled() {
            break;
        }
        let span = tracing::info_span!("rule", job = %ctx.job.name, rule = %rule.name);
        let report = object_rules::run_object_rule(ctx, rule, &sources.stores)
            .instrument(span)
            .await?;
        rules.push(report);
    }
    let status = if rules.iter().any(|r| r.status == RuleStatus::Failed) {
        "partial"
    } else if rules.iter().any(|r| r.status == RuleStatus::Guard) {
        "guard"
    } else if ctx.opts.cancel.is_cancelled() {
        "interrupted"
    } else if rules.iter().any(|r| r.status == RuleStatus::Pending) {
        "pending"
    } else {
        "done"
    };
    Ok(JobReport {
        job: job.name.clone(),
        policy: job.policy.clone(),
        status: status.into(),
        duration_ms: started.elapsed().as_millis() as u64,
        rules,
    })
}

/// A report for a rule that has done nothing yet (SQL and object rules).
fn blank_report(job: &Job, rule: &str, target: String, action: &str) -> RuleReport {
    RuleReport {
        job: job.name.clone(),
        rule: rule.to_string(),
        policy: job.policy.clone(),
        target,
        action: action.into(),
        status: RuleStatus::Done,
        matched: 0,
        held: 0,
        total: None,
        done: 0,
        children: vec![],
        batches: 0,
        longest_batch_ms: 0,
        retries: 0,
        sample_subjects: vec![],
        objects: vec![],
        partitions: vec![],
        dead_space: None,
        message: None,
    }
}

/// Run one rule. `Err` only when the audit log fails (the run must stop);
/// every other problem becomes a failed rule.
async fn run_rule(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    sources: &mut Sources<'_>,
) -> Result<RuleReport, Error> {
    let span = tracing::info_span!("rule", job = %ctx.job.name, rule = %rule.name);
    run_rule_traced(ctx, rule, sources).instrument(span).await
}

async fn run_rule_traced(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    sources: &mut Sources<'_>,
) -> Result<RuleReport, Error> {
    let mut report = blank_report(
        ctx.job,
        &rule.name,
        rule.target.to_string(),
        rule.action.name(),
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
    if let Some((index, count)) = ctx.opts.shard
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
    if ctx.opts.mode != Mode::Execute {
        if rule.partitions == Partitions::Drop && ctx.opts.shard.is_none() {
            match partitions::whole_partitions(db, &sql).await {
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
        report.status = if report.matched > 0 {
            RuleStatus::Pending
        } else {
            RuleStatus::Done
        };
        ctx.audit.append(Event::Plan {
            job: ctx.job.name.clone(),
            rule: rule.name.clone(),
            policy: ctx.job.policy.clone(),
            target: report.target.clone(),
            action: report.action.clone(),
            matched: report.matched,
            held: report.held,
            total: report.total.unwrap_or_default(),
            children: report.children.clone(),
            objects: report.objects.clone(),
        })?;
        return Ok(report);
    }
    if report.matched == 0 {
        return Ok(report);
    }
    let mut bar = ctx
        .opts
        .progress
        .as_ref()
        .map(|p| p.start(&ctx.job.name, &rule.name, report.matched));
    let outcome = execute(ctx, db, rule, &sql, &stores, &mut report, &mut bar).await;
    if let Some(b) = bar.as_mut() {
        b.finish();
    }
    // `after_purge`: what the deletes left on disk, reclaimed where the
    // engine can do it online. A failure here is reported, never a failed
    // rule: the rows are gone either way.
    if db.after_purge && report.done > 0 && outcome.is_ok() {
        let tables = sql.touched_tables();
        report.dead_space = Some(match crate::sql::purge::reclaim(db, &tables).await {
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
        });
    }
    match outcome {
        Ok(()) => Ok(report),
        Err(Error::Audit(a)) => Err(Error::Audit(a)),
        Err(e) => fail(ctx, report, e.to_string()),
    }
}

/// Record a failed rule (object rules too); the report names the rule and target.
fn fail(ctx: &mut JobCtx<'_>, mut report: RuleReport, error: String) -> Result<RuleReport, Error> {
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
async fn count_and_guard(
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
    let need_total = ctx.opts.mode != Mode::Execute || rule.max_fraction.is_some();
    let total = async {
        match need_total {
            true => db.count(&sql.count_total(d)).await.map(Some),
            false => Ok(None),
        }
    };
    let eligible = sql.count_eligible(d);
    (report.total, report.matched, report.held) =
        tokio::try_join!(total, db.count(&eligible), held)?;
    if ctx.opts.mode != Mode::Execute {
        report.children = count_children(db, sql).await?;
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
    if ctx.opts.mode != Mode::Execute && linked::has_objects(sql) {
        object_rules::plan_linked(ctx, db, rule, sql, stores, report).await?;
    }
    Ok(true)
}

/// Why a guard stops a rule that matches `matched` of `total` items, if it does.
fn guard_reason(
    max_rows: Option<u64>,
    max_fraction: Option<f64>,
    matched: u64,
    total: u64,
    what: &str,
) -> Option<String> {
    match (max_rows, max_fraction) {
        (Some(max), _) if matched > max => {
            Some(format!("{matched} {what} match, max_rows is {max}"))
        }
        (_, Some(f)) if total > 0 && (matched as f64 / total as f64) > f => Some(format!(
            "{matched} of {total} {what} match ({:.1}%), max_fraction is {:.1}%",
            100.0 * matched as f64 / total as f64,
            100.0 * f
        )),
        _ => None,
    }
}

async fn count_children(db: &Db, sql: &RuleSql) -> Result<Vec<ChildCount>, Error> {
    type Path = (Vec<usize>, String, String, String);
    fn walk(children: &[ChildSql], path: &mut Vec<usize>, out: &mut Vec<Path>) {
        for (i, c) in children.iter().enumerate() {
            path.push(i);
            // Grandchildren first: that is the order a batch acts in.
            walk(&c.children, path, out);
            out.push((
                path.clone(),
                c.display.clone(),
                c.fk.name.clone(),
                c.action.name().to_string(),
            ));
            path.pop();
        }
    }
    let mut paths = Vec::new();
    walk(&sql.children, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for (path, target, via, action) in paths {
        let count = db.count(&sql.count_child(db.dialect(), &path)).await?;
        out.push(ChildCount {
            target,
            via,
            action,
            count,
        });
    }
    Ok(out)
}

fn add_count(into: &mut Vec<ChildCount>, target: &str, via: &str, action: &str, n: u64) {
    match into
        .iter_mut()
        .find(|c| c.target == target && c.via == via && c.action == action)
    {
        Some(c) => c.count += n,
        None => into.push(ChildCount {
            target: target.to_string(),
            via: via.to_string(),
            action: action.to_string(),
            count: n,
        }),
    }
}

/// New values for the hashed columns of one row; `None` if nothing changes.
fn rehash(keys: &Keys, values: &[Option<String>]) -> Option<Vec<Option<String>>> {
    let mut changed = false;
    let out = values
        .iter()
        .map(|v| match v {
            Some(v) if !looks_hashed(v) => {
                changed = true;
                Some(keys.pseudonym(v))
            }
            other => other.clone(),
        })
        .collect();
    changed.then_some(out)
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Act on one child table (and its children first) for a set of parent keys.
fn process_child<'a>(
    tx: &'a mut Tx,
    db: &'a Db,
    keys: &'a Keys,
    child: &'a ChildSql,
    parent_key: &'a ColumnInfo,
    parent_keys: &'a [String],
    counts: &'a mut Vec<ChildCount>,
) -> BoxFut<'a, Result<(), Error>> {
    Box::pin(async move {
        let d = db.dialect();
        for chunk in parent_keys.chunks(KEY_CHUNK) {
            if !child.needs_keys() {
                let n = tx
                    .execute(db, &child.act_by_parent(d, parent_key, chunk))
                    .await?;
                add_count(
                    counts,
                    &child.display,
                    &child.fk.name,
                    child.action.name(),
                    n,
                );
                continue;
            }
            let rows = tx
                .fetch(db, &child.select_keys(d, parent_key, chunk))
                .await?;
            let ckey = child.key.as_ref().expect("needs_keys implies a key");
            let child_keys: Vec<String> = rows.iter().filter_map(|r| r[0].clone()).collect();
            for gc in &child.children {
                process_child(tx, db, keys, gc, ckey, &child_keys, counts).await?;
            }
            let hashed = child.action.hash_columns();
            if !hashed.is_empty() {
                for r in &rows {
                    if let (Some(k), Some(new)) = (&r[0], rehash(keys, &r[1..])) {
                        tx.execute(db, &hash_update(d, &child.table, ckey, &hashed, &new, k))
                            .await?;
                    }
                }
            }
            for ck in child_keys.chunks(KEY_CHUNK) {
                tx.execute(db, &child.act_by_keys(d, ck)).await?;
            }
            add_count(
                counts,
                &child.display,
                &child.fk.name,
                child.action.name(),
                child_keys.len() as u64,
            );
        }
        Ok(())
    })
}

/// How many times one batch is tried again after the server rolled it back
/// on a conflict before the rule fails.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// Exponential backoff with jitter, so that two shards that collided do not
/// collide again in step: 50 ms, 100 ms, … capped at 3.2 s, plus up to half.
fn conflict_backoff(attempt: u32) -> Duration {
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
async fn roll_back_or_retry(db: &Db, tx: Tx, e: Error, conflicts: &mut u32) -> Result<(), Error> {
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
    if let Some(summary) = sql.summarize_batch(d, part, below) {
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
enum Fetched {
    /// Rows selected (and locked, and acted on) by the general path.
    Rows(Vec<BatchRow>, Option<linked::Resolved>),
    /// A one-statement delete's result.
    Deleted(Deleted),
}

/// A batch ready to be recorded and committed.
struct BatchDone<'r> {
    batch: u64,
    count: u64,
    children: Vec<ChildCount>,
    keys_digest: String,
    subjects: BTreeSet<String>,
    resolved: Option<&'r linked::Resolved>,
    /// A whole partition dropped instead of a batch of rows.
    partition: Option<crate::audit::PartitionDropped>,
}

/// Record a batch, erase its objects, commit, and count it.
///
/// The record is written (fsynced) before the commit: a crash between the
/// two leaves a record of a batch that the next run will do (and record)
/// again, never an unrecorded deletion. Objects go before the rows commit:
/// if erasing fails, the rows stay and still name every object that is left.
#[allow(clippy::too_many_arguments)]
async fn commit_batch(
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
    let erased = match done.resolved {
        Some(r) => linked::erase(r).await.map(drop),
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
        let record = rollback_event(ctx, rule, done.batch, &e);
        ctx.audit.append(record)?;
        return Err(e);
    }
    count_batch(report, bar, done, started);
    Ok(())
}

/// The record of a batch, written before it commits.
fn batch_event(ctx: &JobCtx<'_>, rule: &Rule, report: &RuleReport, done: &BatchDone<'_>) -> Event {
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
        partition: done.partition.clone(),
    }
}

/// The record that a recorded batch did not commit after all.
fn rollback_event(ctx: &JobCtx<'_>, rule: &Rule, batch: u64, e: &Error) -> Event {
    Event::BatchRollback {
        job: ctx.job.name.clone(),
        rule: rule.name.clone(),
        batch,
        reason: e.to_string(),
    }
}

/// Count a committed batch in the rule's report and progress bar.
fn count_batch(
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
async fn execute(
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
    // One-statement deletes walk each physical table in turn (a ctid is
    // unique only within one); every other path has a single part.
    for part in &parts {
        let mut cursor: Option<Cursor> = None;
        let mut bound: Option<String> = None;
        loop {
            if ctx.opts.cancel.is_cancelled() {
                report.status = RuleStatus::Interrupted;
                tracing::warn!("interrupted at a batch boundary");
                return Ok(());
            }
            let started = Instant::now();
            let mut tx = db.begin().await?;
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
                // Objects the rows name, resolved before anything is acted on: a
                // row whose object Object Lock holds is kept with it.
                let resolved = if linked::has_objects(sql) {
                    let all: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
                    let crows = linked::child_rows_tx(&mut tx, db, sql, &all).await?;
                    Some(linked::resolve(stores, sql, &rows, &crows, Utc::now()).await?)
                } else {
                    None
                };
                let held = |i: usize| resolved.as_ref().is_some_and(|r| r.held_rows.contains(&i));
                let keys_list: Vec<String> = rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !held(*i))
                    .map(|(_, r)| r.key.clone())
                    .collect();
                if keys_list.is_empty() {
                    return Ok(Fetched::Rows(rows, resolved));
                }
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
                let hashed = sql.action.hash_columns();
                if !hashed.is_empty() {
                    for (_, r) in rows.iter().enumerate().filter(|(i, _)| !held(*i)) {
                        if let Some(new) = rehash(ctx.keys, &r.hashed) {
                            tx.execute(
                                db,
                                &hash_update(d, &sql.table, &sql.key, &hashed, &new, &r.key),
                            )
                            .await?;
                        }
                    }
                }
                for chunk in keys_list.chunks(KEY_CHUNK) {
                    tx.execute(db, &sql.act_by_keys(d, chunk)).await?;
                }
                Ok(Fetched::Rows(rows, resolved))
            }
            .await;
            let fetched = match outcome {
                Ok(r) => r,
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
                        partition: None,
                    };
                    commit_batch(ctx, db, tx, rule, report, bar, done, started).await?;
                    conflicts = 0;
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
            let held_rows = resolved
                .as_ref()
                .map(|r| r.held_rows.clone())
                .unwrap_or_default();
            if let Some(r) = &resolved
                && !held_rows.is_empty()
            {
                object_rules::audit_linked_hold(ctx, rule, report, &rows, r)?;
            }
            let acted: Vec<&BatchRow> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| !held_rows.contains(i))
                .map(|(_, r)| r)
                .collect();
            let last = rows.last().expect("not empty");
            let next = Cursor {
                order: last.order.clone(),
                key: last.key.clone(),
            };
            if acted.is_empty() {
                // Every row of the batch is held with its objects: nothing to commit.
                tx.rollback(db).await?;
                cursor = Some(next);
                if rows.len() < sql.batch_size {
                    break;
                }
                continue;
            }
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
                partition: None,
            };
            commit_batch(ctx, db, tx, rule, report, bar, done, started).await?;
            conflicts = 0;
            cursor = Some(next);
            if rows.len() < sql.batch_size {
                break;
            }
            if !db.pause.is_zero() {
                tokio::time::sleep(db.pause).await;
            }
        }
    }
    report.status = RuleStatus::Done;
    Ok(())
}
