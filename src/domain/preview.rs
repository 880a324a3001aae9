//! The next fire times of a schedule, shown before a task exists (`POST /schedules/preview`,
//! a create's dry run) or while it runs (`GET /tasks/{id}/preview`), each with its local time
//! and the daylight-saving event that shaped it.
//!
//! The times come from [`Schedule`] itself, the code that schedules the runs, so a preview
//! cannot disagree with what fires. The notes come from [`CronSchedule`]'s own reading of the
//! wall clock:
//!
//! - [`DstNote::GapSkipped`] on a fire whose search passed over a local time the expression
//!   matches that did not exist (spring forward), i.e. the first fire after a skipped one;
//! - [`DstNote::Overlap`] on a fire whose local time occurs twice (fall back): it is the second
//!   occurrence, the only one that fires.
//!
//! Interval and once schedules live on the UTC time line and carry no notes.
//!
//! [`CronSchedule`]: super::cron::CronSchedule

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;

use super::schedule::Schedule;
use super::stop::StopCondition;
use super::task::TaskStatus;

/// The most fire times one preview lists.
pub const MAX_COUNT: usize = 100;
/// How many fire times a preview lists when not told.
pub const DEFAULT_COUNT: usize = 10;

/// A daylight-saving event behind a fire time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstNote {
    /// A matching local time before this fire did not exist and was skipped.
    GapSkipped,
    /// This fire's local time occurs twice; it fires at the second occurrence only.
    Overlap,
}

impl DstNote {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DstNote::GapSkipped => "dst_gap_skipped",
            DstNote::Overlap => "dst_overlap",
        }
    }
}

/// One fire time of a preview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    pub at_ms: i64,
    /// The fire time on the schedule's wall clock (with the offset in force then).
    pub local: DateTime<FixedOffset>,
    pub note: Option<DstNote>,
}

/// Where a preview begins: the first fire time, and the instant after which it was searched
/// (what the first fire's notes are judged from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub first_ms: i64,
    pub since_ms: i64,
}

/// The zone fire times are shown in: a cron schedule's own zone, else `display`.
pub fn zone_of(schedule: &Schedule, display: Tz) -> Tz {
    match schedule {
        Schedule::Cron { cron, .. } => cron.timezone(),
        _ => display,
    }
}

/// The start of a schedule previewed on its own: its fire times from `start_ms` on (inclusive;
/// past or future), or, without one, those a task created at `now_ms` would run at first.
/// `schedule` must have been built with `start_ms` (or `now_ms`) as its anchor.
pub fn start_of_schedule(schedule: &Schedule, start_ms: Option<i64>, now_ms: i64) -> Option<Start> {
    let since_ms = match start_ms {
        Some(s) => s.checked_sub(1)?,
        None => now_ms,
    };
    let first_ms = match schedule {
        Schedule::Once { at_ms } => *at_ms,
        _ => schedule.next_after(since_ms)?,
    };
    Some(Start { first_ms, since_ms })
}

/// The start of a stored task's preview: its `next_run_time` while it is pending or running;
/// for a paused task, the slots a resume at `now_ms` would run (the first slot after now; a
/// `once` task whose time has passed, now); none for a finished task.
pub fn start_of_task(
    schedule: &Schedule,
    status: TaskStatus,
    next_run_time: Option<i64>,
    now_ms: i64,
) -> Option<Start> {
    match status {
        TaskStatus::Pending | TaskStatus::Running => {
            let first_ms = next_run_time?;
            Some(Start {
                first_ms,
                since_ms: previous_slot(schedule, first_ms),
            })
        }
        TaskStatus::Paused => Some(Start {
            first_ms: schedule.first_run(now_ms)?,
            since_ms: now_ms,
        }),
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Stopped => None,
    }
}

/// The slot before `first_ms` (not before the schedule's start), or the instant before it.
fn previous_slot(schedule: &Schedule, first_ms: i64) -> i64 {
    let before = first_ms.saturating_sub(1);
    match schedule {
        Schedule::Cron {
            cron,
            not_before_ms,
        } => cron
            .latest_at_or_before(before)
            .map_or(before, |prev| prev.max(not_before_ms.saturating_sub(1))),
        _ => before,
    }
}

/// Up to `count` fire times of `schedule` from `start` on, each strictly after the one before,
/// shown in `display` (a cron schedule's own zone wins).
pub fn fires(schedule: &Schedule, display: Tz, start: Start, count: usize) -> Vec<Fire> {
    let zone = zone_of(schedule, display);
    let mut out = Vec::with_capacity(count.min(MAX_COUNT));
    let (mut since, mut at) = (start.since_ms, Some(start.first_ms));
    while let Some(at_ms) = at {
        if out.len() >= count {
            break;
        }
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(at_ms) else {
            break;
        };
        out.push(Fire {
            at_ms,
            local: utc.with_timezone(&zone).fixed_offset(),
            note: note_of(schedule, since, at_ms),
        });
        since = at_ms;
        at = schedule.next_after(at_ms).filter(|&next| next > at_ms);
    }
    out
}

/// The fire times a task's stop condition still allows: at most `max_cnt` executions in all
/// (`executed` so far), none after `end_time`.
pub fn within_stop(mut fires: Vec<Fire>, stop: &StopCondition, executed: u64) -> Vec<Fire> {
    if let Some(max) = stop.max_cnt {
        let left = usize::try_from(max.saturating_sub(executed)).unwrap_or(usize::MAX);
        fires.truncate(left);
    }
    if let Some(end) = stop.end_time {
        let end_ms = end.timestamp_millis();
        fires.retain(|f| f.at_ms <= end_ms);
    }
    fires
}

fn note_of(schedule: &Schedule, since_ms: i64, at_ms: i64) -> Option<DstNote> {
    let Schedule::Cron { cron, .. } = schedule else {
        return None;
    };
    if cron.skipped_gap_between(since_ms, at_ms) {
        Some(DstNote::GapSkipped)
    } else if cron.in_repeated_local_time(at_ms) {
        Some(DstNote::Overlap)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskType;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn cron(expr: &str, zone: &str, start: &str) -> (Schedule, Start) {
        let start_ms = ms(start);
        let s = Schedule::build(TaskType::Cron, None, Some(expr), Some(zone), start_ms).unwrap();
        let st = start_of_schedule(&s, Some(start_ms), 0).unwrap();
        (s, st)
    }

    /// (UTC, local, note) of each fire.
    fn shown(fires: &[Fire]) -> Vec<(String, String, Option<&'static str>)> {
        fires
            .iter()
            .map(|f| {
                (
                    crate::time::to_rfc3339(f.at_ms),
                    f.local.to_rfc3339(),
                    f.note.map(DstNote::as_str),
                )
            })
            .collect()
    }

    fn row(
        utc: &str,
        local: &str,
        note: Option<&'static str>,
    ) -> (String, String, Option<&'static str>) {
        (utc.into(), local.into(), note)
    }

    #[test]
    fn the_first_fire_after_a_berlin_spring_forward_gap_says_the_gap_was_skipped() {
        let (s, st) = cron("0 30 2 * * ?", "Europe/Berlin", "2026-03-27T12:00:00Z");
        let f = fires(&s, chrono_tz::UTC, st, 3);
        assert_eq!(
            shown(&f),
            vec![
                row(
                    "2026-03-28T01:30:00.000Z",
                    "2026-03-28T02:30:00+01:00",
                    None
                ),
                row(
                    "2026-03-30T00:30:00.000Z",
                    "2026-03-30T02:30:00+02:00",
                    Some("dst_gap_skipped")
                ),
                row(
                    "2026-03-31T00:30:00.000Z",
                    "2026-03-31T02:30:00+02:00",
                    None
                ),
            ]
        );
    }

    #[test]
    fn a_half_hourly_schedule_resumes_after_the_gap_with_the_note() {
        let (s, st) = cron("0 0/30 * * * ?", "Europe/Berlin", "2026-03-29T00:30:00Z");
        let f = fires(&s, chrono_tz::UTC, st, 2);
        assert_eq!(
            shown(&f),
            vec![
                row(
                    "2026-03-29T00:30:00.000Z",
                    "2026-03-29T01:30:00+01:00",
                    None
                ),
                row(
                    "2026-03-29T01:00:00.000Z",
                    "2026-03-29T03:00:00+02:00",
                    Some("dst_gap_skipped")
                ),
            ]
        );
    }

    #[test]
    fn a_berlin_fall_back_fires_once_at_the_second_occurrence_with_the_note() {
        let (s, st) = cron("0 30 2 * * ?", "Europe/Berlin", "2026-10-23T12:00:00Z");
        let f = fires(&s, chrono_tz::UTC, st, 3);
        assert_eq!(
            shown(&f),
            vec![
                row(
                    "2026-10-24T00:30:00.000Z",
                    "2026-10-24T02:30:00+02:00",
                    None
                ),
                row(
                    "2026-10-25T01:30:00.000Z",
                    "2026-10-25T02:30:00+01:00",
                    Some("dst_overlap")
                ),
                row(
                    "2026-10-26T01:30:00.000Z",
                    "2026-10-26T02:30:00+01:00",
                    None
                ),
            ]
        );
    }

    #[test]
    fn new_york_gaps_and_overlaps_are_noted_too() {
        let (s, st) = cron("0 30 2 * * ?", "America/New_York", "2026-03-07T12:00:00Z");
        assert_eq!(
            shown(&fires(&s, chrono_tz::UTC, st, 2)),
            vec![
                row(
                    "2026-03-09T06:30:00.000Z",
                    "2026-03-09T02:30:00-04:00",
                    Some("dst_gap_skipped")
                ),
                row(
                    "2026-03-10T06:30:00.000Z",
                    "2026-03-10T02:30:00-04:00",
                    None
                ),
            ]
        );
        let (s, st) = cron("0 30 1 * * ?", "America/New_York", "2026-10-31T12:00:00Z");
        assert_eq!(
            shown(&fires(&s, chrono_tz::UTC, st, 2)),
            vec![
                row(
                    "2026-11-01T06:30:00.000Z",
                    "2026-11-01T01:30:00-05:00",
                    Some("dst_overlap")
                ),
                row(
                    "2026-11-02T06:30:00.000Z",
                    "2026-11-02T01:30:00-05:00",
                    None
                ),
            ]
        );
    }

    #[test]
    fn a_stored_task_notes_a_gap_skipped_before_its_next_run() {
        let s = Schedule::build(
            TaskType::Cron,
            None,
            Some("0 30 2 * * ?"),
            Some("Europe/Berlin"),
            0,
        )
        .unwrap();
        let next = ms("2026-03-30T00:30:00Z");
        let st = start_of_task(&s, TaskStatus::Running, Some(next), 0).unwrap();
        assert_eq!(st.since_ms, ms("2026-03-28T01:30:00Z"));
        let f = fires(&s, chrono_tz::UTC, st, 1);
        assert_eq!(f[0].note, Some(DstNote::GapSkipped));
    }

    #[test]
    fn a_paused_task_previews_the_slots_after_now_and_a_finished_one_none() {
        let s = Schedule::build(TaskType::Interval, Some(60), None, None, 0).unwrap();
        let st = start_of_task(&s, TaskStatus::Paused, Some(60_000), 90_000).unwrap();
        assert_eq!(st.first_ms, 120_000);
        for done in [
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Stopped,
        ] {
            assert_eq!(start_of_task(&s, done, Some(60_000), 90_000), None);
        }
    }

    #[test]
    fn an_interval_previews_on_its_grid_in_the_display_zone_without_notes() {
        let start = ms("2026-03-29T00:30:00Z");
        let s = Schedule::build(TaskType::Interval, Some(1800), None, None, start).unwrap();
        let st = start_of_schedule(&s, Some(start), 0).unwrap();
        assert_eq!(
            shown(&fires(&s, chrono_tz::Europe::Berlin, st, 2)),
            vec![
                row(
                    "2026-03-29T00:30:00.000Z",
                    "2026-03-29T01:30:00+01:00",
                    None
                ),
                row(
                    "2026-03-29T01:00:00.000Z",
                    "2026-03-29T03:00:00+02:00",
                    None
                ),
            ]
        );
    }

    #[test]
    fn a_once_schedule_previews_its_one_time() {
        let s = Schedule::build(TaskType::Once, None, None, None, 5_000).unwrap();
        let st = start_of_schedule(&s, Some(5_000), 0).unwrap();
        let f = fires(&s, chrono_tz::UTC, st, 10);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].at_ms, 5_000);
    }

    #[test]
    fn without_a_start_time_the_preview_begins_where_a_create_would() {
        let now = ms("2026-01-01T00:00:10Z");
        let s = Schedule::build(TaskType::Interval, Some(20), None, None, now).unwrap();
        let st = start_of_schedule(&s, None, now).unwrap();
        assert_eq!(Some(st.first_ms), s.first_run(now));
        let s = Schedule::build(TaskType::Cron, None, Some("*/10 * * * * *"), None, now).unwrap();
        let st = start_of_schedule(&s, None, now).unwrap();
        assert_eq!(Some(st.first_ms), s.first_run(now));
    }

    #[test]
    fn stop_conditions_cut_a_stored_tasks_preview() {
        let s = Schedule::build(TaskType::Interval, Some(1), None, None, 0).unwrap();
        let st = start_of_schedule(&s, Some(0), 0).unwrap();
        let all = fires(&s, chrono_tz::UTC, st, 10);
        let stop = StopCondition {
            max_cnt: Some(5),
            ..StopCondition::default()
        };
        assert_eq!(within_stop(all.clone(), &stop, 2).len(), 3);
        let stop = StopCondition {
            end_time: DateTime::from_timestamp_millis(3_000),
            ..StopCondition::default()
        };
        assert_eq!(within_stop(all, &stop, 0).len(), 4);
    }
}
