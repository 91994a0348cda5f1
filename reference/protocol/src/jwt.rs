//! HS256 JSON Web Tokens as Supabase issues them: `anon`, `service_role`, user tokens and the
//! orchestrator's container tokens are all signed with one secret.
//!
//! Only HS256 is accepted. A token whose header names any other algorithm (`none` included) is
//! refused before its signature is looked at; the signature is compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The claims of a token: an open JSON object (`role`, `sub`, `exp`, and whatever else).
pub type Claims = Map<String, Value>;

/// A signing secret. Its `Debug` never prints the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("JWT is malformed: {0}")]
    Malformed(&'static str),
    #[error("JWT algorithm {0:?} is not allowed; tokens must be signed with HS256")]
    Algorithm(String),
    #[error("JWT signature does not match")]
    Signature,
    #[error("JWT expired")]
    Expired,
    #[error("JWT has no exp claim: every token must expire")]
    NoExpiry,
    #[error("JWT is not valid yet")]
    NotYetValid,
}

/// Signs `claims` with HS256.
pub fn sign(secret: &Secret, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, signing_input.as_bytes()).finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies an HS256 token and its time claims against `now_s` (seconds since the epoch) and
/// returns its claims. `exp` must be present (a token that never expires is refused) and a
/// number, and so must `nbf` when present.
pub fn verify(secret: &Secret, token: &str, now_s: u64) -> Result<Claims, JwtError> {
    let (claims, exp) = verify_signed(secret, token)?;
    if exp <= now_s as f64 {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().ok_or(JwtError::Malformed("nbf is not a number"))?;
        if nbf > now_s as f64 {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(claims)
}

/// Verifies an HS256 token's signature and that it carries a numeric `exp`, but not whether it
/// has expired: for a credential that stays good while what it names lives (a container token
/// renewed for a live session after an outage longer than its life). Its claims.
pub fn verify_ignoring_expiry(secret: &Secret, token: &str) -> Result<Claims, JwtError> {
    verify_signed(secret, token).map(|(claims, _)| claims)
}

/// The claims of a token whose signature is good, and its `exp`.
fn verify_signed(secret: &Secret, token: &str) -> Result<(Claims, f64), JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };

    let header: Value = decode_json(header_b64).ok_or(JwtError::Malformed("header is not base64url JSON"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        Some(other) => return Err(JwtError::Algorithm(other.to_owned())),
        None => return Err(JwtError::Malformed("header has no alg")),
    }

    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    mac(secret, &token.as_bytes()[..signing_input_len]).verify_slice(&signature).map_err(|_| JwtError::Signature)?;

    let Some(Value::Object(claims)) = decode_json(payload_b64) else {
        return Err(JwtError::Malformed("payload is not a base64url JSON object"));
    };
    let exp = claims.get("exp").ok_or(JwtError::NoExpiry)?;
    let exp = exp.as_f64().ok_or(JwtError::Malformed("exp is not a number"))?;
    Ok((claims, exp))
}

/// Claims for a token with `role`, issued at `now_s` and valid for `ttl_s` seconds.
pub fn claims_for(role: &str, now_s: u64, ttl_s: u64) -> Claims {
    let Value::Object(claims) = json!({
        "iss": "fsync",
        "role": role,
        "iat": now_s,
        "exp": now_s + ttl_s,
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    claims
}

/// Claims of a signed-in user's token: `authenticated`, `sub` = the user, their `email`, valid
/// for `ttl_s` seconds from `now_s`.
pub fn user_claims(user_id: &str, email: &str, now_s: u64, ttl_s: u64) -> Claims {
    let mut claims = claims_for("authenticated", now_s, ttl_s);
    claims.insert("sub".into(), json!(user_id));
    claims.insert("email".into(), json!(email));
    claims
}

/// Claims of a container token (DESIGN §8): `authenticated`, `sub` = the session, scoped to one
/// project, valid for `ttl_s` seconds.
pub fn container_claims(session_id: &str, project_id: &str, now_s: u64, ttl_s: u64) -> Claims {
    let mut claims = claims_for("authenticated", now_s, ttl_s);
    claims.insert("sub".into(), json!(session_id));
    claims.insert("session_id".into(), json!(session_id));
    claims.insert("project_id".into(), json!(project_id));
    claims.insert("scope".into(), json!("container"));
    claims
}

/// Whether `claims` are a container token's (`scope: "container"`).
pub fn is_container(claims: &Claims) -> bool {
    claims.get("scope").and_then(Value::as_str) == Some("container")
}

/// The preview session a container token belongs to; none for any other token.
pub fn container_session(claims: &Claims) -> Option<uuid::Uuid> {
    if !is_container(claims) {
        return None;
    }
    claims.get("session_id").and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// The claims of a token, read without verifying it: only for a holder to learn its own token's
/// expiry. Never use it to decide access.
pub fn unverified_claims(token: &str) -> Option<Claims> {
    match decode_json(token.split('.').nth(1)?)? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

fn mac(secret: &Secret, input: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(input);
    mac
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("test-secret-with-at-least-32-characters")
    }

    #[test]
    fn round_trip() {
        let claims = claims_for("authenticated", 1_000, 60);
        let token = sign(&secret(), &claims);
        assert_eq!(verify(&secret(), &token, 1_001), Ok(claims));
    }

    #[test]
    fn refuses_expired_and_future_tokens() {
        let token = sign(&secret(), &claims_for("anon", 1_000, 60));
        assert_eq!(verify(&secret(), &token, 1_060), Err(JwtError::Expired));
        let mut claims = claims_for("anon", 1_000, 60);
        claims.insert("nbf".into(), json!(1_030));
        let token = sign(&secret(), &claims);
        assert_eq!(verify(&secret(), &token, 1_001), Err(JwtError::NotYetValid));
    }

    #[test]
    fn ignoring_expiry_still_checks_the_signature_and_that_it_expires() {
        let claims = claims_for("authenticated", 1_000, 60);
        let token = sign(&secret(), &claims);
        assert_eq!(verify(&secret(), &token, 5_000), Err(JwtError::Expired));
        assert_eq!(verify_ignoring_expiry(&secret(), &token), Ok(claims.clone()));
        let forged = sign(&Secret::new("another secret"), &claims);
        assert_eq!(verify_ignoring_expiry(&secret(), &forged), Err(JwtError::Signature));
        let mut never = claims;
        never.remove("exp");
        assert_eq!(verify_ignoring_expiry(&secret(), &sign(&secret(), &never)), Err(JwtError::NoExpiry));
    }

    #[test]
    fn refuses_a_token_that_never_expires() {
        let mut claims = claims_for("service_role", 1_000, 60);
        claims.remove("exp");
        assert_eq!(verify(&secret(), &sign(&secret(), &claims), 1_001), Err(JwtError::NoExpiry));
        claims.insert("exp".into(), json!("never"));
        assert!(matches!(verify(&secret(), &sign(&secret(), &claims), 1_001), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn refuses_a_token_signed_with_another_secret() {
        let token = sign(&Secret::new("another secret"), &claims_for("service_role", 1_000, 60));
        assert_eq!(verify(&secret(), &token, 1_001), Err(JwtError::Signature));
    }

    #[test]
    fn refuses_a_tampered_payload() {
        let token = sign(&secret(), &claims_for("anon", 1_000, 60));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"role":"service_role","exp":99999999999}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verify(&secret(), &tampered, 1_001), Err(JwtError::Signature));
    }

    #[test]
    fn refuses_alg_none_and_other_algorithms() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"role":"service_role"}"#);
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{payload}.");
            assert_eq!(verify(&secret(), &token, 1), Err(JwtError::Algorithm(alg.into())));
        }
    }

    #[test]
    fn refuses_malformed_tokens() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(matches!(verify(&secret(), token, 1), Err(JwtError::Malformed(_))), "{token}");
        }
    }

    #[test]
    fn secret_debug_does_not_leak() {
        assert_eq!(format!("{:?}", secret()), "Secret(***)");
    }
}
