//! `/api/v1/users/{user_id}/signing-keys…`: a user's keys for signing outbound calls
//! (Standard Webhooks `webhook-signature`, one `v1,…` per active key).

use actix_web::{web, HttpResponse};

use super::users::parse_user;
use super::views::{ErrorBody, SigningKeyCreated, SigningKeyList, SigningKeyView};
use super::{ApiError, AppState, Auth};
use crate::auth::Principal;
use crate::service::keys::KeyService;
use crate::time::to_rfc3339;

/// What a non-admin token may not do with another user's keys.
const MANAGE_KEYS: &str = "manage the signing keys";

fn service(state: &AppState) -> KeyService<'_> {
    KeyService::new(&state.store, &state.keys)
}

/// Create a signing key.
///
/// The answer holds the secret (`whsec_…`) this once; it is stored encrypted and never shown
/// again. From now on every outbound call of the user's tasks also carries a signature under
/// this key. At most two keys per user: create the new one, move the receiver over, revoke
/// the old one.
#[utoipa::path(
    post,
    path = "/api/v1/users/{user_id}/signing-keys",
    tag = "signing keys",
    operation_id = "create_signing_key",
    params(("user_id" = i64, Path, minimum = 0, description = "The user id")),
    responses(
        (status = 201, description = "The key, with its secret shown once", body = SigningKeyCreated),
        (status = 400, description = "`user_id` is not a user id", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Another user's keys (non-admin token)", body = ErrorBody),
        (status = 409, description = "The user already has two keys (`key_limit_reached`)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn create(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(create_of(&state, &who, &path).await?))
}

/// Creates a key for the user `raw_user` names (the handler's work, for the console too).
pub async fn create_of(
    state: &AppState,
    who: &Principal,
    raw_user: &str,
) -> Result<SigningKeyCreated, ApiError> {
    let user_id = parse_user(raw_user, who, MANAGE_KEYS)?;
    let key = service(state).create(user_id).await?;
    Ok(SigningKeyCreated {
        key_id: key.key_id,
        secret: key.secret.text.to_string(),
        created_at: to_rfc3339(key.created_at),
    })
}

/// List a user's signing keys (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/signing-keys",
    tag = "signing keys",
    operation_id = "list_signing_keys",
    params(("user_id" = i64, Path, minimum = 0, description = "The user id")),
    responses(
        (status = 200, description = "The user's active keys, oldest first", body = SigningKeyList),
        (status = 400, description = "`user_id` is not a user id", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Another user's keys (non-admin token)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn list(
    path: web::Path<String>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list_of(&state, &who, &path).await?))
}

/// The keys of the user `raw_user` names (the handler's work, for the console too).
pub async fn list_of(
    state: &AppState,
    who: &Principal,
    raw_user: &str,
) -> Result<SigningKeyList, ApiError> {
    let user_id = parse_user(raw_user, who, MANAGE_KEYS)?;
    let keys = service(state).list(user_id).await?;
    Ok(SigningKeyList {
        keys: keys.iter().map(SigningKeyView::from).collect(),
    })
}

/// Revoke a signing key.
///
/// Calls sent from now on carry only the user's remaining key (or none: unsigned).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{user_id}/signing-keys/{key_id}",
    tag = "signing keys",
    operation_id = "revoke_signing_key",
    params(
        ("user_id" = i64, Path, minimum = 0, description = "The user id"),
        ("key_id" = String, Path, description = "The key's id, as created"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`user_id` is not a user id", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Another user's keys (non-admin token)", body = ErrorBody),
        (status = 404, description = "The user has no such key (`key_not_found`)", body = ErrorBody),
        (status = 500, description = "Server fault (the detail is logged, not sent)", body = ErrorBody),
    ),
    security(("bearer_auth" = []))
)]
pub async fn revoke(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    Auth(who): Auth,
) -> Result<HttpResponse, ApiError> {
    let (user, key_id) = path.into_inner();
    revoke_of(&state, &who, &user, &key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes key `key_id` of the user `raw_user` names (the handler's work, for the console
/// too).
pub async fn revoke_of(
    state: &AppState,
    who: &Principal,
    raw_user: &str,
    key_id: &str,
) -> Result<(), ApiError> {
    let user_id = parse_user(raw_user, who, MANAGE_KEYS)?;
    if key_id.len() > 36 {
        return Err(ApiError::KeyNotFound(
            "key_id: this user has no such signing key".into(),
        ));
    }
    Ok(service(state).revoke(user_id, key_id).await?)
}
