//! The agent's HTTP side: the SQL API as its container token (through [`FsyncClient`]), its
//! session's endpoints (status, token, manifest), binaries signed through Storage, and the
//! snapshot download. Every request goes through the client's [`Transport`].

use crate::config::AgentConfig;
use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use fsync_client::retry::{retry_hint, retryable_status, Next};
use fsync_client::transport::{self, Fetched, Streamed, Transport};
use fsync_client::{ClientConfig, FsyncClient};
use fsync_protocol::events::FileChange;
use fsync_protocol::hash::{hex_sha256, to_hex};
use fsync_protocol::limits::{MAX_LAG_SAMPLES, MAX_STATUS_REASON_BYTES};
use fsync_protocol::snapshot::{
    AgentSnapshot, LagReport, Manifest, SessionStatus, StatusReport, TokenGrant, FILES_BUCKET,
};
use fsync_store::Blocking;
use http::Method;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// How long one call to the session's endpoints or to Storage may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a lag report may take (it is dropped after that).
const LAG_REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer of a session endpoint (a 10,000-file manifest is about 1.5 MB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// What a token refresh got.
pub(crate) enum Refresh {
    Granted(TokenGrant),
    /// The session has ended (stopped, failed, or gone with its project): the agent stops.
    Ended(String),
    /// The credential itself was refused: the agent cannot recover.
    Refused(String),
}

pub(crate) struct Api {
    pub client: Arc<FsyncClient>,
    pub config: AgentConfig,
    transport: Transport,
    token: Mutex<String>,
    /// Commit → applied lags (ms) not yet reported, at most [`MAX_LAG_SAMPLES`].
    lags: Mutex<Vec<f64>>,
}

impl Api {
    pub fn new(config: AgentConfig) -> anyhow::Result<Api> {
        let client_config = ClientConfig::new(&config.api_url, &config.token)
            .token(&config.token)
            .sources(config.sources.clone())
            .transport(config.transport.clone());
        let client = FsyncClient::new(client_config).context("build the API client")?;
        Ok(Api {
            client: Arc::new(client),
            transport: config.transport.clone(),
            token: Mutex::new(config.token.clone()),
            lags: Mutex::default(),
            config,
        })
    }

    pub fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token.to_owned();
        self.client.set_token(token);
    }

    pub fn now(&self) -> Instant {
        self.config.sources.now()
    }

    /// Milliseconds from `since` to now.
    pub fn ms(&self, since: Instant) -> f64 {
        self.now().saturating_duration_since(since).as_secs_f64() * 1000.0
    }

    fn session_url(&self, tail: &str) -> String {
        format!("{}/orchestrator/v1/sessions/{}{tail}", self.config.api_url, self.config.session)
    }

    /// One request with the container token, read whole; on a network error, a 429 or a 5xx it
    /// backs off (jittered, after the server's hint) and tries again, as the client's RPCs do.
    async fn call(&self, method: Method, url: &str, body: Option<&Value>) -> anyhow::Result<Fetched> {
        let attempt = || self.call_once(method.clone(), url, body);
        self.client
            .retrying(url, attempt, |answer| judge(answer.as_ref().map(|a| (a.status, &a.headers, &a.body[..]))))
            .await
    }

    async fn call_once(&self, method: Method, url: &str, body: Option<&Value>) -> anyhow::Result<Fetched> {
        let token = self.token();
        let bearer = format!("Bearer {token}");
        let headers =
            [("apikey", token.as_str()), ("authorization", bearer.as_str()), ("content-type", "application/json")];
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = transport::request(method, url, &headers, body)?;
        Ok(self.transport.fetch(request, MAX_ANSWER_BYTES, CALL_TIMEOUT).await?)
    }

    /// A JSON call that must succeed.
    async fn json<T: DeserializeOwned>(&self, method: Method, url: &str, body: Option<&Value>) -> anyhow::Result<T> {
        let answer = self.call(method, url, body).await?;
        ensure!(answer.status.is_success(), "HTTP {}: {}", answer.status, error_message(&answer.text()));
        serde_json::from_slice(&answer.body).context("unexpected answer")
    }

    /// Tells the orchestrator where the session stands; a failure to tell is logged, not fatal.
    pub async fn report(&self, status: SessionStatus, reason: Option<String>, timings: &BTreeMap<String, f64>) {
        let reason = reason.map(|reason| shorten(reason, MAX_STATUS_REASON_BYTES));
        let report = StatusReport { status, reason, timings_ms: timings.clone() };
        let body = serde_json::to_value(&report).unwrap_or(Value::Null);
        let sent = self.json::<Value>(Method::POST, &self.session_url("/status"), Some(&body)).await;
        if let Err(e) = sent.context("report the session status") {
            tracing::warn!(error = format!("{e:#}"), status = status.as_str(), "could not report the session status");
        }
    }

    /// Notes that a write made at `written_at` (since the Unix epoch) is now on disk; past
    /// [`MAX_LAG_SAMPLES`] unreported ones, it is dropped.
    pub fn note_applied(&self, written_at: Duration) {
        let lag_ms = self.config.sources.wall().saturating_sub(written_at).as_secs_f64() * 1000.0;
        let mut lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        if lags.len() < MAX_LAG_SAMPLES {
            lags.push(lag_ms);
        }
    }

    /// The agent's heartbeat: whether it follows the project (its feed is joined), where it is,
    /// and the lags noted since the last report (sent once, without retries: a lost report loses
    /// only them, and the next comes a second later). Whether the orchestrator answered that the
    /// session has ended.
    pub async fn report_lags(&self, following: bool, seq: Option<i64>) -> bool {
        let applied_lag_ms = std::mem::take(&mut *self.lags.lock().unwrap_or_else(|e| e.into_inner()));
        let report = LagReport { applied_lag_ms, following: Some(following), seq };
        let body = serde_json::to_value(report).unwrap_or(Value::Null);
        // Briefly: the follow loop waits for it, and applying changes matters more.
        let url = self.session_url("/lag");
        match tokio::time::timeout(LAG_REPORT_TIMEOUT, self.call_once(Method::POST, &url, Some(&body))).await {
            Ok(Ok(answer)) if answer.status.is_success() => false,
            Ok(Ok(answer)) if answer.status == http::StatusCode::CONFLICT => true,
            Ok(Ok(answer)) => {
                tracing::debug!(status = %answer.status, "the lag report was refused");
                false
            }
            Ok(Err(e)) => {
                tracing::debug!(error = format!("{e:#}"), "could not report lags");
                false
            }
            Err(_) => {
                tracing::debug!("the lag report timed out");
                false
            }
        }
    }

    /// The snapshot to hydrate from, and where to download it.
    pub async fn manifest(&self) -> anyhow::Result<(Manifest, String)> {
        let snapshot: AgentSnapshot =
            self.json(Method::GET, &self.session_url("/snapshot"), None).await.context("fetch the manifest")?;
        let manifest = snapshot.manifest.context("the orchestrator has no manifest for this session")?;
        Ok((manifest, snapshot.url.unwrap_or_else(|| self.config.snapshot_url.clone())))
    }

    /// A new container token, asked for with the current one (which may have expired: the
    /// session's record decides). A network error, 429 or 5xx is an `Err` (try again later).
    pub async fn refresh_token(&self) -> anyhow::Result<Refresh> {
        let answer = self.call(Method::POST, &self.session_url("/token"), None).await.context("refresh the token")?;
        let message = || format!("HTTP {}: {}", answer.status, error_message(&answer.text()));
        Ok(match answer.status.as_u16() {
            200..=299 => Refresh::Granted(serde_json::from_slice(&answer.body).context("unexpected answer")?),
            404 | 409 => Refresh::Ended(message()),
            429 | 500.. => anyhow::bail!("refresh the token: {}", message()),
            _ => Refresh::Refused(message()),
        })
    }

    /// The bytes of a binary file: signed through Storage with the container token, downloaded,
    /// checked against `content_hash`.
    pub async fn binary(&self, content_hash: &str) -> anyhow::Result<Vec<u8>> {
        let name = format!("{}/{content_hash}", self.config.project);
        let sign_url = format!("{}/storage/v1/object/sign/{FILES_BUCKET}/{name}", self.config.api_url);
        let signed: Value = self
            .json(Method::POST, &sign_url, Some(&json!({"expiresIn": 60})))
            .await
            .with_context(|| format!("sign {FILES_BUCKET}/{name}"))?;
        let path = signed.get("signedURL").and_then(Value::as_str).context("the signed answer has no signedURL")?;
        let answer = self
            .call(Method::GET, &format!("{}/storage/v1{path}", self.config.api_url), None)
            .await
            .with_context(|| format!("download {name}"))?;
        ensure!(
            answer.status.is_success(),
            "download {name}: HTTP {}: {}",
            answer.status,
            error_message(&answer.text())
        );
        let actual = hex_sha256(&answer.body);
        ensure!(actual == content_hash, "binary {name} has hash {actual}");
        Ok(answer.body.to_vec())
    }

    /// Fetches the bytes of every write in `changes` that carries no content.
    pub async fn binaries(&self, changes: &[FileChange]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        let mut binaries = BTreeMap::new();
        for change in changes {
            if let FileChange::Write { path, content: None, content_hash: Some(hash), .. } = change {
                binaries.insert(path.clone(), self.binary(hash).await?);
            }
        }
        Ok(binaries)
    }

    /// The snapshot's response, its body not yet read: a network error, a 429 or a 5xx is tried
    /// again after a backoff, as in [`Api::call`].
    async fn snapshot_response(&self, url: &str) -> anyhow::Result<Streamed> {
        let attempt = || async {
            let request = transport::request(Method::GET, url, &[], Bytes::new())?;
            Ok(self.transport.send(request).await?)
        };
        let judged = |sent: &anyhow::Result<Streamed>| judge(sent.as_ref().map(|r| (r.status(), r.headers(), &[][..])));
        self.client.retrying(url, attempt, judged).await
    }

    /// Streams the snapshot into `path`, hashing as it goes; refuses a body over `max_bytes` or
    /// whose SHA-256 is not `expected`.
    pub async fn download_snapshot(
        &self,
        url: &str,
        path: &Path,
        expected: &str,
        max_bytes: u64,
    ) -> anyhow::Result<u64> {
        let response = self.snapshot_response(url).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = body.collect().await.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
            bail!("HTTP {status}: {}", error_message(&text.unwrap_or_default()));
        }
        let mut file = ZipFile::create(path, self.config.sources.blocking)
            .await
            .with_context(|| format!("create {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(chunk) = frame.context("read the snapshot")?.into_data() else { continue };
            size += chunk.len() as u64;
            ensure!(size <= max_bytes, "the snapshot zip is larger than {max_bytes} bytes");
            hasher.update(&chunk);
            file.write(&chunk).await.with_context(|| format!("write {}", path.display()))?;
        }
        file.flush().await.with_context(|| format!("write {}", path.display()))?;
        let actual = to_hex(&hasher.finalize());
        ensure!(
            actual == expected,
            "the snapshot zip's SHA-256 is {actual}, the manifest says {expected} (truncated or tampered download)"
        );
        Ok(size)
    }
}

/// Whether an answer (its status, headers and body), or a failure to get one, is worth another
/// try: network errors, 429 and 5xx are, after the server's hint when it gave one.
fn judge(answer: Result<(http::StatusCode, &http::HeaderMap, &[u8]), &anyhow::Error>) -> Next {
    match answer {
        Ok((status, headers, body)) if retryable_status(status.as_u16()) => {
            Next::Retry(retry_hint(headers, &String::from_utf8_lossy(body)))
        }
        Ok(_) => Next::Done,
        Err(_) => Next::Retry(None),
    }
}

/// The downloaded zip on disk: through tokio's file (threads), or written inline.
enum ZipFile {
    Tokio(tokio::fs::File),
    Inline(std::fs::File),
}

impl ZipFile {
    async fn create(path: &Path, blocking: Blocking) -> std::io::Result<ZipFile> {
        Ok(match blocking {
            Blocking::Threads => ZipFile::Tokio(tokio::fs::File::create(path).await?),
            Blocking::Inline => ZipFile::Inline(std::fs::File::create(path)?),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            ZipFile::Tokio(file) => file.write_all(bytes).await,
            ZipFile::Inline(file) => std::io::Write::write_all(file, bytes),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ZipFile::Tokio(file) => file.flush().await,
            ZipFile::Inline(file) => std::io::Write::flush(file),
        }
    }
}

/// The message of an error body (PostgREST's or Storage's), or the body.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => {
            let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
            let message = field("message").unwrap_or_else(|| body.to_owned());
            match field("code").or_else(|| field("error")) {
                Some(code) => format!("{code}: {message}"),
                None => message,
            }
        }
        Err(_) => body.chars().take(300).collect(),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut (the server refuses
/// a longer reason).
fn shorten(mut text: String, max: usize) -> String {
    const MARK: &str = " …";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary_within_the_limit() {
        assert_eq!(shorten("short".into(), 100), "short");
        let long = "é".repeat(10_000);
        let cut = shorten(long, 8 * 1024);
        assert!(cut.len() <= 8 * 1024 && cut.ends_with(" …"), "{}", cut.len());
    }
}
