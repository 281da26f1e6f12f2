//! Reading a run's audit file: every record, each checked against the chain.
//!
//! One pass over the file both verifies it (hash, link, sequence, run) and
//! yields its records, so search, export and report read exactly what verify
//! judged, and say which records come after a break (not to be trusted).
//! Files are read one at a time; nothing here holds more than one run.

use super::event::{Event, Record};
use super::findings::{FileReport, Pin};
use super::writer::GENESIS;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One record as read, with its place in the file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// 1-based line number.
    pub line: u64,
    pub record: Record,
    /// The hash the line claims (and, when `verified`, has).
    pub hash: String,
    /// The chain is intact up to and including this record.
    pub verified: bool,
}

impl Entry {
    /// A record shown but not trusted: it parses, but the chain broke at or
    /// before it.
    fn unverified(line: u64, record: Record, hash: String) -> Self {
        Entry {
            line,
            record,
            hash,
            verified: false,
        }
    }
}

/// A run's file: its verification and its records.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    pub report: FileReport,
    pub entries: Vec<Entry>,
}

impl Log {
    /// (job, rule, batch) of every batch a `batch_rollback` record undid:
    /// search and report count those batches as failed, not done.
    pub(crate) fn rolled_back(&self) -> std::collections::BTreeSet<(&str, &str, u64)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.record.event {
                super::event::Event::BatchRollback {
                    job, rule, batch, ..
                } => Some((job.as_str(), rule.as_str(), *batch)),
                _ => None,
            })
            .collect()
    }
}

impl Log {
    /// (job, rule, batch) of every batch whose commit lost its connection
    /// (`batch_unknown`): search shows them as unconfirmed, the report does
    /// not count them as done.
    pub(crate) fn unconfirmed(&self) -> std::collections::BTreeSet<(&str, &str, u64)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.record.event {
                Event::BatchUnknown {
                    job, rule, batch, ..
                } => Some((job.as_str(), rule.as_str(), *batch)),
                _ => None,
            })
            .collect()
    }
}

/// Split a line into the hashed body and the hash it claims.
pub(crate) fn split_hash(line: &str) -> Option<(String, &str)> {
    const SUFFIX_LEN: usize = ",\"hash\":\"".len() + 64 + "\"}".len();
    if line.len() < SUFFIX_LEN
        || !line.ends_with("\"}")
        || !line.is_char_boundary(line.len() - SUFFIX_LEN)
    {
        return None;
    }
    let cut = line.len() - SUFFIX_LEN;
    let tail = &line[cut..];
    if !tail.starts_with(",\"hash\":\"") {
        return None;
    }
    let hash = &tail[9..9 + 64];
    let mut body = line[..cut].to_string();
    body.push('}');
    Some((body, hash))
}

/// Read and verify one file. Never fails: an unreadable file is a report
/// broken at record 0.
pub(crate) fn read_log(path: &Path) -> Log {
    let mut report = FileReport::new(path.to_path_buf());
    let mut entries = Vec::new();
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            report.broken_at = Some((0, format!("cannot read: {e}")));
            return Log { report, entries };
        }
    };
    let mut prev = GENESIS.to_string();
    let mut last_kind = "";
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let parsed = split_hash(line).map(|(body, claimed)| {
            let actual = hex::encode(Sha256::digest(body.as_bytes()));
            let record = serde_json::from_str::<Record>(&body);
            (actual, claimed.to_string(), record)
        });
        if report.broken_at.is_some() {
            // After a break nothing is trusted, but what parses is still shown.
            if let Some((_, claimed, Ok(record))) = parsed {
                entries.push(Entry::unverified(n, record, claimed));
            }
            continue;
        }
        let why = judge(parsed.as_ref(), &prev, i as u64, &report);
        let Some((_, claimed, record)) = parsed else {
            report.broken_at = why.map(|w| (n, w));
            continue;
        };
        if let Some(why) = why {
            report.broken_at = Some((n, why));
            if let Ok(record) = record {
                entries.push(Entry::unverified(n, record, claimed));
            }
            continue;
        }
        let record = record.expect("checked above");
        note(&record, n, &mut report);
        last_kind = record.event.kind();
        prev = claimed.clone();
        entries.push(Entry {
            line: n,
            record,
            hash: claimed,
            verified: true,
        });
    }
    if report.broken_at.is_none() {
        report.sealed = last_kind == "run_end";
        report.head = Some(prev);
    }
    Log { report, entries }
}

/// A line split into its hash, the hash it claims and its parsed record.
type Parsed = (String, String, Result<Record, serde_json::Error>);

/// Why a line breaks the chain, or `None` when it continues it: sealed, its
/// hash true, parsed, linked to `prev`, numbered `seq`, of the file's run,
/// and (first of all) a `run_start`.
fn judge(parsed: Option<&Parsed>, prev: &str, seq: u64, report: &FileReport) -> Option<String> {
    match parsed {
        None => Some("not a sealed audit record".into()),
        Some((actual, claimed, _)) if actual != claimed => {
            Some("record content does not match its hash (edited)".into())
        }
        Some((_, _, Err(e))) => Some(format!("not a valid record: {e}")),
        Some((_, _, Ok(record))) => {
            if record.prev != prev {
                Some(
                    "previous-hash link broken (a record was removed, inserted or reordered)"
                        .into(),
                )
            } else if record.seq != seq {
                Some(format!(
                    "sequence number {} where {} was expected",
                    record.seq, seq
                ))
            } else {
                match &report.run {
                    None if !matches!(record.event, Event::RunStart { .. }) => {
                        Some("the first record is not run_start".into())
                    }
                    Some(r) if *r != record.run => Some("record belongs to another run".into()),
                    _ => None,
                }
            }
        }
    }
}

/// What a verified record tells the report: the run and its links
/// (`run_start`), crashed runs it pins (`recovery`), times and the count.
fn note(record: &Record, n: u64, report: &mut FileReport) {
    if let Event::RunStart {
        dry_run,
        prev_run,
        prev_head,
        ..
    } = &record.event
    {
        report.run = Some(record.run.clone());
        report.dry_run = Some(*dry_run);
        report.prev_run = prev_run.clone();
        report.prev_head = prev_head.clone();
    }
    if let Event::Recovery {
        crashed_run,
        crashed_file,
        records,
        head,
        ..
    } = &record.event
    {
        report.recovers.push(Pin {
            run: crashed_run.clone(),
            file: crashed_file.clone(),
            records: *records,
            head: head.clone(),
        });
    }
    if report.first_ts.is_none() {
        report.first_ts = Some(record.ts.clone());
    }
    report.last_ts = Some(record.ts.clone());
    report.records = n;
}

/// The run files under `path` (a file, or a folder searched recursively), in
/// name order — which is time order, as names start with the run's UTC time.
pub fn audit_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then_with(|| a.cmp(b)));
    Ok(out)
}

/// Every run file under `paths`, each once, in name order. A path that does
/// not exist is an error (a typo must not read as "no records").
pub(crate) fn files_under(paths: &[PathBuf]) -> Result<Vec<PathBuf>, crate::error::Error> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(crate::error::Error::Audit(format!(
                "{} does not exist",
                p.display()
            )));
        }
        let found = audit_files(p)
            .map_err(|e| crate::error::Error::Audit(format!("cannot read {}: {e}", p.display())))?;
        for f in found {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then_with(|| a.cmp(b)));
    Ok(files)
}
