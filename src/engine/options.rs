//! What a caller asks of a run: the mode, the jobs, the shard, the clock,
//! the cancellation token and who is told about progress. Plain data: the
//! engine reads it and never changes what the caller passed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What a run does with the rows it finds. The plan is the same in every
/// mode (counts, guards, holds); [`Mode::acts`] is the one decision
/// whether the batch path runs after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `lethe plan`: count only.
    Plan,
    /// `lethe run --dry-run`: count only, reported as a run.
    DryRun,
    /// `lethe run`.
    Execute,
}

impl Mode {
    /// Whether rows and objects are acted on (deleted, anonymized, erased)
    /// and the state store written. `false`: only counted and recorded as
    /// a plan. Every "dry run or not" question in the engine is this one.
    pub fn acts(self) -> bool {
        self == Mode::Execute
    }
}

/// One process's share of a sharded run: shard `index` of `count`.
/// Displayed as `index/count`, the form the audit log, the lease names
/// and the log lines have always used, so it is written in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's shard, `0..count`.
    pub index: u32,
    /// How many shards share the run.
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl From<(u32, u32)> for Shard {
    /// The CLI's `(index, count)` pair.
    fn from((index, count): (u32, u32)) -> Self {
        Self { index, count }
    }
}

/// How to run: given by the caller (CLI, daemon, demo, benches), read by
/// every step of the run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's clock: every rule's cutoff is computed from it.
    pub as_of: DateTime<Utc>,
    /// Whether the run acts or only plans.
    pub mode: Mode,
    /// Jobs named on the command line; empty means every non-manual job.
    pub jobs: Vec<String>,
    /// Cancelled on a signal: the run stops at the next batch boundary.
    pub cancel: CancellationToken,
    /// This process handles one shard of the run's rows (`None`: all).
    pub shard: Option<Shard>,
    /// Told about each rule's batches (the CLI draws progress bars on a terminal).
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// Progress of the rules of a run, for people watching a terminal.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A rule starts executing with `total` rows to act on.
    fn start(&self, job: &str, rule: &str, total: u64) -> Box<dyn RuleProgress>;
}

/// One rule's progress bar (or whatever the caller draws), told about
/// rows as batches commit.
pub trait RuleProgress: Send {
    /// `n` more rows were committed.
    fn advance(&mut self, n: u64);
    /// The rule stopped (done, failed or interrupted).
    fn finish(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_written_index_slash_count() {
        assert_eq!(Shard::from((2, 8)).to_string(), "2/8");
    }

    #[test]
    fn only_an_executed_run_acts() {
        assert!(Mode::Execute.acts());
        assert!(!Mode::DryRun.acts());
        assert!(!Mode::Plan.acts());
    }
}
