//! The audit log: typed events, a hash-chained writer, its sinks, and what
//! auditors read it with (verify, search, export, report).
//!
//! Owns the guarantee that every deletion is recorded before it commits, and
//! that the log holds no raw personal value: subjects appear only as keyed
//! hashes (`crate::keys`), keys only as keyed digests.

/// The records (public: tests and tools read and write them).
pub mod event;
/// CSV and JSON export of the records (public: the column list is a contract).
pub mod export;
pub(crate) mod findings;
pub(crate) mod log;
pub(crate) mod report;
pub(crate) mod s3;
pub(crate) mod search;
pub(crate) mod sink;
/// Verification of one file and across runs (public: benches and tests verify runs).
pub mod verify;
/// The hash-chained writer (public: tests build logs with it).
pub mod writer;

pub use event::{
    ChildCount, Event, InDoubt, JobOutcome, ObjectCount, PartitionDropped, Record, Totals,
};
pub use sink::{AuditSink, FileSink};
pub use writer::AuditWriter;
