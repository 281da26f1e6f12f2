//! The local-folder store: the embedded default (`var/objects/...`), so the
//! project runs on a fresh machine without an S3 server.
//!
//! A key is a relative path under the folder (`avatars/7/a.jpg`). A folder
//! has no versions, tags or Object Lock, so the store keeps what S3 keeps in
//! metadata in a sidecar per object: `.lethe-meta/<key>.json` holding
//! `{"tags": {...}, "legal_hold": true, "mode": "GOVERNANCE",
//! "retain_until": "2030-01-01T00:00:00Z"}` (every field optional). That is
//! how an operator places a hold on a local object; rules never delete a
//! held one. Last-modified time is the file's modification time.
//!
//! Keys are checked before any path is built: no absolute paths, no `.` or
//! `..` segments, no empty segments, nothing under `.lethe-meta/` — a key
//! read from a database row can never reach outside the folder.

use super::{
    BoxFut, DeleteFailure, Lister, LockState, NewObject, ObjectId, ObjectStore, Probe, StoreError,
    StoreInfo, Version,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The folder (under the store's root) holding tags and holds.
pub(crate) const META_DIR: &str = ".lethe-meta";

/// A store in a local folder: the demo's and the tests' store, with the
/// same listing, tags and Object Lock semantics as S3 (kept in sidecars).
pub struct FsStore {
    name: String,
    root: PathBuf,
}

/// The sidecar of one object.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Meta {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(flatten)]
    pub lock: LockState,
}

fn safe_segments(s: &str, allow_trailing_slash: bool) -> bool {
    if s.starts_with('/') || s.contains('\\') || s.contains('\0') {
        return false;
    }
    let body = if allow_trailing_slash {
        s.strip_suffix('/').unwrap_or(s)
    } else {
        s
    };
    if body.is_empty() {
        return allow_trailing_slash;
    }
    let mut segs = body.split('/');
    let first_ok = segs.clone().next() != Some(META_DIR);
    first_ok && segs.all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

impl FsStore {
    /// A store rooted at `root`; nothing is touched until the first request.
    pub fn new(name: &str, root: PathBuf) -> FsStore {
        FsStore {
            name: name.to_string(),
            root,
        }
    }

    fn err(&self, op: &'static str, message: impl Into<String>) -> StoreError {
        StoreError {
            store: self.name.clone(),
            op,
            message: message.into(),
        }
    }

    fn path_of(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        if !safe_segments(key, false) {
            return Err(self.err(
                op,
                "a key that is absolute, empty, or has `.`, `..` or empty segments cannot name a file",
            ));
        }
        Ok(self.root.join(key))
    }

    fn meta_of(&self, key: &str) -> PathBuf {
        self.root.join(META_DIR).join(format!("{key}.json"))
    }

    fn read_meta(&self, op: &'static str, key: &str) -> Result<Option<Meta>, StoreError> {
        match std::fs::read(self.meta_of(key)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.err(op, format!("unreadable sidecar in {META_DIR}/: {e}"))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(op, format!("cannot read a sidecar: {}", e.kind()))),
        }
    }

    /// Remove `dir` and its parents while they are empty, up to `stop`.
    fn prune(dir: &Path, stop: &Path) {
        let mut d = dir.to_path_buf();
        while d.starts_with(stop) && d != stop {
            if std::fs::remove_dir(&d).is_err() {
                break;
            }
            if !d.pop() {
                break;
            }
        }
    }
}

/// One lazy walk of the folder: a stack of open directories, read an entry
/// at a time, so memory holds the path from the root to where the walk is,
/// never the listing. Order is the file system's (each key has one entry,
/// so no grouping depends on it).
struct FsLister<'a> {
    store: &'a FsStore,
    prefix: &'a str,
    /// Set when the prefix itself is unsafe: reported on the first page.
    refused: bool,
    stack: Vec<std::fs::ReadDir>,
    started: bool,
}

impl FsLister<'_> {
    fn err(&self, e: std::io::Error) -> StoreError {
        self.store
            .err("list", format!("cannot read the folder: {}", e.kind()))
    }

    fn open(&mut self, dir: &Path) -> Result<(), StoreError> {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                self.stack.push(rd);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn page(&mut self) -> Result<Option<Vec<Version>>, StoreError> {
        if self.refused {
            return Err(self.store.err(
                "list",
                "a prefix with `.`, `..` or empty segments cannot name a folder",
            ));
        }
        if !self.started {
            self.started = true;
            let dir_part = match self.prefix.rfind('/') {
                Some(i) => &self.prefix[..=i],
                None => "",
            };
            let start = self.store.root.join(dir_part);
            self.open(&start)?;
        }
        let mut out = Vec::new();
        while out.len() < super::LIST_PAGE {
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            let entry = match top.next() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(e) => e.map_err(|e| self.err(e))?,
            };
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(&self.store.root) else {
                continue;
            };
            let Some(key) = rel
                .to_str()
                .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"))
            else {
                continue;
            };
            if key == META_DIR {
                continue;
            }
            let ft = entry.file_type().map_err(|e| self.err(e))?;
            if ft.is_dir() {
                // Descend only where keys under the prefix can be.
                let as_dir = format!("{key}/");
                if as_dir.starts_with(self.prefix) || self.prefix.starts_with(&as_dir) {
                    self.open(&path)?;
                }
            } else if ft.is_file() && key.starts_with(self.prefix) {
                let md = entry.metadata().map_err(|e| self.err(e))?;
                out.push(Version {
                    key,
                    version_id: None,
                    size: md.len(),
                    last_modified: md.modified().ok().map(DateTime::<Utc>::from),
                    is_latest: true,
                    delete_marker: false,
                });
            }
        }
        if out.is_empty() && self.stack.is_empty() {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

impl Lister for FsLister<'_> {
    fn next_page(&mut self) -> BoxFut<'_, Result<Option<Vec<Version>>, StoreError>> {
        Box::pin(async move { self.page() })
    }
}

impl ObjectStore for FsStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> BoxFut<'_, Result<StoreInfo, StoreError>> {
        Box::pin(async move {
            std::fs::create_dir_all(&self.root).map_err(|e| {
                self.err(
                    "open",
                    format!("cannot create {}: {e}", self.root.display()),
                )
            })?;
            Ok(StoreInfo {
                versioned: false,
                lock_enabled: self.root.join(META_DIR).is_dir(),
            })
        })
    }

    fn lister<'a>(&'a self, prefix: &'a str, _versioned: bool) -> Box<dyn Lister + 'a> {
        // The folder part of the prefix must be as safe as a key.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        Box::new(FsLister {
            store: self,
            prefix,
            refused: !safe_segments(dir_part, true),
            stack: Vec::new(),
            started: false,
        })
    }

    fn tags<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<BTreeMap<String, String>>, StoreError>> {
        Box::pin(async move {
            if !self.path_of("tags", key)?.is_file() {
                return Ok(None);
            }
            Ok(Some(
                self.read_meta("tags", key)?
                    .map(|m| m.tags)
                    .unwrap_or_default(),
            ))
        })
    }

    fn lock<'a>(&'a self, v: &'a Version) -> BoxFut<'a, Result<LockState, StoreError>> {
        Box::pin(async move {
            self.path_of("lock", &v.key)?;
            Ok(self
                .read_meta("lock", &v.key)?
                .map(|m| m.lock)
                .unwrap_or_default())
        })
    }

    fn delete<'a>(
        &'a self,
        ids: &'a [ObjectId],
    ) -> BoxFut<'a, Result<Vec<DeleteFailure>, StoreError>> {
        Box::pin(async move {
            let mut failures = Vec::new();
            for id in ids {
                let path = match self.path_of("delete", &id.key) {
                    Ok(p) => p,
                    Err(_) => {
                        failures.push(DeleteFailure {
                            key: id.key.clone(),
                            version_id: None,
                            code: "InvalidKey".into(),
                        });
                        continue;
                    }
                };
                // The same refusal S3 gives: a held object is not deleted.
                match self.read_meta("delete", &id.key) {
                    Ok(Some(m)) if m.lock.hold(Utc::now()).is_some() => {
                        failures.push(DeleteFailure {
                            key: id.key.clone(),
                            version_id: None,
                            code: "AccessDenied".into(),
                        });
                        continue;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        failures.push(DeleteFailure {
                            key: id.key.clone(),
                            version_id: None,
                            code: "UnreadableSidecar".into(),
                        });
                        continue;
                    }
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        failures.push(DeleteFailure {
                            key: id.key.clone(),
                            version_id: None,
                            code: format!("{:?}", e.kind()),
                        });
                        continue;
                    }
                }
                let meta = self.meta_of(&id.key);
                let _ = std::fs::remove_file(&meta);
                if let Some(parent) = path.parent() {
                    Self::prune(parent, &self.root);
                }
                if let Some(parent) = meta.parent() {
                    Self::prune(parent, &self.root.join(META_DIR));
                }
            }
            Ok(failures)
        })
    }

    fn put<'a>(&'a self, obj: &'a NewObject) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let path = self.path_of("put", &obj.key)?;
            let io = |e: std::io::Error| self.err("put", format!("cannot write: {}", e.kind()));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&path, &obj.body).map_err(io)?;
            if !obj.tags.is_empty() || obj.lock != LockState::default() {
                let meta = self.meta_of(&obj.key);
                if let Some(parent) = meta.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let m = Meta {
                    tags: obj.tags.clone(),
                    lock: obj.lock.clone(),
                };
                std::fs::write(&meta, serde_json::to_vec(&m).expect("serializes")).map_err(io)?;
            }
            Ok(())
        })
    }

    fn probe(&self) -> BoxFut<'_, Result<Probe, StoreError>> {
        Box::pin(async move {
            self.info().await?;
            Ok(Probe::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_folder() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            ".lethe-meta/x.json",
            "a/",
        ] {
            assert!(!safe_segments(bad, false), "{bad:?} must be refused");
        }
        for good in ["a", "avatars/7/a.jpg", "a/.hidden", "..x/y"] {
            assert!(safe_segments(good, false), "{good:?} is a fine key");
        }
        assert!(safe_segments("", true));
        assert!(safe_segments("avatars/", true));
        assert!(!safe_segments("../", true));
    }

    #[tokio::test]
    async fn put_list_hold_delete_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new("t", dir.path().join("media"));
        s.info().await.unwrap();
        let obj = |key: &str| NewObject {
            key: key.into(),
            body: b"x".to_vec(),
            ..Default::default()
        };
        s.put(&obj("avatars/1/a.jpg")).await.unwrap();
        s.put(&obj("avatars/10/a.jpg")).await.unwrap();
        let mut held = obj("avatars/2/a.jpg");
        held.lock.legal_hold = true;
        s.put(&held).await.unwrap();
        let keys = |v: Vec<Version>| v.into_iter().map(|v| v.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.list("avatars/1/", false).await.unwrap()),
            ["avatars/1/a.jpg"]
        );
        assert_eq!(s.list("avatars/", false).await.unwrap().len(), 3);
        assert_eq!(s.list("avatars/1", false).await.unwrap().len(), 2);
        assert!(s.list("../", false).await.is_err());
        let ids = |k: &str| ObjectId {
            key: k.into(),
            version_id: None,
        };
        let failed = s
            .delete(&[ids("avatars/1/a.jpg"), ids("avatars/2/a.jpg")])
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].code, "AccessDenied");
        assert!(
            !dir.path().join("media/avatars/1").exists(),
            "empty folders go"
        );
        assert!(dir.path().join("media/avatars/2/a.jpg").exists());
        assert!(s.info().await.unwrap().lock_enabled);
    }
}
