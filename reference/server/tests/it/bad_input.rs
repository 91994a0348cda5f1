//! Bad input gets a clear 4xx and changes nothing: path rules, sizes, file types, malformed or
//! mistyped requests, and every kind of bad token.

use crate::fixture;
use axum::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::limits::{MAX_CONTENT_BYTES, MAX_PATH_BYTES};
use fsync_testkit::claims;
use serde_json::json;

#[tokio::test]
async fn every_path_rule_is_enforced_with_the_same_words_as_the_client() {
    let f = fixture().await;
    let long = "a".repeat(MAX_PATH_BYTES + 1);
    let bad_paths = [
        "",
        long.as_str(),
        "/etc/passwd",
        "a\\b",
        "a//b",
        "a/",
        "./a",
        "a/../b",
        "..",
        "a\u{1}b",
        "tab\there",
        "del\u{7f}",
    ];
    for path in bad_paths {
        let (status, body) = f.upsert(path, "x", None).await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("22023")), "{path:?}: {body}");
        let problem = fsync_protocol::check_path(path).expect_err("the client refuses it too");
        assert_eq!(body["message"], format!("p_file_path {problem}"), "{path:?}");
        let (status, _) = f.delete(path, None).await;
        assert_eq!(status, 400, "{path:?}");
    }
    // NUL cannot reach PostgreSQL text at all; it is refused as invalid input too.
    let (status, _) = f.upsert("a\u{0}b", "x", None).await;
    assert_eq!(status, 400);
    assert_eq!(f.row_count().await, 0);
    assert_eq!(f.seq().await, 0);
}

#[tokio::test]
async fn oversized_content_gets_413_and_unknown_file_types_400() {
    let f = fixture().await;
    let (status, body) = f.upsert("big.txt", &"x".repeat(MAX_CONTENT_BYTES + 1), None).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (413, Some("PT413")), "{body}");
    let (status, body) = f.upsert("exact.txt", &"x".repeat(MAX_CONTENT_BYTES), None).await;
    assert_eq!(status, 200, "the limit itself is allowed: {body}");

    let (status, body) = f
        .app
        .rpc(
            Some(&f.owner_token),
            "upsert_project_file",
            json!({"project_uuid": f.project, "p_file_path": "a.exe", "p_content": "x", "p_file_type": "exe"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("not a known file type"), "{body}");
    assert!(body["hint"].as_str().unwrap().contains("typescript"), "the hint lists the types: {body}");
    assert_eq!(f.row_count().await, 1);
}

#[tokio::test]
async fn malformed_missing_and_mistyped_arguments() {
    let f = fixture().await;
    let t = Some(f.owner_token.as_str());
    let (status, body) = f.app.rpc_raw(t, "upsert_project_file", "{not json".into()).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("PGRST102")), "{body}");
    let (status, body) = f.app.rpc_raw(t, "upsert_project_file", "[1, 2]".into()).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("PGRST102")), "{body}");

    // A missing required argument or an unknown one: no such function (PostgREST's PGRST202).
    let (status, body) =
        f.app.rpc(t, "upsert_project_file", json!({"project_uuid": f.project, "p_file_path": "a"})).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (404, Some("PGRST202")), "{body}");
    assert!(body["hint"].as_str().unwrap().contains("p_content"), "{body}");
    let mut args = json!({"project_uuid": f.project, "p_file_path": "a", "p_content": "x", "p_file_type": "text"});
    args["colour"] = json!("red");
    let (status, _) = f.app.rpc(t, "upsert_project_file", args).await;
    assert_eq!(status, 404);
    let (status, body) = f.app.rpc(t, "no_such_function", json!({})).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (404, Some("PGRST202")));

    // Mistyped values.
    let (status, body) = f
        .app
        .rpc(
            t,
            "upsert_project_file",
            json!({"project_uuid": "not-a-uuid", "p_file_path": "a", "p_content": "x", "p_file_type": "text"}),
        )
        .await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (400, Some("22P02")), "{body}");
    let (status, body) = f
        .app
        .rpc(t, "upsert_project_file", json!({"project_uuid": f.project, "p_file_path": "a", "p_content": "x", "p_file_type": "text", "expected_version": "two"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = f
        .app
        .rpc(
            t,
            "upsert_project_file",
            json!({"project_uuid": f.project, "p_file_path": "a", "p_content": null, "p_file_type": "text"}),
        )
        .await;
    assert_eq!((status.as_u16(), body["message"].as_str()), (400, Some("p_content is required")));
    let (status, _) =
        f.app.rpc(t, "bulk_upsert_project_files", json!({"project_uuid": f.project, "files": "nope"})).await;
    assert_eq!(status, 400);
    assert_eq!(f.row_count().await, 0);
}

#[tokio::test]
async fn bad_tokens_get_401_and_change_nothing() {
    let f = fixture().await;
    let args = json!({"project_uuid": f.project, "p_file_path": "a", "p_content": "x", "p_file_type": "text"});
    let user = claims(json!({"role": "authenticated", "sub": f.owner, "exp": fsync_testkit::now_s() + 600}));

    let forged = jwt::sign(&Secret::new("not the project secret at all, really"), &user);
    let mut expired_claims = user.clone();
    expired_claims.insert("exp".into(), json!(fsync_testkit::now_s() - 10));
    let expired = jwt::sign(&f.app.secret, &expired_claims);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::Value::Object(user.clone()).to_string());
    let alg_none = format!("{header}.{payload}.");
    let mut roleless = user.clone();
    roleless.remove("role");
    let roleless = jwt::sign(&f.app.secret, &roleless);
    let mut endless = user.clone();
    endless.remove("exp");
    let endless = jwt::sign(&f.app.secret, &endless);
    let mut superuser = user.clone();
    superuser.insert("role".into(), json!("postgres"));
    let superuser = jwt::sign(&f.app.secret, &superuser);

    for (name, token, code) in [
        ("forged signature", forged, "PGRST301"),
        ("expired", expired, "PGRST303"),
        ("no exp", endless, "PGRST301"),
        ("alg none", alg_none, "PGRST301"),
        ("missing role", roleless, "PGRST303"),
        ("non-API role", superuser, "PGRST303"),
        ("garbage", "abc.def".to_owned(), "PGRST301"),
    ] {
        let (status, body) = f.app.rpc(Some(&token), "upsert_project_file", args.clone()).await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (401, Some(code)), "{name}: {body}");
    }

    // No apikey at all.
    let bearer = format!("Bearer {}", f.owner_token);
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let path = "/rest/v1/rpc/upsert_project_file";
    let answer = f.app.api().send(Method::POST, path, &headers, args.to_string()).await.unwrap();
    assert_eq!(answer.status, 401);
    assert!(answer.headers.contains_key("www-authenticate"));
    assert_eq!(f.row_count().await, 0);
}

#[tokio::test]
async fn a_schema_other_than_public_is_refused() {
    let f = fixture().await;
    let headers = [("content-type", "application/json"), ("content-profile", "fsync")];
    let body = json!({"project_uuid": f.project}).to_string();
    let path = "/rest/v1/rpc/list_current_files";
    let answer = f.app.api().request(Method::POST, path, Some(&f.owner_token), &headers, body).await.unwrap();
    assert_eq!(answer.status, 406);
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes).unwrap();
    assert_eq!(body["code"], "PGRST106");
}
