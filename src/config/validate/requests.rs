//! `[requests]`: how erasure requests' due instants are computed (the
//! calendar file, N working days, the zone) and where they come in.
//!
//! The calendar file is read here, and its problems are reported with its
//! own file, line and column, so a broken calendar fails `validate` like any
//! other file rather than the first request's deadline.

use super::Ctx;
use super::names::{is_identifier, split_table};
use crate::calendar::{Calendar, Deadlines};
use crate::config::calendar::load_calendar;
use crate::config::cron::parse_tz;
use crate::config::model::{
    DEFAULT_DEADLINE_WORKING_DAYS, DEFAULT_REQUESTS_TIME_ZONE, RequestsConfig, Source, TableRef,
};
use crate::config::raw::RawRequests;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The requests settings; the defaults for whatever is not set.
pub(super) fn requests(
    cx: &mut Ctx,
    raw: Option<&RawRequests>,
    sources: &BTreeMap<String, Source>,
) -> RequestsConfig {
    let working_days = match raw.and_then(|r| r.deadline_working_days.as_ref()) {
        None => DEFAULT_DEADLINE_WORKING_DAYS,
        Some(n) if (1..=366).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            cx.err(n, "deadline_working_days must be between 1 and 366");
            DEFAULT_DEADLINE_WORKING_DAYS
        }
    };
    let default_tz = || parse_tz(DEFAULT_REQUESTS_TIME_ZONE).expect("valid default zone");
    let tz = match raw.and_then(|r| r.time_zone.as_ref()) {
        None => default_tz(),
        Some(t) => parse_tz(t.get_ref()).unwrap_or_else(|e| {
            cx.err(t, e);
            default_tz()
        }),
    };
    let (calendar, calendar_file) = match raw.and_then(|r| r.calendar.as_ref()) {
        None => (Calendar::default(), None),
        Some(c) => {
            let (calendar, path) = calendar(cx, c);
            (calendar, Some(path))
        }
    };
    let intake = raw
        .and_then(|r| r.intake.as_ref())
        .and_then(|i| intake(cx, i, sources));
    RequestsConfig {
        deadlines: Deadlines {
            calendar,
            working_days,
            tz,
        },
        calendar_file,
        intake,
    }
}

/// The calendar file named by `calendar` (relative to the config's folder)
/// and its path; an empty calendar after reporting a problem.
fn calendar(cx: &mut Ctx, c: &Spanned<String>) -> (Calendar, PathBuf) {
    let base = cx.file.path.parent().unwrap_or(Path::new(""));
    let path = base.join(c.get_ref());
    if !path.is_file() {
        cx.err(
            c,
            format!(
                "calendar {} does not exist (the path is relative to this file's folder)",
                path.display()
            ),
        );
        return (Calendar::default(), path);
    }
    match load_calendar(&path) {
        Ok(cal) => (cal, path),
        Err(problems) => {
            cx.errors.extend(problems);
            (Calendar::default(), path)
        }
    }
}

/// `intake = "<source>.<table>"` (or `<source>.<schema>.<table>`).
fn intake(
    cx: &mut Ctx,
    i: &Spanned<String>,
    sources: &BTreeMap<String, Source>,
) -> Option<TableRef> {
    let Some((source, schema, table)) = split_table(i.get_ref()) else {
        cx.err(i, "intake must be `<source>.<table>`");
        return None;
    };
    if !sources.contains_key(source) {
        cx.err(
            i,
            format!("intake names source `{source}`, which [sources] does not define"),
        );
        return None;
    }
    if !schema
        .iter()
        .chain(std::iter::once(&table))
        .all(|p| is_identifier(p))
    {
        cx.err(i, "intake: table names are letters, digits and `_`");
        return None;
    }
    Some(TableRef {
        source: source.into(),
        schema: schema.map(str::to_string),
        table: table.into(),
    })
}
