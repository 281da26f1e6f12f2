//! The request store: `lethe_requests` in the state store (all three backends,
//! migration `0003_create_requests.sql`).
//!
//! Owns reading and writing requests and their state changes. Every change
//! of state is conditional on the state it leaves (`WHERE state IN (...)`),
//! so two runs deciding at once change a request once. Closing a request
//! (`done`, `rejected`) sets its raw subject to NULL in the same statement:
//! from then on only the keyed hash stays.
//!
//! It must never return or log a raw subject except to the engine, which
//! needs it to select the subject's rows while the request is open.

use super::{Kind, Request, RequestState};
use crate::error::Error;
use crate::sql::Val;
use crate::state::State;
use chrono::{DateTime, TimeZone, Utc};

const COLUMNS: &str = "id, kind, state, subject, subject_hash, CAST(received_ms AS CHAR(20)), \
     CAST(due_ms AS CHAR(20)), ticket_ref, reason, note, CAST(closed_ms AS CHAR(20)), intake_key";

/// The longest subject or ref the store keeps (its columns are VARCHAR(255)).
pub const MAX_TEXT: usize = 255;

fn st(e: Error) -> Error {
    Error::State(e.to_string())
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(v: &Option<String>) -> Option<DateTime<Utc>> {
    v.as_deref()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
}

fn parse_row(r: &[Option<String>]) -> Result<Request, Error> {
    let text = |i: usize| r[i].as_deref().map(|s| s.trim().to_string());
    let bad = |what: &str| Error::State(format!("lethe_requests holds an unreadable {what}"));
    Ok(Request {
        id: text(0).unwrap_or_default(),
        kind: Kind::parse(&text(1).unwrap_or_default()).map_err(|_| bad("kind"))?,
        state: RequestState::parse(&text(2).unwrap_or_default()).map_err(|_| bad("state"))?,
        // Not trimmed: a subject is an exact value.
        subject: r[3].clone(),
        subject_hash: text(4).unwrap_or_default(),
        received: from_ms(&r[5]).ok_or_else(|| bad("received"))?,
        due: from_ms(&r[6]).ok_or_else(|| bad("due"))?,
        ref_: r[7].clone(),
        reason: r[8].clone(),
        note: r[9].clone(),
        closed: from_ms(&r[10]),
        intake: r[11].clone(),
    })
}

/// A new request id: short enough to type, random enough never to collide.
pub fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("req-{}", &u[..12])
}

impl State {
    /// Store a new request. `Ok(false)`: its intake key was taken already
    /// (another run took that intake row first).
    pub async fn insert_request(&self, r: &Request, now: DateTime<Utc>) -> Result<bool, Error> {
        let opt = |v: &Option<String>| v.clone().map(Val::Text).unwrap_or(Val::Null);
        let res = self
            .db
            .execute(&self.stmt(
                "INSERT INTO lethe_requests (id, kind, state, subject, subject_hash, received_ms, due_ms, ticket_ref, reason, note, closed_ms, updated_ms, intake_key) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                vec![
                    Val::Text(r.id.clone()),
                    Val::Text(r.kind.as_str().into()),
                    Val::Text(r.state.as_str().into()),
                    opt(&r.subject),
                    Val::Text(r.subject_hash.clone()),
                    Val::Int(ms(r.received)),
                    Val::Int(ms(r.due)),
                    opt(&r.ref_),
                    opt(&r.reason),
                    opt(&r.note),
                    Val::Int(ms(now)),
                    opt(&r.intake),
                ],
            ))
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if crate::state::is_unique_violation(&e) && r.intake.is_some() => Ok(false),
            Err(e) => Err(st(e)),
        }
    }

    /// Requests, oldest first; only those in `state` when given.
    pub async fn requests(&self, state: Option<RequestState>) -> Result<Vec<Request>, Error> {
        let (filter, binds) = match state {
            Some(s) => (" WHERE state = ?", vec![Val::Text(s.as_str().into())]),
            None => ("", vec![]),
        };
        let rows = self
            .db
            .fetch(&self.stmt(
                &format!("SELECT {COLUMNS} FROM lethe_requests{filter} ORDER BY received_ms, id"),
                binds,
            ))
            .await
            .map_err(st)?;
        rows.iter().map(|r| parse_row(r)).collect()
    }

    /// Requests still to act on (`pending` and `held`), oldest first.
    pub async fn open_requests(&self) -> Result<Vec<Request>, Error> {
        let mut out = self.requests(None).await?;
        out.retain(|r| r.state.is_open());
        Ok(out)
    }

    /// One request by id; `None` if the state store has none by that id.
    pub async fn request(&self, id: &str) -> Result<Option<Request>, Error> {
        let rows = self
            .db
            .fetch(&self.stmt(
                &format!("SELECT {COLUMNS} FROM lethe_requests WHERE id = ?"),
                vec![Val::Text(id.into())],
            ))
            .await
            .map_err(st)?;
        rows.first().map(|r| parse_row(r)).transpose()
    }

    /// Move a request from one of `from` to `to`; `Ok(false)` if it was not
    /// in one of them (another run, or an operator, moved it first). A
    /// closing state drops the raw subject in the same statement.
    pub async fn move_request(
        &self,
        id: &str,
        from: &[RequestState],
        to: RequestState,
        reason: Option<&str>,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let closes = !to.is_open();
        // The column is VARCHAR(255): a long list of reasons is cut, on a
        // character boundary (the audit record keeps them whole).
        let reason = reason.map(|r| {
            let mut end = r.len().min(MAX_TEXT);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            &r[..end]
        });
        let marks = vec!["?"; from.len()].join(", ");
        let subject = if closes { ", subject = NULL" } else { "" };
        let closed = if closes { ", closed_ms = ?" } else { "" };
        let mut binds = vec![
            Val::Text(to.as_str().into()),
            reason.map(|r| Val::Text(r.into())).unwrap_or(Val::Null),
            note.map(|n| Val::Text(n.into())).unwrap_or(Val::Null),
            Val::Int(ms(at)),
        ];
        if closes {
            binds.push(Val::Int(ms(at)));
        }
        binds.push(Val::Text(id.into()));
        binds.extend(from.iter().map(|s| Val::Text(s.as_str().into())));
        let n = self
            .db
            .execute(&self.stmt(
                &format!(
                    "UPDATE lethe_requests SET state = ?, reason = ?, note = ?, updated_ms = ?{subject}{closed} WHERE id = ? AND state IN ({marks})"
                ),
                binds,
            ))
            .await
            .map_err(st)?;
        Ok(n == 1)
    }

    /// The receipt's facts (JSON, counts and names only), replaced whole.
    pub async fn set_request_outcome(&self, id: &str, outcome: &str) -> Result<(), Error> {
        self.db
            .execute(&self.stmt(
                "UPDATE lethe_requests SET outcome = ? WHERE id = ?",
                vec![Val::Text(outcome.into()), Val::Text(id.into())],
            ))
            .await
            .map_err(st)?;
        Ok(())
    }

    /// The recorded outcome of a request, once it has one.
    pub async fn request_outcome(&self, id: &str) -> Result<Option<String>, Error> {
        let rows = self
            .db
            .fetch(&self.stmt(
                "SELECT outcome FROM lethe_requests WHERE id = ?",
                vec![Val::Text(id.into())],
            ))
            .await
            .map_err(st)?;
        Ok(rows.into_iter().next().and_then(|r| r[0].clone()))
    }

    /// Forget every request whose `ref` starts with `prefix` (the demo's
    /// own, when it re-seeds its tables). Never used on real requests.
    pub async fn forget_requests_with_ref(&self, prefix: &str) -> Result<u64, Error> {
        self.db
            .execute(&self.stmt(
                "DELETE FROM lethe_requests WHERE ticket_ref LIKE ?",
                vec![Val::Text(format!("{prefix}%"))],
            ))
            .await
            .map_err(st)
    }
}
