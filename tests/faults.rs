//! The SIGKILL fault suite: `lethe run` killed at random moments, on every
//! engine, on a cascade users → posts → comments with an anonymized child
//! (orders) and row-linked objects in a folder store; after every kill, the
//! next run finishes the work and the invariants are checked:
//!
//! - exactly the due rows are gone (with their posts and comments), their
//!   orders anonymized, and nothing else changed;
//! - no object is left whose row is gone, and every other object stays;
//! - every deleted user is in exactly one committed batch record (a batch the
//!   crashed run recorded but did not commit is named in doubt by the
//!   recovery, and only such a batch is recorded twice);
//! - `audit verify` passes (the killed run is `crashed, recovered by`);
//! - one more run finds nothing to do.
//!
//! Kill delays come from a seeded xorshift (`LETHE_FAULT_SEED`, printed), so a
//! failure can be replayed. The dead run's leases are expired by moving
//! their expiry into the past (time passing, as `--as-of` does for data),
//! instead of waiting out the 5 s minimum lease.

mod common;

use common::{AS_OF, Engine, KEY, TestDb, Workspace};
use lethe::audit::Event;
use lethe::audit::event::Record;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

const USERS_PER_ROUND: i64 = 24;
const KILLS_PER_ENGINE: usize = 11;

const JOB: &str = r#"
name = "cancelled"
policy = "IV(2)2"
[[rules]]
name = "erase-cancelled-users"
target = "app.users"
key = "id"
subject = "email"
select = { column = "cancelled_at", older_than = "15d" }
action = "delete"
batch_size = 2

  [[rules.children]]
  target = "app.posts"
  foreign_key = "user_id"
  action = "delete"

    [[rules.children.children]]
    target = "app.comments"
    foreign_key = "post_id"
    action = "delete"

  [[rules.children]]
  target = "app.orders"
  foreign_key = "user_id"
  action = { anonymize = { user_id = "null", consignee = "redact" } }

  [[rules.objects]]
  store = "media"
  prefix = "avatars/{id}/"
"#;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed_for(engine: Engine) -> u64 {
    let base: u64 = std::env::var("LETHE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e7e);
    base ^ match engine {
        Engine::Sqlite => 1,
        Engine::Postgres => 2,
        Engine::MariaDb => 3,
    }
}

async fn schema(db: &TestDb, engine: Engine) {
    let ts = match engine {
        Engine::MariaDb => "DATETIME",
        _ => "TIMESTAMP",
    };
    for sql in [
        format!(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100) NOT NULL, cancelled_at {ts} NULL)"
        ),
        "CREATE INDEX users_cancelled_at ON users (cancelled_at)".into(),
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id), body VARCHAR(100) NOT NULL)".into(),
        "CREATE INDEX posts_user ON posts (user_id)".into(),
        "CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts (id), body VARCHAR(100) NOT NULL)".into(),
        "CREATE INDEX comments_post ON comments (post_id)".into(),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NULL REFERENCES users (id), consignee VARCHAR(100) NULL)".into(),
        "CREATE INDEX orders_user ON orders (user_id)".into(),
    ] {
        db.exec(&sql).await;
    }
}

/// Is user `id` due (cancelled long enough before `AS_OF`)? Two in three are.
fn due(id: i64) -> bool {
    id % 3 != 0
}

/// Add one round of users (ids `round*100 + 1 ..`), each with two posts of
/// two comments, one order and an avatar of two sizes.
async fn add_round(db: &TestDb, ws: &Workspace, round: i64) -> Vec<i64> {
    let ids: Vec<i64> = (1..=USERS_PER_ROUND).map(|i| round * 100 + i).collect();
    let mut users = Vec::new();
    let (mut posts, mut comments, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for &id in &ids {
        // Distinct instants, so the batch order (cancelled_at, id) is known.
        let at = if due(id) {
            format!(
                "'2026-0{}-{:02} {:02}:{:02}:00'",
                1 + round % 5,
                1 + (id % 100) / 24,
                id % 24,
                (id * 7) % 60
            )
        } else if id % 2 == 0 {
            "'2026-06-10 00:00:00'".into() // cancelled, not yet due
        } else {
            "NULL".into()
        };
        users.push(format!("({id}, 'person{id}@example.org', {at})"));
        for p in 0..2 {
            let pid = id * 10 + p;
            posts.push(format!("({pid}, {id}, 'post {pid}')"));
            for c in 0..2 {
                comments.push(format!("({}, {pid}, 'comment')", pid * 10 + c));
            }
        }
        orders.push(format!("({id}, {id}, 'Consignee {id}')"));
        for size in ["small", "large"] {
            let p = ws
                .path()
                .join(format!("objects/media/avatars/{id}/{size}.jpg"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"jpeg").unwrap();
        }
    }
    for (table, cols, rows) in [
        ("users", "id, email, cancelled_at", users),
        ("posts", "id, user_id, body", posts),
        ("comments", "id, post_id, body", comments),
        ("orders", "id, user_id, consignee", orders),
    ] {
        db.exec(&format!(
            "INSERT INTO {table} ({cols}) VALUES {}",
            rows.join(", ")
        ))
        .await;
    }
    ids
}

fn workspace(db: &TestDb) -> Workspace {
    let ws = Workspace::new(&db.url, &[("cancelled.toml", JOB)]);
    let cfg = std::fs::read_to_string(ws.config()).unwrap();
    let cfg = cfg
        .replacen(
            "[sources.app]\n",
            "[sources.app]\nbatch_pause = \"40ms\"\n",
            1,
        )
        .replace("lease_ttl = \"30s\"", "lease_ttl = \"5s\"");
    std::fs::write(ws.config(), cfg).unwrap();
    ws
}

/// Time passes for the leases: every lease is expired now.
async fn expire_leases(ws: &Workspace) {
    let state = lethe::sql::Db::connect("state", &ws.state_url(), 1, Duration::ZERO)
        .await
        .unwrap();
    // A run killed before it created the state store left no lease.
    let _ = state
        .execute(&common::raw("UPDATE lethe_leases SET expires_ms = 0"))
        .await;
    state.close().await;
}

/// Start a run, kill it after `delay`. `true` if it was still running.
fn kill_after(ws: &Workspace, delay: Duration, n: usize) -> bool {
    let log = std::fs::File::create(ws.path().join(format!("killed-{n}.log"))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["run", "--as-of", AS_OF, "--config"])
        .arg(ws.config())
        .arg("--jobs")
        .arg(ws.jobs())
        .env("LETHE_AUDIT_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

/// Which contiguous run of `order` (the due keys in batch order) has this digest?
fn keys_of(keys: &lethe::keys::Keys, order: &[i64], count: u64, digest: &str) -> Vec<i64> {
    let n = count as usize;
    for w in order.windows(n) {
        let list: Vec<String> = w.iter().map(i64::to_string).collect();
        if keys.digest(&list) == digest {
            return w.to_vec();
        }
    }
    panic!("batch digest {digest} is no run of {count} due keys");
}

fn all_records(ws: &Workspace) -> Vec<Vec<Record>> {
    ws.audit_files()
        .iter()
        .map(|f| lethe::audit::verify::read_records(f).unwrap())
        .collect()
}

/// Check every invariant; returns (batches named in doubt so far, users
/// whose in-doubt batch had not committed and was redone).
async fn check_invariants(
    db: &TestDb,
    ws: &Workspace,
    all_ids: &[i64],
    order: &[i64],
    ctx: &str,
) -> (usize, usize) {
    // One read per table (a connection per query would dominate the suite).
    let ints = |rows: Vec<Vec<Option<String>>>| -> Vec<Vec<Option<i64>>> {
        rows.into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| c.map(|v| v.trim().parse().unwrap()))
                    .collect()
            })
            .collect()
    };
    let present: BTreeSet<i64> = ints(db.rows("SELECT CAST(id AS CHAR(20)) FROM users").await)
        .into_iter()
        .map(|r| r[0].unwrap())
        .collect();
    let mut posts: BTreeMap<i64, u64> = BTreeMap::new();
    for r in ints(db.rows("SELECT CAST(user_id AS CHAR(20)) FROM posts").await) {
        *posts.entry(r[0].unwrap()).or_default() += 1;
    }
    let mut comments: BTreeMap<i64, u64> = BTreeMap::new();
    for r in ints(
        db.rows("SELECT CAST(post_id AS CHAR(20)) FROM comments")
            .await,
    ) {
        *comments.entry(r[0].unwrap() / 10).or_default() += 1;
    }
    let orders: BTreeMap<i64, (Option<String>, Option<String>)> = db
        .rows("SELECT CAST(id AS CHAR(20)), CAST(user_id AS CHAR(20)), consignee FROM orders")
        .await
        .into_iter()
        .map(|r| {
            let t = |c: &Option<String>| c.as_deref().map(|v| v.trim().to_string());
            (t(&r[0]).unwrap().parse().unwrap(), (t(&r[1]), t(&r[2])))
        })
        .collect();
    for &id in all_ids {
        let avatars = ws.path().join(format!("objects/media/avatars/{id}"));
        let objects = std::fs::read_dir(&avatars).map(|d| d.count()).unwrap_or(0);
        let posts = posts.get(&id).copied().unwrap_or(0);
        let comments = comments.get(&id).copied().unwrap_or(0);
        let order = orders.get(&id).expect("orders are kept");
        if due(id) {
            assert!(!present.contains(&id), "{ctx}: due user {id} is gone");
            assert_eq!(
                (posts, comments),
                (0, 0),
                "{ctx}: with its posts and comments"
            );
            assert_eq!(objects, 0, "{ctx}: no object left of erased user {id}");
            assert_eq!(order.0, None, "{ctx}: order {id} anonymized");
            assert_ne!(
                order.1.as_deref(),
                Some(format!("Consignee {id}").as_str()),
                "{ctx}: order {id} redacted"
            );
        } else {
            assert!(
                present.contains(&id),
                "{ctx}: user {id} is not due and stays"
            );
            assert_eq!(
                (posts, comments),
                (2, 4),
                "{ctx}: user {id} keeps its content"
            );
            assert_eq!(objects, 2, "{ctx}: user {id} keeps its avatar");
            assert_eq!(order.0.as_deref(), Some(id.to_string().as_str()));
            assert_eq!(order.1.as_deref(), Some(format!("Consignee {id}").as_str()));
        }
    }

    // Every erased user in exactly one committed batch record.
    let keys = lethe::keys::Keys::from_secret(KEY.as_bytes());
    let logs = all_records(ws);
    let mut doubted: BTreeSet<(String, u64)> = BTreeSet::new();
    for r in logs.iter().flatten() {
        if let Event::Recovery {
            crashed_run,
            in_doubt,
            ..
        } = &r.event
        {
            for d in in_doubt {
                doubted.insert((crashed_run.clone(), d.batch));
            }
        }
    }
    let mut seen: BTreeMap<i64, Vec<(String, u64)>> = BTreeMap::new();
    for log in &logs {
        let rolled: BTreeSet<u64> = log
            .iter()
            .filter_map(|r| match &r.event {
                Event::BatchRollback { batch, .. } => Some(*batch),
                _ => None,
            })
            .collect();
        for r in log {
            if let Event::Batch {
                batch,
                count,
                keys_digest,
                subjects,
                ..
            } = &r.event
            {
                if rolled.contains(batch) {
                    continue;
                }
                let list = keys_of(&keys, order, *count, keys_digest);
                let mut want: Vec<String> = list
                    .iter()
                    .map(|k| keys.subject(&format!("person{k}@example.org")))
                    .collect();
                want.sort();
                let mut got = subjects.clone();
                got.sort();
                assert_eq!(got, want, "{ctx}: the batch's subjects are its rows'");
                for k in list {
                    seen.entry(k).or_default().push((r.run.clone(), *batch));
                }
            }
        }
    }
    let mut redone = 0;
    for &id in all_ids.iter().filter(|i| due(**i)) {
        let recs = seen.get(&id).cloned().unwrap_or_default();
        redone += usize::from(recs.len() > 1);
        let committed: Vec<_> = recs.iter().filter(|b| !doubted.contains(b)).collect();
        match committed.len() {
            1 => {}
            // Only a batch in doubt that did commit is the one record.
            0 => assert_eq!(recs.len(), 1, "{ctx}: user {id} in {recs:?}"),
            _ => panic!(
                "{ctx}: user {id} is in {} committed batches: {recs:?}",
                committed.len()
            ),
        }
    }
    let text = ws.audit_text();
    assert!(
        !text.contains("@example.org"),
        "{ctx}: no email in the audit log"
    );
    assert!(
        !text.contains("Consignee"),
        "{ctx}: no name in the audit log"
    );

    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{ctx}: {}", verify.all());
    assert!(
        !verify.stdout.contains("NOT sealed"),
        "{ctx}: {}",
        verify.stdout
    );

    let again = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(again.code, 0, "{ctx}: {}", again.all());
    let last = ws.last_records();
    assert!(
        !last
            .iter()
            .any(|r| matches!(r.event, Event::Batch { .. } | Event::Recovery { .. })),
        "{ctx}: the next run has nothing to do"
    );
    (doubted.len(), redone)
}

async fn sigkill_at_random_moments(engine: Engine) {
    let seed = seed_for(engine);
    let mut rng = Rng(seed);
    eprintln!("fault suite on {engine:?}: LETHE_FAULT_SEED base, engine seed {seed:#x}");
    let db = TestDb::create(engine).await;
    schema(&db, engine).await;
    let ws = workspace(&db);
    let mut all_ids = Vec::new();
    let mut kills = 0;
    let mut recovered = 0;
    let mut stats = (0, 0);
    for round in 1..=(KILLS_PER_ENGINE as i64 * 3) {
        if kills >= KILLS_PER_ENGINE {
            break;
        }
        all_ids.extend(add_round(&db, &ws, round).await);
        // Each round's run takes at least 8 batches × 40 ms of pauses (16
        // due users, 2 a batch) plus its start: a delay below that lands
        // mid-run however fast the machine is.
        let delay = Duration::from_millis(20 + rng.below(300));
        let killed = kill_after(&ws, delay, round as usize);
        let ctx = format!("{engine:?} round {round} (kill after {delay:?}, seed {seed:#x})");
        if killed {
            kills += 1;
            expire_leases(&ws).await;
        }
        let out = ws.lethe(&["run", "--as-of", AS_OF]);
        assert_eq!(out.code, 0, "{ctx}: {}", out.all());
        if killed
            && ws
                .last_records()
                .iter()
                .any(|r| matches!(r.event, Event::Recovery { .. }))
        {
            recovered += 1;
        }
        stats = check_invariants(&db, &ws, &all_ids, &full_order(&all_ids), &ctx).await;
    }
    assert_eq!(kills, KILLS_PER_ENGINE, "enough kills landed mid-run");
    eprintln!(
        "fault suite on {engine:?}: {kills} kills, {recovered} recovered runs, {} batches in doubt, {} users redone after an uncommitted batch",
        stats.0, stats.1
    );
}

/// Every due key in batch order across rounds: rounds were deleted one after
/// another, each in (cancelled_at, id) order; digests are matched against
/// windows of this list.
fn full_order(all_ids: &[i64]) -> Vec<i64> {
    let mut by_round: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &id in all_ids.iter().filter(|i| due(**i)) {
        by_round.entry(id / 100).or_default().push(id);
    }
    let mut out = Vec::new();
    for (round, mut ids) in by_round {
        ids.sort_by_key(|&id| (cancelled_key(round, id), id));
        out.extend(ids);
    }
    out
}

/// The `cancelled_at` a due user of `round` gets, as a sortable tuple.
fn cancelled_key(round: i64, id: i64) -> (i64, i64, i64, i64) {
    (1 + round % 5, 1 + (id % 100) / 24, id % 24, (id * 7) % 60)
}

on_every_engine!(sigkill_at_random_moments);
