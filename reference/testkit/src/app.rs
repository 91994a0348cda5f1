//! The reference server on port 0 against a fresh database, with typed helpers.

use crate::db::TestDb;
use fsync_protocol::jwt::{self, Claims, Secret};
use fsync_reference::config::{anon_key, service_role_key, DEV_JWT_SECRET};
use fsync_reference::listener::ConnectionLimits;
use fsync_reference::orchestrator::{OrchestratorConfig, ProcessLauncher};
use fsync_reference::platform::Platform;
use fsync_reference::realtime::{hub::Hub, RealtimeConfig};
use fsync_reference::storage::Storage;
use fsync_reference::{PgStore, ServerBuilder};
use fsync_store::launch::Launcher;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

/// A running reference server and its database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, the API URL clients are given.
    pub url: String,
    pub secret: Secret,
    pub anon_key: String,
    pub service_key: String,
    pub store: PgStore,
    /// This instance's realtime fan-out.
    pub hub: Arc<Hub>,
    /// Storage, the snapshot function and sessions of this instance.
    pub platform: Arc<Platform>,
    /// Every surface of this instance, over TCP; clones share its connection pool.
    api: fsync_client::Api,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Holds this instance's storage and session directories.
    pub dir: tempfile::TempDir,
    // Last: the database is dropped after the server stops.
    pub db: Arc<TestDb>,
}

/// What a test server is started with. Every field has a default: a fresh migrated database,
/// Realtime's defaults, a fresh local storage and sessions directory, agents spawned as the
/// `fsync-agent` binary (which tests of other crates never start), snapshot hydration on.
#[derive(Clone, Default)]
pub struct AppOptions {
    /// An existing database (another instance on it, for multi-instance tests); `None`: a fresh one.
    pub db: Option<Arc<TestDb>>,
    pub realtime: RealtimeConfig,
    pub platform: PlatformOptions,
    pub connections: ConnectionLimits,
}

impl AppOptions {
    /// Another instance on `db`.
    pub fn on(db: Arc<TestDb>) -> AppOptions {
        AppOptions { db: Some(db), ..AppOptions::default() }
    }

    pub fn realtime(mut self, realtime: RealtimeConfig) -> AppOptions {
        self.realtime = realtime;
        self
    }

    pub fn connections(mut self, connections: ConnectionLimits) -> AppOptions {
        self.connections = connections;
        self
    }

    pub fn platform(mut self, platform: PlatformOptions) -> AppOptions {
        self.platform = platform;
        self
    }
}

/// Storage and orchestrator settings of a test server.
#[derive(Clone, Default)]
pub struct PlatformOptions {
    /// `None`: a fresh local directory for this server.
    pub storage_url: Option<String>,
    /// The agent binary sessions spawn (`None`: `fsync-agent`, which tests of other crates
    /// never start).
    pub agent_bin: Option<PathBuf>,
    /// `FSYNC_USE_SNAPSHOT_HYDRATION`.
    pub legacy_hydration: bool,
    /// `FSYNC_AGENT_EXEC`.
    pub agent_exec: Option<String>,
    /// Container token lifetime (`None`: 15 minutes).
    pub token_ttl_s: Option<u64>,
    /// `AWS_*` settings for an `s3://` storage URL.
    pub aws: Vec<(String, String)>,
    /// What starts agents (`None`: the `agent_bin` process); e.g. in-process agents.
    pub launcher: Option<Arc<dyn Launcher>>,
    /// Live sessions per member (`None`: the server's default).
    pub max_sessions_per_user: Option<usize>,
    /// The instance's name in the session records (`None`: its own sessions directory, so
    /// every test server is an instance of its own).
    pub instance: Option<String>,
}

/// Starts the server with every endpoint (RPC, reads, Realtime, Storage, functions, sessions)
/// on 127.0.0.1:0, as `options` say.
pub async fn spawn_app(options: AppOptions) -> TestApp {
    init_test_log();
    let AppOptions { db, realtime, platform: options, connections } = options;
    let db = match db {
        Some(db) => db,
        None => Arc::new(TestDb::migrated().await.expect("create a test database")),
    };
    let store = PgStore::connect(&db.url).await.expect("connect the store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let secret = Secret::new(DEV_JWT_SECRET);
    let dir = tempfile::tempdir().expect("a temporary directory for the server");
    let storage_url =
        options.storage_url.clone().unwrap_or_else(|| format!("file://{}", dir.path().join("storage").display()));
    let aws = options.aws.clone();
    let storage = Storage::open_with(&storage_url, |name| aws.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("open the storage");
    let orchestrator = OrchestratorConfig {
        sessions_dir: dir.path().join("sessions"),
        launcher: options.launcher.clone().unwrap_or_else(|| {
            let agent_bin = options.agent_bin.clone().unwrap_or_else(|| PathBuf::from("fsync-agent"));
            Arc::new(ProcessLauncher::new(agent_bin))
        }),
        snapshot_hydration: !options.legacy_hydration,
        agent_exec: options.agent_exec.clone(),
        token_ttl_s: options.token_ttl_s.unwrap_or(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S),
        max_sessions_per_user: options
            .max_sessions_per_user
            .unwrap_or(fsync_reference::orchestrator::MAX_SESSIONS_PER_USER),
        instance: options.instance.clone().unwrap_or_else(|| dir.path().join("sessions").display().to_string()),
    };
    let server = ServerBuilder::new(Arc::new(store.clone()))
        .secret(secret.clone())
        .realtime(realtime)
        .platform(Arc::new(store.clone()), storage, orchestrator)
        .start()
        .await
        .expect("start the server");
    let hub = server.state.hub.clone();
    let platform = server.platform.clone().expect("the platform is mounted");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_tcp_with(listener, connections, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    let anon_key = anon_key(&secret);
    let api = fsync_client::Api::new(&url, &anon_key, fsync_client::Transport::tcp());
    TestApp {
        addr,
        url,
        anon_key,
        service_key: service_role_key(&secret),
        secret,
        store,
        hub,
        platform,
        api,
        shutdown: Some(shutdown),
        serving: Some(serving),
        dir,
        db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TestApp {
    /// Stops the server and waits until it has stopped everything it ran (its feed, sockets and
    /// agents), as a redeploy does; the database stays.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.serving.take() {
            Some(serving) => serving.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }

    /// The API of this instance as every surface's plain calls, over TCP (one connection pool
    /// per instance).
    pub fn api(&self) -> fsync_client::Api {
        self.api.clone()
    }

    /// `GET /metrics` with the service role key: the text of one scrape.
    pub async fn scrape(&self) -> String {
        let answer = self
            .api
            .request(reqwest::Method::GET, "/metrics", Some(&self.service_key), &[], Vec::<u8>::new())
            .await
            .expect("scrape /metrics");
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.bytes));
        String::from_utf8(answer.bytes.to_vec()).expect("metrics are text")
    }

    /// Scrapes until `series` (a metric name with its labels, as the text has it) is at least
    /// `at_least`, for up to 10 s; its last value.
    pub async fn metric_reaches(&self, series: &str, at_least: f64) -> f64 {
        let deadline = crate::now() + std::time::Duration::from_secs(10);
        loop {
            let value = metric(&self.scrape().await, series).unwrap_or(0.0);
            if value >= at_least || crate::now() >= deadline {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Open realtime sockets on this instance.
    pub fn state_sockets(&self) -> usize {
        self.hub.sockets()
    }

    /// Disconnects every realtime socket, as a server shutting down does.
    pub fn close_realtime(&self) {
        self.hub.close_all();
    }

    /// A token with `claims` (plus `iat`/`exp` for an hour when absent).
    pub fn token(&self, mut claims: Claims) -> String {
        let now = crate::now_s();
        claims.entry("iat").or_insert(json!(now));
        claims.entry("exp").or_insert(json!(now + 3600));
        jwt::sign(&self.secret, &claims)
    }

    /// A signed-in user's token.
    pub fn user_token(&self, user: Uuid) -> String {
        self.token(claims(json!({"role": "authenticated", "sub": user, "email": format!("{user}@example.test")})))
    }

    /// A container token for `project` (DESIGN §8).
    pub fn container_token(&self, project: Uuid) -> String {
        self.session_token(crate::new_id(), project)
    }

    /// A container token of session `session` of `project`, as the orchestrator mints them.
    pub fn session_token(&self, session: Uuid, project: Uuid) -> String {
        self.token(claims(json!({
            "role": "authenticated", "sub": session, "session_id": session,
            "project_id": project, "scope": "container",
        })))
    }

    /// `POST /rest/v1/rpc/{function}` through [`TestApp::api`], `token` as Bearer (none: the anon
    /// key).
    pub async fn rpc(&self, token: Option<&str>, function: &str, args: Value) -> (StatusCode, Value) {
        let reply = self.api.rpc(token, function, args).await.expect("send the RPC");
        (status_code(reply.status), reply.body)
    }

    /// Like [`TestApp::rpc`] with a raw body (which need not be JSON).
    pub async fn rpc_raw(&self, token: Option<&str>, function: &str, body: String) -> (StatusCode, Value) {
        let path = format!("/rest/v1/rpc/{function}");
        let headers = [("content-type", "application/json")];
        let answer = self.api.request(reqwest::Method::POST, &path, token, &headers, body).await.expect("send the RPC");
        let reply = fsync_client::Reply::from(answer);
        (status_code(reply.status), reply.body)
    }

    /// A user profile, inserted directly (as the superuser).
    pub async fn create_user(&self) -> Uuid {
        let id = crate::new_id();
        let client = self.db.connect().await.expect("connect");
        client
            .execute(
                "INSERT INTO public.user_profiles (id, email) VALUES ($1, $2)",
                &[&id, &format!("{id}@example.test")],
            )
            .await
            .expect("insert a user profile");
        id
    }

    /// A project owned by `owner`, created through the API.
    pub async fn create_project(&self, owner: Uuid) -> Uuid {
        let (status, body) =
            self.rpc(Some(&self.user_token(owner)), "create_project", json!({"p_name": "test project"})).await;
        assert_eq!(status, StatusCode::OK, "create_project: {body}");
        body["id"].as_str().and_then(|id| id.parse().ok()).expect("project id")
    }

    /// Makes `user` a member of `project` with `role`, through the API as the owner.
    pub async fn add_member(&self, owner: Uuid, project: Uuid, user: Uuid, role: &str) {
        let (status, body) = self
            .rpc(
                Some(&self.user_token(owner)),
                "add_project_member",
                json!({"project_uuid": project, "p_user_id": user, "p_role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "add_project_member: {body}");
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("an HTTP status")
}

/// A JSON object literal as claims.
/// The value of `series` (a metric name with its labels, exactly as the text has them) in a
/// Prometheus text scrape.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn claims(value: Value) -> Claims {
    match value {
        Value::Object(map) => map,
        other => panic!("claims must be a JSON object, got {other}"),
    }
}

fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
    }
}
