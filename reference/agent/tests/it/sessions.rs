//! Preview sessions end to end (plan 2.4): the real server, PostgreSQL, storage, and the spawned
//! `fsync-agent`.

use crate::support::*;
use fsync_protocol::api::BulkEntry;
use fsync_protocol::snapshot::{SessionStatus, AGENT_ENV};
use fsync_testkit::{metric, PlatformOptions, TestApp};
use http::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const FILES: &[(&str, &str)] = &[
    ("index.html", "<!doctype html><script src=\"src/main.ts\"></script>"),
    ("src/main.ts", "import { a } from './lib/a';\nconsole.log(a);\n"),
    ("src/lib/a.ts", "export const a = 1;\n"),
    ("src/lib/deep/b.ts", "export const b = 2;\n"),
    ("package.json", "{\"name\": \"preview\"}"),
];

/// A seeded project starts, reaches `running` with the tree of `list_current_files`, then follows
/// edits, deletes and bulks; its agent's environment is exactly the five variables; stopping it
/// ends the agent and removes its directory.
async fn starts_follows_and_stops(app: &TestApp) {
    let seeded = seed(app, FILES).await;
    let id = start_session(app, &seeded).await;
    let view = wait_for(app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(view.status, SessionStatus::Running, "{view:?}");
    let dir = PathBuf::from(&view.project_dir);
    assert_eq!(tree(&dir), expected_tree(&seeded, &BTreeMap::new()).await, "hydrated tree");
    for phase in ["snapshot", "spawn", "join", "download", "extract", "catch_up", "hydrate", "total"] {
        assert!(view.timings_ms.contains_key(phase), "timing {phase} missing: {:?}", view.timings_ms);
    }
    assert!(view.snapshot_id.is_some());

    // The agent's environment, read from the running process.
    let pid = view.agent_pid.expect("agent pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| String::from_utf8_lossy(kv).split('=').next().unwrap().to_owned())
        .collect();
    names.sort();
    let mut five: Vec<String> = AGENT_ENV.iter().map(|s| s.to_string()).collect();
    five.sort();
    assert_eq!(names, five, "exactly the five variables");
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains(&app.service_key), "no service role key in the agent's environment");
    assert!(!environ.contains("service_role"));

    // Edits, deletes and bulks land on disk.
    let client = &seeded.client;
    client
        .upsert_project_file(seeded.project, "src/lib/a.ts", "export const a = 42;\n", "typescript", None)
        .await
        .unwrap();
    client
        .upsert_project_file(seeded.project, "src/new/c.ts", "export const c = 3;\n", "typescript", None)
        .await
        .unwrap();
    client.delete_project_file(seeded.project, "src/lib/deep/b.ts", None).await.unwrap();
    let bulk = [
        BulkEntry::upsert("bulk/one.md", "markdown", "one"),
        BulkEntry::upsert("bulk/two.md", "markdown", "two"),
        BulkEntry::delete("package.json"),
    ];
    client.bulk_upsert_project_files(seeded.project, &bulk).await.unwrap();
    let big = "x".repeat(200 * 1024); // above the inline event limit: fetched by catch-up
    client.upsert_project_file(seeded.project, "big.txt", &big, "text", None).await.unwrap();
    wait_converged(&seeded, &dir, &BTreeMap::new()).await;
    assert!(!dir.join("src/lib/deep").exists(), "the emptied directory is gone");

    // A scrape shows the session's start by phase, its snapshot, and the commit → applied lags
    // the agent reported (it reports each second).
    let applied = app.metric_reaches("fsync_event_lag_seconds_count{stage=\"applied\"}", 2.0).await;
    assert!(applied >= 2.0, "the agent reported its lags: {applied}");
    let text = app.scrape().await;
    for series in [
        "fsync_session_start_seconds_count{phase=\"download\"}",
        "fsync_session_start_seconds_count{phase=\"total\"}",
        "fsync_snapshot_build_seconds_count",
        "fsync_snapshot_bytes_count",
    ] {
        assert_eq!(metric(&text, series), Some(1.0), "{series} in\n{text}");
    }
    assert_eq!(metric(&text, "fsync_sessions{status=\"running\"}"), Some(1.0), "the live session: {text}");
    assert_eq!(metric(&text, "fsync_sessions{status=\"starting\"}"), Some(0.0), "{text}");

    let stopped = stop_session(app, &seeded.token, id).await;
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(agent_gone(pid), "the agent is gone");
    assert!(!dir.exists(), "the session directory is removed");
    let text = app.scrape().await;
    assert_eq!(metric(&text, "fsync_sessions_ended_total{status=\"stopped\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "fsync_sessions{status=\"running\"}"), Some(0.0), "no live session: {text}");
    assert_eq!(metric(&text, "fsync_sessions_ended_total{status=\"failed\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "fsync_snapshot_build_failures_total"), Some(0.0), "{text}");
}

#[tokio::test]
async fn a_session_hydrates_from_the_snapshot_follows_changes_and_stops() {
    let app = spawn(PlatformOptions::default()).await;
    starts_follows_and_stops(&app).await;
}

/// The same session on the S3 server in a container, with SigV4 credentials (issue 22): the
/// snapshot uploaded there, signed and downloaded through it, binaries too.
#[tokio::test]
async fn the_s3_server_in_a_container_serves_the_same_session() {
    use fsync_testkit::containers::{available, S3Container};
    let Some(images) = available("a session on the S3 server in a container").await else { return };
    let s3 = S3Container::start(&images, "fsync-e2e").await.expect("the S3 server in a container");
    let (storage_url, aws) = s3.storage();
    let app = spawn(PlatformOptions { storage_url: Some(storage_url), aws, ..Default::default() }).await;
    starts_follows_and_stops(&app).await;
}

#[tokio::test]
async fn the_legacy_path_hydrates_file_by_file() {
    let app = spawn(PlatformOptions { legacy_hydration: true, ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    seeded.client.delete_project_file(seeded.project, "package.json", None).await.unwrap();
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(view.status, SessionStatus::Running, "{view:?}");
    assert!(!view.snapshot_hydration && view.snapshot_id.is_none());
    let dir = PathBuf::from(&view.project_dir);
    assert_eq!(tree(&dir), expected_tree(&seeded, &BTreeMap::new()).await);
    seeded.client.upsert_project_file(seeded.project, "later.ts", "later", "typescript", None).await.unwrap();
    wait_converged(&seeded, &dir, &BTreeMap::new()).await;
}

#[tokio::test]
async fn binary_files_come_from_storage_in_the_snapshot_and_live() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let logo: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut binaries = BTreeMap::new();
    binaries.insert(put_binary(&app, &seeded, "public/logo.png", &logo).await, logo.clone());
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(view.status, SessionStatus::Running, "{view:?}");
    let dir = PathBuf::from(&view.project_dir);
    assert_eq!(std::fs::read(dir.join("public/logo.png")).unwrap(), logo);

    let icon: Vec<u8> = vec![0, 159, 146, 150, 255, 1, 2, 3];
    binaries.insert(put_binary(&app, &seeded, "public/icon.ico", &icon).await, icon.clone());
    let logo2: Vec<u8> = logo.iter().rev().copied().collect();
    binaries.insert(put_binary(&app, &seeded, "public/logo.png", &logo2).await, logo2);
    wait_converged(&seeded, &dir, &binaries).await;
}

/// A write committed after the snapshot is built but before the agent joins is not lost: the
/// agent binary is wrapped in a script that writes first, then starts the agent.
#[tokio::test]
async fn a_write_between_the_snapshot_and_the_subscription_is_not_lost() {
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("agent-after-a-write.sh");
    let app = spawn(PlatformOptions { agent_bin: Some(script.clone()), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let body = json!({"project_uuid": seeded.project, "p_file_path": "src/lib/a.ts",
        "p_content": "written after the snapshot", "p_file_type": "typescript"});
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n/usr/bin/curl -sf -o /dev/null -X POST '{url}/rest/v1/rpc/upsert_project_file' \
             -H 'apikey: {anon}' -H 'Authorization: Bearer {token}' -H 'content-type: application/json' \
             -d '{body}' || exit 9\nexec '{agent}' \"$@\"\n",
            url = app.url,
            anon = app.anon_key,
            token = seeded.token,
            agent = agent_bin().display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(view.status, SessionStatus::Running, "{view:?}");
    let seq_of_snapshot: i64 = view.snapshot_id.as_deref().unwrap().trim_start_matches("seq-").parse().unwrap();
    let head = seeded.client.list_changes_since(seeded.project, 0).await.unwrap().seq;
    assert_eq!(head, seq_of_snapshot + 1, "the write came after the snapshot");
    let dir = PathBuf::from(&view.project_dir);
    assert_eq!(std::fs::read_to_string(dir.join("src/lib/a.ts")).unwrap(), "written after the snapshot");
    assert_eq!(tree(&dir), expected_tree(&seeded, &BTreeMap::new()).await);
}

#[tokio::test]
async fn the_same_seq_reuses_the_snapshot_and_a_new_seq_builds_one() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let first = wait_for(&app, &seeded.token, start_session(&app, &seeded).await, SessionStatus::Running).await;
    let second = wait_for(&app, &seeded.token, start_session(&app, &seeded).await, SessionStatus::Running).await;
    assert!(first.timings_ms.contains_key("snapshot_built"), "{:?}", first.timings_ms);
    assert!(second.timings_ms.contains_key("snapshot_reused"), "{:?}", second.timings_ms);
    assert_eq!(first.snapshot_id, second.snapshot_id);
    seeded.client.upsert_project_file(seeded.project, "x.md", "x", "markdown", None).await.unwrap();
    let third = wait_for(&app, &seeded.token, start_session(&app, &seeded).await, SessionStatus::Running).await;
    assert!(third.timings_ms.contains_key("snapshot_built"));
    assert_ne!(third.snapshot_id, first.snapshot_id);

    // Each URL an agent got is noted in its snapshot's record (a container token's 15 minutes),
    // and the first snapshot is superseded by the third.
    let client = app.db.connect().await.unwrap();
    let statement = "SELECT snapshot_id, signed_until_s, superseded_at_s IS NOT NULL
                     FROM fsync.project_snapshots WHERE project_id = $1 ORDER BY seq";
    let now = fsync_testkit::now_s() as i64;
    let records: Vec<(String, i64, bool)> = client
        .query(statement, &[&seeded.project])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) - now, r.get(2)))
        .collect();
    let ids: Vec<(Option<&str>, bool)> =
        records.iter().map(|(id, _, superseded)| (Some(id.as_str()), *superseded)).collect();
    assert_eq!(ids, [(first.snapshot_id.as_deref(), true), (third.snapshot_id.as_deref(), false)]);
    assert!(records.iter().all(|(_, left, _)| (870..=900).contains(left)), "{records:?}");
}

#[tokio::test]
async fn an_agent_that_dies_fails_its_session_with_the_reason() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    let pid = view.agent_pid.unwrap() as i32;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Failed).await;
    assert_eq!(view.status, SessionStatus::Failed);
    let reason = view.reason.unwrap();
    assert!(reason.contains("the agent exited") && reason.contains("signal: 9"), "{reason}");
}

/// Container tokens last seconds here: the agent refreshes its own and keeps following.
#[tokio::test]
async fn the_agent_refreshes_its_token_and_keeps_following() {
    // Refreshed at two thirds of its life: 2 s of slack for a busy machine (CI runs the agent
    // tests side by side).
    let app = spawn(PlatformOptions { token_ttl_s: Some(6), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    let dir = PathBuf::from(&view.project_dir);
    tokio::time::sleep(Duration::from_millis(7000)).await;
    seeded
        .client
        .upsert_project_file(seeded.project, "after-expiry.ts", "still here", "typescript", None)
        .await
        .unwrap();
    wait_converged(&seeded, &dir, &BTreeMap::new()).await;
    let view = app.api().session_view(&seeded.token, id).await.expect("the session");
    assert_eq!(view.status, SessionStatus::Running);
}

#[tokio::test]
async fn the_exec_command_starts_after_hydration() {
    // A dev server that needs the hydrated files, serves on the port it is given, and answers
    // only after a while: the session runs once it answers, not before.
    let server = r#"cat index.html > started.txt; sleep 1; exec node -e 'require("http").createServer((q, r) => r.end("served")).listen(+process.env.PORT, process.env.HOST)'"#;
    let app = spawn(PlatformOptions { agent_exec: Some(server.into()), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert!(view.timings_ms.contains_key("exec"));
    assert!(view.timings_ms["dev_server"] >= 1000.0, "running waited for it to serve: {:?}", view.timings_ms);
    let dir = PathBuf::from(&view.project_dir);
    assert!(dir.join("started.txt").exists(), "it ran in the hydrated directory");
    let url = view.preview_url.clone().expect("its URL");
    assert_eq!(reqwest::get(&url).await.unwrap().text().await.unwrap(), "served");
    stop_session(&app, &seeded.token, id).await;
}

#[tokio::test]
async fn a_dev_server_that_exits_before_it_serves_fails_its_session() {
    let app =
        spawn(PlatformOptions { agent_exec: Some("echo no server here; exit 3".into()), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    let failed = wait_for(&app, &seeded.token, id, SessionStatus::Failed).await;
    assert_eq!(failed.status, SessionStatus::Failed);
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("exited (exit status: 3) before its dev server answered"), "{reason}");
}

#[tokio::test]
async fn only_members_start_sessions_and_only_their_starter_sees_them() {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let stranger = app.create_user().await;
    let api = app.api();
    let reply = api.create_session(&app.user_token(stranger), seeded.project).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let reply = api.create_session(&app.container_token(seeded.project), seeded.project).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "a container token cannot start sessions");
    let reply = api.create_session(&app.anon_key, seeded.project).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let answer = api.request(Method::POST, "/orchestrator/v1/sessions", Some(&seeded.token), &[], "{not json").await;
    assert_eq!(answer.unwrap().status, StatusCode::BAD_REQUEST);

    let id = start_session(&app, &seeded).await;
    let reply = api.session(&app.user_token(stranger), id).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "another user does not see the session");
    // Another session's container token may not report for this one.
    let path = format!("/orchestrator/v1/sessions/{id}/status");
    let container = app.container_token(seeded.project);
    let reply = api.call(Method::POST, &path, Some(&container), Some(&json!({"status": "running"}))).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
}

/// The same session with the agent as an in-process task instead of a child process: PostgreSQL,
/// real TCP and local storage as before; it hydrates, follows, and stops with its session.
#[tokio::test]
async fn an_in_process_agent_runs_a_session_on_the_real_stack() {
    let launcher =
        fsync_agent::launcher::InProcessLauncher::new(fsync_store::Sources::system(), fsync_client::Transport::tcp());
    let app = spawn(PlatformOptions { launcher: Some(std::sync::Arc::new(launcher)), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!((view.status, view.agent_pid), (SessionStatus::Running, None), "{view:?}");
    let dir = PathBuf::from(&view.project_dir);
    assert_eq!(tree(&dir), expected_tree(&seeded, &BTreeMap::new()).await, "hydrated tree");
    seeded
        .client
        .upsert_project_file(seeded.project, "src/lib/a.ts", "export const a = 3;\n", "typescript", None)
        .await
        .unwrap();
    seeded.client.delete_project_file(seeded.project, "src/lib/deep/b.ts", None).await.unwrap();
    wait_converged(&seeded, &dir, &BTreeMap::new()).await;
    let stopped = stop_session(&app, &seeded.token, id).await;
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(!dir.exists(), "its directory is gone");
}

/// What an agent may report is bounded (the session view holds it for every reader): too many
/// timings, a long phase name, a negative or infinite time, or a long reason are refused, and the
/// session keeps what it had.
#[tokio::test]
async fn an_agent_report_beyond_its_bounds_is_refused() {
    use fsync_protocol::limits::{MAX_STATUS_PHASE_BYTES, MAX_STATUS_REASON_BYTES, MAX_STATUS_TIMINGS};
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, FILES).await;
    let id = start_session(&app, &seeded).await;
    wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    let token = app.session_token(id, seeded.project);
    let api = app.api();
    let path = format!("/orchestrator/v1/sessions/{id}/status");
    let many: BTreeMap<String, f64> = (0..=MAX_STATUS_TIMINGS).map(|i| (format!("phase{i}"), 1.0)).collect();
    let long_name = BTreeMap::from([("p".repeat(MAX_STATUS_PHASE_BYTES + 1), 1.0)]);
    for bad in [
        json!({"status": "running", "timings_ms": many}),
        json!({"status": "running", "timings_ms": long_name}),
        json!({"status": "running", "timings_ms": {"extract": -1.0}}),
        json!({"status": "failed", "reason": "x".repeat(MAX_STATUS_REASON_BYTES + 1)}),
    ] {
        let reply = api.call(Method::POST, &path, Some(&token), Some(&bad)).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
    }
    let reply = api.call(Method::POST, &path, Some(&token), Some(&json!({"status": "running"}))).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert!(view.timings_ms.len() <= MAX_STATUS_TIMINGS && view.reason.is_none(), "{view:?}");
    stop_session(&app, &seeded.token, id).await;
}

/// A member runs at most so many live sessions at once: one more is refused with 429 (PT429) and
/// starts nothing; stopping one makes room, and another member is not held to the first's count.
#[tokio::test]
async fn a_member_past_their_session_cap_is_refused_until_one_stops() {
    let app = spawn(PlatformOptions { max_sessions_per_user: Some(2), ..Default::default() }).await;
    let seeded = seed(&app, FILES).await;
    let first = start_session(&app, &seeded).await;
    let _second = start_session(&app, &seeded).await;
    let api = app.api();
    let refused = api.create_session(&seeded.token, seeded.project).await.unwrap();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert_eq!(refused.body["code"], "PT429");
    let editor = app.create_user().await;
    app.add_member(seeded.owner, seeded.project, editor, "editor").await;
    let theirs = api.create_session(&app.user_token(editor), seeded.project).await.unwrap();
    assert_eq!(theirs.status, StatusCode::CREATED, "another member has a count of their own: {}", theirs.body);

    stop_session(&app, &seeded.token, first).await;
    let again = api.create_session(&seeded.token, seeded.project).await.unwrap();
    assert_eq!(again.status, StatusCode::CREATED, "a stopped session makes room: {}", again.body);
}
