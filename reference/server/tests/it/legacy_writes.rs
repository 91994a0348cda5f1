//! Table writes from unmigrated clients (`FSYNC_USE_RPC` off) on `legacy_project_files`: each
//! becomes the same versioned write an RPC makes (version bump, one `seq`, a server event), under
//! the RPCs' access rules, so migrated and unmigrated writers share one gapless history.

use crate::{fixture, Fixture};
use axum::http::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// `method` on `/rest/v1/legacy_project_files{query}` as `token` with `prefer`; status and body.
async fn legacy(f: &Fixture, token: &str, method: Method, query: &str, prefer: &str, body: Value) -> (u16, Value) {
    let path = format!("/rest/v1/legacy_project_files{query}");
    let mut headers = vec![("content-type", "application/json")];
    if !prefer.is_empty() {
        headers.push(("prefer", prefer));
    }
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let answer = f.app.api().request(method, &path, Some(token), &headers, body).await.unwrap();
    let value = if answer.bytes.is_empty() { Value::Null } else { serde_json::from_slice(&answer.bytes).unwrap() };
    (answer.status, value)
}

/// (path, version, seq, current, deleted, type, content) of every row of the project.
async fn history(f: &Fixture) -> Vec<(String, i32, i64, bool, bool, String, Option<String>)> {
    let client = f.app.db.connect().await.unwrap();
    client
        .query(
            "SELECT file_path, version, seq, is_current_version, is_deleted, file_type, content
             FROM public.project_files WHERE project_id = $1 ORDER BY seq, file_path",
            &[&f.project],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect()
}

fn key(f: &Fixture, path: &str) -> String {
    format!("?project_id=eq.{}&path=eq.{path}", f.project)
}

#[tokio::test]
async fn inserts_upserts_updates_and_deletes_become_versioned_writes() {
    let f = fixture().await;
    let t = &f.owner_token;
    let row = json!({"project_id": f.project, "path": "src/a.ts", "type": "typescript", "content": "one"});
    let (status, body) = legacy(&f, t, Method::POST, "", "return=representation", row.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body[0]["path"], "src/a.ts");
    assert_eq!(body[0]["content"], "one");
    assert!(body[0]["id"].is_string() && body[0]["updated_at"].is_string(), "{body}");

    // A plain insert of a live path conflicts, as a unique key would; ignore-duplicates skips it.
    let again = json!({"project_id": f.project, "path": "src/a.ts", "content": "two"});
    let (status, body) = legacy(&f, t, Method::POST, "", "", again.clone()).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("PT409")), "{body}");
    let (status, body) =
        legacy(&f, t, Method::POST, "", "resolution=ignore-duplicates,return=representation", again.clone()).await;
    assert_eq!((status, body), (201, json!([])));
    // An upsert (supabase-js `.upsert()`) writes a new version; no type: inferred from the path.
    let (status, _) =
        legacy(&f, t, Method::POST, "?on_conflict=project_id,path", "resolution=merge-duplicates", again).await;
    assert_eq!(status, 201);
    // An update, then a delete, by filters.
    let (status, body) =
        legacy(&f, t, Method::PATCH, &key(&f, "src/a.ts"), "return=representation", json!({"content": "three"})).await;
    assert_eq!((status, body[0]["content"].as_str()), (200, Some("three")), "{body}");
    let (status, _) = legacy(&f, t, Method::DELETE, &key(&f, "src/a.ts"), "", Value::Null).await;
    assert_eq!(status, 204);
    // No rows: nothing written, as PostgREST answers.
    assert_eq!(legacy(&f, t, Method::POST, "", "return=representation", json!([])).await, (201, json!([])));
    // Several rows in one insert: one versioned write each.
    let rows = json!([
        {"project_id": f.project, "path": "b.md", "content": "b"},
        {"project_id": f.project, "path": "c.weird", "type": "nonsense", "content": "c"},
    ]);
    assert_eq!(legacy(&f, t, Method::POST, "", "", rows).await.0, 201);

    let h = history(&f).await;
    let expect = vec![
        ("src/a.ts".to_owned(), 1, 1, false, false, "typescript".to_owned(), Some("one".to_owned())),
        ("src/a.ts".to_owned(), 2, 2, false, false, "typescript".to_owned(), Some("two".to_owned())),
        ("src/a.ts".to_owned(), 3, 3, false, false, "typescript".to_owned(), Some("three".to_owned())),
        ("src/a.ts".to_owned(), 4, 4, true, true, "typescript".to_owned(), None),
        ("b.md".to_owned(), 1, 5, true, false, "markdown".to_owned(), Some("b".to_owned())),
        ("c.weird".to_owned(), 1, 6, true, false, "text".to_owned(), Some("c".to_owned())),
    ];
    assert_eq!(h, expect);
    assert_eq!(f.seq().await, 6, "one seq per versioned write, no gap");
    // The table writes are counted apart from the RPCs, so a rollout sees them stop.
    let scrape = f.app.scrape().await;
    let counted = "fsync_rpc_duration_seconds_count{function=\"legacy_project_files\",outcome=\"201\"}";
    assert_eq!(fsync_testkit::metric(&scrape, counted), Some(5.0), "{scrape}");
    // Every write sent its server event, in seq order.
    let events = f.events().await;
    let names: Vec<(&str, i64)> = events.iter().map(|(e, p)| (e.as_str(), p["seq"].as_i64().unwrap())).collect();
    assert_eq!(
        names,
        [
            ("file:update", 1),
            ("file:update", 2),
            ("file:update", 3),
            ("file:delete", 4),
            ("file:update", 5),
            ("file:update", 6)
        ]
    );
}

#[tokio::test]
async fn legacy_writes_keep_the_rpcs_access_rules_and_refuse_bad_requests() {
    let f = fixture().await;
    let row = json!({"project_id": f.project, "path": "a.txt", "content": "x"});
    let viewer = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;
    let (status, body) = legacy(&f, &f.app.user_token(viewer), Method::POST, "", "", row.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("42501")), "viewers read only: {body}");
    let stranger = f.app.user_token(f.app.create_user().await);
    assert_eq!(legacy(&f, &stranger, Method::POST, "", "", row.clone()).await.0, 404, "not a member");
    let container = f.app.container_token(f.project);
    assert_eq!(legacy(&f, &container, Method::POST, "", "", row.clone()).await.0, 403, "containers never write");
    let anon = f.app.anon_key.clone();
    assert_eq!(legacy(&f, &anon, Method::POST, "", "", row.clone()).await.0, 403, "anon has no grant");

    // Bad input: a bad path, an unknown column, a move, no filter, another relation, a bad target.
    let bad = json!({"project_id": f.project, "path": "../x", "content": "x"});
    assert_eq!(legacy(&f, &f.owner_token, Method::POST, "", "", bad).await.1["code"], "22023");
    let unknown = json!({"project_id": f.project, "path": "a.txt", "colour": "red"});
    assert_eq!(legacy(&f, &f.owner_token, Method::POST, "", "", unknown).await.1["code"], "42703");
    assert_eq!(legacy(&f, &f.owner_token, Method::POST, "", "", row.clone()).await.0, 201);
    let moved = legacy(&f, &f.owner_token, Method::PATCH, &key(&f, "a.txt"), "", json!({"path": "b.txt"})).await;
    assert_eq!((moved.0, moved.1["code"].as_str()), (400, Some("22023")), "{}", moved.1);
    let everything = legacy(&f, &f.owner_token, Method::DELETE, "", "", Value::Null).await;
    assert_eq!((everything.0, everything.1["code"].as_str()), (400, Some("21000")), "{}", everything.1);
    let (status, body) = f
        .app
        .api()
        .request(Method::POST, "/rest/v1/project_files", Some(&f.app.service_key), &[], row.to_string())
        .await
        .map(|a| (a.status, serde_json::from_slice::<Value>(&a.bytes).unwrap()))
        .unwrap();
    assert_eq!((status, body["code"].as_str()), (405, Some("FSYNC405")), "the table itself takes no writes: {body}");
    let target =
        legacy(&f, &f.owner_token, Method::POST, "?on_conflict=path", "resolution=merge-duplicates", row).await;
    assert_eq!(target.1["code"], "42P10");
    // None of it changed anything: one file, one version.
    assert_eq!(history(&f).await.len(), 1);
    assert_eq!(f.seq().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrated_and_unmigrated_writers_share_one_gapless_history() {
    let f = Arc::new(fixture().await);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let content = format!("writer {writer} edit {i}");
                let status = if writer % 2 == 0 {
                    f.upsert("shared.ts", &content, None).await.0.as_u16()
                } else {
                    let row = json!({"project_id": f.project, "path": "shared.ts", "content": content});
                    legacy(&f, &f.owner_token, Method::POST, "", "resolution=merge-duplicates", row).await.0
                };
                assert!(status == 200 || status == 201, "{status}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let h = history(&f).await;
    let versions: Vec<i32> = h.iter().map(|r| r.1).collect();
    let seqs: Vec<i64> = h.iter().map(|r| r.2).collect();
    assert_eq!(versions, (1..=80).collect::<Vec<_>>(), "versions without a gap or a repeat");
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>(), "one seq per write, in version order");
    assert_eq!(h.iter().filter(|r| r.3).count(), 1, "one head");
}

/// A table write of many rows spends one write token, as a bulk does, so the write rate limit
/// never makes a large one impossible.
#[tokio::test]
async fn a_table_write_of_many_rows_spends_one_write_token() {
    let f = fixture().await;
    f.set_write_limit(2.0, 0.001).await;
    let rows: Vec<Value> =
        (0..300).map(|i| json!({"project_id": f.project, "path": format!("gen/{i}.ts"), "content": "x"})).collect();
    assert_eq!(
        legacy(&f, &f.owner_token, Method::POST, "", "", Value::Array(rows)).await.0,
        201,
        "300 rows, one token"
    );
    let one = json!({"project_id": f.project, "path": "one.ts", "content": "x"});
    assert_eq!(legacy(&f, &f.owner_token, Method::POST, "", "", one).await.0, 201, "the second token");
    let two = json!({"project_id": f.project, "path": "two.ts", "content": "x"});
    let (status, body) = legacy(&f, &f.owner_token, Method::POST, "", "", two).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("PT429")), "{body}");
    assert_eq!(f.seq().await, 301);
}
