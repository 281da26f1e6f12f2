//! `lethe daemon`: run every job on its cron schedule until SIGTERM.
//!
//! Why not tokio-cron-scheduler: its open issues are exactly the daemon's
//! duties (DST drift with time zones, overlapping async runs, repeated jobs
//! that stop firing, a shutdown that does not drain), and it reads the system
//! clock itself, so none of them could be proven away in a test. This is a
//! small loop on `croner` instead, with the clock passed in:
//!
//! - next fire times come from croner in the configured time zone, which
//!   resolves DST gaps (a 02:30 job fires at the first instant after the gap)
//!   and overlaps (fires once);
//! - each job has at most one run in flight: a fire that finds the previous
//!   run still going is skipped and counted, never queued or overlapped;
//! - the loop never sleeps longer than [`MAX_SLEEP`] and recomputes from the
//!   clock when it wakes, so a clock jump or a suspended host cannot stall it;
//!   fires missed while asleep are coalesced into one;
//! - on shutdown it stops firing, cancels in-flight runs (they stop at the next
//!   batch boundary) and waits for them;
//! - a new [`Schedule`] (SIGHUP: config and jobs re-read and validated by the
//!   CLI) replaces the entries between two fires; runs in flight finish under
//!   the configuration they started with and still block an overlapping fire
//!   of the same job. The loop never validates anything itself: what reaches
//!   it is already known good, and an invalid reload never reaches it.

use crate::error::ExitCode;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest the loop sleeps before looking at the clock again.
pub const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// A run's future, boxed so [`Runner`] and [`Clock`] stay object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Time, as the daemon sees it. Tests pass a simulated one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Sleep until `at`, or less (the loop re-checks `now` after waking).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()>;
}

/// The system clock, sleeping in chunks of at most [`MAX_SLEEP`].
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()> {
        let wait = (at - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(MAX_SLEEP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Runs one job once; the daemon's only way to start work.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, job: String, cancel: CancellationToken) -> BoxFuture<ExitCode>;
}

/// Parsing lives with the configuration, which validates every schedule
/// once; the daemon and its tests reach it here as well.
pub use crate::config::cron::{TimeError, parse_cron, parse_tz};

/// The next fire of `cron` strictly after `after`, evaluated in `tz`.
pub fn next_fire(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What happened, for tests, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    Fired {
        job: String,
        scheduled: DateTime<Utc>,
    },
    /// The previous run of the job was still going.
    SkippedOverlap {
        job: String,
        scheduled: DateTime<Utc>,
    },
    /// Fires missed while the daemon could not run (clock jump, suspend), coalesced.
    Missed {
        job: String,
        count: u64,
    },
    Finished {
        job: String,
        code: ExitCode,
    },
    /// A reload swapped in a new schedule of `jobs` entries.
    Reloaded {
        jobs: usize,
    },
    Drained,
}

/// Counters the health endpoint and metrics read.
#[derive(Debug, Default)]
pub struct DaemonStats {
    pub last_tick_unix: AtomicU64,
    pub fired: AtomicU64,
    pub skipped_overlap: AtomicU64,
    pub missed: AtomicU64,
    pub in_flight: AtomicU64,
}

/// One scheduled job: its name and its parsed cron.
pub struct Entry {
    pub job: String,
    pub cron: Cron,
}

/// A whole, validated schedule: what a reload swaps in at once.
pub struct Schedule {
    pub entries: Vec<Entry>,
    pub tz: Tz,
}

/// The daemon loop and what it needs: entries, zone, clock, runner, reloads.
pub struct Daemon {
    pub entries: Vec<Entry>,
    pub tz: Tz,
    pub clock: Arc<dyn Clock>,
    pub runner: Arc<dyn Runner>,
    pub stats: Arc<DaemonStats>,
    pub events: Option<tokio::sync::mpsc::UnboundedSender<DaemonEvent>>,
    /// Schedules that replace the running one (SIGHUP); `None`: it never changes.
    pub reload: Option<tokio::sync::mpsc::UnboundedReceiver<Schedule>>,
}

/// The next schedule from `rx`; never ready when there is none (or the
/// sender is gone), so the loop then just sleeps and fires.
async fn next_schedule(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Schedule>>,
) -> Schedule {
    if let Some(r) = rx.as_mut()
        && let Some(s) = r.recv().await
    {
        return s;
    }
    *rx = None;
    std::future::pending().await
}

impl Daemon {
    fn emit(&self, e: DaemonEvent) {
        match &e {
            DaemonEvent::Fired { job, scheduled } => {
                tracing::info!(job, %scheduled, "schedule fired")
            }
            DaemonEvent::SkippedOverlap { job, scheduled } => {
                tracing::warn!(job, %scheduled, "previous run still in flight; this fire is skipped")
            }
            DaemonEvent::Missed { job, count } => {
                tracing::warn!(job, count, "fires missed while asleep; running once")
            }
            DaemonEvent::Finished { job, code } => {
                tracing::info!(job, code = code.code(), "scheduled run finished")
            }
            DaemonEvent::Reloaded { jobs } => {
                tracing::info!(jobs, "new schedule in force")
            }
            DaemonEvent::Drained => tracing::info!("all in-flight runs drained"),
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Coalesce fires missed while asleep: the entry runs once, then resumes
    /// from `now`, not from the backlog. Sets `next` to the first fire after
    /// `now` and returns the latest scheduled instant that was due.
    fn coalesce(
        &self,
        entry: &Entry,
        tz: Tz,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        let mut after = due;
        let mut missed = 0u64;
        while let Some(n) = next_fire(&entry.cron, tz, after) {
            if n > now {
                *next = Some(n);
                break;
            }
            missed += 1;
            after = n;
        }
        if missed > 0 {
            self.stats.missed.fetch_add(missed, Ordering::Relaxed);
            self.emit(DaemonEvent::Missed {
                job: entry.job.clone(),
                count: missed,
            });
        }
        after
    }

    /// Start the entry's run for `scheduled`, unless its previous run is
    /// still in flight (then the fire is skipped and counted).
    fn fire(
        &self,
        entry: &Entry,
        scheduled: DateTime<Utc>,
        running: &mut BTreeMap<String, JoinHandle<()>>,
        runs_cancel: &CancellationToken,
    ) {
        if running.get(&entry.job).is_some_and(|h| !h.is_finished()) {
            self.stats.skipped_overlap.fetch_add(1, Ordering::Relaxed);
            self.emit(DaemonEvent::SkippedOverlap {
                job: entry.job.clone(),
                scheduled,
            });
            return;
        }
        self.stats.fired.fetch_add(1, Ordering::Relaxed);
        self.emit(DaemonEvent::Fired {
            job: entry.job.clone(),
            scheduled,
        });
        let fut = self
            .runner
            .run(entry.job.clone(), runs_cancel.child_token());
        let events = self.events.clone();
        let job = entry.job.clone();
        running.insert(
            entry.job.clone(),
            tokio::spawn(async move {
                let code = fut.await;
                tracing::info!(job, code = code.code(), "scheduled run finished");
                if let Some(tx) = events {
                    let _ = tx.send(DaemonEvent::Finished { job, code });
                }
            }),
        );
    }

    /// Run until `shutdown` is cancelled; then drain in-flight runs.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let start = self.clock.now();
        let mut entries = std::mem::take(&mut self.entries);
        let mut tz = self.tz;
        let mut reload = self.reload.take();
        // The next fire per entry, computed from the previous *scheduled* time.
        let mut next: Vec<Option<DateTime<Utc>>> = entries
            .iter()
            .map(|e| next_fire(&e.cron, tz, start))
            .collect();
        let mut running: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
        let runs_cancel = CancellationToken::new();
        loop {
            self.stats.last_tick_unix.store(
                self.clock.now().timestamp().max(0) as u64,
                Ordering::Relaxed,
            );
            running.retain(|_, h| !h.is_finished());
            self.stats
                .in_flight
                .store(running.len() as u64, Ordering::Relaxed);
            let earliest = next.iter().flatten().min().copied();
            let sleep = async {
                match earliest {
                    Some(at) => self.clock.sleep_until(at).await,
                    // Nothing will ever fire: wait for shutdown or a reload.
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                s = next_schedule(&mut reload) => {
                    // From now on: fires of the old schedule that were not
                    // yet due are dropped, none of the new one is back-dated.
                    let now = self.clock.now();
                    next = s.entries.iter().map(|e| next_fire(&e.cron, s.tz, now)).collect();
                    entries = s.entries;
                    tz = s.tz;
                    self.emit(DaemonEvent::Reloaded { jobs: entries.len() });
                    continue;
                }
                _ = shutdown.cancelled() => break,
            }
            let now = self.clock.now();
            for (i, entry) in entries.iter().enumerate() {
                let Some(due) = next[i] else { continue };
                if due > now {
                    continue;
                }
                let scheduled = self.coalesce(entry, tz, due, now, &mut next[i]);
                self.fire(entry, scheduled, &mut running, &runs_cancel);
            }
        }
        // Drain: in-flight runs stop at their next batch boundary.
        runs_cancel.cancel();
        for (_, h) in running {
            let _ = h.await;
        }
        self.stats.in_flight.store(0, Ordering::Relaxed);
        self.emit(DaemonEvent::Drained);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ny() -> Tz {
        parse_tz("America/New_York").unwrap()
    }

    #[test]
    fn a_daily_job_in_the_spring_gap_fires_once_after_the_gap() {
        let cron = parse_cron("0 30 2 * * *").unwrap();
        // 2026-03-08: New York clocks jump from 02:00 EST to 03:00 EDT.
        let before = Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap(); // 00:00 EST
        let fire = next_fire(&cron, ny(), before).unwrap();
        assert_eq!(
            fire,
            Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap(),
            "03:00 EDT, the first instant after the gap"
        );
        let next = next_fire(&cron, ny(), fire).unwrap();
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 3, 9, 6, 30, 0).unwrap(),
            "02:30 EDT the next day"
        );
    }

    #[test]
    fn a_daily_job_in_the_autumn_overlap_fires_once() {
        let cron = parse_cron("0 30 1 * * *").unwrap();
        // 2026-11-01: 01:00-02:00 happens twice in New York.
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 4, 0, 0).unwrap(); // 00:00 EDT
        let first = next_fire(&cron, ny(), start).unwrap();
        let second = next_fire(&cron, ny(), first).unwrap();
        assert_eq!(
            first.date_naive(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .unwrap()
                .date_naive()
        );
        assert!(
            second > Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap(),
            "no second fire on the repeated hour: {second}"
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(
            parse_cron("0 30 2 * *").is_err(),
            "5 fields: seconds are required"
        );
        assert!(parse_cron("0 61 2 * * *").is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }
}
