//! State store faults: unreachable when a run starts (a clear error, nothing
//! touched: no row, no object, no audit log), and lost mid-run (the job's
//! lease cannot be renewed: the run stops at a batch boundary and seals its
//! log; once the store is back, the next run records where that log ended
//! and the whole log verifies).

mod common;

use common::proxy::Proxy;
use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use std::process::Command;
use std::time::{Duration, Instant};

const JOB: &str = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = { column = "created_at", older_than = "180d" }
action = "delete"
batch_size = 5
"#;

const CUT: &str = "created_at < '2025-12-17 12:00:00'";

fn workspace(db: &TestDb, state_url: &str) -> Workspace {
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let sqlite_state = ws.state_url();
    assert!(cfg.contains(&sqlite_state));
    let cfg = cfg
        .replace(&sqlite_state, state_url)
        .replace("lease_ttl = \"30s\"", "lease_ttl = \"5s\"")
        .replacen(
            "[sources.app]\n",
            "[sources.app]\nbatch_pause = \"100ms\"\n",
            1,
        );
    std::fs::write(ws.config(), cfg).unwrap();
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_state_store_stops_the_run_before_anything() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(50, now()).await;
    let before = db.fingerprint().await;
    // Nothing listens on port 1.
    let ws = workspace(&db, "postgres://lethe:secret-pw@127.0.0.1:1/state");
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 1, "{}", out.all());
    let all = out.all();
    assert!(all.contains("state store"), "{all}");
    assert!(all.contains("nothing was touched"), "{all}");
    assert!(all.contains("127.0.0.1:1"), "names the store: {all}");
    assert!(!all.contains("secret-pw"), "never the password: {all}");
    assert_eq!(db.fingerprint().await, before, "no row touched");
    assert!(ws.audit_files().is_empty(), "no audit log started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_state_store_mid_run_stops_at_a_batch_boundary() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(200, now()).await;
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let state_db = TestDb::create(Engine::Postgres).await;
    let proxy = Proxy::start("127.0.0.1:5432");
    let ws = workspace(&db, &proxy.url(&state_db.url, 5432));
    let err = ws.path().join("run.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["run", "--as-of", AS_OF, "--config"])
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .env("LETHE_AUDIT_KEY", KEY)
        .stdout(std::fs::File::create(ws.path().join("run.out")).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while ws.audit_text().matches("\"type\":\"batch\"").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "never got going");
        assert!(child.try_wait().unwrap().is_none(), "ended too early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The state store goes away for good (for this run).
    proxy.refuse_forever();
    proxy.cut_all();
    let code = child.wait().unwrap().code();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, Some(3), "stopped, not crashed: {stderr}");
    assert!(stderr.contains("lost the job's lease"), "{stderr}");
    match &ws.last_records().last().unwrap().event {
        Event::RunEnd { status, .. } => assert_eq!(status, "interrupted"),
        other => panic!("sealed with run_end, not {other:?}"),
    }
    let left = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    assert!(left > 0, "stopped before the end");
    let recorded: u64 = ws
        .last_records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(
        recorded,
        expired - left,
        "recorded is exactly what was deleted"
    );

    // The store is back; the dead run's leases ran out.
    proxy.accept_again();
    state_db
        .exec("UPDATE lethe_leases SET expires_ms = 0")
        .await;
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
            .await,
        0
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}
