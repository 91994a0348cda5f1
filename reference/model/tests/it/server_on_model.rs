//! The reference server runs on the model exactly as on PostgreSQL: the same HTTP and Realtime
//! code, with `MemStore` behind the `Store` trait.

use fsync_client::realtime::{ChangeSource, FeedConfig, FeedEvent, ProjectFeed};
use fsync_client::{ClientConfig, ClientError, FsyncClient, ProjectStore, RetryPolicy};
use fsync_model::MemStore;
use fsync_protocol::jwt::{self, Secret};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use fsync_reference::ServerBuilder;
use fsync_store::data::RpcCall;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_server_serves_rpcs_and_realtime_from_the_model() {
    let secret = Secret::new(DEV_JWT_SECRET);
    let server = ServerBuilder::new(Arc::new(MemStore::new())).secret(secret.clone()).start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));

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
        Some(FeedEvent::Changes { seq: 1, source: ChangeSource::Live, changes, .. }) => {
            assert_eq!(changes[0].path(), "src/main.ts")
        }
        other => panic!("expected the live change, got {other:?}"),
    }
    let files = client.list_current_files(project.id).await.unwrap();
    assert_eq!(files[0].content.as_deref(), Some("one"));
}

/// A server instance stops completely (its sockets closed, the store no longer delivering to it)
/// and a new one starts on the same store and address in the same process; a feed that followed
/// the first reconnects to the second and catches up what was written in between.
#[tokio::test]
async fn a_server_stops_and_starts_again_in_one_process() {
    use fsync_client::Transport;
    let secret = Secret::new(DEV_JWT_SECRET);
    let store = Arc::new(MemStore::new());
    let net = fsync_testkit::MemoryNet::new();
    let sources = fsync_store::Sources::system();
    let start = || async {
        let server =
            ServerBuilder::new(store.clone()).secret(secret.clone()).sources(sources.clone()).start().await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(net.listen("fsync.test", 80), async {
            let _ = stopped.await;
        }));
        (stop, served)
    };
    let (stop, served) = start().await;
    assert_eq!(store.listeners(), 1);

    let url = "http://fsync.test";
    let mut claims = jwt::claims_for("authenticated", fsync_testkit::now_s(), 600);
    claims.insert("sub".into(), json!(fsync_testkit::new_id()));
    let token = jwt::sign(&secret, &claims);
    let anon = anon_key(&secret);
    let config = ClientConfig::new(url, &anon).token(&token).transport(Transport::new(net.dialer()));
    let client = Arc::new(FsyncClient::new(config).unwrap());
    let project = client.create_project("restarted", None).await.unwrap().id;
    let mut feed_config = FeedConfig::new(url, &anon, &token, project);
    feed_config.reconnect.base_delay = Duration::from_millis(10);
    let (_feed, mut events) = ProjectFeed::start(feed_config, client.clone(), Some(0), 16);
    assert_eq!(next(&mut events).await, FeedEvent::Subscribed);

    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert_eq!(store.listeners(), 0, "the stopped instance's feed from the store is gone");
    assert!(matches!(next(&mut events).await, FeedEvent::Disconnected { .. }));
    // Written while no instance serves: only the store holds it.
    let auth = fsync_store::RequestAuth { role: "authenticated".into(), claims: claims.clone() };
    let Value::Object(args) = json!({"project_uuid": project, "p_file_path": "a.ts", "p_content": "in between",
        "p_file_type": "typescript"})
    else {
        unreachable!()
    };
    store.call(&auth, &RpcCall { function: "upsert_project_file".into(), args, read_only: false }).unwrap();
    let (_stop, _served) = start().await;
    let caught_up = loop {
        match next(&mut events).await {
            FeedEvent::Changes { seq, changes, source, .. } => break (seq, changes[0].path().to_owned(), source),
            FeedEvent::Disconnected { .. } | FeedEvent::Subscribed => {}
        }
    };
    assert_eq!(caught_up, (1, "a.ts".to_owned(), ChangeSource::CatchUp));
    client.upsert_project_file(project, "b.ts", "after the restart", "typescript", None).await.unwrap();
    match next(&mut events).await {
        FeedEvent::Changes { seq: 2, source: ChangeSource::Live, .. } => {}
        other => panic!("expected the live change, got {other:?}"),
    }
    assert_eq!(store.listeners(), 1);
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<FeedEvent>) -> FeedEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("an event in time").expect("the feed runs")
}

/// A broadcast lost without a word (Supabase's `realtime.send` may lose one) leaves no gap when it
/// was the last of a burst; the feed catches up anyway once it has been quiet for a while.
#[tokio::test]
async fn a_silently_lost_last_broadcast_is_caught_up_when_the_feed_goes_quiet() {
    let secret = Secret::new(DEV_JWT_SECRET);
    let store = Arc::new(MemStore::new());
    let server = ServerBuilder::new(store.clone()).secret(secret.clone()).start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let mut claims = jwt::claims_for("authenticated", fsync_testkit::now_s(), 600);
    claims.insert("sub".into(), json!(fsync_testkit::new_id()));
    let token = jwt::sign(&secret, &claims);
    let anon = anon_key(&secret);
    let client =
        Arc::new(FsyncClient::new(ClientConfig::new(&url, &anon).token(&token).retry(RetryPolicy::none())).unwrap());
    let project = client.create_project("lossy", None).await.unwrap().id;
    let mut config = FeedConfig::new(&url, &anon, &token, project);
    config.heartbeat_interval = Duration::from_millis(100);
    config.idle_catch_up = Duration::from_millis(300);
    let (_feed, mut events) = ProjectFeed::start(config, client.clone(), Some(0), 16);
    assert_eq!(next(&mut events).await, FeedEvent::Subscribed);

    store.drop_broadcasts(Some(1.0), 1);
    client.upsert_project_file(project, "lost.ts", "its event never comes", "typescript", None).await.unwrap();
    match next(&mut events).await {
        FeedEvent::Changes { seq: 1, source: ChangeSource::CatchUp, changes, .. } => {
            assert_eq!(changes[0].path(), "lost.ts")
        }
        other => panic!("expected the change through a catch-up, got {other:?}"),
    }
}
