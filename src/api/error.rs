//! The one error type of the REST API. Each variant has its stable code, and each code its
//! HTTP status, from one table ([`ErrorCode`]: its variants, spelled in snake case on the wire
//! and in the OpenAPI document alike); the body is always
//! `{"status": "error", "code": …, "message": …}` ([`ErrorBody`]). A client tells cases apart that share a
//! status by `code`: a missing task (`task_not_found`) from a missing route
//! (`route_not_found`), a stale `If-Match` (`version_mismatch`) from a finished task
//! (`invalid_state`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use super::views::ErrorBody;
use crate::domain::FieldError;
use crate::service::keys::KeyError;
use crate::service::tasks::TaskError;
use crate::store::StoreError;

/// A stable, machine-readable error code. The table of codes and their HTTP statuses is
/// [`ErrorCode::status`]; the wire spelling is the variant's name in snake case, and the
/// OpenAPI document lists the codes from this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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
    /// 404: no such signing key for this user.
    KeyNotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: `If-Match` names a version the task is no longer at, or concurrent changes kept
    /// winning the race.
    VersionMismatch,
    /// 409: the task's state does not allow the action (e.g. cancel of a finished task).
    InvalidState,
    /// 409: run now while an execution of the task (scheduled or manual) is in flight.
    ExecutionInFlight,
    /// 409: the user already has two active signing keys; revoke one first.
    KeyLimitReached,
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
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidInput,
        ErrorCode::InvalidJson,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::TaskNotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::KeyNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::VersionMismatch,
        ErrorCode::InvalidState,
        ErrorCode::ExecutionInFlight,
        ErrorCode::KeyLimitReached,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::QuotaExceeded,
        ErrorCode::NotReady,
        ErrorCode::Internal,
    ];

    /// The table: each code's HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidInput | ErrorCode::InvalidJson => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::TaskNotFound | ErrorCode::RouteNotFound | ErrorCode::KeyNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::VersionMismatch
            | ErrorCode::InvalidState
            | ErrorCode::ExecutionInFlight
            | ErrorCode::KeyLimitReached => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
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
    KeyNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    VersionMismatch(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    ExecutionInFlight(String),
    #[error("{0}")]
    KeyLimitReached(String),
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
            ApiError::KeyNotFound(_) => ErrorCode::KeyNotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::VersionMismatch(_) => ErrorCode::VersionMismatch,
            ApiError::InvalidState(_) => ErrorCode::InvalidState,
            ApiError::ExecutionInFlight(_) => ErrorCode::ExecutionInFlight,
            ApiError::KeyLimitReached(_) => ErrorCode::KeyLimitReached,
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
        HttpResponse::build(code.status()).json(ErrorBody {
            status: "error",
            code,
            message,
        })
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::InvalidInput(e.to_string())
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound => {
                ApiError::KeyNotFound("key_id: this user has no such signing key".into())
            }
            KeyError::Limit(e) => ApiError::KeyLimitReached(format!(
                "{e}; revoke one (DELETE …/signing-keys/{{key_id}}) before creating another"
            )),
            KeyError::Store(e) => e.into(),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound => ApiError::TaskNotFound,
            TaskError::Invalid(message) => ApiError::InvalidInput(message),
            TaskError::InvalidState(message) => ApiError::InvalidState(message),
            TaskError::VersionMismatch(message) => ApiError::VersionMismatch(message),
            TaskError::QuotaExceeded(message) => ApiError::QuotaExceeded(message),
            TaskError::InFlight(message) => ApiError::ExecutionInFlight(message),
            TaskError::Unavailable(message) => ApiError::NotReady(message),
            TaskError::Store(e) => e.into(),
            TaskError::Db(e) => e.into(),
            TaskError::Mailbox(e) => e.into(),
        }
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
        let mut names: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .expect("a code serializes")
                    .to_string()
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn a_code_is_spelled_on_the_wire_as_its_name_in_snake_case() {
        let spelled = |c: ErrorCode| serde_json::to_value(c).expect("a code serializes");
        assert_eq!(spelled(ErrorCode::InvalidInput), "invalid_input");
        assert_eq!(spelled(ErrorCode::TaskNotFound), "task_not_found");
        assert_eq!(
            spelled(ErrorCode::UnsupportedMediaType),
            "unsupported_media_type"
        );
        assert_eq!(spelled(ErrorCode::Internal), "internal");
    }

    #[test]
    fn an_error_body_is_status_code_message_in_that_order() {
        let body = ApiError::TaskNotFound.error_response().into_body();
        let bytes = actix_web::body::to_bytes(body);
        let bytes = futures_util::FutureExt::now_or_never(bytes)
            .expect("a complete body")
            .expect("readable");
        assert_eq!(
            &bytes[..],
            br#"{"status":"error","code":"task_not_found","message":"task not found"}"#
        );
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
