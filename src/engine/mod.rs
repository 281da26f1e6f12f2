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
mod pending;
mod recovery;
mod request_jobs;
pub mod sizing;
mod windows;
pub use partitions::PartitionReport;
pub use pending::PendingLine;
pub(crate) use windows::why_one_worker;

use crate::audit::{AuditWriter, ChildCount, Event, JobOutcome, ObjectCount, Totals};
use crate::config::{Job, Loaded, Partitions, Rule};
use crate::error::{Error, ExitCode};
use crate::keys::{Keys, looks_hashed};
use crate::objects::{Stores, linked};
use crate::sql::statements::{BatchRow, ChildSql, Cursor, Deleted, Hashes, RuleSql, act_chunk};
use crate::sql::{ColumnInfo, Db, Tx};
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
    /// The order the batches walk the table in, and why (SQL rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkReport>,
    /// Costs a plan makes visible: each child found through a foreign key
    /// no index leads with (every batch scans that child table).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Sizes chosen for batches sized by time (`batch_time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_sizes: Option<BatchSizes>,
    /// A request job's rule: the request whose subject it acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// A request job's rule after an executed run: rows of the subject the
    /// rule still selects (the re-query that proves the erasure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<u64>,
    /// What keeps some of them, e.g. a legal hold or Object Lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

/// Which index a rule's batches walk.
#[derive(Debug, Clone, Serialize)]
pub struct WalkReport {
    pub by: crate::config::Walk,
    /// The walked column (the select column, or the key).
    pub column: String,
    pub why: String,
}

/// What the time-sized batches of a rule were: first, smallest, largest, last.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BatchSizes {
    pub target_ms: u64,
    pub first: usize,
    pub min: usize,
    pub max: usize,
    pub last: usize,
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
    /// Open erasure requests after the run (the raw subject never appears).
    pub requests: Vec<crate::requests::process::RequestLine>,
    /// Objects Object Lock kept after their rows were erased, per store and
    /// reason, as the run ends (never a key).
    pub pending: Vec<pending::PendingLine>,
    /// Requests this run completed (for the completion histogram).
    #[serde(skip)]
    pub request_completions: Vec<crate::requests::process::Completion>,
    #[serde(skip)]
    pub exit: ExitCode,
}

/// Inspect the tables of a rule and build its statements. The same
/// analysis as `check` ([`crate::plan::prepare`]): a rule `check` rejects
/// fails here, with the same messages, before anything is touched.
pub async fn prepare_rule(
    db: &Db,
    rule: &Rule,
    as_of: DateTime<Utc>,
) -> Result<RuleSql, Vec<String>> {
    crate::plan::prepare(db, rule, as_of)
        .await
        .map(|p| p.sql)
        .map_err(|ps| ps.iter().map(ToString::to_string).collect())
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
            let mut outage = Outage::default();
            let res = loop {
                match Db::connect_source(src).await {
                    Ok(mut db) => {
                        db.reconnect_for = src.reconnect_for;
                        break Ok(db);
                    }
                    Err(e) => {
                        if let Err(e) = outage.wait(name, src.reconnect_for, e).await {
                            break Err(e);
                        }
                    }
                }
            }
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
        // Unreachable: the run stops here, before its log or any data.
        let s = State::open(&loaded.config.state.url, loaded.config.state.lease_ttl)
            .await
            .map_err(|e| {
                Error::State(format!(
                    "cannot open {} ({}); nothing was touched",
                    crate::config::redact_url(&loaded.config.state.url),
                    e.to_string().trim_start_matches("state store: ")
                ))
            })?;
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
    // Requests are read in every mode: a plan shows them, and every run
    // exits 5 while one is overdue.
    let plan_state = match &state {
        Some(_) => None,
        None => Some(State::open(&loaded.config.state.url, loaded.config.state.lease_ttl).await?),
    };
    let rstate = state
        .as_ref()
        .or(plan_state.as_ref())
        .expect("one of the two is open");
    let open_requests = match rstate.open_requests().await {
        Ok(r) => r,
        Err(e) => {
            rstate.close().await;
            return Err(e);
        }
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
    let run_start = Event::RunStart {
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
    };
    // The run lease first, then the row, then the first record: a `running`
    // row without a live run lease is a crashed run, which the next run of
    // its jobs recovers; a log left empty was never started.
    let run_lease = State::run_lease(&run_id);
    let audit_path = audit.path().display().to_string();
    if let Some(s) = &state
        && let Err(e) = async {
            s.acquire(&run_lease, &run_id).await?;
            s.run_started(&run_id, "run", &audit_path).await
        }
        .await
    {
        // Seal what was written, so the log says why this run did nothing.
        let _ = audit.append(run_start);
        let _ = audit.append(Event::RunEnd {
            status: "failed".into(),
            totals: Totals::default(),
            jobs: vec![],
        });
        s.close().await;
        return Err(e);
    }
    if let Err(e) = audit.append(run_start) {
        if let Some(s) = &state {
            let _ = s.run_ended(&run_id, "failed", audit.head(), 0).await;
            let _ = s.release(&run_lease, &run_id).await;
            s.close().await;
        }
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
    // Requests the application wrote into its intake table become ours
    // before any job runs; a failing intake fails no rule, but says so.
    let mut intake_failed = false;
    let open_requests = match (&state, opts.mode) {
        (Some(s), Mode::Execute) if loaded.config.requests.intake.is_some() => {
            match crate::requests::intake::take(loaded, keys, s, &mut audit, &run_id, opts.as_of)
                .await
            {
                Ok(0) => open_requests,
                Ok(_) => match s.open_requests().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the requests just taken");
                        intake_failed = true;
                        open_requests
                    }
                },
                Err(Error::Audit(a)) => return Err(Error::Audit(a)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot take requests from the intake table");
                    intake_failed = true;
                    open_requests
                }
            }
        }
        _ => open_requests,
    };

    let mut fatal: Option<Error> = None;
    if let Some(s) = &state
        && let Err(e) = recovery::recover_crashed(
            loaded,
            s,
            &mut audit,
            s3_sink.as_ref(),
            &jobs,
            &opts,
            &run_id,
        )
        .await
    {
        // Only the audit log fails a recovery: nothing may be touched.
        fatal = Some(e);
    }
    let mut sources = Sources::new(loaded);
    // Held objects whose rows earlier runs erased: those whose hold has
    // ended go first, before any job (every executed run, whatever its jobs:
    // the list outlives the rules that filled it).
    if fatal.is_none()
        && let Some(s) = &state
        && let Err(e) = pending::retry(s, &sources.stores, &mut audit, keys).await
    {
        fatal = Some(e);
    }
    let mut reports = Vec::new();
    let mut exit = if intake_failed {
        ExitCode::Partial
    } else {
        ExitCode::Ok
    };
    let mut totals = Totals::default();
    for job in jobs {
        if fatal.is_some() {
            break;
        }
        if opts.cancel.is_cancelled() {
            break;
        }
        let mut ctx = JobCtx {
            job,
            keys,
            audit: &mut audit,
            opts: &opts,
            requests: &open_requests,
            state: state.as_ref(),
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

    // Requests whose subjects every request job has now handled become done
    // or held; then the overdue ones set the exit code.
    let mut request_lines = Vec::new();
    let mut request_completions = Vec::new();
    if fatal.is_none() {
        let settled = match (&state, opts.mode) {
            (Some(s), Mode::Execute) if !opts.cancel.is_cancelled() => {
                request_jobs::settle(
                    loaded,
                    &mut audit,
                    s,
                    &run_id,
                    &reports,
                    &open_requests,
                    opts.as_of,
                )
                .await
            }
            _ => Ok(vec![]),
        };
        let lines = match settled {
            Ok(done) => {
                request_completions = done;
                crate::requests::process::lines(loaded, rstate, opts.as_of).await
            }
            Err(e) => Err(e),
        };
        match lines {
            Ok(lines) => {
                if lines.iter().any(|l| l.overdue) {
                    exit = exit.worst(ExitCode::Overdue);
                }
                request_lines = lines;
            }
            // The state store went away after the jobs (it also keeps the
            // run from recording its end): what the rules did stands, the
            // requests stay as they were, and the next run settles them and
            // tells whether one is overdue.
            Err(Error::State(e)) => {
                tracing::error!(error = %e, "cannot settle or list the open requests; the next run does");
                exit = exit.worst(ExitCode::Partial);
            }
            Err(e) => fatal = Some(e),
        }
    }
    // What Object Lock still keeps, as the run leaves it (plan: as it is).
    let pending_lines = match pending::lines(rstate).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the pending-erasure list for the report");
            vec![]
        }
    };
    if let Some(p) = &plan_state {
        p.close().await;
    }

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
    } else if exit == ExitCode::Ok || exit == ExitCode::Pending || exit == ExitCode::Overdue {
        // Overdue requests are not a failure of this run's rules.
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
        if let Err(e) = state.release(&run_lease, &run_id).await {
            tracing::warn!(error = %e, "cannot release the run lease; it expires on its own");
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
        requests: request_lines,
        pending: pending_lines,
        request_completions,
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
    /// The open requests as the run started (request jobs act on them).
    requests: &'a [crate::requests::Request],
    /// The state store (executed runs): held objects are listed there.
    state: Option<&'a State>,
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
                // The run lease says this process is alive (a crash is told
                // apart from a run still going by it); renewed beside the job's.
                recovery::renew_run_lease(state, &holder).await;
                if !matches!(state.renew(&lease, &holder).await, Ok(true)) {
                    return;
                }
            }
        }
    };
    recovery::renew_run_lease(state, run_id).await;
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
        requests: ctx.requests,
        state: ctx.state,
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
    if let Err(e) = state.release(&lease, run_id).await {
        // The lease expires on its own; the job's outcome stands.
        tracing::warn!(lease = %lease, error = %e, "cannot release the job's lease");
    }
    result.map(Some)
}

async fn run_job(ctx: &mut JobCtx<'_>, sources: &mut Sources<'_>) -> Result<JobReport, Error> {
    let job = ctx.job;
    let started = Instant::now();
    let mut rules = Vec::new();
    if job.trigger == crate::config::Trigger::Request {
        request_jobs::run_rules(ctx, sources, &mut rules).await?;
    }
    for rule in job.rules.iter().filter(|r| !r.by_request) {
        if ctx.opts.cancel.is_cancelled() {
            break;
        }
        let report = run_rule(ctx, rule, sources, None).await?;
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
        walk: None,
        notes: vec![],
        batch_sizes: None,
        request: None,
        left: None,
        kept: vec![],
    }
}

/// Run one rule. `Err` only when the audit log fails (the run must stop);
/// every other problem becomes a failed rule. `subject`: a request job's
/// rule acts on that subject's rows only.
async fn run_rule(
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

async fn run_rule_traced(
    ctx: &mut JobCtx<'_>,
    rule: &Rule,
    sources: &mut Sources<'_>,
    subject: Option<&str>,
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
    report.walk = Some(walk_report(&sql));
    tracing::debug!(walk = sql.walk.name(), why = %sql.walk_why, "batch walk chosen");
    if let Some(s) = subject {
        sql.subjects = Some(vec![s.to_string()]);
    }
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
        let total = report.total.unwrap_or_default();
        record_plan(ctx, &rule.name, &mut report, total)?;
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

/// A dry run's answer for one rule (SQL and object rules): pending when it
/// would act on something, else done, recorded as a `plan` event.
fn record_plan(
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
        action: report.action.clone(),
        matched: report.matched,
        held: report.held,
        total,
        children: report.children.clone(),
        objects: report.objects.clone(),
    })?;
    Ok(())
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

/// Which index a prepared rule walks, for plans, runs and `check`.
pub fn walk_report(sql: &RuleSql) -> WalkReport {
    let column = match (sql.walk, &sql.select) {
        (crate::config::Walk::Select, Some(s)) => s.column.name.clone(),
        _ => sql.key.name.clone(),
    };
    WalkReport {
        by: sql.walk,
        column,
        why: sql.walk_why.clone(),
    }
}

/// A note per child reached through a foreign key no index leads with:
/// every batch scans the whole child table, so the plan states how many
/// batches and rows that is.
async fn unindexed_children(db: &Db, sql: &RuleSql, matched: u64) -> Result<Vec<String>, Error> {
    fn walk<'a>(cs: &'a [ChildSql], out: &mut Vec<&'a ChildSql>) {
        for c in cs {
            out.push(c);
            walk(&c.children, out);
        }
    }
    let mut all = Vec::new();
    walk(&sql.children, &mut all);
    let batches = matched.div_ceil(sql.batch_size.max(1) as u64);
    let mut notes = Vec::new();
    for c in all {
        if c.table.info.indexed.contains(&c.fk.name) {
            continue;
        }
        let mut b = db.builder();
        b.push("SELECT COUNT(*) FROM ").push(&c.table.from);
        let rows = db.count(&b.finish()).await?;
        notes.push(format!(
            "child {} is found by `{}`, which no index leads with: each of about {batches} batch(es) scans its {rows} rows (about {} row reads); an index on `{}` makes it a lookup",
            c.display,
            c.fk.name,
            batches.saturating_mul(rows),
            c.fk.name
        ));
    }
    Ok(notes)
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

/// Where an `UPDATE` of `hashed` columns gets their values.
fn hash_source<'a>(
    d: &dyn crate::sql::Dialect,
    hashed: usize,
    pads: &'a crate::keys::HashPads,
    values: &'a [(String, Vec<Option<String>>)],
) -> Hashes<'a> {
    if hashed == 0 {
        Hashes::None
    } else if d.hashes_in_sql() {
        Hashes::InSql(pads)
    } else {
        Hashes::Bound(values)
    }
}

/// New values for the hashed columns of one row, `None` for a column that
/// stays (NULL, or already hashed); `None` if nothing changes.
fn rehash(keys: &Keys, values: &[Option<String>]) -> Option<Vec<Option<String>>> {
    let mut changed = false;
    let out = values
        .iter()
        .map(|v| match v {
            Some(v) if !looks_hashed(v) => {
                changed = true;
                Some(keys.pseudonym(v))
            }
            _ => None,
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
        let hashed = child.action.hash_columns();
        let pads = keys.pseudonym_pads();
        for chunk in parent_keys.chunks(KEY_CHUNK) {
            if !child.needs_keys(d) {
                // Hashes, if any, computed by the server in the same statement.
                let hashes = if hashed.is_empty() {
                    Hashes::None
                } else {
                    Hashes::InSql(&pads)
                };
                let n = tx
                    .execute(db, &child.act_by_parent(d, parent_key, chunk, hashes))
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
            let step = act_chunk(d, hashed.len());
            for part in rows.chunks(step) {
                let ks: Vec<String> = part.iter().filter_map(|r| r[0].clone()).collect();
                let values = if hashed.is_empty() || d.hashes_in_sql() {
                    vec![]
                } else {
                    part.iter()
                        .filter_map(|r| Some((r[0].clone()?, rehash(keys, &r[1..])?)))
                        .collect()
                };
                let hashes = hash_source(d, hashed.len(), &pads, &values);
                tx.execute(db, &child.act_by_keys(d, &ks, hashes)).await?;
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

/// A connection outage in progress: when it began and how many times the
/// work was tried again since. Reset by every commit.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    attempts: u32,
}

impl Outage {
    /// After a lost connection (`Error::Connection`, before any commit was
    /// asked for): wait (100 ms, doubling, at most 2 s) and return `Ok` to
    /// try again, for as long as `budget` (the source's `reconnect_for`)
    /// allows since the outage began. Any other error, or an outage longer
    /// than the budget, comes back as `Err`, saying how long was tried.
    async fn wait(&mut self, source: &str, budget: Duration, e: Error) -> Result<(), Error> {
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
    /// The size a time-sized batch was given (recorded with it).
    limit: Option<u64>,
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
async fn record_pending(state: Option<&State>, r: &linked::Resolved) -> Result<(), Error> {
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
        batch_size: done.limit,
        partition: done.partition.clone(),
    }
}

/// The record that a recorded batch did not commit after all — or, when the
/// connection was lost while it was committing, that whether it did is
/// unknown (never a rollback it may not have been).
fn rollback_event(ctx: &JobCtx<'_>, rule: &Rule, batch: u64, e: &Error) -> Event {
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
