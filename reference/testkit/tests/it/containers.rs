//! PostgreSQL in a container (issue 22): the migrations apply to it as they do to the machine's,
//! and the server serves the API on it with the same answers, row level security included.

use fsync_testkit::containers::{available, PostgresContainer, S3Container};
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

/// Storage on the S3 server in a container, with SigV4 credentials: objects go in and come back
/// whole and by range (the S3 server answers the ranged GET), and a wrong secret is refused and
/// writes nothing.
#[tokio::test]
async fn storage_on_the_s3_server_in_a_container_checks_its_credentials() {
    use fsync_reference::storage::{ByteRange, Storage};
    use futures_util::StreamExt;
    let Some(images) = available("the S3 server in a container").await else { return };
    let s3 = S3Container::start(&images, "fsync-e2e").await.expect("the S3 server in a container");
    let (url, aws) = s3.storage();
    let open = |settings: Vec<(String, String)>| {
        Storage::open_with(&url, move |name| settings.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("an S3 storage")
    };
    let storage = open(aws.clone());
    let bytes = bytes::Bytes::from((0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    storage.put("project-snapshots", "p/seq-1.zip", bytes.clone()).await.expect("put");
    assert_eq!(storage.get_bytes("project-snapshots", "p/seq-1.zip").await.expect("get"), bytes);
    for (range, expected) in
        [(ByteRange::FromTo(10, 19), &bytes[10..20]), (ByteRange::Suffix(5), &bytes[bytes.len() - 5..])]
    {
        let body = storage.open_read("project-snapshots", "p/seq-1.zip", Some(range)).await.expect("a ranged read");
        let read: Vec<u8> = body.stream.map(|chunk| chunk.expect("a chunk").to_vec()).concat().await;
        assert_eq!(read, expected, "{range:?}");
    }

    let mut wrong = aws;
    for (name, value) in &mut wrong {
        if name == "AWS_SECRET_ACCESS_KEY" {
            *value = "not-the-secret".into();
        }
    }
    let forged = open(wrong);
    assert!(forged.put("project-snapshots", "p/forged.zip", bytes::Bytes::from_static(b"x")).await.is_err());
    assert!(forged.get_bytes("project-snapshots", "p/seq-1.zip").await.is_err(), "a wrong secret reads nothing");
    assert!(!storage.exists("project-snapshots", "p/forged.zip").await.expect("head"), "and wrote nothing");
}
