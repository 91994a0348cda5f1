//! Helpers for session tests: a server whose orchestrator spawns the real agent binary, seeding,
//! starting, waiting for and stopping a session (through `TestApp::api`), and comparing a
//! directory with `list_current_files`.

use fsync_client::{ClientConfig, FsyncClient, RetryPolicy};
use fsync_protocol::api::BulkEntry;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use fsync_store::SystemClock;
use fsync_testkit::{PlatformOptions, TestApp, TestDb};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fsync-agent"))
}

/// A server whose sessions spawn the real agent, with `options` (agent_bin filled in).
pub async fn spawn(mut options: PlatformOptions) -> TestApp {
    options.agent_bin.get_or_insert_with(agent_bin);
    let db = TestDb::migrated().await.expect("a test database");
    fsync_testkit::spawn_app(fsync_testkit::AppOptions::on(Arc::new(db)).platform(options)).await
}

/// A project owned by a new user, and the owner's client.
pub struct Seeded {
    pub owner: Uuid,
    pub token: String,
    pub project: Uuid,
    pub client: Arc<FsyncClient>,
}

pub async fn seed(app: &TestApp, files: &[(&str, &str)]) -> Seeded {
    let owner = app.create_user().await;
    let project = app.create_project(owner).await;
    let token = app.user_token(owner);
    let client = Arc::new(
        FsyncClient::new(ClientConfig::new(&app.url, &app.anon_key).token(&token).retry(RetryPolicy::none())).unwrap(),
    );
    if !files.is_empty() {
        let entries: Vec<BulkEntry> = files.iter().map(|(p, c)| BulkEntry::upsert(*p, "text", *c)).collect();
        client.bulk_upsert_project_files(project, &entries).await.unwrap();
    }
    Seeded { owner, token, project, client }
}

/// Starts a session on the seeded project as its owner (it must answer 201): its id.
pub async fn start_session(app: &TestApp, seeded: &Seeded) -> Uuid {
    let reply = app.api().create_session(&seeded.token, seeded.project).await.expect("create the session");
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.uuid("id").expect("the session's id")
}

/// Polls the session until it is `status` (or final), for at most 30 s; returns it.
pub async fn wait_for(app: &TestApp, token: &str, id: Uuid, status: SessionStatus) -> SessionView {
    let within = Duration::from_secs(30);
    let waited = app.api().wait_session(token, id, status, within, &SystemClock).await;
    waited.unwrap_or_else(|e| panic!("session {id} never became {status:?}: {e}"))
}

/// Stops the session (it must answer 200): its last view.
pub async fn stop_session(app: &TestApp, token: &str, id: Uuid) -> SessionView {
    let reply = app.api().stop_session(token, id).await.expect("stop the session");
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_value(reply.body).expect("a session view")
}

/// Every regular file under `root`, by relative path.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                let relative = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// What the project directory must hold: `list_current_files` (binaries from `binaries`, by hash).
pub async fn expected_tree(seeded: &Seeded, binaries: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let files = seeded.client.list_current_files(seeded.project).await.unwrap();
    files
        .into_iter()
        .map(|f| {
            let bytes = match f.content {
                Some(content) => content.into_bytes(),
                None => binaries[f.content_hash.as_deref().unwrap()].clone(),
            };
            (f.file_path, bytes)
        })
        .collect()
}

/// Waits until the directory equals `list_current_files`.
pub async fn wait_converged(seeded: &Seeded, dir: &Path, binaries: &BTreeMap<String, Vec<u8>>) {
    let deadline = fsync_testkit::now() + Duration::from_secs(15);
    loop {
        let expected = expected_tree(seeded, binaries).await;
        let actual = tree(dir);
        if actual == expected {
            return;
        }
        if fsync_testkit::now() > deadline {
            let show =
                |t: &BTreeMap<String, Vec<u8>>| t.iter().map(|(k, v)| (k.clone(), hex_sha256(v))).collect::<Vec<_>>();
            panic!(
                "{} never converged:\n actual   {:?}\n expected {:?}",
                dir.display(),
                show(&actual),
                show(&expected)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `bytes` to project-files as `token` and records them at `path`.
pub async fn put_binary(app: &TestApp, seeded: &Seeded, path: &str, bytes: &[u8]) -> String {
    let hash = hex_sha256(bytes);
    let name = format!("{}/{hash}", seeded.project);
    let uploaded = app
        .api()
        .upload_as(Some(&seeded.token), "project-files", &name, "image/png", bytes.to_vec(), true)
        .await
        .expect("upload the binary");
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let (status, body) = app
        .rpc(
            Some(&seeded.token),
            "upsert_project_binary",
            json!({"project_uuid": seeded.project, "p_file_path": path, "p_content_hash": hash, "p_file_type": "image"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hash
}

/// Whether process `pid` has exited: gone from `/proc`, or a zombie not reaped yet.
pub fn agent_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// A second instance on `app`'s database (its own storage: it starts no session here).
pub async fn beside(app: &TestApp, instance: Option<String>) -> TestApp {
    let platform = PlatformOptions { agent_bin: Some(agent_bin()), instance, ..Default::default() };
    fsync_testkit::spawn_app(fsync_testkit::AppOptions::on(app.db.clone()).platform(platform)).await
}

/// Polls `check` every 100 ms for up to 20 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = fsync_testkit::now() + Duration::from_secs(20);
    while !check().await {
        assert!(fsync_testkit::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
