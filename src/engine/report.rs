//! What a run reports: per rule, per job and for the whole run. These are
//! the values the JSON output, the metrics and the summary print; the audit
//! log records its own events, built from them.

use super::{Mode, PartitionReport, pending};
use crate::audit::{ChildCount, ObjectCount, Totals};
use crate::config::Job;
use crate::error::ExitCode;
use crate::plan::WalkReport;
use crate::status::{ActionKind, JobStatus, RunStatus};
use serde::Serialize;

/// How one rule ended: sets the exit code and the job's status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// Dry run with work to do.
    Pending,
    /// Nothing (left) to do, or all done.
    Done,
    /// A guard stopped it before it touched anything.
    Guard,
    /// It failed; the other rules went on.
    Failed,
    /// Stopped at a batch boundary (signal or lost lease).
    Interrupted,
}

/// What one rule did (or, in a plan, would do): the JSON output's rule,
/// the table's row, the metrics' counts.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub job: String,
    pub rule: String,
    pub policy: String,
    pub target: String,
    pub action: ActionKind,
    pub status: RuleStatus,
    /// Rows eligible when the rule started (not held).
    pub matched: u64,
    pub held: u64,
    /// Rows (objects) in the whole table (store). Counted for plans and when
    /// a `max_fraction` guard needs it; `None` on an executed run without
    /// one, where a `COUNT(*)` over a large table on every run buys nothing.
    pub total: Option<u64>,
    /// Rows acted on (deleted or anonymized) in the parent table.
    pub done: u64,
    pub children: Vec<ChildCount>,
    pub batches: u64,
    pub longest_batch_ms: u64,
    /// Batches the server rolled back on a conflict (deadlock, lock timeout)
    /// and that were tried again.
    pub retries: u64,
    /// Keyed hashes of a few subjects the rule would touch (dry run only).
    pub sample_subjects: Vec<String>,
    /// Seconds the loop paused at batch boundaries, per `pause_when`
    /// reason (absent when it never paused).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub throttled: std::collections::BTreeMap<super::throttle::Reason, f64>,
    /// Objects erased (or, in a dry run, to erase) and kept by Object Lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectCount>,
    /// `partitions = "drop"`: the wholly due partitions, dropped (or, in a
    /// plan, to drop) or batched with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionReport>,
    /// Sources with `after_purge`: the dead space the touched tables hold
    /// (a plan: now; a run: after the reclaim step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_space: Option<crate::sql::purge::DeadSpace>,
    pub message: Option<String>,
    /// The order the batches walk the table in, and why (SQL rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkReport>,
    /// Costs a plan makes visible: each child found through a foreign key
    /// no index leads with (every batch scans that child table).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Sizes chosen for batches sized by time (`batch_time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_sizes: Option<BatchSizes>,
    /// A request job's rule: the request whose subject it acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// A request job's rule after an executed run: rows of the subject the
    /// rule still selects (the re-query that proves the erasure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<u64>,
    /// What keeps some of them, e.g. a legal hold or Object Lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

impl RuleReport {
    /// Add the seconds one `pause_when` wait took, per reason.
    pub(crate) fn add_throttled(&mut self, waited: super::throttle::Waited) {
        for (reason, secs) in waited.seconds {
            *self.throttled.entry(reason).or_default() += secs;
        }
    }
}

/// What the time-sized batches of a rule were: first, smallest, largest, last.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BatchSizes {
    pub target_ms: u64,
    pub first: usize,
    pub min: usize,
    pub max: usize,
    pub last: usize,
}

/// One job's rules and how the job ended.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub policy: String,
    pub status: JobStatus,
    pub duration_ms: u64,
    pub rules: Vec<RuleReport>,
}

/// What a run returns to its caller: everything the CLI prints (table or
/// JSON), the metrics push and the exit code.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id, as its audit file and records name it.
    pub run: String,
    /// Plan, dry run or execute.
    pub mode: Mode,
    pub as_of: String,
    pub audit_file: String,
    pub status: RunStatus,
    pub totals: Totals,
    pub jobs: Vec<JobReport>,
    /// Open erasure requests after the run (the raw subject never appears).
    pub requests: Vec<crate::requests::process::RequestLine>,
    /// Objects Object Lock kept after their rows were erased, per store and
    /// reason, as the run ends (never a key).
    pub pending: Vec<pending::PendingLine>,
    /// Requests this run completed (for the completion histogram).
    #[serde(skip)]
    pub request_completions: Vec<crate::requests::process::Completion>,
    #[serde(skip)]
    pub exit: ExitCode,
}

/// A report for a rule that has done nothing yet (SQL and object rules).
pub(crate) fn blank_report(
    job: &Job,
    rule: &str,
    target: String,
    action: ActionKind,
) -> RuleReport {
    RuleReport {
        job: job.name.clone(),
        rule: rule.to_string(),
        policy: job.policy.clone(),
        target,
        action,
        status: RuleStatus::Done,
        matched: 0,
        held: 0,
        total: None,
        done: 0,
        children: vec![],
        batches: 0,
        longest_batch_ms: 0,
        retries: 0,
        sample_subjects: vec![],
        throttled: Default::default(),
        objects: vec![],
        partitions: vec![],
        dead_space: None,
        message: None,
        walk: None,
        notes: vec![],
        batch_sizes: None,
        request: None,
        left: None,
        kept: vec![],
    }
}

pub(crate) fn add_count(into: &mut Vec<ChildCount>, target: &str, via: &str, action: &str, n: u64) {
    match into
        .iter_mut()
        .find(|c| c.target == target && c.via == via && c.action == action)
    {
        Some(c) => c.count += n,
        None => into.push(ChildCount {
            target: target.to_string(),
            via: via.to_string(),
            action: action.to_string(),
            count: n,
        }),
    }
}
