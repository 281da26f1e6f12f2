//! Object storage: one trait, an S3 implementation and a local-folder one.
//!
//! What this module owns:
//! - the [`ObjectStore`] trait: list every version and delete marker under a
//!   prefix, read tags and Object Lock state, delete by version id, and put
//!   (for seeding the demo, tests and benchmarks only);
//! - `erase`: selection (prefix, age, tags), the Object Lock check and
//!   batched deletion — the only code that deletes objects;
//! - `linked`: objects named by SQL rows, erased with them;
//! - [`Stores`]: stores opened on first use, so an unreachable store fails
//!   only the rules that use it.
//!
//! What it must never do: put a key name, a tag value or an object's content
//! into a log line, an error or the audit log. Keys are named by rules after
//! subject ids (`avatars/{id}/`), so they are personal data; errors carry the
//! store, the operation and the server's error code only.

pub(crate) mod erase;
/// The local-folder store (public: tests seed it).
pub mod fs;
pub(crate) mod linked;
/// The S3 store (public: tests build one over their own client).
pub mod s3;

use crate::config::{Config, Store, StoreKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The future every [`ObjectStore`] method returns: boxed, so the trait
/// stays object-safe and a run can hold `Box<dyn ObjectStore>`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// S3 accepts at most this many keys in one `DeleteObjects` request.
pub const MAX_DELETE_KEYS: usize = 1_000;

/// One version of an object, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    /// `None` in a store that was never versioned (delete by key).
    pub version_id: Option<String>,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// A key to delete: one version, or the object itself when unversioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    pub key: String,
    pub version_id: Option<String>,
}

/// A key whose deletion the store refused. `key` stays inside Lethe: it is
/// never logged or audited, only counted by `code`.
#[derive(Debug, Clone)]
pub struct DeleteFailure {
    pub key: String,
    pub version_id: Option<String>,
    pub code: String,
}

/// What a store is, learnt once per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreInfo {
    /// Versioning is or was on (a suspended bucket keeps its versions): list
    /// and delete every version and delete marker by version id.
    pub versioned: bool,
    /// Object Lock may protect versions: read each version's lock before deleting.
    pub lock_enabled: bool,
}

/// Objects a rule erased (or would erase) through one store and one way of
/// naming them. Never a key name: keys can carry subject ids. Part of the
/// audit format (`crate::audit::ObjectCount`): its fields are serialized as-is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ObjectCount {
    pub store: String,
    /// `store:prefix` of an object rule; `store:avatars/{id}/` (a template) or
    /// `store:[column]` for objects named by rows.
    pub via: String,
    pub objects: u64,
    /// Versions and delete markers.
    pub versions: u64,
    pub bytes: u64,
    /// Objects kept because Object Lock protects them.
    #[serde(default)]
    pub held: u64,
}

/// S3's two retention modes; both keep a version from Lethe, which never
/// bypasses governance retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    Governance,
    Compliance,
}

/// Object Lock state of one version (S3 `HeadObject`; the fs store's sidecar).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    #[serde(default)]
    pub legal_hold: bool,
    #[serde(default)]
    pub mode: Option<LockMode>,
    #[serde(default)]
    pub retain_until: Option<DateTime<Utc>>,
}

/// Why an object is kept although a rule selected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HoldReason {
    LegalHold,
    Governance,
    Compliance,
}

impl HoldReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HoldReason::LegalHold => "legal_hold",
            HoldReason::Governance => "governance",
            HoldReason::Compliance => "compliance",
        }
    }
}

impl LockState {
    /// The hold in force at `now` (the store's clock decides, not `--as-of`).
    pub(crate) fn hold(&self, now: DateTime<Utc>) -> Option<HoldReason> {
        if self.legal_hold {
            return Some(HoldReason::LegalHold);
        }
        match (self.mode, self.retain_until) {
            (Some(mode), Some(until)) if until > now => Some(match mode {
                LockMode::Governance => HoldReason::Governance,
                LockMode::Compliance => HoldReason::Compliance,
            }),
            _ => None,
        }
    }
}

/// An object to create (demo, tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub key: String,
    pub body: Vec<u8>,
    pub tags: BTreeMap<String, String>,
    pub lock: LockState,
}

/// What `check` learns from a store.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// The region the store reports for itself, when it reports one.
    pub region: Option<String>,
}

/// A failed store operation. Never carries a key name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store `{store}`: {op}: {message}")]
pub struct StoreError {
    pub store: String,
    pub op: &'static str,
    pub message: String,
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        crate::error::Error::Store {
            store: e.store,
            op: e.op,
            message: e.message,
        }
    }
}

/// The operations Lethe needs from an object store.
pub trait ObjectStore: Send + Sync {
    fn name(&self) -> &str;

    /// Versioning and Object Lock; the first request, so it also tells whether
    /// the store can be reached at all.
    fn info(&self) -> BoxFut<'_, Result<StoreInfo, StoreError>>;

    /// Every version and delete marker under `prefix` (each object once,
    /// without version ids, when not `versioned`), a page at a time: the
    /// listing is never held whole (a prefix may hold millions of keys).
    fn lister<'a>(&'a self, prefix: &'a str, versioned: bool) -> Box<dyn Lister + 'a>;

    /// The whole listing, in key order: only for prefixes known to be small
    /// (one row's objects, tests). Rules over a prefix use [`Self::lister`].
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        versioned: bool,
    ) -> BoxFut<'a, Result<Vec<Version>, StoreError>> {
        Box::pin(async move {
            let mut l = self.lister(prefix, versioned);
            let mut out = Vec::new();
            while let Some(page) = l.next_page().await? {
                out.extend(page);
            }
            // Stable: a key's versions keep the order the store gave them.
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    /// Tags of the object's current version; `None` when it has none (gone,
    /// or its current version is a delete marker).
    fn tags<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<BTreeMap<String, String>>, StoreError>>;

    /// Object Lock state of one version.
    fn lock<'a>(&'a self, v: &'a Version) -> BoxFut<'a, Result<LockState, StoreError>>;

    /// Delete at most [`MAX_DELETE_KEYS`] ids in one request, never bypassing
    /// governance retention. Per-key refusals come back as failures.
    fn delete<'a>(
        &'a self,
        ids: &'a [ObjectId],
    ) -> BoxFut<'a, Result<Vec<DeleteFailure>, StoreError>>;

    /// Create an object (seeding only: the demo, tests and benchmarks).
    fn put<'a>(&'a self, obj: &'a NewObject) -> BoxFut<'a, Result<(), StoreError>>;

    /// Reachability and the store's own region, for `check`.
    fn probe(&self) -> BoxFut<'_, Result<Probe, StoreError>>;

    /// Requests tried again so far (throttling, 5xx, resets, timeouts), by
    /// the client's own retry policy: a store without one retries nothing.
    fn retries(&self) -> u64 {
        0
    }
}

/// Versions listed per request: S3's own page size, and the fs store's.
pub const LIST_PAGE: usize = 1_000;

/// One listing in progress. Pages come in the store's order; every version
/// of one key is adjacent to the others, though a key's versions may run on
/// from one page into the next (S3 pages by version, not by key). The fs
/// store keeps no versions, so its one entry per key is always whole.
pub trait Lister: Send {
    /// The next page (at most about [`LIST_PAGE`] versions); `None` once done.
    fn next_page(&mut self) -> BoxFut<'_, Result<Option<Vec<Version>>, StoreError>>;
}

/// A store opened for a run, with what it said about itself.
pub(crate) struct OpenStore {
    pub store: Box<dyn ObjectStore>,
    pub info: StoreInfo,
    pub config: Store,
}

/// Build the store a config names (no network yet).
pub(crate) async fn open(config: &Store) -> Box<dyn ObjectStore> {
    match &config.kind {
        StoreKind::S3 { .. } => Box::new(s3::S3Store::new(config).await),
        StoreKind::Fs { path } => Box::new(fs::FsStore::new(&config.name, path.clone())),
    }
}

/// A store as first opened: ready, or the reason it is not.
type Opened = Result<Arc<OpenStore>, String>;

/// Stores opened on first use, shared by every rule of a run. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    config: Arc<BTreeMap<String, Store>>,
    open: Arc<Mutex<BTreeMap<String, Opened>>>,
}

impl Stores {
    pub(crate) fn new(config: &Config) -> Stores {
        Stores {
            config: Arc::new(config.stores.clone()),
            open: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The store, opened and asked for its versioning and lock settings. A
    /// failure is remembered: every later rule on the store fails at once.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<OpenStore>, String> {
        let mut open = self.open.lock().await;
        if let Some(r) = open.get(name) {
            return r.clone();
        }
        let res = match self.config.get(name) {
            None => Err(format!("unknown store `{name}`")),
            Some(cfg) => {
                let store = self::open(cfg).await;
                match store.info().await {
                    Ok(info) => Ok(Arc::new(OpenStore {
                        store,
                        info,
                        config: cfg.clone(),
                    })),
                    Err(e) => {
                        tracing::error!(store = name, error = %e, "store unreachable");
                        Err(format!("{e} ({})", cfg.display()))
                    }
                }
            }
        };
        open.insert(name.to_string(), res.clone());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_holds_until_retention_passes() {
        let now = Utc::now();
        let later = now + chrono::TimeDelta::days(1);
        let earlier = now - chrono::TimeDelta::days(1);
        let gov = |until| LockState {
            legal_hold: false,
            mode: Some(LockMode::Governance),
            retain_until: Some(until),
        };
        assert_eq!(gov(later).hold(now), Some(HoldReason::Governance));
        assert_eq!(gov(earlier).hold(now), None);
        let legal = LockState {
            legal_hold: true,
            ..gov(earlier)
        };
        assert_eq!(legal.hold(now), Some(HoldReason::LegalHold));
        assert_eq!(LockState::default().hold(now), None);
    }
}
