//! The signing keys screen: a user's keys (prefix and age, never a secret), a button that
//! creates one and shows its secret this once with a copy button, and revoke behind a
//! confirmation. Each handler calls the operation the `/api/v1/users/{user_id}/signing-keys`
//! handlers call ([`crate::api::keys`]).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::session::Session;
use super::{field, form_pairs, page, query, see_other, ConsoleError, Layout};
use crate::api::views::SigningKeyView;
use crate::api::{self, AppState};
use crate::signing::MAX_KEYS_PER_USER;

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    layout: Layout,
    user: String,
    keys: Vec<SigningKeyView>,
    /// A key just created: its id and its secret, shown this once.
    created: Option<(String, String)>,
    /// What was just done (`revoked`).
    done: String,
    can_create: bool,
}

#[derive(Template)]
#[template(path = "console/key_confirm.html")]
struct RevokePage {
    layout: Layout,
    user: String,
    key: SigningKeyView,
}

/// The user whose keys are shown: `?user=` (an admin may name anyone; the API refuses
/// another user's keys to anyone else), else the signed-in user.
fn user_of(s: &Session, pairs: &[(String, String)]) -> String {
    match field(pairs, "user").trim() {
        "" => s.who.user_id.to_string(),
        u => u.to_owned(),
    }
}

fn keys_page(
    s: &Session,
    user: String,
    keys: Vec<SigningKeyView>,
    created: Option<(String, String)>,
    done: &str,
) -> Result<HttpResponse, ConsoleError> {
    page(KeysPage {
        layout: Layout::of(s),
        can_create: keys.len() < MAX_KEYS_PER_USER,
        user,
        keys,
        created,
        done: done.to_owned(),
    })
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let q = query(&req);
    let user = user_of(&s, &q);
    let keys = api::keys::list_of(&state, &s.who, &user).await?.keys;
    let done = match field(&q, "done") {
        "revoked" => "revoked",
        _ => "",
    };
    keys_page(&s, user, keys, None, done)
}

/// Creates a key and answers with the page that shows its secret (never stored in the
/// browser: the page is `no-store`, and a reload shows the list without it).
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let user = user_of(&s, &pairs);
    let key = api::keys::create_of(&state, &s.who, &user).await?;
    let keys = api::keys::list_of(&state, &s.who, &user).await?.keys;
    keys_page(
        &s,
        user,
        keys,
        Some((key.key_id.to_string(), key.secret)),
        "",
    )
}

/// The confirmation before a revoke.
pub async fn confirm_revoke(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let user = user_of(&s, &query(&req));
    let key_id = path.into_inner();
    let key = api::keys::list_of(&state, &s.who, &user)
        .await?
        .keys
        .into_iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| {
            api::ApiError::KeyNotFound("key_id: this user has no such signing key".into())
        })?;
    page(RevokePage {
        layout: Layout::of(&s),
        user,
        key,
    })
}

pub async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let user = user_of(&s, &pairs);
    api::keys::revoke_of(&state, &s.who, &user, &path.into_inner()).await?;
    Ok(see_other(&format!(
        "/keys?user={}&done=revoked",
        url::form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>()
    )))
}
