//! Every shipped TOML parses; every kind of bad file is refused with exit 78
//! and a message that names the file, line and column.

mod common;

use common::Workspace;
use lethe::config;

#[test]
fn every_shipped_config_and_job_parses() {
    let repo = common::repo();
    let loaded =
        config::load_with_env(&repo.join("config/lethe.toml"), &repo.join("jobs"), &|_| {
            None
        })
        .unwrap_or_else(|e| panic!("shipped files must validate:\n{e}"));
    let names: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
    for required in [
        "behaviour-logs",
        "cancelled-accounts",
        "location-consent",
        "minors",
    ] {
        assert!(names.contains(&required), "ships the {required} job");
    }
    for job in &loaded.jobs {
        assert!(
            !job.policy.is_empty(),
            "{} cites its policy section",
            job.name
        );
        assert!(
            job.manual || job.schedule.is_some(),
            "{} has a schedule (or is manual)",
            job.name
        );
    }
    // The suspension job (VII(6)) is manual and confirmed by name; the
    // request job (VII(7)) acts on requests.
    let suspension = loaded
        .job("business-suspension")
        .expect("ships the VII(6) job");
    assert!(suspension.manual && suspension.confirm);
    let requests = loaded
        .job("erasure-requests")
        .expect("ships the VII(7) job");
    assert_eq!(requests.trigger, config::Trigger::Request);
    assert!(
        requests
            .rules
            .iter()
            .all(|r| r.by_request && r.select.is_none())
    );
    assert!(loaded.config.requests.deadlines.calendar.covers(2026));
    assert_eq!(
        loaded.jobs[0].name, "minors",
        "minors run first (highest priority)"
    );
    // The default needs nothing but the machine: SQLite under var/.
    assert!(
        loaded.config.sources["app"]
            .url
            .starts_with("sqlite://var/")
    );
    // The environment overrides it.
    let pg = config::load_with_env(&repo.join("config/lethe.toml"), &repo.join("jobs"), &|k| {
        (k == "APP_DATABASE_URL").then(|| "postgres://lethe@db/app".to_string())
    })
    .unwrap();
    assert_eq!(pg.config.sources["app"].url, "postgres://lethe@db/app");
}

fn check_refuses(job: &str, expected: &[&str]) {
    let ws = Workspace::new("sqlite://unused.db", &[("bad.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    for e in expected {
        assert!(out.stderr.contains(e), "expected `{e}` in:\n{}", out.stderr);
    }
    // `run` refuses the same files before touching anything.
    let run = ws.lethe(&["run"]);
    assert_eq!(run.code, 78, "{}", run.all());
}

#[test]
fn unknown_field_is_refused_with_its_position() {
    check_refuses(
        "name = \"x\"\npolicy = \"VIII\"\n[[rules]]\nname = \"r\"\ntarget = \"app.users\"\nwhere = \"1=1\"\naction = \"delete\"\nmax_row = 5\n",
        &["bad.toml:8:1:", "unknown field `max_row`"],
    );
}

#[test]
fn wrong_type_is_refused_with_its_position() {
    check_refuses(
        "name = \"x\"\npolicy = \"VIII\"\n[[rules]]\nname = \"r\"\ntarget = \"app.users\"\nwhere = \"1=1\"\naction = \"delete\"\nbatch_size = \"lots\"\n",
        &["bad.toml:8:14:", "invalid type"],
    );
}

#[test]
fn concurrency_is_refused_out_of_range_and_where_it_cannot_apply() {
    let job = r#"name = "x"
policy = "VIII"
[[rules]]
name = "zero"
target = "app.users"
where = "1=1"
action = "delete"
concurrency = 0
[[rules]]
name = "anonymizing"
target = "app.users"
where = "1=1"
action = { anonymize = { email = "null" } }
concurrency = 2
[[rules.children]]
target = "app.orders"
foreign_key = "user_id"
action = "delete"
[[rules]]
name = "with-children"
target = "app.users"
where = "1=1"
action = "delete"
concurrency = 4
[[rules.children]]
target = "app.orders"
foreign_key = "user_id"
action = "delete"
[[rules]]
name = "plain-anonymize"
target = "app.users"
where = "1=1"
action = { anonymize = { email = "null" } }
concurrency = 2
"#;
    check_refuses(
        job,
        &[
            "bad.toml:8:15: concurrency must be between 1 and 16",
            "bad.toml:14:15: concurrency above 1 applies only to a plain delete or anonymize",
            "bad.toml:24:15: concurrency above 1 applies only to a plain delete or anonymize",
        ],
    );
    // A plain anonymize may have workers (PostgreSQL runs it one statement
    // a batch; elsewhere `check` warns that it runs one batch at a time).
    let ws = Workspace::new("sqlite://unused.db", &[("bad.toml", job)]);
    let out = ws.lethe(&["check"]);
    assert!(!out.stderr.contains("bad.toml:34:"), "{}", out.stderr);
}

#[test]
fn every_problem_is_reported_at_once() {
    let job = r#"name = "Bad Name"
policy = ""
schedule = "0 * * *"
[[rules]]
name = "r1"
target = "nosuch.users"
where = "1=1"
action = "delete"
[[rules]]
name = "r2"
target = "app.users"
select = { column = "cancelled_at", older_than = "15 days" }
hold = "app.legal_holds.user_id"
action = { anonymize = { phone = "scramble" } }
max_fraction = 2.0
"#;
    check_refuses(
        job,
        &[
            "bad.toml:1:8: job name must be lowercase",
            "bad.toml:2:10: policy must cite",
            "bad.toml:3:12: schedule has 4 fields",
            "bad.toml:6:10: target `nosuch.users` names source `nosuch`",
            "bad.toml:12:50: unknown unit",
            "bad.toml:13:8: a hold lists subjects",
            "bad.toml:14:34: column `phone`: unknown strategy `scramble`",
            "bad.toml:15:16: max_fraction must be greater than 0",
        ],
    );
}

#[test]
fn a_literal_password_and_a_foreign_region_are_refused() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    std::fs::write(
        ws.config(),
        "allowed_regions = [\"cn-east-2\"]\n[sources.app]\nurl = \"postgres://u:hunter2@db/app\"\nregion = \"us-east-1\"\n",
    )
    .unwrap();
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr
            .contains("lethe.toml:3:7: source `app`: the url holds a literal password"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("lethe.toml:4:10: source `app` is in region `us-east-1`"),
        "{}",
        out.stderr
    );
    assert!(
        !out.all().contains("hunter2"),
        "the password itself is never printed"
    );
}

#[test]
fn a_missing_environment_variable_is_named() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    std::fs::write(
        ws.config(),
        "[sources.app]\nurl = \"${LETHE_TEST_UNSET_URL}\"\n",
    )
    .unwrap();
    let out = ws.lethe(&["check"]);
    assert_eq!(out.code, 78);
    assert!(
        out.stderr.contains("lethe.toml:2:7:")
            && out.stderr.contains("LETHE_TEST_UNSET_URL is not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_hmac_key_is_a_config_error() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    let out = ws.lethe_env(&["run"], &[]);
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr.contains("LETHE_AUDIT_KEY is not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_errors_exit_64_not_2() {
    let ws = Workspace::new("sqlite://unused.db", &[]);
    let out = ws.lethe(&["plan", "--no-such-flag"]);
    assert_eq!(out.code, 64, "{}", out.all());
    let out = ws.lethe(&["run", "--as-of", "yesterday"]);
    assert_eq!(out.code, 64, "{}", out.all());
    let out = ws.lethe(&["run", "--job", "nope"]);
    assert_eq!(
        out.code,
        64,
        "an unknown job is a usage error: {}",
        out.all()
    );
}
