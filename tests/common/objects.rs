//! Object stores for tests: a fresh bucket per test on the moto server
//! (`scripts/moto.sh start`), or a fresh local folder; both behind Lethe's
//! own `ObjectStore` trait, so one scenario runs against either.
//!
//! A test that needs moto and cannot reach it fails with the command that
//! starts it; it never passes silently.

use super::Workspace;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use lethe::objects::fs::FsStore;
use lethe::objects::s3::S3Store;
use lethe::objects::{LockState, NewObject, ObjectStore, Version};
use std::collections::BTreeMap;

/// The region every test store declares (and the workspace allows).
pub const REGION: &str = "cn-east-2";

pub fn endpoint() -> String {
    std::env::var("LETHE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5077".into())
}

/// Environment for the binary: moto takes any credentials; never ask IMDS.
pub fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("LETHE_AUDIT_KEY", super::KEY),
    ]
}

/// Fail (never skip) when moto is not there.
pub fn require_moto() {
    let ep = endpoint();
    let hostport = ep
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .ok()
        .and_then(|mut a| a.next());
    let ok = addr.is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
    });
    assert!(
        ok,
        "the S3 test server (moto) is not reachable at {ep}: start it with scripts/moto.sh start"
    );
}

pub fn client() -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint())
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3,
    Fs,
}

/// Bucket options (S3 only; a folder takes locks from sidecars anyway).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    pub versioned: bool,
    pub object_lock: bool,
}

/// A store made for one test.
pub struct TestStore {
    pub kind: Kind,
    pub bucket: String,
    pub dir: tempfile::TempDir,
    pub store: Box<dyn ObjectStore>,
}

impl TestStore {
    pub async fn create(kind: Kind, opts: Bucket) -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = format!(
            "lethe-t-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let store: Box<dyn ObjectStore> = match kind {
            Kind::Fs => Box::new(FsStore::new("test", dir.path().join("store"))),
            Kind::S3 => {
                require_moto();
                let c = client();
                c.create_bucket()
                    .bucket(&bucket)
                    .object_lock_enabled_for_bucket(opts.object_lock)
                    .create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(REGION.into())
                            .build(),
                    )
                    .send()
                    .await
                    .expect("create bucket");
                if opts.versioned {
                    c.put_bucket_versioning()
                        .bucket(&bucket)
                        .versioning_configuration(
                            aws_sdk_s3::types::VersioningConfiguration::builder()
                                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                                .build(),
                        )
                        .send()
                        .await
                        .expect("enable versioning");
                }
                Box::new(S3Store::with_client("test", &bucket, c))
            }
        };
        store.info().await.expect("the test store answers");
        TestStore {
            kind,
            bucket,
            dir,
            store,
        }
    }

    /// The `[stores.<name>]` table that points Lethe at this store.
    pub fn toml(&self, name: &str) -> String {
        match self.kind {
            Kind::S3 => format!(
                "[stores.{name}]\nkind = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\npath_style = true\nregion = \"{REGION}\"\nmax_attempts = 2\n",
                self.bucket,
                endpoint()
            ),
            Kind::Fs => format!(
                "[stores.{name}]\nkind = \"fs\"\npath = \"{}\"\nregion = \"{REGION}\"\n",
                self.dir.path().join("store").display()
            ),
        }
    }

    pub async fn put(&self, key: &str) {
        self.put_with(key, &[], LockState::default()).await;
    }

    pub async fn put_with(&self, key: &str, tags: &[(&str, &str)], lock: LockState) {
        let obj = NewObject {
            key: key.to_string(),
            body: format!("body of {key}").into_bytes(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            lock,
        };
        self.store.put(&obj).await.expect("put");
    }

    /// Put many objects, 16 at a time.
    pub async fn put_many(&self, keys: Vec<String>) {
        use futures_util::stream::{self, StreamExt};
        stream::iter(keys)
            .map(|k| async move { self.put(&k).await })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }

    /// Every version and delete marker under `prefix`.
    pub async fn versions(&self, prefix: &str) -> Vec<Version> {
        self.store.list(prefix, true).await.expect("list")
    }

    /// Keys with a current (non-marker) version under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut k: Vec<String> = self
            .versions(prefix)
            .await
            .into_iter()
            .filter(|v| v.is_latest && !v.delete_marker)
            .map(|v| v.key)
            .collect();
        k.sort();
        k.dedup();
        k
    }
}

/// Replace the workspace's `[stores.media]` table with `stores` (one or more tables).
pub fn set_stores(ws: &Workspace, stores: &str) {
    let text = std::fs::read_to_string(ws.config()).unwrap();
    let start = text
        .find("[stores.media]")
        .expect("the workspace has a media store");
    let end = text
        .find("[audit]")
        .expect("the workspace has an audit table");
    let new = format!("{}{stores}\n{}", &text[..start], &text[end..]);
    std::fs::write(ws.config(), new).unwrap();
}

/// The `keys` of every `DeleteObjects request` log line in the binary's stderr.
pub fn delete_request_sizes(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "DeleteObjects request")
        .filter_map(|v| v["keys"].as_u64())
        .collect()
}
