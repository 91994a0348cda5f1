//! `ProjectFeed` against the real server: ordered live changes, catch-up on bulks, omitted
//! content, gaps, a late base seq and reconnects, and token refresh.

use crate::{client_for, setup};
use fsync_client::realtime::{ChangeSource, FeedConfig, FeedEvent, FeedHandle, ProjectFeed};
use fsync_client::RetryPolicy;
use fsync_protocol::api::BulkEntry;
use fsync_protocol::events::FileChange;
use fsync_testkit::{claims, TestApp};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

fn start(app: &TestApp, token: String, project: Uuid, base: Option<i64>) -> (FeedHandle, Receiver<FeedEvent>) {
    let mut config = FeedConfig::new(&app.url, &app.anon_key, token.clone(), project);
    config.heartbeat_interval = Duration::from_millis(500);
    config.reconnect = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        seed: Some(3),
    };
    ProjectFeed::start(config, client_for(app, token), base, 64)
}

async fn next(rx: &mut Receiver<FeedEvent>) -> FeedEvent {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("a feed event in time").expect("the feed is running")
}

/// The next change batch, skipping connection events.
async fn next_changes(rx: &mut Receiver<FeedEvent>) -> (i64, Vec<FileChange>, ChangeSource) {
    loop {
        if let FeedEvent::Changes { seq, changes, source, .. } = next(rx).await {
            return (seq, changes, source);
        }
    }
}

async fn subscribed(rx: &mut Receiver<FeedEvent>) {
    assert_eq!(next(rx).await, FeedEvent::Subscribed);
}

fn write_of(change: &FileChange) -> (&str, Option<&str>, i32) {
    match change {
        FileChange::Write { path, content, version, .. } => (path, content.as_deref(), *version),
        FileChange::Delete { path, version } => (path, None, -*version),
    }
}

#[tokio::test]
async fn live_changes_arrive_in_seq_order() {
    let (app, owner, project, client) = setup().await;
    let (handle, mut rx) = start(&app, app.user_token(owner), project, Some(0));
    subscribed(&mut rx).await;
    client.upsert_project_file(project, "a.ts", "a1", "typescript", None).await.unwrap();
    client.upsert_project_file(project, "b.ts", "b1", "typescript", None).await.unwrap();
    client.delete_project_file(project, "a.ts", None).await.unwrap();
    let got = [next_changes(&mut rx).await, next_changes(&mut rx).await, next_changes(&mut rx).await];
    assert_eq!(
        got.iter().map(|(s, _, src)| (*s, *src)).collect::<Vec<_>>(),
        [(1, ChangeSource::Live), (2, ChangeSource::Live), (3, ChangeSource::Live)]
    );
    assert_eq!(write_of(&got[0].1[0]), ("a.ts", Some("a1"), 1));
    assert_eq!(got[2].1, vec![FileChange::Delete { path: "a.ts".into(), version: 2 }]);
    assert_eq!(handle.last_seq(), Some(3));
}

#[tokio::test]
async fn bulks_and_omitted_content_are_fetched_as_one_unit() {
    let (app, owner, project, client) = setup().await;
    let (_handle, mut rx) = start(&app, app.user_token(owner), project, Some(0));
    subscribed(&mut rx).await;
    client
        .bulk_upsert_project_files(
            project,
            &[BulkEntry::upsert("x.md", "markdown", "x"), BulkEntry::upsert("y.md", "markdown", "y")],
        )
        .await
        .unwrap();
    let (seq, changes, source) = next_changes(&mut rx).await;
    assert_eq!((seq, source), (1, ChangeSource::CatchUp));
    let mut files: Vec<_> = changes.iter().map(write_of).collect();
    files.sort();
    assert_eq!(files, [("x.md", Some("x"), 1), ("y.md", Some("y"), 1)]);

    let big = "b".repeat(fsync_protocol::limits::MAX_INLINE_EVENT_BYTES + 10);
    client.upsert_project_file(project, "big.txt", &big, "text", None).await.unwrap();
    let (seq, changes, source) = next_changes(&mut rx).await;
    assert_eq!((seq, source), (2, ChangeSource::CatchUp));
    assert_eq!(write_of(&changes[0]), ("big.txt", Some(big.as_str()), 1));
}

#[tokio::test]
async fn a_lost_event_is_noticed_by_its_gap_and_caught_up() {
    let (app, owner, project, client) = setup().await;
    let (_handle, mut rx) = start(&app, app.user_token(owner), project, Some(0));
    subscribed(&mut rx).await;
    // A write whose broadcast is lost: its message row is deleted before commit, so the
    // notification finds nothing to deliver (like a dropped Supabase broadcast).
    let mut db = app.db.connect().await.unwrap();
    let tx = db.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&json!({"role": "authenticated", "sub": owner}).to_string()],
    )
    .await
    .unwrap();
    tx.execute("SELECT public.upsert_project_file($1, 'lost.ts', 'lost', 'typescript')", &[&project]).await.unwrap();
    tx.execute("DELETE FROM realtime.messages WHERE topic = $1", &[&format!("project:{project}")]).await.unwrap();
    tx.commit().await.unwrap();

    client.upsert_project_file(project, "next.ts", "next", "typescript", None).await.unwrap();
    let (seq, changes, source) = next_changes(&mut rx).await;
    assert_eq!((seq, source), (2, ChangeSource::CatchUp), "seq 2 arrived after seq 0: a gap");
    let mut files: Vec<_> = changes.iter().map(write_of).collect();
    files.sort();
    assert_eq!(files, [("lost.ts", Some("lost"), 1), ("next.ts", Some("next"), 1)]);
}

#[tokio::test]
async fn events_before_the_base_seq_are_buffered_and_nothing_is_lost_or_repeated() {
    let (app, owner, project, client) = setup().await;
    client.upsert_project_file(project, "in-snapshot.ts", "s", "typescript", None).await.unwrap(); // seq 1
    client.upsert_project_file(project, "before-join.ts", "b", "typescript", None).await.unwrap(); // seq 2
    let (handle, mut rx) = start(&app, app.user_token(owner), project, None);
    subscribed(&mut rx).await;
    client.upsert_project_file(project, "after-join.ts", "a", "typescript", None).await.unwrap(); // seq 3, buffered
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handle.last_seq(), None);
    // The consumer's snapshot reflected seq 1.
    handle.set_base_seq(1);
    let (seq, changes, source) = next_changes(&mut rx).await;
    assert_eq!((seq, source), (3, ChangeSource::CatchUp));
    let mut files: Vec<_> = changes.iter().map(write_of).collect();
    files.sort();
    assert_eq!(files, [("after-join.ts", Some("a"), 1), ("before-join.ts", Some("b"), 1)]);
    client.upsert_project_file(project, "later.ts", "l", "typescript", None).await.unwrap();
    let (seq, _, source) = next_changes(&mut rx).await;
    assert_eq!((seq, source), (4, ChangeSource::Live), "the buffered seq 3 event was not repeated");
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_catches_up() {
    let (app, owner, project, client) = setup().await;
    let (handle, mut rx) = start(&app, app.user_token(owner), project, Some(0));
    subscribed(&mut rx).await;
    client.upsert_project_file(project, "one.ts", "1", "typescript", None).await.unwrap();
    assert_eq!(next_changes(&mut rx).await.0, 1);

    app.close_realtime();
    // Written while the feed is away (it may or may not have reconnected yet).
    client.upsert_project_file(project, "two.ts", "2", "typescript", None).await.unwrap();
    client.upsert_project_file(project, "three.ts", "3", "typescript", None).await.unwrap();
    let mut saw = Vec::new();
    let mut paths = Vec::new();
    while handle.last_seq() != Some(3) || paths.len() < 2 {
        match next(&mut rx).await {
            FeedEvent::Changes { changes, .. } => paths.extend(changes.iter().map(|c| c.path().to_owned())),
            other => saw.push(other),
        }
    }
    assert!(matches!(saw.first(), Some(FeedEvent::Disconnected { .. })), "{saw:?}");
    assert!(saw.contains(&FeedEvent::Subscribed), "{saw:?}");
    paths.sort();
    assert_eq!(paths, ["three.ts", "two.ts"]);
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_channel_past_the_first_tokens_expiry() {
    let (app, owner, project, client) = setup().await;
    let short = app.token(claims(json!({"role": "authenticated", "sub": owner, "exp": fsync_testkit::now_s() + 2})));
    let (handle, mut rx) = start(&app, short, project, Some(0));
    subscribed(&mut rx).await;
    handle.set_token(app.user_token(owner));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    client.upsert_project_file(project, "late.ts", "l", "typescript", None).await.unwrap();
    let event = next(&mut rx).await;
    assert!(matches!(event, FeedEvent::Changes { seq: 1, source: ChangeSource::Live, .. }), "{event:?}");
}

#[tokio::test]
async fn a_session_that_fails_right_after_joining_backs_off_instead_of_spinning() {
    let (app, owner, project, _client) = setup().await;
    // A base seq ahead of the project: every join succeeds, then its catch-up is refused.
    let token = app.user_token(owner);
    let mut config = FeedConfig::new(&app.url, &app.anon_key, token.clone(), project);
    config.heartbeat_interval = Duration::from_secs(1);
    config.reconnect = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(400),
        seed: Some(5),
    };
    let (_handle, mut rx) = ProjectFeed::start(config, client_for(&app, token), Some(100), 1024);
    let mut disconnects = 0;
    let until = fsync_testkit::now() + Duration::from_millis(1500);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let FeedEvent::Disconnected { reason, .. } = event {
            assert!(reason.contains("catch up"), "{reason}");
            disconnects += 1;
        }
    }
    assert!(disconnects >= 2, "it does retry ({disconnects})");
    assert!(disconnects <= 12, "{disconnects} reconnects in 1.5 s: the backoff did not grow");
}
