//! Request jobs (`trigger = "request"`): the same rules, children, objects,
//! holds, guards, batches and audit as every job, acting on one subject at a
//! time — the subject of each open erasure request.
//!
//! Owns the loop over requests, the re-query after each rule that proves
//! nothing of the subject is left, and settling requests once every request
//! job has run for them (`done`, or `held` with what keeps them). One
//! subject per rule run means a rule's `max_rows` guards one subject's blast
//! radius.
//!
//! It must never run a request rule without a subject: `RuleSql::subjects`
//! starts empty (matches nothing) and is set here to one value, bound, never
//! spliced into SQL.

use super::{
    JobCtx, JobReport, RuleReport, RuleStatus, RunOptions, Shard, Sources, prepare_rule, run_rule,
};
use crate::audit::{AuditWriter, Event};
use crate::config::{Loaded, Rule, Trigger};
use crate::error::Error;
use crate::requests::process::{Completion, Outcome, OutcomeLine, ts};
use crate::requests::{Kind, Request, RequestState};
use crate::sql::Db;
use crate::state::State;
use chrono::{DateTime, Utc};
use tracing::Instrument;

/// Rows of `subject` that `rule` still selects, held ones included.
async fn left_of(db: &Db, rule: &Rule, subject: &str, as_of: DateTime<Utc>) -> Result<u64, Error> {
    let mut sql = prepare_rule(db, rule, as_of)
        .await
        .map_err(|p| Error::Schema(p.join("; ")))?;
    sql.subjects = Some(vec![subject.to_string()]);
    let d = db.dialect();
    let eligible = db.count(&sql.count_eligible(d)).await?;
    let held = match sql.hold.is_some() {
        true => db.count(&sql.count_held(d)).await?,
        false => 0,
    };
    Ok(eligible + held)
}

/// What keeps part of a subject's rows, read from the rule's report.
fn kept_reasons(rule: &Rule, report: &RuleReport) -> Vec<String> {
    let mut out = Vec::new();
    if report.held > 0 {
        let list = rule
            .hold
            .as_ref()
            .map(|h| format!("{}.{}", h.table, h.column))
            .unwrap_or_default();
        out.push(format!(
            "legal hold ({list}): {} row(s) of {}",
            report.held, report.target
        ));
    }
    for o in report.objects.iter().filter(|o| o.held > 0) {
        out.push(format!(
            "Object Lock: {} object(s) in {} ({})",
            o.held, o.store, o.via
        ));
    }
    out
}

/// Run every rule of a request job once per open erasure request.
pub(super) async fn run_rules(
    ctx: &mut JobCtx<'_>,
    sources: &mut Sources<'_>,
    out: &mut Vec<RuleReport>,
) -> Result<(), Error> {
    let job = ctx.job;
    if let Some(Shard { index, .. }) = ctx.opts.shard
        && index != 0
    {
        // A subject's rows are few: shard 0 takes every request whole, so
        // the re-query sees the whole key space.
        tracing::info!(job = %job.name, "request jobs run on shard 0 only");
        return Ok(());
    }
    let opts = RunOptions {
        shard: None,
        ..ctx.opts.clone()
    };
    let requests: Vec<&Request> = ctx
        .requests
        .iter()
        .filter(|r| r.kind == Kind::Erasure && r.subject.is_some())
        .collect();
    let mut inner = JobCtx {
        job,
        keys: ctx.keys,
        audit: ctx.audit,
        opts: &opts,
        requests: ctx.requests,
        state: ctx.state,
    };
    for req in requests {
        let subject = req.subject.as_deref().expect("filtered");
        let span = tracing::info_span!("request", request = %req.id);
        for rule in job.rules.iter().filter(|r| r.by_request) {
            if opts.cancel.is_cancelled() {
                return Ok(());
            }
            let mut report = run_rule(&mut inner, rule, sources, Some(subject))
                .instrument(span.clone())
                .await?;
            report.request = Some(req.id.clone());
            report.kept = kept_reasons(rule, &report);
            if opts.mode.acts() && report.status == RuleStatus::Done {
                let left = match sources.get(&rule.target.source).await {
                    Ok(db) => left_of(db, rule, subject, opts.as_of).await,
                    Err(e) => Err(Error::Other(e)),
                };
                match left {
                    Ok(n) => report.left = Some(n),
                    Err(e) => {
                        tracing::error!(error = %e, "the re-query after the rule failed");
                        report.message = Some(format!("re-query failed: {e}"));
                    }
                }
            }
            out.push(report);
        }
    }
    Ok(())
}

/// How one request stands after this run's request jobs.
enum Verdict {
    Done,
    Held(Vec<String>),
    /// A rule failed, a guard stopped it, or a job did not run: next run.
    Open,
}

fn verdict(loaded: &Loaded, reports: &[JobReport], req: &Request) -> Verdict {
    let mut kept = Vec::new();
    for job in loaded
        .jobs
        .iter()
        .filter(|j| j.trigger == Trigger::Request && !j.manual)
    {
        let Some(jr) = reports.iter().find(|r| r.job == job.name) else {
            return Verdict::Open;
        };
        for rule in job.rules.iter().filter(|r| r.by_request) {
            let Some(rr) = jr
                .rules
                .iter()
                .find(|r| r.rule == rule.name && r.request.as_deref() == Some(req.id.as_str()))
            else {
                return Verdict::Open;
            };
            match rr.left {
                // Every row went, but Object Lock kept some of its objects
                // (they are pending): held, and the receipt says why.
                Some(0) if !rr.kept.is_empty() => kept.extend(rr.kept.iter().cloned()),
                Some(0) => {}
                Some(_) if !rr.kept.is_empty() => kept.extend(rr.kept.iter().cloned()),
                _ => return Verdict::Open,
            }
        }
    }
    if kept.is_empty() {
        Verdict::Done
    } else {
        Verdict::Held(kept)
    }
}

/// This run's counts for one request, for its receipt.
fn outcome_lines(reports: &[JobReport], req: &Request, at: &str) -> Vec<OutcomeLine> {
    let mut out = Vec::new();
    for rr in reports
        .iter()
        .flat_map(|j| j.rules.iter())
        .filter(|r| r.request.as_deref() == Some(req.id.as_str()))
    {
        let line = |target: &str, action: &str, count: u64| OutcomeLine {
            job: rr.job.clone(),
            rule: rr.rule.clone(),
            policy: rr.policy.clone(),
            target: target.to_string(),
            action: action.to_string(),
            count,
            at: at.to_string(),
        };
        out.push(line(&rr.target, rr.action.as_str(), rr.done));
        for c in &rr.children {
            out.push(line(&c.target, &c.action, c.count));
        }
        for o in &rr.objects {
            out.push(line(&o.via, "erase", o.objects));
        }
    }
    out
}

/// After the jobs of an executed run: merge each open request's outcome,
/// and move it to `done` or `held` when every request job handled it.
/// One run at a time settles (a lease); each change is recorded before the
/// store changes.
pub(super) async fn settle(
    loaded: &Loaded,
    audit: &mut AuditWriter,
    state: &State,
    run_id: &str,
    reports: &[JobReport],
    open: &[Request],
    as_of: DateTime<Utc>,
) -> Result<Vec<Completion>, Error> {
    let any_request_job = reports.iter().any(|j| {
        loaded
            .job(&j.job)
            .is_some_and(|job| job.trigger == Trigger::Request)
    });
    if !any_request_job || open.is_empty() {
        return Ok(vec![]);
    }
    const LEASE: &str = "requests:settle";
    if !state.acquire(LEASE, run_id).await? {
        tracing::info!("another run is settling requests; this one leaves them to it");
        return Ok(vec![]);
    }
    let result = settle_leased(loaded, audit, state, reports, open, as_of).await;
    state.release(LEASE, run_id).await?;
    result
}

async fn settle_leased(
    loaded: &Loaded,
    audit: &mut AuditWriter,
    state: &State,
    reports: &[JobReport],
    open: &[Request],
    as_of: DateTime<Utc>,
) -> Result<Vec<Completion>, Error> {
    let dl = &loaded.config.requests.deadlines;
    let at = ts(as_of);
    let mut completed = Vec::new();
    for req in open.iter().filter(|r| r.kind == Kind::Erasure) {
        let mut outcome = Outcome::parse(state.request_outcome(&req.id).await?.as_deref());
        let before = outcome.clone();
        for l in outcome_lines(reports, req, &at) {
            outcome.add(l);
        }
        let verdict = verdict(loaded, reports, req);
        if let Verdict::Held(k) = &verdict {
            outcome.kept = k.clone();
        } else if matches!(verdict, Verdict::Done) {
            outcome.kept.clear();
        }
        if outcome != before {
            let json = serde_json::to_string(&outcome)
                .map_err(|e| Error::Other(format!("request outcome: {e}")))?;
            state.set_request_outcome(&req.id, &json).await?;
        }
        match verdict {
            Verdict::Open => {}
            Verdict::Done => {
                audit.append(Event::RequestDone {
                    request: req.id.clone(),
                    kind: req.kind.as_str().into(),
                    subject: req.subject_hash.clone(),
                    received: ts(req.received),
                    due: ts(req.due),
                    completed: at.clone(),
                    on_time: as_of <= req.due,
                    working_days: dl.working_days_taken(req.received, as_of),
                })?;
                state
                    .move_request(
                        &req.id,
                        &[RequestState::Pending, RequestState::Held],
                        RequestState::Done,
                        None,
                        None,
                        as_of,
                    )
                    .await?;
                completed.push(Completion {
                    kind: req.kind,
                    working_days: dl.working_days_taken(req.received, as_of),
                    on_time: as_of <= req.due,
                });
                tracing::info!(request = %req.id, on_time = as_of <= req.due, "request done");
            }
            Verdict::Held(reasons) => {
                let reason = reasons.join("; ");
                if req.state == RequestState::Held && req.reason.as_deref() == Some(reason.as_str())
                {
                    continue;
                }
                audit.append(Event::RequestHeld {
                    request: req.id.clone(),
                    kind: req.kind.as_str().into(),
                    subject: req.subject_hash.clone(),
                    due: ts(req.due),
                    reasons: reasons.clone(),
                })?;
                state
                    .move_request(
                        &req.id,
                        &[RequestState::Pending, RequestState::Held],
                        RequestState::Held,
                        Some(&reason),
                        None,
                        as_of,
                    )
                    .await?;
                tracing::info!(request = %req.id, "request held");
            }
        }
    }
    Ok(completed)
}
