//! A session's life (issue 21) on two instances sharing one database, with real agents: a stop by
//! any path (`DELETE` through the other instance, the starter's removal or leaving, the project's
//! deletion) closes the session's channel at once, refuses its token refresh and its calls, reads
//! `stopped` everywhere, and ends its agent; a live session's token is renewed even after it
//! expired; a member may leave a project, its owner may not.

use crate::support::*;
use fsync_client::realtime::RealtimeSocket;
use fsync_protocol::realtime::{Vsn, SESSION_STOPPED};
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use fsync_store::sessions::PROJECT_DELETED;
use fsync_testkit::{claims, PlatformOptions, TestApp};
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const FILES: &[(&str, &str)] = &[("index.html", "<!doctype html>"), ("src/main.ts", "console.log(1)\n")];

/// A channel joined with a session's container token, as its agent's is.
struct Watcher {
    socket: RealtimeSocket,
}

impl Watcher {
    async fn join(app: &TestApp, session: Uuid, project: Uuid) -> Watcher {
        let mut socket = RealtimeSocket::connect(&app.url, &app.anon_key, Vsn::V2).await.unwrap();
        let topic = format!("realtime:project:{project}");
        let payload = json!({"config": {"private": true}, "access_token": app.session_token(session, project)});
        let join_ref = socket.push_join(&topic, payload).await.unwrap();
        let (reply, _) =
            tokio::time::timeout(Duration::from_secs(5), socket.await_reply(&join_ref)).await.unwrap().unwrap();
        assert_eq!(reply.payload["status"], "ok", "the live session's token joins: {}", reply.payload);
        Watcher { socket }
    }

    /// Waits for the server to end the channel, and returns what it said. Realtime authorizes
    /// channels again only every 30 s: an end within 10 s of the stop is the stop's own.
    async fn closed(mut self) -> String {
        let ended = async {
            loop {
                match self.socket.recv().await {
                    Ok(Some(frame)) if frame.event == "system" => {
                        return frame.payload.get("message").and_then(Value::as_str).unwrap_or("").to_owned()
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return "closed without a word".to_owned(),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ended).await.expect("the channel closed within 10 s")
    }
}

/// `POST .../token` with `token`: the HTTP status.
async fn refresh(app: &TestApp, session: Uuid, token: &str) -> u16 {
    let path = format!("/orchestrator/v1/sessions/{session}/token");
    app.api().call(Method::POST, &path, Some(token), None).await.unwrap().status
}

/// What `token` gets from `list_current_files` on `project`: the HTTP status.
async fn reads(app: &TestApp, token: &str, project: Uuid) -> u16 {
    app.api().rpc(Some(token), "list_current_files", json!({"project_uuid": project})).await.unwrap().status
}

/// A session of `token`'s user on `project`, running on `app`.
async fn running(app: &TestApp, token: &str, project: Uuid) -> SessionView {
    let reply = app.api().create_session(token, project).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    wait_for(app, token, reply.uuid("id").unwrap(), SessionStatus::Running).await
}

/// What must hold once session `view` (run by `runs`) was stopped by any path: refused token
/// refresh and reads on both instances, `stopped` (with `reason`) read on both at once, and its
/// agent gone soon.
async fn stopped_everywhere(runs: &TestApp, other: &TestApp, view: &SessionView, reason: Option<&str>) {
    let token = runs.session_token(view.id, view.project_id);
    for app in [runs, other] {
        assert!([404, 409].contains(&refresh(app, view.id, &token).await), "no fresh token after the stop");
        assert_ne!(reads(app, &token, view.project_id).await, 200, "its token reads nothing");
        let seen = app.api().session_view(&runs.service_key, view.id).await.expect("its view");
        assert_eq!(seen.status, SessionStatus::Stopped, "read at once, with no poll to wait for");
        assert_eq!(seen.reason.as_deref(), reason);
    }
    agent_ends(view).await;
}

/// Waits for the agent of session `view` to end.
async fn agent_ends(view: &SessionView) {
    let pid = view.agent_pid.expect("a pid");
    eventually("the agent's end", async || agent_gone(pid)).await;
}

#[tokio::test]
async fn a_stop_through_another_instance_closes_the_channel_at_once_and_ends_everything() {
    let a = spawn(PlatformOptions::default()).await;
    let b = beside(&a, None).await;
    let seeded = seed(&a, FILES).await;
    let view = running(&a, &seeded.token, seeded.project).await;
    let watcher = Watcher::join(&a, view.id, seeded.project).await;
    let token = a.session_token(view.id, seeded.project);
    assert_eq!(refresh(&b, view.id, &token).await, 200, "any instance renews a live session's token");

    stop_session(&b, &seeded.token, view.id).await;
    let said = watcher.closed().await;
    assert!(said.starts_with(SESSION_STOPPED), "the channel's end names the stop: {said}");
    stopped_everywhere(&a, &b, &view, None).await;
}

#[tokio::test]
async fn removing_or_losing_the_starter_ends_the_session_on_the_instance_that_runs_it() {
    let a = spawn(PlatformOptions::default()).await;
    let b = beside(&a, None).await;
    let seeded = seed(&a, FILES).await;
    let (editor, viewer) = (a.create_user().await, a.create_user().await);
    a.add_member(seeded.owner, seeded.project, editor, "editor").await;
    a.add_member(seeded.owner, seeded.project, viewer, "viewer").await;
    let (editor_token, viewer_token) = (a.user_token(editor), a.user_token(viewer));
    let removed = running(&a, &editor_token, seeded.project).await;
    let left = running(&a, &viewer_token, seeded.project).await;
    let watcher = Watcher::join(&a, removed.id, seeded.project).await;

    // Removed by the owner, through the other instance.
    let args = json!({"project_uuid": seeded.project, "p_user_id": editor});
    assert_eq!(b.api().rpc(Some(&seeded.token), "remove_project_member", args).await.unwrap().status, 200);
    assert!(watcher.closed().await.starts_with(SESSION_STOPPED));
    let reason = Some("the member who started it was removed from the project");
    stopped_everywhere(&a, &b, &removed, reason).await;

    // Leaving: a member removes themselves, with the same effect.
    let watcher = Watcher::join(&a, left.id, seeded.project).await;
    let args = json!({"project_uuid": seeded.project, "p_user_id": viewer});
    assert_eq!(b.api().rpc(Some(&viewer_token), "remove_project_member", args).await.unwrap().status, 200);
    assert!(watcher.closed().await.starts_with(SESSION_STOPPED));
    stopped_everywhere(&a, &b, &left, reason).await;
    assert_eq!(reads(&b, &viewer_token, seeded.project).await, 404, "who left reads nothing");
}

#[tokio::test]
async fn deleting_the_project_ends_its_sessions_at_once() {
    let a = spawn(PlatformOptions::default()).await;
    let b = beside(&a, None).await;
    let seeded = seed(&a, FILES).await;
    let view = running(&a, &seeded.token, seeded.project).await;
    let watcher = Watcher::join(&a, view.id, seeded.project).await;
    // Deleted as the service role would (the notifying trigger runs as its owner).
    let db = a.db.connect().await.unwrap();
    db.batch_execute("SET ROLE service_role").await.unwrap();
    db.execute("DELETE FROM public.projects WHERE id = $1", &[&seeded.project]).await.unwrap();
    assert!(watcher.closed().await.starts_with(SESSION_STOPPED));
    // Its record went with the project: the instance that ran it still tells why it ended.
    let seen = a.api().session_view(&seeded.token, view.id).await.unwrap();
    assert_eq!((seen.status, seen.reason.as_deref()), (SessionStatus::Stopped, Some(PROJECT_DELETED)));
    let token = a.session_token(view.id, seeded.project);
    assert_eq!(refresh(&b, view.id, &token).await, 404);
    agent_ends(&view).await;
}

#[tokio::test]
async fn a_live_sessions_expired_token_is_renewed_and_nothing_else_is() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let view = running(&app, &seeded.token, seeded.project).await;
    let container = |session: Uuid, project: Uuid, exp: i64| {
        app.token(claims(json!({
            "role": "authenticated", "sub": session, "session_id": session, "project_id": project,
            "scope": "container", "iat": 1_000, "exp": exp,
        })))
    };
    // Expired long ago (an outage longer than its life): renewed while the session lives.
    let expired = container(view.id, seeded.project, 2_000);
    assert_eq!(refresh(&app, view.id, &expired).await, 200);
    let path = format!("/orchestrator/v1/sessions/{}/token", view.id);
    let renewed = app.api().call(Method::POST, &path, Some(&expired), None).await.unwrap();
    let fresh = renewed.body["access_token"].as_str().expect("a token").to_owned();
    assert_eq!(reads(&app, &fresh, seeded.project).await, 200, "the renewed token reads its project");
    // It renews nothing else: the expired token itself reads nothing...
    assert_eq!(reads(&app, &expired, seeded.project).await, 401);
    // ...another session's token, or one for another project, or forged, renews nothing...
    assert_eq!(refresh(&app, view.id, &container(Uuid::from_u128(9), seeded.project, 2_000)).await, 403);
    assert_eq!(refresh(&app, view.id, &container(view.id, Uuid::from_u128(9), 2_000)).await, 403);
    let forged = fsync_protocol::jwt::sign(
        &fsync_protocol::jwt::Secret::new("another secret"),
        &claims(json!({
            "role": "authenticated", "sub": view.id, "session_id": view.id, "project_id": seeded.project,
            "scope": "container", "exp": 2_000,
        })),
    );
    assert_eq!(refresh(&app, view.id, &forged).await, 401);
    // ...and once the session is stopped, not even its own.
    stop_session(&app, &seeded.token, view.id).await;
    assert_eq!(refresh(&app, view.id, &expired).await, 409);
}

#[tokio::test]
async fn a_member_may_leave_and_the_owner_may_not() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let (editor, viewer) = (app.create_user().await, app.create_user().await);
    app.add_member(seeded.owner, seeded.project, editor, "editor").await;
    app.add_member(seeded.owner, seeded.project, viewer, "viewer").await;
    let project = seeded.project;
    let remove = |token: String, user: Uuid| {
        let args = json!({"project_uuid": project, "p_user_id": user});
        let api = app.api();
        async move { api.rpc(Some(&token), "remove_project_member", args).await.unwrap() }
    };
    let refused = remove(app.user_token(viewer), editor).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (403, Some("42501")), "only themselves");
    let owner = remove(seeded.token.clone(), seeded.owner).await;
    assert_eq!(owner.status, 400, "{}", owner.body);
    assert_eq!(owner.body["message"], "the owner cannot leave their own project");
    assert_eq!(remove(app.user_token(viewer), viewer).await.status, 200);
    assert_eq!(remove(app.user_token(viewer), viewer).await.status, 404, "gone: not a member any more");
    assert_eq!(remove(app.user_token(editor), editor).await.status, 200);
    let args = json!({"project_uuid": seeded.project});
    let members = app.api().rpc(Some(&seeded.token), "list_project_members", args).await.unwrap().body;
    assert_eq!(members.as_array().map(Vec::len), Some(1), "the owner alone: {members}");
}
