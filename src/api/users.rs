//! `/api/v1/users/{user_id}/tasks…`: a user's tasks and their running count.

use actix_web::{web, HttpRequest, HttpResponse};

use super::filters::task_search;
use super::views::{ErrorBody, RunningCount, StatusCounts, TaskList, TaskSummary};
use super::{paging, query_pairs, ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::time::{now_ms, to_rfc3339};

/// The `{user_id}` of a path, which the caller must be allowed to act for: 400 when it is not
/// a user id, 403 (naming `what` the token may not do) for another user's.
pub(super) fn parse_user(raw: &str, who: &Principal, what: &str) -> Result<i64, ApiError> {
    let user_id = raw
        .parse::<i64>()
        .ok()
        .filter(|u| *u >= 0)
        .ok_or_else(|| ApiError::InvalidInput(format!("user_id: '{raw}' is not a user id")))?;
    if !who.may_act_for(user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id: this token may not {what} of user {user_id}"
        )));
    }
    Ok(user_id)
}

/// What a non-admin token may not do with another user's tasks.
const READ_TASKS: &str = "read the tasks";

/// A user's tasks.
///
/// Newest first, filtered by any of `q` (a substring of the endpoint URL or of the task id,
/// case-insensitive for ASCII letters, `%` and `_` matching only themselves), `type` and
/// `status` (repeat it for several states: `?status=running&status=paused`). `total` counts
/// every match, not just the page; `counts` gives the user's tasks per status, all of them
/// whatever the filters.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/tasks",
    tag = "users",
    operation_id = "list_user_tasks",
    params(
        ("user_id" = i64, Path, minimum = 0, description = "The user id"),
        ("status" = Option<Vec<super::requests::TaskStatus>>, Query, style = Form, explode,
            description = "Only tasks in one of these states (repeat the parameter for several)"),
        ("type" = Option<super::requests::TaskType>, Query, description = "Only tasks of this type"),
        ("q" = Option<String>, Query, max_length = 256,
            description = "Only tasks whose endpoint URL or task id contains this text"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "Page size, 1 to 1000 (default 50)"),
        ("offset" = Option<u64>, Query, description = "Tasks to skip (default 0)"),
    ),
    responses(
        (status = 200, description = "One page of the user's tasks", body = TaskList),
        (status = 400, description = "`user_id` is not a user id, an unknown `status` or `type`, `q` longer than 256 characters, or `limit`/`offset` out of range", body = ErrorBody),
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
    let pairs = query_pairs(&req);
    Ok(HttpResponse::Ok().json(list_of(&state, &who, &path, &pairs).await?))
}

/// One page of a user's tasks (`user_raw` as the path gives it), from the query pairs
/// (`status`, `type`, `q`, `limit`, `offset`), with the user's counts per status.
pub async fn list_of(
    state: &AppState,
    who: &Principal,
    user_raw: &str,
    pairs: &[(String, String)],
) -> Result<TaskList, ApiError> {
    let user_id = parse_user(user_raw, who, READ_TASKS)?;
    let (limit, offset) = paging(pairs, 50, 1000)?;
    let search = task_search(pairs)?;
    let (rows, total) = state
        .store
        .list_user_tasks(user_id, &search, limit, offset)
        .await?;
    let counts = state.store.user_status_counts(user_id).await?;
    Ok(TaskList {
        tasks: rows.iter().map(TaskSummary::from).collect(),
        total,
        counts: StatusCounts::from_pairs(&counts),
    })
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
    let user_id = parse_user(&path, &who, READ_TASKS)?;
    let n = state.store.count_running(user_id).await?;
    Ok(HttpResponse::Ok().json(RunningCount {
        user_id,
        running_tasks: n,
        last_updated: to_rfc3339(now_ms()),
    }))
}
