//! `/api/v1/users/{user_id}/tasks…`: a user's tasks and their running count.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{paging, query_pairs, ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::domain::TaskStatus;
use crate::time::{now_ms, to_rfc3339};

fn parse_user(raw: &str, who: &Principal) -> Result<i64, ApiError> {
    let user_id = raw
        .parse::<i64>()
        .ok()
        .filter(|u| *u >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("user_id: '{raw}' is not a user id")))?;
    if !who.may_act_for(user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id: this token may not read the tasks of user {user_id}"
        )));
    }
    Ok(user_id)
}

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
                ApiError::BadRequest(format!(
                    "status: unknown status '{v}' (pending, running, completed, failed, stopped)"
                ))
            })?);
        }
    }
    let (rows, total) = state
        .store
        .list_user_tasks(user_id, status, limit, offset)
        .await?;
    let tasks: Vec<_> = rows
        .iter()
        .map(|m| {
            json!({
                "task_id": m.task_id,
                "status": m.status,
                "type": m.task_type,
                "http_endpoint": m.http_endpoint,
                "next_run_time": m.next_run_time.map(to_rfc3339),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "total": total })))
}

pub async fn running_count(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let user_id = parse_user(&path, &who)?;
    let n = state.store.count_running(user_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": user_id,
        "running_tasks": n,
        "last_updated": to_rfc3339(now_ms()),
    })))
}
