//! The HTTP application: routes, shared state, and [`serve`], which tests, the simulator and
//! `serve` alike use to run the server on a listener they made (port 0 in tests).

use crate::platform::Platform;
use crate::postgrest;
use crate::realtime::{self, hub::Hub, RealtimeConfig};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use axum::{Json, Router};
use fsync_protocol::jwt::Secret;
use fsync_protocol::limits::MAX_REQUEST_BODY_BYTES;
use fsync_store::data::Store;
use fsync_store::error::ApiError;
use fsync_store::Sources;
use std::future::Future;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState<S> {
    pub store: Arc<S>,
    pub secret: Secret,
    pub hub: Arc<Hub>,
    pub realtime: RealtimeConfig,
    /// Where time and ids come from.
    pub sources: Sources,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            secret: self.secret.clone(),
            hub: self.hub.clone(),
            realtime: self.realtime.clone(),
            sources: self.sources.clone(),
        }
    }
}

impl<S: Store> AppState<S> {
    /// The state of a running instance: starts listening for the store's broadcasts and feeding
    /// them to this instance's sockets. Once it returns, every later commit is delivered.
    pub async fn start(
        store: Arc<S>,
        secret: Secret,
        realtime: RealtimeConfig,
        sources: Sources,
    ) -> Result<AppState<S>, ApiError> {
        let messages = store.listen().await?;
        let hub = Arc::new(Hub::new(sources.clock.clone()));
        tokio::spawn(hub.clone().run(messages));
        Ok(AppState { store, secret, hub, realtime, sources })
    }
}

/// The router for every endpoint of the reference server: the RPC, read and Realtime endpoints,
/// and with a [`Platform`], also Storage, the snapshot function and the orchestrator.
pub fn router<S: Store>(state: AppState<S>, platform: Option<Arc<Platform>>) -> Router {
    let mut router = Router::new()
        .route("/health", get(health::<S>))
        .route("/rest/v1/rpc/{function}", get(postgrest::rpc_get::<S>).post(postgrest::rpc_post::<S>))
        .route("/rest/v1/{relation}", get(postgrest::read::<S>))
        .route("/realtime/v1/websocket", get(realtime::websocket::<S>))
        .fallback(not_found)
        .with_state(state);
    if let Some(platform) = platform {
        router = router.merge(crate::platform::router(platform));
    }
    router.layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES)).layer(middleware::from_fn(cors))
}

/// Serves `router(state, platform)` on `listener` (a tokio `TcpListener` in production,
/// in-process or simulated streams in tests) until `shutdown` completes. The platform learns its
/// public URL from the listener. When it returns, every WebSocket is closed and every agent the
/// platform started has been asked to stop.
pub async fn serve<S, L>(
    listener: L,
    state: AppState<S>,
    platform: Option<Arc<Platform>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Store,
    L: Listener,
    L::Addr: std::fmt::Display + std::fmt::Debug,
{
    if let Some(platform) = &platform {
        platform.set_public_url(format!("http://{}", listener.local_addr()?));
    }
    let hub = state.hub.clone();
    let served = axum::serve(listener, router(state, platform.clone())).with_graceful_shutdown(shutdown).await;
    // WebSockets outlive graceful shutdown (they are upgraded connections): close them now.
    hub.close_all();
    if let Some(platform) = &platform {
        platform.orchestrator.stop_all();
    }
    served
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
