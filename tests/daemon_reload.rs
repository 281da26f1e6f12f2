//! `lethe daemon` reloads on SIGHUP, as a real process: a changed schedule
//! takes effect, a new job starts firing, and a broken job file is refused
//! (file, line and column logged) while the old schedule keeps firing.

mod common;

use common::{Engine, KEY, TestDb, Workspace, now};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn job(name: &str, schedule: &str) -> String {
    format!(
        r#"name = "{name}"
policy = "II(2)2"
schedule = "{schedule}"
[[rules]]
name = "delete-old-events"
target = "app.events"
select = {{ column = "created_at", older_than = "30d" }}
action = "delete"
batch_size = 50
"#
    )
}

/// The daemon, killed when the test ends however it ends (a failed
/// assertion must not leave a daemon firing every second).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The daemon's log lines (JSON, as it writes when stderr is not a terminal).
fn events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How many log lines in `text` say `job`'s schedule fired.
fn fires(text: &str, job: &str) -> usize {
    events(text)
        .iter()
        .filter(|e| e["message"] == "schedule fired" && e["job"] == job)
        .count()
}

/// Wait until `cond` holds on the log after byte `from`; panic with the log otherwise.
fn wait_for(path: &Path, from: usize, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = log(path);
        let tail = text.get(from..).unwrap_or("").to_string();
        if cond(&tail) {
            return tail;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "timed out waiting for {what}; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn sighup_swaps_in_a_valid_schedule_and_refuses_a_broken_one() {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(20, now()).await;
    let ws = Workspace::new(&db.url, &[("alpha.toml", &job("alpha", "* * * * * *"))]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = std::fs::read_to_string(ws.config()).unwrap();
    cfg.push_str(&format!(
        "\n[daemon]\ntime_zone = \"UTC\"\nhealth_addr = \"127.0.0.1:{port}\"\n"
    ));
    std::fs::write(ws.config(), cfg).unwrap();
    let log_path = ws.path().join("daemon.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(["daemon", "--config"])
            .arg(ws.config())
            .arg("--jobs")
            .arg(ws.jobs())
            .env("LETHE_AUDIT_KEY", KEY)
            .env("LETHE_LOG", "lethe=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            // A file, never an unread pipe (PITFALLS: a chatty child blocks on a full pipe).
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );

    // 1. The first schedule fires.
    wait_for(&log_path, 0, "alpha to fire twice", |t| {
        fires(t, "alpha") >= 2
    });

    // 2. alpha moves to once a year, beta appears every second: SIGHUP.
    std::fs::write(ws.jobs().join("alpha.toml"), job("alpha", "0 0 0 1 1 *")).unwrap();
    std::fs::write(ws.jobs().join("beta.toml"), job("beta", "* * * * * *")).unwrap();
    let mark = log(&log_path).len();
    signal(&daemon.0, "-HUP");
    let tail = wait_for(&log_path, mark, "the reload to be accepted", |t| {
        t.contains("new schedule in force")
    });
    assert!(tail.contains("reload accepted"), "{tail}");
    let swapped = mark
        + log(&log_path)[mark..]
            .find("new schedule in force")
            .unwrap();
    let after = wait_for(&log_path, swapped, "beta to fire twice", |t| {
        fires(t, "beta") >= 2
    });
    assert_eq!(
        fires(&after, "alpha"),
        0,
        "alpha's old every-second schedule must be gone:\n{after}"
    );

    // 3. A broken beta: refused with file, line and column; the old schedule keeps firing.
    let broken = job("beta", "not a cron expression");
    std::fs::write(ws.jobs().join("beta.toml"), &broken).unwrap();
    let mark = log(&log_path).len();
    signal(&daemon.0, "-HUP");
    let tail = wait_for(&log_path, mark, "the reload to be refused", |t| {
        t.contains("the previous configuration and schedule stay in force")
    });
    let line = broken
        .lines()
        .position(|l| l.starts_with("schedule"))
        .unwrap()
        + 1;
    let problems: Vec<String> = events(&tail)
        .iter()
        .filter(|e| e["message"] == "reload refused")
        .filter_map(|e| e["problem"].as_str().map(str::to_string))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("beta.toml:{line}:")) && p.contains("schedule")),
        "the refusal names the file, line and column: {problems:?}\n{tail}"
    );
    assert!(!tail.contains("new schedule in force"), "{tail}");
    let refused = mark
        + log(&log_path)[mark..]
            .find("the previous configuration and schedule stay in force")
            .unwrap();
    let after = wait_for(&log_path, refused, "beta to keep firing", |t| {
        fires(t, "beta") >= 2
    });
    assert_eq!(fires(&after, "alpha"), 0, "{after}");
    // Runs under the kept schedule still succeed (they use the kept config).
    let finished: Vec<_> = events(&after)
        .into_iter()
        .filter(|e| e["message"] == "scheduled run finished")
        .collect();
    assert!(!finished.is_empty(), "{after}");
    assert!(finished.iter().all(|e| e["code"] == 0), "{after}");

    signal(&daemon.0, "-TERM");
    let status = daemon.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", log(&log_path));
    // `audit verify` reads the jobs too: put a valid beta back first.
    std::fs::write(ws.jobs().join("beta.toml"), job("beta", "* * * * * *")).unwrap();
    let verify = ws.lethe(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}
