//! How batches walk a table, on every engine.
//!
//! A batch that continues with a filter instead of an index bound re-reads
//! every row the earlier batches passed: quadratic in the due rows. These
//! tests run `EXPLAIN` of the very statements Lethe builds (from a job file,
//! against the live schema) and assert the continuation is the lower bound
//! of an index range; and they run the walks for real and check exactly the
//! due rows went, each in exactly one batch record.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use lethe::sql::statements::{Cursor, RuleSql};
use lethe::sql::{Db, Stmt, Val};

/// Rows in the EXPLAIN tables: enough that every planner prefers an index
/// for a narrow range.
const ROWS: u32 = 30_000;

/// `evp(id, created_at, user_ref, note)`, `ROWS` rows; rows with
/// `id % 10 < 3` are dated 2020 (due under a 180-day rule as of
/// 2026-06-15), the others 2026-06 (young). Due rows are spread over the
/// whole key range, so a key walk meets young rows between them.
async fn evp(engine: Engine, index_created: bool) -> TestDb {
    let db = TestDb::create(engine).await;
    match engine {
        Engine::Postgres => {
            db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, note TEXT)").await;
            db.exec(&format!(
                "INSERT INTO evp SELECT g, CASE WHEN g % 10 < 3 THEN TIMESTAMP '2020-01-01' + g * INTERVAL '1 minute' \
                 ELSE TIMESTAMP '2026-06-01' + g * INTERVAL '1 second' END, 'u' || g, 'n' || g FROM generate_series(1, {ROWS}) g"
            ))
            .await;
        }
        Engine::MariaDb => {
            db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at DATETIME(6) NOT NULL, user_ref VARCHAR(200), note VARCHAR(200)) ENGINE=InnoDB").await;
            db.exec(&format!(
                "INSERT INTO evp SELECT seq, IF(seq % 10 < 3, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq MINUTE, \
                 TIMESTAMP '2026-06-01 00:00:00' + INTERVAL seq SECOND), CONCAT('u', seq), CONCAT('n', seq) FROM seq_1_to_{ROWS}"
            ))
            .await;
        }
        Engine::Sqlite => {
            db.exec("CREATE TABLE evp (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, user_ref TEXT, note TEXT)").await;
            db.exec(&format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ROWS}) \
                 INSERT INTO evp SELECT n, CASE WHEN n % 10 < 3 THEN datetime('2020-01-01', '+' || n || ' minutes') \
                 ELSE datetime('2026-06-01', '+' || n || ' seconds') END, 'u' || n, 'n' || n FROM g"
            ))
            .await;
        }
    }
    if index_created {
        db.exec("CREATE INDEX evp_created ON evp (created_at)")
            .await;
    }
    match engine {
        Engine::Postgres => db.exec("ANALYZE evp").await,
        Engine::MariaDb => db.exec("ANALYZE TABLE evp").await,
        Engine::Sqlite => db.exec("ANALYZE").await,
    }
    db
}

fn due(n: u32) -> u32 {
    (1..=n).filter(|i| i % 10 < 3).count() as u32
}

/// The rule of the one job in `job`, prepared against the live schema.
async fn prepared(db: &Db, ws: &Workspace) -> RuleSql {
    let loaded = lethe::config::load(&ws.config(), &ws.jobs()).expect("the job loads");
    let rule = &loaded.jobs[0].rules[0];
    let as_of = now();
    lethe::engine::prepare_rule(db, rule, as_of)
        .await
        .unwrap_or_else(|p| panic!("{p:?}"))
}

/// One rule on `evp` (due after 180 days), with `extra` lines of its own.
fn evp_job(name: &str, action: &str, batch_size: u32, extra: &str) -> String {
    format!(
        r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "{name}"
target = "app.evp"
select = {{ column = "created_at", older_than = "180d" }}
action = {action}
batch_size = {batch_size}
{extra}
"#
    )
}

/// An anonymize rule: on PostgreSQL one statement per batch (select,
/// update and summary at once); elsewhere the keyed loop (select, then
/// update by key).
fn anonymize_job(batch_size: u32, walk: &str) -> String {
    evp_job(
        "pseudonymize",
        r#"{ anonymize = { note = "null" } }"#,
        batch_size,
        walk,
    )
}

/// A plain delete: the one-statement path.
fn delete_job(batch_size: u32, extra: &str) -> String {
    evp_job("delete-old", r#""delete""#, batch_size, extra)
}

/// The statement that continues an anonymize walk after `cur`: on
/// PostgreSQL the one-statement batch (bounded by the cursor's order value,
/// or by its key on a key walk), elsewhere the keyed loop's select.
fn anonymize_continuation(db: &Db, sql: &RuleSql, cur: &Cursor) -> Stmt {
    let d = db.dialect();
    if !sql.fast_anonymize(d) {
        assert_ne!(d.engine(), lethe::sql::dialect::Engine::Postgres);
        return sql.select_batch(d, Some(cur), true);
    }
    let pads = lethe::keys::HashPads {
        inner: vec![0x36; 64],
        outer: vec![0x5c; 64],
    };
    let bound = match sql.walk {
        lethe::config::Walk::Select => cur.order.as_deref(),
        _ => Some(cur.key.as_str()),
    };
    sql.anonymize_batch(d, &pads, bound, None)
}

/// Where the keyed loop stands after its first batch: the cursor the engine
/// would continue from.
async fn after_first_batch(db: &Db, sql: &RuleSql) -> Cursor {
    let rows = sql.parse_batch(
        db.fetch(&sql.select_batch(db.dialect(), None, false))
            .await
            .expect("first batch"),
    );
    let last = rows.last().expect("rows");
    Cursor {
        order: last.order.clone(),
        key: last.key.clone(),
    }
}

/// The plan of `stmt` as the engine prints it: PostgreSQL's text plan
/// (with sequential scans off, so the plan shows where the index is
/// bounded rather than whether the planner liked it), MariaDB's JSON plan,
/// SQLite's query plan details.
async fn explain(db: &TestDb, stmt: &Stmt) -> String {
    match db.engine {
        Engine::Postgres => {
            let conn = db.connect().await;
            let mut tx = conn.begin().await.unwrap();
            tx.execute(&conn, &common::raw("SET LOCAL enable_seqscan = off"))
                .await
                .unwrap();
            let e = Stmt {
                sql: format!("EXPLAIN {}", stmt.sql),
                binds: stmt.binds.clone(),
            };
            let rows = tx.fetch(&conn, &e).await.expect("explain");
            tx.rollback(&conn).await.unwrap();
            conn.close().await;
            rows.into_iter()
                .map(|r| r[0].clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        }
        Engine::MariaDb => {
            let conn = db.connect().await;
            let e = Stmt {
                sql: format!("EXPLAIN FORMAT=JSON {}", stmt.sql),
                binds: stmt.binds.clone(),
            };
            let rows = conn.fetch(&e).await.expect("explain");
            conn.close().await;
            rows[0][0].clone().unwrap_or_default()
        }
        Engine::Sqlite => {
            use sqlx::{Connection, Row};
            let path = db.url.trim_start_matches("sqlite://");
            let path = path.split('?').next().unwrap();
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            let sql = format!("EXPLAIN QUERY PLAN {}", stmt.sql);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for v in &stmt.binds {
                q = match v {
                    Val::Int(i) => q.bind(*i),
                    Val::Text(s) => q.bind(s.clone()),
                    Val::Null => q.bind(None::<String>),
                    other => panic!("SQLite binds no {other:?}"),
                };
            }
            let rows = q.fetch_all(&mut c).await.expect("explain");
            rows.iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

/// MariaDB's JSON plan: the first table access (`access_type`, `key`, `rows`).
fn mariadb_access(plan: &str) -> (String, String, u64) {
    fn find(v: &serde_json::Value) -> Option<&serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("access_type") {
                    return Some(v);
                }
                m.values().find_map(find)
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let v: serde_json::Value = serde_json::from_str(plan).expect("JSON plan");
    let t = find(&v).unwrap_or_else(|| panic!("no table access in {plan}"));
    (
        t["access_type"].as_str().unwrap_or_default().to_string(),
        t["key"].as_str().unwrap_or_default().to_string(),
        t["rows"].as_u64().unwrap_or(u64::MAX),
    )
}

/// The keyed loop's continuation after a batch is the lower bound of the
/// select column's index range, not a filter over everything before it.
async fn select_walk_continues_on_an_index_bound(engine: Engine) {
    let db = evp(engine, true).await;
    let batch = due(ROWS) - 2_000;
    let ws = Workspace::new(&db.url, &[("logs.toml", &anonymize_job(batch, ""))]);
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    let cur = after_first_batch(&conn, &sql).await;
    let stmt = anonymize_continuation(&conn, &sql, &cur);
    conn.close().await;
    let plan = explain(&db, &stmt).await;
    match engine {
        Engine::Postgres => {
            assert!(
                plan.contains("Tid Scan") || plan.contains("TID Cond"),
                "the update finds the selected rows by ctid:\n{plan}"
            );
            let cond = plan
                .lines()
                .find(|l| l.contains("Index Cond"))
                .unwrap_or_else(|| panic!("no index condition:\n{plan}"));
            assert!(
                cond.contains("created_at >=") && cond.contains("created_at <"),
                "the continuation bounds the index range from below:\n{plan}"
            );
        }
        Engine::MariaDb => {
            let (access, key, rows) = mariadb_access(&plan);
            assert_eq!(access, "range", "{plan}");
            assert_eq!(key, "evp_created", "{plan}");
            assert!(
                rows <= u64::from(ROWS) * 15 / 100,
                "the range holds only the rows after the cursor ({rows} estimated):\n{plan}"
            );
        }
        Engine::Sqlite => {
            assert!(
                plan.contains("USING INDEX evp_created (created_at>? AND created_at<?)"),
                "the continuation is a bound of the index search:\n{plan}"
            );
        }
    }
}

/// Key walk: the plain delete's one statement and the keyed loop's select,
/// on a table whose select column no index leads with, are bounded on the
/// key's index (never a scan and sort of the table).
async fn key_walk_is_bounded_on_the_key_index(engine: Engine) {
    let db = evp(engine, false).await;
    // PostgreSQL deletes such a table by walking its heap (see
    // `postgres_heap_walk_reads_page_ranges`); its key walk is forced here.
    let forced = if engine == Engine::Postgres {
        "walk = \"key\""
    } else {
        ""
    };
    for (job, keyed) in [
        (anonymize_job(500, ""), true),
        (delete_job(500, forced), false),
    ] {
        let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
        let conn = db.connect().await;
        let sql = prepared(&conn, &ws).await;
        assert_eq!(
            sql.walk,
            lethe::config::Walk::Key,
            "chosen from the live indexes: {}",
            sql.walk_why
        );
        let d = conn.dialect();
        let stmt = if keyed {
            let cur = after_first_batch(&conn, &sql).await;
            anonymize_continuation(&conn, &sql, &cur)
        } else {
            // What the next batch after one that ended at key 9000 runs
            // (on SQLite: the summary that picks its rows first).
            sql.summarize_batch(d, None, Some("9000"), None)
                .unwrap_or_else(|| sql.delete_batch(d, None, Some("9000"), None))
        };
        conn.close().await;
        let plan = explain(&db, &stmt).await;
        let what = if keyed { "keyed loop" } else { "plain delete" };
        match engine {
            Engine::Postgres => {
                let cond = plan
                    .lines()
                    .find(|l| l.contains("Index Cond"))
                    .unwrap_or_else(|| panic!("{what}: no index condition:\n{plan}"));
                assert!(
                    cond.contains("id >"),
                    "{what}: the key bounds the index range:\n{plan}"
                );
                assert!(
                    !plan.contains("Sort"),
                    "{what}: the key's index gives the order:\n{plan}"
                );
            }
            Engine::MariaDb => {
                let (access, key, _) = mariadb_access(&plan);
                assert_eq!(access, "range", "{what}: {plan}");
                assert_eq!(key, "PRIMARY", "{what}: {plan}");
                assert!(!plan.contains("filesort"), "{what}: {plan}");
            }
            Engine::Sqlite => {
                assert!(
                    plan.contains("USING INTEGER PRIMARY KEY (rowid>?)"),
                    "{what}: the key bounds the search:\n{plan}"
                );
                assert!(!plan.contains("TEMP B-TREE FOR ORDER BY"), "{what}: {plan}");
            }
        }
    }
}

/// `evp` with `n` rows and no index on `created_at`, plus `holds(user_ref)`
/// listing every 50th row's subject (all of them due).
async fn small_evp(engine: Engine, n: u32) -> TestDb {
    let db = TestDb::create(engine).await;
    let (ts, text) = match engine {
        Engine::Postgres => ("TIMESTAMP", "TEXT"),
        Engine::MariaDb => ("DATETIME", "VARCHAR(100)"),
        Engine::Sqlite => ("TEXT", "TEXT"),
    };
    db.exec(&format!(
        "CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at {ts} NOT NULL, user_ref {text}, note {text})"
    ))
    .await;
    db.exec(&format!("CREATE TABLE holds (user_ref {text} NOT NULL)"))
        .await;
    let mut values = Vec::new();
    for i in 1..=n {
        let at = if i % 10 < 3 {
            format!("2020-{:02}-{:02} 00:00:00", 1 + i % 12, 1 + i % 28)
        } else {
            "2026-06-01 00:00:00".to_string()
        };
        values.push(format!("({i}, '{at}', 'u{i}', 'n{i}')"));
        if i % 50 == 0 {
            db.exec(&format!("INSERT INTO holds VALUES ('u{i}')")).await;
        }
    }
    for chunk in values.chunks(500) {
        db.exec(&format!(
            "INSERT INTO evp (id, created_at, user_ref, note) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
    db
}

/// The key walk for real, as a one-statement delete and as the keyed loop
/// (anonymize): exactly the due rows are acted on, held rows are kept, the
/// audit log verifies, and every due row's subject is in exactly one batch
/// record. `plan` and `check` say which walk.
async fn key_walk_acts_on_each_due_row_once(engine: Engine) {
    const N: u32 = 3_000;
    for action in ["\"delete\"", "{ anonymize = { note = \"null\" } }"] {
        let db = small_evp(engine, N).await;
        let job = format!(
            r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "old"
target = "app.evp"
subject = "user_ref"
hold = "app.holds.user_ref"
select = {{ column = "created_at", older_than = "180d" }}
action = {action}
batch_size = 97
"#
        );
        let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
        // PostgreSQL deletes by walking the heap; everything else walks the key.
        let heap = engine == Engine::Postgres && action == "\"delete\"";
        let (by, column, says) = if heap {
            (
                "heap",
                "ctid",
                "batches walk the heap `ctid` (no index leads with `created_at`: the pages in order, each read once)",
            )
        } else {
            (
                "key",
                "id",
                "batches walk the key `id` (no index leads with `created_at`)",
            )
        };
        let check = ws.lethe(&["check"]);
        assert_eq!(check.code, 0, "{}", check.all());
        assert!(check.stdout.contains(says), "{}", check.all());
        let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--output", "json"]);
        let rule: serde_json::Value = plan
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "rule")
            .unwrap_or_else(|| panic!("no rule line: {}", plan.all()));
        assert_eq!(rule["walk"]["by"], by, "{rule}");
        assert_eq!(rule["walk"]["column"], column, "{rule}");
        let table = ws.lethe(&["plan", "--as-of", AS_OF]);
        assert!(
            table.stdout.contains(&format!("walks the {by} `{column}`")),
            "{}",
            table.all()
        );

        let out = ws.lethe(&["run", "--as-of", AS_OF]);
        assert_eq!(out.code, 0, "{}", out.all());
        let due: Vec<u32> = (1..=N).filter(|i| i % 10 < 3).collect();
        let acted: Vec<u32> = due.iter().copied().filter(|i| i % 50 != 0).collect();
        let held = due.len() - acted.len();
        let untouched = if action == "\"delete\"" {
            db.count("SELECT COUNT(*) FROM evp").await
        } else {
            db.count("SELECT COUNT(*) FROM evp WHERE note IS NOT NULL")
                .await
        };
        assert_eq!(
            untouched,
            u64::from(N) - acted.len() as u64,
            "{action}: exactly the due, unheld rows"
        );
        let young_or_held =
            "SELECT COUNT(*) FROM evp WHERE created_at > '2026-01-01' OR MOD(id, 50) = 0"
                .to_string();
        let kept = if engine == Engine::Sqlite {
            young_or_held.replace("MOD(id, 50)", "id % 50")
        } else {
            young_or_held
        };
        assert_eq!(
            db.count(&kept).await,
            u64::from(N) - due.len() as u64 + held as u64,
            "{action}: young and held rows are kept"
        );
        audited_once_each(&ws, &acted, 97, action);
    }
}

/// `hash` computed in one statement per batch (by the server where it has
/// SHA-256, bound per key on SQLite) equals Lethe's own HMAC for ASCII,
/// Chinese text and the empty string; NULLs and values already hashed stay;
/// a second run touches nothing.
async fn one_statement_hash_equals_lethe_hmac(engine: Engine) {
    let db = TestDb::create(engine).await;
    let (ts, text, tail) = match engine {
        Engine::Postgres => ("TIMESTAMP", "TEXT", ""),
        Engine::MariaDb => ("DATETIME", "VARCHAR(200)", " DEFAULT CHARSET=utf8mb4"),
        Engine::Sqlite => ("TEXT", "TEXT", ""),
    };
    db.exec(&format!(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, created_at {ts} NOT NULL, name {text}, phone {text}, note {text}){tail}"
    ))
    .await;
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let done = keys.pseudonym("done before");
    let values: Vec<Option<String>> = vec![
        Some("alice@example.com".into()),
        Some("王小明 北京市朝阳区建国路88号".into()),
        Some(String::new()),
        None,
        Some(done.clone()),
        Some("13800138000".into()),
    ];
    let mut rows = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let lit = v
            .as_ref()
            .map(|v| format!("'{v}'"))
            .unwrap_or_else(|| "NULL".into());
        // Every row is due; one young row shows the cutoff still holds.
        rows.push(format!(
            "({}, '2020-01-01 00:00:00', {lit}, {lit}, 'n')",
            i + 1
        ));
    }
    rows.push("(100, '2026-06-01 00:00:00', 'young', 'young', 'n')".into());
    db.exec(&format!(
        "INSERT INTO people (id, created_at, name, phone, note) VALUES {}",
        rows.join(", ")
    ))
    .await;
    let job = r#"
name = "pseudonymize"
policy = "II(2)2"
[[rules]]
name = "people"
target = "app.people"
select = { column = "created_at", older_than = "180d" }
action = { anonymize = { name = "hash", phone = "hash", note = "null" } }
batch_size = 4
"#;
    let ws = Workspace::new(&db.url, &[("p.toml", job)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    let cast = if engine == Engine::MariaDb {
        "CHAR"
    } else {
        "TEXT"
    };
    let got = db
        .rows(&format!(
            "SELECT CAST(id AS {cast}), name, phone, note FROM people ORDER BY people.id"
        ))
        .await;
    for (i, v) in values.iter().enumerate() {
        let want = v.as_ref().map(|v| {
            if lethe::keys::looks_hashed(v) {
                v.clone()
            } else {
                keys.pseudonym(v)
            }
        });
        assert_eq!(got[i][1], want, "name of row {}", i + 1);
        assert_eq!(got[i][2], want, "phone of row {}", i + 1);
        assert_eq!(got[i][3], None, "note of row {}", i + 1);
    }
    assert_eq!(got[values.len()][1].as_deref(), Some("young"));
    assert_eq!(got[values.len()][3].as_deref(), Some("n"));
    assert_eq!(
        got[4][1].as_deref(),
        Some(done.as_str()),
        "already hashed: kept"
    );
    // Idempotent: nothing left to touch, nothing audited but start and end.
    second_run_finds_nothing(&ws, "hash");
    let after = db
        .rows(&format!(
            "SELECT CAST(id AS {cast}), name, phone, note FROM people ORDER BY people.id"
        ))
        .await;
    assert_eq!(after, got);
}

/// `batch_time`: the sizes the controller chose move from the first size
/// and stay within `[10, batch_size_max]`; the report and every batch
/// record say them; the rows are still exactly the due ones. (No assertion
/// on speed: the arithmetic is unit-tested with injected durations.)
async fn time_sized_batches_stay_within_bounds(engine: Engine) {
    const N: u32 = 3_000;
    for action in ["\"delete\"", "{ anonymize = { note = \"null\" } }"] {
        let db = small_evp(engine, N).await;
        let job = format!(
            r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "old"
target = "app.evp"
subject = "user_ref"
hold = "app.holds.user_ref"
select = {{ column = "created_at", older_than = "180d" }}
action = {action}
batch_size = 10
batch_time = "200ms"
batch_size_max = 300
"#
        );
        let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
        let out = ws.lethe(&["run", "--as-of", AS_OF, "--output", "json"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let rule: serde_json::Value = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "rule")
            .unwrap_or_else(|| panic!("no rule line: {}", out.all()));
        let sizes = &rule["batch_sizes"];
        assert_eq!(sizes["first"], 10, "{rule}");
        assert_eq!(sizes["target_ms"], 200, "{rule}");
        let (min, max) = (
            sizes["min"].as_u64().unwrap(),
            sizes["max"].as_u64().unwrap(),
        );
        assert!(
            (10..=300).contains(&min) && (10..=300).contains(&max),
            "{rule}"
        );
        let mut chosen = Vec::new();
        let mut total = 0;
        for r in ws.last_records() {
            if let Event::Batch {
                count, batch_size, ..
            } = r.event
            {
                let size = batch_size.expect("a time-sized batch records its size");
                assert!((10..=300).contains(&size), "{size}");
                assert!(count <= size, "{count} rows in a batch of {size}");
                chosen.push(size);
                total += count;
            }
        }
        assert_eq!(chosen[0], 10, "the first batch has batch_size rows");
        assert!(
            chosen.iter().any(|s| *s != 10),
            "{action}: the sizes move: {chosen:?}"
        );
        let due = (1..=N).filter(|i| i % 10 < 3 && i % 50 != 0).count() as u64;
        assert_eq!(total, due, "{action}: exactly the due, unheld rows");
        let verify = ws.lethe(&["audit", "verify"]);
        assert_eq!(verify.code, 0, "{}", verify.all());
    }
}

/// The new rule keys are refused with their positions, every one at once.
#[test]
fn walk_and_batch_time_keys_are_validated_with_positions() {
    let job = "name = \"x\"\npolicy = \"VIII\"\n[[rules]]\nname = \"r\"\ntarget = \"app.users\"\nwhere = \"1=1\"\naction = \"delete\"\nwalk = \"sideways\"\nbatch_time = \"fast\"\n[[rules]]\nname = \"s\"\ntarget = \"app.users\"\nwhere = \"1=1\"\naction = \"delete\"\nwalk = \"select\"\nbatch_size_max = 500\nbatch_size = \"auto-ish\"\n";
    let ws = Workspace::new("sqlite://unused.db", &[("bad.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    for e in [
        "bad.toml:8:8: unknown walk `sideways`",
        "bad.toml:9:14:",
        "bad.toml:15:8: walk = \"select\" needs `select`",
        "bad.toml:16:18: batch_size_max bounds a batch sized by time",
        "bad.toml:17:14: batch_size: invalid type",
    ] {
        assert!(out.stderr.contains(e), "expected `{e}` in:\n{}", out.stderr);
    }
}

/// A child found through a column no index leads with is scanned whole by
/// every batch: the plan says so, with the numbers, per child.
async fn plan_notes_each_child_without_an_index(engine: Engine) {
    let db = small_evp(engine, 300).await;
    db.exec("CREATE TABLE evc (id BIGINT PRIMARY KEY, evp_id BIGINT NOT NULL, note VARCHAR(20))")
        .await;
    db.exec("CREATE TABLE evi (id BIGINT PRIMARY KEY, evp_id BIGINT NOT NULL)")
        .await;
    db.exec("CREATE INDEX evi_evp ON evi (evp_id)").await;
    let rows: Vec<String> = (1..=600)
        .map(|i| format!("({i}, {}, 'c')", 1 + (i - 1) / 2))
        .collect();
    db.exec(&format!("INSERT INTO evc VALUES {}", rows.join(", ")))
        .await;
    let job = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "old"
target = "app.evp"
subject = "user_ref"
hold = "app.holds.user_ref"
select = { column = "created_at", older_than = "180d" }
action = "delete"
batch_size = 10
  [[rules.children]]
  target = "app.evc"
  foreign_key = "evp_id"
  action = "delete"
  [[rules.children]]
  target = "app.evi"
  foreign_key = "evp_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("logs.toml", job)]);
    let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--output", "json"]);
    let rule: serde_json::Value = plan
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "rule")
        .unwrap_or_else(|| panic!("no rule line: {}", plan.all()));
    // 90 due, 6 of them held: 84 rows in batches of 10.
    assert_eq!(rule["matched"], 84, "{rule}");
    let notes: Vec<&str> = rule["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes: {rule}"))
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(notes.len(), 1, "only the unindexed child: {notes:?}");
    assert!(
        notes[0].contains("child app.evc is found by `evp_id`")
            && notes[0].contains("each of about 9 batch(es) scans its 600 rows"),
        "{notes:?}"
    );
    let table = ws.lethe(&["plan", "--as-of", AS_OF]);
    assert!(
        table
            .stdout
            .contains("! child app.evc is found by `evp_id`"),
        "{}",
        table.all()
    );
}

on_every_engine!(
    select_walk_continues_on_an_index_bound,
    key_walk_is_bounded_on_the_key_index,
    key_walk_acts_on_each_due_row_once,
    one_statement_hash_equals_lethe_hmac,
    time_sized_batches_stay_within_bounds,
    plan_notes_each_child_without_an_index,
);

/// On a partitioned MariaDB table the one-statement delete orders by the
/// select column alone: with the key as a tie-break (`ORDER BY created_at,
/// id LIMIT n`) MariaDB sorts every due row of every partition for every
/// batch, where `ORDER BY created_at LIMIT n` reads the index in order and
/// stops after n rows.
#[tokio::test]
async fn mariadb_partitioned_delete_reads_the_index_in_order() {
    let db = TestDb::create(Engine::MariaDb).await;
    db.exec(
        "CREATE TABLE evp (id BIGINT NOT NULL, created_at DATETIME NOT NULL, note VARCHAR(64), \
         PRIMARY KEY (id, created_at), KEY evp_created (created_at)) ENGINE=InnoDB \
         PARTITION BY RANGE COLUMNS (created_at) (\
         PARTITION p2020 VALUES LESS THAN ('2021-01-01'), \
         PARTITION p2021 VALUES LESS THAN ('2022-01-01'), \
         PARTITION pnew VALUES LESS THAN (MAXVALUE))",
    )
    .await;
    db.exec(&format!(
        "INSERT INTO evp SELECT seq, IF(seq % 10 < 3, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq * 20 MINUTE, \
         TIMESTAMP '2026-06-01 00:00:00' + INTERVAL seq SECOND), CONCAT('n', seq) FROM seq_1_to_{ROWS}"
    ))
    .await;
    db.exec("ANALYZE TABLE evp").await;
    let ws = Workspace::new(&db.url, &[("logs.toml", &delete_job(500, "key = \"id\""))]);
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    assert!(sql.table.info.partitioned, "the catalog says partitioned");
    // The batch after one that ended on 2020-03-01.
    let stmt = sql.delete_batch(conn.dialect(), None, Some("2020-03-01 00:00:00"), None);
    conn.close().await;
    let plan = explain(&db, &stmt).await;
    let (access, key, _) = mariadb_access(&plan);
    assert_eq!(
        (access.as_str(), key.as_str()),
        ("range", "evp_created"),
        "{plan}"
    );
    assert!(
        !plan.contains("filesort"),
        "no sort of the due rows: {plan}"
    );
}

/// The keyed loop on a partitioned MariaDB table (here `HASH(id)`, so the
/// key can be the whole primary key): `ORDER BY created_at, id` over the
/// index on `created_at` sorts every due row for every batch, because
/// MariaDB merges the partitions' scans on the index's own columns only.
/// Lethe walks the key instead, reads it in order, and anonymizes exactly
/// the due rows; once an index names both columns it walks the select
/// column again, in order.
/// A MariaDB batch runs at READ COMMITTED: the key walk of a table without
/// an index on `created_at` reads the young rows between its due ones, and
/// at the server's REPEATABLE READ it would keep every one of them locked
/// until the batch commits, so the application's `UPDATE` of a young row
/// waits. Here, with the batch still open, that `UPDATE` goes through, and
/// a due row the batch deleted stays locked.
#[tokio::test]
async fn mariadb_batch_leaves_the_young_rows_it_passes_unlocked() {
    let db = evp(Engine::MariaDb, false).await;
    let ws = Workspace::new(&db.url, &[("logs.toml", &delete_job(500, ""))]);
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    assert_eq!(sql.walk, lethe::config::Walk::Key, "{}", sql.walk_why);
    let mut tx = conn.begin().await.expect("a transaction");
    let level = tx
        .fetch(&conn, &common::raw("SELECT @@tx_isolation"))
        .await
        .expect("the isolation level");
    let deleted = tx
        .fetch(&conn, &sql.delete_batch(conn.dialect(), None, None, None))
        .await
        .expect("the first batch");
    assert_eq!(deleted.len(), 500, "batch_size rows");
    // Rows 1..=1,666 hold the first 500 due ones (id % 10 < 3); 5 and 1,005
    // are young, between them.
    let app = db.connect().await;
    let mut updates = Vec::new();
    for id in [5, 1_005, 10] {
        let stmt = common::raw(&format!(
            "SET STATEMENT innodb_lock_wait_timeout = 1 FOR UPDATE evp SET note = 'app' WHERE id = {id}"
        ));
        updates.push((id, app.execute(&stmt).await));
    }
    // Rolled back before any assertion: an open batch would keep the test
    // database from being dropped.
    tx.rollback(&conn).await.expect("rollback");
    app.close().await;
    conn.close().await;
    assert_eq!(level[0][0].as_deref(), Some("READ-COMMITTED"));
    for (id, r) in updates {
        match id {
            10 => assert!(
                r.is_err(),
                "the deleted due row 10 stays locked to the commit"
            ),
            young => assert!(
                r.is_ok(),
                "young row {young} is locked by the open batch: {:?}",
                r.err()
            ),
        }
    }
}

#[tokio::test]
async fn mariadb_partitioned_keyed_loop_never_sorts_the_due_rows() {
    let db = TestDb::create(Engine::MariaDb).await;
    db.exec(
        "CREATE TABLE evp (id BIGINT NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL, \
         user_ref VARCHAR(64), note VARCHAR(64), KEY evp_created (created_at)) ENGINE=InnoDB \
         PARTITION BY HASH (id) PARTITIONS 4",
    )
    .await;
    db.exec(&format!(
        "INSERT INTO evp SELECT seq, IF(seq % 10 < 3, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq MINUTE, \
         TIMESTAMP '2026-06-01 00:00:00' + INTERVAL seq SECOND), CONCAT('u', seq), CONCAT('n', seq) FROM seq_1_to_{ROWS}"
    ))
    .await;
    db.exec("ANALYZE TABLE evp").await;
    let ws = Workspace::new(&db.url, &[("logs.toml", &anonymize_job(1_000, ""))]);
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    assert_eq!(sql.walk, lethe::config::Walk::Key, "{}", sql.walk_why);
    assert!(
        sql.walk_why
            .contains("no index leads with (`created_at`, `id`)"),
        "{}",
        sql.walk_why
    );
    let cur = after_first_batch(&conn, &sql).await;
    let plan = explain(&db, &sql.select_batch(conn.dialect(), Some(&cur), true)).await;
    assert!(!plan.contains("filesort"), "the key read in order: {plan}");
    assert_eq!(mariadb_access(&plan).1, "PRIMARY", "{plan}");
    conn.close().await;

    let check = ws.lethe(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(
        check.stdout.contains("batches walk the key `id`"),
        "{}",
        check.all()
    );
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp WHERE note IS NULL")
            .await,
        u64::from(due(ROWS)),
        "every due row anonymized"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp WHERE note IS NULL AND created_at > '2026-01-01'")
            .await,
        0,
        "no young row touched"
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    // Forcing the select walk there is allowed, and `check` says what it costs.
    let forced = Workspace::new(
        &db.url,
        &[("logs.toml", &anonymize_job(1_000, "walk = \"select\""))],
    );
    let check = forced.lethe(&["check"]);
    assert!(
        check.stdout.contains(
            "app.evp is partitioned and no index leads with (`created_at`, `id`): every batch of walk = \"select\" sorts all the rows still due"
        ),
        "{}",
        check.all()
    );

    // An index that names both columns orders the walk by itself.
    db.exec("CREATE INDEX evp_created_id ON evp (created_at, id)")
        .await;
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    assert_eq!(sql.walk, lethe::config::Walk::Select, "{}", sql.walk_why);
    let first = sql.select_batch(conn.dialect(), None, true);
    conn.close().await;
    let plan = explain(&db, &first).await;
    assert!(!plan.contains("filesort"), "read in index order: {plan}");
    let check = forced.lethe(&["check"]);
    assert!(
        !check.stdout.contains("sorts all the rows"),
        "{}",
        check.all()
    );
}

/// A plain delete on PostgreSQL whose select column no index leads with
/// walks the heap: each batch is a TID Range Scan of a window of pages
/// (never a scan of the table, nor a fetch row by row through the key).
/// Side-by-side windows split the key instead, and the keyed loop cannot
/// walk the heap at all.
#[tokio::test]
async fn postgres_heap_walk_reads_page_ranges() {
    let db = evp(Engine::Postgres, false).await;
    let ws = Workspace::new(&db.url, &[("logs.toml", &delete_job(500, ""))]);
    let conn = db.connect().await;
    let sql = prepared(&conn, &ws).await;
    assert_eq!(sql.walk, lethe::config::Walk::Heap, "{}", sql.walk_why);
    let stmt = sql.delete_heap_batch(conn.dialect(), "(10,0)", 40);
    let plan = explain(&db, &stmt).await;
    assert!(plan.contains("Tid Range Scan"), "{plan}");
    assert!(
        plan.contains("TID Cond: ((ctid > '(10,0)'::tid) AND (ctid < '(40,0)'::tid))"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");

    let ws2 = Workspace::new(
        &db.url,
        &[("logs.toml", &delete_job(500, "concurrency = 2"))],
    );
    let sql = prepared(&conn, &ws2).await;
    assert_eq!(sql.walk, lethe::config::Walk::Key, "windows split the key");

    let forced = Workspace::new(
        &db.url,
        &[("logs.toml", &anonymize_job(500, "walk = \"heap\""))],
    );
    let loaded = lethe::config::load(&forced.config(), &forced.jobs()).expect("loads");
    let err = lethe::engine::prepare_rule(&conn, &loaded.jobs[0].rules[0], now())
        .await
        .expect_err("the keyed loop cannot walk the heap");
    assert!(
        err.iter()
            .any(|p| p.contains("walk = \"heap\" needs a plain delete")),
        "{err:?}"
    );
    conn.close().await;
}

/// The heap walk for real over an uneven table: a dense run of due rows
/// (full batches, each continuing after the last row it deleted), a long
/// stretch with none (windows grow), then a sparse tail. Exactly the due
/// rows go, no batch is over its size, the batch records add up, and the
/// audit log verifies.
#[tokio::test]
async fn postgres_heap_walk_deletes_exactly_the_due_rows_of_an_uneven_table() {
    let db = TestDb::create(Engine::Postgres).await;
    db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, note TEXT)")
        .await;
    db.exec(
        "INSERT INTO evp SELECT g, CASE WHEN g <= 2000 OR (g > 18000 AND g % 2 = 0) \
         THEN TIMESTAMP '2020-01-01' + g * INTERVAL '1 minute' \
         ELSE TIMESTAMP '2026-06-01' + g * INTERVAL '1 second' END, 'u' || g, 'n' || g \
         FROM generate_series(1, 20000) g",
    )
    .await;
    db.exec("ANALYZE evp").await;
    let due = 2000 + 1000;
    let ws = Workspace::new(&db.url, &[("logs.toml", &delete_job(300, ""))]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(db.count("SELECT COUNT(*) FROM evp").await, 20000 - due);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp WHERE created_at < '2026-01-01'")
            .await,
        0,
        "no due row left"
    );
    let mut counted = 0;
    let mut batches = 0;
    for r in ws.last_records() {
        if let Event::Batch { count, .. } = r.event {
            assert!(count <= 300, "a batch of {count} rows, over its size");
            counted += count;
            batches += 1;
        }
    }
    assert_eq!(counted, due, "the batch records add up");
    assert!(batches >= due / 300, "{batches} batches");
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// PostgreSQL anonymizes in one statement per batch. Here the subject
/// column is itself hashed, the due rows share a handful of timestamps (a
/// batch ends in the middle of a tie), every 50th subject is held, and the
/// rule runs one batch at a time and in two side-by-side windows: exactly
/// the due, unheld rows are rewritten, each batch record names the
/// subjects as they were before the update (never their hashes), every row
/// is in exactly one record, the log verifies, and a second run finds
/// nothing.
#[tokio::test]
async fn postgres_one_statement_anonymize_audits_the_subjects_as_they_were() {
    const N: u32 = 4_000;
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    for concurrency in [1, 2] {
        let db = TestDb::create(Engine::Postgres).await;
        db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, note TEXT)").await;
        // Due rows (id % 10 < 3) on seven timestamps only.
        db.exec(&format!(
            "INSERT INTO evp SELECT g, CASE WHEN g % 10 < 3 THEN TIMESTAMP '2020-01-01' + (g % 7) * INTERVAL '1 day' \
             ELSE TIMESTAMP '2026-06-01' + g * INTERVAL '1 second' END, 'u' || g, 'n' || g FROM generate_series(1, {N}) g"
        ))
        .await;
        db.exec("CREATE INDEX evp_created ON evp (created_at)")
            .await;
        db.exec("CREATE TABLE holds (user_ref TEXT PRIMARY KEY)")
            .await;
        db.exec(&format!(
            "INSERT INTO holds SELECT 'u' || g FROM generate_series(50, {N}, 50) g"
        ))
        .await;
        db.exec("ANALYZE evp").await;
        let job = format!(
            r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "pseudonymize"
target = "app.evp"
subject = "user_ref"
hold = "app.holds.user_ref"
select = {{ column = "created_at", older_than = "180d" }}
action = {{ anonymize = {{ user_ref = "hash", note = "null" }} }}
batch_size = 97
concurrency = {concurrency}
"#
        );
        let ws = Workspace::new(&db.url, &[("logs.toml", &job)]);
        let conn = db.connect().await;
        let sql = prepared(&conn, &ws).await;
        assert!(sql.fast_anonymize(conn.dialect()), "one statement a batch");
        conn.close().await;
        let out = ws.lethe(&["run", "--as-of", AS_OF]);
        assert_eq!(out.code, 0, "{}", out.all());
        if concurrency > 1 {
            assert!(
                out.stderr.contains("deleting in side-by-side windows"),
                "{}",
                out.all()
            );
        }
        let acted: Vec<u32> = (1..=N).filter(|i| i % 10 < 3 && i % 50 != 0).collect();
        let rows = db
            .rows("SELECT CAST(id AS TEXT), user_ref, note FROM evp ORDER BY id")
            .await;
        for r in &rows {
            let id: u32 = r[0].as_deref().unwrap().parse().unwrap();
            let was = format!("u{id}");
            if acted.contains(&id) {
                assert_eq!(r[1], Some(keys.pseudonym(&was)), "row {id} hashed");
                assert_eq!(r[2], None, "row {id}: note nulled");
            } else {
                assert_eq!(r[1].as_deref(), Some(was.as_str()), "row {id} kept");
                assert_eq!(r[2], Some(format!("n{id}")), "row {id} kept");
            }
        }
        audited_once_each(&ws, &acted, 97, &format!("×{concurrency}"));
    }
}

/// A one-statement anonymize ends when no row matches any more. Where the
/// values written do not stick (here a trigger writes the note back), the
/// rule fails with a message saying so once it has done far more rows than
/// were due, instead of walking on forever.
#[tokio::test]
async fn postgres_anonymize_that_does_not_stick_fails_the_rule() {
    let db = TestDb::create(Engine::Postgres).await;
    db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, note TEXT)").await;
    // 300 due rows on one timestamp among 20,000 young ones: the planner
    // walks the index, where the rows a trigger keeps come first again.
    db.exec(
        "INSERT INTO evp SELECT g, CASE WHEN g <= 300 THEN TIMESTAMP '2020-01-01' \
         ELSE TIMESTAMP '2026-06-01' + g * INTERVAL '1 second' END, 'u' || g, 'n' || g \
         FROM generate_series(1, 20300) g",
    )
    .await;
    db.exec("CREATE INDEX evp_created ON evp (created_at)")
        .await;
    db.exec("ANALYZE evp").await;
    db.exec(
        "CREATE FUNCTION evp_keep_note() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN NEW.note := OLD.note; RETURN NEW; END $$",
    )
    .await;
    db.exec(
        "CREATE TRIGGER evp_keep_note BEFORE UPDATE ON evp FOR EACH ROW EXECUTE FUNCTION evp_keep_note()",
    )
    .await;
    let ws = Workspace::new(&db.url, &[("logs.toml", &anonymize_job(50, ""))]);
    let out = ws
        .lethe_within(120, &["run", "--as-of", AS_OF])
        .expect("the run ends (it walked on for two minutes)");
    assert_eq!(out.code, 3, "the rule failed: {}", out.all());
    assert!(
        out.all().contains("do not stop matching the rule"),
        "{}",
        out.all()
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// The audit of a walk that acted on the rows `acted` of `evp` (subject
/// `u<id>`): batches of at most `max` rows, one subject per row, every
/// row's subject in exactly one batch record; the log verifies; a second
/// run finds nothing left.
fn audited_once_each(ws: &Workspace, acted: &[u32], max: u64, what: &str) {
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let mut seen: Vec<String> = Vec::new();
    let mut counted = 0;
    for r in ws.last_records() {
        if let Event::Batch {
            count, subjects, ..
        } = r.event
        {
            assert!(count <= max, "{what}: a batch of {count}");
            assert_eq!(
                count as usize,
                subjects.len(),
                "{what}: one subject per row"
            );
            counted += count;
            seen.extend(subjects);
        }
    }
    let mut want: Vec<String> = acted
        .iter()
        .map(|i| keys.subject(&format!("u{i}")))
        .collect();
    want.sort();
    seen.sort();
    assert_eq!(counted as usize, acted.len(), "{what}");
    assert_eq!(
        seen, want,
        "{what}: every row's subject as it was, in exactly one batch record"
    );
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    second_run_finds_nothing(ws, what);
}

/// Run the job again: it succeeds and records no batch.
fn second_run_finds_nothing(ws: &Workspace, what: &str) {
    let again = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        !ws.last_records()
            .iter()
            .any(|r| matches!(r.event, Event::Batch { .. })),
        "{what}: nothing left for a second run"
    );
}
