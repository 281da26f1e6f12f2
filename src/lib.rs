//! Lethe: a retention and deletion batch job runner.
//!
//! Map of the crate, in the order data flows:
//! - [`config`]: `config/lethe.toml` and `jobs/*.toml`, parsed strictly and
//!   validated with file/line/column diagnostics;
//! - [`check`]: rules compared with the live schema, uncovered foreign keys;
//! - [`plan`]: rules prepared against the live schema — the foreign-key
//!   graph `check`, `plan` and `run` share, and the coverage map;
//! - [`engine`]: jobs → rules → short batched transactions, guards, leases,
//!   cancellation; dry run is the engine not calling its batch path;
//! - [`sql`]: connections, one dialect per engine, introspection, and the only
//!   place dynamic SQL is handed to sqlx;
//! - [`objects`]: the object-store trait (S3, local folder), object rules
//!   and objects named by rows, Object Lock respected;
//! - [`audit`]: typed events, hash-chained JSON Lines, verification;
//! - [`keys`]: the HMAC key behind subject hashes and pseudonyms;
//! - [`state`]: leases and run history; [`schedule`]: the daemon loop;
//! - [`requests`]: erasure requests, their working-day deadlines and store;
//! - [`cli`]: commands, output formats, exit codes; [`demo`]: sample data.

pub mod anonymize;
pub mod audit;
pub mod calendar;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod requests;
pub mod schedule;
pub mod sql;
pub mod state;
pub mod status;

pub use error::{Error, ExitCode};
