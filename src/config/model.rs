//! The validated, typed configuration the engine trusts.
//!
//! Nothing here can be malformed: every value was checked by `validate`, so
//! the engine never re-checks syntax, only the live schema.

use super::period::Period;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub allowed_regions: Vec<String>,
    pub sources: BTreeMap<String, Source>,
    pub audit: AuditConfig,
    pub state: StateConfig,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    pub textfile: Option<PathBuf>,
    pub pushgateway: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub time_zone: String,
    pub health_addr: std::net::SocketAddr,
}

/// Defaults for `[daemon]`.
pub const DEFAULT_TIME_ZONE: &str = "UTC";
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:9464";

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    /// The URL after `${VAR}` expansion. May hold a secret: never print it.
    pub url: String,
    pub region: Option<String>,
    pub max_connections: u32,
    pub batch_pause: Duration,
}

impl Source {
    /// The URL with any password replaced, safe for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Replace the password in `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}:***@{host}{path}");
        }
    }
    url.to_string()
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub hmac_key_env: String,
    /// Variables holding retired keys; `audit search` tries each, by key id.
    pub previous_key_envs: Vec<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub url: String,
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub policy: String,
    pub schedule: Option<String>,
    pub description: Option<String>,
    pub priority: i32,
    pub manual: bool,
    pub rules: Vec<Rule>,
    pub file: PathBuf,
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

#[derive(Debug, Clone)]
pub struct Select {
    pub column: String,
    pub period: Period,
    /// `older_than` (true) selects values before the cutoff; `newer_than` after it.
    pub older: bool,
    pub format: TimeFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Set to NULL.
    Null,
    /// Replace with a fixed value.
    Fixed(String),
    /// Replace with the text `[REDACTED]`.
    Redact,
    /// Keyed hash (HMAC-SHA-256, hex): deterministic, so pseudonymized rows still join.
    Hash,
    /// Keep the last N characters, star the rest.
    Mask(usize),
    /// Keep only the year of a date (`YYYY-01-01`).
    Year,
    /// Keep only the year and month of a date (`YYYY-MM-01`).
    Month,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Null => write!(f, "null"),
            Strategy::Fixed(_) => write!(f, "fixed"),
            Strategy::Redact => write!(f, "redact"),
            Strategy::Hash => write!(f, "hash"),
            Strategy::Mask(n) => write!(f, "mask:{n}"),
            Strategy::Year => write!(f, "year"),
            Strategy::Month => write!(f, "month"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Delete,
    /// Column → strategy, in column-name order.
    Anonymize(Vec<(String, Strategy)>),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Anonymize(_) => "anonymize",
        }
    }

    pub fn hashes(&self) -> bool {
        matches!(self, Action::Anonymize(cols) if cols.iter().any(|(_, s)| *s == Strategy::Hash))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub target: TableRef,
    pub key: String,
    pub subject: Option<String>,
    pub select: Option<Select>,
    pub where_: Option<String>,
    pub hold: Option<HoldRef>,
    pub action: Action,
    pub batch_size: usize,
    pub max_rows: Option<u64>,
    pub max_fraction: Option<f64>,
    pub children: Vec<Child>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Child {
    pub target: TableRef,
    pub foreign_key: String,
    pub key: Option<String>,
    pub action: Action,
    pub children: Vec<Child>,
    pub origin: Origin,
}

/// Default rows per batch: short transactions, few round trips.
pub const DEFAULT_BATCH_SIZE: usize = 2_000;
/// Largest accepted batch (keeps IN-lists under every engine's bind limit).
pub const MAX_BATCH_SIZE: usize = 20_000;
