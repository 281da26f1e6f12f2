//! Typed errors and the exit codes that are part of Lethe's contract.
//!
//! Error policy: no error message may carry a value read from a row. Database
//! errors pass through `sql::describe`, which drops quoted literals; URLs are
//! shown with their password replaced.
//!
//! This module depends on no other of the crate: the variants that report a
//! failure of `config` or `objects` carry plain data, and those modules say
//! how their own errors become an [`Error`] (`From` beside their types).

/// Process exit codes (DESIGN.md). Kubernetes `podFailurePolicy` keys on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    Ok = 0,
    Unexpected = 1,
    Pending = 2,
    Partial = 3,
    Guard = 4,
    Overdue = 5,
    Usage = 64,
    Locked = 75,
    Config = 78,
}

impl ExitCode {
    /// Every code Lethe exits with.
    pub const ALL: [ExitCode; 9] = [
        ExitCode::Ok,
        ExitCode::Unexpected,
        ExitCode::Pending,
        ExitCode::Partial,
        ExitCode::Guard,
        ExitCode::Overdue,
        ExitCode::Usage,
        ExitCode::Locked,
        ExitCode::Config,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// How serious a code is when several rules end differently; the most
    /// serious one is the process's exit code. DESIGN.md ranks them
    /// 1 > 78 > 64 > 5 > 4 > 3 > 75 > 0: an overdue request outranks a
    /// guard trip, so a CronJob whose requests are late says so first.
    fn severity(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Pending => 1,
            ExitCode::Locked => 2,
            ExitCode::Partial => 3,
            ExitCode::Guard => 4,
            ExitCode::Overdue => 5,
            ExitCode::Usage => 6,
            ExitCode::Config => 7,
            ExitCode::Unexpected => 8,
        }
    }

    /// The more serious of two codes (see `severity`): what a run with rules
    /// ending differently exits with.
    pub fn worst(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// Every error the library returns; its `Display` is what the operator
/// reads, its variant decides the exit code and whether retrying helps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every problem found while loading the configuration, one per line
    /// (`file:line:column: message`, as `config::ConfigErrors` prints them).
    #[error("{0}")]
    Config(String),
    #[error("source `{source_name}`: {message}")]
    Database {
        source_name: String,
        message: String,
        /// What the server said went wrong, as far as Lethe tells errors
        /// apart: decided where the sqlx error is converted, so nobody
        /// searches the message.
        kind: DbErrorKind,
    },
    /// A deadlock, serialization failure or lock timeout: the transaction was
    /// rolled back by the server and the same work may simply be tried again.
    #[error("source `{source_name}`: {message}")]
    Conflict {
        source_name: String,
        message: String,
    },
    /// The connection to the source was lost or could not be made (refused,
    /// reset, timed out): what was not committed may be tried again once
    /// the source answers.
    #[error("source `{source_name}`: {message}")]
    Connection {
        source_name: String,
        message: String,
    },
    #[error("{0}")]
    Schema(String),
    #[error("audit log: {0}")]
    Audit(String),
    /// A failed object-store operation (from `objects::StoreError`; never
    /// carries a key name).
    #[error("store `{store}`: {op}: {message}")]
    Store {
        store: String,
        op: &'static str,
        message: String,
    },
    #[error("state store: {0}")]
    State(String),
    #[error(
        "the HMAC key variable {0} is not set: export a secret of at least 16 bytes (e.g. `export {0}=$(openssl rand -hex 32)`)"
    )]
    MissingKey(String),
    #[error("another run holds the lease for {0}; try again later")]
    Locked(String),
    #[error("{0}")]
    Usage(String),
    /// `pause_when`: the database stayed over a threshold for the whole
    /// `max_wait`, or the replica named is not one. Fails the rule (the
    /// run ends partial) rather than go on against the database's health.
    #[error("{0}")]
    Throttle(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit code a run that fails with this error ends with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::MissingKey(_) => ExitCode::Config,
            Error::Locked(_) => ExitCode::Locked,
            Error::Usage(_) => ExitCode::Usage,
            _ => ExitCode::Unexpected,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a database error, from the driver's own classification and
/// the engine's SQLSTATE or vendor code (`sql::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A deadlock, serialization failure or lock timeout (these normally
    /// surface as [`Error::Conflict`]).
    Conflict,
    /// A primary-key or unique constraint refused the row: the state store
    /// reads it as "someone else got there first".
    UniqueViolation,
    /// Anything else.
    Other,
}

#[cfg(test)]
mod tests {
    use super::ExitCode::*;

    #[test]
    fn codes_rank_as_design_says() {
        // 1 > 78 > 64 > 5 > 4 > 3 > 75 > 0
        let ranked = [
            Unexpected, Config, Usage, Overdue, Guard, Partial, Locked, Ok,
        ];
        for (i, hi) in ranked.iter().enumerate() {
            for lo in &ranked[i + 1..] {
                assert_eq!(hi.worst(*lo), *hi, "{hi:?} over {lo:?}");
                assert_eq!(lo.worst(*hi), *hi, "{hi:?} over {lo:?}");
            }
        }
        assert_eq!(Pending.worst(Ok), Pending);
        assert_eq!(Locked.worst(Pending), Locked);
    }
}
