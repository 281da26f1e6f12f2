//! The working-day calendar behind a request's due instant (policy VII(7)).
//!
//! Owns: which dates are working days (Monday–Friday, minus announced
//! holidays, plus weekend days announced as make-up workdays), the due instant
//! (the end, 23:59:59 local, of the N-th working day after the day of
//! receipt) and working days counted between two instants.
//!
//! It must never guess a year it was not told about: a date past the last
//! year the file covers is counted Monday–Friday, and `covers` lets `check`
//! say so. It depends on nothing else in the crate: the calendar file is read
//! by `config::calendar` (which reports its problems with file, line and
//! column), and both `config` and `requests` build on these types.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// Holidays and make-up workdays; every other day works Monday to Friday.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// Saturday or Sunday: a day off unless announced as a make-up workday.
pub fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

impl Calendar {
    /// A calendar from lists of dates (tests, and the file parser in `config::calendar`).
    pub fn new(
        holidays: impl IntoIterator<Item = NaiveDate>,
        workdays: impl IntoIterator<Item = NaiveDate>,
    ) -> Calendar {
        Calendar {
            holidays: holidays.into_iter().collect(),
            workdays: workdays.into_iter().collect(),
        }
    }

    /// Monday–Friday unless a holiday, or a weekend day announced as a workday.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        !is_weekend(d) && !self.holidays.contains(&d)
    }

    /// The last year any listed date falls in; `None` for an empty calendar.
    pub fn last_year(&self) -> Option<i32> {
        let h = self.holidays.last().map(|d| d.year());
        let w = self.workdays.last().map(|d| d.year());
        h.max(w)
    }

    /// Whether the file announced anything for `year` (the State Council
    /// publishes one notice a year; a year without one is only guessed).
    pub fn covers(&self, year: i32) -> bool {
        self.holidays
            .iter()
            .chain(self.workdays.iter())
            .any(|d| d.year() == year)
    }

    /// The `n`-th working day strictly after `day`.
    pub fn nth_working_day_after(&self, day: NaiveDate, n: u32) -> NaiveDate {
        let mut d = day;
        let mut left = n;
        while left > 0 {
            d += Duration::days(1);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// Working days in `(from, to]`; 0 when `to <= from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d += Duration::days(1);
            if self.is_working_day(d) {
                n += 1;
            }
        }
        n
    }
}

/// The local date of an instant in `tz`.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// 23:59:59 local on `day`, as an instant. A zone whose clocks jump across
/// that second (none does today) gets the earliest valid reading after it.
pub fn end_of_day(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let last = NaiveTime::from_hms_opt(23, 59, 59).expect("valid time");
    let local = day.and_time(last);
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        // Ambiguous (clocks fell back across it): the later reading ends the day.
        chrono::LocalResult::Ambiguous(_, late) => late.with_timezone(&Utc),
        // Skipped (clocks jumped over it): the first instant of the next day, minus one second.
        chrono::LocalResult::None => {
            let next = (day + Duration::days(1)).and_time(NaiveTime::MIN);
            tz.from_local_datetime(&next)
                .earliest()
                .map(|t| t.with_timezone(&Utc) - Duration::seconds(1))
                .unwrap_or_else(|| Utc.from_utc_datetime(&local))
        }
    }
}

/// How due instants are computed: the calendar, N and the zone.
#[derive(Debug, Clone)]
pub struct Deadlines {
    pub calendar: Calendar,
    pub working_days: u32,
    pub tz: Tz,
}

impl Deadlines {
    /// The end (23:59:59 local) of the N-th working day after the day of receipt.
    pub fn due(&self, received: DateTime<Utc>) -> DateTime<Utc> {
        let day = local_date(self.tz, received);
        end_of_day(
            self.tz,
            self.calendar.nth_working_day_after(day, self.working_days),
        )
    }

    /// Working days left until `due` as of `now`: 0 on the due day itself,
    /// negative (at least -1) once the due instant has passed.
    pub fn working_days_left(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
        let (due_day, today) = (local_date(self.tz, due), local_date(self.tz, now));
        if now <= due {
            self.calendar.working_days_between(today, due_day)
        } else {
            -self.calendar.working_days_between(due_day, today).max(1)
        }
    }

    /// Working days from receipt to completion (the completion histogram).
    pub fn working_days_taken(&self, received: DateTime<Utc>, done: DateTime<Utc>) -> i64 {
        self.calendar
            .working_days_between(local_date(self.tz, received), local_date(self.tz, done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::calendar::load_calendar;
    use std::path::Path;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn shipped() -> Calendar {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/calendar-cn.toml");
        load_calendar(&path).expect("the shipped calendar parses")
    }

    fn cn(n: u32) -> Deadlines {
        Deadlines {
            calendar: shipped(),
            working_days: n,
            tz: chrono_tz::Asia::Shanghai,
        }
    }

    #[test]
    fn shipped_calendar_covers_2024_to_2026() {
        let c = shipped();
        for y in [2024, 2025, 2026] {
            assert!(c.covers(y), "{y}");
        }
        assert!(c.last_year() >= Some(2026));
        // 2026 Spring Festival: 15–23 February off, Saturday 14 and 28 February worked.
        assert!(!c.is_working_day(d("2026-02-16")));
        assert!(c.is_working_day(d("2026-02-14")));
        assert!(c.is_working_day(d("2026-02-28")));
    }

    #[test]
    fn friday_before_national_day_2026_skips_the_golden_week() {
        // Received Friday 25 September 2026 (Mid-Autumn holiday, 25–27 Sep),
        // Sunday 20 Sep was worked; National Day 1–7 October is off, Saturday
        // 10 October is worked.
        let due = cn(15).due(at("2026-09-25T10:00:00+08:00"));
        // Working days after 25 Sep: 28, 29, 30 Sep (3), 8, 9, 10(Sat), 12, 13,
        // 14, 15, 16 Oct (11), 19, 20, 21, 22 Oct (15).
        assert_eq!(due, at("2026-10-22T23:59:59+08:00"));
        // And a Friday before National Day 2025 (30 Sep is a Tuesday; Friday 26 Sep).
        let due = cn(15).due(at("2025-09-26T18:00:00+08:00"));
        // After 26 Sep: 28(Sun, worked), 29, 30 Sep (3); 1–8 Oct off; 9, 10,
        // 11(Sat, worked), 13, 14, 15, 16, 17 (11); 20, 21, 22, 23 (15).
        assert_eq!(due, at("2025-10-23T23:59:59+08:00"));
    }

    #[test]
    fn a_make_up_saturday_counts() {
        let c = shipped();
        // Saturday 11 October 2025 is a workday, Saturday 18 October is not.
        assert!(c.is_working_day(d("2025-10-11")));
        assert!(!c.is_working_day(d("2025-10-18")));
        // One working day after Friday 10 October 2025 is that Saturday.
        assert_eq!(c.nth_working_day_after(d("2025-10-10"), 1), d("2025-10-11"));
        // Without the calendar it would be Monday.
        assert_eq!(
            Calendar::default().nth_working_day_after(d("2025-10-10"), 1),
            d("2025-10-13")
        );
    }

    #[test]
    fn the_year_boundary_and_new_year_holiday() {
        // Received Wednesday 31 December 2025 late in the evening, Shanghai:
        // 1–3 January 2026 off, Sunday 4 January worked.
        let dl = cn(1);
        assert_eq!(
            dl.due(at("2025-12-31T23:30:00+08:00")),
            at("2026-01-04T23:59:59+08:00")
        );
        // 23:30 UTC on 31 December is already 1 January in Shanghai: the day
        // of receipt is local.
        assert_eq!(
            dl.due(at("2025-12-31T23:30:00Z")),
            at("2026-01-04T23:59:59+08:00")
        );
        assert_eq!(
            cn(15).due(at("2025-12-31T09:00:00+08:00")),
            at("2026-01-22T23:59:59+08:00")
        );
    }

    #[test]
    fn a_zone_with_daylight_saving_ends_the_day_in_local_time() {
        // Europe/Berlin leaves summer time on Sunday 25 October 2026.
        let dl = Deadlines {
            calendar: Calendar::default(),
            working_days: 5,
            tz: chrono_tz::Europe::Berlin,
        };
        // Received Wednesday 21 Oct (CEST, +02): due Wednesday 28 Oct (CET, +01).
        assert_eq!(
            dl.due(at("2026-10-21T12:00:00+02:00")),
            at("2026-10-28T23:59:59+01:00")
        );
        // Spring: Sunday 29 March 2026 clocks go forward.
        assert_eq!(
            dl.due(at("2026-03-25T12:00:00+01:00")),
            at("2026-04-01T23:59:59+02:00")
        );
        // Shanghai has no DST: the same received instant is due at +08 either way.
        let sh = Deadlines {
            calendar: Calendar::default(),
            working_days: 5,
            tz: chrono_tz::Asia::Shanghai,
        };
        assert_eq!(
            sh.due(at("2026-10-21T12:00:00+08:00")),
            at("2026-10-28T23:59:59+08:00")
        );
    }

    #[test]
    fn working_days_left_is_zero_on_the_due_day_and_negative_after() {
        let dl = Deadlines {
            calendar: Calendar::default(),
            working_days: 15,
            tz: chrono_tz::Asia::Shanghai,
        };
        let received = at("2026-11-02T09:00:00+08:00"); // a Monday
        let due = dl.due(received);
        assert_eq!(due, at("2026-11-23T23:59:59+08:00"));
        assert_eq!(dl.working_days_left(due, received), 15);
        assert_eq!(
            dl.working_days_left(due, at("2026-11-23T20:00:00+08:00")),
            0
        );
        assert_eq!(
            dl.working_days_left(due, at("2026-11-24T00:00:01+08:00")),
            -1
        );
        assert_eq!(
            dl.working_days_left(due, at("2026-11-26T10:00:00+08:00")),
            -3
        );
        assert_eq!(
            dl.working_days_taken(received, at("2026-11-04T10:00:00+08:00")),
            2
        );
    }
}
