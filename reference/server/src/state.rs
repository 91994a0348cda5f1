//! What every RPC, read and Realtime handler shares: the store, the secret, this instance's
//! Realtime hub and settings, its metrics, and where time and ids come from.

use crate::metrics::Metrics;
use crate::realtime::config::RealtimeConfig;
use crate::realtime::hub::{Hub, SessionNews};
use fsync_protocol::jwt::Secret;
use fsync_store::data::Store;
use fsync_store::error::ApiError;
use fsync_store::Sources;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// What every handler shares.
pub struct AppState<S> {
    pub store: Arc<S>,
    pub secret: Secret,
    pub hub: Arc<Hub>,
    pub realtime: RealtimeConfig,
    /// Where time and ids come from.
    pub sources: Sources,
    /// What this instance has done (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// The task feeding the store's broadcasts to the hub (ended when the server stops).
    feeder: AbortHandle,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            secret: self.secret.clone(),
            hub: self.hub.clone(),
            realtime: self.realtime.clone(),
            sources: self.sources.clone(),
            metrics: self.metrics.clone(),
            feeder: self.feeder.clone(),
        }
    }
}

impl<S: Store> AppState<S> {
    /// The state of a running instance: starts listening for the store's broadcasts and feeding
    /// them to this instance's sockets. Once it returns, every later commit is delivered. Session
    /// ends and resyncs go on to `sessions` (the orchestrator), when given.
    pub async fn start(
        store: Arc<S>,
        secret: Secret,
        realtime: RealtimeConfig,
        sources: Sources,
        metrics: Arc<Metrics>,
        sessions: Option<tokio::sync::mpsc::UnboundedSender<SessionNews>>,
    ) -> Result<AppState<S>, ApiError> {
        let messages = store.listen().await?;
        let hub = Arc::new(Hub::new(sources.clock.clone()).planted(realtime.plant).measured(metrics.clone()));
        let feeder = tokio::spawn(hub.clone().run(messages, sessions)).abort_handle();
        Ok(AppState { store, secret, hub, realtime, sources, metrics, feeder })
    }

    /// Ends this instance's background work: the store stops delivering to it (its LISTEN
    /// connection or model subscription goes) and every socket is told to go.
    pub fn stop(&self) {
        self.feeder.abort();
        self.hub.close_all();
    }
}
