//! How much a rule does per transaction and in total: `batch_size`
//! (a number or `"auto"`), `batch_time`, `batch_size_max`, and the guards
//! `max_rows` / `max_fraction` that stop a run deleting far more than expected.
//! Also the pause and timer lengths (`50ms`, `1s`) sources and rules share.

use super::Ctx;
use crate::config::model::{
    DEFAULT_AUTO_FIRST_BATCH, DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TIME, MAX_BATCH_SIZE,
};
use crate::config::period::{Period, PeriodError};
use crate::config::raw::{RawBatchSize, RawRule};
use std::time::Duration;
use toml::Spanned;

/// `max_rows` and `max_fraction` of a SQL or object rule.
pub(super) fn guards(cx: &mut Ctx, r: &RawRule) -> (Option<u64>, Option<f64>) {
    let max_rows = r.max_rows.as_ref().and_then(|m| {
        if *m.get_ref() < 0 {
            cx.err(m, "max_rows cannot be negative");
            None
        } else {
            Some(*m.get_ref() as u64)
        }
    });
    let max_fraction = r.max_fraction.as_ref().and_then(|m| {
        let v = *m.get_ref();
        if !(v > 0.0 && v <= 1.0) {
            cx.err(m, "max_fraction must be greater than 0 and at most 1");
            None
        } else {
            Some(v)
        }
    });
    (max_rows, max_fraction)
}

/// `batch_size` (a number or `"auto"`), `batch_time` and `batch_size_max`
/// of a SQL rule: (first or fixed size, target duration, ceiling).
pub(super) fn batch_sizing(cx: &mut Ctx, r: &RawRule) -> (usize, Option<Duration>, usize) {
    let (size, auto) = batch_size(cx, r.batch_size.as_ref());
    let time = match &r.batch_time {
        None if auto => Some(DEFAULT_BATCH_TIME),
        None => None,
        Some(t) => {
            let d = parse_pause(cx, t);
            if d.is_zero() || d > Duration::from_secs(60) {
                cx.err(t, "batch_time must be between 1ms and 60s (e.g. \"50ms\")");
                None
            } else {
                Some(d)
            }
        }
    };
    let max = match &r.batch_size_max {
        None => MAX_BATCH_SIZE,
        Some(m) => {
            let v = *m.get_ref();
            if time.is_none() {
                cx.err(m, "batch_size_max bounds a batch sized by time: set batch_time (or batch_size = \"auto\") too");
            }
            if v < 1 || v as usize > MAX_BATCH_SIZE {
                cx.err(
                    m,
                    format!("batch_size_max must be between 1 and {MAX_BATCH_SIZE}"),
                );
                MAX_BATCH_SIZE
            } else {
                v as usize
            }
        }
    };
    let first = match (size, time) {
        (Some(n), _) => n,
        (None, Some(_)) => DEFAULT_AUTO_FIRST_BATCH.min(max),
        (None, None) => DEFAULT_BATCH_SIZE,
    };
    if time.is_some()
        && first > max
        && let Some(m) = &r.batch_size_max
    {
        cx.err(
            m,
            format!("batch_size_max ({max}) is below batch_size ({first})"),
        );
    }
    (first, time, max)
}

/// A SQL rule's `batch_size`: (a fixed number of rows, `"auto"`).
fn batch_size(cx: &mut Ctx, b: Option<&Spanned<RawBatchSize>>) -> (Option<usize>, bool) {
    let Some(b) = b else {
        return (None, false);
    };
    match b.get_ref() {
        RawBatchSize::Rows(v) if *v >= 1 && *v as usize <= MAX_BATCH_SIZE => {
            return (Some(*v as usize), false);
        }
        RawBatchSize::Rows(_) => cx.err(
            b,
            format!("batch_size must be between 1 and {MAX_BATCH_SIZE}, or \"auto\""),
        ),
        RawBatchSize::Word(w) if w == "auto" => return (None, true),
        RawBatchSize::Word(w) => cx.err(
            b,
            format!(
                "batch_size: invalid type: string `{w}`, expected a number of rows or \"auto\""
            ),
        ),
    }
    (None, false)
}

/// A pause or timer at `p`; zero after reporting a problem.
pub(super) fn parse_pause(cx: &mut Ctx, p: &Spanned<String>) -> Duration {
    parse_pause_text(p.get_ref()).unwrap_or_else(|e| {
        cx.err(p, e);
        Duration::ZERO
    })
}

/// Why a pause or timer length was refused; the text is the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    /// `<n>ms` whose `n` is not a whole number.
    #[error("`{0}` is not a pause (e.g. `50ms`, `1s`)")]
    Millis(String),
    /// Not a [`Period`] either.
    #[error(transparent)]
    Period(#[from] PeriodError),
}

impl PauseError {
    /// Whether the message is empty. It never is; the fuzz targets assert
    /// that through this method.
    pub fn is_empty(&self) -> bool {
        self.to_string().is_empty()
    }
}

/// A pause or timer length: `50ms`, or any [`Period`] (`1s`, `2m`).
pub fn parse_pause_text(s: &str) -> Result<Duration, PauseError> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| PauseError::Millis(s.to_string()));
    }
    Ok(s.parse::<Period>()?.as_std())
}
