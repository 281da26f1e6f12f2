//! The batch loop's brake: wait at a batch boundary while the database is unwell.
//!
//! A purge that keeps deleting while a replica falls minutes behind, or while
//! the application's sessions queue on locks, hurts the service the data
//! belongs to. [`Throttle::wait`] is called between two batches: it reads the
//! signals the source's `pause_when` names (replica lag, active sessions,
//! lock waits), sleeps `check_every` while any is over its threshold, and
//! gives up with [`Error::GaveUp`] after `max_wait`. It owns no transaction
//! and deletes nothing; it only reads server status views, through the
//! source's [`Db`] (and the replica's). The statements are the source's
//! [`Dialect`](crate::sql::Dialect)'s; a MariaDB/MySQL replica is read by
//! `sql::health::Replica`. Log lines carry names, figures and thresholds,
//! never a row's value.

use crate::config::throttle::PauseWhen;
use crate::sql::dialect::LockView;
use crate::sql::health::{self, ReplicaLag};
use crate::sql::{Db, Stmt};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why the loop paused; the `reason` label of `lethe_throttle_seconds_total`
/// (and the key a rule report's seconds are serialized under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The replica is further behind than `max_lag` (or has stopped applying).
    ReplicaLag,
    /// More sessions wait on locks than `lock_waits`.
    LockWaits,
    /// More sessions run statements than `active_sessions`.
    ActiveSessions,
}

impl Reason {
    /// The label value, stable for dashboards and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReplicaLag => "replica_lag",
            Reason::LockWaits => "lock_waits",
            Reason::ActiveSessions => "active_sessions",
        }
    }
}

/// Why the throttle could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A threshold stayed exceeded for the whole `max_wait`: the rule fails
    /// rather than wait for ever or go on against the database's health.
    #[error(
        "source `{source_name}`: paused {waited:.0?} for {} (last reading {reading}), longer than pause_when.max_wait ({max_wait:?})",
        reason.as_str()
    )]
    GaveUp {
        source_name: String,
        reason: Reason,
        /// The reading that was still over its threshold, as text (`12.3 s`, `7`).
        reading: String,
        waited: Duration,
        max_wait: Duration,
    },
    /// The replica URL names a server that is not replicating (not in
    /// recovery, no replication configured): its lag means nothing.
    #[error("source `{source_name}`: pause_when.replica is not a replica: {message}")]
    NotAReplica {
        source_name: String,
        message: String,
    },
    /// A status query failed (connection lost, a view not readable).
    #[error(transparent)]
    Db(#[from] crate::error::Error),
}

/// How long one [`Throttle::wait`] paused, per reason. Each nap is counted
/// once, under the first reason over its threshold (lag before lock waits
/// before active sessions), so the reasons add up to the time waited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waited {
    /// Seconds per reason; reasons that did not pause the loop are absent.
    pub seconds: BTreeMap<Reason, f64>,
}

impl Waited {
    /// Seconds paused for `reason` (0 if it never held the loop).
    pub fn of(&self, reason: Reason) -> f64 {
        self.seconds.get(&reason).copied().unwrap_or(0.0)
    }

    /// Seconds paused in all.
    pub fn total(&self) -> f64 {
        self.seconds.values().sum()
    }

    fn add(&mut self, reason: Reason, d: Duration) {
        *self.seconds.entry(reason).or_default() += d.as_secs_f64();
    }
}

/// One reading of every watched signal (`None`: not watched).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Replica lag; `Some(None)`: the replica is not applying changes at all
    /// (MariaDB's SQL thread stopped), which counts as over any `max_lag`.
    pub lag: Option<Option<Duration>>,
    /// Active sessions on the source's database, other than this one.
    pub active_sessions: Option<u64>,
    /// Sessions on the source's database waiting for a lock.
    pub lock_waits: Option<u64>,
}

/// The throttle of one source, reused at every batch boundary of a run.
pub struct Throttle<'a> {
    when: PauseWhen,
    source: &'a Db,
    /// A PostgreSQL replica, read through [`Db`].
    replica: Option<Db>,
    /// A MariaDB/MySQL replica, whose status row [`Db`] cannot read.
    my_replica: Option<health::Replica>,
    lock_view: Option<LockView>,
    /// When the last reading found every signal under its threshold. For
    /// `check_every` after it, [`Throttle::wait`] trusts it instead of
    /// asking again: reading `pg_locks` and `pg_stat_activity` at every
    /// boundary of 2,000-row batches made a PostgreSQL run 1.3–1.5× slower.
    healthy_at: Option<Instant>,
}

fn stmt(sql: &str) -> Stmt {
    Stmt {
        sql: sql.to_string(),
        binds: Vec::new(),
    }
}

impl<'a> Throttle<'a> {
    /// A throttle over `source`, reading lag from `replica` when given (the
    /// caller connected it from `when.replica`, see [`Throttle::connect`]).
    pub fn new(when: PauseWhen, source: &'a Db, replica: Option<Db>) -> Self {
        Throttle {
            when,
            source,
            replica,
            my_replica: None,
            lock_view: None,
            healthy_at: None,
        }
    }

    /// [`Throttle::new`], connecting the replica named in `when` (one
    /// connection: it is read once per `check_every` at most).
    pub async fn connect(when: PauseWhen, source: &'a Db) -> Result<Self, Error> {
        let name = format!("{} replica", source.name);
        let Some(url) = when.replica.clone() else {
            return Ok(Self::new(when, source, None));
        };
        if url.starts_with("postgres") {
            let replica = Db::connect(&name, &url, 1, Duration::ZERO).await?;
            return Ok(Self::new(when, source, Some(replica)));
        }
        let replica =
            health::Replica::connect(&name, &url, when.replica_connection.as_deref()).await?;
        let mut throttle = Self::new(when, source, None);
        throttle.my_replica = Some(replica);
        Ok(throttle)
    }

    /// The thresholds this throttle applies.
    pub fn pause_when(&self) -> &PauseWhen {
        &self.when
    }

    /// Wait until every watched signal is at or under its threshold.
    /// Returns at once when all are, or when the last reading, less than
    /// `check_every` ago, found them so (the signals are read every
    /// `check_every`, not at every batch boundary); returns early (with
    /// what was waited) when `cancel` fires, so the loop's own cancellation
    /// check stops it.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> Result<Waited, Error> {
        if self
            .healthy_at
            .is_some_and(|at| at.elapsed() < self.when.check_every)
        {
            return Ok(Waited::default());
        }
        let start = Instant::now();
        let mut waited = Waited::default();
        let mut pausing: Option<Reason> = None;
        loop {
            let readings = self.readings().await?;
            let Some((reason, reading)) = over(&self.when, &readings) else {
                if let Some(reason) = pausing {
                    tracing::info!(
                        source = %self.source.name,
                        reason = reason.as_str(),
                        waited_s = format!("{:.1}", waited.total()),
                        "resuming: the database is under every pause_when threshold"
                    );
                }
                return Ok(waited);
            };
            let elapsed = start.elapsed();
            if elapsed >= self.when.max_wait {
                return Err(Error::GaveUp {
                    source_name: self.source.name.clone(),
                    reason,
                    reading,
                    waited: elapsed,
                    max_wait: self.when.max_wait,
                });
            }
            if pausing != Some(reason) {
                tracing::warn!(
                    source = %self.source.name,
                    reason = reason.as_str(),
                    reading = %reading,
                    threshold = %self.threshold(reason),
                    "pausing at a batch boundary: the database is over a pause_when threshold"
                );
                pausing = Some(reason);
            }
            let nap = self.when.check_every.min(self.when.max_wait - elapsed);
            let before = Instant::now();
            tokio::select! {
                _ = cancel.cancelled() => {
                    waited.add(reason, before.elapsed());
                    return Ok(waited);
                }
                _ = tokio::time::sleep(nap) => waited.add(reason, before.elapsed()),
            }
        }
    }

    /// The threshold of `reason`, as text (`5s`, `20`).
    pub fn threshold(&self, reason: Reason) -> String {
        match reason {
            Reason::ReplicaLag => format!("{:?}", self.when.max_lag.unwrap_or_default()),
            Reason::LockWaits => self.when.lock_waits.unwrap_or_default().to_string(),
            Reason::ActiveSessions => self.when.active_sessions.unwrap_or_default().to_string(),
        }
    }

    /// The first signal of `r` over its threshold, with its reading as text
    /// (what [`Throttle::wait`] would pause for).
    pub fn over(&self, r: &Readings) -> Option<(Reason, String)> {
        over(&self.when, r)
    }

    /// Every watched reading of `r` beside its threshold, for `check`:
    /// `replica lag 0.2 s (pauses above 5s), 3 active sessions (pauses above 20)`.
    pub fn describe(&self, r: &Readings) -> String {
        let mut parts = Vec::new();
        if let (Some(lag), Some(max)) = (r.lag, self.when.max_lag) {
            let reading = match lag {
                Some(l) => format!("{:.1} s", l.as_secs_f64()),
                None => "not applying".into(),
            };
            let conn = match &self.when.replica_connection {
                Some(c) => format!(" (connection `{c}`)"),
                None => String::new(),
            };
            parts.push(format!(
                "replica lag{conn} {reading} (pauses above {max:?})"
            ));
        }
        if let (Some(n), Some(max)) = (r.active_sessions, self.when.active_sessions) {
            parts.push(format!("{n} active sessions (pauses above {max})"));
        }
        if let (Some(n), Some(max)) = (r.lock_waits, self.when.lock_waits) {
            parts.push(format!("{n} lock waits (pauses above {max})"));
        }
        parts.join(", ")
    }

    /// Read every watched signal once (also what `check` shows), and remember
    /// whether all were under their thresholds (see [`Throttle::wait`]).
    pub async fn readings(&mut self) -> Result<Readings, Error> {
        let mut r = Readings::default();
        if self.when.max_lag.is_some() {
            r.lag = Some(self.lag().await?);
        }
        if self.when.active_sessions.is_some() {
            r.active_sessions = Some(self.active_sessions().await?);
        }
        if self.when.lock_waits.is_some() {
            r.lock_waits = Some(self.lock_waits().await?);
        }
        self.healthy_at = over(&self.when, &r).is_none().then(Instant::now);
        Ok(r)
    }

    async fn lag(&self) -> Result<Option<Duration>, Error> {
        if let Some(replica) = &self.my_replica {
            return self.my_replica_lag(replica).await;
        }
        // The replica speaks the source's protocol (validation checks it).
        let dialect = self.source.dialect();
        match (
            &self.replica,
            dialect.replica_lag_sql(),
            dialect.primary_lag_sql(),
        ) {
            (Some(replica), Some(sql), _) => self.standby_lag(replica, sql).await,
            (None, _, Some(sql)) => self.primary_lag(sql).await,
            (Some(_), None, _) => Err(Error::NotAReplica {
                source_name: self.source.name.clone(),
                message: "a MariaDB/MySQL replica is connected by Throttle::connect".into(),
            }),
            // Refused by the validation pass; nothing to read.
            (None, _, None) => Ok(Some(Duration::ZERO)),
        }
    }

    /// On the standby ([`Dialect::replica_lag_sql`](crate::sql::Dialect::replica_lag_sql)):
    /// the seconds it is behind, or `primary` when it is not replaying.
    async fn standby_lag(&self, replica: &Db, sql: &str) -> Result<Option<Duration>, Error> {
        let rows = replica.fetch(&stmt(sql)).await?;
        let text = first_cell(&rows);
        if text.as_deref() == Some("primary") {
            return Err(Error::NotAReplica {
                source_name: self.source.name.clone(),
                message: "the server is not in recovery (pg_is_in_recovery() is false)".into(),
            });
        }
        Ok(Some(seconds(text.as_deref())))
    }

    /// On the primary: the largest lag its standbys report. The figure is
    /// as fresh as the standbys' last feedback.
    async fn primary_lag(&self, sql: &str) -> Result<Option<Duration>, Error> {
        let rows = self.source.fetch(&stmt(sql)).await?;
        Ok(Some(seconds(first_cell(&rows).as_deref())))
    }

    /// `Seconds_Behind_Master` of the replica's connection (the default one,
    /// or `replica_connection`); NULL (the SQL thread stopped, or the I/O
    /// thread cannot connect) is `None`.
    async fn my_replica_lag(&self, replica: &health::Replica) -> Result<Option<Duration>, Error> {
        match replica.lag().await? {
            ReplicaLag::NotConfigured => Err(Error::NotAReplica {
                source_name: self.source.name.clone(),
                message: match &self.when.replica_connection {
                    Some(c) => format!("the replica has no replication connection named `{c}`"),
                    None => "SHOW SLAVE STATUS is empty (no replication configured)".into(),
                },
            }),
            ReplicaLag::NotApplying => Ok(None),
            ReplicaLag::Behind(d) => Ok(Some(d)),
        }
    }

    /// Sessions running a statement on the source's database, not counting
    /// the one asking. (With `concurrency` above one, Lethe's other workers'
    /// batches count too: the threshold is about the server's load.)
    async fn active_sessions(&self) -> Result<u64, Error> {
        // No view (SQLite): refused by the validation pass; nothing to read.
        let Some(sql) = self.source.dialect().active_sessions_sql() else {
            return Ok(0);
        };
        Ok(self.source.count(&stmt(sql)).await?)
    }

    /// Sessions on the source's database waiting for a lock they asked for.
    async fn lock_waits(&mut self) -> Result<u64, Error> {
        let view = self.lock_view().await?;
        // No view (SQLite): refused by the validation pass; nothing to read.
        let Some(sql) = self.source.dialect().lock_waits_sql(view) else {
            return Ok(0);
        };
        Ok(self.source.count(&stmt(sql)).await?)
    }

    /// Which lock-wait view this server has, looked up once (engines with
    /// one view have no probe, and are asked with any).
    async fn lock_view(&mut self) -> Result<LockView, Error> {
        if let Some(v) = self.lock_view {
            return Ok(v);
        }
        let v = match self.source.dialect().lock_view_probe() {
            Some(sql) if self.source.count(&stmt(sql)).await? > 0 => LockView::InnodbLockWaits,
            _ => LockView::DataLockWaits,
        };
        self.lock_view = Some(v);
        Ok(v)
    }
}

/// The first signal over its threshold, with its reading as text.
fn over(when: &PauseWhen, r: &Readings) -> Option<(Reason, String)> {
    if let (Some(lag), Some(max)) = (r.lag, when.max_lag) {
        match lag {
            None => return Some((Reason::ReplicaLag, "not applying".into())),
            Some(l) if l > max => {
                return Some((Reason::ReplicaLag, format!("{:.1} s", l.as_secs_f64())));
            }
            Some(_) => {}
        }
    }
    if let (Some(n), Some(max)) = (r.lock_waits, when.lock_waits)
        && n > max
    {
        return Some((Reason::LockWaits, n.to_string()));
    }
    if let (Some(n), Some(max)) = (r.active_sessions, when.active_sessions)
        && n > max
    {
        return Some((Reason::ActiveSessions, n.to_string()));
    }
    None
}

fn first_cell(rows: &[crate::sql::TextRow]) -> Option<String> {
    rows.first().and_then(|r| r.first()).cloned().flatten()
}

/// Seconds as text (`12`, `0.25`) → a duration; unreadable or negative is zero
/// (clock skew between primary and replica can make a tiny lag negative).
fn seconds(text: Option<&str>) -> Duration {
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_default()
}

/// Seconds paused per source and reason, in Prometheus text format, for
/// `metrics.rs` to append to its exposition: the family
/// `lethe_throttle_seconds_total{source,reason}` (a counter).
pub fn render_metric(totals: &BTreeMap<(String, Reason), f64>) -> String {
    let mut out = String::new();
    let name = "lethe_throttle_seconds_total";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds the batch loop paused at batch boundaries because the database was over a pause_when threshold, by reason."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for ((source, reason), secs) in totals {
        let _ = writeln!(
            out,
            "{name}{{source=\"{}\",reason=\"{}\"}} {secs}",
            escape(source),
            reason.as_str()
        );
    }
    out
}

/// Escape a label value (`\`, `"` and newlines), as the exposition format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_from_text_are_never_negative() {
        assert_eq!(seconds(Some("1.5")), Duration::from_millis(1500));
        assert_eq!(seconds(Some("-0.02")), Duration::ZERO);
        assert_eq!(seconds(Some("x")), Duration::ZERO);
        assert_eq!(seconds(None), Duration::ZERO);
    }

    #[test]
    fn the_metric_is_a_counter_per_source_and_reason() {
        let mut totals = BTreeMap::new();
        totals.insert(("app".to_string(), Reason::ReplicaLag), 12.5);
        totals.insert(("a\"b".to_string(), Reason::LockWaits), 1.0);
        let text = render_metric(&totals);
        assert!(text.contains("# TYPE lethe_throttle_seconds_total counter\n"));
        assert!(text.contains(
            "lethe_throttle_seconds_total{source=\"app\",reason=\"replica_lag\"} 12.5\n"
        ));
        assert!(
            text.contains(
                "lethe_throttle_seconds_total{source=\"a\\\"b\",reason=\"lock_waits\"} 1\n"
            )
        );
    }

    fn when() -> PauseWhen {
        PauseWhen {
            replica: None,
            replica_connection: None,
            max_lag: Some(Duration::from_secs(1)),
            active_sessions: Some(10),
            lock_waits: Some(0),
            check_every: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_signal_pauses_only_above_its_threshold() {
        let at = |lag: Option<Option<Duration>>, sessions, locks| Readings {
            lag,
            active_sessions: Some(sessions),
            lock_waits: Some(locks),
        };
        let ms = |n| Some(Some(Duration::from_millis(n)));
        assert_eq!(over(&when(), &at(ms(1000), 10, 0)), None);
        assert_eq!(
            over(&when(), &at(ms(1100), 10, 0)),
            Some((Reason::ReplicaLag, "1.1 s".into()))
        );
        assert_eq!(
            over(&when(), &at(Some(None), 0, 0)),
            Some((Reason::ReplicaLag, "not applying".into()))
        );
        assert_eq!(
            over(&when(), &at(ms(0), 10, 1)),
            Some((Reason::LockWaits, "1".into()))
        );
        assert_eq!(
            over(&when(), &at(ms(0), 11, 0)),
            Some((Reason::ActiveSessions, "11".into()))
        );
        // Lag is named first when several are over: it is the one a
        // replica's readers notice.
        assert_eq!(
            over(&when(), &at(ms(5000), 99, 9)).map(|o| o.0),
            Some(Reason::ReplicaLag)
        );
        // A signal not watched never pauses.
        let unwatched = PauseWhen {
            max_lag: None,
            ..when()
        };
        assert_eq!(over(&unwatched, &at(ms(5000), 0, 0)), None);
    }

    #[test]
    fn waits_add_up_per_reason() {
        let mut w = Waited::default();
        w.add(Reason::ReplicaLag, Duration::from_millis(1500));
        w.add(Reason::ReplicaLag, Duration::from_millis(500));
        w.add(Reason::ActiveSessions, Duration::from_secs(1));
        assert_eq!(w.of(Reason::ReplicaLag), 2.0);
        assert_eq!(w.of(Reason::LockWaits), 0.0);
        assert_eq!(w.total(), 3.0);
        // Serialized under the metric's label values.
        assert_eq!(
            serde_json::to_string(&w.seconds).expect("json"),
            r#"{"replica_lag":2.0,"active_sessions":1.0}"#
        );
    }
}
