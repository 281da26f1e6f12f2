//! `[sources.NAME.pause_when]`: when the batch loop holds back for the database's sake.
//!
//! A purge competes with the application for the same server. This table
//! names the signals that say "not now" — a replica falling behind, too many
//! sessions busy, sessions queued on locks — and how long Lethe may wait for
//! them to clear before the rule fails. Parsing follows the two phases of the
//! rest of the configuration: [`RawPauseWhen`] as written (strict serde,
//! spans kept), then [`validate`] into the typed [`PauseWhen`] the engine's
//! throttle trusts, every problem reported with its line and column.
//! Offline only: whether the replica answers is `check`'s business.

use super::diagnostic::{Diagnostic, SourceFile};
use super::interpolate::{expand, has_literal_password};
use super::validate::parse_pause_text;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Default `check_every`: one status query a second costs the server nothing.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Default `max_wait`: long enough to ride out a burst, short enough that a
/// stuck replica fails the rule in the same night's run.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(600);

/// `[sources.NAME.pause_when]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPauseWhen {
    /// URL of the replica whose lag is watched (`${VAR}` expands).
    #[serde(default)]
    pub replica: Option<Spanned<String>>,
    /// MariaDB multi-source: the replication connection on `replica` whose
    /// lag is watched (`SHOW SLAVE 'name' STATUS`); the default connection
    /// when absent.
    #[serde(default)]
    pub replica_connection: Option<Spanned<String>>,
    /// Pause while the replica is further behind than this (`5s`, `500ms`).
    #[serde(default)]
    pub max_lag: Option<Spanned<String>>,
    /// Pause while more sessions than this run a statement on the database.
    #[serde(default)]
    pub active_sessions: Option<Spanned<i64>>,
    /// Pause while more sessions than this wait for a lock on the database.
    #[serde(default)]
    pub lock_waits: Option<Spanned<i64>>,
    /// How often the signals are read again while paused (default `1s`).
    #[serde(default)]
    pub check_every: Option<Spanned<String>>,
    /// How long one pause may last before the rule fails (default `10m`).
    #[serde(default)]
    pub max_wait: Option<Spanned<String>>,
}

/// The validated thresholds; `None` means the signal is not watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseWhen {
    /// The replica's URL after `${VAR}` expansion. May hold a secret: never
    /// print it. Without one, a PostgreSQL source's lag is read from
    /// `pg_stat_replication` on the source itself.
    pub replica: Option<String>,
    /// MariaDB: the named replication connection of `replica` that is read
    /// (`None`: the default connection).
    pub replica_connection: Option<String>,
    /// The replica lag above which the loop pauses.
    pub max_lag: Option<Duration>,
    /// Active sessions (other than Lethe's own) above which the loop pauses.
    pub active_sessions: Option<u64>,
    /// Sessions waiting on a lock above which the loop pauses.
    pub lock_waits: Option<u64>,
    /// The interval between two readings while paused.
    pub check_every: Duration,
    /// The longest single pause; beyond it the rule fails with a typed error.
    pub max_wait: Duration,
}

/// What [`validate`] needs from the validation pass around it: the file the
/// table is in (for positions), where problems go, the environment `${VAR}`
/// is expanded from, and the source the table belongs to.
pub struct Cx<'a> {
    /// The config file, for line and column of each problem.
    pub file: &'a SourceFile,
    /// Problems found, appended in file order.
    pub errors: &'a mut Vec<Diagnostic>,
    /// The environment `${VAR}` in `replica` is read from.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The source's name, quoted in every message.
    pub source: &'a str,
    /// The source's URL (expanded): the replica must speak the same protocol.
    pub source_url: &'a str,
}

impl Cx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        let msg = format!("source `{}`: pause_when: {}", self.source, msg.into());
        self.errors.push(self.file.at(at.span(), msg));
    }
}

/// Which family of server a URL names (a replica must match its source's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Postgres,
    MySql,
    Sqlite,
    Unknown,
}

fn family(url: &str) -> Family {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Family::Postgres
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Family::MySql
    } else if url.starts_with("sqlite:") {
        Family::Sqlite
    } else {
        Family::Unknown
    }
}

/// Check `[sources.NAME.pause_when]` and turn it into a [`PauseWhen`].
/// Problems are pushed to `cx.errors`; the value returned for a table with
/// problems is only good for carrying on with the rest of the file.
pub fn validate(raw: &Spanned<RawPauseWhen>, cx: &mut Cx) -> PauseWhen {
    let r = raw.get_ref();
    let source_family = family(cx.source_url);
    if source_family == Family::Sqlite {
        cx.err(
            raw,
            "a SQLite file has no replicas and no other sessions to watch; remove this table",
        );
    }
    let replica = replica_url(r, cx, source_family);
    let replica_connection = replica_connection(r, cx, source_family);
    let max_lag = r.max_lag.as_ref().and_then(|s| positive(cx, s, "max_lag"));
    let active_sessions = r
        .active_sessions
        .as_ref()
        .and_then(|n| count(cx, n, "active_sessions"));
    let lock_waits = r
        .lock_waits
        .as_ref()
        .and_then(|n| count(cx, n, "lock_waits"));
    let check_every = r
        .check_every
        .as_ref()
        .and_then(|s| positive(cx, s, "check_every"))
        .unwrap_or(DEFAULT_CHECK_EVERY);
    let max_wait = r
        .max_wait
        .as_ref()
        .and_then(|s| positive(cx, s, "max_wait"))
        .unwrap_or(DEFAULT_MAX_WAIT);
    if let Some(at) = &r.check_every
        && check_every > max_wait
    {
        cx.err(
            at,
            "check_every is longer than max_wait: the first reading would already give up",
        );
    }
    if r.max_lag.is_none()
        && r.active_sessions.is_none()
        && r.lock_waits.is_none()
        && r.replica.is_none()
    {
        cx.err(
            raw,
            "no threshold set: add max_lag, active_sessions or lock_waits (or remove the table)",
        );
    }
    match (&r.replica, &r.max_lag) {
        (Some(at), None) => cx.err(at, "replica is only read for max_lag: add `max_lag = \"5s\"`"),
        (None, Some(at)) if source_family == Family::MySql => cx.err(
            at,
            "max_lag on MariaDB/MySQL is read from the replica (Seconds_Behind_Master): add `replica = \"mysql://…\"`",
        ),
        _ => {}
    }
    PauseWhen {
        replica,
        replica_connection,
        max_lag,
        active_sessions,
        lock_waits,
        check_every,
        max_wait,
    }
}

/// `replica_connection`: only on a MariaDB/MySQL source with a `replica`,
/// and a name that can be written inside a string literal as it is.
fn replica_connection(r: &RawPauseWhen, cx: &mut Cx, source_family: Family) -> Option<String> {
    let at = r.replica_connection.as_ref()?;
    let name = at.get_ref();
    if source_family != Family::MySql {
        cx.err(
            at,
            "replica_connection names a MariaDB multi-source replication connection; this source is not MariaDB/MySQL",
        );
        return None;
    }
    if r.replica.is_none() {
        cx.err(
            at,
            "replica_connection is read on the replica: add `replica = \"mysql://…\"`",
        );
        return None;
    }
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        cx.err(
            at,
            "replica_connection must be 1 to 64 letters, digits, `_`, `-` or `.` (a MariaDB connection name)",
        );
        return None;
    }
    Some(name.clone())
}

fn replica_url(r: &RawPauseWhen, cx: &mut Cx, source_family: Family) -> Option<String> {
    let at = r.replica.as_ref()?;
    if has_literal_password(at.get_ref()) {
        cx.err(
            at,
            "the replica url holds a literal password; take it from the environment with ${VAR}",
        );
    }
    let url = match expand(at.get_ref(), cx.env) {
        Ok(u) => u,
        Err(e) => {
            cx.err(at, format!("replica: {e}"));
            return None;
        }
    };
    match (family(&url), source_family) {
        (Family::Postgres, Family::Postgres) | (Family::MySql, Family::MySql) => Some(url),
        (Family::Postgres | Family::MySql, Family::Postgres | Family::MySql) => {
            cx.err(
                at,
                "the replica must be the same kind of server as the source",
            );
            None
        }
        (Family::Postgres | Family::MySql, _) => Some(url),
        _ => {
            cx.err(
                at,
                "replica url must start with postgres://, mysql:// or mariadb://",
            );
            None
        }
    }
}

/// A duration above zero (`0s` would pause at the first reading, for ever).
fn positive(cx: &mut Cx, s: &Spanned<String>, key: &str) -> Option<Duration> {
    match parse_pause_text(s.get_ref()) {
        Ok(d) if d.is_zero() => {
            cx.err(s, format!("{key} must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(s, format!("{key}: {e}"));
            None
        }
    }
}

fn count(cx: &mut Cx, n: &Spanned<i64>, key: &str) -> Option<u64> {
    match u64::try_from(*n.get_ref()) {
        Ok(v) => Some(v),
        Err(_) => {
            cx.err(n, format!("{key} must be 0 or more"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(Deserialize)]
    struct Doc {
        pause_when: Spanned<RawPauseWhen>,
    }

    /// Validate `[pause_when]` of `text` for a source at `source_url`.
    fn check(text: &str, source_url: &str) -> (PauseWhen, Vec<String>) {
        let file = SourceFile::new(Path::new("lethe.toml"), text.to_string());
        let doc: Doc = toml::from_str(text).expect("parses");
        let mut errors = Vec::new();
        let env = |k: &str| (k == "REPLICA_PASS").then(|| "s3cret".to_string());
        let mut cx = Cx {
            file: &file,
            errors: &mut errors,
            env: &env,
            source: "app",
            source_url,
        };
        let p = validate(&doc.pause_when, &mut cx);
        (p, errors.iter().map(|d| d.to_string()).collect())
    }

    const PG: &str = "postgres://app@db/app";

    #[test]
    fn every_key_is_read_and_defaults_fill_the_rest() {
        let (p, errors) = check(
            "[pause_when]\nreplica = \"postgres://lethe:${REPLICA_PASS}@replica/app\"\nmax_lag = \"5s\"\nactive_sessions = 20\nlock_waits = 0\n",
            PG,
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            p,
            PauseWhen {
                replica: Some("postgres://lethe:s3cret@replica/app".into()),
                replica_connection: None,
                max_lag: Some(Duration::from_secs(5)),
                active_sessions: Some(20),
                lock_waits: Some(0),
                check_every: DEFAULT_CHECK_EVERY,
                max_wait: DEFAULT_MAX_WAIT,
            }
        );
        let (p, errors) = check(
            "[pause_when]\nactive_sessions = 3\ncheck_every = \"250ms\"\nmax_wait = \"2m\"\n",
            PG,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(p.check_every, Duration::from_millis(250));
        assert_eq!(p.max_wait, Duration::from_secs(120));
    }

    #[test]
    fn problems_are_reported_at_their_key() {
        let (_, errors) = check(
            "[pause_when]\nmax_lag = \"0s\"\nactive_sessions = -1\ncheck_every = \"soon\"\n",
            PG,
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "lethe.toml:2:11: source `app`: pause_when: max_lag must be longer than zero"
        );
        assert_eq!(
            errors[1],
            "lethe.toml:3:19: source `app`: pause_when: active_sessions must be 0 or more"
        );
        assert!(errors[2].starts_with("lethe.toml:4:15: source `app`: pause_when: check_every: "));
    }

    #[test]
    fn a_table_without_a_threshold_or_with_a_mismatched_replica_is_an_error() {
        let (_, errors) = check("[pause_when]\nmax_wait = \"1m\"\n", PG);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("no threshold set"), "{errors:?}");
        let (_, errors) = check(
            "[pause_when]\nreplica = \"mysql://root@replica/app\"\nmax_lag = \"5s\"\n",
            PG,
        );
        assert!(errors[0].contains("same kind of server"), "{errors:?}");
        let (_, errors) = check("[pause_when]\nmax_lag = \"5s\"\n", "mysql://root@db/app");
        assert!(errors[0].contains("add `replica"), "{errors:?}");
        let (_, errors) = check("[pause_when]\nreplica = \"postgres://r/app\"\n", PG);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("only read for max_lag"), "{errors:?}");
        let (_, errors) = check("[pause_when]\nlock_waits = 1\n", "sqlite://var/app.db");
        assert!(errors[0].contains("SQLite"), "{errors:?}");
    }

    #[test]
    fn a_named_replica_connection_is_mariadb_only_and_a_plain_name() {
        const MY: &str = "mysql://root@db/app";
        let (p, errors) = check(
            "[pause_when]\nreplica = \"mysql://root@replica/app\"\nreplica_connection = \"eu-west.1\"\nmax_lag = \"5s\"\n",
            MY,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(p.replica_connection.as_deref(), Some("eu-west.1"));
        let (_, errors) = check(
            "[pause_when]\nreplica = \"mysql://root@replica/app\"\nreplica_connection = \"x' STATUS; --\"\nmax_lag = \"5s\"\n",
            MY,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("lethe.toml:3:22: ") && errors[0].contains("1 to 64 letters"),
            "{errors:?}"
        );
        let (_, errors) = check(
            "[pause_when]\nreplica_connection = \"a\"\nactive_sessions = 3\n",
            MY,
        );
        assert!(errors[0].contains("add `replica"), "{errors:?}");
        let (_, errors) = check(
            "[pause_when]\nreplica = \"postgres://r/app\"\nreplica_connection = \"a\"\nmax_lag = \"5s\"\n",
            PG,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("not MariaDB/MySQL"), "{errors:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Doc>("[pause_when]\nmax_lagg = \"5s\"\n")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("max_lagg"), "{err}");
    }
}
