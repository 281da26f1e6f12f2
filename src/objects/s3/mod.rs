//! The S3 store (aws-sdk-s3), for AWS and S3-compatible servers.
//!
//! Why it is built this way:
//! - credentials come from the standard AWS chain (environment, profile, web
//!   identity, container, instance metadata), never from Lethe's files;
//! - checksums only when an operation requires one (`WhenRequired`), because
//!   several S3-compatible servers reject the SDK's default CRC32 headers;
//! - retries are the SDK's standard mode (exponential backoff with jitter on
//!   throttling such as `SlowDown`, 5xx and connection errors), `max_attempts`
//!   per request, with connect and per-attempt timeouts so a dead endpoint
//!   fails the rule instead of hanging it;
//! - deletes never set `BypassGovernanceRetention`: a locked version stays.
//!
//! Errors name the store, the operation and S3's error code; a message is
//! scrubbed of the key it concerns (keys can carry subject ids).

pub(crate) mod client;
pub(crate) mod lock;

use super::{
    BoxFut, DeleteFailure, Lister, LockMode, LockState, NewObject, ObjectId, ObjectStore, Probe,
    StoreError, StoreInfo, Version,
};
use crate::config::{Store, StoreKind};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, Delete, ObjectIdentifier, ObjectLockLegalHoldStatus,
    ObjectLockMode,
};
use chrono::{DateTime, Utc};
use client::{Attempts, counting_client, describe};
use lock::bucket_lock;
use std::collections::BTreeMap;

/// A bucket, reached with the client `client.rs` builds, its retries counted.
pub struct S3Store {
    name: String,
    bucket: String,
    client: Client,
    attempts: std::sync::Arc<Attempts>,
}

impl S3Store {
    pub(crate) async fn new(cfg: &Store) -> S3Store {
        let StoreKind::S3 {
            bucket,
            endpoint,
            path_style,
        } = &cfg.kind
        else {
            unreachable!("S3Store::new is only called for kind = \"s3\"");
        };
        let attempts = std::sync::Arc::new(Attempts::default());
        S3Store {
            name: cfg.name.clone(),
            bucket: bucket.clone(),
            client: counting_client(
                cfg.region.as_deref(),
                endpoint.as_deref(),
                *path_style,
                cfg.max_attempts,
                Some(attempts.clone()),
            )
            .await,
            attempts,
        }
    }

    /// A store over a client built elsewhere (tests, benchmarks).
    pub fn with_client(name: &str, bucket: &str, client: Client) -> S3Store {
        S3Store {
            name: name.to_string(),
            bucket: bucket.to_string(),
            client,
            attempts: Default::default(),
        }
    }

    /// Whether versioning is (or was) on: `Enabled` or `Suspended` (a suspended
    /// bucket keeps its old versions). Some S3-compatible servers (moto among
    /// them) answer with a root element the SDK refuses; the status is then
    /// read from the answer's body, and an unreadable answer counts as
    /// versioned, so every version is listed rather than one missed.
    async fn versioning(&self) -> Result<bool, StoreError> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(matches!(
                out.status(),
                Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)
            )),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
                Ok(match se.raw().body().bytes() {
                    Some(body) => {
                        let body = String::from_utf8_lossy(body);
                        body.contains("<Status>Enabled</Status>")
                            || body.contains("<Status>Suspended</Status>")
                    }
                    None => true,
                })
            }
            Err(e) => Err(self.err("GetBucketVersioning", e, None)),
        }
    }

    fn err<E>(&self, op: &'static str, e: SdkError<E>, key: Option<&str>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        StoreError {
            store: self.name.clone(),
            op,
            message: scrub(&describe(&e), key),
        }
    }
}

fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Replace a key in a message: keys can carry subject ids.
fn scrub(message: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if !k.is_empty() => message.replace(k, "<key>"),
        _ => message.to_string(),
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// `k1=v1&k2=v2`, percent-encoded, for `x-amz-tagging`.
fn tagging(tags: &BTreeMap<String, String>) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    tags.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One S3 listing: `ListObjectsV2` (unversioned) or `ListObjectVersions`
/// pages, one request per [`Lister::next_page`], resumed from the markers
/// the previous page gave. Only the markers are kept between pages.
struct S3Lister<'a> {
    store: &'a S3Store,
    prefix: &'a str,
    versioned: bool,
    continuation: Option<String>,
    key_marker: Option<String>,
    version_marker: Option<String>,
    done: bool,
}

impl S3Lister<'_> {
    async fn unversioned(&mut self) -> Result<Vec<Version>, StoreError> {
        let s = self.store;
        let page = s
            .client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(self.prefix)
            .set_continuation_token(self.continuation.take())
            .send()
            .await
            .map_err(|e| s.err("ListObjectsV2", e, Some(self.prefix)))?;
        let out = page
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Version {
                    key: o.key()?.to_string(),
                    version_id: None,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o.last_modified().and_then(to_chrono),
                    is_latest: true,
                    delete_marker: false,
                })
            })
            .collect();
        self.continuation = page.next_continuation_token().map(str::to_string);
        self.done = page.is_truncated() != Some(true) || self.continuation.is_none();
        Ok(out)
    }

    async fn versions(&mut self) -> Result<Vec<Version>, StoreError> {
        let s = self.store;
        let page = s
            .client
            .list_object_versions()
            .bucket(&s.bucket)
            .prefix(self.prefix)
            .set_key_marker(self.key_marker.take())
            .set_version_id_marker(self.version_marker.take())
            .send()
            .await
            .map_err(|e| s.err("ListObjectVersions", e, Some(self.prefix)))?;
        let mut out = Vec::with_capacity(page.versions().len() + page.delete_markers().len());
        for v in page.versions() {
            let Some(key) = v.key() else { continue };
            out.push(Version {
                key: key.to_string(),
                version_id: v.version_id().map(str::to_string),
                size: v.size().unwrap_or(0).max(0) as u64,
                last_modified: v.last_modified().and_then(to_chrono),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
            });
        }
        for m in page.delete_markers() {
            let Some(key) = m.key() else { continue };
            out.push(Version {
                key: key.to_string(),
                version_id: m.version_id().map(str::to_string),
                size: 0,
                last_modified: m.last_modified().and_then(to_chrono),
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
            });
        }
        // Versions and markers come in two lists: merge them per key.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if page.is_truncated() != Some(true) {
            self.done = true;
            return Ok(out);
        }
        self.key_marker = page.next_key_marker().map(str::to_string);
        self.version_marker = page.next_version_id_marker().map(str::to_string);
        if self.key_marker.is_none() {
            return Err(StoreError {
                store: s.name.clone(),
                op: "ListObjectVersions",
                message: "a truncated page without a next marker".into(),
            });
        }
        Ok(out)
    }
}

impl Lister for S3Lister<'_> {
    fn next_page(&mut self) -> BoxFut<'_, Result<Option<Vec<Version>>, StoreError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            let page = if self.versioned {
                self.versions().await?
            } else {
                self.unversioned().await?
            };
            Ok(Some(page))
        })
    }
}

impl ObjectStore for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> BoxFut<'_, Result<StoreInfo, StoreError>> {
        Box::pin(async move {
            let versioned = self.versioning().await?;
            let lock_enabled = match bucket_lock(&self.client, &self.bucket).await {
                // Unknown (e.g. not allowed to ask): read every version's lock.
                Ok(answer) => answer.assume_locked(),
                Err(e) => return Err(self.err("GetObjectLockConfiguration", e, None)),
            };
            Ok(StoreInfo {
                versioned: versioned || lock_enabled,
                lock_enabled,
            })
        })
    }

    fn retries(&self) -> u64 {
        self.attempts.retries()
    }

    fn lister<'a>(&'a self, prefix: &'a str, versioned: bool) -> Box<dyn Lister + 'a> {
        Box::new(S3Lister {
            store: self,
            prefix,
            versioned,
            continuation: None,
            key_marker: None,
            version_marker: None,
            done: false,
        })
    }

    fn tags<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<BTreeMap<String, String>>, StoreError>> {
        Box::pin(async move {
            match self
                .client
                .get_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => Ok(Some(
                    out.tag_set()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect(),
                )),
                // Gone, or the current version is a delete marker.
                Err(e) if matches!(status_of(&e), Some(404 | 405)) => Ok(None),
                Err(e) => Err(self.err("GetObjectTagging", e, Some(key))),
            }
        })
    }

    fn lock<'a>(&'a self, v: &'a Version) -> BoxFut<'a, Result<LockState, StoreError>> {
        Box::pin(async move {
            // moto does not implement GetObjectRetention; HeadObject carries
            // the same three fields on AWS and on moto.
            let out = match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&v.key)
                .set_version_id(v.version_id.clone())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if status_of(&e) == Some(404) => return Ok(LockState::default()),
                Err(e) => return Err(self.err("HeadObject", e, Some(&v.key))),
            };
            Ok(LockState {
                legal_hold: matches!(
                    out.object_lock_legal_hold_status(),
                    Some(ObjectLockLegalHoldStatus::On)
                ),
                mode: match out.object_lock_mode() {
                    Some(ObjectLockMode::Governance) => Some(LockMode::Governance),
                    Some(ObjectLockMode::Compliance) => Some(LockMode::Compliance),
                    _ => None,
                },
                retain_until: out.object_lock_retain_until_date().and_then(to_chrono),
            })
        })
    }

    fn delete<'a>(
        &'a self,
        ids: &'a [ObjectId],
    ) -> BoxFut<'a, Result<Vec<DeleteFailure>, StoreError>> {
        Box::pin(async move {
            debug_assert!(ids.len() <= super::MAX_DELETE_KEYS);
            let invalid = |what: String| StoreError {
                store: self.name.clone(),
                op: "DeleteObjects",
                message: what,
            };
            let objects = ids
                .iter()
                .map(|id| {
                    ObjectIdentifier::builder()
                        .key(&id.key)
                        .set_version_id(id.version_id.clone())
                        .build()
                        .map_err(|e| invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.err("DeleteObjects", e, None))?;
            // A 200 answer can still refuse keys one by one: read every error.
            Ok(out
                .errors()
                .iter()
                .map(|e| DeleteFailure {
                    key: e.key().unwrap_or_default().to_string(),
                    version_id: e.version_id().map(str::to_string),
                    code: e.code().unwrap_or("UnknownError").to_string(),
                })
                .collect())
        })
    }

    fn put<'a>(&'a self, obj: &'a NewObject) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&obj.key)
                // Object Lock buckets refuse uploads without a checksum.
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(obj.body.clone()));
            if !obj.tags.is_empty() {
                req = req.tagging(tagging(&obj.tags));
            }
            if obj.lock.legal_hold {
                req = req.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
            }
            if let (Some(mode), Some(until)) = (obj.lock.mode, obj.lock.retain_until) {
                req = req
                    .object_lock_mode(match mode {
                        LockMode::Governance => ObjectLockMode::Governance,
                        LockMode::Compliance => ObjectLockMode::Compliance,
                    })
                    .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                        until.timestamp(),
                    ));
            }
            req.send()
                .await
                .map(|_| ())
                .map_err(|e| self.err("PutObject", e, Some(&obj.key)))
        })
    }

    fn probe(&self) -> BoxFut<'_, Result<Probe, StoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_bucket_location()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| self.err("GetBucketLocation", e, None))?;
            // An empty constraint is S3's way of saying us-east-1.
            let region = match out.location_constraint().map(|c| c.as_str()) {
                None | Some("") => "us-east-1".to_string(),
                Some(r) => r.to_string(),
            };
            Ok(Probe {
                region: Some(region),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_is_percent_encoded() {
        let mut t = BTreeMap::new();
        t.insert("class".to_string(), "cs photo".to_string());
        t.insert("a&b".to_string(), "x=y".to_string());
        assert_eq!(tagging(&t), "a%26b=x%3Dy&class=cs%20photo");
    }

    #[test]
    fn scrub_removes_the_key() {
        assert_eq!(
            scrub("NoSuchKey: avatars/42/a.jpg gone", Some("avatars/42/a.jpg")),
            "NoSuchKey: <key> gone"
        );
    }
}
