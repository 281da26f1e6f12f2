//! Operations: shards that split a job without overlap, metrics in the
//! Prometheus format (pushed and written), and the daemon as a process.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lethe_cmd(ws: &Workspace, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lethe"));
    c.args(args)
        .arg("--config")
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .env("LETHE_AUDIT_KEY", KEY);
    c
}

/// Three processes, one job, one database: every due row handled exactly once.
async fn three_shards_share_a_job(engine: Engine) {
    let db = TestDb::create(engine).await;
    let seeded = db.seed(300, now()).await;
    let ws = Workspace::shipped(&db.url);
    let children: Vec<_> = (0..3)
        .map(|i| {
            lethe_cmd(
                &ws,
                &[
                    "run",
                    "--job",
                    "cancelled-accounts",
                    "--as-of",
                    AS_OF,
                    "--shard",
                    &format!("{i}/3"),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in &seeded.cancelled_due {
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {id}"))
                .await,
            0,
            "user {id} erased by some shard"
        );
    }
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let due: BTreeSet<String> = seeded
        .cancelled_due
        .iter()
        .map(|i| keys.subject(&i.to_string()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut shards = BTreeSet::new();
    let files = ws.audit_files();
    assert_eq!(files.len(), 3, "each shard writes its own audit file");
    for f in &files {
        for r in lethe::audit::verify::read_records(f).unwrap() {
            match r.event {
                Event::RunStart { shard, .. } => {
                    shards.insert(shard.expect("the shard is recorded"));
                }
                Event::Batch { subjects, rule, .. } if rule == "erase-cancelled-users" => {
                    for s in subjects {
                        assert!(seen.insert(s), "a subject was erased by two shards");
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        shards,
        BTreeSet::from(["0/3".to_string(), "1/3".to_string(), "2/3".to_string()])
    );
    assert_eq!(
        seen, due,
        "together the shards erased exactly the due subjects"
    );
}

on_every_engine!(three_shards_share_a_job);

/// A batch that the server rolls back to break a deadlock is tried again, not
/// reported as a failed rule. The test takes part in the deadlock itself: it
/// locks a comment of a due user, waits until Lethe (holding that user's row)
/// blocks on it, then asks for the user's row. PostgreSQL's detector runs in
/// the session that waited first (the test's own session waits 60 s before
/// checking), so the victim is always Lethe's batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlocked_batch_is_tried_again() {
    let db = TestDb::create(Engine::Postgres).await;
    let seeded = db.seed(200, now()).await;
    let conn = db.connect().await;
    let mut victim = None;
    for id in &seeded.cancelled_due {
        let n = conn
            .count(&common::raw(&format!(
                "SELECT COUNT(*) FROM comments WHERE user_id = {id}"
            )))
            .await
            .unwrap();
        if n > 0 {
            victim = Some(*id);
            break;
        }
    }
    let user = victim.expect("the seed gives some due user a comment");
    let ws = Workspace::shipped(&db.url);
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&conn, &common::raw("SET LOCAL deadlock_timeout = '60s'"))
        .await
        .unwrap();
    tx.fetch(
        &conn,
        &common::raw(&format!(
            "SELECT CAST(id AS TEXT) FROM comments WHERE user_id = {user} FOR UPDATE"
        )),
    )
    .await
    .unwrap();
    let child = lethe_cmd(
        &ws,
        &[
            "run",
            "--job",
            "cancelled-accounts",
            "--as-of",
            AS_OF,
            "--output",
            "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let watcher = db.connect().await;
    let start = Instant::now();
    loop {
        let waiting = watcher
            .count(&common::raw(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM \"comments\"%'",
            ))
            .await
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Lethe never blocked on the locked comment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Closes the cycle; returns once PostgreSQL has rolled Lethe's batch back.
    tx.fetch(
        &conn,
        &common::raw(&format!(
            "SELECT CAST(id AS TEXT) FROM users WHERE id = {user} FOR UPDATE"
        )),
    )
    .await
    .expect("the test's session is not the deadlock victim");
    tx.rollback(&conn).await.unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("40P01"), "the deadlock is logged: {stderr}");
    let retries: u64 = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "rule")
        .filter_map(|r| r["retries"].as_u64())
        .sum();
    assert!(
        retries >= 1,
        "the report counts the retried batch: {stdout}"
    );
    let ids: Vec<String> = seeded.cancelled_due.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM users WHERE id IN ({})",
            ids.join(",")
        ))
        .await,
        0,
        "every due user is erased after the retry"
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

#[test]
fn an_indexed_job_environment_selects_the_shard() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    let out = ws.lethe_env(
        &["plan"],
        &[
            ("LETHE_AUDIT_KEY", KEY),
            ("JOB_COMPLETION_INDEX", "3"),
            ("JOB_COMPLETIONS", "3"),
        ],
    );
    assert_eq!(out.code, 64, "index 3 of 3 is refused: {}", out.all());
    assert!(out.stderr.contains("shard 3/3"), "{}", out.stderr);
}

/// An HTTP receiver standing in for a Pushgateway: records every request
/// until it has been idle for a second after the first one.
fn receiver() -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<Vec<(String, String)>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Instant::now();
        while Instant::now() < deadline
            && (got.is_empty() || last.elapsed() < Duration::from_secs(1))
        {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            got.push((head.lines().next().unwrap().to_string(), body.to_string()));
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            last = Instant::now();
        }
        got
    });
    (addr, handle)
}

/// Every sample line is `name{labels} value`, every family has HELP and TYPE
/// (a histogram's samples are its `_bucket`, `_sum` and `_count`).
fn assert_exposition(text: &str) {
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split_whitespace();
            let name = p.next().unwrap();
            let kind = p.next();
            assert!(
                matches!(kind, Some("counter" | "gauge" | "histogram")),
                "{line}"
            );
            typed.insert(name.to_string());
            if kind == Some("histogram") {
                for suffix in ["_bucket", "_sum", "_count"] {
                    typed.insert(format!("{name}{suffix}"));
                }
            }
        } else if line.starts_with("# HELP ") {
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line}"));
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
        }
    }
    assert!(!typed.is_empty());
}

#[tokio::test]
async fn metrics_are_pushed_per_job_and_shard_and_written_to_a_file() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(120, now()).await;
    let ws = Workspace::shipped(&db.url);
    let (addr, handle) = receiver();
    let textfile = ws.path().join("metrics/lethe.prom");
    let mut cfg = std::fs::read_to_string(ws.config()).unwrap();
    cfg.push_str(&format!(
        "\n[metrics]\ntextfile = \"{}\"\npushgateway = \"http://{addr}\"\n",
        textfile.display()
    ));
    std::fs::write(ws.config(), cfg).unwrap();
    let out = ws.lethe(&[
        "run",
        "--as-of",
        AS_OF,
        "--job",
        "behaviour-logs",
        "--job",
        "minors",
        "--shard",
        "1/2",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let pushes = handle.join().unwrap();
    let paths: BTreeSet<&str> = pushes.iter().map(|(l, _)| l.as_str()).collect();
    assert!(
        paths.contains("PUT /metrics/job/lethe/lethe_job/behaviour-logs/shard/1-of-2 HTTP/1.1"),
        "{paths:?}"
    );
    assert!(
        paths.contains("PUT /metrics/job/lethe/lethe_job/minors/shard/1-of-2 HTTP/1.1"),
        "{paths:?}"
    );
    for (_, body) in &pushes {
        assert_exposition(body);
    }
    let logs = &pushes
        .iter()
        .find(|(l, _)| l.contains("behaviour-logs"))
        .unwrap()
        .1;
    assert!(logs.contains("lethe_rows_total{job=\"behaviour-logs\",rule=\"delete-old-events\",outcome=\"deleted\"}"), "{logs}");
    assert!(
        !logs.contains("job=\"minors\""),
        "each job's group holds only its own series"
    );
    let file = std::fs::read_to_string(&textfile).unwrap();
    assert_exposition(&file);
    let deleted: u64 = file
        .lines()
        .find(|l| l.starts_with("lethe_rows_total{job=\"behaviour-logs\",rule=\"delete-old-events\",outcome=\"deleted\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let audited: u64 = ws
        .last_records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { rule, count, .. } if rule == "delete-old-events" => Some(*count),
            _ => None,
        })
        .sum();
    assert!(deleted > 0);
    assert_eq!(deleted, audited, "the metric says what the audit log says");
    assert!(file.contains("lethe_last_success_timestamp_seconds{job=\"behaviour-logs\"}"));
}

#[tokio::test]
async fn the_daemon_runs_on_schedule_answers_health_and_drains_on_sigterm() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(100, now()).await;
    let job = r#"
name = "logs"
policy = "II(2)2"
schedule = "*/2 * * * * *"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = { column = "created_at", older_than = "30d" }
action = "delete"
batch_size = 50
"#;
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = std::fs::read_to_string(ws.config()).unwrap();
    cfg.push_str(&format!(
        "\n[daemon]\ntime_zone = \"Asia/Shanghai\"\nhealth_addr = \"127.0.0.1:{port}\"\n"
    ));
    std::fs::write(ws.config(), cfg).unwrap();
    let mut daemon = lethe_cmd(&ws, &["daemon"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let healthy = loop {
        let h = ws.lethe(&["healthcheck", "--addr", &format!("127.0.0.1:{port}")]);
        if h.code == 0 {
            break h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never healthy: {}",
            h.all()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        healthy.stdout.contains("\"status\":\"ok\""),
        "{}",
        healthy.stdout
    );
    // Wait for at least two scheduled runs.
    while ws.audit_files().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the schedule did not fire"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    let status = daemon.wait().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "the daemon drains and exits promptly"
    );
    let mut err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(
        verify.code,
        0,
        "every run sealed, every chain intact: {}",
        verify.all()
    );
    let first = lethe::audit::verify::read_records(&ws.audit_files()[0]).unwrap();
    assert!(
        first
            .iter()
            .any(|r| matches!(&r.event, Event::Batch { .. })),
        "the first scheduled run did the work"
    );
    let after = ws.lethe(&["healthcheck", "--addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(after.code, 1, "no daemon, no health: {}", after.all());
}
