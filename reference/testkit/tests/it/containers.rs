//! PostgreSQL in a container (issue 22): the migrations apply to it as they do to the machine's,
//! and the server serves the API on it with the same answers, row level security included.

use fsync_testkit::containers::{available, PostgresContainer};
use fsync_testkit::{spawn_app, AppOptions, TestDb};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn the_migrations_apply_to_postgresql_in_a_container_and_the_api_works_on_it() {
    let Some(images) = available("PostgreSQL in a container").await else { return };
    let postgres = PostgresContainer::start(&images).await.expect("PostgreSQL in a container");
    let db = TestDb::migrated_on(&postgres.admin_url).await.expect("a migrated database in the container");
    let client = db.connect().await.unwrap();
    let version: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    assert!(version.starts_with("15."), "PostgreSQL 15 from Debian's packages: {version}");
    let applied: i64 = client.query_one("SELECT count(*) FROM fsync_migrations.applied", &[]).await.unwrap().get(0);
    assert_eq!(applied as usize, fsync_reference::pg::migrate::all().count(), "every migration, once");

    let app = spawn_app(AppOptions::on(Arc::new(db))).await;
    let (owner, stranger) = (app.create_user().await, app.create_user().await);
    let project = app.create_project(owner).await;
    let owner_token = app.user_token(owner);
    let write =
        json!({"project_uuid": project, "p_file_path": "src/App.tsx", "p_content": "v1", "p_file_type": "typescript"});
    let (status, written) = app.rpc(Some(&owner_token), "upsert_project_file", write).await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!((written["version"].clone(), written["seq"].clone()), (json!(1), json!(1)));
    let read = json!({"project_uuid": project});
    let (status, files) = app.rpc(Some(&owner_token), "list_current_files", read.clone()).await;
    assert_eq!((status, files.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    // Row level security as `authenticated`: a stranger sees nothing of the project.
    let (status, _) = app.rpc(Some(&app.user_token(stranger)), "list_current_files", read).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let as_stranger =
        app.api().read(Some(&app.user_token(stranger)), "project_files", "select=file_path").await.unwrap();
    assert_eq!(as_stranger.body, json!([]), "no rows through the table either");
}
