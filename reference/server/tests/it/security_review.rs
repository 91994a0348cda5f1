//! The security review as tests, across every surface (plan 4.4): each kind of bad token is
//! refused on every endpoint (RPCs, reads, table writes, Storage, the snapshot function, sessions,
//! metrics, Realtime) and changes nothing; values that look like SQL, JSON or paths are data,
//! never code or a way out; traversal is refused at every layer that takes a name.

use crate::fixture;
use crate::realtime::{connect, join, topic};
use axum::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::realtime::Vsn;
use fsync_testkit::claims;
use serde_json::{json, Value};

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_on_every_surface_and_changes_nothing() {
    let f = fixture().await;
    f.upsert("a.txt", "a", None).await;
    let p = f.project;
    let service = claims(json!({"role": "service_role", "exp": fsync_testkit::now_s() + 600}));
    let header = |alg: &str| URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let body = URL_SAFE_NO_PAD.encode(Value::Object(service.clone()).to_string());
    let signed = jwt::sign(&f.app.secret, &service);
    let signature = signed.rsplit('.').next().unwrap().to_owned();
    let mut endless = service.clone();
    endless.remove("exp");
    let mut expired = service.clone();
    expired.insert("exp".into(), json!(fsync_testkit::now_s() - 1));
    let tampered = {
        // A member's valid token with its payload swapped for the service role's.
        let member = f.owner_token.split('.').collect::<Vec<_>>();
        format!("{}.{body}.{}", member[0], member[2])
    };
    let bad_tokens = [
        ("forged with another secret", jwt::sign(&Secret::new("x".repeat(40)), &service)),
        ("alg none", format!("{}.{body}.", header("none"))),
        ("alg HS512 with a valid HS256 signature", format!("{}.{body}.{signature}", header("HS512"))),
        ("alg RS256", format!("{}.{body}.{signature}", header("RS256"))),
        ("tampered payload", tampered),
        ("no exp", jwt::sign(&f.app.secret, &endless)),
        ("expired", jwt::sign(&f.app.secret, &expired)),
        ("not a JWT", "a.b".to_owned()),
        ("huge", "a".repeat(64 * 1024)),
    ];
    let api = f.app.api();
    for (what, token) in &bad_tokens {
        // As the Bearer token with the anon key, and as the apikey itself.
        for headers in [
            vec![("apikey", f.app.anon_key.clone()), ("authorization", format!("Bearer {token}"))],
            vec![("apikey", token.clone()), ("authorization", format!("Bearer {token}"))],
        ] {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut with_json = headers.clone();
            with_json.push(("content-type", "application/json"));
            let surfaces: Vec<(Method, String, Value)> = vec![
                (Method::POST, "/rest/v1/rpc/list_current_files".into(), json!({"project_uuid": p})),
                (Method::POST, "/rest/v1/rpc/create_project".into(), json!({"p_name": "x"})),
                (Method::GET, format!("/rest/v1/project_files_current?project_id=eq.{p}"), Value::Null),
                (
                    Method::POST,
                    "/rest/v1/legacy_project_files".into(),
                    json!({"project_id": p, "path": "b", "content": "b"}),
                ),
                (
                    Method::POST,
                    format!("/storage/v1/object/sign/project-files/{p}/{}", "0".repeat(64)),
                    json!({"expiresIn": 60}),
                ),
                (Method::POST, "/functions/v1/build-project-snapshot".into(), json!({"projectId": p})),
                (Method::POST, "/orchestrator/v1/sessions".into(), json!({"project_id": p})),
                (Method::GET, "/metrics".into(), Value::Null),
            ];
            for (method, path, body) in surfaces {
                let body = if body.is_null() { String::new() } else { body.to_string() };
                let answer = api.send(method.clone(), &path, &with_json, body).await.unwrap();
                assert_eq!(answer.status, 401, "{what}: {method} {path}: {}", String::from_utf8_lossy(&answer.bytes));
            }
        }
        // Realtime: a bad token as the join's access_token is refused, worded as Supabase does.
        let mut socket = connect(&f.app, Vsn::V2).await;
        let (_, reply) = join(&mut socket, &topic(p), token, true).await;
        assert_eq!(reply["status"], "error", "{what}: {reply}");
        assert!(reply["response"]["reason"].as_str().unwrap_or("").contains("JWT"), "{what}: {reply}");
    }
    assert_eq!(f.seq().await, 1, "nothing changed");
    let client = f.app.db.connect().await.unwrap();
    let projects: i64 = client.query_one("SELECT count(*) FROM public.projects", &[]).await.unwrap().get(0);
    assert_eq!(projects, 1, "no project was created");
}

#[tokio::test]
async fn values_that_look_like_sql_json_or_paths_are_data() {
    let f = fixture().await;
    let sly = [
        ("it's.txt", "'; DROP TABLE public.project_files; --"),
        ("q\"uote.json", r#"{"content": null, "seq": 999, "timestamp": "1970-01-01T00:00:00Z"}"#),
        ("$1.sql", "$$ SELECT pg_sleep(10) $$"),
        ("%2e%2e/enc.txt", "percent-encoding is only text here"),
        ("ü/ñ/文件.md", "unicode paths are paths"),
    ];
    for (path, content) in sly {
        let (status, body) = f.upsert(path, content, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let listed = f.current_files().await;
    for (path, content) in sly {
        let row =
            listed.as_array().unwrap().iter().find(|r| r["file_path"] == path).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(row["content"], content, "stored byte for byte");
    }
    // Filters and relation names are values and cache lookups, never SQL.
    let api = f.app.api();
    let injected = "project_id=eq.x'%20OR%20'1'='1";
    let reply = api.read(Some(&f.owner_token), "project_files_current", injected).await.unwrap();
    assert_eq!((reply.status, reply.body["code"].as_str()), (400, Some("22P02")), "{}", reply.body);
    let reply = api.read(Some(&f.owner_token), "project_files;drop", "").await.unwrap();
    assert_eq!(reply.status, 404, "{}", reply.body);
    let reply = api.read(Some(&f.owner_token), "project_files_current", "select=content,(select%201)").await.unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply =
        api.rpc(Some(&f.owner_token), "list_current_files)%3B%20DROP%20TABLE%20x%3B%20--", json!({})).await.unwrap();
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(f.seq().await, sly.len() as i64, "the sly writes and nothing else");
}

#[tokio::test]
async fn traversal_is_refused_at_every_layer_that_takes_a_name() {
    let f = fixture().await;
    let api = f.app.api();
    let owner = Some(f.owner_token.as_str());
    // The SQL API's paths (and the legacy view's, which reach the same check).
    for path in ["../x", "a/../../x", "/etc/passwd", "a\\..\\b"] {
        assert_eq!(f.upsert(path, "x", None).await.0, 400, "{path}");
        let row = json!({"project_id": f.project, "path": path, "content": "x"});
        let answer = api
            .request(
                Method::POST,
                "/rest/v1/legacy_project_files",
                owner,
                &[("content-type", "application/json")],
                row.to_string(),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "legacy {path}");
    }
    // Storage keys (a client resolves a literal `..` itself; encoded forms reach the server).
    for key in
        [format!("{}/..%2F..%2Fescape", f.project), format!("{}/%2E%2E/x", f.project), format!("{}/a%5Cb", f.project)]
    {
        let reply = api.upload(owner, "project-files", &key, "x", false).await.unwrap();
        assert_eq!(reply.status, 400, "{key}: {}", reply.body);
    }
    // Session ids are uuids, nothing else.
    for id in ["..%2F..%2Fetc", "x'%20OR%201=1"] {
        let reply = api.session(&f.owner_token, id.parse().unwrap_or_default()).await.unwrap();
        assert_ne!(reply.status, 200);
        let answer = api
            .request(Method::GET, &format!("/orchestrator/v1/sessions/{id}"), owner, &[], Vec::<u8>::new())
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{id}");
    }
    // Realtime topics: a project topic is `project:<uuid>` exactly.
    let mut socket = connect(&f.app, Vsn::V2).await;
    for bad in [
        format!("project:{}/../other", f.project),
        format!("project:{}:client:x", f.project),
        "project:../../x".to_owned(),
    ] {
        let (_, reply) = join(&mut socket, &format!("realtime:{bad}"), &f.owner_token, true).await;
        assert_eq!(reply["status"], "error", "{bad}: {reply}");
    }
    assert_eq!(f.seq().await, 0);
}
