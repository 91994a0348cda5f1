//! Who is calling: the `apikey` header and the `Authorization: Bearer` JWT, checked the way a
//! Supabase project's gateway and PostgREST check them.
//!
//! The apikey must be a token signed with the project secret (the anon or service_role key). The
//! request then runs as the Bearer token, or as the apikey when there is none, as supabase-js
//! sends it. The token's `role` claim becomes the database role for the request and must be one
//! of the API roles.

use axum::http::{header, HeaderMap, StatusCode};
use fsync_protocol::jwt::{self, JwtError, Secret};
use fsync_store::error::ApiError;
use fsync_store::RequestAuth;
use serde_json::Value;

/// The database roles a token may name.
pub const API_ROLES: &[&str] = &["anon", "authenticated", "service_role"];

/// Verifies the request's apikey and token at `now_s`.
pub fn authenticate(headers: &HeaderMap, secret: &Secret, now_s: u64) -> Result<RequestAuth, ApiError> {
    let apikey = apikey(headers)?;
    jwt::verify(secret, apikey, now_s).map_err(invalid_api_key)?;
    verify_token(secret, bearer_or(headers, apikey)?, now_s)
}

/// A `/metrics` scraper: as [`authenticate`] when an `apikey` header is sent, or by its Bearer
/// token alone (Prometheus sends only `Authorization: Bearer`; nothing else takes a request
/// without an `apikey`).
pub fn scraper(headers: &HeaderMap, secret: &Secret, now_s: u64) -> Result<RequestAuth, ApiError> {
    if headers.contains_key("apikey") || !headers.contains_key(header::AUTHORIZATION) {
        return authenticate(headers, secret, now_s);
    }
    verify_token(secret, bearer_or(headers, "")?, now_s)
}

/// The claims of the token a preview agent renews itself with: checked as [`authenticate`]
/// checks a request's, signature and all, except that it may have expired. Only the
/// orchestrator's token refresh takes it, and only for a session whose record is live.
pub fn session_credential(headers: &HeaderMap, secret: &Secret) -> Result<jwt::Claims, ApiError> {
    let apikey = apikey(headers)?;
    jwt::verify_ignoring_expiry(secret, apikey).map_err(invalid_api_key)?;
    jwt::verify_ignoring_expiry(secret, bearer_or(headers, apikey)?)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "PGRST301", e.to_string()))
}

/// The `apikey` header.
fn apikey(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers.get("apikey").and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "PGRST301", "No API key found in request")
            .with_hint("Send the anon or service_role key in the apikey header.")
    })
}

fn invalid_api_key(e: JwtError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "PGRST301", "Invalid API key").with_details(e.to_string())
}

/// The token a request runs as: the Bearer token, or the apikey when there is none.
fn bearer_or<'a>(headers: &'a HeaderMap, apikey: &'a str) -> Result<&'a str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(apikey) };
    match value.to_str().unwrap_or("").split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "PGRST301", "Authorization header must be 'Bearer <JWT>'")),
    }
}

/// Verifies one token and the role it names.
pub fn verify_token(secret: &Secret, token: &str, now_s: u64) -> Result<RequestAuth, ApiError> {
    let claims = jwt::verify(secret, token, now_s).map_err(|e| {
        let code = match e {
            JwtError::Expired | JwtError::NotYetValid => "PGRST303",
            _ => "PGRST301",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    })?;
    let role = match claims.get("role") {
        Some(Value::String(role)) => role.clone(),
        Some(_) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "PGRST303", "JWT claim role is not a string")),
        None => {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "PGRST303", "JWT has no role claim")
                .with_hint("Tokens must carry role: anon, authenticated or service_role."))
        }
    };
    if !API_ROLES.contains(&role.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "PGRST303",
            format!("JWT role {role:?} is not one of anon, authenticated, service_role"),
        ));
    }
    Ok(RequestAuth { role, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn secret() -> Secret {
        Secret::new("unit-test-secret-with-at-least-32-chars")
    }

    fn headers(apikey: Option<&str>, authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = apikey {
            h.insert("apikey", HeaderValue::from_str(k).unwrap());
        }
        if let Some(a) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn runs_as_the_bearer_token_or_else_the_apikey() {
        let anon = jwt::sign(&secret(), &jwt::claims_for("anon", 100, 60));
        let mut user_claims = jwt::claims_for("authenticated", 100, 60);
        user_claims.insert("sub".into(), "00000000-0000-0000-0000-000000000001".into());
        let user = jwt::sign(&secret(), &user_claims);

        let as_anon = authenticate(&headers(Some(&anon), None), &secret(), 101).unwrap();
        assert_eq!(as_anon.role, "anon");
        let as_user = authenticate(&headers(Some(&anon), Some(&format!("Bearer {user}"))), &secret(), 101).unwrap();
        assert_eq!(as_user.role, "authenticated");
        assert_eq!(as_user.claims, user_claims);
    }

    #[test]
    fn refuses_missing_and_bad_credentials() {
        let anon = jwt::sign(&secret(), &jwt::claims_for("anon", 100, 60));
        let mut no_role = jwt::claims_for("anon", 100, 60);
        no_role.remove("role");
        let no_role = jwt::sign(&secret(), &no_role);
        let admin = jwt::sign(&secret(), &jwt::claims_for("postgres", 100, 60));

        let cases: Vec<(HeaderMap, &str)> = vec![
            (headers(None, None), "No API key found in request"),
            (headers(Some("garbage"), None), "Invalid API key"),
            (headers(Some(&anon), Some("Basic abc")), "Authorization header must be 'Bearer <JWT>'"),
            (headers(Some(&anon), Some(&format!("Bearer {no_role}"))), "JWT has no role claim"),
            (
                headers(Some(&anon), Some(&format!("Bearer {admin}"))),
                "JWT role \"postgres\" is not one of anon, authenticated, service_role",
            ),
        ];
        for (h, message) in cases {
            let err = authenticate(&h, &secret(), 101).unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            assert_eq!(err.body.message, message);
        }
        let err = authenticate(&headers(Some(&anon), None), &secret(), 161).unwrap_err();
        assert_eq!((err.body.code.as_str(), err.body.message.as_str()), ("PGRST301", "Invalid API key"));
    }
}
