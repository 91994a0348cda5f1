//! Helpers for session tests: a server whose orchestrator spawns the real agent binary, seeding,
//! waiting for a session status, and comparing a directory with `list_current_files`.

use fsync_client::{ClientConfig, FsyncClient, RetryPolicy};
use fsync_protocol::api::BulkEntry;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use fsync_testkit::{PlatformOptions, TestApp, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};
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
    Seeded { token, project, client }
}

/// `POST /orchestrator/v1/sessions` as `token`.
pub async fn create_session(app: &TestApp, token: &str, project: Uuid) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/orchestrator/v1/sessions", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(token)
        .json(&json!({"project_id": project}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn start_session(app: &TestApp, seeded: &Seeded) -> Uuid {
    let (status, body) = create_session(app, &seeded.token, seeded.project).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

pub async fn session(app: &TestApp, token: &str, id: Uuid) -> SessionView {
    let response = app
        .http
        .get(format!("{}/orchestrator/v1/sessions/{id}", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Polls the session until it is `status` (or final); returns it.
pub async fn wait_for(app: &TestApp, token: &str, id: Uuid, status: SessionStatus) -> SessionView {
    let deadline = fsync_testkit::now() + Duration::from_secs(30);
    loop {
        let view = session(app, token, id).await;
        if view.status == status || view.status.is_final() {
            return view;
        }
        assert!(fsync_testkit::now() < deadline, "session {id} never became {status:?}: {view:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn stop_session(app: &TestApp, token: &str, id: Uuid) -> SessionView {
    let response = app
        .http
        .delete(format!("{}/orchestrator/v1/sessions/{id}", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
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
    let response = app
        .http
        .post(format!("{}/storage/v1/object/project-files/{}/{hash}", app.url, seeded.project))
        .header("apikey", &app.anon_key)
        .header("x-upsert", "true")
        .header("content-type", "image/png")
        .bearer_auth(&seeded.token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    let (status, body) = app
        .rpc(
            Some(&seeded.token),
            "upsert_project_binary",
            json!({"project_uuid": seeded.project, "p_file_path": path, "p_content_hash": hash, "p_file_type": "image"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    hash
}
