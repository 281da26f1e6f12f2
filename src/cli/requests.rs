//! `lethe request …` and the requests part of `run` / `plan` output.
//!
//! Owns parsing the request commands' arguments into library calls, the
//! `--confirm` check of jobs marked `confirm = true`, and rendering request
//! lines and receipts as tables, JSON Lines (`type`: `request`,
//! `request_receipt`) and HTML.
//!
//! It must never print a raw subject: it only ever sees requests through
//! `RequestLine` and receipts, which carry the keyed hash.

use super::args::{Global, Output, RequestCommand};
use super::output::OUTPUT_VERSION;
use crate::config::Loaded;
use crate::error::{Error, ExitCode};
use crate::keys::Keys;
use crate::requests::process::{self, NewRequest, Outcome, RequestLine};
use crate::requests::{Kind, Request, RequestState};
use crate::state::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;

/// A job marked `confirm = true` runs only as `--job <name> --confirm <name>`.
/// Refused before anything is opened, so nothing is touched.
pub(crate) fn check_confirmation(
    loaded: &Loaded,
    jobs: &[String],
    confirm: &[String],
) -> Result<(), Error> {
    for c in confirm {
        if !jobs.contains(c) {
            return Err(Error::Usage(format!(
                "--confirm {c}: no job `{c}` is named with --job; confirm only a job you run"
            )));
        }
    }
    for name in jobs {
        if let Some(j) = loaded.job(name)
            && j.confirm
            && !confirm.contains(name)
        {
            return Err(Error::Usage(format!(
                "job `{name}` ({}: {}) erases or anonymizes personal data across every table; nothing was touched. \
                 To run it, confirm it by name: `lethe run --job {name} --confirm {name}`",
                j.policy,
                j.description.as_deref().unwrap_or("confirmation required"),
            )));
        }
    }
    Ok(())
}

fn print(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

async fn open_state(loaded: &Loaded) -> Result<State, Error> {
    State::open(&loaded.config.state.url, loaded.config.state.lease_ttl).await
}

fn read_subject(arg: String) -> Result<String, Error> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::Usage(format!("cannot read the subject from standard input: {e}")))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

pub(crate) async fn dispatch(
    g: &Global,
    cmd: RequestCommand,
    as_of: DateTime<Utc>,
) -> Result<ExitCode, Error> {
    let loaded = super::load(g)?;
    let state = open_state(&loaded).await?;
    let res = run(g, &loaded, &state, cmd, as_of).await;
    state.close().await;
    res
}

/// What every request command works with.
struct RequestCtx<'a> {
    g: &'a Global,
    loaded: &'a Loaded,
    state: &'a State,
    as_of: DateTime<Utc>,
}

async fn run(
    g: &Global,
    loaded: &Loaded,
    state: &State,
    cmd: RequestCommand,
    as_of: DateTime<Utc>,
) -> Result<ExitCode, Error> {
    let ctx = RequestCtx {
        g,
        loaded,
        state,
        as_of,
    };
    match cmd {
        RequestCommand::Add {
            subject,
            kind,
            received,
            ref_,
        } => ctx.add(subject, kind, received, ref_).await,
        RequestCommand::List { state: want, all } => ctx.list(want, all).await,
        RequestCommand::Show { id } => ctx.show(id).await,
        RequestCommand::Reject { id, reason, note } => ctx.reject(id, reason, note).await,
        RequestCommand::Receipt { id, html } => ctx.receipt(id, html).await,
    }
}

impl RequestCtx<'_> {
    /// `request add`: files the request (the subject from stdin with `-`);
    /// exits overdue when it is already past due.
    async fn add(
        &self,
        subject: String,
        kind: String,
        received: Option<DateTime<Utc>>,
        ref_: Option<String>,
    ) -> Result<ExitCode, Error> {
        let (g, loaded, state, as_of) = (self.g, self.loaded, self.state, self.as_of);
        let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
        let kind = Kind::parse(&kind).map_err(Error::Usage)?;
        let subject = read_subject(subject)?;
        let r = process::add(
            loaded,
            &keys,
            state,
            NewRequest {
                kind,
                subject,
                received: received.unwrap_or(as_of),
                ref_,
                intake: None,
            },
            as_of,
        )
        .await?;
        let l = process::line(loaded, &r, as_of);
        print(&match g.output {
            Output::Table => format!(
                "request {} filed: {} of subject {}, received {}, due {} ({} working days)\n",
                l.id,
                r.kind.as_str(),
                l.subject_hash,
                l.received,
                l.due,
                l.working_days_left
            ),
            Output::Json => json_line("request", &l),
        });
        Ok(if l.overdue {
            ExitCode::Overdue
        } else {
            ExitCode::Ok
        })
    }

    /// `request list`: open requests, one state, or all; exits overdue when
    /// any open request is.
    async fn list(&self, want: Option<String>, all: bool) -> Result<ExitCode, Error> {
        let (g, loaded, state, as_of) = (self.g, self.loaded, self.state, self.as_of);
        let requests = match (&want, all) {
            (Some(s), _) => {
                let st = RequestState::parse(s).map_err(Error::Usage)?;
                state.requests(Some(st)).await?
            }
            (None, true) => state.requests(None).await?,
            (None, false) => state.open_requests().await?,
        };
        let lines: Vec<RequestLine> = requests
            .iter()
            .map(|r| process::line(loaded, r, as_of))
            .collect();
        print(&match g.output {
            Output::Table => list_table(&lines),
            Output::Json => lines.iter().map(|l| json_line("request", l)).collect(),
        });
        // Overdue counts every open request, whatever the filter showed.
        let any_overdue = state
            .open_requests()
            .await?
            .iter()
            .any(|r| r.overdue(as_of));
        Ok(if any_overdue {
            ExitCode::Overdue
        } else {
            ExitCode::Ok
        })
    }

    /// `request show`: one request, with its note.
    async fn show(&self, id: String) -> Result<ExitCode, Error> {
        let (g, loaded, state, as_of) = (self.g, self.loaded, self.state, self.as_of);
        let r = find(state, &id).await?;
        let l = process::line(loaded, &r, as_of);
        print(&match g.output {
            Output::Table => show_table(&l, &r),
            Output::Json => {
                let mut v = serde_json::to_value(&l).expect("serializes");
                v["note"] = json!(r.note);
                v["v"] = json!(OUTPUT_VERSION);
                v["type"] = json!("request");
                format!("{v}\n")
            }
        });
        Ok(if l.overdue {
            ExitCode::Overdue
        } else {
            ExitCode::Ok
        })
    }

    /// `request reject`: on one of the policy's grounds, with a note.
    async fn reject(&self, id: String, reason: String, note: String) -> Result<ExitCode, Error> {
        let (g, loaded, state, as_of) = (self.g, self.loaded, self.state, self.as_of);
        let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
        let r = process::reject(loaded, &keys, state, &id, &reason, &note, as_of).await?;
        let l = process::line(loaded, &r, as_of);
        print(&match g.output {
            Output::Table => format!("request {} rejected ({reason})\n", l.id),
            Output::Json => json_line("request", &l),
        });
        Ok(ExitCode::Ok)
    }

    /// `request receipt`: the receipt for the subject, also as HTML with `--html`.
    async fn receipt(&self, id: String, html: Option<PathBuf>) -> Result<ExitCode, Error> {
        let (g, loaded, state, as_of) = (self.g, self.loaded, self.state, self.as_of);
        let r = find(state, &id).await?;
        let outcome = Outcome::parse(state.request_outcome(&id).await?.as_deref());
        let receipt = Receipt::new(loaded, &r, outcome, as_of);
        if let Some(path) = &html {
            std::fs::write(path, receipt.html())
                .map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))?;
        }
        print(&match g.output {
            Output::Table => receipt.table(),
            Output::Json => json_line("request_receipt", &receipt),
        });
        Ok(ExitCode::Ok)
    }
}

async fn find(state: &State, id: &str) -> Result<Request, Error> {
    state.request(id).await?.ok_or_else(|| {
        Error::Usage(format!(
            "no request `{id}` (see `lethe request list --all`)"
        ))
    })
}

fn json_line<T: Serialize>(kind: &str, v: &T) -> String {
    let mut v = serde_json::to_value(v).expect("serializes");
    v["v"] = json!(OUTPUT_VERSION);
    v["type"] = json!(kind);
    format!("{v}\n")
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    super::output::columns(rows, &[])
}

fn days_left(l: &RequestLine) -> String {
    if !l.state.is_open() {
        "-".into()
    } else if l.overdue {
        format!("{} OVERDUE", l.working_days_left)
    } else {
        l.working_days_left.to_string()
    }
}

pub(crate) fn list_table(lines: &[RequestLine]) -> String {
    let mut rows = vec![
        [
            "ID",
            "KIND",
            "STATE",
            "REF",
            "SUBJECT HASH",
            "RECEIVED",
            "DUE",
            "DAYS LEFT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in lines {
        rows.push(vec![
            l.id.clone(),
            l.kind.as_str().into(),
            l.state.as_str().into(),
            l.ref_.clone().unwrap_or_else(|| "-".into()),
            l.subject_hash.chars().take(16).collect(),
            l.received.clone(),
            l.due.clone(),
            days_left(l),
        ]);
    }
    let mut out = columns(&rows);
    let overdue = lines.iter().filter(|l| l.overdue).count();
    out.push_str(&format!(
        "\n{} request(s), {} overdue\n",
        lines.len(),
        overdue
    ));
    out
}

fn show_table(l: &RequestLine, r: &Request) -> String {
    let mut rows = vec![
        vec!["id".into(), l.id.clone()],
        vec!["kind".into(), l.kind.as_str().into()],
        vec!["state".into(), l.state.as_str().into()],
        vec!["ref".into(), l.ref_.clone().unwrap_or_else(|| "-".into())],
        vec!["subject hash".into(), l.subject_hash.clone()],
        vec!["received".into(), l.received.clone()],
        vec!["due".into(), l.due.clone()],
        vec!["working days left".into(), days_left(l)],
    ];
    if let Some(reason) = &l.reason {
        rows.push(vec!["reason".into(), reason.clone()]);
    }
    if let Some(note) = &r.note {
        rows.push(vec!["note".into(), note.clone()]);
    }
    if let Some(c) = &l.closed {
        rows.push(vec!["closed".into(), c.clone()]);
    }
    columns(&rows)
}

/// The requests part of `run` and `plan` output (table).
pub(crate) fn run_section(lines: &[RequestLine]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let overdue = lines.iter().filter(|l| l.overdue).count();
    let mut out = format!(
        "requests: {} open, {} overdue{}\n",
        lines.len(),
        overdue,
        if overdue > 0 { " (exit 5)" } else { "" }
    );
    for l in lines {
        out.push_str(&format!(
            "  {} {} {} due {} ({})\n",
            l.id,
            l.kind.as_str(),
            l.state.as_str(),
            l.due,
            days_left(l)
        ));
    }
    out
}

/// The requests part of `run` and `plan` output (JSON Lines).
pub(crate) fn run_json_lines(lines: &[RequestLine]) -> String {
    lines.iter().map(|l| json_line("request", l)).collect()
}

/// What a reply to the person needs, and nothing that identifies them.
#[derive(Debug, Serialize)]
pub(crate) struct Receipt {
    pub request: RequestLine,
    /// Erased per rule and policy section.
    pub erased: Vec<process::OutcomeLine>,
    /// Kept without the person (anonymized records the law keeps).
    pub anonymized: Vec<process::OutcomeLine>,
    /// What keeps part of it and why (legal hold, Object Lock, a rejection).
    pub kept: Vec<String>,
    pub completed: Option<String>,
    pub on_time: Option<bool>,
    pub working_days_taken: Option<i64>,
}

impl Receipt {
    pub(crate) fn new(
        loaded: &Loaded,
        r: &Request,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Receipt {
        let (anonymized, erased): (Vec<_>, Vec<_>) = outcome
            .lines
            .into_iter()
            .partition(|l| l.action == "anonymize");
        let mut kept = outcome.kept;
        if r.state == RequestState::Rejected
            && let Some(reason) = &r.reason
        {
            let why = crate::requests::REJECT_REASONS
                .iter()
                .find(|(k, _)| k == reason)
                .map(|(_, v)| *v)
                .unwrap_or("");
            kept.push(format!("rejected under policy VII(7): {reason} ({why})"));
        }
        let done = r.state == RequestState::Done;
        let dl = &loaded.config.requests.deadlines;
        Receipt {
            request: process::line(loaded, r, now),
            erased,
            anonymized,
            kept,
            completed: r
                .closed
                .filter(|_| done)
                .map(|c| process::local_ts(loaded, c)),
            on_time: r.closed.filter(|_| done).map(|c| c <= r.due),
            working_days_taken: r
                .closed
                .filter(|_| done)
                .map(|c| dl.working_days_taken(r.received, c)),
        }
    }

    pub(crate) fn table(&self) -> String {
        let l = &self.request;
        let mut out = format!(
            "receipt for request {} ({}), subject hash {}\nreceived {}, due {}, state {}\n",
            l.id,
            l.kind.as_str(),
            l.subject_hash,
            l.received,
            l.due,
            l.state.as_str()
        );
        if let Some(c) = &self.completed {
            out.push_str(&format!(
                "completed {c} ({} working days, {})\n",
                self.working_days_taken.unwrap_or_default(),
                if self.on_time == Some(true) {
                    "on time"
                } else {
                    "LATE"
                }
            ));
        }
        let section = |title: &str, lines: &[process::OutcomeLine]| {
            let mut rows = vec![
                ["POLICY", "JOB", "RULE", "TARGET", "ACTION", "COUNT", "WHEN"]
                    .map(String::from)
                    .to_vec(),
            ];
            for o in lines {
                rows.push(vec![
                    o.policy.clone(),
                    o.job.clone(),
                    o.rule.clone(),
                    o.target.clone(),
                    o.action.clone(),
                    o.count.to_string(),
                    o.at.clone(),
                ]);
            }
            format!("\n{title}\n{}", columns(&rows))
        };
        if !self.erased.is_empty() {
            out.push_str(&section("erased:", &self.erased));
        }
        if !self.anonymized.is_empty() {
            out.push_str(&section(
                "kept without the person (anonymized; records the law keeps):",
                &self.anonymized,
            ));
        }
        if !self.kept.is_empty() {
            out.push_str("\nkept, and why:\n");
            for k in &self.kept {
                out.push_str(&format!("  {k}\n"));
            }
        }
        out
    }

    pub(crate) fn html(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        }
        let l = &self.request;
        let table = |lines: &[process::OutcomeLine]| {
            let mut t = String::from(
                "<table><tr><th>Policy</th><th>Job</th><th>Rule</th><th>Target</th><th>Action</th><th>Count</th><th>When</th></tr>",
            );
            for o in lines {
                t.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&o.policy),
                    esc(&o.job),
                    esc(&o.rule),
                    esc(&o.target),
                    esc(&o.action),
                    o.count,
                    esc(&o.at)
                ));
            }
            t.push_str("</table>");
            t
        };
        let mut body = format!(
            "<h1>Erasure request {}</h1><p>Subject hash <code>{}</code></p><ul><li>Received {}</li><li>Due {}</li><li>State {}</li>",
            esc(&l.id),
            esc(&l.subject_hash),
            esc(&l.received),
            esc(&l.due),
            l.state.as_str()
        );
        if let Some(c) = &self.completed {
            body.push_str(&format!(
                "<li>Completed {} ({} working days, {})</li>",
                esc(c),
                self.working_days_taken.unwrap_or_default(),
                if self.on_time == Some(true) {
                    "on time"
                } else {
                    "late"
                }
            ));
        }
        body.push_str("</ul>");
        body.push_str(&format!("<h2>Erased</h2>{}", table(&self.erased)));
        body.push_str(&format!(
            "<h2>Kept without the person (anonymized)</h2>{}",
            table(&self.anonymized)
        ));
        body.push_str("<h2>Kept, and why</h2><ul>");
        for k in &self.kept {
            body.push_str(&format!("<li>{}</li>", esc(k)));
        }
        body.push_str("</ul>");
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Receipt {}</title>\
             <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>\
             </head><body>{body}</body></html>\n",
            esc(&l.id)
        )
    }
}
