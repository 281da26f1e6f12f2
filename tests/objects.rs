//! Object storage, as the README promises it: every behaviour scenario runs
//! against a bucket on the moto S3 server *and* a local folder; row-linked
//! objects run on PostgreSQL, MariaDB and SQLite. Start moto with
//! `scripts/moto.sh start` (tests fail, never skip, without it).

mod common;

use common::objects::{
    Bucket, Kind, TestStore, aws_env, delete_request_sizes, endpoint, set_stores,
};
use common::{AS_OF, Engine, KEY, TestDb, Workspace, now};
use lethe::audit::Event;
use lethe::objects::{LockMode, LockState};

fn run(ws: &Workspace, args: &[&str]) -> common::Output {
    ws.lethe_env(args, &aws_env())
}

fn workspace(store: &TestStore, jobs: &[(&str, &str)]) -> Workspace {
    let ws = Workspace::new("sqlite::memory:", jobs);
    set_stores(&ws, &store.toml("media"));
    ws
}

fn json_rules(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "rule")
        .collect()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Prefix, age and tags: each alone and all together select exactly what they say.
async fn prefix_age_and_tag_selection(kind: Kind) {
    let s = TestStore::create(kind, Bucket::default()).await;
    for k in ["logs/old-tagged", "other/old-tagged"] {
        s.put_with(k, &[("class", "tmp")], LockState::default())
            .await;
    }
    s.put("logs/old-plain").await;
    // Last-modified has one-second resolution on S3: leave a clear gap.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let mid = chrono::Utc::now() - chrono::TimeDelta::milliseconds(1_000);
    s.put_with("logs/new-tagged", &[("class", "tmp")], LockState::default())
        .await;
    s.put("logs/new-plain").await;
    let as_of = rfc3339(mid + chrono::TimeDelta::days(180));

    let job = |name: &str, body: &str| {
        format!(
            "name = \"{name}\"\npolicy = \"IV(2)1\"\n[[rules]]\nname = \"{name}\"\nstore = \"media\"\n{body}\n"
        )
    };
    let all = job(
        "all-three",
        "prefix = \"logs/\"\nselect = { older_than = \"180d\" }\ntags = { class = \"tmp\" }",
    );
    let tags = job("tags-only", "prefix = \"\"\ntags = { class = \"tmp\" }");
    let age = job(
        "age-only",
        "prefix = \"logs/\"\nselect = { older_than = \"180d\" }",
    );
    let ws = workspace(&s, &[("a.toml", &all), ("b.toml", &tags), ("c.toml", &age)]);

    let before = s.keys("").await;
    assert_eq!(before.len(), 5);
    let plan = run(
        &ws,
        &[
            "plan",
            "--job",
            "all-three",
            "--as-of",
            &as_of,
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    let rules = json_rules(&plan.stdout);
    assert_eq!(rules[0]["matched"], 1, "{}", plan.stdout);
    assert_eq!(rules[0]["total"], 4, "four objects under logs/");
    assert_eq!(rules[0]["objects"][0]["objects"], 1);
    assert_eq!(s.keys("").await, before, "plan deletes nothing");

    let out = run(&ws, &["run", "--job", "all-three", "--as-of", &as_of]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        s.keys("").await,
        [
            "logs/new-plain",
            "logs/new-tagged",
            "logs/old-plain",
            "other/old-tagged"
        ]
    );
    let out = run(&ws, &["run", "--job", "tags-only", "--as-of", &as_of]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(s.keys("").await, ["logs/new-plain", "logs/old-plain"]);
    let out = run(&ws, &["run", "--job", "age-only", "--as-of", &as_of]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(s.keys("").await, ["logs/new-plain"]);
    let batches: u64 = ws
        .audit_files()
        .iter()
        .flat_map(|f| lethe::audit::verify::read_records(f).unwrap())
        .filter_map(|r| match r.event {
            Event::ObjectBatch { objects, .. } => Some(objects.objects),
            _ => None,
        })
        .sum();
    assert_eq!(batches, 4, "every erased object is in an audited batch");
    let text = ws.audit_text();
    assert!(
        !text.contains("logs/old") && !text.contains("other/old"),
        "key names never reach the audit log"
    );
    let again = run(&ws, &["run", "--as-of", &as_of]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        s.keys("").await,
        ["logs/new-plain"],
        "a second run is a no-op"
    );
}

/// Legal hold and unexpired governance retention keep an object; it is reported.
async fn object_lock_keeps_and_reports(kind: Kind) {
    let s = TestStore::create(
        kind,
        Bucket {
            versioned: true,
            object_lock: true,
        },
    )
    .await;
    let legal = LockState {
        legal_hold: true,
        ..Default::default()
    };
    let governance = LockState {
        mode: Some(LockMode::Governance),
        retain_until: Some(chrono::Utc::now() + chrono::TimeDelta::days(365)),
        ..Default::default()
    };
    let expired = LockState {
        mode: Some(LockMode::Governance),
        retain_until: Some(chrono::Utc::now() + chrono::TimeDelta::seconds(2)),
        ..Default::default()
    };
    s.put_with("cs/held", &[], legal).await;
    s.put_with("cs/retained", &[], governance).await;
    s.put_with("cs/expired", &[], expired).await;
    s.put("cs/free").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let job = "name = \"cs\"\npolicy = \"II(4)\"\n[[rules]]\nname = \"cs-media\"\nstore = \"media\"\nprefix = \"cs/\"\n";
    let ws = workspace(&s, &[("cs.toml", job)]);
    let plan = run(&ws, &["plan", "--output", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let rules = json_rules(&plan.stdout);
    assert_eq!(rules[0]["held"], 2, "{}", plan.stdout);
    assert_eq!(rules[0]["matched"], 2);
    assert_eq!(
        rules[0]["message"], "objects kept by Object Lock: 1 governance, 1 legal_hold",
        "the plan says why"
    );

    let out = run(&ws, &["run", "--output", "json"]);
    assert_eq!(out.code, 0, "a hold is not a failure: {}", out.all());
    assert_eq!(s.keys("cs/").await, ["cs/held", "cs/retained"]);
    let summary: serde_json::Value =
        serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["totals"]["objects_held"], 2, "{}", out.stdout);
    assert_eq!(summary["totals"]["objects_erased"], 2);
    let reasons = ws
        .last_records()
        .into_iter()
        .find_map(|r| match r.event {
            Event::ObjectHold { reasons, .. } => Some(reasons),
            _ => None,
        })
        .expect("an object_hold record");
    assert_eq!(reasons.get("legal_hold"), Some(&1));
    assert_eq!(reasons.get("governance"), Some(&1));
}

/// More than 1,000 keys: every DeleteObjects request carries at most 1,000.
async fn thousands_of_keys_are_split(kind: Kind) {
    let s = TestStore::create(kind, Bucket::default()).await;
    let n = 2_345u64;
    s.put_many((0..n).map(|i| format!("bulk/{i:05}")).collect())
        .await;
    s.put("keep/one").await;
    let job = "name = \"bulk\"\npolicy = \"IV(2)1\"\n[[rules]]\nname = \"bulk\"\nstore = \"media\"\nprefix = \"bulk/\"\nbatch_size = 1500\n";
    let ws = workspace(&s, &[("bulk.toml", job)]);
    let out = run(&ws, &["run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let sizes = delete_request_sizes(&out.stderr);
    assert!(
        sizes.iter().all(|&k| (1..=1_000).contains(&k)),
        "request sizes {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<u64>(), n, "{sizes:?}");
    // Two audited batches (1,500 + 845) split into 1,000 + 500 and 845.
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sorted, [500, 845, 1_000], "{sizes:?}");
    assert!(s.keys("bulk/").await.is_empty());
    assert_eq!(s.keys("").await, ["keep/one"]);
    let batches = ws
        .last_records()
        .iter()
        .filter(|r| r.event.kind() == "object_batch")
        .count();
    assert_eq!(batches, 2);
}

/// A versioned bucket keeps neither versions nor delete markers of erased keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_bucket_loses_every_version_and_marker() {
    let s = TestStore::create(
        Kind::S3,
        Bucket {
            versioned: true,
            object_lock: false,
        },
    )
    .await;
    for _ in 0..3 {
        s.put("v/a").await;
    }
    s.put("v/b").await;
    s.put("v/gone").await;
    let c = common::objects::client();
    c.delete_object()
        .bucket(&s.bucket)
        .key("v/gone")
        .send()
        .await
        .unwrap();
    s.put("w/other").await;
    let before = s.versions("v/").await;
    assert_eq!(before.len(), 6, "3 + 1 + 1 versions and 1 delete marker");
    assert_eq!(before.iter().filter(|v| v.delete_marker).count(), 1);
    let job = "name = \"v\"\npolicy = \"IV(2)1\"\n[[rules]]\nname = \"v\"\nstore = \"media\"\nprefix = \"v/\"\n";
    let ws = workspace(&s, &[("v.toml", job)]);
    let out = run(&ws, &["run", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let listed = c
        .list_object_versions()
        .bucket(&s.bucket)
        .prefix("v/")
        .send()
        .await
        .unwrap();
    assert!(listed.versions().is_empty(), "no version left");
    assert!(listed.delete_markers().is_empty(), "no delete marker left");
    assert_eq!(s.versions("w/").await.len(), 1, "other prefixes untouched");
    let rules = json_rules(&out.stdout);
    assert_eq!(rules[0]["objects"][0]["objects"], 3);
    assert_eq!(rules[0]["objects"][0]["versions"], 6);
}

/// An unreachable store fails its rule with a clear message; the other rules complete (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_fails_alone() {
    let s = TestStore::create(Kind::Fs, Bucket::default()).await;
    s.put("tmp/a").await;
    let jobs = "name = \"two\"\npolicy = \"IV(2)1\"\n[[rules]]\nname = \"on-dead\"\nstore = \"dead\"\nprefix = \"tmp/\"\n[[rules]]\nname = \"on-media\"\nstore = \"media\"\nprefix = \"tmp/\"\n";
    let ws = workspace(&s, &[("two.toml", jobs)]);
    set_stores(
        &ws,
        &format!(
            "{}\n[stores.dead]\nkind = \"s3\"\nbucket = \"nowhere\"\nendpoint = \"http://127.0.0.1:9\"\npath_style = true\nregion = \"cn-east-2\"\nmax_attempts = 2\n",
            s.toml("media")
        ),
    );
    let started = std::time::Instant::now();
    let out = run(&ws, &["run"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "a dead endpoint fails fast"
    );
    assert!(
        out.stdout.contains("store `dead`") && out.stdout.contains("cannot reach"),
        "{}",
        out.stdout
    );
    assert!(s.keys("tmp/").await.is_empty(), "the other rule completed");
    assert!(
        ws.last_records()
            .iter()
            .any(|r| r.event.kind() == "failure")
    );
    let check = run(&ws, &["check"]);
    assert_ne!(
        check.code,
        0,
        "check reports the dead store: {}",
        check.all()
    );
    assert!(check.stdout.contains("dead"), "{}", check.stdout);
}

/// Offline validation points at the file, line and column.
#[test]
fn object_config_errors_have_positions() {
    let job = "name = \"bad\"\npolicy = \"IV(2)1\"\n[[rules]]\nname = \"r\"\ntarget = \"app.users\"\nselect = { column = \"cancelled_at\", older_than = \"15d\" }\naction = \"delete\"\n  [[rules.objects]]\n  store = \"media\"\n  prefix = \"avatars/{id}\"\n[[rules]]\nname = \"o\"\nstore = \"nope\"\nprefix = \"x/\"\n";
    let ws = Workspace::new("sqlite::memory:", &[("bad.toml", job)]);
    let text = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(
        ws.config(),
        text.replace(
            "region = \"cn-east-2\"\n\n[audit]",
            "region = \"eu-west-1\"\n\n[audit]",
        ),
    )
    .unwrap();
    let out = ws.lethe_env(&["check"], &aws_env());
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr.contains("bad.toml:10:12") && out.stderr.contains("would also match id 10"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("bad.toml:13:9") && out.stderr.contains("store `nope`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("lethe.toml") && out.stderr.contains("`eu-west-1`"),
        "a store outside allowed_regions is refused: {}",
        out.stderr
    );
}

/// Cancelled accounts: avatar prefix, ID-card key and ticket objects go with
/// the rows. A user whose avatar is under legal hold goes too, with every
/// other object of theirs: only the held avatar stays, listed as pending.
async fn row_linked_objects(engine: Engine, kind: Kind) {
    let db = TestDb::create(engine).await;
    let seeded = db.seed(200, now()).await;
    let s = TestStore::create(
        kind,
        Bucket {
            versioned: true,
            object_lock: true,
        },
    )
    .await;
    lethe::demo::seed_objects(s.store.as_ref(), &seeded)
        .await
        .unwrap();
    // One cancelled user's avatar is under legal hold: only that object stays.
    let locked = seeded.cancelled_due[1];
    s.put_with(
        &format!("avatars/{locked}/avatar.jpg"),
        &[],
        LockState {
            legal_hold: true,
            ..Default::default()
        },
    )
    .await;
    let ws = Workspace::shipped(&db.url);
    set_stores(&ws, &s.toml("media"));
    let plan = run(
        &ws,
        &[
            "plan",
            "--job",
            "cancelled-accounts",
            "--as-of",
            AS_OF,
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    let rules = json_rules(&plan.stdout);
    let erase = &rules[0];
    let avatars = erase["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["via"] == "media:avatars/{id}/")
        .expect("the plan counts the avatar objects");
    let due = seeded.cancelled_due.len() as u64;
    assert_eq!(avatars["objects"], 2 * due - 1, "{}", plan.stdout);
    assert_eq!(avatars["held"], 1);

    let out = run(
        &ws,
        &["run", "--job", "cancelled-accounts", "--as-of", AS_OF],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("pending objects (kept by Object Lock, retried every run): 1")
            && out.stdout.contains("  media: 1 legal hold"),
        "the report lists what is pending and why: {}",
        out.stdout
    );
    let tickets_of = |u: i64| {
        seeded
            .tickets
            .iter()
            .filter(move |(_, user, _)| *user == u)
            .map(|(t, _, _)| *t)
    };
    for &id in &seeded.cancelled_due {
        let rows = db
            .count(&format!("SELECT COUNT(*) FROM users WHERE id = {id}"))
            .await;
        let avatars = s.keys(&format!("avatars/{id}/")).await;
        let card = s.keys(&lethe::demo::id_card_key_of(id)).await;
        if id == locked {
            assert_eq!(rows, 0, "the user whose avatar is held is erased");
            assert_eq!(
                avatars,
                [format!("avatars/{id}/avatar.jpg")],
                "only the held object stays"
            );
            assert!(card.is_empty(), "the ID card goes");
            for t in tickets_of(id) {
                assert!(s.keys(&format!("tickets/{t}/")).await.is_empty());
            }
        } else {
            assert_eq!(rows, 0, "user {id} erased");
            assert!(avatars.is_empty(), "avatars of {id} erased");
            assert!(card.is_empty(), "ID card of {id} erased");
            assert!(
                s.versions(&format!("avatars/{id}/")).await.is_empty(),
                "no version or marker left"
            );
            for t in tickets_of(id) {
                assert!(s.keys(&format!("tickets/{t}/")).await.is_empty());
            }
        }
    }
    // Everyone else keeps their objects.
    let kept = (1..=200i64)
        .filter(|i| !seeded.cancelled_due.contains(i))
        .count();
    assert_eq!(s.keys("idcards/").await.len(), kept);
    let records = ws.last_records();
    let hold = records
        .iter()
        .find_map(|r| match &r.event {
            Event::ObjectHold { rows, subjects, .. } => Some((*rows, subjects.clone())),
            _ => None,
        })
        .expect("an object_hold record");
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    assert_eq!(hold.0, 0, "no row is kept");
    assert!(hold.1.is_empty());
    // The locked user went with the others (their subject is in a batch).
    let batched: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { subjects, .. } => Some(subjects.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(batched.contains(&keys.subject(&locked.to_string())));
    let erased: u64 = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Batch { objects, .. } => Some(objects.iter().map(|o| o.objects).sum::<u64>()),
            _ => None,
        })
        .sum();
    let tickets = seeded
        .cancelled_due
        .iter()
        .flat_map(|&u| tickets_of(u))
        .count() as u64;
    assert_eq!(erased, 3 * due - 1 + 2 * tickets, "every object is audited");
    let again = run(
        &ws,
        &["run", "--job", "cancelled-accounts", "--as-of", AS_OF],
    );
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("  media: 1 legal hold"),
        "still held, still pending: {}",
        again.stdout
    );
    assert_eq!(
        s.keys(&format!("avatars/{locked}/")).await.len(),
        1,
        "a later run never forces the hold"
    );
    let text = ws.audit_text();
    for id in &seeded.cancelled_due {
        assert!(
            !text.contains(&format!("avatars/{id}/")),
            "no key name in the audit log"
        );
    }
    assert!(!text.contains("idcards/") && !text.contains(".jpg"));
    assert!(text.contains("\"pending_retry\""), "the retry is audited");
}

/// A key column that would reach outside the folder fails the batch: the
/// rows stay, nothing is deleted, and the value is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_object_name_fails_the_batch_and_keeps_the_rows() {
    let db = TestDb::create(Engine::Sqlite).await;
    let seeded = db.seed(50, now()).await;
    let s = TestStore::create(Kind::Fs, Bucket::default()).await;
    lethe::demo::seed_objects(s.store.as_ref(), &seeded)
        .await
        .unwrap();
    let victim = seeded.cancelled_due[0];
    db.exec(&format!(
        "UPDATE users SET id_card_front_key = '../../outside/secret-{victim}' WHERE id = {victim}"
    ))
    .await;
    let ws = Workspace::shipped(&db.url);
    set_stores(&ws, &s.toml("media"));
    let before = db.count("SELECT COUNT(*) FROM users").await;
    let out = run(
        &ws,
        &["run", "--job", "cancelled-accounts", "--as-of", AS_OF],
    );
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout.contains("cannot name a folder"),
        "{}",
        out.stdout
    );
    assert!(
        !out.all().contains("outside/secret"),
        "the value is not shown"
    );
    assert!(!ws.audit_text().contains("outside/secret"));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM users").await,
        before,
        "the batch was not committed"
    );
    assert_eq!(s.keys(&format!("avatars/{victim}/")).await.len(), 2);
}

/// Lift a legal hold from every version of `key` (what a legal team does
/// when the matter closes).
async fn lift_legal_hold(s: &TestStore, key: &str) {
    use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
    let c = common::objects::client();
    for v in s.versions(key).await.into_iter().filter(|v| v.key == key) {
        c.put_object_legal_hold()
            .bucket(&s.bucket)
            .key(key)
            .set_version_id(v.version_id.clone())
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(ObjectLockLegalHoldStatus::Off)
                    .build(),
            )
            .send()
            .await
            .expect("lift the legal hold");
    }
}

fn pending_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "pending")
        .collect()
}

/// Partial holds on moto: the rows and every free object go at once; the
/// held avatars stay pending until their holds end — a legal hold the test
/// lifts, a GOVERNANCE retention of a few seconds that runs out by S3's
/// clock — and a later run erases each, then lists nothing. The state store
/// (which keeps the pending list) is on the same engine as the data.
async fn held_objects_stay_pending_until_their_hold_ends(engine: Engine) {
    let db = TestDb::create(engine).await;
    let seeded = db.seed(30, now()).await;
    let s = TestStore::create(
        Kind::S3,
        Bucket {
            versioned: true,
            object_lock: true,
        },
    )
    .await;
    lethe::demo::seed_objects(s.store.as_ref(), &seeded)
        .await
        .unwrap();
    let (legal, retained) = (seeded.cancelled_due[0], seeded.cancelled_due[1]);
    let legal_key = format!("avatars/{legal}/avatar.jpg");
    let retained_key = format!("avatars/{retained}/avatar.jpg");
    s.put_with(
        &legal_key,
        &[],
        LockState {
            legal_hold: true,
            ..Default::default()
        },
    )
    .await;
    // Long enough to outlast the first two runs on a loaded machine.
    let until = chrono::Utc::now() + chrono::TimeDelta::seconds(25);
    s.put_with(
        &retained_key,
        &[],
        LockState {
            mode: Some(LockMode::Governance),
            retain_until: Some(until),
            ..Default::default()
        },
    )
    .await;
    let ws = Workspace::shipped(&db.url);
    set_stores(&ws, &s.toml("media"));
    if engine != Engine::Sqlite {
        let cfg = std::fs::read_to_string(ws.config()).unwrap();
        let cfg = cfg.replace(
            &format!("url = \"{}\"", ws.state_url()),
            &format!("url = \"{}\"", db.url),
        );
        std::fs::write(ws.config(), cfg).unwrap();
    }
    let job = [
        "run",
        "--job",
        "cancelled-accounts",
        "--as-of",
        AS_OF,
        "--output",
        "json",
    ];

    let first = run(&ws, &job);
    assert_eq!(first.code, 0, "{}", first.all());
    for id in [legal, retained] {
        let rows = db
            .count(&format!("SELECT COUNT(*) FROM users WHERE id = {id}"))
            .await;
        assert_eq!(rows, 0, "user {id} is erased although an object is held");
        assert!(s.keys(&lethe::demo::id_card_key_of(id)).await.is_empty());
        assert!(s.keys(&format!("avatars/{id}/thumb.jpg")).await.is_empty());
    }
    assert_eq!(s.keys(&legal_key).await, std::slice::from_ref(&legal_key));
    assert_eq!(
        s.keys(&retained_key).await,
        std::slice::from_ref(&retained_key)
    );
    let pending = pending_lines(&first.stdout);
    assert_eq!(pending.len(), 2, "{}", first.stdout);
    let by = |r: &str| {
        pending
            .iter()
            .find(|l| l["reason"] == r)
            .cloned()
            .unwrap_or_else(|| panic!("a {r} line: {}", first.stdout))
    };
    assert_eq!(by("legal_hold")["objects"], 1);
    assert_eq!(by("legal_hold")["store"], "media");
    assert!(by("legal_hold").get("until").is_none());
    assert_eq!(by("governance")["objects"], 1);
    assert_eq!(
        by("governance")["until"],
        until.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );

    // The plan shows the same list (it never changes it).
    let plan = run(
        &ws,
        &[
            "plan",
            "--job",
            "cancelled-accounts",
            "--as-of",
            AS_OF,
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(pending_lines(&plan.stdout), pending);

    lift_legal_hold(&s, &legal_key).await;
    let second_started = chrono::Utc::now();
    let second = run(&ws, &job);
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(
        s.keys(&legal_key).await.is_empty(),
        "the lifted hold's object is erased"
    );
    assert!(
        s.versions(&legal_key).await.is_empty(),
        "every version of it"
    );
    if second_started < until - chrono::TimeDelta::seconds(2) {
        assert_eq!(
            s.keys(&retained_key).await.len(),
            1,
            "retention not over yet"
        );
        let left = pending_lines(&second.stdout);
        assert_eq!(left.len(), 1, "{}", second.stdout);
        assert_eq!(left[0]["reason"], "governance");
    }

    // `--as-of` does not move S3's clock: wait for the real one.
    let wait = (until - chrono::Utc::now()).num_milliseconds() + 1500;
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
    }
    let third = run(&ws, &job);
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(
        s.versions(&retained_key).await.is_empty(),
        "retention over: erased"
    );
    assert!(pending_lines(&third.stdout).is_empty(), "{}", third.stdout);

    let retries: Vec<(u64, u64)> = ws
        .audit_files()
        .iter()
        .flat_map(|f| lethe::audit::verify::read_records(f).unwrap())
        .filter_map(|r| match r.event {
            Event::PendingRetry { erased, .. } => Some((erased.objects, erased.held)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.iter().map(|r| r.0).sum::<u64>(), 2, "{retries:?}");
    let verify = run(&ws, &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    let text = ws.audit_text();
    for id in [legal, retained] {
        assert!(
            !text.contains(&format!("avatars/{id}/")),
            "no key name in the audit log"
        );
    }
    assert!(!text.contains(".jpg") && !text.contains("idcards/"));
    for out in [&first, &second, &third] {
        assert!(!out.all().contains(".jpg"), "no key name in the output");
    }
}

async fn row_linked_objects_s3(engine: Engine) {
    row_linked_objects(engine, Kind::S3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_linked_objects_local_folder_sqlite() {
    row_linked_objects(Engine::Sqlite, Kind::Fs).await
}

on_every_engine!(
    row_linked_objects_s3,
    held_objects_stay_pending_until_their_hold_ends
);

/// The behaviour suite, against both stores.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() { super::$scenario(super::Kind::S3).await }
            )*
        }
        mod local_folder {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() { super::$scenario(super::Kind::Fs).await }
            )*
        }
    };
}

on_both_stores!(
    prefix_age_and_tag_selection,
    object_lock_keeps_and_reports,
    thousands_of_keys_are_split,
);

#[test]
fn endpoint_defaults_to_the_moto_script_port() {
    if std::env::var("LETHE_TEST_S3_ENDPOINT").is_err() {
        assert_eq!(endpoint(), "http://127.0.0.1:5077");
    }
}
