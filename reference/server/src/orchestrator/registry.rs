//! The sessions of this instance: their views, their agents' controls, a bound on how many it
//! holds, and forgetting the ended ones after a while. What it knows of each session it writes
//! through to the session records (`PlatformStore::save_session`), where every instance can read
//! it; a member's live sessions are counted there, across instances.

use crate::metrics::{Metrics, Surface};
use fsync_protocol::snapshot::{Manifest, SessionStatus, SessionView};
use fsync_store::error::{ApiError, StatusCode};
use fsync_store::launch::{AgentControl, Launcher};
use fsync_store::platform::PlatformStore;
use fsync_store::sessions::{SessionRecord, PROJECT_DELETED};
use fsync_store::Sources;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

/// How long `DELETE` waits for an agent to exit after asking it to stop before killing it.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most sessions one instance holds (live ones and recently ended ones).
pub const MAX_SESSIONS: usize = 4096;
/// How long an ended session stays visible.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How long an ended session's record is kept: longer than a container token lives.
pub const KEEP_RECORDS_FOR: Duration =
    Duration::from_secs(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S + FORGET_AFTER.as_secs());
/// The reason a restarted instance gives the sessions it started before.
pub const RESTARTED: &str = "the server instance that ran this session restarted and no longer watches its agent";

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
    /// Live sessions one member may run at once, on every instance together (a load test
    /// starting a fleet for one user raises it).
    pub max_sessions_per_user: usize,
    /// Which instance this is, in the session records (`FSYNC_INSTANCE_ID`; by default the host
    /// name and the sessions directory). An instance started again under the same name fails the
    /// live sessions it started before: it no longer watches their agents.
    pub instance: String,
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
            .field("instance", &self.instance)
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
    /// When it became final (it is forgotten [`FORGET_AFTER`] later), and in wall seconds.
    pub(super) ended: Option<(Instant, u64)>,
    pub(super) dir: PathBuf,
    /// Stops its agent, once there is one.
    pub(super) control: Option<Arc<dyn AgentControl>>,
    /// Becomes true when its agent has ended.
    pub(super) exited: watch::Receiver<bool>,
    /// Wakes its watcher when the records say it was stopped elsewhere.
    pub(super) stop: Arc<Notify>,
    /// When its agent last reported (its heartbeat), and whether it then followed the project.
    pub(super) reported: Option<(Instant, bool)>,
}

impl Session {
    /// A session just asked for: no manifest, agent or report yet.
    pub(super) fn new(
        view: SessionView,
        owner: String,
        dir: PathBuf,
        created: Instant,
        exited: watch::Receiver<bool>,
    ) -> Session {
        Session {
            view,
            owner,
            manifest: None,
            hydrations: 0,
            created,
            ended: None,
            dir,
            control: None,
            exited,
            stop: Arc::default(),
            reported: None,
        }
    }
}

/// A running agent: how to stop it, and whether it has ended.
type Running = (Arc<dyn AgentControl>, watch::Receiver<bool>);

/// The sessions of this instance.
pub struct Orchestrator {
    pub config: OrchestratorConfig,
    sessions: Mutex<BTreeMap<Uuid, Session>>,
    pub(super) sources: Sources,
    pub(super) metrics: Arc<Metrics>,
    /// Where the session records are.
    data: Arc<dyn PlatformStore>,
}

impl Orchestrator {
    pub fn new(
        config: OrchestratorConfig,
        sources: Sources,
        metrics: Arc<Metrics>,
        data: Arc<dyn PlatformStore>,
    ) -> Orchestrator {
        Orchestrator { config, sessions: Mutex::new(BTreeMap::new()), sources, metrics, data }
    }

    /// Fails the live sessions this instance started before it (re)started: their agents are
    /// no longer watched, and what is left of them (a container) is removed. Which.
    pub async fn recover(&self) -> Result<Vec<Uuid>, ApiError> {
        let failed = self.data.fail_sessions_of(&self.config.instance, RESTARTED, self.sources.wall_s()).await?;
        if !failed.is_empty() {
            tracing::warn!(failed = failed.len(), instance = %self.config.instance, "failed the sessions of this instance's last run");
        }
        // They failed, though the run that started them can no longer count it.
        for _ in &failed {
            self.metrics.session_ended(SessionStatus::Failed.as_str());
        }
        if let Err(e) = self.config.launcher.remove_leftovers(&failed).await {
            tracing::warn!(error = %e, "could not remove what is left of this instance's last run's agents");
        }
        Ok(failed)
    }

    /// The record of a session this instance runs.
    fn record(&self, id: Uuid) -> Option<SessionRecord> {
        self.with(id, |s| self.record_of(s))
    }

    fn record_of(&self, session: &Session) -> SessionRecord {
        SessionRecord {
            view: session.view.clone(),
            started_by: session.owner.clone(),
            instance: self.config.instance.clone(),
            ended_at_s: session.ended.map(|(_, wall)| wall),
        }
    }

    /// Writes what this instance knows of session `id` through to its record. A failure is
    /// logged: the session goes on, and the next write brings the record up to date.
    pub(super) async fn persist(&self, id: Uuid) {
        let Some(record) = self.record(id) else { return };
        if let Err(e) = self.data.save_session(&record).await {
            tracing::warn!(session_id = %id, error = %e, "could not save the session's record");
        }
    }

    /// Moves a live session to `status` and saves it.
    pub(super) async fn update(&self, id: Uuid, status: SessionStatus, reason: Option<String>) {
        self.set_status(id, status, reason);
        self.persist(id).await;
    }

    /// Another instance's session (or one this instance forgot), from the records.
    pub(super) async fn stored(&self, id: Uuid) -> Result<Option<SessionRecord>, ApiError> {
        self.data.session(id).await
    }

    /// Marks a session another instance runs as stopped in the records; the records notify that
    /// instance, which stops its agent at once (`lifecycle.rs`).
    pub(super) async fn stop_elsewhere(&self, mut record: SessionRecord) -> Result<SessionView, ApiError> {
        if record.is_live() {
            record.view.status = SessionStatus::Stopped;
            record.ended_at_s = Some(self.sources.wall_s());
            self.data.save_session(&record).await?;
        }
        Ok(record.view)
    }

    /// Whether session `id`, live here, was stopped or failed through another instance (or by
    /// the records' own rules, or its record went with its project); if so it is final here too.
    pub(super) async fn stopped_elsewhere(&self, id: Uuid) -> bool {
        let record = match self.data.session(id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.set_status(id, SessionStatus::Stopped, Some(PROJECT_DELETED.to_owned()));
                return true;
            }
            Err(e) => {
                tracing::warn!(session_id = %id, error = %e, "could not read the session's record");
                return false;
            }
        };
        if record.is_live() {
            return false;
        }
        self.set_status(id, record.view.status, record.view.reason);
        // The record gets when it ended, by this instance's clock.
        self.persist(id).await;
        true
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

    /// Adds a session, after forgetting those that ended long enough ago (here and in the
    /// records); refuses when the registry is full, or when its starter already runs the most
    /// live sessions a member may (on any instance). Its record is written.
    pub(super) async fn insert(&self, id: Uuid, session: Session) -> Result<(), ApiError> {
        let now = self.sources.now();
        let record = self.record_of(&session);
        {
            let mut sessions = self.lock();
            sessions
                .retain(|_, s| s.ended.is_none_or(|(ended, _)| now.saturating_duration_since(ended) < FORGET_AFTER));
            if sessions.len() >= MAX_SESSIONS {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PT503",
                    format!("this instance holds {MAX_SESSIONS} sessions; stop one or try again later"),
                ));
            }
        }
        // Records outlive every container token of their session: with no record, a stopped
        // session's token would work again until its `exp`.
        let forget_before = self.sources.wall_s().saturating_sub(KEEP_RECORDS_FOR.as_secs());
        self.data.prune_sessions(forget_before).await?;
        let max = self.config.max_sessions_per_user;
        if !self.data.insert_session(&record, max).await? {
            self.metrics.rate_limited(Surface::Sessions);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "PT429",
                format!("a member runs at most {max} sessions at once; stop one to start another"),
            ));
        }
        self.metrics.session_status(None, session.view.status.as_str());
        self.lock().insert(id, session);
        Ok(())
    }

    /// Stops every live session (the server is stopping): asks each agent to stop, waits up to
    /// [`STOP_GRACE`] for them, and kills those still running.
    pub async fn stop_all(&self) {
        let (ids, agents): (Vec<Uuid>, Vec<Running>) = {
            let sessions = self.lock();
            let agents = sessions.values().filter_map(|s| s.control.clone().map(|c| (c, s.exited.clone()))).collect();
            // Ended ones keep their records as they are.
            (sessions.iter().filter(|(_, s)| !s.view.status.is_final()).map(|(id, _)| *id).collect(), agents)
        };
        for id in ids {
            self.update(id, SessionStatus::Stopped, None).await;
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

    /// Moves a live session to `status` (a final session stays as it is). The first time it
    /// runs, its start is timed.
    pub(super) fn set_status(&self, id: Uuid, status: SessionStatus, reason: Option<String>) {
        self.with(id, |s| {
            if s.view.status.is_final() {
                return;
            }
            if s.view.status != status {
                self.metrics.session_status(Some(s.view.status.as_str()), status.as_str());
            }
            s.view.status = status;
            if status.is_final() {
                s.ended = Some((self.sources.now(), self.sources.wall_s()));
                self.metrics.session_ended(status.as_str());
            }
            if reason.is_some() {
                s.view.reason = reason;
            }
            if status == SessionStatus::Running && !s.view.timings_ms.contains_key("total") {
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
    use crate::pg::PgStore;

    /// A migrated database with one project; its id.
    async fn database() -> (fsync_testkit::TestDb, Arc<dyn PlatformStore>, Uuid) {
        let db = fsync_testkit::TestDb::migrated().await.expect("a test database");
        let client = db.connect().await.unwrap();
        let owner = Uuid::from_u128(0xA);
        client.execute("INSERT INTO public.user_profiles (id) VALUES ($1)", &[&owner]).await.unwrap();
        let project: Uuid = client
            .query_one("INSERT INTO public.projects (name, owner_id) VALUES ('p', $1) RETURNING id", &[&owner])
            .await
            .unwrap()
            .get(0);
        let store = PgStore::connect(&db.url).await.unwrap();
        (db, Arc::new(store), project)
    }

    fn orchestrator(data: &Arc<dyn PlatformStore>, instance: &str, sources: &Sources) -> Orchestrator {
        let mut config = crate::config::Settings::from_lookup(|_| None).orchestrator();
        config.max_sessions_per_user = 2;
        config.instance = instance.to_owned();
        Orchestrator::new(config, sources.clone(), Arc::default(), data.clone())
    }

    fn session(id: Uuid, project: Uuid, owner: &str, created: Instant) -> Session {
        let view = SessionView::starting(id, project, String::new(), true);
        let (_, exited) = watch::channel(false);
        Session::new(view, owner.to_owned(), PathBuf::new(), created, exited)
    }

    #[tokio::test]
    async fn a_member_runs_at_most_their_cap_of_live_sessions_across_instances() {
        let (_db, data, project) = database().await;
        let sources = Sources::seeded(1, 1_700_000_000);
        let (one, two) = (orchestrator(&data, "one", &sources), orchestrator(&data, "two", &sources));
        let id = |n: u128| Uuid::from_u128(n + 1);
        let of = |n: u128, owner: &str| session(id(n), project, owner, sources.now());
        one.insert(id(0), of(0, "ann")).await.unwrap();
        two.insert(id(1), of(1, "ann")).await.unwrap();
        let refused = one.insert(id(2), of(2, "ann")).await.unwrap_err();
        assert_eq!((refused.status, refused.body.code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "PT429"));
        two.insert(id(3), of(3, "bob")).await.unwrap();
        // A session stopped on its instance makes room on the other.
        one.update(id(0), SessionStatus::Stopped, None).await;
        two.insert(id(2), of(2, "ann")).await.unwrap();
        // Either instance reads any session's record.
        let record = one.stored(id(1)).await.unwrap().expect("instance two's session");
        assert_eq!((record.instance.as_str(), record.started_by.as_str()), ("two", "ann"));
    }

    #[tokio::test]
    async fn a_restarted_instance_fails_the_sessions_it_no_longer_watches() {
        let (_db, data, project) = database().await;
        let sources = Sources::seeded(1, 1_700_000_000);
        let before = orchestrator(&data, "one", &sources);
        let other = orchestrator(&data, "two", &sources);
        let id = |n: u128| Uuid::from_u128(n + 1);
        before.insert(id(0), session(id(0), project, "ann", sources.now())).await.unwrap();
        before.update(id(0), SessionStatus::Running, None).await;
        before.insert(id(1), session(id(1), project, "bob", sources.now())).await.unwrap();
        before.update(id(1), SessionStatus::Stopped, None).await;
        other.insert(id(2), session(id(2), project, "cat", sources.now())).await.unwrap();
        drop(before);

        let after = orchestrator(&data, "one", &sources);
        assert_eq!(after.recover().await.unwrap(), vec![id(0)], "only its own live session");
        let failed = after.stored(id(0)).await.unwrap().unwrap();
        assert_eq!(failed.view.status, SessionStatus::Failed);
        assert_eq!(failed.view.reason.as_deref(), Some(RESTARTED));
        assert!(failed.ended_at_s.is_some());
        assert_eq!(after.stored(id(1)).await.unwrap().unwrap().view.status, SessionStatus::Stopped, "ended stays");
        assert_eq!(after.stored(id(2)).await.unwrap().unwrap().view.status, SessionStatus::Starting, "others' stay");
    }

    #[tokio::test]
    async fn a_session_stopped_through_another_instance_is_final_on_its_own() {
        let (_db, data, project) = database().await;
        let sources = Sources::seeded(1, 1_700_000_000);
        let (runs, other) = (orchestrator(&data, "one", &sources), orchestrator(&data, "two", &sources));
        let id = Uuid::from_u128(7);
        runs.insert(id, session(id, project, "ann", sources.now())).await.unwrap();
        runs.update(id, SessionStatus::Running, None).await;
        assert!(!runs.stopped_elsewhere(id).await, "live in the records too");
        let record = other.stored(id).await.unwrap().unwrap();
        assert_eq!(other.stop_elsewhere(record).await.unwrap().status, SessionStatus::Stopped);
        // Its own instance, not knowing yet, writes its live view: the stop stays.
        runs.with(id, |s| s.view.timings_ms.insert("total".into(), 1.0));
        runs.persist(id).await;
        assert_eq!(other.stored(id).await.unwrap().unwrap().view.status, SessionStatus::Stopped, "not overwritten");
        assert!(runs.stopped_elsewhere(id).await);
        assert_eq!(runs.view(id).map(|v| v.status), Some(SessionStatus::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn ended_sessions_are_forgotten_after_a_while_here_and_in_the_records() {
        let (_db, data, project) = database().await;
        let sources = Sources::seeded(1, 1_700_000_000);
        let orchestrator = orchestrator(&data, "one", &sources);
        let id = |n: u128| Uuid::from_u128(n + 1);
        orchestrator.insert(id(0), session(id(0), project, "ann", sources.now())).await.unwrap();
        orchestrator.update(id(0), SessionStatus::Failed, Some("gone".into())).await;
        tokio::time::advance(FORGET_AFTER / 2).await;
        orchestrator.insert(id(1), session(id(1), project, "bob", sources.now())).await.unwrap();
        assert_eq!(orchestrator.view(id(0)).map(|v| v.status), Some(SessionStatus::Failed), "still visible");
        assert!(orchestrator.stored(id(0)).await.unwrap().is_some());

        tokio::time::advance(FORGET_AFTER / 2 + Duration::from_secs(1)).await;
        orchestrator.insert(id(2), session(id(2), project, "cat", sources.now())).await.unwrap();
        assert_eq!(orchestrator.view(id(0)), None, "forgotten here");
        assert!(orchestrator.stored(id(0)).await.unwrap().is_some(), "kept while a token of it could live");
        tokio::time::advance(KEEP_RECORDS_FOR - FORGET_AFTER).await;
        orchestrator.insert(id(3), session(id(3), project, "dan", sources.now())).await.unwrap();
        assert_eq!(orchestrator.stored(id(0)).await.unwrap(), None, "then pruned from the records");
        assert_eq!(orchestrator.live(), 3, "the live ones stay");
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_is_bounded_until_ended_sessions_are_forgotten() {
        let (_db, data, project) = database().await;
        let sources = Sources::seeded(1, 1_700_000_000);
        let orchestrator = orchestrator(&data, "one", &sources);
        let id = |n: usize| Uuid::from_u128(n as u128 + 1);
        {
            // Filled directly: the bound is this instance's own, before any record is written.
            let mut sessions = orchestrator.lock();
            for n in 0..MAX_SESSIONS {
                sessions.insert(id(n), session(id(n), project, &format!("member {n}"), sources.now()));
            }
        }
        let next = || session(id(MAX_SESSIONS), project, "ann", sources.now());
        let full = orchestrator.insert(id(MAX_SESSIONS), next()).await.unwrap_err();
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);

        orchestrator.set_status(id(0), SessionStatus::Failed, Some("gone".into()));
        tokio::time::advance(FORGET_AFTER / 2).await;
        assert!(orchestrator.insert(id(MAX_SESSIONS), next()).await.is_err(), "an ended one still counts");
        tokio::time::advance(FORGET_AFTER / 2).await;
        orchestrator.insert(id(MAX_SESSIONS), next()).await.unwrap();
        assert_eq!(orchestrator.view(id(0)), None, "forgotten");
        assert_eq!(orchestrator.live(), MAX_SESSIONS, "the live ones stay");
    }
}
