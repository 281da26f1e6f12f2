//! Crash recovery the audit accepts, and only as recorded: a run killed with
//! SIGKILL is recovered by the next run, which pins where the crashed log
//! ended; `audit verify` accepts the unsealed log as `crashed, recovered by`
//! only while it still ends there. A crash nothing recovered still fails.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::event::Record;
use lethe::audit::{Event, Totals};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::LOGS_JOB as JOB;

fn workspace(db: &TestDb) -> Workspace {
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let cfg = cfg
        .replacen(
            "[sources.app]\n",
            "[sources.app]\nbatch_pause = \"60ms\"\n",
            1,
        )
        .replace("lease_ttl = \"30s\"", "lease_ttl = \"5s\"");
    assert!(cfg.contains("lease_ttl = \"5s\""));
    std::fs::write(ws.config(), cfg).unwrap();
    ws
}

/// Start `lethe run`, and SIGKILL it once two batches are recorded.
/// Returns the killed run's log.
fn kill_mid_run(ws: &Workspace) -> PathBuf {
    kill_mid_run_env(ws, &[("LETHE_AUDIT_KEY", KEY)])
}

fn kill_mid_run_env(ws: &Workspace, env: &[(&str, &str)]) -> PathBuf {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["run", "--as-of", AS_OF, "--config"])
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while ws.audit_text().matches("\"type\":\"batch\"").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "never got going");
        assert!(child.try_wait().unwrap().is_none(), "ended too early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let files = ws.audit_files();
    assert_eq!(files.len(), 1);
    files[0].clone()
}

fn verify(ws: &Workspace, extra: &[&str]) -> common::Output {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    ws.lethe(&args)
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_crash_verifies_and_tampering_after_it_does_not() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(200, now()).await;
    let ws = workspace(&db);
    let crashed = kill_mid_run(&ws);

    // Nothing recovered it yet: the unsealed log fails.
    let out = verify(&ws, &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("NOT sealed"), "{}", out.stdout);
    assert!(out.stdout.contains("never ended"), "{}", out.stdout);

    // The next run, once the dead run's leases expired, recovers it.
    std::thread::sleep(Duration::from_secs(6));
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    let original = lines(&crashed);
    let recovery = ws
        .audit_files()
        .iter()
        .filter(|f| **f != crashed)
        .flat_map(|f| lethe::audit::verify::read_records(f).unwrap())
        .find_map(|r| match r.event {
            Event::Recovery {
                crashed_run,
                records,
                head,
                in_doubt,
                ..
            } => Some((r.run, crashed_run, records, head, in_doubt)),
            _ => None,
        })
        .expect("a recovery record");
    let (by, crashed_run, records, head, in_doubt) = recovery;
    assert_eq!(records, original.len() as u64, "the count as found");
    assert!(
        original.last().unwrap().contains(&head),
        "the head is the last record's hash"
    );
    let last: Record = lethe::audit::verify::read_records(&crashed)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.run, crashed_run);
    match &last.event {
        Event::Batch { batch, .. } => {
            assert_eq!(in_doubt.len(), 1, "its last batch is in doubt");
            assert_eq!(in_doubt[0].batch, *batch);
        }
        _ => assert!(in_doubt.is_empty(), "{in_doubt:?}"),
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM events WHERE created_at < '2025-12-17 12:00:00'")
            .await,
        0
    );

    let out = verify(&ws, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(&format!("crashed, recovered by {by}")),
        "{}",
        out.stdout
    );
    // The files alone (no state store): the pin in the recovering log suffices.
    let dir = ws.audit_dir();
    let dir = dir.to_str().unwrap();
    let out = verify(&ws, &["--no-state-store", dir]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("crashed, recovered by"),
        "{}",
        out.stdout
    );
    // The report and the export keep the crash visible.
    let html = ws.path().join("report.html");
    let out = ws.lethe(&["audit", "report", "--html", html.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("crashed, recovered by {by}")));
    let out = ws.lethe(&["audit", "export", "--format", "csv"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(",recovery,"), "{}", out.stdout);
    assert!(out.stdout.contains(&crashed_run));

    let tamper = |content: Vec<String>, why: &str| {
        std::fs::write(&crashed, content.concat()).unwrap();
        for extra in [&[][..], &["--no-state-store", dir][..]] {
            let out = verify(&ws, extra);
            assert_eq!(out.code, 1, "{why} ({extra:?}): {}", out.all());
            assert!(
                !out.stdout.contains("crashed, recovered by"),
                "{why}: {}",
                out.stdout
            );
        }
        std::fs::write(&crashed, original.concat()).unwrap();
        assert_eq!(verify(&ws, &[]).code, 0, "restored");
    };
    // Cut after the recovery recorded it.
    tamper(original[..original.len() - 1].to_vec(), "cut by one record");
    // Extended with a correctly chained seal, as anyone can compute one.
    let mut sealed = original.clone();
    let (line, _) = lethe::audit::writer::seal_line(&Record {
        v: 1,
        seq: original.len() as u64,
        ts: last.ts.clone(),
        run: crashed_run.clone(),
        kid: last.kid.clone(),
        event: Event::RunEnd {
            status: "completed".into(),
            totals: Totals::default(),
            jobs: vec![],
        },
        prev: head.clone(),
    });
    sealed.push(format!("{line}\n"));
    tamper(sealed, "re-sealed after the recovery");
    // A record edited.
    let mut edited = original.clone();
    edited[1] = edited[1].replacen("\"count\":40", "\"count\":39", 1);
    assert_ne!(edited[1], original[1]);
    tamper(edited, "a batch count edited");
}

/// The S3 copy of a crashed run held only its first record; the recovering
/// run uploads the local log as found, and `audit verify --s3` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovering_run_completes_the_s3_copy() {
    use common::objects::{self, Bucket, Kind, TestStore};
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(200, now()).await;
    let ws = workspace(&db);
    let bucket = TestStore::create(Kind::S3, Bucket::default()).await;
    let text = std::fs::read_to_string(ws.config()).unwrap();
    let text = text.replacen(
        "[audit]\n",
        &format!(
            "{}\n[audit]\ns3_store = \"auditlog\"\n",
            bucket.toml("auditlog")
        ),
        1,
    );
    std::fs::write(ws.config(), text).unwrap();
    let env = objects::aws_env();
    let crashed = kill_mid_run_env(&ws, &env);
    let key = format!(
        "lethe-audit/{}",
        crashed.file_name().unwrap().to_str().unwrap()
    );
    let client = objects::client();
    let copy = |client: aws_sdk_s3::Client, bucket: String, key: String| async move {
        let obj = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        obj.body.collect().await.unwrap().into_bytes().to_vec()
    };
    let before = copy(client.clone(), bucket.bucket.clone(), key.clone()).await;
    let local = std::fs::read(&crashed).unwrap();
    assert!(before.len() < local.len(), "the copy holds only the start");
    let out = ws.lethe_env(&["audit", "verify", "--s3"], &env);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("NOT sealed"), "{}", out.stdout);

    expire(&ws).await;
    let out = ws.lethe_env(&["run", "--as-of", AS_OF], &env);
    assert_eq!(out.code, 0, "{}", out.all());
    let after = copy(client, bucket.bucket.clone(), key).await;
    assert_eq!(after, local, "the crashed log, as found, byte for byte");
    let out = ws.lethe_env(&["audit", "verify", "--s3"], &env);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("crashed, recovered by"),
        "{}",
        out.stdout
    );
}

/// Time passes for the leases (the dead run's expire now).
async fn expire(ws: &Workspace) {
    let state = lethe::sql::Db::connect("state", &ws.state_url(), 1, Duration::ZERO)
        .await
        .unwrap();
    state
        .execute(&common::raw("UPDATE lethe_leases SET expires_ms = 0"))
        .await
        .unwrap();
    state.close().await;
}
