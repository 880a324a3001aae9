//! The REST API: thin handlers, each one parse → authorise → call → view. The calls are the
//! task service ([`crate::service::tasks`]) for changes and the store for reads; what goes on
//! the wire is [`views`] (sent) and [`requests`] (accepted), which the OpenAPI document
//! ([`docs`]) lists.

pub mod cluster;
pub mod docs;
pub mod dry_run;
pub mod error;
pub mod filters;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod requests;
pub mod run_now;
pub mod schedules;
pub mod tasks;
pub mod users;
pub mod views;

use std::future::{ready, Ready};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};

use crate::actors::persistence::PersistenceActor;
use crate::actors::registry::TaskRegistry;
use crate::auth::{self, Principal};
use crate::service::tasks::{Notices, TaskService};
use crate::store::Store;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub persistence: Addr<PersistenceActor>,
    pub registry: Addr<TaskRegistry>,
    pub jwt_secret: SecretString,
    pub max_body_bytes: usize,
    /// `[limits]`: the bounds on a task's input.
    pub input_limits: crate::domain::limits::InputLimits,
    /// `[limits]`: the per-user quotas.
    pub quotas: crate::quota::Quotas,
    pub allow_private_targets: bool,
    pub ready: Arc<AtomicBool>,
    /// Cluster mode: membership (for `/api/v1/cluster`) and the change notices.
    pub cluster: Option<ClusterApi>,
    /// Every user's signing keys (shared with the HTTP workers, which sign).
    pub keys: Arc<crate::signing::KeyRing>,
    /// `cluster.partitions`.
    pub partitions: u32,
    /// This node's id (cluster mode) or `standalone`, and the address it serves on.
    pub node_id: String,
    pub address: String,
}

impl AppState {
    /// The task use cases over this node's store, quotas and actors.
    pub fn tasks(&self) -> TaskService<'_> {
        TaskService::new(
            &self.store,
            &self.quotas,
            &self.persistence,
            &self.registry,
            self.cluster.as_ref().map(|c| Notices {
                redis: &c.redis,
                queue: &c.queue,
                partitions: self.partitions,
            }),
        )
    }
}

#[derive(Clone)]
pub struct ClusterApi {
    pub membership: Addr<crate::cluster::membership::Membership>,
    pub redis: crate::cluster::redis::ClusterRedis,
    pub queue: crate::cluster::redis::QueueWriter,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/tasks")
            .route(web::post().to(tasks::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}")
            .route(web::get().to(tasks::view))
            .route(web::patch().to(tasks::patch))
            .route(web::delete().to(tasks::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/cancel")
            .route(web::put().to(tasks::cancel))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/pause")
            .route(web::put().to(tasks::pause))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/resume")
            .route(web::put().to(tasks::resume))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/run")
            .route(web::post().to(run_now::run))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/logs")
            .route(web::get().to(tasks::logs))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/notifications")
            .route(web::get().to(tasks::notifications))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/tasks/{task_id}/preview")
            .route(web::get().to(schedules::task_preview))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/schedules/preview")
            .route(web::post().to(schedules::preview))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/users/{user_id}/tasks")
            .route(web::get().to(users::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/users/{user_id}/tasks/running-count")
            .route(web::get().to(users::running_count))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/users/{user_id}/signing-keys")
            .route(web::post().to(keys::create))
            .route(web::get().to(keys::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/users/{user_id}/signing-keys/{key_id}")
            .route(web::delete().to(keys::revoke))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/cluster")
            .route(web::get().to(cluster::view))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    // The OpenAPI document and the Swagger UI: public, served from the binary.
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url(docs::OPENAPI_PATH, docs::openapi()),
    )
    .route("/docs", web::get().to(docs::redirect_to_ui));
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound("no such endpoint".into()))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "method {} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

/// The caller, from a valid bearer token.
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Auth, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let token = auth::bearer_token(header).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    auth::verify_token(state.jwt_secret.expose_secret(), token)
        .map(Auth)
        .map_err(|e| match e {
            auth::AuthError::Expired => ApiError::TokenExpired(
                "the token has expired; get a new one (tickwheel token)".into(),
            ),
            other => ApiError::Unauthorized(other.to_string()),
        })
}

/// Reads a JSON request body: 415 unless it is declared `application/json`, 413 past
/// `server.max_body_bytes`, 400 naming the problem if it does not parse.
pub async fn json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<serde_json::Value, ApiError> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json (got {})",
            if ct.is_empty() { "none" } else { ct }
        )));
    }
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > max {
            return Err(too_large(max));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidInput(format!("body: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("body: malformed JSON: {e}")))
}

fn too_large(max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "body: larger than {max} bytes (server.max_body_bytes)"
    ))
}

/// Parses a query string into pairs, for handlers that name the bad parameter themselves.
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// The largest `offset` a query accepts: what the databases take as a row offset (a signed
/// 64-bit integer). Past it SQLite's query layer panics rather than answering.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// `limit`/`offset` with bounds, naming the parameter when wrong.
pub fn paging(
    pairs: &[(String, String)],
    default_limit: u64,
    max_limit: u64,
) -> Result<(u64, u64), ApiError> {
    let mut limit = default_limit;
    let mut offset = 0;
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<u64>()
                    .ok()
                    .filter(|l| (1..=max_limit).contains(l))
                    .ok_or_else(|| {
                        ApiError::InvalidInput(format!(
                            "limit: must be an integer from 1 to {max_limit}"
                        ))
                    })?
            }
            "offset" => {
                offset = v
                    .parse::<u64>()
                    .ok()
                    .filter(|o| *o <= MAX_OFFSET)
                    .ok_or_else(|| {
                        ApiError::InvalidInput(format!(
                            "offset: must be an integer from 0 to {MAX_OFFSET}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    Ok((limit, offset))
}
