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
//! Agents start through a [`Launcher`]: a child process ([`ProcessLauncher`], what `serve`
//! does) or an in-process task running the same agent code (`fsync_agent::launcher`). Sessions
//! live in the instance that started their agent. The registry holds at most
//! [`MAX_SESSIONS`]; a session that ended is forgotten [`FORGET_AFTER`] later.

mod process;

pub use process::ProcessLauncher;

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
use fsync_store::launch::{AgentControl, AgentLaunch, Launcher};
use fsync_store::{RequestAuth, Sources};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

/// How long `DELETE` waits for an agent to exit after asking it to stop before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most sessions one instance holds (live ones and recently ended ones).
pub const MAX_SESSIONS: usize = 4096;
/// How long an ended session stays visible.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// How the orchestrator starts agents.
#[derive(Clone)]
pub struct OrchestratorConfig {
    /// Where session directories are made (`FSYNC_SESSIONS_DIR`, default `./.fsync/sessions`).
    pub sessions_dir: PathBuf,
    /// What starts agents: by default a [`ProcessLauncher`] of `FSYNC_AGENT_BIN` (default
    /// `fsync-agent` beside the server's binary).
    pub launcher: Arc<dyn Launcher>,
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
            launcher: Arc::new(ProcessLauncher::new(
                non_empty("FSYNC_AGENT_BIN").map(PathBuf::from).unwrap_or_else(default_agent_bin),
            )),
            snapshot_hydration: non_empty("FSYNC_USE_SNAPSHOT_HYDRATION").is_some_and(|v| flag_on(&v)),
            agent_exec: non_empty("FSYNC_AGENT_EXEC"),
            token_ttl_s: CONTAINER_TOKEN_MAX_TTL_S,
        }
    }
}

impl std::fmt::Debug for OrchestratorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorConfig")
            .field("sessions_dir", &self.sessions_dir)
            .field("launcher", &self.launcher.describe())
            .field("snapshot_hydration", &self.snapshot_hydration)
            .field("agent_exec", &self.agent_exec)
            .field("token_ttl_s", &self.token_ttl_s)
            .finish()
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
    /// When it became final (it is forgotten [`FORGET_AFTER`] later).
    ended: Option<Instant>,
    dir: PathBuf,
    /// Stops its agent, once there is one.
    control: Option<Arc<dyn AgentControl>>,
    /// Becomes true when its agent has ended.
    exited: watch::Receiver<bool>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, id: Uuid, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.lock().get_mut(&id).map(f)
    }

    /// Adds a session, after forgetting those that ended long enough ago; refuses when the
    /// registry is full.
    fn insert(&self, id: Uuid, session: Session) -> Result<(), ApiError> {
        let now = self.sources.now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.ended.is_none_or(|ended| now.saturating_duration_since(ended) < FORGET_AFTER));
        if sessions.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PT503",
                format!("this instance holds {MAX_SESSIONS} sessions; stop one or try again later"),
            ));
        }
        sessions.insert(id, session);
        Ok(())
    }

    /// Asks every live agent to stop (the server is stopping).
    pub fn stop_all(&self) {
        for session in self.lock().values() {
            if let Some(control) = &session.control {
                control.terminate();
            }
        }
    }

    /// Live sessions (not yet running, hydrating or running).
    pub fn live(&self) -> usize {
        self.lock().values().filter(|s| !s.view.status.is_final()).count()
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
            if status.is_final() {
                s.ended = Some(self.sources.now());
            }
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
    if !platform.data.is_member(&auth, project).await? {
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
    let (exited_tx, exited) = watch::channel(false);
    let session = Session {
        view: view.clone(),
        owner: user,
        manifest: None,
        created: platform.sources.now(),
        ended: None,
        dir,
        control: None,
        exited,
    };
    orchestrator.insert(id, session)?;
    tokio::spawn(start(platform.clone(), id, exited_tx));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Starts a session: snapshot, token, agent; then watches the agent.
async fn start(platform: Arc<Platform>, id: Uuid, exited: watch::Sender<bool>) {
    if let Err(reason) = launch(&platform, id, exited).await {
        tracing::warn!(session = %id, %reason, "session failed to start");
        platform.orchestrator.set_status(id, SessionStatus::Failed, Some(reason));
    }
}

async fn launch(platform: &Arc<Platform>, id: Uuid, exited: watch::Sender<bool>) -> Result<(), String> {
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
    let stopped_already = orchestrator.with(id, |s| s.view.status.is_final()).unwrap_or(true);
    if stopped_already {
        return Ok(());
    }
    let agent = AgentLaunch {
        project_id: project,
        session_id: id,
        snapshot_url,
        realtime_token: token.access_token,
        api_url: platform.public_url().to_owned(),
        project_dir,
        session_dir: dir,
        exec: config.agent_exec.clone(),
    };
    let launched = config.launcher.launch(agent).await.map_err(|e| format!("start the agent: {e}"))?;
    orchestrator.timing(id, "spawn", started);
    let control: Arc<dyn AgentControl> = Arc::from(launched.control);
    orchestrator.with(id, |s| {
        s.view.agent_pid = launched.pid;
        s.control = Some(control);
    });
    tokio::spawn(watch_agent(platform.clone(), id, launched.exit, exited));
    Ok(())
}

/// Waits for the agent to end; one that ends while its session is live fails the session.
async fn watch_agent(
    platform: Arc<Platform>,
    id: Uuid,
    exit: fsync_store::platform::BoxFuture<'static, fsync_store::launch::AgentExit>,
    exited: watch::Sender<bool>,
) {
    let exit = exit.await;
    let _ = exited.send(true);
    let orchestrator = &platform.orchestrator;
    let final_already = orchestrator.with(id, |s| s.view.status.is_final()).unwrap_or(true);
    if final_already {
        return;
    }
    let how = format!("the agent exited ({})", exit.how);
    let reason = match exit.last_words {
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
    let (owner, control, mut exited, dir) = orchestrator
        .with(id, |s| (s.owner.clone(), s.control.clone(), s.exited.clone(), s.dir.clone()))
        .ok_or_else(|| not_found(id))?;
    if !may_manage(&auth, &owner) {
        return Err(not_found(id));
    }
    orchestrator.set_status(id, SessionStatus::Stopped, None);
    if let Some(control) = control {
        control.terminate();
        let ended = tokio::time::timeout(STOP_GRACE, exited.wait_for(|ended| *ended)).await;
        if ended.is_err() {
            control.kill();
        }
    }
    let _ = platform.sources.run_blocking(move || std::fs::remove_dir_all(dir)).await;
    let view = orchestrator.view(id).ok_or_else(|| not_found(id))?;
    Ok(Json(view).into_response())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(project: Uuid, created: Instant) -> Session {
        let view = SessionView {
            id: project,
            project_id: project,
            status: SessionStatus::Starting,
            reason: None,
            project_dir: String::new(),
            agent_pid: None,
            snapshot_id: None,
            timings_ms: BTreeMap::new(),
            snapshot_hydration: true,
        };
        let (_, exited) = watch::channel(false);
        let dir = PathBuf::new();
        Session { view, owner: String::new(), manifest: None, created, ended: None, dir, control: None, exited }
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_is_bounded_and_forgets_ended_sessions_after_a_while() {
        let config = OrchestratorConfig::from_lookup(|_| None, std::path::Path::new("/nowhere"));
        let sources = Sources::seeded(1, 1_700_000_000);
        let orchestrator = Orchestrator::new(config, sources.clone());
        let id = |n: usize| Uuid::from_u128(n as u128 + 1);
        for n in 0..MAX_SESSIONS {
            orchestrator.insert(id(n), session(id(n), sources.now())).unwrap();
        }
        let full = orchestrator.insert(id(MAX_SESSIONS), session(id(MAX_SESSIONS), sources.now())).unwrap_err();
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);

        orchestrator.set_status(id(0), SessionStatus::Failed, Some("gone".into()));
        tokio::time::advance(FORGET_AFTER / 2).await;
        assert!(orchestrator.insert(id(MAX_SESSIONS), session(id(MAX_SESSIONS), sources.now())).is_err());
        assert_eq!(orchestrator.view(id(0)).map(|v| v.status), Some(SessionStatus::Failed), "still visible");

        tokio::time::advance(FORGET_AFTER / 2).await;
        orchestrator.insert(id(MAX_SESSIONS), session(id(MAX_SESSIONS), sources.now())).unwrap();
        assert_eq!(orchestrator.view(id(0)), None, "forgotten");
        assert_eq!(orchestrator.live(), MAX_SESSIONS, "the live ones stay");
    }
}
