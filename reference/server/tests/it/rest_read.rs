//! The read subset of `GET /rest/v1/{relation}` that supabase-js's
//! `.from('project_files_current').select('*').eq('project_id', id)` needs, under RLS.

use crate::fixture;
use axum::http::Method;
use serde_json::Value;

/// `GET /rest/v1/{query}` as supabase-js sends it (`accept-profile`, and `accept` when given):
/// the status, the JSON body and the `content-range` header.
async fn get(f: &crate::Fixture, token: &str, query: &str, accept: Option<&str>) -> (u16, Value, Option<String>) {
    let mut headers = vec![("accept-profile", "public")];
    headers.extend(accept.map(|accept| ("accept", accept)));
    let path = format!("/rest/v1/{query}");
    let answer = f.app.api().request(Method::GET, &path, Some(token), &headers, "").await.unwrap();
    let range = answer.headers.get("content-range").map(|v| v.to_str().unwrap().to_owned());
    (answer.status, serde_json::from_slice(&answer.bytes).unwrap(), range)
}

#[tokio::test]
async fn select_star_eq_project_id_returns_current_files_under_rls() {
    let f = fixture().await;
    f.upsert("b.txt", "b", None).await;
    f.upsert("a.txt", "a", None).await;
    f.upsert("a.txt", "a2", None).await;
    f.upsert("gone.txt", "g", None).await;
    f.delete("gone.txt", None).await;

    let query = format!("project_files_current?select=*&project_id=eq.{}&order=file_path.asc", f.project);
    let (status, rows, range) = get(&f, &f.owner_token, &query, None).await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["file_path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["a.txt", "b.txt"]);
    assert_eq!(rows[0]["content"], "a2");
    assert_eq!(rows[0]["version"], 2);
    for column in
        ["id", "project_id", "file_type", "content_hash", "is_current_version", "created_by", "seq", "is_deleted"]
    {
        assert!(rows[0].get(column).is_some(), "select=* returns {column}");
    }
    assert_eq!(range.as_deref(), Some("0-1/*"));

    // A stranger gets an empty list, as RLS filters every row.
    let stranger = f.app.create_user().await;
    let (status, rows, _) = get(&f, &f.app.user_token(stranger), &query, None).await;
    assert_eq!((status, rows), (200, serde_json::json!([])));
}

#[tokio::test]
async fn column_lists_filters_limits_and_single_objects() {
    let f = fixture().await;
    for path in ["a.ts", "b.ts", "c.md"] {
        f.upsert(path, path, None).await;
    }
    let base = format!("project_files_current?project_id=eq.{}", f.project);
    let (_, rows, _) = get(
        &f,
        &f.owner_token,
        &format!("{base}&select=file_path,version&file_path=like.*.ts&order=file_path.desc"),
        None,
    )
    .await;
    assert_eq!(rows, serde_json::json!([{"file_path": "b.ts", "version": 1}, {"file_path": "a.ts", "version": 1}]));
    let (_, rows, range) =
        get(&f, &f.owner_token, &format!("{base}&select=file_path&order=file_path&limit=1&offset=1"), None).await;
    assert_eq!(rows, serde_json::json!([{"file_path": "b.ts"}]));
    assert_eq!(range.as_deref(), Some("1-1/*"));
    let (_, rows, _) =
        get(&f, &f.owner_token, &format!("{base}&select=file_path&file_path=in.(a.ts,c.md)&order=file_path"), None)
            .await;
    assert_eq!(rows, serde_json::json!([{"file_path": "a.ts"}, {"file_path": "c.md"}]));

    let single = "application/vnd.pgrst.object+json";
    let (status, row, _) =
        get(&f, &f.owner_token, &format!("{base}&select=file_path&file_path=eq.c.md"), Some(single)).await;
    assert_eq!((status, row), (200, serde_json::json!({"file_path": "c.md"})));
    let (status, body, _) = get(&f, &f.owner_token, &format!("{base}&select=file_path"), Some(single)).await;
    assert_eq!((status, body["code"].as_str()), (406, Some("PGRST116")));
}

#[tokio::test]
async fn unknown_relations_columns_and_bad_values_are_clear_errors() {
    let f = fixture().await;
    let (status, body, _) = get(&f, &f.owner_token, "no_such_table?select=*", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("PGRST205")));
    let (status, body, _) = get(&f, &f.owner_token, "project_files_current?select=nope", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("42703")));
    let (status, body, _) = get(&f, &f.owner_token, "project_files_current?project_id=eq.not-a-uuid", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("22P02")));
    let (status, body, _) = get(&f, &f.owner_token, "project_files_current?project_id=approx.1", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("PGRST100")));
}

#[tokio::test]
async fn every_comparison_operator_filters_as_postgrest_does() {
    let f = fixture().await;
    for (path, content) in [("A.ts", "1"), ("b.ts", "2"), ("c.md", "3")] {
        f.upsert(path, content, None).await;
    }
    let base = format!("project_files_current?project_id=eq.{}&select=file_path&order=file_path", f.project);
    let paths = |rows: Value| -> Vec<String> {
        rows.as_array().unwrap().iter().map(|r| r["file_path"].as_str().unwrap().to_owned()).collect()
    };
    for (filter, want) in [
        ("seq=neq.2", vec!["A.ts", "c.md"]),
        ("seq=gt.2", vec!["c.md"]),
        ("seq=gte.2", vec!["b.ts", "c.md"]),
        ("seq=lt.2", vec!["A.ts"]),
        ("seq=lte.2", vec!["A.ts", "b.ts"]),
        ("file_path=like.a*", vec![]),
        ("file_path=ilike.a*", vec!["A.ts"]),
        ("file_path=not.like.*.ts", vec!["c.md"]),
    ] {
        let (status, rows, _) = get(&f, &f.owner_token, &format!("{base}&{filter}"), None).await;
        assert_eq!(status, 200, "{filter}: {rows}");
        assert_eq!(paths(rows), want, "{filter}");
    }
}
