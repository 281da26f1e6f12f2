//! The verdict on one run's audit file, shared by the reader and the judge.
//!
//! [`FileReport`] and [`Pin`] live here, below both `log` (which fills a
//! report while it reads a file) and `verify` (which adds what it finds
//! across runs and against the state store), so the dependency runs one way:
//! `verify` → `log` → `findings`. Nothing here reads a file or a database.

use crate::state::StateRun;
use std::path::PathBuf;

/// The verdict on one run: its file, or a run whose file is missing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub run: Option<String>,
    pub records: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// `None` when the chain is intact; else the 1-based line of the first bad record and why.
    pub broken_at: Option<(u64, String)>,
    /// The last record is a `run_end` (the run's seal).
    pub sealed: bool,
    /// The last record's hash, when the chain is intact.
    pub head: Option<String>,
    /// From `run_start`: a plan or dry run (these are not in the state store).
    pub dry_run: Option<bool>,
    /// From `run_start`: the run before this one, as the state store knew it.
    pub prev_run: Option<String>,
    /// From `run_start`: that run's head, as the state store recorded it.
    pub prev_head: Option<String>,
    /// No file exists for a run that the state store or the next run names.
    pub missing: bool,
    /// What the checks across runs and against the state store found.
    pub problems: Vec<String>,
    /// The state store's row for this run, when it was consulted and has one.
    pub state: Option<StateRun>,
    /// From `recovery` records: the crashed runs this run found, as it found them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovers: Vec<Pin>,
    /// This run never ended (no seal), and a later run recorded its
    /// recovery with exactly this log's record count and head.
    pub recovered_by: Option<String>,
    /// The file is empty and no run claims it: a run died after creating
    /// its log and before its first record (before it was registered in the
    /// state store), having touched nothing.
    pub empty: bool,
}

/// A crashed run's log as the recovering run found it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    pub run: String,
    /// The crashed log's file name.
    pub file: String,
    pub records: u64,
    pub head: String,
}

impl FileReport {
    /// A report with nothing found yet, which the reader then fills in.
    pub fn new(file: PathBuf) -> FileReport {
        FileReport {
            file,
            run: None,
            records: 0,
            first_ts: None,
            last_ts: None,
            broken_at: None,
            sealed: false,
            head: None,
            dry_run: None,
            prev_run: None,
            prev_head: None,
            missing: false,
            problems: vec![],
            state: None,
            recovers: vec![],
            recovered_by: None,
            empty: false,
        }
    }

    /// The run passes: chain intact, sealed (or recovered, or empty and
    /// unclaimed), present, and nothing found across runs.
    pub fn ok(&self) -> bool {
        self.broken_at.is_none()
            && (self.sealed || self.recovered_by.is_some() || self.empty)
            && !self.missing
            && self.problems.is_empty()
    }

    /// How the run ended, in words: `sealed`, `crashed, recovered by <run>`,
    /// or `NOT sealed (run did not finish)`.
    pub fn seal_status(&self) -> String {
        match (&self.recovered_by, self.sealed) {
            (_, true) => "sealed".into(),
            (None, false) if self.empty => {
                "empty (the run died before its first record, having touched nothing)".into()
            }
            (Some(by), false) => format!("crashed, recovered by {by}"),
            (None, false) => "NOT sealed (run did not finish)".into(),
        }
    }

    /// The chain status in words: `chain ok` or `broken at record N: why`.
    pub fn chain_status(&self) -> String {
        match (&self.broken_at, self.missing) {
            (_, true) => "missing".into(),
            (None, _) => "chain ok".into(),
            (Some((n, why)), _) => format!("BROKEN at record {n}: {why}"),
        }
    }
}
