//! The one error type of the REST API. Each variant has its stable code, and each code its
//! HTTP status, from one table ([`ErrorCode`]); the body is always
//! `{"status": "error", "code": …, "message": …}`. A client tells cases apart that share a
//! status by `code`: a missing task (`task_not_found`) from a missing route
//! (`route_not_found`), a stale `If-Match` (`version_mismatch`) from a finished task
//! (`invalid_state`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::store::StoreError;

/// A stable, machine-readable error code. The table of codes and their HTTP statuses is
/// [`ErrorCode::status`]; the OpenAPI document lists them from this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a field or parameter is wrong; the message names it.
    InvalidInput,
    /// 400: the body is not well-formed JSON.
    InvalidJson,
    /// 401: no bearer token, or one that is malformed, forged or without a valid subject.
    Unauthorized,
    /// 401: the token has expired; get a new one.
    TokenExpired,
    /// 403: the token may not act for this user.
    Forbidden,
    /// 404: no such task, or another user's.
    TaskNotFound,
    /// 404: no such route.
    RouteNotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: `If-Match` names a version the task is no longer at, or concurrent changes kept
    /// winning the race.
    VersionMismatch,
    /// 409: the task's state does not allow the action (e.g. cancel of a finished task).
    InvalidState,
    /// 413: the body is larger than `server.max_body_bytes`.
    PayloadTooLarge,
    /// 415: the body is not declared `application/json`.
    UnsupportedMediaType,
    /// 429: a per-user quota (`[limits]`) would be exceeded; the message names the figure.
    QuotaExceeded,
    /// 503: storage is not reachable or recovery is not done yet.
    NotReady,
    /// 500: a real server fault; the detail is logged, never sent.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the table.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidInput,
        ErrorCode::InvalidJson,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::TaskNotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::VersionMismatch,
        ErrorCode::InvalidState,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::QuotaExceeded,
        ErrorCode::NotReady,
        ErrorCode::Internal,
    ];

    /// The table: each code's HTTP status and its spelling on the wire.
    pub fn table(self) -> (StatusCode, &'static str) {
        match self {
            ErrorCode::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorCode::InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json"),
            ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorCode::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorCode::TaskNotFound => (StatusCode::NOT_FOUND, "task_not_found"),
            ErrorCode::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ErrorCode::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ErrorCode::VersionMismatch => (StatusCode::CONFLICT, "version_mismatch"),
            ErrorCode::InvalidState => (StatusCode::CONFLICT, "invalid_state"),
            ErrorCode::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ErrorCode::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ErrorCode::QuotaExceeded => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ErrorCode::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn status(self) -> StatusCode {
        self.table().0
    }

    pub fn as_str(self) -> &'static str {
        self.table().1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    TokenExpired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("task not found")]
    TaskNotFound,
    #[error("{0}")]
    RouteNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    VersionMismatch(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A per-user quota (`[limits]`) would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    NotReady(String),
    /// A real server fault; the detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidInput(_) => ErrorCode::InvalidInput,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::TokenExpired(_) => ErrorCode::TokenExpired,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::TaskNotFound => ErrorCode::TaskNotFound,
            ApiError::RouteNotFound(_) => ErrorCode::RouteNotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::VersionMismatch(_) => ErrorCode::VersionMismatch,
            ApiError::InvalidState(_) => ErrorCode::InvalidState,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            ApiError::NotReady(_) => ErrorCode::NotReady,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        HttpResponse::build(code.status()).json(serde_json::json!({
            "status": "error",
            "code": code.as_str(),
            "message": message,
        }))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::InvalidInput(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Internal(format!("actor mailbox: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_spelling() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn cases_that_share_a_status_have_different_codes() {
        assert_eq!(
            ApiError::TaskNotFound.status_code(),
            ApiError::RouteNotFound(String::new()).status_code()
        );
        assert_ne!(
            ApiError::TaskNotFound.code(),
            ApiError::RouteNotFound(String::new()).code()
        );
        assert_ne!(
            ApiError::VersionMismatch(String::new()).code(),
            ApiError::InvalidState(String::new()).code()
        );
    }
}
