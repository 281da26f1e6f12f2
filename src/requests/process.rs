//! Filing, rejecting and reporting requests, and the receipt's facts.
//!
//! Owns the commands' side of requests (`request add | reject`), the lines
//! `request list`, `plan` and `run` show, the merged outcome a receipt reads,
//! and the small audit session a command that changes a request writes
//! (its own run in the log and in the state store, so `audit verify` sees
//! an unbroken chain of runs).
//!
//! It must never print, log or record a raw subject: lines, outcomes and
//! audit records carry the keyed hash.

use super::{Kind, Request, RequestState, check_reason, store};
use crate::audit::{AuditWriter, Event, Totals};
use crate::config::Loaded;
use crate::error::Error;
use crate::keys::Keys;
use crate::state::State;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// RFC 3339 in UTC, seconds precision: how requests show instants.
pub fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A request a run completed: what the completion histogram counts.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub kind: Kind,
    pub working_days: i64,
    pub on_time: bool,
}

/// One request as `request list`, `plan` and `run` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestLine {
    pub id: String,
    pub kind: Kind,
    pub state: RequestState,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub subject_hash: String,
    pub received: String,
    pub due: String,
    /// Working days left until the due instant; negative once it passed.
    pub working_days_left: i64,
    pub overdue: bool,
    /// Why it is held or rejected.
    pub reason: Option<String>,
    pub closed: Option<String>,
}

/// An instant in the requests' time zone (`[requests] time_zone`), where
/// "the end of the working day" is read: `2026-10-22T23:59:59+08:00`.
pub fn local_ts(loaded: &Loaded, at: DateTime<Utc>) -> String {
    at.with_timezone(&loaded.config.requests.deadlines.tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One request as `request list` / `status` show it: its state, due date
/// and working days left in the configured calendar (never the subject).
pub fn line(loaded: &Loaded, r: &Request, now: DateTime<Utc>) -> RequestLine {
    let dl = &loaded.config.requests.deadlines;
    RequestLine {
        id: r.id.clone(),
        kind: r.kind,
        state: r.state,
        ref_: r.ref_.clone(),
        subject_hash: r.subject_hash.clone(),
        received: local_ts(loaded, r.received),
        due: local_ts(loaded, r.due),
        working_days_left: if r.state.is_open() {
            dl.working_days_left(r.due, now)
        } else {
            0
        },
        overdue: r.overdue(now),
        reason: r.reason.clone(),
        closed: r.closed.map(|c| local_ts(loaded, c)),
    }
}

/// The open requests (pending and held), as lines.
pub async fn lines(
    loaded: &Loaded,
    state: &State,
    now: DateTime<Utc>,
) -> Result<Vec<RequestLine>, Error> {
    Ok(state
        .open_requests()
        .await?
        .iter()
        .map(|r| line(loaded, r, now))
        .collect())
}

/// A short run of its own in the audit log for a command that changes
/// requests: run start, `events`, seal; recorded in the state store like
/// every run (and copied to the S3 sink when one is configured).
pub async fn audit_session(
    loaded: &Loaded,
    keys: &Keys,
    state: &State,
    as_of: DateTime<Utc>,
    events: Vec<Event>,
) -> Result<(), Error> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prev = state.last_run().await?;
    let mut audit = AuditWriter::create(&loaded.config.audit.dir, &run_id, &keys.key_id)?;
    audit.append(Event::RunStart {
        version: env!("CARGO_PKG_VERSION").to_string(),
        command: "request".into(),
        dry_run: false,
        as_of: as_of.to_rfc3339(),
        config_digest: loaded.config_digest.clone(),
        jobs_digest: loaded.jobs_digest.clone(),
        jobs: vec![],
        key_id: keys.key_id.clone(),
        shard: None,
        prev_run: prev.as_ref().map(|p| p.run_id.clone()),
        prev_head: prev.and_then(|p| p.head_hash),
    })?;
    state
        .run_started(&run_id, "request", &audit.path().display().to_string())
        .await?;
    let mut status = "completed";
    let mut failed = None;
    for e in events {
        if let Err(err) = audit.append(e) {
            status = "failed";
            failed = Some(err);
            break;
        }
    }
    let sealed = audit
        .append(Event::RunEnd {
            status: status.into(),
            totals: Totals::default(),
            jobs: vec![],
        })
        .and_then(|_| audit.close());
    state
        .run_ended(&run_id, status, audit.head(), audit.records())
        .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    sealed?;
    if let Some(s3) = &loaded.config.audit.s3 {
        let sink = crate::audit::s3::S3AuditSink::open(&loaded.config, s3).await?;
        sink.put(audit.path()).await?;
    }
    Ok(())
}

/// What `request add` (and intake) files.
pub struct NewRequest {
    pub kind: Kind,
    pub subject: String,
    pub received: DateTime<Utc>,
    pub ref_: Option<String>,
    /// `<source>.<table>#<row id>`: the unique key that makes intake take a row once.
    pub intake: Option<String>,
}

fn check_text(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() {
        return Err(Error::Usage(format!("{what} is empty")));
    }
    if v.len() > store::MAX_TEXT {
        return Err(Error::Usage(format!(
            "{what} is longer than {} bytes",
            store::MAX_TEXT
        )));
    }
    Ok(())
}

/// The request `n` becomes, with its due instant, before it is stored.
pub fn build(loaded: &Loaded, keys: &Keys, n: NewRequest) -> Result<Request, Error> {
    check_text("--subject", &n.subject)?;
    if let Some(r) = &n.ref_ {
        check_text("--ref", r)?;
    }
    Ok(Request {
        id: store::new_id(),
        kind: n.kind,
        state: RequestState::Pending,
        subject_hash: keys.subject(&n.subject),
        subject: Some(n.subject),
        received: n.received,
        due: loaded.config.requests.deadlines.due(n.received),
        ref_: n.ref_,
        reason: None,
        note: None,
        closed: None,
        intake: n.intake,
    })
}

/// The audit record of a filed request.
pub fn received_event(r: &Request) -> Event {
    Event::RequestReceived {
        request: r.id.clone(),
        kind: r.kind.as_str().into(),
        subject: r.subject_hash.clone(),
        received: ts(r.received),
        due: ts(r.due),
        intake: r
            .intake
            .as_deref()
            .map(|k| k.split('#').next().unwrap_or(k).to_string()),
    }
}

/// File one request (`request add`): stored, then recorded.
pub async fn add(
    loaded: &Loaded,
    keys: &Keys,
    state: &State,
    n: NewRequest,
    as_of: DateTime<Utc>,
) -> Result<Request, Error> {
    let r = build(loaded, keys, n)?;
    state.insert_request(&r, as_of).await?;
    audit_session(loaded, keys, state, as_of, vec![received_event(&r)]).await?;
    tracing::info!(request = %r.id, due = %ts(r.due), "request filed");
    Ok(r)
}

/// Reject an open request on a VII(7) ground; the raw subject goes.
pub async fn reject(
    loaded: &Loaded,
    keys: &Keys,
    state: &State,
    id: &str,
    reason: &str,
    note: &str,
    as_of: DateTime<Utc>,
) -> Result<Request, Error> {
    check_reason(reason).map_err(Error::Usage)?;
    if note.trim().is_empty() {
        return Err(Error::Usage(
            "--note is empty: say why (no personal data)".into(),
        ));
    }
    if note.len() > 1024 {
        return Err(Error::Usage("--note is longer than 1024 bytes".into()));
    }
    let r = state
        .request(id)
        .await?
        .ok_or_else(|| Error::Usage(format!("no request `{id}`")))?;
    if !r.state.is_open() {
        return Err(Error::Usage(format!(
            "request {id} is {}; only an open request can be rejected",
            r.state.as_str()
        )));
    }
    let event = Event::RequestRejected {
        request: r.id.clone(),
        kind: r.kind.as_str().into(),
        subject: r.subject_hash.clone(),
        due: ts(r.due),
        reason: reason.into(),
    };
    if !state
        .move_request(
            id,
            &[RequestState::Pending, RequestState::Held],
            RequestState::Rejected,
            Some(reason),
            Some(note),
            as_of,
        )
        .await?
    {
        return Err(Error::Usage(format!(
            "request {id} changed while it was being rejected; look again"
        )));
    }
    audit_session(loaded, keys, state, as_of, vec![event]).await?;
    Ok(state.request(id).await?.unwrap_or(r))
}

/// What was done for a request, per rule, merged across runs: the receipt's facts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub lines: Vec<OutcomeLine>,
    /// What keeps part of it (legal hold, Object Lock), as of the last run.
    #[serde(default)]
    pub kept: Vec<String>,
}

/// What one rule did for a request, as its receipt records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutcomeLine {
    pub job: String,
    pub rule: String,
    pub policy: String,
    pub target: String,
    /// `delete`, `anonymize` (kept, without the person) or `erase` (objects).
    pub action: String,
    pub count: u64,
    /// When the last of them was done.
    pub at: String,
}

impl Outcome {
    /// The outcome stored with a request; empty when none is stored or it
    /// cannot be read (a receipt then lists nothing rather than fail).
    pub fn parse(json: Option<&str>) -> Outcome {
        json.and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    /// Add `count` to the line for (job, rule, target, action).
    pub fn add(&mut self, l: OutcomeLine) {
        if l.count == 0 {
            return;
        }
        match self.lines.iter_mut().find(|o| {
            o.job == l.job && o.rule == l.rule && o.target == l.target && o.action == l.action
        }) {
            Some(o) => {
                o.count += l.count;
                o.at = l.at;
            }
            None => self.lines.push(l),
        }
    }
}

/// `check`'s warnings about the calendar: a request filed now, or an open
/// request, whose due instant falls in a year the calendar does not cover
/// (holidays not yet announced: only Monday–Friday counted). The state
/// store is read if it can be; when it cannot, only the first warning is given.
pub async fn calendar_warnings(loaded: &Loaded, now: DateTime<Utc>, out: &mut Vec<String>) {
    use chrono::Datelike;
    let rc = &loaded.config.requests;
    let uses_requests = rc.intake.is_some()
        || loaded
            .jobs
            .iter()
            .any(|j| j.trigger == crate::config::Trigger::Request);
    if !uses_requests {
        return;
    }
    let Some(file) = &rc.calendar_file else {
        out.push(
            "[requests] names no calendar: due instants count Monday to Friday only, without public holidays"
                .into(),
        );
        return;
    };
    let dl = &rc.deadlines;
    let year_of = |t: DateTime<Utc>| super::calendar::local_date(dl.tz, t).year();
    let last = dl.calendar.last_year();
    let filed_now = year_of(dl.due(now));
    if !dl.calendar.covers(filed_now) {
        out.push(format!(
            "{}: the calendar covers years up to {}, but a request received now is due in {filed_now}: add that year's holidays and make-up workdays",
            file.display(),
            last.map(|y| y.to_string()).unwrap_or_else(|| "none".into())
        ));
    }
    let Ok(state) = State::open(&loaded.config.state.url, loaded.config.state.lease_ttl).await
    else {
        return;
    };
    if let Ok(open) = state.open_requests().await {
        for r in open.iter().filter(|r| !dl.calendar.covers(year_of(r.due))) {
            out.push(format!(
                "request {} is due in {}, a year {} does not cover: its due instant counts Monday to Friday only",
                r.id,
                year_of(r.due),
                file.display()
            ));
        }
    }
    state.close().await;
}
