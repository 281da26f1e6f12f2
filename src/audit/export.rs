//! `lethe audit export`: the log as one flat table, for spreadsheets and SIEMs.
//!
//! One row per record, the same columns in the same order in CSV and in JSON
//! Lines ([`COLUMNS`], documented in the README; new columns are only ever
//! added at the end). Nested fields are flattened: lists are joined with `;`
//! (subjects, jobs) and child counts are written `target:via:action:count`.
//! A cell a record type does not have is empty in CSV and `null` in JSON.
//! Rows carry `verified`: whether the log's chain is intact up to that row.
//! The export holds what the log holds, so no personal value: subjects stay
//! keyed hashes.

use super::event::{ChildCount, Event, ObjectCount};
use super::log::Log;
use serde_json::{Map, Value, json};
use std::io::Write;

/// The columns, in order. Append only: spreadsheets and SIEM parsers key on them.
pub const COLUMNS: &[&str] = &[
    "v",
    "file",
    "run",
    "seq",
    "ts",
    "kid",
    "type",
    "job",
    "rule",
    "policy",
    "target",
    "action",
    "batch",
    "count",
    "matched",
    "held",
    "total",
    "children",
    "child_rows",
    "subjects",
    "subject_count",
    "subjects_truncated",
    "keys_digest",
    "reason",
    "status",
    "deleted",
    "anonymized",
    "failed_rules",
    "guard_trips",
    "jobs",
    "command",
    "dry_run",
    "as_of",
    "version",
    "config_digest",
    "jobs_digest",
    "prev_run",
    "prev_head",
    "prev",
    "hash",
    "verified",
    "shard",
    "objects",
    "object_versions",
    "object_bytes",
    "objects_held",
    "store",
    "object_reasons",
    "crashed_run",
    "crashed_file",
    "records",
    "head",
    "in_doubt",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    Json,
}

/// Sums of object counts (objects, versions, bytes, held) and the stores named.
fn object_cells(set: &mut dyn FnMut(&str, Value), counts: &[ObjectCount]) {
    if counts.is_empty() {
        return;
    }
    set(
        "objects",
        json!(counts.iter().map(|c| c.objects).sum::<u64>()),
    );
    set(
        "object_versions",
        json!(counts.iter().map(|c| c.versions).sum::<u64>()),
    );
    set(
        "object_bytes",
        json!(counts.iter().map(|c| c.bytes).sum::<u64>()),
    );
    set(
        "objects_held",
        json!(counts.iter().map(|c| c.held).sum::<u64>()),
    );
    let mut stores: Vec<&str> = counts.iter().map(|c| c.store.as_str()).collect();
    stores.dedup();
    set("store", json!(stores.join(";")));
}

fn children_cell(children: &[ChildCount]) -> (Value, Value) {
    let text = children
        .iter()
        .map(|c| format!("{}:{}:{}:{}", c.target, c.via, c.action, c.count))
        .collect::<Vec<_>>()
        .join(";");
    let rows: u64 = children.iter().map(|c| c.count).sum();
    (json!(text), json!(rows))
}

/// A cell's text: a string as it is, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key:value` pairs of a map of counts, joined with `;`.
fn pairs(counts: &Map<String, Value>) -> Value {
    json!(
        counts
            .iter()
            .map(|(k, v)| format!("{k}:{}", text(v)))
            .collect::<Vec<_>>()
            .join(";")
    )
}

/// The cells of one event (every column but the envelope's).
///
/// Driven by the event's own serialized fields, so one rule covers every
/// record type: a scalar goes to the column of its name; lists and nested
/// values are flattened by name; the few cells a type names differently
/// (`error` → `reason`, `rows` → `count`) are mapped below. The golden test
/// pins the result for every type.
fn event_cells(event: &Event) -> Map<String, Value> {
    let mut m = Map::new();
    let Ok(Value::Object(fields)) = serde_json::to_value(event) else {
        return m;
    };
    for (k, v) in fields {
        field_cells(&mut m, &k, v);
    }
    type_cells(&mut m, event);
    m
}

/// The cells of one serialized field of an event.
fn field_cells(m: &mut Map<String, Value>, k: &str, v: Value) {
    match (k, v) {
        ("type" | "key_id", _) => {}
        ("subjects", Value::Array(a)) => {
            m.insert("subject_count".into(), json!(a.len()));
            let joined: Vec<String> = a.iter().map(text).collect();
            m.insert("subjects".into(), json!(joined.join(";")));
        }
        // run_start: job names; run_end: each job's outcome.
        ("jobs", Value::Array(a)) => {
            m.insert("jobs".into(), jobs_cell(&a));
        }
        ("children", v) => {
            let children: Vec<ChildCount> = serde_json::from_value(v).unwrap_or_default();
            let (cell, rows) = children_cell(&children);
            m.insert("children".into(), cell);
            m.insert("child_rows".into(), rows);
        }
        // A list (rows' objects) or one count (an object rule's batch).
        ("objects", v) => {
            let counts: Vec<ObjectCount> = match v {
                Value::Array(_) => serde_json::from_value(v).unwrap_or_default(),
                one => serde_json::from_value(one)
                    .map(|c| vec![c])
                    .unwrap_or_default(),
            };
            object_cells(
                &mut |k, v| {
                    m.insert(k.into(), v);
                },
                &counts,
            );
        }
        ("totals", Value::Object(t)) => {
            for c in [
                "deleted",
                "anonymized",
                "held",
                "failed_rules",
                "guard_trips",
            ] {
                m.insert(c.into(), t.get(c).cloned().unwrap_or(Value::Null));
            }
        }
        ("reasons", Value::Object(r)) => {
            m.insert("object_reasons".into(), pairs(&r));
        }
        // recovery: `job/rule#batch:count` of each batch in doubt.
        ("in_doubt", Value::Array(a)) => {
            m.insert("in_doubt".into(), in_doubt_cell(&a));
        }
        ("failed", Value::Object(r)) => {
            m.insert("reason".into(), pairs(&r));
        }
        ("error", v) => {
            m.insert("reason".into(), v);
        }
        // object_hold: the rows kept with their objects.
        ("rows", v) => {
            m.insert("count".into(), v);
        }
        (k, v) if COLUMNS.contains(&k) => {
            m.insert(k.into(), v);
        }
        _ => {}
    }
}

/// `jobs`: a job's name, or `job=status` for each job's outcome.
fn jobs_cell(jobs: &[Value]) -> Value {
    let joined: Vec<String> = jobs
        .iter()
        .map(|j| match j {
            Value::String(s) => s.clone(),
            o => format!("{}={}", text(&o["job"]), text(&o["status"])),
        })
        .collect();
    json!(joined.join(";"))
}

/// `in_doubt`: `job/rule#batch:count` of each batch, joined with `;`.
fn in_doubt_cell(batches: &[Value]) -> Value {
    let joined: Vec<String> = batches
        .iter()
        .map(|b| {
            format!(
                "{}/{}#{}:{}",
                text(&b["job"]),
                text(&b["rule"]),
                text(&b["batch"]),
                text(&b["count"])
            )
        })
        .collect();
    json!(joined.join(";"))
}

/// The cells a record type sets whatever its fields say.
fn type_cells(m: &mut Map<String, Value>, event: &Event) {
    match event {
        Event::Hold { .. } | Event::ObjectHold { .. } => {
            m.insert("action".into(), json!("hold"));
        }
        Event::ObjectBatch { objects, .. } => {
            m.insert("action".into(), json!("erase"));
            m.insert("count".into(), json!(objects.objects));
        }
        _ => {}
    }
}

/// One record as a flat row: every column of [`COLUMNS`], in order, null
/// where the record has no such field.
pub(crate) fn row(log: &Log, entry: &super::log::Entry) -> Vec<(&'static str, Value)> {
    let r = &entry.record;
    let mut m = Map::new();
    m.insert("v".into(), json!(r.v));
    m.insert("file".into(), json!(log.report.file.display().to_string()));
    m.insert("run".into(), json!(r.run));
    m.insert("seq".into(), json!(r.seq));
    m.insert("ts".into(), json!(r.ts));
    m.insert("kid".into(), json!(r.kid));
    m.insert("type".into(), json!(r.event.kind()));
    m.extend(event_cells(&r.event));
    m.insert("prev".into(), json!(r.prev));
    m.insert("hash".into(), json!(entry.hash));
    m.insert("verified".into(), json!(entry.verified));
    debug_assert!(m.keys().all(|k| COLUMNS.contains(&k.as_str())));
    COLUMNS
        .iter()
        .map(|c| (*c, m.remove(*c).unwrap_or(Value::Null)))
        .collect()
}

/// Quote a CSV cell when it needs it (RFC 4180).
pub(crate) fn csv_cell(v: &Value) -> String {
    let s = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV header line (JSON Lines has none).
pub(crate) fn write_header(w: &mut dyn Write, format: Format) -> std::io::Result<()> {
    if format == Format::Csv {
        w.write_all(COLUMNS.join(",").as_bytes())?;
        w.write_all(b"\r\n")?;
    }
    Ok(())
}

/// Write every record of one log.
pub(crate) fn write_log(w: &mut dyn Write, log: &Log, format: Format) -> std::io::Result<()> {
    for e in &log.entries {
        let r = row(log, e);
        match format {
            Format::Csv => {
                let line = r
                    .iter()
                    .map(|(_, v)| csv_cell(v))
                    .collect::<Vec<_>>()
                    .join(",");
                w.write_all(line.as_bytes())?;
                w.write_all(b"\r\n")?;
            }
            Format::Json => {
                // Columns in the documented order (a JSON map would sort them).
                let body = r
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String((*k).to_string())))
                    .collect::<Vec<_>>()
                    .join(",");
                w.write_all(b"{")?;
                w.write_all(body.as_bytes())?;
                w.write_all(b"}\n")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell(&Value::Null), "");
        assert_eq!(csv_cell(&json!(12)), "12");
        assert_eq!(csv_cell(&json!(true)), "true");
        assert_eq!(csv_cell(&json!("plain")), "plain");
        assert_eq!(csv_cell(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_cell(&json!("say \"x\"")), "\"say \"\"x\"\"\"");
        assert_eq!(csv_cell(&json!("two\nlines")), "\"two\nlines\"");
    }

    use super::super::event::{InDoubt, JobOutcome, Totals};
    use std::collections::BTreeMap;

    fn objects(store: &str, n: u64) -> ObjectCount {
        ObjectCount {
            store: store.into(),
            via: format!("{store}:avatars/{{id}}/"),
            objects: n,
            versions: n * 2,
            bytes: n * 100,
            held: n / 2,
        }
    }

    /// Every event type with every field set, the optional ones both ways.
    fn every_event() -> Vec<Event> {
        let s = |x: &str| x.to_string();
        let child = ChildCount {
            target: s("app.posts"),
            via: s("user_id"),
            action: s("delete"),
            count: 7,
        };
        let reasons = BTreeMap::from([(s("legal_hold"), 2), (s("governance"), 1)]);
        vec![
            Event::RunStart {
                version: s("0.1.0"),
                command: s("run"),
                dry_run: false,
                as_of: s("2026-06-15T12:00:00Z"),
                config_digest: s("c0"),
                jobs_digest: s("j0"),
                jobs: vec![s("minors"), s("logs")],
                key_id: s("k1"),
                shard: Some(s("1/3")),
                prev_run: Some(s("r0")),
                prev_head: Some(s("h0")),
            },
            Event::RunStart {
                version: s("0.1.0"),
                command: s("plan"),
                dry_run: true,
                as_of: s("2026-06-15T12:00:00Z"),
                config_digest: s("c0"),
                jobs_digest: s("j0"),
                jobs: vec![],
                key_id: s("k1"),
                shard: None,
                prev_run: None,
                prev_head: None,
            },
            Event::Batch {
                job: s("j"),
                rule: s("r"),
                policy: s("IV(2)2"),
                target: s("app.users"),
                action: s("delete"),
                batch: 3,
                count: 500,
                children: vec![child.clone(), child.clone()],
                keys_digest: s("kd"),
                subjects: vec![s("a1"), s("b2")],
                objects: vec![objects("media", 4), objects("docs", 2)],
                batch_size: None,
                partition: None,
            },
            Event::Batch {
                job: s("j"),
                rule: s("r"),
                policy: s("II(2)2"),
                target: s("app.events"),
                action: s("anonymize"),
                batch: 1,
                count: 2,
                children: vec![],
                keys_digest: s("kd"),
                subjects: vec![],
                objects: vec![],
                batch_size: None,
                partition: None,
            },
            Event::ObjectBatch {
                job: s("j"),
                rule: s("r"),
                policy: s("II(4)"),
                target: s("media:tickets/"),
                batch: 2,
                objects: objects("media", 10),
                keys_digest: s("kd"),
            },
            Event::ObjectHold {
                job: s("j"),
                rule: s("r"),
                policy: s("II(4)"),
                target: s("media:tickets/"),
                objects: objects("media", 3),
                reasons: reasons.clone(),
                rows: 2,
                subjects: vec![s("c3")],
            },
            Event::ObjectErrors {
                job: s("j"),
                rule: s("r"),
                store: s("media"),
                failed: reasons,
            },
            Event::BatchRollback {
                job: s("j"),
                rule: s("r"),
                batch: 4,
                reason: s("commit failed"),
            },
            Event::Hold {
                job: s("j"),
                rule: s("r"),
                policy: s("IV(2)2"),
                target: s("app.users"),
                count: 5,
                subjects: vec![s("d4")],
                subjects_truncated: true,
            },
            Event::Guard {
                job: s("j"),
                rule: s("r"),
                policy: s("IV(2)2"),
                target: s("app.users"),
                matched: 90,
                total: 100,
                reason: s("90 rows match"),
            },
            Event::Plan {
                job: s("j"),
                rule: s("r"),
                policy: s("IV(2)2"),
                target: s("app.users"),
                action: s("delete"),
                matched: 9,
                held: 1,
                total: 100,
                children: vec![child],
                objects: vec![objects("media", 1)],
            },
            Event::Failure {
                job: s("j"),
                rule: Some(s("r")),
                policy: s("IV(2)2"),
                target: Some(s("app.users")),
                error: s("source `app`: connection failed"),
            },
            Event::Failure {
                job: s("j"),
                rule: None,
                policy: s("IV(2)2"),
                target: None,
                error: s("lease lost"),
            },
            Event::Locked { job: s("j") },
            Event::BatchUnknown {
                job: s("j"),
                rule: s("r"),
                batch: 5,
                reason: s("source `app`: connection failed: Connection reset by peer"),
            },
            Event::Recovery {
                crashed_run: s("r9"),
                crashed_file: s("run-20260615T120000.000Z-r9.jsonl"),
                records: 12,
                head: s("h9"),
                jobs: vec![s("logs")],
                in_doubt: vec![InDoubt {
                    job: s("logs"),
                    rule: s("r"),
                    batch: 4,
                    count: 40,
                    kind: s("batch"),
                    keys_digest: s("kd"),
                }],
            },
            Event::RunEnd {
                status: s("partial"),
                totals: Totals {
                    deleted: 10,
                    anonymized: 20,
                    held: 3,
                    failed_rules: 1,
                    guard_trips: 2,
                    objects_erased: 5,
                    object_versions_erased: 6,
                    object_bytes_erased: 7,
                    objects_held: 8,
                },
                jobs: vec![
                    JobOutcome {
                        job: s("j"),
                        status: s("partial"),
                    },
                    JobOutcome {
                        job: s("k"),
                        status: s("completed"),
                    },
                ],
            },
        ]
    }

    /// The cells every event type exports, pinned in
    /// `src/audit/testdata/export_cells.txt` (one line per event, non-empty
    /// cells in column order). The columns are a documented contract:
    /// a change here is a change for every spreadsheet and SIEM parser.
    /// `LETHE_BLESS=1` rewrites the file after a deliberate change.
    #[test]
    fn every_event_exports_its_documented_cells() {
        let got: String = every_event()
            .iter()
            .map(|e| {
                let cells = event_cells(e);
                assert!(
                    cells.keys().all(|k| COLUMNS.contains(&k.as_str())),
                    "{cells:?}"
                );
                let line: Vec<String> = COLUMNS
                    .iter()
                    .filter_map(|c| {
                        cells
                            .get(*c)
                            .filter(|v| !v.is_null())
                            .map(|v| format!("{c}={v}"))
                    })
                    .collect();
                format!("{} {}\n", e.kind(), line.join(" "))
            })
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/audit/testdata/export_cells.txt"
        );
        if std::env::var_os("LETHE_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).expect("the golden file");
        assert_eq!(got, want);
    }

    #[test]
    fn columns_are_unique() {
        let mut c = COLUMNS.to_vec();
        c.sort();
        c.dedup();
        assert_eq!(c.len(), COLUMNS.len());
    }
}
