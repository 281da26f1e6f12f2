//! The strategies a rule may name (`null`, `fixed:<value>`, `redact`,
//! `hash`, `mask[:n]`, `year`, `month`), parsed from a job file and displayed
//! in plans, reports and the audit log.
//!
//! A strategy is only a name and its argument here: which column types it
//! fits, and the SQL that applies it, belong to `crate::sql::anonymize`. The display
//! of `fixed` never shows its value (it may be a placeholder someone cares
//! about), so what is printed is not always what was written.

use std::fmt;

/// What happens to one column of an anonymized row.
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

/// Why a strategy as written was refused; the text goes into the job's
/// diagnostic after the column name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// `mask:<n>` whose `n` is not a whole number.
    #[error("`mask:{0}`: the number of characters to keep must be a whole number")]
    MaskCount(String),
    /// `fixed` without `:<value>`.
    #[error("`fixed` needs a value: `fixed:<value>`")]
    FixedWithoutValue,
    /// Any other name.
    #[error(
        "unknown strategy `{0}` (use null, fixed:<value>, redact, hash, mask, mask:<n>, year or month)"
    )]
    Unknown(String),
}

impl StrategyError {
    /// Whether the message is empty. It never is; the fuzz targets assert
    /// that through this method.
    pub fn is_empty(&self) -> bool {
        self.to_string().is_empty()
    }
}

/// One anonymization strategy as a job writes it (`mask:4`, `fixed:x`).
pub fn parse_strategy(s: &str) -> Result<Strategy, StrategyError> {
    let (head, arg) = match s.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (s, None),
    };
    Ok(match (head, arg) {
        ("null", None) => Strategy::Null,
        ("redact", None) => Strategy::Redact,
        ("hash", None) => Strategy::Hash,
        ("mask", None) => Strategy::Mask(4),
        ("mask", Some(n)) => Strategy::Mask(
            n.parse()
                .map_err(|_| StrategyError::MaskCount(n.to_string()))?,
        ),
        ("year", None) => Strategy::Year,
        ("month", None) => Strategy::Month,
        ("fixed", Some(v)) => Strategy::Fixed(v.to_string()),
        ("fixed", None) => return Err(StrategyError::FixedWithoutValue),
        _ => return Err(StrategyError::Unknown(s.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_printed_parses_back_except_a_fixed_value() {
        for s in [
            "null", "redact", "hash", "mask:4", "mask:0", "year", "month",
        ] {
            let parsed = parse_strategy(s).unwrap();
            assert_eq!(parsed.to_string(), s);
            assert_eq!(parse_strategy(&parsed.to_string()).unwrap(), parsed);
        }
        assert_eq!(parse_strategy("mask").unwrap(), Strategy::Mask(4));
        assert_eq!(parse_strategy("fixed:a:b").unwrap().to_string(), "fixed");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            parse_strategy("mask:x").unwrap_err().to_string(),
            "`mask:x`: the number of characters to keep must be a whole number"
        );
        assert_eq!(
            parse_strategy("fixed").unwrap_err(),
            StrategyError::FixedWithoutValue
        );
        assert!(
            parse_strategy("scramble")
                .unwrap_err()
                .to_string()
                .starts_with("unknown strategy `scramble`")
        );
    }
}
