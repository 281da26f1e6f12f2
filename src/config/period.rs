//! Retention periods such as `15d`, `12h` or `3y`.
//!
//! Years and months are calendar units (3y before 2026-03-01 is 2023-03-01),
//! not multiples of days, because that is what a retention obligation means.

use chrono::{DateTime, Months, TimeDelta, Utc};
use std::fmt;
use std::str::FromStr;

/// The unit of a [`Period`]; months and years are calendar units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

/// A non-negative span of time written as `<number><unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub amount: u32,
    pub unit: Unit,
}

impl Period {
    /// The instant `self` before `instant`; the earliest representable
    /// instant when that lies before chrono's range (a period of millions of
    /// years, found by the fuzzer: plain subtraction panicked there). Every
    /// row is younger than that cutoff, so such a rule selects nothing.
    pub fn before(&self, instant: DateTime<Utc>) -> DateTime<Utc> {
        let n = i64::from(self.amount);
        let minus = |d: TimeDelta| {
            instant
                .checked_sub_signed(d)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        match self.unit {
            Unit::Seconds => minus(TimeDelta::seconds(n)),
            Unit::Minutes => minus(TimeDelta::minutes(n)),
            Unit::Hours => minus(TimeDelta::hours(n)),
            Unit::Days => minus(TimeDelta::days(n)),
            Unit::Weeks => minus(TimeDelta::weeks(n)),
            Unit::Months => instant
                .checked_sub_months(Months::new(self.amount))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            Unit::Years => instant
                .checked_sub_months(Months::new(self.amount.saturating_mul(12)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// A fixed-length approximation, for timers and lease lengths.
    pub fn as_std(&self) -> std::time::Duration {
        let secs: u64 = match self.unit {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 604_800,
            Unit::Months => 2_629_746,
            Unit::Years => 31_556_952,
        };
        std::time::Duration::from_secs(secs * u64::from(self.amount))
    }
}

/// Why a period was refused; the text is the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// No unit after the number (`15`).
    #[error("`{0}` has no unit (use s, m, h, d, w, mo or y, e.g. `15d`)")]
    NoUnit(String),
    /// No number before the unit (`d`, `-1d`).
    #[error("`{0}` does not start with a number (e.g. `15d`)")]
    NoNumber(String),
    /// More than `u32::MAX` units.
    #[error("`{0}` is too large for a period")]
    TooLarge(String),
    /// `ms`: a pause, not a retention period.
    #[error("`{0}`: milliseconds are not a retention unit")]
    Milliseconds(String),
    /// Any other unit.
    #[error("unknown unit `{unit}` in `{text}` (use s, m, h, d, w, mo or y)")]
    UnknownUnit { unit: String, text: String },
}

impl PeriodError {
    /// Whether the message is empty. It never is; the fuzz targets assert
    /// that through this method.
    pub fn is_empty(&self) -> bool {
        self.to_string().is_empty()
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| PeriodError::NoUnit(s.to_string()))?;
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(PeriodError::NoNumber(s.to_string()));
        }
        let amount: u32 = num
            .parse()
            .map_err(|_| PeriodError::TooLarge(num.to_string()))?;
        let unit = match unit {
            "s" | "sec" | "secs" => Unit::Seconds,
            "m" | "min" | "mins" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            "mo" => Unit::Months,
            "y" => Unit::Years,
            "ms" => return Err(PeriodError::Milliseconds(s.to_string())),
            other => {
                return Err(PeriodError::UnknownUnit {
                    unit: other.to_string(),
                    text: s.to_string(),
                });
            }
        };
        Ok(Period { amount, unit })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.unit {
            Unit::Seconds => "s",
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::Weeks => "w",
            Unit::Months => "mo",
            Unit::Years => "y",
        };
        write!(f, "{}{}", self.amount, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_the_documented_units() {
        assert_eq!("15d".parse::<Period>().unwrap().unit, Unit::Days);
        assert_eq!("12h".parse::<Period>().unwrap().amount, 12);
        assert_eq!("3y".parse::<Period>().unwrap().unit, Unit::Years);
        assert_eq!("6mo".parse::<Period>().unwrap().unit, Unit::Months);
        assert!("15".parse::<Period>().is_err());
        assert!("d".parse::<Period>().is_err());
        assert!("5q".parse::<Period>().is_err());
    }

    #[test]
    fn a_period_past_the_calendar_saturates_instead_of_panicking() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        for p in ["4294967295d", "4294967295w", "4294967295y", "4294967295s"] {
            let p: Period = p.parse().unwrap();
            assert!(p.before(t) <= t);
        }
        let p: Period = "4294967295d".parse().unwrap();
        assert_eq!(p.before(t), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn years_are_calendar_years() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let p: Period = "3y".parse().unwrap();
        assert_eq!(
            p.before(t),
            Utc.with_ymd_and_hms(2023, 3, 1, 0, 0, 0).unwrap()
        );
        let d: Period = "15d".parse().unwrap();
        assert_eq!(
            d.before(t),
            Utc.with_ymd_and_hms(2026, 2, 14, 0, 0, 0).unwrap()
        );
    }
}
