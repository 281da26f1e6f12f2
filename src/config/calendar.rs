//! The calendar file (`[requests] calendar`): holidays and make-up workdays
//! as TOML, read into a [`Calendar`] with every problem reported at its
//! file, line and column, like any other configuration file.

use super::diagnostic::{Diagnostic, SourceFile, from_toml_error};
use crate::calendar::{Calendar, is_weekend};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use toml::Spanned;

/// `holidays` and `workdays` as the file writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    workdays: Vec<Spanned<String>>,
}

/// Parse a calendar file's text, collecting every problem.
pub fn parse_calendar(file: &SourceFile) -> Result<Calendar, Vec<Diagnostic>> {
    let raw: RawCalendar =
        toml::from_str(&file.text).map_err(|e| vec![from_toml_error(file, &e)])?;
    let mut errors = Vec::new();
    let date = |s: &Spanned<String>, errors: &mut Vec<Diagnostic>| match NaiveDate::parse_from_str(
        s.get_ref(),
        "%Y-%m-%d",
    ) {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(file.at(
                s.span(),
                format!("`{}` is not a date written YYYY-MM-DD", s.get_ref()),
            ));
            None
        }
    };
    let mut holidays = BTreeSet::new();
    for h in &raw.holidays {
        if let Some(d) = date(h, &mut errors)
            && !holidays.insert(d)
        {
            errors.push(file.at(h.span(), format!("holiday {d} is listed twice")));
        }
    }
    let mut workdays = BTreeSet::new();
    for w in &raw.workdays {
        let Some(d) = date(w, &mut errors) else {
            continue;
        };
        if !is_weekend(d) {
            errors.push(file.at(
                w.span(),
                format!(
                    "workday {d} is a {:?}: `workdays` lists weekend days made working days",
                    d.weekday()
                ),
            ));
        } else if holidays.contains(&d) {
            errors.push(file.at(
                w.span(),
                format!("{d} is listed as a holiday and a workday"),
            ));
        } else if !workdays.insert(d) {
            errors.push(file.at(w.span(), format!("workday {d} is listed twice")));
        }
    }
    if errors.is_empty() {
        Ok(Calendar::new(holidays, workdays))
    } else {
        Err(errors)
    }
}

/// Read and parse a calendar file.
pub fn load_calendar(path: &Path) -> Result<Calendar, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the calendar: {e}"),
        }]
    })?;
    parse_calendar(&SourceFile::new(path, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_errors_name_line_and_column() {
        let f = SourceFile::new(
            Path::new("cal.toml"),
            "holidays = [\"2026-10-03\", \"2026-13-01\"]\nworkdays = [\"2026-10-05\", \"2026-10-03\"]\n"
                .into(),
        );
        let errs = parse_calendar(&f).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("cal.toml:1:27: `2026-13-01`"),
            "{text:?}"
        );
        // 5 October 2026 is a Monday; 3 October a Saturday listed as a holiday.
        assert!(
            text[1].starts_with("cal.toml:2:13: workday 2026-10-05 is a Mon"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("cal.toml:2:27: 2026-10-03 is listed as a holiday and a workday"),
            "{text:?}"
        );
        let unknown = SourceFile::new(Path::new("cal.toml"), "holiday = []\n".into());
        assert!(
            parse_calendar(&unknown).unwrap_err()[0]
                .to_string()
                .starts_with("cal.toml:1:1")
        );
    }
}
