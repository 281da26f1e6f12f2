//! `partitions = "drop"` against real PostgreSQL and MariaDB: a range
//! partition wholly past the cutoff is dropped (its keys digest and subjects
//! recorded first, as one batch record naming the partition); the partition
//! that straddles the cutoff is batched row by row; a partition holding a
//! held subject is batched too, so the hold keeps its rows.
//!
//! As of 2026-06-15T12:00Z with `older_than = "180d"` the cutoff is
//! 2025-12-17T12:00Z. Partitions: `h1` [2025-01-01, 2025-07-01) is wholly
//! due, `h2` [2025-07-01, 2026-01-01) straddles, `y2026` is young.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace};
use lethe::audit::{Event, Record};
use std::collections::BTreeSet;

const JOB: &str = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old"
target = "app.evt"
key = "id"
subject = "user_id"
select = { column = "created_at", older_than = "180d" }
hold = "app.legal_holds.user_id"
action = "delete"
partitions = "drop"
batch_size = 7
"#;

/// 30 rows in h1 (users u1..u30), 10 due and 10 young rows in h2, 10 in 2026.
async fn seed(db: &TestDb) {
    let mut values = Vec::new();
    for i in 1..=30 {
        values.push(format!(
            "({i}, 'u{i}', '2025-{:02}-10 00:00:00', 'h1')",
            1 + (i % 6)
        ));
    }
    for i in 31..=40 {
        values.push(format!("({i}, 'u{i}', '2025-08-10 00:00:00', 'h2 due')"));
    }
    for i in 41..=50 {
        values.push(format!("({i}, 'u{i}', '2025-12-20 00:00:00', 'h2 young')"));
    }
    for i in 51..=60 {
        values.push(format!("({i}, 'u{i}', '2026-03-10 00:00:00', '2026')"));
    }
    db.exec(&format!(
        "INSERT INTO evt (id, user_id, created_at, note) VALUES {}",
        values.join(", ")
    ))
    .await;
}

async fn postgres_table() -> TestDb {
    let db = TestDb::create(Engine::Postgres).await;
    db.exec(
        "CREATE TABLE evt (id BIGINT, user_id TEXT NOT NULL, created_at TIMESTAMP NOT NULL, \
         note TEXT, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)",
    )
    .await;
    for (name, from, to) in [
        ("evt_h1", "2025-01-01", "2025-07-01"),
        ("evt_h2", "2025-07-01", "2026-01-01"),
        ("evt_y2026", "2026-01-01", "2027-01-01"),
    ] {
        db.exec(&format!(
            "CREATE TABLE {name} PARTITION OF evt FOR VALUES FROM ('{from}') TO ('{to}')"
        ))
        .await;
    }
    db.exec("CREATE INDEX ON evt (created_at)").await;
    db.exec("CREATE TABLE legal_holds (user_id TEXT PRIMARY KEY)")
        .await;
    seed(&db).await;
    db
}

async fn mariadb_table() -> TestDb {
    let db = TestDb::create(Engine::MariaDb).await;
    db.exec(
        "CREATE TABLE evt (id INT NOT NULL, user_id VARCHAR(16) NOT NULL, \
         created_at DATETIME NOT NULL, note VARCHAR(32), PRIMARY KEY (id, created_at), \
         KEY evt_created (created_at)) ENGINE=InnoDB \
         PARTITION BY RANGE COLUMNS (created_at) (\
         PARTITION h1 VALUES LESS THAN ('2025-07-01'), \
         PARTITION h2 VALUES LESS THAN ('2026-01-01'), \
         PARTITION y2026 VALUES LESS THAN (MAXVALUE))",
    )
    .await;
    db.exec("CREATE TABLE legal_holds (user_id VARCHAR(16) PRIMARY KEY)")
        .await;
    seed(&db).await;
    db
}

/// The partitions the table has now.
async fn partitions(db: &TestDb) -> Vec<String> {
    let sql = match db.engine {
        Engine::Postgres => {
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'evt'::regclass ORDER BY 1"
        }
        _ => {
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'evt' ORDER BY PARTITION_ORDINAL_POSITION"
        }
    };
    db.rows(sql)
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

/// (partition name, count, subjects) of every batch record, in order.
fn batches(records: &[Record]) -> Vec<(Option<String>, u64, Vec<String>)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch {
                partition,
                count,
                subjects,
                ..
            } => Some((
                partition.as_ref().map(|p| p.name.clone()),
                *count,
                subjects.clone(),
            )),
            _ => None,
        })
        .collect()
}

async fn wholly_due_partition_is_dropped_and_the_straddling_one_batched(
    db: TestDb,
    h1: &str,
    names: [&str; 3],
) {
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);

    // The plan names the partition that would go whole, and no other.
    let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let rule_line = plan
        .stdout
        .lines()
        .find(|l| l.contains("\"partitions\""))
        .unwrap_or_else(|| panic!("the plan lists partitions: {}", plan.all()));
    assert!(
        rule_line.contains(&format!("\"partition\":\"{h1}\"")),
        "{rule_line}"
    );
    assert!(
        rule_line.contains("\"status\":\"would_drop\""),
        "{rule_line}"
    );
    assert!(
        !rule_line.contains(names[1]),
        "h2 straddles the cutoff: {rule_line}"
    );
    assert_eq!(partitions(&db).await, names, "a plan changes nothing");

    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        partitions(&db).await,
        names[1..],
        "only the wholly expired partition is gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evt WHERE created_at < '2025-12-17 12:00:00'")
            .await,
        0,
        "every expired row is gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evt").await,
        20,
        "the 10 young rows of h2 and the 10 of 2026 stay"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM evt WHERE note = 'h2 young'")
            .await,
        10
    );

    let records = ws.last_records();
    let b = batches(&records);
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let h1_subjects: BTreeSet<String> = (1..=30).map(|i| keys.subject(&format!("u{i}"))).collect();
    let dropped: Vec<_> = b.iter().filter(|(p, _, _)| p.is_some()).collect();
    assert_eq!(
        dropped.len(),
        1,
        "one record for the dropped partition: {b:?}"
    );
    assert_eq!(dropped[0].0.as_deref(), Some(h1));
    assert_eq!(dropped[0].1, 30, "the record counts the partition's rows");
    assert_eq!(
        dropped[0].2.iter().cloned().collect::<BTreeSet<_>>(),
        h1_subjects,
        "and names every subject in it"
    );
    // The digest is of exactly the partition's keys, in key order (the
    // server computes it): the value an auditor recomputes from a list of
    // keys.
    let digest = records
        .iter()
        .find_map(|r| match &r.event {
            Event::Batch {
                partition: Some(_),
                keys_digest,
                ..
            } => Some(keys_digest.clone()),
            _ => None,
        })
        .expect("the partition's record");
    let h1_keys: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    assert_eq!(
        digest,
        keys.digest(&h1_keys),
        "the record's digest is of the partition's keys 1..=30 in key order"
    );
    let batched: u64 = b.iter().filter(|(p, _, _)| p.is_none()).map(|x| x.1).sum();
    assert_eq!(
        batched, 10,
        "the straddling partition's due rows are batched"
    );
    // The batch numbers continue after the partition's.
    let numbers: Vec<u64> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { batch, .. } => Some(*batch),
            _ => None,
        })
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    let search = ws.lethe(&["audit", "search", "--subject", "u5", "--output", "json"]);
    assert_eq!(search.code, 0, "{}", search.all());
    assert!(
        search.stdout.contains("delete-old"),
        "a subject of the dropped partition is found by search: {}",
        search.all()
    );
    assert!(!out.all().contains("u5'") && !ws.audit_text().contains("\"u5\""));

    // A second run finds nothing to do.
    let again = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(batches(&ws.last_records()).is_empty());
}

#[tokio::test]
async fn postgres_drops_a_wholly_expired_partition_and_batches_the_straddling_one() {
    let db = postgres_table().await;
    wholly_due_partition_is_dropped_and_the_straddling_one_batched(
        db,
        "public.evt_h1",
        ["evt_h1", "evt_h2", "evt_y2026"],
    )
    .await;
}

#[tokio::test]
async fn mariadb_drops_a_wholly_expired_partition_and_batches_the_straddling_one() {
    let db = mariadb_table().await;
    wholly_due_partition_is_dropped_and_the_straddling_one_batched(db, "h1", ["h1", "h2", "y2026"])
        .await;
}

/// A partition that holds a held subject is not dropped: its rows are
/// batched, so the held ones stay and the others go.
async fn held_subject_keeps_its_partition(db: TestDb, names: [&str; 3]) {
    db.exec("INSERT INTO legal_holds (user_id) VALUES ('u7')")
        .await;
    let ws = Workspace::new(&db.url, &[("logs.toml", JOB)]);
    let plan = ws.lethe(&["plan", "--as-of", AS_OF]);
    assert!(
        plan.stdout.contains("batched: 1 rows of held subjects"),
        "the plan says why the partition is batched: {}",
        plan.all()
    );
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(partitions(&db).await, names, "no partition was dropped");
    assert_eq!(
        db.rows("SELECT user_id FROM evt WHERE created_at < '2025-12-17 12:00:00'")
            .await,
        vec![vec![Some("u7".to_string())]],
        "only the held subject's row is left of the expired ones"
    );
    let b = batches(&ws.last_records());
    assert!(b.iter().all(|(p, _, _)| p.is_none()), "{b:?}");
    assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 39);
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

#[tokio::test]
async fn postgres_partition_with_a_held_subject_is_batched() {
    let db = postgres_table().await;
    held_subject_keeps_its_partition(db, ["evt_h1", "evt_h2", "evt_y2026"]).await;
}

#[tokio::test]
async fn mariadb_partition_with_a_held_subject_is_batched() {
    let db = mariadb_table().await;
    held_subject_keeps_its_partition(db, ["h1", "h2", "y2026"]).await;
}

/// `partitions = "drop"` where it cannot mean what it says is a config
/// error with file, line and column.
#[test]
fn drop_needs_a_plain_age_based_delete() {
    let job = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "anon"
target = "app.evt"
select = { column = "created_at", older_than = "180d" }
action = { anonymize = { note = "null" } }
partitions = "drop"

[[rules]]
name = "typo"
target = "app.evt"
select = { column = "created_at", older_than = "180d" }
action = "delete"
partitions = "whole"
"#;
    let ws = Workspace::new("sqlite://unused.db?mode=rwc", &[("logs.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    let all = out.all();
    assert!(
        all.contains("logs.toml:9:14") && all.contains("needs a plain age-based delete"),
        "{all}"
    );
    assert!(
        all.contains("logs.toml:16:14") && all.contains("\"whole\""),
        "{all}"
    );
}

/// MariaDB partitioned by `RANGE (TO_DAYS(created_at))`, the common form
/// before `RANGE COLUMNS`: the bound is a day number, compared with
/// `TO_DAYS(cutoff)`.
#[tokio::test]
async fn mariadb_to_days_partitions_are_compared_by_day_number() {
    let db = TestDb::create(Engine::MariaDb).await;
    db.exec(
        "CREATE TABLE evt (id INT NOT NULL, user_id VARCHAR(16) NOT NULL, \
         created_at DATETIME NOT NULL, note VARCHAR(32), PRIMARY KEY (id, created_at), \
         KEY evt_created (created_at)) ENGINE=InnoDB \
         PARTITION BY RANGE (TO_DAYS(created_at)) (\
         PARTITION h1 VALUES LESS THAN (TO_DAYS('2025-07-01')), \
         PARTITION h2 VALUES LESS THAN (TO_DAYS('2026-01-01')), \
         PARTITION y2026 VALUES LESS THAN MAXVALUE)",
    )
    .await;
    db.exec("CREATE TABLE legal_holds (user_id VARCHAR(16) PRIMARY KEY)")
        .await;
    seed(&db).await;
    wholly_due_partition_is_dropped_and_the_straddling_one_batched(db, "h1", ["h1", "h2", "y2026"])
        .await;
}
