//! Every public surface of one API URL as plain calls (RPCs, reads, Storage, the snapshot
//! function, sessions), over one [`Transport`] — so the same helpers serve tests, benches, the
//! fixture loader and scenarios, on the real stack (TCP) and in the simulator (turmoil's dialer).
//! [`crate::FsyncClient`] is the typed, retrying client of the SQL API; this is the raw one.
//!
//! Calls answer a [`Reply`] (status and JSON body, whatever the status): a refusal is an
//! outcome a test looks at, not a panic. Only a transport failure (no answer) is an error.

use crate::transport::{self, Transport, TransportError};
use bytes::Bytes;
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use fsync_store::Clock;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// The largest answer read (a large project's `list_current_files` is about its size).
const MAX_ANSWER_BYTES: usize = 512 * 1024 * 1024;

/// One answer: the HTTP status and the body as JSON (a body that is not JSON is a JSON string;
/// an empty one is `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body, or a panic naming `what`, the status and the body (for setup steps that must work).
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(self.is_success(), "{what}: HTTP {} {}", self.status, self.body);
        self.body
    }

    /// A uuid field of the body.
    pub fn uuid(&self, field: &str) -> Option<Uuid> {
        self.body.get(field).and_then(Value::as_str).and_then(|s| s.parse().ok())
    }
}

/// A raw answer (downloads, and any request whose headers or bytes a test looks at).
#[derive(Debug, Clone)]
pub struct Download {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub bytes: Bytes,
}

impl From<Download> for Reply {
    /// The body read as JSON (a body that is not JSON is a JSON string; an empty one is `null`).
    fn from(answer: Download) -> Reply {
        let body = if answer.bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer.bytes).into_owned()))
        };
        Reply { status: answer.status, body }
    }
}

/// The API at one URL, called with the project's anon key as `apikey`.
#[derive(Clone, Debug)]
pub struct Api {
    pub url: String,
    pub anon_key: String,
    transport: Transport,
    timeout: Duration,
}

impl Api {
    /// The API at `url` (`http://host:port`), reached through `transport`.
    pub fn new(url: impl Into<String>, anon_key: impl Into<String>, transport: Transport) -> Api {
        let url = url.into().trim_end_matches('/').to_owned();
        Api { url, anon_key: anon_key.into(), transport, timeout: Duration::from_secs(60) }
    }

    /// The same API with a per-request timeout of `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Api {
        self.timeout = timeout;
        self
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Any request: `path` below the API URL, `token` as Bearer (none: the anon key).
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Download, TransportError> {
        let bearer = format!("Bearer {}", token.unwrap_or(&self.anon_key));
        let mut all = vec![("apikey", self.anon_key.as_str()), ("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.send(method, path, &all, body).await
    }

    /// Any request with exactly `headers`: no `apikey` and no Bearer unless they are among them
    /// (a browser following a link, or a caller that left its key out). `path` is below the API
    /// URL, or an absolute URL.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Download, TransportError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        };
        let request = transport::request(method, &url, headers, body)?;
        let fetched = self.transport.fetch(request, MAX_ANSWER_BYTES, self.timeout).await?;
        Ok(Download { status: fetched.status.as_u16(), headers: fetched.headers, bytes: fetched.body })
    }

    /// Any JSON call: `method` on `path` below the API URL with `body` (none: an empty body),
    /// `token` as Bearer (none: the anon key). For the surfaces with no call of their own (an
    /// agent's endpoints) and for bodies the typed calls cannot send (a wrong type).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, TransportError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let answer = self.request(method, path, token, &[("content-type", "application/json")], body).await?;
        Ok(answer.into())
    }

    /// `POST /rest/v1/rpc/{function}` with named `args`.
    pub async fn rpc(&self, token: Option<&str>, function: &str, args: Value) -> Result<Reply, TransportError> {
        self.call(http::Method::POST, &format!("/rest/v1/rpc/{function}"), token, Some(&args)).await
    }

    /// `GET /rest/v1/{relation}?{query}`.
    pub async fn read(&self, token: Option<&str>, relation: &str, query: &str) -> Result<Reply, TransportError> {
        self.call(http::Method::GET, &format!("/rest/v1/{relation}?{query}"), token, None).await
    }

    /// `POST /storage/v1/object/{bucket}/{name}` with the raw bytes (`x-upsert` when `upsert`).
    pub async fn upload(
        &self,
        token: Option<&str>,
        bucket: &str,
        name: &str,
        bytes: impl Into<Bytes>,
        upsert: bool,
    ) -> Result<Reply, TransportError> {
        self.upload_as(token, bucket, name, "application/octet-stream", bytes, upsert).await
    }

    /// [`Api::upload`] with the object's `content_type` (Storage records it as its `mimetype`), as
    /// storage-js's `contentType` option sends it.
    pub async fn upload_as(
        &self,
        token: Option<&str>,
        bucket: &str,
        name: &str,
        content_type: &str,
        bytes: impl Into<Bytes>,
        upsert: bool,
    ) -> Result<Reply, TransportError> {
        let headers = [("content-type", content_type), ("x-upsert", if upsert { "true" } else { "false" })];
        let path = format!("/storage/v1/object/{bucket}/{name}");
        Ok(self.request(http::Method::POST, &path, token, &headers, bytes).await?.into())
    }

    /// `GET /storage/v1/object/authenticated/{bucket}/{name}` as `token`: a private object's
    /// bytes, as storage-js's `download` reads them.
    pub async fn download(&self, token: Option<&str>, bucket: &str, name: &str) -> Result<Download, TransportError> {
        let path = format!("/storage/v1/object/authenticated/{bucket}/{name}");
        self.request(http::Method::GET, &path, token, &[], Bytes::new()).await
    }

    /// `POST /storage/v1/object/sign/{bucket}/{name}` `{expiresIn}`: `signedURL` is relative to
    /// `/storage/v1`.
    pub async fn sign(
        &self,
        token: Option<&str>,
        bucket: &str,
        name: &str,
        expires_in_s: u64,
    ) -> Result<Reply, TransportError> {
        let path = format!("/storage/v1/object/sign/{bucket}/{name}");
        self.call(http::Method::POST, &path, token, Some(&json!({ "expiresIn": expires_in_s }))).await
    }

    /// `GET` a signed URL as `sign` answered it (`/object/sign/...?token=`, below `/storage/v1`)
    /// or as the snapshot function answers it (absolute), with no key at all, as a container or a
    /// browser fetches it.
    pub async fn download_signed(&self, signed_url: &str) -> Result<Download, TransportError> {
        self.send(http::Method::GET, &self.storage_url(signed_url), &[], Bytes::new()).await
    }

    /// [`Api::download_signed`] with a `Range` header (`bytes=10-19`, `bytes=-5`, `bytes=100-`).
    pub async fn download_signed_range(&self, signed_url: &str, range: &str) -> Result<Download, TransportError> {
        self.send(http::Method::GET, &self.storage_url(signed_url), &[("range", range)], Bytes::new()).await
    }

    fn storage_url(&self, signed_url: &str) -> String {
        if signed_url.starts_with("http://") || signed_url.starts_with("https://") {
            signed_url.to_owned()
        } else {
            format!("/storage/v1{signed_url}")
        }
    }

    /// `POST /functions/v1/build-project-snapshot {projectId}` (the service role's key as `token`).
    pub async fn build_snapshot(&self, token: &str, project: Uuid) -> Result<Reply, TransportError> {
        let body = json!({ "projectId": project });
        self.call(http::Method::POST, "/functions/v1/build-project-snapshot", Some(token), Some(&body)).await
    }

    /// `POST /orchestrator/v1/sessions {project_id}`.
    pub async fn create_session(&self, token: &str, project: Uuid) -> Result<Reply, TransportError> {
        let body = json!({ "project_id": project });
        self.call(http::Method::POST, "/orchestrator/v1/sessions", Some(token), Some(&body)).await
    }

    /// `GET /orchestrator/v1/sessions/{id}`.
    pub async fn session(&self, token: &str, id: Uuid) -> Result<Reply, TransportError> {
        self.call(http::Method::GET, &format!("/orchestrator/v1/sessions/{id}"), Some(token), None).await
    }

    /// `DELETE /orchestrator/v1/sessions/{id}`.
    pub async fn stop_session(&self, token: &str, id: Uuid) -> Result<Reply, TransportError> {
        self.call(http::Method::DELETE, &format!("/orchestrator/v1/sessions/{id}"), Some(token), None).await
    }

    /// Polls session `id` every 20 ms until it is `status` or has ended, for at most `within`
    /// of `clock`'s time; answers its last view, or why none came.
    pub async fn wait_session(
        &self,
        token: &str,
        id: Uuid,
        status: SessionStatus,
        within: Duration,
        clock: &dyn Clock,
    ) -> Result<SessionView, String> {
        self.wait_session_every(token, id, status, within, clock, Duration::from_millis(20)).await
    }

    /// [`Api::wait_session`], polling every `poll` (a measurement wants a fine one).
    pub async fn wait_session_every(
        &self,
        token: &str,
        id: Uuid,
        status: SessionStatus,
        within: Duration,
        clock: &dyn Clock,
        poll: Duration,
    ) -> Result<SessionView, String> {
        let deadline = clock.now() + within;
        loop {
            let view = self.session_view(token, id).await;
            if let Ok(view) = &view {
                if view.status == status || view.status.is_final() {
                    return Ok(view.clone());
                }
            }
            if clock.now() >= deadline {
                return match view {
                    Ok(view) => Err(format!("session is still {} after {within:?}", view.status.as_str())),
                    Err(e) => Err(e),
                };
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Session `id` as a typed view.
    pub async fn session_view(&self, token: &str, id: Uuid) -> Result<SessionView, String> {
        let reply = self.session(token, id).await.map_err(|e| format!("get the session: {e}"))?;
        if reply.status != 200 {
            return Err(format!("get the session: HTTP {} {}", reply.status, reply.body));
        }
        serde_json::from_value(reply.body).map_err(|e| format!("decode the session: {e}"))
    }
}
