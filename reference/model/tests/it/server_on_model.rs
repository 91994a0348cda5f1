//! The reference server runs on the model exactly as on PostgreSQL: the same HTTP and Realtime
//! code, with `MemStore` behind the `Store` trait.

use fsync_client::realtime::{ChangeSource, FeedConfig, FeedEvent, ProjectFeed};
use fsync_client::{ClientConfig, ClientError, FsyncClient, ProjectStore, RetryPolicy};
use fsync_model::MemStore;
use fsync_protocol::jwt::{self, Secret};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use fsync_reference::realtime::RealtimeConfig;
use fsync_reference::AppState;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_server_serves_rpcs_and_realtime_from_the_model() {
    let secret = Secret::new(DEV_JWT_SECRET);
    let state = AppState::start(
        Arc::new(MemStore::new()),
        secret.clone(),
        RealtimeConfig::default(),
        fsync_store::Sources::system(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(fsync_reference::serve(listener, state, None, std::future::pending()));

    let user = fsync_testkit::new_id();
    let mut claims = jwt::claims_for("authenticated", fsync_testkit::now_s(), 600);
    claims.insert("sub".into(), json!(user));
    let token = jwt::sign(&secret, &claims);
    let anon = anon_key(&secret);
    let client =
        Arc::new(FsyncClient::new(ClientConfig::new(&url, &anon).token(&token).retry(RetryPolicy::none())).unwrap());

    let project = client.create_project("on the model", None).await.unwrap();
    let mut config = FeedConfig::new(&url, &anon, &token, project.id);
    config.heartbeat_interval = Duration::from_millis(300);
    let (_feed, mut events) = ProjectFeed::start(config, client.clone(), Some(0), 16);
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap(), Some(FeedEvent::Subscribed));

    let mut store = ProjectStore::new(client.clone(), project.id);
    store.load().await.unwrap();
    store.save("src/main.ts", "one", "typescript").await.unwrap();
    let stale = client.upsert_project_file(project.id, "src/main.ts", "two", "typescript", Some(0)).await.unwrap_err();
    assert!(matches!(stale, ClientError::Conflict { .. }), "{stale}");
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap() {
        Some(FeedEvent::Changes { seq: 1, source: ChangeSource::Live, changes }) => {
            assert_eq!(changes[0].path(), "src/main.ts")
        }
        other => panic!("expected the live change, got {other:?}"),
    }
    let files = client.list_current_files(project.id).await.unwrap();
    assert_eq!(files[0].content.as_deref(), Some("one"));
}
