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
    DeleteFailure, HoldReason, Lister, MAX_DELETE_KEYS, ObjectId, ObjectStore, OpenStore,
    StoreError, Version,
};
use crate::error::Error;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One key and everything stored under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub key: String,
    pub versions: Vec<Version>,
}

impl Object {
    pub(crate) fn bytes(&self) -> u64 {
        self.versions.iter().map(|v| v.size).sum()
    }

    /// The entry that decides the object's age: the latest version or marker.
    pub(crate) fn newest(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.is_latest)
            .or_else(|| self.versions.iter().max_by_key(|v| v.last_modified))
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.versions.iter().map(|v| ObjectId {
            key: v.key.clone(),
            version_id: v.version_id.clone(),
        })
    }
}

/// Objects, versions (delete markers included) and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tally {
    pub objects: u64,
    pub versions: u64,
    pub bytes: u64,
}

impl Tally {
    pub(crate) fn of<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Tally {
        let mut t = Tally::default();
        for o in objects {
            t.add(o);
        }
        t
    }

    pub(crate) fn add(&mut self, o: &Object) {
        self.objects += 1;
        self.versions += o.versions.len() as u64;
        self.bytes += o.bytes();
    }
}

/// What must match, besides the prefix.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Latest version (or marker) modified strictly before this instant.
    pub cutoff: Option<DateTime<Utc>>,
    /// Every tag present on the current version with this value.
    pub tags: BTreeMap<String, String>,
}

/// The objects a prefix (or one exact key) selects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// Objects under the prefix, matching or not (for `max_fraction`).
    pub total: u64,
    pub selected: Vec<Object>,
    /// Selected, but Object Lock keeps them.
    pub held: Vec<(Object, HoldReason)>,
}

/// Group a key-ordered listing into objects.
pub(crate) fn group(versions: Vec<Version>) -> Vec<Object> {
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

/// Objects under a prefix, a page at a time. A key's versions that run on
/// from one page into the next are joined before the object is handed out,
/// so every object is whole; only one page (and that one object) is held.
pub(crate) struct Objects<'a> {
    lister: Box<dyn Lister + 'a>,
    carry: Option<Object>,
    done: bool,
}

impl<'a> Objects<'a> {
    pub(crate) fn new(store: &'a dyn ObjectStore, prefix: &'a str, versioned: bool) -> Objects<'a> {
        Objects {
            lister: store.lister(prefix, versioned),
            carry: None,
            done: false,
        }
    }

    /// The next whole objects, or `None` once the listing is done.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Object>>, StoreError> {
        loop {
            if self.done {
                return Ok(self.carry.take().map(|o| vec![o]));
            }
            let Some(page) = self.lister.next_page().await? else {
                self.done = true;
                continue;
            };
            let mut objs = group(page);
            if let Some(mut c) = self.carry.take() {
                if objs.first().is_some_and(|o| o.key == c.key) {
                    c.versions.append(&mut objs[0].versions);
                    objs[0] = c;
                } else {
                    objs.insert(0, c);
                }
            }
            // The last object may go on in the next page.
            self.carry = objs.pop();
            if !objs.is_empty() {
                return Ok(Some(objs));
            }
        }
    }
}

/// List, filter by age and tags, and set aside what Object Lock holds.
/// `exact`: the prefix is one key; other keys that start with it are not it.
/// The whole selection is returned: for the objects one row names (a
/// handful). A rule over a prefix streams with [`count`] and [`erase_streamed`].
pub(crate) async fn select(
    open: &OpenStore,
    prefix: &str,
    exact: bool,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Selection, StoreError> {
    let mut all = Selection::default();
    let mut pages = Objects::new(open.store.as_ref(), prefix, open.info.versioned);
    while let Some(mut objects) = pages.next().await? {
        if exact {
            objects.retain(|o| o.key == prefix);
        }
        let sel = filter_page(open, objects, filter, now).await?;
        all.total += sel.total;
        all.selected.extend(sel.selected);
        all.held.extend(sel.held);
    }
    Ok(all)
}

/// What a prefix selects, counted, never held: for `plan` and the guards,
/// which must know the whole before anything is touched.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counted {
    /// Objects under the prefix, matching or not.
    pub total: u64,
    pub selected: Tally,
    pub held: Tally,
    pub reasons: BTreeMap<HoldReason, u64>,
    /// Time spent listing and selecting (not deleting), in milliseconds.
    pub list_ms: u64,
}

impl Counted {
    fn add(&mut self, sel: &Selection) {
        self.total += sel.total;
        for o in &sel.selected {
            self.selected.add(o);
        }
        for (o, r) in &sel.held {
            self.held.add(o);
            *self.reasons.entry(*r).or_default() += 1;
        }
    }
}

/// Count what a prefix selects, a page at a time.
pub(crate) async fn count(
    open: &OpenStore,
    prefix: &str,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Counted, StoreError> {
    let started = std::time::Instant::now();
    let mut c = Counted::default();
    let mut pages = Objects::new(open.store.as_ref(), prefix, open.info.versioned);
    while let Some(objects) = pages.next().await? {
        c.add(&filter_page(open, objects, filter, now).await?);
    }
    c.list_ms = started.elapsed().as_millis() as u64;
    Ok(c)
}

/// List a page, select from it, erase what it selects in audited batches,
/// list on: memory holds one page and one batch, whatever the prefix holds.
/// `before` is [`delete_in_batches`]'s, numbered across the whole rule.
/// Returns what was deleted and what the pass selected (held objects included).
pub(crate) async fn erase_streamed(
    open: &OpenStore,
    prefix: &str,
    filter: &Filter,
    now: DateTime<Utc>,
    batch_size: usize,
    mut before: impl FnMut(u64, &[Object]) -> Result<bool, Error>,
) -> Result<(Deleted, Counted), Error> {
    let batch_size = batch_size.max(1);
    let mut done = Deleted::default();
    let mut counted = Counted::default();
    let mut pending: Vec<Object> = Vec::new();
    let mut pages = Objects::new(open.store.as_ref(), prefix, open.info.versioned);
    let mut numbered = 0u64;
    let mut listing = std::time::Duration::ZERO;
    loop {
        let t = std::time::Instant::now();
        let page = pages
            .next()
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        let Some(objects) = page else {
            listing += t.elapsed();
            break;
        };
        let sel = filter_page(open, objects, filter, now)
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        listing += t.elapsed();
        counted.list_ms = listing.as_millis() as u64;
        counted.add(&sel);
        pending.extend(sel.selected);
        while pending.len() >= batch_size {
            let batch: Vec<Object> = pending.drain(..batch_size).collect();
            if !flush(open, &batch, &mut numbered, &mut before, &mut done).await? {
                return Ok((done, counted));
            }
        }
    }
    counted.list_ms = listing.as_millis() as u64;
    if !pending.is_empty() {
        flush(open, &pending, &mut numbered, &mut before, &mut done).await?;
    }
    Ok((done, counted))
}

/// Delete one batch (`before` first), numbered after the batches before it.
/// `false`: `before` asked to stop.
async fn flush(
    open: &OpenStore,
    batch: &[Object],
    numbered: &mut u64,
    before: &mut impl FnMut(u64, &[Object]) -> Result<bool, Error>,
    done: &mut Deleted,
) -> Result<bool, Error> {
    let d = delete_in_batches(open, batch, batch.len(), |_, b| {
        *numbered += 1;
        before(*numbered, b)
    })
    .await?;
    done.merge(d);
    Ok(!done.stopped)
}

/// Filter one page of objects by age and tags, and set aside what Object
/// Lock holds.
async fn filter_page(
    open: &OpenStore,
    mut objects: Vec<Object>,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Selection, StoreError> {
    let store = open.store.as_ref();
    let conc = open.config.concurrency.max(1);
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

/// The latest retention date in force on any version of a held object, for
/// the pending list ("retention until <date>"); `None` under a legal hold alone.
pub(crate) async fn retained_until(
    open: &OpenStore,
    o: &Object,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut until: Option<DateTime<Utc>> = None;
    for v in o.versions.iter().filter(|v| !v.delete_marker) {
        if let Some(t) = open.store.lock(v).await?.retain_until
            && t > now
        {
            until = Some(until.map_or(t, |u| u.max(t)));
        }
    }
    Ok(until)
}

/// What a deletion did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deleted {
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
    /// Keys sent again after a transient per-key refusal (`SlowDown`, …).
    pub retried_keys: u64,
    /// Bytes of the objects with a refused version: not erased, so never
    /// reported as erased.
    pub failed_bytes: u64,
}

impl Deleted {
    pub(crate) fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Add what a later batch deleted.
    pub(crate) fn merge(&mut self, d: Deleted) {
        self.versions += d.versions;
        self.requests += d.requests;
        for (c, n) in d.failed {
            *self.failed.entry(c).or_default() += n;
        }
        self.failed_keys.extend(d.failed_keys);
        self.batches += d.batches;
        self.stopped |= d.stopped;
        self.retried_keys += d.retried_keys;
        self.failed_bytes += d.failed_bytes;
    }

    fn absorb(&mut self, sent: usize, (failures, retried): (Vec<DeleteFailure>, u64)) {
        self.retried_keys += retried;
        self.requests += 1;
        self.versions += (sent - failures.len()) as u64;
        for f in failures {
            *self.failed.entry(f.code).or_default() += 1;
            self.failed_keys.insert(f.key);
        }
    }

    /// `3 refused (AccessDenied: 2, InternalError: 1)`.
    pub(crate) fn describe_failures(&self) -> String {
        let codes: Vec<String> = self
            .failed
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        format!("{} refused ({})", self.failures(), codes.join(", "))
    }
}

/// Split ids into `DeleteObjects` requests: at most 1,000 each.
pub(crate) fn requests(ids: &[ObjectId]) -> std::slice::Chunks<'_, ObjectId> {
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
) -> Result<(Vec<DeleteFailure>, u64), StoreError> {
    let mut pending: Vec<ObjectId> = ids.to_vec();
    let mut permanent = Vec::new();
    let mut retried = 0u64;
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
        retried += pending.len() as u64;
        tracing::warn!(
            store = store.name(),
            keys = pending.len(),
            attempt,
            "DeleteObjects refused keys with a transient code; sending them again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(6))).await;
    }
    Ok((permanent, retried))
}

/// Delete objects in batches: `before` runs (and must succeed) before any
/// object of its batch is deleted — that is where the audit record is
/// written; it returns `false` to stop (cancellation) before the batch.
/// Requests of one batch and the next overlap, `concurrency` at once.
pub(crate) async fn delete_in_batches(
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
                    let (n, answer) = r?;
                    done.absorb(n, answer);
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
        let (n, answer) = r?;
        done.absorb(n, answer);
    }
    if !done.failed_keys.is_empty() {
        done.failed_bytes = objects
            .iter()
            .filter(|o| done.failed_keys.contains(&o.key))
            .map(Object::bytes)
            .sum();
    }
    Ok(done)
}

/// Delete objects, `concurrency` requests at once (row-linked objects).
pub(crate) async fn delete_all(open: &OpenStore, objects: &[Object]) -> Result<Deleted, Error> {
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
        fn lister<'a>(&'a self, _: &'a str, _: bool) -> Box<dyn Lister + 'a> {
            Box::new(Pages(vec![]))
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

    /// Pages handed out in order (the last first: popped from the end).
    struct Pages(Vec<Vec<Version>>);

    impl Lister for Pages {
        fn next_page(&mut self) -> BoxFut<'_, Result<Option<Vec<Version>>, StoreError>> {
            Box::pin(async move { Ok(self.0.pop()) })
        }
    }

    #[tokio::test]
    async fn a_key_whose_versions_span_pages_comes_out_whole() {
        struct Paged;
        impl ObjectStore for Paged {
            fn name(&self) -> &str {
                "paged"
            }
            fn info(&self) -> BoxFut<'_, Result<StoreInfo, StoreError>> {
                Box::pin(async { Ok(StoreInfo::default()) })
            }
            fn lister<'a>(&'a self, _: &'a str, _: bool) -> Box<dyn Lister + 'a> {
                Box::new(Pages(vec![
                    vec![v("c", "6", true, false)],
                    vec![v("b", "4", false, false), v("b", "5", true, false)],
                    vec![v("a", "1", true, false), v("b", "2", false, false)],
                    vec![v("a", "0", false, false)],
                ]))
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
                _: &'a [ObjectId],
            ) -> BoxFut<'a, Result<Vec<DeleteFailure>, StoreError>> {
                Box::pin(async { Ok(vec![]) })
            }
            fn put<'a>(&'a self, _: &'a NewObject) -> BoxFut<'a, Result<(), StoreError>> {
                Box::pin(async { Ok(()) })
            }
            fn probe(&self) -> BoxFut<'_, Result<Probe, StoreError>> {
                Box::pin(async { Ok(Probe::default()) })
            }
        }
        let store = Paged;
        let mut pages = Objects::new(&store, "", true);
        let mut seen = vec![];
        while let Some(objs) = pages.next().await.unwrap() {
            for o in objs {
                seen.push((o.key.clone(), o.versions.len()));
            }
        }
        assert_eq!(
            seen,
            [
                ("a".to_string(), 2),
                ("b".to_string(), 3),
                ("c".to_string(), 1)
            ]
        );
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
