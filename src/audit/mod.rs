//! The audit log: typed events, a hash-chained writer, its sinks, and what
//! auditors read it with (verify, search, export, report).
//!
//! Owns the guarantee that every deletion is recorded before it commits, and
//! that the log holds no raw personal value: subjects appear only as keyed
//! hashes (`crate::keys`), keys only as keyed digests.

pub mod event;
pub mod export;
pub mod findings;
pub mod log;
pub mod report;
pub mod s3;
pub mod search;
pub mod sink;
pub mod verify;
pub mod writer;

pub use event::{
    ChildCount, Event, InDoubt, JobOutcome, ObjectCount, PartitionDropped, Record, Totals,
};
pub use sink::{AuditSink, FileSink};
pub use writer::AuditWriter;
