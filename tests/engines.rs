//! The README's promises, on every engine: each scenario runs against a real
//! PostgreSQL, a real MariaDB and a SQLite file, driving the real binary.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;

const USERS: u32 = 200;

async fn seeded(engine: Engine) -> (TestDb, lethe::demo::Seeded) {
    let db = TestDb::create(engine).await;
    let s = db.seed(USERS, now()).await;
    (db, s)
}

fn cutoff_sql(engine: Engine, days: i64) -> String {
    let t = now() - chrono::TimeDelta::days(days);
    match engine {
        Engine::Postgres => format!("TIMESTAMPTZ '{}'", t.format("%Y-%m-%d %H:%M:%S+00")),
        _ => format!("'{}'", t.format("%Y-%m-%d %H:%M:%S")),
    }
}

/// Age-based delete removes exactly the rows older than the cutoff.
async fn age_based_delete(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let cut = cutoff_sql(engine, 180);
    let old = db
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at < {cut}"
        ))
        .await;
    let young = db
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at >= {cut}"
        ))
        .await;
    assert!(
        old > 100 && young > 100,
        "the seed spreads events over a year ({old} old, {young} young)"
    );
    let job = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = { column = "created_at", older_than = "180d" }
action = "delete"
batch_size = 97
"#;
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let total = old + young;
    let rule_json = |out: &common::Output| -> serde_json::Value {
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "rule")
            .unwrap_or_else(|| panic!("no rule line: {}", out.all()))
    };
    let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(rule_json(&plan)["total"], total, "a plan counts the table");
    let out = ws.lethe(&["run", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        rule_json(&out)["total"].is_null(),
        "with no max_fraction an executed run does not count the whole table"
    );
    assert_eq!(rule_json(&out)["done"], old);
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at < {cut}"
        ))
        .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at >= {cut}"
        ))
        .await,
        young
    );
    let batches: u64 = ws
        .last_records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(batches, old, "the audit log accounts for every deleted row");
}

/// Cancelled accounts: users and their content go, orders stay anonymized,
/// held users stay whole and are reported.
async fn cascade_with_anonymized_children_and_holds(engine: Engine) {
    let (db, seeded) = seeded(engine).await;
    assert!(!seeded.cancelled_due.is_empty() && !seeded.held.is_empty());
    let ws = Workspace::shipped(&db.url);
    let out = ws.lethe(&["run", "--job", "cancelled-accounts", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    for id in &seeded.cancelled_due {
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {id}"))
                .await,
            0,
            "user {id} erased"
        );
        for t in ["posts", "comments", "locations"] {
            assert_eq!(
                db.count(&format!("SELECT COUNT(*) FROM {t} WHERE user_id = {id}"))
                    .await,
                0,
                "{t} of {id}"
            );
        }
        assert_eq!(
            db.count(&format!(
                "SELECT COUNT(*) FROM events WHERE user_ref = '{id}'"
            ))
            .await,
            0
        );
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM orders WHERE user_id = {id}"))
                .await,
            0
        );
    }
    // Their orders remain, without the person: name redacted, phone masked, address gone.
    let masked = lethe::demo::phone_of(seeded.cancelled_due[0]);
    let tail = &masked[masked.len() - 4..];
    let rows = db
        .rows(&format!(
            "SELECT consignee_name, phone, address FROM orders WHERE user_id IS NULL AND phone LIKE '%{tail}'"
        ))
        .await;
    assert!(!rows.is_empty(), "orders of erased users are kept");
    for r in &rows {
        assert_eq!(r[0].as_deref(), Some("[REDACTED]"));
        assert_eq!(r[1].as_deref(), Some(format!("*******{tail}").as_str()));
        assert_eq!(r[2], None);
    }
    // Held users are untouched, with everything that is theirs.
    for id in &seeded.held {
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {id}"))
                .await,
            1,
            "held user {id} kept"
        );
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM orders WHERE user_id = {id}"))
                .await,
            2
        );
    }
    let records = ws.last_records();
    let held: u64 = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Hold { count, rule, .. } if rule == "erase-cancelled-users" => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(
        held,
        seeded.held.len() as u64,
        "every held subject is reported"
    );
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let erased_hash = keys.subject(&seeded.cancelled_due[0].to_string());
    assert!(
        records.iter().any(
            |r| matches!(&r.event, Event::Batch { subjects, .. } if subjects.contains(&erased_hash))
        ),
        "the erased subject appears as its keyed hash"
    );
}

/// Behaviour logs are pseudonymized consistently (same user, same code) and
/// a second run re-touches nothing.
async fn pseudonymize_is_deterministic_and_idempotent(engine: Engine) {
    pseudonymize_in_batches_of(engine, 150).await;
}

/// The same with batches of 1,000 rows: on SQLite, where Lethe binds the
/// hashes, a batch is several `UPDATE`s of at most 256 rows each, and every
/// row must still get its own key's hash (and none be left for a rerun).
async fn pseudonymize_in_large_batches(engine: Engine) {
    pseudonymize_in_batches_of(engine, 1000).await;
}

async fn pseudonymize_in_batches_of(engine: Engine, batch_size: u32) {
    let (db, _) = seeded(engine).await;
    let job = format!(
        r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "pseudonymize-events"
target = "app.events"
subject = "user_ref"
select = {{ column = "created_at", older_than = "30d" }}
action = {{ anonymize = {{ user_ref = "hash", device_id = "null", ip = "null" }} }}
batch_size = {batch_size}
"#
    );
    let job = job.as_str();
    let cut = cutoff_sql(engine, 30);
    let due = db
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at < {cut}"
        ))
        .await;
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM events WHERE created_at < {cut} AND (device_id IS NOT NULL OR ip IS NOT NULL)")).await,
        0
    );
    let pseud = lethe::keys::Keys::from_secret(KEY.as_bytes()).pseudonym("7");
    let of_7_old = db
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at < {cut} AND user_ref = '{pseud}'"
        ))
        .await;
    let of_7_total = db
        .count("SELECT COUNT(*) FROM events WHERE user_ref = '7'")
        .await
        + of_7_old;
    assert_eq!(
        of_7_total, 10,
        "user 7's ten events: old ones carry the same code, recent ones the id"
    );
    let done: u64 = ws
        .last_records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(done, due);
    assert!(
        due > 256,
        "{due} due rows: too few for a batch of several statements"
    );
    let before = db.fingerprint().await;
    let again = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        db.fingerprint().await,
        before,
        "a second run changes nothing"
    );
    let kinds: Vec<&str> = ws.last_records().iter().map(|r| r.event.kind()).collect();
    assert_eq!(
        kinds,
        ["run_start", "run_end"],
        "a second run audits only its start and end"
    );
}

/// Every shipped job twice: the second run changes nothing and writes no batch.
async fn shipped_jobs_are_idempotent(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let ws = Workspace::shipped(&db.url);
    let first = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(first.code, 0, "{}", first.all());
    let after_first = db.fingerprint().await;
    let second = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(db.fingerprint().await, after_first);
    let batches = ws
        .last_records()
        .iter()
        .filter(|r| r.event.kind() == "batch")
        .count();
    assert_eq!(batches, 0, "zero batch records on the second run");
}

/// `plan` and `run --dry-run` change nothing (but write their dry-run audit entry).
async fn dry_run_changes_nothing(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let ws = Workspace::shipped(&db.url);
    let before = db.fingerprint().await;
    let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "work is pending: {}", plan.all());
    assert!(plan.stdout.contains("pending"), "{}", plan.stdout);
    let dry = ws.lethe(&["run", "--dry-run", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    assert_eq!(db.fingerprint().await, before);
    let summary: serde_json::Value =
        serde_json::from_str(dry.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["totals"]["deleted"], 0);
    let would: u64 = dry
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "rule")
        .map(|v| v["matched"].as_u64().unwrap())
        .sum();
    assert!(would > 0, "the dry run reports what it would do");
    assert_eq!(
        ws.audit_files().len(),
        2,
        "plan and dry run each wrote their audit entry"
    );
    let plan_run_start = &lethe::audit::verify::read_records(&ws.audit_files()[0]).unwrap()[0];
    assert!(matches!(
        plan_run_start.event,
        Event::RunStart { dry_run: true, .. }
    ));
}

/// A guard stops the rule before it touches anything: exit 4.
async fn guard_trip_touches_nothing(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let job = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = { column = "created_at", older_than = "30d" }
action = "delete"
max_fraction = 0.25
"#;
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let before = db.fingerprint().await;
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(out.stdout.contains("max_fraction"), "{}", out.stdout);
    assert_eq!(db.fingerprint().await, before);
    assert!(ws.last_records().iter().any(|r| r.event.kind() == "guard"));

    let job_rows = job.replace("max_fraction = 0.25", "max_rows = 10");
    std::fs::write(ws.jobs().join("logs.toml"), job_rows).unwrap();
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 4, "{}", out.all());
    assert_eq!(db.fingerprint().await, before);
}

/// A second run while the first holds the job's lease exits 75.
async fn lease_conflict_exits_75(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let ws = Workspace::shipped(&db.url);
    let state = lethe::state::State::open(&ws.state_url(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        state
            .acquire("job:behaviour-logs", "another-run")
            .await
            .unwrap()
    );
    let before = db.fingerprint().await;
    let out = ws.lethe(&["run", "--job", "behaviour-logs", "--as-of", AS_OF]);
    assert_eq!(out.code, 75, "{}", out.all());
    assert_eq!(db.fingerprint().await, before, "the locked job did not run");
    state
        .release("job:behaviour-logs", "another-run")
        .await
        .unwrap();
    let out = ws.lethe(&["run", "--job", "behaviour-logs", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "runs once the lease is free: {}", out.all());
    state.close().await;
}

/// A rule whose table is gone fails alone: the others complete, exit 3.
async fn failing_rule_does_not_stop_the_others(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let broken = r#"
name = "broken"
policy = "IV(2)1"
[[rules]]
name = "bad-where"
target = "app.posts"
where = "no_such_column = 1"
action = "delete"
"#;
    let ws = Workspace::shipped(&db.url);
    std::fs::write(ws.jobs().join("broken.toml"), broken).unwrap();
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    let cut = cutoff_sql(engine, 180);
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE created_at < {cut}"
        ))
        .await,
        0,
        "other jobs ran"
    );
    assert!(
        ws.last_records()
            .iter()
            .any(|r| r.event.kind() == "failure")
    );
}

/// `check` finds foreign keys into a deleted table that no child rule covers.
async fn check_reports_uncovered_foreign_keys(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let job = r#"
name = "accounts"
policy = "IV(2)2"
[[rules]]
name = "erase-cancelled-users"
target = "app.users"
subject = "id"
select = { column = "cancelled_at", older_than = "15d" }
action = "delete"

  [[rules.children]]
  target = "app.posts"
  foreign_key = "user_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("accounts.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    // comments.user_id cascades; orders.user_id restricts; comments.post_id cascades from posts.
    for expected in [
        "comments.user_id references app.users.id ON DELETE CASCADE",
        "the audit would never see them",
        "orders.user_id references app.users.id ON DELETE RESTRICT",
        "the delete would fail",
        "comments.post_id references app.posts.id",
        "accounts.toml:4:1",
    ] {
        assert!(
            out.stdout.contains(expected),
            "expected `{expected}` in:\n{}",
            out.stdout
        );
    }
    // The shipped jobs cover every key.
    let ws = Workspace::shipped(&db.url);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 0, "{}", out.all());
}

/// Unknown tables and columns are `check` errors naming the file and rule.
async fn check_reports_unknown_tables_and_columns(engine: Engine) {
    let (db, _) = seeded(engine).await;
    let job = r#"
name = "typos"
policy = "IV(2)1"
[[rules]]
name = "no-table"
target = "app.userz"
select = { column = "cancelled_at", older_than = "15d" }
action = "delete"

[[rules]]
name = "no-column"
target = "app.events"
select = { column = "created", older_than = "15d" }
action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("typos.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stdout.contains(
            "typos.toml:4:1: job `typos` rule `no-table`: table app.userz does not exist"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rule `no-column`: select column `created` does not exist in app.events"),
        "{}",
        out.stdout
    );
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(
        run.code,
        3,
        "a run fails those rules, audited: {}",
        run.all()
    );
}

/// No seeded personal value reaches any output: stdout, logs, audit, errors.
async fn no_personal_value_in_any_output(engine: Engine) {
    let (db, seeded) = seeded(engine).await;
    let ws = Workspace::shipped(&db.url);
    let mut outputs = String::new();
    for args in [
        vec!["check"],
        vec!["plan", "--as-of", AS_OF, "-vv"],
        vec!["plan", "--as-of", AS_OF, "--output", "json"],
        vec!["run", "--dry-run", "--as-of", AS_OF, "-vv"],
        vec!["run", "--as-of", AS_OF, "-vv", "--output", "json"],
        vec!["run", "--as-of", AS_OF, "-vv"],
    ] {
        outputs.push_str(&ws.lethe(&args).all());
    }
    // A failing rule whose error quotes a value must not leak it either.
    let leaky = r#"
name = "leaky"
policy = "IV(2)1"
[[rules]]
name = "cast-a-phone"
target = "app.orders"
where = "CAST(phone AS INTEGER) = 0 AND phone = 'x' || CAST(CAST(phone AS INTEGER) AS TEXT)"
action = "delete"
"#;
    std::fs::write(ws.jobs().join("leaky.toml"), leaky).unwrap();
    outputs.push_str(
        &ws.lethe(&["run", "--job", "leaky", "--as-of", AS_OF, "-vv"])
            .all(),
    );
    outputs.push_str(
        &ws.lethe(&["audit", "verify", ws.audit_dir().to_str().unwrap()])
            .all(),
    );
    outputs.push_str(&ws.audit_text());
    assert!(outputs.len() > 1000);
    let mut checked = 0;
    for id in 1..=i64::from(USERS) {
        for value in [lethe::demo::phone_of(id), lethe::demo::id_card_of(id)] {
            assert!(
                !outputs.contains(&value),
                "{engine:?}: a seeded personal value ({}…) leaked",
                &value[..4]
            );
            checked += 1;
        }
    }
    let names = db.rows("SELECT name FROM users").await;
    for n in names.iter().filter_map(|r| r[0].clone()) {
        assert!(!outputs.contains(&n), "a seeded name leaked");
        checked += 1;
    }
    assert!(checked > 400);
    let _ = seeded;
}

/// `logs(id, email, created_at)` indexed on `created_at`, one row per
/// `(id, created_at)` with subject `person<id>@example.org`, and
/// `holds(email)` listing the subjects of `held`.
async fn logs_table(db: &TestDb, engine: Engine, rows: &[(u32, String)], held: &[u32]) {
    let ts = match engine {
        Engine::MariaDb => "DATETIME",
        _ => "TIMESTAMP",
    };
    db.exec(&format!(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, email VARCHAR(100) NOT NULL, created_at {ts} NOT NULL)"
    ))
    .await;
    db.exec("CREATE INDEX logs_created_at ON logs (created_at)")
        .await;
    db.exec("CREATE TABLE holds (email VARCHAR(100) NOT NULL)")
        .await;
    for id in held {
        db.exec(&format!(
            "INSERT INTO holds (email) VALUES ('person{id}@example.org')"
        ))
        .await;
    }
    let values: Vec<String> = rows
        .iter()
        .map(|(id, at)| format!("({id}, 'person{id}@example.org', '{at}')"))
        .collect();
    db.exec(&format!(
        "INSERT INTO logs (id, email, created_at) VALUES {}",
        values.join(", ")
    ))
    .await;
}

/// The job that deletes `logs` rows older than 180 days, holds honoured;
/// `tail` ends the rule (`batch_size`, `concurrency`).
fn logs_job(tail: &str) -> String {
    format!(
        r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old-logs"
target = "app.logs"
key = "id"
subject = "email"
select = {{ column = "created_at", older_than = "180d" }}
hold = "app.holds.email"
action = "delete"
{tail}"#
    )
}

/// One-statement batches (a delete with no children) record what they
/// deleted exactly as the general path does: per batch the count, the keyed
/// hashes of the subjects and the keyed digest of the keys — on PostgreSQL
/// computed from the server's SHA-256 of the keys, elsewhere from the
/// returned keys; the definitions agree. Batches of two walk rows that tie on
/// the select column and a held subject without losing or repeating a row.
async fn one_statement_batches_record_each_key(engine: Engine) {
    let db = TestDb::create(engine).await;
    // 1–3 tie, 4–6 are older and distinct, 7–9 are young; 5 is held.
    let rows: Vec<(u32, String)> = (1..=9)
        .map(|id| {
            let at = match id {
                1..=3 => "2025-01-01 00:00:00".to_string(),
                4..=6 => format!("2024-0{id}-01 00:00:00"),
                _ => "2026-06-01 00:00:00".to_string(),
            };
            (id, at)
        })
        .collect();
    logs_table(&db, engine, &rows, &[5]).await;
    let job = logs_job("batch_size = 2\n");
    let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM logs").await,
        4,
        "the 5 due, unheld rows are gone; the held one and the 3 young ones stay"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM logs WHERE id = 5").await, 1);
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let due = [1, 2, 3, 4, 6];
    let mut seen = Vec::new();
    for r in ws.last_records() {
        if let Event::Batch {
            count,
            keys_digest,
            subjects,
            ..
        } = r.event
        {
            // Which keys, in which order, give this digest?
            let mut found = None;
            for a in due {
                for b in due {
                    let list: Vec<String> = if count == 1 {
                        vec![a.to_string()]
                    } else if a != b {
                        vec![a.to_string(), b.to_string()]
                    } else {
                        continue;
                    };
                    if keys.digest(&list) == keys_digest {
                        found = Some(list);
                    }
                }
            }
            let list = found.unwrap_or_else(|| {
                panic!("batch digest {keys_digest} is no digest of {count} due keys")
            });
            let mut want: Vec<String> = list
                .iter()
                .map(|k| keys.subject(&format!("person{k}@example.org")))
                .collect();
            want.sort();
            let mut got = subjects.clone();
            got.sort();
            assert_eq!(got, want, "the batch's subjects are its rows' subjects");
            seen.extend(list);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["1", "2", "3", "4", "6"],
        "every due key recorded in exactly one batch"
    );
}

/// `concurrency = 3`: three windows of `created_at` deleted side by side
/// (one batch at a time on SQLite). Split points fall inside runs of equal
/// `created_at`, so a window that lost or shared its boundary rows shows.
async fn side_by_side_windows_delete_each_due_row_once(engine: Engine) {
    let db = TestDb::create(engine).await;
    // 300 rows; ids 1–210 are due, in runs of 7 equal timestamps; every
    // 25th of those is held. 211–300 are young.
    let held: Vec<u32> = (1..=210).filter(|id| id % 25 == 0).collect();
    let rows: Vec<(u32, String)> = (1..=300u32)
        .map(|id| {
            let at = if id <= 210 {
                let day = (id - 1) / 7; // 30 runs of 7
                format!("2024-{:02}-{:02} 00:00:00", 1 + day / 28, 1 + day % 28)
            } else {
                "2026-06-01 00:00:00".to_string()
            };
            (id, at)
        })
        .collect();
    logs_table(&db, engine, &rows, &held).await;
    let job = logs_job("batch_size = 10\nconcurrency = 3\n");
    let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
    // `check` says beforehand where the setting has no effect.
    let check = ws.lethe(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert_eq!(
        check
            .all()
            .contains("concurrency 3 has no effect here (SQLite"),
        engine == Engine::Sqlite,
        "{}",
        check.all()
    );
    let out = ws.lethe(&["run", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    if engine == Engine::Sqlite {
        assert!(
            out.stderr.contains("SQLite lets one writer in at a time"),
            "{}",
            out.stderr
        );
    } else {
        assert!(
            out.stderr.contains("side-by-side windows") && out.stderr.contains("\"workers\":3"),
            "three windows expected:\n{}",
            out.stderr
        );
    }
    let due: Vec<u32> = (1..=210).filter(|id| !held.contains(id)).collect();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM logs").await,
        300 - due.len() as u64,
        "exactly the due, unheld rows are gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM logs WHERE id > 210").await,
        90,
        "young rows stay"
    );
    for id in &held {
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM logs WHERE id = {id}"))
                .await,
            1
        );
    }
    // Each deleted row's subject is in exactly one batch record; the
    // batches are numbered 1, 2, … in the order they were recorded.
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let mut subjects = Vec::new();
    let (mut numbers, mut total) = (Vec::new(), 0);
    for r in ws.last_records() {
        if let Event::Batch {
            batch,
            count,
            subjects: s,
            ..
        } = r.event
        {
            assert_eq!(s.len() as u64, count, "one subject per deleted row");
            numbers.push(batch);
            total += count;
            subjects.extend(s);
        }
    }
    assert_eq!(total, due.len() as u64);
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    subjects.sort();
    let mut want: Vec<String> = due
        .iter()
        .map(|id| keys.subject(&format!("person{id}@example.org")))
        .collect();
    want.sort();
    assert_eq!(
        subjects, want,
        "every due row recorded in exactly one batch"
    );
    let rule = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "rule")
        .unwrap_or_else(|| panic!("no rule line: {}", out.all()));
    assert_eq!(rule["done"], due.len() as u64);
    assert_eq!(rule["batches"], numbers.len() as u64);
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

on_every_engine!(
    one_statement_batches_record_each_key,
    side_by_side_windows_delete_each_due_row_once,
    age_based_delete,
    cascade_with_anonymized_children_and_holds,
    pseudonymize_is_deterministic_and_idempotent,
    pseudonymize_in_large_batches,
    shipped_jobs_are_idempotent,
    dry_run_changes_nothing,
    guard_trip_touches_nothing,
    lease_conflict_exits_75,
    failing_rule_does_not_stop_the_others,
    check_reports_uncovered_foreign_keys,
    check_reports_unknown_tables_and_columns,
    no_personal_value_in_any_output,
);
