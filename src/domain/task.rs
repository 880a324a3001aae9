//! The task model: a validated task definition (`TaskSpec`), its enums, the retry backoff
//! rule shared by every executor, and the anchor and schedule a definition gets (the API
//! computes them on create and patch; the store rebuilds the schedule from a stored anchor).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::notify::Notify;
use super::retention::Retention;
use super::stop::StopCondition;
use super::{Schedule, ScheduleError};

/// How a task is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskType {
    /// Every `interval_seconds`, anchored at `start_time`.
    Interval,
    /// Once, at `start_time` (or as soon as possible).
    Once,
    /// At the fire times of a cron expression in a time zone.
    Cron,
}

impl TaskType {
    pub const ALL: [TaskType; 3] = [TaskType::Interval, TaskType::Once, TaskType::Cron];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Interval => "interval",
            TaskType::Once => "once",
            TaskType::Cron => "cron",
        }
    }

    /// The wire name, exactly as `as_str` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP method a task calls its endpoint with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Accepts the upper-case name (`"GET"`) or its all-lower-case form (`"get"`); mixed case is
    /// refused so that stored values stay canonical and unambiguous.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s || m.as_str().to_ascii_lowercase() == s)
    }

    /// GET requests are sent without a body.
    pub fn allows_body(self) -> bool {
        !matches!(self, Method::Get)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle state of a task (README, "The API", States).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    Pending,
    Running,
    /// Kept, not fired: holds no timer and no actor until resumed.
    Paused,
    Completed,
    Failed,
    Stopped,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Paused,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Stopped,
    ];

    /// Still scheduled (see [`TaskStatus::is_active`]), in the order a task goes through them.
    pub const ACTIVE: [TaskStatus; 2] = [TaskStatus::Pending, TaskStatus::Running];

    /// Not finished: the active states and `paused`. These count against the user's
    /// `max_active_tasks_per_user`, and can be cancelled.
    pub const LIVE: [TaskStatus; 3] =
        [TaskStatus::Pending, TaskStatus::Running, TaskStatus::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Paused => "paused",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Stopped => "stopped",
        }
    }

    /// The wire name, exactly as `as_str` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Still scheduled: `pending` or `running`. Only active tasks can be changed or cancelled.
    pub fn is_active(self) -> bool {
        matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }

    /// Not finished: active or paused (see [`TaskStatus::LIVE`]).
    pub fn is_live(self) -> bool {
        self.is_active() || self == TaskStatus::Paused
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a recurring task does with the slots it missed while it could not fire (README, "The
/// API": misfires). A `once` task that was missed always fires as soon as it can.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// One fire for all the missed slots, for the latest of them.
    #[default]
    FireOnce,
    /// None of them: one log row says how many were skipped.
    Skip,
}

impl MisfirePolicy {
    pub const ALL: [MisfirePolicy; 2] = [MisfirePolicy::FireOnce, MisfirePolicy::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::FireOnce => "fire_once",
            MisfirePolicy::Skip => "skip",
        }
    }

    /// The wire name, exactly as `as_str` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A task's own retry settings; `None` falls back to the configured default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

impl RetryOverride {
    pub fn is_empty(&self) -> bool {
        self.max_retries.is_none() && self.backoff_ms.is_none()
    }
}

/// A validated task definition: everything a user chose, nothing the server manages.
///
/// Built by [`super::validate::parse_create`] (or [`super::validate::apply_patch`]), so the
/// invariants hold: `interval_seconds` is `Some` exactly for interval tasks, `cron_expression`
/// and `timezone` exactly for cron tasks, and the cron expression parses in that time zone.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub user_id: i64,
    pub task_type: TaskType,
    pub http_endpoint: url::Url,
    pub method: Method,
    /// In the order the request's JSON object yielded them.
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    pub interval_seconds: Option<u64>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub stop_condition: StopCondition,
    pub retry: RetryOverride,
    pub misfire_policy: MisfirePolicy,
    /// The task's own history limits (at most the global ones).
    pub retention: Retention,
    /// Where the task's events go, if anywhere.
    pub notify: Option<Notify>,
}

/// Spread of the backoff jitter: each wait is within ±20 % of its nominal value.
const JITTER_SPREAD: f64 = 0.2;

/// The wait before the `n`-th retry (`n >= 1`): `base_ms · 2^(n-1)`, scaled by a jitter factor in
/// `[0.8, 1.2)` taken from `jitter_unit` in `[0, 1)` (the caller's random number; 0.5 means no
/// jitter), rounded to whole milliseconds. Saturates instead of overflowing.
///
/// Because 1.2 · 2^(n-1) < 0.8 · 2^n, every wait is strictly longer than the one before whatever
/// the jitter draws, as the README's retry rule (`backoff_ms · 2^(n-1)` ±20 %) implies.
pub fn backoff_delay_ms(base_ms: u64, n: u32, jitter_unit: f64) -> u64 {
    let exponent = n.saturating_sub(1);
    let nominal = if exponent >= u64::BITS {
        if base_ms == 0 {
            0
        } else {
            u64::MAX
        }
    } else {
        base_ms.saturating_mul(1u64 << exponent)
    };
    let unit = if jitter_unit.is_finite() {
        jitter_unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 - JITTER_SPREAD + 2.0 * JITTER_SPREAD * unit;
    let scaled = (nominal as f64 * factor).round();
    // `as` saturates for floats out of range; the explicit bound keeps the intent visible.
    if scaled >= u64::MAX as f64 {
        u64::MAX
    } else {
        scaled as u64
    }
}

/// The schedule of a task whose anchor (`start_time` column) is `anchor_ms`.
pub fn schedule_of(spec: &TaskSpec, anchor_ms: i64) -> Result<Schedule, ScheduleError> {
    Schedule::build(
        spec.task_type,
        spec.interval_seconds,
        spec.cron_expression.as_deref(),
        spec.timezone.as_deref(),
        anchor_ms,
    )
}

/// The anchor a new schedule gets at `now_ms`: the user's `start_time` when it is in the
/// future (or, for `once` and `cron`, whenever given), else now.
pub fn anchor_for(spec: &TaskSpec, now_ms: i64) -> i64 {
    let start = spec.start_time.map(|t| t.timestamp_millis());
    match (spec.task_type, start) {
        (TaskType::Interval, Some(s)) if s > now_ms => s,
        (TaskType::Interval, _) => now_ms,
        (_, Some(s)) => s,
        (_, None) => now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_types_round_trip_through_their_wire_names() {
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
        }
        assert_eq!(TaskType::parse("Interval"), None);
        assert_eq!(TaskType::parse("weekly"), None);
    }

    #[test]
    fn misfire_policies_round_trip_through_their_wire_names() {
        for p in MisfirePolicy::ALL {
            assert_eq!(MisfirePolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(MisfirePolicy::default(), MisfirePolicy::FireOnce);
        assert_eq!(MisfirePolicy::parse("fire_all"), None);
        assert_eq!(MisfirePolicy::parse("Skip"), None);
    }

    #[test]
    fn methods_are_accepted_in_upper_or_lower_case_only() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
            assert_eq!(Method::parse(&m.as_str().to_ascii_lowercase()), Some(m));
        }
        assert_eq!(Method::parse("Post"), None);
        assert_eq!(Method::parse("HEAD"), None);
        assert_eq!(Method::parse(""), None);
    }

    #[test]
    fn only_pending_and_running_tasks_are_active() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert!(TaskStatus::Pending.is_active());
        assert!(TaskStatus::Running.is_active());
        assert!(!TaskStatus::Completed.is_active());
        assert!(!TaskStatus::Failed.is_active());
        assert!(!TaskStatus::Stopped.is_active());
        assert_eq!(TaskStatus::parse("cancelled"), None);
    }

    #[test]
    fn backoff_doubles_from_the_base_without_jitter() {
        assert_eq!(backoff_delay_ms(1000, 1, 0.5), 1000);
        assert_eq!(backoff_delay_ms(1000, 2, 0.5), 2000);
        assert_eq!(backoff_delay_ms(1000, 3, 0.5), 4000);
    }

    #[test]
    fn backoff_jitter_stays_within_twenty_percent() {
        assert_eq!(backoff_delay_ms(1000, 1, 0.0), 800);
        // Rounded to whole milliseconds, so the top of the range can reach 1200.
        assert_eq!(backoff_delay_ms(1000, 1, 0.999_999), 1200);
        assert_eq!(backoff_delay_ms(1000, 1, 0.75), 1100);
        // Out-of-range or non-finite draws are clamped, not trusted.
        assert_eq!(backoff_delay_ms(1000, 1, -3.0), 800);
        assert_eq!(backoff_delay_ms(1000, 1, f64::NAN), 1000);
    }

    #[test]
    fn each_backoff_wait_is_longer_than_the_one_before_whatever_the_jitter() {
        for base in [1u64, 2, 3, 7, 10, 100, 999, 1000, 3_600_000] {
            for n in 1..20u32 {
                let longest_now = backoff_delay_ms(base, n, 0.999_999_9);
                let shortest_next = backoff_delay_ms(base, n + 1, 0.0);
                assert!(
                    longest_now < shortest_next,
                    "base {base}, retry {n}: {longest_now} !< {shortest_next}"
                );
            }
        }
    }

    #[test]
    fn backoff_saturates_instead_of_overflowing() {
        assert_eq!(backoff_delay_ms(1000, 200, 0.5), u64::MAX);
        assert_eq!(backoff_delay_ms(u64::MAX, 2, 0.9), u64::MAX);
        assert_eq!(backoff_delay_ms(0, 200, 0.5), 0);
    }

    #[test]
    fn a_zeroth_retry_is_treated_as_the_first() {
        assert_eq!(backoff_delay_ms(1000, 0, 0.5), 1000);
    }

    fn spec_starting(task_type: TaskType, start_ms: Option<i64>) -> TaskSpec {
        TaskSpec {
            user_id: 1,
            task_type,
            http_endpoint: url::Url::parse("https://example.com/hook").unwrap(),
            method: Method::Post,
            headers: Vec::new(),
            body: None,
            interval_seconds: (task_type == TaskType::Interval).then_some(60),
            cron_expression: None,
            timezone: None,
            start_time: start_ms.and_then(DateTime::from_timestamp_millis),
            stop_condition: StopCondition::default(),
            retry: RetryOverride::default(),
            misfire_policy: MisfirePolicy::default(),
            retention: Default::default(),
            notify: None,
        }
    }

    #[test]
    fn an_interval_task_is_anchored_at_its_start_time_only_when_that_is_in_the_future() {
        let now = 1_700_000_000_000;
        let later = spec_starting(TaskType::Interval, Some(now + 5_000));
        assert_eq!(anchor_for(&later, now), now + 5_000);
        let earlier = spec_starting(TaskType::Interval, Some(now - 5_000));
        assert_eq!(anchor_for(&earlier, now), now);
        assert_eq!(
            anchor_for(&spec_starting(TaskType::Interval, None), now),
            now
        );
    }

    #[test]
    fn once_and_cron_tasks_keep_a_start_time_even_in_the_past() {
        let now = 1_700_000_000_000;
        for task_type in [TaskType::Once, TaskType::Cron] {
            let earlier = spec_starting(task_type, Some(now - 5_000));
            assert_eq!(anchor_for(&earlier, now), now - 5_000);
            assert_eq!(anchor_for(&spec_starting(task_type, None), now), now);
        }
    }

    #[test]
    fn an_interval_schedule_counts_from_its_anchor() {
        let anchor = 1_700_000_000_000;
        let schedule = schedule_of(&spec_starting(TaskType::Interval, None), anchor).unwrap();
        assert_eq!(schedule.first_run(anchor - 1), Some(anchor));
        assert_eq!(schedule.next_after(anchor + 1), Some(anchor + 60_000));
    }
}
