//! Convergence (DESIGN §10, invariant 1): a project's changes, followed through `ProjectFeed`
//! and applied by `ProjectDir`, leave a directory equal to `list_current_files`, byte for byte.

use fsync_agent::apply::ProjectDir;
use fsync_client::realtime::{FeedConfig, FeedEvent, ProjectFeed};
use fsync_client::{ClientConfig, FsyncClient, RetryPolicy};
use fsync_protocol::api::BulkEntry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PATHS: &[&str] = &["index.html", "src/main.ts", "src/lib/a.ts", "src/lib/deep/b.ts", "docs/readme.md"];

#[tokio::test]
async fn random_edits_followed_by_the_feed_converge_on_disk() {
    let app = fsync_testkit::spawn_app(Default::default()).await;
    let owner = app.create_user().await;
    let project = app.create_project(owner).await;
    let token = app.user_token(owner);
    let client = Arc::new(
        FsyncClient::new(ClientConfig::new(&app.url, &app.anon_key).token(&token).retry(RetryPolicy::none())).unwrap(),
    );
    let mut config = FeedConfig::new(&app.url, &app.anon_key, &token, project);
    config.heartbeat_interval = Duration::from_millis(500);
    let (_feed, mut events) = ProjectFeed::start(config, client.clone(), Some(0), 64);
    let dir = ProjectDir::open(
        std::env::temp_dir().join(format!("fsync-converge-{}", fsync_testkit::new_id().simple())).join("p"),
    )
    .unwrap();

    // Seeded, so a failure replays: the seed is in the assertion messages.
    let seed = 20261125;
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..60 {
        let path = PATHS[rng.usize(0..PATHS.len())];
        match rng.u8(0..10) {
            0..=5 => {
                client.upsert_project_file(project, path, &format!("{i} {path}"), "text", None).await.unwrap();
            }
            6..=7 => {
                let _ = client.delete_project_file(project, path, None).await;
            }
            _ => {
                let other = PATHS[rng.usize(0..PATHS.len())];
                let mut entries = vec![BulkEntry::upsert(path, "text", format!("bulk {i}"))];
                if other != path {
                    entries.push(BulkEntry::upsert(other, "text", format!("bulk {i} b")));
                }
                client.bulk_upsert_project_files(project, &entries).await.unwrap();
            }
        }
    }
    let target = client.list_changes_since(project, 0).await.unwrap().seq;
    let mut applied_seq = 0;
    while applied_seq != target {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(FeedEvent::Changes { seq, changes, .. })) => {
                assert!(seq > applied_seq, "seed {seed}: seq went from {applied_seq} to {seq}");
                dir.apply(&changes).unwrap_or_else(|e| panic!("seed {seed}: apply: {e}"));
                applied_seq = seq;
            }
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: the feed stopped short of seq {target}: {other:?}"),
        }
    }
    let expected: BTreeMap<String, Vec<u8>> = client
        .list_current_files(project)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.file_path, f.content.unwrap_or_default().into_bytes()))
        .collect();
    assert_eq!(dir.tree().unwrap(), expected, "seed {seed}: the directory equals list_current_files");
    let _ = std::fs::remove_dir_all(dir.root().parent().unwrap());
}
