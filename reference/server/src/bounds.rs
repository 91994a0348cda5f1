//! Bounds before work: what a caller can make the server receive is decided from the request's
//! head, before its body is read. A request that carries a body must have keys that verify, and a
//! route refuses a body announced as larger than its content's limit at once (a body without a
//! length is cut off at the limit as it arrives).

use crate::auth;
use crate::storage::error::StorageApiError;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use fsync_protocol::jwt::Secret;
use fsync_store::error::ApiError;
use fsync_store::Sources;

/// What checking a request's keys needs.
#[derive(Clone)]
pub struct Keys {
    pub secret: Secret,
    pub sources: Sources,
}

/// Refuses a request that carries a body unless its keys verify, before a byte of the body is
/// read: a caller without a key cannot make the server receive, let alone hold, a body. (Each
/// handler still decides what the caller may do.) Storage answers in its own error shape.
pub async fn keys_before_body(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    if carries_body(request.headers()) {
        if let Err(refused) = auth::authenticate(request.headers(), &keys.secret, keys.sources.wall_s()) {
            return match is_storage(&request) {
                true => StorageApiError::from(refused).into_response(),
                false => refused.into_response(),
            };
        }
    }
    next.run(request).await
}

/// Whether a request carries a body (a positive `Content-Length`, or a chunked one).
fn carries_body(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        Some(length) => length.trim() != "0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// `route` taking bodies of at most `max` bytes: one announced as larger is refused with 413
/// before it is read; one without a length is cut off at `max` as it arrives.
pub fn limited<S: Clone + Send + Sync + 'static>(route: MethodRouter<S>, max: usize) -> MethodRouter<S> {
    route.layer(DefaultBodyLimit::max(max)).layer(middleware::from_fn(move |request: Request, next: Next| async move {
        match announced_length(&request) {
            Some(length) if length > max as u64 => too_large(&request, length, max),
            _ => next.run(request).await,
        }
    }))
}

fn announced_length(request: &Request) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn too_large(request: &Request, length: u64, max: usize) -> Response {
    let message = format!("the body has {length} bytes; this endpoint takes at most {max}");
    match is_storage(request) {
        true => StorageApiError::too_large(message).into_response(),
        false => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PGRST413", message).into_response(),
    }
}

/// Storage answers in its own error shape; every other route in PostgREST's.
fn is_storage(request: &Request) -> bool {
    request.uri().path().starts_with("/storage/")
}
