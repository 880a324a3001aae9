//! `/api/v1/users/{user_id}/tasks…`: a user's tasks and their running count.

use actix_web::{web, HttpRequest, HttpResponse};

use super::views::{ErrorBody, RunningCount, TaskList, TaskSummary};
use super::{paging, query_pairs, ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::domain::TaskStatus;
use crate::time::{now_ms, to_rfc3339};

fn parse_user(raw: &str, who: &Principal) -> Result<i64, ApiError> {
    let user_id = raw
        .parse::<i64>()
        .ok()
        .filter(|u| *u >= 0)
        .ok_or_else(|| ApiError::InvalidInput(format!("user_id: '{raw}' is not a user id")))?;
    if !who.may_act_for(user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id: this token may not read the tasks of user {user_id}"
        )));
    }
    Ok(user_id)
}

/// A user's tasks.
///
/// Optionally filtered by `status`; `total` counts all matches, not the page.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/tasks",
    tag = "users",
    operation_id = "list_user_tasks",
    params(
        ("user_id" = i64, Path, minimum = 0, description = "The user id"),
        ("status" = Option<super::requests::TaskStatus>, Query, description = "Only tasks in this state"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "Page size, 1 to 1000 (default 50)"),
        ("offset" = Option<u64>, Query, description = "Tasks to skip (default 0)"),
    ),
    responses(
        (status = 200, description = "One page of the user's tasks", body = TaskList),
        (status = 400, description = "`user_id` is not a user id, or an unknown `status`, or `limit`/`offset` out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Another user's list (non-admin token)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let user_id = parse_user(&path, &who)?;
    let pairs = query_pairs(&req);
    let (limit, offset) = paging(&pairs, 50, 1000)?;
    let mut status = None;
    for (k, v) in &pairs {
        if k == "status" {
            status = Some(TaskStatus::parse(v).ok_or_else(|| {
                ApiError::InvalidInput(format!(
                    "status: unknown status '{v}' (pending, running, paused, completed, failed, stopped)"
                ))
            })?);
        }
    }
    let (rows, total) = state
        .store
        .list_user_tasks(user_id, status, limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(TaskList {
        tasks: rows.iter().map(TaskSummary::from).collect(),
        total,
    }))
}

/// How many of a user's tasks are running.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/tasks/running-count",
    tag = "users",
    operation_id = "count_running_tasks",
    params(
        ("user_id" = i64, Path, minimum = 0, description = "The user id"),
    ),
    responses(
        (status = 200, description = "The count", body = RunningCount),
        (status = 400, description = "`user_id` is not a user id", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Another user's tasks (non-admin token)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn running_count(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let user_id = parse_user(&path, &who)?;
    let n = state.store.count_running(user_id).await?;
    Ok(HttpResponse::Ok().json(RunningCount {
        user_id,
        running_tasks: n,
        last_updated: to_rfc3339(now_ms()),
    }))
}
