//! The orchestrator (DESIGN §8, §9, plan 2.2): preview sessions.
//!
//! `POST /orchestrator/v1/sessions {project_id}` with a member's token creates a session and
//! starts it in the background: build or reuse the snapshot, sign its URL, mint a container token
//! (at most 15 minutes), and spawn `fsync-agent` with a cleared environment holding exactly
//! `PROJECT_ID`, `SESSION_ID`, `SNAPSHOT_URL`, `REALTIME_TOKEN` and `FSYNC_API_URL`, in a
//! directory of its own. The agent reports `hydrating`, `running` or `failed` with its own
//! container token, fetches its manifest, and refreshes its token here. An agent that exits
//! while its session is live fails the session with the reason (its report, or its exit status
//! and last line of stderr). `DELETE` stops the agent (SIGTERM, then SIGKILL) and removes the
//! directory.
//!
//! Sessions live in the instance that spawned their agent (the agent is its child process).

use crate::auth;
use crate::platform::Platform;
use crate::snapshot;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fsync_protocol::jwt;
use fsync_protocol::snapshot::{
    snapshot_zip_name, AgentSnapshot, Manifest, SessionStatus, SessionView, StatusReport, TokenGrant,
    CONTAINER_TOKEN_MAX_TTL_S, SNAPSHOT_BUCKET,
};
use fsync_store::error::{ApiError, StatusCode};
use fsync_store::{RequestAuth, Sources};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long `DELETE` waits for an agent to exit after SIGTERM before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How the orchestrator starts agents.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Where session directories are made (`FSYNC_SESSIONS_DIR`, default `./.fsync/sessions`).
    pub sessions_dir: PathBuf,
    /// The agent binary (`FSYNC_AGENT_BIN`, default `fsync-agent` beside the server's binary).
    pub agent_bin: PathBuf,
    /// `FSYNC_USE_SNAPSHOT_HYDRATION`: hydrate from a snapshot (on) or file by file (off).
    pub snapshot_hydration: bool,
    /// `FSYNC_AGENT_EXEC`: the command agents start after hydrating (the preview's dev server).
    pub agent_exec: Option<String>,
    /// Lifetime of container tokens (at most 15 minutes).
    pub token_ttl_s: u64,
}

impl OrchestratorConfig {
    /// Reads the configuration through `lookup`, with `state_dir` for the default sessions dir.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, state_dir: &std::path::Path) -> OrchestratorConfig {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        OrchestratorConfig {
            sessions_dir: non_empty("FSYNC_SESSIONS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| state_dir.join("sessions")),
            agent_bin: non_empty("FSYNC_AGENT_BIN").map(PathBuf::from).unwrap_or_else(default_agent_bin),
            snapshot_hydration: non_empty("FSYNC_USE_SNAPSHOT_HYDRATION").is_some_and(|v| flag_on(&v)),
            agent_exec: non_empty("FSYNC_AGENT_EXEC"),
            token_ttl_s: CONTAINER_TOKEN_MAX_TTL_S,
        }
    }
}

/// Whether a flag's value means on (`1`, `true`, `on`, `yes`).
pub fn flag_on(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes")
}

/// `fsync-agent` beside the running binary, else on `PATH`.
fn default_agent_bin() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("fsync-agent")));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("fsync-agent"),
    }
}

struct Session {
    view: SessionView,
    /// The user who started it.
    owner: String,
    manifest: Option<Manifest>,
    created: Instant,
    dir: PathBuf,
}

/// The sessions of this instance.
pub struct Orchestrator {
    pub config: OrchestratorConfig,
    sessions: Mutex<BTreeMap<Uuid, Session>>,
    sources: Sources,
}

impl Orchestrator {
    pub fn new(config: OrchestratorConfig, sources: Sources) -> Orchestrator {
        Orchestrator { config, sessions: Mutex::new(BTreeMap::new()), sources }
    }

    fn ms_since(&self, since: Instant) -> f64 {
        self.sources.now().saturating_duration_since(since).as_secs_f64() * 1000.0
    }

    fn with<T>(&self, id: Uuid, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id).map(f)
    }

    /// A session's view.
    pub fn view(&self, id: Uuid) -> Option<SessionView> {
        self.with(id, |s| s.view.clone())
    }

    /// Moves a live session to `status` (a final session stays as it is).
    fn set_status(&self, id: Uuid, status: SessionStatus, reason: Option<String>) {
        self.with(id, |s| {
            if s.view.status.is_final() {
                return;
            }
            s.view.status = status;
            if reason.is_some() {
                s.view.reason = reason;
            }
            if status == SessionStatus::Running {
                let total = self.ms_since(s.created);
                s.view.timings_ms.insert("total".into(), total);
            }
        });
    }

    fn timing(&self, id: Uuid, phase: &str, since: Instant) {
        let ms = self.ms_since(since);
        self.with(id, |s| {
            s.view.timings_ms.insert(phase.to_owned(), ms);
        });
    }
}

pub fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route("/orchestrator/v1/sessions", post(create))
        .route("/orchestrator/v1/sessions/{id}", get(show).delete(stop))
        .route("/orchestrator/v1/sessions/{id}/status", post(report))
        .route("/orchestrator/v1/sessions/{id}/token", post(refresh_token))
        .route("/orchestrator/v1/sessions/{id}/snapshot", get(agent_snapshot))
}

fn caller(platform: &Platform, headers: &HeaderMap) -> Result<RequestAuth, ApiError> {
    auth::authenticate(headers, &platform.secret, platform.sources.wall_s())
}

fn is_container(auth: &RequestAuth) -> bool {
    auth.claims.get("scope").and_then(Value::as_str) == Some("container")
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "PT404", format!("session {id} not found"))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "22023", format!("{id:?} is not a session id")))
}

async fn create(State(platform): State<Arc<Platform>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let auth = caller(&platform, &headers)?;
    let user = auth.claims.get("sub").and_then(Value::as_str).map(str::to_owned);
    let (Some(user), false, "authenticated") = (user, is_container(&auth), auth.role.as_str()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "42501",
            "sessions are started with a signed-in member's token",
        ));
    };
    let request: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let project = request
        .get("project_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "22023", "project_id must be a project's uuid"))?;
    // Row level security shows a project to its members only.
    let rows = platform
        .store
        .query_as(&auth, true, "GET", "/projects", "SELECT 1 FROM public.projects WHERE id = $1", &[&project])
        .await?;
    if rows.is_empty() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "42501", format!("not a member of project {project}")));
    }

    let orchestrator = &platform.orchestrator;
    let id = platform.sources.uuid();
    let dir = orchestrator.config.sessions_dir.join(id.to_string());
    let project_dir = dir.join("project");
    let view = SessionView {
        id,
        project_id: project,
        status: SessionStatus::Starting,
        reason: None,
        project_dir: project_dir.display().to_string(),
        agent_pid: None,
        snapshot_id: None,
        timings_ms: BTreeMap::new(),
        snapshot_hydration: orchestrator.config.snapshot_hydration,
    };
    let session = Session { view: view.clone(), owner: user, manifest: None, created: platform.sources.now(), dir };
    orchestrator.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id, session);
    tokio::spawn(start(platform.clone(), id));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Starts a session: snapshot, token, agent; then watches the agent.
async fn start(platform: Arc<Platform>, id: Uuid) {
    if let Err(reason) = launch(&platform, id).await {
        tracing::warn!(session = %id, %reason, "session failed to start");
        platform.orchestrator.set_status(id, SessionStatus::Failed, Some(reason));
    }
}

async fn launch(platform: &Arc<Platform>, id: Uuid) -> Result<(), String> {
    let orchestrator = &platform.orchestrator;
    let config = &orchestrator.config;
    let Some((project, dir, project_dir)) =
        orchestrator.with(id, |s| (s.view.project_id, s.dir.clone(), PathBuf::from(&s.view.project_dir)))
    else {
        return Ok(());
    };
    let snapshot_url = if config.snapshot_hydration {
        let started = platform.sources.now();
        let (manifest, reused) = snapshot::build_or_reuse(platform, project)
            .await
            .map_err(|e| format!("snapshot: {} {}", e.body.message, e.body.details.unwrap_or_default()))?;
        orchestrator.timing(id, if reused { "snapshot_reused" } else { "snapshot_built" }, started);
        orchestrator.timing(id, "snapshot", started);
        let url = platform.signed_url(
            SNAPSHOT_BUCKET,
            &snapshot_zip_name(project, &manifest.snapshot_id),
            config.token_ttl_s,
        );
        orchestrator.with(id, |s| {
            s.view.snapshot_id = Some(manifest.snapshot_id.clone());
            s.manifest = Some(manifest);
        });
        url
    } else {
        String::new()
    };

    let started = platform.sources.now();
    let token = container_token(platform, id, project);
    std::fs::create_dir_all(&project_dir).map_err(|e| format!("create {}: {e}", project_dir.display()))?;
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let mut command = tokio::process::Command::new(&config.agent_bin);
    command
        .env_clear()
        .env("PROJECT_ID", project.to_string())
        .env("SESSION_ID", id.to_string())
        .env("SNAPSHOT_URL", snapshot_url)
        .env("REALTIME_TOKEN", token.access_token)
        .env("FSYNC_API_URL", platform.public_url())
        .arg("--dir")
        .arg(&project_dir)
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(exec) = &config.agent_exec {
        command.arg("--exec").arg(exec);
    }
    let stopped_already = orchestrator.with(id, |s| s.view.status.is_final()).unwrap_or(true);
    if stopped_already {
        return Ok(());
    }
    let mut child = command.spawn().map_err(|e| format!("spawn {}: {e}", config.agent_bin.display()))?;
    orchestrator.timing(id, "spawn", started);
    orchestrator.with(id, |s| s.view.agent_pid = child.id());
    tokio::spawn({
        let platform = platform.clone();
        async move {
            let status = child.wait().await;
            let orchestrator = &platform.orchestrator;
            let final_already = orchestrator.with(id, |s| s.view.status.is_final()).unwrap_or(true);
            if final_already {
                return;
            }
            let how = match status {
                Ok(status) => format!("the agent exited ({status})"),
                Err(e) => format!("the agent could not be waited for: {e}"),
            };
            let last_line = std::fs::read_to_string(&log_path)
                .ok()
                .and_then(|log| log.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned));
            let reason = match last_line {
                Some(line) => format!("{how}: {line}"),
                None => how.clone(),
            };
            // A reason the agent reported itself is kept; the exit is added to it.
            let reported = orchestrator.with(id, |s| s.view.reason.clone()).flatten();
            let reason = match reported {
                Some(reported) if !reported.is_empty() => format!("{reported} ({how})"),
                _ => reason,
            };
            orchestrator.set_status(id, SessionStatus::Failed, Some(reason));
        }
    });
    Ok(())
}

fn container_token(platform: &Platform, id: Uuid, project: Uuid) -> TokenGrant {
    let now = platform.sources.wall_s();
    let ttl = platform.orchestrator.config.token_ttl_s.min(CONTAINER_TOKEN_MAX_TTL_S);
    let claims = jwt::container_claims(&id.to_string(), &project.to_string(), now, ttl);
    TokenGrant { access_token: jwt::sign(&platform.secret, &claims), expires_at: now + ttl }
}

/// Who may see or stop a session: the member who started it, or the service role.
fn may_manage(auth: &RequestAuth, owner: &str) -> bool {
    auth.role == "service_role"
        || (!is_container(auth) && auth.claims.get("sub").and_then(Value::as_str) == Some(owner))
}

/// The session of an agent's own call: the caller must hold that session's container token.
fn agent_session(platform: &Platform, headers: &HeaderMap, id: &str) -> Result<Uuid, ApiError> {
    let auth = caller(platform, headers)?;
    let id = parse_id(id)?;
    let session = auth.claims.get("session_id").and_then(Value::as_str);
    if is_container(&auth) && session == Some(id.to_string().as_str()) {
        Ok(id)
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "42501", "only this session's container token may do this"))
    }
}

async fn show(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = caller(&platform, &headers)?;
    let id = parse_id(&id)?;
    let (view, owner) =
        platform.orchestrator.with(id, |s| (s.view.clone(), s.owner.clone())).ok_or_else(|| not_found(id))?;
    if !may_manage(&auth, &owner) {
        return Err(not_found(id));
    }
    Ok(Json(view).into_response())
}

async fn stop(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = caller(&platform, &headers)?;
    let id = parse_id(&id)?;
    let orchestrator = &platform.orchestrator;
    let (owner, pid, dir) =
        orchestrator.with(id, |s| (s.owner.clone(), s.view.agent_pid, s.dir.clone())).ok_or_else(|| not_found(id))?;
    if !may_manage(&auth, &owner) {
        return Err(not_found(id));
    }
    orchestrator.with(id, |s| {
        if !s.view.status.is_final() {
            s.view.status = SessionStatus::Stopped;
        }
    });
    if let Some(pid) = pid {
        stop_process(pid, &platform.sources).await;
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let view = orchestrator.view(id).ok_or_else(|| not_found(id))?;
    Ok(Json(view).into_response())
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop_process(pid: u32, sources: &Sources) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid this instance spawned; at worst the process is gone (ESRCH).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = sources.now() + STOP_GRACE;
    while sources.now() < deadline {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 || is_zombie(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Whether `pid` has exited and waits to be reaped (the watcher reaps it).
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

async fn report(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = agent_session(&platform, &headers, &id)?;
    let report: StatusReport = serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    if matches!(report.status, SessionStatus::Starting | SessionStatus::Stopped) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "22023", "an agent reports hydrating, running or failed"));
    }
    let orchestrator = &platform.orchestrator;
    orchestrator
        .with(id, |s| {
            for (phase, ms) in &report.timings_ms {
                s.view.timings_ms.insert(phase.clone(), *ms);
            }
        })
        .ok_or_else(|| not_found(id))?;
    orchestrator.set_status(id, report.status, report.reason);
    Ok(Json(orchestrator.view(id).ok_or_else(|| not_found(id))?).into_response())
}

async fn refresh_token(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = agent_session(&platform, &headers, &id)?;
    let (project, status) =
        platform.orchestrator.with(id, |s| (s.view.project_id, s.view.status)).ok_or_else(|| not_found(id))?;
    if status.is_final() {
        return Err(ApiError::new(StatusCode::CONFLICT, "PT409", format!("session {id} is {}", status.as_str())));
    }
    Ok(Json(container_token(&platform, id, project)).into_response())
}

async fn agent_snapshot(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = agent_session(&platform, &headers, &id)?;
    let manifest = platform.orchestrator.with(id, |s| s.manifest.clone()).ok_or_else(|| not_found(id))?;
    Ok(Json(AgentSnapshot { manifest }).into_response())
}
