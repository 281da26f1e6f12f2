//! Does a bucket have Object Lock? One question, asked by the object store
//! before it deletes and by the audit sink before it writes.
//!
//! S3 can decline to answer (`AccessDenied` when the caller may not read the
//! lock configuration, `NotImplemented` on some S3-compatible servers), so
//! the answer has three states, and each caller decides what "unknown" means
//! for it — in the open, at the call site, through [`BucketLock::assume_locked`]
//! or [`BucketLock::known_locked`]:
//! - the object store assumes locked: it then reads every version's lock
//!   before deleting, so nothing that might be retained is deleted;
//! - the audit sink writes with retention only when the bucket says it locks
//!   (see `audit::s3` for why).

use super::client::describe;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object_lock_configuration::GetObjectLockConfigurationError;
use aws_sdk_s3::types::ObjectLockEnabled;

/// What a bucket said about Object Lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BucketLock {
    /// Object Lock is enabled: versions may carry retention or a legal hold.
    Locked,
    /// The bucket has no Object Lock configuration, or it is not enabled.
    NotLocked,
    /// S3 answered the question with an error; the reason is that error.
    Unknown(String),
}

impl BucketLock {
    /// The cautious reading (the object store's): anything but a clear
    /// "not locked" may protect versions, so their locks are read.
    pub(crate) fn assume_locked(&self) -> bool {
        !matches!(self, BucketLock::NotLocked)
    }

    /// The literal reading (the audit sink's): locked only when the bucket says so.
    pub(crate) fn known_locked(&self) -> bool {
        matches!(self, BucketLock::Locked)
    }
}

/// Ask `bucket` for its Object Lock configuration. An error is returned
/// only when the question could not be put at all — no such bucket, or no
/// answer (connection, timeout) — which callers treat as the store failing.
pub(crate) async fn bucket_lock(
    client: &Client,
    bucket: &str,
) -> Result<BucketLock, SdkError<GetObjectLockConfigurationError>> {
    let e = match client
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => {
            let enabled = matches!(
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled()),
                Some(ObjectLockEnabled::Enabled)
            );
            return Ok(if enabled {
                BucketLock::Locked
            } else {
                BucketLock::NotLocked
            });
        }
        Err(e) => e,
    };
    let code = match &e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    };
    match code {
        Some("ObjectLockConfigurationNotFoundError") => Ok(BucketLock::NotLocked),
        Some("NoSuchBucket") => Err(e),
        _ if matches!(e, SdkError::ServiceError(_)) => Ok(BucketLock::Unknown(describe(&e))),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_locked_for_the_store_and_not_for_the_sink() {
        let unknown = BucketLock::Unknown("AccessDenied (HTTP 403)".into());
        assert!(unknown.assume_locked());
        assert!(!unknown.known_locked());
        assert!(BucketLock::Locked.assume_locked() && BucketLock::Locked.known_locked());
        assert!(!BucketLock::NotLocked.assume_locked() && !BucketLock::NotLocked.known_locked());
    }
}
