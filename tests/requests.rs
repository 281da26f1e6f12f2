//! Erasure requests end to end (policy VII(7)), on every engine for the
//! sources and the state store: add → plan shows it → run erases the
//! subject's rows, children and objects and nothing else → done; a held
//! subject → held; a late request → exit 5 until it is done; `--as-of`
//! moves the clock; no raw subject or personal value in any output.

mod common;

use common::{AS_OF, Engine, TestDb, Workspace};
use lethe::demo::{id_card_of, phone_of, user_object_keys};
use lethe::objects::fs::FsStore;

/// User 10: an ordinary account with a ticket (objects under tickets/10/).
const A: i64 = 10;
/// User 21: on a legal hold (and cancelled).
const HELD: i64 = 21;
/// User 11: nobody asked; must stay whole.
const CONTROL: i64 = 11;
/// User 12: asked long ago, late.
const LATE: i64 = 12;

const SHIPPED_JOB: &str = include_str!("../jobs/erasure-requests.toml");

/// A workspace with the shipped request job, the shipped calendar, and the
/// state store on the same server as the source (its own tables, `lethe_*`).
async fn setup(engine: Engine) -> (TestDb, Workspace) {
    let db = TestDb::create(engine).await;
    let seeded = db.seed(50, common::now()).await;
    assert!(
        seeded.held.contains(&HELD),
        "user {HELD} is on a legal hold"
    );
    let ws = Workspace::new(&db.url, &[("erasure-requests.toml", SHIPPED_JOB)]);
    let state_url = match engine {
        Engine::Sqlite => ws.state_url(),
        _ => db.url.clone(),
    };
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let cfg = cfg.replace(
        &format!("url = \"{}\"", ws.state_url()),
        &format!("url = \"{state_url}\""),
    );
    let cfg = format!(
        "{cfg}\n[requests]\ncalendar = \"calendar-cn.toml\"\ndeadline_working_days = 15\ntime_zone = \"Asia/Shanghai\"\n\n[metrics]\ntextfile = \"{}\"\n",
        ws.path().join("metrics.prom").display()
    );
    std::fs::write(ws.config(), cfg).unwrap();
    std::fs::copy(
        common::repo().join("config/calendar-cn.toml"),
        ws.path().join("config/calendar-cn.toml"),
    )
    .unwrap();
    let store = FsStore::new("media", ws.path().join("objects/media"));
    lethe::demo::seed_objects(&store, &seeded).await.unwrap();
    (db, ws)
}

fn object_exists(ws: &Workspace, key: &str) -> bool {
    ws.path().join("objects/media").join(key).is_file()
}

/// Every personal value of these users that must never appear in an output.
fn personal(users: &[i64]) -> Vec<String> {
    users
        .iter()
        .flat_map(|&u| [phone_of(u), id_card_of(u)])
        .collect()
}

fn assert_clean(what: &str, text: &str, users: &[i64]) {
    for v in personal(users) {
        assert!(!text.contains(&v), "{what} holds the personal value {v}");
    }
    for &u in users {
        for raw in [format!("\"subject\":\"{u}\""), format!("subject={u} ")] {
            assert!(!text.contains(&raw), "{what} holds the raw subject: {raw}");
        }
    }
}

/// `request add` with JSON output: the new request's id.
fn add(ws: &Workspace, subject: i64, received: &str, outputs: &mut Vec<String>) -> String {
    let out = ws.lethe(&[
        "request",
        "add",
        "--subject",
        &subject.to_string(),
        "--received",
        received,
        "--ref",
        &format!("T-{subject}"),
        "--as-of",
        AS_OF,
        "--output",
        "json",
    ]);
    outputs.push(out.all());
    assert!(out.code == 0 || out.code == 5, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["type"], "request");
    assert_eq!(v["state"], "pending");
    v["id"].as_str().unwrap().to_string()
}

fn state_of(ws: &Workspace, id: &str, outputs: &mut Vec<String>) -> serde_json::Value {
    let out = ws.lethe(&["request", "show", id, "--as-of", AS_OF, "--output", "json"]);
    outputs.push(out.all());
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.all()))
}

async fn lifecycle(engine: Engine) {
    let (db, ws) = setup(engine).await;
    let mut outputs = Vec::new();
    let orders_of = |u: i64| format!("SELECT COUNT(*) FROM orders WHERE user_id = {u}");

    // Filed the day before AS_OF (2026-06-15, a Monday): due 15 working
    // days after Sunday 14 June in Shanghai — Dragon Boat, 19 June, is off.
    let a = add(&ws, A, "2026-06-14T10:00:00+08:00", &mut outputs);
    assert_eq!(
        state_of(&ws, &a, &mut outputs)["due"],
        "2026-07-06T23:59:59+08:00"
    );

    // The plan shows the request's rule, for that subject only, and changes nothing.
    let before = db.fingerprint().await;
    let plan = ws.lethe(&["plan", "--as-of", AS_OF, "--output", "json"]);
    outputs.push(plan.all());
    assert_eq!(plan.code, 0, "{}", plan.all());
    let rule = plan
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "rule" && v["request"] == a.as_str())
        .unwrap_or_else(|| panic!("plan names the request:\n{}", plan.stdout));
    assert_eq!(rule["matched"], 1, "one account: {rule}");
    assert_eq!(db.fingerprint().await, before, "plan changed nothing");

    // Run: the subject's account, posts, locations, events go; orders stay anonymized;
    // the avatar, ID-card photo and ticket objects go; the control user stays whole.
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    outputs.push(run.all());
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {A}"))
            .await,
        0
    );
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM posts WHERE user_id = {A}"))
            .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM locations WHERE user_id = {A}"
        ))
        .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE user_ref = '{A}'"
        ))
        .await,
        0
    );
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM tickets WHERE user_id = {A}"))
            .await,
        0
    );
    assert_eq!(db.count(&orders_of(A)).await, 0);
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM orders WHERE id IN ({}, {}) AND user_id IS NULL AND consignee_name = '[REDACTED]'", A * 2 - 1, A * 2)).await,
        2,
        "the subject's orders are kept, anonymized"
    );
    for key in user_object_keys(A) {
        assert!(!object_exists(&ws, &key), "{key} erased");
    }
    assert!(!object_exists(&ws, &format!("tickets/{A}/photo.jpg")));
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {CONTROL}"))
            .await,
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM posts WHERE user_id = {CONTROL}"
        ))
        .await,
        1
    );
    assert_eq!(db.count(&orders_of(CONTROL)).await, 2);
    for key in user_object_keys(CONTROL) {
        assert!(object_exists(&ws, &key), "{key} kept");
    }
    let shown = state_of(&ws, &a, &mut outputs);
    assert_eq!(shown["state"], "done", "{shown}");

    // Closed: only the keyed hash stays in the state store.
    let state_db = match engine {
        Engine::Sqlite => None,
        _ => Some(&db),
    };
    let stored = match state_db {
        Some(db) => {
            db.rows(&format!(
                "SELECT subject, subject_hash FROM lethe_requests WHERE id = '{a}'"
            ))
            .await
        }
        None => {
            let s = lethe::sql::Db::connect("state", &ws.state_url(), 1, std::time::Duration::ZERO)
                .await
                .unwrap();
            let r = s
                .fetch(&common::raw(&format!(
                    "SELECT subject, subject_hash FROM lethe_requests WHERE id = '{a}'"
                )))
                .await
                .unwrap();
            s.close().await;
            r
        }
    };
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0][0], None,
        "the raw subject is gone once the request is done"
    );
    assert!(lethe::keys::looks_hashed(stored[0][1].as_deref().unwrap()));

    // The receipt: counts per rule and policy section, what was kept, due and completion.
    let html = ws.path().join("receipt.html");
    let receipt = ws.lethe(&[
        "request",
        "receipt",
        &a,
        "--as-of",
        AS_OF,
        "--output",
        "json",
        "--html",
        html.to_str().unwrap(),
    ]);
    outputs.push(receipt.all());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("Erasure request {a}")), "{page}");
    assert!(
        page.contains("<td>VII(7)</td>") && page.contains("on time"),
        "{page}"
    );
    outputs.push(page);
    assert_eq!(receipt.code, 0, "{}", receipt.all());
    let r: serde_json::Value = serde_json::from_str(receipt.stdout.trim()).unwrap();
    assert_eq!(r["type"], "request_receipt");
    assert_eq!(r["on_time"], true, "{r}");
    let erased = r["erased"].as_array().unwrap();
    assert!(
        erased
            .iter()
            .any(|l| l["target"] == "app.users" && l["count"] == 1 && l["policy"] == "VII(7)"),
        "{r}"
    );
    assert!(
        r["anonymized"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["target"] == "app.orders" && l["count"] == 2),
        "{r}"
    );

    // A held subject: nothing of it is touched, the request is held with the reason.
    let h = add(&ws, HELD, "2026-06-15T09:00:00+08:00", &mut outputs);
    let run = ws.lethe(&["run", "--job", "erasure-requests", "--as-of", AS_OF]);
    outputs.push(run.all());
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {HELD}"))
            .await,
        1
    );
    assert_eq!(db.count(&orders_of(HELD)).await, 2);
    let shown = state_of(&ws, &h, &mut outputs);
    assert_eq!(shown["state"], "held", "{shown}");
    assert!(
        shown["reason"].as_str().unwrap().contains("legal hold"),
        "{shown}"
    );

    // A late request: filed Wednesday 2026-05-06, due 26 May (Saturday 9 May
    // was worked); overdue as of AS_OF. Exit 5
    // from `request list`, `plan` and a run of another job until it is done.
    let late = add(&ws, LATE, "2026-05-06T09:00:00+08:00", &mut outputs);
    // --as-of moves the clock: on 20 May it is not late yet.
    let early = ws.lethe(&["request", "list", "--as-of", "2026-05-20T00:00:00Z"]);
    outputs.push(early.all());
    assert_eq!(early.code, 0, "{}", early.all());
    let list = ws.lethe(&["request", "list", "--as-of", AS_OF]);
    outputs.push(list.all());
    assert_eq!(list.code, 5, "{}", list.all());
    assert!(list.stdout.contains("OVERDUE"), "{}", list.stdout);
    let plan = ws.lethe(&["plan", "--job", "erasure-requests", "--as-of", AS_OF]);
    outputs.push(plan.all());
    assert_eq!(plan.code, 5, "{}", plan.all());
    let mut other = ws.lethe(&["request", "list", "--state", "done", "--as-of", AS_OF]);
    outputs.push(other.all());
    assert_eq!(
        other.code, 5,
        "the exit says overdue whatever the filter shows"
    );
    let run = ws.lethe(&["run", "--job", "erasure-requests", "--as-of", AS_OF]);
    outputs.push(run.all());
    assert_eq!(
        run.code,
        0,
        "done in this run, so nothing is overdue at its end: {}",
        run.all()
    );
    let shown = state_of(&ws, &late, &mut outputs);
    assert_eq!(shown["state"], "done");
    let receipt = ws.lethe(&[
        "request", "receipt", &late, "--as-of", AS_OF, "--output", "json",
    ]);
    outputs.push(receipt.all());
    let r: serde_json::Value = serde_json::from_str(receipt.stdout.trim()).unwrap();
    assert_eq!(r["on_time"], false, "{r}");
    other = ws.lethe(&["request", "list", "--as-of", AS_OF]);
    outputs.push(other.all());
    assert_eq!(other.code, 0, "{}", other.all());
    // Metrics of that run: the held request stays open, none overdue, and the
    // late one took 29 working days (6 May → 15 June 2026).
    let prom = std::fs::read_to_string(ws.path().join("metrics.prom")).unwrap();
    for line in [
        "lethe_requests_open{kind=\"erasure\"} 1",
        "lethe_requests_overdue{kind=\"erasure\"} 0",
        "lethe_request_completion_working_days_count{kind=\"erasure\"} 1",
        "lethe_request_completion_working_days_sum{kind=\"erasure\"} 29",
        "lethe_request_completion_working_days_bucket{kind=\"erasure\",le=\"20\"} 0",
    ] {
        assert!(prom.contains(line), "metrics have `{line}`:\n{prom}");
    }

    // `audit search --subject` shows each subject's request and whether it met its due instant.
    for (user, id, outcome) in [(A, &a, "on time"), (LATE, &late, "late")] {
        let search = ws.lethe(&[
            "audit",
            "search",
            "--subject",
            &user.to_string(),
            "--output",
            "json",
        ]);
        outputs.push(search.stdout.clone());
        assert_eq!(search.code, 0, "{}", search.all());
        let done = search
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["action"] == "request_done" && v["target"] == id.as_str())
            .unwrap_or_else(|| panic!("search shows the request of {user}:\n{}", search.stdout));
        assert!(
            done["outcome"].as_str().unwrap().starts_with(outcome),
            "{done}"
        );
        assert!(
            search.stdout.contains("\"outcome\":\"erased\""),
            "and the erasure itself"
        );
    }

    // The audit log: the request records, subjects as hashes, and nothing personal.
    let audit = ws.audit_text();
    for kind in ["request_received", "request_done", "request_held"] {
        assert!(
            audit.contains(&format!("\"type\":\"{kind}\"")),
            "audit has {kind}"
        );
    }
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    // The HTML report has a requests section: 3 received, 2 done (one late), 1 held.
    let page_path = ws.path().join("report.html");
    let report = ws.lethe(&["audit", "report", "--html", page_path.to_str().unwrap()]);
    assert_eq!(report.code, 0, "{}", report.all());
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(
        page.contains("Erasure requests (policy VII(7))"),
        "a requests section"
    );
    assert!(
        page.contains("<tr><td class=\"r\">3</td><td class=\"r\">1</td><td class=\"r\">1</td><td class=\"r\">0</td><td class=\"r\">0</td><td class=\"r\">1</td><td class=\"r\">0</td></tr>"),
        "received 3, on time 1, late 1, open 0, overdue 0, held 1, rejected 0"
    );
    for id in [&a, &h, &late] {
        assert!(page.contains(id.as_str()), "the page lists {id}");
    }
    outputs.push(page);
    let everything = format!("{audit}\n{}", outputs.join("\n"));
    assert_clean(
        "the outputs and the audit log",
        &everything,
        &[A, HELD, LATE],
    );
}

async fn rejected_and_refused(engine: Engine) {
    let (db, ws) = setup(engine).await;
    let mut outputs = Vec::new();
    let id = add(&ws, CONTROL, "2026-06-15T09:00:00+08:00", &mut outputs);
    let bad = ws.lethe(&[
        "request", "reject", &id, "--reason", "too-busy", "--note", "x",
    ]);
    assert_eq!(bad.code, 64, "{}", bad.all());
    assert!(
        bad.stderr.contains("legal-obligation"),
        "lists the reasons: {}",
        bad.stderr
    );
    let ok = ws.lethe(&[
        "request",
        "reject",
        &id,
        "--reason",
        "criminal-proceedings",
        "--note",
        "police case 2026-17 asked us to keep it",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let shown = state_of(&ws, &id, &mut outputs);
    assert_eq!(shown["state"], "rejected");
    assert_eq!(shown["reason"], "criminal-proceedings");
    // A rejected request is not acted on.
    let run = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {CONTROL}"))
            .await,
        1
    );
    assert!(ws.audit_text().contains("\"type\":\"request_rejected\""));
    let receipt = ws.lethe(&["request", "receipt", &id, "--as-of", AS_OF]);
    assert!(
        receipt.stdout.contains("rejected under policy VII(7)"),
        "{}",
        receipt.stdout
    );
}

/// VII(6): the suspension job refuses without its confirmation and touches
/// nothing; confirmed, it leaves only the held accounts.
async fn suspension_needs_confirmation(engine: Engine) {
    let (db, ws) = setup(engine).await;
    std::fs::copy(
        common::repo().join("jobs/business-suspension.toml"),
        ws.jobs().join("business-suspension.toml"),
    )
    .unwrap();
    let before = db.fingerprint().await;
    // A plain run never takes a manual job.
    let plain = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert_eq!(db.fingerprint().await, before);
    let refused = ws.lethe(&["run", "--job", "business-suspension", "--as-of", AS_OF]);
    assert_eq!(refused.code, 64, "{}", refused.all());
    assert!(
        refused.stderr.contains("--confirm business-suspension"),
        "says what to add: {}",
        refused.stderr
    );
    let wrong = ws.lethe(&[
        "run",
        "--job",
        "business-suspension",
        "--confirm",
        "erasure-requests",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(wrong.code, 64, "{}", wrong.all());
    assert_eq!(db.fingerprint().await, before, "nothing touched");
    let ok = ws.lethe(&[
        "run",
        "--job",
        "business-suspension",
        "--confirm",
        "business-suspension",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let held = db
        .count("SELECT COUNT(DISTINCT user_id) FROM legal_holds")
        .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM users").await,
        held,
        "only held accounts stay"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM orders WHERE user_id IS NOT NULL AND user_id NOT IN (SELECT user_id FROM legal_holds)").await,
        0,
        "orders are kept without the person"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM events WHERE user_ref NOT IN (SELECT CAST(user_id AS CHAR(20)) FROM legal_holds)").await,
        0
    );
}

/// Intake: two runs racing over the application's table file each row's
/// request exactly once, and mark every row taken.
async fn intake_takes_each_row_once(engine: Engine) {
    let (db, ws) = setup(engine).await;
    let ddl = match engine {
        Engine::Sqlite => {
            "CREATE TABLE erasure_intake (id INTEGER PRIMARY KEY, subject TEXT NOT NULL, received_at TEXT, ticket_ref TEXT, taken_at TEXT, request_id TEXT)"
        }
        Engine::Postgres => {
            "CREATE TABLE erasure_intake (id BIGINT PRIMARY KEY, subject TEXT NOT NULL, received_at TIMESTAMPTZ, ticket_ref TEXT, taken_at TIMESTAMPTZ, request_id TEXT)"
        }
        Engine::MariaDb => {
            "CREATE TABLE erasure_intake (id BIGINT PRIMARY KEY, subject VARCHAR(255) NOT NULL, received_at DATETIME(6), ticket_ref VARCHAR(255), taken_at DATETIME(6), request_id VARCHAR(40))"
        }
    };
    db.exec(ddl).await;
    let subjects: Vec<i64> = (30..36).collect();
    for (n, s) in subjects.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO erasure_intake (id, subject, received_at, ticket_ref) VALUES ({}, '{s}', '2026-06-10 08:00:00', 'CS-{n}')",
            n + 1
        ))
        .await;
    }
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(
        ws.config(),
        cfg.replace(
            "[requests]\n",
            "[requests]\nintake = \"app.erasure_intake\"\n",
        ),
    )
    .unwrap();
    // Logs go to files: an unread pipe would block a chatty child.
    let spawn = |n: u32| {
        let log = std::fs::File::create(ws.path().join(format!("race-{n}.log"))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(["run", "--job", "erasure-requests", "--as-of", AS_OF])
            .arg("--config")
            .arg(ws.config())
            .arg("--jobs")
            .arg(ws.jobs())
            .env("LETHE_AUDIT_KEY", common::KEY)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        (n, child)
    };
    let racers = [spawn(1), spawn(2)];
    for (n, mut child) in racers {
        let code = child.wait().unwrap().code();
        let log = std::fs::read_to_string(ws.path().join(format!("race-{n}.log"))).unwrap();
        assert!(
            matches!(code, Some(0) | Some(75)),
            "a racing run ended {code:?}:\n{log}"
        );
    }
    let again = ws.lethe(&["run", "--job", "erasure-requests", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM erasure_intake WHERE taken_at IS NULL OR request_id IS NULL"
        )
        .await,
        0,
        "every row taken, with its request id"
    );
    let audit = ws.audit_text();
    assert_eq!(
        audit.matches("\"type\":\"request_received\"").count(),
        subjects.len(),
        "each row filed once"
    );
    assert_eq!(
        audit.matches("\"type\":\"request_done\"").count(),
        subjects.len()
    );
    let list = ws.lethe(&[
        "request", "list", "--all", "--output", "json", "--as-of", AS_OF,
    ]);
    let lines: Vec<serde_json::Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), subjects.len(), "{}", list.stdout);
    assert!(
        lines.iter().all(|l| l["state"] == "done"),
        "{}",
        list.stdout
    );
    let in_list = |s: &[i64]| {
        s.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM users WHERE id IN ({})",
            in_list(&subjects)
        ))
        .await,
        0
    );
    // The next run takes nothing again.
    let third = ws.lethe(&["run", "--job", "erasure-requests", "--as-of", AS_OF]);
    assert_eq!(third.code, 0);
    assert_eq!(
        ws.audit_text()
            .matches("\"type\":\"request_received\"")
            .count(),
        subjects.len()
    );
}

/// A user's short-lived data ages (`lethe::demo::short_lived_ages`).
type Ages = (Option<u64>, i64, u64);

/// O13 and O14 on seeded data: promotion entrants 30 days after the
/// activity, SMS codes after an hour, sessions after 7 days; younger rows stay.
async fn short_lived_data_expires(engine: Engine) {
    let (db, ws) = setup(engine).await;
    for job in ["promotion-entrants.toml", "authentication-data.toml"] {
        std::fs::copy(common::repo().join("jobs").join(job), ws.jobs().join(job)).unwrap();
    }
    let ages: Vec<_> = (1..=50).map(lethe::demo::short_lived_ages).collect();
    let promos = ages.iter().filter(|a| a.0.is_some()).count() as u64;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM promotion_entrants").await,
        promos
    );
    let run = ws.lethe(&[
        "run",
        "--job",
        "promotion-entrants",
        "--job",
        "authentication-data",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let kept = |f: &dyn Fn(&Ages) -> bool| ages.iter().filter(|a| f(a)).count() as u64;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM promotion_entrants").await,
        kept(&|a| a.0.is_some_and(|d| d <= 30)),
        "entrants of activities that ended more than 30 days ago are gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM sms_codes").await,
        kept(&|a| a.1 <= 60),
        "codes older than an hour are gone"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM sessions").await,
        kept(&|a| a.2 <= 7),
        "sessions not seen for 7 days are gone"
    );
    assert_clean(
        "the run's output and the audit log",
        &format!("{}{}", run.all(), ws.audit_text()),
        &[1, 2, 3, 4, 8, 12],
    );
}

/// A subject whose avatar is under legal hold (the folder store's sidecar):
/// every row and every other object goes, the avatar stays pending, and the
/// request is held with Object Lock as the reason — never done while the
/// receipt would not say what was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_under_legal_hold_holds_the_request_not_the_rows() {
    let (db, ws) = setup(Engine::Sqlite).await;
    let mut outputs = Vec::new();
    let held = format!("avatars/{A}/avatar.jpg");
    let meta = ws
        .path()
        .join("objects/media/.lethe-meta")
        .join(format!("{held}.json"));
    std::fs::create_dir_all(meta.parent().unwrap()).unwrap();
    std::fs::write(&meta, r#"{"legal_hold": true}"#).unwrap();
    let a = add(&ws, A, "2026-06-14T10:00:00+08:00", &mut outputs);
    let run = ws.lethe(&["run", "--job", "erasure-requests", "--as-of", AS_OF]);
    outputs.push(run.all());
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM users WHERE id = {A}"))
            .await,
        0,
        "the row goes although its avatar is held"
    );
    assert!(object_exists(&ws, &held), "the held object stays");
    assert!(!object_exists(&ws, &format!("avatars/{A}/thumb.jpg")));
    assert!(run.stdout.contains("media: 1 legal hold"), "{}", run.stdout);
    let shown = state_of(&ws, &a, &mut outputs);
    assert_eq!(shown["state"], "held", "{shown}");
    assert!(
        shown["reason"].as_str().unwrap().contains("Object Lock"),
        "{shown}"
    );
    assert!(!run.all().contains(&held), "no key name in the output");
}

on_every_engine!(
    short_lived_data_expires,
    lifecycle,
    rejected_and_refused,
    suspension_needs_confirmation,
    intake_takes_each_row_once
);

#[test]
fn a_request_job_refuses_select_object_rules_and_a_missing_subject() {
    let job = "name = \"r\"\npolicy = \"VII(7)\"\ntrigger = \"request\"\n\
               [[rules]]\nname = \"a\"\ntarget = \"app.users\"\nselect = { column = \"created_at\", older_than = \"1d\" }\nsubject = \"id\"\naction = \"delete\"\n\
               [[rules]]\nname = \"b\"\ntarget = \"app.users\"\naction = \"delete\"\n\
               [[rules]]\nname = \"c\"\nstore = \"media\"\nprefix = \"x/\"\n";
    let ws = Workspace::new("sqlite://unused.db", &[("r.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    for e in [
        "r.toml:7:10: a request job's rules have no `select`",
        "r.toml:10:1: a request job's rule needs `subject",
        "r.toml:16:9: a request job acts on rows of a subject",
    ] {
        assert!(out.stderr.contains(e), "expected `{e}` in:\n{}", out.stderr);
    }
}

#[test]
fn a_bad_calendar_is_a_config_error_at_its_line_and_column() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(
        ws.config(),
        format!("{cfg}\n[requests]\ncalendar = \"cal.toml\"\ndeadline_working_days = 0\n"),
    )
    .unwrap();
    std::fs::write(
        ws.path().join("config/cal.toml"),
        "holidays = [\"2026-10-01\"]\nworkdays = [\"2026-10-09\"]\n",
    )
    .unwrap();
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr
            .contains("cal.toml:2:13: workday 2026-10-09 is a Fri"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("lethe.toml:")
            && out
                .stderr
                .contains("deadline_working_days must be between 1 and 366"),
        "{}",
        out.stderr
    );
}

/// `check` warns when a request's due instant falls past the calendar's last year.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_a_deadline_runs_past_the_calendar() {
    let (_db, ws) = setup(Engine::Sqlite).await;
    let mut outputs = Vec::new();
    // Received 20 December 2026: due in January 2027, which the shipped calendar does not cover yet.
    let id = add(&ws, A, "2026-12-20T10:00:00+08:00", &mut outputs);
    let check = ws.lethe(&["check", "--as-of", "2026-12-21T00:00:00Z"]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(
        check
            .stdout
            .contains(&format!("request {id} is due in 2027")),
        "{}",
        check.stdout
    );
    assert!(
        check
            .stdout
            .contains("a request received now is due in 2027"),
        "{}",
        check.stdout
    );
    // In June nothing runs past 2026.
    let june = ws.lethe(&["check", "--as-of", AS_OF]);
    assert!(
        !june.stdout.contains("received now is due in"),
        "{}",
        june.stdout
    );
}
