//! Lethe: a retention and deletion batch job runner.
//!
//! Map of the crate, in the order data flows through a run:
//! - [`cli`]: the library half of the thin binary — arguments, one file per
//!   command group (`cli/audit`, `cli/requests`, and `cli/demo`, which
//!   seeds [`demo`] and then plans, runs and verifies), output formats and
//!   exit codes; the only module that prints;
//! - [`config`]: `config/lethe.toml` and `jobs/*.toml`, parsed strictly and
//!   validated with file/line/column diagnostics into the typed model every
//!   later stage trusts; [`schedule`]: cron and time zones, and the daemon
//!   loop that fires jobs on them;
//! - [`check`]: rules compared with the live schema, stores and regions;
//! - [`plan`]: rules prepared against the live schema — the foreign-key
//!   graph and the coverage map `check`, `plan` and `run` share;
//! - [`anonymize`]: the strategies a rule may name and the keyed hashes
//!   Lethe computes itself (the SQL that applies a strategy is
//!   `sql::anonymize`, beside the dialects it composes);
//! - [`engine`]: jobs → rules → short batched transactions, guards, leases,
//!   cancellation, `pause_when`; dry run is one decision (`Mode::acts`), the
//!   plan instead of the batch path;
//! - [`sql`]: connections, the `Dialect` trait with every engine difference
//!   in one file per engine, introspection, the rule statements, and the
//!   only place dynamic SQL is handed to sqlx;
//! - [`objects`]: the object-store trait (S3, local folder), object rules
//!   and objects named by rows, Object Lock respected; its S3 client and
//!   lock question are leaves the audit sink uses too;
//! - [`audit`]: typed events, the hash-chained writer and its sinks (file,
//!   S3), and what auditors read the log with (verify, search, export,
//!   report);
//! - [`state`]: leases, run history, objects Object Lock kept;
//!   [`requests`]: erasure requests, their working-day deadlines and store;
//! - [`status`]: the typed outcomes of runs, jobs and rules, as the audit
//!   log, metrics and JSON output spell them;
//! - `metrics`, `health` (crate-private): Prometheus text for a textfile,
//!   a Pushgateway or the daemon's `/metrics`, and the daemon's health probe.
//!
//! Beneath them all: [`keys`] (the HMAC key behind subject hashes,
//! pseudonyms and key digests), [`calendar`] (working days and deadlines
//! counted in them) and [`error`] (typed errors and the exit codes that are
//! part of the contract; it uses no other module). [`demo`] is the sample schema and
//! data the demo command and the integration tests seed; it uses no CLI.
//!
//! The top-level modules form no cycle: dependencies run one way (`cli` →
//! `demo`, `audit` → `objects`, `config` → `calendar` / `anonymize`,
//! `engine` → `plan` → `sql`, and inside `audit`, `verify` → `log` →
//! `findings`), so a core library could be split from the CLI. The README's
//! Layout lists them in that order.
//!
//! Public surface: [`cli::main`] for the binary, and what the integration
//! tests, benchmarks and fuzz targets call — [`engine::run`],
//! [`config::load`], [`sql::Db::connect`], [`audit::verify::verify_file`],
//! [`keys::Keys::from_secret`], [`demo::seed`] and their kin. What is only
//! used inside the crate is `pub(crate)`.

pub mod anonymize;
pub mod audit;
pub mod calendar;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub(crate) mod health;
pub mod keys;
pub(crate) mod metrics;
pub mod objects;
pub mod plan;
pub mod requests;
pub mod schedule;
pub mod sql;
pub mod state;
pub mod status;

pub use error::{Error, ExitCode};
