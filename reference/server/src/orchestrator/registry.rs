//! The sessions of this instance: their views, their agents' controls, a bound on how many it
//! holds, and forgetting the ended ones after a while.

use crate::metrics::{Metrics, Surface};
use fsync_protocol::snapshot::{Manifest, SessionStatus, SessionView};
use fsync_store::error::{ApiError, StatusCode};
use fsync_store::launch::{AgentControl, Launcher};
use fsync_store::Sources;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

/// How long `DELETE` waits for an agent to exit after asking it to stop before killing it.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);
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
    /// Live sessions one member may run at once (a load test starting a fleet for one user
    /// raises it).
    pub max_sessions_per_user: usize,
}

/// The default of [`OrchestratorConfig::max_sessions_per_user`].
pub const MAX_SESSIONS_PER_USER: usize = 10;

impl std::fmt::Debug for OrchestratorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorConfig")
            .field("sessions_dir", &self.sessions_dir)
            .field("launcher", &self.launcher.describe())
            .field("snapshot_hydration", &self.snapshot_hydration)
            .field("agent_exec", &self.agent_exec)
            .field("token_ttl_s", &self.token_ttl_s)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish()
    }
}

pub(super) struct Session {
    pub(super) view: SessionView,
    /// The user who started it.
    pub(super) owner: String,
    pub(super) manifest: Option<Manifest>,
    /// How many times its agent asked for the snapshot (more than once: it restarted).
    pub(super) hydrations: u32,
    pub(super) created: Instant,
    /// When it became final (it is forgotten [`FORGET_AFTER`] later).
    pub(super) ended: Option<Instant>,
    pub(super) dir: PathBuf,
    /// Stops its agent, once there is one.
    pub(super) control: Option<Arc<dyn AgentControl>>,
    /// Becomes true when its agent has ended.
    pub(super) exited: watch::Receiver<bool>,
}

/// A running agent: how to stop it, and whether it has ended.
type Running = (Arc<dyn AgentControl>, watch::Receiver<bool>);

/// The sessions of this instance.
pub struct Orchestrator {
    pub config: OrchestratorConfig,
    sessions: Mutex<BTreeMap<Uuid, Session>>,
    sources: Sources,
    pub(super) metrics: Arc<Metrics>,
}

impl Orchestrator {
    pub fn new(config: OrchestratorConfig, sources: Sources, metrics: Arc<Metrics>) -> Orchestrator {
        Orchestrator { config, sessions: Mutex::new(BTreeMap::new()), sources, metrics }
    }

    fn ms_since(&self, since: Instant) -> f64 {
        self.sources.now().saturating_duration_since(since).as_secs_f64() * 1000.0
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn with<T>(&self, id: Uuid, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.lock().get_mut(&id).map(f)
    }

    /// Adds a session, after forgetting those that ended long enough ago; refuses when the
    /// registry is full.
    pub(super) fn insert(&self, id: Uuid, session: Session) -> Result<(), ApiError> {
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
        let max = self.config.max_sessions_per_user;
        let live = sessions.values().filter(|s| s.ended.is_none() && s.owner == session.owner).count();
        if live >= max {
            self.metrics.rate_limited(Surface::Sessions);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "PT429",
                format!("a member runs at most {max} sessions at once; stop one to start another"),
            ));
        }
        sessions.insert(id, session);
        Ok(())
    }

    /// Stops every live session (the server is stopping): asks each agent to stop, waits up to
    /// [`STOP_GRACE`] for them, and kills those still running.
    pub async fn stop_all(&self) {
        let (ids, agents): (Vec<Uuid>, Vec<Running>) = {
            let sessions = self.lock();
            let agents = sessions.values().filter_map(|s| s.control.clone().map(|c| (c, s.exited.clone()))).collect();
            (sessions.keys().copied().collect(), agents)
        };
        for id in ids {
            self.set_status(id, SessionStatus::Stopped, None);
        }
        for (control, _) in &agents {
            control.terminate();
        }
        let deadline = self.sources.now() + STOP_GRACE;
        for (control, mut exited) in agents {
            if tokio::time::timeout_at(deadline, exited.wait_for(|ended| *ended)).await.is_err() {
                control.kill();
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
    pub(super) fn set_status(&self, id: Uuid, status: SessionStatus, reason: Option<String>) {
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
                self.metrics.session_started(&s.view.timings_ms);
            }
        });
    }

    pub(super) fn timing(&self, id: Uuid, phase: &str, since: Instant) {
        let ms = self.ms_since(since);
        self.with(id, |s| {
            s.view.timings_ms.insert(phase.to_owned(), ms);
        });
    }
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
        Session {
            // Each its own member's: the per-member cap is tested on its own, below.
            owner: project.to_string(),
            view,
            manifest: None,
            hydrations: 0,
            created,
            ended: None,
            dir,
            control: None,
            exited,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_runs_at_most_their_cap_of_live_sessions() {
        let mut config = crate::config::Settings::from_lookup(|_| None).orchestrator();
        config.max_sessions_per_user = 2;
        let sources = Sources::seeded(1, 1_700_000_000);
        let orchestrator = Orchestrator::new(config, sources.clone(), Arc::default());
        let id = |n: u128| Uuid::from_u128(n + 1);
        let of = |n: u128, owner: &str| Session { owner: owner.to_owned(), ..session(id(n), sources.now()) };
        orchestrator.insert(id(0), of(0, "ann")).unwrap();
        orchestrator.insert(id(1), of(1, "ann")).unwrap();
        let refused = orchestrator.insert(id(2), of(2, "ann")).unwrap_err();
        assert_eq!((refused.status, refused.body.code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "PT429"));
        orchestrator.insert(id(3), of(3, "bob")).unwrap();
        orchestrator.set_status(id(0), SessionStatus::Stopped, None);
        orchestrator.insert(id(2), of(2, "ann")).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_is_bounded_and_forgets_ended_sessions_after_a_while() {
        let config = crate::config::Settings::from_lookup(|_| None).orchestrator();
        let sources = Sources::seeded(1, 1_700_000_000);
        let orchestrator = Orchestrator::new(config, sources.clone(), Arc::default());
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
