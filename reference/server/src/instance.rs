//! One instance of the reference server, assembled from its parts: the one way `serve`, the
//! tests and the simulator put a server together.

use crate::config::DEV_JWT_SECRET;
use crate::http::RequestTimeouts;
use crate::listener::{BoundedListener, ConnectionLimits};
use crate::metrics::Metrics;
use crate::orchestrator::OrchestratorConfig;
use crate::platform::Platform;
use crate::realtime::RealtimeConfig;
use crate::state::AppState;
use crate::storage::Storage;
use axum::serve::Listener;
use fsync_protocol::jwt::Secret;
use fsync_store::data::Store;
use fsync_store::error::ApiError;
use fsync_store::platform::PlatformStore;
use fsync_store::Sources;
use std::future::Future;
use std::sync::Arc;

/// Builds an instance on a store.
///
/// Defaults, each replaceable: the development JWT secret ([`DEV_JWT_SECRET`]); the system's
/// clock, ids and blocking threads ([`Sources::system`]); Realtime's defaults
/// ([`RealtimeConfig::default`]: 60 s idle timeout, 1,024 queued frames per socket, 1 MiB frames,
/// 100 channels per socket, client broadcasts off); and no platform — Storage, the snapshot
/// function and the orchestrator are mounted only with [`ServerBuilder::platform`].
pub struct ServerBuilder<S> {
    store: Arc<S>,
    secret: Secret,
    sources: Sources,
    realtime: RealtimeConfig,
    platform: Option<(Arc<dyn PlatformStore>, Storage, OrchestratorConfig)>,
}

impl<S: Store> ServerBuilder<S> {
    pub fn new(store: Arc<S>) -> ServerBuilder<S> {
        ServerBuilder {
            store,
            secret: Secret::new(DEV_JWT_SECRET),
            sources: Sources::system(),
            realtime: RealtimeConfig::default(),
            platform: None,
        }
    }

    /// The secret every token is signed with.
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = secret;
        self
    }

    /// Where time, ids and blocking work come from.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    pub fn realtime(mut self, realtime: RealtimeConfig) -> Self {
        self.realtime = realtime;
        self
    }

    /// Mounts Storage, the snapshot function and the orchestrator over `data` and `storage`.
    pub fn platform(
        mut self,
        data: Arc<dyn PlatformStore>,
        storage: Storage,
        orchestrator: OrchestratorConfig,
    ) -> Self {
        self.platform = Some((data, storage, orchestrator));
        self
    }

    /// Starts the instance: from here on it receives every committed broadcast.
    pub async fn start(self) -> Result<Server<S>, ApiError> {
        let metrics = Arc::new(Metrics::default());
        let platform = self.platform.map(|(data, storage, orchestrator)| {
            let sources = self.sources.clone();
            Arc::new(Platform::new(data, self.secret.clone(), storage, orchestrator, sources, metrics.clone()))
        });
        let mut news = None;
        if let Some(platform) = &platform {
            platform.orchestrator.recover().await?;
            // The hub passes session ends on to the orchestrator; this task ends with the hub's.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let platform = platform.clone();
            tokio::spawn(async move { platform.orchestrator.follow_news(rx).await });
            news = Some(tx);
        }
        let state = AppState::start(self.store, self.secret, self.realtime, self.sources, metrics, news).await?;
        Ok(Server { state, platform })
    }
}

/// A started instance, ready to serve.
pub struct Server<S> {
    pub state: AppState<S>,
    pub platform: Option<Arc<Platform>>,
}

impl<S: Store> Server<S> {
    /// Serves on `listener` until `shutdown` completes (see [`crate::serve`]), each request within
    /// the default [`RequestTimeouts`].
    pub async fn serve<L>(self, listener: L, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
    where
        L: Listener,
        L::Addr: std::fmt::Display,
    {
        crate::serve(listener, self.state, self.platform, RequestTimeouts::default(), shutdown).await
    }

    /// Serves on a TCP `listener` within the default [`ConnectionLimits`] (see
    /// [`crate::listener`]: connection caps, idle timeout, request timeouts, Nagle's algorithm off).
    pub async fn serve_tcp(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_tcp_with(listener, ConnectionLimits::default(), shutdown).await
    }

    /// Serves on a TCP `listener` within `limits`.
    pub async fn serve_tcp_with(
        self,
        listener: tokio::net::TcpListener,
        limits: ConnectionLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let timeouts = limits.requests;
        let listener = BoundedListener::new(listener, limits, self.state.sources.clone());
        crate::serve(listener, self.state, self.platform, timeouts, shutdown).await
    }
}
