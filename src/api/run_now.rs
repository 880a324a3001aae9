//! `POST /api/v1/tasks/{task_id}/run`: run a task once now, outside its schedule.
//!
//! Any node answers. The node that runs the task (its partition's owner) starts the execution
//! and answers at once; in cluster mode another node forwards the request to the owner over
//! HTTP (its address from the membership), with the caller's `Authorization`, and returns the
//! owner's answer as it is. An owner that cannot be reached is a 503 `not_ready`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::views::{ErrorBody, RunNowResponse};
use super::{ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::cluster::membership::GetView;
use crate::service::tasks::RunNowOutcome;

/// Marks a request forwarded by another node: it is not forwarded again.
const FORWARDED: &str = "x-tickwheel-forwarded-by";
/// How long a forwarded request may take (the owner answers once the execution has started).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Run a task now.
///
/// One extra execution at once, outside the schedule, with the task's request, retries, rate
/// limit and logging (`trigger: "manual"` in its log rows; `webhook-id:
/// <task_id>:<epoch ms of the request>`). It counts as an execution (`execution_count`,
/// stop conditions: reaching `max_cnt` completes the task) and moves no scheduled slot; a
/// scheduled slot that comes due while it runs is skipped as an overlap. Works on a paused
/// task, which stays paused. A `once` task keeps its scheduled run.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{task_id}/run",
    tag = "tasks",
    operation_id = "run_task_now",
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task id"),
    ),
    responses(
        (status = 202, description = "Started; `scheduled_time` is the moment of the request", body = RunNowResponse),
        (status = 400, description = "`task_id` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 404, description = "No such task, or another user's", body = ErrorBody),
        (status = 409, description = "`execution_in_flight`: an execution of the task is in flight; `invalid_state`: the task is completed, failed or stopped", body = ErrorBody),
        (status = 503, description = "`not_ready`: the node that runs the task is starting, leaving or unreachable", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn run(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let task_id = super::tasks::parse_task_id(&path)?;
    run_of(
        &state,
        &who,
        task_id,
        req.headers().get(header::AUTHORIZATION).cloned(),
        req.headers().contains_key(FORWARDED),
    )
    .await
}

/// Runs a task the caller may change now, here or (cluster mode) on its owner, which is sent
/// the caller's `authorization`; `forwarded`: this request was already forwarded once.
pub async fn run_of(
    state: &AppState,
    who: &Principal,
    task_id: Uuid,
    authorization: Option<header::HeaderValue>,
    forwarded: bool,
) -> Result<HttpResponse, ApiError> {
    let tasks = state.tasks();
    let m = tasks.owned(who, task_id).await?;
    match tasks.run_now(who, task_id, m).await? {
        RunNowOutcome::Started(slot) => {
            Ok(HttpResponse::Accepted().json(RunNowResponse::new(slot)))
        }
        RunNowOutcome::Elsewhere => forward(state, task_id, authorization, forwarded).await,
    }
}

/// Sends the request to the node that owns the task's partition and returns its answer.
async fn forward(
    state: &AppState,
    task_id: Uuid,
    authorization: Option<header::HeaderValue>,
    forwarded: bool,
) -> Result<HttpResponse, ApiError> {
    let not_ready = |why: &str| ApiError::NotReady(format!("the task's node {why}; try again"));
    let Some(cluster) = &state.cluster else {
        return Err(not_ready("is not ready"));
    };
    if forwarded {
        // The sender thought this node owns it: ownership is moving.
        return Err(not_ready("is changing"));
    }
    let partition = crate::domain::partition::partition_of(task_id, state.partitions);
    crate::metrics::sent(crate::metrics::ActorKind::Membership);
    let view = cluster.membership.send(GetView).await?;
    let Some(owner) = view
        .members
        .iter()
        .find(|m| m.partitions.contains(&partition) && m.node_id != state.node_id)
    else {
        return Err(not_ready("is changing"));
    };
    let url = format!("http://{}/api/v1/tasks/{task_id}/run", owner.address);
    let mut out = awc::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .finish()
        .post(&url)
        .insert_header((FORWARDED, state.node_id.as_str()));
    if let Some(auth) = authorization {
        out = out.insert_header((header::AUTHORIZATION, auth));
    }
    let mut resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%task_id, owner = %owner.node_id, error = %e, "run now not forwarded");
            return Err(not_ready("cannot be reached"));
        }
    };
    let body = match resp.body().limit(64 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(%task_id, owner = %owner.node_id, error = %e, "run now: no answer from the owner");
            return Err(not_ready("did not answer"));
        }
    };
    let status = actix_web::http::StatusCode::from_u16(resp.status().as_u16())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(body))
}
