//! `/api/v1/tasks…`: create, view, patch, cancel, delete and the execution history.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use entities::{task_logs, tasks};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{json_body, paging, query_pairs, ApiError, AppState, Auth};
use crate::actors::persistence::Commit;
use crate::actors::registry::{Activate, Deactivate, Replace};
use crate::actors::task::Stop;
use crate::auth::Principal;
use crate::cluster::redis::{ChangeKind, Changed, QueueOp};
use crate::domain::validate::{parse_create_within, parse_patch_within};
use crate::domain::{anchor_for, apply_patch, schedule_of, FieldError, Schedule, TaskStatus};
use crate::net::{check_url, OutboundError};
use crate::quota::QuotaError;
use crate::store::{ActiveTask, RowState, ScheduleRow, Write};
use crate::time::{now_ms, to_rfc3339};

/// How many times a state change is retried when a concurrent change bumped the version.
const CONFLICT_RETRIES: usize = 5;

fn parse_task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::InvalidInput(format!("task_id: '{raw}' is not a UUID")))
}

/// Loads a task the caller may see; another user's task is "not found", never "forbidden".
async fn load_owned(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
) -> Result<tasks::Model, ApiError> {
    match state.store.get_task(task_id).await? {
        Some(m) if who.may_act_for(m.user_id) => Ok(m),
        _ => Err(ApiError::TaskNotFound),
    }
}

/// Cluster mode: tells the task's owner (whichever node it is) about a committed change.
/// Awaited (briefly) so the owner hears of it before the client does; a notice that cannot
/// be sent is a delay — the owner's reconciliation finds the change — never a loss.
///
/// The pending queue is updated from here too (a new next run, or the task's removal), so it
/// stays complete while the task's partition changes hands.
async fn notify(
    state: &AppState,
    task_id: Uuid,
    kind: ChangeKind,
    reschedule: bool,
    next: Option<i64>,
) {
    let Some(c) = &state.cluster else { return };
    let partition = crate::cluster::partition_of(task_id, state.partitions);
    match (kind, next) {
        (ChangeKind::Stop, _) => c.queue.push(vec![QueueOp::Remove { partition, task_id }]),
        (ChangeKind::Upsert, Some(at_ms)) if reschedule => c.queue.push(vec![QueueOp::Set {
            partition,
            task_id,
            at_ms,
        }]),
        _ => {}
    }
    let change = Changed {
        origin: c.redis.owner().to_string(),
        task_id,
        kind,
        reschedule,
    };
    match c.redis.publish(&change).await {
        Ok(()) => crate::metrics::cluster_notice("published"),
        Err(e) => {
            crate::metrics::cluster_notice("publish_failed");
            tracing::warn!(%task_id, error = %e, "change notice not sent; the owner's reconciliation will pick the change up");
        }
    }
}

fn quota_refusal(e: QuotaError) -> ApiError {
    match e {
        QuotaError::Exceeded(message) => ApiError::QuotaExceeded(message),
        QuotaError::Store(e) => e.into(),
    }
}

fn status_of(m: &tasks::Model) -> TaskStatus {
    TaskStatus::parse(&m.status).unwrap_or(TaskStatus::Stopped)
}

/// The create/patch-time outbound check. A host that does not resolve now is accepted (DNS
/// may be down for a moment, or the name may exist only later); the same check runs again in
/// the HTTP client's resolution step before every connection, so nothing unsafe is reached.
async fn check_endpoint(state: &AppState, url: &url::Url) -> Result<(), ApiError> {
    match check_url(url, state.allow_private_targets).await {
        Ok(()) => Ok(()),
        Err(e @ (OutboundError::Resolve(_) | OutboundError::NoAddress(_))) => {
            tracing::debug!(error = %e, "endpoint not resolvable at create time; checked again when connecting");
            Ok(())
        }
        Err(e) => Err(ApiError::InvalidInput(e.to_string())),
    }
}

/// The first run of a new or rescheduled task. A cron expression whose fires all lie before
/// the task's start (or before now) would be created only to complete at once: refused.
fn first_run(schedule: &Schedule, now: i64) -> Result<i64, ApiError> {
    schedule.first_run(now).ok_or_else(|| {
        ApiError::InvalidInput(
            "cron_expression: fires no time after the task's start_time and now".into(),
        )
    })
}

/// Create a task.
///
/// Validates the definition, commits it to storage and schedules it: a 201 means the task is
/// already in the database. The first run is `start_time` if in the future, else now +
/// interval for `interval` tasks, the next match for `cron`, now for `once`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    operation_id = "create_task",
    request_body(content = crate::api::docs::CreateTaskRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and committed", body = crate::api::docs::CreateTaskResponse),
        (status = 400, description = "Invalid input (the message names the field), including a refused destination", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 403, description = "`user_id` is not the token's user", body = crate::api::docs::ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = crate::api::docs::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::api::docs::ErrorBody),
        (status = 429, description = "`quota_exceeded`: the user's active tasks or fires per minute would exceed `[limits]` (the message names the figure)", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let v = json_body(&req, payload, state.max_body_bytes).await?;
    let spec = parse_create_within(&v, &state.input_limits)?;
    if !who.may_act_for(spec.user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id: this token may not create tasks for user {}",
            spec.user_id
        )));
    }
    check_endpoint(&state, &spec.http_endpoint).await?;

    let now = now_ms();
    let task_id = Uuid::now_v7();
    let anchor = anchor_for(&spec, now);
    let schedule = schedule_of(&spec, anchor).map_err(|e| ApiError::from(FieldError::from(e)))?;
    let next = Some(first_run(&schedule, now)?);
    let model = state
        .store
        .model_for(task_id, &spec, anchor, &RowState::created(next, now))?;
    // Reserves the task's share of the user's quota; given back if the insert fails.
    let permit = state
        .quotas
        .admit_create(&state.store, &spec, &schedule, now)
        .await
        .map_err(quota_refusal)?;
    crate::metrics::sent(crate::metrics::ActorKind::Persistence);
    state
        .persistence
        .send(Commit(Write::InsertTask(Box::new(model))))
        .await??;
    permit.commit();
    crate::metrics::sent(crate::metrics::ActorKind::Registry);
    state.registry.do_send(Activate(Box::new(ActiveTask {
        task_id,
        spec,
        schedule,
        status: TaskStatus::Pending,
        next_run_time: next,
        execution_count: 0,
        consecutive_failures: 0,
        version: 1,
    })));
    notify(&state, task_id, ChangeKind::Upsert, true, next).await;
    tracing::info!(%task_id, next_run_ms = next, "task created");
    Ok(HttpResponse::Created().json(json!({
        "status": "success",
        "task_id": task_id,
        "next_run_time": next.map(to_rfc3339),
    })))
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
        (status = 200, description = "The task", body = crate::api::docs::TaskView),
        (status = 400, description = "`task_id` is not a UUID", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 404, description = "No such task, or another user's", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn view(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let m = load_owned(&state, &who, task_id).await?;
    Ok(HttpResponse::Ok().json(task_view(&state, &m).await?))
}

async fn task_view(state: &AppState, m: &tasks::Model) -> Result<Value, ApiError> {
    let task_id = Uuid::parse_str(&m.task_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let header_names: Vec<String> = state
        .store
        .open_headers(task_id, m.headers.as_deref())?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let last = state.store.last_log(task_id).await?.map(|l| {
        json!({
            "timestamp": to_rfc3339(l.created_at),
            "scheduled_time": to_rfc3339(l.scheduled_time),
            "attempt": l.attempt,
            "http_status": l.http_status,
            "error": l.error,
            "response_body": l.response_body,
        })
    });
    let parse = |s: &Option<String>| -> Value {
        s.as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null)
    };
    let stop = match parse(&m.stop_condition) {
        Value::Null => json!({}),
        v => v,
    };
    Ok(json!({
        "task_id": m.task_id,
        "user_id": m.user_id,
        "type": m.task_type,
        "status": m.status,
        "http_endpoint": m.http_endpoint,
        "method": m.method,
        "header_names": header_names,
        "body": parse(&m.body),
        "interval_seconds": m.interval_seconds,
        "cron_expression": m.cron_expression,
        "timezone": m.timezone,
        "start_time": m.start_time.map(to_rfc3339),
        "stop_condition": stop,
        "retry": parse(&m.retry),
        "execution_count": m.execution_count,
        "consecutive_failures": m.consecutive_failures,
        "last_execution": last,
        "next_run_time": m.next_run_time.map(to_rfc3339),
        "version": m.version,
        "created_at": to_rfc3339(m.created_at),
        "updated_at": to_rfc3339(m.updated_at),
    }))
}

fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
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
        crate::api::docs::IfMatch,
    ),
    request_body(content = crate::api::docs::PatchTaskRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed task", body = crate::api::docs::TaskView),
        (status = 400, description = "Invalid input (the message names the field)", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 404, description = "No such task, or another user's", body = crate::api::docs::ErrorBody),
        (status = 409, description = "The task is no longer pending or running, or `If-Match` is stale", body = crate::api::docs::ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = crate::api::docs::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::api::docs::ErrorBody),
        (status = 429, description = "`quota_exceeded`: the new schedule would take the user's fires per minute past `[limits]`", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
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
    let mut m = load_owned(&state, &who, task_id).await?;
    let v = json_body(&req, payload, state.max_body_bytes).await?;
    let patch = parse_patch_within(&v, &state.input_limits)?;
    let reschedule = patch.changes_schedule();
    if let Some(url) = &patch.http_endpoint {
        check_endpoint(&state, url).await?;
    }

    for _ in 0..CONFLICT_RETRIES {
        let status = status_of(&m);
        if !status.is_active() {
            return Err(ApiError::InvalidState(format!(
                "status: the task is {}; only pending or running tasks can be changed",
                status.as_str()
            )));
        }
        if let Some(v) = expected {
            if v != m.version {
                return Err(ApiError::VersionMismatch(format!(
                    "If-Match: version {v} is stale; the task is at version {}",
                    m.version
                )));
            }
        }
        let spec = apply_patch(&state.store.spec_of(&m)?, patch.clone())?;
        let now = now_ms();
        let (anchor, schedule, next) = if reschedule {
            let anchor = anchor_for(&spec, now);
            let schedule =
                schedule_of(&spec, anchor).map_err(|e| ApiError::from(FieldError::from(e)))?;
            let next = Some(first_run(&schedule, now)?);
            (anchor, schedule, next)
        } else {
            let anchor = m.start_time.unwrap_or(m.created_at);
            let schedule =
                schedule_of(&spec, anchor).map_err(|e| ApiError::from(FieldError::from(e)))?;
            (anchor, schedule, m.next_run_time)
        };
        let row = RowState {
            status,
            next_run_time: next,
            execution_count: m.execution_count,
            consecutive_failures: m.consecutive_failures,
            version: m.version + 1,
            created_at: m.created_at,
            updated_at: now,
        };
        let model = state.store.model_for(task_id, &spec, anchor, &row)?;
        let permit = if reschedule {
            let old = ScheduleRow::of(&m);
            Some(
                state
                    .quotas
                    .admit_reschedule(&state.store, &old, &spec, &schedule, now)
                    .await
                    .map_err(quota_refusal)?,
            )
        } else {
            None
        };
        crate::metrics::sent(crate::metrics::ActorKind::Persistence);
        let changed = state
            .persistence
            .send(Commit(Write::Redefine {
                model: Box::new(model),
                expected_version: m.version,
            }))
            .await??;
        if changed == 1 {
            if let Some(permit) = permit {
                permit.commit();
            }
            crate::metrics::sent(crate::metrics::ActorKind::Registry);
            state.registry.do_send(Replace {
                task: Box::new(ActiveTask {
                    task_id,
                    spec,
                    schedule,
                    status,
                    next_run_time: next,
                    execution_count: m.execution_count,
                    consecutive_failures: m.consecutive_failures,
                    version: m.version + 1,
                }),
                reschedule,
            });
            notify(&state, task_id, ChangeKind::Upsert, reschedule, next).await;
            let fresh = load_owned(&state, &who, task_id).await?;
            return Ok(HttpResponse::Ok().json(task_view(&state, &fresh).await?));
        }
        // Someone else changed it first: look again.
        m = load_owned(&state, &who, task_id).await?;
    }
    Err(ApiError::VersionMismatch(
        "the task is being changed concurrently; try again".into(),
    ))
}

/// Stops the task's actor (aborting an execution in flight) and waits until it has stopped,
/// so nothing it sends afterwards can race the change that follows.
async fn stop_actor(state: &AppState, task_id: Uuid) -> Result<(), ApiError> {
    crate::metrics::sent(crate::metrics::ActorKind::Registry);
    if let Some(addr) = state.registry.send(Deactivate(task_id)).await? {
        crate::metrics::sent(crate::metrics::ActorKind::Task);
        let _ = addr.send(Stop).await;
    }
    Ok(())
}

/// Cancel a task.
///
/// Aborts an execution in flight and sets the task `stopped`; the task and its logs are kept.
#[utoipa::path(
    put,
    path = "/api/v1/tasks/{task_id}/cancel",
    tag = "tasks",
    operation_id = "cancel_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
    ),
    responses(
        (status = 200, description = "Stopped", body = crate::api::docs::MessageResponse,
            example = json!({"status": "success", "message": "Task stopped successfully"})),
        (status = 400, description = "`task_id` is not a UUID", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 404, description = "No such task, or another user's", body = crate::api::docs::ErrorBody),
        (status = 409, description = "Already completed, failed or stopped", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn cancel(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let mut m = load_owned(&state, &who, task_id).await?;
    let mut stopped_actor = false;
    for _ in 0..CONFLICT_RETRIES {
        let status = status_of(&m);
        if !status.is_active() {
            return Err(ApiError::InvalidState(format!(
                "status: the task is already {}",
                status.as_str()
            )));
        }
        if !stopped_actor {
            stop_actor(&state, task_id).await?;
            stopped_actor = true;
        }
        crate::metrics::sent(crate::metrics::ActorKind::Persistence);
        let changed = state
            .persistence
            .send(Commit(Write::SetStatus {
                task_id: task_id.to_string(),
                from: vec![TaskStatus::Pending, TaskStatus::Running],
                to: TaskStatus::Stopped,
                expected_version: Some(m.version),
                now: now_ms(),
            }))
            .await??;
        if changed == 1 {
            notify(&state, task_id, ChangeKind::Stop, false, None).await;
            tracing::info!(%task_id, "task cancelled");
            return Ok(HttpResponse::Ok().json(json!({
                "status": "success",
                "message": "Task stopped successfully",
            })));
        }
        m = load_owned(&state, &who, task_id).await?;
    }
    // Still active after every retry: put its actor back rather than leave it unscheduled.
    if let Ok(t) = state.store.active_task(&m) {
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        state.registry.do_send(Activate(Box::new(t)));
    }
    Err(ApiError::VersionMismatch(
        "the task is being changed concurrently; try again".into(),
    ))
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
        (status = 200, description = "Deleted", body = crate::api::docs::MessageResponse,
            example = json!({"status": "success", "message": "Task deleted permanently"})),
        (status = 400, description = "`task_id` is not a UUID", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 404, description = "No such task, or another user's", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    load_owned(&state, &who, task_id).await?;
    stop_actor(&state, task_id).await?;
    crate::metrics::sent(crate::metrics::ActorKind::Persistence);
    state
        .persistence
        .send(Commit(Write::DeleteTask {
            task_id: task_id.to_string(),
        }))
        .await??;
    notify(&state, task_id, ChangeKind::Stop, false, None).await;
    tracing::info!(%task_id, "task deleted");
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "message": "Task deleted permanently",
    })))
}

/// A task's execution history.
///
/// One entry per execution attempt, newest first, with `total` counting them all.
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
    ),
    responses(
        (status = 200, description = "One page of attempts", body = crate::api::docs::LogsResponse),
        (status = 400, description = "`task_id` is not a UUID, or `limit`/`offset` out of range", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = crate::api::docs::ErrorBody),
        (status = 404, description = "No such task, or another user's", body = crate::api::docs::ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = crate::api::docs::ErrorBody),
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
    let (limit, offset) = paging(&query_pairs(&req), 50, 1000)?;
    load_owned(&state, &who, task_id).await?;
    let (rows, total) = state.store.logs(task_id, limit, offset).await?;
    let logs: Vec<Value> = rows.iter().map(log_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "logs": logs, "total": total })))
}

fn log_view(l: &task_logs::Model) -> Value {
    json!({
        "log_id": l.log_id,
        "task_id": l.task_id,
        "scheduled_time": to_rfc3339(l.scheduled_time),
        "timestamp": to_rfc3339(l.created_at),
        "attempt": l.attempt,
        "http_status": l.http_status,
        "error": l.error,
        "duration_ms": l.duration_ms,
        "response_body": l.response_body,
    })
}
