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
use std::sync::{Arc, RwLock};

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
    /// The URL clients (and agents) reach this instance at (`http://host:port`): the address it
    /// listens on, unless set to another (a proxy in front of it).
    public_url: RwLock<Option<String>>,
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
        Platform { data, secret, storage, orchestrator, sources, metrics, public_url: RwLock::new(None) }
    }

    /// Sets the URL this instance is reached at (agents started from now on are given it).
    pub fn set_public_url(&self, url: impl Into<String>) {
        *self.public_url.write().unwrap_or_else(|e| e.into_inner()) = Some(url.into().trim_end_matches('/').to_owned());
    }

    /// Sets the URL this instance is reached at unless one was set already: the address it
    /// listens on, which a URL set before (or while) it starts listening overrides.
    pub(crate) fn default_public_url(&self, url: String) {
        let mut current = self.public_url.write().unwrap_or_else(|e| e.into_inner());
        current.get_or_insert(url);
    }

    /// The URL this instance is reached at.
    pub fn public_url(&self) -> String {
        let current = self.public_url.read().unwrap_or_else(|e| e.into_inner());
        current.clone().unwrap_or_else(|| "http://127.0.0.1:54321".to_owned())
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
