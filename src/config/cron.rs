//! Cron expressions and time zones, as job files and `[daemon]` /
//! `[requests]` write them.
//!
//! Parsed here, once, during validation: the model then carries the parsed
//! values ([`super::CronSchedule`], a [`Tz`]) so the daemon never parses a
//! schedule again. This module depends on nothing else in the crate, so
//! `config` needs nothing from `schedule` (which re-exports these).

use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Why a schedule or a zone was refused; the text is the diagnostic.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// Not a 6-field cron expression (seconds first) croner accepts.
    #[error("invalid schedule `{expr}`: {source}")]
    Cron {
        expr: String,
        source: croner::errors::CronError,
    },
    /// Not an IANA zone name.
    #[error("unknown time zone `{0}` (use an IANA name such as Asia/Shanghai)")]
    Zone(String),
}

impl TimeError {
    /// Whether the message is empty. It never is: every refusal says what
    /// and why, which the fuzz targets assert through this method.
    pub fn is_empty(&self) -> bool {
        self.to_string().is_empty()
    }
}

/// Parse a 6-field cron expression (seconds first). Day-of-month and
/// day-of-week are ORed when both are restricted, as in Vixie cron and
/// Kubernetes CronJobs.
pub fn parse_cron(expr: &str) -> Result<Cron, TimeError> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(expr)
        .map_err(|source| TimeError::Cron {
            expr: expr.to_string(),
            source,
        })
}

/// An IANA time zone name (`Asia/Shanghai`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz, TimeError> {
    name.parse::<Tz>()
        .map_err(|_| TimeError::Zone(name.to_string()))
}
