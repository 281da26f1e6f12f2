//! The validated, typed configuration the engine trusts.
//!
//! Nothing here can be malformed: every value was checked by `validate`, so
//! the engine never re-checks syntax, only the live schema.

use super::period::Period;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `config/lethe.toml`, validated: where the data lives and how Lethe runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub allowed_regions: Vec<String>,
    pub sources: BTreeMap<String, Source>,
    pub stores: BTreeMap<String, Store>,
    pub audit: AuditConfig,
    pub state: StateConfig,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    /// Name patterns of personal-looking columns (`check --coverage`).
    pub coverage: Vec<PersonalPattern>,
    pub requests: RequestsConfig,
}

/// A column-name pattern for `check --coverage`: `words[:kind]`, where
/// `words` are lowercase letters and digits joined by `_` and `kind` is
/// `text`, `number`, `time` or `any` (the default). It matches a column
/// whose name, split into words (at `_`, other punctuation and camelCase
/// humps), contains those words in a row, or whose name without separators
/// equals them without separators (`firstname` ~ `first_name`); boolean
/// columns never match (`email_verified`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalPattern {
    pub text: String,
    pub words: Vec<String>,
    pub kind: PatternKind,
}

/// The column type a [`PersonalPattern`] requires (`:text`, `:number`, `:time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    Any,
    Text,
    Number,
    Time,
}

impl PersonalPattern {
    /// A pattern as `[coverage]` writes it (`name:text`).
    pub fn parse(text: &str) -> Result<PersonalPattern, PatternError> {
        let (words, kind) = match text.split_once(':') {
            Some((w, k)) => (w, k),
            None => (text, "any"),
        };
        let kind = match kind {
            "any" => PatternKind::Any,
            "text" => PatternKind::Text,
            "number" => PatternKind::Number,
            "time" => PatternKind::Time,
            other => {
                return Err(PatternError::UnknownKind {
                    text: text.to_string(),
                    kind: other.to_string(),
                });
            }
        };
        let words: Vec<String> = words.split('_').map(str::to_string).collect();
        if words.iter().any(|w| {
            w.is_empty()
                || !w
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }) {
            return Err(PatternError::NotAPattern(text.to_string()));
        }
        Ok(PersonalPattern {
            text: text.to_string(),
            words,
            kind,
        })
    }
}

/// Why a `[coverage]` pattern was refused; the text is the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The part after `:` is not a column kind.
    #[error("`{text}`: kind `{kind}` is not text, number, time or any")]
    UnknownKind { text: String, kind: String },
    /// The words are not lowercase words joined by `_`.
    #[error(
        "`{0}` is not a pattern: lowercase words joined by `_`, optionally `:text`, `:number`, `:time` or `:any`"
    )]
    NotAPattern(String),
}

/// The built-in personal-column patterns (policy I(1)2 and the data the
/// policy names): contact details, names, addresses, identity documents,
/// birthdays, network and device identifiers, location, bank details.
pub const DEFAULT_PERSONAL_PATTERNS: &[&str] = &[
    "phone",
    "mobile",
    "telephone",
    "tel:text",
    "fax",
    "email",
    "e_mail",
    "name:text",
    "surname:text",
    "nickname:text",
    "address",
    "street",
    "postal_code",
    "postcode",
    "zip_code",
    "id_card",
    "idcard",
    "identity",
    "id_number",
    "passport",
    "national_id",
    "ssn",
    "birthday",
    "birth",
    "dob",
    "ip",
    "imei",
    "oaid",
    "android_id",
    "idfa",
    "device_id",
    "mac_address",
    "latitude",
    "longitude",
    "lat:number",
    "lng:number",
    "lon:number",
    "bank_account",
    "iban",
    "card_number",
    "account_number",
];

/// `[requests]`: due instants and intake of erasure requests.
#[derive(Debug, Clone)]
pub struct RequestsConfig {
    /// Calendar, N working days and time zone.
    pub deadlines: crate::calendar::Deadlines,
    /// The calendar file, when one is configured.
    pub calendar_file: Option<PathBuf>,
    /// The table an application writes requests into.
    pub intake: Option<TableRef>,
}

/// Defaults for `[requests]`.
pub const DEFAULT_DEADLINE_WORKING_DAYS: u32 = 15;
/// The zone a request's day of receipt is read in (policy VII(7) is Chinese law).
pub const DEFAULT_REQUESTS_TIME_ZONE: &str = "Asia/Shanghai";

/// `[metrics]`: where a run's figures go besides the audit log.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    pub textfile: Option<PathBuf>,
    pub pushgateway: Option<String>,
}

/// `[daemon]`: what `lethe daemon` needs beyond the jobs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The zone job schedules are read in, parsed once by validation.
    pub time_zone: chrono_tz::Tz,
    pub health_addr: std::net::SocketAddr,
}

/// Defaults for `[daemon]`.
pub const DEFAULT_TIME_ZONE: &str = "UTC";
/// Loopback only: probes and scrapes come from the same host or pod.
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:9464";

/// A database rules act on (`[sources.<name>]`).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    /// The URL after `${VAR}` expansion. May hold a secret: never print it.
    pub url: String,
    pub region: Option<String>,
    pub max_connections: u32,
    pub batch_pause: Duration,
    /// How long Lethe keeps reconnecting to this source after its
    /// connection is lost (a failover, a restart) before the rule fails.
    pub reconnect_for: Duration,
    /// What Lethe does about the dead space its deletes leave behind.
    pub after_purge: AfterPurge,
    /// When the batch loop waits for the database (`pause_when`).
    pub pause_when: Option<super::throttle::PauseWhen>,
}

/// `after_purge` on a source: deleted rows stay readable in pages (and in
/// PostgreSQL until VACUUM) — personal data with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterPurge {
    /// Nothing beyond the deletes (the default).
    #[default]
    None,
    /// PostgreSQL: `VACUUM` of the touched tables after the rule; SQLite:
    /// `secure_delete` on Lethe's connections plus an incremental vacuum;
    /// MariaDB: reported as not reclaimable online.
    Vacuum,
}

/// Default `reconnect_for`: a failover takes seconds; a nightly job can wait.
pub const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(30);

impl Source {
    /// The URL with any password replaced, safe for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Replace the password in `scheme://user:password@host/...` and in a
/// `password=` query parameter. A URL without a password is shown as it is:
/// `user:***@` for one that has none would send a reader looking for it.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = base.to_string();
    if let Some((scheme, rest)) = base.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            out = format!("{scheme}://{user}:***@{host}{path}");
        }
    }
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_nothing_else_is_invented() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/app"),
            "mysql://root@127.0.0.1:3306/app"
        );
        assert_eq!(
            redact_url("postgres://db/app?user=app&password=s3cret&sslmode=disable"),
            "postgres://db/app?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("sqlite://var/app.db?mode=rwc"),
            "sqlite://var/app.db?mode=rwc"
        );
    }
}

/// An object store (`[stores.<name>]`).
#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    pub kind: StoreKind,
    pub region: Option<String>,
    /// Requests in flight at once (default [`DEFAULT_STORE_CONCURRENCY`]).
    pub concurrency: usize,
    /// S3 attempts per request, retries included (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    pub origin: Origin,
}

/// What a store is, with the settings only that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    S3 {
        bucket: String,
        /// After `${VAR}` expansion; `None`: the SDK's endpoint for the region.
        endpoint: Option<String>,
        path_style: bool,
    },
    Fs {
        path: PathBuf,
    },
}

impl Store {
    /// `s3://bucket` or `fs:path`, for messages (no secrets in either).
    pub fn display(&self) -> String {
        match &self.kind {
            StoreKind::S3 { bucket, .. } => format!("s3://{bucket}"),
            StoreKind::Fs { path } => format!("fs:{}", path.display()),
        }
    }
}

/// Default requests in flight per store.
pub const DEFAULT_STORE_CONCURRENCY: usize = 4;
/// Largest accepted `concurrency`.
pub const MAX_STORE_CONCURRENCY: usize = 64;
/// Default S3 attempts per request (the first try and its retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default objects per audited batch of an object rule.
pub const DEFAULT_OBJECT_BATCH_SIZE: usize = 4_000;

/// `[audit]`: the log every run writes, and the keys behind its subject hashes.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub hmac_key_env: String,
    /// Variables holding retired keys; `audit search` tries each, by key id.
    pub previous_key_envs: Vec<String>,
    pub region: Option<String>,
    /// The S3 copy of every run's log, when configured.
    pub s3: Option<AuditS3>,
}

/// The S3 copy of every run's audit log (`[audit] s3_store`).
#[derive(Debug, Clone)]
pub struct AuditS3 {
    /// A store of kind "s3".
    pub store: String,
    pub prefix: String,
    /// Object Lock retention (GOVERNANCE) applied when the bucket has Object Lock.
    pub retention: Period,
}

/// Where leases and run history live when the config says nothing.
pub const DEFAULT_STATE_URL: &str = "sqlite://var/state.db?mode=rwc";

/// `[state]`: where leases and run history live.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub url: String,
    pub lease_ttl: Duration,
}

/// A `jobs/*.toml` file, validated: one policy obligation, its rules, when it runs.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub policy: String,
    pub schedule: Option<CronSchedule>,
    pub description: Option<String>,
    pub priority: i32,
    pub manual: bool,
    /// How the job picks its rows: by age, or by the open requests' subjects.
    pub trigger: Trigger,
    /// Runs only with `--confirm <name>` (the business-suspension job).
    pub confirm: bool,
    /// SQL rules, in file order.
    pub rules: Vec<Rule>,
    /// Object rules (`store = ...`), in file order; they run after the SQL rules.
    pub object_rules: Vec<ObjectRule>,
    pub file: PathBuf,
}

/// A job's `schedule`: the expression as the file wrote it (what messages
/// show) and parsed (what the daemon fires on), so it is parsed once, by
/// validation. It reads as its text wherever a `&str` is wanted.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub text: String,
    pub cron: croner::Cron,
}

impl std::ops::Deref for CronSchedule {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// What makes a job act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Rows selected by their rules (`select`, `where`): age, flags.
    Age,
    /// Rows of the subjects of open erasure requests, one subject at a time.
    Request,
}

/// Where a rule came from, for messages that send the reader to the file.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// `source.table` or `source.schema.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub source: String,
    /// PostgreSQL schema; `None` means the connection's default.
    pub schema: Option<String>,
    pub table: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{}.{}.{}", self.source, s, self.table),
            None => write!(f, "{}.{}", self.source, self.table),
        }
    }
}

/// `hold = "<source>.<table>.<column>"`: the subjects a rule must not act on.
#[derive(Debug, Clone)]
pub struct HoldRef {
    pub table: TableRef,
    pub column: String,
}

/// How a time column stores its instants, for comparing with the cutoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Native date/time type, or text in SQLite's `YYYY-MM-DD HH:MM:SS` (the default).
    Native,
    /// Text in RFC 3339 with `Z`: `YYYY-MM-DDTHH:MM:SSZ`.
    Rfc3339,
    /// Integer seconds since the Unix epoch.
    Unix,
    /// Integer milliseconds since the Unix epoch.
    UnixMs,
    /// Text `YYYY-MM-DD`.
    Date,
}

/// `select = { column, older_than | newer_than, format }`: rows by age.
#[derive(Debug, Clone)]
pub struct Select {
    pub column: String,
    pub period: Period,
    /// `older_than` (true) selects values before the cutoff; `newer_than` after it.
    pub older: bool,
    pub format: TimeFormat,
}

/// Strategies live with the rest of anonymization; the model names them.
pub use crate::anonymize::strategy::Strategy;

/// What a rule or child does to its rows.
#[derive(Debug, Clone)]
pub enum Action {
    Delete,
    /// Column → strategy, in column-name order.
    Anonymize(Vec<(String, Strategy)>),
}

impl Action {
    /// The name reports and the audit log use.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Anonymize(_) => "anonymize",
        }
    }

    /// Whether Lethe must compute keyed hashes itself (the engine cannot).
    pub fn hashes(&self) -> bool {
        matches!(self, Action::Anonymize(cols) if cols.iter().any(|(_, s)| *s == Strategy::Hash))
    }
}

/// A SQL rule (`target = ...`), validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub target: TableRef,
    pub key: String,
    pub subject: Option<String>,
    pub select: Option<Select>,
    pub where_: Option<String>,
    /// A request job's rule: it acts only on the subjects the engine names
    /// (`RuleSql::subjects`), never on the whole table.
    pub by_request: bool,
    pub hold: Option<HoldRef>,
    pub action: Action,
    pub batch_size: usize,
    /// `walk = "select" | "key"`: the walk the rule insists on; `None`
    /// lets Lethe choose from the live indexes (see `sql::statements::Walk`).
    pub walk: Option<Walk>,
    /// `batch_time` (or `batch_size = "auto"`): each batch sized so its
    /// transaction lasts about this long; `batch_size` is then the first
    /// batch's size and `batch_size_max` the ceiling.
    pub batch_time: Option<Duration>,
    /// Ceiling of a time-sized batch.
    pub batch_size_max: usize,
    /// Workers that delete disjoint ranges of the select column side by
    /// side, each with its own connection and its own short transactions.
    /// Only a plain delete (no children, no objects) on PostgreSQL or
    /// MariaDB uses more than one; 1 (the default) is one batch at a time.
    pub concurrency: usize,
    /// What happens to a partition whose whole range is past the cutoff.
    pub partitions: Partitions,
    pub max_rows: Option<u64>,
    pub max_fraction: Option<f64>,
    pub children: Vec<Child>,
    /// Objects each row names, erased with the row.
    pub objects: Vec<ObjectLink>,
    pub origin: Origin,
}

/// The order a rule's batches walk its table in. Each batch continues
/// where the last ended with a lower bound on the walked index, so the
/// table is passed once in total, never re-scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Walk {
    /// The select column's index, oldest first (then the key).
    Select,
    /// The key's index, filtering on the cutoff: for a select column no
    /// index leads with, where an ordered batch would sort the table.
    Key,
    /// PostgreSQL's heap in page order (`ctid` ranges, a TID Range Scan),
    /// filtering on the cutoff: a one-statement delete whose select column
    /// no index leads with reads each page once, as a sequential scan
    /// would, instead of fetching row by row through the key's index.
    Heap,
}

impl Walk {
    /// The name `walk =` takes and plans print.
    pub fn name(self) -> &'static str {
        match self {
            Walk::Select => "select",
            Walk::Key => "key",
            Walk::Heap => "heap",
        }
    }
}

/// `partitions = "batch" | "drop"` on a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitions {
    /// Every row is deleted in batches, partitioned or not (the default).
    #[default]
    Batch,
    /// A PostgreSQL or MariaDB range partition whose whole range is past the
    /// cutoff is dropped (after its keys' digest and subjects are recorded)
    /// instead of deleted row by row; partitions that straddle the cutoff
    /// are batched. Only a plain age-based delete can: children, objects, a
    /// `where` or `newer_than` would make "the whole range is due" untrue.
    Drop,
}

/// `[[rules.children]]`: rows that go with their parent's, by foreign key.
#[derive(Debug, Clone)]
pub struct Child {
    pub target: TableRef,
    pub foreign_key: String,
    pub key: Option<String>,
    pub action: Action,
    pub children: Vec<Child>,
    pub objects: Vec<ObjectLink>,
    pub origin: Origin,
}

/// A rule over a store's objects: prefix, age and tags, all of which must match.
#[derive(Debug, Clone)]
pub struct ObjectRule {
    pub name: String,
    pub store: String,
    pub prefix: String,
    /// Objects last modified before `as_of - older_than`.
    pub older_than: Option<Period>,
    /// Every tag must be present with this value.
    pub tags: BTreeMap<String, String>,
    /// Objects per audited batch.
    pub batch_size: usize,
    pub max_rows: Option<u64>,
    pub max_fraction: Option<f64>,
    pub origin: Origin,
}

impl ObjectRule {
    /// `store:prefix`, the rule's target in reports and the audit log.
    pub fn target(&self) -> String {
        format!("{}:{}", self.store, self.prefix)
    }
}

/// `[[rules.objects]]`: how a row names its objects.
#[derive(Debug, Clone)]
pub struct ObjectLink {
    pub store: String,
    pub names: ObjectNames,
    pub origin: Origin,
}

/// How a row names its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectNames {
    /// Every key under the rendered prefix.
    Prefix(Template),
    /// The one key held in this column.
    KeyColumn(String),
}

impl ObjectLink {
    /// The columns a row must provide to name its objects.
    pub fn columns(&self) -> Vec<&str> {
        match &self.names {
            ObjectNames::Prefix(t) => t.columns(),
            ObjectNames::KeyColumn(c) => vec![c.as_str()],
        }
    }

    /// `media:avatars/{id}/` or `media:[id_card_front_key]`, for reports.
    pub fn describe(&self) -> String {
        match &self.names {
            ObjectNames::Prefix(t) => format!("{}:{}", self.store, t.text),
            ObjectNames::KeyColumn(c) => format!("{}:[{c}]", self.store),
        }
    }
}

/// A key prefix with `{column}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pub parts: Vec<TemplatePart>,
}

/// A piece of a [`Template`]: literal text or a `{column}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Column(String),
}

/// Why a prefix template was refused; the text is the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` with no `}` after it.
    #[error("`{0}`: `{{` without a closing `}}`")]
    Unclosed(String),
    /// `{...}` holding something other than a column name.
    #[error("`{text}`: `{{{column}}}` is not a column name (letters, digits, `_`)")]
    NotAColumn { text: String, column: String },
    /// A `}` with no `{` before it.
    #[error("`{0}`: `}}` without an opening `{{`")]
    Unopened(String),
}

/// Why a row's value cannot name an object (the value itself is never shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("column `{0}` is empty; an empty value would widen the prefix")]
    Empty(String),
    #[error("column `{0}` holds `/`, `.` or `..`; the value would reach outside its prefix")]
    Unsafe(String),
}

impl Template {
    /// A template as a job writes it (`avatars/{id}/`).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(text.to_string()))?;
            let col = &after[..close];
            if col.is_empty()
                || !col.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || col.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(TemplateError::NotAColumn {
                    text: text.to_string(),
                    column: col.to_string(),
                });
            }
            parts.push(TemplatePart::Column(col.to_string()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::Unopened(text.to_string()));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The columns the template names, each once, in order.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let TemplatePart::Column(c) = p
                && !out.contains(&c.as_str())
            {
                out.push(c);
            }
        }
        out
    }

    /// The prefix for one row. `Ok(None)`: a column is NULL, so the row names no object.
    pub fn render(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, RenderError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Column(c) => {
                    let Some(v) = value(c) else {
                        return Ok(None);
                    };
                    if v.is_empty() {
                        return Err(RenderError::Empty(c.clone()));
                    }
                    if v.contains('/') || v == "." || v == ".." {
                        return Err(RenderError::Unsafe(c.clone()));
                    }
                    out.push_str(&v);
                }
            }
        }
        Ok(Some(out))
    }
}

/// Default rows per batch: short transactions, few round trips.
pub const DEFAULT_BATCH_SIZE: usize = 2_000;
/// Largest accepted batch (keeps IN-lists under every engine's bind limit).
pub const MAX_BATCH_SIZE: usize = 20_000;
/// First batch of a time-sized rule without `batch_size`.
pub const DEFAULT_AUTO_FIRST_BATCH: usize = 1_000;
/// Default `batch_time` for `batch_size = "auto"`.
pub const DEFAULT_BATCH_TIME: Duration = Duration::from_millis(50);
/// Largest accepted rule `concurrency` (each worker holds a connection).
pub const MAX_RULE_CONCURRENCY: usize = 16;

#[cfg(test)]
mod error_text_tests {
    use super::{PersonalPattern, Template};
    use crate::config::period::Period;

    #[test]
    fn typed_errors_keep_the_diagnostic_texts() {
        let t = |s: &str| Template::parse(s).unwrap_err().to_string();
        assert_eq!(t("a{b"), "`a{b`: `{` without a closing `}`");
        assert_eq!(
            t("a{1x}/"),
            "`a{1x}/`: `{1x}` is not a column name (letters, digits, `_`)"
        );
        assert_eq!(t("a}"), "`a}`: `}` without an opening `{`");
        let p = |s: &str| PersonalPattern::parse(s).unwrap_err().to_string();
        assert_eq!(
            p("a:blob"),
            "`a:blob`: kind `blob` is not text, number, time or any"
        );
        assert!(p("A").starts_with("`A` is not a pattern: lowercase words joined by `_`"));
        let d = |s: &str| s.parse::<Period>().unwrap_err().to_string();
        assert_eq!(
            d("15"),
            "`15` has no unit (use s, m, h, d, w, mo or y, e.g. `15d`)"
        );
        assert_eq!(d("d"), "`d` does not start with a number (e.g. `15d`)");
        assert_eq!(d("99999999999d"), "`99999999999` is too large for a period");
        assert_eq!(d("5ms"), "`5ms`: milliseconds are not a retention unit");
        assert_eq!(
            d("5 days"),
            "unknown unit ` days` in `5 days` (use s, m, h, d, w, mo or y)"
        );
        assert_eq!(
            crate::config::validate::parse_pause_text("xms")
                .unwrap_err()
                .to_string(),
            "`xms` is not a pause (e.g. `50ms`, `1s`)"
        );
    }
}
