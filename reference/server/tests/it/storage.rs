//! `/storage/v1` as storage-js uses it, and the snapshot function: who may write and sign,
//! signed URLs (expired, tampered, for another object), ranges, public reads refused.

use crate::fixture;
use fsync_protocol::jwt;
use fsync_protocol::snapshot::SnapshotResponse;
use fsync_reference::storage::signing::download_claims;
use fsync_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn upload(
    app: &TestApp,
    token: &str,
    bucket: &str,
    name: &str,
    body: &[u8],
    upsert: bool,
) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/storage/v1/object/{bucket}/{name}", app.url))
        .header("apikey", &app.anon_key)
        .header("x-upsert", if upsert { "true" } else { "false" })
        .header("content-type", "application/octet-stream")
        .bearer_auth(token)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

async fn sign(app: &TestApp, token: &str, bucket: &str, name: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/storage/v1/object/sign/{bucket}/{name}", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, range: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app.http.get(format!("{}/storage/v1{path}", app.url));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.headers().clone(), response.bytes().await.unwrap().to_vec())
}

fn code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn snapshots_are_written_only_with_the_service_role_and_read_through_signed_urls() {
    let f = fixture().await;
    let app = &f.app;
    let name = format!("{}/seq-0.zip", f.project);
    let bytes: Vec<u8> = (0..100u8).collect();

    for token in [f.owner_token.clone(), app.container_token(f.project), app.anon_key.clone()] {
        let (status, body) = upload(app, &token, "project-snapshots", &name, &bytes, false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["message"], "new row violates row-level security policy");
    }
    let (status, body) = upload(app, &app.service_key, "project-snapshots", &name, &bytes, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Key"], format!("project-snapshots/{name}"));
    let (status, body) = upload(app, &app.service_key, "project-snapshots", &name, &bytes, false).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("Duplicate")));

    // Members and containers cannot sign snapshot objects: they do not see them.
    for token in [f.owner_token.clone(), app.container_token(f.project)] {
        let (status, body) = sign(app, &token, "project-snapshots", &name, json!({"expiresIn": 60})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, body) = sign(app, &app.service_key, "project-snapshots", &name, json!({"expiresIn": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = sign(app, &app.service_key, "project-snapshots", &name, json!({"expiresIn": 60})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signed = body["signedURL"].as_str().unwrap().to_owned();
    assert!(signed.starts_with(&format!("/object/sign/project-snapshots/{name}?token=")), "{signed}");

    let (status, headers, body) = get(app, &signed, None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, bytes.as_slice()));
    assert_eq!(headers["accept-ranges"], "bytes");
    let (status, headers, body) = get(app, &signed, Some("bytes=10-19")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &bytes[10..20]));
    assert_eq!(headers["content-range"], "bytes 10-19/100");
    let (status, _, body) = get(app, &signed, Some("bytes=-5")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &bytes[95..]));
    let (status, headers, _) = get(app, &signed, Some("bytes=100-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */100");

    // Tampered, expired, for another object, for another purpose, or none at all.
    let token = signed.split("token=").nth(1).unwrap();
    let mut tampered = token.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let base = format!("/object/sign/project-snapshots/{name}");
    let (status, _, body) = get(app, &format!("{base}?token={tampered}"), None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "InvalidJWT".into()));
    let expired =
        jwt::sign(&app.secret, &download_claims("project-snapshots", &name, fsync_testkit::now_s() - 120, 60));
    let (status, _, body) = get(app, &format!("{base}?token={expired}"), None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "ExpiredToken".into()));
    let other =
        jwt::sign(&app.secret, &download_claims("project-snapshots", "other/x.zip", fsync_testkit::now_s(), 60));
    let (status, _, body) = get(app, &format!("{base}?token={other}"), None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "InvalidSignature".into()));
    let (status, _, body) = get(app, &format!("{base}?token={}", app.service_key), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidSignature".into()),
        "an API key is no download token"
    );
    let (status, _, body) = get(app, &base, None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "InvalidJWT".into()));

    // The bucket is private: no public reads; members cannot read it authenticated either.
    let (status, _, body) = get(app, &format!("/object/public/project-snapshots/{name}"), None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "NoSuchBucket".into()));
    let response = app
        .http
        .get(format!("{}/storage/v1/object/authenticated/project-snapshots/{name}", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(&f.owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn project_files_take_writes_from_writers_and_signs_for_members_and_the_container() {
    let f = fixture().await;
    let app = &f.app;
    let viewer = app.create_user().await;
    app.add_member(f.owner, f.project, viewer, "viewer").await;
    let stranger = app.create_user().await;
    let name = format!("{}/{}", f.project, "a".repeat(64));

    let (status, _) = upload(app, &app.user_token(viewer), "project-files", &name, b"x", false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers do not write");
    let (status, _) = upload(app, &app.user_token(stranger), "project-files", &name, b"x", false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other_project = format!("{}/{}", fsync_testkit::new_id(), "a".repeat(64));
    let (status, _) = upload(app, &f.owner_token, "project-files", &other_project, b"x", false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not under another project's folder");
    let (status, body) = upload(app, &f.owner_token, "project-files", &name, b"bytes", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for token in [app.user_token(viewer), app.container_token(f.project), f.owner_token.clone()] {
        let (status, body) = sign(app, &token, "project-files", &name, json!({"expiresIn": 30})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for token in [app.user_token(stranger), app.container_token(fsync_testkit::new_id())] {
        let (status, _) = sign(app, &token, "project-files", &name, json!({"expiresIn": 30})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Bad input: bucket, key, body; nothing is written.
    let (status, _) = upload(app, &f.owner_token, "no-such-bucket", "x/y", b"x", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A backslash in the key (HTTP clients resolve `..` themselves before sending).
    let (status, body) =
        upload(app, &f.owner_token, "project-files", &format!("{}/a%5Cb", f.project), b"x", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "InvalidRequest");
    let (status, _) = sign(app, &f.owner_token, "project-files", &name, json!({"expiresIn": "soon"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = app
        .http
        .post(format!("{}/storage/v1/object/project-files/{name}", app.url))
        .bearer_auth(&f.owner_token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no apikey");

    // A binary must be uploaded before it is recorded.
    let (status, body) = app
        .rpc(
            Some(&f.owner_token),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": "b".repeat(64)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("upload the bytes"), "{body}");
    let (status, body) = app
        .rpc(
            Some(&f.owner_token),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": "a".repeat(64)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = app
        .rpc(
            Some(&app.user_token(viewer)),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": "a".repeat(64)}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn build(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/functions/v1/build-project-snapshot", app.url))
        .header("apikey", &app.anon_key)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_snapshot_function_is_deterministic_reuses_a_seq_and_is_service_only() {
    let f = fixture().await;
    let app = &f.app;
    f.upsert("b/two.ts", "two", None).await;
    f.upsert("a.ts", "one", None).await;
    f.upsert("gone.ts", "x", None).await;
    f.delete("gone.ts", None).await;

    let (status, _) = build(app, &f.owner_token, json!({"projectId": f.project})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members may not call it");
    let (status, _) = build(app, &app.service_key, json!({"projectId": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = build(app, &app.service_key, json!({"projectId": fsync_testkit::new_id()})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = build(app, &app.service_key, json!({"projectId": f.project})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: SnapshotResponse = serde_json::from_value(body).unwrap();
    assert!(!first.reused);
    assert_eq!(first.manifest.seq, f.seq().await);
    let paths: Vec<&str> = first.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a.ts", "b/two.ts"], "sorted, live files only");
    let zip = app.http.get(&first.signed_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(fsync_protocol::hash::hex_sha256(&zip), first.manifest.zip_sha256);

    let (_, body) = build(app, &app.service_key, json!({"projectId": f.project})).await;
    let again: SnapshotResponse = serde_json::from_value(body).unwrap();
    assert!(again.reused, "the same seq reuses the stored snapshot");
    assert_eq!(again.manifest, first.manifest);

    // Same state, same bytes: remove the stored snapshot and build again.
    let storage = app.dir.path().join("storage/project-snapshots").join(f.project.to_string());
    std::fs::remove_dir_all(&storage).unwrap();
    let (_, body) = build(app, &app.service_key, json!({"projectId": f.project})).await;
    let rebuilt: SnapshotResponse = serde_json::from_value(body).unwrap();
    assert!(!rebuilt.reused);
    assert_eq!(rebuilt.manifest.zip_sha256, first.manifest.zip_sha256, "deterministic zip");

    f.upsert("a.ts", "changed", None).await;
    let (_, body) = build(app, &app.service_key, json!({"projectId": f.project})).await;
    let next: SnapshotResponse = serde_json::from_value(body).unwrap();
    assert!(!next.reused);
    assert_eq!(next.manifest.seq, first.manifest.seq + 1);
}
