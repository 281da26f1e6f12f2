//! Every fast path on the table shapes where it could go wrong.
//!
//! PostgreSQL's `ctid` is unique only within one physical table: on a
//! partitioned or inherited table, the same ctid exists in every member, so a
//! batch keyed on ctid alone would delete young rows in a sibling table.
//! SQLite `WITHOUT ROWID` tables have no rowid. Text keys must bind as text.

mod common;

use common::{AS_OF, Engine, TestDb, Workspace};

const JOB: &str = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old"
target = "app.evp"
select = { column = "created_at", older_than = "180d" }
action = "delete"
batch_size = 7
"#;

/// Fill `table` with `n` rows per year 2025 and 2026 (as-of is 2026-06-15,
/// so the 180-day cutoff is 2025-12-17: 2025-01..2025-11 rows are expired).
async fn fill(db: &TestDb, table: &str, n: i64) {
    let mut sql = format!("INSERT INTO {table} (id, created_at, note) VALUES ");
    let mut first = true;
    for year in [2025, 2026] {
        for i in 0..n {
            let id = if year == 2025 { i + 1 } else { 1000 + i + 1 };
            let month = 1 + (i % 5);
            if !first {
                sql.push_str(", ");
            }
            first = false;
            sql.push_str(&format!(
                "({id}, '{year}-{month:02}-10 00:00:00+00', 'n{id}')"
            ));
        }
    }
    db.exec(&sql).await;
}

#[tokio::test]
async fn postgres_partitioned_table_deletes_only_expired_rows() {
    let db = TestDb::create(Engine::Postgres).await;
    db.exec("CREATE TABLE evp (id BIGINT, created_at TIMESTAMPTZ NOT NULL, note TEXT, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)").await;
    db.exec(
        "CREATE TABLE evp_2025 PARTITION OF evp FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    )
    .await;
    db.exec(
        "CREATE TABLE evp_2026 PARTITION OF evp FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    .await;
    db.exec("CREATE INDEX ON evp (created_at)").await;
    fill(&db, "evp", 40).await;
    // Both partitions hold rows at the same ctids.
    let same = db
        .count("SELECT COUNT(*) FROM evp_2025 a JOIN evp_2026 b ON a.ctid = b.ctid")
        .await;
    assert!(
        same >= 40,
        "the shape this test needs: equal ctids in sibling partitions"
    );
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp_2025").await,
        0,
        "every expired row is gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp_2026").await,
        40,
        "no young row in the sibling partition was touched"
    );
    let deleted: u64 = ws
        .last_records()
        .iter()
        .filter_map(|r| match &r.event {
            lethe::audit::Event::Batch { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(deleted, 40);
}

#[tokio::test]
async fn postgres_inherited_table_deletes_only_expired_rows() {
    let db = TestDb::create(Engine::Postgres).await;
    db.exec("CREATE TABLE evp (id BIGINT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, note TEXT)")
        .await;
    db.exec("CREATE TABLE evp_child () INHERITS (evp)").await;
    db.exec("CREATE INDEX ON evp (created_at)").await;
    // Parent: young rows; child: the same ctids, old rows and young rows.
    db.exec("INSERT INTO evp (id, created_at, note) SELECT g, '2026-05-01', 'p' FROM generate_series(1, 30) g").await;
    db.exec("INSERT INTO evp_child (id, created_at, note) SELECT 100 + g, CASE WHEN g % 2 = 0 THEN TIMESTAMPTZ '2025-03-01' ELSE TIMESTAMPTZ '2026-05-01' END, 'c' FROM generate_series(1, 30) g").await;
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM ONLY evp").await,
        30,
        "the parent's young rows stay"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM evp_child").await, 15);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp WHERE created_at < '2025-12-17'")
            .await,
        0
    );
}

#[tokio::test]
async fn sqlite_without_rowid_table() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.exec("CREATE TABLE evp (id INTEGER NOT NULL PRIMARY KEY, created_at TEXT NOT NULL, note TEXT) WITHOUT ROWID").await;
    db.exec("CREATE INDEX evp_created ON evp (created_at)")
        .await;
    let mut sql = String::from("INSERT INTO evp (id, created_at, note) VALUES ");
    for i in 1..=60 {
        let when = if i % 3 == 0 {
            "2025-02-01 00:00:00"
        } else {
            "2026-06-01 00:00:00"
        };
        sql.push_str(&format!(
            "{}({i}, '{when}', 'x')",
            if i > 1 { ", " } else { "" }
        ));
    }
    db.exec(&sql).await;
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(db.count("SELECT COUNT(*) FROM evp").await, 40);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evp WHERE created_at < '2025-12-17'")
            .await,
        0
    );
}

/// Text keys, with children found by a text foreign key, anonymized.
async fn text_keys_with_children(engine: Engine) {
    let db = TestDb::create(engine).await;
    let (text, ts) = match engine {
        Engine::Postgres => ("TEXT", "TIMESTAMPTZ"),
        Engine::MariaDb => ("VARCHAR(64)", "DATETIME"),
        Engine::Sqlite => ("TEXT", "TEXT"),
    };
    db.exec(&format!(
        "CREATE TABLE accounts (code {text} PRIMARY KEY, closed_at {ts})"
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, account_code {text}, contact {text}, FOREIGN KEY (account_code) REFERENCES accounts (code))"
    ))
    .await;
    db.exec("INSERT INTO accounts (code, closed_at) VALUES ('a-1', '2025-01-01 00:00:00'), ('a-2', '2025-01-02 00:00:00'), ('b-1', NULL)").await;
    db.exec("INSERT INTO tickets (id, account_code, contact) VALUES (1, 'a-1', 'alice@example.test'), (2, 'a-2', 'bob@example.test'), (3, 'b-1', 'carol@example.test')").await;
    let job = r#"
name = "accounts"
policy = "IV(2)2"
[[rules]]
name = "close"
target = "app.accounts"
key = "code"
subject = "code"
select = { column = "closed_at", older_than = "30d" }
action = "delete"
batch_size = 1
  [[rules.children]]
  target = "app.tickets"
  foreign_key = "account_code"
  action = { anonymize = { account_code = "null", contact = "redact" } }
"#;
    let ws = Workspace::new(&db.url, &[("a.toml", job)]);
    let check = ws.lethe(&["check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(db.count("SELECT COUNT(*) FROM accounts").await, 1);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM tickets WHERE contact = '[REDACTED]' AND account_code IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM tickets WHERE contact = 'carol@example.test'")
            .await,
        1
    );
    assert!(
        !ws.audit_text().contains("a-1"),
        "keys are digested, subjects hashed"
    );
}

on_every_engine!(text_keys_with_children);
