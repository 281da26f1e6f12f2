//! What auditors use, driven through the real binary: `audit search` finds a
//! subject erased by the cancelled-accounts cascade on every engine (and
//! across a key rotation), `audit export` round-trips, `audit report` renders
//! in a real headless Chromium with the right numbers and fetches nothing,
//! `audit verify` finds a whole run deleted and a log cut or rewritten at its
//! end, and an audit sink that cannot be created stops a run before it
//! deletes anything. No seeded personal value reaches any of these outputs.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::event::Record;
use lethe::audit::{AuditWriter, ChildCount, Event, JobOutcome, Totals};
use lethe::keys::Keys;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const USERS: u32 = 200;

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn hits_of(out: &common::Output) -> (Vec<Value>, Value) {
    assert_eq!(out.code, 0, "{}", out.all());
    let mut lines = json_lines(&out.stdout);
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["type"], "search_summary", "{}", out.stdout);
    for h in &lines {
        assert_eq!(h["type"], "search_hit");
        assert_eq!(h["v"], 1);
    }
    (lines, summary)
}

/// Panic if any seeded phone number, ID-card number or name is in `text`.
async fn assert_no_personal_value(db: &TestDb, text: &str, what: &str) {
    assert!(
        text.len() > 500,
        "{what}: too little output to mean anything"
    );
    for id in 1..=i64::from(USERS) {
        for value in [lethe::demo::phone_of(id), lethe::demo::id_card_of(id)] {
            assert!(
                !text.contains(&value),
                "{what}: a seeded personal value ({}…) leaked",
                &value[..4]
            );
        }
    }
    let names = db.rows("SELECT name FROM users").await;
    for n in names.iter().filter_map(|r| r[0].clone()) {
        assert!(!text.contains(&n), "{what}: a seeded name leaked");
    }
}

/// The cancelled-accounts cascade erases a user; search finds it, with job,
/// rule, policy section, action, target and outcome; filters narrow it; a
/// held user is found as held; nothing personal is printed.
async fn search_finds_a_subject_erased_by_the_cascade(engine: Engine) {
    let db = TestDb::create(engine).await;
    let seeded = db.seed(USERS, now()).await;
    let ws = Workspace::shipped(&db.url);
    let run = ws.lethe(&[
        "run",
        "--job",
        "cancelled-accounts",
        "--as-of",
        AS_OF,
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let summary = json_lines(&run.stdout).pop().unwrap();
    let run_id = summary["run"].as_str().unwrap().to_string();

    let erased = seeded.cancelled_due[0].to_string();
    let (hits, sum) =
        hits_of(&ws.lethe(&["audit", "search", "--subject", &erased, "--output", "json"]));
    assert_eq!(
        hits.len(),
        1,
        "one batch record about user {erased}: {hits:?}"
    );
    let h = &hits[0];
    assert_eq!(h["job"], "cancelled-accounts");
    assert_eq!(h["rule"], "erase-cancelled-users");
    assert_eq!(h["policy"], "IV(2)2");
    assert_eq!(h["action"], "delete");
    assert_eq!(h["target"], "app.users");
    assert_eq!(h["outcome"], "erased");
    assert_eq!(h["run"], run_id.as_str());
    assert_eq!(h["verified"], true);
    let keys = Keys::from_secret(KEY.as_bytes());
    assert_eq!(h["subject"], keys.subject(&erased).as_str());
    assert_eq!(h["kid"], keys.key_id.as_str());
    let children: Vec<(String, String)> = h["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["target"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        children.contains(&("app.orders".into(), "anonymize".into())),
        "{children:?}"
    );
    assert!(
        children.contains(&("app.posts".into(), "delete".into())),
        "{children:?}"
    );
    assert_eq!(sum["hits"], 1);
    assert!(sum["records"].as_u64().unwrap() >= 3);

    // The table says the same for people.
    let table = ws.lethe(&["audit", "search", "--subject", &erased]);
    assert_eq!(table.code, 0, "{}", table.all());
    for word in [
        "cancelled-accounts",
        "erase-cancelled-users",
        "IV(2)2",
        "app.users",
        "erased",
        &run_id[..8],
    ] {
        assert!(
            table.stdout.contains(word),
            "`{word}` in:\n{}",
            table.stdout
        );
    }
    assert!(
        table
            .stdout
            .contains("1 records about this subject in 1 of 1 logs"),
        "{}",
        table.stdout
    );

    // The id can come from standard input (it then stays out of argv).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.args([
        "audit",
        "search",
        "--subject",
        "-",
        "--output",
        "json",
        "--config",
    ])
    .arg(ws.config())
    .arg("--jobs")
    .arg(ws.jobs())
    .env("LETHE_AUDIT_KEY", KEY)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{erased}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdin_hits = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stdin_hits.len(), 2, "a hit and the summary");
    assert_eq!(stdin_hits[0]["subject"], keys.subject(&erased).as_str());

    // Filters narrow; each can exclude the hit.
    let count = |extra: &[&str]| -> usize {
        let mut args = vec!["audit", "search", "--subject", &erased, "--output", "json"];
        args.extend_from_slice(extra);
        hits_of(&ws.lethe(&args)).0.len()
    };
    assert_eq!(count(&["--run", &run_id[..8]]), 1);
    assert_eq!(count(&["--run", "ffffffff"]), 0);
    assert_eq!(
        count(&[
            "--job",
            "cancelled-accounts",
            "--rule",
            "erase-cancelled-users"
        ]),
        1
    );
    assert_eq!(count(&["--job", "minors"]), 0);
    assert_eq!(count(&["--rule", "delete-expired-orders"]), 0);
    assert_eq!(count(&["--action", "delete"]), 1);
    assert_eq!(count(&["--action", "hold"]), 0);
    assert_eq!(
        count(&[
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2999-01-01T00:00:00Z"
        ]),
        1
    );
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]), 0);
    assert_eq!(count(&["--until", "2000-01-01T00:00:00Z"]), 0);
    let bad = ws.lethe(&[
        "audit",
        "search",
        "--subject",
        &erased,
        "--since",
        "yesterday",
    ]);
    assert_eq!(
        bad.code,
        64,
        "a bad instant is a usage error: {}",
        bad.all()
    );

    // A held user: found as held, never erased.
    let held = seeded.held[0].to_string();
    let (hits, _) =
        hits_of(&ws.lethe(&["audit", "search", "--subject", &held, "--output", "json"]));
    assert!(!hits.is_empty(), "the hold record lists user {held}");
    assert!(
        hits.iter()
            .all(|h| h["outcome"] == "held" && h["action"] == "hold"),
        "{hits:?}"
    );

    // A user nobody touched: nothing.
    let (hits, sum) =
        hits_of(&ws.lethe(&["audit", "search", "--subject", "1", "--output", "json"]));
    assert!(hits.is_empty(), "{hits:?}");
    assert_eq!(sum["hits"], 0);

    // Every auditor output is free of personal data.
    let html = ws.path().join("report.html");
    let mut all = String::new();
    for args in [
        vec!["audit", "search", "--subject", erased.as_str()],
        vec![
            "audit",
            "search",
            "--subject",
            held.as_str(),
            "--output",
            "json",
        ],
        vec!["audit", "export", "--format", "csv"],
        vec!["audit", "export", "--format", "json"],
        vec!["audit", "verify"],
        vec!["audit", "report", "--html", html.to_str().unwrap()],
    ] {
        let out = ws.lethe(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        all.push_str(&out.all());
    }
    all.push_str(&std::fs::read_to_string(&html).unwrap());
    assert_no_personal_value(&db, &all, &format!("{engine:?} audit outputs")).await;
}

/// A run whose audit folder cannot be created deletes nothing and fails.
async fn an_unavailable_audit_sink_stops_the_run_before_any_deletion(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.seed(USERS, now()).await;
    let ws = Workspace::shipped(&db.url);
    // A regular file where the audit folder's parent should be: even root
    // cannot create a folder under it.
    let blocker = ws.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let config = std::fs::read_to_string(ws.config()).unwrap();
    let audit_line = format!("dir = \"{}\"", ws.audit_dir().display());
    assert!(config.contains(&audit_line));
    std::fs::write(
        ws.config(),
        config.replace(
            &audit_line,
            &format!("dir = \"{}\"", blocker.join("audit").display()),
        ),
    )
    .unwrap();
    let before = db.fingerprint().await;
    for args in [
        vec!["run", "--as-of", AS_OF],
        vec!["run", "--job", "cancelled-accounts", "--as-of", AS_OF],
        vec!["plan", "--as-of", AS_OF],
    ] {
        let out = ws.lethe(&args);
        assert_ne!(out.code, 0, "{args:?} must fail: {}", out.all());
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains("audit log: cannot create"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        db.fingerprint().await,
        before,
        "{engine:?}: nothing was touched"
    );
    let state = lethe::state::State::open(&ws.state_url(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        state.runs().await.unwrap().is_empty(),
        "no run was recorded as started"
    );
    state.close().await;
}

on_every_engine!(
    search_finds_a_subject_erased_by_the_cascade,
    an_unavailable_audit_sink_stops_the_run_before_any_deletion,
);

/// After the HMAC key is rotated, search still finds subjects hashed under
/// the old key, by the records' `kid`, once the old key's variable is listed.
#[tokio::test]
async fn search_survives_a_key_rotation() {
    const OLD: &str = "the-2025-audit-key-0123456789";
    let db = TestDb::create(Engine::Sqlite).await;
    let seeded = db.seed(USERS, now()).await;
    let ws = Workspace::shipped(&db.url);
    let minor = "50"; // every 50th user is under 14
    let out = ws.lethe_env(
        &["run", "--job", "minors", "--as-of", AS_OF],
        &[("LETHE_AUDIT_KEY", OLD)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let out = ws.lethe(&["run", "--job", "cancelled-accounts", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    let erased = seeded.cancelled_due[0].to_string();

    // Only the new key configured: the old records cannot be searched, and search says so.
    let (hits, sum) =
        hits_of(&ws.lethe(&["audit", "search", "--subject", minor, "--output", "json"]));
    assert!(hits.is_empty());
    let old_kid = Keys::from_secret(OLD.as_bytes()).key_id;
    assert!(
        sum["unknown_key_ids"][&old_kid].as_u64().unwrap() >= 1,
        "{sum}"
    );
    let warn = ws.lethe(&["audit", "search", "--subject", minor]);
    assert!(
        warn.stderr.contains(&old_kid) && warn.stderr.contains("previous_key_envs"),
        "{}",
        warn.stderr
    );

    let config = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(
        ws.config(),
        config.replace(
            "hmac_key_env = \"LETHE_AUDIT_KEY\"",
            "hmac_key_env = \"LETHE_AUDIT_KEY\"\nprevious_key_envs = [\"LETHE_AUDIT_KEY_2025\"]",
        ),
    )
    .unwrap();
    let env = [("LETHE_AUDIT_KEY", KEY), ("LETHE_AUDIT_KEY_2025", OLD)];
    let (hits, sum) = hits_of(&ws.lethe_env(
        &["audit", "search", "--subject", minor, "--output", "json"],
        &env,
    ));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["job"], "minors");
    assert_eq!(hits[0]["policy"], "VIII");
    assert_eq!(hits[0]["outcome"], "erased");
    assert_eq!(hits[0]["kid"], old_kid.as_str());
    assert_eq!(sum["key_ids"].as_array().unwrap().len(), 2);
    let (hits, _) = hits_of(&ws.lethe_env(
        &["audit", "search", "--subject", &erased, "--output", "json"],
        &env,
    ));
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0]["kid"],
        Keys::from_secret(KEY.as_bytes()).key_id.as_str()
    );
    // Listed but unset: a warning, not a failure.
    let unset = ws.lethe(&["audit", "search", "--subject", minor]);
    assert_eq!(unset.code, 0, "{}", unset.all());
    assert!(
        unset.stderr.contains("LETHE_AUDIT_KEY_2025"),
        "{}",
        unset.stderr
    );
    // A previous key that is the current one is a config error.
    std::fs::write(
        ws.config(),
        config.replace(
            "hmac_key_env = \"LETHE_AUDIT_KEY\"",
            "hmac_key_env = \"LETHE_AUDIT_KEY\"\nprevious_key_envs = [\"LETHE_AUDIT_KEY\"]",
        ),
    )
    .unwrap();
    let bad = ws.lethe(&["check"]);
    assert_eq!(bad.code, 78, "{}", bad.all());
    assert!(bad.stderr.contains("is the current key"), "{}", bad.stderr);
}

// ---------------------------------------------------------------- export

/// RFC 4180: fields separated by commas, quoted when they hold a comma,
/// quote or line break, quotes doubled; records end with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last record ends with a line break"
    );
    rows
}

fn children_text(children: &[ChildCount]) -> String {
    children
        .iter()
        .map(|c| format!("{}:{}:{}:{}", c.target, c.via, c.action, c.count))
        .collect::<Vec<_>>()
        .join(";")
}

/// What the export must say of a record, written independently of the export code.
fn expected_cells(r: &Record) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("run", r.run.clone()),
        ("seq", r.seq.to_string()),
        ("ts", r.ts.clone()),
        ("kid", r.kid.clone()),
        ("type", r.event.kind().to_string()),
        ("prev", r.prev.clone()),
    ];
    match &r.event {
        Event::RunStart {
            command,
            dry_run,
            jobs,
            prev_run,
            ..
        } => {
            v.push(("command", command.clone()));
            v.push(("dry_run", dry_run.to_string()));
            v.push(("jobs", jobs.join(";")));
            v.push(("prev_run", prev_run.clone().unwrap_or_default()));
        }
        Event::Batch {
            job,
            rule,
            policy,
            target,
            action,
            batch,
            count,
            children,
            keys_digest,
            subjects,
            ..
        } => {
            v.extend([
                ("job", job.clone()),
                ("rule", rule.clone()),
                ("policy", policy.clone()),
                ("target", target.clone()),
                ("action", action.clone()),
                ("batch", batch.to_string()),
                ("count", count.to_string()),
                ("children", children_text(children)),
                (
                    "child_rows",
                    children.iter().map(|c| c.count).sum::<u64>().to_string(),
                ),
                ("keys_digest", keys_digest.clone()),
                ("subjects", subjects.join(";")),
                ("subject_count", subjects.len().to_string()),
            ]);
        }
        Event::Hold {
            job,
            rule,
            count,
            subjects,
            subjects_truncated,
            ..
        } => {
            v.extend([
                ("job", job.clone()),
                ("rule", rule.clone()),
                ("action", "hold".into()),
                ("count", count.to_string()),
                ("subjects", subjects.join(";")),
                ("subjects_truncated", subjects_truncated.to_string()),
            ]);
        }
        Event::Plan {
            job,
            rule,
            matched,
            held,
            total,
            children,
            ..
        } => {
            v.extend([
                ("job", job.clone()),
                ("rule", rule.clone()),
                ("matched", matched.to_string()),
                ("held", held.to_string()),
                ("total", total.to_string()),
                ("children", children_text(children)),
            ]);
        }
        Event::RunEnd {
            status,
            totals,
            jobs,
        } => {
            v.extend([
                ("status", status.clone()),
                ("deleted", totals.deleted.to_string()),
                ("anonymized", totals.anonymized.to_string()),
                ("held", totals.held.to_string()),
                (
                    "jobs",
                    jobs.iter()
                        .map(|j| format!("{}={}", j.job, j.status))
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
            ]);
        }
        _ => {}
    }
    v
}

fn json_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Export a real log (plan + runs) as CSV and as JSON Lines, parse both back
/// and compare every row with the record it came from.
#[tokio::test]
async fn export_round_trips_as_csv_and_json() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(USERS, now()).await;
    let ws = Workspace::shipped(&db.url);
    for args in [
        vec!["plan", "--as-of", AS_OF],
        vec!["run", "--as-of", AS_OF],
        vec!["run", "--as-of", AS_OF],
    ] {
        let out = ws.lethe(&args);
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let csv_file = ws.path().join("export.csv");
    let out = ws.lethe(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        csv_file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.is_empty(), "--out writes to the file only");
    let csv_text = std::fs::read_to_string(&csv_file).unwrap();
    let json = ws.lethe(&["audit", "export", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.all());
    let stdout_csv = ws.lethe(&["audit", "export"]);
    assert_eq!(
        stdout_csv.stdout, csv_text,
        "CSV is the default, stdout the default target"
    );

    let mut rows = parse_csv(&csv_text);
    let header = rows.remove(0);
    assert_eq!(
        header,
        lethe::audit::export::COLUMNS,
        "the documented columns, in order"
    );
    let json_rows = json_lines(&json.stdout);

    // Every record of every file, in order, with the hash its line carries.
    let mut records: Vec<(PathBuf, Record, String)> = Vec::new();
    for f in ws.audit_files() {
        let lines: Vec<String> = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let recs = lethe::audit::verify::read_records(&f).unwrap();
        assert_eq!(lines.len(), recs.len());
        for (line, r) in lines.iter().zip(recs) {
            let v: Value = serde_json::from_str(line).unwrap();
            records.push((f.clone(), r, v["hash"].as_str().unwrap().to_string()));
        }
    }
    assert!(records.len() > 20, "a real log");
    assert!(records.iter().any(
        |(_, r, _)| matches!(&r.event, Event::Batch { children, .. } if !children.is_empty())
    ));
    assert_eq!(rows.len(), records.len(), "one CSV row per record");
    assert_eq!(json_rows.len(), records.len(), "one JSON line per record");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (i, (file, rec, hash)) in records.iter().enumerate() {
        let row = &rows[i];
        let obj = json_rows[i].as_object().unwrap();
        assert_eq!(row.len(), header.len(), "row {i} has every column");
        let keys: Vec<&String> = obj.keys().collect();
        assert_eq!(keys.len(), header.len(), "JSON row {i} has every column");
        for (c, name) in header.iter().enumerate() {
            assert_eq!(
                row[c],
                json_cell(&obj[name]),
                "row {i} column {name}: CSV and JSON agree"
            );
        }
        for (name, want) in expected_cells(rec) {
            assert_eq!(
                row[col(name)],
                want,
                "row {i} ({}) column {name}",
                rec.event.kind()
            );
        }
        assert_eq!(row[col("hash")], *hash);
        assert_eq!(row[col("file")], file.display().to_string());
        assert_eq!(row[col("verified")], "true");
        assert_eq!(obj["v"], 1);
        // Lists come back whole: subjects split on `;`, children on `;` and `:`.
        if let Event::Batch {
            subjects,
            children,
            count,
            ..
        } = &rec.event
        {
            let back: Vec<&str> = row[col("subjects")]
                .split(';')
                .filter(|s| !s.is_empty())
                .collect();
            assert_eq!(
                back,
                subjects.iter().map(String::as_str).collect::<Vec<_>>()
            );
            let kids: Vec<ChildCount> = row[col("children")]
                .split(';')
                .filter(|s| !s.is_empty())
                .map(|c| {
                    let p: Vec<&str> = c.split(':').collect();
                    ChildCount {
                        target: p[0].into(),
                        via: p[1].into(),
                        action: p[2].into(),
                        count: p[3].parse().unwrap(),
                    }
                })
                .collect();
            assert_eq!(&kids, children);
            assert_eq!(
                obj["count"].as_u64(),
                Some(*count),
                "numbers stay numbers in JSON"
            );
        }
    }
}

// ---------------------------------------------------------------- report

/// A log whose numbers are known: two executed runs, a rolled-back batch, a
/// guard trip, a failure, holds, and a third run edited after the fact.
fn write_known_logs(dir: &Path) {
    let kid = Keys::from_secret(KEY.as_bytes()).key_id;
    let start = |run: &str| Event::RunStart {
        version: "test".into(),
        command: "run".into(),
        dry_run: false,
        as_of: AS_OF.into(),
        config_digest: "c".into(),
        jobs_digest: "j".into(),
        jobs: vec!["alpha".into(), "beta".into(), "gamma".into()],
        key_id: run.into(),
        shard: None,
        prev_run: None,
        prev_head: None,
    };
    let batch =
        |job: &str, rule: &str, action: &str, n: u64, count: u64, children: Vec<ChildCount>| {
            Event::Batch {
                job: job.into(),
                rule: rule.into(),
                policy: if job == "alpha" {
                    "IV(2)2".into()
                } else {
                    "II(2)2".into()
                },
                target: format!("app.{rule}"),
                action: action.into(),
                batch: n,
                count,
                children,
                keys_digest: "d".repeat(64),
                subjects: (0..3).map(|i| format!("{:064x}", n * 10 + i)).collect(),
                objects: vec![],
                batch_size: None,
                partition: None,
            }
        };
    let hold = |count: u64| Event::Hold {
        job: "alpha".into(),
        rule: "users".into(),
        policy: "IV(2)2".into(),
        target: "app.users".into(),
        count,
        subjects: vec!["e".repeat(64)],
        subjects_truncated: false,
    };
    let end = |status: &str| Event::RunEnd {
        status: status.into(),
        totals: Totals::default(),
        jobs: vec![JobOutcome {
            job: "alpha".into(),
            status: "done".into(),
        }],
    };
    let child = |t: &str, a: &str, c: u64| ChildCount {
        target: t.into(),
        via: "user_id".into(),
        action: a.into(),
        count: c,
    };

    let mut a = AuditWriter::create(dir, "aaaaaaaa0000000000000000000000a1", &kid).unwrap();
    a.append(start("a")).unwrap();
    a.append(batch(
        "alpha",
        "users",
        "delete",
        1,
        120,
        vec![
            child("app.posts", "delete", 30),
            child("app.orders", "anonymize", 7),
        ],
    ))
    .unwrap();
    a.append(batch("alpha", "users", "delete", 2, 80, vec![]))
        .unwrap();
    a.append(hold(4)).unwrap();
    a.append(batch("beta", "events", "anonymize", 1, 50, vec![]))
        .unwrap();
    a.append(Event::Guard {
        job: "gamma".into(),
        rule: "everything".into(),
        policy: "VIII".into(),
        target: "app.everything".into(),
        matched: 900,
        total: 1000,
        reason: "900 of 1000 rows match".into(),
    })
    .unwrap();
    a.append(Event::Failure {
        job: "beta".into(),
        rule: Some("broken".into()),
        policy: "II(2)2".into(),
        target: Some("app.broken".into()),
        error: "no such table".into(),
    })
    .unwrap();
    a.append(end("partial")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));

    let mut b = AuditWriter::create(dir, "bbbbbbbb0000000000000000000000b2", &kid).unwrap();
    b.append(start("b")).unwrap();
    b.append(batch("alpha", "users", "delete", 1, 5, vec![]))
        .unwrap();
    b.append(Event::BatchRollback {
        job: "alpha".into(),
        rule: "users".into(),
        batch: 1,
        reason: "deadlock".into(),
    })
    .unwrap();
    b.append(batch("alpha", "users", "delete", 2, 10, vec![]))
        .unwrap();
    b.append(hold(2)).unwrap();
    b.append(end("partial")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));

    let mut c = AuditWriter::create(dir, "cccccccc0000000000000000000000c3", &kid).unwrap();
    c.append(start("c")).unwrap();
    c.append(batch("alpha", "users", "delete", 1, 7, vec![]))
        .unwrap();
    c.append(end("completed")).unwrap();
    let path = c.path().to_path_buf();
    drop(c);
    // Someone edits the time of the batch record afterwards.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let ts_at = lines[1].find("\"ts\":\"").unwrap() + 6;
    lines[1].replace_range(ts_at..ts_at + 4, "1999");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("LETHE_CHROMIUM")
        && Path::new(&p).is_file()
    {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium is needed to test the HTML report and is not installed: run `scripts/chromium.sh ensure` \
         (Debian, as root: apt-get update && apt-get install -y chromium), or set LETHE_CHROMIUM to a Chromium binary"
    );
}

/// Run headless Chromium on `page` with `args`, no network, a fresh profile.
fn headless(page: &Path, args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("start chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The URLs the page itself asked the network for (Chromium's own background
/// requests carry no file:// isolation key and are left out).
fn page_requests(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log).expect("chromium wrote its net log");
    let log: Value =
        serde_json::from_str(text.trim_end().trim_end_matches(',')).expect("a complete net log");
    let types = log["constants"]["logEventTypes"].as_object().unwrap();
    let start_job = types["URL_REQUEST_START_JOB"].as_u64().unwrap();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| {
            let p = &e["params"];
            let nik = p["network_isolation_key"].as_str().unwrap_or("");
            let site = p["site_for_cookies"].as_str().unwrap_or("");
            nik.contains("file://") || site.contains("file://")
        })
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .filter(|u| !u.starts_with("file:"))
        .collect()
}

/// The text of the element with `id`, as Chromium rendered it.
fn text_by_id(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let open = at + dom[at..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    dom[open..close].trim().to_string()
}

/// The `<tr>` whose opening tag contains `marker`.
fn row_with<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no row {marker}"));
    // The marker may itself start with `<tr`.
    let start = dom[..at + 3].rfind("<tr").unwrap();
    let end = at + dom[at..].find("</tr>").unwrap();
    &dom[start..end]
}

fn cell(row: &str, class: &str) -> String {
    let at = row
        .find(&format!("class=\"{class}"))
        .unwrap_or_else(|| panic!("no .{class} in {row}"));
    let open = at + row[at..].find('>').unwrap() + 1;
    let close = open + row[open..].find('<').unwrap();
    row[open..close].to_string()
}

#[test]
fn report_renders_in_headless_chromium_with_the_right_numbers_and_fetches_nothing() {
    let chromium_bin = chromium(); // fail first, with the install command, if it is missing
    let ws = Workspace::new("sqlite://unused.db", &[]);
    let logs = ws.path().join("logs");
    write_known_logs(&logs);
    let html = ws.path().join("report.html");
    let out = ws.lethe(&[
        "audit",
        "report",
        "--html",
        html.to_str().unwrap(),
        logs.to_str().unwrap(),
    ]);
    assert_eq!(
        out.code,
        1,
        "one log fails verification, so the report exits 1: {}",
        out.all()
    );
    assert!(
        out.stdout.contains("2 logs verified, 1 failed"),
        "{}",
        out.stdout
    );
    let page = std::fs::read_to_string(&html).unwrap();

    // Self-contained: nothing in the page names anything to fetch.
    let lower = page.to_ascii_lowercase();
    for needle in [
        "<script", "src=", "href=", "@import", "url(", "http://", "https://", "//fonts", "<link",
        "<img", "<iframe", "<object",
    ] {
        assert!(
            !lower.contains(needle),
            "the report must not contain `{needle}`"
        );
    }
    assert!(
        lower.contains("content-security-policy"),
        "and a CSP forbids fetching anyway"
    );
    assert!(lower.contains("<svg"), "charts are inline SVG");

    // What Chromium renders: the right numbers.
    let dom = String::from_utf8(headless(&html, &["--dump-dom".into()]).stdout).unwrap();
    assert!(dom.contains("Lethe audit report"), "{dom}");
    // alpha/users: 120 + 80 + 10 (+7 in the edited log); the rolled-back 5 does not count.
    assert_eq!(text_by_id(&dom, "total-erased"), "217");
    assert_eq!(text_by_id(&dom, "total-anonymized"), "50");
    assert_eq!(
        text_by_id(&dom, "total-held"),
        "2",
        "holds as the latest run found them"
    );
    assert_eq!(
        text_by_id(&dom, "total-failures"),
        "2",
        "one failed rule, one rolled-back batch"
    );
    assert_eq!(text_by_id(&dom, "total-guard-trips"), "1");
    assert_eq!(text_by_id(&dom, "total-runs"), "3");
    let users = row_with(&dom, "data-job=\"alpha\" data-rule=\"users\"");
    assert_eq!(cell(users, "r erased"), "217");
    assert_eq!(cell(users, "r held"), "2");
    assert_eq!(cell(users, "r failures"), "1");
    assert_eq!(cell(users, "policy"), "IV(2)2");
    assert!(
        users.contains("app.posts delete 30") && users.contains("app.orders anonymize 7"),
        "{users}"
    );
    let events = row_with(&dom, "data-job=\"beta\" data-rule=\"events\"");
    assert_eq!(cell(events, "r anonymized"), "50");
    let guard = row_with(&dom, "data-job=\"gamma\" data-rule=\"everything\"");
    assert_eq!(cell(guard, "r guard-trips"), "1");
    assert_eq!(cell(guard, "policy"), "VIII");
    let job = row_with(&dom, "<tr data-job=\"beta\"><td>");
    assert_eq!(cell(job, "policy"), "II(2)2");
    // Every log's verdict, the edited one named with its record.
    let a = row_with(&dom, "data-run=\"aaaaaaaa0000000000000000000000a1\"");
    assert!(a.contains("verified") && a.contains("chain ok"), "{a}");
    let c = row_with(&dom, "data-run=\"cccccccc0000000000000000000000c3\"");
    assert!(
        c.contains("FAILED") && c.contains("BROKEN at record 2"),
        "{c}"
    );
    assert!(
        dom.contains("1 of 3 logs failed verification"),
        "the banner says so"
    );
    assert!(dom.contains("id=\"runs-chart\"") && dom.contains("id=\"rules-chart\""));

    // A picture a person can read.
    let png = ws.path().join("report.png");
    headless(
        &html,
        &[
            "--hide-scrollbars".into(),
            "--window-size=1280,2000".into(),
            format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1280);
    assert!(
        bytes.len() > 30_000,
        "a page with content, not a blank one ({} bytes)",
        bytes.len()
    );

    // No request: the net log shows nothing the page asked for. The same check
    // on a page that does fetch proves the check can see one.
    let net = ws.path().join("net.json");
    headless(
        &html,
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", net.display()),
        ],
    );
    let asked = page_requests(&net);
    assert!(asked.is_empty(), "the report made requests: {asked:?}");
    let canary = ws.path().join("canary.html");
    std::fs::write(
        &canary,
        "<!doctype html><img src=\"http://canary.example/x.png\"><p>x</p>",
    )
    .unwrap();
    let canary_net = ws.path().join("canary-net.json");
    headless(
        &canary,
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", canary_net.display()),
        ],
    );
    let asked = page_requests(&canary_net);
    assert!(
        asked.iter().any(|u| u.contains("canary.example")),
        "the detector sees a page's request: {asked:?}"
    );
    let _ = chromium_bin;
}

// ---------------------------------------------------------------- verify

/// Three executed runs on a real database; returns the workspace and files.
async fn three_runs() -> (TestDb, Workspace, Vec<PathBuf>) {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(USERS, now()).await;
    let ws = Workspace::shipped(&db.url);
    for job in ["minors", "cancelled-accounts", "behaviour-logs"] {
        let out = ws.lethe(&["run", "--job", job, "--as-of", AS_OF]);
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let files = ws.audit_files();
    assert_eq!(files.len(), 3);
    let ok = ws.lethe(&["audit", "verify"]);
    assert_eq!(
        ok.code,
        0,
        "the untouched log verifies against the state store: {}",
        ok.all()
    );
    (db, ws, files)
}

fn run_id_of(file: &Path) -> String {
    lethe::audit::verify::read_records(file).unwrap()[0]
        .run
        .clone()
}

#[tokio::test]
async fn verify_detects_a_whole_run_deleted() {
    let (_db, ws, files) = three_runs().await;
    let gone = run_id_of(&files[1]);
    std::fs::remove_file(&files[1]).unwrap();
    let out = ws.lethe(&["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!("MISSING (run {gone})")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the state store records run"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the whole run was deleted"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("MISSING runs: 1"), "{}", out.stdout);

    // The files alone still show it: the next run names the run before it.
    let alone = ws.lethe(&["audit", "verify", "--no-state-store"]);
    assert_eq!(alone.code, 1, "{}", alone.all());
    assert!(
        alone
            .stdout
            .contains(&format!("names run {gone} as the run before it")),
        "{}",
        alone.stdout
    );

    // Deleting the state store's row as well does not hide it.
    let state = lethe::sql::Db::connect("state", &ws.state_url(), 1, std::time::Duration::ZERO)
        .await
        .unwrap();
    state
        .execute(&common::raw(&format!(
            "DELETE FROM lethe_runs WHERE run_id = '{gone}'"
        )))
        .await
        .unwrap();
    state.close().await;
    let out = ws.lethe(&["audit", "verify", "--output", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let missing: Vec<Value> = json_lines(&out.stdout)
        .into_iter()
        .filter(|v| v["missing"] == true)
        .collect();
    assert_eq!(missing.len(), 1, "{}", out.stdout);
    assert_eq!(missing[0]["run"], gone.as_str());
    assert_eq!(missing[0]["ok"], false);
}

#[tokio::test]
async fn verify_detects_a_log_cut_at_its_end() {
    let (_db, ws, files) = three_runs().await;
    let last = &files[2];
    let text = std::fs::read_to_string(last).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3);
    std::fs::write(last, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let out = ws.lethe(&["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "truncated at its end: the log has {} records, the state store recorded {}",
            lines.len() - 2,
            lines.len()
        )),
        "{}",
        out.stdout
    );
}

/// Re-chain a log after changing it: every hash recomputed, as a forger would.
fn rechain(records: Vec<Record>) -> String {
    let mut prev = lethe::audit::writer::GENESIS.to_string();
    let mut out = String::new();
    for (i, mut r) in records.into_iter().enumerate() {
        r.seq = i as u64;
        r.prev = prev.clone();
        let (line, hash) = lethe::audit::writer::seal_line(&r);
        out.push_str(&line);
        out.push('\n');
        prev = hash;
    }
    out
}

#[tokio::test]
async fn verify_detects_a_log_cut_and_resealed_or_rewritten() {
    let (_db, ws, files) = three_runs().await;
    // Run 2 loses its last batch and gets a fresh, valid-looking seal.
    let mut recs = lethe::audit::verify::read_records(&files[1]).unwrap();
    let end = recs.pop().unwrap();
    let batch_at = recs
        .iter()
        .rposition(|r| matches!(r.event, Event::Batch { .. }))
        .expect("a batch");
    recs.remove(batch_at);
    recs.push(end);
    std::fs::write(&files[1], rechain(recs)).unwrap();
    // Run 1 keeps its length but a batch says fewer rows.
    let mut recs = lethe::audit::verify::read_records(&files[0]).unwrap();
    let b = recs.iter_mut().find_map(|r| match &mut r.event {
        Event::Batch { count, .. } => Some(count),
        _ => None,
    });
    *b.expect("a batch") -= 1;
    std::fs::write(&files[0], rechain(recs)).unwrap();

    // Each file alone looks perfect...
    for f in &files[..2] {
        let alone = ws.lethe(&["audit", "verify", f.to_str().unwrap()]);
        assert_eq!(
            alone.code,
            0,
            "a recomputed chain passes on its own: {}",
            alone.all()
        );
    }
    // ...but not next to the heads kept outside it.
    let out = ws.lethe(&["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("truncated at its end"),
        "run 2: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("rewritten: its last record's hash"),
        "run 1: {}",
        out.stdout
    );
    let run2 = run_id_of(&files[1]);
    assert!(
        out.stdout
            .contains(&format!("run {run2} recorded this run's head")),
        "run 2's link exposes run 1: {}",
        out.stdout
    );
    let run3 = run_id_of(&files[2]);
    assert!(
        out.stdout
            .contains(&format!("run {run3} recorded this run's head")),
        "run 3's link exposes run 2: {}",
        out.stdout
    );
}
