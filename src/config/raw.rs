//! The files as written: strict serde structs, nothing interpreted yet.
//!
//! `deny_unknown_fields` everywhere, so a misspelt key is an error with a
//! position rather than a silently ignored safety setting. Values the
//! validation pass needs to point at are `Spanned`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `config/lethe.toml` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Regions every source and store must declare one of (empty: no restriction).
    #[serde(default)]
    pub allowed_regions: Vec<Spanned<String>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<RawSource>>,
    /// Object stores: `[stores.<name>]` with `kind = "s3"` or `"fs"`.
    #[serde(default)]
    pub stores: BTreeMap<String, Spanned<RawStore>>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub state: Option<RawState>,
    #[serde(default)]
    pub daemon: Option<RawDaemon>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// `lethe check --coverage`: what a personal-looking column is.
    #[serde(default)]
    pub coverage: Option<RawCoverage>,
    #[serde(default)]
    pub requests: Option<RawRequests>,
}

/// `[coverage]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoverage {
    /// Replaces the built-in list (see `config::model::DEFAULT_PERSONAL_PATTERNS`).
    #[serde(default)]
    pub patterns: Option<Vec<Spanned<String>>>,
    /// Added to the list in use.
    #[serde(default)]
    pub extra_patterns: Vec<Spanned<String>>,
}

/// `[requests]`: how erasure requests are timed and where they come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    /// A calendar file (`holidays`, `workdays`), relative to this config file's folder.
    #[serde(default)]
    pub calendar: Option<Spanned<String>>,
    /// N in "the end of the N-th working day after receipt" (default 15).
    #[serde(default)]
    pub deadline_working_days: Option<Spanned<i64>>,
    /// IANA zone working days and the end of a day are read in (default Asia/Shanghai).
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
    /// `<source>.<table>` an application's support tool writes requests into.
    #[serde(default)]
    pub intake: Option<Spanned<String>>,
}

/// `[metrics]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Prometheus text file written after every run (node_exporter textfile collector).
    #[serde(default)]
    pub textfile: Option<String>,
    /// Pushgateway base URL (`http://…`), pushed after every run.
    #[serde(default)]
    pub pushgateway: Option<Spanned<String>>,
}

/// `[daemon]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// IANA zone the job schedules are read in.
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
    /// Where `lethe daemon` answers health probes and serves metrics.
    #[serde(default)]
    pub health_addr: Option<Spanned<String>>,
}

/// `[sources.<name>]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub url: Spanned<String>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<u32>>,
    /// Pause between two batches on this source (SQLite writers starve otherwise).
    #[serde(default)]
    pub batch_pause: Option<Spanned<String>>,
    /// How long to keep reconnecting after the connection is lost (`0s`: never).
    #[serde(default)]
    pub reconnect_for: Option<Spanned<String>>,
    /// `"vacuum"`: reclaim what a purge leaves on disk (see `AfterPurge`).
    #[serde(default)]
    pub after_purge: Option<Spanned<String>>,
    /// `[sources.NAME.pause_when]`: when the batch loop waits (see `config::throttle`).
    #[serde(default)]
    pub pause_when: Option<Spanned<super::throttle::RawPauseWhen>>,
}

/// `[stores.<name>]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `s3` or `fs`.
    pub kind: Spanned<String>,
    /// S3: the bucket.
    #[serde(default)]
    pub bucket: Option<Spanned<String>>,
    /// S3: the endpoint URL (default: AWS's endpoint for the region). `${VAR}` expands.
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    /// S3: path-style addressing (needed for `localhost` and most S3-compatible servers).
    #[serde(default)]
    pub path_style: Option<bool>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    /// fs: the folder (relative paths are relative to the working directory).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Requests in flight at once (listing checks, deletes).
    #[serde(default)]
    pub concurrency: Option<Spanned<i64>>,
    /// S3: attempts per request, for throttling (SlowDown), 5xx and connection errors.
    #[serde(default)]
    pub max_attempts: Option<Spanned<i64>>,
}

/// `[audit]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub hmac_key_env: Option<Spanned<String>>,
    /// Variables holding keys used before a rotation, so `audit search`
    /// still finds subjects in records written under them (matched by `kid`).
    #[serde(default)]
    pub previous_key_envs: Vec<Spanned<String>>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    /// An S3 store (`[stores.<name>]`, kind "s3") that also receives one
    /// object per run.
    #[serde(default)]
    pub s3_store: Option<Spanned<String>>,
    #[serde(default)]
    pub s3_prefix: Option<String>,
    /// Object Lock retention for those objects, when the bucket has Object Lock.
    #[serde(default)]
    pub s3_retention: Option<Spanned<String>>,
}

/// `[state]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub lease_ttl: Option<Spanned<String>>,
}

/// A `jobs/*.toml` file as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: Spanned<String>,
    pub policy: Spanned<String>,
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Higher runs first when several jobs run in one pass.
    #[serde(default)]
    pub priority: Option<i32>,
    /// A manual job never runs unless named with `--job`.
    #[serde(default)]
    pub manual: Option<bool>,
    /// `"request"`: the job acts on the subjects of open erasure requests,
    /// and its rules have no `select`. Absent: by age, as usual.
    #[serde(default)]
    pub trigger: Option<Spanned<String>>,
    /// The job runs only as `--job <name> --confirm <name>` (business suspension).
    #[serde(default)]
    pub confirm: Option<bool>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
}

/// `[[rules]]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    /// `<source>.<table>` for a SQL rule; absent for an object rule.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    /// An object rule: the store whose objects it erases.
    #[serde(default)]
    pub store: Option<Spanned<String>>,
    /// Object rule: only keys under this prefix.
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// Object rule: only objects carrying every one of these tags.
    #[serde(default)]
    pub tags: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub subject: Option<Spanned<String>>,
    #[serde(default)]
    pub select: Option<Spanned<RawSelect>>,
    #[serde(default, rename = "where")]
    pub where_: Option<Spanned<String>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    /// Required for SQL rules; object rules only delete (the default).
    #[serde(default)]
    pub action: Option<Spanned<RawAction>>,
    /// Rows per batch, or `"auto"` (sized by time, `batch_time`).
    #[serde(default)]
    pub batch_size: Option<Spanned<RawBatchSize>>,
    /// Target duration of one batch's transaction (`"50ms"`): sizes batches by time.
    #[serde(default)]
    pub batch_time: Option<Spanned<String>>,
    /// Ceiling of a time-sized batch.
    #[serde(default)]
    pub batch_size_max: Option<Spanned<i64>>,
    /// `"select"`, `"key"` or `"heap"`: force the order batches walk the table in.
    #[serde(default)]
    pub walk: Option<Spanned<String>>,
    /// Batches in flight at once (plain deletes only).
    #[serde(default)]
    pub concurrency: Option<Spanned<i64>>,
    /// `"drop"`: drop wholly expired partitions instead of deleting their
    /// rows; `"batch"` (the default): delete every row in batches.
    #[serde(default)]
    pub partitions: Option<Spanned<String>>,
    #[serde(default)]
    pub max_rows: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_fraction: Option<Spanned<f64>>,
    #[serde(default)]
    pub children: Vec<Spanned<RawChild>>,
    /// Objects named by each row, erased with it.
    #[serde(default)]
    pub objects: Vec<Spanned<RawObjects>>,
}

/// `batch_size = 2000` or `batch_size = "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBatchSize {
    Rows(i64),
    Word(String),
}

/// `[[rules.objects]]`: the objects that belong to each row of a rule or child.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjects {
    pub store: Spanned<String>,
    /// A key prefix template over the row's columns, e.g. `"avatars/{id}/"`.
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// A column holding one object's full key.
    #[serde(default)]
    pub key_column: Option<Spanned<String>>,
}

/// `select = { … }` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelect {
    /// The time column (SQL rules); object rules select on last-modified and take none.
    #[serde(default)]
    pub column: Option<Spanned<String>>,
    /// Rows whose column is before `as_of - older_than`.
    #[serde(default)]
    pub older_than: Option<Spanned<String>>,
    /// Rows whose column is after `as_of - newer_than` (e.g. birthdays of minors).
    #[serde(default)]
    pub newer_than: Option<Spanned<String>>,
    /// How the column stores time when it is text or a number.
    #[serde(default)]
    pub format: Option<Spanned<String>>,
}

/// `[[rules.children]]` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChild {
    pub target: Spanned<String>,
    pub foreign_key: Spanned<String>,
    pub action: Spanned<RawAction>,
    /// The child's own key; needed when it has children of its own or hashes columns.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub children: Vec<Spanned<RawChild>>,
    #[serde(default)]
    pub objects: Vec<Spanned<RawObjects>>,
}

/// `action = …` as written (serde only: `validate` checks it and builds the model).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum RawAction {
    Delete,
    Anonymize(BTreeMap<String, Spanned<String>>),
}
