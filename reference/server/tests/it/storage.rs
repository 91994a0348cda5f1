//! `/storage/v1` as storage-js uses it, and the snapshot function: who may write and sign,
//! signed URLs (expired, tampered, for another object), ranges, public reads refused.

use crate::fixture;
use axum::http::Method;
use fsync_protocol::jwt;
use fsync_protocol::snapshot::SnapshotResponse;
use fsync_reference::storage::signing::download_claims;
use serde_json::{json, Value};

fn code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value["error"].as_str().unwrap_or_default().to_owned()
}

/// A snapshot's record: its seq, and for how many seconds from now a URL signed for it works.
async fn signed_until(app: &fsync_testkit::TestApp, project: uuid::Uuid, id: &str) -> Option<(i64, i64)> {
    let client = app.db.connect().await.unwrap();
    let statement =
        "SELECT seq, signed_until_s FROM fsync.project_snapshots WHERE project_id = $1 AND snapshot_id = $2";
    let row = client.query_opt(statement, &[&project, &id]).await.unwrap()?;
    Some((row.get(0), row.get::<_, i64>(1) - fsync_testkit::now_s() as i64))
}

#[tokio::test]
async fn snapshots_are_written_only_with_the_service_role_and_read_through_signed_urls() {
    let f = fixture().await;
    let app = &f.app;
    let api = app.api();
    let name = format!("{}/seq-0.zip", f.project);
    let bytes: Vec<u8> = (0..100u8).collect();

    for token in [f.owner_token.clone(), app.container_token(f.project), app.anon_key.clone()] {
        let reply = api.upload(Some(&token), "project-snapshots", &name, bytes.clone(), false).await.unwrap();
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert_eq!(reply.body["message"], "new row violates row-level security policy");
    }
    let reply = api.upload(Some(&app.service_key), "project-snapshots", &name, bytes.clone(), false).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["Key"], format!("project-snapshots/{name}"));
    let reply = api.upload(Some(&app.service_key), "project-snapshots", &name, bytes.clone(), false).await.unwrap();
    assert_eq!((reply.status, reply.body["error"].as_str()), (409, Some("Duplicate")));

    // Members and containers cannot sign snapshot objects: they do not see them.
    for token in [f.owner_token.clone(), app.container_token(f.project)] {
        let reply = api.sign(Some(&token), "project-snapshots", &name, 60).await.unwrap();
        assert_eq!(reply.status, 404, "{}", reply.body);
    }
    let reply = api.sign(Some(&app.service_key), "project-snapshots", &name, 0).await.unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = api.sign(Some(&app.service_key), "project-snapshots", &name, 60).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let signed = reply.body["signedURL"].as_str().unwrap().to_owned();
    assert!(signed.starts_with(&format!("/object/sign/project-snapshots/{name}?token=")), "{signed}");
    let (seq, signed_for) = signed_until(app, f.project, "seq-0").await.expect("the signing is recorded");
    assert_eq!(seq, 0);
    assert!((59..=61).contains(&signed_for), "kept while the URL lives: {signed_for} s");

    let whole = api.download_signed(&signed).await.unwrap();
    assert_eq!((whole.status, &whole.bytes[..]), (200, bytes.as_slice()));
    assert_eq!(whole.headers["accept-ranges"], "bytes");
    let part = api.download_signed_range(&signed, "bytes=10-19").await.unwrap();
    assert_eq!((part.status, &part.bytes[..]), (206, &bytes[10..20]));
    assert_eq!(part.headers["content-range"], "bytes 10-19/100");
    let part = api.download_signed_range(&signed, "bytes=-5").await.unwrap();
    assert_eq!((part.status, &part.bytes[..]), (206, &bytes[95..]));
    let past = api.download_signed_range(&signed, "bytes=100-").await.unwrap();
    assert_eq!(past.status, 416);
    assert_eq!(past.headers["content-range"], "bytes */100");

    // Tampered, expired, for another object, for another purpose, or none at all.
    let token = signed.split("token=").nth(1).unwrap();
    let mut tampered = token.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let base = format!("/object/sign/project-snapshots/{name}");
    let refused = api.download_signed(&format!("{base}?token={tampered}")).await.unwrap();
    assert_eq!((refused.status, code(&refused.bytes)), (400, "InvalidJWT".into()));
    let expired =
        jwt::sign(&app.secret, &download_claims("project-snapshots", &name, fsync_testkit::now_s() - 120, 60));
    let refused = api.download_signed(&format!("{base}?token={expired}")).await.unwrap();
    assert_eq!((refused.status, code(&refused.bytes)), (400, "ExpiredToken".into()));
    let other =
        jwt::sign(&app.secret, &download_claims("project-snapshots", "other/x.zip", fsync_testkit::now_s(), 60));
    let refused = api.download_signed(&format!("{base}?token={other}")).await.unwrap();
    assert_eq!((refused.status, code(&refused.bytes)), (400, "InvalidSignature".into()));
    let refused = api.download_signed(&format!("{base}?token={}", app.service_key)).await.unwrap();
    assert_eq!(
        (refused.status, code(&refused.bytes)),
        (400, "InvalidSignature".into()),
        "an API key is no download token"
    );
    let refused = api.download_signed(&base).await.unwrap();
    assert_eq!((refused.status, code(&refused.bytes)), (400, "InvalidJWT".into()));

    // The bucket is private: no public reads; members cannot read it authenticated either.
    let public = format!("/storage/v1/object/public/project-snapshots/{name}");
    let refused = api.send(Method::GET, &public, &[], "").await.unwrap();
    assert_eq!((refused.status, code(&refused.bytes)), (400, "NoSuchBucket".into()));
    let refused = api.download(Some(&f.owner_token), "project-snapshots", &name).await.unwrap();
    assert_eq!(refused.status, 404);
}

#[tokio::test]
async fn project_files_take_writes_from_writers_and_signs_for_members_and_the_container() {
    let f = fixture().await;
    let app = &f.app;
    let api = app.api();
    let owner = Some(f.owner_token.as_str());
    let viewer = app.create_user().await;
    app.add_member(f.owner, f.project, viewer, "viewer").await;
    let stranger = app.create_user().await;
    let hash = fsync_protocol::hash::hex_sha256(b"bytes");
    let name = format!("{}/{hash}", f.project);

    let reply = api.upload(Some(&app.user_token(viewer)), "project-files", &name, "bytes", false).await.unwrap();
    assert_eq!(reply.status, 403, "viewers do not write");
    let reply = api.upload(Some(&app.user_token(stranger)), "project-files", &name, "bytes", false).await.unwrap();
    assert_eq!(reply.status, 403);
    let other_project = format!("{}/{hash}", fsync_testkit::new_id());
    let reply = api.upload(owner, "project-files", &other_project, "bytes", false).await.unwrap();
    assert_eq!(reply.status, 403, "not under another project's folder");
    let reply = api.upload(owner, "project-files", &name, "bytes", false).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    for token in [app.user_token(viewer), app.container_token(f.project), f.owner_token.clone()] {
        let reply = api.sign(Some(&token), "project-files", &name, 30).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    for token in [app.user_token(stranger), app.container_token(fsync_testkit::new_id())] {
        let reply = api.sign(Some(&token), "project-files", &name, 30).await.unwrap();
        assert_eq!(reply.status, 404);
    }

    // Bad input: bucket, key, body; nothing is written.
    let reply = api.upload(owner, "no-such-bucket", "x/y", "x", false).await.unwrap();
    assert_eq!(reply.status, 404);
    // A backslash in the key (HTTP clients resolve `..` themselves before sending).
    let reply = api.upload(owner, "project-files", &format!("{}/a%5Cb", f.project), "x", false).await.unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["error"], "InvalidRequest");
    let sign_path = format!("/storage/v1/object/sign/project-files/{name}");
    for expires in [json!("soon"), json!(0), json!(fsync_protocol::limits::MAX_SIGNED_URL_SECONDS + 1)] {
        let reply = api.call(Method::POST, &sign_path, owner, Some(&json!({"expiresIn": expires}))).await.unwrap();
        assert_eq!(reply.status, 400, "expiresIn {expires}: {}", reply.body);
    }
    let week = json!({"expiresIn": fsync_protocol::limits::MAX_SIGNED_URL_SECONDS});
    let reply = api.call(Method::POST, &sign_path, owner, Some(&week)).await.unwrap();
    assert_ne!(reply.status, 400, "a week is allowed: {}", reply.body);
    let bearer = format!("Bearer {}", f.owner_token);
    let path = format!("/storage/v1/object/project-files/{name}");
    let answer = api.send(Method::POST, &path, &[("authorization", bearer.as_str())], "x").await.unwrap();
    assert_eq!(answer.status, 401, "no apikey");

    // A binary must be uploaded before it is recorded.
    let (status, body) = app
        .rpc(
            Some(&f.owner_token),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": "b".repeat(64)}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("upload the bytes"), "{body}");
    let (status, body) = app
        .rpc(
            Some(&f.owner_token),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": hash}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = app
        .rpc(
            Some(&app.user_token(viewer)),
            "upsert_project_binary",
            json!({"project_uuid": f.project, "p_file_path": "logo.png", "p_content_hash": hash}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn the_snapshot_function_is_deterministic_reuses_a_seq_and_is_service_only() {
    let f = fixture().await;
    let app = &f.app;
    f.upsert("b/two.ts", "two", None).await;
    f.upsert("a.ts", "one", None).await;
    f.upsert("gone.ts", "x", None).await;
    f.delete("gone.ts", None).await;

    let api = app.api();
    let reply = api.build_snapshot(&f.owner_token, f.project).await.unwrap();
    assert_eq!(reply.status, 403, "members may not call it");
    let build = "/functions/v1/build-project-snapshot";
    let reply = api.call(Method::POST, build, Some(&app.service_key), Some(&json!({"projectId": "nope"}))).await;
    assert_eq!(reply.unwrap().status, 400);
    let too_long = json!({"projectId": f.project, "expiresIn": fsync_protocol::limits::MAX_SIGNED_URL_SECONDS + 1});
    let reply = api.call(Method::POST, build, Some(&app.service_key), Some(&too_long)).await.unwrap();
    assert_eq!(reply.status, 400, "a signed URL lives at most a week: {}", reply.body);
    let reply = api.build_snapshot(&app.service_key, fsync_testkit::new_id()).await.unwrap();
    assert_eq!(reply.status, 404);

    let reply = api.build_snapshot(&app.service_key, f.project).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let first: SnapshotResponse = serde_json::from_value(reply.body).unwrap();
    assert!(!first.reused);
    assert_eq!(first.manifest.seq, f.seq().await);
    let (_, signed_for) = signed_until(app, f.project, &first.snapshot_id).await.expect("recorded");
    assert!((899..=901).contains(&signed_for), "the default URL's 15 minutes: {signed_for} s");
    let paths: Vec<&str> = first.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a.ts", "b/two.ts"], "sorted, live files only");
    let zip = api.download_signed(&first.signed_url).await.unwrap().bytes;
    assert_eq!(fsync_protocol::hash::hex_sha256(&zip), first.manifest.zip_sha256);

    let reply = api.build_snapshot(&app.service_key, f.project).await.unwrap();
    let again: SnapshotResponse = serde_json::from_value(reply.body).unwrap();
    assert!(again.reused, "the same seq reuses the stored snapshot");
    assert_eq!(again.manifest, first.manifest);

    // Same state, same bytes: remove the stored snapshot and build again.
    let storage = app.dir.path().join("storage/project-snapshots").join(f.project.to_string());
    std::fs::remove_dir_all(&storage).unwrap();
    let reply = api.build_snapshot(&app.service_key, f.project).await.unwrap();
    let rebuilt: SnapshotResponse = serde_json::from_value(reply.body).unwrap();
    assert!(!rebuilt.reused);
    assert_eq!(rebuilt.manifest.zip_sha256, first.manifest.zip_sha256, "deterministic zip");

    f.upsert("a.ts", "changed", None).await;
    let reply = api.build_snapshot(&app.service_key, f.project).await.unwrap();
    let next: SnapshotResponse = serde_json::from_value(reply.body).unwrap();
    assert!(!next.reused);
    assert_eq!(next.manifest.seq, first.manifest.seq + 1);
}

/// `project-files` is content-addressed and write-once: an upload must be the bytes its name
/// says, an object never changes once stored (an upsert of it is answered as stored), and none
/// is deleted — so a binary a file version names is always there and always right, and no bad
/// object can fail a project's snapshots.
#[tokio::test]
async fn project_files_objects_are_their_hash_written_once_and_never_deleted() {
    let f = fixture().await;
    let api = f.app.api();
    let owner = Some(f.owner_token.as_str());
    let hash = fsync_protocol::hash::hex_sha256(b"the real bytes");
    let name = format!("{}/{hash}", f.project);
    let missing = api.download(owner, "project-files", &name).await.unwrap().status;
    assert_ne!(missing, 200, "nothing there yet");

    let wrong = api.upload(owner, "project-files", &name, "other bytes", true).await.unwrap();
    assert_eq!((wrong.status, wrong.body["error"].as_str()), (400, Some("InvalidRequest")), "{}", wrong.body);
    assert!(wrong.body["message"].as_str().unwrap().contains("SHA-256"), "{}", wrong.body);
    for bad_name in [
        format!("{}/not-a-hash", f.project),
        format!("not-a-project/{hash}"),
        format!("{}/{}", f.project, hash.to_uppercase()),
    ] {
        let reply = api.upload(owner, "project-files", &bad_name, "the real bytes", true).await.unwrap();
        assert_eq!(reply.status, 400, "{bad_name}: {}", reply.body);
    }
    assert_eq!(api.download(owner, "project-files", &name).await.unwrap().status, missing, "nothing was stored");

    let first = api.upload(owner, "project-files", &name, "the real bytes", true).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let again = api.upload(owner, "project-files", &name, "the real bytes", true).await.unwrap();
    assert_eq!(again.status, 200, "an upsert of stored bytes is answered as stored: {}", again.body);
    let duplicate = api.upload(owner, "project-files", &name, "the real bytes", false).await.unwrap();
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    let deleted =
        api.call(Method::DELETE, &format!("/storage/v1/object/project-files/{name}"), owner, None).await.unwrap();
    assert_eq!(deleted.status, 400, "{}", deleted.body);
    let stored = api.download(owner, "project-files", &name).await.unwrap();
    assert_eq!((stored.status, stored.bytes.as_ref()), (200, b"the real bytes".as_ref()));
}
