//! The client against the real reference server and PostgreSQL, and its retry policy against a
//! scripted HTTP peer.

mod feed;
mod retries;
mod rpcs;
mod sequencer;
mod store;

use fsync_client::{ClientConfig, FsyncClient, RetryPolicy};
use fsync_testkit::TestApp;
use std::sync::Arc;
use uuid::Uuid;

/// A client for `user` on `app`.
pub fn client_for(app: &TestApp, token: String) -> Arc<FsyncClient> {
    let config = ClientConfig::new(&app.url, &app.anon_key).token(token).retry(RetryPolicy::none());
    Arc::new(FsyncClient::new(config).expect("client"))
}

/// An app, a user with a project, and that user's client.
pub async fn setup() -> (TestApp, Uuid, Uuid, Arc<FsyncClient>) {
    let app = fsync_testkit::spawn_app(Default::default()).await;
    let owner = app.create_user().await;
    let project = app.create_project(owner).await;
    let client = client_for(&app, app.user_token(owner));
    (app, owner, project, client)
}
