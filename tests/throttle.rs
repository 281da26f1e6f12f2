//! `pause_when` against real servers: a real PostgreSQL streaming replica
//! (started by `scripts/replica.sh start pg`) whose replay is paused to make
//! lag, a real MariaDB primary/replica pair (`scripts/replica.sh start
//! mariadb`) whose SQL thread is stopped, and real sessions that sleep or
//! queue on a row lock.
//!
//! The replica tests fail, never skip, when the replica is not running.

mod common;

use common::{Engine, TestDb, raw};
use lethe::config::throttle::PauseWhen;
use lethe::engine::throttle::{Error, Reason, Throttle};
use lethe::sql::Db;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Replay is paused server-wide: one replica test at a time.
static REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pg_replica_url() -> String {
    std::env::var("LETHE_TEST_PG_REPLICA_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".into())
}

async fn pg_replica() -> Db {
    let url = pg_replica_url();
    Db::connect("replica", &url, 1, Duration::ZERO)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the PostgreSQL replica at 127.0.0.1:5433 is not reachable ({e}); start it with scripts/replica.sh start pg"
            )
        })
}

async fn set_replay(paused: bool) {
    let replica = pg_replica().await;
    let f = if paused {
        "pg_wal_replay_pause"
    } else {
        "pg_wal_replay_resume"
    };
    replica
        .execute(&raw(&format!("SELECT {f}()")))
        .await
        .unwrap_or_else(|e| panic!("{f}: {e}"));
    replica.close().await;
}

fn when() -> PauseWhen {
    PauseWhen {
        replica: None,
        replica_connection: None,
        max_lag: None,
        active_sessions: None,
        lock_waits: None,
        check_every: Duration::from_millis(200),
        max_wait: Duration::from_secs(60),
    }
}

/// Writes on the primary every 100 ms until dropped: without them a paused
/// replica has nothing to fall behind on.
struct Writer {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    async fn start(db: &TestDb) -> Writer {
        db.exec(
            "CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
        )
        .await;
        let conn = db.connect().await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                conn.execute(&raw("INSERT INTO ticks DEFAULT VALUES"))
                    .await
                    .expect("insert a tick");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            conn.close().await;
        });
        Writer {
            stop,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.await.expect("writer task");
        }
    }
}

/// Pause replay and wait until the replica is more than `over` behind.
async fn make_lag(throttle: &mut Throttle<'_>, over: Duration) {
    set_replay(true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = throttle.readings().await.expect("readings");
        if matches!(r.lag, Some(Some(l)) if l > over) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no lag after 30 s of paused replay: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A throttle on `replica`'s lag (over 1 s pauses), checked to wait not at
/// all while the replica is caught up.
async fn caught_up_lag_throttle(replica: String, source: &Db) -> Throttle<'_> {
    let pause_when = PauseWhen {
        replica: Some(replica),
        max_lag: Some(Duration::from_secs(1)),
        ..when()
    };
    let mut throttle = Throttle::connect(pause_when, source)
        .await
        .expect("connect");
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    assert_eq!(waited.total(), 0.0, "{waited:?}");
    throttle
}

#[tokio::test]
async fn replica_lag_pauses_the_loop_until_replay_resumes() {
    let _one = REPLICA.lock().await;
    set_replay(false).await;
    let db = TestDb::create(Engine::Postgres).await;
    let writer = Writer::start(&db).await;
    let source = db.connect().await;
    // Caught up: no wait at all.
    let mut throttle = caught_up_lag_throttle(pg_replica_url(), &source).await;

    make_lag(&mut throttle, Duration::from_millis(1500)).await;
    let resumer = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        set_replay(false).await;
    });
    let started = Instant::now();
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    resumer.await.expect("resumer");
    assert!(
        waited.of(Reason::ReplicaLag) >= 2.5,
        "waited {waited:?} while replay was paused for 3 s"
    );
    assert_eq!(waited.total(), waited.of(Reason::ReplicaLag));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "did not resume promptly"
    );
    let r = throttle.readings().await.expect("readings");
    assert!(
        matches!(r.lag, Some(Some(l)) if l <= Duration::from_secs(1)),
        "{r:?}"
    );
    writer.stop().await;
}

/// Without a replica URL, PostgreSQL's lag is the primary's view of its
/// standbys (`pg_stat_replication.replay_lag`).
#[tokio::test]
async fn replay_lag_is_read_on_the_primary_without_a_replica_url() {
    let _one = REPLICA.lock().await;
    set_replay(false).await;
    pg_replica().await.close().await;
    let db = TestDb::create(Engine::Postgres).await;
    let writer = Writer::start(&db).await;
    let source = db.connect().await;
    let pause_when = PauseWhen {
        max_lag: Some(Duration::from_secs(1)),
        ..when()
    };
    let mut throttle = Throttle::new(pause_when, &source, None);
    make_lag(&mut throttle, Duration::from_millis(1500)).await;
    let resumer = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        set_replay(false).await;
    });
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    resumer.await.expect("resumer");
    writer.stop().await;
    assert!(waited.of(Reason::ReplicaLag) >= 1.5, "{waited:?}");
}

#[tokio::test]
async fn replica_lag_beyond_max_wait_is_a_typed_error() {
    let _one = REPLICA.lock().await;
    set_replay(false).await;
    let db = TestDb::create(Engine::Postgres).await;
    let writer = Writer::start(&db).await;
    let source = db.connect().await;
    let pause_when = PauseWhen {
        replica: Some(pg_replica_url()),
        max_lag: Some(Duration::from_secs(1)),
        max_wait: Duration::from_secs(2),
        ..when()
    };
    let mut throttle = Throttle::connect(pause_when, &source)
        .await
        .expect("connect");
    make_lag(&mut throttle, Duration::from_millis(1500)).await;
    let started = Instant::now();
    let result = throttle.wait(&CancellationToken::new()).await;
    set_replay(false).await;
    writer.stop().await;
    let err = result.expect_err("gave up");
    let message = err.to_string();
    match err {
        Error::GaveUp { reason, waited, .. } => {
            assert_eq!(reason, Reason::ReplicaLag);
            assert!(waited >= Duration::from_secs(2), "{waited:?}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert!(
        message.contains("replica_lag") && message.contains("pause_when.max_wait"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_replica_url_naming_a_primary_is_refused() {
    let db = TestDb::create(Engine::Postgres).await;
    let source = db.connect().await;
    let pause_when = PauseWhen {
        replica: Some(db.url.clone()),
        max_lag: Some(Duration::from_secs(1)),
        ..when()
    };
    let mut throttle = Throttle::connect(pause_when, &source)
        .await
        .expect("connect");
    let err = throttle.wait(&CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, Error::NotAReplica { .. }), "{err}");
}

fn sleep_sql(engine: Engine, secs: u32) -> String {
    match engine {
        Engine::Postgres => format!("SELECT pg_sleep({secs})"),
        _ => format!("SELECT SLEEP({secs})"),
    }
}

/// Another session busy for 3 s: the loop waits it out.
async fn active_sessions_pause_the_loop(engine: Engine) {
    let db = TestDb::create(engine).await;
    let source = db.connect().await;
    let busy = db.connect().await;
    let pause_when = PauseWhen {
        active_sessions: Some(0),
        ..when()
    };
    let mut throttle = Throttle::new(pause_when, &source, None);
    let idle = throttle.readings().await.expect("readings");
    assert_eq!(
        idle.active_sessions,
        Some(0),
        "our own session is not counted"
    );
    let sleeper = tokio::spawn(async move {
        busy.execute(&raw(&sleep_sql(engine, 3)))
            .await
            .expect("sleep");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while throttle.readings().await.expect("readings").active_sessions != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the sleeping session never showed as active"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    sleeper.await.expect("sleeper");
    assert!(waited.of(Reason::ActiveSessions) >= 1.5, "{waited:?}");
    assert_eq!(waited.of(Reason::LockWaits), 0.0);
}

#[tokio::test]
async fn active_sessions_pause_the_loop_postgres() {
    active_sessions_pause_the_loop(Engine::Postgres).await;
}

#[tokio::test]
async fn active_sessions_pause_the_loop_mariadb() {
    active_sessions_pause_the_loop(Engine::MariaDb).await;
}

/// While the database is healthy its signals are read every `check_every`,
/// not at every batch boundary: a session that turns busy just after a
/// healthy reading is not seen until `check_every` has passed, and then it
/// pauses the loop.
#[tokio::test]
async fn a_healthy_reading_is_trusted_for_check_every() {
    let db = TestDb::create(Engine::Postgres).await;
    let source = db.connect().await;
    let busy = db.connect().await;
    let check_every = Duration::from_secs(3);
    let mut throttle = Throttle::new(
        PauseWhen {
            active_sessions: Some(0),
            check_every,
            ..when()
        },
        &source,
        None,
    );
    let cancel = CancellationToken::new();
    assert_eq!(throttle.wait(&cancel).await.expect("wait").total(), 0.0);
    let healthy_at = Instant::now();
    let sleeper = tokio::spawn(async move {
        busy.execute(&raw("SELECT pg_sleep(6)"))
            .await
            .expect("sleep");
    });
    // A second throttle watches for the busy session (reading through the
    // first would be the fresh reading this test is about).
    let mut observer = Throttle::new(
        PauseWhen {
            active_sessions: Some(0),
            ..when()
        },
        &source,
        None,
    );
    while observer.readings().await.expect("readings").active_sessions != Some(1) {
        assert!(
            healthy_at.elapsed() < Duration::from_secs(2),
            "the sleeping session took too long to show as active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trusted = throttle.wait(&cancel).await.expect("wait");
    assert_eq!(
        trusted.total(),
        0.0,
        "within check_every of a healthy reading nothing is read again"
    );
    assert!(
        healthy_at.elapsed() < check_every,
        "the test was too slow to see the cached reading"
    );
    tokio::time::sleep_until((healthy_at + check_every + Duration::from_millis(100)).into()).await;
    let waited = throttle.wait(&cancel).await.expect("wait");
    sleeper.await.expect("sleeper");
    assert!(
        waited.of(Reason::ActiveSessions) >= 1.5,
        "after check_every the busy session is read and waited for: {waited:?}"
    );
}

/// An UPDATE blocked on a row another transaction holds: the loop waits
/// until the holder commits.
async fn lock_waits_pause_the_loop(engine: Engine) {
    let db = TestDb::create(engine).await;
    db.exec("CREATE TABLE accounts (id integer PRIMARY KEY, balance integer NOT NULL)")
        .await;
    db.exec("INSERT INTO accounts VALUES (1, 10)").await;
    let source = db.connect().await;
    let holder = db.connect().await;
    let blocked = db.connect().await;
    let mut tx = holder.begin().await.expect("begin");
    tx.execute(
        &holder,
        &raw("UPDATE accounts SET balance = 11 WHERE id = 1"),
    )
    .await
    .expect("hold the row");
    let waiter = tokio::spawn(async move {
        blocked
            .execute(&raw("UPDATE accounts SET balance = 12 WHERE id = 1"))
            .await
            .expect("blocked update")
    });
    let pause_when = PauseWhen {
        lock_waits: Some(0),
        ..when()
    };
    let mut throttle = Throttle::new(pause_when, &source, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while throttle.readings().await.expect("readings").lock_waits != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the blocked UPDATE never showed as a lock wait"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.commit(&holder).await.expect("commit");
    });
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    release.await.expect("release");
    assert_eq!(waiter.await.expect("waiter"), 1);
    assert!(waited.of(Reason::LockWaits) >= 1.5, "{waited:?}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM accounts WHERE balance = 12")
            .await,
        1
    );
}

#[tokio::test]
async fn lock_waits_pause_the_loop_postgres() {
    lock_waits_pause_the_loop(Engine::Postgres).await;
}

#[tokio::test]
async fn lock_waits_pause_the_loop_mariadb() {
    lock_waits_pause_the_loop(Engine::MariaDb).await;
}

#[tokio::test]
async fn cancellation_ends_a_pause_at_once() {
    let db = TestDb::create(Engine::Postgres).await;
    let source = db.connect().await;
    let busy = db.connect().await;
    let sleeper = tokio::spawn(async move {
        busy.execute(&raw("SELECT pg_sleep(5)"))
            .await
            .expect("sleep");
    });
    let mut throttle = Throttle::new(
        PauseWhen {
            active_sessions: Some(0),
            ..when()
        },
        &source,
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while throttle.readings().await.expect("readings").active_sessions != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the sleeping session never showed as active"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let waited = throttle.wait(&cancel).await.expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(waited.of(Reason::ActiveSessions) > 0.0);
    sleeper.await.expect("sleeper");
}

fn my_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}

const MY_PAIR_HINT: &str = "start it with scripts/replica.sh start mariadb";

/// The MariaDB replica's SQL thread is stopped by one test, and the other
/// reads the same replica's default connection: one at a time.
static MY_REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test pair `scripts/replica.sh start mariadb` starts (or the one
/// `LETHE_TEST_MY_PRIMARY_URL` / `LETHE_TEST_MY_REPLICA_URL` name): the
/// primary's URL and a connection to it, the replica's URL and one to it.
async fn my_pair() -> (String, Db, String, Db) {
    let primary = my_url(
        "LETHE_TEST_MY_PRIMARY_URL",
        "mysql://root@127.0.0.1:3308/mysql",
    );
    let replica_url = my_url(
        "LETHE_TEST_MY_REPLICA_URL",
        "mysql://root@127.0.0.1:3307/mysql",
    );
    let admin = Db::connect("admin", &primary, 1, Duration::ZERO)
        .await
        .unwrap_or_else(|e| {
            panic!("the MariaDB primary of the test pair ({primary}) is not reachable ({e}); {MY_PAIR_HINT}")
        });
    let replica = Db::connect("replica", &replica_url, 1, Duration::ZERO)
        .await
        .unwrap_or_else(|e| {
            panic!("the MariaDB replica ({replica_url}) is not reachable ({e}); {MY_PAIR_HINT}")
        });
    (primary, admin, replica_url, replica)
}

/// MariaDB: `STOP SLAVE SQL_THREAD` on the replica stops applying (its
/// `Seconds_Behind_Master` turns NULL): the loop waits until it is started
/// again. The machine's MariaDB on 3306 writes no binary log, so this test
/// uses the pair `scripts/replica.sh start mariadb` starts: a primary on
/// 3308 and its replica on 3307 (`LETHE_TEST_MY_PRIMARY_URL` /
/// `LETHE_TEST_MY_REPLICA_URL` point it elsewhere).
#[tokio::test]
async fn mariadb_replica_stopped_applying_pauses_the_loop() {
    let _one = MY_REPLICA.lock().await;
    let (primary, admin, replica_url, replica) = my_pair().await;
    replica
        .execute(&raw("START SLAVE SQL_THREAD"))
        .await
        .unwrap_or_else(|e| panic!("START SLAVE SQL_THREAD on {replica_url}: {e}; {MY_PAIR_HINT}"));
    let name = format!(
        "lethe_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin
        .execute(&raw(&format!("CREATE DATABASE {name}")))
        .await
        .expect("create");
    let base = primary.rsplit_once('/').expect("url with a database").0;
    let source = Db::connect("app", &format!("{base}/{name}"), 2, Duration::ZERO)
        .await
        .expect("connect");
    source
        .execute(&raw(
            "CREATE TABLE ticks (id integer AUTO_INCREMENT PRIMARY KEY)",
        ))
        .await
        .expect("table");
    let mut throttle = caught_up_lag_throttle(replica_url.clone(), &source).await;

    replica
        .execute(&raw("STOP SLAVE SQL_THREAD"))
        .await
        .expect("stop");
    source
        .execute(&raw("INSERT INTO ticks VALUES (NULL)"))
        .await
        .expect("insert");
    let r = throttle.readings().await.expect("readings");
    assert_eq!(r.lag, Some(None), "a stopped SQL thread is not applying");
    let resumer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        replica
            .execute(&raw("START SLAVE SQL_THREAD"))
            .await
            .expect("start");
        replica
    });
    let waited = throttle
        .wait(&CancellationToken::new())
        .await
        .expect("wait");
    let replica = resumer.await.expect("resumer");
    assert!(waited.of(Reason::ReplicaLag) >= 1.5, "{waited:?}");
    // The replica follows this very primary: the tick reaches it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ticks = raw(&format!("SELECT COUNT(*) FROM {name}.ticks"));
    while replica.count(&ticks).await.unwrap_or(0) != 1 {
        assert!(
            Instant::now() < deadline,
            "the insert on {primary} never reached {replica_url}: {MY_PAIR_HINT}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica.close().await;
    admin
        .execute(&raw(&format!("DROP DATABASE {name}")))
        .await
        .expect("drop");
}

/// MariaDB multi-source: `replica_connection` reads that connection's lag
/// (`SHOW SLAVE 'name' STATUS`), not the default one's. On the test pair's
/// replica, whose default connection is applying, a second connection is
/// configured and never started (to a port nothing listens on): read by
/// name it is not applying and pauses the loop; a name the replica does not
/// have is a typed error naming it.
#[tokio::test]
async fn mariadb_named_replica_connection_is_the_one_read() {
    let _one = MY_REPLICA.lock().await;
    let (_, source, replica_url, replica) = my_pair().await;
    let id = uuid::Uuid::new_v4();
    let conn = format!("lethe_t_{}", &id.simple().to_string()[..12]);
    // Two connections may not name one host and port: a port of its own
    // (nothing listens there), so a connection an earlier failed run left
    // behind is no conflict.
    let port = 1 + id.as_u128() % 1000;
    replica
        .execute(&raw(&format!(
            "CHANGE MASTER '{conn}' TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
             MASTER_USER = 'nobody', MASTER_USE_GTID = no"
        )))
        .await
        .unwrap_or_else(|e| panic!("CHANGE MASTER '{conn}' on {replica_url}: {e}"));
    let lag_of = |connection: Option<String>| PauseWhen {
        replica: Some(replica_url.clone()),
        replica_connection: connection,
        max_lag: Some(Duration::from_secs(5)),
        ..when()
    };
    // The default connection applies: a figure.
    let mut default = Throttle::connect(lag_of(None), &source)
        .await
        .expect("connect");
    let r = default.readings().await.expect("readings");
    assert!(matches!(r.lag, Some(Some(_))), "default connection: {r:?}");
    // The named one was never started: no figure, which is over max_lag.
    let mut named = Throttle::connect(lag_of(Some(conn.clone())), &source)
        .await
        .expect("connect");
    let r = named.readings().await.expect("readings");
    assert_eq!(r.lag, Some(None), "connection {conn} is not applying");
    // A name the replica does not have.
    let mut missing = Throttle::connect(lag_of(Some(format!("{conn}_x"))), &source)
        .await
        .expect("connect");
    let err = missing.readings().await.expect_err("no such connection");
    assert!(
        err.to_string()
            .contains(&format!("no replication connection named `{conn}_x`")),
        "{err}"
    );
    replica
        .execute(&raw(&format!("RESET SLAVE '{conn}' ALL")))
        .await
        .expect("reset");
    replica.close().await;
}

/// Through the real binary: `pause_when` in lethe.toml holds the batch loop
/// while another session is busy, the run's JSON says how long and why.
async fn run_with_a_busy_session(pause_when: &str, sleep_s: u32) -> common::Output {
    run_job_with_a_busy_session(common::LOGS_JOB, pause_when, sleep_s).await
}

async fn run_job_with_a_busy_session(job: &str, pause_when: &str, sleep_s: u32) -> common::Output {
    let db = TestDb::create(Engine::Postgres).await;
    db.seed(60, common::now()).await;
    let ws = common::Workspace::new(&db.url, &[("logs.toml", job)]);
    let config = ws.config();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("\n[sources.app.pause_when]\n{pause_when}\n"));
    std::fs::write(&config, text).expect("config");
    let busy = db.connect().await;
    let sleeper = tokio::spawn(async move {
        busy.execute(&raw(&format!("SELECT pg_sleep({sleep_s})")))
            .await
            .expect("sleep");
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tokio::task::spawn_blocking(move || {
        ws.lethe(&["run", "--as-of", common::AS_OF, "--output", "json"])
    })
    .await
    .expect("lethe");
    sleeper.await.expect("sleeper");
    out
}

/// `lethe check` reads every `pause_when` signal once: the reading beside
/// its threshold as a note, a warning when a run started now would pause,
/// and an error (a failed check) when the replica it names is no replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_what_pause_when_reads_now() {
    let db = TestDb::create(Engine::Postgres).await;
    db.seed(10, common::now()).await;
    let ws = common::Workspace::new(&db.url, &[("logs.toml", common::LOGS_JOB)]);
    let config = ws.config();
    let base = std::fs::read_to_string(&config).expect("config");
    let with = |table: &str| {
        std::fs::write(
            &config,
            format!("{base}\n[sources.app.pause_when]\n{table}\n"),
        )
        .expect("config");
    };
    // Idle: a note with the reading, no warning.
    with("lock_waits = 0");
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("note: source `app`: pause_when: now 0 lock waits (pauses above 0)"),
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("would pause"), "{}", out.all());
    // A busy session: the warning says a run would wait, and why.
    with("active_sessions = 0");
    let busy = db.connect().await;
    let sleeper = tokio::spawn(async move {
        busy.execute(&raw("SELECT pg_sleep(4)"))
            .await
            .expect("sleep");
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tokio::task::block_in_place(|| ws.lethe(&["check"]));
    sleeper.await.expect("sleeper");
    assert!(
        out.stdout.contains(
            "warning: source `app`: pause_when: a run started now would pause: active_sessions is 1, over 0"
        ),
        "{}",
        out.all()
    );
    // The primary named as the replica: the check fails.
    with(&format!("replica = \"{}\"\nmax_lag = \"5s\"", db.url));
    let out = ws.lethe(&["check"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("error: source `app`: pause_when.replica is not a replica: the server is not in recovery"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_a_busy_database_and_reports_it() {
    let out = run_with_a_busy_session(
        "active_sessions = 0\ncheck_every = \"200ms\"\nmax_wait = \"30s\"",
        3,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("\"throttled\":{\"active_sessions\":"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_beyond_max_wait_fails_the_rule() {
    let out = run_with_a_busy_session(
        "active_sessions = 0\ncheck_every = \"200ms\"\nmax_wait = \"1s\"",
        4,
    )
    .await;
    assert_eq!(out.code, 3, "partial: {}", out.all());
    assert!(out.all().contains("pause_when.max_wait"), "{}", out.all());
}

/// Side-by-side workers (`concurrency = 2`) wait at their own batch
/// boundaries too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_side_by_side_wait_for_a_busy_database() {
    let job = format!("{}concurrency = 2\n", common::LOGS_JOB.trim_start());
    let out = run_job_with_a_busy_session(
        &job,
        "active_sessions = 0\ncheck_every = \"200ms\"\nmax_wait = \"30s\"",
        3,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("\"throttled\":{\"active_sessions\":"),
        "{}",
        out.all()
    );
}
