//! The HTTP application: every route assembled, and [`serve`], which tests, the simulator and
//! `serve` alike use to run the server on a listener they made (port 0 in tests).

use crate::bounds;
use crate::http::{serve_connections, RequestTimeouts};
use crate::platform::Platform;
use crate::postgrest;
use crate::realtime;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use axum::{Json, Router};
use fsync_protocol::limits::MAX_REQUEST_BODY_BYTES;
use fsync_store::data::Store;
use fsync_store::error::ApiError;
use std::future::Future;
use std::sync::Arc;

/// The router for every endpoint of the reference server: the RPC, read and Realtime endpoints,
/// and with a [`Platform`], also Storage, the snapshot function and the orchestrator.
pub fn router<S: Store>(state: AppState<S>, platform: Option<Arc<Platform>>) -> Router {
    let keys = bounds::Keys { secret: state.secret.clone(), sources: state.sources.clone() };
    let mut router = Router::new()
        .route("/health", get(health::<S>))
        .route("/metrics", get(metrics::<S>))
        .route(
            "/rest/v1/rpc/{function}",
            get(postgrest::rpc_get::<S>).merge(bounds::limited(post(postgrest::rpc_post::<S>), MAX_REQUEST_BODY_BYTES)),
        )
        .route(
            "/rest/v1/{relation}",
            get(postgrest::read::<S>).delete(postgrest::write::delete::<S>).merge(bounds::limited(
                post(postgrest::write::insert::<S>).patch(postgrest::write::update::<S>),
                MAX_REQUEST_BODY_BYTES,
            )),
        )
        .route("/realtime/v1/websocket", get(realtime::websocket::<S>))
        .fallback(not_found)
        .with_state(state);
    if let Some(platform) = platform {
        router = router.merge(platform_routes(platform));
    }
    router
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn_with_state(keys, bounds::keys_before_body))
        .layer(middleware::from_fn(cors))
}

/// Serves `router(state, platform)` on `listener` (a tokio `TcpListener` in production,
/// in-process or simulated streams in tests), each request within `timeouts`, until `shutdown`
/// completes. The platform learns its
/// public URL from the listener. When it returns, every WebSocket is closed, the store no longer
/// delivers to this instance, and every agent the platform started has stopped.
pub async fn serve<S, L>(
    listener: L,
    state: AppState<S>,
    platform: Option<Arc<Platform>>,
    timeouts: RequestTimeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Store,
    L: Listener,
    L::Addr: std::fmt::Display,
{
    if let Some(platform) = &platform {
        platform.default_public_url(format!("http://{}", listener.local_addr()?));
    }
    let instance = state.clone();
    serve_connections(listener, router(state, platform.clone()), timeouts, shutdown).await;
    // WebSockets outlive graceful shutdown (they are upgraded connections): close them now, and
    // end what the instance runs in the background, so it can be started again in this process.
    instance.stop();
    if let Some(platform) = &platform {
        platform.orchestrator.stop_all().await;
    }
    Ok(())
}

/// The storage, function and orchestrator routes.
fn platform_routes(platform: Arc<Platform>) -> Router {
    crate::storage::http::routes()
        .merge(crate::snapshot::routes())
        .merge(crate::orchestrator::http::routes())
        .with_state(platform)
}

/// `GET /metrics`: the instance's metrics in Prometheus' text format, for the service role (a
/// scrape job sends its key as `apikey` or Bearer).
async fn metrics<S: Store>(State(state): State<AppState<S>>, headers: axum::http::HeaderMap) -> Response {
    let caller = match crate::auth::scraper(&headers, &state.secret, state.sources.wall_s()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    if caller.role != "service_role" {
        return ApiError::new(StatusCode::FORBIDDEN, "42501", "metrics are for the service role").into_response();
    }
    let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))];
    (content_type, state.metrics.render()).into_response()
}

async fn health<S: Store>(State(state): State<AppState<S>>) -> Response {
    match state.store.health().await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "database": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "database": e.body.details})),
        )
            .into_response(),
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "FSYNC404", format!("no route for {method} {}", uri.path()))
}

/// Browsers call the API from another origin, as they call a Supabase project: answer preflight
/// requests and allow any origin, as Supabase's gateway does.
async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, apikey, content-type, content-profile, accept-profile, prefer, range, x-client-info, x-upsert",
            ),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    } else {
        headers
            .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("content-range, content-profile"));
    }
    response
}
