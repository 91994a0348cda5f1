//! Signed download URLs as Supabase Storage makes and checks them: a token in the URL, signed with
//! the project secret, naming one object and the `download` scope. The token is the permission:
//! a signed download needs no other header.

use super::error::StorageApiError;
use axum::http::StatusCode;
use fsync_protocol::jwt::{self, Claims, JwtError};
use serde_json::{json, Value};

/// The claims of a signed download token for `bucket/name`.
pub fn download_claims(bucket: &str, name: &str, now_s: u64, expires_in: u64) -> Claims {
    let mut claims = Claims::new();
    claims.insert("url".into(), json!(format!("{bucket}/{name}")));
    claims.insert("scope".into(), json!("download"));
    claims.insert("iat".into(), json!(now_s));
    claims.insert("exp".into(), json!(now_s + expires_in));
    claims
}

/// Checks a signed download token for `bucket/name`, as Supabase Storage checks it.
pub fn verify_download(
    secret: &jwt::Secret,
    token: &str,
    bucket: &str,
    name: &str,
    now_s: u64,
) -> Result<(), StorageApiError> {
    let claims = jwt::verify(secret, token, now_s).map_err(|e| match e {
        JwtError::Expired => {
            StorageApiError::new(StatusCode::BAD_REQUEST, "ExpiredToken", "The provided token has expired.")
        }
        other => StorageApiError::new(StatusCode::BAD_REQUEST, "InvalidJWT", other.to_string()),
    })?;
    let url_matches = claims.get("url").and_then(Value::as_str) == Some(&format!("{bucket}/{name}"));
    let scope_ok = claims.get("scope").and_then(Value::as_str) == Some("download");
    if !url_matches || !scope_ok {
        return Err(StorageApiError::new(StatusCode::BAD_REQUEST, "InvalidSignature", "Invalid signature"));
    }
    Ok(())
}
