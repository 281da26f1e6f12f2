//! Append-only, hash-chained JSON Lines: one file per run.
//!
//! Each line is `<body>` with `,"hash":"<sha256(body + "}")>"}` closing it,
//! where the body holds `prev`, the previous line's hash. The hash covers
//! the exact bytes written, so verification needs no re-serialization.
//! Every append is flushed and fsynced before the caller goes on: a batch is
//! recorded before its transaction commits, so no deletion is unaudited.

use super::event::{Event, FORMAT_VERSION, Record};
use crate::error::Error;
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub struct AuditWriter {
    file: File,
    path: PathBuf,
    run: String,
    kid: String,
    seq: u64,
    prev: String,
}

/// Serialize a record and return the full line (without newline) and its hash.
pub fn seal_line(record: &Record) -> (String, String) {
    let body = serde_json::to_string(record).expect("records serialize");
    debug_assert!(body.ends_with('}'));
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let mut line = body;
    line.pop();
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}");
    (line, hash)
}

impl AuditWriter {
    /// Create `dir/run-<time>-<run>.jsonl`; fails if the sink is unusable,
    /// which stops the run before anything is touched.
    pub fn create(dir: &Path, run: &str, kid: &str) -> Result<AuditWriter, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Audit(format!("cannot create {}: {e}", dir.display())))?;
        let name = format!(
            "run-{}-{}.jsonl",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            &run[..8.min(run.len())]
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Audit(format!("cannot create {}: {e}", path.display())))?;
        Ok(AuditWriter {
            file,
            path,
            run: run.to_string(),
            kid: kid.to_string(),
            seq: 0,
            prev: GENESIS.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn head(&self) -> &str {
        &self.prev
    }

    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Append one event durably.
    pub fn append(&mut self, event: Event) -> Result<(), Error> {
        let record = Record {
            v: FORMAT_VERSION,
            seq: self.seq,
            ts: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            run: self.run.clone(),
            kid: self.kid.clone(),
            event,
            prev: self.prev.clone(),
        };
        let (mut line, hash) = seal_line(&record);
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::Audit(format!("cannot write {}: {e}", self.path.display())))?;
        tracing::debug!(
            kind = record.event.kind(),
            seq = self.seq,
            "audit record written"
        );
        self.seq += 1;
        self.prev = hash;
        Ok(())
    }
}
