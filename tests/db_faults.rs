//! Database connection loss mid-run, through the test fault proxy
//! (`common::proxy`) between Lethe and PostgreSQL / MariaDB: a reset of every
//! connection plus a 2-second refusal window is ridden out (reconnect with
//! backoff within the source's `reconnect_for`), with the exact end state,
//! nothing deleted or recorded twice and a log that verifies; an outage
//! longer than `reconnect_for` fails the rule with a clear message (exit 3),
//! every recorded batch committed.

mod common;

use common::proxy::Proxy;
use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use std::process::Command;
use std::time::{Duration, Instant};

use common::LOGS_JOB as JOB;

const CUT: &str = "created_at < '2025-12-17 12:00:00'";

fn server_port(engine: Engine) -> u16 {
    match engine {
        Engine::Postgres => 5432,
        Engine::MariaDb => 3306,
        Engine::Sqlite => unreachable!("SQLite has no connection to lose"),
    }
}

/// A workspace whose source goes through `proxy`.
fn workspace(db: &TestDb, proxy: &Proxy, engine: Engine, reconnect_for: &str) -> Workspace {
    let mut url = proxy.url(&db.url, server_port(engine));
    if engine == Engine::Postgres {
        // In clear, so the proxy can see a COMMIT go by.
        url.push_str(if url.contains('?') {
            "&sslmode=disable"
        } else {
            "?sslmode=disable"
        });
    }
    let ws = Workspace::new(&url, &[("logs.toml", JOB)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let cfg = cfg.replacen(
        "[sources.app]\n",
        &format!("[sources.app]\nbatch_pause = \"150ms\"\nreconnect_for = \"{reconnect_for}\"\n"),
        1,
    );
    std::fs::write(ws.config(), cfg).unwrap();
    ws
}

fn batches(ws: &Workspace) -> Vec<(u64, u64)> {
    ws.last_records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { batch, count, .. } => Some((*batch, *count)),
            _ => None,
        })
        .collect()
}

/// Start `lethe run`, wait for two batches, apply `fault`, and wait for the
/// exit. Returns (exit code, stdout + stderr).
fn run_with_fault(ws: &Workspace, fault: impl FnOnce()) -> (i32, String) {
    let out = ws.path().join("run.out");
    let err = ws.path().join("run.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["run", "--as-of", AS_OF, "--config"])
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .env("LETHE_AUDIT_KEY", KEY)
        .env("LETHE_LOG", "lethe=info")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while ws.audit_text().matches("\"type\":\"batch\"").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "never got going");
        assert!(child.try_wait().unwrap().is_none(), "ended too early");
        std::thread::sleep(Duration::from_millis(5));
    }
    fault();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap()
    );
    (code, text)
}

async fn a_failover_is_ridden_out(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(200, now()).await;
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let total = db.count("SELECT COUNT(*) FROM events").await;
    assert!(expired > 200);
    let target = format!("127.0.0.1:{}", server_port(engine));
    let proxy = Proxy::start(&target);
    let ws = workspace(&db, &proxy, engine, "30s");
    let (code, out) = run_with_fault(&ws, || {
        // A failover: every connection reset, new ones refused for 2 s.
        proxy.refuse_for(Duration::from_secs(2));
        proxy.cut_when_idle(Duration::from_millis(40), Duration::from_secs(2));
    });
    assert_eq!(code, 0, "{out}");
    let (_, refused, cut) = proxy.counts();
    assert!(cut >= 1, "the connection was cut");
    assert!(refused >= 1, "reconnecting met the refusal window: {out}");
    assert!(out.contains("connection lost; reconnecting"), "{out}");
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
            .await,
        0,
        "every due row is gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM events").await,
        total - expired,
        "and nothing else"
    );
    let b = batches(&ws);
    assert_eq!(
        b.iter().map(|(_, n)| n).sum::<u64>(),
        expired,
        "every deleted row recorded once: {b:?}"
    );
    let numbers: Vec<u64> = b.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=b.len() as u64).collect::<Vec<_>>());
    assert!(
        !ws.audit_text().contains("batch_unknown") && !ws.audit_text().contains("batch_rollback")
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

async fn a_lasting_outage_fails_the_rule_clearly(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(200, now()).await;
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let target = format!("127.0.0.1:{}", server_port(engine));
    let proxy = Proxy::start(&target);
    let ws = workspace(&db, &proxy, engine, "3s");
    let started = Instant::now();
    let (code, out) = run_with_fault(&ws, || {
        proxy.refuse_forever();
        proxy.cut_when_idle(Duration::from_millis(40), Duration::from_secs(2));
    });
    assert_eq!(code, 3, "the rule failed, the run ended: {out}");
    assert!(
        out.contains("still unreachable after reconnecting for"),
        "a clear message: {out}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    let left = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    assert!(left > 0 && left < expired);
    let recorded: u64 = batches(&ws).iter().map(|(_, n)| n).sum();
    assert_eq!(recorded, expired - left, "every recorded batch committed");
    let failure = ws
        .last_records()
        .into_iter()
        .find_map(|r| match r.event {
            Event::Failure { error, .. } => Some(error),
            _ => None,
        })
        .expect("a failure record");
    assert!(failure.contains("reconnect_for"), "{failure}");
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// Traffic held for 2 s mid-run (a stalled network or a paused server):
/// statements wait, nothing is retried or doubled, the run completes.
async fn a_stall_is_waited_out(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(120, now()).await;
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", server_port(engine)));
    let ws = workspace(&db, &proxy, engine, "30s");
    let started = Instant::now();
    let (code, out) = run_with_fault(&ws, || proxy.stall_for(Duration::from_secs(2)));
    assert_eq!(code, 0, "{out}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the stall was felt"
    );
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
            .await,
        0
    );
    let recorded: u64 = batches(&ws).iter().map(|(_, n)| n).sum();
    assert_eq!(recorded, expired, "every deleted row recorded once");
    assert_eq!(ws.lethe(&["audit", "verify"]).code, 0);
}

/// The answer to a COMMIT is lost (the server committed it): Lethe records
/// `batch_unknown`, never `batch_rollback`, stops the rule (exit 3) with a
/// message saying so, and the next run finishes; what was recorded covers
/// what was deleted, nothing is deleted twice, and the log verifies.
async fn a_lost_commit_answer_is_recorded_as_unknown(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(120, now()).await;
    let expired = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", server_port(engine)));
    let ws = workspace(&db, &proxy, engine, "30s");
    let (code, out) = run_with_fault(&ws, || proxy.lose_next_commit_answer());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("whether it committed is unknown"), "{out}");
    let records = ws.last_records();
    let unknown = records
        .iter()
        .position(|r| matches!(r.event, Event::BatchUnknown { .. }))
        .expect("a batch_unknown record");
    assert!(
        matches!(records[unknown - 1].event, Event::Batch { .. }),
        "right after the batch it is about"
    );
    assert!(!ws.audit_text().contains("batch_rollback"));
    let left = db
        .count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
        .await;
    let recorded: u64 = batches(&ws).iter().map(|(_, n)| n).sum();
    assert_eq!(
        recorded,
        expired - left,
        "the server committed the batch whose answer was lost"
    );
    let again = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE {CUT}"))
            .await,
        0
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_commit_answer_is_recorded_as_unknown() {
        super::a_lost_commit_answer_is_recorded_as_unknown(super::Engine::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_is_waited_out() {
        super::a_stall_is_waited_out(super::Engine::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_is_ridden_out() {
        super::a_failover_is_ridden_out(super::Engine::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lasting_outage_fails_the_rule_clearly() {
        super::a_lasting_outage_fails_the_rule_clearly(super::Engine::Postgres).await
    }
}

mod mariadb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_commit_answer_is_recorded_as_unknown() {
        super::a_lost_commit_answer_is_recorded_as_unknown(super::Engine::MariaDb).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_is_waited_out() {
        super::a_stall_is_waited_out(super::Engine::MariaDb).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_is_ridden_out() {
        super::a_failover_is_ridden_out(super::Engine::MariaDb).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lasting_outage_fails_the_rule_clearly() {
        super::a_lasting_outage_fails_the_rule_clearly(super::Engine::MariaDb).await
    }
}

/// `reconnect_for` is read like `batch_pause`: a bad value is refused with
/// its file, line and column; absent, it is 30 s.
#[test]
fn reconnect_for_is_validated_and_defaults_to_30s() {
    let ws = Workspace::new("sqlite://unused.db", &[("logs.toml", JOB)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let loaded = lethe::config::load(&ws.config(), &ws.jobs()).unwrap();
    assert_eq!(
        loaded.config.sources["app"].reconnect_for,
        Duration::from_secs(30)
    );
    let bad = cfg.replacen(
        "[sources.app]\n",
        "[sources.app]\nreconnect_for = \"soon\"\n",
        1,
    );
    std::fs::write(ws.config(), bad).unwrap();
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(out.stderr.contains("lethe.toml:4:"), "{}", out.stderr);
    assert!(out.stderr.contains("soon"), "{}", out.stderr);
}
