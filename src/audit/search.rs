//! `lethe audit search`: every record about one subject, across runs.
//!
//! The auditor types the subject's raw id; it is hashed here with each
//! configured key (current and previous, found by the `kid` each record
//! carries) and compared with the keyed hashes in `batch` and `hold`
//! records. The raw id is never written anywhere: not to the output, the
//! logs, nor an error. A hit says what happened to the subject's row: erased,
//! anonymized, held, failed (the batch was rolled back) or unconfirmed (the
//! run stopped right after recording the batch, before it could record
//! anything else: the commit may or may not have happened, and the next run
//! redoes and records it).

use super::event::Event;
use super::log::{Entry, Log};
use crate::keys::KeyRing;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Filters besides the subject; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    /// A run id or its prefix (file names carry the first 8 characters).
    pub run: Option<String>,
    pub job: Option<String>,
    pub rule: Option<String>,
    /// Records at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Records at or before this instant.
    pub until: Option<DateTime<Utc>>,
    /// `delete`, `anonymize` or `hold`.
    pub action: Option<String>,
}

impl Filters {
    fn matches(&self, run: &str, ts: &str, job: &str, rule: &str, action: &str) -> bool {
        if self.run.as_deref().is_some_and(|r| !run.starts_with(r)) {
            return false;
        }
        if self.job.as_deref().is_some_and(|j| j != job)
            || self.rule.as_deref().is_some_and(|r| r != rule)
            || self.action.as_deref().is_some_and(|a| a != action)
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = DateTime::parse_from_rfc3339(ts).map(|t| t.with_timezone(&Utc)) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

/// A child table acted on in the same batch (counts are per batch, not per
/// subject, so they are not repeated here).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ChildLink {
    pub target: String,
    pub via: String,
    pub action: String,
}

/// One record about the subject.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Hit {
    pub run: String,
    pub ts: String,
    pub job: String,
    pub rule: String,
    pub policy: String,
    /// `delete`, `anonymize` or `hold`.
    pub action: String,
    pub target: String,
    /// `erased`, `anonymized`, `held`, `failed` or `unconfirmed`.
    pub outcome: String,
    /// The batch number within the rule (`None` for a hold).
    pub batch: Option<u64>,
    /// Rows in the whole batch or hold record (all subjects together).
    pub count: u64,
    pub children: Vec<ChildLink>,
    /// The subject's keyed hash under the record's key.
    pub subject: String,
    pub kid: String,
    pub file: PathBuf,
    pub seq: u64,
    /// The log's chain is intact up to this record.
    pub verified: bool,
}

/// What a search looked at, for the closing line.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Stats {
    pub logs: u64,
    pub records: u64,
    pub hits: u64,
    /// Keys searched with.
    pub key_ids: Vec<String>,
    /// Records with subjects written under a key no configured variable
    /// holds (by key id): they could not be searched.
    pub unknown_key_ids: BTreeMap<String, u64>,
    /// Hold records that list only the first 1,000 held subjects.
    pub truncated_holds: u64,
    /// Logs whose chain is broken (their hits are marked `verified: false`).
    pub broken_logs: Vec<PathBuf>,
}

/// Search one run's log for `subject` (the raw id). `hashes` caches the
/// subject's hash per key id across logs.
pub(crate) fn search_log(
    log: &Log,
    subject: &str,
    keys: &KeyRing,
    filters: &Filters,
    hashes: &mut BTreeMap<String, Option<String>>,
    stats: &mut Stats,
) -> Vec<Hit> {
    stats.logs += 1;
    stats.records += log.entries.len() as u64;
    if log.report.broken_at.is_some() {
        stats.broken_logs.push(log.report.file.clone());
    }
    let mut s = LogSearch {
        log,
        subject,
        keys,
        filters,
        hashes,
        stats,
        rolled_back: log.rolled_back(),
        unconfirmed: log.unconfirmed(),
        last_line: log.entries.last().map(|e| e.line),
    };
    let mut hits = Vec::new();
    for e in &log.entries {
        if let Some(req) = request_event(&e.record.event) {
            hits.extend(s.request_hit(e, req));
        } else {
            hits.extend(s.subject_hit(e));
        }
    }
    s.stats.hits += hits.len() as u64;
    hits
}

/// A request record's fields, as `request_event` gives them.
type RequestFields<'e> = (&'static str, &'e str, String, &'e str);

/// A batch or hold record's fields: (action, subjects, batch, count, children).
type SubjectFields<'e> = (&'e str, &'e [String], Option<u64>, u64, Vec<ChildLink>);

/// One log being searched: what every record is matched against, and the
/// caches and counts the search keeps across records.
struct LogSearch<'a> {
    log: &'a Log,
    subject: &'a str,
    keys: &'a KeyRing,
    filters: &'a Filters,
    hashes: &'a mut BTreeMap<String, Option<String>>,
    stats: &'a mut Stats,
    rolled_back: BTreeSet<(&'a str, &'a str, u64)>,
    unconfirmed: BTreeSet<(&'a str, &'a str, u64)>,
    last_line: Option<u64>,
}

impl LogSearch<'_> {
    /// The subject's hash under key `kid`; `None` (and counted) when no
    /// configured key has that id.
    fn hash_for(&mut self, kid: &str) -> Option<String> {
        let (keys, subject) = (self.keys, self.subject);
        let hash = self
            .hashes
            .entry(kid.to_string())
            .or_insert_with(|| keys.by_kid(kid).map(|k| k.subject(subject)));
        if hash.is_none() {
            *self
                .stats
                .unknown_key_ids
                .entry(kid.to_string())
                .or_default() += 1;
        }
        hash.clone()
    }

    fn request_hit(&mut self, e: &Entry, req: RequestFields<'_>) -> Option<Hit> {
        let r = &e.record;
        let (action, subject_hash, outcome, request) = req;
        if !self.filters.matches(&r.run, &r.ts, "-", "-", action) {
            return None;
        }
        let h = self.hash_for(&r.kid)?;
        if h != subject_hash {
            return None;
        }
        Some(Hit {
            run: r.run.clone(),
            ts: r.ts.clone(),
            job: "-".into(),
            rule: "-".into(),
            policy: "VII(7)".into(),
            action: action.into(),
            target: request.into(),
            outcome,
            batch: None,
            count: 0,
            children: vec![],
            subject: h,
            kid: r.kid.clone(),
            file: self.log.report.file.clone(),
            seq: r.seq,
            verified: e.verified,
        })
    }

    fn subject_hit(&mut self, e: &Entry) -> Option<Hit> {
        let r = &e.record;
        let scope = r.event.scope()?;
        let (job, rule) = (scope.job, scope.rule);
        let (action, subjects, batch, count, children) = self.subject_fields(&r.event)?;
        if subjects.is_empty() || !self.filters.matches(&r.run, &r.ts, job, rule, action) {
            return None;
        }
        let hash = self.hash_for(&r.kid)?;
        if !subjects.contains(&hash) {
            return None;
        }
        let outcome = match (action, batch) {
            ("hold", _) => "held",
            (_, Some(b)) if self.rolled_back.contains(&(job, rule, b)) => "failed",
            (_, Some(b)) if self.unconfirmed.contains(&(job, rule, b)) => "unconfirmed",
            (_, Some(_)) if !self.log.report.sealed && Some(e.line) == self.last_line => {
                "unconfirmed"
            }
            ("delete", _) => "erased",
            _ => "anonymized",
        };
        Some(Hit {
            run: r.run.clone(),
            ts: r.ts.clone(),
            job: job.to_string(),
            rule: rule.to_string(),
            policy: scope.policy.unwrap_or_default().to_string(),
            action: action.to_string(),
            target: scope.target.unwrap_or_default().to_string(),
            outcome: outcome.into(),
            batch,
            count,
            children,
            subject: hash,
            kid: r.kid.clone(),
            file: self.log.report.file.clone(),
            seq: r.seq,
            verified: e.verified,
        })
    }

    /// The fields of a record that lists subjects; `None` for any other.
    fn subject_fields<'e>(&mut self, event: &'e Event) -> Option<SubjectFields<'e>> {
        Some(match event {
            Event::Batch {
                action,
                batch,
                count,
                children,
                subjects,
                ..
            } => (
                action.as_str(),
                subjects,
                Some(*batch),
                *count,
                children
                    .iter()
                    .map(|c| ChildLink {
                        target: c.target.clone(),
                        via: c.via.clone(),
                        action: c.action.clone(),
                    })
                    .collect(),
            ),
            Event::Hold {
                count,
                subjects,
                subjects_truncated,
                ..
            } => {
                if *subjects_truncated {
                    self.stats.truncated_holds += 1;
                }
                ("hold", subjects, None, *count, vec![])
            }
            // Rows kept because an object they name is under Object Lock.
            Event::ObjectHold { rows, subjects, .. } => ("hold", subjects, None, *rows, vec![]),
            _ => return None,
        })
    }
}

/// A request record as a hit: (action, subject hash, outcome, request id).
/// The outcome says whether the request met its due instant.
fn request_event(e: &Event) -> Option<(&'static str, &str, String, &str)> {
    Some(match e {
        Event::RequestReceived {
            request,
            subject,
            due,
            ..
        } => ("request_received", subject, format!("due {due}"), request),
        Event::RequestDone {
            request,
            subject,
            due,
            on_time,
            working_days,
            ..
        } => (
            "request_done",
            subject,
            format!(
                "{} (due {due}, {working_days} working days)",
                if *on_time { "on time" } else { "late" }
            ),
            request,
        ),
        Event::RequestHeld {
            request,
            subject,
            reasons,
            ..
        } => (
            "request_held",
            subject,
            format!("held: {}", reasons.join("; ")),
            request,
        ),
        Event::RequestRejected {
            request,
            subject,
            reason,
            ..
        } => (
            "request_rejected",
            subject,
            format!("rejected: {reason}"),
            request,
        ),
        _ => return None,
    })
}
