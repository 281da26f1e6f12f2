//! Crash recovery: a run finds the runs of its jobs that died without ending,
//! and records, in its own log, where their logs ended.
//!
//! A run holds a run lease (`run:<id>`) in the state store from its start to
//! its end and renews it while its jobs work. A run that the state store still
//! calls `running` but whose run lease is gone or expired died (SIGKILL, out
//! of memory, a lost node): nothing will ever seal its log. The next run that
//! shares one of its jobs (and its shard) writes a `recovery` record naming
//! it, with its record count and head as found and the batches it recorded
//! but never confirmed; marks it `crashed` in the state store with the same
//! count and head; and uploads its log, as found, to the S3 audit copy.
//! Nothing is redone here: a batch that did not commit left its rows due, and
//! the jobs' ordinary batches delete them again, recorded as their own.
//!
//! This module never writes to a crashed run's log (it stays exactly as the
//! crash left it) and never touches data.

use crate::audit::log::{Log, read_log};
use crate::audit::s3::S3AuditSink;
use crate::audit::{AuditWriter, Event, InDoubt};
use crate::config::{Job, Loaded};
use crate::error::Error;
use crate::state::State;
use std::path::PathBuf;

use super::RunOptions;

/// Renew this run's run lease (`run:<id>`), taken at run start. The job
/// leases' renewer calls this beside the job's own lease, and each job calls
/// it as it starts, so the lease lives while the run works; the gaps between
/// jobs are short beside `lease_ttl`. A failed renewal is only logged: the
/// job lease, renewed beside it, decides whether work stops.
pub(super) async fn renew_run_lease(state: &State, run: &str) {
    let lease = State::run_lease(run);
    match state.renew(&lease, run).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(lease, "the run lease was gone; taking it again");
            let _ = state.acquire(&lease, run).await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot renew the run lease"),
    }
}

/// The batches a crashed log recorded without confirming them: its last
/// record, if it is a batch, and — for a rule that runs side by side — up to
/// `concurrency` trailing batch records of that rule (each worker may have
/// had one in flight). Every other batch record is followed by a later
/// record of the same worker, which is only written after its commit (or
/// says it was rolled back).
pub fn in_doubt(log: &Log, loaded: &Loaded) -> Vec<InDoubt> {
    let verified: Vec<&Event> = log
        .entries
        .iter()
        .filter(|e| e.verified)
        .map(|e| &e.record.event)
        .collect();
    let (job, rule) = match verified.last() {
        Some(Event::Batch { job, rule, .. }) | Some(Event::ObjectBatch { job, rule, .. }) => {
            (job.clone(), rule.clone())
        }
        _ => return vec![],
    };
    let workers = loaded
        .job(&job)
        .and_then(|j| j.rules.iter().find(|r| r.name == rule))
        .map(|r| r.concurrency.max(1))
        .unwrap_or(1);
    let mut out = Vec::new();
    for e in verified.iter().rev() {
        if out.len() >= workers {
            break;
        }
        let doubt = match e {
            Event::Batch {
                job: j,
                rule: r,
                batch,
                count,
                keys_digest,
                ..
            } if *j == job && *r == rule => (*batch, *count, "batch", keys_digest),
            Event::ObjectBatch {
                job: j,
                rule: r,
                batch,
                objects,
                keys_digest,
                ..
            } if *j == job && *r == rule => (*batch, objects.objects, "object_batch", keys_digest),
            _ => break,
        };
        out.push(InDoubt {
            job: job.clone(),
            rule: rule.clone(),
            batch: doubt.0,
            count: doubt.1,
            kind: doubt.2.into(),
            keys_digest: doubt.3.clone(),
        });
    }
    out.reverse();
    out
}

/// Find and record the crashed runs this run's jobs finish. `Err` only when
/// this run's own audit log fails; a state store or S3 problem is logged and
/// leaves the recovery to a later run.
pub(super) async fn recover_crashed(
    loaded: &Loaded,
    state: &State,
    audit: &mut AuditWriter,
    s3: Option<&S3AuditSink>,
    jobs: &[&Job],
    opts: &RunOptions,
    run_id: &str,
) -> Result<(), Error> {
    let crashed = match state.crashed_runs(run_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for crashed runs; a later run will");
            return Ok(());
        }
    };
    let shard = opts.shard.map(|s| s.to_string());
    for c in crashed {
        // The log by its name in the configured folder (the run may have
        // been started from another directory), else where it was written.
        let name = PathBuf::from(&c.audit_file);
        let local = name
            .file_name()
            .map(|n| loaded.config.audit.dir.join(n))
            .filter(|p| p.exists())
            .unwrap_or_else(|| name.clone());
        let log = read_log(&local);
        if let Some((line, why)) = &log.report.broken_at {
            tracing::warn!(crashed_run = %c.run_id, line, why, "a crashed run's log cannot be recovered: it is missing or fails verification");
            continue;
        }
        // A log left empty: the run died before its first record, having
        // touched nothing; any run records where it ended.
        let shared: Vec<String> = match log.entries.first().map(|e| &e.record.event) {
            None => vec![],
            Some(Event::RunStart {
                jobs: its_jobs,
                shard: its_shard,
                ..
            }) => {
                if *its_shard != shard {
                    continue;
                }
                let shared: Vec<String> = its_jobs
                    .iter()
                    .filter(|j| jobs.iter().any(|mine| mine.name == **j))
                    .cloned()
                    .collect();
                if shared.is_empty() {
                    continue;
                }
                shared
            }
            Some(_) => continue,
        };
        let head = log.report.head.clone().unwrap_or_default();
        let records = log.report.records;
        let doubt = in_doubt(&log, loaded);
        audit.append(Event::Recovery {
            crashed_run: c.run_id.clone(),
            crashed_file: local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            records,
            head: head.clone(),
            jobs: shared,
            in_doubt: doubt.clone(),
        })?;
        tracing::warn!(
            crashed_run = %c.run_id,
            records,
            in_doubt = doubt.len(),
            "recovered a run that crashed; its pending work is redone by its jobs"
        );
        // A sealed log: the run died after its seal, before the state store
        // took its end; the store gets the end the log states.
        let marked = match log.entries.last().map(|e| &e.record.event) {
            Some(Event::RunEnd { status, .. }) => state
                .run_ended(&c.run_id, status, &head, records)
                .await
                .map(|_| true),
            _ => state.run_crashed(&c.run_id, &head, records).await,
        };
        if let Err(e) = marked {
            tracing::warn!(error = %e, "cannot mark the crashed run in the state store; its recovery record stands");
        }
        if let Some(sink) = s3
            && let Err(e) = sink.put(&local).await
        {
            tracing::warn!(error = %e, "cannot complete the crashed run's S3 audit copy");
        }
    }
    Ok(())
}
