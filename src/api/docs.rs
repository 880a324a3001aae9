//! The OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and the Swagger UI at `/docs`, both
//! public and served from the binary (the UI's assets are vendored: no internet needed).
//!
//! The handlers build their JSON by hand with `serde_json`, so the schemas below exist only for
//! the document: each one mirrors, field for field, what a handler sends or accepts. Keep them
//! in step with `tasks.rs` (`task_view`, `log_view`), `users.rs` and `error.rs` when those
//! change; `tests/api/openapi.rs` checks that the document and the routes agree.
// Documentation-only types: never constructed, only described.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// The name of the bearer security scheme, as `#[utoipa::path(security(...))]` refers to it.
pub const BEARER_AUTH: &str = "bearer_auth";

/// Where the document is served; the only `/api/v1` path that needs no token.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickwheel",
        version = env!("CARGO_PKG_VERSION"),
        description = "A scheduler for HTTP calls: submit a task (call this URL with this \
            method, headers and JSON body, on this schedule, until this condition holds) and \
            tickwheel fires it on time, retries it, throttles it per destination and logs every \
            execution.\n\n\
            Every `/api/v1` operation except this document needs `Authorization: Bearer \
            <token>`: an HS256 JWT whose `sub` is the user id (`tickwheel token --user ID` \
            prints one). A non-admin token acts only for its own user: another user's task is \
            404, another user's list is 403. Errors are `{\"status\": \"error\", \"code\": …, \
            \"message\": …}`, the message naming the field. Times are RFC 3339 UTC with \
            milliseconds.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        super::tasks::create,
        super::tasks::view,
        super::tasks::patch,
        super::tasks::delete,
        super::tasks::cancel,
        super::tasks::logs,
        super::users::list,
        super::users::running_count,
        super::health::healthz,
        super::health::readyz,
        super::cluster::view,
        openapi_json,
    ),
    components(schemas(
        CreateTaskRequest,
        CreateTaskResponse,
        PatchTaskRequest,
        TaskView,
        LastExecution,
        TaskSummary,
        TaskList,
        LogEntry,
        LogsResponse,
        RunningCount,
        MessageResponse,
        ProbeStatus,
        ClusterViewDoc,
        ClusterMemberDoc,
        ErrorBody,
        crate::api::error::ErrorCode,
        StopCondition,
        RetryPolicy,
        TaskType,
        TaskStatus,
        HttpMethod,
    )),
    modifiers(&BearerSecurity),
    tags(
        (name = "tasks", description = "Create, view, change, cancel and delete tasks; their execution history"),
        (name = "users", description = "A user's tasks"),
        (name = "cluster", description = "Cluster membership and partition ownership (admin)"),
        (name = "probes", description = "Liveness and readiness (no token)"),
        (name = "docs", description = "This document (no token)"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);
    DOC.clone()
}

/// `GET /docs`: the UI lives at `/docs/` (its assets are relative to it).
pub async fn redirect_to_ui() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// Adds the HTTP bearer (JWT) scheme that the `/api/v1` operations require.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT signed with `auth.jwt_secret`: `sub` the user id, `exp` \
                         required, optional `role: \"admin\"`. `tickwheel token --user ID` \
                         prints one.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document itself (this page). Public: no token.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "docs",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object,
            content_type = "application/json"),
    )
)]
async fn openapi_json() {}

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

/// A task's state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Stopped,
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
}

/// `201 Created`: the task is committed.
#[derive(ToSchema)]
#[schema(example = json!({"status": "success", "task_id": "550e8400-e29b-41d4-a716-446655440000",
    "next_run_time": "2025-04-22T10:00:20.000Z"}))]
pub struct CreateTaskResponse {
    /// Always `success`.
    #[schema(example = "success")]
    pub status: String,
    pub task_id: Uuid,
    /// The first run.
    #[schema(required = true)]
    pub next_run_time: Option<DateTime<Utc>>,
}

/// The fields to change (at least one). `null` resets `method` (to POST), `headers`, `body`,
/// `timezone` (to UTC), `stop_condition` and `retry`. Any other key is refused with 400.
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
}

// ---- task views ---------------------------------------------------------------------------

/// The latest execution attempt.
#[derive(ToSchema)]
pub struct LastExecution {
    /// When the attempt was recorded.
    pub timestamp: DateTime<Utc>,
    /// The scheduled run it belongs to.
    pub scheduled_time: DateTime<Utc>,
    /// 0 for the first attempt, n for the n-th retry.
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

/// A task, as `GET`/`PATCH /api/v1/tasks/{task_id}` return it. Header values are never
/// returned, only their names.
#[derive(ToSchema)]
pub struct TaskView {
    pub task_id: Uuid,
    pub user_id: i64,
    #[schema(rename = "type")]
    pub task_type: TaskType,
    pub status: TaskStatus,
    #[schema(format = "uri")]
    pub http_endpoint: String,
    pub method: HttpMethod,
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
    #[schema(required = true)]
    pub start_time: Option<DateTime<Utc>>,
    /// `{}` when the task has none.
    pub stop_condition: StopCondition,
    /// The task's own retry settings, `null` when it uses the defaults.
    #[schema(required = true)]
    pub retry: Option<RetryPolicy>,
    /// Executions so far (one scheduled fire with its retries).
    pub execution_count: i64,
    pub consecutive_failures: i64,
    /// `null` before the first execution.
    #[schema(required = true)]
    pub last_execution: Option<LastExecution>,
    #[schema(required = true)]
    pub next_run_time: Option<DateTime<Utc>>,
    /// Optimistic-lock version, for `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A task in a user's list.
#[derive(ToSchema)]
pub struct TaskSummary {
    pub task_id: Uuid,
    pub status: TaskStatus,
    #[schema(rename = "type")]
    pub task_type: TaskType,
    #[schema(format = "uri")]
    pub http_endpoint: String,
    #[schema(required = true)]
    pub next_run_time: Option<DateTime<Utc>>,
}

/// One page of a user's tasks.
#[derive(ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
    /// All matches, not just this page.
    pub total: u64,
}

/// One execution attempt.
#[derive(ToSchema)]
pub struct LogEntry {
    pub log_id: Uuid,
    pub task_id: Uuid,
    /// The scheduled run this attempt belongs to.
    pub scheduled_time: DateTime<Utc>,
    /// When the attempt was recorded.
    pub timestamp: DateTime<Utc>,
    /// 0 for the first attempt, n for the n-th retry.
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
}

/// One page of a task's execution attempts, newest first.
#[derive(ToSchema)]
pub struct LogsResponse {
    pub logs: Vec<LogEntry>,
    /// All attempts, not just this page.
    pub total: u64,
}

/// How many of a user's tasks are `running`.
#[derive(ToSchema)]
#[schema(example = json!({"user_id": 1001, "running_tasks": 5,
    "last_updated": "2025-04-22T14:30:45.000Z"}))]
pub struct RunningCount {
    pub user_id: i64,
    pub running_tasks: u64,
    /// When the count was taken.
    pub last_updated: DateTime<Utc>,
}

/// A success with a message.
#[derive(ToSchema)]
#[schema(example = json!({"status": "success", "message": "Task stopped successfully"}))]
pub struct MessageResponse {
    /// Always `success`.
    #[schema(example = "success")]
    pub status: String,
    pub message: String,
}

/// The cluster as one node sees it.
#[derive(ToSchema)]
#[schema(as = ClusterView)]
pub struct ClusterViewDoc {
    /// This node's id (`standalone` in single-node mode).
    #[schema(example = "n1")]
    pub node_id: String,
    /// The live members, each with the partitions it owns.
    pub members: Vec<ClusterMemberDoc>,
}

/// A live member of the cluster.
#[derive(ToSchema)]
#[schema(as = ClusterMember)]
pub struct ClusterMemberDoc {
    #[schema(example = "n1")]
    pub node_id: String,
    /// The address its API is reached at.
    #[schema(example = "127.0.0.1:8081")]
    pub address: String,
    pub partitions: Vec<u32>,
}

/// A probe's answer.
#[derive(ToSchema)]
pub struct ProbeStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(example = "ok")]
    pub status: String,
}

/// Every error.
#[derive(ToSchema)]
#[schema(example = json!({"status": "error", "code": "invalid_input",
    "message": "interval_seconds: is required"}))]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(example = "error")]
    pub status: String,
    pub code: crate::api::error::ErrorCode,
    /// What was wrong, naming the field.
    pub message: String,
}
