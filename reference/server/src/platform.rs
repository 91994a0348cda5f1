//! The parts of a Supabase project beyond PostgREST and Realtime that the snapshot flow needs
//! (DESIGN §3, §9): Storage (`/storage/v1`), the `build-project-snapshot` Edge Function
//! (`/functions/v1`) and the orchestrator (`/orchestrator/v1/sessions`).
//!
//! They reach the source of truth through the [`PlatformStore`] port (PostgreSQL, or the
//! in-memory model) and bytes through object storage ([`Storage`]).

use crate::metrics::Metrics;
use crate::orchestrator::registry::{Orchestrator, OrchestratorConfig};
use crate::storage::signing::download_claims;
use crate::storage::Storage;
use fsync_protocol::jwt::{self, Secret};
use fsync_store::platform::PlatformStore;
use fsync_store::{RequestAuth, Sources};
use std::sync::{Arc, OnceLock};

/// Everything the storage, function and orchestrator endpoints share.
pub struct Platform {
    /// Snapshot reads, object rows and membership (PostgreSQL or the model).
    pub data: Arc<dyn PlatformStore>,
    pub secret: Secret,
    pub storage: Storage,
    pub orchestrator: Orchestrator,
    /// Where time and ids come from.
    pub sources: Sources,
    /// The instance's metrics (shared with its [`crate::AppState`]).
    pub metrics: Arc<Metrics>,
    /// The URL clients reach this instance at (`http://host:port`), known once it listens.
    public_url: OnceLock<String>,
}

impl Platform {
    pub fn new(
        data: Arc<dyn PlatformStore>,
        secret: Secret,
        storage: Storage,
        orchestrator: OrchestratorConfig,
        sources: Sources,
        metrics: Arc<Metrics>,
    ) -> Platform {
        let orchestrator = Orchestrator::new(orchestrator, sources.clone(), metrics.clone(), data.clone());
        Platform { data, secret, storage, orchestrator, sources, metrics, public_url: OnceLock::new() }
    }

    /// Sets the URL this instance is reached at (once; later calls are ignored).
    pub fn set_public_url(&self, url: impl Into<String>) {
        let _ = self.public_url.set(url.into().trim_end_matches('/').to_owned());
    }

    /// The URL this instance is reached at.
    pub fn public_url(&self) -> &str {
        self.public_url.get().map(String::as_str).unwrap_or("http://127.0.0.1:54321")
    }

    /// `/object/sign/{bucket}/{name}?token=...`, as Storage answers a sign request: issued at
    /// `issued_at_s` (wall seconds), working for `expires_in` seconds from then.
    pub fn signed_path(&self, bucket: &str, name: &str, issued_at_s: u64, expires_in: u64) -> String {
        let token = jwt::sign(&self.secret, &download_claims(bucket, name, issued_at_s, expires_in));
        format!("/object/sign/{bucket}/{name}?token={token}")
    }

    /// The absolute signed download URL of `bucket/name` (see [`Platform::signed_path`]).
    pub fn signed_url(&self, bucket: &str, name: &str, issued_at_s: u64, expires_in: u64) -> String {
        format!("{}/storage/v1{}", self.public_url(), self.signed_path(bucket, name, issued_at_s, expires_in))
    }

    /// The caller the snapshot function and the orchestrator act as: the service role.
    pub fn service_auth(&self) -> RequestAuth {
        RequestAuth::service(self.sources.wall_s())
    }
}
