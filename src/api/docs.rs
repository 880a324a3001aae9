//! The OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and the Swagger UI at `/docs`, both
//! public and served from the binary (the UI's assets are vendored: no internet needed).
//!
//! This module only assembles the document: the operations are the handlers' own
//! `#[utoipa::path]`s, the response schemas are the types the handlers send
//! ([`super::views`]), the request schemas are in [`super::requests`] and the error codes are
//! [`ErrorCode`]. `tests/api/openapi.rs` checks that the document and the routes agree.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorCode;
use super::requests::{
    CreateTaskRequest, HttpMethod, LogOutcome, MisfirePolicy, NotifyEvent, NotifyPolicy,
    PatchTaskRequest, PreviewRequest, RetentionPolicy, RetryPolicy, StopCondition, TaskStatus,
    TaskType,
};
use super::views::{
    ClusterMember, ClusterView, CreateTaskResponse, DryRunRequest, DryRunResponse, DryRunWarning,
    ErrorBody, LastExecution, LogEntry, LogsResponse, MessageResponse, NotificationEntry,
    NotificationsResponse, PreviewResponse, PreviewTime, ProbeStatus, RunNowResponse, RunningCount,
    SigningKeyCreated, SigningKeyList, SigningKeyView, StatusCounts, TaskList, TaskSummary,
    TaskView,
};

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
        super::tasks::pause,
        super::tasks::resume,
        super::run_now::run,
        super::tasks::logs,
        super::tasks::notifications,
        super::schedules::preview,
        super::schedules::task_preview,
        super::users::list,
        super::users::running_count,
        super::keys::create,
        super::keys::list,
        super::keys::revoke,
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
        StatusCounts,
        LogEntry,
        LogsResponse,
        RunningCount,
        MessageResponse,
        RunNowResponse,
        ProbeStatus,
        ClusterView,
        ClusterMember,
        ErrorBody,
        ErrorCode,
        StopCondition,
        RetryPolicy,
        RetentionPolicy,
        NotifyPolicy,
        NotifyEvent,
        NotificationEntry,
        NotificationsResponse,
        TaskType,
        TaskStatus,
        MisfirePolicy,
        HttpMethod,
        LogOutcome,
        PreviewRequest,
        PreviewResponse,
        PreviewTime,
        DryRunRequest,
        DryRunResponse,
        DryRunWarning,
        SigningKeyCreated,
        SigningKeyView,
        SigningKeyList,
    )),
    modifiers(&BearerSecurity),
    tags(
        (name = "tasks", description = "Create, view, change, cancel and delete tasks; their execution history"),
        (name = "schedules", description = "When a schedule or a task fires next, with daylight-saving notes"),
        (name = "users", description = "A user's tasks"),
        (name = "signing keys", description = "Keys that sign every outbound call (Standard Webhooks `webhook-signature`)"),
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

// Served by the Swagger UI's service at `OPENAPI_PATH` (see `api::configure`); this function
// only carries the operation's description into the document.
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
pub async fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_error_code_as_the_wire_spells_it() {
        let doc = serde_json::to_value(openapi()).expect("the document serializes");
        let listed = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let sent: Vec<serde_json::Value> = ErrorCode::ALL
            .iter()
            .map(|c| serde_json::to_value(c).expect("a code serializes"))
            .collect();
        assert_eq!(listed, &serde_json::Value::Array(sent));
    }

    #[test]
    fn no_attempt_is_documented_as_numbered_from_zero_for_the_first() {
        let doc = serde_json::to_value(openapi()).expect("the document serializes");
        let schemas = &doc["components"]["schemas"];
        for name in ["LastExecution", "LogEntry"] {
            let attempt = schemas[name]["properties"]["attempt"]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                attempt.starts_with("1 for the first attempt"),
                "{name}.attempt: {attempt}"
            );
        }
    }
}
