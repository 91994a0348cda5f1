//! Durable sessions (issue 13): session records live in PostgreSQL, so any instance answers for
//! any session, a session stopped through another instance has its agent stopped by its own,
//! and an instance started again under the same name fails the sessions it no longer watches.

use crate::support::*;
use fsync_protocol::snapshot::SessionStatus;
use fsync_reference::orchestrator::registry::RESTARTED;
use fsync_testkit::{PlatformOptions, TestApp};
use std::path::PathBuf;
use std::time::Duration;

const FILES: &[(&str, &str)] = &[("index.html", "<!doctype html>"), ("src/main.ts", "console.log(1)\n")];

#[tokio::test]
async fn any_instance_answers_for_a_session_and_a_stop_through_another_reaches_its_agent() {
    let a = spawn(PlatformOptions::default()).await;
    let b = beside(&a, None).await;
    let seeded = seed(&a, FILES).await;
    let id = start_session(&a, &seeded).await;
    let running = wait_for(&a, &seeded.token, id, SessionStatus::Running).await;
    let through_b = wait_for(&b, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(through_b.agent_pid, running.agent_pid, "instance B reads what A wrote");
    // Only its starter (or the service role) sees it, on every instance.
    let stranger = b.user_token(b.create_user().await);
    assert_eq!(b.api().session(&stranger, id).await.unwrap().status, 404);

    let stopped = stop_session(&b, &seeded.token, id).await;
    assert_eq!(stopped.status, SessionStatus::Stopped);
    let pid = running.agent_pid.expect("a pid");
    eventually("the agent's exit", async || agent_gone(pid)).await;
    let dir = PathBuf::from(&running.project_dir);
    eventually("the session directory's removal", async || !dir.exists()).await;
    let on_a = a.api().session_view(&seeded.token, id).await.unwrap();
    assert_eq!(on_a.status, SessionStatus::Stopped, "final on its own instance too");
}

#[tokio::test]
async fn an_instance_started_again_fails_the_sessions_it_no_longer_watches() {
    let a = spawn(PlatformOptions { instance: Some("blue".into()), ..Default::default() }).await;
    let seeded = seed(&a, FILES).await;
    let id = start_session(&a, &seeded).await;
    let running = wait_for(&a, &seeded.token, id, SessionStatus::Running).await;
    // "blue" starts again (beside the old process, which stands in for one that crashed).
    let again = beside(&a, Some("blue".into())).await;
    let failed = again.api().session_view(&seeded.token, id).await.unwrap();
    assert_eq!(failed.status, SessionStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some(RESTARTED));
    let scraped = again.scrape().await;
    let failures = fsync_testkit::metric(&scraped, "fsync_sessions_ended_total{status=\"failed\"}");
    assert_eq!(failures, Some(1.0), "the instance counts the session it failed: {scraped}");
    // The old process notices at its next look and stops the agent it still had.
    let pid = running.agent_pid.expect("a pid");
    eventually("the orphaned agent's stop", async || agent_gone(pid)).await;
}

/// What `token` gets from `list_current_files` on `project`: the HTTP status.
async fn reads(app: &TestApp, token: &str, project: uuid::Uuid) -> u16 {
    let args = serde_json::json!({"project_uuid": project});
    app.api().rpc(Some(token), "list_current_files", args).await.unwrap().status
}

#[tokio::test]
async fn a_stopped_sessions_container_token_stops_working_at_once() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    let token = app.session_token(id, seeded.project);
    assert_eq!(reads(&app, &token, seeded.project).await, 200, "live: it reads its project");
    stop_session(&app, &seeded.token, id).await;
    assert_eq!(reads(&app, &token, seeded.project).await, 404, "stopped: it reads nothing, long before exp");
    // Realtime refuses it too.
    let mut socket =
        fsync_client::realtime::RealtimeSocket::connect(&app.url, &app.anon_key, fsync_protocol::realtime::Vsn::V2)
            .await
            .unwrap();
    let topic = format!("realtime:project:{}", seeded.project);
    let payload = serde_json::json!({"config": {"private": true}, "access_token": token});
    let join_ref = socket.push_join(&topic, payload).await.unwrap();
    let (reply, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.await_reply(&join_ref)).await.unwrap().unwrap();
    assert_eq!(reply.payload["status"], "error", "{}", reply.payload);
}

#[tokio::test]
async fn removing_a_member_stops_the_sessions_they_started() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let editor = app.create_user().await;
    app.add_member(seeded.owner, seeded.project, editor, "editor").await;
    let editor_token = app.user_token(editor);
    let reply = app.api().create_session(&editor_token, seeded.project).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.uuid("id").unwrap();
    let running = wait_for(&app, &editor_token, id, SessionStatus::Running).await;
    let owners = start_session(&app, &seeded).await;
    wait_for(&app, &seeded.token, owners, SessionStatus::Running).await;

    let removed = app
        .api()
        .rpc(
            Some(&seeded.token),
            "remove_project_member",
            serde_json::json!({"project_uuid": seeded.project, "p_user_id": editor}),
        )
        .await
        .unwrap();
    assert_eq!(removed.status, 200, "{}", removed.body);
    // At once: their session is stopped in the records and its container token reads nothing.
    let token = app.session_token(id, seeded.project);
    assert_eq!(reads(&app, &token, seeded.project).await, 404);
    // Soon: its instance stops the agent.
    let pid = running.agent_pid.expect("a pid");
    eventually("the removed member's agent stop", async || agent_gone(pid)).await;
    let view = app.api().session_view(&app.service_key, id).await.unwrap();
    assert_eq!(view.status, SessionStatus::Stopped);
    assert_eq!(view.reason.as_deref(), Some("the member who started it was removed from the project"));
    // The owner's own session carries on.
    let owners = app.api().session_view(&seeded.token, owners).await.unwrap();
    assert_eq!(owners.status, SessionStatus::Running);
}
