//! Starting a session in the background: build or reuse the snapshot, sign its URL, mint the
//! container token, start the agent through the launcher; then watch it, so an agent that ends
//! while its session is live fails the session with the reason.

use super::lifecycle::SILENCE_CHECK_EVERY;
use super::registry::STOP_GRACE;
use crate::platform::Platform;
use crate::snapshot;
use fsync_protocol::jwt;
use fsync_protocol::snapshot::{SessionStatus, TokenGrant, CONTAINER_TOKEN_MAX_TTL_S};
use fsync_store::error::ApiError;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch};
use fsync_store::platform::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

/// Starts a session: snapshot, token, agent; then watches the agent.
pub(super) async fn start(platform: Arc<Platform>, id: Uuid, exited: watch::Sender<bool>) {
    if let Err(reason) = launch(&platform, id, exited).await {
        tracing::warn!(%reason, "session failed to start");
        platform.orchestrator.update(id, SessionStatus::Failed, Some(reason)).await;
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
        snapshot_for(platform, id, project)
            .await
            .map_err(|e| format!("snapshot: {} {}", e.body.message, e.body.details.unwrap_or_default()))?
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
        api_url: platform.public_url(),
        project_dir,
        session_dir: dir,
        exec: config.agent_exec.clone(),
    };
    let launched = config.launcher.launch(agent).await.map_err(|e| format!("start the agent: {e}"))?;
    orchestrator.timing(id, "spawn", started);
    let control: Arc<dyn AgentControl> = Arc::from(launched.control);
    orchestrator.with(id, |s| {
        s.view.agent_pid = launched.pid;
        s.view.preview_url = launched.preview_url;
        s.control = Some(control);
    });
    orchestrator.persist(id).await;
    // Stopped while the agent was starting (a container takes a while): its watcher stops it.
    if orchestrator.with(id, |s| s.view.status == SessionStatus::Stopped).unwrap_or(false) {
        orchestrator.with(id, |s| s.stop.notify_one());
    }
    tokio::spawn(watch_agent(platform.clone(), id, launched.exit, exited).in_current_span());
    Ok(())
}

/// Builds the project's snapshot or reuses a current one, keeps its manifest in the session and
/// returns a signed URL for its zip.
pub(super) async fn snapshot_for(platform: &Platform, id: Uuid, project: Uuid) -> Result<String, ApiError> {
    let orchestrator = &platform.orchestrator;
    let started = platform.sources.now();
    let ttl_s = orchestrator.config.token_ttl_s;
    let (manifest, reused, url) = snapshot::build_and_sign(platform, project, ttl_s).await?;
    orchestrator.timing(id, if reused { "snapshot_reused" } else { "snapshot_built" }, started);
    orchestrator.timing(id, "snapshot", started);
    orchestrator.with(id, |s| {
        s.view.snapshot_id = Some(manifest.snapshot_id.clone());
        s.manifest = Some(manifest);
    });
    Ok(url)
}

/// Waits for the agent to end; one that ends while its session is live fails the session. When
/// the records say the session was stopped elsewhere ([`super::lifecycle`] wakes it), it stops
/// the agent; every [`SILENCE_CHECK_EVERY`] it looks whether the agent went silent.
async fn watch_agent(
    platform: Arc<Platform>,
    id: Uuid,
    mut exit: BoxFuture<'static, AgentExit>,
    exited: watch::Sender<bool>,
) {
    let orchestrator = &platform.orchestrator;
    let control = || orchestrator.with(id, |s| s.control.clone()).flatten();
    let stop = orchestrator.with(id, |s| s.stop.clone()).unwrap_or_default();
    let mut silence = tokio::time::interval(SILENCE_CHECK_EVERY);
    silence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the session was stopped elsewhere and its agent asked to stop: when to kill it,
    // until it is killed.
    let mut kill_at = None;
    let mut stopping = false;
    let exit = loop {
        // Biased: the same order on every run when several are ready at once (the simulator).
        tokio::select! {
            biased;
            ended = &mut exit => break ended,
            () = stop.notified(), if !stopping => {
                if orchestrator.with(id, |s| s.view.status == SessionStatus::Stopped).unwrap_or(true) {
                    tracing::info!("stopped (the records say so); stopping the agent");
                    control().inspect(|c| c.terminate());
                    kill_at = Some(platform.sources.now() + STOP_GRACE);
                    stopping = true;
                }
            }
            _ = silence.tick(), if !stopping => orchestrator.check_silence(id).await,
            () = tokio::time::sleep_until(kill_at.unwrap_or_else(|| platform.sources.now())), if kill_at.is_some() => {
                control().inspect(|c| c.kill());
                kill_at = None;
            }
        }
    };
    let _ = exited.send(true);
    if stopping || orchestrator.with(id, |s| s.view.status == SessionStatus::Stopped).unwrap_or(false) {
        // Stopped: its directory goes, as a stop made here removes it.
        if let Some(dir) = orchestrator.with(id, |s| s.dir.clone()) {
            let _ = platform.sources.run_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }
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
    orchestrator.update(id, SessionStatus::Failed, Some(reason)).await;
}

pub(super) fn container_token(platform: &Platform, id: Uuid, project: Uuid) -> TokenGrant {
    let now = platform.sources.wall_s();
    let ttl = platform.orchestrator.config.token_ttl_s.min(CONTAINER_TOKEN_MAX_TTL_S);
    let claims = jwt::container_claims(&id.to_string(), &project.to_string(), now, ttl);
    TokenGrant { access_token: jwt::sign(&platform.secret, &claims), expires_at: now + ttl }
}
