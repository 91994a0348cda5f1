//! The parts of a Supabase project beyond PostgREST and Realtime that the snapshot flow needs
//! (DESIGN §3, §9): Storage (`/storage/v1`), the `build-project-snapshot` Edge Function
//! (`/functions/v1`) and the orchestrator (`/orchestrator/v1/sessions`).
//!
//! They run on PostgreSQL ([`PgStore`]) and object storage ([`Storage`]); the in-memory model
//! serves only the RPC and Realtime surface.

use crate::orchestrator::{self, Orchestrator, OrchestratorConfig};
use crate::pg::{db_error, PgStore};
use crate::snapshot;
use crate::storage::http::{download_claims, StorageApiError};
use crate::storage::{self, Storage};
use axum::Router;
use fsync_protocol::jwt::{self, Secret};
use fsync_store::error::ApiError;
use fsync_store::RequestAuth;
use fsync_store::Sources;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Everything the storage, function and orchestrator endpoints share.
pub struct Platform {
    pub store: PgStore,
    pub secret: Secret,
    pub storage: Storage,
    pub orchestrator: Orchestrator,
    /// Where time and ids come from.
    pub sources: Sources,
    /// The URL clients reach this instance at (`http://host:port`), known once it listens.
    public_url: OnceLock<String>,
}

impl Platform {
    pub fn new(
        store: PgStore,
        secret: Secret,
        storage: Storage,
        orchestrator: OrchestratorConfig,
        sources: Sources,
    ) -> Platform {
        let orchestrator = Orchestrator::new(orchestrator, sources.clone());
        Platform { store, secret, storage, orchestrator, sources, public_url: OnceLock::new() }
    }

    /// Sets the URL this instance is reached at (once; later calls are ignored).
    pub fn set_public_url(&self, url: impl Into<String>) {
        let _ = self.public_url.set(url.into().trim_end_matches('/').to_owned());
    }

    /// The URL this instance is reached at.
    pub fn public_url(&self) -> &str {
        self.public_url.get().map(String::as_str).unwrap_or("http://127.0.0.1:54321")
    }

    /// `/object/sign/{bucket}/{name}?token=...`, as Storage answers a sign request.
    pub fn signed_path(&self, bucket: &str, name: &str, expires_in: u64) -> String {
        let token = jwt::sign(&self.secret, &download_claims(bucket, name, self.sources.wall_s(), expires_in));
        format!("/object/sign/{bucket}/{name}?token={token}")
    }

    /// The absolute signed download URL of `bucket/name`.
    pub fn signed_url(&self, bucket: &str, name: &str, expires_in: u64) -> String {
        format!("{}/storage/v1{}", self.public_url(), self.signed_path(bucket, name, expires_in))
    }

    pub(crate) async fn bucket_exists(&self, bucket: &str) -> Result<bool, StorageApiError> {
        Ok(self.bucket_public_flag(bucket).await?.is_some())
    }

    pub(crate) async fn bucket_is_public(&self, bucket: &str) -> Result<bool, StorageApiError> {
        Ok(self.bucket_public_flag(bucket).await? == Some(true))
    }

    async fn bucket_public_flag(&self, bucket: &str) -> Result<Option<bool>, StorageApiError> {
        let client = self.store.pool().get().await.map_err(ApiError::unavailable)?;
        let row = client
            .query_opt("SELECT coalesce(public, false) FROM storage.buckets WHERE id = $1", &[&bucket])
            .await
            .map_err(|e| db_error(e, false))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Inserts (or with `upsert`, replaces) the row of `bucket/name` as `auth`; `None` when it
    /// exists and `upsert` is off.
    pub(crate) async fn record_object(
        &self,
        auth: &RequestAuth,
        bucket: &str,
        name: &str,
        metadata: &Value,
        upsert: bool,
    ) -> Result<Option<Uuid>, StorageApiError> {
        let statement = if upsert {
            "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata)
             VALUES ($1, $2, auth.uid(), auth.uid()::text, $3)
             ON CONFLICT (bucket_id, name) DO UPDATE
               SET metadata = excluded.metadata, owner = excluded.owner, owner_id = excluded.owner_id,
                   updated_at = now(), last_accessed_at = now()
             RETURNING id"
        } else {
            "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata)
             VALUES ($1, $2, auth.uid(), auth.uid()::text, $3)
             ON CONFLICT (bucket_id, name) DO NOTHING
             RETURNING id"
        };
        let path = format!("/object/{bucket}/{name}");
        let rows = self.store.query_as(auth, false, "POST", &path, statement, &[&bucket, &name, metadata]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Records `bucket/name` with the service role's rights (the snapshot function's uploads).
    pub(crate) async fn record_object_as_service(
        &self,
        bucket: &str,
        name: &str,
        metadata: &Value,
    ) -> Result<(), ApiError> {
        let auth = self.service_auth();
        let path = format!("/object/{bucket}/{name}");
        self.store
            .query_as(
                &auth,
                false,
                "POST",
                &path,
                "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES ($1, $2, $3)
                 ON CONFLICT (bucket_id, name) DO UPDATE SET metadata = excluded.metadata, updated_at = now()
                 RETURNING id",
                &[&bucket, &name, metadata],
            )
            .await?;
        Ok(())
    }

    /// The caller the snapshot function and the orchestrator act as: the service role.
    pub fn service_auth(&self) -> RequestAuth {
        RequestAuth::service(self.sources.wall_s())
    }

    /// Removes the row of an object whose bytes could not be stored.
    pub(crate) async fn forget_object(&self, bucket: &str, name: &str) -> Result<(), ApiError> {
        let client = self.store.pool().get().await.map_err(ApiError::unavailable)?;
        client
            .execute("DELETE FROM storage.objects WHERE bucket_id = $1 AND name = $2", &[&bucket, &name])
            .await
            .map_err(|e| db_error(e, false))?;
        Ok(())
    }

    /// Deletes the row of `bucket/name` as `auth`; whether there was one it could delete.
    pub(crate) async fn delete_object_row(
        &self,
        auth: &RequestAuth,
        bucket: &str,
        name: &str,
    ) -> Result<bool, StorageApiError> {
        let path = format!("/object/{bucket}/{name}");
        let rows = self
            .store
            .query_as(
                auth,
                false,
                "DELETE",
                &path,
                "DELETE FROM storage.objects WHERE bucket_id = $1 AND name = $2 RETURNING id",
                &[&bucket, &name],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Whether `auth` may see the row of `bucket/name` (what signing and authenticated reads need).
    pub(crate) async fn object_visible(
        &self,
        auth: &RequestAuth,
        bucket: &str,
        name: &str,
    ) -> Result<bool, StorageApiError> {
        let path = format!("/object/{bucket}/{name}");
        let rows = self
            .store
            .query_as(
                auth,
                true,
                "GET",
                &path,
                "SELECT id FROM storage.objects WHERE bucket_id = $1 AND name = $2",
                &[&bucket, &name],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// The stored content type of `bucket/name`, or `None` when there is no such object.
    pub(crate) async fn object_mimetype(&self, bucket: &str, name: &str) -> Result<Option<String>, StorageApiError> {
        let client = self.store.pool().get().await.map_err(ApiError::unavailable)?;
        let row = client
            .query_opt(
                "SELECT coalesce(metadata ->> 'mimetype', 'application/octet-stream')
                 FROM storage.objects WHERE bucket_id = $1 AND name = $2",
                &[&bucket, &name],
            )
            .await
            .map_err(|e| db_error(e, false))?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// The storage, function and orchestrator routes.
pub fn router(platform: Arc<Platform>) -> Router {
    storage::http::routes().merge(snapshot::routes()).merge(orchestrator::routes()).with_state(platform)
}
