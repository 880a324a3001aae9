//! Bearer-token authentication: issuing and verifying the HS256 JWTs that every `/api/v1` call
//! carries, and deciding which user a token may act for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// Tokens expired by at most this many seconds are still accepted (clock skew between nodes).
pub const LEEWAY_SECS: u64 = 60;
const ADMIN_ROLE: &str = "admin";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The claims as a token is read: optional here, so that a missing claim is reported by
/// name (the library checks `exp` itself) rather than as a deserialisation error.
#[derive(Debug, serde::Deserialize)]
struct Decoded {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub admin: bool,
}

impl Principal {
    /// Whether this caller may create, read, change or list tasks owned by `user_id`.
    pub fn may_act_for(&self, user_id: i64) -> bool {
        self.admin || self.user_id == user_id
    }
}

/// Why a token was refused. Every message is fixed text of ours: what the JWT library said is
/// logged at debug level, never sent (its wording names library internals).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header (expected \"Bearer <token>\")")]
    Missing,
    #[error("malformed bearer token (expected \"Authorization: Bearer <token>\")")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    #[error("the token's claims are not valid (expected sub, exp and an optional role)")]
    BadClaims,
    #[error("the token's claim `sub` must be a decimal integer user id")]
    BadSubject,
    #[error("could not sign token: {0}")]
    Sign(String),
}

/// Signs a token for `user_id` that expires `ttl` from now.
pub fn issue_token(
    secret: &str,
    user_id: i64,
    admin: bool,
    ttl: Duration,
) -> Result<String, AuthError> {
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now_secs().saturating_add(ttl.as_secs()),
        role: admin.then(|| ADMIN_ROLE.to_owned()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Sign(e.to_string()))
}

/// Validates the HS256 signature (no other algorithm, and never `none`), requires `exp` (a
/// token without one is `Invalid`), allows 60 s of leeway, and requires `sub` to be a decimal
/// integer string.
pub fn verify_token(secret: &str, token: &str) -> Result<Principal, AuthError> {
    // Validation::new pins the accepted algorithm list to HS256 and already requires `exp`;
    // both are spelled out so a change of library defaults cannot loosen them silently.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_exp = true;
    validation.leeway = LEEWAY_SECS;

    let data = jsonwebtoken::decode::<Decoded>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| {
        tracing::debug!(error = %e, "token refused");
        match e.kind() {
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                AuthError::Malformed
            }
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            _ => AuthError::BadClaims,
        }
    })?;

    let claims = data.claims;
    let sub = claims
        .sub
        .ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
    let user_id = parse_user_id(&sub).ok_or(AuthError::BadSubject)?;
    Ok(Principal {
        user_id,
        admin: claims.role.as_deref() == Some(ADMIN_ROLE),
    })
}

/// Extracts the token from an `Authorization` header value `Bearer <token>` (scheme matched
/// case-insensitively, as RFC 9110 requires).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Parses a token lifetime: `"24h"`, `"30m"`, `"90s"`, `"7d"`, or plain seconds (`"3600"`).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid ttl {s:?}: expected a positive whole number with an optional unit \
             s, m, h or d (e.g. 3600, 90s, 30m, 24h, 7d)"
        )
    };
    let s_trim = s.trim();
    let (digits, unit_secs) = match s_trim.char_indices().last() {
        Some((i, 's')) => (&s_trim[..i], 1),
        Some((i, 'm')) => (&s_trim[..i], 60),
        Some((i, 'h')) => (&s_trim[..i], 3600),
        Some((i, 'd')) => (&s_trim[..i], 86_400),
        _ => (s_trim, 1),
    };
    // Only plain ASCII digits: u64::from_str would also take a leading '+'.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// `sub` as a user id: an optional '-' then ASCII digits only (no '+', spaces or exponent),
/// within i64.
fn parse_user_id(sub: &str) -> Option<i64> {
    let digits = sub.strip_prefix('-').unwrap_or(sub);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    sub.parse().ok()
}

fn now_secs() -> u64 {
    // A clock before 1970 is a broken host; treating it as the epoch makes tokens expire early
    // rather than panicking.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";

    fn sign<T: serde::Serialize>(alg: Algorithm, claims: &T, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims_expiring_at(exp: u64) -> Claims {
        Claims {
            sub: "1001".into(),
            exp,
            role: None,
        }
    }

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let token = issue_token(SECRET, 1001, false, Duration::from_secs(3600)).unwrap();
        let p = verify_token(SECRET, &token).unwrap();
        assert_eq!(
            p,
            Principal {
                user_id: 1001,
                admin: false
            }
        );
        assert!(p.may_act_for(1001));
        assert!(!p.may_act_for(1002));
    }

    #[test]
    fn an_admin_token_carries_the_admin_role_and_may_act_for_anyone() {
        let token = issue_token(SECRET, 1, true, Duration::from_secs(60)).unwrap();
        let p = verify_token(SECRET, &token).unwrap();
        assert!(p.admin);
        assert!(p.may_act_for(42));
    }

    #[test]
    fn a_role_other_than_admin_grants_nothing() {
        let claims = Claims {
            role: Some("Admin ".into()),
            ..claims_expiring_at(now_secs() + 60)
        };
        let p = verify_token(SECRET, &sign(Algorithm::HS256, &claims, SECRET)).unwrap();
        assert!(!p.admin);
    }

    #[test]
    fn a_token_expired_beyond_the_leeway_is_refused() {
        let token = sign(
            Algorithm::HS256,
            &claims_expiring_at(now_secs() - LEEWAY_SECS - 5),
            SECRET,
        );
        let err = verify_token(SECRET, &token).unwrap_err();
        assert!(matches!(&err, AuthError::Expired), "{err:?}");
    }

    #[test]
    fn a_token_expired_within_the_leeway_is_accepted() {
        let token = sign(
            Algorithm::HS256,
            &claims_expiring_at(now_secs() - 30),
            SECRET,
        );
        assert_eq!(verify_token(SECRET, &token).unwrap().user_id, 1001);
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        #[derive(serde::Serialize)]
        struct NoExp {
            sub: String,
        }
        let token = sign(Algorithm::HS256, &NoExp { sub: "1001".into() }, SECRET);
        let err = verify_token(SECRET, &token).unwrap_err();
        assert!(
            matches!(&err, AuthError::MissingClaim(c) if c == "exp"),
            "{err:?}"
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = issue_token("other-secret", 1001, true, Duration::from_secs(60)).unwrap();
        assert!(matches!(
            verify_token(SECRET, &token),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn a_token_with_another_hmac_algorithm_is_refused() {
        let claims = claims_expiring_at(now_secs() + 60);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &claims, SECRET);
            assert!(verify_token(SECRET, &token).is_err(), "{alg:?} accepted");
        }
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let good = issue_token(SECRET, 1001, true, Duration::from_secs(60)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        // base64url of {"alg":"none","typ":"JWT"}
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(verify_token(SECRET, &token).is_err(), "{token} accepted");
        }
    }

    #[test]
    fn a_token_whose_signature_is_moved_onto_another_payload_is_refused() {
        let user = issue_token(SECRET, 1001, false, Duration::from_secs(60)).unwrap();
        let admin = issue_token(SECRET, 1, true, Duration::from_secs(60)).unwrap();
        let u: Vec<&str> = user.split('.').collect();
        let a: Vec<&str> = admin.split('.').collect();
        let forged = format!("{}.{}.{}", u[0], a[1], u[2]);
        assert!(matches!(
            verify_token(SECRET, &forged),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn a_non_numeric_sub_is_refused() {
        for sub in ["abc", "", "+5", " 5", "5 ", "1e3", "99999999999999999999"] {
            let claims = Claims {
                sub: sub.into(),
                ..claims_expiring_at(now_secs() + 60)
            };
            let err = verify_token(SECRET, &sign(Algorithm::HS256, &claims, SECRET)).unwrap_err();
            assert!(matches!(&err, AuthError::BadSubject), "{sub:?}: {err:?}");
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for token in ["", "abc", "a.b.c", "..", "eyJ.eyJ.sig"] {
            assert!(verify_token(SECRET, token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_parsed_case_insensitively() {
        assert_eq!(
            bearer_token(Some("Bearer abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer_token(Some("bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("BEARER  abc ")).unwrap(), "abc");
    }

    #[test]
    fn a_missing_or_malformed_authorization_header_is_refused() {
        assert!(matches!(bearer_token(None), Err(AuthError::Missing)));
        for value in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwdw==",
            "Bearerabc",
            "Bearer a b",
        ] {
            assert!(
                matches!(bearer_token(Some(value)), Err(AuthError::Malformed)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn ttls_parse_with_and_without_units() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("3600"), Ok(Duration::from_secs(3_600)));
    }

    #[test]
    fn bad_ttls_are_refused_with_a_message() {
        for s in [
            "",
            "h",
            "0",
            "0h",
            "-5m",
            "+5m",
            "1.5h",
            "5 h",
            "5w",
            "24H",
            "99999999999999999999d",
        ] {
            let err = parse_ttl(s).unwrap_err();
            assert!(err.contains("ttl"), "{s:?}: {err}");
        }
    }
}
