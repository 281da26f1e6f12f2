//! What every fuzz target asserts, shared by the targets in `fuzz_targets/`
//! and by `tests/fuzz_corpus.rs` (which includes this file), so the corpus
//! kept under `fuzz/corpus/<target>/` is replayed by the ordinary test suite
//! against exactly the checks the fuzzer ran.
//!
//! Each function takes raw bytes and must never panic: a panic here is a bug
//! in Lethe (or in this file). Beyond "no panic", an input that is refused
//! must be refused *cleanly*: a typed error whose every diagnostic names the
//! file, a real line and column (or 0:0 for the whole file), and a message.
//! This file must never touch the network, the disk or the environment.

#![allow(dead_code)]

use lethe::config::{self, ConfigErrors, Period, Template, TemplatePart};
use std::path::Path;

/// The config the job target validates jobs against: one source of each
/// engine, an fs and an s3 store, every field set, nothing from the
/// environment (so a fuzzed job can name any of them).
pub const JOB_CONFIG: &str = r#"
allowed_regions = ["cn-north-1", "cn-east-2"]

[sources.app]
url = "sqlite://var/app.db?mode=rwc"
region = "cn-east-2"
batch_pause = "20ms"

[sources.pg]
url = "postgres://lethe@127.0.0.1/app"
region = "cn-east-2"

[sources.my]
url = "mysql://lethe@127.0.0.1/app"
region = "cn-north-1"

[stores.media]
kind = "fs"
path = "var/objects/media"
region = "cn-east-2"

[stores.bucket]
kind = "s3"
bucket = "lethe-media"
endpoint = "http://127.0.0.1:5077"
path_style = true
region = "cn-north-1"

[audit]
dir = "var/audit"
hmac_key_env = "LETHE_AUDIT_KEY"

[state]
url = "sqlite://var/state.db?mode=rwc"
lease_ttl = "60s"
"#;

/// The environment a fuzzed config sees: one variable set, every other unset.
fn env(name: &str) -> Option<String> {
    (name == "LETHE_FUZZ_SET").then(|| "sqlite://var/fuzz.db".to_string())
}

/// A refusal is clean: it says where and what, inside the file it read.
fn assert_clean(errors: &ConfigErrors, path: &Path, text: &str) {
    assert!(!errors.0.is_empty(), "an error with no diagnostic");
    let lines = text.split('\n').count();
    for d in &errors.0 {
        assert_eq!(d.file, path, "a diagnostic names another file: {d}");
        assert!(!d.message.trim().is_empty(), "an empty message at {d}");
        assert!(
            d.line <= lines,
            "line {} past the end ({lines}): {d}",
            d.line
        );
        assert_eq!(
            d.line == 0,
            d.column == 0,
            "a line without a column (or the reverse): {d}"
        );
        if d.line > 0 {
            let width = text
                .split('\n')
                .nth(d.line - 1)
                .unwrap_or("")
                .chars()
                .count();
            assert!(d.column <= width + 1, "column past the line's end: {d}");
        }
    }
    assert!(!errors.to_string().is_empty());
}

/// The config parser and validator (`config/lethe.toml`).
pub fn config(data: &[u8]) {
    // The loader reads files with `read_to_string`: non-UTF-8 is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/lethe.toml");
    match config::config_from_text(path, text, &env) {
        Ok(c) => {
            let _ = format!("{c:?}");
            for s in c.sources.values() {
                let _ = s.display_url();
            }
        }
        Err(e) => assert_clean(&e, path, text),
    }
}

/// The job parser and validator (`jobs/*.toml`), against [`JOB_CONFIG`].
pub fn job(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = config::config_from_text(Path::new("fuzz/lethe.toml"), JOB_CONFIG, &env)
        .expect("the harness's own config is valid");
    let path = Path::new("fuzz/jobs/job.toml");
    match config::job_from_text(path, text, &cfg) {
        Ok(job) => {
            let _ = format!("{job:?}");
            if let Some(s) = &job.schedule {
                lethe::schedule::parse_cron(s).expect("a valid job has a valid schedule");
            }
        }
        Err(e) => assert_clean(&e, path, text),
    }
}

/// Retention periods (`15d`, `3y`) and pauses (`50ms`): parse, print, parse
/// back to the same value, and compute cutoffs at the ends of the range an
/// `--as-of` can name without overflowing.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Period>() {
        Ok(p) => {
            let again: Period = p.to_string().parse().expect("a printed period parses");
            assert_eq!(again, p, "`{text}` does not survive printing");
            let _ = p.as_std();
            for instant in [
                "0000-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
            ] {
                let at = chrono::DateTime::parse_from_rfc3339(instant)
                    .unwrap()
                    .to_utc();
                assert!(p.before(at) <= at, "`{p}` before {at} is after it");
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    if let Err(e) = config::validate::parse_pause_text(text) {
        assert!(!e.is_empty());
    }
}

/// Cron schedules (6 fields, seconds first), then the daemon's next fires in
/// a zone with DST and one without.
pub fn cron(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A job file's string is at most a line; very long ones only slow the fuzzer.
    if text.len() > 256 {
        return;
    }
    match lethe::schedule::parse_cron(text) {
        Ok(c) => {
            let start = chrono::DateTime::parse_from_rfc3339("2026-03-08T06:59:00Z")
                .unwrap()
                .to_utc();
            for tz in ["America/New_York", "Asia/Shanghai"] {
                let tz = lethe::schedule::parse_tz(tz).unwrap();
                let mut after = start;
                for _ in 0..3 {
                    match lethe::schedule::next_fire(&c, tz, after) {
                        Some(n) => {
                            assert!(n > after, "next fire {n} is not after {after}");
                            after = n;
                        }
                        None => break,
                    }
                }
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

/// Anonymization strategies (`null`, `fixed:x`, `mask:4`, …): what parses
/// prints as a strategy name that parses back to the same kind.
pub fn strategy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::validate::parse_strategy(text) {
        Ok(s) => {
            let shown = s.to_string();
            if let config::Strategy::Fixed(_) = s {
                // The value is never printed (it may be a placeholder someone cares about).
                assert_eq!(shown, "fixed");
            } else {
                let again = config::validate::parse_strategy(&shown).expect("printed parses");
                assert_eq!(again, s, "`{text}` does not survive printing");
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

/// Prefix templates (`avatars/{id}/`): the parts put back together are the
/// text; rendering substitutes every column, refuses values that would
/// widen or escape the prefix, and names no object for a NULL.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Template::parse(text) else {
        return;
    };
    let mut rebuilt = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Literal(l) => {
                assert!(!l.is_empty(), "an empty literal part");
                rebuilt.push_str(l);
            }
            TemplatePart::Column(c) => {
                assert!(!c.is_empty() && c.chars().all(|x| x.is_ascii_alphanumeric() || x == '_'));
                rebuilt.push('{');
                rebuilt.push_str(c);
                rebuilt.push('}');
            }
        }
    }
    assert_eq!(rebuilt, text, "the parts are not the text");
    let has_columns = !t.columns().is_empty();
    let plain = t
        .render(&|_| Some("v1".to_string()))
        .expect("a plain value renders");
    let plain = plain.expect("no NULL, so an object is named");
    let mut want = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Literal(l) => want.push_str(l),
            TemplatePart::Column(_) => want.push_str("v1"),
        }
    }
    assert_eq!(plain, want);
    for bad in ["", ".", "..", "a/b", "../etc"] {
        let r = t.render(&|_| Some(bad.to_string()));
        assert_eq!(r.is_err(), has_columns, "value {bad:?} in `{text}`: {r:?}");
    }
    if has_columns {
        assert_eq!(t.render(&|_| None), Ok(None), "a NULL names no object");
    }
}
