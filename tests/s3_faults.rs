//! S3 faults between Lethe and a real S3-speaking server (moto), through the
//! fault proxy in `tests/common/s3proxy.rs`: 500s, 503 SlowDown, connection
//! resets and slow answers are retried with the SDK's backoff and counted in
//! the rule's `retries`; a `DeleteObjects` answer with per-key errors is
//! retried for transient codes and reported for the rest. Invariant after
//! every fault: what the run reports erased is exactly what is gone from the
//! bucket, and the audit log verifies.

mod common;

use common::objects::{Bucket, Kind, TestStore, aws_env, endpoint, set_stores};
use common::s3proxy::{Fault, Op, S3Proxy};
use common::{Engine, TestDb, Workspace};
use std::time::Duration;

const N: usize = 250;

const JOB: &str = r#"
name = "uploads"
policy = "II(4)"
[[rules]]
name = "old-uploads"
store = "media"
prefix = "up/"
batch_size = 100
"#;

struct Setup {
    store: TestStore,
    proxy: S3Proxy,
    ws: Workspace,
    _db: TestDb,
}

async fn setup(max_attempts: u32) -> Setup {
    let store = TestStore::create(Kind::S3, Bucket::default()).await;
    store
        .put_many((0..N).map(|i| format!("up/k{i:03}")).collect())
        .await;
    let proxy = S3Proxy::start(&endpoint()).await;
    let db = TestDb::create(Engine::Sqlite).await;
    let ws = Workspace::new(&db.url, &[("uploads.toml", JOB)]);
    set_stores(
        &ws,
        &format!(
            "[stores.media]\nkind = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\npath_style = true\nregion = \"{}\"\nmax_attempts = {max_attempts}\n",
            store.bucket,
            proxy.endpoint(),
            common::objects::REGION
        ),
    );
    Setup {
        store,
        proxy,
        ws,
        _db: db,
    }
}

struct Outcome {
    code: i32,
    rule: serde_json::Value,
    erased: u64,
    all: String,
}

fn run(s: &Setup) -> Outcome {
    let out = s.ws.lethe_env(&["run", "--output", "json"], &aws_env());
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let rule = lines
        .iter()
        .find(|l| l["type"] == "rule")
        .cloned()
        .unwrap_or_else(|| panic!("no rule line: {}", out.all()));
    let erased = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .and_then(|l| l["totals"]["objects_erased"].as_u64())
        .unwrap_or_else(|| panic!("no summary: {}", out.all()));
    Outcome {
        code: out.code,
        rule,
        erased,
        all: out.all(),
    }
}

/// The invariant: reported erased == gone from the bucket; the audit verifies.
async fn check_invariants(s: &Setup, o: &Outcome) -> Vec<String> {
    let left = s.store.keys("up/").await;
    assert_eq!(
        o.erased as usize + left.len(),
        N,
        "reported erased {} but {} of {N} are left:\n{}",
        o.erased,
        left.len(),
        o.all
    );
    let verify = s.ws.lethe_env(&["audit", "verify"], &aws_env());
    assert_eq!(verify.code, 0, "{}", verify.all());
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_counted_and_the_run_completes() {
    let s = setup(4).await;
    s.proxy.inject(Op::ListObjectsV2, Fault::SlowDown, 2);
    s.proxy.inject(
        Op::ListObjectsV2,
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    s.proxy.inject(Op::DeleteObjects, Fault::Status500, 1);
    s.proxy.inject(Op::DeleteObjects, Fault::Reset, 1);
    s.proxy.inject(
        Op::DeleteObjects,
        Fault::KeyErrors {
            needle: "7",
            code: "SlowDown",
        },
        1,
    );
    let o = run(&s);
    assert_eq!(o.code, 0, "{}", o.all);
    let injected = s.proxy.injected();
    for (kind, n) in [
        ("503 SlowDown", 2),
        ("slow", 1),
        ("500", 1),
        ("reset", 1),
        ("key errors", 1),
    ] {
        assert_eq!(injected.get(kind), Some(&n), "{kind}: {injected:?}");
    }
    let left = check_invariants(&s, &o).await;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(o.erased as usize, N);
    // 2 SlowDown + 1 500 + 1 reset, retried by the SDK; and the keys a 200
    // answer refused with SlowDown, sent again by Lethe.
    let retries = o.rule["retries"].as_u64().unwrap();
    assert!(retries >= 5, "retries {retries} not counted: {}", o.rule);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_are_reported_kept_and_never_counted_as_erased() {
    let s = setup(4).await;
    // Every DeleteObjects refuses the keys k100..k199 for good.
    s.proxy.inject(
        Op::DeleteObjects,
        Fault::KeyErrors {
            needle: "k1",
            code: "AccessDenied",
        },
        usize::MAX,
    );
    let o = run(&s);
    assert_eq!(o.code, 3, "a rule with refused keys fails: {}", o.all);
    assert_eq!(o.rule["status"], "failed", "{}", o.rule);
    let msg = o.rule["message"].as_str().unwrap_or_default();
    assert!(msg.contains("AccessDenied: 100"), "{msg}");
    assert!(!msg.contains("up/k1"), "no key name in a message: {msg}");
    let left = check_invariants(&s, &o).await;
    let want: Vec<String> = (100..200).map(|i| format!("up/k{i:03}")).collect();
    assert_eq!(left, want, "exactly the refused keys are kept");
    assert_eq!(o.erased, 150);
    // Bytes too: only what is gone ("body of up/kNNN" is 15 bytes).
    assert_eq!(o.rule["objects"][0]["bytes"], 150 * 15, "{}", o.rule);
    let audit = s.ws.audit_text();
    assert!(audit.contains("\"AccessDenied\":100"), "{audit}");
    assert!(!audit.contains("up/k1"), "no key name in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_every_attempt_fails_the_rule_with_nothing_reported_erased() {
    let s = setup(2).await;
    s.proxy
        .inject(Op::DeleteObjects, Fault::Status500, usize::MAX);
    let o = run(&s);
    assert_eq!(o.code, 3, "{}", o.all);
    assert_eq!(o.rule["status"], "failed", "{}", o.rule);
    let msg = o.rule["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("DeleteObjects") && msg.contains("InternalError"),
        "{msg}"
    );
    let left = check_invariants(&s, &o).await;
    assert_eq!(left.len(), N, "nothing was deleted");
    assert_eq!(o.erased, 0);
    // max_attempts = 2: each request was tried twice before the rule failed.
    assert!(s.proxy.seen(Op::DeleteObjects) >= 2);
}
