//! `lethe audit verify`: recompute every hash and link of every run file.

use super::event::{Event, Record};
use super::writer::GENESIS;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub run: Option<String>,
    pub records: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// `None` when the chain is intact; else the 1-based line of the first bad record and why.
    pub broken_at: Option<(u64, String)>,
    /// The last record is a `run_end`.
    pub sealed: bool,
    pub head: Option<String>,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.broken_at.is_none() && self.sealed
    }
}

/// Split a line into the hashed body and the hash it claims.
fn split_hash(line: &str) -> Option<(String, &str)> {
    const SUFFIX_LEN: usize = ",\"hash\":\"".len() + 64 + "\"}".len();
    if line.len() < SUFFIX_LEN || !line.ends_with("\"}") {
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

pub fn verify_file(path: &Path) -> FileReport {
    let mut report = FileReport {
        file: path.to_path_buf(),
        run: None,
        records: 0,
        first_ts: None,
        last_ts: None,
        broken_at: None,
        sealed: false,
        head: None,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.broken_at = Some((0, format!("cannot read: {e}")));
            return report;
        }
    };
    let mut prev = GENESIS.to_string();
    let mut last_kind = "";
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let fail = |why: String| Some((n, why));
        let Some((body, claimed)) = split_hash(line) else {
            report.broken_at = fail("not a sealed audit record".into());
            return report;
        };
        let actual = hex::encode(Sha256::digest(body.as_bytes()));
        if actual != claimed {
            report.broken_at = fail("record content does not match its hash (edited)".into());
            return report;
        }
        let record: Record = match serde_json::from_str(&body) {
            Ok(r) => r,
            Err(e) => {
                report.broken_at = fail(format!("not a valid record: {e}"));
                return report;
            }
        };
        if record.prev != prev {
            report.broken_at = fail(
                "previous-hash link broken (a record was removed, inserted or reordered)".into(),
            );
            return report;
        }
        if record.seq != i as u64 {
            report.broken_at = fail(format!(
                "sequence number {} where {} was expected",
                record.seq, i
            ));
            return report;
        }
        match &report.run {
            None => {
                if !matches!(record.event, Event::RunStart { .. }) {
                    report.broken_at = fail("the first record is not run_start".into());
                    return report;
                }
                report.run = Some(record.run.clone());
            }
            Some(r) if *r != record.run => {
                report.broken_at = fail("record belongs to another run".into());
                return report;
            }
            Some(_) => {}
        }
        if report.first_ts.is_none() {
            report.first_ts = Some(record.ts.clone());
        }
        report.last_ts = Some(record.ts.clone());
        report.records = n;
        last_kind = record.event.kind();
        prev = claimed.to_string();
    }
    report.sealed = last_kind == "run_end";
    report.head = Some(prev);
    report
}

/// The run files under `path` (a file, or a folder searched recursively), in name order.
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
    out.sort();
    Ok(out)
}

/// Read every record of a verified file (for reports and tests).
pub fn read_records(path: &Path) -> std::io::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| split_hash(l).and_then(|(b, _)| serde_json::from_str(&b).ok()))
        .collect())
}
