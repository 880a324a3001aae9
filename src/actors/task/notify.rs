//! A task actor's notifications (README, "Notifications"): the events the domain's rule
//! ([`crate::domain::notify`]) raises at an execution's end, at a late first attempt and at a
//! final state become rows of the notification outbox, pushed to persistence with the
//! execution log of the same turn (so they commit in one batch). Delivery is the notifier's
//! (`actors::notifier`), off this actor's path: nothing here waits for a notify URL.

use uuid::Uuid;

use super::TaskActor;
use crate::actors::dispatch::Outcome;
use crate::domain::notify::{
    events_at_end, is_late, ExecutionEnd, Finished, NotificationRecord, NotifyEvent,
};
use crate::metrics;
use crate::store::Write;
use crate::time::{now_ms, to_rfc3339};

/// What an event says of the execution that raised it.
#[derive(Clone, Debug, Default)]
pub(super) struct EventInfo {
    pub scheduled_ms: Option<i64>,
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl EventInfo {
    /// Attempt `attempt` of `slot`, ended with `outcome`.
    pub(super) fn of(slot: i64, attempt: u32, outcome: &Outcome) -> Self {
        Self {
            scheduled_ms: Some(slot),
            attempts: attempt,
            http_status: outcome.result.as_ref().ok().map(|r| r.status),
            error: outcome.result.as_ref().err().map(|e| e.to_string()),
        }
    }
}

impl TaskActor {
    /// An execution ended (after its retries): `failing` or `recovered`, by the streak of
    /// failures stored before it.
    pub(super) fn notify_end(&mut self, succeeded: bool, failures_before: i64, info: EventInfo) {
        let Some(notify) = self.notify.clone() else {
            return;
        };
        let end = ExecutionEnd {
            succeeded,
            failures_before,
            finished: None,
        };
        for event in events_at_end(&notify, end) {
            self.raise(event, &info);
        }
        self.last_end = Some(info);
    }

    /// The first attempt of an execution started `lateness_ms` after its slot.
    pub(super) fn notify_lateness(&mut self, lateness_ms: i64, info: EventInfo) {
        let Some(notify) = self.notify.clone() else {
            return;
        };
        let now = now_ms();
        if is_late(&notify, lateness_ms, self.last_late_ms, now) {
            self.last_late_ms = Some(now);
            self.raise(NotifyEvent::Late, &info);
        }
    }

    /// The task reached a final state (with the execution that ended it, if one did).
    pub(super) fn notify_finished(&mut self, finished: Finished) {
        let Some(notify) = self.notify.clone() else {
            return;
        };
        let event = finished.event();
        if notify.wants(event) {
            let info = self.last_end.take().unwrap_or_default();
            self.raise(event, &info);
        }
    }

    fn raise(&self, event: NotifyEvent, info: &EventInfo) {
        let Some(notify) = &self.notify else {
            return;
        };
        let now = now_ms();
        let payload = serde_json::json!({
            "type": event.type_name(),
            "task_id": self.task_id,
            "user_id": self.user_id,
            "scheduled_time": info.scheduled_ms.map(to_rfc3339),
            "attempts": info.attempts,
            "http_status": info.http_status,
            "error": info.error,
            "timestamp": to_rfc3339(now),
        });
        tracing::debug!(task_id = %self.task_id, event = event.as_str(), "notification raised");
        metrics::notification(event.as_str(), "raised");
        self.deps
            .persistence
            .push(Write::Notify(Box::new(NotificationRecord {
                id: Uuid::now_v7(),
                task_id: self.task_id,
                user_id: self.user_id,
                event,
                url: notify.url.to_string(),
                payload: payload.to_string(),
                created_at_ms: now,
            })));
    }
}
