//! When a task runs: interval, once and cron schedules over epoch milliseconds.
//!
//! An interval runs on the grid anchored at its start time, a once task at its time, and a cron
//! task at its expression's fire times ([`CronSchedule`], in [`super::cron`]) not before its
//! start time. Misfire coalescing (the latest slot that has passed) is answered here for all
//! three.

pub use super::cron::CronSchedule;
pub use super::error::ScheduleError;
use super::task::TaskType;

/// A task's schedule over epoch milliseconds.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// `anchor_ms + k·every_ms` for k ≥ 0.
    Interval { anchor_ms: i64, every_ms: i64 },
    /// One run.
    Once { at_ms: i64 },
    /// The cron fire times not before `not_before_ms`.
    Cron {
        /// Boxed: most tasks are intervals, and an idle task's size is what a node's capacity
        /// is counted in.
        cron: Box<CronSchedule>,
        not_before_ms: i64,
    },
}

impl Schedule {
    /// Builds a schedule. `anchor_ms` is the interval's anchor (the stored start time), the run
    /// time of a once task, or the earliest fire time of a cron task (`i64::MIN` for none).
    pub fn build(
        task_type: TaskType,
        interval_seconds: Option<u64>,
        cron_expression: Option<&str>,
        timezone: Option<&str>,
        anchor_ms: i64,
    ) -> Result<Self, ScheduleError> {
        match task_type {
            TaskType::Interval => {
                let seconds = interval_seconds.ok_or(ScheduleError::MissingInterval)?;
                let every_ms = i64::try_from(seconds)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .filter(|&ms| ms > 0)
                    .ok_or(ScheduleError::InvalidInterval)?;
                Ok(Schedule::Interval {
                    anchor_ms,
                    every_ms,
                })
            }
            TaskType::Once => Ok(Schedule::Once { at_ms: anchor_ms }),
            TaskType::Cron => {
                let expression = cron_expression.ok_or(ScheduleError::MissingCron)?;
                let cron = CronSchedule::parse(expression, timezone.unwrap_or("UTC"))?;
                Ok(Schedule::Cron {
                    cron: Box::new(cron),
                    not_before_ms: anchor_ms,
                })
            }
        }
    }

    /// The first run of a task (re)scheduled at `now_ms`.
    ///
    /// Interval: the anchor if it is after now, else the first anchored slot after now (an
    /// anchor equal to now gives now + interval). Once: the run time, or now if it has passed.
    /// Cron: the first fire time after now and not before the start time.
    pub fn first_run(&self, now_ms: i64) -> Option<i64> {
        match self {
            Schedule::Interval { .. } => self.next_after(now_ms),
            Schedule::Once { at_ms } => Some((*at_ms).max(now_ms)),
            Schedule::Cron { .. } => self.next_after(now_ms),
        }
    }

    /// The run after slot `prev_ms`, strictly later. Interval runs stay on the anchored grid (no
    /// drift); a once task has none.
    pub fn next_after(&self, prev_ms: i64) -> Option<i64> {
        match self {
            Schedule::Interval {
                anchor_ms,
                every_ms,
            } => interval_next_after(*anchor_ms, *every_ms, prev_ms),
            Schedule::Once { .. } => None,
            Schedule::Cron {
                cron,
                not_before_ms,
            } => cron.next_after(prev_ms.max(not_before_ms.saturating_sub(1))),
        }
    }

    /// Misfire coalescing: given an overdue slot `due_ms <= now_ms`, the latest slot `s` with
    /// `due_ms <= s <= now_ms` (`due_ms` itself when no later slot has passed).
    pub fn latest_due(&self, due_ms: i64, now_ms: i64) -> i64 {
        if now_ms <= due_ms {
            return due_ms;
        }
        let latest = match self {
            Schedule::Interval {
                anchor_ms,
                every_ms,
            } => interval_latest_at_or_before(*anchor_ms, *every_ms, now_ms),
            Schedule::Once { .. } => None,
            Schedule::Cron { cron, .. } => cron.latest_at_or_before(now_ms),
        };
        latest.map_or(due_ms, |s| s.max(due_ms))
    }

    /// How many slots lie in `first_ms ..= last_ms`, where `first_ms` is a slot: counted
    /// exactly on an interval grid, walked one by one for cron up to `cap` (the count then
    /// stops at `cap`, so a long outage of a per-second cron costs bounded work).
    pub fn slots_through(&self, first_ms: i64, last_ms: i64, cap: u64) -> u64 {
        if last_ms < first_ms {
            return 0;
        }
        match self {
            Schedule::Interval {
                anchor_ms,
                every_ms,
            } if *every_ms > 0 => {
                // `first_ms` itself (on the grid or not, after a re-anchoring), then the grid
                // points after it.
                let after = match (
                    interval_next_after(*anchor_ms, *every_ms, first_ms),
                    interval_latest_at_or_before(*anchor_ms, *every_ms, last_ms),
                ) {
                    (Some(a), Some(b)) if a <= b => {
                        (i128::from(b) - i128::from(a)) / i128::from(*every_ms) + 1
                    }
                    _ => 0,
                };
                u64::try_from(after + 1).unwrap_or(u64::MAX).min(cap)
            }
            Schedule::Interval { .. } | Schedule::Once { .. } => 1,
            Schedule::Cron { .. } => {
                let mut n = 1;
                let mut at = first_ms;
                while n < cap {
                    match self.next_after(at) {
                        Some(next) if next <= last_ms => {
                            n += 1;
                            at = next;
                        }
                        _ => break,
                    }
                }
                n
            }
        }
    }
}

/// The smallest `anchor + k·every > after` with k ≥ 0.
fn interval_next_after(anchor: i64, every: i64, after: i64) -> Option<i64> {
    if every <= 0 {
        return None;
    }
    if anchor > after {
        return Some(anchor);
    }
    let (anchor, every, after) = (i128::from(anchor), i128::from(every), i128::from(after));
    let k = (after - anchor) / every + 1;
    i64::try_from(anchor + k * every).ok()
}

/// The largest `anchor + k·every <= at` with k ≥ 0.
fn interval_latest_at_or_before(anchor: i64, every: i64, at: i64) -> Option<i64> {
    if every <= 0 || at < anchor {
        return None;
    }
    let (anchor, every, at) = (i128::from(anchor), i128::from(every), i128::from(at));
    i64::try_from(anchor + (at - anchor) / every * every).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    // --- interval -----------------------------------------------------------------------------

    fn every(anchor: i64, seconds: u64) -> Schedule {
        Schedule::build(TaskType::Interval, Some(seconds), None, None, anchor).unwrap()
    }

    #[test]
    fn an_interval_with_a_future_anchor_first_runs_at_the_anchor() {
        assert_eq!(every(10_000, 20).first_run(5_000), Some(10_000));
    }

    #[test]
    fn an_interval_anchored_now_first_runs_one_interval_later() {
        assert_eq!(every(5_000, 20).first_run(5_000), Some(25_000));
    }

    #[test]
    fn an_interval_with_a_past_anchor_first_runs_at_the_next_anchored_slot() {
        // Slots 0, 20 s, 40 s …; now = 45 s.
        assert_eq!(every(0, 20).first_run(45_000), Some(60_000));
        assert_eq!(every(0, 20).first_run(40_000), Some(60_000));
    }

    #[test]
    fn interval_runs_stay_on_the_anchored_grid() {
        let s = every(1_000, 20);
        assert_eq!(s.next_after(21_000), Some(41_000));
        // Running late does not shift the grid.
        assert_eq!(s.next_after(21_750), Some(41_000));
        assert_eq!(s.next_after(-5_000), Some(1_000));
    }

    #[test]
    fn a_zero_interval_is_rejected() {
        let e = Schedule::build(TaskType::Interval, Some(0), None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::InvalidInterval);
        assert_eq!(e.field(), "interval_seconds");
    }

    #[test]
    fn an_interval_task_without_an_interval_is_rejected() {
        let e = Schedule::build(TaskType::Interval, None, None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::MissingInterval);
    }

    #[test]
    fn an_interval_too_large_to_count_in_milliseconds_is_rejected() {
        let e = Schedule::build(TaskType::Interval, Some(u64::MAX), None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::InvalidInterval);
    }

    #[test]
    fn an_interval_past_the_end_of_time_has_no_next_run() {
        let s = every(i64::MAX - 10, 1);
        assert_eq!(s.next_after(i64::MAX - 5), None);
    }

    #[test]
    fn interval_misfires_coalesce_to_the_latest_passed_slot() {
        let s = every(0, 20);
        assert_eq!(s.latest_due(20_000, 95_000), 80_000);
        assert_eq!(s.latest_due(20_000, 100_000), 100_000);
        assert_eq!(s.latest_due(20_000, 39_999), 20_000);
        assert_eq!(s.latest_due(20_000, 20_000), 20_000);
    }

    #[test]
    fn interval_misfire_coalescing_never_goes_before_the_due_slot() {
        // A due time off the grid (re-anchored since) is kept when no later slot passed.
        assert_eq!(every(0, 20).latest_due(30_000, 35_000), 30_000);
        assert_eq!(every(0, 20).latest_due(30_000, 45_000), 40_000);
    }

    #[test]
    fn slots_missed_on_an_interval_grid_are_counted_exactly() {
        let s = every(0, 20);
        assert_eq!(s.slots_through(20_000, 20_000, 100), 1);
        assert_eq!(s.slots_through(20_000, 39_999, 100), 1);
        assert_eq!(s.slots_through(20_000, 100_000, 100), 5);
        assert_eq!(s.slots_through(20_000, 100_000, 3), 3);
        assert_eq!(s.slots_through(20_000, 10_000, 100), 0);
        // A due time off the grid counts itself and the grid points after it.
        assert_eq!(s.slots_through(30_000, 40_000, 100), 2);
        assert_eq!(s.slots_through(30_000, 35_000, 100), 1);
        // A year of per-second slots is arithmetic, not a walk.
        let second = every(0, 1);
        assert_eq!(
            second.slots_through(0, 365 * 86_400_000, u64::MAX),
            365 * 86_400 + 1
        );
    }

    #[test]
    fn slots_missed_by_a_cron_schedule_are_walked_up_to_the_cap() {
        let s = Schedule::build(TaskType::Cron, None, Some("0 * * * * ?"), Some("UTC"), 0).unwrap();
        assert_eq!(s.slots_through(60_000, 60_000, 100), 1);
        assert_eq!(s.slots_through(60_000, 600_000, 100), 10);
        assert_eq!(s.slots_through(60_000, 600_000, 4), 4);
    }

    // --- once ---------------------------------------------------------------------------------

    #[test]
    fn a_once_task_runs_at_its_time_or_at_once_if_it_has_passed() {
        let s = Schedule::build(TaskType::Once, None, None, None, 50_000).unwrap();
        assert_eq!(s.first_run(10_000), Some(50_000));
        assert_eq!(s.first_run(70_000), Some(70_000));
        assert_eq!(s.next_after(50_000), None);
        assert_eq!(s.latest_due(50_000, 90_000), 50_000);
    }

    // --- cron schedules -----------------------------------------------------------------------

    #[test]
    fn a_cron_task_without_an_expression_is_rejected() {
        let e = Schedule::build(TaskType::Cron, None, None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::MissingCron);
    }

    #[test]
    fn a_cron_schedule_defaults_to_utc() {
        let s =
            Schedule::build(TaskType::Cron, None, Some("0 0 12 * * ?"), None, i64::MIN).unwrap();
        let first = s.first_run(ms("2025-04-22T10:00:00Z")).unwrap();
        assert_eq!(utc(first), "2025-04-22T12:00:00Z");
        assert_eq!(utc(s.next_after(first).unwrap()), "2025-04-23T12:00:00Z");
    }

    #[test]
    fn a_cron_schedule_does_not_fire_before_its_start_time() {
        let s = Schedule::build(
            TaskType::Cron,
            None,
            Some("0 0 12 * * ?"),
            Some("UTC"),
            ms("2025-05-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            utc(s.first_run(ms("2025-04-22T10:00:00Z")).unwrap()),
            "2025-05-01T12:00:00Z"
        );
        assert_eq!(
            utc(s.next_after(ms("2025-04-25T12:00:00Z")).unwrap()),
            "2025-05-01T12:00:00Z"
        );
    }

    #[test]
    fn a_cron_fire_time_equal_to_now_is_not_the_first_run() {
        let s = Schedule::build(TaskType::Cron, None, Some("*/10 * * * * *"), None, 0).unwrap();
        let now = ms("2025-04-22T10:00:10Z");
        assert_eq!(utc(s.first_run(now).unwrap()), "2025-04-22T10:00:20Z");
        assert_eq!(utc(s.first_run(now + 1).unwrap()), "2025-04-22T10:00:20Z");
    }
}
