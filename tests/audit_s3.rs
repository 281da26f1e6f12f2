//! The S3 audit sink, on a real S3-speaking server (moto): one object per run,
//! written with Object Lock retention, verifiable from S3 alone; a sink that
//! cannot be written stops the run before anything is deleted.

mod common;

use common::objects::{self, Bucket, Kind, TestStore};
use common::{AS_OF, Engine, TestDb, Workspace, now};

/// Add an S3 store named `auditlog` and point the audit sink at it.
fn with_s3_sink(ws: &Workspace, store_toml: &str) {
    let text = std::fs::read_to_string(ws.config()).unwrap();
    let text = text.replacen(
        "[audit]\n",
        &format!("{store_toml}\n[audit]\ns3_store = \"auditlog\"\ns3_retention = \"1d\"\n"),
        1,
    );
    std::fs::write(ws.config(), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_is_copied_to_s3_under_object_lock_and_verifies_from_there() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(120, now()).await;
    let ws = Workspace::shipped(&db.url);
    let bucket = TestStore::create(
        Kind::S3,
        Bucket {
            versioned: true,
            object_lock: true,
        },
    )
    .await;
    with_s3_sink(&ws, &bucket.toml("auditlog"));
    let out = ws.lethe_env(&["run", "--as-of", AS_OF], &objects::aws_env());
    assert_eq!(out.code, 0, "{}", out.all());

    let client = objects::client();
    let listed = client
        .list_objects_v2()
        .bucket(&bucket.bucket)
        .prefix("lethe-audit/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let local = ws.audit_files().pop().unwrap();
    let name = local.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        keys,
        vec![format!("lethe-audit/{name}")],
        "one object per run, named like the local file"
    );
    let obj = client
        .get_object()
        .bucket(&bucket.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap();
    let body = obj.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        body.as_ref(),
        std::fs::read(&local).unwrap().as_slice(),
        "the sealed log, byte for byte"
    );
    let head = client
        .head_object()
        .bucket(&bucket.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str().to_string()),
        Some("GOVERNANCE".to_string()),
        "written under Object Lock retention"
    );
    assert!(head.object_lock_retain_until_date().is_some());

    let verify = ws.lethe_env(&["audit", "verify", "--s3"], &objects::aws_env());
    assert_eq!(verify.code, 0, "{}", verify.all());
    assert!(
        verify.stdout.contains("chain ok, sealed"),
        "{}",
        verify.stdout
    );

    // Hide the copy behind a delete marker (its locked version stays): from S3
    // alone the run is now missing, and verify says so.
    client
        .delete_object()
        .bucket(&bucket.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap();
    let verify = ws.lethe_env(&["audit", "verify", "--s3"], &objects::aws_env());
    assert_eq!(verify.code, 1, "{}", verify.all());
    assert!(
        verify.stdout.to_lowercase().contains("missing"),
        "{}",
        verify.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_s3_sink_stops_the_run_before_anything_is_deleted() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(120, now()).await;
    let ws = Workspace::shipped(&db.url);
    // Nothing listens on port 9 here.
    with_s3_sink(
        &ws,
        "[stores.auditlog]\nkind = \"s3\"\nbucket = \"nowhere\"\nendpoint = \"http://127.0.0.1:9\"\npath_style = true\nregion = \"cn-east-2\"\nmax_attempts = 1\n",
    );
    let before = db.fingerprint().await;
    let out = ws.lethe_env(&["run", "--as-of", AS_OF], &objects::aws_env());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("audit sink"), "{}", out.stderr);
    assert_eq!(db.fingerprint().await, before, "nothing was deleted");
    let records = ws.last_records();
    assert_eq!(
        records.len(),
        2,
        "the local log says the run started and failed"
    );
    assert!(
        matches!(&records[1].event, lethe::audit::Event::RunEnd { status, .. } if status == "failed")
    );
}
