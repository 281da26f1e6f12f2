//! The pending-erasure list at run level: retried at the start of every
//! executed run, summed up for `plan` and the run report.
//!
//! A row whose object Object Lock held was erased anyway; the object's key
//! went on the list (`state::pending`) before the batch committed. Here each
//! listed key is looked at again by the store's own clock: a key whose hold
//! has ended is erased (every version, never forcing a lock), one still held
//! stays with its reason refreshed, one already gone is dropped. The audit
//! record (`pending_retry`) is written before anything is deleted and holds
//! counts and a keyed digest — never a key name, and neither do the logs or
//! the report lines built here.

use crate::audit::{AuditWriter, Event, ObjectCount};
use crate::error::Error;
use crate::keys::Keys;
use crate::objects::erase::{self, Filter, Object, Tally};
use crate::objects::{HoldReason, Stores};
use crate::state::State;
use crate::state::pending::PendingObject;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// What is pending in one store for one reason (`plan` and the run report).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PendingLine {
    pub store: String,
    /// `legal_hold`, `governance` or `compliance`.
    pub reason: String,
    pub objects: u64,
    /// The latest retention date among them (retention reasons only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Counts per store and reason; never a key.
pub async fn lines(state: &State) -> Result<Vec<PendingLine>, Error> {
    let mut groups: BTreeMap<(String, String), (u64, Option<i64>)> = BTreeMap::new();
    for p in state.pending().await? {
        let g = groups.entry((p.store, p.reason)).or_default();
        g.0 += 1;
        g.1 = g.1.max(p.retain_until_ms);
    }
    Ok(groups
        .into_iter()
        .map(|((store, reason), (objects, until))| PendingLine {
            store,
            reason,
            objects,
            until: until
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        })
        .collect())
}

/// Try every pending key again. `Err` only when the audit log fails; a store
/// or state-store problem leaves the keys listed for the next run and says so.
pub async fn retry(
    state: &State,
    stores: &Stores,
    audit: &mut AuditWriter,
    keys: &Keys,
) -> Result<(), Error> {
    let list = match state.pending().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the pending-erasure list; it is tried again next run");
            return Ok(());
        }
    };
    let mut by_store: BTreeMap<String, Vec<PendingObject>> = BTreeMap::new();
    for p in list {
        by_store.entry(p.store.clone()).or_default().push(p);
    }
    for (store, items) in by_store {
        if let Err(e) = retry_store(state, stores, audit, keys, &store, items).await {
            if matches!(e, Error::Audit(_)) {
                return Err(e);
            }
            tracing::warn!(store = %store, error = %e, "pending objects stay listed: they are tried again next run");
        }
    }
    Ok(())
}

async fn retry_store(
    state: &State,
    stores: &Stores,
    audit: &mut AuditWriter,
    keys: &Keys,
    store: &str,
    items: Vec<PendingObject>,
) -> Result<(), Error> {
    let open = stores.get(store).await.map_err(Error::Other)?;
    let now = Utc::now();
    let none = Filter::default();
    let mut free: Vec<Object> = Vec::new();
    let mut still: Vec<PendingObject> = Vec::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut gone: Vec<String> = Vec::new();
    for p in items {
        let sel = erase::select(&open, &p.key, true, &none, now).await?;
        if let Some((o, reason)) = sel.held.into_iter().next() {
            let until = match reason {
                HoldReason::LegalHold => None,
                _ => erase::retained_until(&open, &o, now).await?,
            };
            *reasons.entry(reason.as_str().to_string()).or_default() += 1;
            still.push(PendingObject {
                reason: reason.as_str().to_string(),
                retain_until_ms: until.map(|t| t.timestamp_millis()),
                ..p
            });
        } else if let Some(o) = sel.selected.into_iter().next() {
            free.push(o);
        } else {
            gone.push(p.key);
        }
    }
    let t = Tally::of(&free);
    let erased_keys: Vec<String> = free.iter().map(|o| o.key.clone()).collect();
    tracing::info!(
        store,
        erased = t.objects,
        held = still.len(),
        gone = gone.len(),
        "pending objects tried again"
    );
    audit.append(Event::PendingRetry {
        store: store.to_string(),
        erased: ObjectCount {
            store: store.to_string(),
            via: "pending".into(),
            objects: t.objects,
            versions: t.versions,
            bytes: t.bytes,
            held: still.len() as u64,
        },
        keys_digest: keys.digest(&erased_keys),
        held: reasons,
        gone: gone.len() as u64,
    })?;
    state.add_pending(&still).await?;
    for k in &gone {
        state.drop_pending(store, k).await?;
    }
    if free.is_empty() {
        return Ok(());
    }
    let done = erase::delete_all(&open, &free).await?;
    for o in &free {
        if !done.failed_keys.contains(&o.key) {
            state.drop_pending(store, &o.key).await?;
        }
    }
    if done.failures() > 0 {
        audit.append(Event::ObjectErrors {
            job: "-".into(),
            rule: "pending".into(),
            store: store.to_string(),
            failed: done.failed.clone(),
        })?;
        return Err(Error::Other(format!(
            "store `{store}`: {} pending object versions were refused: {}; they stay listed",
            done.failures(),
            done.describe_failures()
        )));
    }
    Ok(())
}
