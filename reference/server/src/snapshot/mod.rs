//! The `build-project-snapshot` Edge Function (DESIGN §9, plan 2.1).
//!
//! One consistent read ([`fsync_store::platform::SnapshotRead`]: on PostgreSQL, one REPEATABLE
//! READ transaction) gives `projects.seq` and every live file, so the zip is exactly the project
//! at that `seq`. Rows stream from the store to a writer thread that builds the zip in
//! a temporary file (sorted paths, fixed timestamps and modes: the same state gives the same
//! bytes); the file is then streamed to storage, and the manifest is stored beside it last, so a
//! stored manifest always names a complete zip. A later call at the same `seq` finds the manifest
//! and reuses the snapshot. Binary files (`content` null) come from the `project-files` bucket and
//! must match their recorded hash. Every URL signed for a snapshot is noted, and each new build
//! prunes the snapshots nothing can download any more ([`prune`]).

use crate::auth;
use crate::platform::Platform;
use archive::{Entry, ZipOut, ZipReader};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use fsync_protocol::hash::{hex_sha256, to_hex};
use fsync_protocol::limits::{MAX_SIGNED_URL_SECONDS, MAX_SMALL_BODY_BYTES};
use fsync_protocol::snapshot::{
    snapshot_id, snapshot_manifest_name, snapshot_zip_name, Manifest, ManifestFile, SnapshotResponse, FILES_BUCKET,
    SNAPSHOT_BUCKET,
};
use fsync_store::error::{ApiError, StatusCode};
use fsync_store::platform::SnapshotFile;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

pub mod archive;
pub mod prune;

/// How long the signed URL in a function response lasts when the request does not say.
pub const DEFAULT_SIGNED_URL_TTL_S: u64 = 15 * 60;

/// File types whose bytes are stored as they are (already compressed).
const STORED_TYPES: &[&str] = &["image", "font", "binary"];

pub fn routes() -> Router<Arc<Platform>> {
    Router::new().route(
        "/functions/v1/build-project-snapshot",
        crate::bounds::limited(post(build_project_snapshot), MAX_SMALL_BODY_BYTES),
    )
}

/// `POST /functions/v1/build-project-snapshot {projectId[, expiresIn]}`, service role only.
async fn build_project_snapshot(
    State(platform): State<Arc<Platform>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = auth::authenticate(&headers, &platform.secret, platform.sources.wall_s())?;
    if caller.role != "service_role" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "42501",
            "build-project-snapshot may be called only with the service role key",
        ));
    }
    let request: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let project = request
        .get("projectId")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "22023", "projectId must be a project's uuid"))?;
    let ttl = match request.get("expiresIn") {
        None | Some(Value::Null) => DEFAULT_SIGNED_URL_TTL_S,
        Some(v) => v.as_u64().filter(|s| (1..=MAX_SIGNED_URL_SECONDS).contains(s)).ok_or_else(|| {
            let message = format!("expiresIn must be an integer from 1 to {MAX_SIGNED_URL_SECONDS}");
            ApiError::new(StatusCode::BAD_REQUEST, "22023", message)
        })?,
    };
    let (manifest, reused, signed_url) = build_and_sign(&platform, project, ttl).await?;
    let response = SnapshotResponse { snapshot_id: manifest.snapshot_id.clone(), signed_url, manifest, reused };
    Ok(Json(response).into_response())
}

/// The snapshot of `project` at its current `seq` ([`build_or_reuse`]) and a URL of its zip
/// signed for `ttl_s` seconds: the manifest, whether it was reused, the URL. A new snapshot is
/// signed first, then [`prune::prune`] sweeps. A snapshot that a
/// sweep claimed before it was signed (a read that began before a later snapshot was built long
/// ago) is left to the sweep, and the project is read again.
pub async fn build_and_sign(
    platform: &Platform,
    project: Uuid,
    ttl_s: u64,
) -> Result<(Manifest, bool, String), ApiError> {
    for _ in 0..3 {
        let (manifest, reused) = build_or_reuse(platform, project).await.inspect_err(|e| {
            if e.status.is_server_error() {
                platform.metrics.snapshot_build_failed();
            }
        })?;
        if let Some(url) = prune::signed_zip_url(platform, &manifest, ttl_s).await? {
            if !reused {
                // A new snapshot supersedes the project's last one: a moment to sweep.
                if let Err(e) = prune::prune(platform).await {
                    tracing::warn!(error = %e, "could not prune superseded snapshots; a later build tries again");
                }
            }
            return Ok((manifest, reused, url));
        }
        tracing::info!(%project, snapshot = manifest.snapshot_id, "the snapshot was pruned meanwhile; reading again");
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "PT503",
        format!("the snapshots of project {project} were pruned while being signed; try again"),
    ))
}

/// The snapshot of `project` at its current `seq`: the stored one, or a new one. Returns the
/// manifest and whether it was reused.
pub async fn build_or_reuse(platform: &Platform, project: Uuid) -> Result<(Manifest, bool), ApiError> {
    let Some(mut read) = platform.data.open_snapshot(project).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "PT404", format!("project {project} not found")));
    };
    let seq = read.seq();
    let id = snapshot_id(seq);
    if let Some(manifest) = stored_manifest(platform, project, &id).await? {
        return Ok((manifest, true));
    }
    let started = platform.sources.now();

    let mut zip = ZipOut::start(platform.sources.blocking).map_err(ApiError::internal)?;
    let mut files = Vec::new();
    let produced: Result<(), ApiError> = async {
        while let Some(file) = read.next_file().await? {
            let SnapshotFile { path, file_type, content, content_hash, version, storage_key } = file;
            let bytes = match content {
                Some(content) => content.into_bytes(),
                None => binary_content(platform, project, &path, content_hash.as_deref(), storage_key).await?,
            };
            let content_hash = match content_hash {
                Some(hash) => hash,
                None => hex_sha256(&bytes),
            };
            files.push(ManifestFile { path: path.clone(), version, content_hash, size: bytes.len() as u64 });
            let stored = STORED_TYPES.contains(&file_type.as_str());
            if !zip.add(Entry { path, bytes, stored }).map_err(ApiError::internal)? {
                break; // the writer failed; its error is reported below
            }
        }
        Ok(())
    }
    .await;
    drop(read);
    let written = zip.finish().await;
    produced?;
    let zip = written.map_err(|e| ApiError::internal(format!("write the snapshot zip: {e}")))?;

    let (zip_sha256, zip_bytes) = upload_zip(platform, &snapshot_zip_name(project, &id), zip).await?;
    let manifest = Manifest { project_id: project, seq, snapshot_id: id.clone(), files, zip_sha256 };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(ApiError::internal)?;
    let manifest_name = snapshot_manifest_name(project, &id);
    let size = manifest_bytes.len();
    platform
        .storage
        .put(SNAPSHOT_BUCKET, &manifest_name, Bytes::from(manifest_bytes))
        .await
        .map_err(ApiError::internal)?;
    let metadata = json!({"size": size, "mimetype": "application/json", "contentLength": size});
    platform.data.record_object_as_service(SNAPSHOT_BUCKET, &manifest_name, &metadata).await?;
    let seconds = platform.sources.now().saturating_duration_since(started).as_secs_f64();
    platform.metrics.snapshot_built(seconds, zip_bytes);
    Ok((manifest, false))
}

/// The manifest stored for snapshot `id`, if there is one and its zip is there too.
async fn stored_manifest(platform: &Platform, project: Uuid, id: &str) -> Result<Option<Manifest>, ApiError> {
    let bytes = match platform.storage.get_bytes(SNAPSHOT_BUCKET, &snapshot_manifest_name(project, id)).await {
        Ok(bytes) => bytes,
        Err(crate::storage::StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
        tracing::warn!(%project, id, "ignored an unreadable stored manifest; building the snapshot again");
        return Ok(None);
    };
    let zip_there =
        platform.storage.exists(SNAPSHOT_BUCKET, &snapshot_zip_name(project, id)).await.map_err(ApiError::internal)?;
    Ok(zip_there.then_some(manifest))
}

/// The bytes of a binary file from the `project-files` bucket, checked against its hash.
async fn binary_content(
    platform: &Platform,
    project: Uuid,
    path: &str,
    content_hash: Option<&str>,
    storage_key: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    let (Some(hash), Some(key)) = (content_hash, storage_key) else {
        return Err(ApiError::internal(format!(
            "{path} in project {project} has neither content nor a storage key and hash"
        )));
    };
    let name = key.strip_prefix(&format!("{FILES_BUCKET}/")).unwrap_or(&key);
    let bytes = platform
        .storage
        .get_bytes(FILES_BUCKET, name)
        .await
        .map_err(|e| ApiError::internal(format!("{path}: binary content {key}: {e}")))?;
    let actual = hex_sha256(&bytes);
    if actual != hash {
        return Err(ApiError::internal(format!("{path}: stored binary {key} has hash {actual}, expected {hash}")));
    }
    Ok(bytes.to_vec())
}

/// Streams the zip file to storage (multipart for large objects), hashing it on the way, and
/// records it; returns its SHA-256 and size.
async fn upload_zip(platform: &Platform, name: &str, file: tempfile::NamedTempFile) -> Result<(String, u64), ApiError> {
    use tokio::io::AsyncWriteExt;
    let key = crate::storage::Storage::key(SNAPSHOT_BUCKET, name);
    let mut writer = object_store::buffered::BufWriter::new(platform.storage.store().clone(), key);
    let mut source = ZipReader::open(&file, platform.sources.blocking).map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buffer).await.map_err(ApiError::internal)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
        writer.write_all(&buffer[..n]).await.map_err(ApiError::internal)?;
    }
    writer.shutdown().await.map_err(ApiError::internal)?;
    drop(file);
    let metadata = json!({"size": size, "mimetype": "application/zip", "contentLength": size});
    platform.data.record_object_as_service(SNAPSHOT_BUCKET, name, &metadata).await?;
    Ok((to_hex(&hasher.finalize()), size))
}
