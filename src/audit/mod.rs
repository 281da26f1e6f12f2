//! The audit log: typed events, a hash-chained writer and its verifier.
//!
//! Owns the guarantee that every deletion is recorded before it commits, and
//! that the log holds no raw personal value: subjects appear only as keyed
//! hashes (`crate::keys`), keys only as keyed digests.

pub mod event;
pub mod verify;
pub mod writer;

pub use event::{ChildCount, Event, JobOutcome, ObjectCount, Record, Totals};
pub use writer::AuditWriter;
