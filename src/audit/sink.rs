//! Where sealed audit lines go: the [`AuditSink`] trait and the local file sink.
//!
//! The writer (`super::writer`) owns the chain — sequence, `prev`, `hash` — and
//! hands each finished line to every sink. A sink only has to store bytes
//! durably and say where it put them; it never sees an event before it is
//! sealed and never changes a byte. Any sink failing fails the append, and a
//! failed append stops the run (a batch's record is written before its
//! transaction commits), so no deletion is ever unaudited.
//!
//! A second sink (an S3 object per run) is one more implementation of this
//! trait, added to the list the writer appends through.

use crate::error::Error;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Durable storage for one run's audit lines.
pub trait AuditSink: Send {
    /// Where this sink stores the run (a path or a URL), for messages and the
    /// state store.
    fn location(&self) -> String;

    /// Store one sealed line (newline included). Returns only once the line is
    /// durable: the caller commits a deletion right after.
    fn append(&mut self, line: &[u8]) -> Result<(), Error>;

    /// The run is over: store whatever is still buffered. The file sink has
    /// nothing buffered; an object-store sink would upload here.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// One JSON Lines file per run in a local folder, fsynced after every line.
pub struct FileSink {
    file: File,
    path: PathBuf,
}

impl FileSink {
    /// Create `dir/<name>` (and `dir`), refusing to overwrite an existing file.
    /// Fails when the folder cannot be created or written, before the run
    /// touches anything.
    pub fn create(dir: &Path, name: &str) -> Result<FileSink, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Audit(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Audit(format!("cannot create {}: {e}", path.display())))?;
        // Make the new directory entry itself durable, so a crash cannot lose
        // the file while keeping the deletions it records.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(FileSink { file, path })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn append(&mut self, line: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::Audit(format!("cannot write {}: {e}", self.path.display())))
    }
}
