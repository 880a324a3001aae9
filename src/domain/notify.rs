//! Task notifications (README, "Notifications"): which events a task's `notify` asks for, and
//! the rule that decides, at the end of each execution, which of them happened.
//!
//! The rule reads only what is persisted with the task (`consecutive_failures`, the execution
//! count) and what the execution itself says, so `recovered` is right after a restart or a
//! take-over by another node: the streak of failures it ends was stored with the task.
//!
//! | event       | when                                                                 |
//! |-------------|----------------------------------------------------------------------|
//! | `failing`   | an execution failed (after its retries) and the one before succeeded, or it was the first: once per run of failures |
//! | `recovered` | the first successful execution after a `failing`                     |
//! | `late`      | an execution's first attempt started more than `late_ms` after its slot; at most one per task per [`LATE_EVERY_MS`] |
//! | `completed` | the task reached `completed`                                         |
//! | `failed`    | the task reached `failed`                                            |

/// At most one `late` event per task in this many milliseconds (noise control).
pub const LATE_EVERY_MS: i64 = 60_000;
/// A task keeps its newest this many notifications; retention deletes older ones (a task
/// that fails and recovers every minute fills this in about eight hours: enough to look back
/// on, bounded whatever the task does).
pub const MAX_NOTIFICATIONS_PER_TASK: u64 = 1_000;
/// `late_ms` when `notify` does not give one.
pub const DEFAULT_LATE_MS: u64 = 1_000;
/// The largest `late_ms`: a day.
pub const MAX_LATE_MS: u64 = 86_400_000;

/// One kind of notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    Failing,
    Recovered,
    Completed,
    Failed,
    Late,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::Failing,
        NotifyEvent::Recovered,
        NotifyEvent::Completed,
        NotifyEvent::Failed,
        NotifyEvent::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Failing => "failing",
            NotifyEvent::Recovered => "recovered",
            NotifyEvent::Completed => "completed",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Late => "late",
        }
    }

    /// The wire name, exactly as `as_str` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The payload's `type`: `task.failing`, …
    pub fn type_name(self) -> String {
        format!("task.{}", self.as_str())
    }
}

/// A task's `notify`: where its events go, which ones, and its lateness threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub url: url::Url,
    /// Non-empty, no duplicates, in the order given.
    pub events: Vec<NotifyEvent>,
    pub late_ms: u64,
}

impl Notify {
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.events.contains(&event)
    }

    /// The JSON the API shows and `tasks.notify` stores (read back through the parser).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url.as_str(),
            "events": self.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "late_ms": self.late_ms,
        })
    }
}

/// How an execution ended, as far as notifications care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionEnd {
    pub succeeded: bool,
    /// The task's `consecutive_failures` before this execution.
    pub failures_before: i64,
    /// The final state the task reached with it, if any.
    pub finished: Option<Finished>,
}

/// A final state that has an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Completed,
    Failed,
}

impl Finished {
    pub fn event(self) -> NotifyEvent {
        match self {
            Finished::Completed => NotifyEvent::Completed,
            Finished::Failed => NotifyEvent::Failed,
        }
    }
}

/// The events an execution's end raises, in the order they happened, among those `notify`
/// asks for.
pub fn events_at_end(notify: &Notify, end: ExecutionEnd) -> Vec<NotifyEvent> {
    let mut events = Vec::new();
    // A failure right after a success (or as the first execution: no failures before either)
    // opens a run of failures; the first success after a run of them closes it.
    if !end.succeeded && end.failures_before == 0 {
        events.push(NotifyEvent::Failing);
    }
    if end.succeeded && end.failures_before > 0 {
        events.push(NotifyEvent::Recovered);
    }
    if let Some(f) = end.finished {
        events.push(f.event());
    }
    events.retain(|e| notify.wants(*e));
    events
}

/// Whether an execution whose first attempt started `lateness_ms` after its slot raises
/// `late` at `now_ms`, the task's last `late` having been at `last_late_ms`.
pub fn is_late(notify: &Notify, lateness_ms: i64, last_late_ms: Option<i64>, now_ms: i64) -> bool {
    notify.wants(NotifyEvent::Late)
        && lateness_ms > i64::try_from(notify.late_ms).unwrap_or(i64::MAX)
        && last_late_ms.is_none_or(|last| now_ms.saturating_sub(last) >= LATE_EVERY_MS)
}

/// An event to deliver, as the outbox stores it (the payload already built).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    /// The row's id and the delivery's `webhook-id`.
    pub id: uuid::Uuid,
    pub task_id: uuid::Uuid,
    pub user_id: i64,
    pub event: NotifyEvent,
    pub url: String,
    /// The JSON body.
    pub payload: String,
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(events: &[NotifyEvent]) -> Notify {
        Notify {
            url: url::Url::parse("https://hooks.example.com/n").unwrap(),
            events: events.to_vec(),
            late_ms: 500,
        }
    }

    fn all() -> Notify {
        notify(&NotifyEvent::ALL)
    }

    fn end(succeeded: bool, failures_before: i64) -> ExecutionEnd {
        ExecutionEnd {
            succeeded,
            failures_before,
            finished: None,
        }
    }

    #[test]
    fn event_names_round_trip() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(NotifyEvent::parse("Failing"), None);
        assert_eq!(NotifyEvent::Failing.type_name(), "task.failing");
    }

    #[test]
    fn a_first_execution_that_fails_is_failing() {
        assert_eq!(
            events_at_end(&all(), end(false, 0)),
            vec![NotifyEvent::Failing]
        );
    }

    #[test]
    fn a_run_of_failures_raises_failing_once() {
        let raised: Vec<_> = (0..5)
            .flat_map(|before| events_at_end(&all(), end(false, before)))
            .collect();
        assert_eq!(raised, vec![NotifyEvent::Failing]);
    }

    #[test]
    fn the_first_success_after_failures_is_recovered_and_later_ones_are_nothing() {
        assert_eq!(
            events_at_end(&all(), end(true, 3)),
            vec![NotifyEvent::Recovered]
        );
        assert!(events_at_end(&all(), end(true, 0)).is_empty());
    }

    #[test]
    fn a_final_state_follows_the_streak_event() {
        let failed = ExecutionEnd {
            succeeded: false,
            failures_before: 0,
            finished: Some(Finished::Failed),
        };
        assert_eq!(
            events_at_end(&all(), failed),
            vec![NotifyEvent::Failing, NotifyEvent::Failed]
        );
        let completed = ExecutionEnd {
            succeeded: true,
            failures_before: 0,
            finished: Some(Finished::Completed),
        };
        assert_eq!(
            events_at_end(&all(), completed),
            vec![NotifyEvent::Completed]
        );
    }

    #[test]
    fn only_the_events_asked_for_are_raised() {
        let only_failed = notify(&[NotifyEvent::Failed]);
        let failed = ExecutionEnd {
            succeeded: false,
            failures_before: 0,
            finished: Some(Finished::Failed),
        };
        assert_eq!(
            events_at_end(&only_failed, failed),
            vec![NotifyEvent::Failed]
        );
        assert!(events_at_end(&only_failed, end(true, 2)).is_empty());
    }

    #[test]
    fn late_is_past_the_threshold_and_at_most_once_a_minute() {
        let n = all();
        assert!(!is_late(&n, 500, None, 0), "at the threshold is not late");
        assert!(is_late(&n, 501, None, 0));
        assert!(!is_late(&n, 10_000, Some(0), LATE_EVERY_MS - 1));
        assert!(is_late(&n, 10_000, Some(0), LATE_EVERY_MS));
        assert!(!is_late(&notify(&[NotifyEvent::Failing]), 10_000, None, 0));
    }
}
