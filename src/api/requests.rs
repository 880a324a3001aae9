//! The request side of the wire format, for the OpenAPI document: the bodies `POST` and
//! `PATCH /api/v1/tasks…` accept, the `If-Match` header and the enumerations a task's fields
//! take. The handlers do not deserialize into these types: `domain::validate` parses the raw
//! JSON itself so that every refusal names its field. These types are what the document
//! shows as the request bodies (`request_body(content = …)` in `tasks.rs`) and what the
//! views in [`super::views`] name as their fields' schemas; keep them in step with
//! `domain::validate`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// The optional `If-Match` header of `PATCH /api/v1/tasks/{task_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The task `version` the change is based on (`14`, `"14"` or `W/"14"`); 409 when the task
    /// has moved on since.
    #[param(rename = "If-Match", required = false, minimum = 0)]
    pub if_match: i64,
}

// ---- enums --------------------------------------------------------------------------------

/// How a task is scheduled.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TaskType {
    /// Every `interval_seconds`, anchored to `start_time` (no drift).
    Interval,
    /// Once, at `start_time` (or now).
    Once,
    /// On `cron_expression` in `timezone`.
    Cron,
}

/// What a recurring task does with the slots it missed while the service was down.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// One fire, for the latest missed slot (the default).
    FireOnce,
    /// None; one log row (attempt 0) says how many were skipped.
    Skip,
}

/// A task's state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Paused,
    Completed,
    Failed,
    Stopped,
}

/// What a history entry says about its attempt: `success` (sent, answered 2xx), `failure`
/// (sent, answered otherwise or not at all), `skipped` (not sent: the previous execution was
/// still in flight).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LogOutcome {
    Success,
    Failure,
    Skipped,
}

/// The HTTP method of the scheduled call.
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

// ---- task definition ----------------------------------------------------------------------

/// When the task ends. `max_cnt`, `end_time` and `max_failures` are reserved; every other key
/// is a response match: after a successful execution whose response body is a JSON object, if
/// each such key (dotted paths reach into nested objects, `"result.done"`) is present with a
/// value equal to the given one, the task completes. At most 16 match keys, each at most 256
/// bytes and 16 dot-separated segments, each value at most 1 KiB as JSON and 8 levels deep.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"max_cnt": 300, "finsh": true}))]
pub struct StopCondition {
    /// Complete the task after this many executions.
    #[schema(minimum = 1)]
    pub max_cnt: Option<u64>,
    /// Complete the task when the next run would fall after this time.
    pub end_time: Option<DateTime<Utc>>,
    /// Fail a recurring task after this many consecutive failed executions.
    #[schema(minimum = 1)]
    pub max_failures: Option<u32>,
    /// Response matches: key (or dotted path) to the JSON value that completes the task.
    #[serde(flatten)]
    pub matches: BTreeMap<String, Value>,
}

/// The task's own retry settings; an absent key falls back to the configured default.
#[derive(ToSchema)]
#[schema(example = json!({"max_retries": 3, "backoff_ms": 1000}))]
pub struct RetryPolicy {
    /// Retries after a failed attempt (default `http.max_retries`, 3).
    #[schema(minimum = 0, maximum = 20)]
    pub max_retries: Option<u32>,
    /// Base of the exponential backoff: the n-th retry waits `backoff_ms · 2^(n-1)` ±20 %
    /// (default `http.backoff_base_ms`, 1000).
    #[schema(minimum = 1, maximum = 3600000)]
    pub backoff_ms: Option<u64>,
}

/// A task's own history limits, each at least 1 and at most the configured global limit
/// (`retention.max_age_days`, `retention.max_logs_per_task`); an absent key falls back to it.
#[derive(ToSchema)]
#[schema(example = json!({"max_age_days": 7, "max_logs": 100}))]
pub struct RetentionPolicy {
    /// Execution log rows older than this many days are deleted.
    #[schema(minimum = 1)]
    pub max_age_days: Option<u32>,
    /// Beyond this many execution log rows, the oldest are deleted.
    #[schema(minimum = 1)]
    pub max_logs: Option<u64>,
}

/// A task event a notification can be sent for.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// An execution failed (after its retries) after one that succeeded, or the first one
    /// did: once per run of failures.
    Failing,
    /// The first successful execution after `failing`.
    Recovered,
    /// The task completed.
    Completed,
    /// The task failed.
    Failed,
    /// An execution's first attempt started more than `late_ms` after its scheduled time;
    /// at most one per task per minute.
    Late,
}

/// Where a task's events are sent: each as a JSON POST `{"type": "task.failing", "task_id",
/// "user_id", "scheduled_time", "attempts", "http_status", "error", "timestamp"}` through the
/// same outbound checks, rate limits and retries as the task's own calls, with a `webhook-id`
/// of its own.
#[derive(ToSchema)]
#[schema(example = json!({"url": "https://hooks.example.com/tickwheel",
    "events": ["failing", "recovered", "completed", "failed", "late"], "late_ms": 1000}))]
pub struct NotifyPolicy {
    /// An `http` or `https` URL, checked as `http_endpoint` is.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// At least one, no duplicates.
    #[schema(min_items = 1)]
    pub events: Vec<NotifyEvent>,
    /// The lateness past which `late` is sent (default 1000).
    #[schema(minimum = 0, maximum = 86400000)]
    pub late_ms: Option<u64>,
}

/// A new task. Fields that do not belong to its `type` are ignored.
#[derive(ToSchema)]
#[schema(example = json!({
    "user_id": 1001,
    "type": "interval",
    "http_endpoint": "https://api.example.com/execute",
    "method": "POST",
    "headers": {"Authorization": "Bearer {service_token}"},
    "body": {"data": "example"},
    "interval_seconds": 20,
    "start_time": "2025-04-22T10:00:00Z",
    "stop_condition": {"max_cnt": 300, "finsh": true},
    "retry": {"max_retries": 3, "backoff_ms": 1000}
}))]
pub struct CreateTaskRequest {
    /// The owner; a non-admin token may only give its own user id (403 otherwise).
    #[schema(minimum = 0)]
    pub user_id: i64,
    #[schema(rename = "type")]
    pub task_type: TaskType,
    /// An `http` or `https` URL. Loopback, private and link-local destinations are refused
    /// unless `http.allow_private_targets` is on. At most `limits.max_url_bytes` (2048 by
    /// default) once normalised.
    #[schema(format = "uri", max_length = 2048)]
    pub http_endpoint: String,
    /// Default `POST`.
    pub method: Option<HttpMethod>,
    /// Request headers (by default at most 50, names of 256 bytes, values of 8192: see
    /// `[limits]`), stored encrypted; their values are never returned.
    pub headers: Option<BTreeMap<String, String>>,
    /// Any JSON value, sent as the request body (not for `GET`).
    pub body: Option<Value>,
    /// Required for `interval`.
    #[schema(minimum = 1, maximum = 315360000)]
    pub interval_seconds: Option<u64>,
    /// Required for `cron`: 6 or 7 fields with seconds first (Quartz), 5 fields (classic
    /// crontab) or `@daily`, `@hourly` …
    #[schema(example = "0 0 12 * * ?")]
    pub cron_expression: Option<String>,
    /// IANA time zone for `cron` (default `UTC`).
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// First run not before this (for `once`: the run time; default now). Any RFC 3339 offset.
    pub start_time: Option<DateTime<Utc>>,
    pub stop_condition: Option<StopCondition>,
    pub retry: Option<RetryPolicy>,
    /// Default `fire_once`. A `once` task that was missed fires as soon as it can either way.
    pub misfire_policy: Option<MisfirePolicy>,
    pub retention: Option<RetentionPolicy>,
    pub notify: Option<NotifyPolicy>,
}

/// The fields to change (at least one). `null` resets `method` (to POST), `headers`, `body`,
/// `timezone` (to UTC), `stop_condition`, `retry`, `misfire_policy` (to `fire_once`),
/// `retention` and `notify`. Any other key is refused with 400.
#[derive(ToSchema)]
#[schema(min_properties = 1, example = json!({"interval_seconds": 60}))]
pub struct PatchTaskRequest {
    #[schema(format = "uri", max_length = 2048)]
    pub http_endpoint: Option<String>,
    pub method: Option<HttpMethod>,
    /// Replaces every header; `{}` or `null` removes them.
    pub headers: Option<BTreeMap<String, String>>,
    /// Any JSON value; `null` removes the body.
    pub body: Option<Value>,
    /// Interval tasks only; re-anchored at the time of the change unless `start_time` is given.
    #[schema(minimum = 1, maximum = 315360000)]
    pub interval_seconds: Option<u64>,
    /// Cron tasks only.
    pub cron_expression: Option<String>,
    /// Cron tasks only.
    pub timezone: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub stop_condition: Option<StopCondition>,
    pub retry: Option<RetryPolicy>,
    pub misfire_policy: Option<MisfirePolicy>,
    pub retention: Option<RetentionPolicy>,
    /// `null` removes the task's notifications.
    pub notify: Option<NotifyPolicy>,
}

/// The schedule fields of a task, validated as create validates them (fields that do not
/// belong to `type` are ignored), and how many fire times to list.
#[derive(ToSchema)]
#[schema(example = json!({"type": "cron", "cron_expression": "0 0/30 * * * ?",
    "timezone": "Europe/Berlin", "start_time": "2026-03-29T00:30:00Z", "count": 5}))]
pub struct PreviewRequest {
    #[schema(rename = "type")]
    pub task_type: TaskType,
    /// Required for `interval`.
    #[schema(minimum = 1, maximum = 315360000)]
    pub interval_seconds: Option<u64>,
    /// Required for `cron`.
    pub cron_expression: Option<String>,
    /// IANA zone: the cron's zone (default `UTC`); for `interval` and `once`, only the zone
    /// the `local` times are shown in.
    pub timezone: Option<String>,
    /// The times from this one on (inclusive, past or future); default: those a task created
    /// now would run at.
    pub start_time: Option<DateTime<Utc>>,
    /// How many fire times (default 10).
    #[schema(minimum = 1, maximum = 100)]
    pub count: Option<u32>,
}
