//! The response side of the wire format: every JSON body the API sends is one of these types,
//! and the OpenAPI document describes the same types, so the two cannot drift apart. Field
//! order is the order on the wire; times are RFC 3339 UTC with milliseconds
//! ([`to_rfc3339`]); stored strings (ids, enumerations) are sent as stored.

use entities::{notifications, task_logs, tasks};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorCode;
use super::requests::{
    HttpMethod, MisfirePolicy, NotifyEvent, NotifyPolicy, RetentionPolicy, RetryPolicy,
    StopCondition, TaskStatus, TaskType,
};
use crate::cluster::membership;
use crate::time::to_rfc3339;

/// `201 Created`: the task is committed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "success", "task_id": "550e8400-e29b-41d4-a716-446655440000",
    "next_run_time": "2025-04-22T10:00:20.000Z"}))]
pub struct CreateTaskResponse {
    /// Always `success`.
    #[schema(value_type = String, example = "success")]
    pub status: &'static str,
    pub task_id: Uuid,
    /// The first run.
    #[schema(value_type = Option<DateTime<Utc>>, required = true)]
    pub next_run_time: Option<String>,
}

impl CreateTaskResponse {
    pub fn new(task_id: Uuid, next_run_time: Option<i64>) -> Self {
        Self {
            status: "success",
            task_id,
            next_run_time: next_run_time.map(to_rfc3339),
        }
    }
}

/// The latest execution attempt.
#[derive(Serialize, ToSchema)]
pub struct LastExecution {
    /// When the attempt was recorded.
    #[schema(value_type = DateTime<Utc>)]
    pub timestamp: String,
    /// The scheduled run it belongs to.
    #[schema(value_type = DateTime<Utc>)]
    pub scheduled_time: String,
    /// 1 for the first attempt, n + 1 for the n-th retry.
    #[schema(minimum = 1)]
    pub attempt: i32,
    /// The response status, `null` when no response came (see `error`).
    #[schema(required = true)]
    pub http_status: Option<i32>,
    /// Why the attempt failed without a response, e.g. `timeout after 15000 ms`.
    #[schema(required = true)]
    pub error: Option<String>,
    /// The response body as text, truncated to `http.max_response_bytes`.
    #[schema(required = true)]
    pub response_body: Option<String>,
}

impl From<&task_logs::Model> for LastExecution {
    fn from(l: &task_logs::Model) -> Self {
        Self {
            timestamp: to_rfc3339(l.created_at),
            scheduled_time: to_rfc3339(l.scheduled_time),
            attempt: l.attempt,
            http_status: l.http_status,
            error: l.error.clone(),
            response_body: l.response_body.clone(),
        }
    }
}

/// A task, as `GET`/`PATCH /api/v1/tasks/{task_id}` return it. Header values are never
/// returned, only their names.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    #[schema(value_type = Uuid)]
    pub task_id: String,
    pub user_id: i64,
    #[serde(rename = "type")]
    #[schema(value_type = TaskType)]
    pub task_type: String,
    #[schema(value_type = TaskStatus)]
    pub status: String,
    #[schema(format = "uri")]
    pub http_endpoint: String,
    #[schema(value_type = HttpMethod)]
    pub method: String,
    /// Header names as the user wrote them.
    pub header_names: Vec<String>,
    /// The request body, `null` when none.
    #[schema(required = true)]
    pub body: Option<Value>,
    #[schema(required = true)]
    pub interval_seconds: Option<i64>,
    #[schema(required = true)]
    pub cron_expression: Option<String>,
    #[schema(required = true)]
    pub timezone: Option<String>,
    #[schema(value_type = Option<DateTime<Utc>>, required = true)]
    pub start_time: Option<String>,
    /// `{}` when the task has none.
    #[schema(value_type = StopCondition)]
    pub stop_condition: Value,
    /// The task's own retry settings, `null` when it uses the defaults.
    #[schema(value_type = Option<RetryPolicy>, required = true)]
    pub retry: Option<Value>,
    #[schema(value_type = MisfirePolicy)]
    pub misfire_policy: String,
    /// Slots missed while the service was down, in all: with `fire_once`, those its catch-up
    /// fire stood in for (all but the one it was fired for); with `skip`, every one. Slots
    /// that fell inside a pause are not counted.
    pub missed_slots: i64,
    /// The task's own history limits, `null` when it uses the global ones.
    #[schema(value_type = Option<RetentionPolicy>, required = true)]
    pub retention: Option<Value>,
    /// The task's notifications, `null` when it has none.
    #[schema(value_type = Option<NotifyPolicy>, required = true)]
    pub notify: Option<Value>,
    /// Executions so far (one scheduled fire with its retries).
    pub execution_count: i64,
    pub consecutive_failures: i64,
    /// `null` before the first execution.
    #[schema(required = true)]
    pub last_execution: Option<LastExecution>,
    #[schema(value_type = Option<DateTime<Utc>>, required = true)]
    pub next_run_time: Option<String>,
    /// Optimistic-lock version, for `If-Match`.
    pub version: i64,
    #[schema(value_type = DateTime<Utc>)]
    pub created_at: String,
    #[schema(value_type = DateTime<Utc>)]
    pub updated_at: String,
}

/// A stored JSON column: `None` when absent, empty or not JSON (never the case for what the
/// API wrote), or JSON `null`.
fn stored_json(s: &Option<String>) -> Option<Value> {
    s.as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(|v| !v.is_null())
}

impl TaskView {
    /// The view of a stored task, with its header names (already decrypted) and its latest
    /// execution attempt.
    pub fn new(
        m: &tasks::Model,
        header_names: Vec<String>,
        last: Option<&task_logs::Model>,
    ) -> Self {
        Self {
            task_id: m.task_id.clone(),
            user_id: m.user_id,
            task_type: m.task_type.clone(),
            status: m.status.clone(),
            http_endpoint: m.http_endpoint.clone(),
            method: m.method.clone(),
            header_names,
            body: stored_json(&m.body),
            interval_seconds: m.interval_seconds,
            cron_expression: m.cron_expression.clone(),
            timezone: m.timezone.clone(),
            start_time: m.start_time.map(to_rfc3339),
            stop_condition: stored_json(&m.stop_condition)
                .unwrap_or_else(|| Value::Object(Default::default())),
            retry: stored_json(&m.retry),
            misfire_policy: m
                .misfire_policy
                .clone()
                .unwrap_or_else(|| "fire_once".to_owned()),
            missed_slots: m.missed_slots,
            retention: stored_json(&m.retention),
            notify: stored_json(&m.notify),
            execution_count: m.execution_count,
            consecutive_failures: m.consecutive_failures,
            last_execution: last.map(LastExecution::from),
            next_run_time: m.next_run_time.map(to_rfc3339),
            version: m.version,
            created_at: to_rfc3339(m.created_at),
            updated_at: to_rfc3339(m.updated_at),
        }
    }
}

/// A task in a user's list.
#[derive(Serialize, ToSchema)]
pub struct TaskSummary {
    #[schema(value_type = Uuid)]
    pub task_id: String,
    #[schema(value_type = TaskStatus)]
    pub status: String,
    #[serde(rename = "type")]
    #[schema(value_type = TaskType)]
    pub task_type: String,
    #[schema(format = "uri")]
    pub http_endpoint: String,
    #[schema(value_type = Option<DateTime<Utc>>, required = true)]
    pub next_run_time: Option<String>,
    /// The schedule, as in the task view: `interval_seconds` for `interval`,
    /// `cron_expression` and `timezone` for `cron`, else `null`.
    #[schema(required = true)]
    pub interval_seconds: Option<i64>,
    #[schema(required = true)]
    pub cron_expression: Option<String>,
    #[schema(required = true)]
    pub timezone: Option<String>,
}

impl From<&tasks::Model> for TaskSummary {
    fn from(m: &tasks::Model) -> Self {
        Self {
            task_id: m.task_id.clone(),
            status: m.status.clone(),
            task_type: m.task_type.clone(),
            http_endpoint: m.http_endpoint.clone(),
            next_run_time: m.next_run_time.map(to_rfc3339),
            interval_seconds: m.interval_seconds,
            cron_expression: m.cron_expression.clone(),
            timezone: m.timezone.clone(),
        }
    }
}

/// One page of a user's tasks.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
    /// All matches of the filters, not just this page.
    pub total: u64,
    /// The user's tasks per status, all of them whatever the filters.
    pub counts: StatusCounts,
}

/// How many tasks are in each state; every state is present, zero included.
#[derive(Serialize, ToSchema, Default)]
#[schema(example = json!({"pending": 2, "running": 5, "paused": 1, "completed": 7,
    "failed": 0, "stopped": 3}))]
pub struct StatusCounts {
    pub pending: u64,
    pub running: u64,
    pub paused: u64,
    pub completed: u64,
    pub failed: u64,
    pub stopped: u64,
}

impl StatusCounts {
    pub fn from_pairs(pairs: &[(crate::domain::TaskStatus, u64)]) -> Self {
        use crate::domain::TaskStatus as S;
        let mut c = Self::default();
        for (status, n) in pairs {
            let slot = match status {
                S::Pending => &mut c.pending,
                S::Running => &mut c.running,
                S::Paused => &mut c.paused,
                S::Completed => &mut c.completed,
                S::Failed => &mut c.failed,
                S::Stopped => &mut c.stopped,
            };
            *slot += n;
        }
        c
    }
}

/// One execution attempt, or a scheduled run that was not sent.
#[derive(Serialize, ToSchema)]
pub struct LogEntry {
    #[schema(value_type = Uuid)]
    pub log_id: String,
    #[schema(value_type = Uuid)]
    pub task_id: String,
    /// The scheduled run this attempt belongs to.
    #[schema(value_type = DateTime<Utc>)]
    pub scheduled_time: String,
    /// When the attempt was recorded.
    #[schema(value_type = DateTime<Utc>)]
    pub timestamp: String,
    /// 1 for the first attempt, n + 1 for the n-th retry; 0 for a scheduled run that was not
    /// sent because the previous execution was still in flight (`error` says so).
    #[schema(minimum = 0)]
    pub attempt: i32,
    /// The response status, `null` when no response came (see `error`).
    #[schema(required = true)]
    pub http_status: Option<i32>,
    #[schema(required = true)]
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The response body as text, truncated to `http.max_response_bytes`.
    #[schema(required = true)]
    pub response_body: Option<String>,
    /// What started the execution: `schedule`, `manual` (run now) or `catch_up` (fired late
    /// on purpose, for slots missed while the task could not fire).
    #[schema(value_type = String, example = "schedule")]
    pub trigger: String,
    /// Start of the execution's first attempt minus `scheduled_time`; `null` for a run that
    /// was not sent.
    #[schema(required = true)]
    pub lateness_ms: Option<i64>,
}

impl From<&task_logs::Model> for LogEntry {
    fn from(l: &task_logs::Model) -> Self {
        Self {
            log_id: l.log_id.clone(),
            task_id: l.task_id.clone(),
            scheduled_time: to_rfc3339(l.scheduled_time),
            timestamp: to_rfc3339(l.created_at),
            attempt: l.attempt,
            http_status: l.http_status,
            error: l.error.clone(),
            duration_ms: l.duration_ms,
            response_body: l.response_body.clone(),
            trigger: l.trigger_kind.clone(),
            lateness_ms: l.lateness_ms,
        }
    }
}

/// One page of a task's execution attempts, newest first.
#[derive(Serialize, ToSchema)]
pub struct LogsResponse {
    pub logs: Vec<LogEntry>,
    /// All entries that match the filters, not just this page.
    pub total: u64,
}

/// One notification of a task: the event and where its delivery stands.
#[derive(Serialize, ToSchema)]
pub struct NotificationEntry {
    /// The delivery's `webhook-id` (the same on every attempt, and after a restart).
    #[schema(value_type = Uuid)]
    pub webhook_id: String,
    #[schema(value_type = NotifyEvent)]
    pub event: String,
    /// `pending` (not delivered yet; retries left), `delivered`, or `failed` (retries
    /// exhausted).
    #[schema(example = "delivered")]
    pub status: String,
    /// Delivery attempts so far.
    #[schema(minimum = 0)]
    pub attempts: i32,
    /// The last attempt's response status, `null` when none came (see `error`).
    #[schema(required = true)]
    pub http_status: Option<i32>,
    /// Why the last attempt failed, if it did.
    #[schema(required = true)]
    pub error: Option<String>,
    /// When the event happened.
    #[schema(value_type = DateTime<Utc>)]
    pub created_at: String,
    #[schema(value_type = Option<DateTime<Utc>>, required = true)]
    pub delivered_at: Option<String>,
    /// The JSON body delivered.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<&notifications::Model> for NotificationEntry {
    fn from(n: &notifications::Model) -> Self {
        Self {
            webhook_id: n.notification_id.clone(),
            event: n.event.clone(),
            status: n.status.clone(),
            attempts: n.attempts,
            http_status: n.http_status,
            error: n.error.clone(),
            created_at: to_rfc3339(n.created_at),
            delivered_at: n.delivered_at.map(to_rfc3339),
            payload: serde_json::from_str(&n.payload).unwrap_or(Value::Null),
        }
    }
}

/// One page of a task's notifications, newest first.
#[derive(Serialize, ToSchema)]
pub struct NotificationsResponse {
    pub notifications: Vec<NotificationEntry>,
    /// All of the task's notifications, not just this page.
    pub total: u64,
}

/// How many of a user's tasks are `running`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"user_id": 1001, "running_tasks": 5,
    "last_updated": "2025-04-22T14:30:45.000Z"}))]
pub struct RunningCount {
    pub user_id: i64,
    pub running_tasks: u64,
    /// When the count was taken.
    #[schema(value_type = DateTime<Utc>)]
    pub last_updated: String,
}

/// A success with a message.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "success", "message": "Task stopped successfully"}))]
pub struct MessageResponse {
    /// Always `success`.
    #[schema(value_type = String, example = "success")]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub message: &'static str,
}

impl MessageResponse {
    pub fn success(message: &'static str) -> Self {
        Self {
            status: "success",
            message,
        }
    }
}

/// Run now: the execution started.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "success", "scheduled_time": "2026-12-03T15:00:00.123Z"}))]
pub struct RunNowResponse {
    /// Always `success`.
    #[schema(value_type = String, example = "success")]
    pub status: &'static str,
    /// The moment of the request: the execution's scheduled time in its log rows, and the
    /// milliseconds in its `webhook-id` (`<task_id>:<epoch ms>`).
    #[schema(value_type = DateTime<Utc>)]
    pub scheduled_time: String,
}

impl RunNowResponse {
    pub fn new(scheduled_ms: i64) -> Self {
        Self {
            status: "success",
            scheduled_time: to_rfc3339(scheduled_ms),
        }
    }
}

/// The cluster as one node sees it.
#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    /// This node's id (`standalone` in single-node mode).
    #[schema(example = "n1")]
    pub node_id: String,
    /// The live members, each with the partitions it owns.
    pub members: Vec<ClusterMember>,
}

/// A live member of the cluster.
#[derive(Serialize, ToSchema)]
pub struct ClusterMember {
    #[schema(example = "n1")]
    pub node_id: String,
    /// The address its API is reached at.
    #[schema(example = "127.0.0.1:8081")]
    pub address: String,
    pub partitions: Vec<u32>,
}

impl From<membership::ClusterView> for ClusterView {
    fn from(v: membership::ClusterView) -> Self {
        Self {
            node_id: v.node_id,
            members: v
                .members
                .into_iter()
                .map(|m| ClusterMember {
                    node_id: m.node_id,
                    address: m.address,
                    partitions: m.partitions,
                })
                .collect(),
        }
    }
}

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}

/// Every error.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "error", "code": "invalid_input",
    "message": "interval_seconds: is required"}))]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(value_type = String, example = "error")]
    pub status: &'static str,
    pub code: ErrorCode,
    /// What was wrong, naming the field.
    pub message: String,
}

/// One fire time of a preview.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"time": "2026-03-29T01:00:00.000Z",
    "local": "2026-03-29T03:00:00+02:00", "note": "dst_gap_skipped"}))]
pub struct PreviewTime {
    /// The fire time, UTC.
    #[schema(value_type = DateTime<Utc>)]
    pub time: String,
    /// The same instant on the schedule's wall clock, with the offset in force then.
    #[schema(example = "2026-03-29T03:00:00+02:00")]
    pub local: String,
    /// `dst_gap_skipped`: the first fire after a matching local time that did not exist (spring
    /// forward) was skipped; `dst_overlap`: a fire in a repeated local hour (fall back), at its
    /// second occurrence, the only one that fires; else `null`.
    #[schema(required = true, value_type = Option<String>, pattern = "^(dst_gap_skipped|dst_overlap)$")]
    pub note: Option<&'static str>,
}

/// A schedule's next fire times.
#[derive(Serialize, ToSchema)]
pub struct PreviewResponse {
    pub times: Vec<PreviewTime>,
    /// The zone of the `local` times.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
}

impl PreviewResponse {
    pub fn new(fires: &[crate::domain::preview::Fire], zone: chrono_tz::Tz) -> Self {
        Self {
            times: fires
                .iter()
                .map(|f| PreviewTime {
                    time: to_rfc3339(f.at_ms),
                    local: f
                        .local
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                    note: f.note.map(|n| n.as_str()),
                })
                .collect(),
            timezone: zone.name().to_owned(),
        }
    }
}

/// The request a dry-run task would send.
#[derive(Serialize, ToSchema)]
pub struct DryRunRequest {
    #[schema(value_type = HttpMethod)]
    pub method: &'static str,
    pub url: String,
    /// The task's headers with their values shown as `<redacted>`, and the headers tickwheel
    /// adds (their values as sent, or a description in angle brackets where they vary per
    /// call).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The JSON body, `null` when none is sent (always for `GET`).
    #[schema(required = true)]
    pub body: Option<Value>,
}

/// Something legal but probably unintended in a dry-run task.
#[derive(Serialize, ToSchema)]
pub struct DryRunWarning {
    /// Stable: `fires_every_second`, `start_time_in_past`, `host_unresolvable`.
    #[schema(example = "start_time_in_past")]
    pub code: &'static str,
    pub message: String,
}

/// `200`: the task would be accepted; nothing was stored or sent.
#[derive(Serialize, ToSchema)]
pub struct DryRunResponse {
    /// Always `success`.
    #[schema(value_type = String, example = "success")]
    pub status: &'static str,
    pub request: DryRunRequest,
    /// The first five runs (fewer when the schedule or stop condition has fewer).
    #[schema(value_type = Vec<DateTime<Utc>>)]
    pub next_run_times: Vec<String>,
    pub warnings: Vec<DryRunWarning>,
}

/// `201 Created`: a new signing key. Its `secret` is shown this once and never again.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"key_id": "01938c9e-7a1b-7c3d-9e2f-0a1b2c3d4e5f",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwUfKQ9r8GKYo=",
    "created_at": "2026-12-03T10:00:00.000Z"}))]
pub struct SigningKeyCreated {
    pub key_id: Uuid,
    /// `whsec_` and the base64 of 32 random bytes: give it to the receiver's Standard
    /// Webhooks library as it is.
    pub secret: String,
    #[schema(value_type = DateTime<Utc>)]
    pub created_at: String,
}

/// One active signing key, without its secret.
#[derive(Serialize, ToSchema)]
pub struct SigningKeyView {
    #[schema(value_type = Uuid)]
    pub key_id: String,
    #[schema(value_type = DateTime<Utc>)]
    pub created_at: String,
    /// The secret's first characters, to tell keys apart: `whsec_ab12…`.
    #[schema(example = "whsec_ab12…")]
    pub prefix: String,
}

impl From<&crate::store::KeySummary> for SigningKeyView {
    fn from(k: &crate::store::KeySummary) -> Self {
        Self {
            key_id: k.key_id.clone(),
            created_at: to_rfc3339(k.created_at),
            prefix: format!("{}…", k.prefix),
        }
    }
}

/// A user's active signing keys, oldest first: every outbound call of the user's tasks
/// carries one signature per key.
#[derive(Serialize, ToSchema)]
pub struct SigningKeyList {
    pub keys: Vec<SigningKeyView>,
}
