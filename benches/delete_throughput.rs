//! Deletion throughput on PostgreSQL, MariaDB and SQLite: one raw `DELETE`,
//! the select-ids-then-delete loop a typical script runs, and Lethe itself
//! (`lethe::engine::run`: counts, lease, audit log fsynced before every commit).
//!
//! Run with `cargo bench --bench delete_throughput`; `bench/README.md` explains
//! the methods, the `LETHE_BENCH_*` knobs and the figures measured so far.
//!
//! Performance is measured here, never asserted: a slow run fails nothing.
//! Correctness is checked: after every method exactly the expired rows must be
//! gone, and Lethe's audit file must verify, or the run exits non-zero.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use lethe::engine::{Mode, RuleStatus, RunOptions};
use lethe::keys::Keys;
use serde_json::json;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Rows are `older_than` this many days at `AS_OF` when they are expired.
const OLDER_THAN_DAYS: i64 = 180;
/// The instant the retention is evaluated at (fixed, so every run deletes the same rows).
const AS_OF: &str = "2025-06-01T00:00:00Z";
const PPM: i64 = 1_000_000;
/// Expired rows are spread over two years before the cutoff, fresh ones over
/// the 179 days after it; the order of `created_at` is scrambled against `id`.
const OLD_SPAN_S: i64 = 2 * 365 * 86_400;
const NEW_SPAN_S: i64 = 179 * 86_400;
const SECRET: &[u8] = b"bench-secret-0123456789";

/// How `created_at` relates to the key (and so to the physical row order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Within the expired rows and within the fresh ones, `created_at` grows
    /// with `id`, as in a table filled in time order; the two kinds are
    /// interleaved (every third or fourth row is expired).
    Correlated,
    /// `created_at` is a hash of `id`: no relation to the row order, as after
    /// a bulk import or with client-supplied event times. The worst case for
    /// any batching that walks the `created_at` index.
    Random,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Correlated => "correlated",
            Layout::Random => "random",
        }
    }

    /// SQL for (seconds before the cutoff of an expired row, seconds after it
    /// of a fresh one), in terms of the row number `g` (a 64-bit integer).
    fn offsets(self, g: &str, rows: i64) -> (String, String) {
        match self {
            Layout::Random => (
                format!("(1 + (({g} * 2654435761) % 4294967296) % {OLD_SPAN_S})"),
                format!("((({g} * 2654435761) % 4294967296) % {NEW_SPAN_S})"),
            ),
            Layout::Correlated => (
                format!(
                    "(1 + (({rows} - {g}) * {}) % {OLD_SPAN_S})",
                    (OLD_SPAN_S / rows).max(1)
                ),
                format!("(({g} * {}) % {NEW_SPAN_S})", (NEW_SPAN_S / rows).max(1)),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mariadb",
            Kind::Sqlite => "sqlite",
        }
    }
}

/// The table (and action) a measurement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `events` with an index on `created_at`; delete.
    Indexed,
    /// The same table without the `created_at` index (only the primary key).
    Unindexed,
    /// `events` range-partitioned by month of `created_at` (PostgreSQL
    /// declarative partitions, MariaDB `PARTITION BY RANGE COLUMNS`), primary
    /// key `(id, created_at)`, index on `created_at`; delete. Not on SQLite.
    Partitioned,
    /// The indexed table; the expired rows are anonymized (`user_ref` hashed,
    /// `payload` nulled) instead of deleted.
    Anonymize,
    /// The indexed table plus `event_items`, one child row per event with an
    /// indexed foreign key; children deleted before their parents.
    Cascade,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Indexed => "indexed",
            Shape::Unindexed => "unindexed",
            Shape::Partitioned => "partitioned",
            Shape::Anonymize => "anonymize",
            Shape::Cascade => "cascade",
        }
    }

    fn deletes(self) -> bool {
        self != Shape::Anonymize
    }

    fn indexed(self) -> bool {
        self != Shape::Unindexed
    }
}

/// Why `method` is not measured on `shape` / `kind` (`None`: it is).
fn not_applicable(method: &str, shape: Shape, kind: Kind) -> Option<&'static str> {
    match method {
        "raw" | "lethe" | "default" => None,
        "throttled" if kind == Kind::Sqlite => Some("a SQLite file has no pause_when"),
        "throttled" => None,
        "drop" | "lethe_drop" if shape != Shape::Partitioned => {
            Some("only on the partitioned table")
        }
        "drop" | "lethe_drop" => None,
        _ if matches!(shape, Shape::Anonymize | Shape::Cascade) => {
            Some("deletes one table only (no anonymize, no children)")
        }
        "pt_archiver" if kind != Kind::MariaDb => Some("pt-archiver works on MySQL / MariaDB only"),
        "reference" if shape == Shape::Partitioned && kind == Kind::Postgres => {
            Some("its ctid statement is wrong on a partitioned table (ctid is per partition)")
        }
        _ => None,
    }
}

/// The concurrent OLTP load (single-row reads and updates on `events`).
#[derive(Debug, Clone)]
struct OltpParams {
    /// Off with `LETHE_BENCH_OLTP=off`.
    on: bool,
    /// Idle phase before each method, seconds.
    idle: Duration,
    /// Pause after each operation (the load is paced, not a saturating loop).
    pause: Duration,
    /// At most this many operations per phase, and at most `max_time`.
    max_ops: usize,
    max_time: Duration,
}

struct Params {
    shapes: Vec<Shape>,
    oltp: OltpParams,
    /// pt-archiver `--limit` (rows per batch).
    pt_limit: usize,
    rows: i64,
    expired_ppm: i64,
    /// Exactly the rows whose `created_at` is before the cutoff.
    expired: i64,
    layout: Layout,
    /// Measurements per method (each on a fresh copy); the median is reported.
    repeat: usize,
    loop_batch: usize,
    lethe_batches: Vec<usize>,
    /// Lethe `concurrency` values above 1 to measure, at the largest batch
    /// size, on the engines that use them (not SQLite: one writer).
    lethe_workers: Vec<usize>,
    engines: Vec<Kind>,
    methods: Vec<&'static str>,
    pg_url: String,
    mysql_url: String,
    as_of: DateTime<Utc>,
    cutoff: NaiveDateTime,
    out: PathBuf,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn parse_count(name: &str, v: &str) -> Res<i64> {
    let clean: String = v.chars().filter(|c| *c != '_' && *c != ',').collect();
    clean
        .trim()
        .parse()
        .map_err(|_| format!("{name}={v}: not a whole number").into())
}

impl Params {
    fn from_env() -> Res<Params> {
        let rows = parse_count("LETHE_BENCH_ROWS", &env_or("LETHE_BENCH_ROWS", "2000000"))?;
        if !(10..=100_000_000).contains(&rows) {
            return Err("LETHE_BENCH_ROWS must be between 10 and 100,000,000".into());
        }
        let frac: f64 = env_or("LETHE_BENCH_EXPIRED", "0.3")
            .parse()
            .map_err(|_| "LETHE_BENCH_EXPIRED must be a fraction such as 0.3")?;
        if !(frac > 0.0 && frac <= 1.0) {
            return Err("LETHE_BENCH_EXPIRED must be greater than 0 and at most 1".into());
        }
        let expired_ppm = (frac * PPM as f64).round() as i64;
        let loop_batch = parse_count(
            "LETHE_BENCH_LOOP_BATCH",
            &env_or("LETHE_BENCH_LOOP_BATCH", "10000"),
        )? as usize;
        let mut lethe_batches = Vec::new();
        for b in env_or("LETHE_BENCH_BATCHES", "10000").split([' ', ';', '/']) {
            for b in b.split(',').filter(|s| !s.trim().is_empty()) {
                lethe_batches.push(parse_count("LETHE_BENCH_BATCHES", b)? as usize);
            }
        }
        let mut lethe_workers = Vec::new();
        for w in env_or("LETHE_BENCH_WORKERS", "2,4").split(',') {
            let w = parse_count("LETHE_BENCH_WORKERS", w)?;
            if !(0..=16).contains(&w) {
                return Err(
                    "LETHE_BENCH_WORKERS: each value between 0 and 16 (0 or 1: none)".into(),
                );
            }
            if w > 1 {
                lethe_workers.push(w as usize);
            }
        }
        let layout = match env_or("LETHE_BENCH_LAYOUT", "correlated").as_str() {
            "correlated" => Layout::Correlated,
            "random" => Layout::Random,
            other => {
                return Err(
                    format!("LETHE_BENCH_LAYOUT: `{other}` (use correlated or random)").into(),
                );
            }
        };
        let repeat = parse_count("LETHE_BENCH_REPEAT", &env_or("LETHE_BENCH_REPEAT", "1"))?;
        if !(1..=20).contains(&repeat) {
            return Err("LETHE_BENCH_REPEAT must be between 1 and 20".into());
        }
        let mut methods = Vec::new();
        for m in env_or(
            "LETHE_BENCH_METHODS",
            "raw,drop,reference,pt-archiver,default,throttled,lethe,lethe-drop",
        )
        .split(',')
        {
            methods.push(match m.trim() {
                "raw" => "raw",
                "drop" => "drop",
                "lethe-drop" | "lethe_drop" => "lethe_drop",
                "throttled" | "lethe-throttled" => "throttled",
                "pt-archiver" | "pt_archiver" | "pt" => "pt_archiver",
                "default" | "lethe-default" => "default",
                "loop" | "plain_loop" => "plain_loop",
                "bare" => "bare",
                "reference" | "ref" => "reference",
                "lethe" => "lethe",
                other => {
                    return Err(format!(
                        "LETHE_BENCH_METHODS: unknown method `{other}` (raw, drop, reference, loop, pt-archiver, default, throttled, lethe, lethe-drop, bare)"
                    )
                    .into());
                }
            });
        }
        let mut engines = Vec::new();
        for e in env_or("LETHE_BENCH_ENGINES", "postgres,mariadb,sqlite").split(',') {
            engines.push(match e.trim().to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" | "pg" => Kind::Postgres,
                "mariadb" | "mysql" => Kind::MariaDb,
                "sqlite" => Kind::Sqlite,
                other => {
                    return Err(format!(
                        "LETHE_BENCH_ENGINES: unknown engine `{other}` (postgres, mariadb, sqlite)"
                    )
                    .into());
                }
            });
        }
        let mut shapes = Vec::new();
        for sh in env_or(
            "LETHE_BENCH_SHAPES",
            "indexed,unindexed,partitioned,anonymize,cascade",
        )
        .split(',')
        {
            shapes.push(match sh.trim() {
                "indexed" => Shape::Indexed,
                "unindexed" => Shape::Unindexed,
                "partitioned" => Shape::Partitioned,
                "anonymize" => Shape::Anonymize,
                "cascade" => Shape::Cascade,
                other => {
                    return Err(format!(
                        "LETHE_BENCH_SHAPES: unknown shape `{other}` (indexed, unindexed, partitioned, anonymize, cascade)"
                    )
                    .into());
                }
            });
        }
        let oltp = OltpParams {
            on: match env_or("LETHE_BENCH_OLTP", "on").as_str() {
                "on" | "1" | "yes" => true,
                "off" | "0" | "no" => false,
                other => return Err(format!("LETHE_BENCH_OLTP: `{other}` (on or off)").into()),
            },
            idle: Duration::from_millis(parse_count(
                "LETHE_BENCH_OLTP_IDLE_MS",
                &env_or("LETHE_BENCH_OLTP_IDLE_MS", "2000"),
            )? as u64),
            pause: Duration::from_millis(parse_count(
                "LETHE_BENCH_OLTP_PAUSE_MS",
                &env_or("LETHE_BENCH_OLTP_PAUSE_MS", "2"),
            )? as u64),
            max_ops: parse_count(
                "LETHE_BENCH_OLTP_MAX_OPS",
                &env_or("LETHE_BENCH_OLTP_MAX_OPS", "200000"),
            )? as usize,
            max_time: Duration::from_secs(parse_count(
                "LETHE_BENCH_OLTP_MAX_S",
                &env_or("LETHE_BENCH_OLTP_MAX_S", "900"),
            )? as u64),
        };
        let pt_limit = parse_count(
            "LETHE_BENCH_PT_LIMIT",
            &env_or("LETHE_BENCH_PT_LIMIT", "5000"),
        )? as usize;
        let as_of: DateTime<Utc> = AS_OF.parse().expect("constant");
        let cutoff = (as_of - TimeDelta::days(OLDER_THAN_DAYS)).naive_utc();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        Ok(Params {
            shapes,
            oltp,
            pt_limit,
            rows,
            expired_ppm,
            // g in 1..=rows is expired when floor(g·f) steps: exactly floor(rows·f) rows,
            // evenly spread over the key order.
            expired: rows * expired_ppm / PPM,
            layout,
            repeat: repeat as usize,
            loop_batch,
            lethe_batches,
            lethe_workers,
            engines,
            methods,
            // No TLS: MariaDB here has none, and a TLS handshake (~0.1 s per
            // connection with sqlx + rustls) would be timed for Lethe only,
            // which connects inside its run.
            pg_url: env_or(
                "LETHE_BENCH_PG_URL",
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            ),
            mysql_url: env_or("LETHE_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
            as_of,
            cutoff,
            out: target_dir.join("bench").join("delete_throughput.jsonl"),
        })
    }

    fn cutoff_text(&self) -> String {
        self.cutoff.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// `url` with its database (path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

/// A URL safe to print (a password, if any, replaced).
fn shown(url: &str) -> String {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => lethe::config::redact_url(url),
        _ => url.to_string(),
    }
}

/// Rows in the bench tables (see `Target::counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    all: i64,
    /// Rows older than the cutoff.
    old: i64,
    /// Old rows not anonymized (payload set, or `user_ref` still `user-N`).
    old_plain: i64,
    /// Fresh rows as seeded (payload set, `user_ref` still `user-N`).
    fresh_plain: i64,
    /// `event_items` rows (cascade only, else 0).
    items: i64,
}

impl Counts {
    /// What a fresh copy holds.
    fn loaded(p: &Params, shape: Shape) -> Counts {
        Counts {
            all: p.rows,
            old: p.expired,
            old_plain: p.expired,
            fresh_plain: p.rows - p.expired,
            items: if shape == Shape::Cascade { p.rows } else { 0 },
        }
    }

    /// What must be left after a method: exactly the expired rows (and their
    /// children) gone, or exactly they anonymized; fresh rows untouched.
    fn done(p: &Params, shape: Shape) -> Counts {
        let fresh = p.rows - p.expired;
        if shape.deletes() {
            Counts {
                all: fresh,
                old: 0,
                old_plain: 0,
                fresh_plain: fresh,
                items: if shape == Shape::Cascade { fresh } else { 0 },
            }
        } else {
            Counts {
                all: p.rows,
                old: p.expired,
                old_plain: 0,
                fresh_plain: fresh,
                items: 0,
            }
        }
    }
}

/// Monthly partitions covering every generated `created_at`, as
/// (name, first day, first day of the next month).
fn partition_months(p: &Params) -> Vec<(String, String, String)> {
    use chrono::{Datelike, NaiveDate};
    let lo = p.cutoff - TimeDelta::seconds(OLD_SPAN_S);
    let hi = p.cutoff + TimeDelta::seconds(NEW_SPAN_S);
    let mut d = NaiveDate::from_ymd_opt(lo.year(), lo.month(), 1).expect("a valid month");
    let mut out = Vec::new();
    while d.and_hms_opt(0, 0, 0).expect("midnight") <= hi {
        let next = if d.month() == 12 {
            NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
        }
        .expect("a valid month");
        out.push((
            format!("p{}", d.format("%Y%m")),
            d.format("%Y-%m-%d").to_string(),
            next.format("%Y-%m-%d").to_string(),
        ));
        d = next;
    }
    out
}

/// Reset this process's peak RSS (Linux `clear_refs`), so that
/// [`peak_rss_kib`] then reads the peak of what ran in between.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` (peak) of this process, KiB.
fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

/// `VmRSS` (now) of this process, KiB.
fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 1-minute load average (other sessions share this machine).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Latencies of one phase of the OLTP load.
#[derive(Debug, Clone, Copy)]
struct Latencies {
    ops: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latencies {
    fn of(mut v: Vec<Duration>, errors: usize) -> Option<Latencies> {
        if v.is_empty() {
            return None;
        }
        v.sort();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            v[i].as_secs_f64() * 1000.0
        };
        Some(Latencies {
            ops: v.len(),
            errors,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: v[v.len() - 1].as_secs_f64() * 1000.0,
        })
    }

    fn json(l: &Option<Latencies>) -> serde_json::Value {
        match l {
            Some(l) => json!({
                "ops": l.ops,
                "errors": l.errors,
                "p50_ms": (l.p50_ms * 1e3).round() / 1e3,
                "p99_ms": (l.p99_ms * 1e3).round() / 1e3,
                "max_ms": (l.max_ms * 1e3).round() / 1e3,
            }),
            None => serde_json::Value::Null,
        }
    }
}

/// A small xorshift generator: the load needs ids spread over the table, not
/// statistical quality, and no extra dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What an OLTP task needs (owned, so it can run beside the method).
#[derive(Clone)]
struct OltpSpec {
    kind: Kind,
    url: String,
    rows: i64,
    expired_ppm: i64,
    params: OltpParams,
}

enum OltpConn {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
    Lite(sqlx::SqliteConnection),
}

/// The OLTP load on one connection of its own: alternately a single-row read
/// by primary key (any row) and a single-row update of `payload` (a fresh
/// row, so the checks after the method still hold), paced by `pause`, until
/// `stop`, `max_ops` or `max_time`. Returns each operation's latency.
async fn oltp_load(spec: OltpSpec, stop: CancellationToken, seed: u64) -> Res<Option<Latencies>> {
    use sqlx::Connection;
    let mut conn = match spec.kind {
        Kind::Postgres => OltpConn::Pg(sqlx::PgConnection::connect(&spec.url).await?),
        Kind::MariaDb => OltpConn::My(sqlx::MySqlConnection::connect(&spec.url).await?),
        Kind::Sqlite => {
            OltpConn::Lite(sqlx::SqliteConnection::connect_with(&sqlite_options(&spec.url)?).await?)
        }
    };
    let p = &spec.params;
    let mut rng = Rng(seed | 1);
    let mut lat = Vec::new();
    let mut errors = 0;
    let started = Instant::now();
    let expired = |g: i64| (g * spec.expired_ppm) / PPM != ((g - 1) * spec.expired_ppm) / PPM;
    while !stop.is_cancelled() && lat.len() < p.max_ops && started.elapsed() < p.max_time {
        let n = lat.len();
        let mut id = 1 + rng.below(spec.rows as u64) as i64;
        let update = n % 2 == 1;
        if update {
            // A fresh row: the application's live data.
            for _ in 0..64 {
                if !expired(id) {
                    break;
                }
                id = 1 + rng.below(spec.rows as u64) as i64;
            }
            if expired(id) {
                continue;
            }
        }
        let value = format!("oltp-{n}");
        let op_started = Instant::now();
        let res: Result<(), sqlx::Error> = match &mut conn {
            OltpConn::Pg(c) => {
                if update {
                    sqlx::query("UPDATE events SET payload = $1 WHERE id = $2")
                        .bind(&value)
                        .bind(id as i32)
                        .execute(&mut *c)
                        .await
                        .map(|_| ())
                } else {
                    sqlx::query("SELECT payload FROM events WHERE id = $1")
                        .bind(id as i32)
                        .fetch_optional(&mut *c)
                        .await
                        .map(|_| ())
                }
            }
            OltpConn::My(c) => {
                if update {
                    sqlx::query("UPDATE events SET payload = ? WHERE id = ?")
                        .bind(&value)
                        .bind(id as i32)
                        .execute(&mut *c)
                        .await
                        .map(|_| ())
                } else {
                    sqlx::query("SELECT payload FROM events WHERE id = ?")
                        .bind(id as i32)
                        .fetch_optional(&mut *c)
                        .await
                        .map(|_| ())
                }
            }
            OltpConn::Lite(c) => {
                if update {
                    sqlx::query("UPDATE events SET payload = ? WHERE id = ?")
                        .bind(&value)
                        .bind(id)
                        .execute(&mut *c)
                        .await
                        .map(|_| ())
                } else {
                    sqlx::query("SELECT payload FROM events WHERE id = ?")
                        .bind(id)
                        .fetch_optional(&mut *c)
                        .await
                        .map(|_| ())
                }
            }
        };
        match res {
            Ok(()) => lat.push(op_started.elapsed()),
            Err(_) => errors += 1,
        }
        if errors > 1000 {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(p.pause) => {}
        }
    }
    match conn {
        OltpConn::Pg(c) => c.close().await?,
        OltpConn::My(c) => c.close().await?,
        OltpConn::Lite(c) => c.close().await?,
    }
    Ok(Latencies::of(lat, errors))
}

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// One engine's bench database.
struct Target {
    kind: Kind,
    /// `None` only while a SQLite copy is being swapped in.
    pool: Option<Pool>,
    /// The URL Lethe connects with.
    url: String,
    server: String,
    /// PostgreSQL / MariaDB: (admin URL, database to drop).
    drop: Option<(String, String)>,
    /// SQLite: the directory holding the template and the working copy.
    dir: Option<tempfile::TempDir>,
}

fn sqlite_options(url: &str) -> Res<SqliteConnectOptions> {
    // The same options Lethe's own sources use.
    Ok(SqliteConnectOptions::from_str(url)?
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true))
}

async fn sqlite_pool(url: &str) -> Res<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(sqlite_options(url)?)
        .await?)
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn db_name() -> String {
    format!(
        "lethe_bench_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Run one statement on a server's admin connection (one connection, so a
/// refused connection reports its own error rather than a pool timeout).
async fn admin_exec(kind: Kind, url: &str, sql: String) -> Res<()> {
    use sqlx::Connection;
    let within = Duration::from_secs(10);
    let timed_out = || format!("no answer within {} s", within.as_secs());
    match kind {
        Kind::Postgres => {
            let mut c = tokio::time::timeout(within, sqlx::PgConnection::connect(url))
                .await
                .map_err(|_| timed_out())??;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await?;
            c.close().await?;
        }
        Kind::MariaDb => {
            let mut c = tokio::time::timeout(within, sqlx::MySqlConnection::connect(url))
                .await
                .map_err(|_| timed_out())??;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await?;
            c.close().await?;
        }
        Kind::Sqlite => unreachable!("SQLite has no server"),
    }
    Ok(())
}

impl Target {
    /// Create a fresh, uniquely named database. `Err` means "unreachable".
    async fn create(kind: Kind, p: &Params) -> Res<Target> {
        match kind {
            Kind::Postgres => {
                let name = db_name();
                admin_exec(kind, &p.pg_url, format!("CREATE DATABASE {name}")).await?;
                let url = with_database(&p.pg_url, &name);
                let mut t = Target {
                    kind,
                    pool: None,
                    url: url.clone(),
                    server: String::new(),
                    drop: Some((p.pg_url.clone(), name)),
                    dir: None,
                };
                let opened: Res<()> = async {
                    t.pool = Some(Pool::Pg(
                        PgPoolOptions::new()
                            .max_connections(2)
                            .connect(&url)
                            .await?,
                    ));
                    let v: String = sqlx::query_scalar("SHOW server_version")
                        .fetch_one(t.pg())
                        .await?;
                    t.server = format!("PostgreSQL {}", v.split_whitespace().next().unwrap_or(&v));
                    Ok(())
                }
                .await;
                match opened {
                    Ok(()) => Ok(t),
                    Err(e) => {
                        t.teardown().await;
                        Err(e)
                    }
                }
            }
            Kind::MariaDb => {
                let name = db_name();
                admin_exec(kind, &p.mysql_url, format!("CREATE DATABASE {name}")).await?;
                let url = with_database(&p.mysql_url, &name);
                let mut t = Target {
                    kind,
                    pool: None,
                    url: url.clone(),
                    server: String::new(),
                    drop: Some((p.mysql_url.clone(), name)),
                    dir: None,
                };
                let opened: Res<()> = async {
                    t.pool = Some(Pool::My(
                        MySqlPoolOptions::new()
                            .max_connections(2)
                            .connect(&url)
                            .await?,
                    ));
                    let v: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(t.my())
                        .await?;
                    t.server = if v.to_ascii_lowercase().contains("mariadb") {
                        format!("MariaDB {}", v.split('-').next().unwrap_or(&v))
                    } else {
                        format!("MySQL {v}")
                    };
                    Ok(())
                }
                .await;
                match opened {
                    Ok(()) => Ok(t),
                    Err(e) => {
                        t.teardown().await;
                        Err(e)
                    }
                }
            }
            Kind::Sqlite => {
                let dir = tempfile::Builder::new().prefix("lethe_bench_").tempdir()?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                );
                let pool = sqlite_pool(&url).await?;
                let v: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(&pool)
                    .await?;
                Ok(Target {
                    kind,
                    pool: Some(Pool::Lite(pool)),
                    url,
                    server: format!("SQLite {v}"),
                    drop: None,
                    dir: Some(dir),
                })
            }
        }
    }

    fn pg(&self) -> &PgPool {
        match &self.pool {
            Some(Pool::Pg(p)) => p,
            _ => unreachable!("not a PostgreSQL target"),
        }
    }

    fn my(&self) -> &MySqlPool {
        match &self.pool {
            Some(Pool::My(p)) => p,
            _ => unreachable!("not a MariaDB target"),
        }
    }

    fn lite(&self) -> &SqlitePool {
        match &self.pool {
            Some(Pool::Lite(p)) => p,
            _ => unreachable!("not a SQLite target"),
        }
    }

    async fn exec(&self, sql: String) -> Res<()> {
        let sql = AssertSqlSafe(sql);
        match &self.pool {
            Some(Pool::Pg(p)) => {
                sqlx::raw_sql(sql).execute(p).await?;
            }
            Some(Pool::My(p)) => {
                sqlx::raw_sql(sql).execute(p).await?;
            }
            Some(Pool::Lite(p)) => {
                sqlx::raw_sql(sql).execute(p).await?;
            }
            None => unreachable!("pool is open"),
        }
        Ok(())
    }

    /// One `COUNT(*)` (or any integer) query on the bench database.
    async fn scalar(&self, sql: String) -> Res<i64> {
        let sql = AssertSqlSafe(sql);
        Ok(match &self.pool {
            Some(Pool::Pg(p)) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Some(Pool::My(p)) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Some(Pool::Lite(p)) => sqlx::query_scalar(sql).fetch_one(p).await?,
            None => unreachable!("pool is open"),
        })
    }

    /// The cutoff as a literal of the column's type.
    fn cutoff_sql(&self, p: &Params) -> String {
        match self.kind {
            Kind::Sqlite => format!("'{}'", p.cutoff_text()),
            _ => format!("TIMESTAMP '{}'", p.cutoff_text()),
        }
    }

    /// What the tables hold now, for the checks before and after a method.
    async fn counts(&self, p: &Params, shape: Shape) -> Res<Counts> {
        let c = self.cutoff_sql(p);
        // An anonymized row has a NULL payload and a user_ref that is no
        // longer the seeded `user-N`.
        let plain = "(payload IS NOT NULL OR user_ref LIKE 'user-%')";
        let fresh = "payload IS NOT NULL AND user_ref LIKE 'user-%'";
        Ok(Counts {
            all: self.scalar("SELECT COUNT(*) FROM events".into()).await?,
            old: self
                .scalar(format!(
                    "SELECT COUNT(*) FROM events WHERE created_at < {c}"
                ))
                .await?,
            old_plain: self
                .scalar(format!(
                    "SELECT COUNT(*) FROM events WHERE created_at < {c} AND {plain}"
                ))
                .await?,
            fresh_plain: self
                .scalar(format!(
                    "SELECT COUNT(*) FROM events WHERE created_at >= {c} AND {fresh}"
                ))
                .await?,
            items: if shape == Shape::Cascade {
                self.scalar("SELECT COUNT(*) FROM event_items".into())
                    .await?
            } else {
                0
            },
        })
    }

    /// A fresh, equal copy of the shape's tables: generated server-side,
    /// indexed, statistics gathered and flushed to disk, then counted.
    async fn load(&mut self, p: &Params, shape: Shape) -> Res<Duration> {
        let started = Instant::now();
        let (n, f, m) = (p.rows, p.expired_ppm, PPM);
        let cutoff = p.cutoff_text();
        let g = match self.kind {
            Kind::Postgres => "g::bigint",
            Kind::MariaDb => "seq",
            Kind::Sqlite => "g",
        };
        let (old, new) = p.layout.offsets(g, n);
        let partitioned = shape == Shape::Partitioned;
        let months = partition_months(p);
        match self.kind {
            Kind::Postgres => {
                self.exec("DROP TABLE IF EXISTS event_items".into()).await?;
                self.exec("DROP TABLE IF EXISTS events".into()).await?;
                self.exec(format!(
                    "CREATE TABLE events (id integer NOT NULL, user_ref text NOT NULL, \
                     created_at timestamp NOT NULL, payload text, PRIMARY KEY ({})){}",
                    if partitioned { "id, created_at" } else { "id" },
                    if partitioned {
                        " PARTITION BY RANGE (created_at)"
                    } else {
                        ""
                    }
                ))
                .await?;
                if partitioned {
                    for (name, from, to) in &months {
                        self.exec(format!(
                            "CREATE TABLE events_{name} PARTITION OF events \
                             FOR VALUES FROM ('{from}') TO ('{to}')"
                        ))
                        .await?;
                    }
                }
                self.exec(format!(
                    "INSERT INTO events (id, user_ref, created_at, payload) \
                     SELECT g, 'user-' || (g % 50000), \
                       CASE WHEN (g::bigint * {f}) / {m} <> ((g::bigint - 1) * {f}) / {m} \
                         THEN TIMESTAMP '{cutoff}' - {old} * INTERVAL '1 second' \
                         ELSE TIMESTAMP '{cutoff}' + {new} * INTERVAL '1 second' END, \
                       md5(g::text) || left(md5((g + 1)::text), 28) \
                     FROM generate_series(1, {n}) AS g"
                ))
                .await?;
                if shape.indexed() {
                    self.exec("CREATE INDEX events_created_at ON events (created_at)".into())
                        .await?;
                }
                if shape == Shape::Cascade {
                    self.exec(
                        "CREATE TABLE event_items (id integer PRIMARY KEY, \
                         event_id integer NOT NULL REFERENCES events (id), note text NOT NULL)"
                            .into(),
                    )
                    .await?;
                    self.exec(
                        "INSERT INTO event_items (id, event_id, note) \
                         SELECT id, id, 'item-' || id FROM events"
                            .into(),
                    )
                    .await?;
                    self.exec("CREATE INDEX event_items_event_id ON event_items (event_id)".into())
                        .await?;
                    self.exec("VACUUM (ANALYZE) event_items".into()).await?;
                }
                self.exec("VACUUM (ANALYZE) events".into()).await?;
                self.exec("CHECKPOINT".into()).await?;
            }
            Kind::MariaDb => {
                self.exec("DROP TABLE IF EXISTS event_items".into()).await?;
                self.exec("DROP TABLE IF EXISTS events".into()).await?;
                let parts = if partitioned {
                    let list: Vec<String> = months
                        .iter()
                        .map(|(name, _, to)| format!("PARTITION {name} VALUES LESS THAN ('{to}')"))
                        .collect();
                    format!(
                        " PARTITION BY RANGE COLUMNS (created_at) ({})",
                        list.join(", ")
                    )
                } else {
                    String::new()
                };
                self.exec(format!(
                    "CREATE TABLE events (id INT NOT NULL, user_ref VARCHAR(64) NOT NULL, \
                     created_at DATETIME NOT NULL, payload VARCHAR(128) NULL, \
                     PRIMARY KEY ({})) ENGINE=InnoDB{parts}",
                    if partitioned { "id, created_at" } else { "id" },
                ))
                .await?;
                // The sequence engine (`seq_1_to_N`) generates the keys server-side.
                self.exec(format!(
                    "INSERT INTO events (id, user_ref, created_at, payload) \
                     SELECT seq, CONCAT('user-', seq % 50000), \
                       IF((seq * {f}) DIV {m} <> ((seq - 1) * {f}) DIV {m}, \
                          TIMESTAMP '{cutoff}' - INTERVAL {old} SECOND, \
                          TIMESTAMP '{cutoff}' + INTERVAL {new} SECOND), \
                       CONCAT(MD5(seq), LEFT(MD5(seq + 1), 28)) \
                     FROM seq_1_to_{n}"
                ))
                .await?;
                if shape.indexed() {
                    self.exec("CREATE INDEX events_created_at ON events (created_at)".into())
                        .await?;
                }
                let mut tables = "events".to_string();
                if shape == Shape::Cascade {
                    self.exec(
                        "CREATE TABLE event_items (id INT NOT NULL PRIMARY KEY, \
                         event_id INT NOT NULL, note VARCHAR(64) NOT NULL, \
                         FOREIGN KEY (event_id) REFERENCES events (id)) ENGINE=InnoDB"
                            .into(),
                    )
                    .await?;
                    self.exec(
                        "INSERT INTO event_items (id, event_id, note) \
                         SELECT id, id, CONCAT('item-', id) FROM events"
                            .into(),
                    )
                    .await?;
                    sqlx::query("ANALYZE TABLE event_items")
                        .fetch_all(self.my())
                        .await?;
                    tables.push_str(", event_items");
                }
                sqlx::query("ANALYZE TABLE events")
                    .fetch_all(self.my())
                    .await?;
                // Write the tables' dirty pages out now (not during the
                // measurement), on one session: FOR EXPORT holds a lock.
                let mut conn = self.my().acquire().await?;
                sqlx::raw_sql(AssertSqlSafe(format!("FLUSH TABLES {tables} FOR EXPORT")))
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("UNLOCK TABLES").execute(&mut *conn).await?;
            }
            Kind::Sqlite => {
                if partitioned {
                    return Err("SQLite has no partitions".into());
                }
                // One template file per shape, generated once; every
                // measurement gets a byte-identical copy (and so the same
                // page layout).
                let dir = self
                    .dir
                    .as_ref()
                    .expect("sqlite has a dir")
                    .path()
                    .to_owned();
                let template = dir.join(format!("template_{}.db", shape.name()));
                let work = dir.join("bench.db");
                if let Some(Pool::Lite(pool)) = self.pool.take() {
                    pool.close().await;
                }
                if !template.exists() {
                    let url = format!("sqlite://{}?mode=rwc", template.display());
                    let pool = sqlite_pool(&url).await?;
                    let mut stmts = vec![
                        "CREATE TABLE events (id INTEGER PRIMARY KEY, user_ref TEXT NOT NULL, \
                         created_at TEXT NOT NULL, payload TEXT)"
                            .to_string(),
                        format!(
                            "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < {n}) \
                             INSERT INTO events (id, user_ref, created_at, payload) \
                             SELECT g, 'user-' || (g % 50000), \
                               CASE WHEN (g * {f}) / {m} <> ((g - 1) * {f}) / {m} \
                                 THEN datetime('{cutoff}', '-' || {old} || ' seconds') \
                                 ELSE datetime('{cutoff}', '+' || {new} || ' seconds') END, \
                               hex(randomblob(30)) \
                             FROM seq"
                        ),
                    ];
                    if shape.indexed() {
                        stmts.push(
                            "CREATE INDEX events_created_at ON events (created_at)".to_string(),
                        );
                    }
                    if shape == Shape::Cascade {
                        stmts.push(
                            "CREATE TABLE event_items (id INTEGER PRIMARY KEY, \
                             event_id INTEGER NOT NULL REFERENCES events (id), note TEXT NOT NULL)"
                                .to_string(),
                        );
                        stmts.push(
                            "INSERT INTO event_items (id, event_id, note) \
                             SELECT id, id, 'item-' || id FROM events"
                                .to_string(),
                        );
                        stmts.push(
                            "CREATE INDEX event_items_event_id ON event_items (event_id)"
                                .to_string(),
                        );
                    }
                    stmts.push("ANALYZE".to_string());
                    for s in stmts {
                        sqlx::raw_sql(AssertSqlSafe(s)).execute(&pool).await?;
                    }
                    pool.close().await;
                }
                for suffix in ["-journal", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.join(format!("bench.db{suffix}")));
                }
                std::fs::copy(&template, &work)?;
                // On disk now, so the first commit measured does not pay for the copy.
                std::fs::File::open(&work)?.sync_all()?;
                self.pool = Some(Pool::Lite(sqlite_pool(&self.url).await?));
            }
        }
        let took = started.elapsed();
        let c = self.counts(p, shape).await?;
        let want = Counts::loaded(p, shape);
        if c != want {
            return Err(format!("loaded {c:?}; expected {want:?}").into());
        }
        Ok(took)
    }

    /// Drop the database (PostgreSQL, MariaDB) or the temporary directory.
    async fn teardown(mut self) {
        match self.pool.take() {
            Some(Pool::Pg(p)) => p.close().await,
            Some(Pool::My(p)) => p.close().await,
            Some(Pool::Lite(p)) => p.close().await,
            None => {}
        }
        if let Some((admin_url, name)) = self.drop.take() {
            let sql = match self.kind {
                Kind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            let res = admin_exec(self.kind, &admin_url, sql).await;
            match res {
                Ok(()) => println!("  dropped database {name}"),
                Err(e) => {
                    eprintln!("  WARNING: could not drop database {name}: {e}; drop it by hand")
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().display().to_string();
            if let Err(e) = dir.close() {
                eprintln!("  WARNING: could not remove {path}: {e}");
            }
        }
    }
}

/// One measured method on one engine.
struct Outcome {
    method: &'static str,
    label: String,
    batch_size: Option<usize>,
    /// Lethe's `batch_time` where its batches are sized by time (then
    /// `batch_size` is the first batch).
    batch_time_ms: Option<u64>,
    /// Lethe's `concurrency` (1 for every other method).
    workers: usize,
    /// Rows deleted (or anonymized).
    deleted: u64,
    secs: f64,
    /// NaN where it cannot be seen (pt-archiver runs as its own process).
    longest_ms: f64,
    batches: u64,
    /// Peak RSS while Lethe ran (KiB), Lethe methods only.
    rss_kib: Option<u64>,
    /// RSS just before Lethe ran (the bench's own share of the peak).
    rss_base_kib: Option<u64>,
    oltp_idle: Option<Latencies>,
    oltp_during: Option<Latencies>,
    /// The 1-minute load average when the method started and ended.
    load: (f64, f64),
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.deleted as f64 / self.secs
    }

    fn new(method: &'static str, label: impl Into<String>, batch_size: Option<usize>) -> Outcome {
        Outcome {
            method,
            label: label.into(),
            batch_size,
            batch_time_ms: None,
            workers: 1,
            deleted: 0,
            secs: 0.0,
            longest_ms: f64::NAN,
            batches: 0,
            rss_kib: None,
            rss_base_kib: None,
            oltp_idle: None,
            oltp_during: None,
            load: (f64::NAN, f64::NAN),
        }
    }
}

/// (a) The one statement a DBA would type, in one transaction: `DELETE …
/// WHERE created_at < cutoff`; on `anonymize` the `UPDATE` that hashes
/// `user_ref` and nulls `payload`; on `cascade` the children's `DELETE` and
/// the parents' in one transaction.
async fn raw_delete(t: &Target, p: &Params, shape: Shape) -> Res<Outcome> {
    let c = t.cutoff_sql(p);
    let statements: Vec<String> = match shape {
        Shape::Anonymize => {
            // The keyed hash in SQL: SHA-256 over key and value (one pass,
            // cheaper than Lethe's HMAC). SQLite has no hash function built
            // in: random bytes stand in, which makes its raw figure a ceiling.
            let hashed = match t.kind {
                Kind::Postgres => {
                    "encode(sha256(convert_to('bench-secret' || user_ref, 'UTF8')), 'hex')"
                }
                Kind::MariaDb => "SHA2(CONCAT('bench-secret', user_ref), 256)",
                Kind::Sqlite => "hex(randomblob(32))",
            };
            vec![format!(
                "UPDATE events SET user_ref = {hashed}, payload = NULL WHERE created_at < {c}"
            )]
        }
        Shape::Cascade => vec![
            format!(
                "DELETE FROM event_items WHERE event_id IN \
                 (SELECT id FROM events WHERE created_at < {c})"
            ),
            format!("DELETE FROM events WHERE created_at < {c}"),
        ],
        _ => vec![format!("DELETE FROM events WHERE created_at < {c}")],
    };
    let started = Instant::now();
    let mut affected = 0;
    macro_rules! in_tx {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            for s in &statements {
                affected = sqlx::query(AssertSqlSafe(s.as_str()))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
        }};
    }
    match t.kind {
        Kind::Postgres => in_tx!(t.pg()),
        Kind::MariaDb => in_tx!(t.my()),
        Kind::Sqlite => in_tx!(t.lite()),
    }
    let secs = started.elapsed().as_secs_f64();
    let mut o = Outcome::new(
        "raw",
        match shape {
            Shape::Anonymize => "raw UPDATE",
            Shape::Cascade => "raw, one transaction",
            _ => "raw DELETE",
        },
        None,
    );
    o.deleted = affected;
    o.secs = secs;
    o.longest_ms = secs * 1000.0;
    o.batches = 1;
    Ok(o)
}

/// (a') What a DBA does with a partitioned table: drop every partition whose
/// whole range is past the cutoff (PostgreSQL: detach, then drop), then one
/// `DELETE` for the partition that straddles it. The dropped partitions'
/// rows are counted before the clock starts.
async fn raw_drop(t: &Target, p: &Params) -> Res<Outcome> {
    let cutoff_day = p.cutoff.date().format("%Y-%m-%d").to_string();
    let whole: Vec<String> = partition_months(p)
        .into_iter()
        .filter(|(_, _, to)| *to <= cutoff_day)
        .map(|(name, _, _)| name)
        .collect();
    let mut dropped_rows = 0i64;
    for name in &whole {
        let table = match t.kind {
            Kind::Postgres => format!("events_{name}"),
            _ => format!("events PARTITION ({name})"),
        };
        dropped_rows += t.scalar(format!("SELECT COUNT(*) FROM {table}")).await?;
    }
    let mut statements = Vec::new();
    match t.kind {
        Kind::Postgres => {
            for name in &whole {
                statements.push(format!("ALTER TABLE events DETACH PARTITION events_{name}"));
                statements.push(format!("DROP TABLE events_{name}"));
            }
        }
        Kind::MariaDb => {
            if !whole.is_empty() {
                statements.push(format!(
                    "ALTER TABLE events DROP PARTITION {}",
                    whole.join(", ")
                ));
            }
        }
        Kind::Sqlite => return Err("SQLite has no partitions".into()),
    }
    statements.push(format!(
        "DELETE FROM events WHERE created_at < {}",
        t.cutoff_sql(p)
    ));
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let mut deleted = 0;
    for s in &statements {
        let one = Instant::now();
        let sql = AssertSqlSafe(s.as_str());
        deleted = match t.kind {
            Kind::Postgres => sqlx::query(sql).execute(t.pg()).await?.rows_affected(),
            _ => sqlx::query(sql).execute(t.my()).await?.rows_affected(),
        };
        longest = longest.max(one.elapsed());
    }
    let mut o = Outcome::new("drop", format!("raw drop ({} whole)", whole.len()), None);
    o.deleted = deleted + dropped_rows as u64;
    o.secs = started.elapsed().as_secs_f64();
    o.longest_ms = longest.as_secs_f64() * 1000.0;
    o.batches = statements.len() as u64;
    Ok(o)
}

/// `pt-archiver` on `PATH`, if installed (`bench/setup.sh` installs it).
fn pt_archiver_path() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("pt-archiver"))
        .find(|p| p.is_file())
}

/// (e) Percona's pt-archiver at the fastest setting the issue measured:
/// `--purge --bulk-delete --limit N --commit-each --primary-key-only`
/// (walks the primary key forward, one bulk `DELETE` per chunk). Its own
/// process: the longest transaction is not visible from here.
async fn pt_archiver(t: &Target, p: &Params, exe: &Path) -> Res<Outcome> {
    // mysql://user[:password]@host[:port]/db
    let rest = t.url.split("://").nth(1).ok_or("a MySQL URL")?;
    let (authority, db) = rest.split_once('/').ok_or("a MySQL URL with a database")?;
    let db = db.split('?').next().unwrap_or(db);
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = match userinfo.split_once(':') {
        Some((u, pw)) => (u, Some(pw)),
        None => (userinfo, None),
    };
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let mut dsn = format!("h={host},P={port},u={user},D={db},t=events");
    if let Some(pw) = password {
        dsn.push_str(&format!(",p={pw}"));
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--source", &dsn])
        .args(["--where", &format!("created_at < '{}'", p.cutoff_text())])
        .args([
            "--purge",
            "--bulk-delete",
            "--commit-each",
            "--primary-key-only",
        ])
        .args(["--limit", &p.pt_limit.to_string()])
        .args(["--no-check-charset", "--no-safe-auto-increment"])
        .stdin(std::process::Stdio::null());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "pt-archiver exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let left = t.counts(p, Shape::Indexed).await?.old;
    let mut o = Outcome::new("pt_archiver", "pt-archiver", Some(p.pt_limit));
    o.deleted = (p.expired - left).max(0) as u64;
    o.secs = secs;
    o.batches = o.deleted.div_ceil(p.pt_limit as u64);
    Ok(o)
}

/// What a loop of batches did.
struct Driven {
    deleted: u64,
    batches: u64,
    secs: f64,
    longest_ms: f64,
}

/// Run `batch` (which returns the rows it deleted) until a batch comes back
/// short of `n`, timing the whole loop and its longest batch.
async fn drive<F, Fut>(n: usize, mut batch: F) -> Res<Driven>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<u64>>,
{
    let (mut deleted, mut batches, mut longest) = (0u64, 0u64, Duration::ZERO);
    let started = Instant::now();
    loop {
        let batch_started = Instant::now();
        let got = batch().await?;
        if got == 0 {
            break;
        }
        batches += 1;
        deleted += got;
        longest = longest.max(batch_started.elapsed());
        if got < n as u64 {
            break;
        }
    }
    Ok(Driven {
        deleted,
        batches,
        secs: started.elapsed().as_secs_f64(),
        longest_ms: longest.as_secs_f64() * 1000.0,
    })
}

/// `DELETE FROM events WHERE id IN (?, ?, …)` for MariaDB and SQLite.
fn in_list(n: usize) -> String {
    let mut s = String::with_capacity(40 + 3 * n);
    s.push_str("DELETE FROM events WHERE id IN (");
    for i in 0..n {
        s.push_str(if i == 0 { "?" } else { ",?" });
    }
    s.push(')');
    s
}

/// (b) What a typical script does: select a page of ids by primary key, delete
/// them by id, one transaction per batch, until nothing is left.
async fn plain_loop(t: &Target, p: &Params) -> Res<Outcome> {
    let n = p.loop_batch;
    let run = drive(n, || async {
        Ok(match t.kind {
            Kind::Postgres => {
                let mut tx = t.pg().begin().await?;
                let ids: Vec<i32> = sqlx::query_scalar(
                    "SELECT id FROM events WHERE created_at < $1 ORDER BY id LIMIT $2",
                )
                .bind(p.cutoff)
                .bind(n as i64)
                .fetch_all(&mut *tx)
                .await?;
                let d = if ids.is_empty() {
                    0
                } else {
                    sqlx::query("DELETE FROM events WHERE id = ANY($1)")
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                };
                tx.commit().await?;
                d
            }
            Kind::MariaDb => {
                let mut tx = t.my().begin().await?;
                let ids: Vec<i32> = sqlx::query_scalar(
                    "SELECT id FROM events WHERE created_at < ? ORDER BY id LIMIT ?",
                )
                .bind(p.cutoff)
                .bind(n as i64)
                .fetch_all(&mut *tx)
                .await?;
                let mut d = 0;
                if !ids.is_empty() {
                    let sql = in_list(ids.len());
                    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                    for id in &ids {
                        q = q.bind(*id);
                    }
                    d = q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                d
            }
            Kind::Sqlite => {
                let mut tx = t.lite().begin().await?;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM events WHERE created_at < ? ORDER BY id LIMIT ?",
                )
                .bind(p.cutoff_text())
                .bind(n as i64)
                .fetch_all(&mut *tx)
                .await?;
                let mut d = 0;
                if !ids.is_empty() {
                    let sql = in_list(ids.len());
                    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                    for id in &ids {
                        q = q.bind(*id);
                    }
                    d = q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                d
            }
        })
    })
    .await?;
    Ok(Outcome {
        method: "plain_loop",
        label: "plain loop (ids by PK)".into(),
        batch_size: Some(n),
        workers: 1,
        deleted: run.deleted,
        secs: run.secs,
        longest_ms: run.longest_ms,
        batches: run.batches,
        ..Outcome::new("", "", None)
    })
}

/// The fastest batched statement the issue reports for each engine, with no
/// RETURNING and nothing else per batch, in a loop of autocommitted batches:
/// the best a batching tool could hope for on this machine, measured in the
/// same run as Lethe.
///
/// - PostgreSQL: `DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT n))`
/// - MariaDB: `DELETE … WHERE … ORDER BY created_at, id LIMIT n`
/// - SQLite: `DELETE … WHERE rowid IN (SELECT rowid … ORDER BY created_at LIMIT n)`
async fn reference_loop(t: &Target, p: &Params) -> Res<Outcome> {
    let n = p.loop_batch;
    let run = drive(n, || async {
        Ok(match t.kind {
            Kind::Postgres => sqlx::query(
                "DELETE FROM events WHERE ctid = ANY(ARRAY(\
                 SELECT ctid FROM events WHERE created_at < $1 LIMIT $2))",
            )
            .bind(p.cutoff)
            .bind(n as i64)
            .execute(t.pg())
            .await?
            .rows_affected(),
            Kind::MariaDb => sqlx::query(
                "DELETE FROM events WHERE created_at < ? ORDER BY created_at, id LIMIT ?",
            )
            .bind(p.cutoff)
            .bind(n as i64)
            .execute(t.my())
            .await?
            .rows_affected(),
            Kind::Sqlite => sqlx::query(
                "DELETE FROM events WHERE rowid IN (\
                 SELECT rowid FROM events WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            )
            .bind(p.cutoff_text())
            .bind(n as i64)
            .execute(t.lite())
            .await?
            .rows_affected(),
        })
    })
    .await?;
    Ok(Outcome {
        method: "reference",
        label: "reference batch".into(),
        batch_size: Some(n),
        workers: 1,
        deleted: run.deleted,
        secs: run.secs,
        longest_ms: run.longest_ms,
        batches: run.batches,
        ..Outcome::new("", "", None)
    })
}

/// A TOML basic string (JSON escaping is valid TOML for these paths).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// What a Lethe run adds to the defaults besides `batch_size` and
/// `concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    /// `partitions = "drop"`.
    DropPartitions,
    /// `[sources.app.pause_when]` with thresholds no run reaches: what
    /// reading the server's status views costs the loop.
    Throttled,
}

/// A config and a job in a temp dir, loaded as `lethe` loads them. `batch`
/// `None` and `workers` 1 leave both settings out: the defaults a user ships.
fn lethe_config(
    t: &Target,
    shape: Shape,
    batch: Option<usize>,
    workers: usize,
    variant: Variant,
) -> Res<(tempfile::TempDir, lethe::config::Loaded)> {
    let dir = tempfile::Builder::new()
        .prefix("lethe_bench_cfg_")
        .tempdir()?;
    let root = dir.path();
    let jobs = root.join("jobs");
    std::fs::create_dir_all(&jobs)?;
    let config_path = root.join("lethe.toml");
    let state_url = format!("sqlite://{}?mode=rwc", root.join("state.db").display());
    std::fs::write(
        &config_path,
        format!(
            "# written by benches/delete_throughput.rs\n\
             [sources.app]\n\
             url = \"${{LETHE_BENCH_SOURCE_URL}}\"\n\
             {}{}\n\
             [audit]\n\
             dir = {}\n\n\
             [state]\n\
             url = {}\n",
            if workers > 1 {
                format!("max_connections = {workers}\n")
            } else {
                String::new()
            },
            if variant == Variant::Throttled {
                "[sources.app.pause_when]\nlock_waits = 1000000\nactive_sessions = 1000000\n"
            } else {
                ""
            },
            toml_str(&root.join("audit").display().to_string()),
            toml_str(&state_url),
        ),
    )?;
    let action = match shape {
        Shape::Anonymize => "{ anonymize = { user_ref = \"hash\", payload = \"null\" } }",
        _ => "\"delete\"",
    };
    let mut job = format!(
        "name = \"delete-throughput\"\n\
         policy = \"bench\"\n\
         description = \"Benchmark: {} events older than {OLDER_THAN_DAYS} days.\"\n\n\
         [[rules]]\n\
         name = \"expired-events\"\n\
         target = \"app.events\"\n\
         key = \"id\"\n\
         select = {{ column = \"created_at\", older_than = \"{OLDER_THAN_DAYS}d\" }}\n\
         action = {action}\n",
        if shape.deletes() {
            "delete"
        } else {
            "anonymize"
        }
    );
    if let Some(b) = batch {
        job.push_str(&format!("batch_size = {b}\n"));
    }
    if workers > 1 {
        job.push_str(&format!("concurrency = {workers}\n"));
    }
    if variant == Variant::DropPartitions {
        job.push_str("partitions = \"drop\"\n");
    }
    if shape == Shape::Cascade {
        job.push_str(
            "\n  [[rules.children]]\n  target = \"app.event_items\"\n  \
             foreign_key = \"event_id\"\n  action = \"delete\"\n",
        );
    }
    std::fs::write(jobs.join("bench.toml"), job)?;
    let url = t.url.clone();
    let loaded = lethe::config::load_with_env(&config_path, &jobs, &|k| {
        (k == "LETHE_BENCH_SOURCE_URL").then(|| url.clone())
    })
    .map_err(|e| format!("lethe config: {e}"))?;
    Ok((dir, loaded))
}

/// (c) The real library: a config and a job written to a temp dir, loaded
/// with `config::load_with_env`, run with `engine::run` in execute mode.
/// Its peak RSS is this process's high-water mark, reset just before the
/// run (it includes the bench's own few MiB and the OLTP connection).
async fn lethe_run(
    t: &Target,
    p: &Params,
    shape: Shape,
    batch: Option<usize>,
    workers: usize,
    variant: Variant,
) -> Res<Outcome> {
    let (_dir, loaded) = lethe_config(t, shape, batch, workers, variant)?;
    let batch_size = loaded.jobs[0].rules[0].batch_size;
    let batch_time_ms = loaded.jobs[0].rules[0]
        .batch_time
        .map(|t| t.as_millis() as u64);
    // A production state store was migrated by an earlier run: do that
    // outside the measurement, so a first-ever run's schema setup is not timed.
    lethe::state::State::open(&loaded.config.state.url, loaded.config.state.lease_ttl)
        .await?
        .close()
        .await;
    let keys = Keys::from_secret(SECRET);
    let opts = RunOptions {
        as_of: p.as_of,
        mode: Mode::Execute,
        jobs: vec![],
        cancel: CancellationToken::new(),
        shard: None,
        progress: None,
    };
    let rss_base_kib = rss_kib();
    let rss_reset = reset_peak_rss();
    let started = Instant::now();
    let report = lethe::engine::run(&loaded, &keys, opts).await?;
    let secs = started.elapsed().as_secs_f64();
    let rss_peak = if rss_reset { peak_rss_kib() } else { None };
    let rule = report
        .jobs
        .first()
        .and_then(|j| j.rules.first())
        .ok_or("lethe: the report has no rule")?;
    if rule.status != RuleStatus::Done || report.status != "completed" {
        return Err(format!(
            "lethe: run {} / rule {:?}: {}",
            report.status,
            rule.status,
            rule.message.as_deref().unwrap_or("-")
        )
        .into());
    }
    let audit = lethe::audit::verify::verify_file(Path::new(&report.audit_file));
    // run_start, one record per batch, run_end.
    if !audit.ok() || audit.records != rule.batches + 2 {
        return Err(format!(
            "lethe: audit file {} does not verify ({} records for {} batches, broken at {:?})",
            report.audit_file, audit.records, rule.batches, audit.broken_at
        )
        .into());
    }
    if !rule.throttled.is_empty() {
        return Err(format!(
            "lethe: the run paused ({:?}): its thresholds are meant never to be reached",
            rule.throttled
        )
        .into());
    }
    let mut o = Outcome::new(
        match (variant, batch) {
            (Variant::DropPartitions, _) => "lethe_drop",
            (Variant::Throttled, _) => "throttled",
            (Variant::Plain, None) => "default",
            (Variant::Plain, Some(_)) => "lethe",
        },
        match (batch, workers) {
            _ if variant == Variant::Throttled => "lethe (defaults, pause_when)".to_string(),
            _ if variant == Variant::DropPartitions => format!(
                "lethe, partitions = drop ({})",
                rule.partitions
                    .iter()
                    .filter(|p| p.status == "dropped")
                    .count()
            ),
            (None, _) => "lethe (defaults)".to_string(),
            (_, 1) => "lethe".to_string(),
            (_, w) => format!("lethe ×{w}"),
        },
        Some(batch_size),
    );
    o.batch_time_ms = batch_time_ms;
    o.workers = workers;
    o.deleted = rule.done;
    o.secs = secs;
    o.longest_ms = rule.longest_batch_ms as f64;
    o.batches = rule.batches;
    o.rss_kib = rss_peak;
    o.rss_base_kib = rss_base_kib;
    Ok(o)
}

/// (d) Diagnostic, not in the default set: Lethe's own batch statement, on
/// Lethe's own `Db`, in a bare loop of one transaction per batch, without the
/// engine's counts, lease, state store or audit log. `lethe` minus `bare` is
/// the engine's bookkeeping; `bare` against `raw` is the price of batching.
async fn bare_run(t: &Target, p: &Params, batch: usize) -> Res<Outcome> {
    let (_dir, loaded) = lethe_config(t, Shape::Indexed, Some(batch), 1, Variant::Plain)?;
    let rule = &loaded.jobs[0].rules[0];
    let src = &loaded.config.sources["app"];
    let started = Instant::now();
    let db = lethe::sql::Db::connect("app", &src.url, src.max_connections, src.batch_pause).await?;
    let sql = lethe::engine::prepare_rule(&db, rule, p.as_of)
        .await
        .map_err(|e| e.join("; "))?;
    if !sql.fast_delete(db.dialect()) {
        return Err("bare: this engine has no one-statement batch delete".into());
    }
    let keys = lethe::keys::Keys::from_secret(b"bench-bare-never-hashes");
    let (mut deleted, mut batches, mut longest) = (0u64, 0u64, Duration::ZERO);
    let mut bound: Option<String> = None;
    loop {
        let batch_started = Instant::now();
        let mut tx = db.begin().await?;
        let got =
            lethe::engine::act_next_batch(&mut tx, &db, &keys, &sql, None, bound.as_deref(), None)
                .await?;
        let n = got.count as usize;
        if n == 0 {
            tx.rollback(&db).await?;
            break;
        }
        tx.commit(&db).await?;
        batches += 1;
        deleted += n as u64;
        longest = longest.max(batch_started.elapsed());
        bound = got.bound;
        if n < batch {
            break;
        }
    }
    db.close().await;
    Ok(Outcome {
        method: "bare",
        label: "bare Lethe statement".into(),
        batch_size: Some(batch),
        workers: 1,
        deleted,
        secs: started.elapsed().as_secs_f64(),
        longest_ms: longest.as_secs_f64() * 1000.0,
        batches,
        ..Outcome::new("", "", None)
    })
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Report {
    out: std::fs::File,
    failed: bool,
}

impl Report {
    fn line(&mut self, v: serde_json::Value) {
        if let Err(e) = writeln!(self.out, "{v}") {
            eprintln!("WARNING: cannot write the JSON Lines file: {e}");
        }
    }
}

fn header(ranges: bool) -> String {
    format!(
        "  {:<26} {:>7} {:>11} {:>9} {:>11} {:>6} {:>9} {:>7} {:>7} {:>25} {:>9}{}",
        "method",
        "batch",
        "rows",
        "seconds",
        "rows/s",
        "vs raw",
        "longest",
        "batches",
        "RSS MiB",
        "OLTP p99 ms idle→during",
        "load",
        if ranges { "   range of seconds" } else { "" }
    )
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.0}")
    }
}

fn oltp_cell(o: &Outcome) -> String {
    match (o.oltp_idle, o.oltp_during) {
        (Some(i), Some(d)) => format!(
            "{:.1}→{:.1} (×{:.1})",
            i.p99_ms,
            d.p99_ms,
            d.p99_ms / i.p99_ms
        ),
        (Some(i), None) => format!("{:.1}→-", i.p99_ms),
        _ => "-".into(),
    }
}

fn row(o: &Outcome, raw_rate: Option<f64>, range: Option<(f64, f64)>) -> String {
    format!(
        "  {:<26} {:>7} {:>11} {:>9.3} {:>11} {:>6} {:>9} {:>7} {:>7} {:>25} {:>9}{}",
        o.label,
        match (o.batch_time_ms, o.batch_size) {
            (Some(t), _) => format!("{t} ms"),
            (None, Some(b)) => group(b as u64),
            (None, None) => "-".into(),
        },
        group(o.deleted),
        o.secs,
        group(o.rate().round() as u64),
        raw_rate
            .map(|r| format!("{:.2}", o.rate() / r))
            .unwrap_or_else(|| "-".into()),
        ms(o.longest_ms),
        o.batches,
        o.rss_kib
            .map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into()),
        oltp_cell(o),
        format!("{:.1}/{:.1}", o.load.0, o.load.1),
        range
            .map(|(lo, hi)| format!("   {lo:.3}–{hi:.3}"))
            .unwrap_or_default()
    )
}

fn round3(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!((v * 1e3).round() / 1e3)
    } else {
        serde_json::Value::Null
    }
}

/// Every shape on one engine.
async fn bench_engine(t: &mut Target, p: &Params, rep: &mut Report) -> Res<()> {
    println!(
        "\n== {} · {} rows, {} expired ({:.0}%) · cutoff {} · {} ==",
        t.server,
        group(p.rows as u64),
        group(p.expired as u64),
        100.0 * p.expired as f64 / p.rows as f64,
        p.cutoff_text(),
        shown(&t.url)
    );
    let pt = pt_archiver_path();
    if t.kind == Kind::MariaDb && p.methods.contains(&"pt_archiver") && pt.is_none() {
        println!(
            "  pt-archiver: SKIPPED — not installed; `bench/setup.sh` installs it \
             (apt-get install -y percona-toolkit)"
        );
        rep.line(json!({
            "type": "skipped",
            "engine": t.kind.name(),
            "method": "pt_archiver",
            "reason": "pt-archiver is not installed",
        }));
    }
    for &shape in &p.shapes {
        if shape == Shape::Partitioned && t.kind == Kind::Sqlite {
            println!("\n  -- partitioned: SKIPPED — SQLite has no partitions");
            rep.line(json!({
                "type": "skipped",
                "engine": t.kind.name(),
                "shape": shape.name(),
                "reason": "SQLite has no partitions",
            }));
            continue;
        }
        bench_shape(t, p, shape, pt.as_deref(), rep).await?;
    }
    Ok(())
}

/// Every method on one shape, each on a fresh copy of the tables, with the
/// OLTP load measured idle before the method and again while it runs.
async fn bench_shape(
    t: &mut Target,
    p: &Params,
    shape: Shape,
    pt: Option<&Path>,
    rep: &mut Report,
) -> Res<()> {
    println!("\n  -- {} --", shape.name());
    // (method, batch size (0: none / defaults), Lethe workers)
    let mut plan: Vec<(&str, usize, usize)> = Vec::new();
    let mut not_here = Vec::new();
    for m in &p.methods {
        if let Some(why) = not_applicable(m, shape, t.kind) {
            not_here.push(format!("{m} ({why})"));
            continue;
        }
        match *m {
            "raw" => plan.push(("raw", 0, 1)),
            "drop" => plan.push(("drop", 0, 1)),
            "plain_loop" => plan.push(("plain_loop", p.loop_batch, 1)),
            "bare" => plan.extend(p.lethe_batches.iter().map(|b| ("bare", *b, 1))),
            "reference" => plan.push(("reference", p.loop_batch, 1)),
            "pt_archiver" if pt.is_some() => plan.push(("pt_archiver", p.pt_limit, 1)),
            "pt_archiver" => {}
            "default" => plan.push(("default", 0, 1)),
            "lethe_drop" => plan.push(("lethe_drop", 0, 1)),
            "throttled" => plan.push(("throttled", 0, 1)),
            _ => {
                plan.extend(p.lethe_batches.iter().map(|b| ("lethe", *b, 1)));
                // Side-by-side windows apply to one-statement batches only:
                // a plain delete, and on PostgreSQL an anonymize.
                let one_statement = match shape {
                    Shape::Cascade => false,
                    Shape::Anonymize => t.kind == Kind::Postgres,
                    _ => true,
                };
                if let Some(&largest) = p.lethe_batches.iter().max()
                    && t.kind != Kind::Sqlite
                    && one_statement
                {
                    plan.extend(p.lethe_workers.iter().map(|w| ("lethe", largest, *w)));
                }
            }
        }
    }
    if !not_here.is_empty() {
        println!("  not measured on this shape: {}", not_here.join("; "));
    }
    // Rounds go round-robin over the methods, so a change in the machine's
    // load during the run spreads over all of them; each method's median
    // round is reported.
    let mut runs: Vec<Vec<Outcome>> = plan.iter().map(|_| Vec::new()).collect();
    for round in 1..=p.repeat {
        for (i, &(method, batch, workers)) in plan.iter().enumerate() {
            let load = t.load(p, shape).await?;
            eprint!(
                "  {}fresh copy loaded in {:.1} s; running {method}{} … ",
                if p.repeat > 1 {
                    format!("round {round}/{}: ", p.repeat)
                } else {
                    String::new()
                },
                load.as_secs_f64(),
                match (batch, workers) {
                    (0, _) => String::new(),
                    (b, 1) => format!(" ({b}/batch)"),
                    (b, w) => format!(" ({b}/batch, concurrency {w})"),
                }
            );
            let spec = OltpSpec {
                kind: t.kind,
                url: t.url.clone(),
                rows: p.rows,
                expired_ppm: p.expired_ppm,
                params: p.oltp.clone(),
            };
            let seed = 0x9E37_79B9_7F4A_7C15 ^ ((round as u64) << 32 | i as u64);
            let idle = if p.oltp.on {
                let stop = CancellationToken::new();
                let timer = stop.clone();
                let idle_for = p.oltp.idle;
                tokio::spawn(async move {
                    tokio::time::sleep(idle_for).await;
                    timer.cancel();
                });
                oltp_load(spec.clone(), stop, seed).await?
            } else {
                None
            };
            let stop = CancellationToken::new();
            let during = p
                .oltp
                .on
                .then(|| tokio::spawn(oltp_load(spec, stop.clone(), seed.rotate_left(17))));
            let load_start = load_average();
            let res = match method {
                "raw" => raw_delete(t, p, shape).await,
                "drop" => raw_drop(t, p).await,
                "plain_loop" => plain_loop(t, p).await,
                "bare" => bare_run(t, p, batch).await,
                "reference" => reference_loop(t, p).await,
                "pt_archiver" => pt_archiver(t, p, pt.expect("planned only when found")).await,
                "default" => lethe_run(t, p, shape, None, 1, Variant::Plain).await,
                "lethe_drop" => lethe_run(t, p, shape, None, 1, Variant::DropPartitions).await,
                "throttled" => lethe_run(t, p, shape, None, 1, Variant::Throttled).await,
                _ => lethe_run(t, p, shape, Some(batch), workers, Variant::Plain).await,
            };
            stop.cancel();
            let during = match during {
                Some(h) => h.await.map_err(|e| format!("OLTP load: {e}"))??,
                None => None,
            };
            let mut o = res?;
            o.oltp_idle = idle;
            o.oltp_during = during;
            o.load = (load_start, load_average());
            let c = t.counts(p, shape).await?;
            let want = Counts::done(p, shape);
            let verified = o.deleted == p.expired as u64 && c == want;
            eprintln!(
                "{:.3} s{}",
                o.secs,
                if verified { "" } else { " — WRONG ROWS" }
            );
            rep.line(json!({
                "type": "measurement",
                "engine": t.kind.name(),
                "shape": shape.name(),
                "round": round,
                "method": o.method,
                "batch_size": o.batch_size,
                "batch_time_ms": o.batch_time_ms,
                "concurrency": o.workers,
                "deleted": o.deleted,
                "seconds": (o.secs * 1e4).round() / 1e4,
                "longest_ms": round3(o.longest_ms),
                "batches": o.batches,
                "rss_kib": o.rss_kib,
                "rss_base_kib": o.rss_base_kib,
                "oltp_idle": Latencies::json(&o.oltp_idle),
                "oltp_during": Latencies::json(&o.oltp_during),
                "load_start": round3(o.load.0),
                "load_end": round3(o.load.1),
                "verified": verified,
            }));
            if !verified {
                rep.failed = true;
                return Err(format!(
                    "{} / {method}: changed {} rows (expected {}); left {c:?}, expected {want:?}",
                    shape.name(),
                    o.deleted,
                    p.expired,
                )
                .into());
            }
            runs[i].push(o);
        }
    }
    let mut results: Vec<(Outcome, f64, f64)> = Vec::new();
    for mut r in runs {
        r.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let (lo, hi) = (r[0].secs, r[r.len() - 1].secs);
        let median = r.swap_remove(r.len() / 2);
        results.push((median, lo, hi));
    }
    let raw_rate = results
        .iter()
        .find(|(o, _, _)| o.method == "raw")
        .map(|(o, _, _)| o.rate());
    for (o, lo, hi) in &results {
        rep.line(json!({
            "type": "result",
            "engine": t.kind.name(),
            "server": t.server,
            "shape": shape.name(),
            "rows": p.rows,
            "expired": p.expired,
            "layout": p.layout.name(),
            "method": o.method,
            "label": o.label,
            "batch_size": o.batch_size,
            "batch_time_ms": o.batch_time_ms,
            "concurrency": o.workers,
            "deleted": o.deleted,
            "rounds": p.repeat,
            "seconds": (o.secs * 1e4).round() / 1e4,
            "seconds_min": (lo * 1e4).round() / 1e4,
            "seconds_max": (hi * 1e4).round() / 1e4,
            "rows_per_s": o.rate().round(),
            "ratio_to_raw": raw_rate.map(|r| (o.rate() / r * 1e3).round() / 1e3),
            "longest_ms": round3(o.longest_ms),
            "batches": o.batches,
            "rss_kib": o.rss_kib,
            "rss_base_kib": o.rss_base_kib,
            "oltp_idle": Latencies::json(&o.oltp_idle),
            "oltp_during": Latencies::json(&o.oltp_during),
            "load_start": round3(o.load.0),
            "load_end": round3(o.load.1),
        }));
    }
    println!("{}", header(p.repeat > 1));
    for (o, lo, hi) in &results {
        println!("{}", row(o, raw_rate, (p.repeat > 1).then_some((*lo, *hi))));
    }
    let find = |m: &str| results.iter().map(|(o, _, _)| o).find(|o| o.method == m);
    let reference = find("reference");
    for (what, side_by_side) in [("one batch at a time", false), ("side by side", true)] {
        let best = results
            .iter()
            .map(|(o, _, _)| o)
            .filter(|o| o.method == "lethe" && (o.workers > 1) == side_by_side)
            .max_by(|a, b| a.rate().total_cmp(&b.rate()));
        let (Some(raw), Some(best)) = (raw_rate, best) else {
            continue;
        };
        let vs_reference = reference
            .map(|r| {
                format!(
                    "; the reference batch reached {:.2} of raw, Lethe {:.2} of it",
                    r.rate() / raw,
                    best.rate() / r.rate()
                )
            })
            .unwrap_or_default();
        println!(
            "  best Lethe, {what}: {} per batch{} ({:.2} of raw, longest batch {:.0} ms{vs_reference})",
            group(best.batch_size.unwrap_or(0) as u64),
            if best.workers > 1 {
                format!(", concurrency {}", best.workers)
            } else {
                String::new()
            },
            best.rate() / raw,
            best.longest_ms
        );
    }
    if let Some(d) = find("default") {
        let mut line = format!("  Lethe with its defaults: {:.2} s", d.secs);
        if let Some(raw) = raw_rate {
            line.push_str(&format!(", {:.2} of raw", d.rate() / raw));
        }
        if let Some(pt) = find("pt_archiver") {
            line.push_str(&format!(", {:.2}× pt-archiver", d.rate() / pt.rate()));
        }
        if let Some(best) = results
            .iter()
            .map(|(o, _, _)| o)
            .filter(|o| o.method == "lethe")
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))
            && let Some(pt) = find("pt_archiver")
        {
            line.push_str(&format!(
                "; best tuned Lethe {:.2}× pt-archiver",
                best.rate() / pt.rate()
            ));
        }
        println!("{line}");
    }
    if let (Some(th), Some(def)) = (find("throttled"), find("default")) {
        println!(
            "  Lethe's defaults with pause_when (lock_waits and active_sessions, read every check_every = 1s): {:.2} s, {:.2}× the defaults' time",
            th.secs,
            th.secs / def.secs
        );
    }
    if let (Some(drop), Some(raw)) = (find("drop"), raw_rate) {
        println!(
            "  dropping whole partitions by hand: {:.1}× the raw DELETE",
            drop.rate() / raw
        );
    }
    if let (Some(drop), Some(raw)) = (find("lethe_drop"), raw_rate) {
        println!(
            "  Lethe with partitions = \"drop\": {:.1}× the raw DELETE",
            drop.rate() / raw
        );
    }
    Ok(())
}

fn how_to_start(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "start PostgreSQL with trust auth for user postgres on 127.0.0.1:5432 \
             (e.g. `sudo service postgresql start`, or `docker run -d -p 5432:5432 \
             -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`), or set LETHE_BENCH_PG_URL"
        }
        Kind::MariaDb => {
            "start MariaDB with root and an empty password on 127.0.0.1:3306 \
             (e.g. `sudo service mariadb start`, or `docker run -d -p 3306:3306 \
             -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 mariadb:11`), or set LETHE_BENCH_MYSQL_URL"
        }
        Kind::Sqlite => {
            "SQLite is bundled; check that the temporary directory (TMPDIR) is writable"
        }
    }
}

async fn real_main() -> i32 {
    let p = match Params::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("delete_throughput: {e}");
            return 64;
        }
    };
    if let Some(dir) = p.out.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("delete_throughput: cannot create {}: {e}", dir.display());
        return 1;
    }
    let out = match std::fs::File::create(&p.out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("delete_throughput: cannot create {}: {e}", p.out.display());
            return 1;
        }
    };
    let mut rep = Report { out, failed: false };
    println!(
        "delete_throughput: {} rows per table, {:.0}% expired, {} layout, plain loop {}/batch, Lethe {} per batch{}",
        group(p.rows as u64),
        100.0 * p.expired_ppm as f64 / PPM as f64,
        p.layout.name(),
        group(p.loop_batch as u64),
        p.lethe_batches
            .iter()
            .map(|b| group(*b as u64))
            .collect::<Vec<_>>()
            .join(" and "),
        if p.lethe_workers.is_empty() {
            String::new()
        } else {
            format!(
                ", and with concurrency {} at the largest (not on SQLite)",
                p.lethe_workers
                    .iter()
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        }
    );
    println!(
        "shapes: {}; methods: {}; OLTP load {}; load average now {:.2} on {} CPUs",
        p.shapes
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        p.methods.join(", "),
        if p.oltp.on {
            format!(
                "on ({} ms idle, {} ms between operations)",
                p.oltp.idle.as_millis(),
                p.oltp.pause.as_millis()
            )
        } else {
            "off".into()
        },
        load_average(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    rep.line(json!({
        "type": "run",
        "bench": "delete_throughput",
        "lethe": env!("CARGO_PKG_VERSION"),
        "started": Utc::now().to_rfc3339(),
        "rows": p.rows,
        "expired": p.expired,
        "layout": p.layout.name(),
        "rounds": p.repeat,
        "cutoff": p.cutoff_text(),
        "loop_batch": p.loop_batch,
        "lethe_batches": p.lethe_batches,
        "lethe_workers": p.lethe_workers,
        "shapes": p.shapes.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "methods": p.methods,
        "oltp": p.oltp.on,
        "load_average": round3(load_average()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    }));
    let mut skipped = Vec::new();
    for &kind in &p.engines {
        let mut target = match Target::create(kind, &p).await {
            Ok(t) => t,
            Err(e) => {
                let url = match kind {
                    Kind::Postgres => shown(&p.pg_url),
                    Kind::MariaDb => shown(&p.mysql_url),
                    Kind::Sqlite => "a temporary file".into(),
                };
                println!(
                    "\n== {}: SKIPPED — cannot use {url}: {e}\n   To include it: {}",
                    kind.name(),
                    how_to_start(kind)
                );
                rep.line(json!({
                    "type": "skipped",
                    "engine": kind.name(),
                    "reason": e.to_string(),
                }));
                skipped.push(kind.name());
                continue;
            }
        };
        let outcome = tokio::select! {
            r = bench_engine(&mut target, &p, &mut rep) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        };
        let interrupted = matches!(&outcome, Err(e) if e.to_string() == "interrupted");
        if let Err(e) = outcome {
            eprintln!("\n  {}: FAILED: {e}", kind.name());
            rep.line(json!({"type": "failed", "engine": kind.name(), "error": e.to_string()}));
            rep.failed = true;
        }
        if tokio::time::timeout(Duration::from_secs(60), target.teardown())
            .await
            .is_err()
        {
            eprintln!("  WARNING: cleanup of {} timed out", kind.name());
        }
        if interrupted {
            break;
        }
    }
    println!("\nJSON Lines: {}", p.out.display());
    if !skipped.is_empty() {
        println!("Skipped (unreachable): {}", skipped.join(", "));
    }
    i32::from(rep.failed)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and a
    // benchmark that loads millions of rows has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "delete_throughput is a benchmark: run it with `cargo bench --bench delete_throughput`"
        );
        return;
    }
    // LETHE_LOG=lethe=debug shows Lethe's own log, one line per batch.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LETHE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::process::exit(rt.block_on(real_main()));
}
