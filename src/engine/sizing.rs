//! Batches sized by time (`batch_time`, or `batch_size = "auto"`).
//!
//! A fixed batch size is right for one table on one day: a busy server, a
//! wider row or a colder cache makes the same batch hold its locks several
//! times longer. Like pt-online-schema-change's `--chunk-time`, the batch
//! loop measures how many rows per second each batch achieved, keeps a
//! weighted average of that rate, and sizes the next batch to last about
//! the target: `next = rate × target`, within `[min, batch_size_max]`.
//! Growth is at most ×2 per batch, so one fast batch on an empty range does
//! not make the next one hold locks for seconds; shrinking is immediate.
//!
//! Shrinking helps only while a batch's time is its rows' time. When it is
//! not (a plan that scans the whole table per statement, a lock wait), a
//! smaller batch takes as long as a larger one, and shrinking to the floor
//! would multiply the batches, each as long as before: measured on MariaDB
//! after its optimizer turned a cascade's three statements into scans, every
//! batch took ~130 ms from 1,600 rows down to 10, and the run went from 3 s
//! to 14 s. So when a smaller batch took no less time than the larger one
//! before it, the size is held there: not shrunk further until a batch meets
//! the target again (a lock wait that made one batch long is then forgotten
//! by the next, short one).
//!
//! This module only does arithmetic on the durations it is given (tests
//! inject them); it never reads the clock and never touches a database.

use super::BatchSizes;
use std::time::Duration;

/// Weight of the newest batch's rate in the running average.
const NEW_WEIGHT: f64 = 0.5;
/// Largest growth from one batch to the next.
const MAX_GROWTH: f64 = 2.0;
/// Smallest batch the controller chooses (unless the ceiling is lower):
/// below it the round trips, not the rows, are the cost.
const MIN_ROWS: usize = 10;
/// A batch of at most this fraction of the last one's rows that took more
/// than this fraction of its time was no shorter: shrinking did not help.
const SHORTER: f64 = 0.9;

/// `batch_time`: grows or shrinks the next batch from how long the last
/// ones took, within `batch_size_max`, to keep each transaction near the
/// target.
#[derive(Debug, Clone)]
pub struct BatchSizer {
    target: Duration,
    min: usize,
    max: usize,
    size: usize,
    /// Rows per second, weighted average of the batches so far.
    rate: Option<f64>,
    /// The last batch's rows and time.
    last: Option<(u64, Duration)>,
    /// The size the batch is not shrunk below: `min`, or the size of a
    /// batch that took no less time than the larger one before it (until
    /// one meets the target).
    floor: usize,
    stats: BatchSizes,
}

impl BatchSizer {
    /// `first` rows in the first batch, each batch aiming at `target`,
    /// never more than `max` rows.
    pub fn new(first: usize, target: Duration, max: usize) -> BatchSizer {
        let max = max.max(1);
        let min = MIN_ROWS.min(max);
        let size = first.clamp(min, max);
        BatchSizer {
            target,
            min,
            max,
            size,
            rate: None,
            last: None,
            floor: min,
            stats: BatchSizes {
                target_ms: target.as_millis() as u64,
                first: size,
                min: size,
                max: size,
                last: size,
            },
        }
    }

    /// The size of the next batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A batch of `rows` rows took `took` (its whole transaction): choose
    /// the next size. A batch that found nothing says nothing of the rate.
    pub fn observe(&mut self, rows: u64, took: Duration) -> usize {
        if rows == 0 {
            return self.size;
        }
        let secs = took.as_secs_f64().max(1e-4);
        let now = rows as f64 / secs;
        let rate = match self.rate {
            Some(r) => r * (1.0 - NEW_WEIGHT) + now * NEW_WEIGHT,
            None => now,
        };
        self.rate = Some(rate);
        if took <= self.target {
            self.floor = self.min;
        } else if let Some((prev_rows, prev_took)) = self.last
            && (rows as f64) <= prev_rows as f64 * SHORTER
            && took.as_secs_f64() > prev_took.as_secs_f64() * SHORTER
        {
            // Fewer rows, no shorter: shrinking does not help; hold here.
            self.floor = (rows as usize).clamp(self.min, self.max);
        }
        self.last = Some((rows, took));
        let want = rate * self.target.as_secs_f64();
        let ceiling = (self.size as f64 * MAX_GROWTH).min(self.max as f64);
        let next = want.min(ceiling).round().max(self.floor as f64) as usize;
        self.size = next.clamp(self.min, self.max);
        self.stats.min = self.stats.min.min(self.size);
        self.stats.max = self.stats.max.max(self.size);
        self.stats.last = self.size;
        self.size
    }

    /// The sizes chosen so far, for the run report.
    pub fn stats(&self) -> BatchSizes {
        self.stats.clone()
    }
}

/// Sizes chosen by several side-by-side workers, as one.
pub fn merge(into: &mut Option<BatchSizes>, s: BatchSizes) {
    match into {
        None => *into = Some(s),
        Some(a) => {
            a.min = a.min.min(s.min);
            a.max = a.max.max(s.max);
            a.last = s.last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_at_most_twice_per_batch_towards_the_target() {
        // 1,000 rows in 10 ms: 100,000 rows/s, 5,000 rows would take 50 ms.
        let mut s = BatchSizer::new(1_000, 50 * MS, 20_000);
        assert_eq!(s.observe(1_000, 10 * MS), 2_000, "capped at ×2");
        assert_eq!(s.observe(2_000, 20 * MS), 4_000);
        assert_eq!(s.observe(4_000, 40 * MS), 5_000, "the target reached");
        assert_eq!(s.observe(5_000, 50 * MS), 5_000, "and kept");
        let st = s.stats();
        assert_eq!(
            (st.first, st.min, st.max, st.last),
            (1_000, 1_000, 5_000, 5_000)
        );
        assert_eq!(st.target_ms, 50);
    }

    #[test]
    fn shrinks_at_once_when_batches_slow_down() {
        let mut s = BatchSizer::new(8_000, 50 * MS, 20_000);
        // 8,000 rows took 400 ms: 20,000 rows/s → 1,000 rows per 50 ms.
        assert_eq!(s.observe(8_000, 400 * MS), 1_000);
        // Then 1,000 rows in 300 ms: slower per row again, and shorter, so
        // the average rate falls and the batch shrinks further.
        let next = s.observe(1_000, 300 * MS);
        assert!((10..1_000).contains(&next), "{next}");
        assert_eq!(s.stats().min, next);
        // A batch that took as long with fewer rows (a lock wait) holds the
        // size instead of shrinking it on that evidence.
        let mut w = BatchSizer::new(8_000, 50 * MS, 20_000);
        w.observe(8_000, 400 * MS);
        assert_eq!(w.observe(1_000, 500 * MS), 1_000);
        // Met: the hold is lifted and the averaged rate decides again.
        let after = w.observe(1_000, 40 * MS);
        assert!((800..1_000).contains(&after), "{after}");
    }

    #[test]
    fn stays_within_bounds() {
        let mut s = BatchSizer::new(50_000, 50 * MS, 3_000);
        assert_eq!(s.size(), 3_000, "the first batch is capped by the ceiling");
        for _ in 0..10 {
            assert!(s.observe(3_000, MS) <= 3_000);
        }
        assert_eq!(s.size(), 3_000);
        for _ in 0..40 {
            s.observe(10, Duration::from_secs(5));
        }
        assert_eq!(s.size(), MIN_ROWS, "never below the floor");
        let tiny = BatchSizer::new(100, 50 * MS, 4);
        assert_eq!(tiny.size(), 4, "a ceiling below the floor wins");
    }

    #[test]
    fn a_shrink_that_does_not_shorten_the_batch_is_held() {
        // Every statement became a scan: ~130 ms a batch whatever its size.
        let mut s = BatchSizer::new(1_600, 50 * MS, 20_000);
        let first = s.observe(1_600, 130 * MS);
        assert!(
            first < 1_600,
            "a slow batch first shrinks the next: {first}"
        );
        let held = s.observe(first as u64, 131 * MS);
        assert_eq!(held, first, "no shorter with fewer rows: held");
        for _ in 0..20 {
            assert_eq!(
                s.observe(first as u64, 130 * MS),
                first,
                "not shrunk to the floor"
            );
        }
        // A batch that meets the target lifts the hold again.
        s.observe(first as u64, 20 * MS);
        let mut size = s.size();
        for _ in 0..10 {
            size = s.observe(size as u64, MS * ((size as u32 * 100 / 1_600).max(1)));
        }
        assert!(
            size < 1_600,
            "rows that cost their time shrink as before: {size}"
        );
    }

    #[test]
    fn a_shrink_that_shortens_the_batch_goes_on() {
        // The rows themselves got slower (10 µs each): time follows size.
        let mut s = BatchSizer::new(20_000, 50 * MS, 20_000);
        let mut size = s.size();
        for _ in 0..10 {
            size = s.observe(size as u64, Duration::from_micros(size as u64 * 10));
        }
        assert!((4_000..=6_000).contains(&size), "{size}");
    }

    #[test]
    fn an_empty_batch_changes_nothing() {
        let mut s = BatchSizer::new(1_000, 50 * MS, 20_000);
        assert_eq!(s.observe(0, Duration::from_secs(3)), 1_000);
        assert_eq!(s.observe(0, Duration::ZERO), 1_000);
    }
}
