//! A whole preview session with no PostgreSQL and no socket: the real server on the in-memory
//! model and an in-memory object store, served over in-process streams, two in-process agents
//! (the same session code as the binary) hydrating from the snapshot and then following edits,
//! deletes and a bulk. What the harness (the simulator, load runs) builds on.

use fsync_agent::apply::ProjectDir;
use fsync_agent::launcher::InProcessLauncher;
use fsync_client::transport::Transport;
use fsync_client::{Api, ClientConfig, FsyncClient, RetryPolicy};
use fsync_model::MemStore;
use fsync_protocol::api::BulkEntry;
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::snapshot::{SessionStatus, SessionView, CONTAINER_TOKEN_MAX_TTL_S};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use fsync_reference::orchestrator::OrchestratorConfig;
use fsync_reference::storage::Storage;
use fsync_reference::ServerBuilder;
use fsync_store::{Ids, Sources, SystemClock, SystemIds};
use fsync_testkit::MemoryNet;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const API: &str = "http://fsync.test:54321";

/// The server on the model, reachable only through `net`.
struct World {
    store: Arc<MemStore>,
    transport: Transport,
    anon: String,
    /// Every surface of the server, over `transport`.
    api: Api,
    secret: Secret,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl World {
    /// The server takes time and ids from `server`, the agents from `agents`, the model its ids
    /// from `model`.
    async fn start(server: Sources, agents: Sources, model: Arc<dyn Ids>) -> World {
        let net = MemoryNet::new();
        let transport = Transport::new(net.dialer());
        let secret = Secret::new(DEV_JWT_SECRET);
        let store = Arc::new(MemStore::with_ids(model));
        let dir = tempfile::tempdir().unwrap();
        let orchestrator = OrchestratorConfig {
            sessions_dir: dir.path().join("sessions"),
            launcher: Arc::new(InProcessLauncher::new(agents, transport.clone())),
            snapshot_hydration: true,
            agent_exec: None,
            token_ttl_s: CONTAINER_TOKEN_MAX_TTL_S,
            max_sessions_per_user: fsync_reference::orchestrator::MAX_SESSIONS_PER_USER,
            instance: "on-model".into(),
        };
        let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory://");
        let instance = ServerBuilder::new(store.clone())
            .secret(secret.clone())
            .sources(server)
            .platform(store.clone(), storage, orchestrator)
            .start()
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(instance.serve(net.listen("fsync.test", 54321), async {
            let _ = stopped.await;
        }));
        let anon = anon_key(&secret);
        let api = Api::new(API, &anon, transport.clone()).with_timeout(Duration::from_secs(10));
        World { store, transport, anon, api, secret, dir, _stop: stop }
    }

    fn user_token(&self, user: Uuid, now_s: u64) -> String {
        let mut claims = jwt::claims_for("authenticated", now_s, 3600);
        claims.insert("sub".into(), json!(user));
        claims.insert("email".into(), json!(format!("{user}@example.test")));
        jwt::sign(&self.secret, &claims)
    }

    fn client(&self, token: &str, sources: Sources) -> FsyncClient {
        let config = ClientConfig::new(API, &self.anon)
            .token(token)
            .retry(RetryPolicy::none())
            .transport(self.transport.clone())
            .sources(sources);
        FsyncClient::new(config).unwrap()
    }

    /// Starts a session on `project` as `token` (it must answer 201): its id.
    async fn start_session(&self, token: &str, project: Uuid) -> Uuid {
        let reply = self.api.create_session(token, project).await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.uuid("id").unwrap()
    }

    /// Waits until session `id` runs; it must not end first.
    async fn wait_running(&self, token: &str, id: Uuid) -> SessionView {
        let within = Duration::from_secs(5);
        let view = self.api.wait_session(token, id, SessionStatus::Running, within, &SystemClock).await;
        let view = view.unwrap_or_else(|e| panic!("session {id} never ran: {e}"));
        assert_eq!(view.status, SessionStatus::Running, "session {id} ended: {view:?}");
        view
    }

    /// Uploads `bytes` to `project-files` as `token` and records them at `path`; the bytes.
    async fn put_binary(&self, token: &str, project: Uuid, path: &str, bytes: &[u8]) -> Vec<u8> {
        let hash = fsync_protocol::hash::hex_sha256(bytes);
        let name = format!("{project}/{hash}");
        let uploaded =
            self.api.upload_as(Some(token), "project-files", &name, "image/png", bytes.to_vec(), false).await.unwrap();
        assert_eq!(uploaded.status, 200, "{}", uploaded.body);
        let args =
            json!({"project_uuid": project, "p_file_path": path, "p_content_hash": hash, "p_file_type": "image"});
        let recorded = self.api.rpc(Some(token), "upsert_project_binary", args).await.unwrap();
        assert_eq!(recorded.status, 200, "{}", recorded.body);
        bytes.to_vec()
    }
}

/// Waits until the agent's directory holds exactly `expected`.
async fn converges_to(dir: &ProjectDir, expected: &BTreeMap<String, Vec<u8>>) {
    for _ in 0..500 {
        if &dir.tree().unwrap() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(&dir.tree().unwrap(), expected, "{} never converged", dir.root().display());
}

/// `list_current_files` as path → bytes (text files; binaries have no content here).
async fn current(client: &FsyncClient, project: Uuid) -> BTreeMap<String, Vec<u8>> {
    let files = client.list_current_files(project).await.unwrap();
    files.into_iter().filter_map(|f| Some((f.file_path, f.content?.into_bytes()))).collect()
}

/// Waits until the agent's directory holds exactly the project's files.
async fn converges(dir: &ProjectDir, client: &FsyncClient, project: Uuid) {
    let expected = current(client, project).await;
    for _ in 0..500 {
        if dir.tree().unwrap() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dir.tree().unwrap(), expected, "{} never converged", dir.root().display());
}

#[tokio::test]
async fn a_preview_session_runs_on_the_model_over_in_process_streams_with_in_process_agents() {
    let sources = Sources::system();
    let world = World::start(sources.clone(), sources.clone(), Arc::new(SystemIds)).await;
    let owner = Uuid::from_u128(7);
    let token = world.user_token(owner, sources.wall_s());
    let client = world.client(&token, sources);
    let project = client.create_project("on the model", None).await.unwrap().id;
    let files = [("package.json", "{}"), ("src/App.tsx", "export default 1;\n"), ("src/lib/util.ts", "export {}\n")];
    let entries: Vec<BulkEntry> = files.iter().map(|(p, c)| BulkEntry::upsert(*p, "text", *c)).collect();
    client.bulk_upsert_project_files(project, &entries).await.unwrap();
    let logo = world.put_binary(&token, project, "public/logo.png", b"\x89PNG\r\n\x1a\n the logo").await;

    // Two sessions, each hydrating from the snapshot through the model-backed platform.
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let id = world.start_session(&token, project).await;
        let view = world.wait_running(&token, id).await;
        assert!(view.snapshot_id.is_some(), "hydrated from a snapshot: {view:?}");
        let dir = ProjectDir::open(&view.project_dir).unwrap();
        let mut expected = current(&client, project).await;
        expected.insert("public/logo.png".into(), logo.clone());
        assert_eq!(dir.tree().unwrap(), expected, "the snapshot's content, the binary from storage");
        dirs.push(dir);
    }

    // Then edits, a delete and a bulk arrive on both.
    client.upsert_project_file(project, "src/App.tsx", "export default 2;\n", "typescript", None).await.unwrap();
    client.delete_project_file(project, "src/lib/util.ts", None).await.unwrap();
    let bulk = [
        BulkEntry::upsert("src/new/a.ts", "typescript", "a"),
        BulkEntry::upsert("README.md", "markdown", "# on the model"),
        BulkEntry::delete("package.json"),
    ];
    client.bulk_upsert_project_files(project, &bulk).await.unwrap();
    let icon = world.put_binary(&token, project, "public/icon.png", b"\x89PNG\r\n\x1a\n the icon").await;
    let mut expected = current(&client, project).await;
    expected.insert("public/logo.png".into(), logo);
    expected.insert("public/icon.png".into(), icon);
    for dir in &dirs {
        converges_to(dir, &expected).await;
    }
    let tree = dirs[0].tree().unwrap();
    let paths = ["README.md", "public/icon.png", "public/logo.png", "src/App.tsx", "src/new/a.ts"];
    assert_eq!(tree.keys().collect::<Vec<_>>(), paths);
    assert!(world.store.snapshot().objects.keys().any(|(bucket, _)| bucket == "project-snapshots"));
}

/// Everything a run shows the outside that ids, time and randomness could change.
#[derive(Debug, PartialEq)]
struct Trace {
    token: String,
    project: Uuid,
    sessions: Vec<Value>,
    messages: Vec<(String, String, String, String)>,
    files: Value,
}

/// One whole run (project, bulk, two sessions, edits, a delete and a bulk, convergence) with
/// every source seeded from `seed` and tokio's clock paused.
fn seeded_run(seed: u64) -> Trace {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime.block_on(async move {
        let server = Sources::seeded(seed, 1_800_000_000);
        let world = World::start(server.clone(), server.with_seed(seed + 1), server.with_seed(seed + 2).ids).await;
        let mut deliveries = fsync_store::Store::listen(world.store.as_ref()).await.unwrap();
        let token = world.user_token(Uuid::from_u128(7), server.wall_s());
        let client = world.client(&token, server.with_seed(seed + 3));
        let project = client.create_project("seeded", None).await.unwrap().id;
        let entries = [BulkEntry::upsert("src/a.ts", "typescript", "a"), BulkEntry::upsert("b.md", "markdown", "b")];
        client.bulk_upsert_project_files(project, &entries).await.unwrap();
        let mut sessions = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..2 {
            let created = world.api.create_session(&token, project).await.unwrap();
            let view = world.wait_running(&token, created.uuid("id").unwrap()).await;
            dirs.push(ProjectDir::open(&view.project_dir).unwrap());
            let mut view = serde_json::to_value(view).unwrap();
            let relative = view["project_dir"].as_str().unwrap().replace(&world.dir.path().display().to_string(), "");
            view["project_dir"] = json!(relative);
            sessions.push(view);
        }
        client.upsert_project_file(project, "src/a.ts", "a2", "typescript", Some(1)).await.unwrap();
        client.delete_project_file(project, "b.md", None).await.unwrap();
        client.bulk_upsert_project_files(project, &[BulkEntry::upsert("c/d.ts", "typescript", "d")]).await.unwrap();
        for dir in &dirs {
            converges(dir, &client, project).await;
        }
        let mut messages = Vec::new();
        while let Ok(fsync_store::data::Delivery::Message(m)) = deliveries.try_recv() {
            messages.push((m.id, m.topic, m.event, m.payload_json));
        }
        let files = serde_json::to_value(client.list_current_files(project).await.unwrap()).unwrap();
        Trace { token, project, sessions, messages, files }
    })
}

#[test]
fn a_seeded_run_gives_the_same_ids_timestamps_and_event_payloads_twice() {
    let first = seeded_run(42);
    assert_eq!(first.messages.len(), 4, "two bulks, an update and a delete: {:?}", first.messages);
    assert!(first.sessions.iter().all(|s| s["timings_ms"]["total"].is_number()), "{:?}", first.sessions);
    assert_eq!(first, seeded_run(42), "the same seed, the same run");
    let other = seeded_run(43);
    assert_ne!(first.project, other.project, "ids come from the seed");
    assert_ne!(first.sessions[0]["id"], other.sessions[0]["id"]);
}

/// Both ends of an in-process agent's life reach its session as a process's do: `DELETE` stops
/// it (and its directory goes), and one that fails on its own fails its session with its reason.
#[tokio::test]
async fn in_process_agents_are_stopped_and_their_failures_noticed() {
    let sources = Sources::system();
    let world = World::start(sources.clone(), sources.clone(), Arc::new(SystemIds)).await;
    let token = world.user_token(Uuid::from_u128(8), sources.wall_s());
    let client = world.client(&token, sources);
    let project = client.create_project("lifecycle", None).await.unwrap().id;
    client.upsert_project_file(project, "src/App.tsx", "1", "typescript", None).await.unwrap();
    let mut views = Vec::new();
    for _ in 0..2 {
        let id = world.start_session(&token, project).await;
        views.push(world.wait_running(&token, id).await);
    }

    let stopped = world.api.stop_session(&token, views[0].id).await.unwrap();
    assert_eq!((stopped.status, stopped.body["status"].as_str()), (200, Some("stopped")), "{}", stopped.body);
    assert!(!std::path::Path::new(&views[0].project_dir).exists(), "the stopped session's directory is gone");

    // A directory where the next write must put a file: the agent cannot apply it and stops.
    let blocked = std::path::Path::new(&views[1].project_dir).join("src/App.tsx");
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
    client.upsert_project_file(project, "src/App.tsx", "2", "typescript", None).await.unwrap();
    let within = Duration::from_secs(5);
    let failed = world.api.wait_session(&token, views[1].id, SessionStatus::Failed, within, &SystemClock).await;
    let failed = failed.unwrap_or_else(|e| panic!("the failed agent's session never failed: {e}"));
    assert_eq!(failed.status, SessionStatus::Failed, "{failed:?}");
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("apply the changes up to seq 2") && reason.contains("is a directory"), "{reason}");
}

/// The launcher itself: an agent that cannot reach its API fails with its reason (it can report
/// to no one, so only its exit tells), and a killed one ends at once.
#[tokio::test(start_paused = true)]
async fn an_in_process_agent_ends_with_its_reason_or_when_killed() {
    use fsync_store::launch::{AgentLaunch, Launcher};
    let sources = Sources::system();
    let nowhere = Transport::new(MemoryNet::new().dialer());
    let launcher = InProcessLauncher::new(sources, nowhere);
    let dir = tempfile::tempdir().unwrap();
    let launch = |n: u128| AgentLaunch {
        project_id: Uuid::from_u128(n),
        session_id: Uuid::from_u128(n + 100),
        snapshot_url: String::new(),
        realtime_token: "token".into(),
        api_url: "http://nowhere.test:1".into(),
        project_dir: dir.path().join(format!("p{n}")),
        session_dir: dir.path().to_owned(),
        exec: None,
    };
    let failed = launcher.launch(launch(1)).await.unwrap();
    assert_eq!(failed.pid, None);
    let exit = failed.exit.await;
    assert_eq!(exit.how, "failed");
    let words = exit.last_words.unwrap_or_default();
    assert!(words.contains("could not join the project channel") && words.contains("nothing listens"), "{words}");

    let killed = launcher.launch(launch(2)).await.unwrap();
    killed.control.kill();
    assert_eq!(killed.exit.await.how, "killed");
}
