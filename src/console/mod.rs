//! The web console, served by the same binary at `/` (README, "The console"): server-rendered
//! pages from templates checked at compile time (askama, `templates/console/`), one small
//! stylesheet and one small script compiled into the binary, no build step and nothing fetched
//! from elsewhere.
//!
//! The console is a client of the public API, with the signed-in user's own token: each page
//! calls the very operations the `/api/v1` handlers call ([`crate::api::tasks::view_of`],
//! [`crate::api::users::list_of`], …) with the [`Principal`](crate::auth::Principal) read from
//! the session cookie by the same verification, and shows their response types. It has no
//! data access and no permission rule of its own: what the API refuses (404 for another
//! user's task, 403 for another user's list, 400 naming a field) the console shows.
//!
//! - [`session`]: the cookie, sign-in and CSRF checks.
//! - [`pages`]: the task list, a task's page, its actions, the cluster view.
//! - [`form`]: the create and edit form, its live check (field errors and preview) and dry run.
//! - [`keys`]: the signing keys: list, create (the secret shown once, with a copy button), revoke.
//! - [`chart`]: the lateness and duration chart, drawn as SVG on the server.
//! - [`view`]: what the templates show, built from the API's response types.

pub mod chart;
pub mod form;
pub mod keys;
pub mod pages;
pub mod session;
pub mod view;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;

use crate::api::ApiError;

/// The stylesheet and the script, compiled in.
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Mounts the console's routes (beside `/api/v1`, which they do not touch).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(pages::list))
        .route("/signin", web::get().to(pages::sign_in_page))
        .route("/signin", web::post().to(pages::sign_in))
        .route("/signout", web::post().to(pages::sign_out))
        .route("/cluster", web::get().to(pages::cluster))
        .route("/keys", web::get().to(keys::list))
        .route("/keys", web::post().to(keys::create))
        .route("/keys/{key_id}/revoke", web::get().to(keys::confirm_revoke))
        .route("/keys/{key_id}/revoke", web::post().to(keys::revoke))
        .route("/tasks/new", web::get().to(form::new_page))
        .route("/tasks/new", web::post().to(form::create))
        .route("/tasks/check", web::post().to(form::check))
        .route("/tasks/dry-run", web::post().to(form::dry_run))
        .route("/tasks/{task_id}", web::get().to(pages::task))
        .route("/tasks/{task_id}/edit", web::get().to(form::edit_page))
        .route("/tasks/{task_id}/edit", web::post().to(form::edit))
        .route(
            "/tasks/{task_id}/confirm/{action}",
            web::get().to(pages::confirm),
        )
        .route("/tasks/{task_id}/{action}", web::post().to(pages::act))
        .route("/console/console.css", web::get().to(css))
        .route("/console/console.js", web::get().to(js));
}

async fn css() -> HttpResponse {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> HttpResponse {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

/// What every page's frame shows: who is signed in and the CSRF token for its forms.
pub struct Layout {
    pub signed_in: bool,
    pub user_id: i64,
    pub admin: bool,
    pub csrf: String,
}

impl Layout {
    pub fn of(s: &session::Session) -> Self {
        Self {
            signed_in: true,
            user_id: s.who.user_id,
            admin: s.who.admin,
            csrf: s.csrf.clone(),
        }
    }

    pub fn anonymous() -> Self {
        Self {
            signed_in: false,
            user_id: 0,
            admin: false,
            csrf: String::new(),
        }
    }
}

/// A page that only says something: an error, or that a task is not there.
#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
    pub back: Option<String>,
}

/// Why a console request was not answered with its page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or its token expired (`Some("expired")`) or does not verify: sign in again.
    #[error("sign in")]
    SignIn(Option<&'static str>),
    /// The CSRF token or the origin of a state-changing request is wrong.
    #[error("the request did not come from this console")]
    Csrf,
    /// What the API answered.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Internal(String),
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        ConsoleError::Internal(format!("template: {e}"))
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignIn(_) => StatusCode::SEE_OTHER,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::Api(e) => e.status_code(),
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            ConsoleError::SignIn(why) => {
                let to = match why {
                    Some(why) => format!("/signin?m={why}"),
                    None => "/signin".to_owned(),
                };
                let mut r = HttpResponse::SeeOther();
                r.insert_header((header::LOCATION, to));
                if why.is_some() {
                    // The cookie's token no longer verifies: drop it.
                    let mut gone = actix_web::cookie::Cookie::new(session::COOKIE, "");
                    gone.set_path("/");
                    gone.make_removal();
                    r.cookie(gone);
                }
                return r.finish();
            }
            ConsoleError::Csrf => (
                "Request refused".to_owned(),
                "This form did not come from this console (its CSRF token or origin is wrong), \
                 so nothing was changed. Reload the page and try again."
                    .to_owned(),
            ),
            ConsoleError::Api(ApiError::TaskNotFound) => (
                "Task not found".to_owned(),
                "There is no such task, or it is not yours.".to_owned(),
            ),
            ConsoleError::Api(ApiError::Internal(detail)) | ConsoleError::Internal(detail) => {
                tracing::error!(error = %detail, "console: internal error");
                (
                    "Server error".to_owned(),
                    "internal server error".to_owned(),
                )
            }
            ConsoleError::Api(e) => (title_of(e).to_owned(), e.to_string()),
        };
        page_response(
            self.status_code(),
            MessagePage {
                layout: Layout::anonymous(),
                title,
                message,
                back: Some("/".to_owned()),
            },
        )
    }
}

fn title_of(e: &ApiError) -> &'static str {
    match e.status_code() {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::TOO_MANY_REQUESTS => "Quota reached",
        StatusCode::SERVICE_UNAVAILABLE => "Not ready",
        _ => "Refused",
    }
}

/// Renders a page as an HTML response with `status`.
pub fn page_response(status: StatusCode, page: impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "console: template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal server error")
        }
    }
}

/// A page, 200.
pub fn page(page: impl Template) -> Result<HttpResponse, ConsoleError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

/// 303 to `to` (after a form post).
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

/// A form body's pairs (a key may repeat), at most `server.max_body_bytes` long.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `key`.
pub fn field<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The query string's pairs.
pub fn query(req: &HttpRequest) -> Vec<(String, String)> {
    crate::api::query_pairs(req)
}
