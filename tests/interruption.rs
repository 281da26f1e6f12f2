//! A run stopped at any point is finished by the next one, nothing lost, the
//! audit chain still valid: SIGTERM stops at a batch boundary (exit 3,
//! `interrupted`); SIGKILL leaves an unsealed log and a lease that expires.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::LOGS_JOB as JOB;

fn slow_workspace(db: &TestDb, lease_ttl: &str) -> Workspace {
    slow_workspace_for(db, lease_ttl, JOB)
}

fn slow_workspace_for(db: &TestDb, lease_ttl: &str, job: &str) -> Workspace {
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let cfg = cfg
        .replacen(
            "[sources.app]\n",
            "[sources.app]\nbatch_pause = \"60ms\"\n",
            1,
        )
        .replace(
            "lease_ttl = \"30s\"",
            &format!("lease_ttl = \"{lease_ttl}\""),
        );
    assert!(cfg.contains("batch_pause"));
    std::fs::write(ws.config(), cfg).unwrap();
    ws
}

fn batches_in(ws: &Workspace) -> usize {
    ws.audit_text().matches("\"type\":\"batch\"").count()
}

fn deleted_per_run(ws: &Workspace) -> Vec<u64> {
    ws.audit_files()
        .iter()
        .map(|f| {
            lethe::audit::verify::read_records(f)
                .unwrap()
                .iter()
                .filter_map(|r| match &r.event {
                    Event::Batch { count, .. } => Some(*count),
                    _ => None,
                })
                .sum()
        })
        .collect()
}

/// `lethe run` in the background, quiet.
fn spawn_run(ws: &Workspace) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["run", "--as-of", AS_OF, "--config"])
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .env("LETHE_AUDIT_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Start `lethe run` and send `signal` once two batches are recorded.
fn run_and_signal(ws: &Workspace, signal: &str) -> i32 {
    let mut child = spawn_run(ws);
    let start = Instant::now();
    while batches_in(ws) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run never got going"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    code.code().unwrap_or(-1)
}

async fn sigterm_stops_at_a_batch_boundary(engine: Engine) {
    sigterm_case(engine, JOB).await;
}

/// The same with three side-by-side windows (one batch at a time on
/// SQLite): every worker stops at its batch boundary.
async fn sigterm_stops_side_by_side_windows_at_a_batch_boundary(engine: Engine) {
    let job = JOB.replace("batch_size = 40\n", "batch_size = 40\nconcurrency = 3\n");
    assert!(job.contains("concurrency = 3"));
    sigterm_case(engine, &job).await;
}

async fn sigterm_case(engine: Engine, job: &str) {
    let db = TestDb::create(engine).await;
    db.seed(200, now()).await;
    let cut = "created_at < '2025-12-17 12:00:00'";
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {cut}"))
        .await;
    assert!(expired > 400);
    let ws = slow_workspace_for(&db, "30s", job);
    let code = run_and_signal(&ws, "-TERM");
    assert_eq!(code, 3, "an interrupted run exits 3");
    let records = ws.last_records();
    match &records.last().unwrap().event {
        Event::RunEnd { status, .. } => assert_eq!(status, "interrupted"),
        other => panic!("the log ends with run_end, not {other:?}"),
    }
    let left = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {cut}"))
        .await;
    assert!(
        left > 0 && left < expired,
        "stopped part-way ({left} of {expired} left)"
    );
    assert_eq!(
        deleted_per_run(&ws)[0],
        expired - left,
        "what was recorded is exactly what was deleted"
    );

    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "the next run finishes: {}", out.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {cut}"))
            .await,
        0
    );
    assert_eq!(
        deleted_per_run(&ws).iter().sum::<u64>(),
        expired,
        "nothing lost, nothing counted twice"
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

async fn sigkill_is_finished_by_the_next_run(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(200, now()).await;
    let cut = "created_at < '2025-12-17 12:00:00'";
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {cut}"))
        .await;
    let ws = slow_workspace(&db, "5s");
    let code = run_and_signal(&ws, "-KILL");
    assert_eq!(code, -1, "killed by a signal");
    // The dead run's lease blocks a new run until it expires.
    let blocked = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(blocked.code, 75, "{}", blocked.all());
    std::thread::sleep(Duration::from_secs(6));
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {cut}"))
            .await,
        0,
        "nothing left behind"
    );
    let per_run = deleted_per_run(&ws);
    // A batch recorded just before the kill may be redone: recorded at least once, never missing.
    assert!(
        per_run.iter().sum::<u64>() >= expired,
        "{per_run:?} vs {expired}"
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(
        verify.code,
        0,
        "the killed run is accepted as crashed and recovered: {}",
        verify.all()
    );
    let recovered: Vec<&str> = verify
        .stdout
        .lines()
        .filter(|l| l.contains("crashed, recovered by"))
        .collect();
    assert_eq!(recovered.len(), 1, "{}", verify.stdout);
    let recovering = ws
        .audit_files()
        .iter()
        .flat_map(|f| lethe::audit::verify::read_records(f).unwrap())
        .find(|r| matches!(r.event, Event::Recovery { .. }))
        .expect("the next run recorded the recovery");
    assert!(
        recovered[0].ends_with(&format!("recovered by {}", recovering.run)),
        "{}",
        recovered[0]
    );
    assert_eq!(
        verify.stdout.matches("BROKEN").count(),
        0,
        "{}",
        verify.stdout
    );
}

on_every_engine!(
    sigterm_stops_at_a_batch_boundary,
    sigterm_stops_side_by_side_windows_at_a_batch_boundary,
    sigkill_is_finished_by_the_next_run
);

/// A run whose lease is taken away (an operator cleared it, the state store
/// lost it) stops at the next batch boundary instead of racing a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_run_at_a_batch_boundary() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(800, now()).await;
    let ws = slow_workspace(&db, "5s");
    let mut child = spawn_run(&ws);
    let start = Instant::now();
    while batches_in(&ws) < 1 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = lethe::sql::Db::connect("state", &ws.state_url(), 1, Duration::ZERO)
        .await
        .unwrap();
    // The job's lease only: the run lease beside it says the process lives.
    let cleared = state
        .execute(&common::raw(
            "DELETE FROM lethe_leases WHERE name LIKE 'job:%'",
        ))
        .await
        .unwrap();
    assert_eq!(cleared, 1, "the running job held one lease");
    state.close().await;
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(3), "stopped, not crashed");
    match &ws.last_records().last().unwrap().event {
        Event::RunEnd { status, .. } => assert_eq!(status, "interrupted"),
        other => panic!("{other:?}"),
    }
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(ws.lethe(&["audit", "verify"]).code, 0);
}
