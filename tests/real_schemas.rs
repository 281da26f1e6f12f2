//! The shapes real schemas have, in fixtures of our own: partitioned
//! tables, re-pointing to a ghost row, hold tables, multi-column keys, keys to
//! a unique non-key column, self-references, other schemas, deferrable keys,
//! and keys nobody enforces.
//!
//! Every scenario asserts the exact finding of `check` (exit code,
//! line:column, constraint name), and that `plan` and `run` agree with it:
//! where `check` passes, `run` succeeds with the expected end state; where
//! `check` exits 78, `plan` and `run` fail the rule with the same message and
//! touch nothing.

mod common;

use common::{AS_OF, Engine, Output, TestDb, Workspace};
use serde_json::Value;

/// Per-engine column types: integer key, timestamp.
fn ty(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Postgres => ("BIGINT", "TIMESTAMPTZ"),
        Engine::MariaDb => ("BIGINT", "DATETIME"),
        Engine::Sqlite => ("INTEGER", "TEXT"),
    }
}

/// The constraint's name as Lethe reports it: SQLite keys have no names, so
/// Lethe calls them `<table>_fk<id>` (every fixture table has one key).
fn cn(engine: Engine, table: &str, name: &str) -> String {
    if engine == Engine::Sqlite {
        format!("{table}_fk0")
    } else {
        name.to_string()
    }
}

fn text(engine: Engine, expr: &str) -> String {
    match engine {
        Engine::MariaDb => format!("CAST({expr} AS CHAR)"),
        _ => format!("CAST({expr} AS TEXT)"),
    }
}

/// `customer` with a ghost (1), two closed long ago (2, 3) and one active (4).
async fn customers(db: &TestDb) {
    let (id, ts) = ty(db.engine);
    db.exec(&format!(
        "CREATE TABLE customer (id {id} PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE, closed_at {ts} NULL)"
    ))
    .await;
    db.exec(
        "INSERT INTO customer (id, email, closed_at) VALUES \
         (1, 'ghost@example.invalid', NULL), (2, 'c2@example.invalid', '2025-01-01 00:00:00'), \
         (3, 'c3@example.invalid', '2025-01-02 00:00:00'), (4, 'c4@example.invalid', NULL)",
    )
    .await;
}

/// A rule that erases closed customers, with `extra` appended (children, hold).
/// The `[[rules]]` header is on line 3.
fn job(extra: &str) -> String {
    format!(
        r#"name = "cancelled"
policy = "IV(2)2"
[[rules]]
name = "erase-closed"
target = "app.customer"
subject = "id"
select = {{ column = "closed_at", older_than = "30d" }}
action = "delete"
{extra}"#
    )
}

struct Checked {
    out: Output,
    /// (constraint, status, level) of every edge of every graph.
    edges: Vec<(String, String, String)>,
    check: Value,
}

/// The customers' e-mail addresses are the personal values of these
/// fixtures: no output may carry one.
fn no_personal_value(out: &Output) {
    assert!(
        !out.all().contains("example.invalid"),
        "a seeded e-mail address reached the output:\n{}",
        out.all()
    );
}

fn check(ws: &Workspace) -> Checked {
    let out = ws.lethe(&["check", "--graph", "--output", "json"]);
    no_personal_value(&out);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    fn walk(n: &Value, out: &mut Vec<(String, String, String)>) {
        for e in n["edges"].as_array().into_iter().flatten() {
            out.push((
                e["constraint"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
                e["level"].as_str().unwrap_or_default().to_string(),
            ));
        }
        for c in n["children"].as_array().into_iter().flatten() {
            walk(c, out);
        }
    }
    let mut edges = Vec::new();
    for g in lines.iter().filter(|v| v["type"] == "graph") {
        walk(&g["graph"]["root"], &mut edges);
    }
    let check = lines
        .iter()
        .find(|v| v["type"] == "check")
        .cloned()
        .unwrap_or_else(|| panic!("no check line: {}", out.all()));
    Checked { out, edges, check }
}

fn problems(c: &Checked) -> Vec<String> {
    c.check["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn warnings(c: &Checked) -> Vec<String> {
    c.check["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn has_edge(c: &Checked, constraint: &str, status: &str) {
    assert!(
        c.edges
            .iter()
            .any(|(n, s, _)| n.eq_ignore_ascii_case(constraint) && s == status),
        "expected {constraint} = {status} in {:?}\n{}",
        c.edges,
        c.out.all()
    );
}

/// `check` exits 78 with exactly one error that contains every `expected`
/// piece; `plan` and `run` then fail the rule with that same message and
/// change nothing in `table` (its row count stays `rows`).
async fn refused(ws: &Workspace, db: &TestDb, expected: &[&str], table: &str) {
    let c = check(ws);
    assert_eq!(c.out.code, 78, "{}", c.out.all());
    let ps = problems(&c);
    assert_eq!(ps.len(), 1, "one finding: {ps:#?}");
    for e in expected {
        assert!(ps[0].contains(e), "expected `{e}` in `{}`", ps[0]);
    }
    // The message without `file:line:col: job … rule …: `, as run reports it.
    let finding = ps[0].split_once("rule `erase-closed`: ").unwrap().1;
    let before = db.count(&format!("SELECT COUNT(*) FROM {table}")).await;
    let customers = db.count("SELECT COUNT(*) FROM customer").await;
    for cmd in [
        vec!["plan", "--as-of", AS_OF],
        vec!["run", "--as-of", AS_OF],
    ] {
        let out = ws.lethe(&cmd);
        no_personal_value(&out);
        assert_eq!(out.code, 3, "{cmd:?} fails the rule: {}", out.all());
        assert!(
            out.all().contains(finding),
            "{cmd:?} says what check said (`{finding}`):\n{}",
            out.all()
        );
    }
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM {table}")).await,
        before,
        "nothing touched in {table}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer").await,
        customers,
        "no customer deleted"
    );
}

/// `check` exits 0; `run` exits 0 and a second run changes nothing.
fn accepted(ws: &Workspace) -> Checked {
    let c = check(ws);
    assert_eq!(c.out.code, 0, "{}", c.out.all());
    assert!(problems(&c).is_empty());
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(run.code, 0, "{}", run.all());
    no_personal_value(&run);
    assert!(
        !ws.audit_text().contains("example.invalid"),
        "no e-mail address in the audit log"
    );
    let again = ws.lethe(&["run", "--as-of", AS_OF, "--output", "json"]);
    assert_eq!(again.code, 0, "{}", again.all());
    c
}

async fn payments(db: &TestDb, on_delete: &str) {
    let (id, _) = ty(db.engine);
    db.exec(&format!(
        "CREATE TABLE payment (id {id} PRIMARY KEY, customer_id {id} NOT NULL, amount INTEGER NOT NULL, \
         CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES customer (id) ON DELETE {on_delete})"
    ))
    .await;
    db.exec("CREATE INDEX payment_customer_idx ON payment (customer_id)")
        .await;
    db.exec("INSERT INTO payment (id, customer_id, amount) VALUES (10, 2, 5), (11, 2, 7), (12, 3, 9), (13, 4, 1)")
        .await;
}

async fn legal_hold(db: &TestDb) {
    let (id, _) = ty(db.engine);
    db.exec(&format!(
        "CREATE TABLE legal_hold (customer_id {id} NOT NULL, \
         CONSTRAINT legal_hold_customer_fk FOREIGN KEY (customer_id) REFERENCES customer (id))"
    ))
    .await;
    db.exec("INSERT INTO legal_hold (customer_id) VALUES (3)")
        .await;
}

const REPOINT: &str = r#"hold = "app.legal_hold.customer_id"

  [[rules.children]]
  target = "app.payment"
  foreign_key = "customer_id"
  action = { anonymize = { customer_id = "fixed:GHOST" } }
"#;

/// Re-pointing to a ghost that exists and is not selected, with the hold
/// table referencing the subject: both safe, and `run` does it.
async fn repointing_to_a_ghost_and_a_hold_table(engine: Engine) {
    let db = TestDb::create(engine).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    legal_hold(&db).await;
    let ws = Workspace::new(
        &db.url,
        &[("cancelled.toml", &job(&REPOINT.replace("GHOST", "1")))],
    );
    let c = accepted(&ws);
    has_edge(
        &c,
        &cn(engine, "payment", "payment_customer_fk"),
        "repointed",
    );
    has_edge(
        &c,
        &cn(engine, "legal_hold", "legal_hold_customer_fk"),
        "hold",
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer").await,
        3,
        "customer 2 erased; 3 held; the ghost and 4 stay"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer WHERE id = 2").await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment WHERE customer_id = 1")
            .await,
        2,
        "customer 2's payments re-pointed to the ghost"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment WHERE customer_id = 3")
            .await,
        1,
        "the held customer's payment untouched"
    );
}

/// `fixed:99`: no such customer. The error names the value, the constraint
/// and the child rule's line (11, indented by two).
async fn repointing_to_a_missing_ghost(engine: Engine) {
    let db = TestDb::create(engine).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    legal_hold(&db).await;
    let ws = Workspace::new(
        &db.url,
        &[("cancelled.toml", &job(&REPOINT.replace("GHOST", "99")))],
    );
    refused(
        &ws,
        &db,
        &[
            "cancelled.toml:11:3",
            &format!(
                "constraint `{}`",
                cn(engine, "payment", "payment_customer_fk")
            ),
            "re-points `customer_id` to `99`",
            "has no row with id = `99`",
        ],
        "payment",
    )
    .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment WHERE customer_id = 2")
            .await,
        2
    );
}

/// `fixed:2`: customer 2 is itself closed long ago, so the rule deletes it.
async fn repointing_to_a_selected_ghost(engine: Engine) {
    let db = TestDb::create(engine).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    legal_hold(&db).await;
    let ws = Workspace::new(
        &db.url,
        &[("cancelled.toml", &job(&REPOINT.replace("GHOST", "2")))],
    );
    refused(
        &ws,
        &db,
        &[
            "cancelled.toml:11:3",
            &format!(
                "constraint `{}`",
                cn(engine, "payment", "payment_customer_fk")
            ),
            "re-points `customer_id` to `2`",
            "the rule itself selects",
        ],
        "payment",
    )
    .await;
}

/// No child rule, RESTRICT: the delete would fail; CASCADE: unaudited.
async fn uncovered_keys_fail_or_cascade(engine: Engine) {
    for (action, words) in [
        ("RESTRICT", "the delete would fail"),
        ("CASCADE", "the audit would never see them"),
    ] {
        let db = TestDb::create(engine).await;
        customers(&db).await;
        payments(&db, action).await;
        let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
        refused(
            &ws,
            &db,
            &[
                "cancelled.toml:3:1",
                &format!(
                    "constraint `{}`: payment.customer_id references app.customer.id",
                    cn(engine, "payment", "payment_customer_fk")
                ),
                &format!("ON DELETE {action}"),
                "no child rule covers it",
                words,
            ],
            "payment",
        )
        .await;
    }
}

/// A two-column key (tenant_id, customer_id) → customer (tenant_id, id): the
/// child rule follows the column that maps to the key.
async fn multi_column_key(engine: Engine) {
    let db = TestDb::create(engine).await;
    let (id, _) = ty(engine);
    customers(&db).await;
    db.exec("ALTER TABLE customer ADD COLUMN tenant_id INTEGER NOT NULL DEFAULT 7")
        .await;
    if engine == Engine::Sqlite {
        // SQLite cannot add a constraint to a table: a unique index serves.
        db.exec("CREATE UNIQUE INDEX customer_tenant_id ON customer (tenant_id, id)")
            .await;
    } else {
        db.exec("ALTER TABLE customer ADD CONSTRAINT customer_tenant_id UNIQUE (tenant_id, id)")
            .await;
    }
    db.exec(&format!(
        "CREATE TABLE shipment (id {id} PRIMARY KEY, tenant_id INTEGER NOT NULL, customer_id {id} NOT NULL, \
         CONSTRAINT shipment_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customer (tenant_id, id))"
    ))
    .await;
    db.exec("INSERT INTO shipment (id, tenant_id, customer_id) VALUES (1, 7, 2), (2, 7, 4)")
        .await;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    refused(
        &ws,
        &db,
        &[
            &format!(
                "constraint `{}`: shipment.(tenant_id, customer_id) references app.customer.(tenant_id, id)",
                cn(engine, "shipment", "shipment_customer_fk")
            ),
            "no child rule covers it",
        ],
        "shipment",
    )
    .await;
    let child = r#"
  [[rules.children]]
  target = "app.shipment"
  foreign_key = "customer_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(child))]);
    let c = accepted(&ws);
    has_edge(
        &c,
        &cn(engine, "shipment", "shipment_customer_fk"),
        "covered",
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM shipment").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM customer").await, 2);
}

/// A key to `customer.email` (unique, not the key): no child rule can follow it.
async fn key_to_a_unique_non_key_column(engine: Engine) {
    let db = TestDb::create(engine).await;
    let (id, _) = ty(engine);
    customers(&db).await;
    db.exec(&format!(
        "CREATE TABLE newsletter (id {id} PRIMARY KEY, email VARCHAR(100) NOT NULL, \
         CONSTRAINT newsletter_email_fk FOREIGN KEY (email) REFERENCES customer (email))"
    ))
    .await;
    db.exec("INSERT INTO newsletter (id, email) VALUES (1, 'c2@example.invalid')")
        .await;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    refused(
        &ws,
        &db,
        &[
            "cancelled.toml:3:1",
            &format!(
                "constraint `{}`: newsletter.email references app.customer.email",
                cn(engine, "newsletter", "newsletter_email_fk")
            ),
            "not the key `id`",
        ],
        "newsletter",
    )
    .await;
    // Anonymizing the referenced column instead: the update would fail.
    let anonymize = job("").replace(
        "action = \"delete\"",
        "action = { anonymize = { email = \"hash\" } }",
    );
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &anonymize)]);
    refused(
        &ws,
        &db,
        &[
            "cancelled.toml:3:1",
            &format!(
                "constraint `{}`: newsletter.email references app.customer.email ON UPDATE {}",
                cn(engine, "newsletter", "newsletter_email_fk"),
                // MariaDB reports an unspecified action as RESTRICT.
                if engine == Engine::MariaDb { "RESTRICT" } else { "NO ACTION" }
            ),
            "the rule rewrites `email` with `hash`; the update would fail on every row that is referenced",
        ],
        "newsletter",
    )
    .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer WHERE email LIKE '%@example.invalid'")
            .await,
        4,
        "no e-mail rewritten"
    );
}

/// `employee.reports_to → employee.id`: an error while nothing releases it;
/// a child rule on the same table that nulls `reports_to` makes it safe.
async fn self_reference(engine: Engine) {
    let db = TestDb::create(engine).await;
    let (id, ts) = ty(engine);
    db.exec(&format!(
        "CREATE TABLE employee (id {id} PRIMARY KEY, reports_to {id} NULL, left_at {ts} NULL, \
         CONSTRAINT employee_reports_to_fk FOREIGN KEY (reports_to) REFERENCES employee (id))"
    ))
    .await;
    db.exec("CREATE INDEX employee_reports_to_idx ON employee (reports_to)")
        .await;
    db.exec("INSERT INTO employee (id, reports_to, left_at) VALUES (1, NULL, '2025-01-01 00:00:00'), (2, 1, NULL), (3, 2, '2025-01-01 00:00:00')")
        .await;
    let rule = |extra: &str| {
        format!(
            r#"name = "cancelled"
policy = "IV(2)2"
[[rules]]
name = "erase-closed"
target = "app.employee"
select = {{ column = "left_at", older_than = "30d" }}
action = "delete"
{extra}"#
        )
    };
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &rule(""))]);
    let c = check(&ws);
    assert_eq!(c.out.code, 78, "{}", c.out.all());
    let ps = problems(&c);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(ps[0].contains("cancelled.toml:3:1"), "{}", ps[0]);
    assert!(
        ps[0].contains(&format!(
            "constraint `{}`: employee.reports_to references app.employee.id",
            cn(engine, "employee", "employee_reports_to_fk")
        )),
        "{}",
        ps[0]
    );
    assert!(ps[0].contains("a self-reference"), "{}", ps[0]);
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert_eq!(db.count("SELECT COUNT(*) FROM employee").await, 3);

    let child = r#"
  [[rules.children]]
  target = "app.employee"
  foreign_key = "reports_to"
  action = { anonymize = { reports_to = "null" } }
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &rule(child))]);
    let c = accepted(&ws);
    has_edge(
        &c,
        &cn(engine, "employee", "employee_reports_to_fk"),
        "covered",
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT {}, {} FROM employee ORDER BY id",
            text(engine, "id"),
            text(engine, "reports_to")
        ))
        .await,
        vec![vec![Some("2".to_string()), None]],
        "1 and 3 erased; 2 no longer reports to anyone"
    );
}

on_every_engine!(
    repointing_to_a_ghost_and_a_hold_table,
    repointing_to_a_missing_ghost,
    repointing_to_a_selected_ghost,
    uncovered_keys_fail_or_cascade,
    multi_column_key,
    key_to_a_unique_non_key_column,
    self_reference,
);

/// PostgreSQL partitions: a key declared on the partitioned `payment` (cloned
/// onto each partition) and keys declared only per partition of `rental`;
/// `payment` is indexed only per partition. One finding per key, on the
/// partitioned table, and no index warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitions_with_keys_on_parent_and_per_partition() {
    let db = TestDb::create(Engine::Postgres).await;
    customers(&db).await;
    for sql in [
        "CREATE TABLE payment (id BIGINT, customer_id BIGINT NOT NULL, paid_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (id, paid_at), \
         CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES customer (id)) PARTITION BY RANGE (paid_at)",
        "CREATE TABLE payment_2025 PARTITION OF payment FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "CREATE TABLE payment_2026 PARTITION OF payment FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "CREATE INDEX ON payment_2025 (customer_id)",
        "CREATE INDEX ON payment_2026 (customer_id)",
        "CREATE TABLE rental (id BIGINT, customer_id BIGINT NOT NULL, rented_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (id, rented_at)) \
         PARTITION BY RANGE (rented_at)",
        "CREATE TABLE rental_2025 PARTITION OF rental FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "CREATE TABLE rental_2026 PARTITION OF rental FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "ALTER TABLE rental_2025 ADD CONSTRAINT rental_2025_customer_fk FOREIGN KEY (customer_id) REFERENCES customer (id)",
        "ALTER TABLE rental_2026 ADD CONSTRAINT rental_2026_customer_fk FOREIGN KEY (customer_id) REFERENCES customer (id)",
        "CREATE INDEX ON rental (customer_id)",
        "INSERT INTO payment VALUES (1, 2, '2025-03-01'), (2, 2, '2026-03-01'), (3, 4, '2025-03-01'), (4, 4, '2026-03-01')",
        "INSERT INTO rental VALUES (1, 2, '2025-03-01'), (2, 2, '2026-03-01'), (3, 4, '2026-03-01')",
    ] {
        db.exec(sql).await;
    }
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    let c = check(&ws);
    assert_eq!(c.out.code, 78, "{}", c.out.all());
    let ps = problems(&c);
    assert_eq!(
        ps.len(),
        3,
        "one per declared key, not one per clone: {ps:#?}"
    );
    for (constraint, table) in [
        ("payment_customer_fk", "payment"),
        ("rental_2025_customer_fk", "rental"),
        ("rental_2026_customer_fk", "rental"),
    ] {
        let line = format!(
            "cancelled.toml:3:1: job `cancelled` rule `erase-closed`: constraint `{constraint}`: {table}.customer_id references app.customer.id ON DELETE NO ACTION: no child rule covers it; the delete would fail on every row that has one"
        );
        assert!(
            ps.iter().any(|p| p.ends_with(&format!("/{line}"))),
            "expected `{line}` in {ps:#?}"
        );
    }
    let children = r#"
  [[rules.children]]
  target = "app.payment"
  foreign_key = "customer_id"
  action = { anonymize = { customer_id = "fixed:1" } }

  [[rules.children]]
  target = "app.rental"
  foreign_key = "customer_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(children))]);
    let c = accepted(&ws);
    has_edge(&c, "payment_customer_fk", "repointed");
    has_edge(&c, "rental_2025_customer_fk", "covered");
    has_edge(&c, "rental_2026_customer_fk", "covered");
    assert!(
        !warnings(&c).iter().any(|w| w.contains("child app.")),
        "every partition has an index: {:?}",
        warnings(&c)
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment WHERE customer_id = 1")
            .await,
        2
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM rental").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer WHERE id IN (2, 3)")
            .await,
        0
    );

    // Drop one partition's index: now the warning is right.
    db.exec("DROP INDEX payment_2026_customer_id_idx").await;
    let c = check(&ws);
    assert_eq!(c.out.code, 0, "{}", c.out.all());
    assert!(
        warnings(&c)
            .iter()
            .any(|w| w.contains("child app.payment.customer_id has no index")),
        "{:?}",
        warnings(&c)
    );
}

/// A key from another schema of the same database, deferrable: found,
/// named with its schema, and followed by a child rule naming that schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_other_schema_and_deferrable_key() {
    let db = TestDb::create(Engine::Postgres).await;
    customers(&db).await;
    db.exec("CREATE SCHEMA crm").await;
    db.exec(
        "CREATE TABLE crm.ticket (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, \
         CONSTRAINT ticket_customer_fk FOREIGN KEY (customer_id) REFERENCES public.customer (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    db.exec("CREATE INDEX ON crm.ticket (customer_id)").await;
    db.exec("INSERT INTO crm.ticket VALUES (1, 2), (2, 4)")
        .await;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    refused(
        &ws,
        &db,
        &[
            "cancelled.toml:3:1",
            "constraint `ticket_customer_fk`: crm.ticket.customer_id references app.customer.id ON DELETE NO ACTION DEFERRABLE",
            "(deferrable: checked at commit, the batch still fails)",
        ],
        "crm.ticket",
    )
    .await;
    let child = r#"
  [[rules.children]]
  target = "app.crm.ticket"
  foreign_key = "customer_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(child))]);
    let c = accepted(&ws);
    has_edge(&c, "ticket_customer_fk", "covered");
    assert_eq!(db.count("SELECT COUNT(*) FROM crm.ticket").await, 1);
}

/// MariaDB keeps no key on a partitioned table and ignores them on MyISAM:
/// `check` warns about columns that look like references it cannot see,
/// and stops warning once a child rule covers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_partitioned_and_myisam_tables() {
    let db = TestDb::create(Engine::MariaDb).await;
    customers(&db).await;
    for sql in [
        "CREATE TABLE visit (id BIGINT NOT NULL, customer_id BIGINT NOT NULL, PRIMARY KEY (id), KEY (customer_id)) \
         PARTITION BY HASH (id) PARTITIONS 2",
        "CREATE TABLE note (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, KEY (customer_id), \
         FOREIGN KEY (customer_id) REFERENCES customer (id)) ENGINE = MyISAM",
        "INSERT INTO visit VALUES (1, 2), (2, 4)",
        "INSERT INTO note VALUES (1, 2), (2, 4)",
    ] {
        db.exec(sql).await;
    }
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    let c = check(&ws);
    assert_eq!(c.out.code, 0, "warnings only: {}", c.out.all());
    let ws_ = warnings(&c);
    for expected in [
        "cancelled.toml:3:1: job `cancelled` rule `erase-closed`: visit.customer_id looks like a reference to app.customer but visit is partitioned and carries no foreign key",
        "cancelled.toml:3:1: job `cancelled` rule `erase-closed`: note.customer_id looks like a reference to app.customer but note is engine MyISAM and carries no foreign key",
    ] {
        assert!(
            ws_.iter().any(|w| w.contains(&format!("/{expected}"))),
            "expected `{expected}` in {ws_:#?}"
        );
    }
    let children = r#"
  [[rules.children]]
  target = "app.visit"
  foreign_key = "customer_id"
  action = "delete"

  [[rules.children]]
  target = "app.note"
  foreign_key = "customer_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(children))]);
    let c = accepted(&ws);
    assert!(
        !warnings(&c)
            .iter()
            .any(|w| w.contains("looks like a reference")),
        "{:?}",
        warnings(&c)
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM visit").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM note").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM customer").await, 2);
}

/// SQLite with `foreign_keys=off` on the source: the key is still read and
/// analysed, but nothing enforces it, so an uncovered one is a warning and
/// `run` leaves the reference dangling, as the warning says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_foreign_keys_off() {
    let db = TestDb::create(Engine::Sqlite).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    let url = format!("{}&foreign_keys=off", db.url);
    let ws = Workspace::new(&url, &[("cancelled.toml", &job(""))]);
    let c = check(&ws);
    assert_eq!(c.out.code, 0, "{}", c.out.all());
    has_edge(&c, "payment_fk0", "dangling");
    assert!(
        warnings(&c).iter().any(|w| w.contains(
            "constraint `payment_fk0`: payment.customer_id references app.customer.id ON DELETE RESTRICT: not enforced"
        )),
        "{:?}",
        warnings(&c)
    );
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM customer WHERE id IN (2, 3)")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment WHERE customer_id NOT IN (SELECT id FROM customer)")
            .await,
        3,
        "the payments of 2 and 3 dangle, as check warned"
    );
}

/// `check --graph` draws each rule's tree: the rule's table, every key into
/// it with its status, and the child rules below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_graph_draws_the_tree() {
    let db = TestDb::create(Engine::Postgres).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    legal_hold(&db).await;
    db.exec(
        "CREATE TABLE refund (id BIGINT PRIMARY KEY, payment_id BIGINT NOT NULL, \
         CONSTRAINT refund_payment_fk FOREIGN KEY (payment_id) REFERENCES payment (id) ON DELETE CASCADE)",
    )
    .await;
    let children = r#"hold = "app.legal_hold.customer_id"

  [[rules.children]]
  target = "app.payment"
  foreign_key = "customer_id"
  action = "delete"
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(children))]);
    let out = ws.lethe(&["check", "--graph"]);
    assert_eq!(out.code, 78, "{}", out.all());
    for line in [
        "app.customer (delete)\n",
        "├─ legal_hold.customer_id [legal_hold_customer_fk, ON DELETE NO ACTION] ok: the rule's hold list",
        "└─ payment.customer_id [payment_customer_fk, ON DELETE RESTRICT] ok: covered by child rule app.payment",
        "      → app.payment (delete)\n",
        "      └─ refund.payment_id [refund_payment_fk, ON DELETE CASCADE] ERROR: no child rule covers it; the database would delete those rows and the audit would never see them",
    ] {
        assert!(
            out.stdout.contains(line),
            "expected `{line}` in:\n{}",
            out.stdout
        );
    }
}

/// `check --coverage` lists personal-looking columns no rule reaches and
/// tables referencing a subject table that no rule covers: names only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_coverage_maps_what_no_rule_reaches() {
    let db = TestDb::create(Engine::Sqlite).await;
    customers(&db).await;
    payments(&db, "RESTRICT").await;
    db.exec(
        "CREATE TABLE lead (id INTEGER PRIMARY KEY, FullName TEXT, mobile_phone TEXT, last_ip TEXT, \
         wechat TEXT, description TEXT, email_verified BOOLEAN)",
    )
    .await;
    db.exec(
        "INSERT INTO lead VALUES (1, 'Zhang Sanfeng', '13800138000', '203.0.113.7', 'wx_zsf', 'x', 1)",
    )
    .await;
    let child = r#"
  [[rules.children]]
  target = "app.payment"
  foreign_key = "customer_id"
  action = { anonymize = { customer_id = "fixed:1" } }

[[rules]]
name = "pseudonymize-leads"
target = "app.lead"
where = "1 = 1"
action = { anonymize = { last_ip = "null" } }
"#;
    let ws = Workspace::new(&db.url, &[("cancelled.toml", &job(child))]);
    let extra = "\n[coverage]\nextra_patterns = [\"wechat\"]\n";
    let cfg = std::fs::read_to_string(ws.config()).unwrap() + extra;
    std::fs::write(ws.config(), cfg).unwrap();
    let out = ws.lethe(&["check", "--coverage", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let cov: Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "coverage")
        .unwrap_or_else(|| panic!("no coverage line: {}", out.all()));
    let cols: Vec<String> = cov["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}.{}",
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        cols,
        [
            "app.lead.FullName",
            "app.lead.mobile_phone",
            "app.lead.wechat"
        ],
        "customer is deleted, last_ip anonymized, description / email_verified not personal"
    );
    // payment is covered by a child rule; nothing else references customer.
    assert_eq!(cov["references"], serde_json::json!([]));
    for value in [
        "Zhang",
        "13800138000",
        "203.0.113.7",
        "wx_zsf",
        "example.invalid",
    ] {
        assert!(
            !out.all().contains(value),
            "`{value}` leaked:\n{}",
            out.all()
        );
    }

    // Without the child rule, payment references the subject table uncovered.
    let ws2 = Workspace::new(&db.url, &[("cancelled.toml", &job(""))]);
    let out = ws2.lethe(&["check", "--coverage"]);
    assert!(
        out.stdout.contains(
            "table app.payment references app.customer.id by customer_id (constraint `payment_fk0`)"
        ),
        "{}",
        out.stdout
    );

    // A malformed pattern is a config error with its position.
    let bad = std::fs::read_to_string(ws.config())
        .unwrap()
        .replace("[\"wechat\"]", "[\"WeChat\"]");
    std::fs::write(ws.config(), bad).unwrap();
    let out = ws.lethe(&["check", "--coverage"]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(out.all().contains("lethe.toml:"), "{}", out.all());
    assert!(
        out.all().contains("`WeChat` is not a pattern"),
        "{}",
        out.all()
    );
}
