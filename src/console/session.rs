//! The console's session: the access token a user pasted, kept in an HttpOnly,
//! `SameSite=Strict` cookie and verified on every request exactly as a bearer token is
//! ([`crate::auth::verify_token`]), so the console acts with the user's own rights and no
//! others. Every state-changing request also carries a CSRF token — an HMAC of the session's
//! token under the server's secret, in a hidden form field or the `X-CSRF-Token` header — and,
//! when the browser sends one, an `Origin` naming this server.

use std::future::{ready, Ready};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use super::ConsoleError;
use crate::api::AppState;
use crate::auth::{self, AuthError, Principal};

/// The cookie that holds the access token.
pub const COOKIE: &str = "tickwheel_session";
/// The form field and the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// What the CSRF MAC is bound to besides the token, so it is useful for nothing else.
const CSRF_CONTEXT: &[u8] = b"tickwheel console csrf v1\0";

/// A signed-in user: who they are (from the token, as the API reads it) and the session's
/// CSRF token.
pub struct Session {
    pub who: Principal,
    token: String,
    pub csrf: String,
}

impl Session {
    /// The token, as an `Authorization` header value for a call to another node's API.
    pub fn authorization(&self) -> Option<header::HeaderValue> {
        header::HeaderValue::from_str(&format!("Bearer {}", self.token)).ok()
    }

    /// Refuses a state-changing request that does not carry this session's CSRF token (in
    /// `form` or the header) or that a browser says comes from another origin.
    pub fn check(&self, req: &HttpRequest, form: &[(String, String)]) -> Result<(), ConsoleError> {
        same_origin(req)?;
        let sent = form
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_str())
            .or_else(|| req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        let secret = secret_of(req)?;
        let Ok(sent) = URL_SAFE_NO_PAD.decode(sent) else {
            return Err(ConsoleError::Csrf);
        };
        mac(&secret, &self.token)
            .verify_slice(&sent)
            .map_err(|_| ConsoleError::Csrf)
    }
}

fn mac(secret: &str, token: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    m.update(CSRF_CONTEXT);
    m.update(token.as_bytes());
    m
}

/// The CSRF token of a session whose access token is `token`.
pub fn csrf_for(secret: &str, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, token).finalize().into_bytes())
}

fn secret_of(req: &HttpRequest) -> Result<String, ConsoleError> {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.jwt_secret.expose_secret().to_owned())
        .ok_or_else(|| ConsoleError::Internal("application state missing".into()))
}

/// A browser names the page a request comes from in `Origin` (and `Sec-Fetch-Site`): a
/// request from another site is refused whatever it carries.
pub fn same_origin(req: &HttpRequest) -> Result<(), ConsoleError> {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site")
    {
        return Err(ConsoleError::Csrf);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let info = req.connection_info();
        let ours = format!("{}://{}", info.scheme(), info.host());
        if origin.to_str().ok() != Some(ours.as_str()) {
            return Err(ConsoleError::Csrf);
        }
    }
    Ok(())
}

/// Whether the console is served over https (then the cookie is `Secure`).
fn https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// The cookie that signs `token` in.
pub fn sign_in_cookie(req: &HttpRequest, token: &str) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https(req))
        .finish()
}

/// The cookie that signs out: empty, expired.
pub fn sign_out_cookie(req: &HttpRequest) -> Cookie<'static> {
    let mut c = sign_in_cookie(req, "");
    c.make_removal();
    c
}

/// Verifies a pasted or stored token as every `/api/v1` call does.
pub fn verify(req: &HttpRequest, token: &str) -> Result<Principal, AuthError> {
    let secret = secret_of(req).map_err(|_| AuthError::BadClaims)?;
    auth::verify_token(&secret, token)
}

fn session(req: &HttpRequest) -> Result<Session, ConsoleError> {
    let Some(cookie) = req.cookie(COOKIE).filter(|c| !c.value().is_empty()) else {
        return Err(ConsoleError::SignIn(None));
    };
    let token = cookie.value().to_owned();
    match verify(req, &token) {
        Ok(who) => {
            let csrf = csrf_for(&secret_of(req)?, &token);
            Ok(Session { who, token, csrf })
        }
        Err(AuthError::Expired) => Err(ConsoleError::SignIn(Some("expired"))),
        Err(_) => Err(ConsoleError::SignIn(Some("invalid"))),
    }
}

impl FromRequest for Session {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(session(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_is_bound_to_its_session_and_the_secret() {
        let a = csrf_for("secret", "token-a");
        assert_eq!(a, csrf_for("secret", "token-a"));
        assert_ne!(a, csrf_for("secret", "token-b"));
        assert_ne!(a, csrf_for("other", "token-a"));
        assert!(mac("secret", "token-a")
            .verify_slice(&URL_SAFE_NO_PAD.decode(&a).unwrap())
            .is_ok());
    }
}
