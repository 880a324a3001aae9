//! Schedule previews: `POST /api/v1/schedules/preview` (a schedule that is not a task yet) and
//! `GET /api/v1/tasks/{task_id}/preview` (a stored task's next runs). Both read no clock but
//! the request's and change nothing; the times and their daylight-saving notes come from
//! [`crate::domain::preview`], that is from the schedule code itself.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono_tz::Tz;
use serde_json::Value;

use super::tasks::parse_task_id;
use super::views::{ErrorBody, PreviewResponse};
use super::{json_body, query_pairs, ApiError, AppState, Auth};
use crate::domain::preview::{self, DEFAULT_COUNT, MAX_COUNT};
use crate::domain::validate::{parse_display_timezone, parse_schedule_within};
use crate::domain::{FieldError, Schedule};
use crate::time::now_ms;

fn count_error() -> ApiError {
    ApiError::InvalidInput(format!("count: must be an integer from 1 to {MAX_COUNT}"))
}

/// `count` from a body: absent or null is the default.
fn count_of_body(v: &Value) -> Result<usize, ApiError> {
    match v.get("count") {
        None | Some(Value::Null) => Ok(DEFAULT_COUNT),
        Some(c) => c
            .as_u64()
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| (1..=MAX_COUNT).contains(c))
            .ok_or_else(count_error),
    }
}

/// `count` from a query string.
fn count_of_query(req: &HttpRequest) -> Result<usize, ApiError> {
    match query_pairs(req).into_iter().find(|(k, _)| k == "count") {
        None => Ok(DEFAULT_COUNT),
        Some((_, c)) => c
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=MAX_COUNT).contains(c))
            .ok_or_else(count_error),
    }
}

/// Preview a schedule.
///
/// The next fire times of the schedule fields of a task (`type`, `interval_seconds`,
/// `cron_expression`, `timezone`, `start_time`), validated as create validates them. With a
/// `start_time` (past or future) the times are those from it on, inclusive; without one,
/// those a task created now would run at. Each time comes with its local time (in the cron
/// `timezone`; for `interval` and `once` in `timezone` if given, else UTC) and a note:
/// `dst_gap_skipped` on the first fire after a local time that did not exist was skipped,
/// `dst_overlap` on a fire in a repeated local hour (it fires once, at the second occurrence).
#[utoipa::path(
    post,
    path = "/api/v1/schedules/preview",
    tag = "schedules",
    operation_id = "preview_schedule",
    request_body(content = super::requests::PreviewRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The next fire times", body = PreviewResponse),
        (status = 400, description = "Invalid schedule or `count` (the message names the field), as create refuses it", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn preview(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    Auth(_who): Auth,
) -> Result<HttpResponse, ApiError> {
    let v = json_body(&req, payload, state.max_body_bytes).await?;
    Ok(HttpResponse::Ok().json(preview_of(&state, &v)?))
}

/// The next fire times of the schedule fields in `v` (a preview body).
pub fn preview_of(state: &AppState, v: &Value) -> Result<PreviewResponse, ApiError> {
    let spec = parse_schedule_within(v, &state.input_limits)?;
    let display = parse_display_timezone(v.get("timezone"))?;
    let count = count_of_body(v)?;
    let now = now_ms();
    let start_ms = spec.start_time.map(|t| t.timestamp_millis());
    let schedule = Schedule::build(
        spec.task_type,
        spec.interval_seconds,
        spec.cron_expression.as_deref(),
        spec.timezone.as_deref(),
        start_ms.unwrap_or(now),
    )
    .map_err(FieldError::from)?;
    let zone = display_zone(display.as_deref());
    let fires = preview::start_of_schedule(&schedule, start_ms, now)
        .map(|start| preview::fires(&schedule, zone, start, count))
        .unwrap_or_default();
    Ok(PreviewResponse::new(
        &fires,
        preview::zone_of(&schedule, zone),
    ))
}

/// Preview a task's next runs.
///
/// The next `count` (1–100, default 10) runs of a stored task: from its `next_run_time` while
/// it is pending or running, the slots after now for a paused task (what a resume now would
/// run), none for a finished one; cut where its stop condition's `max_cnt` or `end_time`
/// ends it. Times, local times and notes as `POST /api/v1/schedules/preview` gives them.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/preview",
    tag = "schedules",
    operation_id = "preview_task",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
        ("count" = Option<u32>, Query, description = "How many runs, 1–100 (default 10)", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "The task's next runs", body = PreviewResponse),
        (status = 400, description = "`task_id` is not a UUID, or `count` is out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn task_preview(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let count = count_of_query(&req)?;
    Ok(HttpResponse::Ok().json(task_preview_of(&state, &who, task_id, count).await?))
}

/// The next `count` runs of a task the caller may read.
pub async fn task_preview_of(
    state: &AppState,
    who: &crate::auth::Principal,
    task_id: uuid::Uuid,
    count: usize,
) -> Result<PreviewResponse, ApiError> {
    let m = state.tasks().owned(who, task_id).await?;
    let task = state.store.active_task(&m)?;
    let zone = display_zone(task.spec.timezone.as_deref());
    let executed = u64::try_from(task.execution_count).unwrap_or(0);
    let fires = preview::start_of_task(&task.schedule, task.status, task.next_run_time, now_ms())
        .map(|start| preview::fires(&task.schedule, zone, start, count))
        .map(|fires| preview::within_stop(fires, &task.spec.stop_condition, executed))
        .unwrap_or_default();
    Ok(PreviewResponse::new(
        &fires,
        preview::zone_of(&task.schedule, zone),
    ))
}

/// A validated zone name as a zone (UTC when none).
fn display_zone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.parse::<Tz>().ok()).unwrap_or(Tz::UTC)
}
