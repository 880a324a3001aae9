//! Liveness and readiness probes (no token).

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::views::{ErrorBody, ProbeStatus};
use super::{ApiError, AppState};

/// 200 while the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The process is up", body = ProbeStatus,
            example = json!({"status": "ok"})),
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(ProbeStatus { status: "ok" })
}

/// 200 once storage answers and recovery is done; 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Storage answers and recovery is done",
            body = ProbeStatus, example = json!({"status": "ready"})),
        (status = 503, description = "Recovery in progress or storage unreachable",
            body = ErrorBody),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::NotReady("recovery in progress".into()));
    }
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::NotReady(format!("storage unreachable: {e}")))?;
    Ok(HttpResponse::Ok().json(ProbeStatus { status: "ready" }))
}
