//! Selection and deletion of objects: the one place objects are deleted.
//!
//! An *object* here is a key with every version and delete marker it has.
//! Erasing it deletes all of them by version id, so a versioned bucket keeps
//! nothing — not even a marker. Before anything is deleted, an Object-Lock
//! bucket is asked about every version (`HeadObject`): a key with any version
//! under legal hold or unexpired retention is kept whole, and reported.
//!
//! Deletes go out as `DeleteObjects` requests of at most 1,000 ids, up to the
//! store's `concurrency` at once. Per-key refusals in a 200 answer are
//! collected and counted by error code; they never pass silently.

use super::{
    DeleteFailure, HoldReason, MAX_DELETE_KEYS, ObjectId, ObjectStore, OpenStore, StoreError,
    Version,
};
use crate::error::Error;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One key and everything stored under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub versions: Vec<Version>,
}

impl Object {
    pub fn bytes(&self) -> u64 {
        self.versions.iter().map(|v| v.size).sum()
    }

    /// The entry that decides the object's age: the latest version or marker.
    pub fn newest(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.is_latest)
            .or_else(|| self.versions.iter().max_by_key(|v| v.last_modified))
    }

    pub fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.versions.iter().map(|v| ObjectId {
            key: v.key.clone(),
            version_id: v.version_id.clone(),
        })
    }
}

/// Objects, versions (delete markers included) and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub objects: u64,
    pub versions: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Tally {
        let mut t = Tally::default();
        for o in objects {
            t.add(o);
        }
        t
    }

    pub fn add(&mut self, o: &Object) {
        self.objects += 1;
        self.versions += o.versions.len() as u64;
        self.bytes += o.bytes();
    }
}

/// What must match, besides the prefix.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Latest version (or marker) modified strictly before this instant.
    pub cutoff: Option<DateTime<Utc>>,
    /// Every tag present on the current version with this value.
    pub tags: BTreeMap<String, String>,
}

/// The objects a prefix (or one exact key) selects.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Objects under the prefix, matching or not (for `max_fraction`).
    pub total: u64,
    pub selected: Vec<Object>,
    /// Selected, but Object Lock keeps them.
    pub held: Vec<(Object, HoldReason)>,
}

/// Group a key-ordered listing into objects.
pub fn group(versions: Vec<Version>) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    for v in versions {
        match out.last_mut() {
            Some(o) if o.key == v.key => o.versions.push(v),
            _ => out.push(Object {
                key: v.key.clone(),
                versions: vec![v],
            }),
        }
    }
    out
}

/// List, filter by age and tags, and set aside what Object Lock holds.
/// `exact`: the prefix is one key; other keys that start with it are not it.
pub async fn select(
    open: &OpenStore,
    prefix: &str,
    exact: bool,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Selection, StoreError> {
    let store = open.store.as_ref();
    let conc = open.config.concurrency;
    let mut objects = group(store.list(prefix, open.info.versioned).await?);
    if exact {
        objects.retain(|o| o.key == prefix);
    }
    let total = objects.len() as u64;
    if let Some(cutoff) = filter.cutoff {
        objects.retain(|o| {
            o.newest()
                .and_then(|v| v.last_modified)
                .is_some_and(|t| t < cutoff)
        });
    }
    if !filter.tags.is_empty() {
        let wanted = &filter.tags;
        // Owned items: closures over borrowed stream items defeat rustc's
        // `Send` inference for callers that spawn.
        let probes: Vec<(String, bool)> = objects
            .iter()
            .map(|o| (o.key.clone(), o.newest().is_none_or(|v| v.delete_marker)))
            .collect();
        let keep: Vec<bool> = stream::iter(probes)
            .map(|(key, gone)| async move {
                if gone {
                    return Ok(false);
                }
                Ok::<_, StoreError>(
                    store
                        .tags(&key)
                        .await?
                        .is_some_and(|t| wanted.iter().all(|(k, v)| t.get(k) == Some(v))),
                )
            })
            .buffered(conc)
            .try_collect()
            .await?;
        let mut it = keep.into_iter();
        objects.retain(|_| it.next().unwrap_or(false));
    }
    let mut held = Vec::new();
    if open.info.lock_enabled {
        let holds: Vec<Option<HoldReason>> = stream::iter(objects.iter().cloned())
            .map(|o| async move { object_hold(store, &o, now).await })
            .buffered(conc)
            .try_collect()
            .await?;
        let mut selected = Vec::with_capacity(objects.len());
        for (o, h) in objects.into_iter().zip(holds) {
            match h {
                Some(reason) => held.push((o, reason)),
                None => selected.push(o),
            }
        }
        objects = selected;
    }
    Ok(Selection {
        total,
        selected: objects,
        held,
    })
}

/// The strongest hold on any version of the object (delete markers cannot be locked).
async fn object_hold(
    store: &dyn ObjectStore,
    o: &Object,
    now: DateTime<Utc>,
) -> Result<Option<HoldReason>, StoreError> {
    let mut reason = None;
    for v in o.versions.iter().filter(|v| !v.delete_marker) {
        if let Some(r) = store.lock(v).await?.hold(now) {
            reason = Some(reason.map_or(r, |old: HoldReason| old.min(r)));
        }
    }
    Ok(reason)
}

/// What a deletion did.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// Versions (and markers) deleted.
    pub versions: u64,
    /// `DeleteObjects` requests sent.
    pub requests: u64,
    /// Refused versions, by error code.
    pub failed: BTreeMap<String, u64>,
    /// Keys with a refused version (inside Lethe only: never logged).
    pub failed_keys: std::collections::BTreeSet<String>,
    /// Batches started (their `before` succeeded).
    pub batches: u64,
    /// `before` asked to stop (cancellation) before every batch was started.
    pub stopped: bool,
}

impl Deleted {
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    fn absorb(&mut self, sent: usize, failures: Vec<DeleteFailure>) {
        self.requests += 1;
        self.versions += (sent - failures.len()) as u64;
        for f in failures {
            *self.failed.entry(f.code).or_default() += 1;
            self.failed_keys.insert(f.key);
        }
    }

    /// `3 refused (AccessDenied: 2, InternalError: 1)`.
    pub fn describe_failures(&self) -> String {
        let codes: Vec<String> = self
            .failed
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        format!("{} refused ({})", self.failures(), codes.join(", "))
    }
}

/// Split ids into `DeleteObjects` requests: at most 1,000 each.
pub fn requests(ids: &[ObjectId]) -> std::slice::Chunks<'_, ObjectId> {
    ids.chunks(MAX_DELETE_KEYS)
}

/// Per-key codes worth another try: the store was busy, not unwilling.
fn transient(code: &str) -> bool {
    matches!(
        code,
        "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "Throttling"
    )
}

/// One `DeleteObjects` request, and again for the keys a 200 answer refused
/// with a transient code (`SlowDown`, `InternalError`, …), with exponential
/// backoff, up to `attempts` in all. Whole-request errors (5xx, throttling,
/// connection) are retried by the SDK itself.
async fn send(
    store: &dyn ObjectStore,
    ids: &[ObjectId],
    attempts: u32,
) -> Result<Vec<DeleteFailure>, StoreError> {
    let mut pending: Vec<ObjectId> = ids.to_vec();
    let mut permanent = Vec::new();
    for attempt in 1..=attempts {
        tracing::debug!(
            store = store.name(),
            keys = pending.len(),
            attempt,
            "DeleteObjects request"
        );
        let (retry, keep): (Vec<DeleteFailure>, Vec<DeleteFailure>) = store
            .delete(&pending)
            .await?
            .into_iter()
            .partition(|f| transient(&f.code));
        permanent.extend(keep);
        if retry.is_empty() || attempt == attempts {
            permanent.extend(retry);
            break;
        }
        let again: std::collections::HashSet<(&str, Option<&str>)> = retry
            .iter()
            .map(|f| (f.key.as_str(), f.version_id.as_deref()))
            .collect();
        pending.retain(|id| again.contains(&(id.key.as_str(), id.version_id.as_deref())));
        tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(6))).await;
    }
    Ok(permanent)
}

/// Delete objects in batches: `before` runs (and must succeed) before any
/// object of its batch is deleted — that is where the audit record is
/// written; it returns `false` to stop (cancellation) before the batch.
/// Requests of one batch and the next overlap, `concurrency` at once.
pub async fn delete_in_batches(
    open: &OpenStore,
    objects: &[Object],
    batch_size: usize,
    mut before: impl FnMut(u64, &[Object]) -> Result<bool, Error>,
) -> Result<Deleted, Error> {
    let store = open.store.as_ref();
    let conc = open.config.concurrency.max(1);
    let attempts = open.config.max_attempts.max(1);
    let mut done = Deleted::default();
    let mut inflight = FuturesUnordered::new();
    for (i, batch) in objects.chunks(batch_size.max(1)).enumerate() {
        if !before(i as u64 + 1, batch)? {
            done.stopped = true;
            break;
        }
        done.batches += 1;
        let ids: Vec<ObjectId> = batch.iter().flat_map(|o| o.ids()).collect();
        for chunk in requests(&ids) {
            while inflight.len() >= conc {
                if let Some(r) = inflight.next().await {
                    let (n, failures) = r?;
                    done.absorb(n, failures);
                }
            }
            let chunk = chunk.to_vec();
            inflight.push(async move {
                let n = chunk.len();
                send(store, &chunk, attempts).await.map(|f| (n, f))
            });
        }
    }
    while let Some(r) = inflight.next().await {
        let (n, failures) = r?;
        done.absorb(n, failures);
    }
    Ok(done)
}

/// Delete objects, `concurrency` requests at once (row-linked objects).
pub async fn delete_all(open: &OpenStore, objects: &[Object]) -> Result<Deleted, Error> {
    delete_in_batches(open, objects, usize::MAX, |_, _| Ok(true)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{BoxFut, LockState, NewObject, Probe, StoreInfo};
    use std::sync::Mutex;

    /// Records request sizes; refuses each key once with `SlowDown`, and
    /// the key `locked` always with `AccessDenied`.
    #[derive(Default)]
    struct Fake {
        requests: std::sync::Arc<Mutex<Vec<Vec<String>>>>,
        refused: Mutex<std::collections::HashSet<String>>,
    }

    impl ObjectStore for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn info(&self) -> BoxFut<'_, Result<StoreInfo, StoreError>> {
            Box::pin(async { Ok(StoreInfo::default()) })
        }
        fn list<'a>(&'a self, _: &'a str, _: bool) -> BoxFut<'a, Result<Vec<Version>, StoreError>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn tags<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFut<'a, Result<Option<BTreeMap<String, String>>, StoreError>> {
            Box::pin(async { Ok(None) })
        }
        fn lock<'a>(&'a self, _: &'a Version) -> BoxFut<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
        fn delete<'a>(
            &'a self,
            ids: &'a [ObjectId],
        ) -> BoxFut<'a, Result<Vec<DeleteFailure>, StoreError>> {
            Box::pin(async move {
                self.requests
                    .lock()
                    .unwrap()
                    .push(ids.iter().map(|i| i.key.clone()).collect());
                let mut refused = self.refused.lock().unwrap();
                Ok(ids
                    .iter()
                    .filter_map(|id| {
                        let code = if id.key == "locked" {
                            "AccessDenied"
                        } else if refused.insert(id.key.clone()) && id.key.ends_with('7') {
                            "SlowDown"
                        } else {
                            return None;
                        };
                        Some(DeleteFailure {
                            key: id.key.clone(),
                            version_id: id.version_id.clone(),
                            code: code.into(),
                        })
                    })
                    .collect())
            })
        }
        fn put<'a>(&'a self, _: &'a NewObject) -> BoxFut<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn probe(&self) -> BoxFut<'_, Result<Probe, StoreError>> {
            Box::pin(async { Ok(Probe::default()) })
        }
    }

    #[tokio::test]
    async fn batches_split_retry_slowdown_and_report_refusals() {
        let fake = Fake::default();
        let requests = fake.requests.clone();
        let open = OpenStore {
            store: Box::new(fake),
            info: StoreInfo::default(),
            config: crate::config::Store {
                name: "fake".into(),
                kind: crate::config::StoreKind::Fs { path: "x".into() },
                region: None,
                concurrency: 3,
                max_attempts: 3,
                origin: crate::config::Origin {
                    file: "c.toml".into(),
                    line: 1,
                    column: 1,
                },
            },
        };
        let mut objects: Vec<Object> = (0..2_500)
            .map(|i| Object {
                key: format!("k{i}"),
                versions: vec![Version {
                    key: format!("k{i}"),
                    version_id: None,
                    size: 1,
                    last_modified: None,
                    is_latest: true,
                    delete_marker: false,
                }],
            })
            .collect();
        objects[0].key = "locked".into();
        objects[0].versions[0].key = "locked".into();
        let mut audited = vec![];
        let done = delete_in_batches(&open, &objects, 1_200, |n, b| {
            audited.push((n, b.len()));
            Ok(true)
        })
        .await
        .unwrap();
        assert_eq!(audited, [(1, 1_200), (2, 1_200), (3, 100)]);
        assert_eq!(done.failed.get("AccessDenied"), Some(&1));
        assert_eq!(done.failures(), 1, "SlowDown keys were retried and deleted");
        assert_eq!(done.versions, 2_499);
        let requests = requests.lock().unwrap().clone();
        assert!(requests.iter().all(|r| r.len() <= MAX_DELETE_KEYS));
        // Retries carry only the keys refused with SlowDown (those ending in 7).
        let (retries, firsts): (Vec<_>, Vec<_>) = requests
            .iter()
            .partition(|r| r.iter().all(|k| k.ends_with('7')));
        let mut sizes: Vec<usize> = firsts.iter().map(|r| r.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [100, 200, 200, 1_000, 1_000], "1,200 → 1,000 + 200");
        assert_eq!(retries.iter().map(|r| r.len()).sum::<usize>(), 250);
    }

    fn v(key: &str, id: &str, latest: bool, marker: bool) -> Version {
        Version {
            key: key.into(),
            version_id: Some(id.into()),
            size: if marker { 0 } else { 10 },
            last_modified: None,
            is_latest: latest,
            delete_marker: marker,
        }
    }

    #[test]
    fn grouping_keeps_every_version_and_marker() {
        let objs = group(vec![
            v("a", "1", false, false),
            v("a", "2", true, true),
            v("b", "3", true, false),
        ]);
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].ids().count(), 2);
        assert!(objs[0].newest().unwrap().delete_marker);
        let t = Tally::of(&objs);
        assert_eq!((t.objects, t.versions, t.bytes), (2, 3, 20));
    }

    #[test]
    fn requests_never_exceed_1000_ids() {
        let ids: Vec<ObjectId> = (0..2_501)
            .map(|i| ObjectId {
                key: format!("k{i}"),
                version_id: None,
            })
            .collect();
        let sizes: Vec<usize> = requests(&ids).map(|c| c.len()).collect();
        assert_eq!(sizes, [1000, 1000, 501]);
    }
}
