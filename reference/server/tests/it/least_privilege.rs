//! The container token's least privilege across every surface (DESIGN §8, plan 4.4): it may call
//! the two read RPCs for its one project, join that project's server topic, sign its project's
//! binary files and use its own session's agent endpoints — and nothing else, on any surface.

use crate::fixture;
use crate::realtime::{connect, join};
use axum::http::Method;
use fsync_protocol::realtime::Vsn;
use serde_json::{json, Value};

#[tokio::test]
async fn a_container_token_gets_its_one_projects_reads_and_nothing_else_anywhere() {
    let f = fixture().await;
    f.upsert("a.txt", "a", None).await;
    let other = f.app.create_project(f.app.create_user().await).await;
    let session = uuid::Uuid::from_u128(42);
    let token = f.app.session_token(session, f.project);
    let api = f.app.api();
    let call = |method: Method, path: String, body: Value| {
        let (api, token) = (api.clone(), token.clone());
        async move {
            let body = if body.is_null() { String::new() } else { body.to_string() };
            let headers = [("content-type", "application/json")];
            api.request(method, &path, Some(&token), &headers, body).await.unwrap().status
        }
    };
    let p = f.project;

    // Allowed: the two read RPCs on its project.
    assert_eq!(call(Method::POST, "/rest/v1/rpc/list_current_files".into(), json!({"project_uuid": p})).await, 200);
    // Table reads: none at all — not even its own project's rows (those come through the RPCs),
    // nothing of another, no profiles, no members.
    let rows = |relation: &str, filter: String| {
        let (api, token) = (api.clone(), token.clone());
        let path = format!("/rest/v1/{relation}?{filter}");
        async move {
            let reply = api.request(Method::GET, &path, Some(&token), &[], Vec::<u8>::new()).await.unwrap();
            let rows: Value = serde_json::from_slice(&reply.bytes).unwrap_or(Value::Null);
            (reply.status, rows.as_array().map_or(0, Vec::len))
        }
    };
    assert_eq!(rows("project_files_current", format!("project_id=eq.{p}")).await, (200, 0));
    assert_eq!(rows("project_files_current", format!("project_id=eq.{other}")).await, (200, 0));
    assert_eq!(rows("user_profiles", String::new()).await, (200, 0), "no one's profile, nor email");
    assert_eq!(rows("project_members", String::new()).await, (200, 0), "not who the members are");
    // No writes: RPCs, table writes, storage.
    let write = json!({"project_uuid": p, "p_file_path": "b", "p_content": "b", "p_file_type": "text"});
    assert_eq!(call(Method::POST, "/rest/v1/rpc/upsert_project_file".into(), write).await, 403);
    let bulk = json!({"project_uuid": p, "files": [{"file_path": "b", "file_type": "text", "content": "b"}]});
    assert_eq!(call(Method::POST, "/rest/v1/rpc/bulk_upsert_project_files".into(), bulk).await, 403);
    let row = json!({"project_id": p, "path": "b", "content": "b"});
    assert_eq!(call(Method::POST, "/rest/v1/legacy_project_files".into(), row).await, 403);
    let patch = format!("/rest/v1/legacy_project_files?project_id=eq.{p}&path=eq.a.txt");
    // A table write by filter sees no row to change.
    assert_eq!(call(Method::PATCH, patch.clone(), json!({"content": "x"})).await, 204);
    assert_eq!(call(Method::DELETE, patch, Value::Null).await, 204);
    let upload = format!("/storage/v1/object/project-files/{p}/{}", "0".repeat(64));
    assert!(matches!(call(Method::POST, upload, json!("bytes")).await, 400 | 403), "no storage writes");
    let sign_other = format!("/storage/v1/object/sign/project-files/{other}/{}", "0".repeat(64));
    assert!(matches!(call(Method::POST, sign_other, json!({"expiresIn": 60})).await, 400 | 404), "no other project");
    // No platform calls: snapshots, sessions (its own or others'), metrics.
    assert_eq!(call(Method::POST, "/functions/v1/build-project-snapshot".into(), json!({"projectId": p})).await, 403);
    assert_eq!(call(Method::POST, "/orchestrator/v1/sessions".into(), json!({"project_id": p})).await, 403);
    let elsewhere = uuid::Uuid::from_u128(43);
    let status = json!({"status": "running"});
    assert_eq!(call(Method::POST, format!("/orchestrator/v1/sessions/{elsewhere}/status"), status).await, 403);
    assert_eq!(call(Method::POST, format!("/orchestrator/v1/sessions/{elsewhere}/token"), Value::Null).await, 403);
    assert_eq!(call(Method::GET, "/metrics".into(), Value::Null).await, 403);
    // Realtime: its project's server topic only; not another's, not the clients' topic.
    let mut socket = connect(&f.app, Vsn::V2).await;
    let joined = |topic: String| format!("realtime:{topic}");
    assert_eq!(join(&mut socket, &joined(format!("project:{p}")), &token, true).await.1["status"], "ok");
    assert_eq!(join(&mut socket, &joined(format!("project:{other}")), &token, true).await.1["status"], "error");
    assert_eq!(join(&mut socket, &joined(format!("project:{p}:client")), &token, true).await.1["status"], "error");
    // Nothing it tried changed anything.
    assert_eq!(f.seq().await, 1);
}
