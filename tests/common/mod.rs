//! Shared test harness: a fresh database per test on a real server, a temp
//! workspace (config, jobs, audit folder, state store) and the real binary.
//!
//! A test that needs a server that is not running fails with the command
//! that starts it; it never passes silently.

#![allow(dead_code)]

pub mod objects;
pub mod proxy;
pub mod s3proxy;

use lethe::sql::{Db, Stmt, Val};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const KEY: &str = "test-secret-key-0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
    Sqlite,
}

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/mysql";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("x")
    )
}

fn start_hint(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "start it with `scripts/services.sh start` (or: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
        }
        Engine::MariaDb => {
            "start it with `scripts/services.sh start` (or: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd)"
        }
        Engine::Sqlite => "",
    }
}

async fn create_database(engine: Engine, admin_url: &str, name: &str) {
    let server = if engine == Engine::Postgres {
        "PostgreSQL at 127.0.0.1:5432"
    } else {
        "MariaDB at 127.0.0.1:3306"
    };
    let admin = Db::connect("admin", admin_url, 1, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{server} is not reachable ({e}); {}", start_hint(engine)));
    admin
        .execute(&raw(&format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    admin.close().await;
}

/// A database created for one test and dropped afterwards.
pub struct TestDb {
    pub engine: Engine,
    pub url: String,
    name: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn create(engine: Engine) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = unique("lethe_t");
        let url = match engine {
            Engine::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display()),
            Engine::Postgres => {
                create_database(engine, PG_ADMIN, &name).await;
                format!("postgres://postgres@127.0.0.1:5432/{name}")
            }
            Engine::MariaDb => {
                create_database(engine, MY_ADMIN, &name).await;
                format!("mysql://root@127.0.0.1:3306/{name}")
            }
        };
        TestDb {
            engine,
            url,
            name,
            dir,
        }
    }

    pub async fn connect(&self) -> Db {
        Db::connect("app", &self.url, 2, Duration::ZERO)
            .await
            .expect("connect to the test database")
    }

    /// Create the demo schema and seed `users` users dated relative to `now`.
    pub async fn seed(
        &self,
        users: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> lethe::demo::Seeded {
        let db = self.connect().await;
        lethe::demo::create_schema(&db).await.expect("schema");
        let s = lethe::demo::seed(&db, users, now).await.expect("seed");
        db.close().await;
        s
    }

    pub async fn count(&self, sql: &str) -> u64 {
        let db = self.connect().await;
        let n = db
            .count(&raw(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        db.close().await;
        n
    }

    pub async fn exec(&self, sql: &str) {
        let db = self.connect().await;
        db.execute(&raw(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        db.close().await;
    }

    /// Every row of `sql`, as text.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let db = self.connect().await;
        let r = db
            .fetch(&raw(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        db.close().await;
        r
    }

    /// A digest of every demo table's content, to prove nothing changed.
    pub async fn fingerprint(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for t in [
            "users",
            "legal_holds",
            "posts",
            "comments",
            "orders",
            "locations",
            "events",
        ] {
            let n = self.count(&format!("SELECT COUNT(*) FROM {t}")).await;
            out.push((t.to_string(), n));
        }
        let db = self.connect().await;
        let cast = match self.engine {
            Engine::MariaDb => "CHAR",
            _ => "TEXT",
        };
        let rows = db
            .fetch(&raw(&format!(
                "SELECT CAST(id AS {cast}), CAST(user_id AS {cast}), consignee_name, phone, address FROM orders ORDER BY id"
            )))
            .await
            .expect("orders");
        let ev = db
            .fetch(&raw(&format!(
                "SELECT CAST(id AS {cast}), user_ref, device_id, ip FROM events ORDER BY id"
            )))
            .await
            .expect("events");
        db.close().await;
        out.push(("orders-content".into(), hash_rows(&rows)));
        out.push(("events-content".into(), hash_rows(&ev)));
        out
    }
}

fn hash_rows(rows: &[Vec<Option<String>>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut h);
    h.finish()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (engine, name) = (self.engine, self.name.clone());
        if engine == Engine::Sqlite {
            return;
        }
        // Drop runs outside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = if engine == Engine::Postgres {
                    PG_ADMIN
                } else {
                    MY_ADMIN
                };
                if let Ok(db) = Db::connect("admin", admin, 1, Duration::ZERO).await {
                    let sql = if engine == Engine::Postgres {
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    } else {
                        format!("DROP DATABASE IF EXISTS {name}")
                    };
                    let _ = db.execute(&raw(&sql)).await;
                    db.close().await;
                }
            });
        })
        .join();
    }
}

pub fn raw(sql: &str) -> Stmt {
    Stmt {
        sql: sql.to_string(),
        binds: vec![],
    }
}

pub fn bind(sql: &str, binds: Vec<Val>) -> Stmt {
    Stmt {
        sql: sql.to_string(),
        binds,
    }
}

/// A folder with `config/lethe.toml`, `jobs/`, `audit/` and a state store.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Workspace {
    /// A workspace whose `app` source is `db_url`, with the given job files.
    pub fn new(db_url: &str, jobs: &[(&str, &str)]) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let state = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("state.db").display()
        );
        let config = format!(
            r#"allowed_regions = ["cn-east-2"]

[sources.app]
url = "{db_url}"
region = "cn-east-2"

[stores.media]
kind = "fs"
path = "{objects}"
region = "cn-east-2"

[audit]
dir = "{audit}"
hmac_key_env = "LETHE_AUDIT_KEY"

[state]
url = "{state}"
lease_ttl = "30s"
"#,
            audit = dir.path().join("audit").display(),
            objects = dir.path().join("objects/media").display()
        );
        std::fs::write(dir.path().join("config/lethe.toml"), config).unwrap();
        for (name, text) in jobs {
            std::fs::write(dir.path().join("jobs").join(name), text).unwrap();
        }
        Workspace { dir }
    }

    /// A workspace with every job the project ships.
    pub fn shipped(db_url: &str) -> Workspace {
        let ws = Workspace::new(db_url, &[]);
        for entry in std::fs::read_dir(repo().join("jobs")).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&p, ws.dir.path().join("jobs").join(p.file_name().unwrap())).unwrap();
            }
        }
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("config/lethe.toml")
    }

    pub fn jobs(&self) -> PathBuf {
        self.path().join("jobs")
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.path().join("audit")
    }

    pub fn state_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.path().join("state.db").display()
        )
    }

    /// Run the real binary with this workspace's config and jobs.
    pub fn lethe(&self, args: &[&str]) -> Output {
        self.lethe_env(args, &[("LETHE_AUDIT_KEY", KEY)])
    }

    pub fn lethe_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe"));
        cmd.args(args)
            .arg("--config")
            .arg(self.config())
            .arg("--jobs")
            .arg(self.jobs())
            .env_remove("LETHE_AUDIT_KEY")
            .env_remove("APP_DATABASE_URL")
            .env("LETHE_LOG", "lethe=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run lethe");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `lethe` with `args`, killed after `secs` seconds: for a test whose
    /// failure would be a run that never ends. `None` when it was killed.
    pub fn lethe_within(&self, secs: u64, args: &[&str]) -> Option<Output> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .arg("--jobs")
            .arg(self.jobs())
            .env_remove("APP_DATABASE_URL")
            .env("LETHE_AUDIT_KEY", KEY)
            .env("LETHE_LOG", "lethe=info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run lethe");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while child.try_wait().expect("wait for lethe").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("lethe's output");
        Some(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// The audit files written so far, oldest first.
    pub fn audit_files(&self) -> Vec<PathBuf> {
        lethe::audit::verify::audit_files(&self.audit_dir()).unwrap_or_default()
    }

    /// Every audit file's text, concatenated.
    pub fn audit_text(&self) -> String {
        self.audit_files()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect::<Vec<_>>()
            .join("")
    }

    pub fn last_records(&self) -> Vec<lethe::audit::Record> {
        let files = self.audit_files();
        lethe::audit::verify::read_records(files.last().expect("an audit file")).unwrap()
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The instant every test evaluates retention at (seeding uses the same).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

pub const AS_OF: &str = "2026-06-15T12:00:00Z";

/// Instantiate an async scenario `fn name(Engine)` for each engine.
#[macro_export]
macro_rules! on_every_engine {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() { super::$scenario($crate::common::Engine::Postgres).await }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() { super::$scenario($crate::common::Engine::MariaDb).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() { super::$scenario($crate::common::Engine::Sqlite).await }
            )*
        }
    };
}

/// The job most process-level tests run: old events deleted in batches of 40.
pub const LOGS_JOB: &str = r#"
name = "logs"
policy = "II(2)2"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = { column = "created_at", older_than = "180d" }
action = "delete"
batch_size = 40
"#;
