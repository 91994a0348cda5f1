//! The session endpoints: `POST /orchestrator/v1/sessions` (a member starts one), `GET` and
//! `DELETE /orchestrator/v1/sessions/{id}` (the member who started it, or the service role), and
//! the agent's own `status`, `lag` (its heartbeat), `token` and `snapshot` calls with its container
//! token.

use super::registry::{Session, STOP_GRACE};
use super::start::{container_token, snapshot_for, start};
use crate::auth;
use crate::metrics::Stage;
use crate::platform::Platform;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fsync_protocol::jwt;
use fsync_protocol::limits::{
    MAX_LAG_SAMPLES, MAX_SMALL_BODY_BYTES, MAX_STATUS_PHASE_BYTES, MAX_STATUS_REASON_BYTES, MAX_STATUS_TIMINGS,
};
use fsync_protocol::snapshot::{AgentSnapshot, LagReport, SessionStatus, SessionView, StatusReport};
use fsync_store::error::{ApiError, StatusCode};
use fsync_store::RequestAuth;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

pub fn routes() -> Router<Arc<Platform>> {
    // Every body here is a small JSON object.
    let small = |route| crate::bounds::limited(route, MAX_SMALL_BODY_BYTES);
    Router::new()
        .route("/orchestrator/v1/sessions", small(post(create)))
        .route("/orchestrator/v1/sessions/{id}", get(show).delete(stop))
        .route("/orchestrator/v1/sessions/{id}/status", small(post(report)))
        .route("/orchestrator/v1/sessions/{id}/lag", small(post(lag)))
        .route("/orchestrator/v1/sessions/{id}/token", small(post(refresh_token)))
        .route("/orchestrator/v1/sessions/{id}/snapshot", get(agent_snapshot))
}

fn caller(platform: &Platform, headers: &HeaderMap) -> Result<RequestAuth, ApiError> {
    auth::authenticate(headers, &platform.secret, platform.sources.wall_s())
}

fn is_container(auth: &RequestAuth) -> bool {
    jwt::is_container(&auth.claims)
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
    let request: Value = json_body(&body)?;
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
    let hydration = orchestrator.config.snapshot_hydration;
    let view = SessionView::starting(id, project, project_dir.display().to_string(), hydration);
    let (exited_tx, exited) = watch::channel(false);
    let session = Session::new(view.clone(), user, dir, platform.sources.now(), exited);
    orchestrator.insert(id, session).await?;
    let span = tracing::info_span!("session", session_id = %id, project_id = %view.project_id);
    tokio::spawn(start(platform.clone(), id, exited_tx).instrument(span));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Who may see or stop a session: the member who started it, or the service role.
fn may_manage(auth: &RequestAuth, owner: &str) -> bool {
    auth.role == "service_role"
        || (!is_container(auth) && auth.claims.get("sub").and_then(Value::as_str) == Some(owner))
}

/// The session of an agent's own call: the caller must hold that session's container token.
fn agent_session(platform: &Platform, headers: &HeaderMap, id: &str) -> Result<Uuid, ApiError> {
    let auth = caller(platform, headers)?;
    session_of(&auth.claims, id)
}

/// Session `id`, if `claims` are its container token's.
fn session_of(claims: &jwt::Claims, id: &str) -> Result<Uuid, ApiError> {
    let id = parse_id(id)?;
    if jwt::container_session(claims) == Some(id) {
        Ok(id)
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "42501", "only this session's container token may do this"))
    }
}

/// A session that ended can get nothing new.
fn ended(id: Uuid, status: SessionStatus) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "PT409", format!("session {id} is {}", status.as_str()))
}

async fn show(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = caller(&platform, &headers)?;
    let id = parse_id(&id)?;
    let (view, owner) = current(&platform, id).await?.ok_or_else(|| not_found(id))?;
    if !may_manage(&auth, &owner) {
        return Err(not_found(id));
    }
    Ok(Json(view).into_response())
}

/// Session `id` as it stands, and who started it: what this instance knows of a session it runs
/// (once the records' word is taken: a stop made elsewhere shows at once), or the record of
/// another instance's session.
async fn current(platform: &Platform, id: Uuid) -> Result<Option<(SessionView, String)>, ApiError> {
    let orchestrator = &platform.orchestrator;
    let live_here = orchestrator.with(id, |s| !s.view.status.is_final());
    match live_here {
        Some(true) => {
            orchestrator.stopped_elsewhere(id).await;
        }
        Some(false) => {}
        None => return Ok(orchestrator.stored(id).await?.map(|record| (record.view, record.started_by))),
    }
    Ok(orchestrator.with(id, |s| (s.view.clone(), s.owner.clone())))
}

async fn stop(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = caller(&platform, &headers)?;
    let id = parse_id(&id)?;
    let orchestrator = &platform.orchestrator;
    let local = orchestrator.with(id, |s| (s.owner.clone(), s.control.clone(), s.exited.clone(), s.dir.clone()));
    let Some((owner, control, mut exited, dir)) = local else {
        // Another instance's session: stopped in its record, which tells that instance at once.
        let record = orchestrator.stored(id).await?.ok_or_else(|| not_found(id))?;
        if !may_manage(&auth, &record.started_by) {
            return Err(not_found(id));
        }
        return Ok(Json(orchestrator.stop_elsewhere(record).await?).into_response());
    };
    if !may_manage(&auth, &owner) {
        return Err(not_found(id));
    }
    orchestrator.update(id, SessionStatus::Stopped, None).await;
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
    let report: StatusReport = json_body(&body)?;
    check_report(&report)?;
    if matches!(report.status, SessionStatus::Starting | SessionStatus::Behind | SessionStatus::Stopped) {
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
    if report.status == SessionStatus::Running {
        orchestrator.follows(id, SessionStatus::Running, report.reason).await;
        orchestrator.note_report(id, true).await;
    } else {
        orchestrator.update(id, report.status, report.reason).await;
    }
    Ok(Json(orchestrator.view(id).ok_or_else(|| not_found(id))?).into_response())
}

/// A request body as the JSON `T` it must be.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_body(e.to_string()))
}

/// An agent's report refused as invalid input.
fn refuse<T>(message: String) -> Result<T, ApiError> {
    Err(ApiError::new(StatusCode::BAD_REQUEST, "22023", message))
}

/// Whether every value is a duration an agent may report: finite, non-negative milliseconds.
fn all_durations<'a>(ms: impl IntoIterator<Item = &'a f64>) -> bool {
    ms.into_iter().all(|ms| ms.is_finite() && *ms >= 0.0)
}

/// What an agent may report is bounded: the session view holds it for every reader.
fn check_report(report: &StatusReport) -> Result<(), ApiError> {
    if report.timings_ms.len() > MAX_STATUS_TIMINGS {
        return refuse(format!("at most {MAX_STATUS_TIMINGS} timings, not {}", report.timings_ms.len()));
    }
    if let Some(name) = report.timings_ms.keys().find(|name| name.is_empty() || name.len() > MAX_STATUS_PHASE_BYTES) {
        return refuse(format!("a phase name has 1 to {MAX_STATUS_PHASE_BYTES} bytes, not {}", name.len()));
    }
    if !all_durations(report.timings_ms.values()) {
        return refuse("timings are finite, non-negative milliseconds".to_owned());
    }
    if report.reason.as_ref().is_some_and(|reason| reason.len() > MAX_STATUS_REASON_BYTES) {
        return refuse(format!("a reason has at most {MAX_STATUS_REASON_BYTES} bytes"));
    }
    Ok(())
}

/// An agent's commit → applied lags, into the instance's metrics.
async fn lag(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = agent_session(&platform, &headers, &id)?;
    let report: LagReport = json_body(&body)?;
    if report.applied_lag_ms.len() > MAX_LAG_SAMPLES {
        return refuse(format!("at most {MAX_LAG_SAMPLES} samples, not {}", report.applied_lag_ms.len()));
    }
    if !all_durations(&report.applied_lag_ms) {
        return refuse("lags are finite, non-negative milliseconds".to_owned());
    }
    let status = platform.orchestrator.with(id, |s| s.view.status).ok_or_else(|| not_found(id))?;
    if status.is_final() {
        return Err(ended(id, status));
    }
    for ms in &report.applied_lag_ms {
        platform.metrics.event_lag(Stage::Applied, ms / 1000.0);
    }
    platform.orchestrator.note_report(id, report.following.unwrap_or(true)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new container token for a live session. The caller's container token may have expired (a
/// preview cut off for longer than its token's life must not be stranded): its signature, its
/// session and the session's record decide, so it works exactly while the session lives, on any
/// instance, and not after a stop made anywhere.
async fn refresh_token(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = auth::session_credential(&headers, &platform.secret)?;
    let id = session_of(&claims, &id)?;
    let record = platform.orchestrator.stored(id).await?.ok_or_else(|| not_found(id))?;
    let project = record.view.project_id;
    if claims.get("project_id").and_then(Value::as_str) != Some(project.to_string().as_str()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "42501", "the token is not for this session's project"));
    }
    if !record.is_live() {
        return Err(ended(id, record.view.status));
    }
    Ok(Json(container_token(&platform, id, project)).into_response())
}

async fn agent_snapshot(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = agent_session(&platform, &headers, &id)?;
    let orchestrator = &platform.orchestrator;
    if let Some((view, _)) = current(&platform, id).await?.filter(|(view, _)| view.status.is_final()) {
        return Err(ended(id, view.status));
    }
    let (project, manifest, first) = orchestrator
        .with(id, |s| {
            s.hydrations += 1;
            (s.view.project_id, s.manifest.clone(), s.hydrations == 1)
        })
        .ok_or_else(|| not_found(id))?;
    if first || manifest.is_none() {
        return Ok(Json(AgentSnapshot { manifest, url: None }).into_response());
    }
    // Its container restarted: the project as it is now, not as it was when the session began.
    let url = snapshot_for(&platform, id, project).await?;
    let manifest = orchestrator.with(id, |s| s.manifest.clone()).ok_or_else(|| not_found(id))?;
    Ok(Json(AgentSnapshot { manifest, url: Some(url) }).into_response())
}
