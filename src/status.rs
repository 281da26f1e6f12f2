//! Typed outcomes of runs, jobs and rules, serialized as the strings the audit log, metrics and JSON output have always used.
//!
//! Each type serializes (serde), displays and compares with a `&str` as
//! exactly the word it replaces, so the JSON output, the audit log and the
//! metrics labels stay byte for byte what they were.

use serde::Serialize;
use std::fmt;

/// Implements `as_str`, `Display` and comparison with a `&str` for an enum
/// of unit variants, each written as one fixed word.
macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// The word the audit log, the JSON output and the metrics use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl From<$ty> for String {
            fn from(s: $ty) -> String {
                s.as_str().to_string()
            }
        }
    };
}

/// How a whole run ended: the `run_end` record, the state store's row and
/// the report all say it with this word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every rule did what it could (overdue requests are not a failure).
    Completed,
    /// A signal or a lost lease stopped the run; the next run goes on.
    Interrupted,
    /// Some rule failed or a guard stopped it.
    Partial,
    /// The audit log or the state store failed: the run stopped.
    Failed,
}

words!(RunStatus {
    Completed => "completed",
    Interrupted => "interrupted",
    Partial => "partial",
    Failed => "failed",
});

/// How one job ended, worst rule first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Every rule is done.
    Done,
    /// A dry run found work to do.
    Pending,
    /// A guard stopped a rule.
    Guard,
    /// A rule failed.
    Partial,
    /// Stopped at a batch boundary.
    Interrupted,
    /// Another run holds the job's lease: nothing was run.
    Locked,
}

words!(JobStatus {
    Done => "done",
    Pending => "pending",
    Guard => "guard",
    Partial => "partial",
    Interrupted => "interrupted",
    Locked => "locked",
});

/// What a rule does to what it selects: the `action` of its report and of
/// its `plan` and `batch` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Rows deleted.
    Delete,
    /// Columns of the rows rewritten in place.
    Anonymize,
    /// Objects erased from a store (object rules).
    Erase,
}

words!(ActionKind {
    Delete => "delete",
    Anonymize => "anonymize",
    Erase => "erase",
});

impl From<&crate::config::Action> for ActionKind {
    fn from(a: &crate::config::Action) -> Self {
        match a {
            crate::config::Action::Delete => ActionKind::Delete,
            crate::config::Action::Anonymize(_) => ActionKind::Anonymize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_as_the_words_they_replace() {
        for s in [
            RunStatus::Completed,
            RunStatus::Interrupted,
            RunStatus::Partial,
            RunStatus::Failed,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in [
            JobStatus::Done,
            JobStatus::Pending,
            JobStatus::Guard,
            JobStatus::Partial,
            JobStatus::Interrupted,
            JobStatus::Locked,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for a in [ActionKind::Delete, ActionKind::Anonymize, ActionKind::Erase] {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        assert!(RunStatus::Completed == "completed");
    }
}
