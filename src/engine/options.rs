//! What a caller asks of a run: the mode, the jobs, the shard, the clock,
//! the cancellation token and who is told about progress. Plain data: the
//! engine reads it and never changes what the caller passed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub as_of: DateTime<Utc>,
    pub mode: Mode,
    /// Jobs named on the command line; empty means every non-manual job.
    pub jobs: Vec<String>,
    pub cancel: CancellationToken,
    /// `(index, count)`: this process handles shard `index` of `count`.
    pub shard: Option<(u32, u32)>,
    /// Told about each rule's batches (the CLI draws progress bars on a terminal).
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// Progress of the rules of a run, for people watching a terminal.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A rule starts executing with `total` rows to act on.
    fn start(&self, job: &str, rule: &str, total: u64) -> Box<dyn RuleProgress>;
}

pub trait RuleProgress: Send {
    /// `n` more rows were committed.
    fn advance(&mut self, n: u64);
    fn finish(&mut self);
}
