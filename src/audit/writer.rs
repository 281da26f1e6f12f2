//! Append-only, hash-chained JSON Lines: one file per run.
//!
//! Each line is `<body>` with `,"hash":"<sha256(body + "}")>"}` closing it,
//! where the body holds `prev`, the previous line's hash. The hash covers
//! the exact bytes written, so verification needs no re-serialization.
//! Every append is stored durably by every sink before the caller goes on: a
//! batch is recorded before its transaction commits, so no deletion is
//! unaudited. The writer owns the chain; sinks (`super::sink`) only store the
//! sealed bytes.

use super::event::{Event, FORMAT_VERSION, Record};
use super::sink::{AuditSink, FileSink};
use crate::error::Error;
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The `prev` of a run's first record: the chain of every run starts here.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One run's audit log being written: it owns the chain (sequence and
/// previous hash), so no record can be appended out of order.
pub struct AuditWriter {
    /// The local file sink's path (the run's file name, in reports and the state store).
    path: PathBuf,
    /// Every sink a line goes to; the local file sink first.
    sinks: Vec<Box<dyn AuditSink>>,
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
        let name = format!(
            "run-{}-{}.jsonl",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            &run[..8.min(run.len())]
        );
        let file = FileSink::create(dir, &name)?;
        Ok(AuditWriter {
            path: file.path().to_path_buf(),
            sinks: vec![Box::new(file)],
            run: run.to_string(),
            kid: kid.to_string(),
            seq: 0,
            prev: GENESIS.to_string(),
        })
    }

    /// Also write every line to `sink`. Only before the first append, so every
    /// sink holds the whole chain. Public: the sink trait is how a library
    /// user stores the log somewhere else, line by line, before each commit.
    pub fn add_sink(&mut self, sink: Box<dyn AuditSink>) -> Result<(), Error> {
        if self.seq > 0 {
            return Err(Error::Audit(format!(
                "sink {} added after the run's first record",
                sink.location()
            )));
        }
        self.sinks.push(sink);
        Ok(())
    }

    /// Where every sink stores this run (for a caller that added sinks).
    pub fn locations(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.location()).collect()
    }

    /// The run is over: let every sink store what it still buffers.
    pub fn close(&mut self) -> Result<(), Error> {
        for s in &mut self.sinks {
            s.close()?;
        }
        Ok(())
    }

    /// The run's local file: its name is the run's name in reports and the state store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn head(&self) -> &str {
        &self.prev
    }

    pub(crate) fn records(&self) -> u64 {
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
        for sink in &mut self.sinks {
            sink.append(line.as_bytes())?;
        }
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
