//! `/storage/v1` as Supabase Storage speaks it to storage-js: upload, signed URLs, signed and
//! authenticated downloads with `Range`, and Supabase's error bodies
//! (`{"statusCode", "code", "error", "message"}`).
//!
//! Who may write or sign is decided by the `storage.objects` row level security policies, with
//! the caller's role and claims set as for any request. A signed download needs no header: the
//! token in the URL is the permission. Public reads work only on public buckets.

use super::error::StorageApiError;
use super::signing::verify_download;
use super::{ByteRange, StorageError};
use crate::auth;
use crate::bounds::limited;
use crate::platform::Platform;
use crate::snapshot::prune;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fsync_protocol::hash::{hex_sha256, is_sha256_hex};
use fsync_protocol::limits::{MAX_OBJECT_BYTES, MAX_SIGNED_URL_SECONDS, MAX_SMALL_BODY_BYTES};
use fsync_protocol::snapshot::{FILES_BUCKET, SNAPSHOT_BUCKET};
use fsync_store::RequestAuth;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The storage routes.
pub fn routes() -> Router<Arc<Platform>> {
    // Each route's body limit is its content's: an object, or a small JSON body.
    let small = |route| limited(route, MAX_SMALL_BODY_BYTES);
    Router::new()
        .route("/storage/v1/object/sign/{bucket}/{*name}", small(post(sign)).get(signed_download))
        .route("/storage/v1/object/public/{bucket}/{*name}", get(public_download))
        .route("/storage/v1/object/authenticated/{bucket}/{*name}", get(authenticated_download))
        .route(
            "/storage/v1/object/{bucket}/{*name}",
            limited(post(upload_new).put(upload_replace), MAX_OBJECT_BYTES).get(authenticated_download).delete(remove),
        )
}

/// Checks a bucket id and an object name the way the rest of fsync checks paths.
fn check_name(bucket: &str, name: &str) -> Result<(), StorageApiError> {
    if bucket.is_empty() || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(StorageApiError::invalid(format!("Invalid bucket name: {bucket:?}")));
    }
    fsync_protocol::check_path(name).map_err(|e| StorageApiError::invalid(format!("Invalid key: {name:?}: {e}")))
}

/// `project-files` holds binaries by content, `{project_id}/{sha256}`: an upload there must be
/// the bytes its name says, checked before anything is recorded, so a stored object is always
/// what the file versions that name it expect (a snapshot can never fail on one).
fn check_content_address(name: &str, actual: &str) -> Result<(), StorageApiError> {
    let hash = match name.split_once('/') {
        Some((project, hash)) if uuid::Uuid::parse_str(project).is_ok() && is_sha256_hex(hash) => hash,
        _ => {
            return Err(StorageApiError::invalid(format!(
                "Invalid key: {name:?}: objects in {FILES_BUCKET} are named {{project_id}}/{{sha256 of the bytes}}"
            )))
        }
    };
    if actual != hash {
        return Err(StorageApiError::invalid(format!(
            "the bytes' SHA-256 is {actual}, not the {hash} their name says"
        )));
    }
    Ok(())
}

fn caller(platform: &Platform, headers: &HeaderMap) -> Result<RequestAuth, StorageApiError> {
    Ok(auth::authenticate(headers, &platform.secret, platform.sources.wall_s())?)
}

async fn upload_new(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StorageApiError> {
    let upsert = headers.get("x-upsert").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    upload(platform, bucket, name, headers, body, upsert).await
}

async fn upload_replace(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StorageApiError> {
    upload(platform, bucket, name, headers, body, true).await
}

/// Records the object as the caller (row level security decides), then stores its bytes; if
/// storing fails, the row goes again.
async fn upload(
    platform: Arc<Platform>,
    bucket: String,
    name: String,
    headers: HeaderMap,
    body: Bytes,
    upsert: bool,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    let auth = caller(&platform, &headers)?;
    let sha256 = hex_sha256(&body);
    if bucket == FILES_BUCKET {
        check_content_address(&name, &sha256)?;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        return Err(StorageApiError::invalid(
            "multipart uploads are not supported by the reference server: send the bytes as the request body",
        ));
    }
    let mimetype = if content_type.is_empty() { "application/octet-stream" } else { content_type };
    if platform.data.bucket_public(&bucket).await?.is_none() {
        return Err(StorageApiError::new(StatusCode::NOT_FOUND, "NoSuchBucket", "Bucket not found"));
    }
    let metadata = json!({
        "size": body.len(),
        "mimetype": mimetype,
        "eTag": format!("\"{sha256}\""),
        "cacheControl": headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).unwrap_or("max-age=3600"),
        "contentLength": body.len(),
        "httpStatusCode": 200,
    });
    // Content-addressed bytes never change: an object already stored there is these bytes.
    let stored_already = bucket == FILES_BUCKET && platform.storage.exists(&bucket, &name).await?;
    let id = platform.data.record_object(&auth, &bucket, &name, &metadata, upsert).await?;
    let Some(id) = id else {
        return Err(StorageApiError::new(StatusCode::CONFLICT, "Duplicate", "The resource already exists"));
    };
    if !stored_already {
        if let Err(e) = platform.storage.put(&bucket, &name, body).await {
            let _ = platform.data.forget_object(&bucket, &name).await;
            return Err(e.into());
        }
    }
    Ok(Json(json!({"Id": id, "Key": format!("{bucket}/{name}")})).into_response())
}

async fn remove(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    let auth = caller(&platform, &headers)?;
    if bucket == FILES_BUCKET && auth.role != "service_role" {
        // File versions refer to these bytes (old versions too): taking them away would fail
        // every snapshot and session that needs them. An operator (the service role) may still
        // remove one, e.g. an object stored before uploads were checked.
        return Err(StorageApiError::invalid(format!(
            "objects in {FILES_BUCKET} are write-once: file versions refer to them, so they cannot be deleted"
        )));
    }
    if !platform.data.delete_object_row(&auth, &bucket, &name).await? {
        return Err(StorageApiError::not_found());
    }
    platform.storage.delete(&bucket, &name).await?;
    Ok(Json(json!({"message": "Successfully deleted"})).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    expires_in: Value,
}

async fn sign(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    let auth = caller(&platform, &headers)?;
    let request: SignRequest = serde_json::from_slice(&body)
        .map_err(|e| StorageApiError::invalid(format!("body must be {{\"expiresIn\": <seconds>}}: {e}")))?;
    let expires_in =
        request.expires_in.as_u64().filter(|s| (1..=MAX_SIGNED_URL_SECONDS).contains(s)).ok_or_else(|| {
            StorageApiError::invalid(format!("expiresIn must be an integer from 1 to {MAX_SIGNED_URL_SECONDS}"))
        })?;
    if !platform.data.object_visible(&auth, &bucket, &name).await? {
        return Err(StorageApiError::not_found());
    }
    let issued_at_s = platform.sources.wall_s();
    // A snapshot outlives every URL signed for it; one being removed gets none.
    if bucket == SNAPSHOT_BUCKET && !prune::note_signed_object(&platform, &name, issued_at_s, expires_in).await? {
        return Err(StorageApiError::not_found());
    }
    let signed = platform.signed_path(&bucket, &name, issued_at_s, expires_in);
    Ok(Json(json!({"signedURL": signed})).into_response())
}

async fn signed_download(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    let token = query.get("token").ok_or_else(|| {
        StorageApiError::new(StatusCode::BAD_REQUEST, "InvalidJWT", "querystring must have required property 'token'")
    })?;
    verify_download(&platform.secret, token, &bucket, &name, platform.sources.wall_s())?;
    serve_object(&platform, &bucket, &name, &headers, query.get("download")).await
}

async fn authenticated_download(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    let auth = caller(&platform, &headers)?;
    if !platform.data.object_visible(&auth, &bucket, &name).await? {
        return Err(StorageApiError::not_found());
    }
    serve_object(&platform, &bucket, &name, &headers, query.get("download")).await
}

async fn public_download(
    State(platform): State<Arc<Platform>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, StorageApiError> {
    check_name(&bucket, &name)?;
    if platform.data.bucket_public(&bucket).await? != Some(true) {
        return Err(StorageApiError::new(StatusCode::BAD_REQUEST, "NoSuchBucket", "Bucket not found"));
    }
    serve_object(&platform, &bucket, &name, &headers, query.get("download")).await
}

/// Streams an object, honouring a single `Range`.
async fn serve_object(
    platform: &Platform,
    bucket: &str,
    name: &str,
    headers: &HeaderMap,
    download: Option<&String>,
) -> Result<Response, StorageApiError> {
    let Some(mimetype) = platform.data.object_mimetype(bucket, name).await? else {
        return Err(StorageApiError::not_found());
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let object = match platform.storage.open_read(bucket, name, range).await {
        Ok(object) => object,
        Err(StorageError::Range { size }) => {
            let mut response = StorageApiError::from(StorageError::Range { size }).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let partial = range.is_some();
    let mut response = Response::new(Body::from_stream(object.stream));
    *response.status_mut() = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let out = response.headers_mut();
    let value = |s: String| HeaderValue::from_str(&s).map_err(StorageApiError::internal);
    out.insert(header::CONTENT_TYPE, value(mimetype)?);
    out.insert(header::CONTENT_LENGTH, value((object.range.end - object.range.start).to_string())?);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial {
        let last = object.range.end.saturating_sub(1);
        out.insert(header::CONTENT_RANGE, value(format!("bytes {}-{last}/{}", object.range.start, object.size))?);
    }
    if let Some(download) = download {
        let file = if download.is_empty() { name.rsplit('/').next().unwrap_or(name) } else { download };
        let file: String = file.chars().filter(|c| !c.is_control() && *c != '"').collect();
        out.insert(header::CONTENT_DISPOSITION, value(format!("attachment; filename=\"{file}\""))?);
    }
    Ok(response)
}
