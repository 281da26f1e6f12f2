//! The pending-erasure list: objects Object Lock kept when the rows naming
//! them were erased (`lethe_pending_objects`).
//!
//! Once a row goes, nothing in the source database names its held objects
//! any more, so their keys are written here *before* the row's batch
//! commits; later runs retry them until the hold ends. The list holds the
//! object key (as the state store holds request subjects), the store's name
//! and why it is held — nothing else about the row or its subject. It must
//! never be copied into the audit log, `tracing` output or reports: those
//! carry counts and keyed digests only.

use super::{State, now_ms};
use crate::error::Error;
use crate::sql::Val;
use sha2::{Digest, Sha256};

/// One held object waiting for its hold to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingObject {
    pub store: String,
    pub key: String,
    /// `legal_hold`, `governance` or `compliance`.
    pub reason: String,
    /// The retention date, for `governance` and `compliance`.
    pub retain_until_ms: Option<i64>,
}

fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn err(e: Error) -> Error {
    Error::State(e.to_string())
}

impl State {
    /// Record held objects (or refresh their reason). A key already listed
    /// keeps its place: the primary key is store + key.
    pub async fn add_pending(&self, items: &[PendingObject]) -> Result<(), Error> {
        let now = now_ms();
        for p in items {
            // A NULL date is written as a literal: an untyped NULL bind
            // reaches PostgreSQL as text, which a BIGINT column refuses.
            let (until_sql, until) = match p.retain_until_ms {
                Some(ms) => ("?", Some(Val::Int(ms))),
                None => ("NULL", None),
            };
            let mut binds = vec![
                Val::Text(p.store.clone()),
                Val::Text(key_sha256(&p.key)),
                Val::Text(p.key.clone()),
                Val::Text(p.reason.clone()),
            ];
            binds.extend(until.clone());
            binds.extend([Val::Int(now), Val::Int(now)]);
            let inserted = self
                .db
                .execute(&self.stmt(
                    &format!("INSERT INTO lethe_pending_objects (store, key_sha256, object_key, reason, retain_until_ms, added_ms, checked_ms) VALUES (?, ?, ?, ?, {until_sql}, ?, ?)"),
                    binds,
                ))
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if super::is_unique_violation(&e) => {
                    let mut binds = vec![Val::Text(p.reason.clone())];
                    binds.extend(until);
                    binds.extend([
                        Val::Int(now),
                        Val::Text(p.store.clone()),
                        Val::Text(key_sha256(&p.key)),
                    ]);
                    self.db
                        .execute(&self.stmt(
                            &format!("UPDATE lethe_pending_objects SET reason = ?, retain_until_ms = {until_sql}, checked_ms = ? WHERE store = ? AND key_sha256 = ?"),
                            binds,
                        ))
                        .await
                        .map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// Every pending object, by store then key hash.
    pub async fn pending(&self) -> Result<Vec<PendingObject>, Error> {
        let rows = self
            .db
            .fetch(&self.stmt(
                "SELECT store, object_key, reason, CAST(retain_until_ms AS CHAR(20)) FROM lethe_pending_objects ORDER BY store, key_sha256",
                vec![],
            ))
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|r| PendingObject {
                store: r[0].clone().unwrap_or_default(),
                key: r[1].clone().unwrap_or_default(),
                reason: r[2].clone().unwrap_or_default(),
                retain_until_ms: r[3].as_deref().and_then(|v| v.trim().parse().ok()),
            })
            .collect())
    }

    /// Take a key off the list: erased, or gone from the store.
    pub async fn drop_pending(&self, store: &str, key: &str) -> Result<(), Error> {
        self.db
            .execute(&self.stmt(
                "DELETE FROM lethe_pending_objects WHERE store = ? AND key_sha256 = ?",
                vec![Val::Text(store.into()), Val::Text(key_sha256(key))],
            ))
            .await
            .map_err(err)?;
        Ok(())
    }
}
