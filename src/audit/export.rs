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

use super::event::{Event, ObjectCount};
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
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
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

fn children_cell(children: &[super::event::ChildCount]) -> (Value, Value) {
    let text = children
        .iter()
        .map(|c| format!("{}:{}:{}:{}", c.target, c.via, c.action, c.count))
        .collect::<Vec<_>>()
        .join(";");
    let rows: u64 = children.iter().map(|c| c.count).sum();
    (json!(text), json!(rows))
}

/// One record as a flat row: every column of [`COLUMNS`], in order, null
/// where the record has no such field.
pub fn row(log: &Log, entry: &super::log::Entry) -> Vec<(&'static str, Value)> {
    let r = &entry.record;
    let mut m = Map::new();
    m.insert("v".into(), json!(r.v));
    m.insert("file".into(), json!(log.report.file.display().to_string()));
    m.insert("run".into(), json!(r.run));
    m.insert("seq".into(), json!(r.seq));
    m.insert("ts".into(), json!(r.ts));
    m.insert("kid".into(), json!(r.kid));
    m.insert("type".into(), json!(r.event.kind()));
    let mut set = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    match &r.event {
        Event::RunStart {
            version,
            command,
            dry_run,
            as_of,
            config_digest,
            jobs_digest,
            jobs,
            key_id: _,
            shard,
            prev_run,
            prev_head,
        } => {
            set("shard", json!(shard));
            set("command", json!(command));
            set("dry_run", json!(dry_run));
            set("as_of", json!(as_of));
            set("version", json!(version));
            set("config_digest", json!(config_digest));
            set("jobs_digest", json!(jobs_digest));
            set("jobs", json!(jobs.join(";")));
            set("prev_run", json!(prev_run));
            set("prev_head", json!(prev_head));
        }
        Event::Batch {
            job,
            rule,
            policy,
            target,
            action,
            batch,
            count,
            children,
            keys_digest,
            subjects,
            objects,
        } => {
            object_cells(&mut set, objects);
            let (c, n) = children_cell(children);
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("action", json!(action));
            set("batch", json!(batch));
            set("count", json!(count));
            set("children", c);
            set("child_rows", n);
            set("keys_digest", json!(keys_digest));
            set("subjects", json!(subjects.join(";")));
            set("subject_count", json!(subjects.len()));
        }
        Event::BatchRollback {
            job,
            rule,
            batch,
            reason,
        } => {
            set("job", json!(job));
            set("rule", json!(rule));
            set("batch", json!(batch));
            set("reason", json!(reason));
        }
        Event::Hold {
            job,
            rule,
            policy,
            target,
            count,
            subjects,
            subjects_truncated,
        } => {
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("action", json!("hold"));
            set("count", json!(count));
            set("subjects", json!(subjects.join(";")));
            set("subject_count", json!(subjects.len()));
            set("subjects_truncated", json!(subjects_truncated));
        }
        Event::Guard {
            job,
            rule,
            policy,
            target,
            matched,
            total,
            reason,
        } => {
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("matched", json!(matched));
            set("total", json!(total));
            set("reason", json!(reason));
        }
        Event::Plan {
            job,
            rule,
            policy,
            target,
            action,
            matched,
            held,
            total,
            children,
            objects,
        } => {
            object_cells(&mut set, objects);
            let (c, n) = children_cell(children);
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("action", json!(action));
            set("matched", json!(matched));
            set("held", json!(held));
            set("total", json!(total));
            set("children", c);
            set("child_rows", n);
        }
        Event::Failure {
            job,
            rule,
            policy,
            target,
            error,
        } => {
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("reason", json!(error));
        }
        Event::Locked { job } => set("job", json!(job)),
        Event::ObjectBatch {
            job,
            rule,
            policy,
            target,
            batch,
            objects,
            keys_digest,
        } => {
            object_cells(&mut set, std::slice::from_ref(objects));
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("action", json!("erase"));
            set("batch", json!(batch));
            set("count", json!(objects.objects));
            set("keys_digest", json!(keys_digest));
        }
        Event::ObjectHold {
            job,
            rule,
            policy,
            target,
            objects,
            reasons,
            rows,
            subjects,
        } => {
            object_cells(&mut set, std::slice::from_ref(objects));
            set("job", json!(job));
            set("rule", json!(rule));
            set("policy", json!(policy));
            set("target", json!(target));
            set("action", json!("hold"));
            set("count", json!(rows));
            set(
                "object_reasons",
                json!(
                    reasons
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect::<Vec<_>>()
                        .join(";")
                ),
            );
            set("subjects", json!(subjects.join(";")));
            set("subject_count", json!(subjects.len()));
        }
        Event::ObjectErrors {
            job,
            rule,
            store,
            failed,
        } => {
            set("job", json!(job));
            set("rule", json!(rule));
            set("store", json!(store));
            set(
                "reason",
                json!(
                    failed
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect::<Vec<_>>()
                        .join(";")
                ),
            );
        }
        Event::RunEnd {
            status,
            totals,
            jobs,
        } => {
            set("status", json!(status));
            set("deleted", json!(totals.deleted));
            set("anonymized", json!(totals.anonymized));
            set("held", json!(totals.held));
            set("failed_rules", json!(totals.failed_rules));
            set("guard_trips", json!(totals.guard_trips));
            set(
                "jobs",
                json!(
                    jobs.iter()
                        .map(|j| format!("{}={}", j.job, j.status))
                        .collect::<Vec<_>>()
                        .join(";")
                ),
            );
        }
    }
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
pub fn csv_cell(v: &Value) -> String {
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
pub fn write_header(w: &mut dyn Write, format: Format) -> std::io::Result<()> {
    if format == Format::Csv {
        w.write_all(COLUMNS.join(",").as_bytes())?;
        w.write_all(b"\r\n")?;
    }
    Ok(())
}

/// Write every record of one log.
pub fn write_log(w: &mut dyn Write, log: &Log, format: Format) -> std::io::Result<()> {
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

    #[test]
    fn columns_are_unique() {
        let mut c = COLUMNS.to_vec();
        c.sort();
        c.dedup();
        assert_eq!(c.len(), COLUMNS.len());
    }
}
