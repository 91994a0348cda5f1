//! The agent's life (DESIGN §9): join first, hydrate, catch up, report `running`, then follow.
//!
//! 1. Join the project's channel with the container token (events before the base seq are not
//!    needed: the catch-up after hydration reads after they committed).
//! 2. Hydrate: with a snapshot, fetch the manifest from the orchestrator, stream the zip to disk
//!    while hashing it, check the hash, extract into a fresh directory with every guard, and
//!    rename it into place; without one (the legacy path), list the files and write them one by
//!    one through the API.
//! 3. Set the base seq (the manifest's) and wait for the catch-up from it.
//! 4. Start `--exec`, report `running`, then apply each batch as it comes, fetching binary
//!    contents from storage; refresh the token before it expires; stop on SIGTERM.

use crate::apply::ProjectDir;
use crate::extract::{self, ExtractError};
use fsync_client::realtime::{FeedConfig, FeedEvent, FeedHandle, ProjectFeed};
use fsync_client::{ClientConfig, FsyncClient};
use fsync_protocol::events::FileChange;
use fsync_protocol::hash::{hex_sha256, to_hex};
use fsync_protocol::jwt;
use fsync_protocol::snapshot::{
    AgentSnapshot, ExtractLimits, Manifest, SessionStatus, StatusReport, TokenGrant, FILES_BUCKET,
};
use fsync_store::Sources;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// How long the agent waits to join its channel before it gives up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What the agent is told (DESIGN §12): five variables, `--dir` and `--exec`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub project: Uuid,
    pub session: Uuid,
    /// Empty: the legacy path (file by file through the API).
    pub snapshot_url: String,
    pub token: String,
    pub api_url: String,
    pub dir: PathBuf,
    pub exec: Option<String>,
    pub limits: ExtractLimits,
    /// Where time and ids come from (the system unless given).
    pub sources: Sources,
}

impl AgentConfig {
    /// Reads the five variables through `lookup`; names what is missing or malformed.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        dir: PathBuf,
        exec: Option<String>,
    ) -> Result<AgentConfig, String> {
        let var = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        let uuid = |name: &str| -> Result<Uuid, String> {
            let value = var(name)?;
            Uuid::parse_str(value.trim()).map_err(|_| format!("{name}={value:?} is not a uuid"))
        };
        let token = var("REALTIME_TOKEN")?;
        if token.trim().is_empty() {
            return Err("REALTIME_TOKEN is empty".into());
        }
        let api_url = var("FSYNC_API_URL")?.trim_end_matches('/').to_owned();
        if !api_url.starts_with("http://") && !api_url.starts_with("https://") {
            return Err(format!("FSYNC_API_URL={api_url:?} is not an http(s) URL"));
        }
        Ok(AgentConfig {
            project: uuid("PROJECT_ID")?,
            session: uuid("SESSION_ID")?,
            snapshot_url: var("SNAPSHOT_URL")?.trim().to_owned(),
            token,
            api_url,
            dir,
            exec,
            limits: ExtractLimits::default(),
            sources: Sources::system(),
        })
    }
}

/// Why the agent stopped short.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

fn failed(message: impl Into<String>) -> AgentError {
    AgentError::Failed(message.into())
}

/// The HTTP side of the agent: the API as its container token, and its session's endpoints.
struct Api {
    http: reqwest::Client,
    client: Arc<FsyncClient>,
    config: AgentConfig,
    token: std::sync::Mutex<String>,
}

impl Api {
    fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token.to_owned();
        self.client.set_token(token);
    }

    fn now(&self) -> Instant {
        self.config.sources.now()
    }

    /// Milliseconds from `since` to now.
    fn ms(&self, since: Instant) -> f64 {
        self.now().saturating_duration_since(since).as_secs_f64() * 1000.0
    }

    fn session_url(&self, tail: &str) -> String {
        format!("{}/orchestrator/v1/sessions/{}{tail}", self.config.api_url, self.config.session)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let token = self.token();
        request.header("apikey", &token).bearer_auth(&token)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, AgentError> {
        let response = self.authed(request).send().await.map_err(|e| failed(format!("{what}: {e}")))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| failed(format!("{what}: {e}")))?;
        if !status.is_success() {
            return Err(failed(format!("{what}: HTTP {status}: {}", error_message(&body))));
        }
        serde_json::from_str(&body).map_err(|e| failed(format!("{what}: unexpected answer: {e}")))
    }

    async fn report(&self, status: SessionStatus, reason: Option<String>, timings: &BTreeMap<String, f64>) {
        let report = StatusReport { status, reason, timings_ms: timings.clone() };
        let request = self.http.post(self.session_url("/status")).json(&report);
        if let Err(e) = self.json::<Value>(request, "report status").await {
            tracing::warn!(error = %e, status = status.as_str(), "could not report the session status");
        }
    }

    async fn manifest(&self) -> Result<Manifest, AgentError> {
        let snapshot: AgentSnapshot =
            self.json(self.http.get(self.session_url("/snapshot")), "fetch the manifest").await?;
        snapshot.manifest.ok_or_else(|| failed("the orchestrator has no manifest for this session"))
    }

    async fn refresh_token(&self) -> Result<TokenGrant, AgentError> {
        self.json(self.http.post(self.session_url("/token")), "refresh the token").await
    }

    /// The bytes of a binary file: signed through Storage with the container token, downloaded,
    /// checked against `content_hash`.
    async fn binary(&self, content_hash: &str) -> Result<Vec<u8>, AgentError> {
        let name = format!("{}/{content_hash}", self.config.project);
        let what = format!("sign {FILES_BUCKET}/{name}");
        let sign = self
            .http
            .post(format!("{}/storage/v1/object/sign/{FILES_BUCKET}/{name}", self.config.api_url))
            .json(&json!({"expiresIn": 60}));
        let signed: Value = self.json(sign, &what).await?;
        let path =
            signed.get("signedURL").and_then(Value::as_str).ok_or_else(|| failed(format!("{what}: no signedURL")))?;
        let response = self
            .http
            .get(format!("{}/storage/v1{path}", self.config.api_url))
            .send()
            .await
            .map_err(|e| failed(format!("download {name}: {e}")))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| failed(format!("download {name}: {e}")))?;
        if !status.is_success() {
            return Err(failed(format!(
                "download {name}: HTTP {status}: {}",
                error_message(&String::from_utf8_lossy(&bytes))
            )));
        }
        let actual = hex_sha256(&bytes);
        if actual != content_hash {
            return Err(failed(format!("binary {name} has hash {actual}")));
        }
        Ok(bytes.to_vec())
    }

    /// Fetches the bytes of every write in `changes` that carries no content.
    async fn binaries(&self, changes: &[FileChange]) -> Result<BTreeMap<String, Vec<u8>>, AgentError> {
        let mut binaries = BTreeMap::new();
        for change in changes {
            if let FileChange::Write { path, content: None, content_hash: Some(hash), .. } = change {
                binaries.insert(path.clone(), self.binary(hash).await?);
            }
        }
        Ok(binaries)
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

/// Runs the agent until `shutdown` resolves (or it fails). Reports `failed` with the reason
/// itself when it can.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let client = FsyncClient::new(
        ClientConfig::new(&config.api_url, &config.token).token(&config.token).sources(config.sources.clone()),
    )
    .map_err(|e| failed(format!("API client: {e}")))?;
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        client: Arc::new(client),
        token: std::sync::Mutex::new(config.token.clone()),
        config,
    });
    let mut timings = BTreeMap::new();
    match run_inner(&api, &mut timings, shutdown).await {
        Ok(()) => Ok(()),
        Err(e) => {
            api.report(SessionStatus::Failed, Some(e.to_string()), &timings).await;
            Err(e)
        }
    }
}

async fn run_inner(
    api: &Arc<Api>,
    timings: &mut BTreeMap<String, f64>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let config = &api.config;
    let started = api.now();
    let feed_config = FeedConfig::new(&config.api_url, &config.token, &config.token, config.project);
    let (feed, mut events) = ProjectFeed::start(feed_config, api.client.clone(), None, 1024);
    wait_subscribed(&mut events, api.now() + JOIN_TIMEOUT).await?;
    timings.insert("join".into(), api.ms(started));
    api.report(SessionStatus::Hydrating, None, timings).await;

    let (dir, base) = if config.snapshot_url.is_empty() {
        hydrate_legacy(api, timings).await?
    } else {
        hydrate_snapshot(api, timings).await?
    };

    let step = api.now();
    feed.set_base_seq(base);
    let mut caught_up = feed.caught_up();
    loop {
        tokio::select! {
            changed = caught_up.changed() => {
                changed.map_err(|_| failed("the realtime feed stopped"))?;
                if caught_up.borrow().is_some_and(|seq| seq >= base) {
                    break;
                }
            }
            event = events.recv() => apply_event(api, &dir, event).await?,
        }
    }
    while let Ok(event) = events.try_recv() {
        apply_event(api, &dir, Some(event)).await?;
    }
    timings.insert("catch_up".into(), api.ms(step));

    let mut child = match &config.exec {
        None => None,
        Some(command) => {
            let step = api.now();
            let child = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .current_dir(dir.root())
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("PROJECT_DIR", dir.root())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| failed(format!("start --exec {command:?}: {e}")))?;
            timings.insert("exec".into(), api.ms(step));
            Some(child)
        }
    };
    timings.insert("hydrate".into(), api.ms(started));
    api.report(SessionStatus::Running, None, timings).await;
    tracing::info!(seq = ?feed.last_seq(), dir = %dir.root().display(), "running");

    follow(api, &feed, &mut events, &dir, &mut child, shutdown).await
}

async fn wait_subscribed(events: &mut mpsc::Receiver<FeedEvent>, deadline: Instant) -> Result<(), AgentError> {
    let mut last_reason = String::from("no answer");
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Err(failed(format!("could not join the project channel: {last_reason}"))),
            Ok(None) => return Err(failed("the realtime feed stopped")),
            Ok(Some(FeedEvent::Subscribed)) => return Ok(()),
            Ok(Some(FeedEvent::Disconnected { reason })) => last_reason = reason,
            Ok(Some(FeedEvent::Changes { .. })) => {}
        }
    }
}

async fn apply_event(api: &Api, dir: &ProjectDir, event: Option<FeedEvent>) -> Result<(), AgentError> {
    match event {
        None => Err(failed("the realtime feed stopped")),
        Some(FeedEvent::Changes { seq, changes, .. }) => {
            let binaries = api.binaries(&changes).await?;
            dir.apply_with(&changes, &binaries)
                .map_err(|e| failed(format!("apply the changes up to seq {seq}: {e}")))?;
            tracing::debug!(seq, files = changes.len(), "applied");
            Ok(())
        }
        Some(FeedEvent::Disconnected { reason }) => {
            tracing::info!(%reason, "realtime disconnected; reconnecting and catching up");
            Ok(())
        }
        Some(FeedEvent::Subscribed) => Ok(()),
    }
}

/// Follows the feed until shutdown, refreshing the token at two thirds of its life.
async fn follow(
    api: &Arc<Api>,
    feed: &FeedHandle,
    events: &mut mpsc::Receiver<FeedEvent>,
    dir: &ProjectDir,
    child: &mut Option<tokio::process::Child>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    let mut refresh_at = refresh_deadline(&api.config.sources, &api.token());
    loop {
        let child_exit = async {
            match child.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => {
                if let Some(child) = child.as_mut() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                tracing::info!("stopped");
                return Ok(());
            }
            event = events.recv() => apply_event(api, dir, event).await?,
            status = child_exit => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(failed(format!("the --exec command exited ({status})")));
            }
            _ = tokio::time::sleep_until(refresh_at) => {
                match api.refresh_token().await {
                    Ok(grant) => {
                        api.set_token(&grant.access_token);
                        feed.set_token(grant.access_token.clone());
                        refresh_at = refresh_deadline(&api.config.sources, &grant.access_token);
                        tracing::debug!(expires_at = grant.expires_at, "token refreshed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "token refresh failed; retrying in 5 s");
                        refresh_at = api.now() + Duration::from_secs(5);
                    }
                }
            }
        }
    }
}

/// When to refresh `token`: at two thirds of its remaining life (at least a second from now).
fn refresh_deadline(sources: &Sources, token: &str) -> Instant {
    let now = sources.wall_s();
    let exp = jwt::unverified_claims(token).and_then(|c| c.get("exp").and_then(Value::as_u64)).unwrap_or(now + 60);
    let left = exp.saturating_sub(now);
    sources.now() + Duration::from_secs((left * 2 / 3).max(1))
}

/// Hydrates from the snapshot; returns the project directory and the manifest's seq.
async fn hydrate_snapshot(api: &Api, timings: &mut BTreeMap<String, f64>) -> Result<(ProjectDir, i64), AgentError> {
    let config = &api.config;
    let manifest = api.manifest().await?;
    if manifest.project_id != config.project {
        return Err(failed(format!("the manifest is for project {}, not {}", manifest.project_id, config.project)));
    }
    extract::check_manifest(&manifest, &config.limits)?;
    let parent = config.dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = config.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
    std::fs::create_dir_all(&parent).map_err(|e| failed(format!("create {}: {e}", parent.display())))?;
    let zip_path = parent.join(format!(".{name}.snapshot-{}.zip", config.sources.uuid().simple()));
    let hydrate_dir = parent.join(format!(".{name}.hydrate-{}", config.sources.uuid().simple()));
    let result = async {
        let step = api.now();
        let max_zip = config.limits.max_total_bytes.saturating_add(64 * 1024 * 1024);
        download(&api.http, &config.snapshot_url, &zip_path, &manifest.zip_sha256, max_zip).await?;
        timings.insert("download".into(), api.ms(step));
        let step = api.now();
        let (zip, dest, manifest_copy, limits) =
            (zip_path.clone(), hydrate_dir.clone(), manifest.clone(), config.limits);
        std::fs::create_dir(&dest).map_err(|e| failed(format!("create {}: {e}", dest.display())))?;
        tokio::task::spawn_blocking(move || extract::extract(&zip, &manifest_copy, &dest, &limits))
            .await
            .map_err(|e| failed(format!("extract: {e}")))??;
        timings.insert("extract".into(), api.ms(step));
        put_in_place(&hydrate_dir, &config.dir, &config.sources)
    }
    .await;
    let _ = std::fs::remove_file(&zip_path);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&hydrate_dir);
    }
    result?;
    let dir = ProjectDir::open(&config.dir).map_err(|e| failed(format!("open {}: {e}", config.dir.display())))?;
    Ok((dir, manifest.seq))
}

/// Streams `url` into `path`, hashing as it goes; refuses a body over `max_bytes` or whose
/// SHA-256 is not `expected`.
async fn download(
    http: &reqwest::Client,
    url: &str,
    path: &Path,
    expected: &str,
    max_bytes: u64,
) -> Result<u64, AgentError> {
    let response = http.get(url).send().await.map_err(|e| failed(format!("download the snapshot: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(failed(format!("download the snapshot: HTTP {status}: {}", error_message(&body))));
    }
    let mut file =
        tokio::fs::File::create(path).await.map_err(|e| failed(format!("create {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(format!("download the snapshot: {e}")))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(failed(format!("the snapshot zip is larger than {max_bytes} bytes")));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| failed(format!("write {}: {e}", path.display())))?;
    }
    file.flush().await.map_err(|e| failed(format!("write {}: {e}", path.display())))?;
    let actual = to_hex(&hasher.finalize());
    if actual != expected {
        return Err(failed(format!(
            "the snapshot zip's SHA-256 is {actual}, the manifest says {expected} (truncated or tampered download)"
        )));
    }
    Ok(size)
}

/// Renames the extracted directory to `target`, replacing an empty or earlier one.
fn put_in_place(extracted: &Path, target: &Path, sources: &Sources) -> Result<(), AgentError> {
    let io = |what: &str, e: std::io::Error| failed(format!("{what} {}: {e}", target.display()));
    match std::fs::rename(extracted, target) {
        Ok(()) => Ok(()),
        Err(_) if target.exists() => {
            let old = target.with_file_name(format!(".old-{}", sources.uuid().simple()));
            std::fs::rename(target, &old).map_err(|e| io("move aside", e))?;
            std::fs::rename(extracted, target).map_err(|e| io("move into place", e))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        }
        Err(e) => Err(io("move into place", e)),
    }
}

/// The legacy path: every current file through the API, written one by one. The base is the
/// highest seq among them: later changes replay idempotently on top.
async fn hydrate_legacy(api: &Api, timings: &mut BTreeMap<String, f64>) -> Result<(ProjectDir, i64), AgentError> {
    let config = &api.config;
    let step = api.now();
    let files = api
        .client
        .list_current_files(config.project)
        .await
        .map_err(|e| failed(format!("list the project's files: {e}")))?;
    timings.insert("download".into(), api.ms(step));
    let step = api.now();
    let dir = ProjectDir::open(&config.dir).map_err(|e| failed(format!("open {}: {e}", config.dir.display())))?;
    let mut base = 0;
    for file in files {
        base = base.max(file.seq);
        let change = FileChange::Write {
            path: file.file_path,
            file_type: file.file_type,
            content: file.content,
            content_hash: file.content_hash,
            version: file.version,
        };
        let binaries = api.binaries(std::slice::from_ref(&change)).await?;
        dir.apply_with(std::slice::from_ref(&change), &binaries)
            .map_err(|e| failed(format!("write {}: {e}", change.path())))?;
    }
    timings.insert("extract".into(), api.ms(step));
    Ok((dir, base))
}
