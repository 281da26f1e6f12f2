//! Intake: requests an application's support tool writes into a table of its
//! own (`[requests] intake = "<source>.<table>"`), taken over by Lethe.
//!
//! The table's columns (documented in the README): `id` (primary key),
//! `subject` (the requester's id), `received_at` (when it was received;
//! NULL means now), `ticket_ref` (nullable), `taken_at` (NULL until Lethe
//! takes the row) and `request_id` (nullable; Lethe writes its request id).
//!
//! Owns taking rows exactly once: a lease (`requests:intake`) keeps two runs
//! from doing the work together, and the state store's unique
//! `intake_key` (`<source>.<table>#<id>`) decides if they still meet — the
//! loser marks the row taken and files nothing. It must never log or record
//! a row's values: only counts and the keyed subject hash go anywhere.

use super::process::{self, NewRequest};
use super::{Kind, Request};
use crate::audit::AuditWriter;
use crate::config::{Loaded, TableRef};
use crate::error::Error;
use crate::keys::Keys;
use crate::sql::{Builder, Db, Val};
use crate::state::State;
use chrono::{DateTime, NaiveDateTime, Utc};

/// Rows taken per run at most (the rest wait for the next run).
pub const INTAKE_BATCH: usize = 1_000;

fn table_sql(db: &Db, t: &TableRef) -> String {
    let d = db.dialect();
    match &t.schema {
        Some(s) => format!("{}.{}", d.quote(s), d.quote(&t.table)),
        None => d.quote(&t.table),
    }
}

fn as_text(db: &Db, col: &str) -> String {
    let d = db.dialect();
    d.to_text(&d.quote(col))
}

/// `received_at` as the engines print it: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f][+zz]`
/// (no offset: UTC).
fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Take the intake table's new rows: file a request for each, record it in
/// `audit`, mark the row taken. Returns how many were filed.
pub async fn take(
    loaded: &Loaded,
    keys: &Keys,
    state: &State,
    audit: &mut AuditWriter,
    run_id: &str,
    as_of: DateTime<Utc>,
) -> Result<u64, Error> {
    let Some(t) = &loaded.config.requests.intake else {
        return Ok(0);
    };
    const LEASE: &str = "requests:intake";
    if !state.acquire(LEASE, run_id).await? {
        tracing::info!("another run is taking the intake table; this one leaves it to it");
        return Ok(0);
    }
    let src = &loaded.config.sources[&t.source];
    let result = async {
        let db = Db::connect(&src.name, &src.url, 1, std::time::Duration::ZERO).await?;
        let r = take_from(loaded, keys, state, audit, &db, t, as_of).await;
        db.close().await;
        r
    }
    .await;
    state.release(LEASE, run_id).await?;
    result
}

async fn take_from(
    loaded: &Loaded,
    keys: &Keys,
    state: &State,
    audit: &mut AuditWriter,
    db: &Db,
    t: &TableRef,
    as_of: DateTime<Utc>,
) -> Result<u64, Error> {
    let d = db.dialect();
    let table = table_sql(db, t);
    let mut b = Builder::new(d);
    b.push(&format!(
        "SELECT {}, {}, {}, {} FROM {table} WHERE {} IS NULL ORDER BY {} LIMIT {INTAKE_BATCH}",
        as_text(db, "id"),
        as_text(db, "subject"),
        as_text(db, "received_at"),
        as_text(db, "ticket_ref"),
        d.quote("taken_at"),
        d.quote("id"),
    ));
    let rows = db.fetch(&b.finish()).await?;
    let mut filed = 0;
    for row in rows {
        let (Some(id), Some(subject)) = (row[0].clone(), row[1].clone()) else {
            tracing::warn!("an intake row without id or subject was skipped");
            continue;
        };
        let received = match row[2].as_deref() {
            None => as_of,
            Some(s) => match parse_instant(s) {
                Some(t) => t,
                None => {
                    tracing::warn!("an intake row's received_at is unreadable; it was skipped");
                    continue;
                }
            },
        };
        let request: Request = match process::build(
            loaded,
            keys,
            NewRequest {
                kind: Kind::Erasure,
                subject,
                received,
                ref_: row[3].clone().filter(|r| !r.is_empty()),
                intake: Some(format!("{t}#{}", id.trim())),
            },
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "an intake row was skipped");
                continue;
            }
        };
        let inserted = state.insert_request(&request, as_of).await?;
        if inserted {
            audit.append(process::received_event(&request))?;
            filed += 1;
        }
        // Taken either way: by this run, or by the one whose insert won.
        let mut b = Builder::new(d);
        b.push(&format!("UPDATE {table} SET {} = ", d.quote("taken_at")));
        b.bind(Val::Ts(as_of));
        if inserted {
            b.push(&format!(", {} = ", d.quote("request_id")));
            b.bind(Val::Text(request.id.clone()));
        }
        // Compared as text: the id column may be an integer or text.
        b.push(&format!(" WHERE {} = ", as_text(db, "id")));
        b.bind(Val::Text(id.trim().to_string()));
        b.push(&format!(" AND {} IS NULL", d.quote("taken_at")));
        db.execute(&b.finish()).await?;
    }
    if filed > 0 {
        tracing::info!(filed, "requests taken from the intake table");
    }
    Ok(filed)
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn instants_as_each_engine_prints_them() {
        let want = parse_instant("2026-06-15T12:00:00Z").unwrap();
        assert_eq!(parse_instant("2026-06-15 12:00:00+00"), Some(want));
        assert_eq!(parse_instant("2026-06-15 20:00:00+08:00"), Some(want));
        assert_eq!(parse_instant("2026-06-15 12:00:00.000000"), Some(want));
        assert_eq!(parse_instant("2026-06-15 12:00:00"), Some(want));
        assert_eq!(parse_instant("yesterday"), None);
    }
}
