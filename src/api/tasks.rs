//! `/api/v1/tasks…`: create, view, patch, pause, resume, cancel, delete and the execution
//! history. Each
//! handler parses the request, authorises the caller, calls the task service
//! ([`crate::service::tasks`]) or the store, and answers with a view ([`super::views`]).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use entities::tasks;
use uuid::Uuid;

use super::filters::log_filter;
use super::views::{
    CreateTaskResponse, ErrorBody, LogEntry, LogsResponse, MessageResponse, NotificationEntry,
    NotificationsResponse, TaskView,
};
use super::{json_body, paging, query_pairs, ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::domain::validate::{parse_create_within, parse_patch_within};
use crate::net::{check_url, OutboundError};

pub fn parse_task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::InvalidInput(format!("task_id: '{raw}' is not a UUID")))
}

/// The create/patch-time outbound check. A host that does not resolve now is accepted (DNS
/// may be down for a moment, or the name may exist only later); the same check runs again in
/// the HTTP client's resolution step before every connection, so nothing unsafe is reached.
async fn check_endpoint(state: &AppState, url: &url::Url) -> Result<(), ApiError> {
    check_outbound(state, url, "http_endpoint").await
}

/// The outbound check of a URL the task sends to, its refusal naming `field`
/// (`http_endpoint`, `notify.url`).
async fn check_outbound(state: &AppState, url: &url::Url, field: &str) -> Result<(), ApiError> {
    match check_url(url, state.allow_private_targets).await {
        Ok(()) => Ok(()),
        Err(e @ (OutboundError::Resolve(_) | OutboundError::NoAddress(_))) => {
            tracing::debug!(error = %e, field, "destination not resolvable at create time; checked again when connecting");
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            let what = message.strip_prefix("http_endpoint:").unwrap_or(&message);
            Err(ApiError::InvalidInput(format!("{field}:{what}")))
        }
    }
}

/// The outbound check of a task's `notify.url`, as for its endpoint.
async fn check_notify(
    state: &AppState,
    notify: Option<&crate::domain::notify::Notify>,
) -> Result<(), ApiError> {
    match notify {
        Some(n) => check_outbound(state, &n.url, "notify.url").await,
        None => Ok(()),
    }
}

/// Create a task.
///
/// Validates the definition, commits it to storage and schedules it: a 201 means the task is
/// already in the database. The first run is `start_time` if in the future, else now +
/// interval for `interval` tasks, the next match for `cron`, now for `once`. With
/// `?dry_run=true`, checks as create does and answers with what it would do instead.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    operation_id = "create_task",
    params(
        ("dry_run" = Option<bool>, Query, description = "`true`: run every check of a create (destination and quota included) and answer 200 with the request it would send, its first five runs and warnings, storing and sending nothing"),
    ),
    request_body(content = super::requests::CreateTaskRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`dry_run=true`: the task would be created; nothing was stored or sent", body = super::views::DryRunResponse),
        (status = 201, description = "Created and committed", body = CreateTaskResponse),
        (status = 400, description = "Invalid input (the message names the field), including a refused destination", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "`user_id` is not the token's user", body = ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the user's active tasks or fires per minute would exceed `[limits]` (the message names the figure)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let dry_run = super::dry_run::requested(&req)?;
    let v = json_body(&req, payload, state.max_body_bytes).await?;
    if dry_run {
        return Ok(HttpResponse::Ok().json(dry_run_of(&state, &who, &v).await?));
    }
    Ok(HttpResponse::Created().json(create_of(&state, &who, &v).await?))
}

/// A create body, validated and authorised: what create and its dry run share.
fn spec_for(
    state: &AppState,
    who: &Principal,
    v: &serde_json::Value,
) -> Result<crate::domain::TaskSpec, ApiError> {
    let spec = parse_create_within(v, &state.input_limits)?;
    if !who.may_act_for(spec.user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id: this token may not create tasks for user {}",
            spec.user_id
        )));
    }
    Ok(spec)
}

/// Creates the task a create body describes (the handler's work, for the console too).
pub async fn create_of(
    state: &AppState,
    who: &Principal,
    v: &serde_json::Value,
) -> Result<CreateTaskResponse, ApiError> {
    let spec = spec_for(state, who, v)?;
    check_notify(state, spec.notify.as_ref()).await?;
    check_endpoint(state, &spec.http_endpoint).await?;
    let created = state.tasks().create(spec).await?;
    Ok(CreateTaskResponse::new(
        created.task_id,
        created.next_run_time,
    ))
}

/// Checks a create body as create does, storing and sending nothing.
pub async fn dry_run_of(
    state: &AppState,
    who: &Principal,
    v: &serde_json::Value,
) -> Result<super::views::DryRunResponse, ApiError> {
    let spec = spec_for(state, who, v)?;
    check_notify(state, spec.notify.as_ref()).await?;
    super::dry_run::answer(state, spec).await
}

/// View a task.
///
/// The task with `header_names` (never values), `last_execution` and `version`.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}",
    tag = "tasks",
    operation_id = "get_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
    ),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "`task_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn view(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    Ok(HttpResponse::Ok().json(view_of(&state, &who, task_id).await?))
}

/// The view of a task the caller may read.
pub async fn view_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
) -> Result<TaskView, ApiError> {
    let m = state.tasks().owned(who, task_id).await?;
    task_view(state, &m).await
}

/// The view of a stored task: its header names (decrypted) and its latest attempt.
async fn task_view(state: &AppState, m: &tasks::Model) -> Result<TaskView, ApiError> {
    let task_id = Uuid::parse_str(&m.task_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let header_names: Vec<String> = state
        .store
        .open_headers(task_id, m.headers.as_deref())?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let last = state.store.last_log(task_id).await?;
    Ok(TaskView::new(m, header_names, last.as_ref()))
}

pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::InvalidInput(format!("If-Match: '{s}' is not a version number")))
}

/// Change a task.
///
/// Changes any of `http_endpoint`, `method`, `headers`, `body`, `interval_seconds`,
/// `cron_expression`, `timezone`, `start_time`, `stop_condition`, `retry` of a `pending` or
/// `running` task, validated as create does; the schedule is recomputed at once. Returns the
/// task view.
#[utoipa::path(
    patch,
    path = "/api/v1/tasks/{task_id}",
    tag = "tasks",
    operation_id = "patch_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        super::requests::IfMatch,
    ),
    request_body(content = super::requests::PatchTaskRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed task", body = TaskView),
        (status = 400, description = "Invalid input (the message names the field)", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 409, description = "The task is no longer pending or running, or `If-Match` is stale", body = ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the new schedule would take the user's fires per minute past `[limits]`", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let expected = if_match(&req)?;
    let m = state.tasks().owned(&who, task_id).await?;
    let v = json_body(&req, payload, state.max_body_bytes).await?;
    Ok(HttpResponse::Ok().json(patch_of(&state, &who, task_id, m, expected, &v).await?))
}

/// Changes a task the caller owns (`m`, read by [`TaskService::owned`]) as a patch body says.
pub async fn patch_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
    m: tasks::Model,
    expected: Option<i64>,
    v: &serde_json::Value,
) -> Result<TaskView, ApiError> {
    let patch = parse_patch_within(v, &state.input_limits)?;
    if let Some(url) = &patch.http_endpoint {
        check_endpoint(state, url).await?;
    }
    if let Some(notify) = &patch.notify {
        check_notify(state, notify.as_ref()).await?;
    }
    let fresh = state
        .tasks()
        .patch(who, task_id, m, expected, patch)
        .await?;
    task_view(state, &fresh).await
}

/// Cancel a task.
///
/// Aborts an execution in flight and sets the task `stopped` (from `pending`, `running` or
/// `paused`); the task and its logs are kept.
#[utoipa::path(
    put,
    path = "/api/v1/tasks/{task_id}/cancel",
    tag = "tasks",
    operation_id = "cancel_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
    ),
    responses(
        (status = 200, description = "Stopped", body = MessageResponse,
            example = json!({"status": "success", "message": "Task stopped successfully"})),
        (status = 400, description = "`task_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 409, description = "Already completed, failed or stopped", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn cancel(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    Ok(HttpResponse::Ok().json(cancel_of(&state, &who, task_id).await?))
}

/// Cancels a task the caller may change.
pub async fn cancel_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
) -> Result<MessageResponse, ApiError> {
    let tasks = state.tasks();
    let m = tasks.owned(who, task_id).await?;
    tasks.cancel(who, task_id, m).await?;
    Ok(MessageResponse::success("Task stopped successfully"))
}

/// Pause a task.
///
/// A `pending` or `running` task becomes `paused`: kept, not fired, its counters kept. An
/// execution on the wire finishes and is logged (the answer waits for it). Returns the task
/// view.
#[utoipa::path(
    put,
    path = "/api/v1/tasks/{task_id}/pause",
    tag = "tasks",
    operation_id = "pause_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        super::requests::IfMatch,
    ),
    responses(
        (status = 200, description = "The paused task", body = TaskView),
        (status = 400, description = "`task_id` is not a UUID, or `If-Match` is not a version", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 409, description = "`invalid_state`: the task is not pending or running; `version_mismatch`: `If-Match` is stale", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn pause(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let expected = if_match(&req)?;
    Ok(HttpResponse::Ok().json(pause_of(&state, &who, task_id, expected).await?))
}

/// Pauses a task the caller may change.
pub async fn pause_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
    expected: Option<i64>,
) -> Result<TaskView, ApiError> {
    let tasks = state.tasks();
    let m = tasks.owned(who, task_id).await?;
    let fresh = tasks.pause(who, task_id, m, expected).await?;
    task_view(state, &fresh).await
}

/// Resume a paused task.
///
/// Back to the state it was paused from (`running` once it has executed, else `pending`);
/// the next run is the first slot of its schedule strictly after now (slots that fell inside
/// the pause are neither fired nor counted as missed; a `once` task whose time passed while
/// paused runs at once). Admitted by the quotas as a create is. Returns the task view.
#[utoipa::path(
    put,
    path = "/api/v1/tasks/{task_id}/resume",
    tag = "tasks",
    operation_id = "resume_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        super::requests::IfMatch,
    ),
    responses(
        (status = 200, description = "The resumed task", body = TaskView),
        (status = 400, description = "`task_id` is not a UUID, or `If-Match` is not a version", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 409, description = "`invalid_state`: the task is not paused (or its cron fires no time after now); `version_mismatch`: `If-Match` is stale", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the user's fires per minute would exceed `[limits]`", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn resume(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let expected = if_match(&req)?;
    Ok(HttpResponse::Ok().json(resume_of(&state, &who, task_id, expected).await?))
}

/// Resumes a task the caller may change.
pub async fn resume_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
    expected: Option<i64>,
) -> Result<TaskView, ApiError> {
    let tasks = state.tasks();
    let m = tasks.owned(who, task_id).await?;
    let fresh = tasks.resume(who, task_id, m, expected).await?;
    task_view(state, &fresh).await
}

/// Delete a task.
///
/// Stops it as cancel does and removes the task and its logs.
#[utoipa::path(
    delete,
    path = "/api/v1/tasks/{task_id}",
    tag = "tasks",
    operation_id = "delete_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
    ),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse,
            example = json!({"status": "success", "message": "Task deleted permanently"})),
        (status = 400, description = "`task_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    Ok(HttpResponse::Ok().json(delete_of(&state, &who, task_id).await?))
}

/// Deletes a task the caller may change.
pub async fn delete_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
) -> Result<MessageResponse, ApiError> {
    let tasks = state.tasks();
    tasks.owned(who, task_id).await?;
    tasks.delete(task_id).await?;
    Ok(MessageResponse::success("Task deleted permanently"))
}

/// A task's execution history.
///
/// One entry per execution attempt (and per scheduled run skipped because the previous one
/// was in flight), newest first, with `total` counting every entry that matches the filters.
/// `outcome`: `success` = a request was sent and answered 2xx; `failure` = a request was sent
/// and answered otherwise or not at all; `skipped` = not sent (`attempt` 0). `since` and
/// `until` bound the entry's `timestamp`, `since` inclusive, `until` exclusive.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/logs",
    tag = "tasks",
    operation_id = "list_task_logs",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "Page size, 1 to 1000 (default 50)"),
        ("offset" = Option<u64>, Query, description = "Entries to skip (default 0)"),
        ("outcome" = Option<super::requests::LogOutcome>, Query,
            description = "Only entries with this outcome"),
        ("since" = Option<chrono::DateTime<chrono::Utc>>, Query,
            description = "Only entries recorded at or after this time (RFC 3339, any offset)"),
        ("until" = Option<chrono::DateTime<chrono::Utc>>, Query,
            description = "Only entries recorded before this time (RFC 3339, any offset; not before `since`)"),
    ),
    responses(
        (status = 200, description = "One page of attempts", body = LogsResponse),
        (status = 400, description = "`task_id` is not a UUID, `limit`/`offset` out of range, an unknown `outcome`, `since`/`until` not an RFC 3339 time, or `until` before `since`", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn logs(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let pairs = query_pairs(&req);
    Ok(HttpResponse::Ok().json(logs_of(&state, &who, task_id, &pairs).await?))
}

/// One page of a task's history, from the query pairs (`limit`, `offset`, `outcome`, `since`,
/// `until`).
pub async fn logs_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
    pairs: &[(String, String)],
) -> Result<LogsResponse, ApiError> {
    let (limit, offset) = paging(pairs, 50, 1000)?;
    let filter = log_filter(pairs)?;
    state.tasks().owned(who, task_id).await?;
    let (rows, total) = state.store.logs(task_id, &filter, limit, offset).await?;
    Ok(LogsResponse {
        logs: rows.iter().map(LogEntry::from).collect(),
        total,
    })
}

/// A task's notifications.
///
/// One entry per event raised for the task's `notify` (README, "Notifications"), newest
/// first, with where its delivery stands: `pending` (not delivered yet, retries left),
/// `delivered` or `failed` (retries exhausted). Deliveries are not executions: they are not
/// in `/logs` and count in no `execution_count`.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/notifications",
    tag = "tasks",
    operation_id = "list_task_notifications",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "Page size, 1 to 1000 (default 50)"),
        ("offset" = Option<u64>, Query, description = "Entries to skip (default 0)"),
    ),
    responses(
        (status = 200, description = "One page of notifications", body = NotificationsResponse),
        (status = 400, description = "`task_id` is not a UUID, or `limit`/`offset` out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn notifications(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let pairs = query_pairs(&req);
    let (limit, offset) = paging(&pairs, 50, 1000)?;
    state.tasks().owned(&who, task_id).await?;
    let (rows, total) = state.store.notifications(task_id, limit, offset).await?;
    Ok(HttpResponse::Ok().json(NotificationsResponse {
        notifications: rows.iter().map(NotificationEntry::from).collect(),
        total,
    }))
}
