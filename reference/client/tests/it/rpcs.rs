//! Every typed call round-trips against the real server.

use crate::{client_for, setup};
use fsync_client::ClientError;
use fsync_protocol::api::{BulkEntry, MemberRole};
use fsync_protocol::content_hash;

#[tokio::test]
async fn every_rpc_has_a_typed_call() {
    let (app, _owner, project, client) = setup().await;

    let created = client.upsert_project_file(project, "src/a.ts", "a", "typescript", Some(0)).await.unwrap();
    assert_eq!((created.version, created.seq, created.noop), (1, 1, false));
    assert_eq!(created.content_hash, content_hash("a"));
    let noop = client.upsert_project_file(project, "src/a.ts", "a", "typescript", None).await.unwrap();
    assert!(noop.noop);

    let bulk = client
        .bulk_upsert_project_files(
            project,
            &[BulkEntry::upsert("b.md", "markdown", "# b"), BulkEntry::delete("src/a.ts").expecting(Some(1))],
        )
        .await
        .unwrap();
    assert_eq!(bulk.seq, 2);
    assert_eq!(bulk.files.len(), 2);
    assert!(bulk.files[1].deleted);

    let files = client.list_current_files(project).await.unwrap();
    assert_eq!(files.iter().map(|f| f.file_path.as_str()).collect::<Vec<_>>(), ["b.md"]);

    let deleted = client.delete_project_file(project, "b.md", Some(1)).await.unwrap();
    assert_eq!((deleted.version, deleted.seq), (2, 3));

    let changes = client.list_changes_since(project, 1).await.unwrap();
    assert_eq!(changes.seq, 3);
    assert_eq!(changes.changes.len(), 2);
    assert!(changes.changes.iter().all(|c| c.deleted));

    // Projects, profiles and members.
    let friend = fsync_testkit::new_id();
    let friend_client = client_for(&app, app.user_token(friend));
    let spoof = friend_client.ensure_user_profile(None, Some("ceo@example.test"), None).await.unwrap_err();
    assert_eq!(spoof.status(), Some(403), "a user cannot claim an email their token lacks");
    let own_email = format!("{friend}@example.test");
    let profile = friend_client.ensure_user_profile(None, Some(&own_email), Some("Friend")).await.unwrap();
    assert_eq!((profile.id, profile.display_name.as_deref()), (friend, Some("Friend")));
    client.add_project_member(project, friend, MemberRole::Viewer).await.unwrap();
    assert_eq!(friend_client.list_changes_since(project, 0).await.unwrap().seq, 3);
    let refused = friend_client.upsert_project_file(project, "x", "x", "text", None).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    client.remove_project_member(project, friend).await.unwrap();
    let gone = friend_client.list_current_files(project).await.unwrap_err();
    assert_eq!(gone.status(), Some(404));
    let own = friend_client.create_project("friend's", None).await.unwrap();
    assert_eq!(own.owner_id, friend);
}

#[tokio::test]
async fn conflicts_are_typed_and_bad_input_is_refused_before_sending() {
    let (_app, _owner, project, client) = setup().await;
    client.upsert_project_file(project, "a.txt", "1", "text", None).await.unwrap();
    client.upsert_project_file(project, "a.txt", "2", "text", None).await.unwrap();
    match client.upsert_project_file(project, "a.txt", "3", "text", Some(1)).await {
        Err(ClientError::Conflict { details, body }) => {
            assert_eq!((details.current_version, details.expected_version), (2, 1));
            assert_eq!(body.code, "PT409");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    for (path, file_type) in [("../x", "text"), ("/x", "text"), ("ok.txt", "exe")] {
        let err = client.upsert_project_file(project, path, "x", file_type, None).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidInput(_)), "{path} {file_type}: {err}");
    }
    let big = "x".repeat(fsync_protocol::limits::MAX_CONTENT_BYTES + 1);
    assert!(matches!(
        client.upsert_project_file(project, "big", &big, "text", None).await,
        Err(ClientError::InvalidInput(_))
    ));
    assert_eq!(client.list_changes_since(project, 0).await.unwrap().seq, 2, "nothing was sent");
}
