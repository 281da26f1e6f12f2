//! The daemon loop under a simulated clock: every tokio-cron-scheduler issue
//! the design names (DST drift, overlapping runs, jobs that stop firing,
//! shutdown that does not drain), proven not to bite. No test sleeps.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use lethe::ExitCode;
use lethe::schedule::{
    BoxFuture, Clock, Daemon, DaemonEvent, DaemonStats, Entry, Runner, parse_cron, parse_tz,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A clock that jumps straight to whatever the daemon sleeps until, stops the
/// daemon at `end`, and can jump forward once (a suspended host).
struct SimClock {
    now: Mutex<DateTime<Utc>>,
    end: DateTime<Utc>,
    jump: Mutex<Option<(DateTime<Utc>, TimeDelta)>>,
    shutdown: CancellationToken,
}

impl SimClock {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>, shutdown: CancellationToken) -> Arc<SimClock> {
        Arc::new(SimClock {
            now: Mutex::new(start),
            end,
            jump: Mutex::new(None),
            shutdown,
        })
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()> {
        {
            let mut now = self.now.lock().unwrap();
            if at > *now {
                *now = at;
            }
            let mut jump = self.jump.lock().unwrap();
            if let Some((when, by)) = *jump
                && *now >= when
            {
                *now += by;
                *jump = None;
            }
            if *now >= self.end {
                self.shutdown.cancel();
            }
        }
        // Let the runs see the new time before the daemon looks again.
        Box::pin(async {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        })
    }
}

/// A run that lasts `duration` of simulated time and records overlap.
struct SimRunner {
    clock: Arc<SimClock>,
    duration: TimeDelta,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

impl Runner for SimRunner {
    fn run(&self, _job: String, cancel: CancellationToken) -> BoxFuture<ExitCode> {
        let clock = self.clock.clone();
        let until = clock.now() + self.duration;
        let (active, max_active) = (self.active.clone(), self.max_active.clone());
        Box::pin(async move {
            let n = active.fetch_add(1, Ordering::SeqCst) + 1;
            max_active.fetch_max(n, Ordering::SeqCst);
            // Like a real run: done at `until`, or at the next batch boundary after a cancel.
            while clock.now() < until && !cancel.is_cancelled() {
                tokio::task::yield_now().await;
            }
            active.fetch_sub(1, Ordering::SeqCst);
            ExitCode::Ok
        })
    }
}

struct Sim {
    events: Vec<DaemonEvent>,
    max_active: usize,
    stats: Arc<DaemonStats>,
}

async fn simulate(
    schedule: &str,
    tz: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    run_for: TimeDelta,
    jump: Option<(DateTime<Utc>, TimeDelta)>,
) -> Sim {
    let shutdown = CancellationToken::new();
    let clock = SimClock::new(start, end, shutdown.clone());
    *clock.jump.lock().unwrap() = jump;
    let max_active = Arc::new(AtomicUsize::new(0));
    let runner = SimRunner {
        clock: clock.clone(),
        duration: run_for,
        active: Arc::new(AtomicUsize::new(0)),
        max_active: max_active.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stats = Arc::new(DaemonStats::default());
    let daemon = Daemon {
        entries: vec![Entry {
            job: "j".into(),
            cron: parse_cron(schedule).unwrap(),
        }],
        tz: parse_tz(tz).unwrap(),
        clock: clock.clone(),
        runner: Arc::new(runner),
        stats: stats.clone(),
        events: Some(tx),
        reload: None,
    };
    daemon.run(shutdown).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    Sim {
        events,
        max_active: max_active.load(Ordering::SeqCst),
        stats,
    }
}

fn fired(sim: &Sim) -> Vec<DateTime<Utc>> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            DaemonEvent::Fired { scheduled, .. } => Some(*scheduled),
            _ => None,
        })
        .collect()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[tokio::test]
async fn fires_once_a_day_across_spring_forward() {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    let sim = simulate(
        "0 30 2 * * *",
        "America/New_York",
        utc(2026, 3, 7, 0, 0),
        utc(2026, 3, 10, 12, 0),
        TimeDelta::minutes(5),
        None,
    )
    .await;
    assert_eq!(
        fired(&sim),
        vec![
            utc(2026, 3, 7, 7, 30),
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 9, 6, 30),
            utc(2026, 3, 10, 6, 30)
        ],
        "02:30 EST, then 03:00 EDT (after the gap), then 02:30 EDT"
    );
}

#[tokio::test]
async fn fires_once_a_day_across_fall_back() {
    // New York, 2026-11-01: 01:30 happens twice; the job runs once.
    let sim = simulate(
        "0 30 1 * * *",
        "America/New_York",
        utc(2026, 10, 31, 0, 0),
        utc(2026, 11, 2, 12, 0),
        TimeDelta::minutes(5),
        None,
    )
    .await;
    let f = fired(&sim);
    assert_eq!(f.len(), 3, "{f:?}");
    assert_eq!(f[0], utc(2026, 10, 31, 5, 30));
    assert!(
        f[1] == utc(2026, 11, 1, 5, 30) || f[1] == utc(2026, 11, 1, 6, 30),
        "{f:?}"
    );
    assert_eq!(f[2], utc(2026, 11, 2, 6, 30));
}

#[tokio::test]
async fn a_job_in_a_zone_without_dst_fires_at_local_time() {
    let sim = simulate(
        "0 30 2 * * *",
        "Asia/Shanghai",
        utc(2026, 3, 7, 0, 0),
        utc(2026, 3, 9, 0, 0),
        TimeDelta::minutes(5),
        None,
    )
    .await;
    assert_eq!(
        fired(&sim),
        vec![utc(2026, 3, 7, 18, 30), utc(2026, 3, 8, 18, 30)],
        "02:30 CST = 18:30 UTC the day before"
    );
}

#[tokio::test]
async fn a_slow_run_is_never_overlapped() {
    // Every 10 s, each run takes 25 s.
    let end = utc(2026, 1, 1, 0, 9) + TimeDelta::seconds(55);
    let sim = simulate(
        "*/10 * * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 0),
        end,
        TimeDelta::seconds(25),
        None,
    )
    .await;
    assert_eq!(sim.max_active, 1, "never two runs of one job at once");
    let skipped = sim
        .events
        .iter()
        .filter(|e| matches!(e, DaemonEvent::SkippedOverlap { .. }))
        .count();
    let f = fired(&sim);
    assert!(skipped >= 30, "fires during a run are skipped ({skipped})");
    assert_eq!(
        f.len() + skipped,
        59,
        "every fire (00:00:10 to 00:09:50) is either run or skipped"
    );
    for pair in f.windows(2) {
        assert!(
            pair[1] - pair[0] >= TimeDelta::seconds(30),
            "a new run starts only after the last ended: {pair:?}"
        );
    }
}

#[tokio::test]
async fn a_repeated_job_keeps_firing_for_a_whole_day() {
    let end = utc(2026, 1, 1, 23, 59) + TimeDelta::seconds(55);
    let sim = simulate(
        "*/10 * * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 0),
        end,
        TimeDelta::seconds(1),
        None,
    )
    .await;
    let f = fired(&sim);
    assert_eq!(f.len(), 8639, "one fire every 10 s, 00:00:10 to 23:59:50");
    assert!(
        f.windows(2).all(|p| p[1] - p[0] == TimeDelta::seconds(10)),
        "no gap, no drift"
    );
    assert!(
        sim.stats.last_tick_unix.load(Ordering::Relaxed)
            >= utc(2026, 1, 1, 23, 59).timestamp() as u64
    );
}

#[tokio::test]
async fn a_clock_jump_is_coalesced_and_firing_resumes() {
    // The host sleeps for two hours at 01:00; a job every minute must neither
    // replay 120 missed fires nor stop.
    let sim = simulate(
        "0 * * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 4, 0),
        TimeDelta::seconds(5),
        Some((utc(2026, 1, 1, 1, 0), TimeDelta::hours(2))),
    )
    .await;
    let missed: u64 = sim
        .events
        .iter()
        .filter_map(|e| match e {
            DaemonEvent::Missed { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert!(
        (118..=121).contains(&missed),
        "the backlog is counted, not replayed ({missed})"
    );
    let f = fired(&sim);
    assert!(
        f.iter().any(|t| *t > utc(2026, 1, 1, 3, 50)),
        "firing resumed after the jump"
    );
    assert!(f.len() < 190, "no replay: {} fires", f.len());
}

/// A run that waits until it is cancelled, then finishes its "batch".
struct DrainRunner {
    started: Arc<tokio::sync::Notify>,
    finished: Arc<AtomicBool>,
}

impl Runner for DrainRunner {
    fn run(&self, _job: String, cancel: CancellationToken) -> BoxFuture<ExitCode> {
        let (started, finished) = (self.started.clone(), self.finished.clone());
        Box::pin(async move {
            started.notify_one();
            cancel.cancelled().await;
            tokio::task::yield_now().await;
            finished.store(true, Ordering::SeqCst);
            ExitCode::Partial
        })
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_runs() {
    let shutdown = CancellationToken::new();
    let clock = SimClock::new(
        utc(2026, 1, 1, 0, 0),
        utc(2030, 1, 1, 0, 0),
        CancellationToken::new(),
    );
    let started = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let daemon = Daemon {
        entries: vec![Entry {
            job: "j".into(),
            cron: parse_cron("0 * * * * *").unwrap(),
        }],
        tz: parse_tz("UTC").unwrap(),
        clock,
        runner: Arc::new(DrainRunner {
            started: started.clone(),
            finished: finished.clone(),
        }),
        stats: Arc::new(DaemonStats::default()),
        events: Some(tx),
        reload: None,
    };
    let handle = tokio::spawn(daemon.run(shutdown.clone()));
    started.notified().await;
    shutdown.cancel();
    handle.await.unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "the daemon returned only after the in-flight run finished"
    );
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert_eq!(events.last(), Some(&DaemonEvent::Drained));
    assert!(events.iter().any(|e| matches!(
        e,
        DaemonEvent::Finished {
            code: ExitCode::Partial,
            ..
        }
    )));
}
