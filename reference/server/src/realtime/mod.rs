//! Supabase Realtime at `/realtime/v1/websocket`: Phoenix channels over WebSocket, private
//! channels authorized by the `realtime.messages` policies, and server-authored broadcasts fanned
//! out in commit order (DESIGN §7).

pub mod config;
pub mod hub;
mod rate;
mod socket;

pub use config::RealtimeConfig;

pub use fsync_protocol::realtime as wire;

use crate::state::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fsync_protocol::jwt::{self, JwtError, Secret};
use fsync_store::data::Store;
use fsync_store::RequestAuth;
use serde_json::{json, Value};

/// Hard cap on one WebSocket message (Supabase Realtime's `max_frame_size`); beyond it the
/// connection itself fails. Between `max_frame_bytes` and this, frames are dropped.
const MAX_MESSAGE_BYTES: usize = 5_000_000;
/// The read buffer a socket starts with (it grows for larger frames).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `GET /realtime/v1/websocket?apikey=..&vsn=..`: checks the key the way Supabase does before the
/// upgrade (errors are HTTP responses `{"error": ...}`), then runs the socket.
pub async fn websocket<S: Store>(
    State(state): State<AppState<S>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(vsn) = wire::Vsn::parse(param("vsn")) else {
        return connect_error(StatusCode::BAD_REQUEST, "Unsupported vsn: use 1.0.0 or 2.0.0");
    };
    let apikey = headers.get("x-api-key").and_then(|v| v.to_str().ok()).or_else(|| param("apikey"));
    let Some(apikey) = apikey.filter(|k| !k.is_empty()) else {
        return connect_error(StatusCode::UNAUTHORIZED, "API key is missing");
    };
    let auth = match verify_realtime_token(&state.secret, apikey, state.sources.wall_s()) {
        Ok(auth) => auth,
        Err(message) => return connect_error(StatusCode::UNAUTHORIZED, &message),
    };
    let config = state.realtime.clone();
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        // tungstenite's 128 KiB defaults cost 250 KiB per idle socket; frames are written out
        // at once anyway (the writer flushes each one).
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |ws| socket::run(ws, state, vsn, auth, config))
}

fn connect_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// A verified Realtime token: claims with `role` and `exp`, as Supabase requires.
pub(crate) fn verify_realtime_token(secret: &Secret, token: &str, now_s: u64) -> Result<RealtimeAuth, String> {
    let claims = jwt::verify(secret, token, now_s).map_err(|e| match e {
        JwtError::Expired => "Token has expired".to_owned(),
        JwtError::NoExpiry => "Fields `role` and `exp` are required in JWT".to_owned(),
        _ => "The token provided is not a valid JWT".to_owned(),
    })?;
    let role = claims.get("role").and_then(Value::as_str).map(str::to_owned);
    let exp = claims.get("exp").and_then(Value::as_u64);
    let (Some(role), Some(exp)) = (role, exp) else {
        return Err("Fields `role` and `exp` are required in JWT".to_owned());
    };
    if !crate::auth::API_ROLES.contains(&role.as_str()) {
        return Err(format!("Role {role:?} is not allowed"));
    }
    Ok(RealtimeAuth { request: RequestAuth { role, claims }, exp_s: exp, token: token.to_owned() })
}

/// The identity a socket or channel acts as.
#[derive(Debug, Clone)]
pub(crate) struct RealtimeAuth {
    pub request: RequestAuth,
    pub exp_s: u64,
    pub token: String,
}
