//! One struct per audit event, emitted once: the audit line, the log line and
//! the report all come from the same value.
//!
//! Events carry counts, names from the config, keyed subject hashes and keyed
//! digests. Never a value read from a row.

use serde::{Deserialize, Serialize};

/// Audit record format version, in every record as `v`.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Rows of one child table a batch reached through one foreign key: the
/// audit shows what a delete took with it, not only the parent rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ChildCount {
    pub target: String,
    /// The foreign key column that ties the child rows to their parent.
    pub via: String,
    pub action: String,
    pub count: u64,
}

/// Objects counted per store, in `batch`, `object_batch`, `object_hold` and
/// `pending_retry` records. Defined by the object code that counts them
/// (so `objects` needs nothing from `audit`); named here too because it is
/// part of the audit format.
pub use crate::objects::ObjectCount;

/// A partition dropped whole: which one, and the bound that made it due.
/// Names and bounds come from the catalog, never from a row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionDropped {
    /// `schema.name` (PostgreSQL) or the partition's name (MariaDB).
    pub name: String,
    /// The partition's exclusive upper bound, at most the rule's cutoff.
    pub below: String,
}

/// Rows a run deleted and anonymized, in `run_end`: the sum an auditor
/// compares with the batches above it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Totals {
    pub deleted: u64,
    pub anonymized: u64,
    pub held: u64,
    pub failed_rules: u64,
    pub guard_trips: u64,
    /// Objects erased (every version of each).
    #[serde(default)]
    pub objects_erased: u64,
    #[serde(default)]
    pub object_versions_erased: u64,
    #[serde(default)]
    pub object_bytes_erased: u64,
    /// Objects kept by Object Lock.
    #[serde(default)]
    pub objects_held: u64,
}

/// A batch a crashed run recorded but may not have committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InDoubt {
    pub job: String,
    pub rule: String,
    pub batch: u64,
    pub count: u64,
    /// `batch` or `object_batch`.
    pub kind: String,
    pub keys_digest: String,
}

/// How one job of the run ended, in `run_end`, so a partial run says which
/// job failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobOutcome {
    pub job: String,
    pub status: String,
}

/// Every kind of audit record, one variant each, serialized with a `type`
/// field (README, "Audit log"): the format auditors and tools rely on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        version: String,
        command: String,
        dry_run: bool,
        as_of: String,
        config_digest: String,
        jobs_digest: String,
        jobs: Vec<String>,
        key_id: String,
        /// `index/count` when this process ran one shard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        /// The run the state store recorded before this one (executed runs
        /// only): links the runs, so a whole run deleted from the folder is
        /// detected by the run after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_run: Option<String>,
        /// That run's head (its last record's hash) as the state store
        /// recorded it; absent while that run had not ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_head: Option<String>,
    },
    /// One committed batch (written before the commit; see `BatchRollback`).
    Batch {
        job: String,
        rule: String,
        policy: String,
        target: String,
        action: String,
        batch: u64,
        count: u64,
        children: Vec<ChildCount>,
        /// Keyed digest of the batch's keys, in the order they were processed.
        keys_digest: String,
        /// Keyed hashes of the distinct subjects in the batch.
        subjects: Vec<String>,
        /// Objects the batch's rows named, erased before the commit.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        objects: Vec<ObjectCount>,
        /// The batch size the time controller chose (`batch_time` rules only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_size: Option<u64>,
        /// Set when the batch is a whole partition dropped (`partitions =
        /// "drop"`): its rows went with one DDL statement, not row by row.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<PartitionDropped>,
    },
    /// One batch of an object rule, written before any of its objects is deleted.
    ObjectBatch {
        job: String,
        rule: String,
        policy: String,
        target: String,
        batch: u64,
        objects: ObjectCount,
        /// Keyed digest of the batch's keys (key names never reach the log).
        keys_digest: String,
    },
    /// Objects Object Lock keeps (legal hold, or retention not yet expired):
    /// skipped, never forced.
    ObjectHold {
        job: String,
        rule: String,
        policy: String,
        target: String,
        objects: ObjectCount,
        /// Objects per reason: `legal_hold`, `governance`, `compliance`.
        reasons: std::collections::BTreeMap<String, u64>,
        /// Rows kept because an object they name is held (row-linked objects).
        rows: u64,
        /// Keyed hashes of those rows' subjects.
        subjects: Vec<String>,
    },
    /// A store refused some deletes (read from the per-key errors of a 200 answer).
    ObjectErrors {
        job: String,
        rule: String,
        store: String,
        /// Refused versions, by the store's error code.
        failed: std::collections::BTreeMap<String, u64>,
    },
    /// Objects on the pending-erasure list (held by Object Lock when their
    /// rows were erased), tried again at the start of an executed run.
    /// Written before any of them is deleted; key names never appear.
    PendingRetry {
        store: String,
        /// Erased now that their hold has ended.
        erased: ObjectCount,
        /// Keyed digest of the erased keys (in list order).
        keys_digest: String,
        /// Still held, per reason: they stay on the list.
        held: std::collections::BTreeMap<String, u64>,
        /// No longer in the store (deleted by someone else): dropped from the list.
        gone: u64,
    },
    /// The batch recorded just before was not committed.
    BatchRollback {
        job: String,
        rule: String,
        batch: u64,
        reason: String,
    },
    /// The connection was lost while the batch recorded just before was
    /// committing: the server may or may not have committed it. Lethe does
    /// not guess; the rule stops, and a later run deletes whatever of the
    /// batch is still there, in batches of its own. Search shows the batch
    /// as `unconfirmed`; the report does not count it as done.
    BatchUnknown {
        job: String,
        rule: String,
        batch: u64,
        reason: String,
    },
    /// Rows that matched but were skipped because a legal hold lists their subject.
    Hold {
        job: String,
        rule: String,
        policy: String,
        target: String,
        count: u64,
        subjects: Vec<String>,
        subjects_truncated: bool,
    },
    Guard {
        job: String,
        rule: String,
        policy: String,
        target: String,
        matched: u64,
        total: u64,
        reason: String,
    },
    /// Dry run: what the rule would do.
    Plan {
        job: String,
        rule: String,
        policy: String,
        target: String,
        action: String,
        matched: u64,
        held: u64,
        total: u64,
        children: Vec<ChildCount>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        objects: Vec<ObjectCount>,
    },
    Failure {
        job: String,
        rule: Option<String>,
        policy: String,
        target: Option<String>,
        error: String,
    },
    Locked {
        job: String,
    },
    /// An earlier run of one of this run's jobs (same shard) never ended: its
    /// process died (SIGKILL, out of memory, a lost node) and its run lease
    /// expired. Written once per crashed run, before this run touches
    /// anything. `records` and `head` pin that run's log as this run found
    /// it, so `audit verify` accepts the unsealed log only while it still
    /// ends exactly there: cut, extended or edited afterwards, it fails.
    Recovery {
        /// The run that crashed.
        crashed_run: String,
        /// Its log's file name (in the audit folder, and its S3 copy).
        crashed_file: String,
        /// How many records its log held, all of them chained.
        records: u64,
        /// Its last record's hash.
        head: String,
        /// Its jobs that this run also runs (and so finishes).
        jobs: Vec<String>,
        /// Batches it recorded whose commit it never confirmed. A batch is
        /// recorded before its transaction commits, so each either committed
        /// (its rows are gone) or not (its rows are still due, and this run
        /// or a later one deletes them again in batches of its own).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        in_doubt: Vec<InDoubt>,
    },
    /// An erasure request was filed (`request add`) or taken from the intake table.
    RequestReceived {
        request: String,
        kind: String,
        /// Keyed hash of the requester's id.
        subject: String,
        received: String,
        due: String,
        /// `<source>.<table>` it was taken from, for intake requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intake: Option<String>,
    },
    /// Every request job completed for the subject and a re-query found
    /// nothing of it left.
    RequestDone {
        request: String,
        kind: String,
        subject: String,
        received: String,
        due: String,
        completed: String,
        /// Completed at or before the due instant.
        on_time: bool,
        /// Working days from the day of receipt to the day of completion.
        working_days: i64,
    },
    /// Part of the subject's data is kept: a legal hold or Object Lock.
    RequestHeld {
        request: String,
        kind: String,
        subject: String,
        due: String,
        /// What keeps it, e.g. `legal hold app.legal_holds (3 rows of app.users)`.
        reasons: Vec<String>,
    },
    /// Rejected on one of the policy's VII(7) grounds (the operator's note
    /// stays in the state store: it is free text).
    RequestRejected {
        request: String,
        kind: String,
        subject: String,
        due: String,
        reason: String,
    },
    /// The seal: always the last record of a run. Its `hash` is the run's
    /// head, which the state store also keeps (with the record count).
    RunEnd {
        status: String,
        totals: Totals,
        jobs: Vec<JobOutcome>,
    },
}

/// The rule a record is about: job and rule, with the policy section and
/// target when the record names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope<'a> {
    pub job: &'a str,
    pub rule: &'a str,
    pub policy: Option<&'a str>,
    pub target: Option<&'a str>,
}

impl Event {
    /// The rule this record is about, if it is about one (a failure outside
    /// any rule is filed under rule `-`).
    pub(crate) fn scope(&self) -> Option<Scope<'_>> {
        let (job, rule, policy, target) = match self {
            Event::Batch {
                job,
                rule,
                policy,
                target,
                ..
            }
            | Event::ObjectBatch {
                job,
                rule,
                policy,
                target,
                ..
            }
            | Event::ObjectHold {
                job,
                rule,
                policy,
                target,
                ..
            }
            | Event::Hold {
                job,
                rule,
                policy,
                target,
                ..
            }
            | Event::Guard {
                job,
                rule,
                policy,
                target,
                ..
            }
            | Event::Plan {
                job,
                rule,
                policy,
                target,
                ..
            } => (job, rule.as_str(), Some(policy), Some(target.as_str())),
            Event::Failure {
                job,
                rule,
                policy,
                target,
                ..
            } => (
                job,
                rule.as_deref().unwrap_or("-"),
                Some(policy),
                target.as_deref(),
            ),
            Event::BatchRollback { job, rule, .. }
            | Event::BatchUnknown { job, rule, .. }
            | Event::ObjectErrors { job, rule, .. } => (job, rule.as_str(), None, None),
            Event::RunStart { .. }
            | Event::PendingRetry { .. }
            | Event::Locked { .. }
            | Event::Recovery { .. }
            | Event::RunEnd { .. }
            | Event::RequestReceived { .. }
            | Event::RequestDone { .. }
            | Event::RequestHeld { .. }
            | Event::RequestRejected { .. } => return None,
        };
        Some(Scope {
            job,
            rule,
            policy: policy.map(String::as_str),
            target,
        })
    }

    /// The record's `type` as written, without serializing the whole event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStart { .. } => "run_start",
            Event::Batch { .. } => "batch",
            Event::ObjectBatch { .. } => "object_batch",
            Event::ObjectHold { .. } => "object_hold",
            Event::ObjectErrors { .. } => "object_errors",
            Event::PendingRetry { .. } => "pending_retry",
            Event::BatchRollback { .. } => "batch_rollback",
            Event::BatchUnknown { .. } => "batch_unknown",
            Event::Hold { .. } => "hold",
            Event::Guard { .. } => "guard",
            Event::Plan { .. } => "plan",
            Event::Failure { .. } => "failure",
            Event::Locked { .. } => "locked",
            Event::Recovery { .. } => "recovery",
            Event::RunEnd { .. } => "run_end",
            Event::RequestReceived { .. } => "request_received",
            Event::RequestDone { .. } => "request_done",
            Event::RequestHeld { .. } => "request_held",
            Event::RequestRejected { .. } => "request_rejected",
        }
    }
}

/// A record as written: envelope, event, chain link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub run: String,
    pub kid: String,
    #[serde(flatten)]
    pub event: Event,
    /// Hash of the previous record (64 zeros for the first).
    pub prev: String,
}
