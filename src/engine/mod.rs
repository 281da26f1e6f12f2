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
//! and `sql::Db` to run them. Dry run is one decision (`Mode::acts`): a
//! counted, guarded rule goes to its plan or to the batch loop, never both.
//!
//! Here: a run (its state stores, audit log and the one seal every exit
//! path ends with) and its jobs (leases). One rule is `rule.rs`; the batch
//! loops, commit and retry `batch.rs`; children `cascade.rs`; the report
//! types `report.rs`; the options `options.rs`; `pause_when` `throttle.rs`.

mod batch;
mod cascade;
mod object_rules;
mod options;
mod partitions;
mod pending;
mod recovery;
mod report;
mod request_jobs;
mod rule;
pub(crate) mod sizing;
pub mod throttle;
mod windows;
pub use crate::plan::{Sources, WalkReport};
pub use batch::act_next_batch;
pub use options::{Mode, Progress, RuleProgress, RunOptions, Shard};
pub use partitions::PartitionReport;
pub use pending::PendingLine;
pub use report::{BatchSizes, JobReport, RuleReport, RuleStatus, RunReport};
// The pieces the loops in `partitions` and `windows` share with `batch`.
use crate::plan::guards::guard_reason;
use batch::{BatchDone, batch_event, count_batch, roll_back_or_retry, rollback_event};
use report::blank_report;
use rule::{fail, record_plan, run_rule};

use crate::audit::{AuditWriter, Event, JobOutcome, Totals};
use crate::config::{Job, Loaded, Rule};
use crate::error::{Error, ExitCode};
use crate::keys::Keys;
use crate::objects::Stores;
use crate::sql::Db;
use crate::sql::statements::RuleSql;
use crate::state::State;
use crate::status::{ActionKind, JobStatus, RunStatus};
use chrono::{DateTime, Utc};
use std::time::Instant;
use tracing::Instrument;

/// How many held subjects one hold record lists at most.
const HELD_SUBJECTS_MAX: usize = 1_000;

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

/// Run (or dry-run) the selected jobs and write one audit file.
pub async fn run(loaded: &Loaded, keys: &Keys, opts: RunOptions) -> Result<RunReport, Error> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let shard_label = opts.shard.map(|s| s.to_string()).unwrap_or_default();
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
    let (stores, prev) = StateStores::open(loaded, opts.mode).await?;
    // Requests are read in every mode: a plan shows them, and every run
    // exits 5 while one is overdue.
    let open_requests = match stores.read().open_requests().await {
        Ok(r) => r,
        Err(e) => {
            stores.close().await;
            return Err(e);
        }
    };
    // The audit sink before any data is touched: if it cannot be written,
    // the run stops here, having deleted nothing.
    let mut audit = match AuditWriter::create(&loaded.config.audit.dir, &run_id, &keys.key_id) {
        Ok(a) => a,
        Err(e) => {
            stores.close().await;
            return Err(e);
        }
    };
    let start = run_start_event(loaded, keys, &opts, &jobs, prev);
    let ids = RunIds {
        lease: State::run_lease(&run_id),
        run: run_id,
    };
    let s3_sink = match start_log(loaded, stores.state.as_ref(), &mut audit, start, &ids).await {
        Ok(sink) => sink,
        Err(e) => {
            stores.close_plan().await;
            return Err(e);
        }
    };
    tracing::info!(mode = ?opts.mode, jobs = jobs.len(), "run started");
    let mut run = RunCtx {
        loaded,
        keys,
        opts: &opts,
        stores: &stores,
        audit: &mut audit,
        s3_sink: s3_sink.as_ref(),
        ids: &ids,
    };
    let ran = run.jobs(&jobs, open_requests).await?;
    stores.close_plan().await;
    finish(run, ran).await
}

/// The state store of a run: `state` for an executed run (leases, the
/// run's row, held objects), else `plan`, opened only to read requests.
struct StateStores {
    state: Option<State>,
    plan: Option<State>,
}

impl StateStores {
    /// Open the store, and name the run this one links to (executed runs
    /// only). Unreachable for an executed run: the run stops here, before
    /// its log or any data.
    async fn open(
        loaded: &Loaded,
        mode: Mode,
    ) -> Result<(Self, Option<crate::state::StateRun>), Error> {
        let (url, ttl) = (&loaded.config.state.url, loaded.config.state.lease_ttl);
        if !mode.acts() {
            let plan = State::open(url, ttl).await?;
            return Ok((
                Self {
                    state: None,
                    plan: Some(plan),
                },
                None,
            ));
        }
        let s = State::open(url, ttl).await.map_err(|e| {
            Error::State(format!(
                "cannot open {} ({}); nothing was touched",
                crate::config::redact_url(url),
                e.to_string().trim_start_matches("state store: ")
            ))
        })?;
        match s.last_run().await {
            Ok(prev) => Ok((
                Self {
                    state: Some(s),
                    plan: None,
                },
                prev,
            )),
            Err(e) => {
                s.close().await;
                Err(e)
            }
        }
    }

    /// The store requests and the pending-erasure list are read from.
    fn read(&self) -> &State {
        self.state
            .as_ref()
            .or(self.plan.as_ref())
            .expect("one of the two is open")
    }

    /// Close whichever is open (a run that stops before its log exists).
    async fn close(&self) {
        self.read().close().await;
    }

    /// Close the read-only store of a plan; the state store of an executed
    /// run is closed by [`seal`], after the run's end is recorded in it.
    async fn close_plan(&self) {
        if let Some(p) = &self.plan {
            p.close().await;
        }
    }
}

/// The run's id and the name of its lease in the state store.
struct RunIds {
    run: String,
    lease: String,
}

/// Everything the steps of a run share once its log is open.
struct RunCtx<'r> {
    loaded: &'r Loaded,
    keys: &'r Keys,
    opts: &'r RunOptions,
    stores: &'r StateStores,
    audit: &'r mut AuditWriter,
    s3_sink: Option<&'r crate::audit::s3::S3AuditSink>,
    ids: &'r RunIds,
}

/// The first record of a run's log.
fn run_start_event(
    loaded: &Loaded,
    keys: &Keys,
    opts: &RunOptions,
    jobs: &[&Job],
    prev: Option<crate::state::StateRun>,
) -> Event {
    Event::RunStart {
        version: env!("CARGO_PKG_VERSION").to_string(),
        command: match opts.mode {
            Mode::Plan => "plan",
            _ => "run",
        }
        .into(),
        dry_run: !opts.mode.acts(),
        as_of: opts.as_of.to_rfc3339(),
        config_digest: loaded.config_digest.clone(),
        jobs_digest: loaded.jobs_digest.clone(),
        jobs: jobs.iter().map(|j| j.name.clone()).collect(),
        key_id: keys.key_id.clone(),
        shard: opts.shard.map(|s| s.to_string()),
        prev_run: prev.as_ref().map(|p| p.run_id.clone()),
        prev_head: prev.and_then(|p| p.head_hash),
    }
}

/// Start the run in the state store and its log: the run lease first, then
/// the row, then the first record (a `running` row without a live run
/// lease is a crashed run, which the next run of its jobs recovers; a log
/// left empty was never started). Then the S3 copy of the log, when
/// configured, which must take the first record before anything is
/// touched. Each failure seals what was written and stops the run.
async fn start_log(
    loaded: &Loaded,
    state: Option<&State>,
    audit: &mut AuditWriter,
    start: Event,
    ids: &RunIds,
) -> Result<Option<crate::audit::s3::S3AuditSink>, Error> {
    let audit_path = audit.path().display().to_string();
    if let Some(s) = state
        && let Err(e) = async {
            s.acquire(&ids.lease, &ids.run).await?;
            s.run_started(&ids.run, "run", &audit_path).await
        }
        .await
    {
        // Seal what was written, so the log says why this run did nothing.
        let _ = audit.append(start);
        let _ = seal(
            audit,
            state,
            ids,
            None,
            Seal::failed(Row::NotWritten, false),
        )
        .await;
        return Err(e);
    }
    if let Err(e) = audit.append(start) {
        let _ = seal(audit, state, ids, None, Seal::unlogged()).await;
        return Err(e);
    }
    let Some(s3) = &loaded.config.audit.s3 else {
        return Ok(None);
    };
    let opened = match crate::audit::s3::S3AuditSink::open(&loaded.config, s3).await {
        Ok(sink) => sink.put(audit.path()).await.map(|_| sink),
        Err(e) => Err(e),
    };
    match opened {
        Ok(sink) => Ok(Some(sink)),
        Err(e) => {
            tracing::error!(error = %e, "the S3 audit sink failed; nothing was touched");
            let _ = seal(audit, state, ids, None, Seal::failed(Row::Records, false)).await;
            Err(e)
        }
    }
}

/// What the run's row in the state store gets when the run ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    /// The row was never written: nothing to record.
    NotWritten,
    /// The log took no record: the row records none.
    Empty,
    /// The row records the log's head and how many records it holds.
    Records,
}

/// How a run ends: what [`seal`] writes to the log and the state store.
struct Seal {
    status: RunStatus,
    /// The `run_end` record's totals and jobs; `None` when the log could
    /// not take even the first record.
    end: Option<(Totals, Vec<JobOutcome>)>,
    row: Row,
    /// Release the run lease (the lease otherwise expires on its own).
    release: bool,
    /// A run that got to its jobs: failures to record its end are logged.
    ran: bool,
}

impl Seal {
    /// A run that stopped before any job, its log open.
    fn failed(row: Row, release: bool) -> Self {
        Self {
            status: RunStatus::Failed,
            end: Some((Totals::default(), vec![])),
            row,
            release,
            ran: false,
        }
    }

    /// A run whose log could not take its first record.
    fn unlogged() -> Self {
        Self {
            end: None,
            ..Self::failed(Row::Empty, true)
        }
    }
}

/// Seal the log and close the state store, on every way out of a run once
/// its log exists. A run that got to its jobs closes the log (and copies
/// it to S3); the result says whether that worked. Before the jobs, the
/// error that stopped the run is the one reported, so this one is not.
async fn seal(
    audit: &mut AuditWriter,
    state: Option<&State>,
    ids: &RunIds,
    s3: Option<&crate::audit::s3::S3AuditSink>,
    how: Seal,
) -> Result<(), Error> {
    let end = match how.end {
        Some((totals, jobs)) => audit.append(Event::RunEnd {
            status: how.status.into(),
            totals,
            jobs,
        }),
        None => Ok(()),
    };
    let end = match how.ran {
        true => end.and_then(|_| audit.close()),
        false => end,
    };
    // The sealed log to S3; the local file already holds every record.
    let end = match (s3, end) {
        (Some(sink), Ok(())) => sink.put(audit.path()).await.map(|_| ()),
        (_, other) => other,
    };
    let Some(state) = state else {
        return end;
    };
    let records = match how.row {
        Row::Empty => 0,
        _ => audit.records(),
    };
    if how.row != Row::NotWritten
        && let Err(e) = state
            .run_ended(&ids.run, how.status.as_str(), audit.head(), records)
            .await
        && how.ran
    {
        // The head kept outside the log: `audit verify` compares the two.
        tracing::error!(run = %ids.run, error = %e, "cannot record the run's head in the state store; `audit verify` will report the run as never ended");
    }
    if how.release
        && let Err(e) = state.release(&ids.lease, &ids.run).await
        && how.ran
    {
        tracing::warn!(error = %e, "cannot release the run lease; it expires on its own");
    }
    state.close().await;
    end
}

/// What the jobs of a run came to, before the run's end is recorded.
struct Ran {
    reports: Vec<JobReport>,
    totals: Totals,
    exit: ExitCode,
    /// The audit log or the state store failed: the run stops, failed.
    fatal: Option<Error>,
    request_lines: Vec<crate::requests::process::RequestLine>,
    request_completions: Vec<crate::requests::process::Completion>,
    pending_lines: Vec<PendingLine>,
}

impl Ran {
    /// Count a job's rules in the run's totals and exit code.
    fn count(&mut self, report: &JobReport, mode: Mode) {
        for r in &report.rules {
            self.exit = self.exit.worst(match r.status {
                RuleStatus::Pending => ExitCode::Pending,
                RuleStatus::Done => ExitCode::Ok,
                RuleStatus::Guard => ExitCode::Guard,
                RuleStatus::Failed => ExitCode::Partial,
                RuleStatus::Interrupted => ExitCode::Ok,
            });
            let totals = &mut self.totals;
            match r.action {
                ActionKind::Delete => totals.deleted += r.done,
                ActionKind::Anonymize => totals.anonymized += r.done,
                ActionKind::Erase => {}
            }
            object_rules::add_totals(totals, r, mode);
            totals.held += r.held;
            totals.failed_rules += u64::from(r.status == RuleStatus::Failed);
            totals.guard_trips += u64::from(r.status == RuleStatus::Guard);
        }
    }
}

impl RunCtx<'_> {
    /// Everything between the first record and the last: intake, recovery,
    /// held objects, the jobs, the requests they settled. `Err` only when
    /// the audit log fails while taking requests in (the run stops there).
    async fn jobs(
        &mut self,
        jobs: &[&Job],
        open: Vec<crate::requests::Request>,
    ) -> Result<Ran, Error> {
        let (open, intake_failed) = self.take_intake(open).await?;
        let mut sources = Sources::new(self.loaded);
        let fatal = self.before_jobs(jobs, &sources.stores).await.err();
        let mut ran = Ran {
            reports: Vec::new(),
            totals: Totals::default(),
            exit: if intake_failed {
                ExitCode::Partial
            } else {
                ExitCode::Ok
            },
            fatal,
            request_lines: Vec::new(),
            request_completions: Vec::new(),
            pending_lines: Vec::new(),
        };
        for job in jobs {
            if ran.fatal.is_some() || self.opts.cancel.is_cancelled() {
                break;
            }
            self.job(job, &open, &mut sources, &mut ran).await;
        }
        sources.close().await;
        if ran.fatal.is_none() {
            self.settle(&open, &mut ran).await;
        }
        // What Object Lock still keeps, as the run leaves it (plan: as it is).
        ran.pending_lines = match pending::lines(self.stores.read()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pending-erasure list for the report");
                vec![]
            }
        };
        Ok(ran)
    }

    /// Requests the application wrote into its intake table become ours
    /// before any job runs; a failing intake fails no rule, but says so
    /// (`true`: the run exits partial).
    async fn take_intake(
        &mut self,
        open: Vec<crate::requests::Request>,
    ) -> Result<(Vec<crate::requests::Request>, bool), Error> {
        let stores = self.stores;
        let Some(s) = stores.state.as_ref() else {
            return Ok((open, false));
        };
        if self.loaded.config.requests.intake.is_none() {
            return Ok((open, false));
        }
        let (loaded, keys, run, as_of) = (self.loaded, self.keys, &self.ids.run, self.opts.as_of);
        match crate::requests::intake::take(loaded, keys, s, self.audit, run, as_of).await {
            Ok(0) => Ok((open, false)),
            Ok(_) => match s.open_requests().await {
                Ok(r) => Ok((r, false)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the requests just taken");
                    Ok((open, true))
                }
            },
            Err(Error::Audit(a)) => Err(Error::Audit(a)),
            Err(e) => {
                tracing::error!(error = %e, "cannot take requests from the intake table");
                Ok((open, true))
            }
        }
    }

    /// Before any job of an executed run: crashed runs are recovered (only
    /// the audit log fails that: nothing may be touched), then held objects
    /// whose hold has ended are erased (every executed run, whatever its
    /// jobs: the list outlives the rules that filled it).
    async fn before_jobs(&mut self, jobs: &[&Job], objects: &Stores) -> Result<(), Error> {
        let stores = self.stores;
        let Some(s) = stores.state.as_ref() else {
            return Ok(());
        };
        let (loaded, opts, run) = (self.loaded, self.opts, &self.ids.run);
        recovery::recover_crashed(loaded, s, self.audit, self.s3_sink, jobs, opts, run).await?;
        pending::retry(s, objects, self.audit, self.keys).await
    }

    /// Run one job (under its lease, in an executed run) and count it.
    async fn job(
        &mut self,
        job: &Job,
        open: &[crate::requests::Request],
        sources: &mut Sources<'_>,
        ran: &mut Ran,
    ) {
        let state = self.stores.state.as_ref();
        let mut ctx = JobCtx {
            job,
            keys: self.keys,
            audit: self.audit,
            opts: self.opts,
            requests: open,
            state,
        };
        let res = match state {
            Some(state) => run_job_leased(&mut ctx, state, &self.ids.run, sources).await,
            None => run_job(&mut ctx, sources).await.map(Some),
        };
        match res {
            Ok(Some(report)) => {
                ran.count(&report, self.opts.mode);
                ran.reports.push(report);
            }
            Ok(None) => {
                ran.exit = ran.exit.worst(ExitCode::Locked);
                ran.reports.push(JobReport {
                    job: job.name.clone(),
                    policy: job.policy.clone(),
                    status: JobStatus::Locked,
                    duration_ms: 0,
                    rules: vec![],
                });
            }
            // The audit log or the state store failed: stop everything.
            Err(e) => ran.fatal = Some(e),
        }
    }

    /// Requests whose subjects every request job has now handled become
    /// done or held; then the overdue ones set the exit code.
    async fn settle(&mut self, open: &[crate::requests::Request], ran: &mut Ran) {
        let stores = self.stores;
        let settled = match &stores.state {
            Some(s) if !self.opts.cancel.is_cancelled() => {
                let (loaded, run, as_of) = (self.loaded, &self.ids.run, self.opts.as_of);
                request_jobs::settle(loaded, self.audit, s, run, &ran.reports, open, as_of).await
            }
            _ => Ok(vec![]),
        };
        let lines = match settled {
            Ok(done) => {
                ran.request_completions = done;
                crate::requests::process::lines(self.loaded, stores.read(), self.opts.as_of).await
            }
            Err(e) => Err(e),
        };
        match lines {
            Ok(lines) => {
                if lines.iter().any(|l| l.overdue) {
                    ran.exit = ran.exit.worst(ExitCode::Overdue);
                }
                ran.request_lines = lines;
            }
            // The state store went away after the jobs (it also keeps the
            // run from recording its end): what the rules did stands, the
            // requests stay as they were, and the next run settles them and
            // tells whether one is overdue.
            Err(Error::State(e)) => {
                tracing::error!(error = %e, "cannot settle or list the open requests; the next run does");
                ran.exit = ran.exit.worst(ExitCode::Partial);
            }
            Err(e) => ran.fatal = Some(e),
        }
    }
}

/// How the run ended, from what its jobs came to.
fn run_status(fatal: bool, interrupted: bool, exit: ExitCode) -> RunStatus {
    if fatal {
        RunStatus::Failed
    } else if interrupted {
        RunStatus::Interrupted
    } else if exit == ExitCode::Ok || exit == ExitCode::Pending || exit == ExitCode::Overdue {
        // Overdue requests are not a failure of this run's rules.
        RunStatus::Completed
    } else {
        RunStatus::Partial
    }
}

/// The run's end: its status, the sealed log (and its S3 copy), the run's
/// row, and the report.
async fn finish(run: RunCtx<'_>, ran: Ran) -> Result<RunReport, Error> {
    let RunCtx {
        opts,
        audit,
        s3_sink,
        ids,
        stores,
        ..
    } = run;
    // A signal stops the whole run; a lost lease stops one job: either way
    // some work was left for the next run.
    let interrupted = opts.cancel.is_cancelled()
        || ran
            .reports
            .iter()
            .any(|j| j.rules.iter().any(|r| r.status == RuleStatus::Interrupted));
    let status = run_status(ran.fatal.is_some(), interrupted, ran.exit);
    let jobs = ran
        .reports
        .iter()
        .map(|j| JobOutcome {
            job: j.job.clone(),
            status: j.status.into(),
        })
        .collect();
    let how = Seal {
        status,
        end: Some((ran.totals.clone(), jobs)),
        row: Row::Records,
        release: true,
        ran: true,
    };
    let end = seal(audit, stores.state.as_ref(), ids, s3_sink, how).await;
    if let Some(e) = ran.fatal {
        return Err(e);
    }
    end?;
    let totals = ran.totals;
    tracing::info!(run = %ids.run, status = status.as_str(), deleted = totals.deleted, anonymized = totals.anonymized, held = totals.held, "run ended");
    Ok(RunReport {
        run: ids.run.clone(),
        mode: opts.mode,
        as_of: opts.as_of.to_rfc3339(),
        audit_file: audit.path().display().to_string(),
        status,
        totals,
        jobs: ran.reports,
        requests: ran.request_lines,
        pending: ran.pending_lines,
        request_completions: ran.request_completions,
        exit: if interrupted {
            ran.exit.worst(ExitCode::Partial)
        } else {
            ran.exit
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
        Some(shard) => format!("job:{}:shard:{shard}", ctx.job.name),
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
        JobStatus::Partial
    } else if rules.iter().any(|r| r.status == RuleStatus::Guard) {
        JobStatus::Guard
    } else if ctx.opts.cancel.is_cancelled() {
        JobStatus::Interrupted
    } else if rules.iter().any(|r| r.status == RuleStatus::Pending) {
        JobStatus::Pending
    } else {
        JobStatus::Done
    };
    Ok(JobReport {
        job: job.name.clone(),
        policy: job.policy.clone(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_status_puts_failure_before_interruption_before_the_exit_code() {
        assert_eq!(run_status(true, true, ExitCode::Ok), RunStatus::Failed);
        assert_eq!(
            run_status(false, true, ExitCode::Partial),
            RunStatus::Interrupted
        );
        for ok in [ExitCode::Ok, ExitCode::Pending, ExitCode::Overdue] {
            assert_eq!(run_status(false, false, ok), RunStatus::Completed);
        }
        for bad in [ExitCode::Partial, ExitCode::Guard, ExitCode::Locked] {
            assert_eq!(run_status(false, false, bad), RunStatus::Partial);
        }
    }
}
