//! The S3 audit sink: one object per run, `<prefix><run file name>`.
//!
//! The local file stays the durable, line-by-line log every batch is written
//! to before it commits. The S3 copy is written twice: at run start, before
//! anything is touched (so an unreachable or refusing sink stops the run
//! having deleted nothing), and at run end, sealed. When the bucket has
//! Object Lock, each write carries GOVERNANCE retention, so a copy cannot be
//! rewritten or deleted within the retention period, even by Lethe.
//! `lethe audit verify --s3` downloads the copies and verifies them.
//!
//! Whether the bucket locks is asked through the helper the object store
//! uses (`objects::s3::lock`), but an unknown answer reads the other way
//! here: **not locked**, so the copy is written without retention. The
//! object store must never delete what might be retained, so it assumes a
//! lock; the sink's choice is between two writes, and S3 refuses a write
//! that asks for retention in a bucket without Object Lock (`InvalidRequest`),
//! so assuming a lock would stop every run on a bucket that only forbids
//! reading its lock configuration, while a bucket that does lock applies its
//! default retention, if it has one, to a plain write anyway. The local log
//! stays the durable record either way; the README promises retention "when
//! the bucket has Object Lock enabled", which is what the bucket said.

use crate::config::{AuditS3, Config, StoreKind};
use crate::error::Error;
use crate::objects::s3::client::{client, describe};
use crate::objects::s3::lock::bucket_lock;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime as AwsDateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use std::path::{Path, PathBuf};

/// The S3 copy of each run's audit log, opened once per run (and by
/// `audit verify --s3`), so one check decides whether it is reachable.
pub(crate) struct S3AuditSink {
    client: Client,
    bucket: String,
    prefix: String,
    /// Retention applied to every object (the bucket has Object Lock).
    lock: Option<crate::config::Period>,
}

impl S3AuditSink {
    /// Connect and check the bucket answers (and whether it locks objects).
    pub(crate) async fn open(config: &Config, s3: &AuditS3) -> Result<S3AuditSink, Error> {
        let store = config
            .stores
            .get(&s3.store)
            .ok_or_else(|| Error::Audit(format!("audit store `{}` is not configured", s3.store)))?;
        let StoreKind::S3 {
            bucket,
            endpoint,
            path_style,
        } = &store.kind
        else {
            return Err(Error::Audit(format!(
                "audit store `{}` is not an S3 store",
                s3.store
            )));
        };
        let client = client(
            store.region.as_deref(),
            endpoint.as_deref(),
            *path_style,
            store.max_attempts,
        )
        .await;
        let sink = S3AuditSink {
            client,
            bucket: bucket.clone(),
            prefix: s3.prefix.clone(),
            lock: None,
        };
        let where_ = format!("s3://{bucket}/{}", s3.prefix);
        sink.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| {
                Error::Audit(format!(
                    "audit sink {where_} is unreachable: {}",
                    describe(&e)
                ))
            })?;
        // Unknown counts as not locked here, unlike in the object store: see
        // `bucket_lock` below. An error (the bucket answered `HeadBucket` a
        // moment ago) is one more way of not knowing.
        let locked = bucket_lock(&sink.client, bucket)
            .await
            .is_ok_and(|answer| answer.known_locked());
        Ok(S3AuditSink {
            lock: locked.then_some(s3.retention),
            ..sink
        })
    }

    pub(crate) fn key_of(&self, local: &Path) -> String {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}{name}", self.prefix)
    }

    /// Upload the run's local log as it is now.
    pub(crate) async fn put(&self, local: &Path) -> Result<String, Error> {
        let body = std::fs::read(local)
            .map_err(|e| Error::Audit(format!("cannot read {}: {e}", local.display())))?;
        let key = self.key_of(local);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            // S3 requires an integrity checksum on an upload under Object Lock;
            // the client sends checksums only where required, so ask for one.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(body));
        if let Some(period) = self.lock {
            let until = period_after(period);
            req = req
                .object_lock_mode(ObjectLockMode::Governance)
                .object_lock_retain_until_date(AwsDateTime::from_secs(until.timestamp()));
        }
        req.send().await.map_err(|e| {
            Error::Audit(format!(
                "cannot write s3://{}/{key}: {}",
                self.bucket,
                describe(&e)
            ))
        })?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    /// Download every run object under the prefix into `dir` (for verify).
    pub(crate) async fn download_all(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    Error::Audit(format!(
                        "cannot list s3://{}/{}: {}",
                        self.bucket,
                        self.prefix,
                        describe(&e)
                    ))
                })?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let name = key.rsplit('/').next().unwrap_or(key);
                if !name.ends_with(".jsonl") {
                    continue;
                }
                let obj = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::Audit(format!(
                            "cannot read s3://{}/{key}: {}",
                            self.bucket,
                            describe(&e)
                        ))
                    })?;
                let bytes = obj
                    .body
                    .collect()
                    .await
                    .map_err(|e| {
                        Error::Audit(format!("cannot read s3://{}/{key}: {e}", self.bucket))
                    })?
                    .into_bytes();
                let path = dir.join(name);
                std::fs::write(&path, &bytes)
                    .map_err(|e| Error::Audit(format!("cannot write {}: {e}", path.display())))?;
                out.push(path);
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }
}

fn period_after(p: crate::config::Period) -> chrono::DateTime<chrono::Utc> {
    // `before` subtracts; retention runs forward from now by the same span.
    // A span past the calendar's end saturates at its last instant rather
    // than overflow (the fuzzer found `before` panicking on such spans).
    let now = chrono::Utc::now();
    now.checked_add_signed(now - p.before(now))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
