//! The contract of every RPC (DESIGN §5, §6): versions, seq, no-ops, tombstones, re-creation,
//! compare-and-set, change listing and the events each write sends.

use crate::fixture;
use fsync_protocol::content_hash;
use serde_json::json;

#[tokio::test]
async fn upsert_creates_versions_and_bumps_seq_by_one() {
    let f = fixture().await;
    let (status, first) = f.upsert("src/a.ts", "one", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        json!({"file_path": "src/a.ts", "version": 1, "content_hash": content_hash("one"), "seq": 1, "noop": false})
    );

    let (_, second) = f.upsert("src/a.ts", "two", None).await;
    assert_eq!((second["version"].as_i64(), second["seq"].as_i64()), (Some(2), Some(2)));
    let (_, other) = f.upsert("src/b.ts", "b", None).await;
    assert_eq!((other["version"].as_i64(), other["seq"].as_i64()), (Some(1), Some(3)));
    assert_eq!(f.seq().await, 3);

    // Exactly one head per path, the newest; older versions keep their rows.
    let client = f.app.db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT version, is_current_version, parent_version_id IS NOT NULL, created_by, last_modified_by
             FROM public.project_files WHERE project_id = $1 AND file_path = 'src/a.ts' ORDER BY version",
            &[&f.project],
        )
        .await
        .unwrap();
    let shape: Vec<(i32, bool, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(shape, vec![(1, false, false), (2, true, true)]);
    for row in &rows {
        assert_eq!(row.get::<_, uuid::Uuid>(3), f.owner, "created_by is stamped from auth.uid()");
        assert_eq!(row.get::<_, uuid::Uuid>(4), f.owner);
    }
}

#[tokio::test]
async fn identical_content_is_a_noop_that_succeeds_and_sends_nothing() {
    let f = fixture().await;
    f.upsert("a.txt", "same", None).await;
    let events_before = f.events().await.len();
    let rows_before = f.row_count().await;

    // Even with a stale expected_version: a retry after a lost response must succeed.
    for expected in [None, Some(0), Some(1), Some(7)] {
        let (status, body) = f.upsert("a.txt", "same", expected).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["noop"], true);
        assert_eq!(body["version"], 1);
        assert_eq!(body["seq"], 1);
    }
    assert_eq!(f.seq().await, 1);
    assert_eq!(f.row_count().await, rows_before);
    assert_eq!(f.events().await.len(), events_before);
}

#[tokio::test]
async fn delete_writes_a_tombstone_and_recreation_continues_the_versions() {
    let f = fixture().await;
    f.upsert("a.txt", "v1", None).await;
    let (status, deleted) = f.delete("a.txt", Some(1)).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"file_path": "a.txt", "version": 2, "seq": 2, "noop": false}));
    assert_eq!(f.current_files().await, json!([]), "a deleted file is not current");

    // Deleting again is a no-op; deleting a path never written is 404.
    let (status, again) = f.delete("a.txt", None).await;
    assert_eq!((status.as_u16(), again["noop"].clone(), again["version"].clone()), (200, json!(true), json!(2)));
    let (status, missing) = f.delete("never.txt", None).await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["code"], "PT404");

    // Re-creation: the tombstone's version counts.
    let (status, recreated) = f.upsert("a.txt", "v3", Some(2)).await;
    assert_eq!(status, 200, "{recreated}");
    assert_eq!((recreated["version"].as_i64(), recreated["seq"].as_i64()), (Some(3), Some(3)));
    let files = f.current_files().await;
    assert_eq!(files[0]["content"], "v3");
    assert_eq!(files[0]["version"], 3);

    let client = f.app.db.connect().await.unwrap();
    let tombstone = client
        .query_one(
            "SELECT is_deleted, content IS NULL, content_hash IS NULL, file_type FROM public.project_files
             WHERE project_id = $1 AND file_path = 'a.txt' AND version = 2",
            &[&f.project],
        )
        .await
        .unwrap();
    assert!(tombstone.get::<_, bool>(0) && tombstone.get::<_, bool>(1) && tombstone.get::<_, bool>(2));
    assert_eq!(tombstone.get::<_, String>(3), "text", "a tombstone keeps the file type");
}

#[tokio::test]
async fn expected_version_null_zero_and_n() {
    let f = fixture().await;
    // 0: create only.
    assert_eq!(f.upsert("a", "1", Some(0)).await.0, 200);
    let (status, conflict) = f.upsert("a", "2", Some(0)).await;
    assert_eq!(status, 409, "{conflict}");
    // n: the head must be version n.
    assert_eq!(f.upsert("a", "2", Some(1)).await.0, 200);
    assert_eq!(f.upsert("a", "3", Some(1)).await.0, 409);
    assert_eq!(f.upsert("a", "3", Some(3)).await.0, 409, "a version from the future conflicts too");
    // null: last writer wins.
    let (status, body) = f.upsert("a", "3", None).await;
    assert_eq!((status.as_u16(), body["version"].as_i64()), (200, Some(3)));
    // 0 on a deleted path: there is no live file, so create-only succeeds.
    assert_eq!(f.delete("a", Some(3)).await.0, 200);
    let (status, body) = f.upsert("a", "5", Some(0)).await;
    assert_eq!((status.as_u16(), body["version"].as_i64()), (200, Some(5)));
    // Delete with a stale version conflicts; negative versions are invalid input.
    assert_eq!(f.delete("a", Some(4)).await.0, 409);
    let (status, body) = f.upsert("a", "6", Some(-1)).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("22023")));
}

#[tokio::test]
async fn a_stale_expected_version_gets_409_with_the_head_in_details() {
    let f = fixture().await;
    f.upsert("src/app.ts", "a", None).await;
    f.upsert("src/app.ts", "b", None).await;
    let rows_before = f.row_count().await;
    let (status, body) = f.upsert("src/app.ts", "c", Some(1)).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "PT409");
    let details: fsync_protocol::api::ConflictDetails =
        serde_json::from_str(body["details"].as_str().expect("details is a string")).unwrap();
    assert_eq!(
        details,
        fsync_protocol::api::ConflictDetails {
            file_path: "src/app.ts".into(),
            expected_version: 1,
            current_version: 2,
            deleted: false
        }
    );
    assert!(body["hint"].as_str().unwrap().contains("expected_version 2"));
    assert_eq!(f.row_count().await, rows_before, "a conflict writes nothing");
    assert_eq!(f.seq().await, 2, "a conflict takes no seq");
}

#[tokio::test]
async fn every_write_sends_one_event_with_its_seq() {
    let f = fixture().await;
    f.upsert("a.ts", "x", None).await;
    f.delete("a.ts", None).await;
    f.bulk(json!([{"file_path": "b.ts", "file_type": "typescript", "content": "b"}])).await;
    let big = "z".repeat(fsync_protocol::limits::MAX_INLINE_EVENT_BYTES + 1);
    f.upsert("big.txt", &big, None).await;

    let events = f.events().await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["file:update", "file:delete", "bulk:apply", "file:update"]);
    let seqs: Vec<i64> = events.iter().map(|(_, p)| p["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    let update = &events[0].1;
    assert_eq!(update["file_path"], "a.ts");
    assert_eq!(update["content"], "x");
    assert_eq!(update["content_hash"], content_hash("x"));
    assert_eq!(update["content_omitted"], false);
    assert_eq!(update["version"], 1);
    assert!(update["timestamp"].is_string());
    assert_eq!(events[1].1["version"], 2);
    assert_eq!(
        events[2].1["files"],
        json!([{"file_path": "b.ts", "version": 1, "content_hash": content_hash("b"), "deleted": false}])
    );
    // Large content is left out of the event; consumers fetch it with list_changes_since.
    assert_eq!(events[3].1["content"], serde_json::Value::Null);
    assert_eq!(events[3].1["content_omitted"], true);
}

#[tokio::test]
async fn a_rolled_back_write_leaves_no_event() {
    let f = fixture().await;
    let client = f.app.db.connect().await.unwrap();
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT set_config('request.jwt.claims', '{{\"role\":\"authenticated\",\"sub\":\"{}\"}}', true);
             SELECT public.upsert_project_file('{}', 'x.ts', 'x', 'typescript');
             ROLLBACK;",
            f.owner, f.project
        ))
        .await
        .unwrap();
    assert!(f.events().await.is_empty());
    assert_eq!(f.seq().await, 0);
}

#[tokio::test]
async fn list_changes_since_returns_the_latest_row_per_path_after_a_seq() {
    let f = fixture().await;
    f.upsert("a", "a1", None).await; // seq 1
    f.upsert("b", "b1", None).await; // seq 2
    f.upsert("a", "a2", None).await; // seq 3
    f.delete("b", None).await; // seq 4
    let call = |since: i64| {
        let f = &f;
        async move {
            f.app
                .rpc(Some(&f.owner_token), "list_changes_since", json!({"project_uuid": f.project, "since_seq": since}))
                .await
        }
    };
    let (status, all) = call(0).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["seq"], 4);
    let changes: Vec<(String, i64, bool, i64)> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["file_path"].as_str().unwrap().to_owned(),
                c["version"].as_i64().unwrap(),
                c["deleted"].as_bool().unwrap(),
                c["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(changes, vec![("a".into(), 2, false, 3), ("b".into(), 2, true, 4)]);
    assert_eq!(all["changes"][0]["content"], "a2");

    let (_, tail) = call(3).await;
    assert_eq!(tail["changes"].as_array().unwrap().len(), 1);
    let (_, none) = call(4).await;
    assert_eq!(none, json!({"seq": 4, "changes": []}));
    let (status, ahead) = call(5).await;
    assert_eq!((status.as_u16(), ahead["code"].as_str()), (400, Some("22023")));
    let (status, _) = call(-1).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn list_current_files_returns_heads_in_path_order() {
    let f = fixture().await;
    f.upsert("z.txt", "z", None).await;
    f.upsert("a.txt", "a", None).await;
    f.upsert("a.txt", "a2", None).await;
    let files = f.current_files().await;
    let paths: Vec<&str> = files.as_array().unwrap().iter().map(|r| r["file_path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["a.txt", "z.txt"]);
    let a = &files[0];
    assert_eq!((a["version"].as_i64(), a["seq"].as_i64(), a["content"].as_str()), (Some(2), Some(3), Some("a2")));
    for key in ["file_type", "content_hash", "updated_at"] {
        assert!(a.get(key).is_some(), "{key} present");
    }
}

#[tokio::test]
async fn the_service_role_writes_as_the_project_owner() {
    let f = fixture().await;
    let (status, body) = f
        .app
        .rpc(
            Some(&f.app.service_key),
            "upsert_project_file",
            json!({"project_uuid": f.project, "p_file_path": "gen.ts", "p_content": "g", "p_file_type": "typescript"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = f.app.db.connect().await.unwrap();
    let by: uuid::Uuid = client
        .query_one("SELECT created_by FROM public.project_files WHERE file_path = 'gen.ts'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by, f.owner);
}
